//! The core's clock: microseconds since a monotonic reading taken at boot.
//!
//! The core only ever compares readings of this one clock, so its origin is
//! arbitrary; using the process's boot keeps the numbers small and lets
//! timers convert back to tokio instants exactly.

use std::time::Duration;
use tenure_core::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    boot: std::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            boot: std::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        let micros = u64::try_from(self.boot.elapsed().as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(micros)
    }

    /// The tokio instant at which the core's clock reads `at`.
    pub fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        let at = self
            .boot
            .checked_add(Duration::from_micros(at.as_micros()))
            // Far in the future: a timer that never fires is the safe reading.
            .unwrap_or_else(|| self.boot + Duration::from_secs(86_400 * 365));
        tokio::time::Instant::from_std(at)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_convert_back_to_the_same_moment() {
        let clock = Clock::new();
        let now = clock.now();
        let back = clock.to_tokio(now);
        let again = clock.to_tokio(Instant::from_micros(now.as_micros() + 1_000));
        assert_eq!(again - back, Duration::from_millis(1));
    }
}
