//! The lease rules: the register value and the operations on it, as pure
//! functions of `(value, age, op)`.
//!
//! `age` is a lower bound, in the judging node's clock, of the time since the
//! request that last started this lease's clock was sent (see
//! `docs/safety.md`). A lease counts as expired only when `age ≥ ttl·(1+ρ)`,
//! which guarantees at least `ttl` of real time has passed.
//!
//! - [`value`]: the register value, its token and its write log.
//! - [`queue`]: the waiting acquires, first come first served.

mod queue;
mod value;

pub use queue::{Waiter, WaiterId, Waiters, MAX_WAITERS};
pub use value::{Grant, LeaseValue, Token, WriteLog, REMEMBERED_WRITES};

use crate::bugs::{Bug, Bugs};
use crate::input::{HolderId, LockDelay, Ttl};
use crate::time::{DriftBound, Instant, Micros};
use serde::{Deserialize, Serialize};

/// What a client asks of a name's register.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// A new grant. By the current holder too: that supersedes its old grant
    /// with a higher token, which is how a retried acquire whose outcome was
    /// unknown resolves. With a `wait`, an acquire that finds the lease held
    /// joins the name's queue and is answered when the lease is handed to
    /// it, or with the conflict once `wait` has passed.
    Acquire {
        holder: HolderId,
        ttl: Ttl,
        lock_delay: LockDelay,
        wait: Micros,
    },
    /// Restart the clock of grant `token`, held by `holder`.
    Renew { holder: HolderId, token: Token },
    /// End grant `token`, held by `holder`.
    Release { holder: HolderId, token: Token },
    /// Observe the register.
    Read,
}

impl Op {
    pub fn is_read(&self) -> bool {
        matches!(self, Op::Read)
    }

    /// An acquire that may wait for the lease.
    pub fn waits(&self) -> bool {
        matches!(self, Op::Acquire { wait, .. } if *wait > Micros::ZERO)
    }

    /// The operation's name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Acquire { .. } => "acquire",
            Op::Renew { .. } => "renew",
            Op::Release { .. } => "release",
            Op::Read => "read",
        }
    }
}

/// How a name looks to a node judging it with a given age.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaseView {
    /// Nobody holds it; `token` is the last one granted.
    Free { token: Token },
    /// Held. `remaining` is how much longer, on the judging node's clock, the
    /// cluster will go on treating it as held unless it is renewed.
    /// `waiters` acquires are queued for it.
    Held {
        holder: HolderId,
        token: Token,
        ttl: Ttl,
        remaining: Micros,
        waiters: u32,
    },
    /// Expired without release and inside its lock-delay: nobody holds it,
    /// but only `holder` may acquire it for `remaining` more.
    LockDelayed {
        holder: HolderId,
        token: Token,
        remaining: Micros,
        waiters: u32,
    },
}

impl LeaseView {
    /// How long the name stays as it looks, unless someone changes it.
    pub fn remaining(&self) -> Option<Micros> {
        match self {
            LeaseView::Free { .. } => None,
            LeaseView::Held { remaining, .. } | LeaseView::LockDelayed { remaining, .. } => {
                Some(*remaining)
            }
        }
    }
}

/// The result of one operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Granted {
        token: Token,
        ttl: Ttl,
    },
    Renewed {
        token: Token,
        ttl: Ttl,
    },
    Released {
        token: Token,
    },
    Observed(LeaseView),
    /// Refused; the view says who holds the name or why it is unavailable.
    Conflict(LeaseView),
}

impl Outcome {
    /// The outcome's name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Granted { .. } => "granted",
            Outcome::Renewed { .. } => "renewed",
            Outcome::Released { .. } => "released",
            Outcome::Observed(_) => "observed",
            Outcome::Conflict(_) => "conflict",
        }
    }
}

/// Whether an operation writes, and what happens to the lease clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    /// A new grant, a renewal or a release: the lease clock restarts (age
    /// zero at acceptance), which is sound because the request that asked
    /// for it was sent before any acceptor accepts it.
    Fresh(LeaseValue),
    /// Only the queue changed: the grant is the same, so its clock goes on
    /// from the age observed, exactly as for a value proposed again
    /// unchanged. Restarting it would extend a lease nobody renewed.
    Kept(LeaseValue),
}

/// A waiting acquire as a round sees it: which waiter it is, and how much
/// longer it waits (zero on its last try, which leaves the queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Waiting {
    pub id: WaiterId,
    pub left: Micros,
}

/// What a round may tell a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    Reply(Outcome),
    /// The request waits on, in the queue or (when it is full) beside it;
    /// the view says how the lease stands.
    Wait(LeaseView),
}

/// The parameters of the lease rules, the same on every node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rules {
    pub drift: DriftBound,
    pub bugs: Bugs,
}

/// Judge a value at `age`.
pub fn view(value: &LeaseValue, age: Micros, rules: &Rules) -> LeaseView {
    let drift = rules.drift;
    let Some(grant) = &value.grant else {
        return LeaseView::Free { token: value.token };
    };
    let waiters = value.waiters.live_count(age);
    let held_for = drift.stretch(grant.ttl.as_micros());
    if age < held_for {
        return LeaseView::Held {
            holder: grant.holder.clone(),
            token: value.token,
            ttl: grant.ttl,
            remaining: held_for.saturating_sub(age),
            waiters,
        };
    }
    let delayed_for = drift.stretch(
        grant
            .ttl
            .as_micros()
            .saturating_add(grant.lock_delay.as_micros()),
    );
    if age < delayed_for {
        return LeaseView::LockDelayed {
            holder: grant.holder.clone(),
            token: value.token,
            remaining: delayed_for.saturating_sub(age),
            waiters,
        };
    }
    LeaseView::Free { token: value.token }
}

/// Apply `op` to `value` whose lease clock reads `age`. `waiting` names
/// the waiter when `op` is an acquire that may wait.
pub fn apply(
    value: &LeaseValue,
    age: Micros,
    op: &Op,
    waiting: Option<Waiting>,
    rules: &Rules,
) -> (Change, Answer) {
    let current = view(value, age, rules);
    let refused = |view| (Change::Unchanged, Answer::Reply(Outcome::Conflict(view)));
    match op {
        Op::Read => (Change::Unchanged, Answer::Reply(Outcome::Observed(current))),
        Op::Acquire {
            holder,
            ttl,
            lock_delay,
            ..
        } => {
            let ask = Ask {
                holder,
                ttl: *ttl,
                lock_delay: *lock_delay,
            };
            acquire(value, age, &ask, waiting, rules)
        }
        Op::Renew { holder, token } => match &current {
            LeaseView::Held {
                holder: h,
                token: t,
                ttl,
                ..
            } if h == holder && t == token => {
                let renewed = LeaseValue {
                    waiters: value.waiters.rebased(age),
                    ..value.clone()
                };
                let outcome = Outcome::Renewed {
                    token: *token,
                    ttl: *ttl,
                };
                (Change::Fresh(renewed), Answer::Reply(outcome))
            }
            _ => refused(current),
        },
        Op::Release { holder, token } => match &value.grant {
            // An expired grant may still be released by its holder: nobody
            // else holds it, and releasing ends its lock-delay early.
            Some(g) if &g.holder == holder && value.token == *token => {
                let freed = LeaseValue {
                    token: value.token,
                    grant: None,
                    waiters: value.waiters.rebased(age),
                    writes: value.writes.clone(),
                };
                // The first waiter gets the lease in the same write.
                let next = hand_off(&freed, Micros::ZERO, rules).unwrap_or(freed);
                let outcome = Outcome::Released { token: *token };
                (Change::Fresh(next), Answer::Reply(outcome))
            }
            _ => refused(current),
        },
    }
}

/// What an acquire asks for.
struct Ask<'a> {
    holder: &'a HolderId,
    ttl: Ttl,
    lock_delay: LockDelay,
}

fn acquire(
    value: &LeaseValue,
    age: Micros,
    ask: &Ask<'_>,
    waiting: Option<Waiting>,
    rules: &Rules,
) -> (Change, Answer) {
    let current = view(value, age, rules);
    let me = waiting.map(|w| w.id);
    // Handed to this waiter already (by a release, or by another's acquire
    // that found the lease free): the grant happened while it waited.
    if let (Some(id), Some(grant)) = (me, &value.grant) {
        if grant.waiter == Some(id) {
            let outcome = Outcome::Granted {
                token: value.token,
                ttl: grant.ttl,
            };
            return (Change::Unchanged, Answer::Reply(outcome));
        }
    }
    // The holder may always renew its claim with a new grant, queue or not;
    // a free lease goes to the first in line.
    let own = matches!(&current,
        LeaseView::Held { holder, .. } | LeaseView::LockDelayed { holder, .. } if holder == ask.holder);
    let first_in_line = value.waiters.head(age).is_none_or(|w| Some(w.id) == me);
    if own || (matches!(current, LeaseView::Free { .. }) && first_in_line) {
        return match grant_to(value, age, &current, ask, me, rules) {
            Some(granted) => {
                let outcome = Outcome::Granted {
                    token: granted.token,
                    ttl: granted.grant.as_ref().map_or(ask.ttl, |g| g.ttl),
                };
                (Change::Fresh(granted), Answer::Reply(outcome))
            }
            // 2^64 grants of one name cannot happen; refuse rather than reuse.
            None => (Change::Unchanged, Answer::Reply(Outcome::Conflict(current))),
        };
    }
    // Someone else is first in line: if the lease is free for them, it is
    // theirs now, whoever asked.
    let (mut next, age, fresh) = match hand_off(value, age, rules) {
        Some(handed) => (handed, Micros::ZERO, true),
        None => (value.clone(), age, false),
    };
    let mut queue_changed = false;
    if let Some(w) = waiting {
        let queued = next.waiters.contains(w.id);
        if w.left == Micros::ZERO {
            // The last try: leave the queue.
            if queued {
                next.waiters = next.waiters.without(w.id);
                queue_changed = true;
            }
        } else if !queued && next.waiters.live_count(age) < MAX_WAITERS as u32 {
            next.waiters = pruned(&next.waiters, age).with(Waiter {
                id: w.id,
                holder: ask.holder.clone(),
                ttl: ask.ttl,
                lock_delay: ask.lock_delay,
                until: age.saturating_add(rules.drift.stretch(w.left)),
            });
            queue_changed = true;
        }
    }
    let after = view(&next, age, rules);
    let change = if fresh {
        Change::Fresh(next)
    } else if queue_changed {
        Change::Kept(next)
    } else {
        Change::Unchanged
    };
    let answer = match waiting {
        Some(w) if w.left > Micros::ZERO => Answer::Wait(after),
        _ => Answer::Reply(Outcome::Conflict(after)),
    };
    (change, answer)
}

/// The queue without the entries that have given up by `age`, without
/// rebasing the others (the clock goes on).
fn pruned(waiters: &Waiters, age: Micros) -> Waiters {
    Waiters(waiters.live(age).cloned().collect())
}

/// The value with the lease granted to the first live waiter, if the lease
/// is free for it.
fn hand_off(value: &LeaseValue, age: Micros, rules: &Rules) -> Option<LeaseValue> {
    let head = value.waiters.head(age)?;
    let current = view(value, age, rules);
    let free_for_head = match &current {
        LeaseView::Free { .. } => true,
        LeaseView::Held { .. } => false,
        LeaseView::LockDelayed { holder, .. } => *holder == head.holder,
    };
    if !free_for_head {
        return None;
    }
    let ask = Ask {
        holder: &head.holder,
        ttl: head.ttl,
        lock_delay: head.lock_delay,
    };
    grant_to(value, age, &current, &ask, Some(head.id), rules)
}

/// A new grant of `value`, judged `current` at `age`, to `ask.holder`:
/// token + 1, a fresh clock, and `waiter` (if any) out of the queue.
fn grant_to(
    value: &LeaseValue,
    age: Micros,
    current: &LeaseView,
    ask: &Ask<'_>,
    waiter: Option<WaiterId>,
    rules: &Rules,
) -> Option<LeaseValue> {
    let next_token = value.token.0.checked_add(1)?;
    // A grant the holder may still be using. A new grant to the same
    // holder replaces it, possibly without the holder's knowledge (a
    // delayed or retried acquire), so it must not end any sooner: it keeps
    // at least the old ttl, counted from a later start.
    let superseded = match current {
        LeaseView::Held { holder, .. } if holder == ask.holder => value.grant.as_ref(),
        _ => None,
    };
    let token = if superseded.is_some() && rules.bugs.has(Bug::NoTokenBump) {
        value.token
    } else {
        Token(next_token)
    };
    let (ttl, lock_delay) = match superseded {
        Some(old) => (ask.ttl.max(old.ttl), ask.lock_delay.max(old.lock_delay)),
        None => (ask.ttl, ask.lock_delay),
    };
    let mut waiters = value.waiters.rebased(age);
    if let Some(id) = waiter {
        waiters = waiters.without(id);
    }
    Some(LeaseValue {
        token,
        grant: Some(Grant {
            holder: ask.holder.clone(),
            ttl,
            lock_delay,
            waiter,
        }),
        waiters,
        writes: value.writes.clone(),
    })
}

/// The instant, on the holder's own clock, after which it must stop acting
/// as holder of a grant it asked for at `sent`: `sent + ttl·(1-2ρ) - margin`.
///
/// The cluster lets another holder in only once `ttl` of real time has passed
/// since `sent`; the holder's clock may run slow by ρ, so it stops early
/// enough that its own reading cannot cover that moment. `margin` covers the
/// time the holder needs to actually stop (a child process to exit, say).
pub fn holder_deadline(sent: Instant, ttl: Ttl, rules: &Rules, margin: Micros) -> Instant {
    if rules.bugs.has(Bug::NoDriftMargin) {
        return sent.plus(ttl.as_micros());
    }
    sent.plus(
        rules
            .drift
            .shrink_for_holder(ttl.as_micros())
            .saturating_sub(margin),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::Ballot;
    use proptest::prelude::*;

    const RHO: &Rules = &Rules {
        drift: DriftBound::DEFAULT,
        bugs: Bugs::NONE,
    };

    fn h(s: &str) -> HolderId {
        HolderId::new(s).unwrap()
    }
    fn ttl(ms: u64) -> Ttl {
        Ttl::from_millis(ms).unwrap()
    }
    fn acquire(holder: &str, ttl_ms: u64) -> Op {
        Op::Acquire {
            holder: h(holder),
            ttl: ttl(ttl_ms),
            lock_delay: LockDelay::NONE,
            wait: Micros::ZERO,
        }
    }
    /// `apply` for a request that does not wait: it is always answered.
    fn apply(value: &LeaseValue, age: Micros, op: &Op, rules: &Rules) -> (Change, Outcome) {
        match super::apply(value, age, op, None, rules) {
            (change, Answer::Reply(outcome)) => (change, outcome),
            (_, Answer::Wait(_)) => panic!("a request without a wait was told to wait"),
        }
    }
    fn held_by(holder: &str, token: u64, ttl_ms: u64) -> LeaseValue {
        LeaseValue {
            token: Token(token),
            grant: Some(Grant {
                holder: h(holder),
                ttl: ttl(ttl_ms),
                lock_delay: LockDelay::NONE,
                waiter: None,
            }),
            waiters: Waiters::default(),
            writes: WriteLog::default(),
        }
    }
    fn ms(n: u64) -> Micros {
        Micros::from_millis(n)
    }

    #[test]
    fn acquire_of_a_free_name_grants_the_next_token() {
        let (change, outcome) = apply(
            &LeaseValue::default(),
            Micros::ZERO,
            &acquire("a", 1000),
            RHO,
        );
        assert_eq!(change, Change::Fresh(held_by("a", 1, 1000)));
        assert_eq!(
            outcome,
            Outcome::Granted {
                token: Token(1),
                ttl: ttl(1000)
            }
        );
    }

    #[test]
    fn acquire_of_a_held_name_reports_holder_token_and_remaining() {
        let (change, outcome) = apply(&held_by("a", 4, 1000), ms(400), &acquire("b", 1000), RHO);
        assert_eq!(change, Change::Unchanged);
        assert_eq!(
            outcome,
            Outcome::Conflict(LeaseView::Held {
                holder: h("a"),
                token: Token(4),
                ttl: ttl(1000),
                remaining: ms(601),
                waiters: 0,
            })
        );
    }

    #[test]
    fn acquire_by_the_holder_supersedes_its_grant_with_a_higher_token() {
        let (change, outcome) = apply(&held_by("a", 4, 1000), ms(10), &acquire("a", 2000), RHO);
        assert_eq!(change, Change::Fresh(held_by("a", 5, 2000)));
        assert_eq!(
            outcome,
            Outcome::Granted {
                token: Token(5),
                ttl: ttl(2000)
            }
        );
    }

    #[test]
    fn a_regrant_to_the_holder_never_shortens_its_lease() {
        // Pins a bug the simulator found (seed 175): a long-delayed acquire
        // by the holder, with a short ttl, superseded the holder's later
        // long grant; the short grant expired and another holder got the
        // lease while the first still, rightly, believed it held it.
        let (change, outcome) = apply(&held_by("a", 7, 275), ms(60), &acquire("a", 27), RHO);
        assert_eq!(change, Change::Fresh(held_by("a", 8, 275)));
        assert_eq!(
            outcome,
            Outcome::Granted {
                token: Token(8),
                ttl: ttl(275)
            }
        );
        // Once the old grant has expired, the new ttl is the asked one.
        let (_, outcome) = apply(&held_by("a", 7, 275), ms(400), &acquire("a", 27), RHO);
        assert_eq!(
            outcome,
            Outcome::Granted {
                token: Token(8),
                ttl: ttl(27)
            }
        );
    }

    #[test]
    fn a_lease_expires_only_after_ttl_stretched_for_drift() {
        let value = held_by("a", 1, 1000);
        // 1000 ms · (1 + 1e-3) = 1001 ms.
        assert!(matches!(
            apply(&value, ms(1000), &acquire("b", 1000), RHO).1,
            Outcome::Conflict(_)
        ));
        assert!(matches!(
            apply(
                &value,
                ms(1001).saturating_sub(Micros(1)),
                &acquire("b", 1000),
                RHO
            )
            .1,
            Outcome::Conflict(_)
        ));
        assert_eq!(
            apply(&value, ms(1001), &acquire("b", 1000), RHO).1,
            Outcome::Granted {
                token: Token(2),
                ttl: ttl(1000)
            }
        );
    }

    #[test]
    fn lock_delay_keeps_others_out_after_an_expiry_but_not_the_holder() {
        let mut value = held_by("a", 3, 1000);
        if let Some(g) = value.grant.as_mut() {
            g.lock_delay = LockDelay::from_millis(500).unwrap();
        }
        let (_, other) = apply(&value, ms(1200), &acquire("b", 1000), RHO);
        assert!(matches!(
            other,
            Outcome::Conflict(LeaseView::LockDelayed { .. })
        ));
        let (_, same) = apply(&value, ms(1200), &acquire("a", 1000), RHO);
        assert!(matches!(
            same,
            Outcome::Granted {
                token: Token(4),
                ..
            }
        ));
        let (_, later) = apply(&value, ms(1502), &acquire("b", 1000), RHO);
        assert!(matches!(
            later,
            Outcome::Granted {
                token: Token(4),
                ..
            }
        ));
    }

    #[test]
    fn renew_needs_the_holder_and_the_token_of_the_current_grant() {
        let value = held_by("a", 7, 1000);
        let renew = |holder: &str, token: u64| Op::Renew {
            holder: h(holder),
            token: Token(token),
        };
        assert_eq!(
            apply(&value, ms(500), &renew("a", 7), RHO),
            (
                Change::Fresh(value.clone()),
                Outcome::Renewed {
                    token: Token(7),
                    ttl: ttl(1000)
                }
            )
        );
        assert!(matches!(
            apply(&value, ms(500), &renew("a", 6), RHO).1,
            Outcome::Conflict(_)
        ));
        assert!(matches!(
            apply(&value, ms(500), &renew("b", 7), RHO).1,
            Outcome::Conflict(_)
        ));
    }

    #[test]
    fn renewal_never_extends_a_dead_lease() {
        let value = held_by("a", 7, 1000);
        let (change, outcome) = apply(
            &value,
            ms(1001),
            &Op::Renew {
                holder: h("a"),
                token: Token(7),
            },
            RHO,
        );
        assert_eq!(change, Change::Unchanged);
        assert!(matches!(outcome, Outcome::Conflict(LeaseView::Free { .. })));
    }

    #[test]
    fn a_delayed_release_of_an_earlier_grant_cannot_end_a_later_one() {
        // The holder re-acquired (token 8) after sending a release of token 7.
        let value = held_by("a", 8, 1000);
        let (change, outcome) = apply(
            &value,
            ms(1),
            &Op::Release {
                holder: h("a"),
                token: Token(7),
            },
            RHO,
        );
        assert_eq!(change, Change::Unchanged);
        assert!(matches!(
            outcome,
            Outcome::Conflict(LeaseView::Held {
                token: Token(8),
                ..
            })
        ));
    }

    #[test]
    fn release_keeps_the_token_so_the_next_grant_is_higher() {
        let (change, outcome) = apply(
            &held_by("a", 8, 1000),
            ms(1),
            &Op::Release {
                holder: h("a"),
                token: Token(8),
            },
            RHO,
        );
        assert_eq!(outcome, Outcome::Released { token: Token(8) });
        let Change::Fresh(released) = change else {
            panic!("release must write")
        };
        assert_eq!(
            released,
            LeaseValue {
                token: Token(8),
                grant: None,
                waiters: Waiters::default(),
                writes: WriteLog::default(),
            }
        );
        let (_, next) = apply(&released, Micros::ZERO, &acquire("b", 1000), RHO);
        assert!(matches!(
            next,
            Outcome::Granted {
                token: Token(9),
                ..
            }
        ));
    }

    #[test]
    fn the_holder_stops_before_real_time_can_reach_the_ttl() {
        let sent = Instant::from_micros(1_000);
        let deadline = holder_deadline(sent, ttl(1000), RHO, ms(5));
        assert_eq!(deadline, sent.plus(ms(998).saturating_sub(ms(5))));
        // Even on a clock running slow by ρ, that reading comes before the
        // ttl has passed in real time.
        let real = (deadline.since(sent).0 as f64) / (1.0 - 1e-3);
        assert!(real < 1_000_000.0);
    }

    #[test]
    fn the_write_log_tells_whether_a_recent_write_was_a_given_ballot() {
        let b = |c| Ballot {
            counter: c,
            node: 1,
            incarnation: 1,
        };
        let mut log = WriteLog::default();
        let writes = REMEMBERED_WRITES as u64 + 2;
        for c in 1..=writes {
            log = log.after(b(c));
        }
        assert_eq!(log.count, writes);
        assert_eq!(log.wrote(writes, b(writes)), Some(true));
        assert_eq!(log.wrote(3, b(3)), Some(true));
        assert_eq!(log.wrote(3, b(4)), Some(false));
        assert_eq!(log.wrote(writes + 1, b(7)), Some(false), "not written yet");
        assert_eq!(log.wrote(2, b(2)), None, "forgotten");
        // A slot never filled (or forgotten in an upgrade) cannot tell.
        let mut partial = log.clone();
        partial.recent[3] = Ballot::ZERO;
        assert_eq!(partial.wrote(3, b(3)), None);
    }

    #[test]
    fn reads_never_write() {
        let (change, outcome) = apply(&held_by("a", 1, 1000), ms(2000), &Op::Read, RHO);
        assert_eq!(change, Change::Unchanged);
        assert_eq!(
            outcome,
            Outcome::Observed(LeaseView::Free { token: Token(1) })
        );
    }

    fn wid(seq: u64) -> WaiterId {
        WaiterId {
            node: 1,
            incarnation: 1,
            seq,
        }
    }
    fn waiting(seq: u64, left_ms: u64) -> Option<Waiting> {
        Some(Waiting {
            id: wid(seq),
            left: ms(left_ms),
        })
    }
    fn waiter(holder: &str, seq: u64, until_ms: u64) -> Waiter {
        Waiter {
            id: wid(seq),
            holder: h(holder),
            ttl: ttl(1000),
            lock_delay: LockDelay::NONE,
            until: ms(until_ms),
        }
    }
    fn with_queue(mut value: LeaseValue, queue: Vec<Waiter>) -> LeaseValue {
        value.waiters = Waiters(queue);
        value
    }

    #[test]
    fn a_waiting_acquire_joins_the_queue_without_restarting_the_lease_clock() {
        let value = held_by("a", 4, 1000);
        let (change, answer) =
            super::apply(&value, ms(400), &acquire("b", 1000), waiting(7, 2000), RHO);
        // Joined at age 400 for 2000 ms (stretched for drift): until 2402.
        let joined = with_queue(value.clone(), vec![waiter("b", 7, 2402)]);
        assert_eq!(change, Change::Kept(joined.clone()));
        let Answer::Wait(LeaseView::Held {
            holder, waiters, ..
        }) = answer
        else {
            panic!("a waiter waits while the lease is held: {answer:?}")
        };
        assert_eq!((holder.as_str(), waiters), ("a", 1));
        // Asking again changes nothing: it is queued once.
        let (change, _) =
            super::apply(&joined, ms(500), &acquire("b", 1000), waiting(7, 1900), RHO);
        assert_eq!(change, Change::Unchanged);
    }

    #[test]
    fn a_release_hands_the_lease_to_the_first_waiter_in_the_same_write() {
        let value = with_queue(
            held_by("a", 4, 1000),
            vec![waiter("b", 7, 5000), waiter("c", 8, 5000)],
        );
        let release = Op::Release {
            holder: h("a"),
            token: Token(4),
        };
        let (change, outcome) = apply(&value, ms(300), &release, RHO);
        assert_eq!(outcome, Outcome::Released { token: Token(4) });
        let Change::Fresh(next) = change else {
            panic!("a release writes")
        };
        assert_eq!(next.token, Token(5));
        let grant = next.grant.clone().unwrap();
        assert_eq!((grant.holder.as_str(), grant.waiter), ("b", Some(wid(7))));
        // The clock restarts: the one left waiting is rebased to it.
        assert_eq!(next.waiters, Waiters(vec![waiter("c", 8, 4700)]));
        // The waiter then finds its grant, without another write.
        let (change, answer) =
            super::apply(&next, ms(1), &acquire("b", 1000), waiting(7, 4000), RHO);
        assert_eq!(change, Change::Unchanged);
        assert_eq!(
            answer,
            Answer::Reply(Outcome::Granted {
                token: Token(5),
                ttl: ttl(1000)
            })
        );
    }

    #[test]
    fn a_free_lease_goes_to_the_first_waiter_not_to_whoever_asks() {
        // Expired without a release, with b queued: c's try goes to b.
        let value = with_queue(held_by("a", 4, 1000), vec![waiter("b", 7, 5000)]);
        let (change, outcome) = apply(&value, ms(1500), &acquire("c", 1000), RHO);
        let Change::Fresh(next) = change else {
            panic!("the hand-off writes")
        };
        assert_eq!(next.grant.as_ref().unwrap().holder.as_str(), "b");
        assert!(matches!(
            outcome,
            Outcome::Conflict(LeaseView::Held { ref holder, token: Token(5), .. }) if holder.as_str() == "b"
        ));
        // A waiter behind the head hands over to the head, and waits on.
        let value = with_queue(
            held_by("a", 4, 1000),
            vec![waiter("b", 7, 5000), waiter("c", 8, 5000)],
        );
        let (change, answer) =
            super::apply(&value, ms(1500), &acquire("c", 1000), waiting(8, 3000), RHO);
        let Change::Fresh(next) = change else {
            panic!("the hand-off writes")
        };
        assert_eq!(next.grant.as_ref().unwrap().waiter, Some(wid(7)));
        assert_eq!(next.waiters, Waiters(vec![waiter("c", 8, 3500)]));
        assert!(matches!(
            answer,
            Answer::Wait(LeaseView::Held { waiters: 1, .. })
        ));
        // The head itself takes a free lease.
        let (change, answer) =
            super::apply(&value, ms(1500), &acquire("b", 1000), waiting(7, 3000), RHO);
        assert!(matches!(change, Change::Fresh(_)));
        assert!(matches!(
            answer,
            Answer::Reply(Outcome::Granted {
                token: Token(5),
                ..
            })
        ));
    }

    #[test]
    fn a_waiters_last_try_leaves_the_queue() {
        let value = with_queue(held_by("a", 4, 1000), vec![waiter("b", 7, 5000)]);
        let (change, answer) =
            super::apply(&value, ms(100), &acquire("b", 1000), waiting(7, 0), RHO);
        assert_eq!(change, Change::Kept(held_by("a", 4, 1000)));
        assert!(matches!(
            answer,
            Answer::Reply(Outcome::Conflict(LeaseView::Held { waiters: 0, .. }))
        ));
    }

    #[test]
    fn a_waiter_that_gave_up_is_skipped_and_dropped() {
        let value = with_queue(
            held_by("a", 4, 1000),
            vec![waiter("b", 7, 100), waiter("c", 8, 5000)],
        );
        let release = Op::Release {
            holder: h("a"),
            token: Token(4),
        };
        let (Change::Fresh(next), _) = apply(&value, ms(200), &release, RHO) else {
            panic!("a release writes")
        };
        assert_eq!(next.grant.unwrap().holder.as_str(), "c");
        assert!(next.waiters.is_empty());
    }

    #[test]
    fn the_queue_is_bounded_and_a_waiter_beyond_it_waits_outside() {
        let queue = (0..MAX_WAITERS as u64)
            .map(|i| waiter("q", i, 5000))
            .collect();
        let value = with_queue(held_by("a", 4, 1000), queue);
        let (change, answer) =
            super::apply(&value, ms(1), &acquire("b", 1000), waiting(999, 1000), RHO);
        assert_eq!(change, Change::Unchanged);
        assert!(matches!(answer, Answer::Wait(_)));
    }

    #[test]
    fn a_queued_waiter_waits_out_the_lock_delay_of_another_holder() {
        let mut value = with_queue(held_by("a", 4, 1000), vec![waiter("b", 7, 9000)]);
        if let Some(g) = value.grant.as_mut() {
            g.lock_delay = LockDelay::from_millis(500).unwrap();
        }
        let (change, answer) =
            super::apply(&value, ms(1200), &acquire("b", 1000), waiting(7, 5000), RHO);
        assert_eq!(change, Change::Unchanged);
        assert!(matches!(
            answer,
            Answer::Wait(LeaseView::LockDelayed { .. })
        ));
        let (change, _) =
            super::apply(&value, ms(1600), &acquire("b", 1000), waiting(7, 5000), RHO);
        assert!(matches!(change, Change::Fresh(_)));
    }

    #[test]
    fn a_renewal_keeps_the_queue_on_the_restarted_clock() {
        let value = with_queue(held_by("a", 4, 1000), vec![waiter("b", 7, 5000)]);
        let renew = Op::Renew {
            holder: h("a"),
            token: Token(4),
        };
        let (change, _) = apply(&value, ms(300), &renew, RHO);
        assert_eq!(
            change,
            Change::Fresh(with_queue(
                held_by("a", 4, 1000),
                vec![waiter("b", 7, 4700)]
            ))
        );
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let holder = prop::sample::select(vec!["a", "b", "c"]).prop_map(h);
        let token = (0u64..6).prop_map(Token);
        prop_oneof![
            (holder.clone(), 10u64..3000, 0u64..500).prop_map(|(holder, t, d)| Op::Acquire {
                holder,
                ttl: ttl(t),
                lock_delay: LockDelay::from_millis(d).unwrap(),
                wait: Micros::ZERO,
            }),
            (holder.clone(), token.clone()).prop_map(|(holder, token)| Op::Renew { holder, token }),
            (holder, token).prop_map(|(holder, token)| Op::Release { holder, token }),
            Just(Op::Read),
        ]
    }

    proptest! {
        /// Fencing: along any history, the token never decreases, rises by
        /// exactly one on each grant and never moves otherwise.
        #[test]
        fn tokens_rise_by_one_per_grant_and_never_otherwise(
            steps in prop::collection::vec((arb_op(), 0u64..4000), 1..60)
        ) {
            let mut value = LeaseValue::default();
            for (op, age_ms) in steps {
                let (change, outcome) = apply(&value, ms(age_ms), &op, RHO);
                match (&change, &outcome) {
                    (Change::Fresh(next), Outcome::Granted { token, .. }) => {
                        prop_assert_eq!(token.0, value.token.0 + 1);
                        prop_assert_eq!(next.token, *token);
                    }
                    (Change::Fresh(next), _) => prop_assert_eq!(next.token, value.token),
                    (Change::Unchanged, Outcome::Granted { .. }) => prop_assert!(false, "a grant must write"),
                    (Change::Unchanged, _) => {}
                    (Change::Kept(_), _) => prop_assert!(false, "no queue without waiting acquires"),
                }
                if let Change::Fresh(next) = change { value = next; }
            }
        }

        /// Exclusivity at the rule level: a grant to one holder is refused to
        /// every other while the lease is still held at that age.
        #[test]
        fn no_grant_to_another_while_held(op in arb_op(), age_ms in 0u64..4000, ttl_ms in 10u64..3000) {
            let value = held_by("a", 3, ttl_ms);
            let still_held = ms(age_ms) < RHO.drift.stretch(ms(ttl_ms));
            let (_, outcome) = apply(&value, ms(age_ms), &op, RHO);
            if let (Outcome::Granted { .. }, Op::Acquire { holder, .. }) = (&outcome, &op) {
                prop_assert!(!still_held || holder.as_str() == "a");
            }
        }

        /// First come, first served: waiters that join a held lease get it
        /// in the order they joined, each from the release before it.
        #[test]
        fn waiters_are_granted_in_the_order_they_joined(n in 1usize..12, age_ms in 0u64..900) {
            let mut value = held_by("a", 1, 1000);
            for i in 0..n {
                let op = acquire(&format!("w{i}"), 1000);
                let (change, answer) = super::apply(&value, ms(age_ms), &op, waiting(i as u64, 60_000), RHO);
                prop_assert!(matches!(answer, Answer::Wait(_)));
                let Change::Kept(next) = change else { panic!("joining changes only the queue") };
                value = next;
            }
            let mut holder = "a".to_string();
            for i in 0..n {
                let release = Op::Release { holder: h(&holder), token: value.token };
                let (Change::Fresh(next), Outcome::Released { .. }) = apply(&value, ms(age_ms), &release, RHO) else {
                    panic!("the holder's release is taken")
                };
                let grant = next.grant.clone().unwrap();
                prop_assert_eq!(grant.holder.as_str(), format!("w{i}"));
                prop_assert_eq!(next.token.0, value.token.0 + 1);
                holder = grant.holder.as_str().to_string();
                value = next;
            }
            prop_assert!(value.waiters.is_empty());
        }

        /// Refusals change nothing.
        #[test]
        fn conflicts_and_reads_are_unchanged(op in arb_op(), age_ms in 0u64..4000) {
            let value = held_by("b", 2, 1000);
            let (change, outcome) = apply(&value, ms(age_ms), &op, RHO);
            if matches!(outcome, Outcome::Conflict(_) | Outcome::Observed(_)) {
                prop_assert_eq!(change, Change::Unchanged);
            }
        }
    }
}
