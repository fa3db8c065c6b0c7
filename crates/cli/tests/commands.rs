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
