//! Waiting acquires parked on this node until they must look again.
//!
//! A waiting acquire that finds the lease held is written into the name's
//! queue (`crate::lease::queue`) and parked here. It looks at the name
//! again when:
//!
//! - this node's acceptor accepts a value that hands it the lease, that no
//!   longer holds it in the queue, or (when it waits outside a full queue)
//!   that has room for it: the usual way, one round trip after the write;
//! - the lease it was told about may have run out without a release;
//! - `waiter_recheck` (or half its ttl) has passed, in case the write that
//!   concerned it never reached this node;
//! - its wait is over: its last try leaves the queue.

use super::{NameState, Pending, RequestId, Timing};
use crate::lease::{LeaseValue, Op, MAX_WAITERS};
use crate::time::{Instant, Micros};

/// Added to a reported remaining time, so that a look lands just after the
/// expiry rather than just before it.
const RETRY_SLACK: Micros = Micros::from_millis(5);

/// A parked request and when it looks again unless woken sooner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Parked {
    pub pending: Pending,
    pub look_at: Instant,
}

impl NameState {
    /// Park `pending`, which a round told to wait on: the lease it saw
    /// stays as it is for `remaining` unless someone changes it, and a
    /// chosen value holds it in the queue when `queued`.
    pub(super) fn park(
        &mut self,
        now: Instant,
        mut pending: Pending,
        remaining: Option<Micros>,
        queued: bool,
        timing: &Timing,
    ) {
        let Some(wait) = pending.wait.as_mut() else {
            unreachable!("only waiting acquires are told to wait")
        };
        wait.queued = queued;
        if wait.cancelled {
            // Its client left while the round ran: the last try, now.
            self.requeue(now, pending, timing);
            return;
        }
        let Op::Acquire { ttl, .. } = &pending.op else {
            unreachable!("only acquires wait")
        };
        let recheck = timing
            .waiter_recheck
            .min(Micros(ttl.as_micros().0 / 2))
            .max(RETRY_SLACK);
        let expiry = remaining
            .map(|r| now.plus(r).plus(RETRY_SLACK))
            .unwrap_or(Instant::from_micros(u64::MAX));
        let look_at = wait.until.min(expiry).min(now.plus(recheck));
        self.parked.push(Parked { pending, look_at });
    }

    /// Send parked requests whose time has come back to the queue.
    pub(super) fn wake_due(&mut self, now: Instant, timing: &Timing) {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| p.look_at <= now);
        self.parked = waiting;
        for p in due {
            self.requeue(now, p.pending, timing);
        }
    }

    /// This node's acceptor accepted `value`: wake the parked requests it
    /// may concern. Whether it is chosen, a round of theirs will find out.
    pub(super) fn wake_for(&mut self, now: Instant, value: &LeaseValue, timing: &Timing) -> bool {
        let handed_to = value.grant.as_ref().and_then(|g| g.waiter);
        let room = value.grant.is_none() || value.waiters.len() < MAX_WAITERS;
        let concerns = |p: &Parked| {
            let Some(wait) = p.pending.wait else {
                return false;
            };
            handed_to == Some(wait.id)
                || (wait.queued && !value.waiters.contains(wait.id))
                || (!wait.queued && room)
        };
        let (woken, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(concerns);
        self.parked = waiting;
        let any = !woken.is_empty();
        for p in woken {
            self.requeue(now, p.pending, timing);
        }
        any
    }

    /// Mark `request` as abandoned by its client. A waiting acquire that is
    /// parked looks again at once, for its last try; one queued or in a
    /// round carries the mark into it. Returns whether the request waits
    /// here.
    pub(super) fn cancel(&mut self, now: Instant, request: RequestId, timing: &Timing) -> bool {
        let mark = |p: &mut Pending| match p.wait.as_mut() {
            Some(wait) if p.request == request => {
                wait.cancelled = true;
                true
            }
            _ => false,
        };
        if let Some(at) = self
            .parked
            .iter()
            .position(|p| p.pending.request == request)
        {
            let mut parked = self.parked.remove(at);
            if mark(&mut parked.pending) {
                self.requeue(now, parked.pending, timing);
                return true;
            }
            self.parked.insert(at, parked);
            return false;
        }
        let in_round = self.round.iter_mut().flat_map(|r| r.ops.iter_mut());
        self.queue.iter_mut().chain(in_round).any(mark)
    }

    fn requeue(&mut self, now: Instant, mut pending: Pending, timing: &Timing) {
        pending.deadline = now.plus(timing.request_deadline);
        self.queue.push_back(pending);
    }
}
