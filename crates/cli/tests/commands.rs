//! The client commands against a real three-process cluster, as a script
//! would use them.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn endpoints(c: &Cluster) -> String {
    (1..=3).map(|i| c.url(i)).collect::<Vec<_>>().join(",")
}

/// `tenure lock ... --json`: its one line, parsed.
fn lock_json(c: &Cluster, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("lock")
        .args(args)
        .args(["--json", "--endpoints", &endpoints(c)])
        .stdin(Stdio::null())
        .output()
        .expect("run tenure lock");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

#[test]
fn lock_prints_how_long_the_grant_is_valid_not_just_its_ttl() {
    let c = Cluster::start();
    acquire_when_ready(&c.lock_url(1, "warm"), "w", 10_000);
    let granted = lock_json(&c, &["printed", "--holder", "a", "--ttl", "2s"]);
    assert_eq!(granted["ttl_ms"], 2_000, "{granted}");
    let valid = granted["valid_ms"].as_u64().expect("valid_ms");
    assert!((1_000..2_000).contains(&valid), "{granted}");
}

/// A grant won after a long wait counts from when the wait began; the
/// command renews it before it prints, so what it prints is a whole lease
/// (less the drift margin), not what was left of the first.
#[test]
fn lock_after_a_long_wait_renews_before_it_reports_the_validity() {
    let c = Cluster::start();
    let url = c.lock_url(1, "waited");
    let t = token(&acquire_when_ready(&url, "x", 10_000));
    let endpoints = endpoints(&c);
    let waiter = std::thread::spawn(move || {
        Command::new(BIN)
            .args([
                "lock", "waited", "--holder", "b", "--ttl", "1s", "--wait", "20s",
            ])
            .args(["--json", "--endpoints", &endpoints])
            .stdin(Stdio::null())
            .output()
            .expect("run tenure lock")
    });
    let queued = Instant::now() + Duration::from_secs(20);
    while get(&url).body["waiters"] != 1 {
        assert!(Instant::now() < queued, "the waiter never queued");
    }
    // Most of a 1 s lease passes while it waits.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(release(&url, "x", t).status, 204);
    let out = waiter.join().expect("waiter");
    assert!(out.status.success(), "{out:?}");
    let granted: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(granted["holder"], "b", "{granted}");
    let valid = granted["valid_ms"].as_u64().expect("valid_ms");
    assert!(
        valid > 600,
        "counted from the wait, not a renewal: {granted}"
    );
}

/// With no cluster listening, a command says so at once, naming the
/// cause; with `--json` the error is JSON too.
#[test]
fn with_nothing_listening_a_command_says_connection_refused_at_once() {
    let port = free_ports(1)[0];
    let endpoints = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["lock", "x", "--ttl", "1s", "--endpoints", &endpoints])
        .output()
        .expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Connection refused") && err.contains(&endpoints),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = Command::new(BIN)
        .args(["status", "x", "--json", "--endpoints", &endpoints])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err: Value = serde_json::from_slice(&out.stderr).expect("a JSON error");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("Connection refused")),
        "{err}"
    );

    // `tenure run` too: it waits for a lock as long as it takes, but not
    // for a cluster that is not there.
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "run",
            "--lock",
            "x",
            "--endpoints",
            &endpoints,
            "--",
            "true",
        ])
        .output()
        .expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Connection refused"), "{err}");
}

/// A duration without a unit is a usage error (exit 2), not a guess.
#[test]
fn a_duration_without_a_unit_is_refused() {
    let out = Command::new(BIN)
        .args(["lock", "x", "--ttl", "10"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no unit"), "{err}");
}

/// A history the linearizability search cannot finish is not verified:
/// `tenure sim` fails on it, naming the seed, rather than passing it.
#[test]
fn sim_fails_when_the_linearizability_check_gives_up() {
    let out = Command::new(BIN)
        .args(["sim", "--seeds", "2", "--check-budget", "0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("gave up") && text.contains("reproduce"),
        "{text}"
    );
    let out = Command::new(BIN)
        .args(["sim", "--seeds", "2"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
}

/// A cluster started with a wider drift bound says so in every grant, and
/// the holder's deadline shrinks with it: at 5 %, a 10 s grant is valid
/// for at most 9 s.
#[test]
fn a_wider_drift_bound_reaches_the_holder_through_the_grant() {
    let dev = Dev::start(&["--max-drift-ppm", "50000"]);
    let url = dev.url();
    let granted = acquire_when_ready(&format!("{url}/v1/locks/wide"), "a", 10_000);
    assert_eq!(granted.body["max_drift_ppm"], 50_000, "{granted:?}");
    let out = Command::new(BIN)
        .args([
            "lock",
            "narrow",
            "--ttl",
            "10s",
            "--json",
            "--endpoints",
            &url,
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let valid = printed["valid_ms"].as_u64().expect("valid_ms");
    assert!((8_000..=9_000).contains(&valid), "{printed}");
}
