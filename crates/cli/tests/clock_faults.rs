//! One node whose clock runs at the wrong rate, with real processes: node 3
//! of a real three-node cluster runs under libfaketime at ×1.5, ×2 and
//! ×0.5 in turn, and then with steps of ±10 s (a restart each time), while
//! clients on every node take a few shared leases, hold them, renew them,
//! release them or let them expire, and the other two nodes are paused,
//! killed and cut off in turn, and then killed together, forgetting the
//! renewals they had acknowledged without an fsync. Each client keeps its deadline as a holder must, on
//! this test's own clock, which is one clock for all of them, and the test
//! checks that no two holders' validity overlapped on it. Node 3 runs with
//! `--no-clock-check` there, so that it goes on proposing: the protocol
//! alone must be safe. A second test checks that, with the check on, node
//! 3 notices its clock within 2 s and stops serving.
//!
//! libfaketime comes with Debian's `faketime` package. Without it the test
//! says so and passes, unless `TENURE_REQUIRE_FAKETIME` is set, as
//! `.ci/run` sets it. `TENURE_CLOCK_FAULT_SECS` runs each rate longer than
//! the default 4 s.

mod common;

use common::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

const NAMES: [&str; 3] = ["clocks-0", "clocks-1", "clocks-2"];
const TTL_MS: u64 = 100;
const CLIENTS: usize = 9;

/// One grant as its holder saw it: valid from the reply until its own
/// deadline, cut short by its release.
#[derive(Clone, Debug)]
struct Held {
    name: &'static str,
    token: u64,
    holder: String,
    from: Instant,
    until: Instant,
    released: bool,
}

fn libfaketime() -> Option<&'static str> {
    LIBFAKETIME.iter().copied().find(|p| Path::new(p).exists())
}

/// The holder's deadline for a request sent at `sent`: `ttl·(1−2ρ)` on
/// its own clock, with ρ as the grant states it.
fn deadline(sent: Instant, r: &Resp) -> Instant {
    let ppm = r.body["max_drift_ppm"].as_u64().unwrap_or(1_000);
    let ttl_us = TTL_MS * 1_000;
    sent + Duration::from_micros(ttl_us - ttl_us * 2 * ppm / 1_000_000)
}

/// What the holders write to, guarded by their fencing tokens: it refuses
/// a token lower than one it has accepted for the same name.
#[derive(Default)]
struct Fenced {
    highest: Mutex<std::collections::HashMap<&'static str, u64>>,
    /// Writes refused while their holder's deadline had not passed: a later
    /// grant was in use while this one still was.
    refused_while_valid: Mutex<Vec<String>>,
}

impl Fenced {
    /// A write by `grant`'s holder, now, while it believes it holds it.
    fn write(&self, grant: &Held) {
        let mut highest = self.highest.lock().expect("resource");
        let top = highest.entry(grant.name).or_default();
        if grant.token >= *top {
            *top = grant.token;
        } else if Instant::now() < grant.until {
            self.refused_while_valid
                .lock()
                .expect("resource")
                .push(format!(
                    "{}: token {} of {} refused (token {} already wrote) before its deadline",
                    grant.name, grant.token, grant.holder, top
                ));
        }
    }
}

/// One client: takes the lease through node after node, and does one of
/// three things with each grant, in turn: lets it expire, renews it once
/// and then lets it expire, or releases it early. Every so often it pauses
/// past its ttl before it renews, as a stopped holder would. While it holds
/// a grant it writes to the fenced resource with its token.
fn client(
    urls: Vec<String>,
    me: usize,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<Held>>>,
    unavailable: Arc<AtomicUsize>,
    resource: Arc<Fenced>,
) {
    let holder = format!("client-{me}");
    let name = NAMES[me % NAMES.len()];
    let mut round = me;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let lock = format!("{}/v1/locks/{name}", urls[round % urls.len()]);
        let sent = Instant::now();
        let r = acquire(&lock, &holder, TTL_MS);
        match r.status {
            201 => {}
            409 => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            _ => {
                unavailable.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        let mut grant = Held {
            name,
            token: token(&r),
            holder: holder.clone(),
            from: Instant::now(),
            until: deadline(sent, &r),
            released: false,
        };
        resource.write(&grant);
        match round % 3 {
            0 => {}
            1 => {
                // One renewal in four comes after a pause past the ttl: if
                // the lease was taken meanwhile it must be refused.
                let pause = if round % 4 == 1 {
                    TTL_MS * 2
                } else {
                    TTL_MS / 3
                };
                std::thread::sleep(Duration::from_millis(pause));
                let other = format!("{}/v1/locks/{name}", urls[(round + 1) % urls.len()]);
                let sent = Instant::now();
                let r = renew(&other, &holder, grant.token);
                if r.status == 200 {
                    grant.until = grant.until.max(deadline(sent, &r));
                    resource.write(&grant);
                }
            }
            _ => {
                std::thread::sleep(Duration::from_millis(TTL_MS / 4));
                // The holder stops acting when it sends the release.
                grant.until = grant.until.min(Instant::now());
                grant.released = release(&lock, &holder, grant.token).status == 204;
            }
        }
        let until = grant.until;
        held.lock().expect("history").push(grant);
        let now = Instant::now();
        if until > now {
            std::thread::sleep(until - now);
        }
    }
}

/// Grants that followed a grant of the same name that was not released:
/// the cluster judged the lease expired.
fn after_expiry(held: &[Held]) -> usize {
    held.iter()
        .filter(|b| {
            held.iter()
                .any(|a| a.name == b.name && a.token + 1 == b.token && !a.released)
        })
        .count()
}

/// Every pair of grants of one name to different holders: the later
/// token's validity begins after the earlier's ends.
fn overlaps(held: &[Held]) -> Vec<String> {
    let mut sorted = held.to_vec();
    sorted.sort_by_key(|h| (h.name, h.token));
    let mut found = Vec::new();
    for (i, a) in sorted.iter().enumerate() {
        for b in sorted[i + 1..].iter().filter(|b| b.name == a.name) {
            if a.holder != b.holder && a.until > b.from {
                found.push(format!(
                    "{}: {} (token {}) held until {:?} after {} (token {}) began",
                    a.name,
                    a.holder,
                    a.token,
                    a.until - b.from,
                    b.holder,
                    b.token
                ));
            }
        }
    }
    found
}

/// Grants of one name, in the order their validity began, carry rising
/// tokens: a later grant never has a lower token. (A grant whose reply came
/// after its deadline was never valid, and has no place in the order.)
fn assert_tokens_rise(held: &[Held], rate: &str) {
    for name in NAMES {
        let mut grants: Vec<&Held> = held
            .iter()
            .filter(|h| h.name == name && h.from < h.until)
            .collect();
        grants.sort_by_key(|h| h.from);
        for pair in grants.windows(2) {
            // Two grants won at once by retries of one holder may arrive
            // in either order; distinct holders' may not.
            if pair[0].holder != pair[1].holder {
                assert!(
                    pair[0].token < pair[1].token,
                    "node 3 at {rate}: {name}: token {} of {} began after token {} of {}",
                    pair[1].token,
                    pair[1].holder,
                    pair[0].token,
                    pair[0].holder
                );
            }
        }
    }
}

fn signal(name: &str, pid: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{name} {pid}");
}

#[test]
fn one_node_at_the_wrong_rate_cannot_cut_a_lease_short() {
    let Some(lib) = libfaketime() else {
        assert!(
            std::env::var_os("TENURE_REQUIRE_FAKETIME").is_none(),
            "libfaketime not found (apt-get install faketime)"
        );
        eprintln!("libfaketime not found (apt-get install faketime): clock faults not tested");
        return;
    };
    let secs = std::env::var("TENURE_CLOCK_FAULT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let mut cluster = Cluster::start_partitionable();
    let urls: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
    // Read on every clock call, so that the test can step node 3's clock.
    let spec = tempfile::NamedTempFile::new().expect("spec file");
    let spec_path = spec.path().to_str().expect("utf-8 path").to_string();
    for rate in ["x1.5", "x2", "x0.5", "steps"] {
        cluster.kill9(3);
        let stepping = rate == "steps";
        std::fs::write(
            spec.path(),
            if stepping {
                "+0".to_string()
            } else {
                format!("+0 {rate}")
            },
        )
        .expect("write spec");
        let env = [
            ("LD_PRELOAD", lib),
            ("FAKETIME_TIMESTAMP_FILE", spec_path.as_str()),
            ("FAKETIME_NO_CACHE", if stepping { "1" } else { "0" }),
        ];
        cluster
            .restart_with_env(3, &["--no-clock-check"], &env)
            .unwrap_or_else(|e| panic!("node 3 at {rate}: {e}"));
        let ready = acquire_when_ready(&cluster.lock_url(3, "ready"), "probe", 1_000);
        assert_eq!(ready.status, 201, "node 3 at {rate}: {ready:?}");

        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let unavailable = Arc::new(AtomicUsize::new(0));
        let resource = Arc::new(Fenced::default());
        let clients: Vec<_> = (0..CLIENTS)
            .map(|me| {
                let (urls, stop, held, unavailable, resource) = (
                    urls.clone(),
                    stop.clone(),
                    held.clone(),
                    unavailable.clone(),
                    resource.clone(),
                );
                std::thread::spawn(move || client(urls, me, stop, held, unavailable, resource))
            })
            .collect();
        let started = Instant::now();
        let step = |to: &str| {
            if stepping {
                std::fs::write(spec.path(), to).expect("step node 3's clock");
            }
        };
        // Fault cycles, as many as the phase holds (one by default): node
        // 3's clock steps ±10 s, node 2 is paused, node 1 is killed and
        // restarted, node 2 is cut off from the others, and nodes 1 and 2
        // are killed together.
        let cycle = Duration::from_millis(3_600);
        loop {
            step("+10");
            std::thread::sleep(Duration::from_millis(800));
            step("+0");
            let paused = cluster.node(2).pid().to_string();
            signal("STOP", &paused);
            std::thread::sleep(Duration::from_millis(500));
            signal("CONT", &paused);
            step("-10");
            std::thread::sleep(Duration::from_millis(500));
            cluster.kill9(1);
            std::thread::sleep(Duration::from_millis(300));
            cluster.restart(1);
            std::thread::sleep(Duration::from_millis(300));
            cluster.links().isolate(2);
            std::thread::sleep(Duration::from_millis(500));
            cluster.links().heal();
            // Both good nodes at once, with renewals every ttl/3 in flight:
            // each forgets the renewals it took lazily and had not synced.
            cluster.kill9(1);
            cluster.kill9(2);
            cluster.restart(1);
            cluster.restart(2);
            std::thread::sleep(Duration::from_millis(300));
            if started.elapsed() + cycle >= Duration::from_secs(secs) {
                break;
            }
        }
        let rest = Duration::from_secs(secs).saturating_sub(started.elapsed());
        std::thread::sleep(rest);
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().expect("client thread");
        }
        let held = held.lock().expect("history").clone();
        let expired = after_expiry(&held);
        eprintln!(
            "node 3 at {rate}: {} grants, {expired} of them after an expiry, {} unavailable answers",
            held.len(),
            unavailable.load(Ordering::Relaxed)
        );
        assert!(
            expired >= 10,
            "node 3 at {rate}: too few takeovers after expiry to judge ({expired})\n{}",
            cluster.log(3)
        );
        // Pauses and restarts of the good nodes are not bad clocks.
        for good in [1, 2] {
            assert!(
                !cluster.log(good).contains("clock disagrees"),
                "node {good} judged its own clock bad with node 3 at {rate}:\n{}",
                cluster.log(good)
            );
        }
        let refused = resource
            .refused_while_valid
            .lock()
            .expect("resource")
            .clone();
        assert!(
            refused.is_empty(),
            "node 3 at {rate}: {} fenced writes refused while valid, e.g. {}",
            refused.len(),
            refused[0]
        );
        assert_tokens_rise(&held, rate);
        let found = overlaps(&held);
        assert!(
            found.is_empty(),
            "node 3 at {rate}: {} overlaps, e.g. {}",
            found.len(),
            found[0]
        );
    }
}

/// Members must judge leases by one drift bound: a node started with
/// another is refused by its peers, says why once, and grants nothing,
/// while the others go on.
#[test]
fn a_node_with_another_drift_bound_is_refused_by_its_peers() {
    let mut cluster = Cluster::start();
    cluster.kill9(3);
    cluster
        .try_restart(3, &["--max-drift-ppm", "2000"])
        .expect("node 3 starts");
    let r = acquire_when_ready(&cluster.lock_url(1, "bound"), "a", 5_000);
    assert_eq!(r.status, 201, "{r:?}");
    let r = acquire(&cluster.lock_url(3, "bound-3"), "b", 5_000);
    assert_eq!(r.status, 503, "{r:?}");
    let why = "peer n3 runs with --max-drift-ppm 2000, this node with 1000";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.log(1).contains(why) {
        assert!(
            Instant::now() < deadline,
            "node 1 never said why:\n{}",
            cluster.log(1)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Said once, though node 3 dials again and again; and node 1, whose
    // own link node 3 closes at once, redials it no faster than a failed
    // dial (the pause doubles to 1 s), not every 50 ms.
    assert_eq!(cluster.log(1).matches(why).count(), 1, "{}", cluster.log(1));
    let lost = "peer link lost peer=n3";
    let before = cluster.log(1).matches(lost).count();
    std::thread::sleep(Duration::from_secs(2));
    let redials = cluster.log(1).matches(lost).count() - before;
    assert!(redials <= 4, "{redials} redials of n3 in 2 s");
}

/// The rate watchdog, with the check on: node 3 at a wrong rate says so
/// within 2 s, in `/healthz`, `/v1/cluster` and its answers, and refuses
/// to serve, while its peers, which agree with each other, go on; node 1
/// shows node 3's rate in its metrics.
#[test]
fn a_node_whose_clock_runs_at_the_wrong_rate_stops_serving_within_two_seconds() {
    let Some(lib) = libfaketime() else {
        assert!(
            std::env::var_os("TENURE_REQUIRE_FAKETIME").is_none(),
            "TENURE_REQUIRE_FAKETIME is set, but libfaketime is not installed"
        );
        eprintln!("libfaketime not found (apt-get install faketime): skipping");
        return;
    };
    let mut cluster = Cluster::start();
    let r = acquire_when_ready(&cluster.lock_url(1, "warm"), "a", 1_000);
    assert_eq!(r.status, 201, "{r:?}");
    for (rate, sign) in [("x1.5", 1.0), ("x0.5", -1.0)] {
        cluster.kill9(3);
        let faketime = format!("+0 {rate}");
        let env = [("LD_PRELOAD", lib), ("FAKETIME", faketime.as_str())];
        cluster
            .restart_with_env(3, &[], &env)
            .unwrap_or_else(|e| panic!("node 3 at {rate}: {e}"));
        let started = Instant::now();
        let health = format!("{}/healthz", cluster.url(3));
        let flagged = loop {
            let r = get(&health);
            if r.status == 503 {
                break r;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "node 3 at {rate} not flagged within 2 s: {r:?}\n{}",
                cluster.log(3)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        eprintln!(
            "node 3 at {rate}: flagged {:?} after it started",
            started.elapsed()
        );
        assert_eq!(flagged.body["clock"]["state"], "disagrees", "{flagged:?}");
        let r = acquire(&cluster.lock_url(3, "through-3"), "b", 1_000);
        assert_eq!(r.status, 503, "{r:?}");
        assert!(r.text.contains("clock disagrees"), "{r:?}");
        assert_eq!(r.body["outcome_unknown"], false, "{r:?}");
        let cluster_view = get(&format!("{}/v1/cluster", cluster.url(3)));
        assert_eq!(cluster_view.body["clock"]["state"], "disagrees");
        // The good nodes agree, serve, and see node 3's rate.
        for good in [1, 2] {
            let r = get(&format!("{}/healthz", cluster.url(good)));
            assert_eq!(r.status, 200, "node {good}: {r:?}");
            assert_eq!(r.body["clock"]["state"], "agrees", "node {good}: {r:?}");
        }
        let r = acquire(
            &cluster.lock_url(1, &format!("through-1-{rate}")),
            "c",
            1_000,
        );
        assert_eq!(r.status, 201, "{r:?}");
        let metrics = get(&format!("{}/metrics", cluster.url(1))).text;
        let ppm: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("tenure_clock_rate_ppm{peer=\"3\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no rate for peer 3:\n{metrics}"));
        assert!(ppm * sign > 300_000.0, "node 1 sees node 3 at {ppm} ppm");
        assert_eq!(
            cluster.log(3).matches("clock disagrees").count(),
            1,
            "said once:\n{}",
            cluster.log(3)
        );
    }
    // Back at the right rate, it serves again.
    cluster.kill9(3);
    cluster.restart(3);
    let r = acquire_when_ready(&cluster.lock_url(3, "after"), "d", 1_000);
    assert_eq!(r.status, 201, "{r:?}");
}
