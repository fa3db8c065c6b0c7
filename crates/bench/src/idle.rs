//! Memory with idle leases, on fresh clusters (nothing left from the other
//! steps: no released names, no MVCC history, no dead node): resident
//! memory when empty, then at each level, loading tenure and then etcd up
//! to it, each with the machine to itself.

use crate::clients::{Etcd, Tenure};
use crate::procs::{rss_kib_per_node, EtcdCluster, TenureCluster, Tls};
use crate::progress::Progress;
use crate::stats::round1;
use crate::{workloads, Options, Run};
use anyhow::Result;
use serde_json::{json, Value};
use std::time::Duration;

/// Client threads per system loading idle leases.
const FILL_CLIENTS: usize = 256;

/// The `idle` step: the figures go to `run.idle`.
pub(crate) fn step(run: &mut Run) -> Result<()> {
    run.idle = Some(idle_leases(
        run.opts,
        &run.sizes.idle_levels,
        &run.id,
        &mut run.progress,
        run.tls.as_ref(),
    )?);
    Ok(())
}

/// Resident memory when empty and at each of `levels` (see above).
fn idle_leases(
    opts: &Options,
    levels: &[usize],
    run: &str,
    progress: &mut Progress,
    tls: Option<&Tls>,
) -> Result<Value> {
    progress.next("memory: fresh clusters for the idle leases");
    let etcd = EtcdCluster::start(&opts.data, tls)?;
    let tenure = TenureCluster::start(&opts.tenure_bin, &opts.data, tls)?;
    // Let both settle after their start, as after each level.
    std::thread::sleep(Duration::from_secs(2));
    let empty = json!({
        "tenure_rss_kib_per_node": rss_kib_per_node(&tenure.nodes),
        "etcd_rss_kib_per_node": rss_kib_per_node(&etcd.nodes),
    });
    let mut out = Vec::new();
    let mut from = 0;
    for &level in levels {
        let mut one = json!({ "leases": level });
        for (system, key) in [("tenure", "tenure"), ("etcd", "etcd")] {
            progress.next(&format!(
                "memory: {system}, idle leases {from} → {level} ({FILL_CLIENTS} clients, at most {} s)",
                opts.idle_fill_limit.as_secs()
            ));
            let mut report = |granted: u64, secs: f64| {
                progress.note(&format!(
                    "{system}: {} of {} granted, {:.0}/s",
                    from as u64 + granted,
                    level,
                    granted as f64 / secs.max(1e-9)
                ))
            };
            let every = Duration::from_secs(15);
            let names = from..level;
            let fill = match system {
                "tenure" => {
                    let urls = tenure.urls.clone();
                    workloads::fill(
                        names,
                        FILL_CLIENTS,
                        &format!("t{run}"),
                        opts.idle_fill_limit,
                        move |i| Tenure::new(&urls, i, format!("idle{i}")),
                        every,
                        &mut report,
                    )
                }
                _ => {
                    let urls = etcd.urls.clone();
                    workloads::fill(
                        names,
                        FILL_CLIENTS,
                        &format!("e{run}"),
                        opts.idle_fill_limit,
                        move |i| Etcd::new(&urls, i),
                        every,
                        &mut report,
                    )
                }
            };
            let before = out
                .last()
                .and_then(|l: &Value| l[key]["granted"].as_u64())
                .unwrap_or(0);
            one[key] = json!({
                "granted": before + fill.granted,
                "failed": fill.failed,
                "fill_seconds": round1(fill.seconds),
                "grants_per_s": round1(fill.per_second()),
                "cut_short": fill.cut_short,
                "first_error": fill.first_error,
            });
            progress.note(&format!(
                "{system}: {} granted in {:.0} s ({:.0}/s){}",
                fill.granted,
                fill.seconds,
                fill.per_second(),
                if fill.cut_short {
                    " -- stopped at the time limit"
                } else {
                    ""
                }
            ));
        }
        // Let both settle (etcd's lessor, tenure's group commit) first.
        std::thread::sleep(Duration::from_secs(2));
        one["tenure"]["rss_kib_per_node"] = json!(rss_kib_per_node(&tenure.nodes));
        one["etcd"]["rss_kib_per_node"] = json!(rss_kib_per_node(&etcd.nodes));
        out.push(one);
        from = level;
    }
    Ok(json!({
        "clients_per_system": FILL_CLIENTS,
        "ttl_ms": 3_600_000,
        "fill_limit_seconds": opts.idle_fill_limit.as_secs(),
        "empty": empty,
        "levels": out,
    }))
}
