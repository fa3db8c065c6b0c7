//! `tenure bench compare`: tenure and etcd side by side on one machine.
//!
//! One run starts a 3-node etcd cluster and a 3-node tenure cluster on
//! loopback (real processes, OS-chosen ports, temporary data directories on
//! the same file system, fsync on), runs the same workloads against both
//! through the same HTTP client, and writes `bench/RESULTS.md` (and, when
//! asked, a JSON file). It is a benchmark, not a test: nothing here runs
//! under `cargo test` except the unit tests of its parts.

pub mod clients;
pub mod failover;
pub mod plot;
pub mod procs;
pub mod stats;
pub mod workloads;

use anyhow::{Context, Result};
use clients::{Etcd, Tenure};
use failover::LetGo;
use procs::{EtcdCluster, TenureCluster};
use serde_json::{json, Value};
use stats::{round1, Latencies};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use workloads::{Cycles, NodeLoss, Sequential};

pub struct Options {
    /// The `tenure` binary to start the nodes from.
    pub tenure_bin: PathBuf,
    pub quick: bool,
    pub json: Option<PathBuf>,
    pub results: PathBuf,
    /// Install etcd with apt-get when missing.
    pub install: bool,
    /// Where both clusters' temporary data directories go.
    pub data_root: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

const LEVELS: [usize; 3] = [16, 64, 256];

struct Sizes {
    /// Graceful handoffs timed per system.
    handoffs: usize,
    /// Idle leases held for the memory figure (0: skip).
    idle_leases: usize,
    sequential: usize,
    failover_ttls_ms: &'static [u64],
    cycle_secs: u64,
    loss_secs: u64,
}

/// A progress line on stderr: step, elapsed time, what is running.
struct Progress {
    began: Instant,
    step: usize,
    steps: usize,
}

impl Progress {
    fn next(&mut self, what: &str) {
        self.step += 1;
        // Never past full, even if a step was miscounted.
        let done = (self.step * 20 / self.steps.max(1)).min(20);
        eprintln!(
            "[{}{}] {:>2}/{} {:>5.1}s  {what}",
            "#".repeat(done),
            ".".repeat(20 - done),
            self.step,
            self.steps,
            self.began.elapsed().as_secs_f64()
        );
    }
}

struct SystemResults {
    sequential: Sequential,
    handoff: Latencies,
    failover: Vec<failover::Failover>,
    cycles: Vec<Cycles>,
    loss: Option<NodeLoss>,
    rss_kib: Vec<u64>,
}

pub fn run_compare(opts: Options) -> Result<()> {
    let sizes = if opts.quick {
        Sizes {
            idle_leases: 0,
            handoffs: 5,
            sequential: 200,
            failover_ttls_ms: &[1000, 2000],
            cycle_secs: 2,
            loss_secs: 5,
        }
    } else {
        Sizes {
            idle_leases: 100_000,
            handoffs: 20,
            sequential: 2000,
            failover_ttls_ms: &[1000, 2000, 10_000],
            cycle_secs: 10,
            loss_secs: 15,
        }
    };
    // install, start, sequential, levels, failovers, handoff, memory,
    // 2 node kills, report
    let mut progress = Progress {
        began: Instant::now(),
        step: 0,
        steps: 2
            + 1
            + LEVELS.len()
            + sizes.failover_ttls_ms.len()
            + 1
            + usize::from(sizes.idle_leases > 0)
            + 2
            + 1,
    };
    progress.next("checking for etcd");
    let etcd_version = procs::ensure_etcd(opts.install, &|m| eprintln!("      {m}"))?;
    std::fs::create_dir_all(&opts.data_root)?;
    progress.next("starting 3 etcd members and 3 tenure nodes");
    let mut etcd = EtcdCluster::start(&opts.data_root)?;
    let mut tenure = TenureCluster::start(&opts.tenure_bin, &opts.data_root)?;
    let run = std::process::id().to_string();

    // The machine may be busy with other work whose load varies over the
    // run: the two systems take turns, round by round and level by level,
    // so that both see the same background.
    progress.next("sequential latency, tenure and etcd taking turns round by round");
    let leader = etcd.leader()?;
    let mut tc = Tenure::new(&tenure.urls, 0, "seq".into());
    let mut ec = Etcd::new(&etcd.urls, leader);
    let (mut t_seq, mut e_seq) = (Sequential::default(), Sequential::default());
    let warm = (sizes.sequential / 10).max(10);
    for i in 0..warm + sizes.sequential {
        let record = i >= warm;
        let name = format!("seq-{run}-{i}");
        let mut tenure_round = || {
            t_seq
                .round(&mut tc, &name, record, |_| None)
                .context("tenure sequential")
        };
        let mut etcd_round = || {
            e_seq
                .round(&mut ec, &name, record, |c: &Etcd| Some(c.last_txn))
                .context("etcd sequential")
        };
        if i % 2 == 0 {
            tenure_round()?;
            etcd_round()?;
        } else {
            etcd_round()?;
            tenure_round()?;
        }
    }
    let (mut t_cycles, mut e_cycles) = (Vec::new(), Vec::new());
    let half = Duration::from_millis(sizes.cycle_secs * 500);
    for n in LEVELS {
        progress.next(&format!(
            "cycles with {n} clients, tenure and etcd taking turns"
        ));
        let mut t_level: Option<Cycles> = None;
        let mut e_level: Option<Cycles> = None;
        for part in 0..2 {
            let urls = tenure.urls.clone();
            let t = workloads::cycles(n, half, &format!("t{run}-{n}-{part}"), move |i| {
                Tenure::new(&urls, i, format!("c{i}"))
            });
            t_level = Some(match t_level {
                Some(prev) => prev.merge(t),
                None => t,
            });
            let urls = etcd.urls.clone();
            let e = workloads::cycles(n, half, &format!("e{run}-{n}-{part}"), move |i| {
                Etcd::new(&urls, i)
            });
            e_level = Some(match e_level {
                Some(prev) => prev.merge(e),
                None => e,
            });
        }
        t_cycles.extend(t_level);
        e_cycles.extend(e_level);
    }
    let (mut t_fail, mut e_fail) = (Vec::new(), Vec::new());
    for &ttl_ms in sizes.failover_ttls_ms {
        progress.next(&format!(
            "failover at ttl {} s: tenure, then etcd",
            ttl_ms / 1000
        ));
        let name = format!("fo-{run}-{ttl_ms}");
        t_fail.push(failover::tenure(&tenure.urls, &name, ttl_ms, LetGo::Dies)?);
        e_fail.push(failover::etcd(&etcd.urls, &name, ttl_ms, LetGo::Dies)?);
    }
    progress.next(&format!(
        "graceful handoff, {} times each, taking turns",
        sizes.handoffs
    ));
    let (mut t_handoff, mut e_handoff) = (Latencies::default(), Latencies::default());
    for i in 0..sizes.handoffs {
        let name = format!("ho-{run}-{i}");
        let ttl = workloads::TTL_MS;
        t_handoff.push(failover::tenure(&tenure.urls, &name, ttl, LetGo::Releases)?.takeover);
        e_handoff.push(failover::etcd(&etcd.urls, &name, ttl, LetGo::Releases)?.takeover);
    }
    let e_rss = rss(&etcd.nodes);
    // Memory before the node loss, which kills one.
    let t_rss = rss(&tenure.nodes);
    let mut idle = None;
    if sizes.idle_leases > 0 {
        progress.next(&format!(
            "memory: {} idle leases in each system (both filled at once)",
            sizes.idle_leases
        ));
        let began = Instant::now();
        let (turls, eurls) = (tenure.urls.clone(), etcd.urls.clone());
        let n = sizes.idle_leases;
        let (r1, r2) = (run.clone(), run.clone());
        let t = std::thread::spawn(move || {
            workloads::fill(n, 32, &r1, move |i| {
                Tenure::new(&turls, i, format!("idle{i}"))
            })
        });
        let e =
            std::thread::spawn(move || workloads::fill(n, 32, &r2, move |i| Etcd::new(&eurls, i)));
        let (t_granted, e_granted) = (t.join().expect("fill"), e.join().expect("fill"));
        // Let both settle (etcd's lessor, tenure's group commit) first.
        std::thread::sleep(Duration::from_secs(2));
        idle = Some(json!({
            "leases": n,
            "fill_seconds": round1(began.elapsed().as_secs_f64()),
            "tenure_granted": t_granted,
            "etcd_granted": e_granted,
            "tenure_rss_kib_per_node": rss(&tenure.nodes),
            "etcd_rss_kib_per_node": rss(&etcd.nodes),
        }));
    }
    progress.next("tenure: SIGKILL node 1 under 16 clients");
    let urls = tenure.urls.clone();
    let victim = tenure.nodes[0].take();
    let t_loss = workloads::node_loss(
        workloads::LossPlan {
            clients: 16,
            run_for: Duration::from_secs(sizes.loss_secs),
            kill_at: Duration::from_secs(sizes.loss_secs / 3),
            victim: 0,
            nodes: 3,
        },
        &format!("t{run}"),
        move |i| Tenure::new(&urls, i, format!("l{i}")),
        move || drop(victim),
    );

    let leader = etcd.leader()?;
    progress.next(&format!(
        "etcd: SIGKILL the leader (member {}) under 16 clients",
        leader + 1
    ));
    let urls = etcd.urls.clone();
    let victim = etcd.nodes[leader].take();
    let e_loss = workloads::node_loss(
        workloads::LossPlan {
            clients: 16,
            run_for: Duration::from_secs(sizes.loss_secs),
            kill_at: Duration::from_secs(sizes.loss_secs / 3),
            victim: leader,
            nodes: 3,
        },
        &format!("e{run}"),
        move |i| Etcd::new(&urls, i),
        move || drop(victim),
    );
    drop(etcd);
    drop(tenure);

    progress.next("writing the report");
    let mut t = SystemResults {
        sequential: t_seq,
        handoff: t_handoff,
        failover: t_fail,
        cycles: t_cycles,
        loss: Some(t_loss),
        rss_kib: t_rss,
    };
    let mut e = SystemResults {
        sequential: e_seq,
        handoff: e_handoff,
        failover: e_fail,
        cycles: e_cycles,
        loss: Some(e_loss),
        rss_kib: e_rss,
    };
    let mut json = to_json(&opts, &sizes, &etcd_version, &mut t, &mut e);
    if let Some(idle) = idle {
        json["idle_leases"] = idle;
    }
    let dir = match opts.results.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    json["plots"] = write_plots(&dir, &mut t.sequential, &mut e.sequential)?;
    let md = to_markdown(&opts, &sizes, &etcd_version, &json, &mut t, &mut e);
    std::fs::write(&opts.results, &md)
        .with_context(|| format!("write {}", opts.results.display()))?;
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    print!("{}", summary_table(&json));
    eprintln!(
        "wrote {} in {:.0} s",
        opts.results.display(),
        progress.began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The operations of the sequential workload, with a title and what each
/// system sends, for the plots.
const PLOTTED: [(&str, &str, &str); 4] = [
    (
        "acquire",
        "acquire of a fresh name",
        "tenure: PUT /v1/locks/{name}; etcd: lease grant, then the lock txn",
    ),
    (
        "renew",
        "renew",
        "tenure: PUT with the token (a Paxos accept); etcd: lease keepalive",
    ),
    (
        "release",
        "release",
        "tenure: DELETE with the token; etcd: lease revoke (deletes the key)",
    ),
    (
        "read",
        "linearizable read",
        "tenure: GET /v1/locks/{name}; etcd: range of the owner key",
    ),
];

/// One latency CDF per operation of the sequential workload, both systems
/// on each, as `latency-{op}.svg` in `dir`; returns `{op: file name}`.
fn write_plots(dir: &Path, t: &mut Sequential, e: &mut Sequential) -> Result<Value> {
    let mut files = serde_json::Map::new();
    for (op, title, what) in PLOTTED {
        let pick = |s: &mut Sequential| match op {
            "acquire" => s.acquire.samples_us(),
            "renew" => s.renew.samples_us(),
            "release" => s.release.samples_us(),
            _ => s.read.samples_us(),
        };
        let series = [
            plot::Series {
                label: "tenure".into(),
                color: plot::TENURE_COLOR,
                samples_us: pick(t),
            },
            plot::Series {
                label: "etcd".into(),
                color: plot::ETCD_COLOR,
                samples_us: pick(e),
            },
        ];
        let svg = plot::cdf_svg(
            &format!("{title}: latency CDF, one client at a time"),
            what,
            &series,
        );
        let file = format!("latency-{op}.svg");
        let path = dir.join(&file);
        std::fs::write(&path, svg).with_context(|| format!("write {}", path.display()))?;
        files.insert(op.to_string(), json!(file));
    }
    Ok(Value::Object(files))
}

fn rss(nodes: &[Option<procs::Proc>]) -> Vec<u64> {
    nodes
        .iter()
        .flatten()
        .map(|p| p.rss_kib().unwrap_or(0))
        .collect()
}

fn system_json(s: &mut SystemResults) -> Value {
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
    let mut v = json!({
        "latency": {
            "acquire": s.sequential.acquire.json(),
            "renew": s.sequential.renew.json(),
            "release": s.sequential.release.json(),
            "read": s.sequential.read.json(),
        },
        "cycles": cycles,
        "rss_kib_per_node_after_cycles": s.rss_kib,
    });
    v["handoff_release_to_grant"] = s.handoff.json();
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
    if !s.sequential.acquire_txn_only.is_empty() {
        v["latency"]["acquire_txn_only"] = s.sequential.acquire_txn_only.json();
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
    v
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        (a / b * 1000.0).round() / 1000.0
    }
}

fn to_json(
    opts: &Options,
    sizes: &Sizes,
    etcd_version: &str,
    t: &mut SystemResults,
    e: &mut SystemResults,
) -> Value {
    let tj = system_json(t);
    let ej = system_json(e);
    let mut ratios = serde_json::Map::new();
    for op in ["acquire", "renew", "release", "read"] {
        for q in ["p50", "p99"] {
            let key = format!("{q}_us");
            ratios.insert(
                format!("{op}_{q}"),
                json!(ratio(
                    tj["latency"][op][&key].as_f64().unwrap_or(0.0),
                    ej["latency"][op][&key].as_f64().unwrap_or(0.0)
                )),
            );
        }
    }
    for n in LEVELS {
        let n = n.to_string();
        ratios.insert(
            format!("cycle_throughput_{n}"),
            json!(ratio(
                tj["cycles"][&n]["cycles_per_s"].as_f64().unwrap_or(0.0),
                ej["cycles"][&n]["cycles_per_s"].as_f64().unwrap_or(0.0)
            )),
        );
        ratios.insert(
            format!("cycle_p99_{n}"),
            json!(ratio(
                tj["cycles"][&n]["p99_us"].as_f64().unwrap_or(0.0),
                ej["cycles"][&n]["p99_us"].as_f64().unwrap_or(0.0)
            )),
        );
    }
    json!({
        "machine": machine(),
        "commit": commit(),
        "command": opts.command,
        "quick": opts.quick,
        "sizes": {
            "sequential_rounds": sizes.sequential,
            "cycle_seconds_per_level": sizes.cycle_secs,
            "node_kill_seconds": sizes.loss_secs,
            "ttl_ms": workloads::TTL_MS,
        },
        "etcd_version": etcd_version,
        "etcd_client": "HTTP/JSON gRPC gateway (/v3/...), concurrency.Mutex recipe, ureq keep-alive",
        "tenure_client": "HTTP/JSON API (/v1/locks), ureq keep-alive",
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

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn summary_table(j: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| | tenure | etcd | tenure ÷ etcd |\n|---|---:|---:|---:|"
    );
    for op in ["acquire", "renew", "release", "read"] {
        for q in ["p50", "p99", "p999"] {
            let key = format!("{q}_us");
            let (a, b) = (
                f(&j["tenure"]["latency"][op][&key]),
                f(&j["etcd"]["latency"][op][&key]),
            );
            let _ = writeln!(
                s,
                "| {op} {} (µs) | {a:.0} | {b:.0} | {:.2} |",
                if q == "p999" { "p99.9" } else { q },
                ratio(a, b)
            );
        }
    }
    if j["etcd"]["latency"]["acquire_txn_only"].is_object() {
        let _ = writeln!(
            s,
            "| etcd acquire, txn only (session lease already granted) p50 / p99 (µs) | | {:.0} / {:.0} | |",
            f(&j["etcd"]["latency"]["acquire_txn_only"]["p50_us"]),
            f(&j["etcd"]["latency"]["acquire_txn_only"]["p99_us"])
        );
    }
    for n in LEVELS {
        let n = n.to_string();
        let (a, b) = (&j["tenure"]["cycles"][&n], &j["etcd"]["cycles"][&n]);
        let _ = writeln!(
            s,
            "| cycles/s, {n} clients | {:.0} | {:.0} | {:.2} |",
            f(&a["cycles_per_s"]),
            f(&b["cycles_per_s"]),
            ratio(f(&a["cycles_per_s"]), f(&b["cycles_per_s"]))
        );
        let _ = writeln!(
            s,
            "| cycle p99, {n} clients (ms) | {:.1} | {:.1} | {:.2} |",
            f(&a["p99_us"]) / 1e3,
            f(&b["p99_us"]) / 1e3,
            ratio(f(&a["p99_us"]), f(&b["p99_us"]))
        );
        let _ = writeln!(
            s,
            "| cycle errors, {n} clients | {} | {} | |",
            a["errors"], b["errors"]
        );
    }
    let (a, b) = (&j["tenure"], &j["etcd"]);
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
    let _ = writeln!(
        s,
        "| graceful handoff: release sent → waiter granted, p50 / max of {} (ms) | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} |",
        ha["n"],
        f(&ha["p50_us"]) / 1e3,
        f(&ha["p999_us"]) / 1e3,
        f(&hb["p50_us"]) / 1e3,
        f(&hb["p999_us"]) / 1e3,
        ratio(f(&ha["p50_us"]), f(&hb["p50_us"]))
    );
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
    let _ = writeln!(
        s,
        "| resident memory per node after the cycles (MiB) | {} | {} | |",
        mib_list(&a["rss_kib_per_node_after_cycles"]),
        mib_list(&b["rss_kib_per_node_after_cycles"])
    );
    let idle = &j["idle_leases"];
    if idle.is_object() {
        let _ = writeln!(
            s,
            "| resident memory per node with {} idle leases (MiB; granted {} / {}) | {} | {} | |",
            idle["leases"],
            idle["tenure_granted"],
            idle["etcd_granted"],
            mib_list(&idle["tenure_rss_kib_per_node"]),
            mib_list(&idle["etcd_rss_kib_per_node"])
        );
    }
    s
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

fn to_markdown(
    opts: &Options,
    sizes: &Sizes,
    etcd_version: &str,
    j: &Value,
    _t: &mut SystemResults,
    _e: &mut SystemResults,
) -> String {
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
         - etcd {etcd_version} (Debian `etcd-server`), 3 members; tenure, 3 `tenure server` processes.\n\
         - both on 127.0.0.1, ports chosen by the OS, data in fresh temporary directories on the same file system, fsync on (both systems' default)\n\
         - mode: {}; {} sequential rounds; {} s per concurrency level; node kill run {} s (kill at {} s); ttl {} ms\n",
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or(""),
        m["mem_gib"],
        m["kernel"].as_str().unwrap_or(""),
        m["loadavg_at_end"].as_str().unwrap_or(""),
        j["commit"].as_str().unwrap_or(""),
        if opts.quick { "--quick" } else { "full" },
        sizes.sequential,
        sizes.cycle_secs,
        sizes.loss_secs,
        sizes.loss_secs / 3,
        workloads::TTL_MS,
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
    let _ = writeln!(s, "## Results\n\n{}", summary_table(j));
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

const METHOD: &str = r#"## How each system is driven

Both through the same HTTP client (ureq, blocking, one kept-alive
HTTP/1.1 connection per client, `TCP_NODELAY`), JSON in and out: tenure's
own API, and etcd's HTTP/JSON gRPC gateway, which every etcd member serves
on its client port. That is the like-for-like comparison (same protocol,
same client library, same JSON cost on the client side). etcd's native
gRPC (HTTP/2, protobuf) would avoid the gateway's JSON translation inside
etcd; that comparison is not made here.

etcd gets the recipe of `concurrency.Mutex` / `etcdctl lock`:

| operation | tenure | etcd |
|---|---|---|
| acquire (fresh name) | `PUT /v1/locks/{name}` `{"holder","ttl_ms"}` → 201 | `/v3/lease/grant` (the session), then `/v3/kv/txn`: if `create_revision(pfx/LEASE) == 0` put it with the lease; in both branches range the prefix's first-created key (the owner); granted when the owner is ours |
| renew | `PUT /v1/locks/{name}` `{"holder","token"}` → 200 | `/v3/lease/keepalive` `{"ID"}` (TTL > 0) |
| release | `DELETE /v1/locks/{name}?holder&token` → 204 | `/v3/lease/revoke` (deletes the key with the lease: `Unlock` and `Session.Close` in one request) |
| read | `GET /v1/locks/{name}` (linearizable) | `/v3/kv/range` of the owner (`Election.Leader`'s query), linearizable (etcd's default) |

A new holder in etcd needs a session (lease) before it can lock, so the
acquire row counts both requests; the "txn only" row is the lock
transaction alone, for a client that reuses one session for many locks.

- **Taking turns**: the machine may be busy with other work whose load
  changes during the run, so the systems alternate: sequential rounds one
  by one (tenure, etcd, then etcd, tenure, ...), and each concurrency level
  in two halves (tenure, etcd, tenure, etcd). Both clusters run throughout.
- **Sequential**: one client per system, one request at a time, a fresh
  name per round (acquire → renew → read → release), after 10 %
  unmeasured rounds. tenure's client talks to node 1 (any node serves
  alike); etcd's to the raft leader (its best case: a follower forwards
  writes to the leader).
- **Cycles**: N client threads, each with its own connection, spread
  round-robin over the three nodes of each system, each looping acquire
  (fresh name) → renew → release; throughput is completed cycles per
  second; errors are cycles that failed (none are retried).
- **Failover**: a holder acquires with the ttl, a waiter waits the way the
  system's recipe waits (tenure: `PUT ...?wait=60s` through another node;
  etcd: `Mutex.Lock` — own session, create-revision txn, then
  `waitDeletes`: watch the previous key over the gateway's streamed
  `/v3/watch` until it is deleted, range again), the holder renews once
  more and then stops (its process "dies": neither system ties a lease to
  a connection). The figure is from the holder's last answered renewal to
  the waiter's grant. tenure accepts any ttl from 10 ms; etcd raises a ttl
  below its minimum (with default flags 1.5 × election timeout = 1.5 s,
  rounded up to 2 s) without saying so in the request, so its "granted
  ttl" is what the grant answered.
- **Graceful handoff**: as failover (ttl 10 s), but the holder releases
  (tenure: `DELETE`; etcd: revokes its session lease, which deletes its
  key); from the release being sent to the waiter's grant; 20 times per
  system (5 with `--quick`), taking turns.
- **Node kill**: 16 clients as above; a third of the way in, one node is
  SIGKILLed (tenure: node 1; etcd: the raft leader at that moment). A
  client whose request fails moves to the next node and starts a new cycle.
  "Failed on the surviving nodes" counts requests to nodes that stayed up
  that failed after the kill (what the cluster failed to serve); "failed on
  the killed node" counts what the killed node's clients saw before they
  moved. The longest stall is the longest span after the kill in which no
  cycle completed anywhere.
- **Memory**: resident set size (VmRSS) of each node's process after the
  cycles; and, in a full run, after 100,000 names were acquired with a
  one-hour ttl in each system (32 clients per system, both systems filled
  at once: a figure of memory, not speed) and left idle for 2 s. etcd holds
  one lease and one key per name, as `Mutex` does.
"#;
