//! Lazy records (renewals acknowledged before their fsync) wait in the node
//! loop for company; nothing a client waits for waits with them. Checked on
//! an in-process single-node cluster whose lazy records may wait an hour.

mod common;

use std::time::{Duration, Instant};
use tenure_server::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROMPTLY: Duration = Duration::from_secs(5);

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

/// One request on its own connection: the status code and the body.
async fn http(node: &Running, method: &str, path: &str, body: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(node.http_addr).await.expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut out = String::new();
        stream.read_to_string(&mut out).await.expect("read");
        out
    };
    let answer = tokio::time::timeout(PROMPTLY, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} was not answered within {PROMPTLY:?}"));
    let status = answer
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of the metric `name` (without labels) on this node.
async fn metric(node: &Running, name: &str) -> u64 {
    let (status, text) = http(node, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The writes this node has made durable so far.
async fn writes_committed(node: &Running) -> u64 {
    metric(node, "tenure_persist_batch_writes_sum").await
}

fn token_of(body: &str) -> u64 {
    let start = body.find("\"token\":").expect("a token") + "\"token\":".len();
    body[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a numeric token")
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
