//! 5,000 idle connections from many loopback addresses (a scan, a flood of
//! sockets that never speak) against a real node: it stays in its
//! cluster, and a client that asks is served.

mod common;

use common::*;
use std::net::{Ipv4Addr, SocketAddr};

const IDLE: usize = 5_000;
/// Below the default 256 per address, so that it is the total that is
/// tried, not the per-address bound.
const PER_ADDRESS: usize = 250;

/// Open `count` connections to `to`, `PER_ADDRESS` from each of several
/// addresses in 127.0.0.0/8, and say nothing on them.
fn flood(to: SocketAddr, count: usize) -> (tokio::runtime::Runtime, Vec<tokio::net::TcpStream>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let streams = runtime.block_on(async {
        let mut streams = Vec::with_capacity(count);
        for i in 0..count {
            let octet = 2 + u8::try_from(i / PER_ADDRESS).expect("few addresses");
            let from = SocketAddr::from((Ipv4Addr::new(127, 0, 0, octet), 0));
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(from).expect("bind a loopback address");
            // The node may already have closed some to make room: a
            // refused or reset connect is part of the flood too.
            if let Ok(stream) = socket.connect(to).await {
                streams.push(stream);
            }
        }
        streams
    });
    (runtime, streams)
}

#[test]
fn idle_connections_from_many_addresses_shut_out_neither_peers_nor_clients() {
    let mut limit = libc_nofile();
    if limit < (IDLE as u64) + 2_048 {
        limit = raise_nofile();
    }
    // The flood, and the nodes' own descriptors, within the limit: on a
    // machine with a low hard limit, fewer, but still twice the node's
    // 1,024 connections.
    let idle = IDLE.min(usize::try_from(limit.saturating_sub(2_048)).unwrap_or(IDLE));
    assert!(
        idle >= 2_048,
        "open-file limit {limit} is too low for this test"
    );
    let c = Cluster::start();
    let warm = acquire_when_ready(&c.lock_url(1, "warm"), "w", 60_000);
    assert_eq!(warm.status, 201, "{warm:?}");
    let node_one: SocketAddr = c.url(1)["http://".len()..].parse().expect("address");
    let (_runtime, held) = flood(node_one, idle);
    assert!(held.len() > 1_000, "only {} connections opened", held.len());

    // A client that asks is served at once: each request takes an idle
    // connection's slot.
    for i in 0..20 {
        let r = acquire(&c.lock_url(1, &format!("job-{i}")), "worker", 60_000);
        assert_eq!(r.status, 201, "request {i}: {r:?}");
    }
    // And node 1 still agrees with its peers: stop node 2, and a grant
    // through node 1 needs node 3.
    let mut c = c;
    c.kill9(2);
    let r = acquire(&c.lock_url(1, "after"), "worker", 60_000);
    assert_eq!(r.status, 201, "{r:?}");
    let cluster = get(&format!("{}/v1/cluster", c.url(1)));
    assert_eq!(cluster.body["members"][2]["connected"], true, "{cluster:?}");
    let metrics = get(&format!("{}/metrics", c.url(1))).text;
    assert!(
        metrics.contains("tenure_http_refused_total{reason=\"idle_evicted\"}"),
        "evictions are counted"
    );
    drop(held);
}

fn rlimit() -> libc::rlimit {
    libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    }
}

/// This process's soft limit on open files.
fn libc_nofile() -> u64 {
    let mut limit = rlimit();
    // SAFETY: getrlimit only writes `limit`, which lives on this frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur
}

/// Raise the soft limit to the hard one (the nodes this test starts
/// inherit it); the new soft limit.
fn raise_nofile() -> u64 {
    let mut limit = rlimit();
    // SAFETY: getrlimit and setrlimit only read and write `limit`, which
    // lives on this frame for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    libc_nofile()
}
