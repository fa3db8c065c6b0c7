//! What one model check explores: the clients' scripts, the fault budgets,
//! the time horizon, and the bug switched on (if any).

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
}

impl Script {
    /// A client of node `node` (by index).
    pub fn on(node: usize) -> Script {
        Script {
            node,
            steps: Vec::new(),
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
            duplicates: 0,
            fifo: true,
            losses: 0,
            reorders: 0,
            bug: None,
            replacing: false,
        }
    }

    /// Leases never expire within the horizon, so the register is a plain
    /// lock and linearizability can be checked against [`super::spec`].
    pub fn leases_outlive_horizon(&self) -> bool {
        self.ttl_ms > self.horizon_ms
    }
}
