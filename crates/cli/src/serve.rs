//! `tenure server`: one node of a cluster of processes or machines.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use tenure_core::NodeId;
use tenure_server::{parse_peers, server, Listeners, ServerConfig};

#[derive(Args)]
pub struct ServerArgs {
    /// This node's id: one of the ids in --peers.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    id: u16,
    /// Where this node keeps its durable state.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Address for the HTTP API, e.g. 0.0.0.0:7400.
    #[arg(long, value_name = "ADDR")]
    http: String,
    /// Address peers connect to, e.g. 0.0.0.0:7401.
    #[arg(long, value_name = "ADDR")]
    peer_listen: String,
    /// Every member's peer address, this node's included:
    /// 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT.
    #[arg(long, value_name = "LIST")]
    peers: String,
    /// Start although this node's store rolled back its newest commit at
    /// an earlier start (a power cut mid-commit, or bit rot): only after
    /// checking, see docs/operations.md.
    #[arg(long)]
    accept_rolled_back_store: bool,
}

pub async fn run(args: ServerArgs) -> Result<()> {
    let peers = parse_peers(&args.peers).context("--peers")?;
    let mut config = ServerConfig::new(NodeId(args.id), args.data_dir, peers);
    config.accept_rolled_back_store = args.accept_rolled_back_store;
    let listeners = Listeners::bind(&args.http, &args.peer_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on --http {} / --peer-listen {}",
                args.http, args.peer_listen
            )
        })?;
    let running = server::start(config, listeners)
        .await
        .with_context(|| format!("cannot start node {}", args.id))?;
    // Tests and scripts wait for this line: print it only once serving.
    println!("{}", running.banner());
    std::io::stdout().flush()?;
    crate::signal::stop_requested().await;
    tracing::info!("stopping");
    running.shutdown().await;
    Ok(())
}
