//! The proposer: runs one Paxos round at a time per name, for a batch of
//! client operations, as an explicit state machine.
//!
//! ```text
//!            ┌──────── all reads ────────► Peeking ──majority agrees──► done
//!  queued ──►│                                │ disagree
//!            ├── won last round (fast) ──► Accepting ◄──┐                │
//!            └──────── otherwise ────────► Preparing ───┘ (value changes, │
//!                                            ▲   or is not yet chosen)    │
//!            Backoff ◄── nack / timeout ─────┴────────────────────────────┘
//! ```
//!
//! A round applies its operations, in order, to the value of the highest
//! accepted ballot it learns, and replies only once the result is chosen.

use crate::ballot::{Ballot, NodeId};
use crate::bugs::Bug;
use crate::input::LeaseName;
use crate::lease::{apply, Change, LeaseValue, Op, Outcome, Rules};
use crate::message::{Message, Report};
use crate::packed::{put_ballot, put_value, put_varint, PackedMap, Packing, Reader};
use crate::time::{Instant, Micros};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The shell's handle for one client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// Why a request got no outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum Failure {
    /// No quorum answered before the request's deadline. When
    /// `outcome_unknown`, a write was sent and may still take effect; a
    /// retried acquire by the same holder then supersedes it.
    #[error("no quorum answered in time (outcome unknown: {outcome_unknown})")]
    Unavailable { outcome_unknown: bool },
    /// Too many requests are queued for this name on this node.
    #[error("too many requests queued for this name")]
    Overloaded,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    pub request: RequestId,
    pub result: Result<Outcome, Failure>,
}

/// Where a message goes: one node, or every member including this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum To {
    All,
    Node(NodeId),
}

/// What the proposer asks the node to do.
#[derive(Debug, Default)]
pub struct Effects {
    pub sends: Vec<(To, Message)>,
    pub replies: Vec<Reply>,
}

/// Timing and sizing of rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timing {
    /// How long a phase waits for a quorum before it starts over.
    pub phase_timeout: Micros,
    /// The longest randomized pause before retrying after a nack.
    pub backoff_max: Micros,
    /// How long a request may wait in all before it fails as unavailable.
    pub request_deadline: Micros,
    /// Requests queued per name on this node; more are refused.
    pub max_queued_per_name: usize,
    /// Operations applied together in one round.
    pub max_batch: usize,
    /// Names for which the fast path is remembered.
    pub max_fast_paths: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            phase_timeout: Micros::from_millis(500),
            backoff_max: Micros::from_millis(20),
            request_deadline: Micros::from_millis(5_000),
            max_queued_per_name: 1_024,
            max_batch: 64,
            max_fast_paths: 100_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pending {
    request: RequestId,
    op: Op,
    deadline: Instant,
}

/// What the winner of the last round knows: acceptors of a majority have
/// promised `ballot`, and `value` was the highest accepted below it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FastPath {
    ballot: Ballot,
    value: LeaseValue,
    /// The value's age when it was last confirmed, and when (local clock).
    /// Confirmation comes after every acceptance, so age + elapsed stays a
    /// lower bound of the lease's true age.
    age: Micros,
    confirmed_at: Instant,
}

impl FastPath {
    fn age(&self, now: Instant) -> Micros {
        self.age.saturating_add(now.since(self.confirmed_at))
    }
}

/// A node keeps up to `max_fast_paths` reservations, most for names whose
/// holders then go quiet, so they are kept packed (see `crate::packed`):
/// `ballot ‖ varint(age) ‖ varint(confirmed_at) ‖ lease value near the
/// ballot`.
struct FastPathPacking;

impl Packing for FastPathPacking {
    type Value = FastPath;

    fn pack(fast: &FastPath, out: &mut Vec<u8>) {
        put_ballot(out, fast.ballot);
        put_varint(out, fast.age.0);
        put_varint(out, fast.confirmed_at.as_micros());
        put_value(out, &fast.value, fast.ballot);
    }

    fn unpack(r: &mut Reader<'_>) -> Option<FastPath> {
        let ballot = r.ballot()?;
        let age = Micros(r.varint()?);
        let confirmed_at = Instant::from_micros(r.varint()?);
        let value = r.value(ballot)?;
        Some(FastPath {
            ballot,
            value,
            age,
            confirmed_at,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Peeking {
        id: u64,
        replies: BTreeMap<NodeId, Option<Report>>,
    },
    Preparing {
        ballot: Ballot,
        promises: BTreeMap<NodeId, Option<Report>>,
    },
    Accepting {
        ballot: Ballot,
        value: LeaseValue,
        age: Micros,
        outcomes: Vec<Outcome>,
        acks: BTreeSet<NodeId>,
    },
    /// Waiting out a randomized pause before preparing above `above`.
    Backoff { above: Ballot },
}

/// A value-changing accept a round sent: at `ballot`, as write number
/// `number` of the register, with these outcomes if it took effect.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Attempt {
    ballot: Ballot,
    number: u64,
    outcomes: Vec<Outcome>,
}

/// Whether a retried round's earlier attempts took effect.
enum Earlier {
    NotApplied,
    Applied(Vec<Outcome>),
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Round {
    ops: Vec<Pending>,
    phase: Phase,
    /// When the current phase times out (or the backoff ends).
    timer: Instant,
    /// Every value-changing accept this round sent, so a retry can tell
    /// whether one of them already took effect.
    attempts: Vec<Attempt>,
    /// How many times another proposer's ballot pre-empted this round.
    preempted: u32,
}

/// Whether an accept proposes a new value (its lease clock starts at
/// acceptance) or re-proposes one unchanged, carrying its observed age.
enum Fresh {
    Yes,
    No { age: Micros },
}

enum Next {
    Wait,
    Quorum,
    Preempted(Ballot),
}

/// A name with requests queued or a round running. Idle names have none,
/// so what a node keeps per idle name is at most its reservation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct NameState {
    queue: VecDeque<Pending>,
    round: Option<Round>,
}

impl NameState {
    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.round.is_none()
    }
}

/// The proposer side of one node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposer {
    node: NodeId,
    incarnation: u32,
    quorum: usize,
    rules: Rules,
    timing: Timing,
    /// Never handed out twice in one incarnation: ballots stay unique.
    next_counter: u64,
    next_peek: u64,
    rng: u64,
    names: BTreeMap<LeaseName, NameState>,
    /// Reservations for the fast path, at most `max_fast_paths`.
    fast: PackedMap<FastPathPacking>,
    /// Round timers by deadline, so the next one is found without a scan.
    timers: BTreeSet<(Instant, LeaseName)>,
}

impl Proposer {
    pub fn new(
        node: NodeId,
        incarnation: u32,
        members: usize,
        rules: Rules,
        timing: Timing,
        first_counter: u64,
        seed: u64,
    ) -> Proposer {
        Proposer {
            node,
            incarnation,
            quorum: members / 2 + 1,
            rules,
            timing,
            next_counter: first_counter.max(1),
            next_peek: 1,
            // xorshift needs a non-zero state.
            rng: seed | 1,
            names: BTreeMap::new(),
            fast: PackedMap::default(),
            timers: BTreeSet::new(),
        }
    }

    /// Queue a client operation; a round starts at once if none is running.
    pub fn submit(
        &mut self,
        now: Instant,
        request: RequestId,
        name: LeaseName,
        op: Op,
        fx: &mut Effects,
    ) {
        let max_queued = self.timing.max_queued_per_name;
        let deadline = now.plus(self.timing.request_deadline);
        let state = self.names.entry(name.clone()).or_default();
        if state.queue.len() >= max_queued {
            fx.replies.push(Reply {
                request,
                result: Err(Failure::Overloaded),
            });
            return;
        }
        state.queue.push_back(Pending {
            request,
            op,
            deadline,
        });
        if state.round.is_none() {
            self.start_round(now, &name, fx);
        }
    }

    /// The earliest round timer, if any.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, fx: &mut Effects) {
        while let Some((at, name)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, name.clone()));
            self.on_timer(now, &name, fx);
        }
    }

    /// A reply from an acceptor.
    pub fn handle_reply(&mut self, now: Instant, from: NodeId, msg: Message, fx: &mut Effects) {
        let name = msg.name().clone();
        let (quorum, me) = (self.quorum, (self.node.0, self.incarnation));
        let Some(round) = self.names.get_mut(&name).and_then(|s| s.round.as_mut()) else {
            return; // Late reply to a finished round.
        };
        let reached = |n: usize| {
            if n >= quorum {
                Next::Quorum
            } else {
                Next::Wait
            }
        };
        let next = match (msg, &mut round.phase) {
            (Message::Peeked { id, accepted, .. }, Phase::Peeking { id: want, replies })
                if id == *want =>
            {
                replies.insert(from, accepted);
                reached(replies.len())
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
                reached(promises.len())
            }
            (
                Message::Accepted { ballot, .. },
                Phase::Accepting {
                    ballot: want, acks, ..
                },
            ) if ballot == *want => {
                acks.insert(from);
                reached(acks.len())
            }
            // A nack naming one of our own ballots answers a duplicate of
            // our own earlier message: nobody else is ahead.
            (
                Message::Nack {
                    ballot, promised, ..
                },
                Phase::Preparing { ballot: want, .. },
            )
            | (
                Message::Nack {
                    ballot, promised, ..
                },
                Phase::Accepting { ballot: want, .. },
            ) if ballot == *want && (promised.node, promised.incarnation) != me => {
                Next::Preempted(promised)
            }
            _ => Next::Wait, // Stale, duplicated or reordered: the round has moved on.
        };
        match (next, self.phase(&name)) {
            (Next::Wait, _) | (_, None) => {}
            (Next::Quorum, Some(Phase::Peeking { .. })) => self.on_peek_quorum(now, &name, fx),
            (Next::Quorum, Some(Phase::Preparing { .. })) => self.on_promise_quorum(now, &name, fx),
            (Next::Quorum, Some(_)) => self.on_chosen(now, &name, fx),
            (Next::Preempted(promised), Some(_)) => {
                self.drop_fast_path(&name);
                let Some(round) = self.names.get_mut(&name).and_then(|s| s.round.as_mut()) else {
                    return;
                };
                round.preempted += 1;
                if round.preempted == 1 {
                    // Usually the last winner's piggybacked promise: retry
                    // above it at once.
                    self.prepare(now, &name, promised, fx);
                } else {
                    // Proposers are duelling: a random pause breaks the tie.
                    let cap = backoff_cap(self.timing.backoff_max, round.preempted);
                    let pause = Micros(self.random_below(cap.0.max(1)));
                    self.set_phase(&name, Phase::Backoff { above: promised }, now.plus(pause));
                }
            }
        }
    }

    fn start_round(&mut self, now: Instant, name: &LeaseName, fx: &mut Effects) {
        let max_batch = self.timing.max_batch;
        let Some(state) = self.names.get_mut(name) else {
            return;
        };
        let take = state.queue.len().min(max_batch);
        if take == 0 {
            self.forget_if_idle(name);
            return;
        }
        let ops: Vec<Pending> = state.queue.drain(..take).collect();
        let all_reads = ops.iter().all(|p| p.op.is_read());
        state.round = Some(Round {
            ops,
            phase: Phase::Backoff {
                above: Ballot::ZERO,
            },
            timer: now,
            attempts: Vec::new(),
            preempted: 0,
        });
        if all_reads {
            self.peek(now, name, fx);
            return;
        }
        if let Some(fast) = self.fast.get(name) {
            let (value, outcomes) = self.apply_ops(name, &fast.value, fast.age(now));
            if let Some(value) = value {
                // The fast path: a majority already promised `fast.ballot`
                // and `fast.value` was the highest value accepted below it.
                self.accept(now, name, fast.ballot, value, Fresh::Yes, outcomes, fx);
                return;
            }
            // Nothing to write: the cached value may be stale, so the answer
            // must come from a quorum. Prepare rather than trust the cache.
        }
        self.drop_fast_path(name);
        self.prepare(now, name, Ballot::ZERO, fx);
    }

    fn peek(&mut self, now: Instant, name: &LeaseName, fx: &mut Effects) {
        // Peek ids carry the incarnation in their high half, so an answer to
        // a peek of an earlier life of this node can never be counted for a
        // peek of this one. Past 2^32 peeks in one life, reads go through
        // phase 1 instead of reusing an id.
        if self.next_peek > u64::from(u32::MAX) {
            self.prepare(now, name, Ballot::ZERO, fx);
            return;
        }
        let id = u64::from(self.incarnation) << 32 | self.next_peek;
        self.next_peek += 1;
        let timeout = now.plus(self.timing.phase_timeout);
        self.set_phase(
            name,
            Phase::Peeking {
                id,
                replies: BTreeMap::new(),
            },
            timeout,
        );
        fx.sends.push((
            To::All,
            Message::Peek {
                name: name.clone(),
                id,
            },
        ));
    }

    fn prepare(&mut self, now: Instant, name: &LeaseName, above: Ballot, fx: &mut Effects) {
        let counter = self.next_counter.max(above.counter.saturating_add(1));
        self.next_counter = counter.saturating_add(1);
        let ballot = Ballot {
            counter,
            node: self.node.0,
            incarnation: self.incarnation,
        };
        let timeout = now.plus(self.timing.phase_timeout);
        self.set_phase(
            name,
            Phase::Preparing {
                ballot,
                promises: BTreeMap::new(),
            },
            timeout,
        );
        fx.sends.push((
            To::All,
            Message::Prepare {
                name: name.clone(),
                ballot,
            },
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        now: Instant,
        name: &LeaseName,
        ballot: Ballot,
        mut value: LeaseValue,
        fresh: Fresh,
        outcomes: Vec<Outcome>,
        fx: &mut Effects,
    ) {
        // Ballots used in an accept are never handed out again.
        self.next_counter = self.next_counter.max(ballot.counter.saturating_add(1));
        let age = match fresh {
            Fresh::Yes => {
                value.writes = value.writes.after(ballot);
                if let Some(round) = self.names.get_mut(name).and_then(|s| s.round.as_mut()) {
                    round.attempts.push(Attempt {
                        ballot,
                        number: value.writes.count,
                        outcomes: outcomes.clone(),
                    });
                }
                Micros::ZERO
            }
            Fresh::No { age } => age,
        };
        let timeout = now.plus(self.timing.phase_timeout);
        fx.sends.push((
            To::All,
            Message::Accept {
                name: name.clone(),
                ballot,
                value: value.clone(),
                age,
            },
        ));
        self.set_phase(
            name,
            Phase::Accepting {
                ballot,
                value,
                age,
                outcomes,
                acks: BTreeSet::new(),
            },
            timeout,
        );
    }

    fn on_peek_quorum(&mut self, now: Instant, name: &LeaseName, fx: &mut Effects) {
        let Some(Phase::Peeking { replies, .. }) = self.phase(name) else {
            return;
        };
        let (value, age, unanimous) = self.highest(replies);
        if !unanimous {
            // The latest value may not be chosen yet: a full round settles it.
            self.prepare(now, name, Ballot::ZERO, fx);
            return;
        }
        // A majority accepted the same ballot: its value is chosen and no
        // later value was chosen before the peek began.
        let (change, outcomes) = self.apply_ops(name, &value, age);
        debug_assert!(change.is_none(), "a peek round carries only reads");
        // A read promises and accepts nothing, so a reservation this node
        // holds is as good as before: keep it, or the holder's next renewal
        // through this node would need phase 1 again.
        let fast = self.fast.get(name);
        self.finish(now, name, outcomes, fast, fx);
    }

    fn on_promise_quorum(&mut self, now: Instant, name: &LeaseName, fx: &mut Effects) {
        let Some(Phase::Preparing { ballot, promises }) = self.phase(name) else {
            return;
        };
        let ballot = *ballot;
        let (value, age, unanimous) = self.highest(promises);
        let (change, outcomes) = match self.earlier_attempts(name, &value) {
            Earlier::NotApplied => self.apply_ops(name, &value, age),
            // Already part of `value`: applying again would apply twice.
            Earlier::Applied(outcomes) => (None, outcomes),
            Earlier::Unknown => {
                self.fail_round(now, name, true, fx);
                return;
            }
        };
        match change {
            Some(fresh) => self.accept(now, name, ballot, fresh, Fresh::Yes, outcomes, fx),
            None if unanimous => {
                // Chosen already and nothing to write: the majority's
                // promises of `ballot` let the next round skip phase 1.
                let fast = FastPath {
                    ballot,
                    value,
                    age,
                    confirmed_at: now,
                };
                self.finish(now, name, outcomes, Some(fast), fx);
            }
            // Maybe not chosen yet: propose it again, unchanged, carrying its
            // age so that re-proposing never extends the lease.
            None => self.accept(now, name, ballot, value, Fresh::No { age }, outcomes, fx),
        }
    }

    fn on_chosen(&mut self, now: Instant, name: &LeaseName, fx: &mut Effects) {
        let Some(Phase::Accepting {
            ballot,
            value,
            age,
            outcomes,
            ..
        }) = self.phase(name).cloned()
        else {
            return;
        };
        let fast = FastPath {
            ballot: ballot.successor(),
            value,
            age,
            confirmed_at: now,
        };
        self.finish(now, name, outcomes, Some(fast), fx);
    }

    fn on_timer(&mut self, now: Instant, name: &LeaseName, fx: &mut Effects) {
        let Some(round) = self.names.get(name).and_then(|s| s.round.as_ref()) else {
            return;
        };
        if round.ops.iter().any(|p| p.deadline <= now) {
            let outcome_unknown = !round.attempts.is_empty();
            self.fail_round(now, name, outcome_unknown, fx);
            return;
        }
        match &round.phase {
            Phase::Backoff { above } => {
                let above = *above;
                self.prepare(now, name, above, fx);
            }
            // No quorum in time: start over with a higher ballot.
            _ => {
                self.drop_fast_path(name);
                self.prepare(now, name, Ballot::ZERO, fx);
            }
        }
    }

    /// End the round without an outcome.
    fn fail_round(
        &mut self,
        now: Instant,
        name: &LeaseName,
        outcome_unknown: bool,
        fx: &mut Effects,
    ) {
        self.drop_fast_path(name);
        let Some(round) = self.clear_round(name) else {
            return;
        };
        fx.replies.extend(round.ops.iter().map(|p| Reply {
            request: p.request,
            result: Err(Failure::Unavailable { outcome_unknown }),
        }));
        self.start_round(now, name, fx);
    }

    /// Did an earlier attempt of this round take effect in `value`?
    fn earlier_attempts(&self, name: &LeaseName, value: &LeaseValue) -> Earlier {
        let attempts = self
            .names
            .get(name)
            .and_then(|s| s.round.as_ref())
            .map(|r| r.attempts.as_slice())
            .unwrap_or_default();
        let mut verdict = Earlier::NotApplied;
        for a in attempts {
            match value.writes.wrote(a.number, a.ballot) {
                Some(true) => return Earlier::Applied(a.outcomes.clone()),
                Some(false) => {}
                None => verdict = Earlier::Unknown,
            }
        }
        verdict
    }

    fn finish(
        &mut self,
        now: Instant,
        name: &LeaseName,
        outcomes: Vec<Outcome>,
        fast: Option<FastPath>,
        fx: &mut Effects,
    ) {
        let Some(round) = self.clear_round(name) else {
            return;
        };
        debug_assert_eq!(round.ops.len(), outcomes.len());
        fx.replies
            .extend(round.ops.iter().zip(outcomes).map(|(p, outcome)| Reply {
                request: p.request,
                result: Ok(outcome),
            }));
        match fast {
            Some(fast) => self.set_fast_path(name, fast),
            None => self.drop_fast_path(name),
        }
        self.start_round(now, name, fx);
    }

    /// The value of the highest accepted ballot among `reports`, its age,
    /// and whether every report names that same ballot (then it is chosen).
    fn highest(&self, reports: &BTreeMap<NodeId, Option<Report>>) -> (LeaseValue, Micros, bool) {
        let top = reports.values().flatten().map(|r| r.ballot).max();
        let Some(top) = top else {
            return (LeaseValue::default(), Micros::ZERO, true);
        };
        let unanimous = reports
            .values()
            .all(|r| r.as_ref().is_some_and(|r| r.ballot == top));
        let value = reports
            .values()
            .flatten()
            .find(|r| r.ballot == top)
            .map(|r| r.value.clone())
            .unwrap_or_default();
        // Each acceptor's age is a lower bound of the same lease's true age,
        // so the largest of them is the best bound. Only ages of the value
        // being judged count: an older ballot's age belongs to another value.
        let any_ballot = self.rules.bugs.has(Bug::AgeOfAnyBallot);
        let age = reports
            .values()
            .flatten()
            .filter(|r| any_ballot || r.ballot == top)
            .map(|r| r.age)
            .max()
            .unwrap_or(Micros::ZERO);
        (value, age, unanimous)
    }

    /// Apply the round's operations in order. Returns the new value if any
    /// operation wrote, and each operation's outcome.
    fn apply_ops(
        &self,
        name: &LeaseName,
        value: &LeaseValue,
        age: Micros,
    ) -> (Option<LeaseValue>, Vec<Outcome>) {
        let ops = self
            .names
            .get(name)
            .and_then(|s| s.round.as_ref())
            .map(|r| r.ops.as_slice())
            .unwrap_or_default();
        let mut current = value.clone();
        let mut current_age = age;
        let mut changed = false;
        let outcomes = ops
            .iter()
            .map(|p| {
                let (change, outcome) = apply(&current, current_age, &p.op, &self.rules);
                if let Change::Fresh(next) = change {
                    current = next;
                    current_age = Micros::ZERO;
                    changed = true;
                }
                outcome
            })
            .collect();
        (changed.then_some(current), outcomes)
    }

    fn phase(&self, name: &LeaseName) -> Option<&Phase> {
        self.names.get(name)?.round.as_ref().map(|r| &r.phase)
    }

    fn set_phase(&mut self, name: &LeaseName, phase: Phase, timer: Instant) {
        let Some(round) = self.names.get_mut(name).and_then(|s| s.round.as_mut()) else {
            return;
        };
        self.timers.remove(&(round.timer, name.clone()));
        let deadline = round.ops.iter().map(|p| p.deadline).min().unwrap_or(timer);
        round.timer = timer.min(deadline);
        round.phase = phase;
        self.timers.insert((round.timer, name.clone()));
    }

    fn clear_round(&mut self, name: &LeaseName) -> Option<Round> {
        let round = self.names.get_mut(name)?.round.take()?;
        self.timers.remove(&(round.timer, name.clone()));
        Some(round)
    }

    fn set_fast_path(&mut self, name: &LeaseName, fast: FastPath) {
        // A ballot is either reserved for the fast path or handed out by
        // `next_counter`, never both: one ballot, one value.
        self.next_counter = self.next_counter.max(fast.ballot.counter.saturating_add(1));
        if !self.names.contains_key(name) {
            return;
        }
        if !self.fast.contains(name) && self.fast.len() >= self.timing.max_fast_paths {
            return; // A bound on memory; the next round just prepares.
        }
        self.fast.insert(name, &fast);
    }

    fn drop_fast_path(&mut self, name: &LeaseName) {
        self.fast.remove(name);
    }

    fn forget_if_idle(&mut self, name: &LeaseName) {
        if self.names.get(name).is_some_and(NameState::is_idle) {
            self.names.remove(name);
        }
    }

    /// xorshift64: determinism comes from the seed the shell passes in.
    fn random_below(&mut self, bound: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % bound
    }
}

/// How many times the pause's bound doubles before it reaches
/// `backoff_max`.
const BACKOFF_DOUBLINGS: u32 = 3;

/// The bound of the random pause after the `preempted`-th pre-emption of
/// a round (2 and up; the first retries at once). It starts at an eighth of
/// `max` and doubles: the loser of a duel of two proposers (two woken
/// waiters) meets the winner's reserved ballot and pauses a few times
/// before it learns the grant, so short first pauses settle the name
/// sooner, while a crowd of proposers spreads out as the bound grows.
fn backoff_cap(max: Micros, preempted: u32) -> Micros {
    let halvings = BACKOFF_DOUBLINGS.saturating_sub(preempted.saturating_sub(2));
    Micros(max.0 >> halvings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::tests::{arb_ballot, arb_value};
    use proptest::prelude::*;

    #[test]
    fn the_pause_after_a_duel_starts_short_and_doubles_up_to_the_maximum() {
        let max = Micros::from_millis(20);
        let caps: Vec<u64> = (2..=7).map(|n| backoff_cap(max, n).0).collect();
        assert_eq!(caps, [2_500, 5_000, 10_000, 20_000, 20_000, 20_000]);
    }

    proptest! {
        #[test]
        fn every_reservation_unpacks_to_itself(
            (ballot, value) in arb_ballot().prop_flat_map(|b| (Just(b), arb_value(b))),
            age in any::<u64>(),
            confirmed_at in any::<u64>(),
        ) {
            let fast = FastPath {
                ballot,
                value,
                age: Micros(age),
                confirmed_at: Instant::from_micros(confirmed_at),
            };
            let name = LeaseName::new("n").unwrap();
            let mut map = PackedMap::<FastPathPacking>::default();
            map.insert(&name, &fast);
            prop_assert_eq!(map.get(&name), Some(fast));
        }
    }
}
