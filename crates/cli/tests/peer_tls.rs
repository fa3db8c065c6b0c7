//! Peer TLS on real `tenure server` processes: a node will not run without
//! it unless told `--insecure-peers`, will not run on another member's
//! certificate, and SIGHUP rotates its certificate (a bad file keeps the
//! one in use).

mod common;

use common::*;
use std::process::Command;
use tenure_core::NodeId;
use tenure_server::tls::issue::Ca;

#[test]
fn a_node_without_peer_tls_refuses_to_start_unless_told_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(2);
    let peers = format!("1=127.0.0.1:{}", ports[1]);
    let args = |extra: &[&str]| node_one_args(dir.path(), ports[0], ports[1], &peers, extra);
    let log = dir.path().join("node-1.log");
    let refused = spawn(&args(&[]), &log).err().expect("refused");
    assert!(refused.contains("peer links need TLS"), "{refused}");
    assert!(refused.contains("--insecure-peers"), "{refused}");
    let mut node = spawn(&args(&["--insecure-peers"]), &log).expect("starts when told");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("plain TCP"),
        "and warns"
    );
    let r = get(&format!("http://127.0.0.1:{}/v1/cluster", ports[0]));
    assert_eq!(r.body["peer_tls"], false, "{r:?}");
    node.kill9();
}

#[test]
fn a_node_refuses_to_start_on_another_members_certificate() {
    let mut c = Cluster::start();
    let r = get(&format!("{}/v1/cluster", c.url(1)));
    assert_eq!(r.body["peer_tls"], true, "{r:?}");
    c.kill9(1);
    let tls = c.tls_dir();
    let args = with(
        c.args(1),
        "--cert",
        &tls.join("node-2.pem").display().to_string(),
    );
    let args = with(
        args,
        "--key",
        &tls.join("node-2-key.pem").display().to_string(),
    );
    let log = c.data_dir(1).with_extension("wrong.log");
    let refused = spawn(&args, &log).err().expect("refused");
    assert!(refused.contains("node-1.tenure"), "{refused}");
}

/// An operator rotates node 1's certificate: a broken file changes
/// nothing, a new certificate is used by the links made after SIGHUP.
#[test]
fn sighup_rotates_a_nodes_certificate_and_a_bad_file_keeps_the_old() {
    let mut c = Cluster::start();
    let r = acquire_when_ready(&c.lock_url(1, "before"), "a", 60_000);
    assert_eq!(r.status, 201, "{r:?}");
    let hup = |pid: u32| {
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    let cert = c.tls_dir().join("node-1.pem");
    std::fs::write(&cert, "not a certificate\n").expect("write");
    hup(c.node(1).pid());
    wait_for_log(|| c.log(1), "peer TLS files refused");
    // A new key and certificate from the same CA, then a reload.
    let ca = Ca::open_or_create(&c.tls_dir()).expect("CA");
    ca.issue_node(NodeId(1), &[]).expect("certificate");
    hup(c.node(1).pid());
    wait_for_log(|| c.log(1), "peer TLS files read again");
    // Links made from now on use it: node 2 restarts and redials node 1,
    // then node 3 stops, so that nodes 1 and 2 (still running after two
    // SIGHUPs) must agree over them.
    c.kill9(2);
    c.restart(2);
    c.kill9(3);
    let r = acquire_when_ready(&c.lock_url(2, "after"), "b", 60_000);
    assert_eq!(r.status, 201, "{r:?}");
}
