//! The model: three or four real [`Node`]s, their disks, a lossy network, a clock
//! and scripted clients, with every nondeterministic choice an action.
//!
//! The nodes are `tenure_core::Node` itself, driven exactly as a shell
//! drives it (see the call order in `node.rs`); nothing of the protocol is
//! re-implemented here. What the model adds is the environment: which
//! message arrives next, which is lost or duplicated, when a disk syncs,
//! when a node crashes, when a timer fires and when time moves.

pub use super::scenario::{MemberChange, Scenario, Step};

use super::network::{Envelope, Network};
use super::shared::{FxHasher, Shared};
use super::spec::{is_linearizable, normalize, ClientId, Event, SpecOp, SpecRet, SpecView};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use tenure_core::{
    holder_deadline, Bugs, Compaction, Config, Configuration, DriftBound, Durable, Epoch, Failure,
    HolderId, Instant, LeaseName, LeaseView, LockDelay, Message, Micros, Node, NodeId, Op, Outcome,
    Record, Reply, RequestId, Rules, Timing, Token, Transmit, Ttl, Write,
};

/// The cluster size the protocol is meant for; the smallest with a
/// majority that survives a crash.
pub const NODES: usize = 3;
/// The node a `replacing` scenario has lost (node 3); node 4 is the one
/// after it.
pub const LOST: usize = 2;

/// A node with what its disk holds, as the shell would keep it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Machine {
    pub node: Node,
    /// The records as last synced: what survives a crash.
    pub disk: BTreeMap<LeaseName, Durable>,
    /// The promise horizon as last synced.
    pub horizon: u64,
    /// The token floor as last synced.
    pub token_floor: Token,
    /// The configuration as last synced: a restart boots in it, as
    /// `tenure_storage::boot_node` does.
    pub configuration: Configuration,
    /// Writes issued but not yet synced: lost in a crash.
    pub unsynced: Vec<Write>,
}

impl Machine {
    /// Make every issued write durable, in one sync, and tell the node.
    pub(crate) fn sync(&mut self, now: Instant) {
        let Some(last) = self.unsynced.last().map(|w| w.id) else {
            return;
        };
        for write in self.unsynced.drain(..) {
            match write.record {
                Record::Register { name, state } => {
                    self.disk.insert(name, state);
                }
                Record::Horizon(horizon) => self.horizon = self.horizon.max(horizon),
                Record::TokenFloor(floor) => self.token_floor = self.token_floor.max(floor),
                // Adopted in rising epochs only: the last is the latest.
                Record::Configuration(configuration) => self.configuration = configuration,
                Record::Compact { .. } => {
                    unreachable!("the model never compacts: `Compaction.idle_after` is `None`")
                }
            }
        }
        self.node.handle_durable(now, last);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// The operation's id in the history, also its `RequestId`.
    pub op: u8,
    /// When it was sent, on the client's clock.
    pub sent: Instant,
    /// The highest token granted (and replied) before this request was
    /// sent: a grant for this request must be above it.
    pub floor: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    /// The index of its next script step.
    pub next: usize,
    pub outstanding: Option<Request>,
    /// Its latest grant, for renew and release.
    pub token: Option<Token>,
}

/// A grant a client received, with the fencing floor of its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantRecord {
    pub client: ClientId,
    pub token: u64,
    pub floor: u64,
}

/// A stretch of time in which a client acts as holder: from the reply to
/// the deadline counted from the request's send time (`holder_deadline`),
/// cut short when the client sends a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hold {
    pub client: ClientId,
    pub token: u64,
    pub from: Instant,
    pub until: Instant,
}

impl Hold {
    pub(crate) fn overlaps(&self, other: &Hold) -> bool {
        self.from < self.until
            && other.from < other.until
            && self.from < other.until
            && other.from < self.until
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Global (real) time. Nodes and clients read it through their own
    /// drifting clocks.
    pub now: Instant,
    pub machines: Vec<Shared<Machine>>,
    pub network: Network,
    pub clients: Vec<Client>,
    pub crashes_left: u8,
    pub losses_left: u8,
    pub reorders_left: u8,
    pub duplicates_left: u8,
    pub history: Vec<Event>,
    /// `is_linearizable(history)`, updated when the history changes; the
    /// search is too costly to repeat in every state.
    pub linearizable: bool,
    pub grants: Vec<GrantRecord>,
    pub holds: Vec<Hold>,
    /// The scenario's change of members was asked for.
    pub change_asked: bool,
    /// Some node has begun a rescan.
    pub rescan_begun: bool,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// A client sends its next request to its node.
    Submit(ClientId),
    /// Deliver the next message of a channel (any message, without FIFO).
    Deliver(Envelope),
    /// Deliver a message that overtakes the ones sent before it.
    Reorder(Envelope),
    /// Deliver a request to an acceptor and keep a copy in flight, which
    /// arrives after everything already sent on its channel.
    Duplicate(Envelope),
    /// Lose a message.
    Drop(Envelope),
    /// A node's disk syncs every write issued so far.
    Sync(usize),
    /// A node's timer is due and fires.
    Timeout(usize),
    /// A node loses its memory and unsynced writes and restarts from disk.
    Crash(usize),
    /// The scenario's coordinator is asked for its change of members.
    BeginChange(usize),
    Tick,
}

/// Keyed by the scenario's fingerprint and the time too: one thread may
/// check several scenarios in turn, and a verdict may depend on what the
/// recipient's clock reads (a bad clock's reading is not part of a node's
/// state, and differs from scenario to scenario).
type Verdicts = HashMap<(u64, u64, u64, u64, u64), bool, BuildHasherDefault<FxHasher>>;

thread_local! {
    /// Garbage verdicts by the hashes of what they depend on: the same node
    /// states and envelopes meet again in many states of the search.
    static VERDICTS: RefCell<Verdicts> = RefCell::default();
}

/// Traces name nodes n1..n4 and clients by their holder ids, a, b, c.
impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client = |c: &ClientId| HOLDERS[usize::from(*c)];
        match self {
            Action::Submit(c) => write!(f, "Submit({})", client(c)),
            Action::Deliver(e) => write!(f, "Deliver({e:?})"),
            Action::Reorder(e) => write!(f, "Reorder({e:?})"),
            Action::Duplicate(e) => write!(f, "Duplicate({e:?})"),
            Action::Drop(e) => write!(f, "Drop({e:?})"),
            Action::Sync(n) => write!(f, "Sync(n{})", n + 1),
            Action::Timeout(n) => write!(f, "Timeout(n{})", n + 1),
            Action::Crash(n) => write!(f, "Crash(n{})", n + 1),
            Action::BeginChange(n) => write!(f, "BeginChange(n{})", n + 1),
            Action::Tick => write!(f, "Tick"),
        }
    }
}

/// The holder ids of the clients, by index.
const HOLDERS: [&str; 4] = ["a", "b", "c", "d"];

/// Verdicts kept per checker thread before the memory is cleared.
const MAX_VERDICTS: usize = 1 << 20;

pub(crate) fn remembered(key: (u64, u64, u64, u64, u64), verdict: impl FnOnce() -> bool) -> bool {
    if let Some(known) = VERDICTS.with(|v| v.borrow().get(&key).copied()) {
        return known;
    }
    let known = verdict();
    VERDICTS.with(|v| {
        let mut verdicts = v.borrow_mut();
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.clear();
        }
        verdicts.insert(key, known);
    });
    known
}

/// What an action changed, for garbage collection.
#[derive(Clone, Copy)]
pub(crate) enum Touched {
    Nothing,
    Node(usize),
    Everything,
}

pub struct LeaseModel {
    pub scenario: Scenario,
    pub rules: Rules,
    pub(crate) timing: Timing,
    pub(crate) name: LeaseName,
    pub(crate) ttl: Ttl,
    pub(crate) holders: Vec<HolderId>,
    /// Tells this scenario's remembered verdicts from another's.
    pub(crate) fingerprint: u64,
    /// The members the scenario's change moves to, as node ids.
    pub(crate) target: Option<Vec<NodeId>>,
}

pub(crate) fn ms(n: u64) -> Micros {
    Micros::from_millis(n)
}

impl LeaseModel {
    pub fn new(scenario: Scenario) -> LeaseModel {
        let rules = Rules {
            drift: DriftBound::from_ppm(scenario.drift_ppm).expect("drift within the bound"),
            bugs: scenario.bug.map_or(Bugs::NONE, Bugs::inject),
        };
        let timing = Timing {
            phase_timeout: ms(scenario.phase_timeout_ms),
            backoff_max: ms(scenario.backoff_ms),
            request_deadline: ms(scenario.request_deadline_ms),
            max_queued_per_name: 4,
            max_batch: 4,
            max_fast_paths: 4,
            waiter_recheck: ms(scenario.phase_timeout_ms),
        };
        let holders = HOLDERS[..scenario.clients.len()]
            .iter()
            .map(|h| HolderId::new(h).expect("a valid holder"))
            .collect();
        let target = (scenario.change.as_ref())
            .map(|change| change.target.iter().copied().map(node_id).collect());
        LeaseModel {
            target,
            ttl: Ttl::from_millis(scenario.ttl_ms).expect("ttl in range"),
            fingerprint: super::shared::hash_of(&format!("{scenario:?}")),
            scenario,
            rules,
            timing,
            name: LeaseName::new("lock").expect("a valid name"),
            holders,
        }
    }

    pub(crate) fn config(&self, node: usize, incarnation: u32, promise_horizon: u64) -> Config {
        Config {
            node: node_id(node),
            incarnation,
            promise_horizon,
            token_floor: Token(0),
            configuration: self.first_configuration(node),
            rules: self.rules,
            timing: self.timing,
            // Never compacts (`idle_after` is `None`); the settle timeout
            // paces a change's requests and a rescan's carries.
            compaction: Compaction {
                settle_timeout: ms(self.scenario.settle_ms),
                ..Compaction::default()
            },
            seed: node as u64 + 1,
        }
    }

    /// The configuration node `node` starts in: n1..n3, or the joint
    /// configuration of the scenario's change for a node that joins, as a
    /// joining node starts (docs/membership.md).
    pub(crate) fn first_configuration(&self, node: usize) -> Configuration {
        let first = Configuration {
            epoch: Epoch::FIRST,
            members: (0..NODES).map(node_id).collect(),
            joining: if self.scenario.replacing {
                vec![node_id(0), node_id(1), node_id(LOST + 1)]
            } else {
                Vec::new()
            },
            addresses: Default::default(),
        };
        match &self.target {
            Some(target) if node >= NODES => first.joint_to(target.clone(), &BTreeMap::new()),
            _ => first,
        }
    }

    /// Whether `configuration` is the final one of the scenario's change
    /// (`None` without a change).
    fn is_target(&self, configuration: &Configuration) -> Option<bool> {
        (self.target.as_ref()).map(|target| configuration.is_settled_on(target))
    }

    /// Whether node `n` has made the final configuration of the scenario's
    /// change durable (always, without a change): its stamp can never
    /// change again, not even in a restart.
    pub(crate) fn settled_for_good(&self, s: &State, n: usize) -> bool {
        self.is_target(&s.machines[n].configuration).unwrap_or(true)
    }

    /// How many machines run: node 4 too when it replaces node 3 or joins
    /// in a change.
    pub(crate) fn machines(&self) -> usize {
        let joiners = self.scenario.change.iter().flat_map(|c| &c.target);
        let last = joiners.map(|&n| n + 1).max().unwrap_or(0);
        (NODES + usize::from(self.scenario.replacing)).max(last)
    }

    /// The holder id of client `c`.
    pub fn holder(&self, c: ClientId) -> &HolderId {
        &self.holders[usize::from(c)]
    }

    pub(crate) fn client_of(&self, holder: &HolderId) -> ClientId {
        let index = self.holders.iter().position(|h| h == holder);
        index.expect("only scripted clients hold leases") as ClientId
    }

    pub(crate) fn spec_view(&self, view: &LeaseView) -> SpecView {
        match view {
            LeaseView::Free { token } => SpecView::Free { token: token.0 },
            LeaseView::Held { holder, token, .. } => SpecView::Held {
                holder: self.client_of(holder),
                token: token.0,
            },
            LeaseView::LockDelayed { holder, token, .. } => SpecView::Delayed {
                holder: self.client_of(holder),
                token: token.0,
            },
        }
    }

    pub(crate) fn spec_ret(&self, outcome: &Outcome) -> SpecRet {
        match outcome {
            Outcome::Granted { token, .. } => SpecRet::Granted { token: token.0 },
            Outcome::Renewed { token, .. } => SpecRet::Renewed { token: token.0 },
            Outcome::Released { token } => SpecRet::Released { token: token.0 },
            Outcome::Observed(view) => SpecRet::Observed(self.spec_view(view)),
            Outcome::Conflict(view) => SpecRet::Conflict(self.spec_view(view)),
        }
    }

    /// Give node `n` an input, then collect what it wants done in the order
    /// `node.rs` asks for: writes first, then the messages and replies they
    /// released.
    pub(crate) fn step(&self, s: &mut State, n: usize, input: impl FnOnce(&mut Node, Instant)) {
        // For a node that will not crash, a sync that lags only delays the
        // messages it gates, and the network already delays messages in
        // every possible way: sync at once and spare the checker the
        // interleavings of an extra action.
        let sync_at_once = !self.may_crash(s, n);
        let node_now = self.node_clock(n, s.now);
        let mut transmits = Vec::new();
        let mut replies = Vec::new();
        {
            let mut edit = s.machines[n].edit();
            let machine: &mut Machine = &mut edit;
            input(&mut machine.node, node_now);
            while let Some(write) = machine.node.poll_write() {
                machine.unsynced.push(write);
            }
            if sync_at_once {
                machine.sync(node_now);
            }
            while let Some(t) = machine.node.poll_transmit() {
                transmits.push(t);
            }
            while let Some(reply) = machine.node.poll_reply() {
                replies.push(reply);
            }
            // Events are for a shell's wakeups and counters; the model has
            // none, and must not tell states apart by them.
            while machine.node.poll_event().is_some() {}
        }
        // News of chosen values feeds histories only, never an acceptor or
        // a round: the model leaves it out rather than explore its orders.
        transmits.retain(|t| !matches!(t.message, Message::Chosen(_)));
        transmits.retain(|t| !self.is_lost_on_the_way(n, t));
        for t in transmits {
            let envelope = Envelope {
                from: n,
                to: node_index(t.to),
                stamp: t.stamp,
                message: t.message,
            };
            // The model never compacts, so every token floor is 0: a floor
            // message only lets a rescan end. It arrives at once unless
            // others are ahead of it on its channel, so that the checker
            // does not explore its every order with the carries.
            let floor = matches!(
                envelope.message,
                Message::RaiseFloor { .. } | Message::FloorRaised { .. }
            );
            if floor && s.network.is_idle(envelope.from, envelope.to) {
                self.deliver(s, envelope);
            } else {
                s.network.send(envelope, self.scenario.fifo);
            }
        }
        for reply in replies {
            self.on_reply(s, reply);
        }
    }

    /// Whether the scenario's bounds lose `t`, sent by node `from`: a cut
    /// between the two nodes, or a request to rescan that never reaches an
    /// old member too slow to rescan.
    fn is_lost_on_the_way(&self, from: usize, t: &Transmit) -> bool {
        let to = node_index(t.to);
        let cut = self
            .scenario
            .cut
            .iter()
            .any(|&pair| pair == (from, to) || pair == (to, from));
        let slow_to_rescan = self
            .scenario
            .change
            .as_ref()
            .is_some_and(|c| c.slow_to_rescan.contains(&to));
        cut || (slow_to_rescan && matches!(t.message, Message::Rescan))
    }

    /// Whether node `n` may crash now.
    pub(crate) fn may_crash(&self, s: &State, n: usize) -> bool {
        let window = !self.scenario.crash_during_rescan || s.rescan_begun;
        s.crashes_left > 0 && window && self.scenario.crashable.contains(&n)
    }

    /// Whether node `n` holds the final configuration of the scenario's
    /// change.
    pub(crate) fn has_changed(&self, s: &State, n: usize) -> bool {
        self.is_target(s.machines[n].node.configuration())
            .unwrap_or(false)
    }

    pub(crate) fn submit(&self, s: &mut State, c: ClientId) {
        let script = &self.scenario.clients[usize::from(c)];
        let client = &mut s.clients[usize::from(c)];
        let index = client.next;
        client.next += 1;
        let holder = self.holders[usize::from(c)].clone();
        let (op, what) = match (script.steps[index].0, client.token) {
            (Step::Acquire, _) => (
                Op::Acquire {
                    holder,
                    ttl: self.ttl,
                    lock_delay: LockDelay::NONE,
                    wait: Micros::ZERO,
                },
                SpecOp::Acquire { client: c },
            ),
            (Step::Renew, Some(token)) => (
                Op::Renew { holder, token },
                SpecOp::Renew {
                    client: c,
                    token: token.0,
                },
            ),
            (Step::Release, Some(token)) => {
                // A holder stops acting before it sends a release (A5 of
                // docs/safety.md): from now on another may hold the lease.
                for hold in s.holds.iter_mut().filter(|h| h.client == c) {
                    hold.until = hold.until.min(s.now);
                }
                s.holds.sort();
                (
                    Op::Release { holder, token },
                    SpecOp::Release {
                        client: c,
                        token: token.0,
                    },
                )
            }
            (Step::Read, _) => (Op::Read, SpecOp::Read),
            // Nothing to renew or release: the client skips the step.
            (Step::Renew | Step::Release, None) => return,
        };
        let op_id = c * 16 + index as u8;
        let floor = s.grants.iter().map(|g| g.token).max().unwrap_or(0);
        client.outstanding = Some(Request {
            op: op_id,
            sent: self.client_clock(s.now),
            floor,
        });
        s.history.push(Event::Invoke { op: op_id, what });
        normalize(&mut s.history);
        let request = RequestId(u64::from(op_id));
        let name = self.name.clone();
        self.step(s, script.node, |node, now| {
            node.submit(now, request, name, op)
        });
    }

    pub(crate) fn on_reply(&self, s: &mut State, reply: Reply) {
        let Some(c) = s.clients.iter().position(|client| {
            client
                .outstanding
                .is_some_and(|r| u64::from(r.op) == reply.request.0)
        }) else {
            return;
        };
        let client = &mut s.clients[c];
        let Some(request) = client.outstanding.take() else {
            return;
        };
        let c = c as ClientId;
        match &reply.result {
            Ok(outcome) => {
                let ret = self.spec_ret(outcome);
                s.history.push(Event::Return {
                    op: request.op,
                    ret,
                });
                match *outcome {
                    Outcome::Granted { token, ttl } => {
                        client.token = Some(token);
                        s.grants.push(GrantRecord {
                            client: c,
                            token: token.0,
                            floor: request.floor,
                        });
                        s.holds.push(self.hold(c, token, request.sent, ttl, s.now));
                    }
                    Outcome::Renewed { token, ttl } => {
                        s.holds.push(self.hold(c, token, request.sent, ttl, s.now));
                    }
                    _ => {}
                }
            }
            // A write was sent and may still take effect: the operation
            // stays in flight in the history, forever.
            Err(Failure::Unavailable {
                outcome_unknown: true,
            }) => {}
            // The core promises this operation changed nothing: it leaves
            // the history, and the check holds the core to that promise.
            Err(_) => s.history.retain(|e| e.op() != request.op),
        }
        // Grants and holds are sets to the properties: keep them sorted so
        // that the order they came in does not tell states apart.
        normalize(&mut s.history);
        s.grants.sort();
        s.holds.sort();
        if self.scenario.leases_outlive_horizon() && s.linearizable {
            s.linearizable = is_linearizable(&s.history);
        }
    }

    /// The client holds from the reply until its own clock reaches the
    /// deadline counted from the request's send time on that clock.
    pub(crate) fn hold(
        &self,
        client: ClientId,
        token: Token,
        sent: Instant,
        ttl: Ttl,
        now: Instant,
    ) -> Hold {
        let deadline = holder_deadline(sent, ttl, &self.rules, Micros::ZERO);
        Hold {
            client,
            token: token.0,
            from: now,
            until: self.when_client_clock_reads(deadline),
        }
    }

    /// What node `n`'s clock reads at global time `now`: fast by the drift
    /// bound. Fast clocks age leases faster, so the cluster lets a lease go
    /// earliest in real time. The scenario's bad clock, if any, runs at
    /// its own rate whatever the bound.
    pub(crate) fn node_clock(&self, n: usize, now: Instant) -> Instant {
        match self.scenario.bad_clock {
            Some((bad, rate_ppm)) if bad == n => scale(now, rate_ppm),
            _ => scale(now, 1_000_000 + u64::from(self.scenario.drift_ppm)),
        }
    }

    /// What a client's clock reads at global time `now`: slow by the drift
    /// bound, so a holder acts for as long in real time as it can.
    pub(crate) fn client_clock(&self, now: Instant) -> Instant {
        scale(now, 1_000_000 - u64::from(self.scenario.drift_ppm))
    }

    /// The first global time at which a client's clock reads `reading`.
    pub(crate) fn when_client_clock_reads(&self, reading: Instant) -> Instant {
        let rate = u128::from(1_000_000 - u64::from(self.scenario.drift_ppm));
        let global = (u128::from(reading.as_micros()) * 1_000_000).div_ceil(rate);
        Instant::from_micros(u64::try_from(global).unwrap_or(u64::MAX))
    }

    pub(crate) fn deliver(&self, s: &mut State, envelope: Envelope) {
        let from = node_id(envelope.from);
        self.step(s, envelope.to, |node, now| {
            node.handle_message(now, from, envelope.stamp, envelope.message)
        });
    }

    /// Ask the scenario's coordinator for its change of members.
    pub(crate) fn begin_change(&self, s: &mut State, change: &MemberChange) {
        s.change_asked = true;
        let target = self.target.clone().expect("a scenario change");
        self.step(s, change.coordinator, |node, now| {
            node.change_members(now, target)
                .expect("the one change of the scenario is never refused")
        });
    }

    pub(crate) fn crash(&self, s: &mut State, n: usize) {
        {
            let mut edit = s.machines[n].edit();
            let machine: &mut Machine = &mut edit;
            let incarnation = machine.node.config().incarnation + 1;
            let boot = self.node_clock(n, s.now);
            // As `tenure_storage::boot_node` does: the floor and the
            // members the disk holds.
            let config = Config {
                token_floor: machine.token_floor,
                configuration: machine.configuration.clone(),
                ..self.config(n, incarnation, machine.horizon)
            };
            machine.node = Node::new(config, machine.disk.clone(), boot).expect("a valid config");
            machine.unsynced.clear();
        }
        // The crashed node's clients never hear back: their requests have
        // unknown outcomes and stay in flight in the history.
        for (c, script) in self.scenario.clients.iter().enumerate() {
            if script.node == n {
                s.clients[c].outstanding = None;
            }
        }
    }
}

/// `t` scaled by `rate_ppm` parts per million.
pub(crate) fn scale(t: Instant, rate_ppm: u64) -> Instant {
    let scaled = u128::from(t.as_micros()) * u128::from(rate_ppm) / 1_000_000;
    Instant::from_micros(u64::try_from(scaled).unwrap_or(u64::MAX))
}

pub fn node_id(index: usize) -> NodeId {
    NodeId(index as u16 + 1)
}

pub(crate) fn node_index(id: NodeId) -> usize {
    usize::from(id.0) - 1
}
