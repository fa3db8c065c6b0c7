//! One node whose clock runs at the wrong rate, with real processes: node 3
//! of a real three-node cluster runs under libfaketime at ×1.5, ×2 and
//! ×0.5 in turn (a restart each time), while clients on every node take
//! a few shared leases, hold them, renew them, release them or let them
//! expire. Each
//! client keeps its deadline as a holder must, on this test's own clock,
//! which is one clock for all of them, and the test checks that no two
//! holders' validity overlapped on it.
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

/// One client: takes the lease through node after node, and does one of
/// three things with each grant, in turn: lets it expire, renews it once
/// and then lets it expire, or releases it early.
fn client(
    urls: Vec<String>,
    me: usize,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<Held>>>,
    unavailable: Arc<AtomicUsize>,
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
        match round % 3 {
            0 => {}
            1 => {
                std::thread::sleep(Duration::from_millis(TTL_MS / 3));
                let other = format!("{}/v1/locks/{name}", urls[(round + 1) % urls.len()]);
                let sent = Instant::now();
                let r = renew(&other, &holder, grant.token);
                if r.status == 200 {
                    grant.until = grant.until.max(deadline(sent, &r));
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
    let mut cluster = Cluster::start();
    let urls: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
    for rate in ["x1.5", "x2", "x0.5"] {
        cluster.kill9(3);
        let faketime = format!("+0 {rate}");
        let env = [("LD_PRELOAD", lib), ("FAKETIME", faketime.as_str())];
        cluster
            .restart_with_env(3, &[], &env)
            .unwrap_or_else(|e| panic!("node 3 at {rate}: {e}"));
        let ready = acquire_when_ready(&cluster.lock_url(3, "ready"), "probe", 1_000);
        assert_eq!(ready.status, 201, "node 3 at {rate}: {ready:?}");

        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let unavailable = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|me| {
                let (urls, stop, held, unavailable) = (
                    urls.clone(),
                    stop.clone(),
                    held.clone(),
                    unavailable.clone(),
                );
                std::thread::spawn(move || client(urls, me, stop, held, unavailable))
            })
            .collect();
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(800));
        let paused = cluster.node(2).pid().to_string();
        signal("STOP", &paused);
        std::thread::sleep(Duration::from_millis(500));
        signal("CONT", &paused);
        std::thread::sleep(Duration::from_millis(500));
        cluster.kill9(1);
        std::thread::sleep(Duration::from_millis(300));
        cluster.restart(1);
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
