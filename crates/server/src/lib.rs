//! The tokio shell around `tenure-core`: everything a node does that is IO.
//!
//! - [`node_loop`]: one task owns the core [`tenure_core::Node`]; every
//!   input reaches it as an event, every effect leaves through it.
//! - [`persist`]: hands the core's writes to the storage committer and feeds
//!   durability back (fail-stop on a disk error).
//! - [`peer`]: TCP transport between nodes (framed, versioned, bounded).
//! - [`http`]: the client API (axum), with long-poll waiters and watches.
//! - [`wakeups`]: per-name wakeups that let waiters sleep instead of poll.
//! - [`metrics`]: Prometheus text exposition.
//! - [`config`] and [`server`]: what a node is told, and how it starts and
//!   stops; [`identity`] and [`rollback`]: when it refuses to start on its
//!   store.

pub mod clock;
pub mod config;
pub mod grant_key;
pub mod history;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod node_loop;
pub mod peer;
pub mod persist;
pub mod rollback;
pub mod server;
pub mod tls;
pub mod wakeups;

pub use config::{parse_peers, HttpLimits, PeersError, ServerConfig};
pub use server::{Listeners, Running, StartError};
