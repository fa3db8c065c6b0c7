//! Grant many distinct leases, each with a one-day ttl, through the HTTP API
//! of a running cluster, and leave them idle: the workload behind the
//! memory figures in docs/operations.md ("Memory").
//!
//! ```sh
//! cargo run --release -p tenure-server --example idle_leases -- \
//!     127.0.0.1:7400,127.0.0.1:7401,127.0.0.1:7402 1000000 [CONNECTIONS] [PREFIX] [FIRST]
//! ```
//!
//! Names are `PREFIX-NNNNNNN` from `FIRST` (default `idle`, 0), spread over
//! CONNECTIONS keep-alive connections per node (default 32), one request at
//! a time on each. Plain blocking HTTP/1.1 over std, so it builds in a
//! second and costs the nodes, not itself, the CPU.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TTL_MS: u64 = 86_400_000;
const TRIES: u32 = 5;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: idle_leases HOST:PORT[,HOST:PORT...] COUNT [CONNECTIONS] [PREFIX] [FIRST]";
    let (Some(nodes), Some(count)) = (args.first(), args.get(1).and_then(|c| c.parse().ok()))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let count: u64 = count;
    let connections: usize = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(32);
    let prefix = args.get(3).cloned().unwrap_or_else(|| "idle".into());
    let first: u64 = args.get(4).and_then(|f| f.parse().ok()).unwrap_or(0);

    let next = Arc::new(AtomicU64::new(first));
    let granted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut threads = Vec::new();
    for (n, node) in nodes.split(',').enumerate() {
        for c in 0..connections {
            let (node, next, granted, failed, prefix) = (
                node.to_string(),
                next.clone(),
                granted.clone(),
                failed.clone(),
                prefix.clone(),
            );
            let holder = format!("filler-{n}-{c}");
            threads.push(std::thread::spawn(move || {
                let mut conn = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= first + count {
                        break;
                    }
                    let body = format!("{{\"holder\":\"{holder}\",\"ttl_ms\":{TTL_MS}}}");
                    let request = format!(
                        "PUT /v1/locks/{prefix}-{i:07} HTTP/1.1\r\nHost: tenure\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let ok = (0..TRIES).any(|_| match put(&mut conn, &node, &request) {
                        Ok(status) => status == 200 || status == 201,
                        Err(_) => {
                            conn = None;
                            std::thread::sleep(Duration::from_millis(50));
                            false
                        }
                    });
                    let counter = if ok { &granted } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    let (g, f) = (granted.clone(), failed.clone());
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(10));
        let secs = started.elapsed().as_secs_f64();
        let done = g.load(Ordering::Relaxed);
        eprintln!(
            "{secs:>5.0} s: {done} granted, {} failed ({:.0}/s)",
            f.load(Ordering::Relaxed),
            done as f64 / secs
        );
    });
    for thread in threads {
        let _ = thread.join();
    }
    println!(
        "granted {} failed {} in {:.1} s",
        granted.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

type Conn = Option<(TcpStream, BufReader<TcpStream>)>;

/// One request on the kept-alive connection (opened if needed); the status.
fn put(conn: &mut Conn, node: &str, request: &str) -> std::io::Result<u16> {
    if conn.is_none() {
        let stream = TcpStream::connect(node)?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        *conn = Some((stream, reader));
    }
    let Some((stream, reader)) = conn.as_mut() else {
        return Err(std::io::ErrorKind::NotConnected.into());
    };
    stream.write_all(request.as_bytes())?;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut close) = (0, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(v) = header.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        close |= header.starts_with("connection:") && header.contains("close");
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    if close {
        *conn = None;
    }
    Ok(status)
}
