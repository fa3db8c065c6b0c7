//! What one node is told at start: who it is, where it listens, who its
//! peers are, and the limits it enforces.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tenure_core::{Compaction, Micros, NodeId, Timing};

/// The cluster id of a node not given one.
pub const DEFAULT_CLUSTER_ID: &str = "tenure";

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// Every member's peer address (`host:port`, resolved at each connect
    /// so that DNS names work), this node's included (never dialled).
    pub peers: BTreeMap<NodeId, String>,
    pub timing: Timing,
    /// When names nobody uses are deleted (docs/storage.md, "Space").
    pub compaction: Compaction,
    pub http: HttpLimits,
    /// Messages queued for one peer while its connection is slow or down;
    /// more are dropped (Paxos tolerates loss; the proposer retries).
    pub peer_queue_messages: usize,
    /// Batches of writes (one per node-loop step) queued for the committer
    /// before `submit` pushes back.
    pub persist_queue_batches: usize,
    /// How long lazy records (renewals acknowledged before their fsync,
    /// docs/protocol.md) may wait for company before they are committed
    /// alone. Nothing a client or peer waits for is ever held back by it:
    /// a strict write, or a message that waits for a lazy one, sends
    /// every record held at once.
    pub lazy_commit_delay: Duration,
    /// Start even though the store rolled back its newest commit (see
    /// `rollback.rs`): the operator has checked it.
    pub accept_rolled_back_store: bool,
    /// ρ: how far any clock in the cluster, holders' included, may run
    /// from real time. Every node must be given the same.
    pub drift: tenure_core::DriftBound,
    /// Refuse requests while this node's clock rate disagrees with a
    /// majority of the members' (`peer::rates`); off, only report it.
    pub clock_check: bool,
    /// The cluster's name: recorded in the data directory with the member
    /// ids, and checked at every start and in every peer's hello
    /// (`identity.rs`).
    pub cluster_id: String,
    /// Record this configuration's identity in a data directory that holds
    /// another: the operator is changing a stopped cluster's members.
    pub rewrite_cluster_identity: bool,
    /// The configuration a joining node (`--join`) learnt from the
    /// cluster, which took it in with `tenure members`: it starts in it
    /// when its data directory holds none yet.
    pub joined: Option<tenure_core::Configuration>,
    /// Changes kept in memory per name for `GET /v1/locks/{name}/history`.
    pub history_per_name: usize,
    /// The bearer tokens clients must send (`http/auth.rs`); `None`: no
    /// authentication.
    pub tokens: Option<PathBuf>,
    /// The CA, certificate and key that prove this node's id to its peers
    /// (`tls/`); `None`: peer links in plain TCP, ids taken on trust.
    pub peer_tls: Option<crate::tls::TlsFiles>,
    /// Serve the client API over TLS (`--https`); `None`: plain HTTP.
    pub https: Option<crate::tls::HttpsFiles>,
    /// The secret grant keys are made from (`grant_key.rs`); `None`: no
    /// keys, and holder and token alone renew or release a grant.
    pub grant_secret: Option<PathBuf>,
}

impl ServerConfig {
    pub fn new(id: NodeId, data_dir: PathBuf, peers: BTreeMap<NodeId, String>) -> Self {
        ServerConfig {
            id,
            data_dir,
            peers,
            timing: default_timing(),
            compaction: default_compaction(),
            http: HttpLimits::default(),
            peer_queue_messages: 4_096,
            persist_queue_batches: 1_024,
            lazy_commit_delay: DEFAULT_LAZY_COMMIT_DELAY,
            accept_rolled_back_store: false,
            drift: tenure_core::DriftBound::DEFAULT,
            clock_check: true,
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            rewrite_cluster_identity: false,
            joined: None,
            history_per_name: crate::history::DEFAULT_PER_NAME,
            tokens: None,
            peer_tls: None,
            https: None,
            grant_secret: None,
        }
    }

    pub fn members(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    /// The configuration a node with a new data directory starts in: the
    /// one it joined, or the members of `--peers` as epoch 1.
    pub fn first_configuration(&self) -> tenure_core::Configuration {
        self.joined
            .clone()
            .unwrap_or_else(|| tenure_core::Configuration::first_at(self.peers.clone()))
    }
}

/// Long enough that a holder's renewals and whatever else the node does
/// meanwhile share an fsync; short next to any ttl, so that a crash loses
/// at most this much of the renewals' lazy records (which only makes the
/// restarted acceptor's leases look younger: docs/safety.md).
pub const DEFAULT_LAZY_COMMIT_DELAY: Duration = Duration::from_millis(10);

/// The core's default timing, with a shorter request deadline: a client
/// that gets no quorum should hear `503` in seconds and try elsewhere,
/// rather than wait for the core's generous default.
pub fn default_timing() -> Timing {
    Timing {
        request_deadline: Micros::from_millis(3_000),
        ..Timing::default()
    }
}

/// Bounds on what HTTP clients may cost a node.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Open client connections; more are answered 503.
    pub max_connections: usize,
    /// Open connections from one client address; more are answered 503.
    pub max_connections_per_client: usize,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// Time a client has to send its body once the head has arrived.
    pub body_read_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest `?wait=` a long-poll may ask for.
    pub max_wait: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// How often a watch re-reads a name when nothing woke it.
    pub watch_fallback: Duration,
    /// Watches open at once on this node: below `max_connections`, so
    /// that watchers cannot take every connection from lock clients.
    pub max_watches: usize,
    /// Acquires waiting (`?wait=`) at once on this node, for the same
    /// reason.
    pub max_waits: usize,
    /// Watches one caller (a token, else a client certificate, else an
    /// address) may have open on this node, so that one client cannot
    /// take every watch from the others.
    pub max_watches_per_caller: usize,
    /// Waiting acquires one caller may have on this node, likewise.
    pub max_waits_per_caller: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1_024,
            max_connections_per_client: 256,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_body_bytes: 4 * 1024,
            max_wait: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(5),
            watch_fallback: Duration::from_secs(2),
            max_watches: 512,
            max_waits: 512,
            max_watches_per_caller: 128,
            max_waits_per_caller: 128,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeersError {
    #[error("peer entry {0:?} is not of the form ID=HOST:PORT")]
    Shape(String),
    #[error("peer id {0:?} is not a number between 1 and 65535")]
    Id(String),
    #[error("peer address {0:?} is not HOST:PORT")]
    Address(String),
    #[error("node id {0} is listed twice")]
    Duplicate(u16),
}

/// Parse `1=10.0.0.1:7401,2=10.0.0.2:7401,3=10.0.0.3:7401`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, PeersError> {
    let mut peers = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('=')
            .ok_or_else(|| PeersError::Shape(entry.to_string()))?;
        let id: u16 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| PeersError::Id(id.to_string()))?;
        let addr = addr.trim();
        let well_formed = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !well_formed {
            return Err(PeersError::Address(addr.to_string()));
        }
        let addr = addr.to_string();
        if peers.insert(NodeId(id), addr).is_some() {
            return Err(PeersError::Duplicate(id));
        }
    }
    Ok(peers)
}

/// How long a name must have been free, with nobody waiting, before it is
/// deleted: longer than the longest ttl a client may ask for, and an hour
/// more, so that only names nobody has used for a day go.
pub const DEFAULT_COMPACT_AFTER: Duration =
    Duration::from_millis(tenure_core::input::MAX_TTL_MS + 3_600_000);

pub fn default_compaction() -> Compaction {
    Compaction::after(Micros::from_millis(DEFAULT_COMPACT_AFTER.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_from_the_command_line_form() {
        let peers = parse_peers("1=127.0.0.1:7401, 2=127.0.0.1:7402,3=[::1]:7403").unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&NodeId(3)], "[::1]:7403");
    }

    #[test]
    fn malformed_peer_lists_say_which_entry_is_wrong() {
        assert_eq!(
            parse_peers("1=127.0.0.1:1,1=127.0.0.1:2"),
            Err(PeersError::Duplicate(1))
        );
        assert!(matches!(
            parse_peers("x=127.0.0.1:1"),
            Err(PeersError::Id(_))
        ));
        assert!(matches!(
            parse_peers("0=127.0.0.1:1"),
            Err(PeersError::Id(_))
        ));
        assert!(matches!(
            parse_peers("1=nohost"),
            Err(PeersError::Address(_))
        ));
        assert!(matches!(
            parse_peers("127.0.0.1:1"),
            Err(PeersError::Shape(_))
        ));
    }
}
