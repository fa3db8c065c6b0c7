//! One round of one name. Every entry point of the proposer looks the
//! name's state up once and runs one of these handlers on it, borrowed
//! together with the proposer's shared state.

use super::backoff::backoff_cap;
use super::fast::FastPath;
use super::{
    next_ballot, Effects, Failure, Local, NameState, Pending, PhaseKind, Reply, Shared, To, Verdict,
};
use crate::ballot::{Ballot, NodeId};
use crate::bugs::Bug;
use crate::input::LeaseName;
use crate::lease::{self, Answer, Change, LeaseValue, Op, Outcome, Waiting};
use crate::message::{Message, Report};
use crate::time::{Instant, Micros};
use std::collections::{BTreeMap, BTreeSet};

/// Looks in a row that cannot tell which value is chosen (a write is in
/// flight) before the round prepares, which settles it.
const MAX_LOOKS: u32 = 4;

/// How far above the highest ballot it has seen a round prepares. The
/// last winner of a name writes on at its reserved ballots, one counter
/// per write, while a phase 1 is on its way; preparing just one above what
/// was seen would be refused again and again by a busy winner, and the
/// round would starve.
const PREPARE_HEADROOM: u64 = 8;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Round {
    pub ops: Vec<Pending>,
    pub phase: Phase,
    /// When the current phase times out (or the pause ends).
    pub timer: Instant,
    /// Every value-changing accept this round sent, so a retry can tell
    /// whether one of them already took effect.
    attempts: Vec<Attempt>,
    /// How many times another proposer's ballot pre-empted this round, and
    /// the highest ballot it saw promised or accepted.
    preempted: u32,
    seen: Ballot,
    /// Looks in a row that could not tell which value is chosen.
    looks: u32,
    /// While this round lets another proposer write (it was pre-empted):
    /// the ballot it waits to see chosen, and until when it waits.
    deferring: Option<(Ballot, Instant)>,
}

// One phase at a time per running round: its size does not add up.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Phase {
    /// A quorum read (`Peek`): promises nothing. It asks a bare majority
    /// first (this node and the peers that answered most recently), and
    /// the other members only (`widened`) when those answers disagree or
    /// are slow to come.
    Looking {
        id: u64,
        reports: BTreeMap<NodeId, Option<Report>>,
        widened: bool,
    },
    Preparing {
        ballot: Ballot,
        promises: BTreeMap<NodeId, Option<Report>>,
    },
    Accepting {
        ballot: Ballot,
        value: LeaseValue,
        age: Micros,
        verdicts: Vec<Verdict>,
        acks: BTreeSet<NodeId>,
    },
    /// A pause; then the round looks or prepares. A round that waits for
    /// another proposer's write (`for_write`) looks as soon as this node's
    /// acceptor accepts a value for the name, which is usually that write.
    Paused { then: AfterPause, for_write: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum AfterPause {
    Look,
    Prepare,
}

/// A value-changing accept a round sent: at `ballot`, as write number
/// `number` of the register, with these verdicts if it took effect.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Attempt {
    ballot: Ballot,
    number: u64,
    verdicts: Vec<Verdict>,
}

/// Whether a retried round's earlier attempts took effect.
enum Earlier {
    NotApplied,
    Applied(Vec<Verdict>),
    Unknown,
}

/// The round's operations applied to a value.
struct Applied {
    /// The value to write and the age its accept carries (zero when a
    /// grant, renewal or release restarted the lease clock); `None` when
    /// nothing changes.
    written: Option<(LeaseValue, Micros)>,
    verdicts: Vec<Verdict>,
}

/// What a quorum of look answers shows.
enum Looked {
    /// Not enough answers yet.
    Waiting,
    /// The highest ballot reported is held by a majority: its value is
    /// chosen, and nothing later was chosen before the look began.
    Chosen,
    /// No ballot can reach a majority among these answers.
    Unsettled,
}

/// What a finished round leaves for the name's next round.
#[allow(clippy::large_enum_variant)]
enum Reservation {
    Set(FastPath),
    /// A look promised and accepted nothing: a reservation stays as good
    /// as it was.
    Keep,
    Drop,
}

/// A round's handlers, on the name's state and the proposer's shared
/// state, borrowed together for one step.
pub(super) struct RoundCtx<'a> {
    pub now: Instant,
    pub name: &'a LeaseName,
    pub state: &'a mut NameState,
    pub shared: &'a mut Shared,
    pub local: &'a dyn Local,
    pub fx: &'a mut Effects,
}

impl RoundCtx<'_> {
    /// Start a round if none is running and requests are queued.
    pub fn start(&mut self) {
        if self.state.round.is_some() {
            return;
        }
        let take = self.state.queue.len().min(self.shared.timing.max_batch);
        if take == 0 {
            return;
        }
        let ops = self.state.queue.drain(..take).collect();
        self.state.round = Some(Round {
            ops,
            phase: Phase::Paused {
                then: AfterPause::Look,
                for_write: false,
            },
            timer: self.now,
            attempts: Vec::new(),
            preempted: 0,
            seen: Ballot::ZERO,
            looks: 0,
            deferring: None,
        });
        self.begin();
    }

    /// The first phase: write at once only when the value this node knows
    /// says a write is due; otherwise answer from a quorum read.
    fn begin(&mut self) {
        if running(self.state).ops.iter().all(|p| p.op.is_read()) {
            return self.look();
        }
        let report = self.local.report(self.name, self.now);
        let fast = self.shared.fast.get(self.name);
        // This node's acceptor took another proposer's write since the
        // reservation: the reservation is broken, and an accept at it
        // would only be refused.
        let fast = match (fast, &report) {
            (Some(f), Some(r)) if r.ballot >= f.ballot => {
                self.drop_fast_path();
                None
            }
            (fast, _) => fast,
        };
        if let Some(fast) = fast {
            let age = fast.age(self.now);
            let applied = self.apply(&fast.value, age);
            let top = fast.ballot;
            if applied.written.is_some() && self.first_refusal_elsewhere(&fast.value, age, top) {
                return self.wait_for_write(Micros(self.shared.timing.backoff_max.0 / 4));
            }
            if let Some((value, age)) = applied.written {
                // The fast path: a majority already promised `fast.ballot`
                // and `fast.value` was the highest value accepted below it.
                return self.propose(fast.ballot, value, age, applied.verdicts);
            }
        } else {
            let (value, age, top) = report
                .map_or((LeaseValue::default(), Micros::ZERO, Ballot::ZERO), |r| {
                    (r.value, r.age, r.ballot)
                });
            if self.apply(&value, age).written.is_some() {
                running(self.state).seen = top;
                if self.first_refusal_elsewhere(&value, age, top) {
                    // The last writer may grant it at once, on its fast
                    // path: let it, rather than duel for it.
                    return self.wait_for_write(Micros(self.shared.timing.backoff_max.0 / 4));
                }
                return self.prepare();
            }
        }
        if self.shared.rules.bugs.has(Bug::PrepareToRefuse) {
            self.drop_fast_path();
            return self.prepare();
        }
        // Most likely a conflict or a read: a look answers it without a
        // promise, so the holder's own rounds are not pre-empted.
        self.look()
    }

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
    fn first_refusal_elsewhere(&mut self, value: &LeaseValue, age: Micros, top: Ballot) -> bool {
        self.first_refusal(value, age, top) == Some(false)
    }

    /// For a round of plain acquires (and reads) and a lease freed less
    /// than `backoff_max / 8` ago by the write at `top`, on a name this
    /// node saw contended lately: whether this node has its first refusal.
    /// `None` when the rule does not apply (a client cycling a name of its
    /// own never waits for it).
    fn first_refusal(&mut self, value: &LeaseValue, age: Micros, top: Ballot) -> Option<bool> {
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
        let contended = self.shared.is_contended(self.name, self.now);
        if !plain_acquires || !free || top == Ballot::ZERO || age >= grace || !contended {
            return None;
        }
        let members = &self.shared.members;
        let after = members
            .iter()
            .position(|m| m.0 == top.node)
            .map_or(members[0], |at| members[(at + 1) % members.len()]);
        Some(after == self.shared.node)
    }

    /// A reply from an acceptor to one of this name's rounds.
    pub fn on_reply(&mut self, from: NodeId, msg: Message) {
        let me = (self.shared.node.0, self.shared.incarnation);
        let quorum = self.shared.quorum;
        let Some(round) = self.state.round.as_mut() else {
            return; // Late: the round has finished.
        };
        match (msg, &mut round.phase) {
            (
                Message::Peeked { id, accepted, .. },
                Phase::Looking {
                    id: want, reports, ..
                },
            ) if id == *want => {
                reports.insert(from, accepted);
                self.on_look_answer();
            }
            (
                Message::Promise {
                    ballot, accepted, ..
                },
                Phase::Preparing {
                    ballot: want,
                    promises,
                },
            ) if ballot == *want => {
                promises.insert(from, accepted);
                if promises.len() >= quorum {
                    self.on_promises();
                }
            }
            (
                Message::Accepted { ballot, .. },
                Phase::Accepting {
                    ballot: want, acks, ..
                },
            ) if ballot == *want => {
                acks.insert(from);
                if acks.len() >= quorum {
                    self.on_chosen();
                }
            }
            // A nack naming one of our own ballots answers a duplicate of
            // our own earlier message: nobody else is ahead.
            (
                Message::Nack {
                    ballot, promised, ..
                },
                Phase::Preparing { ballot: want, .. } | Phase::Accepting { ballot: want, .. },
            ) if ballot == *want && (promised.node, promised.incarnation) != me => {
                self.on_preempted(promised);
            }
            _ => {} // Stale, duplicated or reordered: the round has moved on.
        }
    }

    /// A timer of this name is due: its round's, or its parked requests'.
    pub fn on_timer(&mut self) {
        let timing = self.shared.timing;
        self.state.wake_due(self.now, &timing);
        let due = self
            .state
            .round
            .as_ref()
            .is_some_and(|r| r.timer <= self.now);
        if due {
            let round = running(self.state);
            if round.ops.iter().any(|p| p.deadline <= self.now) {
                let outcome_unknown = !round.attempts.is_empty();
                return self.fail(outcome_unknown);
            }
            match round.phase {
                // The peers asked first are slow: ask the others too.
                Phase::Looking { widened: false, .. } => self.widen_look(),
                Phase::Paused {
                    then: AfterPause::Look,
                    ..
                } => self.look(),
                Phase::Paused {
                    then: AfterPause::Prepare,
                    ..
                } => self.prepare(),
                // No quorum in time: start over with a higher ballot.
                _ => {
                    self.drop_fast_path();
                    self.prepare();
                }
            }
        }
        self.start();
    }

    /// This node's acceptor accepted a value for the name: a round waiting
    /// for another proposer's write looks now.
    pub fn on_value_accepted(&mut self) {
        let Some(round) = self.state.round.as_ref() else {
            return;
        };
        let looking = matches!(round.phase, Phase::Looking { .. }) && round.attempts.is_empty();
        match round.phase {
            Phase::Paused {
                for_write: true, ..
            } => self.look(),
            // This node has the first refusal of a lease just freed, and
            // its acquires are out looking: grant at once rather than wait
            // for the look (the prepare reads a quorum anyway).
            Phase::Looking { .. } if looking => {
                let Some(r) = self.local.report(self.name, self.now) else {
                    return;
                };
                if self.first_refusal(&r.value, r.age, r.ballot) == Some(true) {
                    let round = running(self.state);
                    round.seen = round.seen.max(r.ballot);
                    self.drop_fast_path();
                    self.prepare();
                }
            }
            _ => {}
        }
    }

    fn look(&mut self) {
        // Peek ids carry the incarnation in their high half, so an answer to
        // a peek of an earlier life of this node can never be counted for a
        // peek of this one. Past 2^32 peeks in one life, rounds go through
        // phase 1 instead of reusing an id.
        if self.shared.next_peek > u64::from(u32::MAX) {
            return self.prepare();
        }
        let id = u64::from(self.shared.incarnation) << 32 | self.shared.next_peek;
        self.shared.next_peek += 1;
        // A majority is enough when it agrees, and most looks find a value
        // at rest: ask this node and the peers that answered last, and the
        // others only if need be (half the messages of asking everyone).
        let asked = self.shared.nearest_majority();
        let widened = asked.len() == self.shared.members.len();
        let timer = if widened {
            self.shared.timing.phase_timeout
        } else {
            widen_after(&self.shared.timing)
        };
        self.set_phase(
            Phase::Looking {
                id,
                reports: BTreeMap::new(),
                widened,
            },
            self.now.plus(timer),
        );
        for to in asked {
            let peek = Message::Peek {
                name: self.name.clone(),
                id,
            };
            self.fx.sends.push((To::Node(to), peek));
        }
        self.fx.phases.push((self.name.clone(), PhaseKind::Look));
    }

    /// Ask every member that has not answered the look.
    fn widen_look(&mut self) {
        let Phase::Looking {
            id,
            reports,
            widened,
        } = &mut running(self.state).phase
        else {
            unreachable!("only a look widens")
        };
        assert!(!*widened, "a look widens once");
        *widened = true;
        let (id, answered): (u64, Vec<NodeId>) = (*id, reports.keys().copied().collect());
        // Everyone that has not answered: those asked first and silent
        // (a lost message) once more, the others for the first time.
        let rest: Vec<NodeId> = self
            .shared
            .members
            .iter()
            .copied()
            .filter(|m| !answered.contains(m))
            .collect();
        let timeout = self.now.plus(self.shared.timing.phase_timeout);
        let round = running(self.state);
        let deadline = round
            .ops
            .iter()
            .map(|p| p.deadline)
            .min()
            .unwrap_or(timeout);
        round.timer = timeout.min(deadline);
        for to in rest {
            let peek = Message::Peek {
                name: self.name.clone(),
                id,
            };
            self.fx.sends.push((To::Node(to), peek));
        }
    }

    fn prepare(&mut self) {
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
    fn propose(
        &mut self,
        ballot: Ballot,
        mut value: LeaseValue,
        age: Micros,
        verdicts: Vec<Verdict>,
    ) {
        value.writes = value.writes.after(ballot);
        let attempt = Attempt {
            ballot,
            number: value.writes.count,
            verdicts: verdicts.clone(),
        };
        running(self.state).attempts.push(attempt);
        self.send_accept(ballot, value, age, verdicts);
    }

    /// Accept a value again, unchanged, to make sure it is chosen; it
    /// carries its observed age, so re-proposing never extends a lease.
    fn settle(&mut self, ballot: Ballot, value: LeaseValue, age: Micros, verdicts: Vec<Verdict>) {
        self.send_accept(ballot, value, age, verdicts);
    }

    fn send_accept(
        &mut self,
        ballot: Ballot,
        value: LeaseValue,
        age: Micros,
        verdicts: Vec<Verdict>,
    ) {
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
        };
        self.set_phase(
            Phase::Accepting {
                ballot,
                value,
                age,
                verdicts,
                acks: BTreeSet::new(),
            },
            timeout,
        );
        self.send(PhaseKind::Accept, message);
    }

    fn on_look_answer(&mut self) {
        let (members, quorum) = (self.shared.members.len(), self.shared.quorum);
        let Phase::Looking {
            reports, widened, ..
        } = &running(self.state).phase
        else {
            unreachable!("answers are counted while looking")
        };
        let widened = *widened;
        let heard_all_asked = reports.len() >= quorum;
        match looked(reports, members, quorum) {
            Looked::Chosen => self.conclude_look(),
            // The majority asked first disagrees: the others may settle it.
            _ if !widened && heard_all_asked => self.widen_look(),
            Looked::Waiting => {}
            Looked::Unsettled => self.look_again(),
        }
    }

    /// A look found the chosen value: answer from it, or write after all.
    fn conclude_look(&mut self) {
        let round = running(self.state);
        let Phase::Looking { reports, .. } = &round.phase else {
            unreachable!("a look concludes while looking")
        };
        let (value, age, top) = highest(reports, &self.shared.rules);
        // An attempt of this round above what the quorum reports may still
        // be accepted; only a value at or above it can tell its fate.
        if round.attempts.iter().any(|a| a.ballot > top) {
            return self.look_again();
        }
        // The proposer this round defers to has not written yet: give it
        // the time it was given, rather than pre-empting it.
        match round.deferring {
            Some((promised, until)) if !wrote_at_or_after(top, promised) && self.now < until => {
                return self.look_again();
            }
            _ => round.deferring = None,
        }
        let applied = match self.earlier_attempts(&value) {
            Earlier::NotApplied => {
                // Chosen at or above every attempt, and without them: none
                // of them can ever take effect now.
                running(self.state).attempts.clear();
                self.apply(&value, age)
            }
            Earlier::Applied(verdicts) => return self.finish(verdicts, Reservation::Drop),
            Earlier::Unknown => return self.fail(true),
        };
        if applied.written.is_none() {
            return self.finish(applied.verdicts, Reservation::Keep);
        }
        // A write is due after all: this node's guess was stale, or the
        // proposer that pre-empted this round is done and left work.
        let round = running(self.state);
        round.seen = round.seen.max(top);
        self.drop_fast_path();
        if self.first_refusal_elsewhere(&value, age, top) {
            return self.wait_for_write(Micros(self.shared.timing.backoff_max.0 / 4));
        }
        self.prepare();
    }

    /// The answers so far cannot show a chosen value: a write is in flight.
    /// Look again once it lands (or after a pause), and after a few tries
    /// prepare, which settles a value that only a minority accepted.
    fn look_again(&mut self) {
        let round = running(self.state);
        round.looks += 1;
        let deferring = round.deferring.is_some_and(|(_, until)| self.now < until);
        if round.looks >= MAX_LOOKS && !deferring {
            round.looks = 0;
            round.deferring = None;
            return self.prepare();
        }
        let cap = backoff_cap(self.shared.timing.backoff_max, round.looks + 1);
        self.wait_for_write(cap);
    }

    fn on_promises(&mut self) {
        let round = running(self.state);
        let Phase::Preparing { ballot, promises } = &round.phase else {
            unreachable!("promises are counted while preparing")
        };
        let ballot = *ballot;
        let (value, age, top) = highest(promises, &self.shared.rules);
        let unanimous = promises
            .values()
            .all(|r| r.as_ref().map_or(Ballot::ZERO, |r| r.ballot) == top);
        let applied = match self.earlier_attempts(&value) {
            Earlier::NotApplied => self.apply(&value, age),
            // Already part of `value`: applying again would apply twice.
            Earlier::Applied(verdicts) => Applied {
                written: None,
                verdicts,
            },
            Earlier::Unknown => return self.fail(true),
        };
        match applied.written {
            Some((next, next_age)) => self.propose(ballot, next, next_age, applied.verdicts),
            None if unanimous => {
                // Chosen already and nothing to write: the majority's
                // promises of `ballot` let the next round skip phase 1.
                let fast = FastPath {
                    ballot,
                    value,
                    age,
                    confirmed_at: self.now,
                };
                self.finish(applied.verdicts, Reservation::Set(fast));
            }
            // Maybe not chosen yet: propose it again, unchanged.
            None => self.settle(ballot, value, age, applied.verdicts),
        }
    }

    fn on_chosen(&mut self) {
        let round = running(self.state);
        let Phase::Accepting {
            ballot,
            value,
            age,
            verdicts,
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
        let fast = FastPath {
            ballot: ballot.successor(),
            value,
            age,
            confirmed_at: self.now,
        };
        self.finish(verdicts, Reservation::Set(fast));
    }

    /// Another proposer's ballot `promised` is ahead: it is about to
    /// write. Let it: wait until its write lands here (or a pause runs
    /// out, should it never come), then look at what it wrote before
    /// writing again. Preparing again at once would pre-empt it in turn,
    /// and proposers that keep doing that to each other finish nothing.
    fn on_preempted(&mut self, promised: Ballot) {
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
    fn wait_for_write(&mut self, cap: Micros) {
        let half = Micros(cap.0 / 2);
        let pause = half.saturating_add(self.shared.jitter.below(half));
        let then = Phase::Paused {
            then: AfterPause::Look,
            for_write: true,
        };
        self.set_phase(then, self.now.plus(pause));
    }

    /// End the round without an outcome. A waiting acquire whose fate is
    /// known (nothing was written) waits on and looks again later.
    /// End the round without an outcome. A request that the value itself
    /// shows as done or not done (see `idempotent`) is not failed: a
    /// waiting acquire waits on and looks again later, and one still
    /// inside its deadline goes into the next round. The others fail; when
    /// a write was sent for them, with an unknown outcome.
    fn fail(&mut self, outcome_unknown: bool) {
        self.drop_fast_path();
        let round = self.take_round();
        let timing = self.shared.timing;
        let mut retry = Vec::new();
        for p in round.ops {
            let safe_again = idempotent(&p);
            match p.wait {
                Some(wait) if !wait.cancelled && self.now < wait.until && safe_again => {
                    // Nothing was learnt: it stays as queued as it was.
                    self.state.park(self.now, p, None, wait.queued, &timing);
                }
                _ if outcome_unknown && safe_again && self.now < p.deadline => retry.push(p),
                _ => self.fx.replies.push(Reply {
                    request: p.request,
                    result: Err(Failure::Unavailable { outcome_unknown }),
                }),
            }
        }
        for p in retry.into_iter().rev() {
            self.state.queue.push_front(p);
        }
        self.start();
    }

    fn finish(&mut self, verdicts: Vec<Verdict>, reservation: Reservation) {
        let round = self.take_round();
        assert_eq!(round.ops.len(), verdicts.len(), "one verdict per request");
        let timing = self.shared.timing;
        let refused = verdicts.iter().any(|v| {
            matches!(
                v,
                Verdict::Reply(Outcome::Conflict(_)) | Verdict::Wait { .. }
            )
        });
        if refused || round.preempted > 0 {
            self.shared.mark_contended(self.name, self.now);
        }
        for (p, verdict) in round.ops.into_iter().zip(verdicts) {
            let result = match verdict {
                Verdict::Reply(outcome) => Ok(outcome),
                Verdict::Fail(failure) => Err(failure),
                Verdict::Wait { view, queued } => {
                    self.state
                        .park(self.now, p, view.remaining(), queued, &timing);
                    continue;
                }
            };
            self.fx.replies.push(Reply {
                request: p.request,
                result,
            });
        }
        match reservation {
            Reservation::Set(fast) => self.set_fast_path(fast),
            Reservation::Keep => {}
            Reservation::Drop => self.drop_fast_path(),
        }
        self.start();
    }

    /// Did an earlier attempt of this round take effect in `value`?
    fn earlier_attempts(&mut self, value: &LeaseValue) -> Earlier {
        let round = running(self.state);
        let mut verdict = Earlier::NotApplied;
        for a in &round.attempts {
            match value.writes.wrote(a.number, a.ballot) {
                Some(true) => return Earlier::Applied(a.verdicts.clone()),
                Some(false) => {}
                None => verdict = Earlier::Unknown,
            }
        }
        // Too long ago to tell; but operations that are safe to apply
        // again may simply be applied again.
        if matches!(verdict, Earlier::Unknown) && round.ops.iter().all(idempotent) {
            return Earlier::NotApplied;
        }
        verdict
    }

    /// Apply the round's operations in order to `value` at `age`.
    fn apply(&mut self, value: &LeaseValue, age: Micros) -> Applied {
        let rules = self.shared.rules;
        let now = self.now;
        let mut current = value.clone();
        let mut current_age = age;
        let mut changed = false;
        let mut verdicts = Vec::with_capacity(running(self.state).ops.len());
        for p in &running(self.state).ops {
            let waiting = p.wait.map(|w| Waiting {
                id: w.id,
                left: if w.cancelled {
                    Micros::ZERO
                } else {
                    w.until.since(now)
                },
            });
            if let Some(w) = p.wait {
                let handed = current.grant.as_ref().and_then(|g| g.waiter) == Some(w.id);
                if w.queued && !handed && !current.waiters.contains(w.id) {
                    // It was in a chosen queue, and is neither there nor
                    // holding: a grant was handed to it and lost before
                    // it could learn of it (its node was cut off for a
                    // whole ttl). Saying so beats granting twice.
                    verdicts.push(Verdict::Fail(Failure::Unavailable {
                        outcome_unknown: true,
                    }));
                    continue;
                }
            }
            let (change, answer) = lease::apply(&current, current_age, &p.op, waiting, &rules);
            match change {
                Change::Unchanged => {}
                Change::Fresh(next) => {
                    current = next;
                    current_age = Micros::ZERO;
                    changed = true;
                }
                Change::Kept(next) => {
                    current = next;
                    changed = true;
                }
            }
            let verdict = match answer {
                Answer::Reply(outcome) => {
                    if let (Some(w), Outcome::Granted { token, .. }, Op::Acquire { holder, .. }) =
                        (p.wait, &outcome, &p.op)
                    {
                        if w.cancelled {
                            // Nobody will use it: release it at once, which
                            // hands it to the next waiter.
                            let release = Op::Release {
                                holder: holder.clone(),
                                token: *token,
                            };
                            if let (Change::Fresh(next), _) =
                                lease::apply(&current, current_age, &release, None, &rules)
                            {
                                current = next;
                                current_age = Micros::ZERO;
                                changed = true;
                            }
                        }
                    }
                    Verdict::Reply(outcome)
                }
                Answer::Wait(view) => Verdict::Wait {
                    queued: waiting.is_some_and(|w| current.waiters.contains(w.id)),
                    view,
                },
            };
            verdicts.push(verdict);
        }
        Applied {
            written: changed.then_some((current, current_age)),
            verdicts,
        }
    }

    fn set_phase(&mut self, phase: Phase, timer: Instant) {
        let round = running(self.state);
        let deadline = round.ops.iter().map(|p| p.deadline).min().unwrap_or(timer);
        round.timer = timer.min(deadline);
        round.phase = phase;
    }

    fn send(&mut self, kind: PhaseKind, message: Message) {
        self.fx.sends.push((To::All, message));
        self.fx.phases.push((self.name.clone(), kind));
    }

    fn take_round(&mut self) -> Round {
        self.state
            .round
            .take()
            .expect("a round ends once, while it runs")
    }

    fn set_fast_path(&mut self, fast: FastPath) {
        // A ballot is either reserved for the fast path or handed out by
        // `next_counter`, never both: one ballot, one value.
        self.shared.next_counter = self
            .shared
            .next_counter
            .max(fast.ballot.counter.saturating_add(1));
        let room = self.shared.fast.len() < self.shared.timing.max_fast_paths;
        if room || self.shared.fast.contains(self.name) {
            self.shared.fast.insert(self.name, &fast);
        }
        // Otherwise a bound on memory: the next round just prepares.
    }

    fn drop_fast_path(&mut self) {
        self.shared.fast.remove(self.name);
    }
}

/// How long a look waits for the majority it asked first before it asks
/// the other members too: a peer that has gone quiet costs one look this
/// much once, since the peers that answer are asked first from then on.
fn widen_after(timing: &super::Timing) -> Micros {
    Micros(timing.backoff_max.0 / 8)
}

/// Whether a chosen value at `top` shows the write of the proposer whose
/// promise `promised` pre-empted a round. An acceptor that accepted `b`
/// promises `b.successor()`, so a write at the ballot just below the
/// promise, by the same proposer, counts.
fn wrote_at_or_after(top: Ballot, promised: Ballot) -> bool {
    let same_proposer = (top.node, top.incarnation) == (promised.node, promised.incarnation);
    top >= promised || (same_proposer && top.counter.saturating_add(1) >= promised.counter)
}

fn round_has_attempt(state: &mut NameState) -> bool {
    !running(state).attempts.is_empty()
}

/// The round a handler runs on. A free function, so that borrowing the
/// round leaves the shared state free.
fn running(state: &mut NameState) -> &mut Round {
    state
        .round
        .as_mut()
        .expect("a round handler runs on a running round")
}

/// Whether applying `p` again, after an attempt of unknown fate, is safe:
/// a waiting acquire finds its grant or its place in the queue by its id,
/// a renewal of a live grant restarts its clock once more, and reads change
/// nothing. A plain acquire would grant twice; a release that took effect
/// would report a conflict with itself.
fn idempotent(p: &Pending) -> bool {
    match &p.op {
        Op::Acquire { .. } => p.wait.is_some(),
        Op::Renew { .. } | Op::Read => true,
        Op::Release { .. } => false,
    }
}

/// Whether look answers show a chosen value. `None` reports (nothing
/// accepted) count as the zero ballot.
fn looked(reports: &BTreeMap<NodeId, Option<Report>>, members: usize, quorum: usize) -> Looked {
    let ballot = |r: &Option<Report>| r.as_ref().map_or(Ballot::ZERO, |r| r.ballot);
    let Some(top) = reports.values().map(ballot).max() else {
        return Looked::Waiting;
    };
    let at_top = reports.values().filter(|r| ballot(r) == top).count();
    let unheard = members.saturating_sub(reports.len());
    if at_top >= quorum {
        Looked::Chosen
    } else if at_top + unheard < quorum {
        Looked::Unsettled
    } else {
        Looked::Waiting
    }
}

/// The value of the highest accepted ballot among `reports`, its age, and
/// that ballot (zero when nothing was accepted).
fn highest(
    reports: &BTreeMap<NodeId, Option<Report>>,
    rules: &lease::Rules,
) -> (LeaseValue, Micros, Ballot) {
    let Some(top) = reports.values().flatten().map(|r| r.ballot).max() else {
        return (LeaseValue::default(), Micros::ZERO, Ballot::ZERO);
    };
    let value = reports
        .values()
        .flatten()
        .find(|r| r.ballot == top)
        .map(|r| r.value.clone())
        .unwrap_or_default();
    // Each acceptor's age is a lower bound of the same lease's true age,
    // so the largest of them is the best bound. Only ages of the value
    // being judged count: an older ballot's age belongs to another value.
    let any_ballot = rules.bugs.has(Bug::AgeOfAnyBallot);
    let age = reports
        .values()
        .flatten()
        .filter(|r| any_ballot || r.ballot == top)
        .map(|r| r.age)
        .max()
        .unwrap_or(Micros::ZERO);
    (value, age, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(counter: u64) -> Option<Report> {
        Some(Report {
            ballot: Ballot {
                counter,
                node: 1,
                incarnation: 1,
            },
            value: LeaseValue::default(),
            age: Micros::ZERO,
        })
    }

    fn answers(list: &[(u16, Option<Report>)]) -> BTreeMap<NodeId, Option<Report>> {
        list.iter().map(|(n, r)| (NodeId(*n), r.clone())).collect()
    }

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

    #[test]
    fn a_look_is_decided_once_the_top_ballot_has_a_majority() {
        let two_of_three = answers(&[(1, report(5)), (2, report(5))]);
        assert!(matches!(looked(&two_of_three, 3, 2), Looked::Chosen));
        // Split answers wait for the third, which decides either way.
        let split = answers(&[(1, report(5)), (2, report(4))]);
        assert!(matches!(looked(&split, 3, 2), Looked::Waiting));
        let settled = answers(&[(1, report(5)), (2, report(4)), (3, report(4))]);
        assert!(matches!(looked(&settled, 3, 2), Looked::Unsettled));
        let chosen = answers(&[(1, report(5)), (2, report(4)), (3, report(5))]);
        assert!(matches!(looked(&chosen, 3, 2), Looked::Chosen));
        // Nothing accepted anywhere is a value too: the empty register.
        let empty = answers(&[(1, None), (2, None)]);
        assert!(matches!(looked(&empty, 3, 2), Looked::Chosen));
    }
}
