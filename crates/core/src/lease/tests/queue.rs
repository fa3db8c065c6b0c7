//! The queue of waiters, through the rules that use it.

use super::*;

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
        crate::lease::apply(&value, ms(400), &acquire("b", 1000), waiting(7, 2000), RHO);
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
        crate::lease::apply(&joined, ms(500), &acquire("b", 1000), waiting(7, 1900), RHO);
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
        crate::lease::apply(&next, ms(1), &acquire("b", 1000), waiting(7, 4000), RHO);
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
        crate::lease::apply(&value, ms(1500), &acquire("c", 1000), waiting(8, 3000), RHO);
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
        crate::lease::apply(&value, ms(1500), &acquire("b", 1000), waiting(7, 3000), RHO);
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
        crate::lease::apply(&value, ms(100), &acquire("b", 1000), waiting(7, 0), RHO);
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
fn waiters_on_a_node_out_of_touch_are_passed_over_and_keep_their_places() {
    let on = |node: u16, w: Waiter| Waiter {
        id: WaiterId { node, ..w.id },
        ..w
    };
    let value = with_queue(
        held_by("a", 4, 1000),
        vec![on(3, waiter("b", 7, 5000)), on(2, waiter("c", 8, 5000))],
    );
    let release = Op::Release {
        holder: h("a"),
        token: Token(4),
    };
    let out = OutOfTouch(&[3]);
    let passing = |value: &LeaseValue, op: &Op| {
        crate::lease::apply_passing_over(value, ms(200), op, None, RHO, out)
    };
    let (Change::Fresh(next), _) = passing(&value, &release) else {
        panic!("a release writes")
    };
    assert_eq!(next.grant.as_ref().unwrap().holder.as_str(), "c");
    // b waits on, first in line for when its node is back in touch.
    assert_eq!(next.waiters, Waiters(vec![on(3, waiter("b", 7, 4800))]));
    // With nobody in touch waiting, the release frees the lease, and a
    // plain acquire takes it rather than handing it to b.
    let alone = with_queue(held_by("a", 4, 1000), vec![on(3, waiter("b", 7, 5000))]);
    let (Change::Fresh(freed), _) = passing(&alone, &release) else {
        panic!("a release writes")
    };
    assert!(freed.grant.is_none());
    let (Change::Fresh(taken), answer) = passing(&freed, &acquire("d", 1000)) else {
        panic!("a plain acquire of a free lease writes")
    };
    assert_eq!(taken.grant.as_ref().unwrap().holder.as_str(), "d");
    assert!(matches!(answer, Answer::Reply(Outcome::Granted { .. })));
    // A node in touch with b's hands it the lease, as before.
    let (Change::Fresh(handed), _) = apply(&freed, ms(200), &acquire("d", 1000), RHO) else {
        panic!("the hand-off writes")
    };
    assert_eq!(
        handed.grant.unwrap().waiter,
        Some(on(3, waiter("b", 7, 0)).id)
    );
}

#[test]
fn the_queue_is_bounded_and_a_waiter_beyond_it_waits_outside() {
    let queue = (0..MAX_WAITERS as u64)
        .map(|i| waiter("q", i, 5000))
        .collect();
    let value = with_queue(held_by("a", 4, 1000), queue);
    let (change, answer) =
        crate::lease::apply(&value, ms(1), &acquire("b", 1000), waiting(999, 1000), RHO);
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
        crate::lease::apply(&value, ms(1200), &acquire("b", 1000), waiting(7, 5000), RHO);
    // The first to find the grant expired writes so, and waits.
    assert_eq!(change, Change::Kept(super::marked_expired(value.clone())));
    assert!(matches!(
        answer,
        Answer::Wait(LeaseView::LockDelayed { .. })
    ));
    let (change, _) =
        crate::lease::apply(&value, ms(1600), &acquire("b", 1000), waiting(7, 5000), RHO);
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

proptest! {
    /// First come, first served: waiters that join a held lease get it
    /// in the order they joined, each from the release before it.
    #[test]
    fn waiters_are_granted_in_the_order_they_joined(n in 1usize..12, age_ms in 0u64..900) {
        let mut value = held_by("a", 1, 1000);
        for i in 0..n {
            let op = acquire(&format!("w{i}"), 1000);
            let (change, answer) = crate::lease::apply(&value, ms(age_ms), &op, waiting(i as u64, 60_000), RHO);
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
}
