//! `tenure dev`: three nodes in one process, on loopback, for trying tenure
//! out and for developing against it.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use tenure_core::{DriftBound, NodeId};
use tenure_server::tls::issue::Ca;
use tenure_server::{server, Listeners, ServerConfig};

const NODES: u16 = 3;

pub struct DevArgs {
    pub data_dir: PathBuf,
    pub http_port: u16,
    pub tokens: Option<PathBuf>,
    pub https: bool,
    pub drift: DriftBound,
}

pub async fn run(args: DevArgs) -> Result<()> {
    let DevArgs {
        data_dir,
        http_port,
        tokens,
        https,
        drift,
    } = args;
    let mut bound = Vec::new();
    for i in 0..NODES {
        // Port 0: the OS chooses each node's port (printed below).
        let port = if http_port == 0 {
            0
        } else {
            http_port
                .checked_add(i)
                .context("--http-port leaves no room for three ports")?
        };
        // Peer ports are chosen by the OS: only the nodes in this process
        // need them, and they learn them before starting.
        let listeners = Listeners::bind(("127.0.0.1", port), ("127.0.0.1", 0))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port} (try --http-port)"))?;
        bound.push(listeners);
    }
    let mut peers = BTreeMap::new();
    for (i, listeners) in bound.iter().enumerate() {
        let addr = listeners.peer.local_addr()?;
        peers.insert(NodeId(i as u16 + 1), addr.to_string());
    }
    // Peer links in mutual TLS, as in production: the CA is made at the
    // first start and kept in the data folder; node certificates are made
    // afresh at every start, so they never expire under a long-lived one.
    let tls_dir = data_dir.join("tls");
    let ca = Ca::open_or_create(&tls_dir)
        .with_context(|| format!("cannot make the dev CA in {}", tls_dir.display()))?;
    let hosts = ["localhost".to_string(), "127.0.0.1".to_string()];
    // Grants carry secret keys, as in production.
    let grant_secret = tls_dir.join(tenure_server::tls::issue::GRANT_SECRET);
    tenure_server::grant_key::make_secret(&grant_secret)?;
    let mut nodes = Vec::new();
    for (i, listeners) in bound.into_iter().enumerate() {
        let id = NodeId(i as u16 + 1);
        let dir = data_dir.join(format!("node-{}", id.0));
        let mut config = ServerConfig::new(id, dir, peers.clone());
        config.drift = drift;
        config.tokens = tokens.clone();
        config.grant_secret = Some(grant_secret.clone());
        let files = ca
            .issue_node(id, &hosts)
            .with_context(|| format!("cannot make node {}'s certificate", id.0))?;
        config.https = https.then(|| tenure_server::tls::HttpsFiles {
            cert: files.cert.clone(),
            key: files.key.clone(),
            client_ca: None,
        });
        config.peer_tls = Some(files);
        let running = server::start(config, listeners)
            .await
            .with_context(|| format!("cannot start node {}", id.0))?;
        nodes.push(running);
    }
    // Nobody may be reading (`tenure dev | head -1`): the cluster serves
    // on whether or not this text arrives.
    let scheme = if https { "https" } else { "http" };
    let _ = print_banner(&nodes, &data_dir, scheme);

    crate::signal::stop_requested().await;
    eprintln!("stopping the cluster");
    let stops: Vec<_> = nodes
        .into_iter()
        .map(|n| tokio::spawn(n.shutdown()))
        .collect();
    for stop in stops {
        let _ = stop.await;
    }
    let _ = writeln!(std::io::stdout(), "stopped");
    Ok(())
}

fn print_banner(
    nodes: &[server::Running],
    data_dir: &std::path::Path,
    scheme: &str,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for node in nodes {
        writeln!(out, "{}", node.banner())?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "tenure dev: a 3-node cluster, data in {}, peer links in mutual TLS",
        data_dir.display()
    )?;
    for node in nodes {
        writeln!(out, "  node {}: {scheme}://{}", node.id.0, node.http_addr)?;
    }
    let first = format!("{scheme}://{}", nodes[0].http_addr);
    // curl and tenure must trust the dev CA.
    let ca = data_dir.join("tls").join("ca.pem");
    let (curl, trust) = if scheme == "https" {
        (
            format!("curl --cacert {}", ca.display()),
            format!(" --ca {}", ca.display()),
        )
    } else {
        ("curl".to_string(), String::new())
    };
    writeln!(out)?;
    writeln!(out, "Try:")?;
    writeln!(
        out,
        "  {curl} -i -X PUT {first}/v1/locks/scheduler -d '{{\"holder\": \"web-1\", \"ttl_ms\": 10000}}'"
    )?;
    writeln!(out, "  {curl} -i {first}/v1/locks/scheduler")?;
    writeln!(out, "  tenure history scheduler --endpoints {first}{trust}")?;
    writeln!(out, "and watch it live at {first}/ui")?;
    writeln!(out)?;
    writeln!(out, "Ctrl-C stops the cluster.")?;
    out.flush()
}
