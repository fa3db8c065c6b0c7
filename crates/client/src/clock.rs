//! The holder's clock: where a lease's deadline is counted.
//!
//! A holder must stop acting by its deadline however the time passed,
//! including while the machine was suspended. `std::time::Instant` (Linux
//! `CLOCK_MONOTONIC`) stops during a suspend, so a holder that slept
//! through its ttl would wake up still believing in its lease; the cluster
//! counted the whole time and may have granted it to another. So the
//! client counts on `CLOCK_BOOTTIME`, which runs through a suspend, and
//! never trusts a timer alone: tokio's timers run on `CLOCK_MONOTONIC`
//! too, so every wait wakes at least every [`LOOK_EVERY`] to read the
//! clock again (see `docs/safety.md`, "Clocks").

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The longest a wait trusts a timer before it reads the clock again: the
/// most a holder may be late to notice a suspend that ended its lease.
pub const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A reading of a holder's clock: the time since that clock's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(Duration);

impl Stamp {
    pub const fn from_origin(since: Duration) -> Stamp {
        Stamp(since)
    }

    /// The time since the clock's origin (for `CLOCK_BOOTTIME`, since boot).
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this is; zero if it is not after.
    pub fn saturating_duration_since(self, earlier: Stamp) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Stamp {
    type Output = Stamp;
    fn add(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_add(d))
    }
}

impl Sub<Duration> for Stamp {
    type Output = Stamp;
    fn sub(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_sub(d))
    }
}

/// Where a holder reads the time. It must never go backwards, and must
/// count every moment the cluster counts, suspends included.
pub trait ClockSource: Send + Sync + 'static {
    fn now(&self) -> Stamp;
}

/// A holder's clock. Cheap to clone. The default is [`BootTime`].
#[derive(Clone)]
pub struct Clock(Arc<dyn ClockSource>);

impl Clock {
    pub fn new(source: Arc<dyn ClockSource>) -> Clock {
        Clock(source)
    }

    pub fn now(&self) -> Stamp {
        self.0.now()
    }

    /// Wait until this clock reads `at` or later. Wakes every
    /// [`LOOK_EVERY`] at most, so it returns soon after a suspend that
    /// jumped past `at`, though tokio's timer did not count the suspend.
    pub async fn sleep_until(&self, at: Stamp) {
        loop {
            let left = at.saturating_duration_since(self.now());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(LOOK_EVERY)).await;
        }
    }

    /// `at` as a tokio instant, from the two clocks as they read now: for
    /// a timer that must fire near `at`. Read again after each wake-up:
    /// the two clocks part at every suspend.
    pub fn to_tokio(&self, at: Stamp) -> tokio::time::Instant {
        let now = self.now();
        let timer_now = tokio::time::Instant::now();
        if at >= now {
            timer_now + at.saturating_duration_since(now)
        } else {
            timer_now
                .checked_sub(now.saturating_duration_since(at))
                .unwrap_or(timer_now)
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new(Arc::new(BootTime))
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// `CLOCK_BOOTTIME` on Linux: monotonic, not slewed faster than NTP's
/// frequency correction, and counts a suspend. Elsewhere, the standard
/// monotonic clock (which may not count one).
#[derive(Clone, Copy, Debug, Default)]
pub struct BootTime;

impl ClockSource for BootTime {
    fn now(&self) -> Stamp {
        Stamp(boottime())
    }
}

#[cfg(target_os = "linux")]
fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec that
    // clock_gettime fills; CLOCK_BOOTTIME exists on every Linux since 2.6.39.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

#[cfg(not(target_os = "linux"))]
fn boottime() -> Duration {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

/// [`BootTime`] that can also be moved forward at will, as a suspend moves
/// it while every timer of the process stands still: for testing that a
/// holder notices, and for a program's own tests of how it stops.
#[derive(Debug, Default)]
pub struct SuspendableClock {
    skipped_nanos: AtomicU64,
}

impl SuspendableClock {
    pub fn new() -> SuspendableClock {
        SuspendableClock::default()
    }

    /// Move the clock `by` forward, as a suspend of that length would.
    pub fn suspend_for(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.skipped_nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl ClockSource for SuspendableClock {
    fn now(&self) -> Stamp {
        Stamp(boottime()) + Duration::from_nanos(self.skipped_nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_never_goes_back() {
        let a = BootTime.now();
        let b = BootTime.now();
        assert!(b >= a);
    }

    #[test]
    fn a_suspend_moves_the_clock_forward_by_its_length() {
        let clock = SuspendableClock::new();
        let before = clock.now();
        clock.suspend_for(Duration::from_secs(60));
        let after = clock.now();
        let moved = after.saturating_duration_since(before);
        assert!(moved >= Duration::from_secs(60) && moved < Duration::from_secs(61));
    }

    #[tokio::test]
    async fn a_sleep_ends_soon_after_a_suspend_jumps_past_its_end() {
        let source = Arc::new(SuspendableClock::new());
        let clock = Clock::new(source.clone());
        let until = clock.now() + Duration::from_secs(3600);
        let started = std::time::Instant::now();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(until).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        source.suspend_for(Duration::from_secs(3600));
        sleeper.await.expect("sleeper");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn stamps_convert_to_timer_instants_on_either_side_of_now() {
        let clock = Clock::default();
        let now = clock.now();
        let later = clock.to_tokio(now + Duration::from_secs(5));
        let earlier = clock.to_tokio(now - Duration::from_millis(5));
        let t = tokio::time::Instant::now();
        assert!(later > t + Duration::from_secs(4));
        assert!(earlier <= t);
    }
}
