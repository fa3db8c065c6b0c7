//! The discrete-event engine: true time, the network, the nodes with their
//! disks and clocks, the clients, and the faults that hit them.

use crate::client::{Action, Client};
use crate::clock::Clock;
use crate::contend::{self, Ask, Contender};
use crate::disk::Disk;
use crate::faults::{BadClock, BadClocks, FaultPlan};
use crate::history::History;
use crate::rng::SimRng;
use crate::trace::Trace;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use tenure_storage::Boot;

mod crowd;
mod faults;
mod members;
mod nodes;
use members::MemberPlan;
use tenure_core::{
    Bug, Bugs, Compaction, Config, Configuration, DriftBound, Failure, HolderId, Instant,
    LeaseName, LockDelay, Message, Node, NodeId, Op, Outcome, RequestId, Rules, Stamp, Timing, Ttl,
    WriteId,
};

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub bug: Option<Bug>,
    /// How long faults are injected, in simulated time.
    pub fault_period: tenure_core::Micros,
    /// Keep the whole trace rather than its last lines.
    pub full_trace: bool,
    /// Steps the linearizability search may take per name.
    pub check_budget: u64,
    /// How often a seed has one node whose clock breaks the drift bound
    /// (`faults::BadClock`).
    pub bad_clocks: BadClocks,
    /// Change the members amid the faults: replace a lost member, or
    /// grow to five (`world/members.rs`).
    pub member_change: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes: 3,
            bug: None,
            fault_period: tenure_core::Micros::from_millis(3_000),
            full_trace: false,
            check_budget: crate::check::linearizability::STEP_BUDGET,
            bad_clocks: BadClocks::Sometimes,
            member_change: false,
        }
    }
}

/// The drift bound the simulated cluster is configured with: large, so that
/// drift-related bugs show within short runs.
pub const DRIFT_BOUND_PPM: u32 = 50_000;

/// How long a name must be idle before it is compacted: past the longest
/// ttl clients ask for (1 s) stretched by the drift bound, its lock-delay,
/// and the request deadline (1 s), so that no round of a request outlives
/// its name; short enough that the cold names die mid-run.
const COMPACT_AFTER: tenure_core::Micros = tenure_core::Micros::from_millis(2_300);

/// How long the clients run again after the quiet that follows the crowd.
const REVIVAL_US: u64 = 1_000_000;

/// The client slot of the liveness probe.
const PROBE: usize = usize::MAX >> 1;

/// How long after healing an acquire of a free name must succeed.
const LIVENESS_BOUND_US: u64 = 5_000_000;

/// The crowd's client numbers start here, clear of the ordinary clients.
const CROWD: usize = 1 << 20;
/// The name the crowd fights over.
const CROWD_NAME: &str = "contended";

// Deliveries are most of the events: boxing their message would allocate
// for each.
#[allow(clippy::large_enum_variant)]
enum Event {
    Deliver {
        from: NodeId,
        to: usize,
        stamp: Stamp,
        message: Message,
    },
    Submit {
        node: usize,
        client: usize,
        request: u64,
        name: LeaseName,
        op: Op,
        history: usize,
    },
    Answer {
        client: usize,
        request: u64,
        result: Result<Outcome, Failure>,
    },
    NodeTimer {
        node: usize,
        life: u32,
    },
    Synced {
        node: usize,
        life: u32,
        through: WriteId,
    },
    ClientWake {
        client: usize,
    },
    CrowdWake {
        contender: usize,
    },
    /// One node of the crowd's crashes mid-way, and stays down until the
    /// crowd is done: the others must go on answering.
    CrowdCrash {
        node: usize,
    },
    Crash,
    /// The clients start again after the quiet that follows the crowd.
    Revive,
    /// One node crashes now (right after a lazy acknowledgement).
    CrashNode {
        node: usize,
    },
    Restart {
        node: usize,
    },
    /// The change of members begins.
    ChangeMembers,
    /// Ask for the change again, unless it is over.
    NudgeMembers,
    Repartition,
    Pause,
    Heal,
    Probe,
    /// The bad clock jumps.
    ClockStep,
    /// A node wrongly loses touch with a live peer for a while (a false
    /// suspicion of the failure detector), or the while ends.
    Suspect,
    Unsuspect,
}

/// Whose clock a new clock is.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    Node,
    Holder,
}

struct SimNode {
    id: NodeId,
    node: Option<Node>,
    disk: Disk,
    clock: Clock,
    /// Bumped at each crash, so events for a previous life are dropped.
    life: u32,
    syncing: bool,
    /// The true time of the timer event already queued, if any.
    timer_at: Option<u64>,
    paused_until: u64,
    /// Requests in progress: the client, and the operation in the history.
    requests: BTreeMap<u64, (usize, LeaseName, usize)>,
    /// The configuration it starts under while its store records none.
    first: Configuration,
    /// Lost for good, with its disk: never started again.
    gone: bool,
    /// A node that joins in a change of members, not started before.
    spare: bool,
}

pub struct World {
    config: SimConfig,
    rules: Rules,
    compaction: Compaction,
    /// Names some node compacted during the run, and how many times a
    /// node did.
    pub compacted: BTreeSet<LeaseName>,
    pub compactions: u64,
    rng: SimRng,
    faults: FaultPlan,
    bad_clock: Option<BadClock>,
    /// The bad clock's own random stream, apart from `rng` so that a seed
    /// runs as it did before bad clocks existed when it has none.
    clock_rng: SimRng,
    /// Draws the crashes aimed at lazy acceptances, apart from `rng`.
    crash_rng: SimRng,
    /// Every node's clock at the fast edge of the bound and every holder's
    /// at the slow edge: the worst case for the drift margin, which a
    /// quorum of clocks otherwise rarely lines up.
    polarised: bool,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    /// Directed links that drop everything.
    cut: BTreeSet<(usize, usize)>,
    pub history: History,
    pub trace: Trace,
    healed_at: Option<u64>,
    probe_granted: bool,
    /// The contention phase, started once the probe is granted.
    crowd: Vec<Contender>,
    pub liveness: Option<String>,
    pub processed: u64,
    revive_scheduled: bool,
    /// When the clients that came back stop for good.
    revived_until: Option<u64>,
    member_plan: Option<MemberPlan>,
    /// Draws for the change of members, apart from `rng`.
    member_rng: SimRng,
    /// Draws for the crash during the crowd, apart from `rng`.
    crowd_crash_rng: SimRng,
    /// Draws for the false suspicions, apart from `rng`; none in half the
    /// seeds.
    suspicion_rng: SimRng,
    /// Who wrongly counts whom out of touch, until when (true time).
    suspicions: Vec<(usize, NodeId, u64)>,
}

impl World {
    pub fn new(config: SimConfig) -> World {
        let mut rng = SimRng::new(config.seed);
        let mut crash_rng = SimRng::new(config.seed ^ 0x1A2_C4A5);
        let faults = FaultPlan::draw(&mut rng, DRIFT_BOUND_PPM).with_lazy_crashes(&mut crash_rng);
        let mut clock_rng = SimRng::new(config.seed ^ 0x0BAD_C10C_u64);
        let bad_clock = BadClock::draw(&mut clock_rng, config.nodes, config.bad_clocks);
        let polarised = clock_rng.chance(250_000);
        let bugs = config.bug.map_or(Bugs::NONE, Bugs::inject);
        let rules = Rules {
            drift: DriftBound::from_ppm(DRIFT_BOUND_PPM).unwrap_or_default(),
            bugs,
        };
        let names: Vec<LeaseName> = (0..rng.between(1, 3))
            .map(|i| LeaseName::new(&format!("lease-{i}")).unwrap_or_else(|_| unreachable!()))
            .collect();
        let mut world = World {
            rules,
            compaction: Compaction {
                idle_after: Some(COMPACT_AFTER),
                scan_every: tenure_core::Micros::from_millis(200),
                ..Compaction::default()
            },
            compacted: BTreeSet::new(),
            compactions: 0,
            faults,
            bad_clock,
            clock_rng,
            crash_rng,
            polarised,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            nodes: Vec::new(),
            clients: Vec::new(),
            cut: BTreeSet::new(),
            history: History::default(),
            trace: Trace::new(config.full_trace),
            healed_at: None,
            probe_granted: false,
            crowd: Vec::new(),
            liveness: None,
            processed: 0,
            revive_scheduled: false,
            revived_until: None,
            member_plan: None,
            member_rng: SimRng::new(config.seed ^ 0x3E3B_E125),
            crowd_crash_rng: SimRng::new(config.seed ^ 0xC20D_C2A5),
            suspicion_rng: SimRng::new(config.seed ^ 0x5D5_1C10),
            suspicions: Vec::new(),
            config,
            rng,
        };
        let members: Vec<NodeId> = (1..=world.config.nodes as u16).map(NodeId).collect();
        if world.config.member_change {
            let period = world.config.fault_period.0;
            let plan = MemberPlan::draw(&mut world.member_rng, members.len(), period);
            world.schedule(plan.at, Event::ChangeMembers);
            world.member_plan = Some(plan);
        }
        let spares = world.member_plan.as_ref().map_or(0, |p| p.joiners.len());
        for i in 0..world.config.nodes + spares {
            let clock = world.new_clock(Side::Node);
            let spare = i >= world.config.nodes;
            let first = match &world.member_plan {
                Some(plan) if spare => plan.joint.clone(),
                _ => Configuration::first(members.clone()),
            };
            world.nodes.push(SimNode {
                id: NodeId(i as u16 + 1),
                node: None,
                disk: Disk::default(),
                clock,
                life: 0,
                syncing: false,
                timer_at: None,
                paused_until: 0,
                requests: BTreeMap::new(),
                first,
                gone: false,
                spare,
            });
            if !spare {
                world.boot(i);
            }
        }
        let client_count = world.rng.between(2, 7) as usize;
        for c in 0..client_count {
            let clock = world.new_clock(Side::Holder);
            let home = world.rng.below(world.config.nodes as u64) as usize;
            let stall_ppm = world.faults.stall_ppm;
            world.clients.push(Client::new(
                c,
                clock,
                names.clone(),
                world.config.nodes,
                home,
                stall_ppm,
            ));
            let at = world.rng.below(50_000);
            world.schedule(at, Event::ClientWake { client: c });
        }
        for (every, event) in [
            (world.faults.crash_every_us, Event::Crash),
            (world.faults.partition_every_us, Event::Repartition),
            (world.faults.pause_every_us, Event::Pause),
        ] {
            if every > 0 {
                let at = world.rng.below(2 * every);
                world.schedule(at, event);
            }
        }
        if world.suspicion_rng.chance(500_000) {
            let at = world.suspicion_rng.below(200_000);
            world.schedule(at, Event::Suspect);
        }
        if let Some(bad) = &world.bad_clock {
            let line = format!(
                "node {} clock at {} ppm off true time, steps every ~{} us of up to {} us",
                bad.node, bad.rate_ppm, bad.step_every_us, bad.step_max_us
            );
            world.trace.line(0, format_args!("{line}"));
            if bad.step_every_us > 0 {
                let at = world.clock_rng.below(2 * bad.step_every_us);
                world.schedule(at, Event::ClockStep);
            }
        }
        let heal_at = world.config.fault_period.0;
        world.schedule(heal_at, Event::Heal);
        world
    }

    /// One line per node, for a report.
    pub fn node_states(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "{}: up={} life={} syncing={} disk_unsynced={} node_unsynced={:?} held={:?} timer={:?} configuration={:?} coordinating={:?} rescanning={:?} carried={:?}",
                    n.id,
                    n.node.is_some(),
                    n.life,
                    n.syncing,
                    n.disk.has_unsynced(),
                    n.node.as_ref().map(Node::unsynced_writes),
                    n.node.as_ref().map(Node::held_messages),
                    n.node.as_ref().and_then(Node::poll_timeout),
                    n.node.as_ref().map(Node::configuration),
                    n.node.as_ref().map(Node::change_step),
                    n.node.as_ref().map(Node::rescanning),
                    n.node.as_ref().map(Node::carried_names),
                )
            })
            .collect()
    }

    /// Correlated crashes (one rack, one power feed): sometimes a second
    /// node goes down with `node`.
    fn maybe_crash_another(&mut self, node: usize) {
        if !self.crash_rng.chance(self.faults.pair_crash_ppm) {
            return;
        }
        let others = self.nodes.len() as u64 - 1;
        let other = (node + 1 + self.crash_rng.below(others) as usize) % self.nodes.len();
        if self.nodes[other].node.is_some() {
            self.crash(other);
        }
    }

    fn new_clock(&mut self, side: Side) -> Clock {
        // Half the clocks run at the edge of the bound, where bugs live.
        let drift = self.faults.drift_ppm;
        let mut rate = if self.rng.chance(500_000) {
            if self.rng.chance(500_000) {
                i64::from(drift)
            } else {
                -i64::from(drift)
            }
        } else {
            self.rng.symmetric(drift)
        };
        if self.polarised {
            rate = match side {
                Side::Node => i64::from(drift),
                Side::Holder => -i64::from(drift),
            };
        }
        // A fresh monotonic clock starts at an arbitrary reading.
        let origin_local = self.rng.below(1 << 40);
        Clock::new(rate, self.now, origin_local)
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at.max(self.now), self.seq)));
        self.events.insert(self.seq, event);
    }

    /// Run to the end; the bound on events keeps a livelock from hanging.
    pub fn run(&mut self) {
        let end = self.config.fault_period.0
            + LIVENESS_BOUND_US
            + contend::CONTENTION_US
            + 2 * contend::ANSWER_BOUND_US
            + 3_000_000
            + COMPACT_AFTER.0
            + 1_000_000
            + REVIVAL_US;
        for _ in 0..5_000_000u32 {
            let Some(Reverse((at, seq))) = self.queue.pop() else {
                break;
            };
            if at > end {
                break;
            }
            self.now = at;
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            self.processed += 1;
            self.handle(event);
            if self.probe_granted && self.crowd.is_empty() {
                self.start_crowd();
            }
            if let Some(stall) = self.crowd.iter().find_map(|c| c.stalled.clone()) {
                self.liveness = Some(format!("under contention after healing: {stall}"));
                return;
            }
            if !self.crowd.is_empty() && self.crowd.iter().all(|c| c.done(self.now)) {
                // Quiet, long enough for every name to die and be
                // compacted; then the clients come back to them.
                match self.revived_until {
                    None if !self.revive_scheduled => {
                        self.revive_scheduled = true;
                        self.schedule(self.now + COMPACT_AFTER.0 + 1_000_000, Event::Revive);
                    }
                    Some(until) if self.now >= until => return,
                    _ => {}
                }
            }
        }
        if !self.crowd.is_empty() && self.crowd.iter().all(|c| c.done(self.now)) {
            return; // Done; the revival ran out of events or time.
        }
        if !self.probe_granted {
            self.liveness = Some(format!(
                "an acquire of a free name did not succeed within {} ms after faults healed",
                LIVENESS_BOUND_US / 1000
            ));
            return;
        }
        for c in &mut self.crowd {
            c.check_end(self.now);
        }
        let stall = self.crowd.iter().find_map(|c| c.stalled.clone());
        self.liveness = Some(format!(
            "under contention after healing: {}",
            stall.unwrap_or_else(|| "the crowd never finished".to_string())
        ));
    }

    fn handle(&mut self, event: Event) {
        if self.healed_at.is_some()
            && matches!(
                event,
                Event::Crash | Event::Repartition | Event::Pause | Event::ClockStep
            )
        {
            return; // Faults scheduled before healing do not strike after it.
        }
        let Some(event) = self.unless_paused(event) else {
            return;
        };
        match event {
            Event::Deliver {
                from,
                to,
                stamp,
                message,
            } => {
                let now = self.local(to);
                self.trace.line(
                    self.now,
                    format_args!("{from} -> node {to} {}", message.kind()),
                );
                if let Some(node) = self.nodes[to].node.as_mut() {
                    node.handle_message(now, from, stamp, message);
                    self.drain(to);
                }
            }
            Event::Submit {
                node,
                client,
                request,
                name,
                op,
                history,
            } => {
                let now = self.local(node);
                let sim = &mut self.nodes[node];
                match sim.node.as_mut() {
                    Some(n) => {
                        sim.requests
                            .insert(request, (client, name.clone(), history));
                        n.submit(now, RequestId(request), name, op);
                        self.drain(node);
                    }
                    // It reached a node that is down: it had no effect.
                    None => self.history.discard(&name, history),
                }
            }
            Event::Answer {
                client,
                request,
                result,
            } => {
                self.trace.line(
                    self.now,
                    format_args!("client {client} answer {request}: {result:?}"),
                );
                if client == PROBE {
                    self.probe_granted |= matches!(result, Ok(Outcome::Granted { .. }));
                    return;
                }
                if client >= CROWD {
                    let contender = client - CROWD;
                    let rules = self.rules;
                    let asks = self.crowd[contender].answer(
                        self.now,
                        request & ((1 << 40) - 1),
                        &result,
                        &mut self.rng,
                        &mut self.history,
                        &rules,
                    );
                    self.crowd_asks(contender, asks);
                    return;
                }
                let rules = self.rules;
                self.clients[client].answer(
                    self.now,
                    request,
                    result,
                    &mut self.rng,
                    &mut self.history,
                    &rules,
                );
            }
            Event::NodeTimer { node, .. } => {
                self.nodes[node].timer_at = None;
                let now = self.local(node);
                if let Some(n) = self.nodes[node].node.as_mut() {
                    if n.poll_timeout().is_some_and(|t| t <= now) {
                        n.handle_timeout(now);
                    }
                    self.drain(node);
                }
            }
            Event::Synced {
                node,
                life,
                through,
            } => {
                if self.nodes[node].life != life {
                    return;
                }
                let fail = self.rng.chance(self.faults.failed_sync_ppm);
                if let Err(e) = self.nodes[node].disk.sync(through, fail) {
                    // An fsync error is fail-stop: the node stops without
                    // acknowledging the write.
                    let line = format!("node {node} persist failed, fail-stop: {e}");
                    self.trace.line(self.now, format_args!("{line}"));
                    self.crash(node);
                    return;
                }
                let now = self.local(node);
                let sim = &mut self.nodes[node];
                sim.syncing = false;
                if let Some(n) = sim.node.as_mut() {
                    n.handle_durable(now, through);
                }
                self.drain(node);
            }
            Event::CrowdWake { contender } => {
                let asks = self.crowd[contender].wake(self.now, &mut self.history);
                self.crowd_asks(contender, asks);
            }
            Event::CrowdCrash { node } => self.crash_under_crowd(node),
            Event::ClientWake { client } => {
                let rules = self.rules;
                let actions =
                    self.clients[client].wake(self.now, &mut self.rng, &mut self.history, &rules);
                self.client_actions(client, actions);
            }
            Event::Crash => {
                let node = self.rng.below(self.nodes.len() as u64) as usize;
                if self.nodes[node].node.is_some() {
                    self.crash(node);
                }
                self.maybe_crash_another(node);
                let next = self.now + self.rng.between(1, 2 * self.faults.crash_every_us.max(1));
                if self.healed_at.is_none() {
                    self.schedule(next, Event::Crash);
                }
            }
            Event::CrashNode { node } => {
                if self.nodes[node].node.is_some() && self.healed_at.is_none() {
                    self.crash(node);
                    self.maybe_crash_another(node);
                }
            }
            Event::Restart { node } => {
                let sim = &self.nodes[node];
                if sim.node.is_none() && !sim.gone && !sim.spare {
                    self.boot(node);
                }
            }
            Event::ChangeMembers => self.begin_member_change(),
            Event::NudgeMembers => self.nudge_member_change(),
            Event::Repartition => {
                self.repartition();
                let next = self.now
                    + self
                        .rng
                        .between(1, 2 * self.faults.partition_every_us.max(1));
                if self.healed_at.is_none() {
                    self.schedule(next, Event::Repartition);
                }
            }
            Event::Pause => {
                let node = self.rng.below(self.nodes.len() as u64) as usize;
                let until = self.now + self.rng.between(1_000, 300_000);
                self.trace
                    .line(self.now, format_args!("node {node} paused until {until}"));
                self.nodes[node].paused_until = until;
                let next = self.now + self.rng.between(1, 2 * self.faults.pause_every_us.max(1));
                if self.healed_at.is_none() {
                    self.schedule(next, Event::Pause);
                }
            }
            Event::Heal => self.heal(),
            Event::Probe => self.probe_acquire(),
            Event::Suspect => self.suspect(),
            Event::Unsuspect => self.tell_who_is_down(),
            Event::Revive => {
                self.trace
                    .line(self.now, format_args!("clients start again"));
                self.revived_until = Some(self.now + REVIVAL_US);
                for c in &mut self.clients {
                    c.stopped = false;
                }
            }
            Event::ClockStep => self.step_bad_clock(),
        }
    }

    /// A paused node handles nothing: what reaches it waits for the pause
    /// to end. Returns the event if it is to be handled now.
    fn unless_paused(&mut self, event: Event) -> Option<Event> {
        let node = match &event {
            Event::Deliver { to, .. } => *to,
            Event::Submit { node, .. } => *node,
            Event::NodeTimer { node, life } if self.nodes[*node].life != *life => return None,
            Event::NodeTimer { node, .. } => *node,
            _ => return Some(event),
        };
        let until = self.nodes[node].paused_until;
        if self.now < until {
            self.schedule(until, event);
            return None;
        }
        Some(event)
    }

    fn local(&self, node: usize) -> Instant {
        self.nodes[node].clock.local(self.now)
    }

    fn client_actions(&mut self, client: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send {
                    node,
                    request,
                    name,
                    op,
                    history,
                } => {
                    self.trace.line(
                        self.now,
                        format_args!("client {client} -> node {node} #{request} {name} {op:?}"),
                    );
                    match self.delivery_time(usize::MAX, node) {
                        Some(at) => self.schedule(
                            at,
                            Event::Submit {
                                node,
                                client,
                                request,
                                name,
                                op,
                                history,
                            },
                        ),
                        // Never reached a node: it certainly had no effect.
                        None => self.history.discard(&name, history),
                    }
                }
                Action::WakeAt(at) => self.schedule(at, Event::ClientWake { client }),
            }
        }
    }
}
