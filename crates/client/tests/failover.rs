//! The client against stub nodes: failover, which failures are retried, and
//! deadlines that hold when no node answers. The stubs are plain TCP
//! listeners that answer with canned HTTP, so each case is exact.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure_client::{Client, Clock, Error, Lock, LostReason, SuspendableClock, LOOK_EVERY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A stub node: answers each request with `answer(method_and_path, body)`,
/// or never answers when that gives `None`. Counts requests.
struct Stub {
    url: String,
    requests: Arc<AtomicUsize>,
}

fn response(status: &str, body: &str) -> Option<String> {
    Some(format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ))
}

async fn stub(answer: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() < head_end + 4 + length {
                        continue;
                    }
                    let request_line = text.lines().next().unwrap_or("").to_string();
                    buf.drain(..head_end + 4 + length);
                    counter.fetch_add(1, Ordering::SeqCst);
                    match answer(&request_line) {
                        Some(r) => {
                            if conn.write_all(r.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        None => {
                            // Hold the connection open without answering.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    Stub { url, requests }
}

/// An address where nothing listens: bound, then released.
async fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    url
}

const HELD: &str = r#"{"state":"held","holder":"a","token":3,"remaining_ms":900,"ttl_ms":1000}"#;
const UNKNOWN: &str = r#"{"error":"no quorum","outcome_unknown":true}"#;
const KNOWN: &str = r#"{"error":"overloaded","outcome_unknown":false}"#;

#[tokio::test]
async fn a_read_fails_over_from_a_dead_node_and_then_goes_straight_to_the_live_one() {
    let live = stub(|_| response("200 OK", HELD)).await;
    let client = Client::new(&[dead_endpoint().await, live.url.clone()]).expect("client");
    let state = client.read("x").await.expect("read");
    assert_eq!(state.holder(), Some("a"));
    let state = client.read("x").await.expect("second read");
    assert_eq!(state.token(), Some(3));
    assert_eq!(live.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_acquire_with_an_unknown_outcome_is_retried_on_another_node() {
    let failing = stub(|_| response("503 Service Unavailable", UNKNOWN)).await;
    let granting =
        stub(|_| response("201 Created", r#"{"token":7,"holder":"me","ttl_ms":1000}"#)).await;
    let client = Client::new(&[failing.url.clone(), granting.url.clone()]).expect("client");
    let grant = client
        .acquire_once("x", "me", Duration::from_secs(1), None)
        .await
        .expect("call")
        .expect("granted");
    assert_eq!(grant.token, 7);
    assert_eq!(failing.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_release_with_an_unknown_outcome_is_not_retried() {
    let failing = stub(|_| response("503 Service Unavailable", UNKNOWN)).await;
    let other = stub(|_| response("204 No Content", "")).await;
    let client = Client::new(&[failing.url.clone(), other.url.clone()]).expect("client");
    let result = client.release("x", "me", 7, None).await;
    assert!(
        matches!(
            result,
            Err(Error::Unavailable {
                outcome_unknown: true,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(other.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_release_that_certainly_did_nothing_is_retried_on_another_node() {
    let failing = stub(|_| response("503 Service Unavailable", KNOWN)).await;
    let other = stub(|_| response("204 No Content", "")).await;
    let client = Client::new(&[failing.url.clone(), other.url.clone()]).expect("client");
    client.release("x", "me", 7, None).await.expect("released");
    assert_eq!(other.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_call_ends_by_its_deadline_when_no_node_answers() {
    let silent = stub(|_| None).await;
    let client = Client::with_timeouts(
        &[silent.url.clone(), dead_endpoint().await],
        Duration::from_millis(200),
        Duration::from_millis(500),
    )
    .expect("client");
    let started = Instant::now();
    let result = client.read("x").await;
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn lost_fires_at_the_local_deadline_when_renewals_get_no_answer() {
    // Grants, then never answers again: the cluster is "unreachable".
    let granted = Arc::new(AtomicUsize::new(0));
    let g = Arc::clone(&granted);
    let node = stub(move |_| {
        if g.fetch_add(1, Ordering::SeqCst) == 0 {
            response("201 Created", r#"{"token":1,"holder":"me","ttl_ms":600}"#)
        } else {
            None
        }
    })
    .await;
    let client = Client::with_timeouts(
        std::slice::from_ref(&node.url),
        Duration::from_millis(150),
        Duration::from_secs(2),
    )
    .expect("client");
    let before = Instant::now();
    let lease = Lock::new(&client, "x")
        .holder("me")
        .ttl(Duration::from_millis(600))
        .margin(Duration::from_millis(100))
        .try_acquire()
        .await
        .expect("granted");
    // 600 ms · 0.998 − 100 ms = 498.8 ms after the send.
    let reason = lease.lost().await;
    let elapsed = before.elapsed();
    assert_eq!(reason, LostReason::Expired);
    assert!(elapsed >= Duration::from_millis(490), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    assert!(!lease.is_valid());
    assert!(
        node.requests.load(Ordering::SeqCst) >= 2,
        "a renewal was attempted"
    );
}

#[tokio::test]
async fn renewals_go_on_until_the_deadline_not_just_for_a_call_s_attempts() {
    // One node grants and then answers 503; 31 others refuse connections.
    // A call gives up after 64 attempts, two rounds here, long before the
    // deadline: the lease must still be renewed until its deadline.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let node = stub(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            response("201 Created", r#"{"token":1,"holder":"me","ttl_ms":1500}"#)
        } else {
            response("503 Service Unavailable", KNOWN)
        }
    })
    .await;
    let mut endpoints = vec![node.url.clone()];
    for _ in 0..31 {
        endpoints.push(dead_endpoint().await);
    }
    let client = Client::new(&endpoints).expect("client");
    let before = Instant::now();
    let lease = Lock::new(&client, "x")
        .holder("me")
        .ttl(Duration::from_millis(1500))
        .margin(Duration::from_millis(100))
        .try_acquire()
        .await
        .expect("granted");
    let reason = lease.lost().await;
    let elapsed = before.elapsed();
    assert_eq!(reason, LostReason::Expired);
    // 1500 ms · 0.998 − 100 ms = 1397 ms after the send.
    assert!(
        elapsed >= Duration::from_millis(1_390),
        "lost early: {elapsed:?}"
    );
    assert!(
        calls.load(Ordering::SeqCst) > 3,
        "renewals went on after a call's attempts ran out"
    );
}

#[tokio::test]
async fn a_refused_renewal_loses_the_lease_at_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let node = stub(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            response("201 Created", r#"{"token":1,"holder":"me","ttl_ms":3000}"#)
        } else {
            response(
                "409 Conflict",
                r#"{"state":"free","token":1,"error":"grant 1 of me is no longer current"}"#,
            )
        }
    })
    .await;
    let client = Client::new(std::slice::from_ref(&node.url)).expect("client");
    let lease = Lock::new(&client, "x")
        .holder("me")
        .ttl(Duration::from_millis(3000))
        .try_acquire()
        .await
        .expect("granted");
    let started = Instant::now();
    let reason = lease.lost().await;
    // The first renewal is at ttl/3 = 1 s; the deadline is ~2.9 s.
    assert!(matches!(reason, LostReason::Refused(_)), "{reason:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// A node that grants and renews every request, for `ttl_ms`.
async fn always_granting(ttl_ms: u64) -> Stub {
    let calls = AtomicUsize::new(0);
    stub(move |_| {
        let status = match calls.fetch_add(1, Ordering::SeqCst) {
            0 => "201 Created",
            _ => "200 OK",
        };
        response(
            status,
            &format!(r#"{{"token":1,"holder":"me","ttl_ms":{ttl_ms}}}"#),
        )
    })
    .await
}

/// A lease of 3 s from a node that renews it forever, counted on a clock
/// the test can move on as a suspend would.
async fn held_on_a_suspendable_clock() -> (Stub, Arc<SuspendableClock>, tenure_client::Lease) {
    let node = always_granting(3_000).await;
    let source = Arc::new(SuspendableClock::new());
    let client = Client::new(std::slice::from_ref(&node.url))
        .expect("client")
        .with_clock(Clock::new(source.clone()));
    let lease = Lock::new(&client, "x")
        .holder("me")
        .ttl(Duration::from_millis(3_000))
        .try_acquire()
        .await
        .expect("granted");
    (node, source, lease)
}

#[tokio::test]
async fn a_holder_suspended_past_its_deadline_knows_on_resume_that_its_lease_is_lost() {
    // The cluster would renew: only the time the holder slept through
    // (on a clock that counts a suspend, as `CLOCK_BOOTTIME` does) ends
    // the lease. Tokio's timers, like `CLOCK_MONOTONIC`, did not count it.
    let (_node, source, lease) = held_on_a_suspendable_clock().await;
    let lost = tokio::spawn(lease.lost());
    assert!(lease.is_valid());
    source.suspend_for(Duration::from_secs(4));
    // At once, without waiting for any timer or any node:
    assert!(!lease.is_valid());
    let resumed = Instant::now();
    let reason = lost.await.expect("lost");
    assert_eq!(reason, LostReason::Expired);
    assert!(
        resumed.elapsed() < LOOK_EVERY + Duration::from_millis(400),
        "noticed after {:?}",
        resumed.elapsed()
    );
    // The keepalive, waking after the resume, must not revive it with a
    // renewal the cluster would still accept.
    tokio::time::sleep(LOOK_EVERY * 3).await;
    assert!(!lease.is_valid());
    assert_eq!(lease.lost().await, LostReason::Expired);
}

#[tokio::test]
async fn a_short_suspend_within_the_deadline_keeps_the_lease() {
    let (_node, source, lease) = held_on_a_suspendable_clock().await;
    source.suspend_for(Duration::from_millis(500));
    assert!(lease.is_valid());
    // The keepalive renews after the resume (its ttl/3 has passed on the
    // lease's clock), and the deadline moves past the suspend.
    let before = lease.deadline();
    let mut status = lease.status();
    tokio::time::timeout(
        Duration::from_secs(2),
        status.wait_for(|s| s.deadline > before),
    )
    .await
    .expect("renewed in time")
    .expect("status");
    assert!(lease.is_valid());
}

#[tokio::test]
async fn endpoints_must_be_http_or_https_urls() {
    assert!(matches!(
        Client::new(&["127.0.0.1:7400"]),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        Client::new(&["ftp://a:1"]),
        Err(Error::Invalid { .. })
    ));
    assert!(Client::new(&["https://a:1"]).is_ok());
    assert!(matches!(
        Client::new::<&str>(&[]),
        Err(Error::Invalid { .. })
    ));
    assert!(Client::from_list("http://a:1, http://b:2").is_ok());
}

#[tokio::test]
async fn a_bounded_wait_ends_on_time_when_no_node_answers() {
    // Retries against nodes that are down must not keep the caller past
    // its own wait (they used to, for the whole 10 s call deadline).
    let client = Client::new(&[dead_endpoint().await]).expect("client");
    let started = Instant::now();
    let result = Lock::new(&client, "x")
        .acquire_within(Duration::from_secs(1))
        .await;
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "{:?}",
        result.err()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_watch_says_when_no_node_can_be_reached() {
    let client = Client::new(&[dead_endpoint().await]).expect("client");
    let mut watch = client.watch("x").expect("watch");
    let first = tokio::time::timeout(Duration::from_secs(5), watch.next_state())
        .await
        .expect("a line in time")
        .expect("a line")
        .expect("a state");
    match first {
        tenure_client::LeaseState::Unavailable { error } => {
            assert!(error.contains("refused"), "{error}")
        }
        other => panic!("{other:?}"),
    }
}
