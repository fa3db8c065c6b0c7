//! `tenure sim`: run the deterministic simulator over many seeds and report
//! any violation with the command that replays it.

use anyhow::{bail, Result};
use clap::Args;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tenure_core::Bug;
use tenure_sim::faults::BadClocks;
use tenure_sim::{run, RunReport, SimConfig};

#[derive(Args)]
pub struct SimArgs {
    /// How many seeds to run, starting at --first.
    #[arg(long, default_value_t = 500)]
    seeds: u64,
    /// The first seed of the batch.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Run this one seed and print its whole trace.
    #[arg(long, conflicts_with_all = ["seeds", "first"])]
    seed: Option<u64>,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    nodes: usize,
    /// Switch on one deliberate protocol bug (see --list-bugs).
    #[arg(long, value_name = "NAME")]
    inject_bug: Option<String>,
    /// List the bugs --inject-bug knows.
    #[arg(long)]
    list_bugs: bool,
    /// Steps the linearizability search may take per name; a history it
    /// cannot finish within them fails the run as unverified.
    #[arg(long, default_value_t = tenure_sim::check::linearizability::STEP_BUDGET)]
    check_budget: u64,
    /// How many seeds have one node whose clock breaks the drift bound
    /// (from half to twice true speed, with steps).
    #[arg(long, value_enum, default_value = "sometimes")]
    bad_clock: BadClockArg,
    /// Change the members in every seed, amid the faults: a member lost
    /// with its disk and replaced by an empty node, or a growth to five.
    #[arg(long)]
    member_change: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BadClockArg {
    Never,
    /// About half of them.
    Sometimes,
    Always,
}

/// Violations whose trace is printed in full; the rest are counted.
const SHOWN: usize = 3;

pub fn run_sim(args: SimArgs) -> Result<ExitCode> {
    if args.list_bugs {
        for bug in Bug::ALL {
            println!("{}", bug.name());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let bug = match &args.inject_bug {
        None => None,
        Some(name) => match Bug::from_name(name) {
            Some(bug) => Some(bug),
            None => bail!("unknown bug {name:?}; `tenure sim --list-bugs` lists them"),
        },
    };
    let config = |seed| SimConfig {
        nodes: args.nodes,
        bug,
        full_trace: args.seed.is_some(),
        check_budget: args.check_budget,
        bad_clocks: match args.bad_clock {
            BadClockArg::Never => BadClocks::Never,
            BadClockArg::Sometimes => BadClocks::Sometimes,
            BadClockArg::Always => BadClocks::Always,
        },
        member_change: args.member_change,
        ..SimConfig::new(seed)
    };
    let started = Instant::now();
    let seeds: Vec<u64> = match args.seed {
        Some(seed) => vec![seed],
        None => (args.first..args.first.saturating_add(args.seeds)).collect(),
    };
    let reports = run_parallel(&seeds, &config);
    let mut failed: Vec<&RunReport> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .collect();
    failed.sort_by_key(|r| r.seed);
    let verbose = args.seed.is_some();
    for report in failed.iter().take(if verbose { 1 } else { SHOWN }) {
        println!("seed {}: {}", report.seed, report.violations[0]);
        for more in &report.violations[1..] {
            println!("  also: {more}");
        }
        println!("  last events:");
        let tail = if verbose { report.trace_tail.len() } else { 20 };
        for line in report.trace_tail.iter().rev().take(tail).rev() {
            println!("    {line}");
        }
        println!("  reproduce: {}", reproduce(report.seed, &args));
    }
    if verbose && failed.is_empty() {
        if let Some(report) = reports.first() {
            for line in &report.trace_tail {
                println!("    {line}");
            }
        }
    }
    // A history the linearizability search could not finish within its
    // budget is not verified: those are the most tangled histories, the
    // likeliest to hide a bug, so they fail the run as a violation does.
    let mut unchecked: Vec<&RunReport> = reports.iter().filter(|r| r.unchecked_names > 0).collect();
    unchecked.sort_by_key(|r| r.seed);
    for report in unchecked.iter().take(SHOWN) {
        println!(
            "seed {}: the linearizability check gave up on {} name(s) (step budget); not verified\n  reproduce: {}",
            report.seed,
            report.unchecked_names,
            reproduce(report.seed, &args)
        );
    }
    let operations: usize = reports.iter().map(|r| r.operations).sum();
    let grants: usize = reports.iter().map(|r| r.grants).sum();
    let events: u64 = reports.iter().map(|r| r.events).sum();
    let compactions: u64 = reports.iter().map(|r| r.compactions).sum();
    let changed = reports
        .iter()
        .filter(|r| r.member_change_done == Some(true))
        .count();
    let changes = if args.member_change {
        format!(", {changed} member changes over")
    } else {
        String::new()
    };
    // Liveness failures are worth knowing apart: a seed that broke no
    // safety property but left a request unanswered.
    let of_safety = failed
        .iter()
        .filter(|r| {
            r.violations
                .iter()
                .any(|v| !matches!(v, tenure_sim::Violation::Liveness { .. }))
        })
        .count();
    println!(
        "sim: {} seeds, {} with violations ({of_safety} of safety), {} not fully checked, {operations} operations, {grants} grants, {compactions} registers compacted{changes}, {events} events, {:.1} s{}",
        reports.len(),
        failed.len(),
        unchecked.len(),
        started.elapsed().as_secs_f64(),
        bug.map(|b| format!(", injected bug {}", b.name())).unwrap_or_default(),
    );
    Ok(if failed.is_empty() && unchecked.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Seeds are independent, so they spread over the cores; each seed's run is
/// still single-threaded and deterministic.
fn run_parallel(seeds: &[u64], config: &(dyn Fn(u64) -> SimConfig + Sync)) -> Vec<RunReport> {
    let next = AtomicU64::new(0);
    let reports = Mutex::new(Vec::with_capacity(seeds.len()));
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(seeds.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&seed) = seeds.get(i) else { break };
                let report = run(config(seed));
                if let Ok(mut all) = reports.lock() {
                    all.push(report);
                }
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_default();
    reports.sort_by_key(|r| r.seed);
    reports
}

fn parse_nodes(s: &str) -> Result<usize, String> {
    match s {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(format!("a simulated cluster has 3 or 5 nodes, not {s}")),
    }
}

fn reproduce(seed: u64, args: &SimArgs) -> String {
    let (nodes, bug) = (args.nodes, &args.inject_bug);
    let mut command = format!("cargo run --release -- sim --seed {seed}");
    if args.check_budget != tenure_sim::check::linearizability::STEP_BUDGET {
        command.push_str(&format!(" --check-budget {}", args.check_budget));
    }
    if nodes != 3 {
        command.push_str(&format!(" --nodes {nodes}"));
    }
    if let Some(bug) = bug {
        command.push_str(&format!(" --inject-bug {bug}"));
    }
    if args.member_change {
        command.push_str(" --member-change");
    }
    command
}
