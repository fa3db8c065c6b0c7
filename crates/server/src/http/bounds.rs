//! Bounds on what clients hold at once: connections per address, and
//! watches and long polls in all and per caller. Each is held by a guard
//! and given back when it drops.

use super::caller::Caller;
use super::error::ApiError;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many of something each key holds, each at most `limit`.
pub struct Shares<K: Hash + Eq> {
    open: Arc<Mutex<HashMap<K, usize>>>,
    limit: usize,
}

impl<K: Hash + Eq + Clone> Shares<K> {
    pub fn new(limit: usize) -> Shares<K> {
        Shares {
            open: Arc::default(),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// One more for `key`; `None` if it holds its limit already.
    pub fn take(&self, key: K) -> Option<Share<K>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key.clone()).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Share {
            open: self.open.clone(),
            key,
        })
    }
}

/// One key's share; given back on drop.
pub struct Share<K: Hash + Eq> {
    open: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Hash + Eq> Drop for Share<K> {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Requests that hold a connection for long (watches, long polls): so
/// many on the node, and so many per caller, so that one client (one
/// token, one certificate, one address) cannot take them all.
pub struct StreamBound {
    counted: Counted,
    node: Arc<Semaphore>,
    node_limit: usize,
    callers: Shares<Caller>,
}

/// The reasons a [`StreamBound`]'s refusals are counted under, by the
/// bound they met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub node: &'static str,
    pub caller: &'static str,
}

impl Counted {
    pub const WATCHES: Counted = Counted {
        node: "watches",
        caller: "watches_per_caller",
    };
    pub const WAITS: Counted = Counted {
        node: "waits",
        caller: "waits_per_caller",
    };
}

/// Which bound a refused request met, and the reason it is counted under.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    /// The node's: try another node.
    Node { reason: &'static str, limit: usize },
    /// The caller's own: close one first.
    Caller { reason: &'static str, limit: usize },
}

impl Full {
    /// `503` for the node's bound (go elsewhere), `429` for the caller's
    /// own; counted either way.
    pub fn answer(self, metrics: &Metrics, serves: &str) -> ApiError {
        match self {
            Full::Node { reason, limit } => {
                metrics.http_refused(reason);
                ApiError::unavailable(format!(
                    "this node serves {limit} {serves} at once and has none free; \
                     try another node, or retry"
                ))
            }
            Full::Caller { reason, limit } => {
                metrics.http_refused(reason);
                ApiError::too_many(format!(
                    "this client already has {limit} {serves} open on this node, the most \
                     one token, client certificate or address may; close one first"
                ))
            }
        }
    }
}

/// A place under a [`StreamBound`], held while the request lasts.
pub struct Held {
    _node: OwnedSemaphorePermit,
    _caller: Option<Share<Caller>>,
}

impl StreamBound {
    pub fn new(counted: Counted, node_limit: usize, per_caller: usize) -> StreamBound {
        StreamBound {
            counted,
            node: Arc::new(Semaphore::new(node_limit)),
            node_limit,
            callers: Shares::new(per_caller),
        }
    }

    pub fn take(&self, caller: &Caller) -> Result<Held, Full> {
        // The caller's share first: a caller at its own limit is told so,
        // rather than that the node is full because of it.
        let share = match caller {
            Caller::Unknown => None,
            known => Some(self.callers.take(known.clone()).ok_or(Full::Caller {
                reason: self.counted.caller,
                limit: self.callers.limit(),
            })?),
        };
        let permit = self
            .node
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full::Node {
                reason: self.counted.node,
                limit: self.node_limit,
            })?;
        Ok(Held {
            _node: permit,
            _caller: share,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn a_caller_at_its_limit_is_refused_while_others_are_served() {
        let bound = StreamBound::new(Counted::WATCHES, 3, 2);
        let node = Some(Full::Node {
            reason: "watches",
            limit: 3,
        });
        let greedy = Caller::Token("greedy-token-0123456789".into());
        let other = Caller::Address(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let first = bound.take(&greedy).expect("first");
        let _second = bound.take(&greedy).expect("second");
        let caller = Some(Full::Caller {
            reason: "watches_per_caller",
            limit: 2,
        });
        assert_eq!(bound.take(&greedy).err(), caller);
        let third = bound.take(&other).expect("another caller");
        assert_eq!(bound.take(&other).err(), node);
        drop(first);
        assert!(bound.take(&greedy).is_ok(), "a share comes back on drop");
        drop(third);
    }

    #[test]
    fn a_refusal_by_the_node_takes_no_share_of_the_caller() {
        let bound = StreamBound::new(Counted::WAITS, 1, 5);
        let a = Caller::Certificate("a".into());
        let b = Caller::Certificate("b".into());
        let held = bound.take(&a).expect("a");
        for _ in 0..10 {
            let full = bound.take(&b).err();
            assert_eq!(
                full,
                Some(Full::Node {
                    reason: "waits",
                    limit: 1
                })
            );
        }
        drop(held);
        assert_eq!(bound.callers.open.lock().expect("lock").len(), 0);
        assert!(bound.take(&b).is_ok());
    }
}
