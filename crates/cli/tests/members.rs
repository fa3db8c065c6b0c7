//! Changing a running cluster's members with real processes, as an
//! operator does on a bad day: a node is SIGKILLed and its disk is lost, an
//! empty node replaces it while clients work, and then another member
//! dies; and growing from 3 to 5 and back under load. Every grant survives
//! with its token, later tokens are higher, and the clients on the healthy
//! nodes see no failed request.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Clients that take and release their own name in a loop through the
/// nodes given, and count every answer that is not a grant or a release.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    failures: Arc<Mutex<Vec<String>>>,
    /// The highest token each name was granted.
    tokens: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Load {
    fn start(urls: &[String], clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tokens = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..clients)
            .map(|i| {
                let url = urls[i % urls.len()].clone();
                let (stop, failures, tokens) = (stop.clone(), failures.clone(), tokens.clone());
                std::thread::spawn(move || {
                    let name = format!("w-{i}");
                    let lock = format!("{url}/v1/locks/{name}");
                    let mut last = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let r = acquire(&lock, &name, 10_000);
                        if r.status != 201 {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{name} acquire: {r:?}"));
                            continue;
                        }
                        let token = token(&r);
                        if token <= last {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{name}: token {token} after {last}"));
                        }
                        last = token;
                        tokens.lock().unwrap().insert(name.clone(), token);
                        let r = release_granted(&lock, &r);
                        if r.status != 204 {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{name} release: {r:?}"));
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            failures,
            tokens,
        }
    }

    /// Stop the clients; the failures they saw, and each name's last token.
    fn stop(self) -> (Vec<String>, BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a client thread");
        }
        let failures = self.failures.lock().unwrap().clone();
        let tokens = self.tokens.lock().unwrap().clone();
        (failures, tokens)
    }
}

/// `tenure members ARGS` through the nodes `via`; panics unless it succeeds.
fn members(c: &Cluster, via: &[u16], args: &[&str]) -> String {
    let endpoints: Vec<String> = via.iter().map(|&id| c.url(id)).collect();
    let out = Command::new(BIN)
        .arg("members")
        .args(args)
        .env("TENURE_ENDPOINTS", endpoints.join(","))
        .output()
        .expect("run tenure members");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tenure members {args:?}: {said}");
    said
}

/// Let the load run a while on the configuration as it is.
fn under_load() {
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn a_dead_node_replaced_by_an_empty_one_keeps_every_grant_and_token() {
    let mut c = Cluster::start();
    let held = acquire_when_ready(&c.lock_url(1, "job"), "a", 120_000);
    assert_eq!(held.status, 201, "{held:?}");
    let job_token = token(&held);
    // Every name the load uses exists before node 3 dies.
    let load = Load::start(&[c.url(1), c.url(2)], 8);
    under_load();

    c.kill9(3);
    std::fs::remove_dir_all(c.data_dir(3)).expect("delete node 3's data");
    under_load();
    let joining = c.join(4, 1);
    let addr = c.peer_addr(4);
    let said = members(&c, &[1, 2], &["replace", "3", &format!("4={addr}")]);
    assert!(said.contains("4  127.0.0.1"), "{said}");
    c.wait_joined(4, joining);
    under_load();
    let (failures, tokens) = load.stop();
    assert!(
        failures.is_empty(),
        "failed requests on the healthy nodes during the replace: {failures:?}"
    );
    assert_eq!(tokens.len(), 8, "every client was granted: {tokens:?}");

    // Node 4 holds nothing of its own: with node 1 gone too, nodes 2 and 4
    // are a quorum only because the replace carried every name to them.
    c.kill9(1);
    for via in [2, 4] {
        let r = get(&c.lock_url(via, "job"));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["holder"], "a", "through node {via}: {r:?}");
        assert_eq!(r.body["token"].as_u64(), Some(job_token), "{r:?}");
    }
    let r = acquire(&c.lock_url(4, "job"), "b", 10_000);
    assert_eq!(r.status, 409, "job is still a's: {r:?}");
    for (name, last) in &tokens {
        let r = acquire(&c.lock_url(4, name), "after", 10_000);
        assert_eq!(r.status, 201, "{name}: {r:?}");
        assert!(
            token(&r) > *last,
            "{name}: token {} after {last}",
            token(&r)
        );
    }
    let metrics = get(&format!("{}/metrics", c.url(4))).text;
    assert!(
        metrics.contains("tenure_configuration_epoch 3")
            && metrics.contains("tenure_configuration_changing 0"),
        "{metrics}"
    );
    let list = members(&c, &[2, 4], &["list"]);
    assert!(
        list.contains("epoch 3") && !list.contains("  3  "),
        "{list}"
    );
}

#[test]
fn three_nodes_grow_to_five_and_shrink_back_under_load() {
    let mut c = Cluster::start();
    let held = acquire_when_ready(&c.lock_url(1, "job"), "a", 120_000);
    assert_eq!(held.status, 201, "{held:?}");
    let load = Load::start(&[c.url(1), c.url(2), c.url(3)], 8);
    under_load();
    // Two members at once is refused: a change goes one member at a time.
    let leap = format!(
        r#"{{"members": {{"1": "{}", "2": "{}", "3": "{}", "4": "127.0.0.1:1", "5": "127.0.0.1:2"}}}}"#,
        c.peer_addr(1),
        c.peer_addr(2),
        c.peer_addr(3)
    );
    let r = put(&format!("{}/v1/members", c.url(1)), &leap);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.text.contains("one member at a time"), "{r:?}");
    // The new nodes start first and wait to be taken in.
    for id in [4, 5] {
        let joining = c.join(id, 1);
        let addr = c.peer_addr(id);
        members(&c, &[1, 2, 3], &["add", &format!("{id}={addr}")]);
        c.wait_joined(id, joining);
        under_load();
    }
    let list = members(&c, &[3], &["list"]);
    for id in 1..=5 {
        assert!(list.contains(&format!("  {id}  127.0.0.1")), "{list}");
    }
    for id in [4, 5] {
        members(&c, &[1, 2, 3], &["remove", &id.to_string()]);
        under_load();
    }
    let (failures, tokens) = load.stop();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(tokens.len(), 8, "{tokens:?}");
    c.kill9(4);
    c.kill9(5);
    // A removed node started again on its data is told it was removed.
    let log = c.data_dir(4).with_extension("again.log");
    let Err(refused) = spawn(&c.join_args(4, 2), &log) else {
        panic!("a removed node started again");
    };
    assert!(refused.contains("it was removed"), "{refused}");
    // Back to 1, 2, 3: any two of them decide, and nothing was lost.
    c.kill9(1);
    let r = get(&c.lock_url(2, "job"));
    assert_eq!(r.body["holder"], "a", "{r:?}");
    for (name, last) in &tokens {
        let r = acquire(&c.lock_url(3, name), "after", 10_000);
        assert_eq!(r.status, 201, "{name}: {r:?}");
        assert!(
            token(&r) > *last,
            "{name}: token {} after {last}",
            token(&r)
        );
    }
}
