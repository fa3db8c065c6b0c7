//! How much each step does: a full run, or a quick one to check the steps.

/// The client counts of the cycles step.
pub const LEVELS: [usize; 3] = [16, 64, 256];

pub struct Sizes {
    /// Graceful handoffs timed per system.
    pub handoffs: usize,
    /// Idle lease counts for the memory figures, ascending (empty: skip).
    pub idle_levels: Vec<usize>,
    pub sequential: usize,
    pub failover_ttls_ms: &'static [u64],
    pub cycle_secs: u64,
    pub loss_secs: u64,
    /// Uncontested campaigns per system.
    pub campaigns: usize,
    /// Leadership handoffs among 3 candidates, per system.
    pub election_handoffs: usize,
    /// Seconds per level of the try-lock and queue workloads, per system
    /// (in two halves).
    pub contended_secs: u64,
    /// Leadership handoffs among 32 candidates, per system.
    pub election32_handoffs: usize,
    /// Stampedes on a fresh name, per system.
    pub stampede_rounds: usize,
}

impl Sizes {
    pub fn quick() -> Sizes {
        Sizes {
            idle_levels: vec![],
            handoffs: 5,
            sequential: 200,
            failover_ttls_ms: &[1000, 2000],
            cycle_secs: 2,
            loss_secs: 5,
            campaigns: 20,
            election_handoffs: 6,
            contended_secs: 2,
            election32_handoffs: 10,
            stampede_rounds: 10,
        }
    }

    pub fn full() -> Sizes {
        Sizes {
            idle_levels: vec![100_000, 1_000_000],
            handoffs: 20,
            sequential: 2000,
            failover_ttls_ms: &[1000, 2000, 10_000],
            cycle_secs: 10,
            loss_secs: 15,
            campaigns: 200,
            election_handoffs: 20,
            contended_secs: 8,
            election32_handoffs: 40,
            stampede_rounds: 50,
        }
    }
}
