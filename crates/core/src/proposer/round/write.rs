//! Writing: phase 1 (prepare, promises) and phase 2 (accept, chosen), and
//! the reservation a chosen value leaves for the next round.

use super::look::widen_after;
use super::*;

impl RoundCtx<'_> {
    pub(super) fn prepare(&mut self) {
        let seen = running(self.state).seen;
        let above = Ballot {
            counter: seen.counter.saturating_add(PREPARE_HEADROOM),
            ..seen
        };
        let ballot = next_ballot(self.shared, above);
        let timeout = self.now.plus(self.shared.timing.phase_timeout);
        self.set_phase(
            Phase::Preparing {
                ballot,
                promises: BTreeMap::new(),
            },
            timeout,
        );
        self.send(
            PhaseKind::Prepare,
            Message::Prepare {
                name: self.name.clone(),
                ballot,
            },
        );
    }

    /// Accept a new value at `ballot`: recorded in its write log and among
    /// this round's attempts, so a retry can tell whether it took effect.
    pub(super) fn propose(
        &mut self,
        ballot: Ballot,
        mut value: LeaseValue,
        clock: LeaseClock,
        Applied {
            verdicts, changes, ..
        }: Applied,
    ) {
        value.writes = value.writes.after(ballot);
        let attempt = Attempt {
            ballot,
            number: value.writes.count,
            verdicts: verdicts.clone(),
            changes: changes.clone(),
        };
        running(self.state).attempts.push(attempt);
        self.send_accept(ballot, value, clock, verdicts, changes);
    }

    /// Accept a value again, unchanged, to make sure it is chosen; it
    /// carries its observed age, so re-proposing never extends a lease.
    /// An earlier attempt of this round's that the value already holds
    /// brings its `changes`, told once the value is chosen.
    pub(super) fn settle(
        &mut self,
        ballot: Ballot,
        value: LeaseValue,
        clock: LeaseClock,
        Applied {
            verdicts, changes, ..
        }: Applied,
    ) {
        self.send_accept(ballot, value, clock, verdicts, changes);
    }

    fn send_accept(
        &mut self,
        ballot: Ballot,
        value: LeaseValue,
        clock: LeaseClock,
        verdicts: Vec<Verdict>,
        changes: Vec<Transition>,
    ) {
        let (age, origin) = (clock.age, clock.origin.unwrap_or(ballot));
        // Ballots used in an accept are never handed out again.
        self.shared.next_counter = self
            .shared
            .next_counter
            .max(ballot.counter.saturating_add(1));
        let timeout = self.now.plus(self.shared.timing.phase_timeout);
        let message = Message::Accept {
            name: self.name.clone(),
            ballot,
            value: value.clone(),
            age,
            origin,
        };
        self.set_phase(
            Phase::Accepting {
                ballot,
                value,
                age,
                origin,
                verdicts,
                changes,
                acks: BTreeMap::new(),
                confirming: false,
            },
            timeout,
        );
        self.send(PhaseKind::Accept, message);
    }

    /// An acceptance arrived. A value is chosen once a quorum holds it
    /// durably, or every member holds it at all: an acceptor that forgets
    /// a lazy acceptance in a crash keeps the same lease with a younger
    /// clock, and with every member's acceptance counted, any quorum that
    /// later judges the lease has only such members in it, so one faulty
    /// clock among them cannot decide its age alone (docs/safety.md,
    /// "Forgetting is aging").
    pub(super) fn on_acknowledged(&mut self) {
        let quorums = &self.shared.quorums;
        let lazy_majority = self.shared.rules.bugs.has(Bug::LazyMajority);
        let Phase::Accepting {
            acks, confirming, ..
        } = &running(self.state).phase
        else {
            unreachable!("acceptances are counted while accepting")
        };
        let durable = quorums.is_quorum(|m| acks.get(&m) == Some(&true));
        let acked = quorums.is_quorum(|m| acks.contains_key(&m));
        if durable || quorums.is_everyone(|m| acks.contains_key(&m)) || (lazy_majority && acked) {
            return self.on_chosen();
        }
        if !acked || *confirming {
            return;
        }
        // The others may be down: wait for them only if they answered
        // lately, and briefly even then.
        let recent = self.now.minus(self.shared.timing.phase_timeout);
        let silent = self
            .shared
            .quorums
            .members()
            .iter()
            .filter(|m| !acks.contains_key(m) && **m != self.shared.node)
            .all(|m| self.shared.answered.get(m).is_none_or(|at| *at < recent));
        if silent {
            return self.confirm_lazy();
        }
        let round = running(self.state);
        round.timer = round
            .timer
            .min(self.now.plus(widen_after(&self.shared.timing)));
    }

    /// Send the accept again to every member that has not accepted it
    /// durably: an acceptor answers a repeat only once everything it wrote
    /// before is durable, its lazy record included.
    pub(super) fn confirm_lazy(&mut self) {
        let timeout = self.now.plus(self.shared.timing.phase_timeout);
        let name = self.name.clone();
        let round = running(self.state);
        let Phase::Accepting {
            ballot,
            value,
            age,
            origin,
            acks,
            confirming,
            ..
        } = &mut round.phase
        else {
            unreachable!("only an accept is confirmed")
        };
        *confirming = true;
        round.timer = timeout;
        for &to in self.shared.quorums.members() {
            if acks.get(&to) == Some(&true) {
                continue;
            }
            let accept = Message::Accept {
                name: name.clone(),
                ballot: *ballot,
                value: value.clone(),
                age: *age,
                origin: *origin,
            };
            self.fx.sends.push((To::Node(to), accept));
        }
    }

    pub(super) fn on_promises(&mut self) {
        let round = running(self.state);
        let Phase::Preparing { ballot, promises } = &round.phase else {
            unreachable!("promises are counted while preparing")
        };
        let ballot = *ballot;
        let Learnt {
            value,
            age,
            origin,
            top,
        } = highest(promises, &self.shared.rules, self.shared.quorums.age_rank());
        let unanimous = promises
            .values()
            .all(|r| r.as_ref().map_or(Ballot::ZERO, |r| r.ballot) == top);
        let mut applied = match self.earlier_attempts(&value) {
            Earlier::NotApplied => self.apply(&value, age, origin),
            // Already part of `value`: applying again would apply twice.
            // What it changed is told once the value is known chosen.
            Earlier::Applied(attempt) => Applied {
                written: None,
                verdicts: attempt.verdicts,
                changes: attempt.changes,
            },
            Earlier::Unknown => return self.fail(true),
        };
        match applied.written.take() {
            Some((next, clock)) => self.propose(ballot, next, clock, applied),
            None if unanimous => {
                // Chosen already and nothing to write: the majority's
                // promises of `ballot` let the next round skip phase 1.
                if !applied.changes.is_empty() {
                    self.report_chosen(top, applied.changes);
                }
                let fast = FastPath {
                    ballot,
                    value,
                    age,
                    origin,
                    confirmed_at: self.now,
                };
                self.finish(applied.verdicts, Reservation::Set(fast));
            }
            // Maybe not chosen yet: propose it again, unchanged.
            None => {
                let clock = LeaseClock::going_on(age, origin);
                self.settle(ballot, value, clock, applied);
            }
        }
    }

    pub(super) fn on_chosen(&mut self) {
        let round = running(self.state);
        let Phase::Accepting {
            ballot,
            value,
            age,
            origin,
            verdicts,
            changes,
            ..
        } = std::mem::replace(
            &mut round.phase,
            Phase::Paused {
                then: AfterPause::Look,
                for_write: false,
            },
        )
        else {
            unreachable!("a value is chosen while accepting")
        };
        self.report_chosen(ballot, changes);
        let fast = FastPath {
            ballot: ballot.successor(),
            value,
            age,
            origin,
            confirmed_at: self.now,
        };
        self.finish(verdicts, Reservation::Set(fast));
    }

    /// Tell the node what a value chosen at `ballot` changed: its grant,
    /// or (no changes) only its queue of waiters.
    pub(super) fn report_chosen(&mut self, ballot: Ballot, changes: Vec<Transition>) {
        let took = self.now.since(running(self.state).started.0);
        self.fx.chosen.push(Chosen {
            name: self.name.clone(),
            ballot,
            took,
            changes,
        });
    }
}
