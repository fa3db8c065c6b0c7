//! The HTTP API of a real three-process cluster: grants, conflicts,
//! renewals, releases, expiry, and refusals of bad input.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn one_holder_is_granted_and_every_node_reports_it_to_others() {
    let c = Cluster::start();
    let first = acquire_when_ready(&c.lock_url(1, "scheduler"), "web-1", 10_000);
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.body["holder"], "web-1");
    assert_eq!(first.body["ttl_ms"], 10_000);
    // The cluster's ρ, for the holder's deadline: the default.
    assert_eq!(first.body["max_drift_ppm"], 1_000);
    let t = token(&first);

    let other = acquire(&c.lock_url(2, "scheduler"), "web-2", 10_000);
    assert_eq!(other.status, 409, "{other:?}");
    assert_eq!(other.body["holder"], "web-1");
    assert_eq!(other.body["token"], t);
    let remaining = other.body["remaining_ms"].as_u64().expect("remaining_ms");
    assert!(remaining > 0 && remaining <= 10_010, "{other:?}");

    let read = get(&c.lock_url(3, "scheduler"));
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["holder"], "web-1");
    assert_eq!(read.body["token"], t);
    assert_eq!(read.body["ttl_ms"], 10_000);
}

#[test]
fn an_acquire_by_the_holder_is_a_new_grant_with_a_higher_token() {
    let c = Cluster::start();
    let url = c.lock_url(1, "job");
    let first = token(&acquire_when_ready(&url, "a", 10_000));
    let again = acquire(&c.lock_url(2, "job"), "a", 10_000);
    assert_eq!(again.status, 201, "{again:?}");
    assert!(token(&again) > first);
    // The superseded grant can no longer be renewed.
    let stale = renew(&url, "a", first);
    assert_eq!(stale.status, 409, "{stale:?}");
}

#[test]
fn a_renewal_keeps_the_token_and_a_stale_token_is_refused() {
    let c = Cluster::start();
    let url = c.lock_url(1, "renewed");
    let t = token(&acquire_when_ready(&url, "a", 5_000));
    let renewed = renew(&url, "a", t);
    assert_eq!(renewed.status, 200, "{renewed:?}");
    assert_eq!(token(&renewed), t);
    assert_eq!(renewed.body["holder"], "a");
    assert_eq!(renewed.body["ttl_ms"], 5_000);
    // Through another node too.
    assert_eq!(renew(&c.lock_url(3, "renewed"), "a", t).status, 200);
    let wrong_token = renew(&url, "a", t + 1);
    assert_eq!(wrong_token.status, 409, "{wrong_token:?}");
    assert_eq!(wrong_token.body["token"], t);
    let wrong_holder = renew(&url, "b", t);
    assert_eq!(wrong_holder.status, 409, "{wrong_holder:?}");
}

#[test]
fn a_release_frees_the_name_and_the_next_grant_has_a_higher_token() {
    let c = Cluster::start();
    let url = c.lock_url(1, "released");
    let t = token(&acquire_when_ready(&url, "a", 10_000));
    let not_mine = release(&c.lock_url(2, "released"), "b", t);
    assert_eq!(not_mine.status, 409, "{not_mine:?}");
    let released = release(&c.lock_url(2, "released"), "a", t);
    assert_eq!(released.status, 204, "{released:?}");
    let free = get(&c.lock_url(3, "released"));
    assert_eq!(free.status, 404, "{free:?}");
    assert_eq!(free.body["token"], t);
    let next = acquire(&c.lock_url(3, "released"), "b", 10_000);
    assert_eq!(next.status, 201, "{next:?}");
    assert_eq!(token(&next), t + 1);
    // Releasing the old grant again changes nothing.
    assert_eq!(release(&url, "a", t).status, 409);
    assert_eq!(get(&url).body["holder"], "b");
}

#[test]
fn a_lease_nobody_renews_expires_after_its_ttl() {
    let c = Cluster::start();
    let url = c.lock_url(1, "expiring");
    let started = Instant::now();
    let t = token(&acquire_when_ready(&url, "a", 300));
    let taken = put(
        &format!("{}?wait=3s", c.lock_url(2, "expiring")),
        r#"{"holder":"b","ttl_ms":300}"#,
    );
    assert_eq!(taken.status, 201, "{taken:?}");
    assert!(token(&taken) > t);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "granted before the ttl: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(2_500),
        "expiry noticed late: {waited:?}"
    );
    // The dead grant cannot be renewed back to life.
    let late = renew(&url, "a", t);
    assert_eq!(late.status, 409, "{late:?}");
}

/// A holder whose grant ran out may have gone on acting without knowing
/// it: that is what the lock-delay is for, and a release that comes late
/// must not end it.
#[test]
fn a_release_after_expiry_leaves_the_lock_delay_in_place() {
    let c = Cluster::start();
    let url = c.lock_url(1, "delayed");
    acquire_when_ready(&c.lock_url(1, "warm"), "w", 10_000);
    let granted = put(&url, r#"{"holder":"a","ttl_ms":50,"lock_delay_ms":30000}"#);
    assert_eq!(granted.status, 201, "{granted:?}");
    let t = token(&granted);
    // Reads until the expiry shows, well past (nodes judge expiry on
    // their own clocks, a round trip apart), within a bound.
    let give_up = Instant::now() + Duration::from_secs(10);
    let expired = loop {
        let read = get(&c.lock_url(2, "delayed"));
        let delayed = read.body["state"] == "lock_delayed"
            && read.body["remaining_ms"]
                .as_u64()
                .is_some_and(|r| r < 29_900);
        if delayed || Instant::now() > give_up {
            break read;
        }
    };
    assert_eq!(expired.status, 404, "{expired:?}");

    let late = release(&url, "a", t);
    assert_eq!(late.status, 409, "{late:?}");
    assert_eq!(late.body["state"], "lock_delayed", "{late:?}");
    assert!(
        late.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("expired")),
        "{late:?}"
    );
    let other = acquire(&c.lock_url(3, "delayed"), "b", 10_000);
    assert_eq!(other.status, 409, "{other:?}");
    assert_eq!(other.body["state"], "lock_delayed", "{other:?}");
    // Its holder may still take it back.
    let again = acquire(&url, "a", 10_000);
    assert_eq!(again.status, 201, "{again:?}");
    assert!(token(&again) > t);
}

/// The bug this pins: a release (or renewal) that was delayed in the
/// network must not end a later acquisition, even by the same holder.
/// The DELETE is really sent before the re-acquire (all but the end of its
/// head) and delivered after it.
#[test]
fn a_release_delayed_past_a_reacquire_gets_409_and_the_lease_stays() {
    let c = Cluster::start();
    let url = c.lock_url(1, "fenced");
    let first = token(&acquire_when_ready(&url, "a", 10_000));

    let host = c.url(1).trim_start_matches("http://").to_string();
    let mut delayed = TcpStream::connect(&host).expect("connect");
    write!(
        delayed,
        "DELETE /v1/locks/fenced?holder=a&token={first} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    )
    .expect("send head");
    delayed.flush().expect("flush");

    let second = acquire(&c.lock_url(2, "fenced"), "a", 10_000);
    assert_eq!(second.status, 201, "{second:?}");
    let second = token(&second);
    assert!(second > first);

    delayed
        .write_all(b"\r\n")
        .expect("deliver the end of the head");
    let answer = read_all(&mut delayed, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");

    let read = get(&c.lock_url(3, "fenced"));
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["token"], second);
    assert_eq!(read.body["holder"], "a");
    // A delayed renewal of the first grant is refused the same way.
    assert_eq!(renew(&url, "a", first).status, 409);
}

#[test]
fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let c = Cluster::start();
    let url = c.lock_url(1, "guarded");
    // Make sure the cluster answers at all, on another name.
    assert_eq!(
        acquire_when_ready(&c.lock_url(1, "warm"), "a", 1_000).status,
        201
    );

    let long_name = "n".repeat(129);
    let cases: Vec<(&str, Resp, u16, Option<&str>)> = vec![
        (
            "name too long",
            acquire(&c.lock_url(1, &long_name), "a", 1_000),
            400,
            Some("name"),
        ),
        (
            "illegal name",
            acquire(&c.lock_url(1, "a%20b"), "a", 1_000),
            400,
            Some("name"),
        ),
        ("ttl too small", acquire(&url, "a", 1), 400, Some("ttl_ms")),
        (
            "ttl too large",
            acquire(&url, "a", 86_400_001),
            400,
            Some("ttl_ms"),
        ),
        (
            "ttl not a number",
            put(&url, r#"{"holder":"a","ttl_ms":"10s"}"#),
            422,
            Some("ttl_ms"),
        ),
        (
            "ttl fractional",
            put(&url, r#"{"holder":"a","ttl_ms":1.5}"#),
            422,
            Some("ttl_ms"),
        ),
        (
            "ttl missing",
            put(&url, r#"{"holder":"a"}"#),
            422,
            Some("ttl_ms"),
        ),
        (
            "holder missing",
            put(&url, r#"{"ttl_ms":1000}"#),
            422,
            Some("holder"),
        ),
        (
            "holder not a string",
            put(&url, r#"{"holder":7,"ttl_ms":1000}"#),
            422,
            Some("holder"),
        ),
        (
            "holder with a space",
            put(&url, r#"{"holder":"a b","ttl_ms":1000}"#),
            400,
            Some("holder"),
        ),
        (
            "unknown field",
            put(&url, r#"{"holder":"a","ttl_ms":1000,"tll_ms":1}"#),
            422,
            Some("tll_ms"),
        ),
        ("malformed JSON", put(&url, r#"{"holder":"a","#), 400, None),
        ("empty body", put(&url, ""), 400, None),
        ("not an object", put(&url, "[1,2]"), 422, None),
        (
            "lock delay too long",
            put(
                &url,
                r#"{"holder":"a","ttl_ms":1000,"lock_delay_ms":600000}"#,
            ),
            400,
            Some("lock_delay_ms"),
        ),
        (
            "bad wait",
            put(
                &format!("{url}?wait=forever"),
                r#"{"holder":"a","ttl_ms":1000}"#,
            ),
            400,
            Some("wait"),
        ),
        (
            "wait too long",
            put(
                &format!("{url}?wait=1000m"),
                r#"{"holder":"a","ttl_ms":1000}"#,
            ),
            400,
            Some("wait"),
        ),
        (
            "unknown query",
            put(&format!("{url}?wiat=1s"), r#"{"holder":"a","ttl_ms":1000}"#),
            400,
            Some("wiat"),
        ),
        (
            "release without token",
            delete(&format!("{url}?holder=a")),
            400,
            Some("token"),
        ),
        (
            "release with a bad token",
            delete(&format!("{url}?holder=a&token=x")),
            400,
            Some("token"),
        ),
        (
            "release without holder",
            delete(&format!("{url}?token=1")),
            400,
            Some("holder"),
        ),
        (
            "bad watch flag",
            get(&format!("{url}?watch=yes")),
            400,
            Some("watch"),
        ),
        (
            "body too large",
            put(
                &url,
                &format!(
                    r#"{{"holder":"a","ttl_ms":1000,"x":"{}"}}"#,
                    "x".repeat(5_000)
                ),
            ),
            413,
            None,
        ),
    ];
    for (what, r, status, field) in cases {
        assert_eq!(r.status, status, "{what}: {r:?}");
        let message = r.body["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: no error message in {r:?}");
        if let Some(field) = field {
            assert_eq!(r.body["field"], field, "{what}: {r:?}");
        }
    }
    // Nothing reached the register: it was never written.
    let read = get(&url);
    assert_eq!(read.status, 404, "{read:?}");
    assert_eq!(read.body["token"], 0);
    assert_eq!(token(&acquire(&url, "a", 1_000)), 1);
}

#[test]
fn cluster_metrics_and_health_describe_the_node() {
    let c = Cluster::start();
    assert_eq!(
        acquire_when_ready(&c.lock_url(2, "m"), "a", 10_000).status,
        201
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let cluster = loop {
        let r = get(&format!("{}/v1/cluster", c.url(2)));
        assert_eq!(r.status, 200, "{r:?}");
        if r.body["reachable"] == 3 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(cluster.body["node"], 2);
    assert_eq!(cluster.body["quorum"], 2);
    assert_eq!(cluster.body["reachable"], 3, "{cluster:?}");
    let members = cluster.body["members"].as_array().expect("members");
    assert_eq!(members.len(), 3);
    assert!(
        members.iter().all(|m| m["connected"] == true),
        "{cluster:?}"
    );

    let metrics = get(&format!("{}/metrics", c.url(2)));
    assert_eq!(metrics.status, 200);
    for needle in [
        "tenure_http_requests_total{op=\"acquire\",status=\"201\"} 1",
        "tenure_http_request_duration_seconds_bucket{op=\"acquire\",le=\"+Inf\"} 1",
        "tenure_outcomes_total{op=\"acquire\",outcome=\"granted\"} 1",
        "tenure_paxos_phases_total{phase=\"accept\"}",
        "tenure_persist_duration_seconds_count",
        "tenure_persist_batch_writes_bucket",
        "tenure_leases_held 1",
        "tenure_peer_connected{peer=\"1\"} 1",
    ] {
        assert!(
            metrics.text.contains(needle),
            "no {needle} in\n{}",
            metrics.text
        );
    }

    let health = get(&format!("{}/healthz", c.url(2)));
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["quorum_reachable"], true);

    let nowhere = get(&format!("{}/v2/nothing", c.url(2)));
    assert_eq!(nowhere.status, 404);
    assert!(nowhere.body["error"].is_string());
}

/// Heads too large to serve are refused with a JSON body that says why,
/// up to where the HTTP library itself stops parsing (docs/api.md).
#[test]
fn oversized_heads_and_wrong_methods_are_refused_in_json() {
    let c = Cluster::start();
    let host = c.url(1).trim_start_matches("http://").to_string();
    let ask = |head: String| -> String {
        let mut s = TcpStream::connect(&host).expect("connect");
        write!(s, "{head}Host: {host}\r\nConnection: close\r\n\r\n").expect("send");
        s.flush().expect("flush");
        read_all(&mut s, Duration::from_secs(10))
    };
    let long_uri = format!("GET /v1/locks/{} HTTP/1.1\r\n", "a".repeat(20_000));
    let many_headers: String = (0..150).map(|i| format!("X-Extra-{i}: {i}\r\n")).collect();
    let big_header = format!("X-Big: {}\r\n", "b".repeat(20_000));
    let cases = [
        (long_uri, "414", "request target"),
        (
            format!("GET /v1/locks/x HTTP/1.1\r\n{many_headers}"),
            "431",
            "headers",
        ),
        (
            format!("GET /v1/locks/x HTTP/1.1\r\n{big_header}"),
            "431",
            "headers are",
        ),
        (
            "POST /v1/locks/x HTTP/1.1\r\nContent-Length: 0\r\n".to_string(),
            "405",
            "POST",
        ),
    ];
    for (head, status, says) in cases {
        let answer = ask(head);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(says)),
            "{answer}"
        );
    }
}

/// Bounds on connections and watches answer 503 with a JSON reason and
/// `Retry-After` (not a bare close), and count what they refused.
#[test]
fn connections_and_watches_over_their_bounds_are_answered_and_counted() {
    let mut c = Cluster::start();
    c.kill9(1);
    c.try_restart(
        1,
        &["--max-connections-per-client", "4", "--max-watches", "2"],
    )
    .expect("node 1 restarts");
    let r = acquire_when_ready(&c.lock_url(1, "bounded"), "a", 10_000);
    assert_eq!(r.status, 201, "{r:?}");
    let watch_url = format!("{}?watch=true", c.lock_url(1, "bounded"));
    let first = stream_lines(&watch_url);
    let second = stream_lines(&watch_url);
    for lines in [&first, &second] {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a first line");
        assert_eq!(line["state"], "held", "{line}");
    }
    let third = get(&watch_url);
    assert_eq!(third.status, 503, "{third:?}");
    assert!(third.text.contains("watches at once"), "{third:?}");
    // Two watches and two kept-alive connections fill this address's
    // four. Each is known to hold its place once it has been served (an
    // earlier request's connection may still be closing, and refuse one).
    let host = c.url(1).trim_start_matches("http://").to_string();
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..50 {
        if held.len() == 2 {
            break;
        }
        let mut s = TcpStream::connect(&host).expect("connect");
        write!(s, "GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("send");
        let mut head = [0u8; 12];
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        if std::io::Read::read_exact(&mut s, &mut head).is_ok() && &head == b"HTTP/1.1 200" {
            held.push(s);
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(held.len(), 2, "two connections kept alive");
    let over = get(&c.lock_url(1, "bounded"));
    assert_eq!(over.status, 503, "{over:?}");
    assert_eq!(over.retry_after.as_deref(), Some("1"), "{over:?}");
    assert!(over.text.contains("connections to this node"), "{over:?}");
    drop(held);
    drop((first, second));
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = get(&format!("{}/metrics", c.url(1)));
        if m.status == 200 || Instant::now() > deadline {
            break m.text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for line in [
        "tenure_http_refused_total{reason=\"watches\"} 1",
        "tenure_http_refused_total{reason=\"connections_per_client\"}",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
}

/// Waiting acquires are bounded per node like watches: one over the bound
/// is answered 503 with its reason at once, and counted.
#[test]
fn waiting_acquires_over_their_bound_are_answered_and_counted() {
    let mut c = Cluster::start();
    c.kill9(1);
    c.try_restart(1, &["--max-waits", "1"])
        .expect("node 1 restarts");
    let url = c.lock_url(1, "waited");
    let r = acquire_when_ready(&url, "a", 30_000);
    assert_eq!(r.status, 201, "{r:?}");
    let token = token(&r);
    let waiting_url = format!("{url}?wait=20s");
    let waiter = std::thread::spawn(move || put(&waiting_url, r#"{"holder":"b","ttl_ms":10000}"#));
    // The first waiter holds the node's one place once it is queued.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&url).body["waiters"] != 1 {
        assert!(Instant::now() < deadline, "b never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
    let over = put(
        &format!("{url}?wait=20s"),
        r#"{"holder":"c","ttl_ms":10000}"#,
    );
    assert_eq!(over.status, 503, "{over:?}");
    assert_eq!(over.retry_after.as_deref(), Some("1"), "{over:?}");
    assert!(over.text.contains("waiting acquires at once"), "{over:?}");
    let r = release(&url, "a", token);
    assert_eq!(r.status, 204, "{r:?}");
    let granted = waiter.join().expect("the waiter");
    assert_eq!(granted.status, 201, "{granted:?}");
    let metrics = get(&format!("{}/metrics", c.url(1))).text;
    let line = "tenure_http_refused_total{reason=\"waits\"} 1";
    assert!(metrics.contains(line), "{line} not in:\n{metrics}");
}
