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
//! - [`history`]: what each operation did, in an operator's words.

mod history;
mod queue;
mod value;

pub use history::{transitions, Transition, TransitionKind};
pub use queue::{OutOfTouch, Waiter, WaiterId, Waiters, MAX_WAITERS};
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
    /// An operator ends grant `token`, whoever holds it, as if it had
    /// expired now: the name stays in its lock-delay until ttl + lock-delay
    /// from now, by when the forced-out holder has stopped by its own
    /// clock (its renewals are refused from now on).
    Force { token: Token },
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

    /// Where the operation goes in a round's batch. Every operation of a
    /// batch is pending at once, so any order of them is a linearization;
    /// this one ends grants before it takes new ones. So an acquire that
    /// arrived just before the release it races is granted in the same
    /// write instead of refused, and a lock under contention changes hands
    /// in one write rather than two. Reads come last, and see the batch's
    /// writes.
    pub fn batch_rank(&self) -> u8 {
        match self {
            Op::Release { .. } | Op::Force { .. } => 0,
            Op::Renew { .. } => 1,
            Op::Acquire { .. } => 2,
            Op::Read => 3,
        }
    }

    /// The operation's name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Acquire { .. } => "acquire",
            Op::Renew { .. } => "renew",
            Op::Release { .. } => "release",
            Op::Force { .. } => "force",
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
    if age < held_for && !grant.expired {
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

/// Whether `value` is in the same state (held, in its lock-delay, or free)
/// at both ages: whether the time between them decides nothing.
pub fn same_status(value: &LeaseValue, younger: Micros, older: Micros, rules: &Rules) -> bool {
    std::mem::discriminant(&view(value, younger, rules))
        == std::mem::discriminant(&view(value, older, rules))
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
    apply_passing_over(value, age, op, waiting, rules, OutOfTouch::NONE)
}

/// `apply`, judged by a node out of touch with the nodes in `out`: the
/// lease is handed to the first waiter on a node it is in touch with.
pub fn apply_passing_over(
    value: &LeaseValue,
    age: Micros,
    op: &Op,
    waiting: Option<Waiting>,
    rules: &Rules,
    out: OutOfTouch<'_>,
) -> (Change, Answer) {
    // A grant this round is the first to find past its ttl: that finding
    // is written with whatever the operation does, so that no later answer
    // can show the grant held again.
    if let Some(expired) = expiry_to_write(value, age, rules) {
        let (change, answer) = apply_passing_over(&expired, age, op, waiting, rules, out);
        let change = match change {
            Change::Unchanged => Change::Kept(expired),
            written => written,
        };
        return (change, answer);
    }
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
            acquire(value, age, &ask, waiting, rules, out)
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
        // Only a grant still held may be released. Once it has expired,
        // its holder may have gone on acting without knowing it, and the
        // lock-delay is there to keep the next holder out meanwhile: a
        // release that comes late must not end it.
        Op::Release { holder, token } => match &current {
            LeaseView::Held {
                holder: h,
                token: t,
                ..
            } if h == holder && t == token => {
                let freed = LeaseValue {
                    token: value.token,
                    grant: None,
                    waiters: value.waiters.rebased(age),
                    writes: value.writes.clone(),
                };
                // The first waiter gets the lease in the same write.
                let next = hand_off(&freed, Micros::ZERO, rules, out).unwrap_or(freed);
                let outcome = Outcome::Released { token: *token };
                (Change::Fresh(next), Answer::Reply(outcome))
            }
            _ => refused(current),
        },
        // Marked expired and restarted (age zero), the grant keeps the name
        // from everyone but its holder for stretch(ttl + lock-delay): the
        // holder's own validity, counted from a renewal sent before now,
        // ends sooner. So a forced release never lets two hold at once.
        Op::Force { token } => match &current {
            LeaseView::Held { token: t, .. } if t == token => {
                let forced = LeaseValue {
                    grant: value.grant.as_ref().map(|g| Grant {
                        expired: true,
                        ..g.clone()
                    }),
                    waiters: value.waiters.rebased(age),
                    ..value.clone()
                };
                let outcome = Outcome::Released { token: *token };
                (Change::Fresh(forced), Answer::Reply(outcome))
            }
            _ => refused(current),
        },
    }
}

/// `value` with its grant marked expired, when the grant is past its ttl
/// at `age` and not yet marked.
fn expiry_to_write(value: &LeaseValue, age: Micros, rules: &Rules) -> Option<LeaseValue> {
    if rules.bugs.has(Bug::UnwrittenExpiry) {
        return None;
    }
    let grant = value.grant.as_ref().filter(|g| !g.expired)?;
    if matches!(view(value, age, rules), LeaseView::Held { .. }) {
        return None;
    }
    Some(LeaseValue {
        grant: Some(Grant {
            expired: true,
            ..grant.clone()
        }),
        ..value.clone()
    })
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
    out: OutOfTouch<'_>,
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
    // a free lease goes to the first in line (passing over waiters whose
    // node is out of touch).
    let own = matches!(&current,
        LeaseView::Held { holder, .. } | LeaseView::LockDelayed { holder, .. } if holder == ask.holder);
    let first_in_line = value
        .waiters
        .next_up(age, out)
        .is_none_or(|w| Some(w.id) == me);
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
    let (mut next, age, fresh) = match hand_off(value, age, rules, out) {
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

/// The value with the lease granted to the first live waiter in touch, if
/// the lease is free for it.
fn hand_off(
    value: &LeaseValue,
    age: Micros,
    rules: &Rules,
    out: OutOfTouch<'_>,
) -> Option<LeaseValue> {
    let head = value.waiters.next_up(age, out)?;
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
            expired: false,
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
mod tests;
