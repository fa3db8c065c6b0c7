//! Thirty-two clients on one name, through all three nodes of a real
//! cluster: half try the lock in a loop, half wait for it with a long poll;
//! each holds it 2 ms and releases it. Contention is the normal case for a
//! lock: every request must succeed (no 5xx, no timeout), every waiter
//! must be granted, and no two holders may overlap.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const RUN: Duration = Duration::from_secs(3);
const HOLD: Duration = Duration::from_millis(2);

/// Who held the lock when, as the clients saw it on this test's clock:
/// from the grant's answer to the release being sent.
struct Holding {
    client: usize,
    token: u64,
    from: Instant,
    until: Instant,
}

#[test]
fn thirty_two_clients_on_one_name_through_every_node_see_no_error() {
    let c = Cluster::start();
    assert_eq!(
        acquire_when_ready(&c.lock_url(1, "warm"), "w", 1_000).status,
        201
    );
    let urls: Vec<String> = (1..=3).map(|id| c.lock_url(id, "job")).collect();
    let holdings = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let url = urls[i % 3].clone();
            let (holdings, errors) = (holdings.clone(), errors.clone());
            std::thread::spawn(move || {
                let waits = i % 2 == 1;
                let holder = format!("client-{i}");
                let acquire_url = if waits {
                    format!("{url}?wait=10s")
                } else {
                    url.clone()
                };
                let mut granted = 0;
                while started.elapsed() < RUN {
                    let r = put(
                        &acquire_url,
                        &format!(r#"{{"holder":"{holder}","ttl_ms":10000}}"#),
                    );
                    match r.status {
                        201 => {
                            let from = Instant::now();
                            let token = token(&r);
                            std::thread::sleep(HOLD);
                            let until = Instant::now();
                            let released = release(&url, &holder, token);
                            if released.status != 204 {
                                errors
                                    .lock()
                                    .unwrap()
                                    .push(format!("release: {released:?}"));
                            }
                            holdings.lock().unwrap().push(Holding {
                                client: i,
                                token,
                                from,
                                until,
                            });
                            granted += 1;
                        }
                        409 if !waits => {}
                        _ => errors.lock().unwrap().push(format!("acquire: {r:?}")),
                    }
                }
                granted
            })
        })
        .collect();
    let grants: Vec<usize> = threads
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect();
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, first: {}",
        errors.len(),
        errors[0]
    );
    // Every waiter was served, over and over.
    for (i, n) in grants.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        assert!(*n >= 2, "waiter {i} was granted {n} times in {RUN:?}");
    }
    let mut holdings = std::mem::take(&mut *holdings.lock().unwrap());
    assert!(holdings.len() >= 100, "only {} grants", holdings.len());
    holdings.sort_by_key(|h| h.from);
    for pair in holdings.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.until <= b.from || a.client == b.client,
            "client {} (token {}) and client {} (token {}) held the lock at once",
            a.client,
            a.token,
            b.client,
            b.token
        );
        assert!(b.token > a.token, "tokens rise with each grant");
    }
}
