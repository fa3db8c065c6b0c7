//! The JSON of a run: every figure of both systems, and their ratios.

use super::ratio;
use crate::contended::trylock::HOLD;
use crate::contended::{queue, QUEUE_LEVELS, TRYLOCK_LEVELS};
use crate::sizes::{Sizes, LEVELS};
use crate::stats::round1;
use crate::{step_names, workloads, Options, SystemResults};
use serde_json::{json, Value};

/// `part` names the election's partial campaign figure: what that system's
/// campaign costs without its first or last request (see `Uncontested`).
fn system_json(s: &mut SystemResults, part: &str) -> Value {
    let mut v = json!({});
    if let Some(seq) = &mut s.sequential {
        v["latency"] = json!({
            "acquire": seq.acquire.json(),
            "renew": seq.renew.json(),
            "release": seq.release.json(),
            "read": seq.read.json(),
        });
        if !seq.acquire_txn_only.is_empty() {
            v["latency"]["acquire_txn_only"] = seq.acquire_txn_only.json();
        }
    }
    if !s.cycles.is_empty() {
        let mut cycles = serde_json::Map::new();
        for c in &mut s.cycles {
            cycles.insert(
                c.clients.to_string(),
                json!({
                    "cycles_per_s": round1(c.per_second()),
                    "cycles": c.cycles,
                    "errors": c.errors,
                    "p50_us": round1(c.latency.us(0.5)),
                    "p99_us": round1(c.latency.us(0.99)),
                }),
            );
        }
        v["cycles"] = Value::Object(cycles);
    }
    if let Some(rss) = &s.rss_kib {
        v["rss_kib_per_node_after_cycles"] = json!(rss);
    }
    if let Some(h) = &mut s.handoff {
        v["handoff_release_to_grant"] = h.json();
        v["handoff_release_to_grant"]["max_us"] = json!(round1(h.max_us()));
    }
    if !s.failover.is_empty() {
        v["failover"] = s
            .failover
            .iter()
            .map(|f| {
                json!({
                    "ttl_ms": f.ttl_ms,
                    "granted_ttl_ms": f.granted_ttl_ms,
                    "takeover_ms": round1(f.takeover.as_secs_f64() * 1e3),
                    "over_granted_ttl_ms": round1(f.takeover.as_secs_f64() * 1e3 - f.granted_ttl_ms as f64),
                })
            })
            .collect();
    }
    if let Some(el) = &mut s.election {
        v["election"] = el.json(part);
    }
    if let Some(l) = &s.loss {
        v["node_kill_failed_requests"] = json!(l.failed_on_live_nodes);
        v["node_kill_failed_on_killed_node"] = json!(l.failed_on_killed_node);
        v["node_kill_longest_stall_ms"] = json!(round1(l.longest_stall.as_secs_f64() * 1e3));
        v["node_kill_slowest_request_ms"] = json!(round1(l.slowest_request.as_secs_f64() * 1e3));
        v["node_kill_cycles_after_kill"] = json!(l.cycles_after_kill);
        v["node_kill_clients"] = json!(l.clients);
        v["node_kill_first_error_on_surviving_nodes"] = json!(l.first_live_error);
    }
    if !s.contended.is_empty() {
        v["contended"] = s.contended.json();
        v["contended_errors"] = json!(s.contended.errors());
    }
    v
}

pub(super) fn to_json(
    opts: &Options,
    sizes: &Sizes,
    etcd_version: &str,
    t: &mut SystemResults,
    e: &mut SystemResults,
) -> Value {
    let tj = system_json(t, "campaign_grant_only");
    let ej = system_json(e, "campaign_session_open");
    let mut ratios = serde_json::Map::new();
    let mut put = |key: String, a: &Value, b: &Value| {
        if let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) {
            ratios.insert(key, json!(ratio(a, b)));
        }
    };
    for op in ["acquire", "renew", "release", "read"] {
        for q in ["p50", "p99"] {
            let key = format!("{q}_us");
            put(
                format!("{op}_{q}"),
                &tj["latency"][op][&key],
                &ej["latency"][op][&key],
            );
        }
    }
    for n in LEVELS {
        let n = n.to_string();
        put(
            format!("cycle_throughput_{n}"),
            &tj["cycles"][&n]["cycles_per_s"],
            &ej["cycles"][&n]["cycles_per_s"],
        );
        put(
            format!("cycle_p99_{n}"),
            &tj["cycles"][&n]["p99_us"],
            &ej["cycles"][&n]["p99_us"],
        );
    }
    put(
        "election_campaign_p50".into(),
        &tj["election"]["campaign_uncontested"]["p50_us"],
        &ej["election"]["campaign_uncontested"]["p50_us"],
    );
    put(
        "election_handoff_p50".into(),
        &tj["election"]["handoff_resign_to_next_leader"]["p50_us"],
        &ej["election"]["handoff_resign_to_next_leader"]["p50_us"],
    );
    for n in TRYLOCK_LEVELS {
        let (a, b) = (&tj["contended"]["trylock"], &ej["contended"]["trylock"]);
        let key = n.to_string();
        put(
            format!("contended_grants_{n}"),
            &a[&key]["grants_per_s"],
            &b[&key]["grants_per_s"],
        );
    }
    for n in QUEUE_LEVELS {
        let (a, b) = (&tj["contended"]["queue"], &ej["contended"]["queue"]);
        let key = n.to_string();
        put(
            format!("queue_grants_{n}"),
            &a[&key]["grants_per_s"],
            &b[&key]["grants_per_s"],
        );
    }
    put(
        "election32_handoff_p50".into(),
        &tj["contended"]["election32"]["handoff_resign_to_next_leader"]["p50_us"],
        &ej["contended"]["election32"]["handoff_resign_to_next_leader"]["p50_us"],
    );
    put(
        "stampede_first_grant_p50".into(),
        &tj["contended"]["stampede"]["first_request_to_first_grant"]["p50_us"],
        &ej["contended"]["stampede"]["first_request_to_first_grant"]["p50_us"],
    );
    json!({
        "machine": machine(),
        "commit": commit(),
        "command": opts.command,
        "quick": opts.quick,
        "tls": opts.tls,
        "transport": super::transport(opts.tls),
        "threads_per_member": crate::procs::threads_per_member(),
        "steps": if opts.steps.is_empty() { json!(step_names()) } else { json!(opts.steps) },
        "sizes": {
            "sequential_rounds": sizes.sequential,
            "cycle_seconds_per_level": sizes.cycle_secs,
            "node_kill_seconds": sizes.loss_secs,
            "ttl_ms": workloads::TTL_MS,
            "graceful_handoffs": sizes.handoffs,
            "election_campaigns": sizes.campaigns,
            "election_handoffs": sizes.election_handoffs,
            "idle_lease_levels": sizes.idle_levels,
            "contended_seconds_per_level": sizes.contended_secs,
            "contended_hold_ms": HOLD.as_millis() as u64,
            "queue_poll_seconds": queue::POLL.as_secs(),
            "election32_handoffs": sizes.election32_handoffs,
            "stampede_rounds": sizes.stampede_rounds,
        },
        "etcd_version": etcd_version,
        "etcd_client": "HTTP/JSON gRPC gateway (/v3/...), concurrency.Mutex and concurrency.Election recipes, ureq keep-alive",
        "tenure_client": "HTTP/JSON API (/v1/locks), tenure-client's Lock and LeaderElection recipes, ureq keep-alive",
        "tenure": tj,
        "etcd": ej,
        "ratios": ratios,
    })
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "mem_gib": round1(mem_kib as f64 / 1024.0 / 1024.0),
        "kernel": kernel.trim(),
        "loadavg_at_end": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

fn commit() -> String {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    match head {
        Some(h) if dirty => format!("{h} (with uncommitted changes in the tree)"),
        Some(h) => h,
        None => "unknown (not a git checkout)".into(),
    }
}
