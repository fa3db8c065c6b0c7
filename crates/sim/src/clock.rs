//! A process's monotonic clock, running at a fixed rate off true time.

use tenure_core::Instant;

/// `local(t) = origin_local + (t - origin_true) · (1 + rate_ppm/1e6)`.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    rate_ppm: i64,
    origin_true: u64,
    origin_local: u64,
}

impl Clock {
    pub fn new(rate_ppm: i64, origin_true: u64, origin_local: u64) -> Clock {
        Clock {
            rate_ppm,
            origin_true,
            origin_local,
        }
    }

    pub fn local(&self, true_us: u64) -> Instant {
        let elapsed = i128::from(true_us.saturating_sub(self.origin_true));
        let scaled = elapsed * i128::from(1_000_000 + self.rate_ppm) / 1_000_000;
        Instant::from_micros(self.origin_local + scaled as u64)
    }

    /// The same clock running at `rate_ppm` from true time `now` on.
    pub fn with_rate(&self, rate_ppm: i64, now: u64) -> Clock {
        Clock::new(rate_ppm, now, self.local(now).as_micros())
    }

    /// The clock after a step of `delta_us` at true time `now`: forward,
    /// or back (never below zero), as a VM's clock may jump.
    pub fn stepped(&self, delta_us: i64, now: u64) -> Clock {
        let at = self.local(now).as_micros();
        let local = at.saturating_add_signed(delta_us);
        Clock::new(self.rate_ppm, now, local)
    }

    /// The first true time at which this clock reads at least `local`.
    pub fn true_at(&self, local: Instant) -> u64 {
        let ahead = i128::from(local.as_micros().saturating_sub(self.origin_local));
        let rate = i128::from(1_000_000 + self.rate_ppm);
        let mut t = self.origin_true + (ahead * 1_000_000 / rate) as u64;
        // Integer division may land one tick early; step to the exact tick.
        while self.local(t) < local {
            t += 1;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_clock_reaches_a_reading_early_and_true_at_inverts_local() {
        let fast = Clock::new(10_000, 1_000, 5);
        assert_eq!(
            fast.local(1_000 + 1_000_000),
            Instant::from_micros(5 + 1_010_000)
        );
        for local in [5u64, 6, 999, 1_010_005, 77_777_777] {
            let t = fast.true_at(Instant::from_micros(local));
            assert!(fast.local(t) >= Instant::from_micros(local));
            assert!(t == 0 || fast.local(t - 1) < Instant::from_micros(local) || t == 1_000);
        }
    }
}
