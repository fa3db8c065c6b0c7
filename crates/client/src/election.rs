//! `LeaderElection`: campaign for a named lease, observe who leads, resign.
//!
//! The leader is the holder of the lease `name`; its token is the
//! leadership's fencing token. There is no other state: `leader()` is a
//! linearizable read, `observe()` follows the watch stream.

use crate::client::Client;
use crate::error::Error;
use crate::error::LostReason;
use crate::lock::{Lease, Lock, DEFAULT_MARGIN, DEFAULT_TTL};
use crate::state::Leader;
use futures_util::{Stream, StreamExt};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

pub struct LeaderElection {
    client: Client,
    name: String,
    ttl: Duration,
    margin: Duration,
    /// The lease while this process leads.
    lease: Mutex<Option<Lease>>,
}

impl LeaderElection {
    pub fn new(client: &Client, name: &str) -> LeaderElection {
        LeaderElection {
            client: client.clone(),
            name: name.to_string(),
            ttl: DEFAULT_TTL,
            margin: DEFAULT_MARGIN,
            lease: Mutex::new(None),
        }
    }

    /// How long leadership outlives a leader that dies without resigning.
    pub fn ttl(mut self, ttl: Duration) -> LeaderElection {
        self.ttl = ttl;
        self
    }

    pub fn margin(mut self, margin: Duration) -> LeaderElection {
        self.margin = margin;
        self
    }

    /// Wait until `id` leads (a long-poll acquire, renewed before it
    /// returns). `id` must be unique among the candidates.
    pub async fn campaign(&self, id: &str) -> Result<Leader, Error> {
        let lease = Lock::new(&self.client, &self.name)
            .holder(id)
            .ttl(self.ttl)
            .margin(self.margin)
            .acquire()
            .await?;
        let leader = Leader {
            id: lease.holder().to_string(),
            token: lease.token(),
        };
        let old = self.slot().replace(lease);
        drop(old);
        Ok(leader)
    }

    /// Whether this process leads right now (by its own deadline).
    pub fn is_leader(&self) -> bool {
        self.slot().as_ref().is_some_and(Lease::is_valid)
    }

    /// This process's leadership token, while it leads.
    pub fn token(&self) -> Option<u64> {
        self.slot()
            .as_ref()
            .filter(|l| l.is_valid())
            .map(Lease::token)
    }

    /// Who leads, by a linearizable read; `None` when nobody does.
    pub async fn leader(&self) -> Result<Option<Leader>, Error> {
        Ok(self.client.read(&self.name).await?.leader())
    }

    /// A stream of leadership: the current leader at once, then each
    /// change (`None`: nobody leads). Reconnects across nodes by itself;
    /// a node's "unavailable" is not reported as a change.
    pub fn observe(&self) -> Result<impl Stream<Item = Option<Leader>> + Send + 'static, Error> {
        let watch = self.client.watch(&self.name)?;
        let mut last: Option<Option<Leader>> = None;
        Ok(watch.filter_map(move |state| {
            let change = match state {
                Ok(crate::LeaseState::Unavailable { .. }) | Err(_) => None,
                Ok(state) => {
                    let leader = state.leader();
                    if last.as_ref() == Some(&leader) {
                        None
                    } else {
                        last = Some(leader.clone());
                        Some(leader)
                    }
                }
            };
            std::future::ready(change)
        }))
    }

    /// Stop leading and free the name at once for the next candidate.
    pub async fn resign(&self) -> Result<(), Error> {
        let lease = self.slot().take();
        match lease {
            Some(lease) => lease.release().await,
            None => Ok(()),
        }
    }

    /// Resolves when this process's leadership ends (at once if it does not
    /// lead). Computed locally, like `Lease::lost`.
    pub fn lost(&self) -> impl Future<Output = LostReason> + Send + 'static {
        let signal = self.slot().as_ref().map(Lease::lost);
        async move {
            match signal {
                Some(lost) => lost.await,
                None => LostReason::Released,
            }
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Lease>> {
        // A panic elsewhere while holding this lock leaves an Option, which
        // is always consistent: recover it rather than propagate.
        self.lease.lock().unwrap_or_else(|e| e.into_inner())
    }
}
