//! The benchmark's try-lock loop against a running cluster, for measuring
//! one change at a time without starting etcd:
//!
//! ```sh
//! cargo run --release -p tenure-bench --example trylock -- \
//!     http://127.0.0.1:7400,http://127.0.0.1:7401,http://127.0.0.1:7402 8 4 job
//! ```
//!
//! CLIENTS clients on NAME for SECONDS, spread over the URLs, each
//! acquiring without waiting, holding a grant 2 ms and releasing it. For a
//! cluster without grant keys (`tenure server` without `--grant-secret`).

use anyhow::{bail, Context, Result};
use std::time::Duration;
use tenure_bench::contended::client::TenureTry;
use tenure_bench::contended::trylock;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [urls, clients, seconds, name] = args.as_slice() else {
        bail!("usage: trylock URL,URL,... CLIENTS SECONDS NAME");
    };
    let urls: Vec<String> = urls.split(',').map(String::from).collect();
    let clients: usize = clients.parse().context("CLIENTS: a number")?;
    let seconds: u64 = seconds.parse().context("SECONDS: a number")?;
    let mut r = trylock::run(
        trylock::Plan {
            clients,
            run_for: Duration::from_secs(seconds),
            name: name.clone(),
            kill: None,
        },
        |i| TenureTry::new(&urls, i, format!("probe-{i}")),
        || {},
    );
    println!(
        "{:.0} grants/s, {} conflicts, decision p50 {:.0} µs, p99 {:.0} µs, errors {}",
        r.grants_per_s(),
        r.conflicts,
        r.decisions.us(0.5),
        r.decisions.us(0.99),
        r.live.errors()
    );
    Ok(())
}
