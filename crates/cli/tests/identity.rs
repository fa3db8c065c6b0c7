//! A cluster knows who it is: a node started with other members on its
//! data, a node of another cluster, and a second process with a running
//! member's id are refused, and the logs say why; so does a peer address
//! where nothing answers.

mod common;

use common::*;
use std::time::Duration;

/// A cluster that has granted a lease through node 1, so that every node
/// has a store with the cluster's identity.
fn serving() -> Cluster {
    let c = Cluster::start();
    let r = acquire_when_ready(&c.lock_url(1, "job"), "a", 60_000);
    assert_eq!(r.status, 201, "{r:?}");
    c
}

/// Node 3, restarted on its own data as a one-node cluster, would grant a
/// name held in the real cluster with a token already given. It refuses to
/// start instead, and says what differs.
#[test]
fn a_node_started_with_other_members_on_its_data_refuses_to_start() {
    let mut c = serving();
    // Stopped, not killed: its data is started again below, and a kill in
    // the middle of a commit leaves a store that refuses to start until an
    // operator says so (tests/lifecycle.rs), which is not this test's point.
    let stopped = c.node(3).signal_and_wait("TERM", Duration::from_secs(15));
    assert_eq!(stopped, Some(0), "node 3 stops on SIGTERM");
    let args = c.args(3);
    let at = args.iter().position(|a| a == "--peers").expect("--peers");
    let own = args[at + 1]
        .split(',')
        .find(|p| p.starts_with("3="))
        .expect("node 3's address")
        .to_string();
    let alone = with(args, "--peers", &own);
    let log = c.data_dir(3).with_extension("alone.log");
    let Err(refused) = spawn(&alone, &log) else {
        panic!("node 3 started as a one-node cluster on the cluster's data");
    };
    assert!(
        refused.contains("belongs to cluster tenure, members 1,2,3")
            && refused.contains("started as cluster tenure, members 3"),
        "{refused}"
    );
    // Started as it was, it rejoins.
    c.restart(3);
    let r = acquire_when_ready(&c.lock_url(3, "job-3"), "b", 60_000);
    assert_eq!(r.status, 201, "{r:?}");
}

/// A node given another --cluster-id (on data of its own) is refused by
/// every member, which says why; the node's own log says it was refused,
/// and why, once.
#[test]
fn a_node_of_another_cluster_is_refused_and_both_sides_say_why() {
    let mut c = serving();
    c.kill9(3);
    let fresh = c.data_dir(3).with_extension("other");
    let mut args = with(c.args(3), "--data-dir", &fresh.display().to_string());
    args.extend(["--cluster-id".to_string(), "other".to_string()]);
    let log = c.data_dir(3).with_extension("other.log");
    let mut other = spawn(&args, &log).expect("node 3 starts on fresh data");
    let why = "says it is of cluster other";
    wait_for_log(|| c.log(1), why);
    wait_for_log(
        || std::fs::read_to_string(&log).unwrap_or_default(),
        "peer refuses this node",
    );
    // Once per reason, though the link redials.
    std::thread::sleep(Duration::from_millis(1_500));
    let own_log = std::fs::read_to_string(&log).unwrap_or_default();
    let told = own_log.matches("peer refuses this node").count();
    assert!(told <= 2, "{told} refusal lines (one per peer):\n{own_log}");
    // The two real members go on serving.
    let r = acquire(&c.lock_url(2, "job-2"), "b", 60_000);
    assert_eq!(r.status, 201, "{r:?}");
    other.kill9();
}

/// A second process started as node 1 (on fresh data, other ports) while
/// node 1 runs is refused by the peers, loudly, and the cluster serves on.
#[test]
fn a_second_process_with_a_running_members_id_is_refused() {
    let c = serving();
    let ports = free_ports(2);
    let fresh = c.data_dir(1).with_extension("twin");
    let args = with(c.args(1), "--data-dir", &fresh.display().to_string());
    let args = with(args, "--http", &format!("127.0.0.1:{}", ports[0]));
    let args = with(args, "--peer-listen", &format!("127.0.0.1:{}", ports[1]));
    let log = c.data_dir(1).with_extension("twin.log");
    let mut twin = spawn(&args, &log).expect("the twin starts");
    wait_for_log(|| c.log(2), "a second node with id 1");
    wait_for_log(
        || std::fs::read_to_string(&log).unwrap_or_default(),
        "peer refuses this node",
    );
    let r = acquire(&c.lock_url(2, "job-2"), "b", 60_000);
    assert_eq!(r.status, 201, "{r:?}");
    let r = acquire(&c.lock_url(1, "job-1"), "c", 60_000);
    assert_eq!(r.status, 201, "{r:?}");
    twin.kill9();
}

/// A peer address where nothing listens (a typo, a peer not started) is
/// said once the link has failed for 5 s, not at every dial.
#[test]
fn a_peer_address_where_nothing_answers_is_said_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(4);
    let peers = format!(
        "1=127.0.0.1:{},2=127.0.0.1:{},3=127.0.0.1:{}",
        ports[1], ports[2], ports[3]
    );
    let args = node_one_args(
        dir.path(),
        ports[0],
        ports[1],
        &peers,
        &["--insecure-peers"],
    );
    let log = dir.path().join("node-1.log");
    let mut node = spawn(&args, &log).expect("node 1 starts alone");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let said = "cannot reach peer (still trying)";
    wait_for_log(read, said);
    std::thread::sleep(Duration::from_secs(1));
    // Once per peer, though each is redialled every second.
    assert_eq!(read().matches(said).count(), 2, "{}", read());
    node.kill9();
}

/// An operator moves node 3 to a new address (docs/operations.md, "Moving
/// a node"): it stops, starts at the new address on its own data, and the
/// others are restarted one at a time with the new `--peers`. The lease
/// held throughout stays its holder's, and node 3 at its new address makes
/// a quorum with node 2 once node 1 is gone.
#[test]
fn a_node_moved_to_a_new_address_keeps_its_place() {
    let mut c = serving();
    let stop = |c: &mut Cluster, id: u16| {
        let stopped = c.node(id).signal_and_wait("TERM", Duration::from_secs(15));
        assert_eq!(stopped, Some(0), "node {id} stops on SIGTERM");
    };
    stop(&mut c, 3);
    c.move_peer_port(3);
    c.restart(3);
    for id in [1, 2] {
        stop(&mut c, id);
        c.restart(id);
        let other = acquire_when_ready(&c.lock_url(3, "job"), "b", 60_000);
        assert_eq!(other.status, 409, "job is still a's: {other:?}");
    }
    stop(&mut c, 1);
    let r = acquire_when_ready(&c.lock_url(3, "moved"), "c", 60_000);
    assert_eq!(r.status, 201, "nodes 2 and 3 are a quorum: {r:?}");
    let job = get(&c.lock_url(2, "job"));
    assert_eq!(job.body["holder"], "a", "{job:?}");
}
