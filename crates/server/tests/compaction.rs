//! Compaction on a real store: a name nobody uses leaves the data
//! directory, a read of it afterwards reports the token floor, and a later
//! grant gets a higher token, also after a restart.

mod common;

use common::{http, metric, token_of};
use std::time::{Duration, Instant};
use tenure_core::{Compaction, Micros};
use tenure_server::Running;

async fn start(dir: &std::path::Path) -> Running {
    common::start_single(dir, |config| {
        config.timing.request_deadline = Micros::from_millis(500);
        config.compaction = Compaction {
            idle_after: Some(Micros::from_millis(1_000)),
            scan_every: Micros::from_millis(100),
            ..Compaction::default()
        };
    })
    .await
}

/// Wait, bounded, until the node stores `names` names.
async fn until_stored(node: &Running, names: u64) {
    let since = Instant::now();
    while metric(node, "tenure_names_stored").await != names {
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "the node still stores {} names, not {names}",
            metric(node, "tenure_names_stored").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn acquire(node: &Running, name: &str) -> u64 {
    let body = r#"{"holder":"a","ttl_ms":500}"#;
    let (status, body) = http(node, "PUT", &format!("/v1/locks/{name}"), body).await;
    assert_eq!(status, 201, "{body}");
    token_of(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_name_leaves_the_store_and_its_tokens_keep_rising() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path()).await;
    for _ in 0..3 {
        let token = acquire(&node, "job-7").await;
        let path = format!("/v1/locks/job-7?holder=a&token={token}");
        let (status, body) = http(&node, "DELETE", &path, "").await;
        assert_eq!(status, 204, "{body}");
    }
    // Expired without a release counts too.
    acquire(&node, "job-8").await;
    until_stored(&node, 0).await;
    assert_eq!(metric(&node, "tenure_names_compacted_total").await, 2);
    assert_eq!(metric(&node, "tenure_token_floor").await, 3);
    assert!(metric(&node, "tenure_store_bytes").await > 0);

    // A read reports it free at the floor, and leaves nothing behind; so
    // does the renewal of a grant long gone.
    let (status, body) = http(&node, "GET", "/v1/locks/job-7", "").await;
    assert_eq!(status, 404, "a free name is not found: {body}");
    assert!(body.contains(r#""state":"free""#), "{body}");
    assert_eq!(token_of(&body), 3, "{body}");
    let renewal = r#"{"holder":"a","token":3}"#;
    let (status, body) = http(&node, "PUT", "/v1/locks/job-7", renewal).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(metric(&node, "tenure_names_stored").await, 0);
    node.shutdown().await;

    // The floor is durable: after a restart the next grant is above it.
    let node = start(dir.path()).await;
    assert_eq!(metric(&node, "tenure_names_stored").await, 0);
    assert_eq!(acquire(&node, "job-7").await, 4);
    assert_eq!(acquire(&node, "job-9").await, 4);
    node.shutdown().await;
}
