//! `RESULTS.md`: the summary table of both systems, the plots, and how
//! each system is driven (`method.md`).

use super::plots::PLOTTED;
use super::{f, ratio};
use crate::sizes::{Sizes, LEVELS};
use crate::{workloads, Options};
use serde_json::Value;
use std::fmt::Write as _;

pub(super) fn summary_table(j: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| | tenure | etcd | tenure ÷ etcd |\n|---|---:|---:|---:|"
    );
    let (a, b) = (&j["tenure"], &j["etcd"]);
    let ms = |v: &Value| f(v) / 1e3;
    if a["latency"].is_object() {
        for op in ["acquire", "renew", "release", "read"] {
            for q in ["p50", "p99", "p999"] {
                let key = format!("{q}_us");
                let (x, y) = (f(&a["latency"][op][&key]), f(&b["latency"][op][&key]));
                let _ = writeln!(
                    s,
                    "| {op} {} (µs) | {x:.0} | {y:.0} | {:.2} |",
                    if q == "p999" { "p99.9" } else { q },
                    ratio(x, y)
                );
            }
        }
    }
    if b["latency"]["acquire_txn_only"].is_object() {
        let _ = writeln!(
            s,
            "| etcd acquire, txn only (session lease already granted) p50 / p99 (µs) | | {:.0} / {:.0} | |",
            f(&b["latency"]["acquire_txn_only"]["p50_us"]),
            f(&b["latency"]["acquire_txn_only"]["p99_us"])
        );
    }
    for n in LEVELS {
        let n = n.to_string();
        let (x, y) = (&a["cycles"][&n], &b["cycles"][&n]);
        if !x.is_object() {
            continue;
        }
        let _ = writeln!(
            s,
            "| cycles/s, {n} clients | {:.0} | {:.0} | {:.2} |",
            f(&x["cycles_per_s"]),
            f(&y["cycles_per_s"]),
            ratio(f(&x["cycles_per_s"]), f(&y["cycles_per_s"]))
        );
        let _ = writeln!(
            s,
            "| cycle p99, {n} clients (ms) | {:.1} | {:.1} | {:.2} |",
            ms(&x["p99_us"]),
            ms(&y["p99_us"]),
            ratio(f(&x["p99_us"]), f(&y["p99_us"]))
        );
        let _ = writeln!(
            s,
            "| cycle errors, {n} clients | {} | {} | |",
            x["errors"], y["errors"]
        );
    }
    let fails = |x: &Value| x["failover"].as_array().cloned().unwrap_or_default();
    for (fa, fb) in fails(a).iter().zip(fails(b).iter()) {
        let _ = writeln!(
            s,
            "| failover, ttl {} ms asked: granted ttl (ms) / holder's last renewal → waiter granted (ms) | {} / {} | {} / {} | {:.2} |",
            fa["ttl_ms"],
            fa["granted_ttl_ms"],
            fa["takeover_ms"],
            fb["granted_ttl_ms"],
            fb["takeover_ms"],
            ratio(f(&fa["takeover_ms"]), f(&fb["takeover_ms"]))
        );
    }
    let (ha, hb) = (
        &a["handoff_release_to_grant"],
        &b["handoff_release_to_grant"],
    );
    if ha.is_object() {
        let label = format!(
            "graceful handoff: release sent → waiter granted, p50 / max of {} (ms)",
            ha["n"]
        );
        spread_row(&mut s, &label, ha, hb, "max_us", 1, true);
    }
    let (ea, eb) = (&a["election"], &b["election"]);
    if ea.is_object() {
        let (ca, cb) = (&ea["campaign_uncontested"], &eb["campaign_uncontested"]);
        let label = format!(
            "election: uncontested campaign, p50 / p99 of {} (ms)",
            ca["n"]
        );
        spread_row(&mut s, &label, ca, cb, "p99_us", 2, true);
        spread_row(
            &mut s,
            "election: the same campaign on a session already open (etcd; tenure has no session: up to the grant), p50 / p99 (ms)",
            &ea["campaign_grant_only"],
            &eb["campaign_session_open"],
            "p99_us",
            2,
            false,
        );
        spread_row(
            &mut s,
            "election: resign, nobody waiting, p50 / p99 (ms)",
            &ea["resign"],
            &eb["resign"],
            "p99_us",
            2,
            true,
        );
        let (ha, hb) = (
            &ea["handoff_resign_to_next_leader"],
            &eb["handoff_resign_to_next_leader"],
        );
        let label = format!(
            "election: handoff among 3 candidates, resign sent → next leader's campaign returned, p50 / max of {} (ms)",
            ha["n"]
        );
        spread_row(&mut s, &label, ha, hb, "max_us", 1, true);
    }
    if a["node_kill_clients"].is_number() {
        for (label, key) in [
            (
                "node kill: failed requests on the surviving nodes",
                "node_kill_failed_requests",
            ),
            (
                "node kill: failed requests on the killed node",
                "node_kill_failed_on_killed_node",
            ),
            (
                "node kill: longest stall, no cycle completing (ms)",
                "node_kill_longest_stall_ms",
            ),
            (
                "node kill: slowest successful request after the kill (ms)",
                "node_kill_slowest_request_ms",
            ),
            (
                "node kill: cycles completed after the kill",
                "node_kill_cycles_after_kill",
            ),
        ] {
            let _ = writeln!(s, "| {label} | {} | {} | |", a[key], b[key]);
        }
    }
    if a["rss_kib_per_node_after_cycles"].is_array() {
        let _ = writeln!(
            s,
            "| resident memory per node after the cycles (MiB) | {} | {} | |",
            mib_list(&a["rss_kib_per_node_after_cycles"]),
            mib_list(&b["rss_kib_per_node_after_cycles"])
        );
    }
    let idle = &j["idle_leases"];
    if idle.is_object() {
        let _ = writeln!(
            s,
            "| idle leases, fresh clusters: resident memory per node with none (MiB) | {} | {} | |",
            mib_list(&idle["empty"]["tenure_rss_kib_per_node"]),
            mib_list(&idle["empty"]["etcd_rss_kib_per_node"])
        );
        let mut from = 0;
        for level in idle["levels"].as_array().cloned().unwrap_or_default() {
            let (x, y) = (&level["tenure"], &level["etcd"]);
            let granted = |v: &Value| {
                if v["cut_short"] == true {
                    format!(
                        "{}, **stopped at the {} s limit**",
                        v["granted"], idle["fill_limit_seconds"]
                    )
                } else {
                    v["granted"].to_string()
                }
            };
            let _ = writeln!(
                s,
                "| loading idle leases {from} → {}: grants/s, {} clients (granted in all) | {:.0} ({}) | {:.0} ({}) | {:.2} |",
                level["leases"],
                idle["clients_per_system"],
                f(&x["grants_per_s"]),
                granted(x),
                f(&y["grants_per_s"]),
                granted(y),
                ratio(f(&x["grants_per_s"]), f(&y["grants_per_s"]))
            );
            let _ = writeln!(
                s,
                "| resident memory per node with {} idle leases (MiB) | {} | {} | |",
                level["leases"],
                mib_list(&x["rss_kib_per_node"]),
                mib_list(&y["rss_kib_per_node"])
            );
            from = level["leases"].as_u64().unwrap_or(0);
        }
    }
    s
}

/// One table row of two latency summaries in ms, `p50 / spread` for each
/// system (`spread`: the key of the second figure), with `decimals`, and
/// the ratio of the p50s when the two measure the same thing.
fn spread_row(
    s: &mut String,
    label: &str,
    a: &Value,
    b: &Value,
    spread: &str,
    decimals: usize,
    with_ratio: bool,
) {
    let ms = |v: &Value| f(v) / 1e3;
    let ratio_cell = if with_ratio {
        format!(" {:.2} |", ratio(f(&a["p50_us"]), f(&b["p50_us"])))
    } else {
        " |".to_string()
    };
    let _ = writeln!(
        s,
        "| {label} | {:.*} / {:.*} | {:.*} / {:.*} |{ratio_cell}",
        decimals,
        ms(&a["p50_us"]),
        decimals,
        ms(&a[spread]),
        decimals,
        ms(&b["p50_us"]),
        decimals,
        ms(&b[spread]),
    );
}

fn mib_list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|k| format!("{:.0}", f(k) / 1024.0))
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .unwrap_or_default()
}

/// Where the nodes kept their data, for the report's header.
fn data_places(opts: &Options) -> String {
    if opts.data.nodes.is_empty() {
        return "data in fresh temporary directories on the same file system".into();
    }
    let dirs: Vec<String> = (0..3)
        .map(|i| format!("`{}`", opts.data.node(i).display()))
        .collect();
    format!(
        "member 1, 2 and 3 of each system keep their data under {} (`--node-data-dirs`)",
        dirs.join(", ")
    )
}

pub(super) fn to_markdown(opts: &Options, sizes: &Sizes, etcd_version: &str, j: &Value) -> String {
    let m = &j["machine"];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# tenure vs etcd: side by side on one machine\n\n\
         *Generated by `{}`; do not edit by hand, run it again.*\n",
        opts.command
    );
    let _ = writeln!(
        s,
        "- machine: {} CPUs ({}), {} GiB, Linux {}; load average at the end {}\n\
         - commit: {}\n\
         - etcd {etcd_version} (Debian `etcd-server`), 3 members; tenure, 3 `tenure server` processes of `{}`; \
         {} worker thread(s) per member in both (the cores shared out: `GOMAXPROCS`, `TOKIO_WORKER_THREADS`)\n\
         - both on 127.0.0.1, ports chosen by the OS, {}, fsync on (both systems' default)\n\
         - transport: {}\n\
         - mode: {}; {} sequential rounds; {} s per concurrency level; node kill run {} s (kill at {} s); ttl {} ms; \
         election: {} uncontested campaigns, {} handoffs; idle leases: {}\n\
         - steps: {}\n",
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or(""),
        m["mem_gib"],
        m["kernel"].as_str().unwrap_or(""),
        m["loadavg_at_end"].as_str().unwrap_or(""),
        j["commit"].as_str().unwrap_or(""),
        opts.tenure_bin.display(),
        crate::procs::threads_per_member(),
        data_places(opts),
        super::transport(opts.tls),
        if opts.quick { "--quick" } else { "full" },
        sizes.sequential,
        sizes.cycle_secs,
        sizes.loss_secs,
        sizes.loss_secs / 3,
        workloads::TTL_MS,
        sizes.campaigns,
        sizes.election_handoffs,
        if sizes.idle_levels.is_empty() {
            "not measured".to_string()
        } else {
            sizes
                .idle_levels
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
        if opts.steps.is_empty() {
            "all".to_string()
        } else {
            format!("only {}", opts.steps.join(", "))
        },
    );
    if m["cpus"].as_u64().unwrap_or(0) <= 2 {
        let _ = writeln!(
            s,
            "**Caveat:** a {}-CPU machine runs both clusters' three nodes and every client thread; \
             other work (builds) may have been running too (see the load average). \
             Absolute figures are pessimistic and tails noisy; ratios are the point.\n",
            m["cpus"]
        );
    }
    let table = summary_table(j);
    // Its header alone when only the steps under contention ran: they
    // have a section of their own.
    if table.lines().count() > 2 {
        let _ = writeln!(s, "## Results\n\n{table}");
    }
    let _ = writeln!(
        s,
        "Ratios are tenure ÷ etcd: lower is better for latencies, higher for throughput.\n"
    );
    for (who, key) in [("tenure", "tenure"), ("etcd", "etcd")] {
        if let Some(e) = j[key]["node_kill_first_error_on_surviving_nodes"].as_str() {
            let _ = writeln!(
                s,
                "First failure on a surviving {who} node after the kill: `{e}`\n"
            );
        }
    }
    for level in j["idle_leases"]["levels"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        for who in ["tenure", "etcd"] {
            if let Some(e) = level[who]["first_error"].as_str() {
                let _ = writeln!(
                    s,
                    "First failed grant while loading {} idle leases into {who} ({} failed): `{e}`\n",
                    level["leases"], level[who]["failed"]
                );
            }
        }
    }
    s.push_str(&super::contention::section(j));
    if let Some(plots) = j["plots"].as_object() {
        let _ = writeln!(
            s,
            "## Latency distributions\n\n\
             The sequential workload's samples (one client per system, one request \
             at a time, after the warm-up): the fraction of requests that took at \
             most a given time, on a log scale.\n"
        );
        for (op, title, _) in PLOTTED {
            if let Some(file) = plots.get(op).and_then(Value::as_str) {
                let _ = writeln!(s, "![{title}: latency CDF, tenure and etcd]({file})\n");
            }
        }
    }
    let _ = writeln!(
        s,
        "What these figures say against the targets of issue 8, and what the \
         profiles showed: [README.md](README.md).\n"
    );
    s.push_str(METHOD);
    s
}

/// How each system is driven: the end of every `RESULTS.md`.
const METHOD: &str = include_str!("method.md");
