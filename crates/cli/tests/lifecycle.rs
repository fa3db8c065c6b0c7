//! Starting and stopping: `tenure dev`, and a server's graceful shutdown.

mod common;

use common::*;
use std::net::TcpListener;
use std::time::Duration;

/// Three consecutive free ports, for `tenure dev --http-port`. Looked for
/// below the ephemeral range (32768 and up on Linux), where the ports the
/// OS hands to outgoing connections (the other tests make many) do not
/// fall between them.
fn three_free_ports() -> u16 {
    let mut next = std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..200 {
        next = next.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let base = 15_000 + (next >> 8) as u16 % 15_000;
        let held: Vec<_> = (0..3)
            .filter_map(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == 3 {
            return base;
        }
    }
    panic!("no three consecutive free ports");
}

#[test]
fn dev_runs_three_nodes_that_serve_and_stop_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut dev, port) = (0..5)
        .find_map(|_| {
            let port = three_free_ports();
            let args = vec![
                "dev".to_string(),
                "--data-dir".into(),
                dir.path().display().to_string(),
                "--http-port".into(),
                port.to_string(),
            ];
            spawn(&args, &dir.path().join("dev.log"))
                .ok()
                .map(|p| (p, port))
        })
        .expect("tenure dev starts");
    let mut printed = vec![dev.banner.clone()];
    while !printed.last().is_some_and(|l| l.contains("Ctrl-C")) {
        printed.push(
            dev.lines
                .recv_timeout(Duration::from_secs(10))
                .expect("dev output"),
        );
    }
    let text = printed.join("\n");
    for i in 0..3 {
        assert!(
            text.contains(&format!("http://127.0.0.1:{}", port + i)),
            "{text}"
        );
    }
    assert!(text.contains("curl"), "{text}");
    for i in 1..=3 {
        assert!(dir.path().join(format!("node-{i}")).is_dir());
    }

    let url = format!("http://127.0.0.1:{}/v1/locks/dev", port + 1);
    let r = acquire_when_ready(&url, "a", 10_000);
    assert_eq!(r.status, 201, "{r:?}");
    let read = get(&format!("http://127.0.0.1:{}/v1/locks/dev", port + 2));
    assert_eq!(read.body["holder"], "a", "{read:?}");

    let code = dev.signal_and_wait("INT", Duration::from_secs(15));
    assert_eq!(code, Some(0), "tenure dev did not stop cleanly");
}

#[test]
fn a_node_stopped_by_sigterm_restarts_with_its_state_and_a_new_incarnation() {
    let mut c = Cluster::start();
    let t = token(&acquire_when_ready(&c.lock_url(1, "kept"), "a", 60_000));
    let code = c.node(1).signal_and_wait("TERM", Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", c.log(1));
    // The cluster serves on without it.
    assert_eq!(renew(&c.lock_url(2, "kept"), "a", t).status, 200);
    let banner = c.restart(1);
    assert_eq!(incarnation(&banner), 2, "{banner}");
    let read = get(&c.lock_url(1, "kept"));
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["token"], t);
}

/// `--threads` sets the node's worker threads: three members on one
/// machine share its cores out.
#[test]
fn a_node_runs_with_the_worker_threads_it_is_given() {
    let mut c = Cluster::start();
    c.kill9(3);
    c.try_restart(3, &["--threads", "1"])
        .expect("restart with --threads 1");
    let r = acquire_when_ready(&c.lock_url(3, "threads"), "a", 10_000);
    assert_eq!(r.status, 201, "{r:?}");
    wait_for_metric(&c.url(3), "tenure_worker_threads 1");
    c.kill9(2);
    let refused = c.try_restart(2, &["--threads", "0"]);
    assert!(refused.is_err_and(|e| e.contains("--threads")));
}

/// A store image that really rolled back: made on the simulated disk,
/// whose power cuts can tear a commit, then opened once (which records
/// the verdict in the store) and closed.
fn rolled_back_store_image() -> Vec<u8> {
    use tenure_storage::{collect, Recovery, SimDisk, StoreAt, StoreOptions};
    let options = StoreOptions::default();
    let base = SimDisk::new();
    drop(
        options
            .open(StoreAt::backend(base.backend()), collect)
            .expect("new store"),
    );
    for k in 0..200 {
        for seed in 0..4u64 {
            let disk = base.fork();
            disk.die_after(k);
            let _ = options.open(StoreAt::backend(disk.backend()), collect);
            disk.crash_torn(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k);
            let Ok((store, _)) = options.open(StoreAt::backend(disk.backend()), collect) else {
                continue;
            };
            if store.recovery() == Recovery::RolledBack {
                drop(store);
                return disk.durable_image();
            }
        }
    }
    panic!("no torn open made the store roll back");
}

/// A store that rolled back its newest commit may have lost acknowledged
/// state: the node refuses to start, at every start, until an operator
/// passes the override; then it starts, and later starts are ordinary.
#[test]
fn a_node_whose_store_rolled_back_starts_only_when_the_operator_says_so() {
    let mut c = Cluster::start();
    let code = c.node(1).signal_and_wait("TERM", Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", c.log(1));
    std::fs::write(
        c.data_dir(1).join("acceptor.redb"),
        rolled_back_store_image(),
    )
    .expect("replace node 1's store");

    for _ in 0..2 {
        let refused = c.try_restart(1, &[]).expect_err("must not start");
        assert!(refused.contains("--accept-rolled-back-store"), "{refused}");
    }
    c.try_restart(1, &["--accept-rolled-back-store"])
        .expect("starts with the override");
    let code = c.node(1).signal_and_wait("TERM", Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", c.log(1));
    c.try_restart(1, &[])
        .expect("accepted once, it starts as any store");
    let read = get(&c.lock_url(1, "after"));
    assert!(read.status == 404 || read.status == 200, "{read:?}");
}

/// `tenure dev --http-port 0` lets the OS choose every node's port, and
/// a reader that goes away (`tenure dev | head -1`) neither stops the
/// cluster nor makes it fail when it stops.
#[test]
fn dev_on_port_0_serves_on_after_its_reader_goes_and_stops_cleanly() {
    let mut dev = Dev::start(&[]);
    assert!(
        !dev.addr.ends_with(":0") && !dev.addr.ends_with(":1"),
        "{}",
        dev.addr
    );
    let r = acquire_when_ready(&format!("{}/v1/locks/dev", dev.url()), "a", 10_000);
    assert_eq!(r.status, 201, "{r:?}");
    let kill = std::process::Command::new("kill")
        .args(["-INT", &dev.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = wait_exit(&mut dev.child, Duration::from_secs(15)).expect("dev did not stop");
    assert_eq!(status.code(), Some(0), "{status:?}");
}
