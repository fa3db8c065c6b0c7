//! Crashes: `kill -9` of one node costs no request; of two, the survivor
//! answers 503 and grants nothing; restarted nodes serve again. Partitions:
//! a node cut off from the others grants nothing, the others go on, and it
//! serves again when the links heal.

mod common;

use common::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn killing_one_node_fails_no_request_and_grants_no_token_twice() {
    let mut c = Cluster::start();
    let names = ["alpha", "beta", "gamma", "delta"];
    for (i, name) in names.iter().enumerate() {
        let via = (i % 2) as u16 + 1;
        let r = acquire_when_ready(&c.lock_url(via, name), "warmup", 10_000);
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(
            release(&c.lock_url(via, name), "warmup", token(&r)).status,
            204
        );
    }
    let urls: Vec<String> = (1..=2).map(|id| c.url(id)).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let grants = Arc::new(Mutex::new(HashSet::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let completed = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (stop, grants, failures, completed, urls) = (
                stop.clone(),
                grants.clone(),
                failures.clone(),
                completed.clone(),
                urls.clone(),
            );
            std::thread::spawn(move || {
                let holder = format!("client-{client}");
                let mut round = client;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let name = names[round % names.len()];
                    // Alternate nodes, so both survivors propose on every name.
                    let lock = format!("{}/v1/locks/{name}", urls[round % 2]);
                    let r = acquire(&lock, &holder, 5_000);
                    let expect = |what: &str, r: &Resp, status: u16| {
                        completed.fetch_add(1, Ordering::Relaxed);
                        if r.status != status {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{what} {name}: {r:?}"));
                        }
                    };
                    match r.status {
                        201 => {
                            expect("acquire", &r, 201);
                            let t = token(&r);
                            assert!(
                                grants.lock().unwrap().insert((name, t)),
                                "token {t} of {name} granted twice"
                            );
                            let other = format!("{}/v1/locks/{name}", urls[(round + 1) % 2]);
                            expect("renew", &renew(&other, &holder, t), 200);
                            expect("release", &release(&lock, &holder, t), 204);
                        }
                        409 => expect("acquire", &r, 409),
                        _ => expect("acquire", &r, 201),
                    }
                }
            })
        })
        .collect();

    // The schedule of the test, paced by the clients' progress: load,
    // kill, load, restart, load.
    let progress = |more: usize| {
        let target = completed.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while completed.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the clients stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    progress(200);
    c.kill9(3);
    progress(500);
    let banner = c.restart(3);
    assert_eq!(incarnation(&banner), 2, "{banner}");
    progress(200);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests: {failures:#?}",
        failures.len()
    );
    let granted = grants.lock().unwrap().len();
    assert!(
        granted >= 20,
        "only {granted} grants: the load was too light to mean much"
    );
    eprintln!(
        "{} requests, {granted} grants, none failed",
        completed.load(Ordering::Relaxed)
    );

    // The restarted node serves again, and continues every name's tokens.
    for name in names {
        let highest = grants
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .max()
            .unwrap_or(0);
        let r = acquire_when_ready(&c.lock_url(3, name), "after", 5_000);
        assert_eq!(r.status, 201, "{r:?}");
        assert!(token(&r) > highest, "{name}: {r:?} after token {highest}");
    }
}

#[test]
fn killing_two_nodes_gets_503_and_grants_nothing_until_they_return() {
    let mut c = Cluster::start();
    let url = c.lock_url(1, "orphan");
    let held = token(&acquire_when_ready(&url, "a", 60_000));
    c.kill9(2);
    c.kill9(3);

    let started = Instant::now();
    let attempts: Vec<_> = [
        (
            "acquire",
            url.clone(),
            r#"{"holder":"b","ttl_ms":1000}"#.to_string(),
        ),
        (
            "renew",
            url.clone(),
            format!(r#"{{"holder":"a","token":{held}}}"#),
        ),
        ("read", url.clone(), String::new()),
    ]
    .into_iter()
    .map(|(what, url, body)| {
        std::thread::spawn(move || {
            let r = if what == "read" {
                get(&url)
            } else {
                put(&url, &body)
            };
            (what, r)
        })
    })
    .collect();
    for attempt in attempts {
        let (what, r) = attempt.join().expect("request thread");
        assert_eq!(r.status, 503, "{what}: {r:?}");
        assert_eq!(r.retry_after.as_deref(), Some("1"), "{what}: {r:?}");
        assert!(r.body["error"].is_string(), "{what}: {r:?}");
        assert!(r.body["outcome_unknown"].is_boolean(), "{what}: {r:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "503 came late");
    let health = get(&format!("{}/healthz", c.url(1)));
    assert_eq!(health.body["quorum_reachable"], false, "{health:?}");

    assert_eq!(incarnation(&c.restart(2)), 2);
    assert_eq!(incarnation(&c.restart(3)), 2);

    // Nothing was granted: a still holds the name with the same token.
    let r = acquire_when_ready(&c.lock_url(2, "orphan"), "b", 1_000);
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.body["holder"], "a");
    assert_eq!(r.body["token"], held);
    // Service resumes and tokens continue upward.
    assert_eq!(release(&c.lock_url(3, "orphan"), "a", held).status, 204);
    let next = acquire(&c.lock_url(3, "orphan"), "b", 1_000);
    assert_eq!(next.status, 201, "{next:?}");
    assert_eq!(token(&next), held + 1);
}

#[test]
fn a_node_cut_off_grants_nothing_and_serves_again_when_the_links_heal() {
    let c = Cluster::start_partitionable();
    let r = acquire_when_ready(&c.lock_url(2, "cut"), "a", 60_000);
    assert_eq!(r.status, 201, "{r:?}");
    c.links().isolate(2);
    assert_eq!(c.links().cut().len(), 4);
    // Node 2 alone has no quorum: its holder's renewal cannot go through
    // it, and neither can a new grant.
    let r = renew(&c.lock_url(2, "cut"), "a", token(&r));
    assert_eq!(r.status, 503, "{r:?}");
    let r = acquire(&c.lock_url(2, "cut-2"), "b", 10_000);
    assert_eq!(r.status, 503, "{r:?}");
    // Nodes 1 and 3 still form a quorum, and see the lease held.
    let r = acquire(&c.lock_url(1, "cut"), "c", 10_000);
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.body["holder"], "a", "{r:?}");
    let r = acquire(&c.lock_url(3, "cut-3"), "c", 10_000);
    assert_eq!(r.status, 201, "{r:?}");
    c.links().heal();
    assert!(c.links().cut().is_empty());
    let r = acquire_when_ready(&c.lock_url(2, "cut-2"), "b", 10_000);
    assert_eq!(r.status, 201, "{r:?}");
}
