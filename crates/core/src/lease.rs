//! The lease rules: the register value and the operations on it, as pure
//! functions of `(value, age, op)`.
//!
//! `age` is a lower bound, in the judging node's clock, of the time since the
//! request that last started this lease's clock was sent (see
//! `docs/safety.md`). A lease counts as expired only when `age ≥ ttl·(1+ρ)`,
//! which guarantees at least `ttl` of real time has passed.

use crate::ballot::Ballot;
use crate::bugs::{Bug, Bugs};
use crate::input::{HolderId, LockDelay, Ttl};
use crate::time::{DriftBound, Instant, Micros};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A fencing token: strictly increases with every grant of one name.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Token(pub u64);

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One grant of a lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub holder: HolderId,
    pub ttl: Ttl,
    pub lock_delay: LockDelay,
}

/// The value of one name's register.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseValue {
    /// The token of the latest grant; zero before the first. Never decreases:
    /// release and expiry keep it, so the next grant is above every earlier.
    pub token: Token,
    /// The latest grant, until it is released. A grant past its ttl stays
    /// here (expired) until someone acquires or releases.
    pub grant: Option<Grant>,
    /// Which rounds wrote this value and its recent ancestors; lets a round
    /// that retries find out whether its earlier attempt already took effect.
    pub writes: WriteLog,
}

/// How many recent writes a value remembers.
pub const REMEMBERED_WRITES: usize = 4;

/// The number of value-changing rounds a register has seen, and the ballots
/// at which the last [`REMEMBERED_WRITES`] of them were proposed.
///
/// A round that sent a value-changing accept and then had to retry cannot
/// simply apply its operations again: its first attempt may have been
/// accepted and adopted (an acquire would then grant twice, a release would
/// report a conflict with itself). Ballots are unique, so finding its own
/// ballot here tells it exactly whether that attempt took effect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriteLog {
    pub count: u64,
    pub recent: [Ballot; REMEMBERED_WRITES],
}

impl WriteLog {
    /// The log after one more write, proposed at `ballot`.
    pub fn after(&self, ballot: Ballot) -> WriteLog {
        let count = self.count + 1;
        let mut recent = self.recent;
        recent[(count % REMEMBERED_WRITES as u64) as usize] = ballot;
        WriteLog { count, recent }
    }

    /// Whether write number `number` was the one proposed at `ballot`:
    /// `Some(true)` or `Some(false)`, or `None` when it is too long ago to tell.
    pub fn wrote(&self, number: u64, ballot: Ballot) -> Option<bool> {
        if number > self.count {
            return Some(false);
        }
        if self.count - number >= REMEMBERED_WRITES as u64 {
            return None;
        }
        Some(self.recent[(number % REMEMBERED_WRITES as u64) as usize] == ballot)
    }
}

/// What a client asks of a name's register.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// A new grant. By the current holder too: that supersedes its old grant
    /// with a higher token, which is how a retried acquire whose outcome was
    /// unknown resolves.
    Acquire {
        holder: HolderId,
        ttl: Ttl,
        lock_delay: LockDelay,
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
}

/// How a name looks to a node judging it with a given age.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaseView {
    /// Nobody holds it; `token` is the last one granted.
    Free { token: Token },
    /// Held. `remaining` is how much longer, on the judging node's clock, the
    /// cluster will go on treating it as held unless it is renewed.
    Held {
        holder: HolderId,
        token: Token,
        ttl: Ttl,
        remaining: Micros,
    },
    /// Expired without release and inside its lock-delay: nobody holds it,
    /// but only `holder` may acquire it for `remaining` more.
    LockDelayed {
        holder: HolderId,
        token: Token,
        remaining: Micros,
    },
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

/// Whether an operation writes. `Fresh` values restart the lease clock
/// (age zero at acceptance), which is sound because the request that asked
/// for them was sent before any acceptor accepts them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Fresh(LeaseValue),
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
    let held_for = drift.stretch(grant.ttl.as_micros());
    if age < held_for {
        return LeaseView::Held {
            holder: grant.holder.clone(),
            token: value.token,
            ttl: grant.ttl,
            remaining: held_for.saturating_sub(age),
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
        };
    }
    LeaseView::Free { token: value.token }
}

/// Apply `op` to `value` whose lease clock reads `age`.
pub fn apply(value: &LeaseValue, age: Micros, op: &Op, rules: &Rules) -> (Change, Outcome) {
    let current = view(value, age, rules);
    match op {
        Op::Read => (Change::Unchanged, Outcome::Observed(current)),
        Op::Acquire {
            holder,
            ttl,
            lock_delay,
        } => {
            let may_grant = match &current {
                LeaseView::Free { .. } => true,
                LeaseView::Held { holder: h, .. } | LeaseView::LockDelayed { holder: h, .. } => {
                    h == holder
                }
            };
            let Some(next_token) = value.token.0.checked_add(1) else {
                // 2^64 grants of one name cannot happen; refuse rather than reuse.
                return (Change::Unchanged, Outcome::Conflict(current));
            };
            if !may_grant {
                return (Change::Unchanged, Outcome::Conflict(current));
            }
            // A grant the holder may still be using. A new grant to the same
            // holder replaces it, possibly without the holder's knowledge (a
            // delayed or retried acquire), so it must not end any sooner:
            // it keeps at least the old ttl, counted from a later start.
            let superseded = match &current {
                LeaseView::Held { holder: h, .. } if h == holder => value.grant.as_ref(),
                _ => None,
            };
            let token = if superseded.is_some() && rules.bugs.has(Bug::NoTokenBump) {
                value.token
            } else {
                Token(next_token)
            };
            let (ttl, lock_delay) = match superseded {
                Some(old) => ((*ttl).max(old.ttl), (*lock_delay).max(old.lock_delay)),
                None => (*ttl, *lock_delay),
            };
            let granted = LeaseValue {
                token,
                grant: Some(Grant {
                    holder: holder.clone(),
                    ttl,
                    lock_delay,
                }),
                writes: value.writes.clone(),
            };
            (Change::Fresh(granted), Outcome::Granted { token, ttl })
        }
        Op::Renew { holder, token } => match &current {
            LeaseView::Held {
                holder: h,
                token: t,
                ttl,
                ..
            } if h == holder && t == token => (
                Change::Fresh(value.clone()),
                Outcome::Renewed {
                    token: *token,
                    ttl: *ttl,
                },
            ),
            _ => (Change::Unchanged, Outcome::Conflict(current)),
        },
        Op::Release { holder, token } => match &value.grant {
            // An expired grant may still be released by its holder: nobody
            // else holds it, and releasing ends its lock-delay early.
            Some(g) if &g.holder == holder && value.token == *token => (
                Change::Fresh(LeaseValue {
                    token: value.token,
                    grant: None,
                    writes: value.writes.clone(),
                }),
                Outcome::Released { token: *token },
            ),
            _ => (Change::Unchanged, Outcome::Conflict(current)),
        },
    }
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
        }
    }
    fn held_by(holder: &str, token: u64, ttl_ms: u64) -> LeaseValue {
        LeaseValue {
            token: Token(token),
            grant: Some(Grant {
                holder: h(holder),
                ttl: ttl(ttl_ms),
                lock_delay: LockDelay::NONE,
            }),
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
        for c in 1..=6 {
            log = log.after(b(c));
        }
        assert_eq!(log.count, 6);
        assert_eq!(log.wrote(6, b(6)), Some(true));
        assert_eq!(log.wrote(3, b(3)), Some(true));
        assert_eq!(log.wrote(3, b(4)), Some(false));
        assert_eq!(log.wrote(7, b(7)), Some(false), "not written yet");
        assert_eq!(log.wrote(2, b(2)), None, "forgotten");
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

    fn arb_op() -> impl Strategy<Value = Op> {
        let holder = prop::sample::select(vec!["a", "b", "c"]).prop_map(h);
        let token = (0u64..6).prop_map(Token);
        prop_oneof![
            (holder.clone(), 10u64..3000, 0u64..500).prop_map(|(holder, t, d)| Op::Acquire {
                holder,
                ttl: ttl(t),
                lock_delay: LockDelay::from_millis(d).unwrap(),
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
