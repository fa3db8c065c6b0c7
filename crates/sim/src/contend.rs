//! The contention phase: once faults have healed, a crowd of clients
//! fights over one fresh name, some trying the lock in a loop, some
//! waiting for it in the name's queue, each holding it briefly and
//! releasing. With every node up and every message delivered, each of
//! their requests must be answered, successfully, within a bound: a lock
//! service that stalls or fails under contention is not live, however safe.
//!
//! Their operations go into the same history as everyone else's, so the
//! linearizability, fencing and exclusivity checkers judge them too.

use crate::clock::Clock;
use crate::history::{History, Validity};
use crate::rng::SimRng;
use tenure_core::{
    holder_deadline, Failure, HolderId, Instant, LeaseName, LockDelay, Micros, Op, Outcome, Rules,
    Token, Ttl,
};

/// How long the crowd keeps asking, in true µs.
pub const CONTENTION_US: u64 = 1_000_000;
/// The longest any request may take to be answered (a waiting acquire: on
/// top of its wait) while the cluster is healthy.
pub const ANSWER_BOUND_US: u64 = 500_000;
/// How long a waiter waits: beyond the phase, so that waiters are granted
/// rather than timed out.
const WAIT: Micros = Micros::from_millis(2_000);
const TTL_MS: u64 = 1_000;

/// What a contender wants done.
pub enum Ask {
    Send {
        node: usize,
        request: u64,
        op: Op,
        history: usize,
    },
    WakeAt(u64),
}

struct Pending {
    request: u64,
    op: Op,
    sent: Instant,
    answer_by: u64,
}

pub struct Contender {
    /// Its client number in the history.
    pub id: usize,
    holder: HolderId,
    clock: Clock,
    /// The node it talks to.
    pub node: usize,
    waits: bool,
    name: LeaseName,
    pending: Option<Pending>,
    /// The grant it holds and when (true µs) it releases it.
    held: Option<(Token, u64)>,
    next_request: u64,
    /// Stop asking after this (true µs).
    pub until: u64,
    /// The first request it saw answered late, failed, or never answered.
    pub stalled: Option<String>,
}

impl Contender {
    pub fn new(
        id: usize,
        clock: Clock,
        node: usize,
        waits: bool,
        name: LeaseName,
        until: u64,
    ) -> Contender {
        Contender {
            id,
            holder: HolderId::new(&format!("crowd-{id}")).unwrap_or_else(|_| unreachable!("short")),
            clock,
            node,
            waits,
            name,
            pending: None,
            held: None,
            next_request: 0,
            until,
            stalled: None,
        }
    }

    /// Its own timer: release what it holds, or ask again.
    pub fn wake(&mut self, now: u64, history: &mut History) -> Vec<Ask> {
        let mut asks = Vec::new();
        if let Some(p) = &self.pending {
            if now > p.answer_by && self.stalled.is_none() {
                self.stalled = Some(format!(
                    "{:?} by {} was not answered within {} ms",
                    p.op,
                    self.holder,
                    ANSWER_BOUND_US / 1000
                ));
            }
            asks.push(Ask::WakeAt(p.answer_by + 1));
            return asks;
        }
        match self.held {
            Some((token, release_at)) if now >= release_at => {
                history.stop_holding(&self.name, self.id, token, now);
                self.held = None;
                let op = Op::Release {
                    holder: self.holder.clone(),
                    token,
                };
                asks.push(self.send(now, op, history));
            }
            Some((_, release_at)) => asks.push(Ask::WakeAt(release_at)),
            None if now < self.until => {
                let op = Op::Acquire {
                    holder: self.holder.clone(),
                    ttl: Ttl::from_millis(TTL_MS).unwrap_or_else(|_| unreachable!("in range")),
                    lock_delay: LockDelay::NONE,
                    wait: if self.waits { WAIT } else { Micros::ZERO },
                };
                asks.push(self.send(now, op, history));
            }
            None => {}
        }
        asks
    }

    fn send(&mut self, now: u64, op: Op, history: &mut History) -> Ask {
        self.next_request += 1;
        let request = self.next_request;
        let index = history.invoke(&self.name, self.id, op.clone(), now);
        let wait = match &op {
            Op::Acquire { wait, .. } => wait.0,
            _ => 0,
        };
        let answer_by = now + wait + ANSWER_BOUND_US;
        self.pending = Some(Pending {
            request,
            op: op.clone(),
            sent: self.clock.local(now),
            answer_by,
        });
        Ask::Send {
            node: self.node,
            request,
            op,
            history: index,
        }
    }

    /// The answer to a request, as the contender receives it.
    pub fn answer(
        &mut self,
        now: u64,
        request: u64,
        result: &Result<Outcome, Failure>,
        rng: &mut SimRng,
        history: &mut History,
        rules: &Rules,
    ) -> Vec<Ask> {
        let Some(p) = self.pending.take_if(|p| p.request == request) else {
            return Vec::new();
        };
        if now > p.answer_by && self.stalled.is_none() {
            self.stalled = Some(format!(
                "{:?} by {} was answered after {} ms",
                p.op,
                self.holder,
                (now - (p.answer_by - ANSWER_BOUND_US)) / 1000
            ));
        }
        // A try-lock loop comes back within a few milliseconds; faster
        // only multiplies the events a run has to simulate.
        let pause = rng.between(500, 3_000);
        match result {
            Err(failure) => {
                if self.stalled.is_none() {
                    self.stalled = Some(format!("{:?} by {} failed: {failure}", p.op, self.holder));
                }
                vec![Ask::WakeAt(now + pause)]
            }
            Ok(Outcome::Granted { token, ttl }) => {
                let deadline = holder_deadline(p.sent, *ttl, rules, Micros::ZERO);
                if self.clock.local(now) < deadline {
                    history.hold(
                        &self.name,
                        Validity {
                            client: self.id,
                            token: *token,
                            from_us: now,
                            until_us: self.clock.true_at(deadline),
                        },
                    );
                }
                let release_at = now + rng.between(1_000, 3_000);
                self.held = Some((*token, release_at));
                vec![Ask::WakeAt(release_at)]
            }
            Ok(_) => vec![Ask::WakeAt(now + pause)],
        }
    }

    /// Its node died: it talks to `next` from now on. A request it was
    /// waiting on has an unknown outcome; it is sent again through `next`
    /// (an acquire by the same holder supersedes a lost grant; a release
    /// names its token), as a client does when its connection fails.
    pub fn lost_node(&mut self, now: u64, next: usize, history: &mut History) -> Vec<Ask> {
        self.node = next;
        match self.pending.take() {
            Some(p) => vec![self.send(now, p.op, history)],
            None => Vec::new(),
        }
    }

    /// Done: nothing asked, nothing held, and no more to ask.
    pub fn done(&self, now: u64) -> bool {
        self.pending.is_none() && self.held.is_none() && now >= self.until
    }

    /// A request still unanswered at the end of the run, past its bound.
    pub fn check_end(&mut self, now: u64) {
        if let Some(p) = &self.pending {
            if now > p.answer_by && self.stalled.is_none() {
                self.stalled = Some(format!("{:?} by {} was never answered", p.op, self.holder));
            }
        }
    }
}
