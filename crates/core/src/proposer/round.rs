//! One round of one name. Every entry point of the proposer looks the
//! name's state up once and runs one of these handlers on it, borrowed
//! together with the proposer's shared state.
//!
//! - `look.rs`: quorum reads, asked of a bare majority first.
//! - `contend.rs`: pre-emption, waiting for another's write, the first
//!   refusal of a freed lease.
//! - `apply.rs`: operations applied to a value; earlier attempts' fate.
//! - `write.rs`: phase 1 and phase 2, and what a chosen value leaves.

use super::backoff::backoff_cap;
use super::fast::FastPath;
use super::{
    next_ballot, Effects, Failure, Local, NameState, Pending, PhaseKind, Reply, Shared, Timing, To,
    Verdict,
};
use crate::ballot::{Ballot, NodeId};
use crate::bugs::Bug;
use crate::input::LeaseName;
use crate::lease::{
    self, Answer, Change, LeaseValue, Op, OutOfTouch, Outcome, Transition, Waiting,
};
use crate::message::{Chosen, Message, Report};
use crate::quorum::Quorums;
use crate::time::{Instant, Micros};
use std::collections::{BTreeMap, BTreeSet};

pub(super) mod apply;
mod contend;
mod look;
mod write;

use apply::{highest, idempotent, Learnt};
use contend::wrote_at_or_after;

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
    /// When the round began: how long its changes took.
    started: Began,
}

/// When a round began. Reported, never decided on, so it is left out of
/// equality and hashing: the state model checking explores.
#[derive(Clone, Copy, Debug)]
pub(super) struct Began(pub Instant);

impl PartialEq for Began {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Began {}

impl std::hash::Hash for Began {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
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
        /// Those whose report was accepted lazily, not yet durable.
        lazy: BTreeSet<NodeId>,
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
        origin: Ballot,
        verdicts: Vec<Verdict>,
        /// What the value changed, reported once it is chosen.
        changes: Vec<Transition>,
        /// Who accepted, and whether durably (false: lazily).
        acks: BTreeMap<NodeId, bool>,
        /// The accept was sent again to have lazy acceptances made durable.
        confirming: bool,
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
    changes: Vec<Transition>,
}

/// Whether a retried round's earlier attempts took effect.
enum Earlier {
    NotApplied,
    /// This attempt was chosen, though its round never heard so.
    Applied(Attempt),
    Unknown,
}

/// The lease clock an accept carries: the value's age, and the ballot of
/// the accept that started the clock, or `None` when it starts at the
/// accept that carries it (a grant, renewal or release restarted it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct LeaseClock {
    age: Micros,
    origin: Option<Ballot>,
}

impl LeaseClock {
    /// The clock of a value that goes on from `origin` at `age`.
    fn going_on(age: Micros, origin: Ballot) -> LeaseClock {
        LeaseClock {
            age,
            origin: Some(origin),
        }
    }

    /// The same clock, credited with no more than `age`.
    fn at_most(self, age: Micros) -> LeaseClock {
        LeaseClock {
            age: self.age.min(age),
            ..self
        }
    }
}

/// The round's operations applied to a value.
struct Applied {
    /// The value to write and the lease clock its accept carries; `None`
    /// when nothing changes.
    written: Option<(LeaseValue, LeaseClock)>,
    verdicts: Vec<Verdict>,
    changes: Vec<Transition>,
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
        let mut ops: Vec<_> = self.state.queue.drain(..take).collect();
        // Stable: acquires keep their order of arrival, which is the
        // order a queue of waiters is served in.
        ops.sort_by_key(|p| p.op.batch_rank());
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
            started: Began(self.now),
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
        // The reservation's age is what a quorum showed when it was
        // confirmed; the time since is this node's clock alone, which may
        // be the faulty one. The fast path decides only what both ages
        // agree on: when this clock alone says the lease ran out, phase 1
        // asks the acceptors' clocks (docs/safety.md, "One faulty clock").
        let trust_one_clock = self.shared.rules.bugs.has(Bug::TrustOneClock);
        let fast = match fast {
            Some(f)
                if !trust_one_clock
                    && !lease::same_status(
                        &f.value,
                        f.age,
                        f.age(self.now),
                        &self.shared.rules,
                    ) =>
            {
                self.drop_fast_path();
                None
            }
            fast => fast,
        };
        if let Some(fast) = fast {
            let age = fast.age(self.now);
            let mut applied = self.apply(&fast.value, age, fast.origin);
            let top = fast.ballot;
            if applied.written.is_some() && self.first_refusal_elsewhere(&fast.value, age, top) {
                return self.wait_for_write(Micros(self.shared.timing.backoff_max.0 / 4));
            }
            if let Some((value, clock)) = applied.written.take() {
                // The fast path: a majority already promised `fast.ballot`
                // and `fast.value` was the highest value accepted below it.
                // A clock that goes on carries the reservation's age, not
                // this node's time since.
                let clock = if trust_one_clock {
                    clock
                } else {
                    clock.at_most(fast.age)
                };
                return self.propose(fast.ballot, value, clock, applied);
            }
        } else {
            let (value, age, top) = report
                .map_or((LeaseValue::default(), Micros::ZERO, Ballot::ZERO), |r| {
                    (r.value, r.age, r.ballot)
                });
            // Only which way to go: phase 1 or a look judges again.
            if self.apply(&value, age, top).written.is_some() {
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

    /// A reply from an acceptor to one of this name's rounds.
    pub fn on_reply(&mut self, from: NodeId, msg: Message) {
        let me = (self.shared.node.0, self.shared.incarnation);
        let Some(round) = self.state.round.as_mut() else {
            return; // Late: the round has finished.
        };
        if round.ops.iter().any(|p| p.deadline <= self.now) {
            // Past its deadline, as its timer would have found had it run
            // first: a round that resumes after a long pause must not
            // finish on state that may have moved on without it (its name
            // compacted, and with it the write log that tells a retry
            // whether its first attempt took effect).
            let outcome_unknown = !round.attempts.is_empty();
            return self.fail(outcome_unknown);
        }
        match (msg, &mut round.phase) {
            (
                Message::Peeked {
                    id,
                    accepted,
                    durable,
                    ..
                },
                Phase::Looking {
                    id: want,
                    reports,
                    lazy,
                    ..
                },
            ) if id == *want => {
                reports.insert(from, accepted);
                if !durable {
                    lazy.insert(from);
                }
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
                if self.shared.quorums.is_quorum(|m| promises.contains_key(&m)) {
                    self.on_promises();
                }
            }
            (
                Message::Accepted {
                    ballot, durable, ..
                },
                Phase::Accepting {
                    ballot: want, acks, ..
                },
            ) if ballot == *want => {
                *acks.entry(from).or_insert(durable) |= durable;
                self.on_acknowledged();
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
                // A majority answered, disagreeing, and the rest are slow
                // (`hear_the_rest_briefly`): look again.
                Phase::Looking { ref reports, .. }
                    if self.shared.quorums.is_quorum(|m| reports.contains_key(&m)) =>
                {
                    self.look_again()
                }
                Phase::Paused {
                    then: AfterPause::Look,
                    ..
                } => self.look(),
                Phase::Paused {
                    then: AfterPause::Prepare,
                    ..
                } => self.prepare(),
                // A quorum accepted, some lazily, and the rest are slow.
                Phase::Accepting {
                    ref acks,
                    confirming: false,
                    ..
                } if self.shared.quorums.is_quorum(|m| acks.contains_key(&m)) => {
                    self.confirm_lazy()
                }
                // No quorum in time: start over with a higher ballot.
                _ => {
                    self.drop_fast_path();
                    self.prepare();
                }
            }
        }
        self.start();
    }

    /// The configuration changed: a running round's answers were counted
    /// under the old quorums, so it asks again under the new ones; a
    /// paused one will when its pause ends.
    pub fn reconfigured(&mut self) {
        let Some(round) = self.state.round.as_ref() else {
            return;
        };
        match round.phase {
            Phase::Paused { .. } => {}
            Phase::Looking { .. } => self.look(),
            Phase::Preparing { .. } | Phase::Accepting { .. } => self.prepare(),
        }
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
