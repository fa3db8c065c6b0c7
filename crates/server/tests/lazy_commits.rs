//! Lazy records (renewals acknowledged before their fsync) wait in the node
//! loop for company; nothing a client waits for waits with them. Checked on
//! an in-process single-node cluster whose lazy records may wait an hour.

mod common;

use common::{http, metric, token_of, PROMPTLY};
use std::time::{Duration, Instant};
use tenure_server::Running;

async fn start(dir: &std::path::Path) -> Running {
    start_with_delay(dir, Duration::from_secs(3_600)).await
}

async fn start_with_delay(dir: &std::path::Path, delay: Duration) -> Running {
    common::start_single(dir, |config| {
        config.lazy_commit_delay = delay;
        config.http.drain_timeout = Duration::from_secs(60);
    })
    .await
}

/// The writes this node has made durable so far.
async fn writes_committed(node: &Running) -> u64 {
    metric(node, "tenure_persist_batch_writes_sum").await
}

/// Grant `name` to `holder` for a minute; its token.
async fn acquire(node: &Running, name: &str, holder: &str) -> u64 {
    let body = format!(r#"{{"holder":"{holder}","ttl_ms":60000}}"#);
    let (status, body) = http(node, "PUT", &format!("/v1/locks/{name}"), &body).await;
    assert_eq!(status, 201, "{body}");
    token_of(&body)
}

/// Renew `holder`'s grant `token` of `name`.
async fn renew(node: &Running, name: &str, holder: &str, token: u64) {
    let body = format!(r#"{{"holder":"{holder}","token":{token}}}"#);
    let (status, body) = http(node, "PUT", &format!("/v1/locks/{name}"), &body).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_are_answered_at_once_and_committed_with_the_next_strict_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path()).await;
    let token = acquire(&node, "renewed", "a").await;
    let before = writes_committed(&node).await;

    const RENEWALS: u64 = 20;
    for _ in 0..RENEWALS {
        renew(&node, "renewed", "a", token).await;
    }
    assert_eq!(
        writes_committed(&node).await,
        before,
        "renewals' lazy records wait for company, not for a commit of their own"
    );

    // A grant is strict: its commit takes every record held before it.
    acquire(&node, "other", "b").await;
    let after = writes_committed(&node).await;
    assert!(
        after > before + RENEWALS,
        "the grant's commit took {} writes; the {RENEWALS} renewals' records and its own were due",
        after - before
    );
    assert_eq!(metric(&node, "tenure_names_stored").await, 2);

    // Held records are committed at a stop, which does not wait out the delay.
    renew(&node, "renewed", "a", token).await;
    let stopping = Instant::now();
    node.shutdown().await;
    assert!(
        stopping.elapsed() < PROMPTLY,
        "the stop waited {:?} for a held record",
        stopping.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_alone_is_committed_once_its_delay_has_passed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_with_delay(dir.path(), Duration::from_millis(20)).await;
    let token = acquire(&node, "renewed", "a").await;
    let before = writes_committed(&node).await;
    renew(&node, "renewed", "a", token).await;
    let waiting = Instant::now();
    while writes_committed(&node).await == before {
        assert!(
            waiting.elapsed() < PROMPTLY,
            "the renewal's record was not committed within {PROMPTLY:?} of a 20 ms delay"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.shutdown().await;
}
