//! The core's clock: microseconds of `CLOCK_MONOTONIC_RAW` since the
//! process started.
//!
//! `std::time::Instant` reads `CLOCK_MONOTONIC`, which NTP slews to steer
//! the wall clock: chrony by up to 83,333 ppm by default, far past any
//! sane drift bound. `CLOCK_MONOTONIC_RAW` runs at the oscillator's own
//! rate, which is what the drift bound ρ is about (docs/safety.md). The
//! core only ever compares readings of this one clock, so its origin is
//! arbitrary. Timers still sleep on tokio's (slewed) clock: a timer that
//! fires a little early or late only moves when the core looks again,
//! never what it decides, since every decision reads this clock.

use std::time::Duration;
use tenure_core::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The raw clock's reading at start, in nanoseconds.
    origin: u64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            origin: raw_nanos(),
        }
    }

    pub fn now(&self) -> Instant {
        Instant::from_micros(raw_nanos().saturating_sub(self.origin) / 1_000)
    }

    /// A tokio instant at which the core's clock will read about `at`: as
    /// far ahead of now as `at` is ahead of the core's now.
    pub fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        let ahead = Duration::from_micros(at.as_micros().saturating_sub(self.now().as_micros()));
        let now = tokio::time::Instant::now();
        now.checked_add(ahead)
            // Far in the future: a timer that never fires is the safe reading.
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// `CLOCK_MONOTONIC_RAW` in nanoseconds.
fn raw_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec that
    // clock_gettime fills; CLOCK_MONOTONIC_RAW exists on every Linux since
    // 2.6.28.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_MONOTONIC_RAW) failed");
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_timer_for_a_reading_fires_about_when_the_clock_reads_it() {
        let clock = Clock::new();
        let at = Instant::from_micros(clock.now().as_micros() + 20_000);
        tokio::time::sleep_until(clock.to_tokio(at)).await;
        let now = clock.now();
        assert!(
            now >= Instant::from_micros(at.as_micros() - 100),
            "{now:?} < {at:?}"
        );
        assert!(
            now.as_micros() < at.as_micros() + 1_000_000,
            "{now:?} vs {at:?}"
        );
    }

    #[test]
    fn the_clock_only_moves_forward() {
        let clock = Clock::new();
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(clock.now().as_micros() >= a.as_micros() + 2_000);
    }
}
