//! Long-polls and watches: waiters are woken by changes, not by polling.

mod common;

use common::*;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

#[test]
fn a_long_poll_is_granted_as_soon_as_the_holder_releases() {
    let c = Cluster::start();
    let t = token(&acquire_when_ready(&c.lock_url(1, "leader"), "a", 30_000));
    let waiter_url = format!("{}?wait=10s", c.lock_url(1, "leader"));
    let waiter = std::thread::spawn(move || {
        let r = put(&waiter_url, r#"{"holder":"b","ttl_ms":30000}"#);
        (r, Instant::now())
    });
    // Wait until the waiter is queued through node 1 (its metrics say so).
    wait_for_metric(&c.url(1), "tenure_waiting_acquires 1");
    let released_at = Instant::now();
    assert_eq!(release(&c.lock_url(2, "leader"), "a", t).status, 204);
    let (r, granted_at) = waiter.join().expect("waiter");
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(token(&r), t + 1);
    let lag = granted_at.duration_since(released_at);
    // The lease had 30 s to run: only a wakeup can explain a quick grant.
    assert!(
        lag < Duration::from_secs(2),
        "granted {lag:?} after the release"
    );
}

#[test]
fn a_long_poll_ends_with_409_naming_the_holder_when_the_wait_runs_out() {
    let c = Cluster::start();
    assert_eq!(
        acquire_when_ready(&c.lock_url(1, "busy"), "a", 30_000).status,
        201
    );
    let started = Instant::now();
    let r = put(
        &format!("{}?wait=500ms", c.lock_url(3, "busy")),
        r#"{"holder":"b","ttl_ms":1000}"#,
    );
    let took = started.elapsed();
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.body["holder"], "a");
    assert!(
        took >= Duration::from_millis(500),
        "gave up early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "overstayed its wait: {took:?}"
    );
}

#[test]
fn a_watch_streams_every_change_of_holder() {
    let c = Cluster::start();
    // Make sure the cluster answers before the stream opens.
    assert_eq!(
        acquire_when_ready(&c.lock_url(1, "warm"), "w", 1_000).status,
        201
    );
    let lines = stream_lines(&format!("{}?watch=true", c.lock_url(3, "watched")));
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a watch line")
    };
    let first = next();
    assert_eq!(first["state"], "free", "{first}");

    let a = token(&acquire(&c.lock_url(1, "watched"), "a", 30_000));
    let line = next();
    assert_eq!(
        (line["state"].as_str(), line["holder"].as_str()),
        (Some("held"), Some("a")),
        "{line}"
    );
    assert_eq!(line["token"], a);

    // A renewal changes neither holder nor token: no line (the heartbeat
    // comes only after 5 s of quiet).
    assert_eq!(renew(&c.lock_url(1, "watched"), "a", a).status, 200);

    assert_eq!(release(&c.lock_url(2, "watched"), "a", a).status, 204);
    let line = next();
    assert_eq!(line["state"], "free", "{line}");
    assert_eq!(line["token"], a);

    let b = token(&acquire(&c.lock_url(2, "watched"), "b", 300));
    let line = next();
    assert_eq!(line["holder"], "b", "{line}");
    assert_eq!(line["token"], b);

    // Nobody renews b: the watch reports the expiry by itself.
    let line = next();
    assert_eq!(line["state"], "free", "{line}");
    assert_eq!(line["token"], b);

    // And nothing else happened.
    match lines.recv_timeout(Duration::from_millis(300)) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("unexpected watch line {other:?}"),
    }
}

/// Found by the election benchmark: three candidates on three nodes taking
/// turns, each releasing as soon as it has renewed once. A round that lost
/// the race for a freed lock could fall behind by more writes than the
/// value's write log remembers, and could then not tell whether its own
/// write took effect: the long poll answered 503 (outcome unknown). A wait
/// with time left now acquires again instead, which is safe because a
/// retried acquire by the same holder supersedes its own earlier grant.
/// A quiet name's stream repeats its state at least every 5 s, so that a
/// client can tell it from a node that froze with the connection open.
#[test]
fn a_quiet_watch_repeats_its_state_as_a_heartbeat() {
    let c = Cluster::start();
    acquire_when_ready(&c.lock_url(1, "quiet"), "a", 60_000);
    let lines = stream_lines(&format!("{}?watch=true", c.lock_url(2, "quiet")));
    let first = lines.recv_timeout(Duration::from_secs(10)).expect("a line");
    let started = Instant::now();
    let again = lines
        .recv_timeout(Duration::from_secs(8))
        .expect("a heartbeat within 8 s");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_secs(4),
        "a repeat after {after:?} is no heartbeat"
    );
    assert_eq!(
        (&again["state"], &again["holder"], &again["token"]),
        (&first["state"], &first["holder"], &first["token"]),
        "{again}"
    );
}

#[test]
fn candidates_taking_turns_never_see_an_unknown_outcome_while_they_wait() {
    const TURNS: usize = 25;
    let c = Cluster::start();
    acquire_when_ready(&c.lock_url(1, "warm-up"), "w", 1_000);
    let candidates: Vec<_> = (1..=3u16)
        .map(|node| {
            let url = c.lock_url(node, "turns");
            std::thread::spawn(move || {
                let holder = format!("c{node}");
                let acquire = format!(r#"{{"holder":"{holder}","ttl_ms":10000}}"#);
                for _ in 0..TURNS {
                    let granted = loop {
                        let r = put(&format!("{url}?wait=30s"), &acquire);
                        match r.status {
                            201 => break r,
                            409 => continue,
                            _ => return Err(format!("{holder}: {r:?}")),
                        }
                    };
                    let t = token(&granted);
                    let renewed = renew(&url, &holder, t);
                    if renewed.status != 200 {
                        return Err(format!("{holder}: renewal {renewed:?}"));
                    }
                    // A release that reports an unknown outcome is retried,
                    // as the API says (it names its token). A retry may then
                    // find that the first attempt did take effect: the grant
                    // is no longer current, and that is the release done.
                    let mut released = release(&url, &holder, t);
                    let mut unknown_before = false;
                    for _ in 0..5 {
                        if released.status != 503 {
                            break;
                        }
                        unknown_before = true;
                        released = release(&url, &holder, t);
                    }
                    let done_earlier = unknown_before
                        && released.status == 409
                        && released.text.contains("no longer current");
                    if released.status != 204 && !done_earlier {
                        return Err(format!("{holder}: release {released:?}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for candidate in candidates {
        candidate
            .join()
            .expect("candidate thread")
            .expect("every turn granted");
    }
}

/// A long poll whose client hangs up leaves the queue: the lease is never
/// handed to a client that is not there to use it.
#[test]
fn a_long_poll_whose_client_hangs_up_leaves_the_queue() {
    use std::io::Write as _;
    let c = Cluster::start();
    let url = c.lock_url(2, "abandoned");
    let t = token(&acquire_when_ready(&url, "a", 30_000));
    let addr = c.url(2).trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    let body = r#"{"holder":"gone","ttl_ms":30000}"#;
    write!(
        stream,
        "PUT /v1/locks/abandoned?wait=60s HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&url).body["waiters"] != 1 {
        assert!(Instant::now() < deadline, "the long poll never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(stream);
    while get(&url).body["waiters"] != 0 {
        assert!(Instant::now() < deadline, "the gone client stayed queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_for_metric(&c.url(2), "tenure_waiting_acquires 0");
    assert_eq!(release(&url, "a", t).status, 204);
    let after = get(&url);
    assert_eq!(after.status, 404, "{after:?}");
    assert_eq!(after.body["state"], "free");
}

/// Wait until a read of `url` shows `n` waiters queued, bounded.
fn wait_for_waiters(url: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(url).body["waiters"].as_u64() != Some(n) {
        assert!(
            Instant::now() < deadline,
            "never {n} waiters: {:?}",
            get(url)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A node is SIGKILLed with a waiter queued through it, ahead of a waiter
/// through a node that stays up. The other nodes see its links break, and
/// the release hands the lease to the waiter that can take it: handed to
/// the dead node's waiter, it would be out of everyone's reach for a ttl.
#[test]
fn a_release_passes_over_the_waiter_of_a_killed_node() {
    let mut c = Cluster::start();
    let t = token(&acquire_when_ready(&c.lock_url(1, "job"), "a", 30_000));
    let read_url = c.lock_url(1, "job");
    let wait_through = |node: u16, holder: &'static str| {
        let url = format!("{}?wait=20s", c.lock_url(node, "job"));
        std::thread::spawn(move || {
            let r = put(&url, &format!(r#"{{"holder":"{holder}","ttl_ms":30000}}"#));
            (r, Instant::now())
        })
    };
    let doomed = wait_through(3, "b");
    wait_for_waiters(&read_url, 1);
    let survivor = wait_through(2, "c");
    wait_for_waiters(&read_url, 2);
    c.kill9(3);
    let (r, _) = doomed.join().expect("waiter b");
    assert_eq!(r.status, 0, "b's node is gone: {r:?}");
    wait_for_metric(&c.url(1), "tenure_peer_connected{peer=\"3\"} 0");
    let released_at = Instant::now();
    assert_eq!(release(&c.lock_url(1, "job"), "a", t).status, 204);
    let (r, granted_at) = survivor.join().expect("waiter c");
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(token(&r), t + 1, "handed to c in the release's write");
    let lag = granted_at.duration_since(released_at);
    assert!(
        lag < Duration::from_secs(2),
        "granted {lag:?} after the release"
    );
    // b keeps its place in the queue until its wait is over.
    assert_eq!(get(&read_url).body["waiters"], 1);
}
