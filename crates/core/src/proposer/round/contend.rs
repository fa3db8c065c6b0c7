//! Contending proposers: a round that another proposer pre-empted lets it
//! write before writing again, and the first refusal of a freed lease
//! passes round the members instead of being fought over.

use super::*;
use crate::proposer::{Contention, CONTENDED_FOR};

impl RoundCtx<'_> {
    /// Whether this round only wants to grant a lease that was freed a
    /// moment ago and whose first refusal belongs to another node. Every
    /// node that sees a lease freed would otherwise grant it to its own
    /// clients, and they would duel for it; instead, for a short while
    /// after the write that freed it (`backoff_max / 8`), only the member
    /// after the one that wrote it grants it, and the others wait for its
    /// write (or for the while to pass, should it have nobody who wants
    /// the lease). Passing the first refusal round the members, rather
    /// than keeping it where the lease was freed, keeps one node's clients
    /// from taking the lease back again and again.
    pub(super) fn first_refusal_elsewhere(
        &mut self,
        value: &LeaseValue,
        age: Micros,
        top: Ballot,
    ) -> bool {
        self.first_refusal(value, age, top) == Some(false)
    }

    /// For a round of plain acquires (and reads) and a lease freed less
    /// than `backoff_max / 8` ago by the write at `top`, on a name this
    /// node saw contended lately: whether this node has its first refusal.
    /// `None` when the rule does not apply (a client cycling a name of its
    /// own never waits for it).
    ///
    /// A member that let its first refusal pass (the next write was not
    /// its own) is passed over for `CONTENDED_FOR`, or until it writes: its
    /// clients want the name no longer, or never did. Clients that all
    /// talk to one node (as every client that starts at the first of the
    /// same endpoints does) then never wait for members with nobody to
    /// grant to. Members may judge this differently for a while; that costs
    /// at most a duel, which the rule after a pre-emption settles.
    pub(super) fn first_refusal(
        &mut self,
        value: &LeaseValue,
        age: Micros,
        top: Ballot,
    ) -> Option<bool> {
        let grace = Micros(self.shared.timing.backoff_max.0 / 8);
        let ops = &running(self.state).ops;
        let plain_acquires = ops
            .iter()
            .all(|p| p.op.is_read() || (matches!(p.op, Op::Acquire { .. }) && p.wait.is_none()))
            && !ops.iter().all(|p| p.op.is_read());
        let free = matches!(
            lease::view(value, age, &self.shared.rules),
            lease::LeaseView::Free { .. }
        );
        let (now, node) = (self.now, self.shared.node);
        // Two fields borrowed apart: the members are not copied per call.
        let members = self.shared.quorums.members();
        let contention = self
            .shared
            .contended
            .get_mut(self.name)
            .filter(|c| c.until > now)?;
        learn_who_passed(contention, top, now);
        if !plain_acquires || !free || top == Ballot::ZERO || age >= grace {
            return None;
        }
        let writer = members.iter().position(|m| m.0 == top.node);
        let idle = |m: NodeId| {
            m != node
                && contention
                    .idle
                    .iter()
                    .any(|&(i, until)| i == m && until > now)
        };
        let after = match writer {
            None => members[0],
            Some(at) => (1..=members.len())
                .map(|k| members[(at + k) % members.len()])
                .find(|&m| !idle(m))
                .unwrap_or(node),
        };
        if after != node {
            contention.deferred = Some((top, after));
        }
        Some(after == node)
    }

    /// Another proposer's ballot `promised` is ahead: it is about to
    /// write. Let it: wait until its write lands here (or a pause runs
    /// out, should it never come), then look at what it wrote before
    /// writing again. Preparing again at once would pre-empt it in turn,
    /// and proposers that keep doing that to each other finish nothing.
    pub(super) fn on_preempted(&mut self, promised: Ballot) {
        self.drop_fast_path();
        let max = self.shared.timing.backoff_max;
        // Long enough for a write on a slow disk; not so long that a round
        // which never writes (its promises showed nothing to do) holds
        // this one up for long.
        let defer_for = Micros(max.0 / 4);
        let round = running(self.state);
        round.preempted += 1;
        round.seen = round.seen.max(promised);
        round.deferring = Some((promised, self.now.plus(defer_for)));
        round.looks = 0;
        let preempted = round.preempted;
        if promised.node == 0 && !round_has_attempt(self.state) {
            // A restarted acceptor's floor, not another proposer: no
            // write will come to wait for. Go above it at once.
            return self.prepare();
        }
        if self.shared.rules.bugs.has(Bug::PrepareToRefuse) {
            // The old rule: prepare again at once, then after random pauses.
            if preempted == 1 {
                return self.prepare();
            }
            let pause = self.shared.jitter.below(backoff_cap(max, preempted));
            let then = Phase::Paused {
                then: AfterPause::Prepare,
                for_write: false,
            };
            return self.set_phase(then, self.now.plus(pause));
        }
        if round_has_attempt(self.state) {
            // Its own write may still be chosen: learn its fate first,
            // while the value still remembers it.
            return self.look();
        }
        self.wait_for_write(backoff_cap(max, preempted + 1));
    }

    /// Pause until this node's acceptor takes another proposer's write, or
    /// for between half of `cap` and `cap`; then look.
    pub(super) fn wait_for_write(&mut self, cap: Micros) {
        let half = Micros(cap.0 / 2);
        let pause = half.saturating_add(self.shared.jitter.below(half));
        let then = Phase::Paused {
            then: AfterPause::Look,
            for_write: true,
        };
        self.set_phase(then, self.now.plus(pause));
    }
}

/// What the value at `top` tells of who wants the name: a member that
/// writes wants it; the one this node deferred to let it pass if a later
/// write is another's.
fn learn_who_passed(contention: &mut Contention, top: Ballot, now: Instant) {
    contention
        .idle
        .retain(|&(m, until)| until > now && m.0 != top.node);
    if let Some((freed_at, to)) = contention.deferred {
        if top > freed_at {
            contention.deferred = None;
            if to.0 != top.node {
                contention.idle.push((to, now.plus(CONTENDED_FOR)));
            }
        }
    }
}

/// Whether a chosen value at `top` shows the write of the proposer whose
/// promise `promised` pre-empted a round. An acceptor that accepted `b`
/// promises `b.successor()`, so a write at the ballot just below the
/// promise, by the same proposer, counts.
pub(super) fn wrote_at_or_after(top: Ballot, promised: Ballot) -> bool {
    let same_proposer = (top.node, top.incarnation) == (promised.node, promised.incarnation);
    top >= promised || (same_proposer && top.counter.saturating_add(1) >= promised.counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_just_below_the_promise_that_pre_empted_counts_as_the_write() {
        let b = |counter, node| Ballot {
            counter,
            node,
            incarnation: 1,
        };
        // Accepting 7 of node 2 promised 8 of node 2: a value at 7 is it.
        assert!(wrote_at_or_after(b(7, 2), b(8, 2)));
        assert!(wrote_at_or_after(b(9, 1), b(8, 2)));
        assert!(!wrote_at_or_after(b(6, 2), b(8, 2)));
        assert!(!wrote_at_or_after(b(7, 1), b(8, 2)));
    }
}
