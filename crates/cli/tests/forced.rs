//! `tenure unlock --force`: an operator ends a grant whoever holds it. The
//! holder's renewals are refused at once, nobody else gets the name until
//! the grant's ttl and lock-delay have passed from the force, the history
//! says forced, and the node logs who did it.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_forced_release_ends_the_grant_keeps_others_out_and_is_logged() {
    let c = Cluster::start();
    let url = c.lock_url(1, "stuck");
    let granted = acquire_when_ready(&url, "zombie", 1_000);
    assert_eq!(granted.status, 201, "{granted:?}");
    let t = token(&granted);
    // Before the command: the force happens after this, so the ttl that
    // runs from the force ends at least a ttl after it, however long the
    // command takes to exit on a loaded machine.
    let forced_at = Instant::now();
    let out = Command::new(BIN)
        .args(["unlock", "stuck", "--force", "--token", &t.to_string()])
        .args(["--endpoints", &c.url(1)])
        .output()
        .expect("run tenure unlock");
    assert!(out.status.success(), "{out:?}");

    // The holder's next renewal is refused: it learns it lost the lease.
    let renewal = renew(&url, "zombie", t);
    assert_eq!(renewal.status, 409, "{renewal:?}");
    assert_eq!(renewal.body["state"], "lock_delayed", "{renewal:?}");
    // Nobody else holds it until the ttl (1 s, stretched) has passed.
    let mut first = None;
    while first.is_none() {
        let r = acquire(&c.lock_url(2, "stuck"), "next", 10_000);
        match r.status {
            201 => first = Some((Instant::now(), token(&r))),
            409 => assert!(forced_at.elapsed() < Duration::from_secs(10), "never free"),
            _ => panic!("{r:?}"),
        }
    }
    let (at, next) = first.expect("granted");
    assert!(at.duration_since(forced_at) >= Duration::from_millis(1_000));
    assert_eq!(next, t + 1);

    let history = get(&format!("{url}/history"));
    let kinds: Vec<_> = history.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["change"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "forced"), "{kinds:?}");
    wait_for_log(
        || c.log(1),
        &format!("forced release of grant {t} of zombie by a client at 127.0.0.1 without a token"),
    );
}
