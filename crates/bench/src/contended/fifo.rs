//! The FIFO bound of the queue workload, computed from what the waiters
//! saw on one clock (one process).
//!
//! A waiter that starts waiting with `k` waiters already waiting is served
//! in turn by a FIFO lock after the `k` before it: each holds the lock,
//! releases it, and hands it to the next. So it should be granted within
//! `k × (hold + handoff) + 50 ms`, where `hold` is the p50 from a grant's
//! answer to its release's answer (the 2 ms the holder sleeps and its
//! release request), `handoff` is the p50 from a release's answer to the
//! next grant's answer in the same run, and the 50 ms cover the holder
//! already in place and the scheduling of a busy machine.

use crate::stats::Latencies;
use std::time::{Duration, Instant};

/// The slack of the bound.
pub const BOUND_SLACK: Duration = Duration::from_millis(50);

/// One hold of the lock, as its holder saw it.
#[derive(Clone, Copy, Debug)]
pub struct Hold {
    /// The grant's answer.
    pub granted: Instant,
    /// The release's answer.
    pub released: Instant,
}

/// One wait for the lock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wait {
    /// Waiters already waiting when this one began.
    pub ahead: usize,
    /// From the first request to the grant's answer (or to giving up).
    pub waited: Duration,
    /// Whether it ended with the grant; if not, the waiter gave up at the
    /// end of the run, still waiting.
    pub granted: bool,
}

/// The time from each release's answer to the next grant's answer, holds
/// taken in grant order (a single lock's holds do not overlap). An answer
/// may arrive before the previous holder's release answer does: that
/// handoff counts as 0.
pub fn handoffs(holds: &mut [Hold]) -> Latencies {
    holds.sort_by_key(|h| h.granted);
    let mut out = Latencies::default();
    for pair in holds.windows(2) {
        out.push(pair[1].granted.saturating_duration_since(pair[0].released));
    }
    out
}

/// The bound for a waiter with `ahead` waiters before it.
pub fn bound(ahead: usize, hold: Duration, handoff: Duration) -> Duration {
    (hold + handoff) * ahead as u32 + BOUND_SLACK
}

/// The waits against their bounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FifoCheck {
    pub waits: usize,
    /// The longest wait, with the bound for it and its `ahead`.
    pub longest: Option<(Wait, Duration)>,
    /// Waits longer than their bound.
    pub over_bound: usize,
    /// The most any wait went over its bound (zero if none did).
    pub worst_excess: Duration,
}

pub fn check(waits: &[Wait], hold: Duration, handoff: Duration) -> FifoCheck {
    let mut c = FifoCheck {
        waits: waits.len(),
        ..FifoCheck::default()
    };
    for w in waits {
        let b = bound(w.ahead, hold, handoff);
        if c.longest.is_none_or(|(l, _)| w.waited > l.waited) {
            c.longest = Some((*w, b));
        }
        if w.waited > b {
            c.over_bound += 1;
            c.worst_excess = c.worst_excess.max(w.waited - b);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_bound_grows_by_one_hold_and_handoff_per_waiter_ahead() {
        assert_eq!(bound(0, ms(3), ms(2)), ms(50));
        assert_eq!(bound(7, ms(3), ms(2)), ms(85));
        assert_eq!(
            bound(31, Duration::from_micros(2500), ms(1)),
            Duration::from_micros(158_500)
        );
    }

    #[test]
    fn handoffs_pair_each_release_with_the_next_grant() {
        let t = Instant::now();
        let hold = |g: u64, r: u64| Hold {
            granted: t + ms(g),
            released: t + ms(r),
        };
        // Out of order, as the waiters' threads report them; the third
        // grant's answer came before the second release's answer.
        let mut holds = [hold(7, 13), hold(0, 3), hold(15, 18), hold(5, 8)];
        let mut h = handoffs(&mut holds);
        assert_eq!(h.len(), 3);
        assert_eq!(h.samples_us(), vec![0.0, 2000.0, 2000.0]);
        assert!(handoffs(&mut []).is_empty());
    }

    #[test]
    fn waits_over_their_bound_are_counted_with_the_worst_excess() {
        let w = |ahead, waited, granted| Wait {
            ahead,
            waited: ms(waited),
            granted,
        };
        // hold 3 + handoff 2: bounds 50, 60, 200 ms for 0, 2, 30 ahead.
        let waits = [
            w(0, 40, true),
            w(2, 75, true),
            w(30, 120, true),
            w(0, 400, false),
        ];
        let c = check(&waits, ms(3), ms(2));
        assert_eq!(c.waits, 4);
        assert_eq!(c.over_bound, 2);
        assert_eq!(c.worst_excess, ms(350));
        assert_eq!(c.longest, Some((w(0, 400, false), ms(50))));
        assert_eq!(check(&[], ms(3), ms(2)), FifoCheck::default());
    }
}
