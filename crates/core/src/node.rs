//! One tenure node: an acceptor and a proposer, with the rule that nothing
//! leaves the node before the writes it depends on are durable.
//!
//! # Call order
//!
//! 1. Feed input: [`Node::submit`] (a client operation), [`Node::cancel`]
//!    (its client has gone), [`Node::handle_message`] (a peer message),
//!    [`Node::handle_timeout`] (when [`Node::poll_timeout`] is due).
//! 2. Drain [`Node::poll_write`] and make every write durable, in order, in
//!    as few fsyncs as you like (group commit); then call
//!    [`Node::handle_durable`] with the last id that is durable.
//! 3. Drain [`Node::poll_transmit`] (to peers) and [`Node::poll_reply`] (to
//!    clients). They only ever yield messages whose writes are durable: a
//!    message is held back until every write issued before it was
//!    acknowledged in step 2, so a shell cannot send one too early. (A
//!    lazy acceptance waits only for the writes it depends on: its own
//!    name's and the promise horizon; see `acceptor.rs`. The proposer's
//!    messages and replies do not wait for lazy writes.)
//! 4. Arm a timer for [`Node::poll_timeout`].
//!
//! [`Node::poll_event`] says what changed (a name's holder, a round's
//! phase), for the shell to wake watchers and count; draining it is
//! optional and may happen at any time.
//!
//! Messages a node sends to itself are delivered inside the node, under the
//! same rule.

use crate::acceptor::{Acceptor, Durable, Record};
use crate::ballot::{Ballot, NodeId};
use crate::bugs::Bug;
use crate::change::{Change, ChangeError, ChangeStep};
use crate::compact::{Compaction, Compactor};
use crate::configuration::{same_members, Configuration, ConfigurationError, Epoch, Stamp};
use crate::input::LeaseName;
use crate::lease::{LeaseValue, Op, Rules, Token, TransitionKind};
use crate::message::{Chosen, Message, Report};
use crate::proposer::{
    Effects, Local, PhaseKind, Proposer, ProposerConfig, Reply, RequestId, Timing, To,
};
use crate::quorum::Quorums;
use crate::time::{Instant, Micros};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// The configuration of one node. Every node of a cluster must use the same
/// rules; members may change, by epoch (`configuration.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    pub node: NodeId,
    /// Bumped durably by storage at every start of this node.
    pub incarnation: u32,
    /// The last promise horizon storage made durable (0 for a new store):
    /// the floor of this life's promises (see `acceptor.rs`).
    pub promise_horizon: u64,
    /// The last token floor storage made durable (0 for a new store): no
    /// register this node compacted had a higher token.
    pub token_floor: Token,
    /// The members, as last made durable (the first configuration for a
    /// new store).
    pub configuration: Configuration,
    pub rules: Rules,
    pub timing: Timing,
    /// When names nobody uses are deleted (`compact.rs`).
    pub compaction: Compaction,
    /// Seeds the proposer's backoff jitter.
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(transparent)]
    Configuration(#[from] ConfigurationError),
    #[error("node {0} is not one of the members")]
    NotAMember(NodeId),
    #[error("incarnation must be at least 1 (0 marks ballots no proposer uses)")]
    ZeroIncarnation,
    #[error(
        "names may be compacted after {idle_after} idle, which must be at least twice the request deadline ({request_deadline}): a round may not outlive its name"
    )]
    CompactTooSoon {
        idle_after: Micros,
        request_deadline: Micros,
    },
}

/// The order number of a write; durability is acknowledged by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// Acceptor state to make durable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Write {
    pub id: WriteId,
    pub record: Record,
}

/// A message for a peer, stamped with the sender's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transmit {
    pub to: NodeId,
    pub stamp: Stamp,
    pub message: Message,
}

/// Events kept for the shell at most; see `Node::event`.
const MAX_EVENTS: usize = 4_096;

/// What changed in a node, for the shell to act on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// This node's acceptor accepted a value for `name` whose holder or
    /// token differs from the one it replaced: watchers of the name should
    /// look again. (Changes this node takes no part in are not seen.)
    HolderChanged { name: LeaseName },
    /// A round for `name` began a phase.
    Phase { name: LeaseName, phase: PhaseKind },
    /// A value `proposer` proposed was chosen: what it changed, for the
    /// name's history. Renewals of one grant are told at most once a ttl.
    Chosen { proposer: NodeId, chosen: Chosen },
}

// Messages are the common case; boxing them would allocate per message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Outgoing {
    /// To a peer, stamped with the configuration it was made under: a message of
    /// an old configuration stays of it, however late it leaves.
    Send(NodeId, Stamp, Message),
    Reply(Reply),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    config: Config,
    /// Who decides, and whom this node talks to.
    quorums: Quorums,
    /// The stamp of `config.configuration`.
    stamp: Stamp,
    acceptor: Acceptor,
    proposer: Proposer,
    compactor: Compactor,
    /// Registers this node's acceptor deleted in this life.
    compacted: u64,
    writes: VecDeque<Write>,
    /// The id of the latest write issued (0: none yet).
    last_write: u64,
    durable_through: u64,
    /// Outgoing messages, each with the last write issued before it.
    held: VecDeque<(u64, Outgoing)>,
    /// Lazy acceptances and look answers, each with the last write of its
    /// name it depends on: released as soon as that is durable, ahead of
    /// `held`.
    held_apart: Vec<(u64, Outgoing)>,
    /// The proposer's messages and replies, each with the last write
    /// issued before it that was not lazy (see `absorb`).
    held_proposer: VecDeque<(u64, Outgoing)>,
    /// The id of the latest write issued that was not lazy.
    last_strict: u64,
    /// The last write of each name's state that is not known durable yet
    /// (lazy records aside): what a lazy acceptance or a look answer of
    /// that name waits for.
    unsynced_names: BTreeMap<LeaseName, u64>,
    /// The last lazy record of each name that is not known durable yet.
    lazy_names: BTreeMap<LeaseName, u64>,
    /// The last promise horizon record: every lazy acceptance waits for it.
    horizon_write: u64,
    transmits: VecDeque<Transmit>,
    replies: VecDeque<Reply>,
    events: VecDeque<Event>,
    renewals_told: Advice<RenewalsTold>,
    /// The change of members this node coordinates, if any.
    change: Option<Change>,
    /// Nodes that asked for a rescan at this epoch, answered when it ends.
    rescan_askers: BTreeSet<NodeId>,
    /// The epoch under which this node's last rescan ended.
    rescanned_at: Option<Epoch>,
    /// When this node last told each peer its configuration because the
    /// peer holds another of the same epoch: at most once per settle
    /// timeout, or two such nodes would answer each other for ever.
    told_other: BTreeMap<NodeId, Instant>,
}

impl Local for Acceptor {
    fn report(&self, name: &LeaseName, now: Instant) -> Option<Report> {
        self.report(name, now)
    }
}

impl Node {
    /// Start a node on the state its storage recovered.
    pub fn new(
        config: Config,
        recovered: impl IntoIterator<Item = (LeaseName, Durable)>,
        now: Instant,
    ) -> Result<Node, ConfigError> {
        config.configuration.check()?;
        if !config.configuration.includes(config.node) {
            return Err(ConfigError::NotAMember(config.node));
        }
        if config.incarnation == 0 {
            return Err(ConfigError::ZeroIncarnation);
        }
        let request_deadline = config.timing.request_deadline;
        if let Some(idle_after) = config.compaction.idle_after {
            // A round lives until its request's deadline on its proposer's
            // clock, and a name dies by the age acceptors' clocks give it:
            // twice covers any drift bound below 40 %.
            if idle_after.0 < request_deadline.0.saturating_mul(2) {
                return Err(ConfigError::CompactTooSoon {
                    idle_after,
                    request_deadline,
                });
            }
        }
        let acceptor = Acceptor::recover(
            config.promise_horizon,
            config.token_floor,
            recovered,
            now,
            config.rules.bugs,
        );
        let quorums = config.configuration.quorums();
        let compactor = Compactor::new(
            config.compaction,
            config.node,
            quorums.clone(),
            config.rules,
            now,
        );
        let proposer = Proposer::new(ProposerConfig {
            node: config.node,
            incarnation: config.incarnation,
            quorums: quorums.clone(),
            rules: config.rules,
            timing: config.timing,
            first_counter: acceptor.highest_promise().counter.saturating_add(1),
            seed: config.seed,
        });
        Ok(Node {
            stamp: config.configuration.stamp(),
            config,
            quorums,
            acceptor,
            proposer,
            compactor,
            compacted: 0,
            writes: VecDeque::new(),
            last_write: 0,
            durable_through: 0,
            held: VecDeque::new(),
            held_apart: Vec::new(),
            held_proposer: VecDeque::new(),
            last_strict: 0,
            unsynced_names: BTreeMap::new(),
            lazy_names: BTreeMap::new(),
            horizon_write: 0,
            transmits: VecDeque::new(),
            replies: VecDeque::new(),
            events: VecDeque::new(),
            renewals_told: Advice::default(),
            change: None,
            rescan_askers: BTreeSet::new(),
            rescanned_at: None,
            told_other: BTreeMap::new(),
        })
    }

    pub fn id(&self) -> NodeId {
        self.config.node
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The members this node acts under now.
    pub fn configuration(&self) -> &Configuration {
        &self.config.configuration
    }

    pub fn epoch(&self) -> Epoch {
        self.config.configuration.epoch
    }

    /// What this node's messages are stamped with.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// A client operation on `name`; its reply comes from [`Node::poll_reply`].
    pub fn submit(&mut self, now: Instant, request: RequestId, name: LeaseName, op: Op) {
        let mut fx = Effects::default();
        self.proposer
            .submit(now, request, name, op, &self.acceptor, &mut fx);
        self.absorb(now, fx);
        self.pump(now);
    }

    /// The peers this node has lost touch with, by the shell's failure
    /// detector: a waiter on one of them is passed over when the lease is
    /// handed on, so that a node that died with waiters queued does not
    /// cost the lease a ttl per waiter. A hint, never a question of safety.
    pub fn set_out_of_touch(&mut self, peers: &[NodeId]) {
        self.proposer.set_out_of_touch(peers);
    }

    /// The client of `request` has gone. A waiting acquire leaves its
    /// name's queue (releasing a grant handed to it meanwhile) and still
    /// gets a reply, which the shell may drop; other requests run on.
    pub fn cancel(&mut self, now: Instant, request: RequestId) {
        let mut fx = Effects::default();
        self.proposer.cancel(now, request, &self.acceptor, &mut fx);
        self.absorb(now, fx);
        self.pump(now);
    }

    /// A message from peer `from`, stamped with its sender's configuration.
    /// Messages from non-members are dropped; a message of another stamp is
    /// answered with this node's configuration and not acted on
    /// (`configuration.rs`).
    pub fn handle_message(&mut self, now: Instant, from: NodeId, stamp: Stamp, message: Message) {
        if let Message::Configuration(theirs) = message {
            self.on_configuration(now, from, theirs);
        } else if stamp != self.stamp {
            self.tell_configuration(from);
        } else if self.quorums.contains(from) {
            self.deliver(now, from, message);
        }
        self.pump(now);
    }

    /// Adopt `configuration` if it is later than this node's, durably
    /// before anything this node sends under it. A change of members
    /// adopts its configurations through [`Node::change_members`], and
    /// peers learn them from their messages; this moves one node by hand.
    pub fn reconfigure(&mut self, now: Instant, configuration: Configuration) {
        self.adopt(now, configuration);
        self.pump(now);
    }

    fn on_configuration(&mut self, now: Instant, from: NodeId, theirs: Configuration) {
        let ours = self.epoch();
        if theirs.epoch < ours {
            return self.tell_configuration(from);
        }
        let stamp = theirs.stamp();
        if theirs.epoch > ours {
            // A change this node coordinated was finished, or overtaken,
            // elsewhere.
            self.change = None;
            self.adopt(now, theirs);
        }
        // Another configuration of this epoch is not recorded: the first
        // this node adopted stays (`configuration.rs`).
        if stamp == self.stamp {
            // Sent once the configuration is durable here.
            self.hold(from, Message::Recorded);
        } else if stamp.epoch == self.epoch() {
            // Two changes begun at once: each side learns the other's.
            if let Some(change) = self.change.as_mut() {
                change.holds_other(from, stamp);
            }
            let settle = self.config.compaction.settle_timeout;
            let due = self
                .told_other
                .get(&from)
                .is_none_or(|t| now >= t.plus(settle));
            if due {
                self.told_other.insert(from, now);
                self.tell_configuration(from);
            }
        }
    }

    /// Move the members to `target`, coordinated by this node
    /// (`change.rs`). Asking again for the change under way resumes it,
    /// on this node or any other; asking for the members there are does
    /// nothing. [`Node::change_step`] says how far it is.
    pub fn change_members(&mut self, now: Instant, target: Vec<NodeId>) -> Result<(), ChangeError> {
        self.change_members_at(now, target, &BTreeMap::new())
    }

    /// [`Node::change_members`], with the addresses of members new to the
    /// cluster, which the configuration carries to every node.
    pub fn change_members_at(
        &mut self,
        now: Instant,
        target: Vec<NodeId>,
        addresses: &BTreeMap<NodeId, String>,
    ) -> Result<(), ChangeError> {
        let current = &self.config.configuration;
        if current.joining.is_empty() {
            if current.is_settled_on(&target) {
                return Ok(());
            }
            let joint = current.joint_to(target, addresses);
            joint.check()?;
            self.adopt(now, joint);
        } else if !same_members(&current.joining, &target) {
            return Err(ChangeError::UnderWay {
                under_way: current.joining.clone(),
            });
        }
        let c = &self.config.configuration;
        let everyone = c.quorums().members().to_vec();
        self.change = Some(Change::new(self.config.node, &c.members, &everyone, now));
        self.ask_change(now);
        self.pump(now);
        Ok(())
    }

    /// How far the change this node coordinates is; `None` when it
    /// coordinates none.
    pub fn change_step(&self) -> Option<ChangeStep> {
        self.change.as_ref().map(Change::step)
    }

    /// Ask those that have not answered the change's step, when due.
    fn ask_change(&mut self, now: Instant) {
        let Some(change) = self.change.as_mut() else {
            return;
        };
        if change.ask_at > now {
            return;
        }
        change.ask_at = now.plus(self.config.compaction.settle_timeout);
        if change.cannot_come_into_force() {
            // Staggered by id, so that of several stuck coordinators one
            // moves on first and the others follow its configuration.
            let since = *change.stuck_since.get_or_insert(now);
            let stagger = u64::from(self.config.node.0 % 3);
            let wait = Micros(self.config.compaction.settle_timeout.0 * stagger);
            if now >= since.plus(wait) {
                return self.move_on(now);
            }
        }
        let asking = match change.step() {
            ChangeStep::Recording => Message::Configuration(self.config.configuration.clone()),
            ChangeStep::Rescanning => Message::Rescan,
        };
        let unanswered = change.unanswered();
        for to in unanswered {
            self.hold(to, asking.clone());
        }
    }

    /// The change's joint configuration can never come into force: begin
    /// the same change again at the next epoch, from the same old
    /// members. Safe because no configuration of this epoch came into
    /// force, so nothing was chosen under any of them
    /// (docs/membership.md, "Two changes at once").
    fn move_on(&mut self, now: Instant) {
        let current = &self.config.configuration;
        let next = current.joint_to(current.joining.clone(), &BTreeMap::new());
        self.adopt(now, next);
        let c = &self.config.configuration;
        let everyone = c.quorums().members().to_vec();
        self.change = Some(Change::new(self.config.node, &c.members, &everyone, now));
        self.ask_change(now);
    }

    /// `from` answered the change's `step`: on to the next once a
    /// majority of the old members has.
    fn on_change_answer(&mut self, now: Instant, from: NodeId, step: ChangeStep) {
        let Some(change) = self.change.as_mut() else {
            return;
        };
        if !change.answered(from, step) {
            return;
        }
        let skip_rescan = self.config.rules.bugs.has(Bug::SkipRescan);
        match step {
            ChangeStep::Recording if !skip_rescan => {
                change.rescan(now);
                self.ask_change(now);
            }
            ChangeStep::Recording | ChangeStep::Rescanning => {
                let everyone = change.everyone().to_vec();
                self.change = None;
                self.adopt(now, self.config.configuration.completed());
                for to in everyone {
                    if to != self.config.node {
                        self.tell_configuration(to);
                    }
                }
            }
        }
    }

    /// A peer asks this node to rescan under the current epoch.
    fn on_rescan_asked(&mut self, now: Instant, from: NodeId) {
        if self.rescanned_at == Some(self.epoch()) {
            return self.hold(from, Message::Rescanned);
        }
        self.rescan_askers.insert(from);
        if !self.compactor.rescanning() {
            self.begin_rescan(now);
        }
    }

    /// Tell those that asked once this node's rescan has ended.
    fn tell_rescanned(&mut self) {
        if self.rescan_askers.is_empty() || self.compactor.rescanning() {
            return;
        }
        self.rescanned_at = Some(self.epoch());
        for to in std::mem::take(&mut self.rescan_askers) {
            self.hold(to, Message::Rescanned);
        }
    }

    /// Answer a message of another epoch: the node that is behind adopts
    /// the later configuration. Held behind this node's writes, so that
    /// the configuration it tells is durable here first.
    fn tell_configuration(&mut self, to: NodeId) {
        let ours = Message::Configuration(self.config.configuration.clone());
        self.hold(to, ours);
    }

    fn adopt(&mut self, now: Instant, configuration: Configuration) {
        if configuration.epoch <= self.epoch() || configuration.check().is_err() {
            return;
        }
        self.issue(Record::Configuration(configuration.clone()), true);
        self.quorums = configuration.quorums();
        self.stamp = configuration.stamp();
        self.config.configuration = configuration;
        self.compactor.reconfigure(self.quorums.clone());
        // A rescan ends under the epoch it ran in: one under way starts
        // over under the new quorums, and those that asked ask again.
        self.rescan_askers.clear();
        self.rescanned_at = None;
        if self.compactor.rescanning() {
            self.begin_rescan(now);
        }
        let mut fx = Effects::default();
        self.proposer
            .reconfigure(now, self.quorums.clone(), &self.acceptor, &mut fx);
        self.absorb(now, fx);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut fx = Effects::default();
        self.proposer.handle_timeout(now, &self.acceptor, &mut fx);
        self.absorb(now, fx);
        self.compact_step(now);
        self.rescan_step(now);
        self.tell_rescanned();
        self.ask_change(now);
        self.pump(now);
    }

    /// Carry every name this node stores onto a quorum of its current
    /// configuration: the rescan of a change of members
    /// (docs/membership.md). Runs in steps at [`Node::handle_timeout`];
    /// [`Node::rescanning`] says when it is over.
    pub fn start_rescan(&mut self, now: Instant) {
        self.begin_rescan(now);
        self.pump(now);
    }

    fn begin_rescan(&mut self, now: Instant) {
        let mut fx = Effects::default();
        let floor = self.acceptor.token_floor();
        self.compactor.start_rescan(now, floor, &mut fx);
        self.absorb(now, fx);
    }

    /// Whether a rescan is still running.
    pub fn rescanning(&self) -> bool {
        self.compactor.rescanning()
    }

    /// Names rescans carried in this life.
    pub fn carried_names(&self) -> u64 {
        self.compactor.carried()
    }

    /// A step of the rescan, when one is due: every name, in use or not,
    /// is settled again at a fresh ballot of this node.
    fn rescan_step(&mut self, now: Instant) {
        let mut fx = Effects::default();
        let Some((cursor, batch)) = self.compactor.rescan_due(now, &mut fx) else {
            return self.absorb(now, fx);
        };
        let found = self.acceptor.scan(cursor.as_ref(), batch, now);
        let seen = found.len();
        let last = found.last().map(|(name, _)| name.clone());
        for (name, _) in found {
            let ballot = self.settle_ballot(&name);
            self.compactor.start_carry(now, name, ballot, &mut fx);
        }
        self.compactor.rescanned(now, batch, seen, last);
        self.absorb(now, fx);
    }

    /// A ballot of this node's for settling `name`, above the promise this
    /// node's acceptor made for it and every promise a settle was refused
    /// for.
    fn settle_ballot(&mut self, name: &LeaseName) -> Ballot {
        let promised = self
            .acceptor
            .durable(name)
            .map_or(Ballot::ZERO, |d| d.promised);
        self.proposer
            .fresh_ballot(promised.max(self.compactor.seen()))
    }

    /// Give up settles that ran out of time, and run a step of the scan
    /// for dead names when one is due.
    fn compact_step(&mut self, now: Instant) {
        self.compactor.expire(now);
        let Some((cursor, batch)) = self.compactor.scan_due(now) else {
            return;
        };
        let found = self.acceptor.scan(cursor, batch, now);
        let seen = found.len();
        let last = found.last().map(|(name, _)| name.clone());
        let mut fx = Effects::default();
        for (name, report) in found {
            let wanted = report.is_some_and(|r| self.compactor.wants(&r));
            if !wanted || self.proposer.is_busy(&name) || !self.compactor.has_room() {
                continue;
            }
            let ballot = self.settle_ballot(&name);
            self.compactor.start(now, name, ballot, &mut fx);
        }
        self.compactor.scanned(now, seen, last);
        self.absorb(now, fx);
    }

    /// Registers this node's acceptor deleted in this life.
    pub fn compacted_names(&self) -> u64 {
        self.compacted
    }

    /// Stored names the last whole scan found free and idle for the
    /// compaction time: not compacted yet, or kept by a member that is down.
    pub fn dead_names(&self) -> u64 {
        self.compactor.dead_names()
    }

    /// The token floor of this node's acceptor.
    pub fn token_floor(&self) -> Token {
        self.acceptor.token_floor()
    }

    /// Every write up to and including `through` is durable.
    ///
    /// Writes become durable in the order they were issued, so a shell
    /// acknowledges ids that never go down, and never one it was not given:
    /// either would mean a message could leave before its write is safe,
    /// and the node stops rather than risk it.
    pub fn handle_durable(&mut self, now: Instant, through: WriteId) {
        assert!(
            through.0 <= self.last_write,
            "acknowledged write {} of {} issued",
            through.0,
            self.last_write
        );
        assert!(
            through.0 >= self.durable_through,
            "durability went back from write {} to {}",
            self.durable_through,
            through.0
        );
        self.durable_through = through.0;
        self.unsynced_names.retain(|_, id| *id > through.0);
        self.lazy_names.retain(|_, id| *id > through.0);
        self.pump(now);
    }

    #[must_use]
    pub fn poll_write(&mut self) -> Option<Write> {
        self.writes.pop_front()
    }

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    #[must_use]
    pub fn poll_reply(&mut self) -> Option<Reply> {
        self.replies.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let change = self.change.as_ref().map(|c| c.ask_at);
        [
            self.proposer.next_timer(),
            self.compactor.next_timer(),
            change,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Writes issued but not yet acknowledged as durable.
    pub fn unsynced_writes(&self) -> u64 {
        self.last_write - self.durable_through
    }

    /// The latest write issued that was not lazy (0: none). Writes after
    /// it are lazy records: nothing this node sends waits for them unless
    /// [`Node::awaited_write`] says so, so a shell may hold them back a
    /// little to share one fsync among many.
    pub fn last_strict_write(&self) -> WriteId {
        WriteId(self.last_strict)
    }

    /// The latest write some held-back message waits for (0: none). A look
    /// answer that reports a lazy record does not wait for it, and does not
    /// make it due: a look that cannot decide from lazy answers prepares,
    /// and a promise waits for every write (docs/protocol.md).
    pub fn awaited_write(&self) -> WriteId {
        let apart = self.held_apart.iter().map(|(gate, _)| *gate).max();
        let back = |queue: &VecDeque<(u64, Outgoing)>| queue.back().map(|(gate, _)| *gate);
        let gate = [apart, back(&self.held), back(&self.held_proposer)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0);
        WriteId(gate)
    }

    /// Messages waiting for their writes to become durable.
    pub fn held_messages(&self) -> usize {
        self.held.len() + self.held_apart.len() + self.held_proposer.len()
    }

    /// This node's acceptor state for `name`, as it would be on disk.
    pub fn acceptor_state(&self, name: &LeaseName) -> Option<Durable> {
        self.acceptor.durable(name)
    }

    /// How many names this node's acceptor stores.
    pub fn stored_names(&self) -> usize {
        self.acceptor.len()
    }

    /// Acquires waiting on this node for `name`.
    pub fn waiting(&self, name: &LeaseName) -> usize {
        self.proposer.waiting(name)
    }

    fn deliver(&mut self, now: Instant, from: NodeId, message: Message) {
        let step = match message {
            Message::Prepare { name, ballot } => self.acceptor.handle_prepare(now, &name, ballot),
            Message::Accept {
                name,
                ballot,
                value,
                age,
                origin,
            } => {
                let before = self.acceptor.holder_and_token(&name);
                let step = self
                    .acceptor
                    .handle_accept(now, &name, ballot, &value, age, origin);
                if step.write.is_some() || step.lazy.is_some() {
                    self.on_accepted(now, &name, &value, before);
                }
                step
            }
            Message::Chosen(chosen) => return self.tell_chosen(now, from, chosen),
            Message::RaiseFloor { token } => {
                if let Some(record) = self.acceptor.raise_token_floor(token) {
                    self.issue(record, true);
                }
                // Answered once every write before it is durable.
                let held = self.acceptor.token_floor();
                return self.hold(from, Message::FloorRaised { token: held });
            }
            Message::FloorRaised { token } => return self.compactor.on_floor_raised(from, token),
            Message::Recorded => return self.on_change_answer(now, from, ChangeStep::Recording),
            Message::Rescan => return self.on_rescan_asked(now, from),
            Message::Rescanned => return self.on_change_answer(now, from, ChangeStep::Rescanning),
            Message::Compact { name, ballot } => {
                if let Some(record) = self.acceptor.handle_compact(&name, ballot) {
                    self.compacted += 1;
                    self.proposer.forget(&name);
                    self.issue(record, true);
                }
                return;
            }
            reply if self.compactor.owns(&reply) => {
                let mut fx = Effects::default();
                self.compactor.on_reply(from, reply, &mut fx);
                return self.absorb(now, fx);
            }
            Message::Peek { name, id } => {
                // A look reveals one name's state: it waits for that name's
                // writes only, and says whether a lazy one is still out.
                let durable = !self.lazy_names.contains_key(&name);
                let gate = self.unsynced_names.get(&name).copied().unwrap_or(0);
                let reply = self.acceptor.handle_peek(now, &name, id, durable);
                self.held_apart
                    .push((gate, Outgoing::Send(from, self.stamp, reply)));
                return;
            }
            reply => {
                let mut fx = Effects::default();
                self.proposer
                    .handle_reply(now, from, reply, &self.acceptor, &mut fx);
                self.absorb(now, fx);
                return;
            }
        };
        if let Some(record) = step.write {
            self.issue(record, true);
        }
        let Some(record) = step.lazy else {
            return self.hold(from, step.reply);
        };
        let name = match &record {
            Record::Register { name, .. } | Record::Compact { name, .. } => {
                self.unsynced_names.get(name).copied()
            }
            Record::Horizon(_) | Record::TokenFloor(_) | Record::Configuration(_) => None,
        };
        let gate = name.unwrap_or(0).max(self.horizon_write);
        self.issue(record, false);
        self.held_apart
            .push((gate, Outgoing::Send(from, self.stamp, step.reply)));
    }

    /// Queue `record` to be made durable; a `strict` one gates the lazy
    /// acceptances of its name (or, for the horizon, of every name).
    fn issue(&mut self, record: Record, strict: bool) {
        self.last_write += 1;
        let names = if strict {
            self.last_strict = self.last_write;
            &mut self.unsynced_names
        } else {
            &mut self.lazy_names
        };
        match &record {
            Record::Register { name, .. } | Record::Compact { name, .. } => {
                names.insert(name.clone(), self.last_write);
            }
            Record::Horizon(_) => self.horizon_write = self.last_write,
            // Nothing waits for these but what is queued after them.
            Record::TokenFloor(_) | Record::Configuration(_) => {}
        }
        self.writes.push_back(Write {
            id: WriteId(self.last_write),
            record,
        });
    }

    /// This node's acceptor took a new value for `name`.
    fn on_accepted(
        &mut self,
        now: Instant,
        name: &LeaseName,
        value: &LeaseValue,
        before: Option<(crate::lease::Token, Option<crate::input::HolderId>)>,
    ) {
        let after = (value.token, value.grant.as_ref().map(|g| g.holder.clone()));
        if before.as_ref() != Some(&after) {
            self.event(Event::HolderChanged { name: name.clone() });
        }
        let mut fx = Effects::default();
        self.proposer
            .handle_accepted(now, name, value, &self.acceptor, &mut fx);
        self.absorb(now, fx);
    }

    /// Events are advice for a shell that may not drain them: the oldest
    /// give way beyond this many.
    fn event(&mut self, event: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Report a chosen value's changes, and send them on to the other
    /// members when this node proposed it.
    fn tell_chosen(&mut self, now: Instant, proposer: NodeId, chosen: Chosen) {
        if !self.renewals_told.tell(now, &chosen) {
            return;
        }
        // Sent at once, not held for this node's writes: a majority has
        // made the value durable, or it would not be chosen.
        if proposer == self.config.node {
            let news = Message::Chosen(news_of(&chosen));
            for &to in self.quorums.members() {
                if to != proposer {
                    let message = news.clone();
                    let stamp = self.stamp;
                    self.transmits.push_back(Transmit { to, stamp, message });
                }
            }
        }
        self.event(Event::Chosen { proposer, chosen });
    }

    fn absorb(&mut self, now: Instant, fx: Effects) {
        for chosen in fx.chosen {
            self.tell_chosen(now, self.config.node, chosen);
        }
        for (name, phase) in fx.phases {
            self.event(Event::Phase { name, phase });
        }
        // What the proposer sends carries what quorums told it, each answer
        // gated at its acceptor, and no state of this node's acceptor: it
        // waits for this node's writes as before, but not for lazy ones,
        // whose loss changes nothing it could have learnt (docs/safety.md,
        // "Forgetting is aging"). So a renewal's reply does not wait for the
        // proposer's own disk either.
        let gate = self.last_strict;
        let stamp = self.stamp;
        for (to, message) in fx.sends {
            match to {
                To::Node(node) => self
                    .held_proposer
                    .push_back((gate, Outgoing::Send(node, stamp, message))),
                To::All => {
                    for &node in self.quorums.members() {
                        let out = Outgoing::Send(node, stamp, message.clone());
                        self.held_proposer.push_back((gate, out));
                    }
                }
            }
        }
        for reply in fx.replies {
            self.held_proposer.push_back((gate, Outgoing::Reply(reply)));
        }
    }

    /// Send `message` to `to` once every write issued before it is
    /// durable, stamped with this node's configuration.
    fn hold(&mut self, to: NodeId, message: Message) {
        let out = Outgoing::Send(to, self.stamp, message);
        self.held.push_back((self.last_write, out));
    }

    /// Release, in order, everything whose writes are durable.
    fn pump(&mut self, now: Instant) {
        let early = self.config.rules.bugs.has(Bug::ReplyBeforePersist);
        let durable = self.durable_through;
        loop {
            let ready = |gate: u64| gate <= durable || early;
            let out = if let Some(i) = self.held_apart.iter().position(|(g, _)| ready(*g)) {
                self.held_apart.remove(i).1
            } else if let Some((_, out)) = pop_if(&mut self.held, ready) {
                out
            } else if let Some((_, out)) = pop_if(&mut self.held_proposer, ready) {
                out
            } else {
                break;
            };
            match out {
                Outgoing::Send(to, stamp, message) if to == self.config.node => {
                    if stamp == self.stamp {
                        self.deliver(now, to, message)
                    }
                }
                Outgoing::Send(to, stamp, message) => {
                    self.transmits.push_back(Transmit { to, stamp, message })
                }
                Outgoing::Reply(reply) => self.replies.push_back(reply),
            }
        }
    }
}

/// The front of `queue`, if its gate is `ready`.
fn pop_if(
    queue: &mut VecDeque<(u64, Outgoing)>,
    ready: impl Fn(u64) -> bool,
) -> Option<(u64, Outgoing)> {
    if queue.front().is_some_and(|(gate, _)| ready(*gate)) {
        queue.pop_front()
    } else {
        None
    }
}

/// Changes told to peers in one message: the most recent this many, so
/// that a round of many operations still fits a peer frame (a change is
/// at most about 160 bytes).
pub const MAX_CHANGES_TOLD: usize = 32;

/// What peers are told of `chosen`: its last [`MAX_CHANGES_TOLD`] changes.
fn news_of(chosen: &Chosen) -> Chosen {
    let skip = chosen.changes.len().saturating_sub(MAX_CHANGES_TOLD);
    Chosen {
        changes: chosen.changes[skip..].to_vec(),
        ..chosen.clone()
    }
}

/// When each name's current grant was last told renewed, so that the
/// steady renewals of a lease cost no message and no history line each:
/// at most one per ttl. Advice for histories only (see [`Advice`]).
#[derive(Clone, Debug, Default)]
struct RenewalsTold {
    told: HashMap<LeaseName, (Token, Instant, Micros)>,
    prune_above: usize,
}

impl RenewalsTold {
    /// Whether `chosen` is worth telling: it changed more than the clock
    /// of a grant already told renewed within its ttl.
    fn tell(&mut self, now: Instant, chosen: &Chosen) -> bool {
        let renewal = match chosen.changes.as_slice() {
            [t] if t.kind == TransitionKind::Renewed => t,
            // Only the queue changed: the grant's renewals stay as told.
            [] => return true,
            _ => {
                self.told.remove(&chosen.name);
                return true;
            }
        };
        if let Some((token, at, ttl)) = self.told.get(&chosen.name) {
            if *token == renewal.token && now.since(*at) < *ttl {
                return false;
            }
        }
        if self.told.len() >= self.prune_above {
            self.told.retain(|_, (_, at, ttl)| now.since(*at) < *ttl);
            self.prune_above = (self.told.len() * 2).max(1_024);
        }
        let ttl = renewal.ttl.as_micros();
        self.told
            .insert(chosen.name.clone(), (renewal.token, now, ttl));
        true
    }
}

/// State that only advises the shell (what to tell, when to sync): left
/// out of the node's equality and hash, which are the protocol state that
/// model checking explores.
#[derive(Clone, Debug, Default)]
struct Advice<T>(T);

impl<T> std::ops::Deref for Advice<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Advice<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> PartialEq for Advice<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Advice<T> {}

impl<T> Hash for Advice<T> {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}
