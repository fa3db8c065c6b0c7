//! `GET /v1/locks/{name}/history` and `tenure history` on a real
//! three-process cluster: every kind of change, the same order through
//! every node, the bound per name, and refusals.

mod common;

use common::runner::until;
use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn history_url(c: &Cluster, id: u16, name: &str) -> String {
    format!("{}/history", c.lock_url(id, name))
}

/// `(change, token, holder, proposer)`, newest first, as node `id` tells.
fn changes(c: &Cluster, id: u16, name: &str) -> Vec<(String, u64, String, u64)> {
    let r = get(&history_url(c, id, name));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["name"], name);
    r.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["change"].as_str().expect("change").to_string(),
                c["token"].as_u64().expect("token"),
                c["holder"].as_str().expect("holder").to_string(),
                c["proposer"].as_u64().expect("proposer"),
            )
        })
        .collect()
}

/// News of a change goes to the peers linked at the time: wait until
/// every node reaches every other.
fn all_linked(c: &Cluster) {
    for id in 1..=3 {
        until(
            Duration::from_secs(10),
            "every node reaches the others",
            || get(&format!("{}/v1/cluster", c.url(id))).body["reachable"] == 3,
        );
    }
}

#[test]
fn every_change_shows_newest_first_and_in_the_same_order_on_every_node() {
    let c = Cluster::start();
    all_linked(&c);
    let t1 = token(&acquire_when_ready(&c.lock_url(1, "job"), "a", 10_000));
    assert_eq!(renew(&c.lock_url(1, "job"), "a", t1).status, 200);
    // The same holder acquires again (a retried acquire): superseded.
    let t2 = token(&acquire(&c.lock_url(2, "job"), "a", 10_000));
    assert_eq!(release(&c.lock_url(2, "job"), "a", t2).status, 204);
    let t3 = token(&acquire(&c.lock_url(3, "job"), "b", 200));
    // Nobody renews b: the next read finds its grant expired.
    let read = until(Duration::from_secs(5), "the short lease expires", || {
        get(&c.lock_url(1, "job")).body["state"] == "free"
    });
    let want: Vec<(String, u64, String, u64)> = [
        ("expired", t3, "b", 1),
        ("granted", t3, "b", 3),
        ("released", t2, "a", 2),
        ("granted", t2, "a", 2),
        ("superseded", t1, "a", 2),
        ("renewed", t1, "a", 1),
        ("granted", t1, "a", 1),
    ]
    .iter()
    .map(|(k, t, h, p)| (k.to_string(), *t, h.to_string(), *p))
    .collect();
    // News of a change reaches the other nodes just after it is chosen.
    for id in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut told = changes(&c, id, "job");
        while told != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            told = changes(&c, id, "job");
        }
        assert_eq!(told, want, "node {id}");
    }
    let r = get(&history_url(&c, 1, "job"));
    let newest = &r.body["changes"][0];
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let at = newest["at_unix_ms"].as_u64().expect("at_unix_ms");
    // The expiry is dated when the ttl ran out, before the read noticed.
    let noticed_ms = read.elapsed().as_millis() as u64;
    assert!(at <= now_ms - noticed_ms + 50, "{newest}");
    assert!(
        newest["ago_ms"].as_u64().expect("ago_ms") < 10_000,
        "{newest}"
    );
    assert_eq!(newest["ttl_ms"], 200);
    let granted = &r.body["changes"][1];
    let took = granted["took_ms"].as_f64().expect("took_ms");
    assert!(took > 0.0 && took < 5_000.0, "{granted}");
}

#[test]
fn each_node_keeps_its_bound_per_name_and_the_cli_prints_it() {
    let mut c = Cluster::start();
    c.kill9(1);
    c.try_restart(1, &["--history", "3"])
        .expect("restart node 1");
    all_linked(&c);
    let url = c.lock_url(1, "bounded");
    let mut t = token(&acquire_when_ready(&url, "a", 10_000));
    for _ in 0..3 {
        assert_eq!(release(&url, "a", t).status, 204);
        t = token(&acquire(&url, "a", 10_000));
    }
    until(Duration::from_secs(5), "node 2 learns every change", || {
        changes(&c, 2, "bounded").len() == 7
    });
    let kept = changes(&c, 1, "bounded");
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept, changes(&c, 2, "bounded")[..3], "the newest three");

    let out = Command::new(BIN)
        .args(["history", "bounded", "--endpoints", &c.url(2)])
        .stdin(Stdio::null())
        .output()
        .expect("run tenure history");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert!(
        lines[0].contains("granted") && lines[0].contains(&format!("token {t} of a")),
        "{text}"
    );
    assert!(lines[1].contains("released"), "{text}");

    let json = Command::new(BIN)
        .args(["history", "bounded", "--json", "--endpoints", &c.url(1)])
        .stdin(Stdio::null())
        .output()
        .expect("run tenure history --json");
    let first: Value = serde_json::from_str(
        String::from_utf8_lossy(&json.stdout)
            .lines()
            .next()
            .expect("a line"),
    )
    .expect("JSON");
    assert_eq!(first["change"], "granted");
    assert_eq!(first["token"], t);
}

#[test]
fn history_paths_refuse_what_they_cannot_mean() {
    let c = Cluster::start();
    acquire_when_ready(&c.lock_url(1, "warm"), "w", 10_000);
    let unknown = get(&history_url(&c, 1, "never-used"));
    assert_eq!(unknown.status, 200, "{unknown:?}");
    assert_eq!(unknown.body["changes"], Value::Array(Vec::new()));
    // A history is only read; a lock may not be named like one.
    let reserved = acquire(&c.lock_url(1, "jobs/history"), "a", 10_000);
    assert_eq!(reserved.status, 405, "{reserved:?}");
    assert!(
        reserved.body["error"]
            .as_str()
            .unwrap_or("")
            .contains("only be read"),
        "{reserved:?}"
    );
    let deleted = delete(&format!(
        "{}?holder=a&token=1",
        c.lock_url(1, "jobs/history")
    ));
    assert_eq!(deleted.status, 405, "{deleted:?}");
    let bad = get(&history_url(&c, 1, "bad!name"));
    assert_eq!(bad.status, 400, "{bad:?}");
    let query = get(&format!("{}?watch=true", history_url(&c, 1, "warm")));
    assert_eq!(query.status, 400, "{query:?}");
}
