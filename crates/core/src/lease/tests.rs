//! The lease rules, one test per rule; the queue's own in `tests/queue.rs`.

mod queue;

use super::*;
use crate::ballot::Ballot;
use proptest::prelude::*;

pub(super) const RHO: &Rules = &Rules {
    drift: DriftBound::DEFAULT,
    bugs: Bugs::NONE,
};

pub(super) fn h(s: &str) -> HolderId {
    HolderId::new(s).unwrap()
}
pub(super) fn ttl(ms: u64) -> Ttl {
    Ttl::from_millis(ms).unwrap()
}
pub(super) fn acquire(holder: &str, ttl_ms: u64) -> Op {
    Op::Acquire {
        holder: h(holder),
        ttl: ttl(ttl_ms),
        lock_delay: LockDelay::NONE,
        wait: Micros::ZERO,
    }
}
/// `apply` for a request that does not wait: it is always answered.
pub(super) fn apply(value: &LeaseValue, age: Micros, op: &Op, rules: &Rules) -> (Change, Outcome) {
    match super::apply(value, age, op, None, rules) {
        (change, Answer::Reply(outcome)) => (change, outcome),
        (_, Answer::Wait(_)) => panic!("a request without a wait was told to wait"),
    }
}
pub(super) fn held_by(holder: &str, token: u64, ttl_ms: u64) -> LeaseValue {
    LeaseValue {
        token: Token(token),
        grant: Some(Grant {
            holder: h(holder),
            ttl: ttl(ttl_ms),
            lock_delay: LockDelay::NONE,
            waiter: None,
            expired: false,
        }),
        waiters: Waiters::default(),
        writes: WriteLog::default(),
    }
}
pub(super) fn ms(n: u64) -> Micros {
    Micros::from_millis(n)
}
/// `value` with its grant marked expired, as the first answer that finds
/// it past its ttl writes it.
pub(super) fn marked_expired(mut value: LeaseValue) -> LeaseValue {
    if let Some(g) = value.grant.as_mut() {
        g.expired = true;
    }
    value
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
    // The refusal is the first answer to find it expired: it writes so.
    assert_eq!(change, Change::Kept(marked_expired(value)));
    assert!(matches!(outcome, Outcome::Conflict(LeaseView::Free { .. })));
}

/// Once an answer has found a grant expired, that finding is in the value:
/// a later judgement at a younger age (another quorum's clocks, a restart)
/// still finds it expired, and neither a renewal nor a release revives it.
#[test]
fn an_expiry_once_written_holds_at_any_age() {
    let value = held_by("a", 7, 1000);
    let (change, outcome) = apply(&value, ms(2000), &Op::Read, RHO);
    assert_eq!(change, Change::Kept(marked_expired(value.clone())));
    assert_eq!(
        outcome,
        Outcome::Observed(LeaseView::Free { token: Token(7) })
    );
    let expired = marked_expired(value);
    let renew = Op::Renew {
        holder: h("a"),
        token: Token(7),
    };
    for op in [Op::Read, renew] {
        let (change, outcome) = apply(&expired, ms(10), &op, RHO);
        assert_eq!(change, Change::Unchanged, "{op:?}");
        assert!(
            !matches!(
                outcome,
                Outcome::Observed(LeaseView::Held { .. })
                    | Outcome::Conflict(LeaseView::Held { .. })
                    | Outcome::Renewed { .. }
            ),
            "{op:?} revived it: {outcome:?}"
        );
    }
    // Still in its lock-delay by age, it says so; another holder waits.
    let mut delayed = expired.clone();
    if let Some(g) = delayed.grant.as_mut() {
        g.lock_delay = LockDelay::from_millis(500).unwrap();
    }
    let (_, outcome) = apply(&delayed, ms(10), &acquire("b", 1000), RHO);
    assert!(matches!(
        outcome,
        Outcome::Conflict(LeaseView::LockDelayed { .. })
    ));
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
fn a_release_after_expiry_leaves_the_lock_delay_in_place() {
    // The holder's grant ran out while it may still have been acting;
    // its release arrives late and must not let another holder in early.
    let mut value = held_by("a", 3, 1000);
    if let Some(g) = value.grant.as_mut() {
        g.lock_delay = LockDelay::from_millis(500).unwrap();
    }
    let late = Op::Release {
        holder: h("a"),
        token: Token(3),
    };
    let (change, outcome) = apply(&value, ms(1200), &late, RHO);
    assert_eq!(change, Change::Kept(marked_expired(value.clone())));
    assert!(matches!(
        outcome,
        Outcome::Conflict(LeaseView::LockDelayed { .. })
    ));
    let (_, other) = apply(&value, ms(1200), &acquire("b", 1000), RHO);
    assert!(matches!(
        other,
        Outcome::Conflict(LeaseView::LockDelayed { .. })
    ));
    // Past the lock-delay as well: refused, and the name is free anyway.
    let (change, outcome) = apply(&marked_expired(value), ms(1600), &late, RHO);
    assert_eq!(change, Change::Unchanged);
    assert!(matches!(outcome, Outcome::Conflict(LeaseView::Free { .. })));
}

/// An operator's forced release ends the grant as an expiry would, now:
/// the holder's renewals are refused at once, and nobody else gets the
/// name until its ttl and lock-delay have passed from the force, by when
/// the forced-out holder has stopped by its own clock.
#[test]
fn a_forced_release_keeps_everyone_else_out_for_the_ttl_and_lock_delay() {
    let mut value = held_by("a", 3, 1000);
    if let Some(g) = value.grant.as_mut() {
        g.lock_delay = LockDelay::from_millis(500).unwrap();
    }
    let force = Op::Force { token: Token(3) };
    let (change, outcome) = apply(&value, ms(900), &force, RHO);
    assert_eq!(outcome, Outcome::Released { token: Token(3) });
    let Change::Fresh(forced) = change else {
        panic!("a forced release restarts the clock: {change:?}")
    };
    assert_eq!(forced, marked_expired(value.clone()));
    let renew = Op::Renew {
        holder: h("a"),
        token: Token(3),
    };
    assert!(matches!(
        apply(&forced, ms(1), &renew, RHO).1,
        Outcome::Conflict(LeaseView::LockDelayed { .. })
    ));
    // ttl + lock-delay, stretched for drift, from the force: not a moment less.
    let kept_out = RHO.drift.stretch(ms(1500));
    assert!(matches!(
        apply(
            &forced,
            kept_out.saturating_sub(ms(1)),
            &acquire("b", 1000),
            RHO
        )
        .1,
        Outcome::Conflict(LeaseView::LockDelayed { .. })
    ));
    assert!(matches!(
        apply(&forced, kept_out, &acquire("b", 1000), RHO).1,
        Outcome::Granted {
            token: Token(4),
            ..
        }
    ));
    // Another grant's token forces nothing.
    let stale = Op::Force { token: Token(2) };
    assert!(matches!(
        apply(&value, ms(1), &stale, RHO),
        (Change::Unchanged, Outcome::Conflict(_))
    ));
    // The history says forced, not released.
    let kinds: Vec<_> = transitions(&value, ms(900), &forced, Some(&outcome_released(3)), RHO)
        .iter()
        .map(|t| t.kind)
        .collect();
    assert_eq!(kinds, [TransitionKind::Forced]);
}

fn outcome_released(token: u64) -> Outcome {
    Outcome::Released {
        token: Token(token),
    }
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

/// A read writes only the finding that a grant expired, once.
#[test]
fn reads_write_nothing_but_a_first_expiry() {
    let (change, _) = apply(&held_by("a", 1, 1000), ms(500), &Op::Read, RHO);
    assert_eq!(change, Change::Unchanged);
    let (change, _) = apply(&LeaseValue::default(), ms(500), &Op::Read, RHO);
    assert_eq!(change, Change::Unchanged);
    let expired = marked_expired(held_by("a", 1, 1000));
    let (change, outcome) = apply(&expired, ms(2000), &Op::Read, RHO);
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
                // No queue without waiting acquires: only an expiry found.
                (Change::Kept(next), _) => {
                    prop_assert_eq!(next, &marked_expired(value.clone()));
                }
            }
            if let Change::Fresh(next) | Change::Kept(next) = change { value = next; }
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

    /// Refusals and reads change nothing, but for writing down the expiry
    /// they are the first to find.
    #[test]
    fn conflicts_and_reads_change_nothing_but_an_expiry(op in arb_op(), age_ms in 0u64..4000) {
        let value = held_by("b", 2, 1000);
        let (change, outcome) = apply(&value, ms(age_ms), &op, RHO);
        if matches!(outcome, Outcome::Conflict(_) | Outcome::Observed(_)) {
            let held = ms(age_ms) < RHO.drift.stretch(ms(1000));
            let expected = if held {
                Change::Unchanged
            } else {
                Change::Kept(marked_expired(value))
            };
            prop_assert_eq!(change, expected);
        }
    }
}
