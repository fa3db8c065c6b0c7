//! Workloads under contention: many clients on ONE name, the normal case
//! for a lock. Each system runs the recipe its users would use, through
//! the same HTTP client as every other step (ureq, one kept-alive
//! connection per client, clients spread round-robin over the nodes):
//!
//! - `trylock`: 8, 32 and 128 clients loop: acquire without waiting; on a
//!   grant hold 2 ms and release; refused, try again at once;
//! - `queue`: 8 and 32 waiters wait (tenure: a long poll; etcd:
//!   `concurrency.Mutex`), hold 2 ms, release, queue again; each wait is
//!   checked against the bound a FIFO queue would meet (`fifo`);
//! - `election32`: the election step's handoffs among 32 candidates;
//! - `stampede`: 32 clients acquire a fresh name at one instant;
//! - `trylock-kill`: try-lock at 32 clients, one node SIGKILLed part way;
//! - `queue-kill`: the queue of 32 waiters, one node SIGKILLed part way.
//!
//! Every failure is counted by kind (`outcome`): a 5xx or a timeout is an
//! error; a connection refused by a dead node is expected of it, and
//! counted apart. After a connection error a client moves to the next
//! node; after any other failure an acquire goes on through the same node,
//! and a release is sent again through the next (`release_retrying`).

pub mod client;
pub mod fifo;
mod json;
pub mod outcome;
pub mod queue;
pub mod stampede;
mod steps;
pub mod trylock;

pub(crate) use steps::{
    election32_step, queue_kill_step, queue_step, stampede_step, trylock_kill_step, trylock_step,
};

use crate::stats::Latencies;
use outcome::Tally;
use queue::QueueRun;
use stampede::Stampede;
use trylock::TryLockRun;

/// Clients of each try-lock level.
pub const TRYLOCK_LEVELS: [usize; 3] = [8, 32, 128];
/// Waiters of each queue level.
pub const QUEUE_LEVELS: [usize; 2] = [8, 32];
/// Candidates of `election32`.
pub const ELECTION_CANDIDATES: usize = 32;
/// Clients of `stampede`, and of `trylock-kill` and `queue-kill`.
pub const STAMPEDE_CLIENTS: usize = 32;
pub const KILL_CLIENTS: usize = 32;

/// `election32` for one system.
#[derive(Default)]
pub struct Election32 {
    pub candidates: usize,
    /// Resignation sent → the next leader's campaign returned.
    pub handoffs: Latencies,
    pub tally: Tally,
    /// Why a half ended early, if one did (the driver waits at most 60 s
    /// for any event).
    pub failed: Option<String>,
}

/// What the contended workloads measured for one system.
#[derive(Default)]
pub struct Contended {
    /// One per level of `TRYLOCK_LEVELS`.
    pub trylock: Vec<TryLockRun>,
    /// One per level of `QUEUE_LEVELS`.
    pub queue: Vec<QueueRun>,
    pub election32: Option<Election32>,
    pub stampede: Option<Stampede>,
    pub trylock_kill: Option<TryLockRun>,
    pub queue_kill: Option<QueueRun>,
}

impl Contended {
    pub fn is_empty(&self) -> bool {
        self.trylock.is_empty()
            && self.queue.is_empty()
            && self.election32.is_none()
            && self.stampede.is_none()
            && self.trylock_kill.is_none()
            && self.queue_kill.is_none()
    }

    /// 5xx answers and timeouts over every contended workload. A killed
    /// node's refused connections are not errors; anything else from it is.
    pub fn errors(&self) -> u64 {
        let trylock = |r: &TryLockRun| r.live.errors() + r.killed_node.errors();
        self.trylock.iter().map(trylock).sum::<u64>()
            + self.queue.iter().map(|q| q.tally.errors()).sum::<u64>()
            + self.election32.as_ref().map_or(0, |e| e.tally.errors())
            + self.stampede.as_ref().map_or(0, |s| s.tally.errors())
            + self.trylock_kill.as_ref().map_or(0, trylock)
            + self.queue_kill.as_ref().map_or(0, |q| q.tally.errors())
    }
}

#[cfg(test)]
mod tests {
    use super::outcome::Failure;
    use super::*;

    #[test]
    fn the_errors_are_the_5xx_and_timeouts_of_every_workload_not_a_dead_nodes_refusals() {
        let mut c = Contended::default();
        let mut kill = TryLockRun::default();
        kill.live.count(&Failure::status(503, "no quorum"));
        kill.killed_node
            .count(&Failure::Connection("refused".into()));
        kill.killed_node.count(&Failure::Connection("reset".into()));
        c.trylock_kill = Some(kill);
        let mut level = TryLockRun::default();
        level.live.count(&Failure::Other("400".into()));
        c.trylock.push(level);
        let mut q = QueueRun::default();
        q.tally
            .count(&Failure::Timeout("the 5 s wait ran out".into()));
        c.queue.push(q);
        let mut s = Stampede::default();
        s.tally.count(&Failure::status(502, ""));
        c.stampede = Some(s);
        assert_eq!(c.errors(), 3);
        assert!(!c.is_empty());
        assert!(Contended::default().is_empty());
    }
}
