//! A single-node cluster in this process, for the server's own tests.

// Each test file uses its own part of these.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;
use tenure_core::NodeId;
use tenure_server::{server, Listeners, Running, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one request may take in these tests.
pub const PROMPTLY: Duration = Duration::from_secs(5);

/// Start node 1 of a one-node cluster on `dir`, with `tune` applied to
/// its configuration; ports chosen by the OS.
pub async fn start_single(dir: &std::path::Path, tune: impl FnOnce(&mut ServerConfig)) -> Running {
    let listeners = Listeners::bind("127.0.0.1:0", "127.0.0.1:0")
        .await
        .expect("bind");
    let peer = listeners.peer.local_addr().expect("addr").to_string();
    let mut config = ServerConfig::new(
        NodeId(1),
        dir.to_path_buf(),
        BTreeMap::from([(NodeId(1), peer)]),
    );
    tune(&mut config);
    server::start(config, listeners).await.expect("start")
}

/// One request on its own connection: the status code and the body.
pub async fn http(node: &Running, method: &str, path: &str, body: &str) -> (u16, String) {
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
pub async fn metric(node: &Running, name: &str) -> u64 {
    let (status, text) = http(node, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

pub fn token_of(body: &str) -> u64 {
    let start = body.find("\"token\":").expect("a token") + "\"token\":".len();
    body[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a numeric token")
}
