//! The faults of one run. Each seed draws its own mix and rates (swarm
//! testing): a run with few kinds of fault at high rates finds bugs that a
//! run with every fault at a low rate hides.

use crate::rng::SimRng;

#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Chance per message of being lost, in ppm.
    pub loss_ppm: u32,
    /// Chance per message of being delivered twice, in ppm.
    pub duplicate_ppm: u32,
    /// Chance per message of a long delay (the tail), in ppm.
    pub tail_ppm: u32,
    /// Longest tail delay, µs.
    pub tail_max_us: u64,
    /// Mean time between partition changes, µs; 0 for none.
    pub partition_every_us: u64,
    /// Mean time between node crashes, µs; 0 for none.
    pub crash_every_us: u64,
    /// Mean time between process pauses, µs; 0 for none.
    pub pause_every_us: u64,
    /// Chance per fsync of a slow one (10–100 ms), in ppm.
    pub slow_sync_ppm: u32,
    /// Chance per fsync of a failure (the node stops), in ppm.
    pub failed_sync_ppm: u32,
    /// Clock rates drift within ± this, in ppm (at most the configured bound).
    pub drift_ppm: u32,
    /// Chance per grant that its holder stalls: it never renews, but acts
    /// as holder until its deadline, like a process stuck in a long pause.
    pub stall_ppm: u32,
    /// Chance per lazy acceptance a node acknowledges that the node crashes
    /// within 300 µs, mostly before the record lands, in ppm.
    pub lazy_crash_ppm: u32,
    /// Chance per crash that a second node crashes with it, in ppm.
    pub pair_crash_ppm: u32,
}

/// One node whose clock breaks the drift bound (A3 in docs/safety.md):
/// it runs anywhere from half to twice true speed and may jump, forward or
/// back, as the clock of a paused, migrated or mis-set VM does. The
/// protocol must stay safe; only liveness may suffer.
#[derive(Clone, Debug)]
pub struct BadClock {
    pub node: usize,
    /// −500,000 ppm (×0.5) to +1,000,000 ppm (×2).
    pub rate_ppm: i64,
    /// Mean time between steps, µs; 0 for none.
    pub step_every_us: u64,
    /// Largest step, µs, either way.
    pub step_max_us: u64,
}

/// How often a seed has a bad clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadClocks {
    Never,
    /// About half the seeds.
    Sometimes,
    Always,
}

impl BadClock {
    /// Drawn from its own stream (`rng`), so that the rest of a seed's run
    /// does not change with it.
    pub fn draw(rng: &mut SimRng, nodes: usize, how_often: BadClocks) -> Option<BadClock> {
        let chance = match how_often {
            BadClocks::Never => 0,
            BadClocks::Sometimes => 500_000,
            BadClocks::Always => 1_000_000,
        };
        if !rng.chance(chance) {
            return None;
        }
        // Half of them at the extremes, where bugs live.
        let rate_ppm = match rng.below(4) {
            0 => -500_000,
            1 => 1_000_000,
            _ => rng.between(0, 1_500_000) as i64 - 500_000,
        };
        let steps = rng.chance(500_000);
        Some(BadClock {
            node: rng.below(nodes as u64) as usize,
            rate_ppm,
            step_every_us: if steps {
                rng.between(50_000, 1_000_000)
            } else {
                0
            },
            step_max_us: rng.between(10_000, 3_000_000),
        })
    }
}

/// Each fault is on for about half the seeds, at a rate drawn per seed
/// between `lo` and `hi`; 0 when off.
fn maybe(rng: &mut SimRng, lo: u64, hi: u64) -> u64 {
    if rng.chance(500_000) {
        rng.between(lo, hi)
    } else {
        0
    }
}

impl FaultPlan {
    pub fn draw(rng: &mut SimRng, drift_bound_ppm: u32) -> FaultPlan {
        let bound = u64::from(drift_bound_ppm);
        FaultPlan {
            loss_ppm: maybe(rng, 1_000, 200_000) as u32,
            duplicate_ppm: maybe(rng, 1_000, 100_000) as u32,
            tail_ppm: maybe(rng, 1_000, 100_000) as u32,
            tail_max_us: rng.between(5_000, 400_000),
            partition_every_us: maybe(rng, 20_000, 800_000),
            crash_every_us: maybe(rng, 100_000, 1_500_000),
            pause_every_us: maybe(rng, 100_000, 1_500_000),
            slow_sync_ppm: maybe(rng, 1_000, 100_000) as u32,
            failed_sync_ppm: maybe(rng, 100, 5_000) as u32,
            drift_ppm: maybe(rng, bound / 2, bound) as u32,
            stall_ppm: maybe(rng, 10_000, 500_000) as u32,
            lazy_crash_ppm: 0,
            pair_crash_ppm: 0,
        }
    }

    /// Draw the crashes that aim at lazy acceptances from their own stream
    /// (`rng`), so that the faults drawn before them stay as they were.
    pub fn with_lazy_crashes(self, rng: &mut SimRng) -> FaultPlan {
        FaultPlan {
            lazy_crash_ppm: maybe(rng, 1_000, 50_000) as u32,
            pair_crash_ppm: maybe(rng, 100_000, 1_000_000) as u32,
            ..self
        }
    }

    /// The plan after the fault period: a healed, quiet network.
    pub fn healed(&self) -> FaultPlan {
        FaultPlan {
            loss_ppm: 0,
            duplicate_ppm: 0,
            tail_ppm: 0,
            partition_every_us: 0,
            crash_every_us: 0,
            pause_every_us: 0,
            slow_sync_ppm: 0,
            failed_sync_ppm: 0,
            stall_ppm: 0,
            lazy_crash_ppm: 0,
            pair_crash_ppm: 0,
            ..self.clone()
        }
    }
}
