//! The client API over HTTPS (`--https`), with and without client
//! certificates (`--client-ca`), used through the CLI and the client
//! library as a new user would.

mod common;

use common::*;
use std::process::{Command, Output};
use tenure_core::NodeId;
use tenure_server::tls::issue::Ca;

/// A one-node cluster serving HTTPS; its URL, the CA's directory.
fn https_node(extra: &[&str]) -> (Proc, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    let ca = Ca::open_or_create(&tls).expect("CA");
    let files = ca
        .issue_node(NodeId(1), &["127.0.0.1".to_string()])
        .expect("certificate");
    let ports = free_ports(2);
    let path = |p: &std::path::Path| p.display().to_string();
    let (ca, cert, key) = (path(&files.ca), path(&files.cert), path(&files.key));
    let mut tls = vec!["--ca", &ca, "--cert", &cert, "--key", &key, "--https"];
    tls.extend(extra);
    let peers = format!("1=127.0.0.1:{}", ports[1]);
    let args = node_one_args(dir.path(), ports[0], ports[1], &peers, &tls);
    let node = spawn(&args, &dir.path().join("node-1.log")).expect("starts");
    (node, format!("https://127.0.0.1:{}", ports[0]), dir)
}

fn tenure(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run tenure")
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_client_that_trusts_the_ca_locks_over_https() {
    let (_node, url, dir) = https_node(&[]);
    let ca = dir.path().join("tls/ca.pem").display().to_string();
    let locked = tenure(&[
        "lock",
        "job",
        "--holder",
        "a",
        "--endpoints",
        &url,
        "--ca",
        &ca,
    ]);
    assert!(locked.status.success(), "{}", said(&locked));
    let status = tenure(&["status", "job", "--endpoints", &url, "--ca", &ca]);
    assert!(said(&status).contains("held by a"), "{}", said(&status));
    // Without the CA the node's certificate is not trusted, and the user
    // hears why.
    let untrusted = tenure(&["status", "job", "--endpoints", &url]);
    assert!(!untrusted.status.success());
    assert!(
        said(&untrusted).contains("UnknownIssuer"),
        "{}",
        said(&untrusted)
    );
}

#[test]
fn with_client_ca_only_clients_with_a_certificate_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clients = Ca::open_or_create(dir.path()).expect("client CA");
    let ops = clients.issue_client("ops").expect("client certificate");
    let client_ca = ops.ca.display().to_string();
    let (_node, url, node_dir) = https_node(&["--client-ca", &client_ca]);
    let ca = node_dir.path().join("tls/ca.pem").display().to_string();
    let (cert, key) = (
        ops.cert.display().to_string(),
        ops.key.display().to_string(),
    );
    let served = tenure(&[
        "status",
        "job",
        "--endpoints",
        &url,
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
    ]);
    assert!(served.status.success(), "{}", said(&served));
    let refused = tenure(&["status", "job", "--endpoints", &url, "--ca", &ca]);
    assert!(!refused.status.success(), "{}", said(&refused));
    // The node's own certificate is from another CA than --client-ca.
    let tls = node_dir.path().join("tls");
    let stranger = tenure(&[
        "status",
        "job",
        "--endpoints",
        &url,
        "--ca",
        &ca,
        "--cert",
        &tls.join("node-1.pem").display().to_string(),
        "--key",
        &tls.join("node-1-key.pem").display().to_string(),
    ]);
    assert!(!stranger.status.success(), "{}", said(&stranger));
}

/// A client certificate proves who the client is; the tokens file says
/// what that name may do, as it does for a token.
#[test]
fn a_client_certificate_gets_the_grants_the_tokens_file_gives_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clients = Ca::open_or_create(dir.path()).expect("client CA");
    let runner = clients.issue_client("ci-runner").expect("certificate");
    let viewer = clients.issue_client("viewer").expect("certificate");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "cert:ci-runner lock jobs/\ncert:viewer read *\n").expect("write");
    let client_ca = runner.ca.display().to_string();
    let tokens = tokens.display().to_string();
    let (_node, url, node_dir) = https_node(&["--client-ca", &client_ca, "--tokens", &tokens]);
    let ca = node_dir.path().join("tls/ca.pem").display().to_string();
    let as_client = |files: &tenure_server::tls::TlsFiles, args: &[&str]| {
        let (cert, key) = (
            files.cert.display().to_string(),
            files.key.display().to_string(),
        );
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--endpoints",
            &url,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
        ]);
        tenure(&all)
    };
    let locked = as_client(&runner, &["lock", "jobs/nightly", "--holder", "ci"]);
    assert!(locked.status.success(), "{}", said(&locked));
    let elsewhere = as_client(&runner, &["lock", "web/deploy", "--holder", "ci"]);
    assert!(!elsewhere.status.success());
    assert!(
        said(&elsewhere).contains("this client certificate may not lock web/deploy"),
        "{}",
        said(&elsewhere)
    );
    let seen = as_client(&viewer, &["status", "jobs/nightly"]);
    assert!(said(&seen).contains("held by ci"), "{}", said(&seen));
    let taken = as_client(&viewer, &["lock", "jobs/other", "--holder", "v"]);
    assert!(!taken.status.success());
    assert!(
        said(&taken).contains("may not lock jobs/other"),
        "{}",
        said(&taken)
    );
}
