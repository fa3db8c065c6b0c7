//! The HTTP limits that protect a node from slow or idle clients, checked
//! on an in-process single-node cluster with short limits.

mod common;

use std::time::Duration;
use tenure_server::{Running, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_millis(300);

async fn start(dir: &std::path::Path) -> Running {
    start_with(dir, |_| {}).await
}

async fn start_with(dir: &std::path::Path, tune: impl FnOnce(&mut ServerConfig)) -> Running {
    common::start_single(dir, |config| {
        config.http.header_read_timeout = LIMIT;
        config.http.body_read_timeout = LIMIT;
        tune(config);
    })
    .await
}

/// Read until the server closes the connection; panics if it does not
/// within `within`. A reset counts as closed: a server that closes a
/// connection with our request still unread makes the kernel send one.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut out))
        .await
        .expect("the server closed the connection in time");
    match read {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("read: {e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_head_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path()).await;
    let mut idle = TcpStream::connect(node.http_addr).await.expect("connect");
    read_until_closed(&mut idle, LIMIT * 10).await;
    let mut partial = TcpStream::connect(node.http_addr).await.expect("connect");
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    read_until_closed(&mut partial, LIMIT * 10).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path()).await;
    let mut slow = TcpStream::connect(node.http_addr).await.expect("connect");
    slow.write_all(
        b"PUT /v1/locks/slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 40\r\n\r\n{\"holder\":",
    )
    .await
    .expect("write");
    let answer = read_until_closed(&mut slow, LIMIT * 10).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive"), "{answer}");

    let mut read = TcpStream::connect(node.http_addr).await.expect("connect");
    read.write_all(b"GET /v1/locks/slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut read, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains(r#""token":0"#), "{answer}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_hold_more_than_its_share_of_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_with(dir.path(), |c| {
        c.http.max_connections_per_client = 2;
        c.http.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(node.http_addr).await.expect("connect");
        // A complete request proves the connection was accepted and served.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.expect("served");
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    // The third is answered, not just closed: a 503 that says why, and
    // when to retry (through another node).
    let mut third = TcpStream::connect(node.http_addr).await.expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let refused = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(
        refused.contains(r#""error":"127.0.0.1 already has 2 connections to this node"#),
        "{refused}"
    );
    // A slot freed is a slot available again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = TcpStream::connect(node.http_addr).await.expect("connect");
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let answer = read_until_closed(&mut again, Duration::from_secs(5)).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        // The server notices the closed connection asynchronously.
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.shutdown().await;
}

/// Connections that never send a request (a port scan, a flood of idle
/// sockets) cannot keep out a client that asks: it takes the slot of the
/// oldest of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_give_their_slots_to_a_client_that_asks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_with(dir.path(), |c| {
        c.http.max_connections = 4;
        c.http.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(node.http_addr).await.expect("connect"));
    }
    for round in 0..3 {
        let answer = exchange(
            &node,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "round {round}: {answer}"
        );
    }
    // The oldest idle connections were closed to make room.
    let closed = read_until_closed(&mut idle[0], Duration::from_secs(5)).await;
    assert!(closed.is_empty(), "{closed}");
    node.shutdown().await;
}

/// Only when every slot is busy with a request is a newcomer refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_a_newcomer_hears_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_with(dir.path(), |c| c.http.max_connections = 3).await;
    let body = r#"{"holder":"a","ttl_ms":60000}"#;
    let held = exchange(
        &node,
        format!(
            "PUT /v1/locks/busy HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(held.starts_with("HTTP/1.1 201"), "{held}");
    let mut waiting = Vec::new();
    for i in 0..3 {
        let mut s = TcpStream::connect(node.http_addr).await.expect("connect");
        let body = format!(r#"{{"holder":"w{i}","ttl_ms":60000}}"#);
        // `100 Continue` comes once the handler reads the body: the request
        // is then in flight, so its connection is busy.
        s.write_all(
            format!(
                "PUT /v1/locks/busy?wait=20s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let mut head = [0u8; 25];
        s.read_exact(&mut head).await.expect("100 Continue");
        assert!(
            head.starts_with(b"HTTP/1.1 100"),
            "{:?}",
            String::from_utf8_lossy(&head)
        );
        s.write_all(body.as_bytes()).await.expect("write");
        waiting.push(s);
    }
    // Only the acquire's own connection may still be closing: at most one
    // probe takes its slot.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = TcpStream::connect(node.http_addr).await.expect("connect");
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let answer = read_until_closed(&mut again, Duration::from_secs(5)).await;
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("each busy with a request"), "{answer}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never full: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(waiting);
    node.shutdown().await;
}

/// Send one raw request and read the whole answer (`Connection: close`).
async fn exchange(node: &Running, head_and_body: String) -> String {
    let mut stream = TcpStream::connect(node.http_addr).await.expect("connect");
    stream
        .write_all(head_and_body.as_bytes())
        .await
        .expect("write");
    read_until_closed(&mut stream, Duration::from_secs(10)).await
}

/// Every refusal carries the JSON error body the docs promise, also those
/// the router makes by itself and those for a request head too large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json_that_says_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(dir.path()).await;
    let cases = [
        (
            "PATCH /v1/locks/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
            "405",
            "PATCH is not served",
        ),
        (
            format!(
                "GET /v1/locks/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                "a".repeat(9_000)
            ),
            "414",
            "request target",
        ),
        (
            format!(
                "GET /v1/locks/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                "a".repeat(17_000)
            ),
            "431",
            "headers",
        ),
        (
            "PUT /v1/locks/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 41\r\n\r\n{\"holder\":\"a\",\"ttl_ms\":1000,\"holder\":\"b\"}".to_string(),
            "400",
            "given twice",
        ),
    ];
    for (request, status, says) in cases {
        let answer = exchange(&node, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{answer}"
        );
        assert!(
            answer.contains("\"error\"") && answer.contains(says),
            "{answer}"
        );
    }
}

/// Open a watch on `name` from `source` and return its connection with the
/// answer's status line.
async fn open_watch(node: &Running, source: &str, name: &str) -> (TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("address"))
        .expect("bind");
    let mut stream = socket.connect(node.http_addr).await.expect("connect");
    stream
        .write_all(
            format!("GET /v1/locks/{name}?watch=true HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("read");
        assert_eq!(read, 1, "closed before the head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    (stream, head)
}

/// One caller (here one address, on a node that takes no tokens) may hold
/// only its share of the watches; another caller is still served, and the
/// refusal says which bound it met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_cannot_take_every_watch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_with(dir.path(), |c| {
        c.http.max_watches = 3;
        c.http.max_watches_per_caller = 2;
    })
    .await;
    let mut open = Vec::new();
    for name in ["a", "b"] {
        let (stream, head) = open_watch(&node, "127.0.0.1", name).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        open.push(stream);
    }
    let (mut refused, head) = open_watch(&node, "127.0.0.1", "c").await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    let mut body = [0u8; 512];
    let n = refused.read(&mut body).await.expect("body");
    let body = String::from_utf8_lossy(&body[..n]);
    assert!(body.contains("already has 2 watches open"), "{body}");
    let (other, head) = open_watch(&node, "127.0.0.2", "c").await;
    assert!(head.starts_with("HTTP/1.1 200"), "another caller: {head}");
    // The node's own bound is reached now: 503, go elsewhere.
    let (_, head) = open_watch(&node, "127.0.0.3", "d").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    drop(other);
    drop(open);
    node.shutdown().await;
}
