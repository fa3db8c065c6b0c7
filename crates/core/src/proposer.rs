//! The proposer: runs one Paxos round at a time per name, for a batch of
//! client operations, as an explicit state machine.
//!
//! ```text
//!                      value it knows needs no write
//!            ┌──────────────────────────────────────► Looking ──decisive, no write──► done
//!            │                                          │   ▲ indecisive: look again
//!  queued ──►├── won the last round (fast) ──► Accepting ◄──┼───────── decisive, write ──┐
//!            │                                    ▲     │   │                             │
//!            └──────── otherwise ──────────► Preparing ─┘   │                             │
//!                                                ▲   nack: look at what the other wrote  │
//!                                                └──────────┴── (after a pause, from the ┘
//!                                                                second pre-emption on)
//! ```
//!
//! A round applies its operations, in order, to the value of the highest
//! accepted ballot it learns, and replies only once the result is chosen.
//!
//! Contention is the normal case for a lock, so a round writes only when a
//! write is due. An operation that would change nothing (a read, an
//! acquire of a lease held by another) is answered from a quorum read
//! (`Looking`), which promises nothing and so never pre-empts the holder's
//! own renewals and releases. A round that is pre-empted looks at what the
//! other proposer wrote before it prepares again: usually a grant to
//! someone else, which answers its acquires with a conflict.
//!
//! Acquires that may wait join the name's queue in the register
//! (`crate::lease::queue`) and are parked here (`waiting.rs`) until the
//! lease is handed to them, they must look again, or their wait ends.
//!
//! - `round.rs`: the phases of one round, on the borrowed round.
//! - `fast.rs`: the fast-path reservation.
//! - `waiting.rs`: parked waiting acquires and when they look again.
//! - `backoff.rs`: the pause that ends duels.

mod backoff;
mod fast;
mod round;
mod waiting;

use crate::ballot::{Ballot, NodeId};
use crate::input::LeaseName;
use crate::lease::{LeaseValue, LeaseView, Op, Outcome, Rules, WaiterId};
use crate::message::{Chosen, Message, Report};
use crate::quorum::Quorums;
use crate::time::{Instant, Micros};
use backoff::Jitter;
use fast::FastPaths;
use round::{Round, RoundCtx};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use waiting::Parked;

/// The shell's handle for one client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// Why a request got no outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
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

impl Failure {
    /// The failure's name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Unavailable { .. } => "unavailable",
            Failure::Overloaded => "overloaded",
        }
    }
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

/// The phases a round goes through, as reported to the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PhaseKind {
    /// A quorum read: promises nothing.
    Look,
    Prepare,
    Accept,
}

impl PhaseKind {
    pub fn kind(self) -> &'static str {
        match self {
            PhaseKind::Look => "peek",
            PhaseKind::Prepare => "prepare",
            PhaseKind::Accept => "accept",
        }
    }
}

/// What the proposer asks the node to do.
#[derive(Debug, Default)]
pub struct Effects {
    pub sends: Vec<(To, Message)>,
    pub replies: Vec<Reply>,
    /// Phases begun, by name: what a shell counts.
    pub phases: Vec<(LeaseName, PhaseKind)>,
    /// Values this proposer saw chosen, with what they changed.
    pub chosen: Vec<Chosen>,
}

/// Timing and sizing of rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timing {
    /// How long a phase waits for a quorum before it starts over.
    pub phase_timeout: Micros,
    /// The longest randomized pause before retrying after a nack.
    pub backoff_max: Micros,
    /// How long a request may take in all (a waiting acquire: each time
    /// it looks) before it fails as unavailable.
    pub request_deadline: Micros,
    /// Requests queued or waiting per name on this node; more are refused.
    pub max_queued_per_name: usize,
    /// Operations applied together in one round.
    pub max_batch: usize,
    /// Names for which the fast path is remembered.
    pub max_fast_paths: usize,
    /// The longest a waiting acquire goes without looking at its name, in
    /// case the write that handed it the lease never reached this node.
    pub waiter_recheck: Micros,
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
            waiter_recheck: Micros::from_millis(1_000),
        }
    }
}

/// What a proposer is built from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProposerConfig {
    pub node: NodeId,
    pub incarnation: u32,
    /// Who decides: this node is one of the members.
    pub quorums: Quorums,
    pub rules: Rules,
    pub timing: Timing,
    /// Above every ballot counter this node may have promised before.
    pub first_counter: u64,
    /// Seeds the backoff jitter.
    pub seed: u64,
}

/// What this node's own acceptor holds: the proposer's guess, before it
/// asks a quorum, of whether a round must write.
pub trait Local {
    fn report(&self, name: &LeaseName, now: Instant) -> Option<Report>;
}

/// A request in a name's queue, in a round, or parked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pending {
    request: RequestId,
    op: Op,
    /// When it fails as unavailable if its round has not finished.
    deadline: Instant,
    /// For an acquire that may wait.
    wait: Option<Wait>,
}

/// A waiting acquire's place in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Wait {
    id: WaiterId,
    /// When its wait ends, on this node's clock; its last try comes then.
    until: Instant,
    /// A chosen value held it in the name's queue: if it later finds
    /// neither its entry nor a grant handed to it, that grant was lost.
    queued: bool,
    /// Its client has gone: its last try leaves the queue, and a grant
    /// found handed to it is released at once.
    cancelled: bool,
}

/// What a round decided for one request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Verdict {
    Reply(Outcome),
    Fail(Failure),
    /// Wait on; `queued` when the value holds it in the queue.
    Wait {
        view: LeaseView,
        queued: bool,
    },
}

/// A name with requests queued, a round running or acquires waiting. Idle
/// names have none, so what a node keeps per idle name is at most its
/// reservation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct NameState {
    queue: VecDeque<Pending>,
    round: Option<Round>,
    parked: Vec<Parked>,
    /// The name's entry in `Shared::timers`: the earlier of its round's
    /// timer and its parked requests' next look.
    timer: Option<Instant>,
}

impl NameState {
    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.round.is_none() && self.parked.is_empty()
    }

    fn next_timer(&self) -> Option<Instant> {
        let round = self.round.as_ref().map(|r| r.timer);
        let parked = self.parked.iter().map(|p| p.look_at).min();
        round.into_iter().chain(parked).min()
    }
}

/// Everything of the proposer but the per-name state, so that a round can
/// borrow both at once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Shared {
    node: NodeId,
    incarnation: u32,
    /// Who decides, and every member in id order, this node included.
    quorums: Quorums,
    rules: Rules,
    timing: Timing,
    /// Never handed out twice in one incarnation: ballots stay unique.
    next_counter: u64,
    next_peek: u64,
    next_waiter: u64,
    jitter: Jitter,
    /// Reservations for the fast path, at most `max_fast_paths`.
    fast: FastPaths,
    /// Name timers by deadline, so the next one is found without a scan.
    timers: BTreeSet<(Instant, LeaseName)>,
    /// Names that were contended here lately (a refused acquire, a
    /// pre-empted round): the first refusal of a freed lease applies to
    /// these only, so a name nobody else wants never waits.
    contended: BTreeMap<LeaseName, Contention>,
    /// When each peer last answered this node's proposer (any message):
    /// a look asks those that answered last first.
    answered: BTreeMap<NodeId, Instant>,
    /// Peers the shell says this node has lost touch with: their
    /// waiters are passed over by a handoff (`lease::OutOfTouch`).
    out_of_touch: Vec<u16>,
}

/// How long a name counts as contended after the last sign of it.
const CONTENDED_FOR: Micros = Micros::from_millis(1_000);
/// Contended names remembered at most; beyond, those past their time go.
const MAX_CONTENDED: usize = 4_096;

/// A name contended here lately, and what this node learnt of who wants
/// it (`round/contend.rs`, the first refusal).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Contention {
    until: Instant,
    /// This node waited for `.1` to take the lease freed by the write at
    /// `.0`; the next write it sees tells whether `.1` did.
    deferred: Option<(Ballot, NodeId)>,
    /// Members that let a first refusal pass, until when: passed over.
    idle: Vec<(NodeId, Instant)>,
}

impl Shared {
    fn mark_contended(&mut self, name: &LeaseName, now: Instant) {
        if self.contended.len() >= MAX_CONTENDED && !self.contended.contains_key(name) {
            self.contended.retain(|_, c| c.until > now);
            if self.contended.len() >= MAX_CONTENDED {
                return; // A bound on memory: this name forgoes the rule.
            }
        }
        self.contended.entry(name.clone()).or_default().until = now.plus(CONTENDED_FOR);
    }

    /// This node and the peers that answered most recently: the fewest
    /// that decide.
    fn nearest_majority(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self
            .quorums
            .members()
            .iter()
            .copied()
            .filter(|m| *m != self.node)
            .collect();
        // Most recent first; a peer never heard from last, then by id.
        peers.sort_by_key(|p| (std::cmp::Reverse(self.answered.get(p).copied()), *p));
        self.quorums.smallest_from(self.node, &peers)
    }
}

/// The proposer side of one node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposer {
    shared: Shared,
    names: BTreeMap<LeaseName, NameState>,
}

impl Proposer {
    pub fn new(config: ProposerConfig) -> Proposer {
        assert!(
            config.quorums.contains(config.node),
            "a proposer is a member"
        );
        assert!(
            config.incarnation >= 1,
            "incarnation 0 marks unused ballots"
        );
        Proposer {
            shared: Shared {
                node: config.node,
                incarnation: config.incarnation,
                quorums: config.quorums,
                rules: config.rules,
                timing: config.timing,
                next_counter: config.first_counter.max(1),
                next_peek: 1,
                next_waiter: 1,
                jitter: Jitter::new(config.seed),
                fast: FastPaths::default(),
                timers: BTreeSet::new(),
                contended: BTreeMap::new(),
                answered: BTreeMap::new(),
                out_of_touch: Vec::new(),
            },
            names: BTreeMap::new(),
        }
    }

    /// The peers this node has lost touch with, as the shell judges it (a
    /// broken link, nothing heard for a while); every other peer is in
    /// touch. Only whom a handoff passes over depends on it.
    pub fn set_out_of_touch(&mut self, peers: &[NodeId]) {
        self.shared.out_of_touch = peers
            .iter()
            .filter(|p| **p != self.shared.node)
            .map(|p| p.0)
            .collect();
    }

    /// Queue a client operation; a round starts at once if none is running.
    pub fn submit(
        &mut self,
        now: Instant,
        request: RequestId,
        name: LeaseName,
        op: Op,
        local: &dyn Local,
        fx: &mut Effects,
    ) {
        let timing = self.shared.timing;
        let state = self.names.entry(name.clone()).or_default();
        if state.queue.len() + state.parked.len() >= timing.max_queued_per_name {
            fx.replies.push(Reply {
                request,
                result: Err(Failure::Overloaded),
            });
            self.forget_if_idle(&name);
            return;
        }
        let wait = match &op {
            Op::Acquire { wait, .. } if *wait > Micros::ZERO => {
                let seq = self.shared.next_waiter;
                self.shared.next_waiter += 1;
                Some(Wait {
                    id: WaiterId {
                        node: self.shared.node.0,
                        incarnation: self.shared.incarnation,
                        seq,
                    },
                    until: now.plus(*wait),
                    queued: false,
                    cancelled: false,
                })
            }
            _ => None,
        };
        state.queue.push_back(Pending {
            request,
            op,
            deadline: now.plus(timing.request_deadline),
            wait,
        });
        self.with_name(now, &name, local, fx, |r| r.start());
    }

    /// The client of `request` has gone. A waiting acquire leaves the queue
    /// (and releases a grant handed to it); other requests run on, since
    /// their outcome stands either way.
    pub fn cancel(
        &mut self,
        now: Instant,
        request: RequestId,
        local: &dyn Local,
        fx: &mut Effects,
    ) {
        let timing = self.shared.timing;
        let found = self
            .names
            .iter_mut()
            .find_map(|(name, state)| state.cancel(now, request, &timing).then(|| name.clone()));
        if let Some(name) = found {
            self.with_name(now, &name, local, fx, |r| r.start());
        }
    }

    /// The earliest timer, if any.
    pub fn next_timer(&self) -> Option<Instant> {
        self.shared.timers.first().map(|(t, _)| *t)
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, local: &dyn Local, fx: &mut Effects) {
        while let Some((at, name)) = self.shared.timers.first().cloned() {
            if at > now {
                break;
            }
            self.shared.timers.remove(&(at, name.clone()));
            if let Some(state) = self.names.get_mut(&name) {
                state.timer = None;
            }
            self.with_name(now, &name, local, fx, |r| r.on_timer());
        }
    }

    /// A reply from an acceptor.
    pub fn handle_reply(
        &mut self,
        now: Instant,
        from: NodeId,
        msg: Message,
        local: &dyn Local,
        fx: &mut Effects,
    ) {
        let Some(name) = msg.name().cloned() else {
            return; // Not for a round.
        };
        if from != self.shared.node {
            self.shared.answered.insert(from, now);
        }
        if !self.names.contains_key(&name) {
            return; // A late reply to a round long finished.
        }
        self.with_name(now, &name, local, fx, |round| round.on_reply(from, msg));
    }

    /// This node's acceptor accepted `value` for `name`: acquires waiting
    /// here look again if it may concern them, and a round waiting for
    /// another proposer's write goes on.
    pub fn handle_accepted(
        &mut self,
        now: Instant,
        name: &LeaseName,
        value: &LeaseValue,
        local: &dyn Local,
        fx: &mut Effects,
    ) {
        let Some(state) = self.names.get_mut(name) else {
            return; // Nothing runs or waits here for this name.
        };
        state.wake_for(now, value, &self.shared.timing);
        self.with_name(now, name, local, fx, |r| {
            r.on_value_accepted();
            r.start();
        });
    }

    /// Run `step` on `name`'s state, then keep the timer index and the
    /// idle-name rule in order.
    fn with_name(
        &mut self,
        now: Instant,
        name: &LeaseName,
        local: &dyn Local,
        fx: &mut Effects,
        step: impl FnOnce(&mut RoundCtx<'_>),
    ) {
        let Some(state) = self.names.get_mut(name) else {
            return;
        };
        let mut ctx = RoundCtx {
            now,
            name,
            state,
            shared: &mut self.shared,
            local,
            fx,
        };
        step(&mut ctx);
        self.reschedule(name);
        self.forget_if_idle(name);
    }

    fn reschedule(&mut self, name: &LeaseName) {
        let Some(state) = self.names.get_mut(name) else {
            return;
        };
        let next = state.next_timer();
        if next == state.timer {
            return;
        }
        if let Some(old) = state.timer.take() {
            let removed = self.shared.timers.remove(&(old, name.clone()));
            assert!(removed, "a name's timer is in the index");
        }
        if let Some(at) = next {
            self.shared.timers.insert((at, name.clone()));
            state.timer = Some(at);
        }
    }

    fn forget_if_idle(&mut self, name: &LeaseName) {
        if self.names.get(name).is_some_and(NameState::is_idle) {
            let state = self.names.remove(name);
            assert!(
                state.is_some_and(|s| s.timer.is_none()),
                "an idle name has no timer"
            );
        }
    }

    /// The members changed (`configuration.rs`): reservations were won
    /// under the old quorums and answers counted by them count no more,
    /// so every reservation goes and every running round asks again.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        quorums: Quorums,
        local: &dyn Local,
        fx: &mut Effects,
    ) {
        self.shared.quorums = quorums;
        self.shared.fast = FastPaths::default();
        let names: Vec<LeaseName> = self.names.keys().cloned().collect();
        for name in names {
            self.with_name(now, &name, local, fx, |r| r.reconfigured());
        }
    }

    /// Acquires waiting on this node for `name`.
    pub fn waiting(&self, name: &LeaseName) -> usize {
        self.names.get(name).map_or(0, |s| s.parked.len())
    }

    /// Whether a round runs, or requests queue or wait, for `name` here.
    pub(crate) fn is_busy(&self, name: &LeaseName) -> bool {
        self.names.contains_key(name)
    }

    /// A ballot above `above` that no round of this node will use.
    pub(crate) fn fresh_ballot(&mut self, above: Ballot) -> Ballot {
        next_ballot(&mut self.shared, above)
    }

    /// `name` was compacted here: its reservation shows a value that is
    /// gone. (Its ballot is below every member's promise floor by now, so
    /// using it would only be refused.)
    pub(crate) fn forget(&mut self, name: &LeaseName) {
        if !self.is_busy(name) {
            self.shared.fast.remove(name);
        }
    }
}

/// What the highest of a set of reports shows (see `round::apply`), or
/// `None` when nothing is stored under any of them.
pub(crate) fn highest_reported(
    reports: &BTreeMap<NodeId, Option<Report>>,
    rules: &Rules,
    age_rank: usize,
) -> Option<round::apply::Learnt> {
    let learnt = round::apply::highest(reports, rules, age_rank);
    (learnt.top != Ballot::ZERO).then_some(learnt)
}

/// The ballot a proposer of `shared` would use next above `above`.
fn next_ballot(shared: &mut Shared, above: Ballot) -> Ballot {
    let counter = shared.next_counter.max(above.counter.saturating_add(1));
    shared.next_counter = counter.saturating_add(1);
    Ballot {
        counter,
        node: shared.node.0,
        incarnation: shared.incarnation,
    }
}
