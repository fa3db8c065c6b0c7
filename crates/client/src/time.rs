//! The holder's deadline.
//!
//! The core counts time in microseconds on one process's monotonic clock.
//! Here that clock is the holder's [`Clock`](crate::Clock) (by default
//! `CLOCK_BOOTTIME`), so that the core's `holder_deadline` (the one
//! definition of assumption A5 in `docs/safety.md`) computes the client's
//! deadlines too.

pub use crate::clock::Stamp;
use std::time::Duration;
use tenure_core::{holder_deadline, DriftBound, Micros, Rules, Ttl};

fn to_core(t: Stamp) -> tenure_core::Instant {
    let micros = t.since_origin().as_micros();
    tenure_core::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

fn from_core(t: tenure_core::Instant) -> Stamp {
    Stamp::from_origin(Duration::from_micros(t.as_micros()))
}

/// The last instant, on this process's clock, at which the holder of a
/// grant of `ttl` won by a request sent at `sent` may still act as holder:
/// `sent + ttl·(1−2ρ) − margin`, with ρ the cluster's drift bound (it
/// says which in every grant).
///
/// Counted from the SEND time, not the reply: the cluster may start the
/// lease's clock any time after the request left, and the holder cannot know
/// when. A margin larger than the usable ttl gives `sent` itself: a grant
/// that cannot be used.
pub fn deadline(sent: Stamp, ttl: Ttl, drift: DriftBound, margin: Duration) -> Stamp {
    let margin = Micros(u64::try_from(margin.as_micros()).unwrap_or(u64::MAX));
    let rules = Rules {
        drift,
        ..Rules::default()
    };
    from_core(holder_deadline(to_core(sent), ttl, &rules, margin))
}

/// Whether a grant won by a request sent at `sent` still leaves, `now`, at
/// least two thirds of what a renewal sent now would give. If not (a long
/// poll that waited), the holder renews before it trusts the grant.
pub fn most_of_the_lease_left(
    sent: Stamp,
    now: Stamp,
    ttl: Ttl,
    drift: DriftBound,
    margin: Duration,
) -> bool {
    let left = deadline(sent, ttl, drift, margin).saturating_duration_since(now);
    let fresh = deadline(now, ttl, drift, margin).saturating_duration_since(now);
    left * 3 >= fresh * 2
}

/// A duration as a whole number of milliseconds, rounded up.
pub(crate) fn ceil_millis(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(1_000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn now() -> Stamp {
        crate::Clock::default().now()
    }

    fn ttl(ms: u64) -> Ttl {
        Ttl::from_millis(ms).expect("valid ttl")
    }

    #[test]
    fn deadline_is_ttl_shrunk_by_twice_the_drift_minus_the_margin_from_the_send_time() {
        let sent = now();
        // 10 s · (1 − 2·0.001) − 150 ms = 9.980 s − 0.150 s.
        // The send time is truncated to whole microseconds on the way
        // through the core's clock: the deadline may come up to 1 µs early,
        // never late.
        let d = deadline(
            sent,
            ttl(10_000),
            DriftBound::DEFAULT,
            Duration::from_millis(150),
        );
        let exact = sent + Duration::from_millis(9_830);
        assert!(d <= exact && exact.saturating_duration_since(d) < Duration::from_micros(1));
    }

    #[test]
    fn deadline_never_reaches_sent_plus_ttl_even_without_margin() {
        let sent = now();
        for ms in [10, 11, 999, 1_000, 30_000, 86_400_000] {
            let d = deadline(sent, ttl(ms), DriftBound::DEFAULT, Duration::ZERO);
            assert!(d < sent + Duration::from_millis(ms), "ttl {ms} ms");
        }
    }

    #[test]
    fn a_margin_larger_than_the_ttl_gives_a_deadline_at_the_send_time() {
        let sent = now();
        let d = deadline(sent, ttl(100), DriftBound::DEFAULT, Duration::from_secs(1));
        assert!(d <= sent && sent.saturating_duration_since(d) < Duration::from_micros(1));
    }

    #[test]
    fn deadline_counts_from_the_send_time_not_the_reply() {
        // A long poll sent 20 s ago that won just now: its grant of 10 s is
        // already past its deadline, however fresh the reply is.
        let sent = now();
        let reply = sent + Duration::from_secs(20);
        assert!(deadline(sent, ttl(10_000), DriftBound::DEFAULT, Duration::ZERO) < reply);
    }

    #[test]
    fn a_grant_is_trusted_as_is_only_while_most_of_its_lease_is_left() {
        let sent = now();
        let ttl = ttl(9_000);
        let after = |ms| sent + Duration::from_millis(ms);
        assert!(most_of_the_lease_left(
            sent,
            after(5),
            ttl,
            DriftBound::DEFAULT,
            Duration::ZERO
        ));
        assert!(most_of_the_lease_left(
            sent,
            after(2_900),
            ttl,
            DriftBound::DEFAULT,
            Duration::ZERO
        ));
        assert!(!most_of_the_lease_left(
            sent,
            after(3_100),
            ttl,
            DriftBound::DEFAULT,
            Duration::ZERO
        ));
        assert!(!most_of_the_lease_left(
            sent,
            after(20_000),
            ttl,
            DriftBound::DEFAULT,
            Duration::ZERO
        ));
    }

    #[test]
    fn conversion_through_the_core_clock_loses_less_than_a_microsecond() {
        let t = now() + Duration::from_nanos(123_456_789);
        let back = from_core(to_core(t));
        assert!(back <= t && t.saturating_duration_since(back) < Duration::from_micros(1));
    }
}

#[cfg(test)]
mod drift_tests {
    use super::*;
    use tests::now;

    #[test]
    fn a_larger_drift_bound_gives_an_earlier_deadline() {
        let sent = now();
        let ttl = Ttl::from_millis(10_000).expect("ttl");
        let wide = DriftBound::from_ppm(50_000).expect("ppm");
        // 10 s · (1 − 2·0.05) = 9 s, against 9.98 s at the default.
        let d = deadline(sent, ttl, wide, Duration::ZERO);
        let exact = sent + Duration::from_millis(9_000);
        assert!(d <= exact && exact.saturating_duration_since(d) < Duration::from_micros(1));
        assert!(d < deadline(sent, ttl, DriftBound::DEFAULT, Duration::ZERO));
    }
}
