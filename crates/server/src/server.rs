//! Starting and stopping one node: open storage, start the node loop, the
//! peer transport and the HTTP API; stop them in the order that lets rounds
//! in flight finish.

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::history::History;
use crate::http::auth::Auth;
use crate::http::{self, App, AppState};
use crate::metrics::Metrics;
use crate::node_loop::Observers;
use crate::node_loop::{Inputs, NodeHandle, NodeLoop};
use crate::peer;
use crate::persist::Persist;
use crate::rollback;
use crate::wakeups::Wakeups;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tenure_core::{ConfigError, Node, NodeId, Rules, Token};
use tenure_storage::{
    boot_node, Boot, BootError, Committer, OpenError, Recovery, StoreAt, StoreOptions,
};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Client calls queued for the node loop; HTTP handlers wait beyond this.
const CLIENT_CALLS_QUEUED: usize = 4_096;
/// Peer messages queued for the node loop; peers' TCP pushes back beyond.
const PEER_EVENTS_QUEUED: usize = 4_096;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("invalid cluster configuration")]
    Config(#[from] ConfigError),
    #[error("cannot open the data directory {dir}")]
    Storage { dir: PathBuf, source: OpenError },
    #[error("cannot create the data directory {dir}")]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the storage task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("cannot start the node on its store")]
    Boot(#[source] BootError),
    #[error(
        "node {0} is not a member of the configuration its data directory holds: it was \
         removed (tenure members remove). Delete the data directory to retire it; to bring it \
         back, add it again (tenure members add) and start it on an empty data directory with \
         --join"
    )]
    Removed(NodeId),
    #[error("cannot read a listener's address")]
    Address(#[source] std::io::Error),
    #[error(transparent)]
    RolledBack(#[from] crate::rollback::RollbackError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    ClusterId(#[from] crate::identity::ClusterIdError),
    #[error("cannot use the tokens file")]
    Tokens(#[from] crate::http::auth::TokensError),
    #[error("cannot use the peer TLS files")]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    GrantSecret(#[from] crate::grant_key::GrantSecretError),
}

/// The two sockets a node listens on, bound before start so that callers
/// can learn OS-chosen ports (and pass them to the other nodes) first.
pub struct Listeners {
    pub http: TcpListener,
    pub peer: TcpListener,
}

impl Listeners {
    pub async fn bind(http: impl ToSocketAddrs, peer: impl ToSocketAddrs) -> std::io::Result<Self> {
        Ok(Listeners {
            http: TcpListener::bind(http).await?,
            peer: TcpListener::bind(peer).await?,
        })
    }
}

/// A started node.
pub struct Running {
    pub id: NodeId,
    pub http_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub incarnation: u32,
    stop_http: watch::Sender<bool>,
    stop_node: watch::Sender<bool>,
    stop_peers: watch::Sender<bool>,
    http_task: JoinHandle<()>,
    node_task: JoinHandle<Persist>,
}

impl Running {
    /// The line operators and tests wait for.
    pub fn banner(&self) -> String {
        format!(
            "tenure node {} http={} peer={} incarnation={}",
            self.id.0, self.http_addr, self.peer_addr, self.incarnation
        )
    }

    /// Stop accepting clients, let rounds in flight finish (bounded), make
    /// every write durable, close storage.
    pub async fn shutdown(self) {
        let _ = self.stop_http.send(true);
        if let Err(e) = self.http_task.await {
            tracing::warn!(error = %e, "http task ended abnormally");
        }
        // Peers stay connected until the loop has drained: the rounds still
        // in flight need them.
        let _ = self.stop_node.send(true);
        let persist = self.node_task.await;
        let _ = self.stop_peers.send(true);
        match persist {
            Ok(persist) => {
                if let Err(e) = tokio::task::spawn_blocking(move || persist.shutdown()).await {
                    tracing::warn!(error = %e, "storage shutdown failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "node loop ended abnormally"),
        }
        tracing::info!(node = self.id.0, "stopped");
    }
}

pub async fn start(config: ServerConfig, listeners: Listeners) -> Result<Running, StartError> {
    crate::identity::check_cluster_id(&config.cluster_id)?;
    let auth = match &config.tokens {
        Some(path) => Some(Arc::new(Auth::load(path)?)),
        None => None,
    };
    let tls = match &config.peer_tls {
        Some(files) => Some(Arc::new(crate::tls::PeerTls::load(
            config.id,
            files.clone(),
        )?)),
        None => None,
    };
    let grant_keys = match &config.grant_secret {
        Some(path) => Some(Arc::new(crate::grant_key::GrantKeys::load(path)?)),
        None => None,
    };
    let https = match &config.https {
        Some(files) => Some(Arc::new(crate::tls::HttpsTls::load(files.clone())?)),
        None => None,
    };
    let first = config.first_configuration();
    // Check the configuration before storage bumps the incarnation for a
    // start that would fail anyway.
    Node::new(
        core_config(&config, first.clone(), 1, 0, Token(0)),
        [],
        tenure_core::Instant::ZERO,
    )?;
    let http_addr = listeners.http.local_addr().map_err(StartError::Address)?;
    let peer_addr = listeners.peer.local_addr().map_err(StartError::Address)?;

    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
        dir: dir.clone(),
        source,
    })?;
    // The acceptor is built from the records as storage reads them, so
    // they never exist twice in memory.
    let clock = Clock::new();
    let open_dir = dir.clone();
    let node_config = config.clone();
    let (store, node) = tokio::task::spawn_blocking(move || {
        let config = |boot: Boot| {
            core_config(
                &node_config,
                first,
                boot.incarnation,
                boot.horizon,
                boot.token_floor,
            )
        };
        boot_node(
            &StoreOptions::default(),
            StoreAt::dir(&open_dir),
            config,
            clock.now(),
        )
    })
    .await?
    .map_err(|error| match error {
        // The flags' configuration was checked above: this is the store's.
        BootError::Config(ConfigError::NotAMember(id)) => StartError::Removed(id),
        BootError::Config(e) => StartError::Config(e),
        BootError::Open(source) => StartError::Storage { dir, source },
        other => StartError::Boot(other),
    })?;
    let incarnation = node.config().incarnation;
    match store.recovery() {
        Recovery::Clean => {}
        Recovery::Repaired => tracing::info!(
            store = store.location(),
            "the last run did not close the store; it was verified and repaired, nothing lost"
        ),
        Recovery::RolledBack => tracing::error!(
            store = store.location(),
            "the store's newest commit failed verification and was rolled back to the one before; \
             expected after a power cut during a commit, but it may also be bit rot: see docs/storage.md"
        ),
    }
    let mut store = store;
    // Members delete the same names at about the same time; each compacts
    // its file at its own point, so that at most one holds its commits.
    store.stagger_shrinks((config.id.0 % 4) as u8);
    if let Err(e) = rollback::gate(
        &mut store,
        &config.data_dir,
        config.accept_rolled_back_store,
    ) {
        drop(store);
        return Err(e.into());
    }
    if let Err(e) = crate::identity::gate(&mut store, &config, node.configuration()) {
        drop(store);
        return Err(e.into());
    }

    let metrics = Arc::new(Metrics::new());
    let observed = metrics.clone();
    let committer = Committer::spawn_observed(
        store,
        config.persist_queue_batches,
        Box::new(move |commit| observed.committed(commit.took)),
    );
    let (persist, acks) = Persist::new(committer, metrics.clone());

    let (stop_http, stop_http_rx) = watch::channel(false);
    let (stop_node, stop_node_rx) = watch::channel(false);
    let (stop_peers, stop_peers_rx) = watch::channel(false);
    let (peer_tx, peer_rx) = mpsc::channel(PEER_EVENTS_QUEUED);
    let (call_tx, call_rx) = mpsc::channel(CLIENT_CALLS_QUEUED);
    let (cancel_tx, cancel_rx) = mpsc::unbounded_channel();

    let hello = peer::Hello {
        me: config.id,
        max_drift_ppm: config.drift.ppm(),
        clock,
        clock_check: config.clock_check,
        identity: crate::identity::hello(&config).into(),
        incarnation,
        boot: {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
        },
        tls: tls.clone(),
    };
    let (mut net, view) = peer::start(
        hello,
        &config.peers,
        listeners.peer,
        peer_tx,
        config.peer_queue_messages,
        metrics.clone(),
        stop_peers_rx,
    );
    // The node's configuration, which its store may hold, not the flags.
    let configuration = node.configuration();
    net.set_members(configuration.quorums().members(), &configuration.addresses);
    let wakeups = Wakeups::new();
    let history = Arc::new(History::new(config.history_per_name));
    let observers = Observers {
        wakeups: wakeups.clone(),
        metrics: metrics.clone(),
        history: history.clone(),
    };
    let (node_loop, members_now) = NodeLoop::new(node, clock, persist, net, observers);
    let node_loop = node_loop.with_lazy_commit_delay(config.lazy_commit_delay);
    let (members_tx, members_rx) = mpsc::channel(8);
    let node_task = tokio::spawn(node_loop.run(Inputs {
        calls: call_rx,
        members: members_rx,
        cancels: cancel_rx,
        peers: peer_rx,
        acks,
        stop: stop_node_rx,
        drain: config.http.drain_timeout,
    }));

    let request_deadline = Duration::from_micros(config.timing.request_deadline.0);
    let state = AppState::new(App {
        node: NodeHandle::new(call_tx, cancel_tx, members_tx, members_now),
        cluster_id: config.cluster_id.as_str().into(),
        wakeups,
        metrics: metrics.clone(),
        history,
        auth: auth.clone(),
        grant_keys,
        peers: Arc::new(view),
        incarnation,
        drift: config.drift,
        limits: config.http,
        call_timeout: request_deadline + Duration::from_secs(2),
        stop: stop_http_rx.clone(),
        watches: Arc::new(http::StreamBound::new(
            http::Counted::WATCHES,
            config.http.max_watches,
            config.http.max_watches_per_caller,
        )),
        waits: Arc::new(http::StreamBound::new(
            http::Counted::WAITS,
            config.http.max_waits,
            config.http.max_waits_per_caller,
        )),
        store_file: config.data_dir.join(tenure_storage::FILE_NAME).into(),
    });
    if auth.is_some() || tls.is_some() || https.is_some() {
        let reloads = Reloads {
            auth,
            tls,
            https: https.clone(),
        };
        tokio::spawn(reload_on_hangup(reloads, config.id, stop_http_rx.clone()));
    }
    let http_task = tokio::spawn(http::serve(
        listeners.http,
        http::router(state),
        config.http,
        https,
        metrics.clone(),
        stop_http_rx,
    ));
    tracing::info!(node = config.id.0, %http_addr, %peer_addr, incarnation, "started");
    Ok(Running {
        id: config.id,
        http_addr,
        peer_addr,
        incarnation,
        stop_http,
        stop_node,
        stop_peers,
        http_task,
        node_task,
    })
}

fn core_config(
    config: &ServerConfig,
    configuration: tenure_core::Configuration,
    incarnation: u32,
    promise_horizon: u64,
    token_floor: Token,
) -> tenure_core::Config {
    tenure_core::Config {
        node: config.id,
        incarnation,
        promise_horizon,
        token_floor,
        configuration,
        rules: Rules {
            drift: config.drift,
            ..Rules::default()
        },
        timing: config.timing,
        compaction: config.compaction,
        // Only the backoff jitter depends on it: any per-process randomness.
        seed: RandomState::new().hash_one(std::process::id()),
    }
}

/// What SIGHUP reads again.
struct Reloads {
    auth: Option<Arc<Auth>>,
    tls: Option<Arc<crate::tls::PeerTls>>,
    https: Option<Arc<crate::tls::HttpsTls>>,
}

/// Read the tokens and TLS files again at each SIGHUP, as an operator
/// rotating a token or a certificate expects; a file that does not parse
/// keeps what is in use.
async fn reload_on_hangup(reloads: Reloads, node: NodeId, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!(
            node = node.0,
            "cannot listen for SIGHUP: the tokens and TLS files are read only at start"
        );
        return;
    };
    loop {
        tokio::select! {
            heard = hangups.recv() => if heard.is_none() { return },
            _ = stop.changed() => return,
        }
        if let Some(auth) = &reloads.auth {
            let file = auth.path().display().to_string();
            say_reloaded(node, "tokens file", &file, "", auth.reload());
        }
        if let Some(tls) = &reloads.tls {
            let file = tls.files().cert.display().to_string();
            say_reloaded(
                node,
                "peer TLS files",
                &file,
                "; new links use them",
                tls.reload(),
            );
        }
        if let Some(https) = &reloads.https {
            let file = https.files().cert.display().to_string();
            let done = https.reload();
            say_reloaded(
                node,
                "HTTPS files",
                &file,
                "; new connections use them",
                done,
            );
        }
    }
}

/// Log what one SIGHUP reload came to: read again, or refused with the
/// material in use kept.
fn say_reloaded(
    node: NodeId,
    what: &str,
    file: &str,
    effect: &str,
    done: Result<(), impl std::fmt::Display>,
) {
    match done {
        Ok(()) => tracing::info!(node = node.0, file, "{what} read again{effect}"),
        Err(e) => {
            tracing::error!(node = node.0, error = %e, "{what} refused; what is in use stays")
        }
    }
}
