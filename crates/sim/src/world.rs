//! The discrete-event engine: true time, the network, the nodes with their
//! disks and clocks, the clients, and the faults that hit them.

use crate::client::{Action, Client};
use crate::clock::Clock;
use crate::contend::{self, Ask, Contender};
use crate::disk::Disk;
use crate::faults::FaultPlan;
use crate::history::History;
use crate::rng::SimRng;
use crate::trace::Trace;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use tenure_core::{
    Bug, Bugs, Config, DriftBound, Failure, HolderId, Instant, LeaseName, LockDelay, Message, Node,
    NodeId, Op, Outcome, RequestId, Rules, Timing, Ttl, WriteId,
};

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub bug: Option<Bug>,
    /// How long faults are injected, in simulated µs.
    pub fault_period_us: u64,
    /// Keep the whole trace rather than its last lines.
    pub full_trace: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes: 3,
            bug: None,
            fault_period_us: 3_000_000,
            full_trace: false,
        }
    }
}

/// The drift bound the simulated cluster is configured with: large, so that
/// drift-related bugs show within short runs.
pub const DRIFT_BOUND_PPM: u32 = 50_000;

/// The client slot of the liveness probe.
const PROBE: usize = usize::MAX >> 1;

/// How long after healing an acquire of a free name must succeed.
const LIVENESS_BOUND_US: u64 = 5_000_000;

/// The crowd's client numbers start here, clear of the ordinary clients.
const CROWD: usize = 1 << 20;
/// The name the crowd fights over.
const CROWD_NAME: &str = "contended";

enum Event {
    Deliver {
        from: NodeId,
        to: usize,
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
    Crash,
    Restart {
        node: usize,
    },
    Repartition,
    Pause,
    Heal,
    Probe,
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
}

pub struct World {
    config: SimConfig,
    rules: Rules,
    rng: SimRng,
    faults: FaultPlan,
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
}

impl World {
    pub fn new(config: SimConfig) -> World {
        let mut rng = SimRng::new(config.seed);
        let faults = FaultPlan::draw(&mut rng, DRIFT_BOUND_PPM);
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
            faults,
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
            config,
            rng,
        };
        for i in 0..world.config.nodes {
            let clock = world.new_clock();
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
            });
            world.boot(i);
        }
        let client_count = world.rng.between(2, 7) as usize;
        for c in 0..client_count {
            let clock = world.new_clock();
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
        let heal_at = world.config.fault_period_us;
        world.schedule(heal_at, Event::Heal);
        world
    }

    /// One line per node, for a report.
    pub fn node_states(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "{}: up={} life={} syncing={} disk_unsynced={} node_unsynced={:?} held={:?} timer={:?}",
                    n.id,
                    n.node.is_some(),
                    n.life,
                    n.syncing,
                    n.disk.has_unsynced(),
                    n.node.as_ref().map(Node::unsynced_writes),
                    n.node.as_ref().map(Node::held_messages),
                    n.node.as_ref().and_then(Node::poll_timeout),
                )
            })
            .collect()
    }

    fn new_clock(&mut self) -> Clock {
        // Half the clocks run at the edge of the bound, where bugs live.
        let drift = self.faults.drift_ppm;
        let rate = if self.rng.chance(500_000) {
            if self.rng.chance(500_000) {
                i64::from(drift)
            } else {
                -i64::from(drift)
            }
        } else {
            self.rng.symmetric(drift)
        };
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
        let end = self.config.fault_period_us
            + LIVENESS_BOUND_US
            + contend::CONTENTION_US
            + 2 * contend::ANSWER_BOUND_US
            + 3_000_000;
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
                return;
            }
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

    /// Once the cluster is healthy again: a crowd on one fresh name, on
    /// every node at once.
    fn start_crowd(&mut self) {
        let name = LeaseName::new(CROWD_NAME).unwrap_or_else(|_| unreachable!());
        let until = self.now + contend::CONTENTION_US;
        let count = self.rng.between(4, 12) as usize;
        self.trace.line(
            self.now,
            format_args!("a crowd of {count} contends for {name}"),
        );
        for i in 0..count {
            let clock = self.new_clock();
            let node = i % self.nodes.len();
            let waits = self.rng.chance(500_000);
            self.crowd.push(Contender::new(
                CROWD + i,
                clock,
                node,
                waits,
                name.clone(),
                until,
            ));
            // Within a millisecond of each other: a stampede on a fresh name.
            let at = self.now + self.rng.below(1_000);
            self.schedule(at, Event::CrowdWake { contender: i });
        }
    }

    fn crowd_asks(&mut self, contender: usize, asks: Vec<Ask>) {
        for ask in asks {
            match ask {
                Ask::Send {
                    node,
                    request,
                    op,
                    history,
                } => {
                    let name = LeaseName::new(CROWD_NAME).unwrap_or_else(|_| unreachable!());
                    let client = CROWD + contender;
                    self.trace.line(
                        self.now,
                        format_args!("crowd {contender} -> node {node} #{request} {op:?}"),
                    );
                    let at = self.now + self.rng.between(50, 1_500);
                    self.schedule(
                        at,
                        Event::Submit {
                            node,
                            client,
                            request: (client as u64) << 40 | request,
                            name,
                            op,
                            history,
                        },
                    );
                }
                Ask::WakeAt(at) => self.schedule(at, Event::CrowdWake { contender }),
            }
        }
    }

    fn handle(&mut self, event: Event) {
        if self.healed_at.is_some()
            && matches!(event, Event::Crash | Event::Repartition | Event::Pause)
        {
            return; // Faults scheduled before healing do not strike after it.
        }
        let Some(event) = self.unless_paused(event) else {
            return;
        };
        match event {
            Event::Deliver { from, to, message } => {
                let now = self.local(to);
                self.trace.line(
                    self.now,
                    format_args!("{from} -> node {to} {}", message.kind()),
                );
                if let Some(node) = self.nodes[to].node.as_mut() {
                    node.handle_message(now, from, message);
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
                let next = self.now + self.rng.between(1, 2 * self.faults.crash_every_us.max(1));
                if self.healed_at.is_none() {
                    self.schedule(next, Event::Crash);
                }
            }
            Event::Restart { node } => {
                if self.nodes[node].node.is_none() {
                    self.boot(node);
                }
            }
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

    fn boot(&mut self, i: usize) {
        let clock = self.new_clock();
        let sim = &mut self.nodes[i];
        sim.clock = clock;
        let recovered = match sim.disk.boot() {
            Ok(recovered) => recovered,
            Err(e) => unreachable!("a crash alone never makes a store unreadable: {e}"),
        };
        let incarnation = recovered.incarnation;
        let config = Config {
            node: sim.id,
            incarnation,
            promise_horizon: recovered.horizon,
            members: (1..=self.config.nodes as u16).map(NodeId).collect(),
            rules: self.rules,
            timing: Timing {
                phase_timeout: tenure_core::Micros::from_millis(100),
                request_deadline: tenure_core::Micros::from_millis(1_000),
                ..Timing::default()
            },
            seed: self.rng.next_u64(),
        };
        let now = sim.clock.local(self.now);
        match Node::new(config, recovered.records, now) {
            Ok(node) => sim.node = Some(node),
            Err(e) => unreachable!("the simulated configuration is valid: {e}"),
        }
        self.trace.line(
            self.now,
            format_args!("node {i} boots, incarnation {incarnation}"),
        );
    }

    fn crash(&mut self, node: usize) {
        let sim = &mut self.nodes[node];
        for (_, (_, name, index)) in std::mem::take(&mut sim.requests) {
            self.history.end(&name, index, self.now);
        }
        let sim = &mut self.nodes[node];
        sim.node = None;
        sim.disk.crash();
        sim.life += 1;
        sim.syncing = false;
        sim.timer_at = None;
        sim.requests.clear();
        sim.paused_until = 0;
        self.trace
            .line(self.now, format_args!("node {node} crashes"));
        let back = self.now + self.rng.between(10_000, 500_000);
        self.schedule(back, Event::Restart { node });
    }

    /// Collect what the node wants done: writes to the disk, messages to the
    /// network, replies to clients, and its next timer.
    fn drain(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        let mut writes = Vec::new();
        while let Some(w) = node.poll_write() {
            writes.push(w);
        }
        let mut transmits = Vec::new();
        while let Some(t) = node.poll_transmit() {
            transmits.push(t);
        }
        let mut replies = Vec::new();
        while let Some(r) = node.poll_reply() {
            replies.push(r);
        }
        let mut phases = Vec::new();
        while let Some(event) = node.poll_event() {
            if let tenure_core::Event::Phase { name, phase } = event {
                phases.push(format!("node {i} {name} {}", phase.kind()));
            }
        }
        for line in phases {
            self.trace.line(self.now, format_args!("{line}"));
        }
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        let timer = node.poll_timeout();
        let from = self.nodes[i].id;
        for w in writes {
            self.nodes[i].disk.write(w);
        }
        if !self.nodes[i].syncing {
            if let Some(through) = self.nodes[i].disk.last_unsynced() {
                self.nodes[i].syncing = true;
                let latency = if self.rng.chance(self.faults.slow_sync_ppm) {
                    self.rng.between(10_000, 100_000)
                } else {
                    self.rng.between(50, 500)
                };
                let life = self.nodes[i].life;
                self.schedule(
                    self.now + latency,
                    Event::Synced {
                        node: i,
                        life,
                        through,
                    },
                );
            }
        }
        for t in transmits {
            let to = usize::from(t.to.0) - 1;
            self.send_message(i, to, from, t.message);
        }
        for r in replies {
            if let Some((client, name, index)) = self.nodes[i].requests.remove(&r.request.0) {
                // The history takes the outcome when the node gives it, whether
                // or not the client ever hears of it.
                match &r.result {
                    Ok(outcome) => self
                        .history
                        .complete(&name, index, self.now, outcome.clone()),
                    Err(Failure::Unavailable {
                        outcome_unknown: true,
                    }) => self.history.end(&name, index, self.now),
                    Err(_) => self.history.discard(&name, index),
                }
                if let Some(at) = self.delivery_time(i, usize::MAX) {
                    self.schedule(
                        at,
                        Event::Answer {
                            client,
                            request: r.request.0,
                            result: r.result,
                        },
                    );
                }
            }
        }
        if let Some(t) = timer {
            let at = self.nodes[i].clock.true_at(t);
            // One queued timer event per node: an earlier one covers later
            // timers, since the node re-arms when it fires.
            if self.nodes[i].timer_at.is_none_or(|queued| at < queued) {
                self.nodes[i].timer_at = Some(at);
                let life = self.nodes[i].life;
                self.schedule(at, Event::NodeTimer { node: i, life });
            }
        }
    }

    fn send_message(&mut self, from_index: usize, to: usize, from: NodeId, message: Message) {
        let copies = if self.rng.chance(self.faults.duplicate_ppm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if let Some(at) = self.delivery_time(from_index, to) {
                self.schedule(
                    at,
                    Event::Deliver {
                        from,
                        to,
                        message: message.clone(),
                    },
                );
            }
        }
    }

    /// When a message sent now arrives, or `None` if it is lost. Clients use
    /// `usize::MAX` as their end: they are never partitioned, only delayed
    /// and lost.
    fn delivery_time(&mut self, from: usize, to: usize) -> Option<u64> {
        if self.cut.contains(&(from, to)) || self.rng.chance(self.faults.loss_ppm) {
            return None;
        }
        let mut delay = self.rng.between(50, 1_500);
        if self.rng.chance(self.faults.tail_ppm) {
            delay += self.rng.below(self.faults.tail_max_us);
        }
        Some(self.now + delay)
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

    fn repartition(&mut self) {
        self.cut.clear();
        let n = self.nodes.len();
        let mut side: Vec<usize> = (0..n).collect();
        // Shuffle, then cut off a prefix: a minority or a majority alike.
        for i in (1..n).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            side.swap(i, j);
        }
        let cut_size = self.rng.between(0, n as u64 - 1) as usize;
        let one_way = self.rng.chance(250_000);
        for &a in &side[..cut_size] {
            for &b in &side[cut_size..] {
                self.cut.insert((a, b));
                if !one_way {
                    self.cut.insert((b, a));
                }
            }
        }
        self.trace
            .line(self.now, format_args!("partition {:?}", self.cut));
    }

    fn heal(&mut self) {
        self.healed_at = Some(self.now);
        self.faults = self.faults.healed();
        self.cut.clear();
        self.trace.line(self.now, format_args!("faults heal"));
        for node in &mut self.nodes {
            node.paused_until = 0;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none() {
                self.boot(i);
            }
        }
        for c in &mut self.clients {
            c.stopped = true;
        }
        self.schedule(self.now + 10_000, Event::Probe);
    }

    /// Liveness: once healed, a free name must be acquirable. The probe asks
    /// a random node, and asks again every so often until it is granted.
    fn probe_acquire(&mut self) {
        let healed_at = self.healed_at.unwrap_or(self.now);
        if self.probe_granted || self.now > healed_at + LIVENESS_BOUND_US {
            return;
        }
        let name = LeaseName::new("liveness-probe").unwrap_or_else(|_| unreachable!());
        let node = self.rng.below(self.nodes.len() as u64) as usize;
        self.seq += 1;
        let request = (PROBE as u64) << 40 | self.seq;
        let op = Op::Acquire {
            holder: HolderId::new("probe").unwrap_or_else(|_| unreachable!()),
            ttl: Ttl::from_millis(1_000).unwrap_or_else(|_| unreachable!()),
            lock_delay: LockDelay::NONE,
            wait: tenure_core::Micros::ZERO,
        };
        let history = usize::MAX; // The probe is judged by liveness alone.
        self.schedule(
            self.now + 100,
            Event::Submit {
                node,
                client: PROBE,
                request,
                name,
                op,
                history,
            },
        );
        self.schedule(self.now + 1_500_000, Event::Probe);
    }
}
