//! `tenure server`: one node of a cluster of processes or machines.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tenure_core::{Compaction, DriftBound, Micros, NodeId};
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
    #[arg(
        long,
        value_name = "LIST",
        required_unless_present = "join",
        conflicts_with = "join"
    )]
    peers: Option<String>,
    /// Join a running cluster instead: learn its configuration from the
    /// members at these URLs (comma-separated), waiting until `tenure
    /// members add` or `replace` has taken this node in. $TENURE_TOKEN_FILE
    /// and $TENURE_CA are used as `tenure members` uses them.
    #[arg(long, value_name = "URLS")]
    join: Option<String>,
    /// The cluster's name, the same on every member. The data directory
    /// records it with the member ids at the first start, and a node whose
    /// flags differ from its data directory, or whose hello differs from
    /// its peers', is refused.
    #[arg(long, value_name = "ID", default_value = tenure_server::config::DEFAULT_CLUSTER_ID, value_parser = parse_cluster_id)]
    cluster_id: String,
    /// Record this node's --cluster-id and member list in a data directory
    /// that holds another: only when every member was stopped and is
    /// restarted with the same new list (docs/operations.md).
    #[arg(long)]
    rewrite_cluster_identity: bool,
    /// Require the bearer tokens listed in FILE: one `TOKEN read|lock|admin
    /// PREFIX` a line (`*`: every name), `#` comments. SIGHUP reads it
    /// again. Without it, every request is served.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Give every grant a secret key, made from the secret in FILE (the
    /// same file on every node; `tenure certs create` makes one): only the holder
    /// sees it, and renewing or releasing needs it. Without it, holder and
    /// token, which reads and conflicts show, are enough.
    #[arg(long, value_name = "FILE")]
    grant_secret: Option<PathBuf>,
    /// Start although this node's store rolled back its newest commit (a
    /// power cut mid-commit, or bit rot), and clear that verdict: only
    /// after checking, see docs/operations.md.
    #[arg(long)]
    accept_rolled_back_store: bool,
    /// Serve even while this node's clock runs at a rate a majority of the
    /// members disagree with: the rate watchdog still measures, logs and
    /// reports it, but no longer refuses requests. For testing, or where
    /// the watchdog misjudges; the protocol stays safe with one bad clock
    /// either way (docs/safety.md).
    #[arg(long)]
    no_clock_check: bool,
    /// Delete a name from every node once it has been free, with nobody
    /// waiting, for this long (`25h`, `90m`; `off`: never). A later grant
    /// still gets a higher token (docs/storage.md, "Space"). Every member
    /// must be up for a name to go. At least twice the request deadline
    /// (6s).
    #[arg(long, value_name = "DURATION", default_value = "25h", value_parser = parse_compact_after)]
    compact_after: CompactAfter,
    /// Client connections served at once; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Client connections from one address at once; more are answered 503.
    /// Raise it for many clients behind one address (NAT, a sidecar).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_client: u32,
    /// Watches streaming at once; more are answered 503. Keep it below
    /// --max-connections, so that watchers leave room for lock clients.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_watches: u32,
    /// Acquires waiting (`?wait=`) at once; more are answered 503. Keep it
    /// below --max-connections, for the same reason as --max-watches.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_waits: u32,
    /// Watches one caller may have open at once (a caller is its bearer
    /// token, else its client certificate, else its address); more are
    /// answered 429, so that one client cannot take every watch.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    max_watches_per_caller: u32,
    /// Waiting acquires one caller may have at once; more are answered 429.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    max_waits_per_caller: u32,
    /// Changes kept in memory per name for `GET /v1/locks/{name}/history`
    /// and `tenure history` (0: none).
    #[arg(long, value_name = "N", default_value_t = tenure_server::history::DEFAULT_PER_NAME as u16)]
    history: u16,
    /// Worker threads for the node's HTTP and peer connections. Default:
    /// one per core ($TOKIO_WORKER_THREADS, if set). Members that share a
    /// machine do best sharing its cores out: three on two cores, one each
    /// (docs/operations.md, "Threads").
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    #[command(flatten)]
    drift: DriftArg,
    #[command(flatten)]
    peer_tls: PeerTlsArgs,
}

/// How members prove their ids to each other.
#[derive(Args)]
pub struct PeerTlsArgs {
    /// The CA certificates (PEM) that sign members' certificates. With
    /// --cert and --key, peer links run in mutual TLS and each member's id
    /// is proven by its certificate. `tenure certs create` makes all three. SIGHUP
    /// reads them again.
    #[arg(long, value_name = "FILE", requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,
    /// This node's certificate (PEM), signed by the CA and naming
    /// node-ID.tenure among its DNS names.
    #[arg(long, value_name = "FILE", requires_all = ["ca", "key"])]
    cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["ca", "cert"])]
    key: Option<PathBuf>,
    /// Run peer links in plain TCP, taking ids on trust: whoever can reach
    /// a peer port can forge any member's messages and break every lease.
    /// Only where nobody else can reach the peer ports.
    #[arg(long, conflicts_with_all = ["ca", "cert", "key"])]
    insecure_peers: bool,
    /// Serve the client API over TLS with --cert and --key (whose names
    /// must include the host clients reach the node by: `tenure certs
    /// create --host`). SIGHUP reads them again.
    #[arg(long, requires_all = ["cert", "key"])]
    https: bool,
    /// With --https: admit only clients that present a certificate signed
    /// by the CAs in FILE (PEM).
    #[arg(long, value_name = "FILE", requires = "https")]
    client_ca: Option<PathBuf>,
}

impl PeerTlsArgs {
    /// The client API's TLS files, if `--https`.
    fn https(&self) -> Option<tenure_server::tls::HttpsFiles> {
        match (self.https, &self.cert, &self.key) {
            (true, Some(cert), Some(key)) => Some(tenure_server::tls::HttpsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
            }),
            _ => None,
        }
    }

    /// The files to use; `None` only when `--insecure-peers` says so.
    fn files(self) -> Result<Option<tenure_server::tls::TlsFiles>> {
        match (self.ca, self.cert, self.key) {
            (Some(ca), Some(cert), Some(key)) => {
                Ok(Some(tenure_server::tls::TlsFiles { ca, cert, key }))
            }
            _ if self.insecure_peers => Ok(None),
            _ => anyhow::bail!(
                "peer links need TLS: give --ca, --cert and --key (`tenure certs create --dir DIR \
                 --nodes 1,2,3` makes them), or --insecure-peers where nobody else can reach \
                 the peer ports"
            ),
        }
    }
}

/// ρ, shared by `server` and `dev`.
#[derive(Args)]
pub struct DriftArg {
    /// How far, in parts per million, any clock in the cluster (nodes and
    /// holders) may run fast or slow against real time; the same on every
    /// node. Leases last ttl·(1+ρ) on the nodes and ttl·(1−2ρ) for their
    /// holders. See docs/operations.md, "Clocks", for how to choose it.
    #[arg(long, value_name = "PPM", default_value_t = 1_000, value_parser = parse_drift_ppm)]
    pub max_drift_ppm: u32,
}

impl DriftArg {
    pub fn bound(&self) -> DriftBound {
        DriftBound::from_ppm(self.max_drift_ppm).unwrap_or_default()
    }
}

fn parse_cluster_id(s: &str) -> Result<String, String> {
    tenure_server::identity::check_cluster_id(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_drift_ppm(s: &str) -> Result<u32, String> {
    let ppm: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of parts per million"))?;
    if DriftBound::from_ppm(ppm).is_none() {
        return Err(format!(
            "{ppm} ppm is more than the {} ppm a lease can bear (ttl·(1−2ρ) must mean something)",
            DriftBound::MAX_PPM
        ));
    }
    Ok(ppm)
}

pub async fn run(mut args: ServerArgs) -> Result<()> {
    let https = args.peer_tls.https();
    let peer_tls = args.peer_tls.files()?;
    if peer_tls.is_none() {
        tracing::warn!(
            "--insecure-peers: peer links in plain TCP; anyone who reaches the peer port can \
             forge members' messages"
        );
    }
    let (peers, joined) = match (&args.peers, &args.join) {
        (Some(peers), _) => (parse_peers(peers).context("--peers")?, None),
        (None, Some(urls)) => {
            let has_store = args.data_dir.join(tenure_storage::FILE_NAME).exists();
            let (cluster_id, joined) = crate::join::learn(urls, NodeId(args.id), has_store).await?;
            let default = tenure_server::config::DEFAULT_CLUSTER_ID;
            anyhow::ensure!(
                args.cluster_id == default || args.cluster_id == cluster_id,
                "--cluster-id {} was given, but {urls} is of cluster {cluster_id}",
                args.cluster_id
            );
            args.cluster_id = cluster_id;
            (joined.addresses.clone(), Some(joined))
        }
        (None, None) => anyhow::bail!("--peers or --join is needed"),
    };
    let mut config = ServerConfig::new(NodeId(args.id), args.data_dir, peers);
    config.joined = joined;
    config.accept_rolled_back_store = args.accept_rolled_back_store;
    config.drift = args.drift.bound();
    config.clock_check = !args.no_clock_check;
    if let Some(after) = args.compact_after.0 {
        let least = 2 * Duration::from_micros(config.timing.request_deadline.0);
        anyhow::ensure!(
            after >= least,
            "--compact-after {after:?} is too soon: at least {least:?}, twice the request \
             deadline, so that no round outlives its name; or `off`"
        );
    }
    config.compaction = match args.compact_after.0 {
        Some(after) => {
            Compaction::after(Micros(u64::try_from(after.as_micros()).unwrap_or(u64::MAX)))
        }
        None => Compaction::default(),
    };
    config.cluster_id = args.cluster_id;
    config.rewrite_cluster_identity = args.rewrite_cluster_identity;
    config.tokens = args.tokens;
    if args.grant_secret.is_none() {
        tracing::warn!(
            "no --grant-secret: whoever sees a grant's holder and token (reads, conflicts, \
             watches show them) can renew or release it"
        );
    }
    config.grant_secret = args.grant_secret;
    config.peer_tls = peer_tls;
    config.https = https;
    config.http.max_connections = args.max_connections as usize;
    config.http.max_connections_per_client = args.max_connections_per_client as usize;
    config.http.max_watches = args.max_watches as usize;
    config.http.max_waits = args.max_waits as usize;
    config.http.max_watches_per_caller = args.max_watches_per_caller as usize;
    config.http.max_waits_per_caller = args.max_waits_per_caller as usize;
    config.history_per_name = usize::from(args.history);
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

/// `--compact-after`: a duration, or `off`.
#[derive(Clone, Copy, Debug)]
pub struct CompactAfter(Option<Duration>);

fn parse_compact_after(s: &str) -> Result<CompactAfter, String> {
    if s.trim() == "off" {
        return Ok(CompactAfter(None));
    }
    crate::client_cmds::parse_duration(s).map(|d| CompactAfter(Some(d)))
}
