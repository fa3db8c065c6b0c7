//! `tenure bench compare`: tenure and etcd side by side on one machine.
//!
//! One run starts a 3-node etcd cluster and a 3-node tenure cluster on
//! loopback (real processes, OS-chosen ports, temporary data directories on
//! the same file system, fsync on), runs the same workloads against both
//! through the same HTTP client, and writes `bench/RESULTS.md` (and, when
//! asked, a JSON file). It is a benchmark, not a test: nothing here runs
//! under `cargo test` except the unit tests of its parts.
//!
//! This file holds the table of steps and runs it; each step's work is in
//! its own module, and the report in `report`.

pub mod clients;
pub mod contended;
pub mod election;
pub mod failover;
mod idle;
pub mod plot;
pub mod procs;
mod progress;
mod report;
mod resolver;
mod sizes;
pub mod stats;
mod steps;
pub mod workloads;

use anyhow::{bail, Context, Result};
use election::ElectionResults;
use procs::{EtcdCluster, TenureCluster, Tls};
use progress::Progress;
use serde_json::Value;
use sizes::{Sizes, LEVELS};
use stats::Latencies;
use std::path::PathBuf;
use std::time::Duration;
use workloads::{Cycles, NodeLoss, Sequential};

/// Where the clusters keep their files.
#[derive(Clone, Debug)]
pub struct DataPlaces {
    /// Logs, certificates, and every node's data unless `nodes` is given.
    pub root: PathBuf,
    /// Member `i` of each cluster keeps its data under `nodes[i]`: to give
    /// each node a file system (and an fsync queue) of its own.
    pub nodes: Vec<PathBuf>,
}

impl DataPlaces {
    pub fn under(root: PathBuf) -> DataPlaces {
        DataPlaces {
            root,
            nodes: Vec::new(),
        }
    }

    /// Where member `i` (0-based) of either cluster keeps its data.
    pub fn node(&self, i: usize) -> &std::path::Path {
        self.nodes.get(i).unwrap_or(&self.root)
    }
}

pub struct Options {
    /// The `tenure` binary to start the nodes from.
    pub tenure_bin: PathBuf,
    pub quick: bool,
    pub json: Option<PathBuf>,
    pub results: PathBuf,
    /// Install etcd with apt-get when missing.
    pub install: bool,
    /// Where both clusters' temporary directories go.
    pub data: DataPlaces,
    /// The command line, for the report.
    pub command: String,
    /// The steps to run (names from `STEPS`); empty: all of them.
    pub steps: Vec<String>,
    /// Idle lease counts to measure memory at, ascending; `None`: the
    /// mode's default (full: 100,000 and 1,000,000; quick: none).
    pub idle_leases: Option<Vec<usize>>,
    /// The longest a system may take to load one idle level; it then
    /// stops, and the report says how many it was granted.
    pub idle_fill_limit: Duration,
    /// Both systems on TLS everywhere: peer links and client ports, from
    /// one CA made for the run, which the clients trust.
    pub tls: bool,
}

/// One step of `compare`.
pub struct Step {
    pub name: &'static str,
    /// The progress lines the step prints, given the sizes; the run's
    /// total is their sum. A step with none to print has nothing to do
    /// (`idle` without levels).
    lines: fn(&Sizes) -> usize,
    /// Whether it runs on the two clusters the steps share (started before
    /// the first such step); if not, it starts its own, and the shared
    /// ones are stopped first so that it has the machine to itself.
    shared: bool,
    run: fn(&mut Run) -> Result<()>,
}

/// Every step of `compare`, in the order they run. The machine may be busy
/// with other work whose load varies over the run: in every step the two
/// systems take turns, round by round or level by level, so that both see
/// the same background.
pub const STEPS: [Step; 13] = [
    Step {
        name: "sequential",
        lines: |_| 1,
        shared: true,
        run: steps::sequential,
    },
    Step {
        name: "cycles",
        lines: |_| LEVELS.len(),
        shared: true,
        run: steps::cycles,
    },
    Step {
        name: "failover",
        lines: |s| s.failover_ttls_ms.len(),
        shared: true,
        run: steps::failover,
    },
    Step {
        name: "handoff",
        lines: |_| 1,
        shared: true,
        run: steps::handoff,
    },
    Step {
        name: "election",
        lines: |_| 2,
        shared: true,
        run: steps::election,
    },
    Step {
        name: "trylock",
        lines: |_| contended::TRYLOCK_LEVELS.len(),
        shared: true,
        run: contended::trylock_step,
    },
    Step {
        name: "queue",
        lines: |_| contended::QUEUE_LEVELS.len(),
        shared: true,
        run: contended::queue_step,
    },
    Step {
        name: "election32",
        lines: |_| 1,
        shared: true,
        run: contended::election32_step,
    },
    Step {
        name: "stampede",
        lines: |_| 1,
        shared: true,
        run: contended::stampede_step,
    },
    // Last of the shared steps: it leaves one node of each cluster dead.
    Step {
        name: "kill",
        lines: |_| 2,
        shared: true,
        run: steps::kill,
    },
    // Fresh clusters, then one node of each killed.
    Step {
        name: "trylock-kill",
        lines: |_| 3,
        shared: false,
        run: contended::trylock_kill_step,
    },
    Step {
        name: "queue-kill",
        lines: |_| 3,
        shared: false,
        run: contended::queue_kill_step,
    },
    Step {
        name: "idle",
        lines: |s| match s.idle_levels.len() {
            0 => 0,
            levels => 1 + 2 * levels,
        },
        shared: false,
        run: idle::step,
    },
];

/// The progress lines outside the steps: checking for etcd, and writing
/// the report.
const LINES_AROUND_STEPS: usize = 2;

/// What the steps measured for one system.
#[derive(Default)]
struct SystemResults {
    sequential: Option<Sequential>,
    handoff: Option<Latencies>,
    failover: Vec<failover::Failover>,
    cycles: Vec<Cycles>,
    loss: Option<NodeLoss>,
    rss_kib: Option<Vec<u64>>,
    election: Option<ElectionResults>,
    contended: contended::Contended,
}

/// The clusters the shared steps run on.
struct Shared {
    etcd: EtcdCluster,
    tenure: TenureCluster,
}

/// What a step works with, and where it puts its figures.
struct Run<'a> {
    opts: &'a Options,
    sizes: &'a Sizes,
    /// Part of every name the run uses (the process id), so that names
    /// never meet those of an earlier run.
    id: String,
    progress: Progress,
    shared: Option<Shared>,
    tenure: SystemResults,
    etcd: SystemResults,
    /// The idle-lease figures, measured on clusters of their own.
    idle: Option<Value>,
    /// The run's certificates, with `--tls`; every cluster of the run
    /// uses them.
    tls: Option<Tls>,
}

impl Run<'_> {
    /// Start the shared clusters, unless they run already.
    fn start_shared(&mut self) -> Result<()> {
        if self.shared.is_none() {
            self.progress
                .next("starting 3 etcd members and 3 tenure nodes");
            let tls = self.tls.as_ref();
            let etcd = EtcdCluster::start(&self.opts.data, tls)?;
            let tenure = TenureCluster::start(&self.opts.tenure_bin, &self.opts.data, tls)?;
            self.shared = Some(Shared { etcd, tenure });
        }
        Ok(())
    }
}

/// The steps that run, in table order: those asked for that have
/// something to do.
fn selected<'s>(opts: &Options, sizes: &Sizes, steps: &'s [Step]) -> Vec<&'s Step> {
    steps
        .iter()
        .filter(|s| opts.steps.is_empty() || opts.steps.iter().any(|n| n == s.name))
        .filter(|s| (s.lines)(sizes) > 0)
        .collect()
}

/// Every progress line the run prints: those of the steps, one for each
/// start of the shared clusters (before a shared step that follows none),
/// and those around the steps.
fn total_lines(steps: &[&Step], sizes: &Sizes) -> usize {
    let starts = steps
        .iter()
        .enumerate()
        .filter(|(i, s)| s.shared && (*i == 0 || !steps[i - 1].shared))
        .count();
    steps.iter().map(|s| (s.lines)(sizes)).sum::<usize>() + starts + LINES_AROUND_STEPS
}

pub fn run_compare(opts: Options) -> Result<()> {
    for step in &opts.steps {
        if !STEPS.iter().any(|s| s.name == step) {
            bail!(
                "unknown step {step:?}; the steps are {}",
                step_names().join(", ")
            );
        }
    }
    let mut sizes = if opts.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    if let Some(levels) = &opts.idle_leases {
        sizes.idle_levels = levels.iter().copied().filter(|&n| n > 0).collect();
        sizes.idle_levels.sort_unstable();
        sizes.idle_levels.dedup();
    }
    if !opts.steps.is_empty() && !opts.steps.iter().any(|s| s == "idle") {
        sizes.idle_levels.clear();
    }
    let steps = selected(&opts, &sizes, &STEPS);
    for dir in std::iter::once(&opts.data.root).chain(&opts.data.nodes) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let tls = if opts.tls {
        let tls = Tls::create(&opts.tenure_bin, &opts.data.root)
            .context("make the certificates of a run over TLS")?;
        procs::trust_ca(&tls.ca())?;
        Some(tls)
    } else {
        None
    };
    let mut run = Run {
        opts: &opts,
        sizes: &sizes,
        id: std::process::id().to_string(),
        progress: Progress::new(total_lines(&steps, &sizes)),
        shared: None,
        tenure: SystemResults::default(),
        etcd: SystemResults::default(),
        idle: None,
        tls,
    };
    run.progress.next("checking for etcd");
    let etcd_version = procs::ensure_etcd(opts.install, &|m| eprintln!("      {m}"))?;
    for step in steps {
        if step.shared {
            run.start_shared()?;
        } else {
            run.shared = None;
        }
        let before = run.progress.printed;
        (step.run)(&mut run)?;
        let (printed, declared) = (run.progress.printed - before, (step.lines)(&sizes));
        assert_eq!(
            printed, declared,
            "step {} printed {printed} progress lines; the step table says {declared}",
            step.name
        );
    }
    run.shared = None;
    run.progress.next("writing the report");
    report::write(&opts, &sizes, &etcd_version, &mut run)
}

/// The names of the steps, in the order they run.
pub fn step_names() -> Vec<&'static str> {
    STEPS.iter().map(|s| s.name).collect()
}

#[cfg(test)]
impl Options {
    /// A quick run with every path empty and nothing to install.
    pub(crate) fn for_tests() -> Options {
        Options {
            tenure_bin: PathBuf::new(),
            quick: true,
            json: None,
            results: PathBuf::new(),
            install: false,
            data: DataPlaces::under(PathBuf::new()),
            command: "tenure bench compare".into(),
            steps: Vec::new(),
            idle_leases: None,
            idle_fill_limit: Duration::ZERO,
            tls: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(steps: &[&str]) -> Options {
        Options {
            steps: steps.iter().map(|s| s.to_string()).collect(),
            ..Options::for_tests()
        }
    }

    #[test]
    fn the_progress_total_is_the_sum_of_the_table() {
        let quick = Sizes::quick();
        let all = selected(&options(&[]), &quick, &STEPS);
        // idle has no levels in a quick run: nothing to do.
        assert!(all.iter().all(|s| s.name != "idle"));
        // etcd, start, sequential 1, cycles 3, failover 2, handoff 1,
        // election 2, trylock 3, queue 2, election32 1, stampede 1, kill 2,
        // trylock-kill 3 and queue-kill 3 (their own clusters), report.
        assert_eq!(
            total_lines(&all, &quick),
            1 + 1 + 1 + 3 + 2 + 1 + 2 + 3 + 2 + 1 + 1 + 2 + 3 + 3 + 1
        );
        let full = Sizes::full();
        let only_idle = selected(&options(&["idle"]), &full, &STEPS);
        // etcd, fresh clusters, 2 levels × 2 systems, report; no shared start.
        assert_eq!(total_lines(&only_idle, &full), 1 + 1 + 2 * 2 + 1);
    }

    #[test]
    fn the_shared_clusters_start_once_before_a_run_of_shared_steps() {
        let sizes = Sizes::full();
        let steps = selected(&options(&["election", "idle"]), &sizes, &STEPS);
        assert_eq!(total_lines(&steps, &sizes), 2 + 1 + 5 + 2);
        // trylock-kill starts its own clusters; the shared ones start once.
        let names = ["trylock", "stampede", "trylock-kill"];
        let steps = selected(&options(&names), &sizes, &STEPS);
        assert_eq!(total_lines(&steps, &sizes), 2 + 1 + 3 + 1 + 3);
    }

    #[test]
    fn the_shared_steps_come_before_the_steps_with_clusters_of_their_own() {
        // Otherwise the shared clusters would start twice, and `kill`
        // must be the last shared step: it leaves a node dead.
        let shared = STEPS.iter().filter(|s| s.shared).count();
        assert!(STEPS[..shared].iter().all(|s| s.shared));
        assert_eq!(STEPS[shared - 1].name, "kill");
    }

    #[test]
    fn the_table_names_each_step_once() {
        let mut names = step_names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), STEPS.len());
    }
}
