//! `tenure bench compare`: tenure and etcd side by side on one machine.
//!
//! One run starts a 3-node etcd cluster and a 3-node tenure cluster on
//! loopback (real processes, OS-chosen ports, temporary data directories on
//! the same file system, fsync on), runs the same workloads against both
//! through the same HTTP client, and writes `bench/RESULTS.md` (and, when
//! asked, a JSON file). It is a benchmark, not a test: nothing here runs
//! under `cargo test` except the unit tests of its parts.

pub mod clients;
pub mod election;
pub mod failover;
pub mod plot;
pub mod procs;
pub mod stats;
pub mod workloads;

use anyhow::{bail, Context, Result};
use clients::{Etcd, Tenure};
use election::ElectionResults;
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
    /// The steps to run (names from `STEPS`); empty: all of them.
    pub steps: Vec<String>,
    /// Idle lease counts to measure memory at, ascending; `None`: the
    /// mode's default (full: 100,000 and 1,000,000; quick: none).
    pub idle_leases: Option<Vec<usize>>,
    /// The longest a system may take to load one idle level; it then
    /// stops, and the report says how many it was granted.
    pub idle_fill_limit: Duration,
}

/// Every step of `compare`, in the order they run.
pub const STEPS: [&str; 7] = [
    "sequential",
    "cycles",
    "failover",
    "handoff",
    "election",
    "kill",
    "idle",
];

const LEVELS: [usize; 3] = [16, 64, 256];

/// Client threads per system loading idle leases.
const FILL_CLIENTS: usize = 256;

struct Sizes {
    /// Graceful handoffs timed per system.
    handoffs: usize,
    /// Idle lease counts for the memory figures, ascending (empty: skip).
    idle_levels: Vec<usize>,
    sequential: usize,
    failover_ttls_ms: &'static [u64],
    cycle_secs: u64,
    loss_secs: u64,
    /// Uncontested campaigns per system.
    campaigns: usize,
    /// Leadership handoffs among 3 candidates, per system.
    election_handoffs: usize,
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

    /// A line within the current step (a long one).
    fn note(&self, what: &str) {
        eprintln!("{:>27.1}s    {what}", self.began.elapsed().as_secs_f64());
    }
}

#[derive(Default)]
struct SystemResults {
    sequential: Option<Sequential>,
    handoff: Option<Latencies>,
    failover: Vec<failover::Failover>,
    cycles: Vec<Cycles>,
    loss: Option<NodeLoss>,
    rss_kib: Option<Vec<u64>>,
    election: Option<ElectionResults>,
}

pub fn run_compare(opts: Options) -> Result<()> {
    for step in &opts.steps {
        if !STEPS.contains(&step.as_str()) {
            bail!("unknown step {step:?}; the steps are {}", STEPS.join(", "));
        }
    }
    let runs = |step: &str| opts.steps.is_empty() || opts.steps.iter().any(|s| s == step);
    let mut sizes = if opts.quick {
        Sizes {
            idle_levels: vec![],
            handoffs: 5,
            sequential: 200,
            failover_ttls_ms: &[1000, 2000],
            cycle_secs: 2,
            loss_secs: 5,
            campaigns: 20,
            election_handoffs: 6,
        }
    } else {
        Sizes {
            idle_levels: vec![100_000, 1_000_000],
            handoffs: 20,
            sequential: 2000,
            failover_ttls_ms: &[1000, 2000, 10_000],
            cycle_secs: 10,
            loss_secs: 15,
            campaigns: 200,
            election_handoffs: 20,
        }
    };
    if let Some(levels) = &opts.idle_leases {
        sizes.idle_levels = levels.iter().copied().filter(|&n| n > 0).collect();
        sizes.idle_levels.sort_unstable();
        sizes.idle_levels.dedup();
    }
    if !runs("idle") {
        sizes.idle_levels.clear();
    }
    let idle = !sizes.idle_levels.is_empty();
    let main_steps = STEPS.iter().any(|&s| s != "idle" && runs(s));
    // install, start, then each step's lines, then the report
    let mut progress = Progress {
        began: Instant::now(),
        step: 0,
        steps: 1
            + usize::from(main_steps)
            + usize::from(runs("sequential"))
            + if runs("cycles") { LEVELS.len() } else { 0 }
            + if runs("failover") {
                sizes.failover_ttls_ms.len()
            } else {
                0
            }
            + usize::from(runs("handoff"))
            + 2 * usize::from(runs("election"))
            + 2 * usize::from(runs("kill"))
            + if idle {
                1 + 2 * sizes.idle_levels.len()
            } else {
                0
            }
            + 1,
    };
    progress.next("checking for etcd");
    let etcd_version = procs::ensure_etcd(opts.install, &|m| eprintln!("      {m}"))?;
    std::fs::create_dir_all(&opts.data_root)?;
    let run = std::process::id().to_string();
    let (mut t, mut e) = (SystemResults::default(), SystemResults::default());
    // The idle leases get fresh clusters of their own; the other steps share
    // these two.
    if main_steps {
        progress.next("starting 3 etcd members and 3 tenure nodes");
        let mut etcd = EtcdCluster::start(&opts.data_root)?;
        let mut tenure = TenureCluster::start(&opts.tenure_bin, &opts.data_root)?;

        // The machine may be busy with other work whose load varies over the
        // run: the two systems take turns, round by round and level by level,
        // so that both see the same background.
        if runs("sequential") {
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
            t.sequential = Some(t_seq);
            e.sequential = Some(e_seq);
        }
        if runs("cycles") {
            let half = Duration::from_millis(sizes.cycle_secs * 500);
            for n in LEVELS {
                progress.next(&format!(
                    "cycles with {n} clients, tenure and etcd taking turns"
                ));
                let mut t_level: Option<Cycles> = None;
                let mut e_level: Option<Cycles> = None;
                for part in 0..2 {
                    let urls = tenure.urls.clone();
                    let tc = workloads::cycles(n, half, &format!("t{run}-{n}-{part}"), move |i| {
                        Tenure::new(&urls, i, format!("c{i}"))
                    });
                    t_level = Some(match t_level {
                        Some(prev) => prev.merge(tc),
                        None => tc,
                    });
                    let urls = etcd.urls.clone();
                    let ec = workloads::cycles(n, half, &format!("e{run}-{n}-{part}"), move |i| {
                        Etcd::new(&urls, i)
                    });
                    e_level = Some(match e_level {
                        Some(prev) => prev.merge(ec),
                        None => ec,
                    });
                }
                t.cycles.extend(t_level);
                e.cycles.extend(e_level);
            }
            t.rss_kib = Some(rss(&tenure.nodes));
            e.rss_kib = Some(rss(&etcd.nodes));
        }
        if runs("failover") {
            for &ttl_ms in sizes.failover_ttls_ms {
                progress.next(&format!(
                    "failover at ttl {} s: tenure, then etcd",
                    ttl_ms / 1000
                ));
                let name = format!("fo-{run}-{ttl_ms}");
                t.failover
                    .push(failover::tenure(&tenure.urls, &name, ttl_ms, LetGo::Dies)?);
                e.failover
                    .push(failover::etcd(&etcd.urls, &name, ttl_ms, LetGo::Dies)?);
            }
        }
        if runs("handoff") {
            progress.next(&format!(
                "graceful handoff, {} times each, taking turns",
                sizes.handoffs
            ));
            let (mut t_handoff, mut e_handoff) = (Latencies::default(), Latencies::default());
            for i in 0..sizes.handoffs {
                let name = format!("ho-{run}-{i}");
                let ttl = workloads::TTL_MS;
                t_handoff
                    .push(failover::tenure(&tenure.urls, &name, ttl, LetGo::Releases)?.takeover);
                e_handoff.push(failover::etcd(&etcd.urls, &name, ttl, LetGo::Releases)?.takeover);
            }
            t.handoff = Some(t_handoff);
            e.handoff = Some(e_handoff);
        }
        if runs("election") {
            progress.next(&format!(
                "election: {} uncontested campaigns each, taking turns",
                sizes.campaigns
            ));
            let (mut te, mut ee) = (ElectionResults::default(), ElectionResults::default());
            let leader = etcd.leader()?;
            let agent = procs::agent(Duration::from_secs(40));
            let (tu, eu) = (&tenure.urls[0], &etcd.urls[leader]);
            let warm = (sizes.campaigns / 10).max(2);
            for i in 0..warm + sizes.campaigns {
                let record = i >= warm;
                let name = format!("elu-{run}-{i}");
                let mut tenure_round = || {
                    election::tenure_uncontested(&mut te.uncontested, &agent, tu, &name, record)
                        .context("tenure campaign")
                };
                let mut etcd_round = || {
                    election::etcd_uncontested(&mut ee.uncontested, &agent, eu, &name, record)
                        .context("etcd campaign")
                };
                if i % 2 == 0 {
                    tenure_round()?;
                    etcd_round()?;
                } else {
                    etcd_round()?;
                    tenure_round()?;
                }
            }
            progress.next(&format!(
                "election: {} handoffs among 3 candidates each, in halves taking turns",
                sizes.election_handoffs
            ));
            let first = sizes.election_handoffs / 2;
            for (part, rounds) in [first, sizes.election_handoffs - first]
                .into_iter()
                .enumerate()
            {
                let name = format!("elh-{run}-{part}");
                let (times, work) = election::tenure_handoffs(&tenure.urls, &name, rounds)
                    .context("tenure election handoffs")?;
                te.handoff.extend(times);
                let (sum, n) = te.handoff_paxos.get_or_insert_default();
                sum.add(work);
                *n += rounds;
                ee.handoff.extend(
                    election::etcd_handoffs(&etcd.urls, &name, rounds)
                        .context("etcd election handoffs")?,
                );
            }
            t.election = Some(te);
            e.election = Some(ee);
        }
        if runs("kill") {
            progress.next("tenure: SIGKILL node 1 under 16 clients");
            let urls = tenure.urls.clone();
            let victim = tenure.nodes[0].take();
            t.loss = Some(workloads::node_loss(
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
            ));

            let leader = etcd.leader()?;
            progress.next(&format!(
                "etcd: SIGKILL the leader (member {}) under 16 clients",
                leader + 1
            ));
            let urls = etcd.urls.clone();
            let victim = etcd.nodes[leader].take();
            e.loss = Some(workloads::node_loss(
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
            ));
        }
        drop(etcd);
        drop(tenure);
    }

    let idle = if idle {
        Some(idle_leases(&opts, &sizes.idle_levels, &run, &mut progress)?)
    } else {
        None
    };

    progress.next("writing the report");
    let mut json = to_json(&opts, &sizes, &etcd_version, &mut t, &mut e);
    if let Some(idle) = idle {
        json["idle_leases"] = idle;
    }
    let dir = match opts.results.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    if let (Some(ts), Some(es)) = (&mut t.sequential, &mut e.sequential) {
        json["plots"] = write_plots(&dir, ts, es)?;
    }
    let md = to_markdown(&opts, &sizes, &etcd_version, &json);
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

/// Memory with idle leases, on fresh clusters (nothing left from the other
/// steps: no released names, no MVCC history, no dead node): resident
/// memory when empty, then at each level of `levels`, loading tenure and
/// then etcd up to it, each with the machine to itself.
fn idle_leases(
    opts: &Options,
    levels: &[usize],
    run: &str,
    progress: &mut Progress,
) -> Result<Value> {
    progress.next("memory: fresh clusters for the idle leases");
    let etcd = EtcdCluster::start(&opts.data_root)?;
    let tenure = TenureCluster::start(&opts.tenure_bin, &opts.data_root)?;
    // Let both settle after their start, as after each level.
    std::thread::sleep(Duration::from_secs(2));
    let empty = json!({
        "tenure_rss_kib_per_node": rss(&tenure.nodes),
        "etcd_rss_kib_per_node": rss(&etcd.nodes),
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
        one["tenure"]["rss_kib_per_node"] = json!(rss(&tenure.nodes));
        one["etcd"]["rss_kib_per_node"] = json!(rss(&etcd.nodes));
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
    json!({
        "machine": machine(),
        "commit": commit(),
        "command": opts.command,
        "quick": opts.quick,
        "steps": if opts.steps.is_empty() { json!(STEPS) } else { json!(opts.steps) },
        "sizes": {
            "sequential_rounds": sizes.sequential,
            "cycle_seconds_per_level": sizes.cycle_secs,
            "node_kill_seconds": sizes.loss_secs,
            "ttl_ms": workloads::TTL_MS,
            "graceful_handoffs": sizes.handoffs,
            "election_campaigns": sizes.campaigns,
            "election_handoffs": sizes.election_handoffs,
            "idle_lease_levels": sizes.idle_levels,
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

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn summary_table(j: &Value) -> String {
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

fn to_markdown(opts: &Options, sizes: &Sizes, etcd_version: &str, j: &Value) -> String {
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
         - mode: {}; {} sequential rounds; {} s per concurrency level; node kill run {} s (kill at {} s); ttl {} ms; \
         election: {} uncontested campaigns, {} handoffs; idle leases: {}\n\
         - steps: {}\n",
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

For leader election, each side runs its library's recipe:

| operation | tenure (`tenure_client::LeaderElection`) | etcd (`concurrency.Election`) |
|---|---|---|
| campaign | `PUT /v1/locks/{name}?wait=30000ms` `{"holder","ttl_ms":10000}` (again on each `409` when the wait runs out); on `201`, when the poll waited more than a third of the usable ttl, a renewal `PUT` with the token, as `Lock::acquire` does | `/v3/lease/grant` TTL 60 (`NewSession`), then `/v3/kv/txn`: if `create_revision(pfx/LEASE) == 0` put it (value: the candidate's id) with the lease, else range it; then `waitDeletes`: range the last key created before ours, watch it (`/v3/watch`, streamed) until it is deleted, range again, until none is left |
| resign | `DELETE /v1/locks/{name}?holder&token` | `/v3/kv/txn`: if `create_revision(our key)` is still ours, delete it (the session stays) |
| waiting | the long poll, parked on the node it was sent to, woken there when the node sees the name change | the watch on the previous candidate's key |

Neither side renews in the background during these steps: each election
is over well within both ttls (10 s, `LeaderElection`'s default; 60 s,
`NewSession`'s).

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
  system (5 with `--quick`), taking turns. The holder lets go once the
  waiter waits: for etcd, when its watch is created; for tenure, when the
  waiter's node has answered its first try `409` (that node's
  `tenure_outcomes_total{op="acquire",outcome="conflict"}` went up, and
  `tenure_watched_names` is at least 1; the waiter subscribes to the
  name's wakeups before that try).
- **Election, uncontested**: 200 campaigns per system (20 with
  `--quick`), each on an election nobody else is in, then a resignation;
  rounds alternate between the systems as in the sequential workload,
  through node 1 and the etcd leader. The campaign row counts what a
  process does to lead: tenure, the long poll's `201` (answered at once:
  no renewal follows); etcd, the session's lease grant, the txn and the
  `waitDeletes` range. The next row leaves out etcd's session grant.
- **Election, handoff**: 3 candidates per system, candidate *i* through
  node (member) *i*, each with its own connections; the first leads, the
  other two wait (tenure: a long poll parked on its node, seen in that
  node's metrics as above; etcd: the watch on the key created just before
  its own is in place). Then, each round, the leader resigns; the figure
  is from the resignation being sent to the next leader's `campaign`
  returning. The one that resigned campaigns again (in etcd to the back of
  the queue; tenure has no queue: every waiter is woken and they race),
  and the next round starts once it waits. 20 rounds per system (6 with
  `--quick`), in two halves taking turns, each half on a fresh election.
- **Node kill**: 16 clients as above; a third of the way in, one node is
  SIGKILLed (tenure: node 1; etcd: the raft leader at that moment). A
  client whose request fails moves to the next node and starts a new cycle.
  "Failed on the surviving nodes" counts requests to nodes that stayed up
  that failed after the kill (what the cluster failed to serve); "failed on
  the killed node" counts what the killed node's clients saw before they
  moved. The longest stall is the longest span after the kill in which no
  cycle completed anywhere.
- **Memory**: resident set size (VmRSS) of each node's process after the
  cycles. Then, for idle leases, on two fresh clusters started after every
  other step (no released names, no MVCC history, no dead node): when
  empty, and after each level of idle leases (full run: 100,000, then
  1,000,000 in all; `--idle-leases LIST`), taken with a one-hour ttl,
  tenure first and then etcd, each with the machine to itself, 256 client
  threads per system, one acquire per name (etcd: one lease and one key
  per name, as `Mutex` holds them), and read 2 s after both are loaded.
  Each system may load one level for at most `--idle-fill-limit` seconds
  (default 900); one that is still loading then stops, and the table says
  how many it holds. The loading rate is grants per second at 256 clients
  over the whole level.
"#;
