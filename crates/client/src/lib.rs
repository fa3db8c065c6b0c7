//! The Rust client of tenure: leases and leader election over the HTTP API
//! of a tenure cluster.
//!
//! - [`Client`]: the nodes, failover between them, a deadline on every call,
//!   retries only where they are safe.
//! - [`Lock`] → [`Lease`]: a held lease with its fencing token, renewed in
//!   the background, with a deadline counted from the send time of the
//!   request that won it ([`time::deadline`]), on a [`Clock`] that counts
//!   a suspend (`CLOCK_BOOTTIME`).
//! - [`LeaderElection`]: campaign, observe, resign.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tenure_client::Error> {
//! let client = tenure_client::Client::new(&["http://127.0.0.1:7400", "http://127.0.0.1:7401"])?;
//! let lease = tenure_client::Lock::new(&client, "nightly-report").acquire().await?;
//! let lost = lease.lost();
//! tokio::select! {
//!     () = async { /* work, passing lease.token() downstream */ } => {}
//!     reason = lost => eprintln!("lost the lease: {reason}"),
//! }
//! lease.release().await?;
//! # Ok(()) }
//! ```
//!
//! See `docs/client.md` for the rules a holder must follow.

mod client;
mod clock;
mod election;
mod error;
mod holder;
mod lock;
mod state;
pub mod time;
mod tls;
mod watch;

pub use client::{
    Client, Granted, HistoryChange, Members, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CALL_TIMEOUT,
    DEV_ENDPOINTS,
};
pub use clock::{BootTime, Clock, ClockSource, Stamp, SuspendableClock, LOOK_EVERY};
pub use election::LeaderElection;
pub use error::{Error, LostReason};
pub use holder::default_holder_id;
pub use lock::{Lease, LeaseStatus, Lock, DEFAULT_MARGIN, DEFAULT_TTL};
pub use state::{Leader, LeaseState};
pub use tls::TlsOptions;
pub use watch::Watch;

impl Client {
    /// Follow the states of `name` (see [`Watch`]).
    pub fn watch(&self, name: &str) -> Result<Watch, Error> {
        Watch::start(self, name)
    }
}
