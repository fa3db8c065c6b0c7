//! A simulated client: acquires, renews at ttl/3, releases, reads, gives up
//! on requests that take too long and sometimes retries them. It acts as
//! holder only until its own local deadline, exactly as the client library
//! does, and records in the history when it believed it held what.

use crate::clock::Clock;
use crate::history::{History, Validity};
use crate::rng::SimRng;
use tenure_core::{
    holder_deadline, Failure, HolderId, Instant, LeaseName, LeaseView, LockDelay, Micros, Op,
    Outcome, Rules, Token, Ttl,
};

/// How long a client waits for a reply before it gives up on a request.
const REQUEST_TIMEOUT_US: u64 = 400_000;
/// What the holder keeps for itself to stop in time.
pub const HOLDER_MARGIN: Micros = Micros(0);

pub enum Action {
    /// `history` is the operation's index in the history of `name`.
    Send {
        node: usize,
        request: u64,
        name: LeaseName,
        op: Op,
        history: usize,
    },
    WakeAt(u64),
}

struct Pending {
    request: u64,
    name: LeaseName,
    op: Op,
    sent: Instant,
    give_up_at: u64,
}

struct Held {
    name: LeaseName,
    token: Token,
    deadline: Instant,
    renew_at: Instant,
    release_at: Instant,
}

/// How often an operation goes to a cold name, per million.
const COLD_NAME_PPM: u32 = 20_000;

/// How many cold names there are: used rarely, so that they die and are
/// compacted mid-run, and then come back.
const COLD_NAMES: u64 = 16;

pub struct Client {
    pub id: usize,
    holder: HolderId,
    clock: Clock,
    names: Vec<LeaseName>,
    nodes: usize,
    home: usize,
    pending: Option<Pending>,
    held: Option<Held>,
    /// Requests this client ever sent, to keep ids unique across clients.
    next_request: u64,
    stall_ppm: u32,
    /// An acquire to try again when the holder's reported time runs out.
    retry: Option<(LeaseName, Op, Instant)>,
    pub stopped: bool,
}

impl Client {
    pub fn new(
        id: usize,
        clock: Clock,
        names: Vec<LeaseName>,
        nodes: usize,
        home: usize,
        stall_ppm: u32,
    ) -> Client {
        Client {
            id,
            holder: HolderId::new(&format!("client-{id}"))
                .unwrap_or_else(|_| unreachable!("ids are short")),
            clock,
            names,
            nodes,
            home,
            pending: None,
            held: None,
            next_request: 0,
            stall_ppm,
            retry: None,
            stopped: false,
        }
    }

    /// Mostly one of the busy names; now and then one of the cold names,
    /// which go idle long enough between uses to be compacted and then
    /// come back.
    fn pick_name(&self, rng: &mut SimRng) -> LeaseName {
        if rng.chance(COLD_NAME_PPM) {
            let name = format!("cold-{}", rng.below(COLD_NAMES));
            return LeaseName::new(&name).unwrap_or_else(|_| unreachable!("a valid name"));
        }
        rng.pick(&self.names).clone()
    }

    fn local(&self, now: u64) -> Instant {
        self.clock.local(now)
    }

    fn send(
        &mut self,
        now: u64,
        name: LeaseName,
        op: Op,
        history: &mut History,
        rng: &mut SimRng,
    ) -> Action {
        self.next_request += 1;
        let request = (self.id as u64) << 40 | self.next_request;
        let index = history.invoke(&name, self.id, op.clone(), now);
        // Mostly the same node, for the fast path; sometimes another.
        let node = if rng.chance(800_000) {
            self.home
        } else {
            rng.below(self.nodes as u64) as usize
        };
        self.pending = Some(Pending {
            request,
            name: name.clone(),
            op: op.clone(),
            sent: self.local(now),
            give_up_at: now + REQUEST_TIMEOUT_US,
        });
        Action::Send {
            node,
            request,
            name,
            op,
            history: index,
        }
    }

    /// The client's own timer.
    pub fn wake(
        &mut self,
        now: u64,
        rng: &mut SimRng,
        history: &mut History,
        rules: &Rules,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let local = self.local(now);
        if self.held.as_ref().is_some_and(|h| local >= h.deadline) {
            // The deadline passed: the validity recorded at the grant ends here.
            self.held = None;
        }
        if let Some(p) = &self.pending {
            if now >= p.give_up_at {
                // Unknown outcome: the history keeps it open. An abandoned
                // acquire is retried by the same holder half the time, which
                // supersedes whatever the first one did.
                let retry = matches!(p.op, Op::Acquire { .. }) && rng.chance(500_000);
                let (name, op) = (p.name.clone(), p.op.clone());
                self.pending = None;
                self.home = rng.below(self.nodes as u64) as usize;
                if retry && !self.stopped {
                    actions.push(self.send(now, name, op, history, rng));
                }
            }
        }
        if self.pending.is_none() && !self.stopped {
            if let Some(h) = &self.held {
                if local >= h.release_at {
                    // Stop acting, then release.
                    let (name, token) = (h.name.clone(), h.token);
                    history.stop_holding(&name, self.id, token, now);
                    self.held = None;
                    let op = Op::Release {
                        holder: self.holder.clone(),
                        token,
                    };
                    actions.push(self.send(now, name, op, history, rng));
                } else if local >= h.renew_at {
                    let (name, token) = (h.name.clone(), h.token);
                    let op = Op::Renew {
                        holder: self.holder.clone(),
                        token,
                    };
                    actions.push(self.send(now, name, op, history, rng));
                }
            } else if let Some((name, op, at)) = self.retry.take() {
                if local >= at {
                    actions.push(self.send(now, name, op, history, rng));
                } else {
                    self.retry = Some((name, op, at));
                }
            } else if rng.chance(300_000) {
                let name = self.pick_name(rng);
                actions.push(self.send(now, name, Op::Read, history, rng));
            } else if rng.chance(700_000) {
                let name = self.pick_name(rng);
                let ttl = Ttl::from_millis(rng.between(20, 1_000))
                    .unwrap_or_else(|_| unreachable!("in range"));
                let lock_delay = if rng.chance(200_000) {
                    LockDelay::from_millis(rng.between(1, 100)).unwrap_or_default()
                } else {
                    LockDelay::NONE
                };
                let op = Op::Acquire {
                    holder: self.holder.clone(),
                    ttl,
                    lock_delay,
                    wait: Micros::ZERO,
                };
                actions.push(self.send(now, name, op, history, rng));
            }
        }
        actions.push(Action::WakeAt(self.next_wake(now, rng, rules)));
        actions
    }

    fn next_wake(&self, now: u64, rng: &mut SimRng, _rules: &Rules) -> u64 {
        let mut at = now + rng.between(500, 20_000);
        if let Some(p) = &self.pending {
            at = at.min(p.give_up_at);
        }
        // A stopped client starts nothing: only its deadline still matters.
        if let (None, Some((_, _, retry)), false) = (&self.pending, &self.retry, self.stopped) {
            at = at.min(self.clock.true_at(*retry).max(now + 1));
        }
        if let Some(h) = &self.held {
            // Renewal and release wait for the request in flight; the
            // deadline does not.
            let idle = self.pending.is_none() && !self.stopped;
            let due = [
                Some(h.deadline),
                idle.then_some(h.renew_at),
                idle.then_some(h.release_at),
            ];
            for t in due.into_iter().flatten() {
                at = at.min(self.clock.true_at(t).max(now + 1));
            }
        }
        at
    }

    /// A reply from the cluster. (The world records outcomes in the history
    /// when the node sends them; the client only acts on what it receives.)
    pub fn answer(
        &mut self,
        now: u64,
        request: u64,
        result: Result<Outcome, Failure>,
        rng: &mut SimRng,
        history: &mut History,
        rules: &Rules,
    ) {
        // A late answer to an abandoned request: the client no longer acts on it.
        let Some(p) = self.pending.take_if(|p| p.request == request) else {
            return;
        };
        let Ok(outcome) = result else {
            self.home = rng.below(self.nodes as u64) as usize;
            return;
        };
        let local = self.local(now);
        match outcome {
            Outcome::Granted { token, ttl } => {
                if let Some(old) = self.held.take() {
                    history.stop_holding(&old.name, self.id, old.token, now);
                }
                let deadline = holder_deadline(p.sent, ttl, rules, HOLDER_MARGIN);
                if local >= deadline {
                    return; // Too late to use.
                }
                history.hold(
                    &p.name,
                    Validity {
                        client: self.id,
                        token,
                        from_us: now,
                        until_us: self.clock.true_at(deadline),
                    },
                );
                let third = Micros(ttl.as_micros().0 / 3);
                // A stalled holder never renews; it just runs to its deadline.
                let renew_at = if rng.chance(self.stall_ppm) {
                    deadline
                } else {
                    p.sent.plus(third)
                };
                self.held = Some(Held {
                    name: p.name,
                    token,
                    deadline,
                    renew_at,
                    release_at: local.plus(Micros(rng.between(0, 3 * ttl.as_micros().0))),
                });
            }
            Outcome::Renewed { token, ttl } => {
                let Some(h) = self
                    .held
                    .as_mut()
                    .filter(|h| h.token == token && h.name == p.name)
                else {
                    return;
                };
                let deadline = holder_deadline(p.sent, ttl, rules, HOLDER_MARGIN);
                if deadline > h.deadline {
                    h.deadline = deadline;
                    history.extend_holding(&p.name, self.id, token, self.clock.true_at(deadline));
                }
                h.renew_at = p.sent.plus(Micros(ttl.as_micros().0 / 3));
            }
            Outcome::Conflict(view) => {
                // A waiter comes back the moment the holder's time is up,
                // as the server's long poll does: that is when exclusivity
                // is tested hardest.
                if let (
                    Op::Acquire { .. },
                    LeaseView::Held { remaining, .. } | LeaseView::LockDelayed { remaining, .. },
                ) = (&p.op, &view)
                {
                    self.retry = Some((p.name.clone(), p.op.clone(), local.plus(*remaining)));
                }
                if let (Op::Renew { token, .. }, Some(h)) = (&p.op, &self.held) {
                    if h.token == *token && h.name == p.name {
                        history.stop_holding(&p.name, self.id, *token, now);
                        self.held = None;
                    }
                }
            }
            Outcome::Released { .. } | Outcome::Observed(_) => {}
        }
    }

    pub fn holding(&self) -> bool {
        self.held.is_some()
    }
}
