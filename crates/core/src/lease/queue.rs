//! The queue of waiting acquires, kept in the register itself.
//!
//! An acquire that may wait (`?wait=` over HTTP) and finds the lease held
//! joins the queue of the name's register. Because the queue is part of the
//! value the cluster agrees on, it is one queue for the whole cluster,
//! whichever node each waiter asked: a release hands the lease straight to
//! the first waiter in the same write, and a free lease with waiters goes
//! to the first of them, not to whoever asks next. So waiters are served in
//! the order they joined, and a release wakes one waiter, not a crowd.
//!
//! The queue only decides who is next; it never shortens anyone's lease,
//! so nothing in it bears on exclusivity. An entry's deadline is measured
//! on the value's lease clock, like a ttl: when the ages of two nodes
//! disagree an entry may end a little early or late, which costs that
//! waiter its place or lets a gone waiter be skipped late, never safety.

use crate::input::{HolderId, LockDelay, Ttl};
use crate::time::Micros;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The most waiters one name's queue holds. Every write of the name
/// carries the whole queue, so it stays small; an acquire that finds the
/// queue full waits outside it, retrying when the lease may have ended.
pub const MAX_WAITERS: usize = 64;

/// A waiting acquire, unique in the cluster for ever: the node and the life
/// of the node that took the request, and the request's number in that
/// life.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct WaiterId {
    pub node: u16,
    pub incarnation: u32,
    pub seq: u64,
}

impl fmt::Display for WaiterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}.{}.{}", self.node, self.incarnation, self.seq)
    }
}

/// One entry of the queue: what the waiter asked for, and until when it
/// waits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Waiter {
    pub id: WaiterId,
    pub holder: HolderId,
    pub ttl: Ttl,
    pub lock_delay: LockDelay,
    /// The age of the value (its lease clock) at which the waiter has given
    /// up. Rebased whenever a fresh value restarts the clock.
    pub until: Micros,
}

/// Nodes whose waiters a handoff passes over for now: the node that
/// judges has lost touch with them (a broken link, or nothing heard for a
/// while; the shell decides). A waiter there may well be gone with its
/// node, and handing it the lease would keep the lease from everyone for a
/// whole ttl. It keeps its place, and is served in turn once its node is
/// back in touch. A hint about liveness, so it bears on who is next only.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutOfTouch<'a>(pub &'a [u16]);

impl OutOfTouch<'_> {
    /// Nobody is out of touch.
    pub const NONE: OutOfTouch<'static> = OutOfTouch(&[]);

    fn passes_over(&self, waiter: &Waiter) -> bool {
        self.0.contains(&waiter.id.node)
    }
}

/// The queue, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Waiters(pub Vec<Waiter>);

impl Waiters {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Waiter> {
        self.0.iter()
    }

    /// The waiters still waiting when the value's clock reads `age`.
    pub fn live(&self, age: Micros) -> impl Iterator<Item = &Waiter> {
        self.0.iter().filter(move |w| w.until > age)
    }

    /// How many are still waiting at `age`.
    pub fn live_count(&self, age: Micros) -> u32 {
        u32::try_from(self.live(age).count()).unwrap_or(u32::MAX)
    }

    /// The first waiter still waiting at `age`.
    pub fn head(&self, age: Micros) -> Option<&Waiter> {
        self.live(age).next()
    }

    /// The first waiter still waiting at `age` whose node is in touch: the
    /// one a handoff goes to.
    pub fn next_up(&self, age: Micros, out: OutOfTouch<'_>) -> Option<&Waiter> {
        self.live(age).find(|w| !out.passes_over(w))
    }

    pub fn contains(&self, id: WaiterId) -> bool {
        self.0.iter().any(|w| w.id == id)
    }

    /// The queue without `id`.
    pub fn without(&self, id: WaiterId) -> Waiters {
        Waiters(self.0.iter().filter(|w| w.id != id).cloned().collect())
    }

    /// The queue with `waiter` at its end.
    pub fn with(&self, waiter: Waiter) -> Waiters {
        debug_assert!(!self.contains(waiter.id), "a waiter joins once");
        let mut queue = self.0.clone();
        queue.push(waiter);
        Waiters(queue)
    }

    /// The queue as it must be carried by a value whose clock restarts now,
    /// at `age` of the old clock: entries that gave up are dropped, and the
    /// others' deadlines move back by `age`.
    pub fn rebased(&self, age: Micros) -> Waiters {
        Waiters(
            self.live(age)
                .map(|w| Waiter {
                    until: w.until.saturating_sub(age),
                    ..w.clone()
                })
                .collect(),
        )
    }
}
