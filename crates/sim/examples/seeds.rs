//! Run a range of seeds: `cargo run --release -p tenure-sim --example seeds -- FIRST COUNT [BUG]`.
use tenure_sim::{run, SimConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let first: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let count: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let bug = args.get(3).and_then(|s| tenure_core::Bug::from_name(s));
    let started = std::time::Instant::now();
    let (mut failed, mut ops, mut grants, mut unchecked) = (0, 0, 0, 0);
    for seed in first..first + count {
        let mut config = SimConfig::new(seed);
        config.bug = bug;
        let report = run(config);
        ops += report.operations;
        grants += report.grants;
        unchecked += report.unchecked_names;
        if !report.violations.is_empty() {
            failed += 1;
            if failed <= 3 {
                println!("seed {seed}: {}", report.violations[0]);
                for line in report.trace_tail.iter().rev().take(12).rev() {
                    println!("    {line}");
                }
            }
        }
    }
    println!(
        "{count} seeds, {failed} with violations, {ops} ops, {grants} grants, {unchecked} unchecked, {:?}",
        started.elapsed()
    );
}
