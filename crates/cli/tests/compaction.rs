//! Dead names leave a real cluster of three `tenure server` processes:
//! settled and deleted over the peer links, read afterwards at the token
//! floor, and granted again above every earlier token.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// The value of the unlabelled metric `name` on node `id`.
fn metric(c: &Cluster, id: u16, name: &str) -> u64 {
    let text = get(&format!("{}/metrics", c.url(id))).text;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {name} on node {id}"))
}

#[test]
fn dead_names_leave_every_node_and_come_back_above_their_tokens() {
    let mut c = Cluster::start();
    // The shortest an operator may set: twice the request deadline.
    let refused = {
        c.kill9(1);
        c.try_restart(1, &["--compact-after", "5s"])
    };
    let why = refused.expect_err("a compaction time under 6 s is refused");
    assert!(
        why.contains("--compact-after") && why.contains("too soon"),
        "{why}"
    );
    for id in 1..=3 {
        c.kill9(id);
        c.try_restart(id, &["--compact-after", "6s"])
            .expect("restart");
    }

    let first = acquire_when_ready(&c.lock_url(1, "job-1"), "a", 1_000);
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(release_granted(&c.lock_url(1, "job-1"), &first).status, 204);
    let again = acquire(&c.lock_url(2, "job-1"), "b", 1_000);
    assert_eq!(again.status, 201, "{}", again.text);
    let last = token(&again);
    // Left to expire, through another node.
    assert_eq!(acquire(&c.lock_url(3, "job-2"), "c", 500).status, 201);

    let since = Instant::now();
    while (1..=3).any(|id| metric(&c, id, "tenure_names_stored") > 0) {
        assert!(
            since.elapsed() < Duration::from_secs(40),
            "names still stored: {:?}",
            (1..=3)
                .map(|id| metric(&c, id, "tenure_names_stored"))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for id in 1..=3 {
        assert_eq!(metric(&c, id, "tenure_names_compacted_total"), 2);
        assert_eq!(metric(&c, id, "tenure_token_floor"), last);
    }

    // Free at the floor, through any node; and granted again above it.
    let read = get(&c.lock_url(3, "job-1"));
    assert_eq!(read.status, 404, "{}", read.text);
    assert_eq!(read.body["state"], "free", "{}", read.text);
    assert_eq!(read.body["token"], last, "{}", read.text);
    let next = acquire(&c.lock_url(1, "job-1"), "d", 1_000);
    assert_eq!(next.status, 201, "{}", next.text);
    assert!(token(&next) > last, "{} after {last}", next.text);
}
