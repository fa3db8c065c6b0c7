//! What one model check explores: the clients' scripts, the fault budgets,
//! the time horizon, and the bug switched on (if any).

use super::spec::ClientId;
use tenure_core::Bug;

/// One step of a client's script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Acquire,
    /// Renew the client's latest grant (skipped if it has none).
    Renew,
    /// Release the client's latest grant (skipped if it has none).
    Release,
    Read,
}

/// A client: the node it talks to and what it asks, one request at a time,
/// each step no earlier than its start time.
#[derive(Clone, Debug)]
pub struct Script {
    pub node: usize,
    pub steps: Vec<(Step, u64)>,
    /// Its steps wait until its node holds the final configuration of
    /// the scenario's change, as a client told to use a new member once
    /// the change is over there.
    pub after_change: bool,
}

impl Script {
    /// A client of node `node` (by index).
    pub fn on(node: usize) -> Script {
        Script {
            node,
            steps: Vec::new(),
            after_change: false,
        }
    }

    /// Its steps wait until its node holds the change's final
    /// configuration.
    pub fn once_changed(self) -> Script {
        Script {
            after_change: true,
            ..self
        }
    }

    /// Then `step`, as soon as the previous one is answered.
    pub fn then(self, step: Step) -> Script {
        self.then_from(0, step)
    }

    /// Then `step`, once the previous one is answered and the clock has
    /// reached `start_ms`.
    pub fn then_from(mut self, start_ms: u64, step: Step) -> Script {
        self.steps.push((step, start_ms));
        self
    }
}

/// A change of members the checker asks one node to coordinate
/// (`Node::change_members`). The nodes of the first configuration are
/// n1..n3; a target node beyond them joins empty, under the joint
/// configuration, as a joining node starts (docs/membership.md).
#[derive(Clone, Debug)]
pub struct MemberChange {
    /// The node (by index) asked to coordinate it.
    pub coordinator: usize,
    /// The members to move to, by index.
    pub target: Vec<usize>,
    /// It is asked only once this client's first request is answered: a
    /// grant made before the change, whose last messages may still be in
    /// flight while it runs.
    pub after_answer_to: Option<ClientId>,
    /// Old members too slow to rescan within the horizon: the
    /// coordinator's requests to rescan never reach them. A majority of
    /// the old members must still rescan for the change to go on, and
    /// its argument rests on theirs alone (docs/membership.md).
    pub slow_to_rescan: Vec<usize>,
}

/// Everything that bounds one model: the workload, the fault budgets, the
/// time horizon, and the bug switched on (if any).
#[derive(Clone, Debug)]
pub struct Scenario {
    pub clients: Vec<Script>,
    pub ttl_ms: u64,
    /// How far one tick moves the clock.
    pub tick_ms: u64,
    /// The clock stops here.
    pub horizon_ms: u64,
    pub phase_timeout_ms: u64,
    /// The longest pause after a second pre-emption in one round.
    pub backoff_ms: u64,
    pub request_deadline_ms: u64,
    /// The drift bound ρ. Nodes' clocks run fast by ρ and clients' clocks
    /// slow by ρ, the worst case for exclusivity (and `Rules.drift` is ρ).
    pub drift_ppm: u32,
    /// One node (by index) whose clock breaks the bound: it runs at this
    /// many ppm of true time (2,000,000 is twice as fast).
    pub bad_clock: Option<(usize, u64)>,
    pub crashes: u8,
    /// The nodes that may crash.
    pub crashable: Vec<usize>,
    /// Crashes come only once some node has begun a rescan; until then
    /// every disk syncs as soon as it is written.
    pub crash_during_rescan: bool,
    pub duplicates: u8,
    /// Deliver each channel's messages in send order, as one connection
    /// does, except for `losses` messages lost and `reorders` messages
    /// that overtake others. Without it, every order is explored (and loss
    /// needs no budget: an undelivered message is a lost one).
    pub fifo: bool,
    pub losses: u8,
    pub reorders: u8,
    pub bug: Option<Bug>,
    /// Node 3 is lost for good and node 4 replaces it: the nodes run the
    /// joint configuration {1,2,3} + {1,2,4} (docs/membership.md), node 4
    /// (index 3) takes part, and nothing reaches node 3.
    pub replacing: bool,
    /// A change of members, asked for once.
    pub change: Option<MemberChange>,
    /// How long a change waits for answers before it asks again, and a
    /// rescan's carry before it gives up (`Compaction.settle_timeout`).
    pub settle_ms: u64,
    /// Pairs of nodes (by index) that cannot reach each other: what one
    /// sends the other is lost.
    pub cut: Vec<(usize, usize)>,
    /// Time moves on only while at most this many messages are in
    /// flight: every other message arrives within the tick it was sent
    /// in, or is lost. `None`: any number may be slower.
    pub slow_messages: Option<usize>,
}

impl Scenario {
    /// `clients` on a quiet cluster: FIFO channels without faults, no
    /// crash, no time passing, and leases that never expire. Tests switch
    /// on what they need.
    pub fn new(clients: Vec<Script>) -> Scenario {
        // Beyond every horizon: what is set to it never happens.
        const NEVER_MS: u64 = 86_400_000;
        Scenario {
            clients,
            ttl_ms: NEVER_MS,
            tick_ms: 10,
            horizon_ms: 0,
            phase_timeout_ms: NEVER_MS,
            backoff_ms: NEVER_MS,
            request_deadline_ms: NEVER_MS,
            drift_ppm: 0,
            bad_clock: None,
            crashes: 0,
            crashable: Vec::new(),
            crash_during_rescan: false,
            duplicates: 0,
            fifo: true,
            losses: 0,
            reorders: 0,
            bug: None,
            replacing: false,
            change: None,
            settle_ms: NEVER_MS,
            cut: Vec::new(),
            slow_messages: None,
        }
    }

    /// Leases never expire within the horizon, so the register is a plain
    /// lock and linearizability can be checked against [`super::spec`].
    pub fn leases_outlive_horizon(&self) -> bool {
        self.ttl_ms > self.horizon_ms
    }
}
