//! Deterministic simulation of a tenure cluster, in the manner of
//! FoundationDB's simulator and TigerBeetle's VOPR.
//!
//! One thread, one seeded ChaCha generator, one queue of events in true
//! time. The nodes are the real protocol core (`tenure_core::Node`) on a
//! simulated disk that loses what was not synced at a crash; the network
//! delays with a long tail, loses, duplicates, reorders and partitions;
//! clocks drift within the configured bound; nodes crash, restart, pause and
//! fail fsyncs. Each seed draws its own mix of faults. After the fault
//! period everything heals and a probe checks that service resumes.
//!
//! The checkers then judge the run: linearizability per name,
//! lease exclusivity in true time, fencing, and liveness. The same seed
//! always gives the same trace, so any failure replays from its seed.

pub mod check;
pub mod client;
pub mod clock;
pub mod contend;
pub mod disk;
pub mod faults;
pub mod history;
pub mod rng;
pub mod trace;
pub mod world;

pub use check::Violation;
pub use world::{SimConfig, DRIFT_BOUND_PPM};

/// The verdict on one seed.
#[derive(Debug)]
pub struct RunReport {
    pub seed: u64,
    pub violations: Vec<Violation>,
    /// A hash of the whole trace: equal for equal seeds.
    pub trace_hash: u64,
    pub trace_lines: u64,
    /// Events the run processed.
    pub events: u64,
    /// The last lines of the trace, for a report.
    pub trace_tail: Vec<String>,
    pub operations: usize,
    pub grants: usize,
    /// Names whose history was too tangled to check within the step budget.
    pub unchecked_names: usize,
    /// Registers the nodes deleted (a name compacted on three nodes counts
    /// three).
    pub compactions: u64,
    /// With `SimConfig::member_change`: whether the change of members was
    /// over by the end of the run.
    pub member_change_done: Option<bool>,
}

/// Run one seed and check it.
pub fn run(config: SimConfig) -> RunReport {
    let (seed, budget) = (config.seed, config.check_budget);
    let mut world = world::World::new(config);
    world.run();
    let mut violations = Vec::new();
    let mut unchecked_names = 0;
    let history = &world.history;
    for (name, ops) in &history.ops {
        let compaction = check::linearizability::Compaction {
            this_name: world.compacted.contains(name),
            any_name: !world.compacted.is_empty(),
        };
        match check::linearizability::check(name, ops, budget, compaction) {
            Ok(report) if !report.checked => unchecked_names += 1,
            Ok(_) => {}
            Err(v) => violations.push(v),
        }
        if let Err(v) = check::fencing::check(name, ops) {
            violations.push(v);
        }
    }
    for (name, intervals) in &history.validity {
        if let Err(v) = check::exclusivity::check(name, intervals) {
            violations.push(v);
        }
    }
    if let Some(detail) = world.liveness.take() {
        violations.push(Violation::Liveness { detail });
    }
    let operations = history.ops.values().map(Vec::len).sum();
    let grants = history
        .ops
        .values()
        .flatten()
        .filter(|o| matches!(o.returned, Some((_, tenure_core::Outcome::Granted { .. }))))
        .count();
    RunReport {
        seed,
        violations,
        trace_hash: world.trace.hash(),
        trace_lines: world.trace.lines(),
        events: world.processed,
        trace_tail: world.trace.tail().map(str::to_string).collect(),
        operations,
        grants,
        unchecked_names,
        compactions: world.compactions,
        member_change_done: world.member_change_done(),
    }
}
