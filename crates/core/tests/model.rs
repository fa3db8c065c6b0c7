//! Exhaustive model check of the protocol core with stateright.
//!
//! Three real `tenure_core::Node`s, a network, disks, a clock and scripted
//! clients; the checker explores every interleaving of deliveries, faults,
//! syncs, crashes, timers and ticks within each scenario's bounds, and
//! checks linearizability, fencing and lease exclusivity in every state.
//! `docs/model-check.md` describes the model, its bounds and why each
//! reduction is sound, and gives the commands and run times.
//!
//! Each test states one property under one kind of fault. The tests named
//! `model_catches_*` switch on one deliberate bug in the core and require a
//! counterexample, which shows that the passing tests could fail.

mod model {
    pub mod check;
    pub mod cluster;
    pub mod garbage;
    pub mod network;
    pub mod scenario;
    pub mod shared;
    pub mod spec;
    pub mod transitions;
}

use model::check::{assert_safe, find_violations, find_violations_depth_first};
use model::scenario::{MemberChange, Scenario, Script, Step};
use model::spec::ClientId;
use model::transitions::{
    EXCLUSIVE, FENCED, GRANTED, HANDED_OVER, JOINER_ANSWERED, MEMBERS_CHANGED, OUTCOME_UNKNOWN,
    READ_SEES_HOLDER, RENEWED,
};
use tenure_core::Bug;

/// The nodes, by index: clients of `N1` and `N2` make two proposers duel,
/// and `N3` is the acceptor they share.
const N1: usize = 0;
const N2: usize = 1;
const N3: usize = 2;
/// Node 4, which replaces node 3 in the `replacing` scenarios, and joins
/// in the change of members.
const N4: usize = 3;
/// The first client of a scenario.
const CLIENT_A: ClientId = 0;

/// Client a acquires and releases through n1 while client b acquires
/// through n2: two proposers duel for the same register, and the lease
/// may pass from one client to the other.
fn contention() -> Scenario {
    Scenario::new(vec![
        Script::on(N1).then(Step::Acquire).then(Step::Release),
        Script::on(N2).then(Step::Acquire),
    ])
}

/// Client b acquires twice: the second acquire, by the holder itself, must
/// supersede the first grant with a higher token (how a client resolves an
/// acquire whose outcome it never learnt).
fn retried_acquire() -> Scenario {
    Scenario::new(vec![
        Script::on(N1).then(Step::Acquire),
        Script::on(N2).then(Step::Acquire).then(Step::Acquire),
    ])
}

/// Both clients acquire once while n3, the acceptor both proposers need,
/// may crash once. Its disk syncs whenever the checker chooses, so the
/// crash may come after a write was issued and before it was synced.
fn crash_of_the_shared_acceptor() -> Scenario {
    Scenario {
        crashes: 1,
        crashable: vec![N3],
        // One tick: looks may widen and pauses end by their timers.
        horizon_ms: 10,
        backoff_ms: 10,
        ..Scenario::new(vec![
            Script::on(N1).then(Step::Acquire),
            Script::on(N2).then(Step::Acquire),
        ])
    }
}

/// Requests fail when their deadline passes before a quorum answers; one
/// tick of the clock reaches every deadline.
fn deadlines() -> Scenario {
    Scenario {
        horizon_ms: 10,
        request_deadline_ms: 10,
        ..Scenario::new(vec![
            Script::on(N1).then(Step::Acquire),
            Script::on(N2).then(Step::Acquire),
        ])
    }
}

/// Leases of 20 ms on a clock that ticks by 10 ms, with clocks drifting
/// by 10 % (the largest bound `DriftBound` accepts) in the worst
/// direction: nodes fast, clients slow. Client a acquires at 0 and renews
/// from 10 ms; client b tries to take over from 20 ms, when a's first grant
/// has just expired. A renewal that reached only part of the cluster races
/// b's acquire, whose proposer must judge the lease by the age of the
/// newest value it sees.
fn renewal_racing_expiry() -> Scenario {
    Scenario {
        ttl_ms: 20,
        horizon_ms: 20,
        drift_ppm: 100_000,
        ..Scenario::new(vec![
            Script::on(N1)
                .then(Step::Acquire)
                .then_from(10, Step::Renew),
            Script::on(N2).then_from(20, Step::Acquire),
        ])
    }
}

/// Leases of 20 ms as above, with one node's clock three times as fast as
/// true time, far outside the bound (as a fast clock that also stepped
/// forward would be): n3, which b's proposer may ask, n2, b's proposer
/// itself, or n1, a's node, whose fast path b's acquire takes when b asks
/// there too. Client a acquires at 0 and renews from 10 ms; client b tries
/// to take over from 10 ms, when the bad clock alone says a's lease ran
/// out. No one clock may end it.
fn one_fast_clock(bad: usize, b_asks: usize) -> Scenario {
    Scenario {
        ttl_ms: 20,
        horizon_ms: 20,
        drift_ppm: 100_000,
        bad_clock: Some((bad, 3_000_000)),
        ..Scenario::new(vec![
            Script::on(N1)
                .then(Step::Acquire)
                .then_from(10, Step::Renew),
            Script::on(b_asks).then_from(10, Step::Acquire),
        ])
    }
}

/// Client a acquires, reads and renews through n1 while client b contends
/// through n2: a read keeps n1's fast-path reservation, and the renewal
/// that uses it must still see any grant that cut in.
fn holder_reads_then_renews() -> Scenario {
    Scenario {
        // One tick: a look that asked a bare majority may widen to the
        // third node by its timer, and a paused round go on.
        horizon_ms: 10,
        backoff_ms: 10,
        ..Scenario::new(vec![
            Script::on(N1)
                .then(Step::Acquire)
                .then(Step::Read)
                .then(Step::Renew),
            Script::on(N2).then(Step::Acquire),
        ])
    }
}

/// One client acquires and releases while up to two messages are lost and
/// phases time out after one tick: a round whose accept reached a majority
/// but whose acknowledgements were lost retries, and must find its own
/// write instead of applying its operation again.
fn retries_after_loss() -> Scenario {
    Scenario {
        horizon_ms: 20,
        phase_timeout_ms: 10,
        backoff_ms: 10,
        request_deadline_ms: 20,
        losses: 2,
        ..Scenario::new(vec![Script::on(N1).then(Step::Acquire).then(Step::Release)])
    }
}

/// Client r reads twice through n1, which may crash once, while client b
/// acquires through n2.
fn reader_restart() -> Scenario {
    Scenario {
        crashes: 1,
        crashable: vec![N1],
        // One tick: looks may widen by their timer (see above).
        horizon_ms: 10,
        backoff_ms: 10,
        ..Scenario::new(vec![
            Script::on(N1).then(Step::Read).then(Step::Read),
            Script::on(N2).then(Step::Acquire),
        ])
    }
}

/// Leases of 30 ms. Client a acquires through n1 and renews at 10 and at
/// 20 ms; client b acquires through n2 at 30 and at 40 ms. A renewal only
/// moves a grant's clock, so acceptors take it lazily, and n2 may crash
/// once, forgetting what it had not synced: the renewals it acknowledged
/// among them (docs/safety.md, "Forgetting is aging").
fn renewals_forgotten_in_a_crash() -> Scenario {
    Scenario {
        ttl_ms: 30,
        horizon_ms: 40,
        crashes: 1,
        crashable: vec![N2],
        ..Scenario::new(vec![
            Script::on(N1)
                .then(Step::Acquire)
                .then_from(10, Step::Renew)
                .then_from(20, Step::Renew),
            Script::on(N2)
                .then_from(30, Step::Acquire)
                .then_from(40, Step::Acquire),
        ])
    }
}

/// Leases of 15 ms. Client a acquires through n1 and renews at 10 ms;
/// client b acquires through n3 at 20 ms. n2's clock runs three times as
/// fast, and n2 may crash once, forgetting a renewal it took lazily: its
/// age from boot is then wrong, and n3's age of the same grant counts from
/// a's first acquire unless n3 took the renewal too.
fn a_renewal_forgotten_by_a_fast_clock() -> Scenario {
    Scenario {
        ttl_ms: 15,
        horizon_ms: 20,
        bad_clock: Some((N2, 3_000_000)),
        crashes: 1,
        crashable: vec![N2],
        ..Scenario::new(vec![
            Script::on(N1)
                .then(Step::Acquire)
                .then_from(10, Step::Renew),
            Script::on(N3).then_from(20, Step::Acquire),
        ])
    }
}

/// Client b acquires through n2 three times (a retried acquire, retried
/// again) while a reads through n3, and n2 and n3 may crash: a grant that
/// only lazy acceptances kept would be forgotten by both, and its token
/// granted again.
fn retried_acquire_read_across_crashes() -> Scenario {
    Scenario {
        crashes: 2,
        crashable: vec![N2, N3],
        ..Scenario::new(vec![
            Script::on(N2)
                .then(Step::Acquire)
                .then(Step::Acquire)
                .then(Step::Acquire),
            Script::on(N3).then(Step::Read),
        ])
    }
}

/// Node 1 is replaced by node 4, which joins empty: n2 coordinates the
/// change to {2,3,4} through the joint configuration {1,2,3} + {2,3,4}
/// and the rescan (docs/membership.md). Client a acquires through n1
/// first; n1 and n3 cannot reach each other, so a's grant is accepted by
/// n1 and n2 alone, the shape of scylladb#5251: only n2's rescan can carry
/// it to the new members. Client b acquires through n4 once n4 holds the
/// new members, of which {3,4} is a quorum. The rescans take their last
/// step 10 ms after their first, so the change can end at 10 ms; it asks
/// again every 10 ms.
///
/// Bounded to fit the suite (docs/model-check.md, "Member changes"): the
/// change is asked once a has its answer; n1, the member that leaves, is
/// too slow to rescan, so the change rests on n2 and n3, a majority of the
/// old members, as its argument does; and time moves on only when no
/// message is in flight.
fn node_1_replaced_after_a_grant() -> Scenario {
    Scenario {
        horizon_ms: 10,
        settle_ms: 10,
        cut: vec![(N1, N3)],
        slow_messages: Some(0),
        change: Some(MemberChange {
            coordinator: N2,
            target: vec![N2, N3, N4],
            after_answer_to: Some(CLIENT_A),
            slow_to_rescan: vec![N1],
        }),
        ..Scenario::new(vec![
            Script::on(N1).then(Step::Acquire),
            Script::on(N4).once_changed().then(Step::Acquire),
        ])
    }
}

fn with_bug(scenario: Scenario, bug: Bug) -> Scenario {
    Scenario {
        bug: Some(bug),
        ..scenario
    }
}

#[test]
fn register_is_linearizable_and_fenced_when_two_proposers_contend() {
    assert_safe(contention_with_pauses(), &[GRANTED, HANDED_OVER]);
}

#[test]
fn a_retried_acquire_is_granted_a_higher_token_or_refused() {
    assert_safe(retried_acquire(), &[GRANTED]);
}

#[test]
fn register_is_linearizable_and_fenced_across_a_crash_of_the_shared_acceptor() {
    assert_safe(crash_of_the_shared_acceptor(), &[GRANTED]);
}

#[test]
fn register_is_linearizable_and_fenced_under_message_duplication() {
    let scenario = Scenario {
        duplicates: 1,
        ..contention_of_two_acquires()
    };
    assert_safe(scenario, &[GRANTED]);
}

#[test]
fn register_is_linearizable_and_fenced_under_message_reordering() {
    let scenario = Scenario {
        reorders: 1,
        ..contention_of_two_acquires()
    };
    assert_safe(scenario, &[GRANTED]);
}

#[test]
fn register_is_linearizable_and_fenced_under_message_loss() {
    let scenario = Scenario {
        losses: 1,
        ..contention_of_two_acquires()
    };
    assert_safe(scenario, &[GRANTED]);
}

/// Replacing a lost node: node 3 is gone and node 4 takes part under the
/// joint configuration {1,2,3} + {1,2,4}, whose quorums are {1,2} with or
/// without 4 (docs/membership.md). Renewals race an expiry through node 1
/// and node 4, clocks drifting at the bound: no overlap, and the register
/// stays linearizable and fenced.
#[test]
fn no_two_holders_overlap_under_joint_quorums_while_a_lost_node_is_replaced() {
    let scenario = Scenario {
        replacing: true,
        ..Scenario::new(vec![
            Script::on(N1)
                .then(Step::Acquire)
                .then_from(10, Step::Renew),
            Script::on(N4).then_from(20, Step::Acquire),
        ])
    };
    let scenario = Scenario {
        ttl_ms: 20,
        horizon_ms: 20,
        drift_ppm: 100_000,
        ..scenario
    };
    assert_safe(scenario, &[GRANTED, RENEWED]);
}

/// The same joint configuration with node 4's clock three times as fast:
/// the age rule ranks by the largest majority of either list, so node 4's
/// clock alone cannot end a lease, whichever node b asks through.
#[test]
fn under_joint_quorums_the_joining_nodes_fast_clock_cannot_end_a_lease() {
    let scenario = Scenario {
        replacing: true,
        ..one_fast_clock(N4, N4)
    };
    assert_safe(scenario, &[GRANTED, RENEWED]);
}

/// Two acquires through node 1 and node 4 under the joint configuration,
/// with a message lost: one grant, and the other refused.
#[test]
fn under_joint_quorums_a_lost_message_grants_nothing_twice() {
    let scenario = Scenario {
        replacing: true,
        losses: 1,
        ..Scenario::new(vec![
            Script::on(N1).then(Step::Acquire),
            Script::on(N4).then(Step::Acquire),
        ])
    };
    assert_safe(scenario, &[GRANTED]);
}

/// The change of members with one message lost, anywhere: the rescan
/// still carries a's grant to a quorum of the new members before they
/// decide alone, so b is refused.
#[test]
fn a_grant_survives_a_change_of_members_when_a_message_is_lost() {
    let scenario = Scenario {
        losses: 1,
        ..node_1_replaced_after_a_grant()
    };
    assert_safe(scenario, &[GRANTED, MEMBERS_CHANGED, JOINER_ANSWERED]);
}

/// The change of members with n2, its coordinator and the one node that
/// can carry a's grant, crashing once during the rescan and losing what
/// its disk had not synced: the change stops (no one asks again), or ends
/// only with the grant carried.
#[test]
fn a_grant_survives_a_change_of_members_whose_coordinator_crashes_during_the_rescan() {
    let scenario = Scenario {
        crashes: 1,
        crashable: vec![N2],
        crash_during_rescan: true,
        ..node_1_replaced_after_a_grant()
    };
    assert_safe(scenario, &[GRANTED, MEMBERS_CHANGED, JOINER_ANSWERED]);
}

/// A request that fails as unavailable says whether its outcome is
/// unknown. The model keeps an unknown outcome in flight forever (it may
/// take effect at any later time) and removes a request that reports no
/// effect from the history, so linearizability holds the core to its word.
#[test]
fn failed_requests_report_truthfully_whether_they_took_effect() {
    assert_safe(deadlines(), &[GRANTED, OUTCOME_UNKNOWN]);
}

#[test]
fn no_two_holders_overlap_when_a_renewal_races_an_expiry() {
    assert_safe(renewal_racing_expiry(), &[GRANTED, RENEWED, HANDED_OVER]);
}

#[test]
fn no_two_holders_overlap_when_one_acceptors_clock_runs_three_times_as_fast() {
    assert_safe(one_fast_clock(N3, N2), &[GRANTED, RENEWED]);
}

#[test]
fn no_two_holders_overlap_when_the_contenders_node_runs_three_times_as_fast() {
    assert_safe(one_fast_clock(N2, N2), &[GRANTED, RENEWED]);
}

#[test]
fn no_two_holders_overlap_when_the_fast_paths_node_runs_three_times_as_fast() {
    assert_safe(one_fast_clock(N1, N1), &[GRANTED, RENEWED]);
}

#[test]
fn reads_and_renewals_are_linearizable_when_the_holder_reads_through_its_own_node() {
    assert_safe(
        holder_reads_then_renews(),
        &[GRANTED, RENEWED, READ_SEES_HOLDER],
    );
}

#[test]
fn a_round_retried_after_lost_acknowledgements_takes_effect_once() {
    assert_safe(retries_after_loss(), &[GRANTED, OUTCOME_UNKNOWN]);
}

/// Pins the stale read this model found: a restarted node numbered its
/// peeks from 1 again, so an answer to a peek of its previous life could
/// complete a read of its new one with a value older than a grant that had
/// finished before the read began (`docs/model-check.md` has the trace).
#[test]
fn reads_are_linearizable_across_a_restart_of_the_reading_node() {
    assert_safe(reader_restart(), &[GRANTED, READ_SEES_HOLDER]);
}

#[test]
#[ignore = "deep configuration: minutes in release mode"]
fn deep_no_two_holders_overlap_when_a_crash_forgets_lazily_accepted_renewals() {
    assert_safe(renewals_forgotten_in_a_crash(), &[GRANTED, RENEWED]);
}

#[test]
fn no_two_holders_overlap_when_a_fast_clock_forgets_a_lazy_renewal() {
    assert_safe(a_renewal_forgotten_by_a_fast_clock(), &[GRANTED, RENEWED]);
}

#[test]
fn a_retried_acquire_survives_two_crashes_when_renewals_are_lazy() {
    assert_safe(
        retried_acquire_read_across_crashes(),
        &[GRANTED, READ_SEES_HOLDER],
    );
}

fn contention_of_two_acquires() -> Scenario {
    Scenario::new(vec![
        Script::on(N1).then(Step::Acquire),
        Script::on(N2).then(Step::Acquire),
    ])
}

/// Require a counterexample in `scenario`, and show it. The same scenario
/// without the bug passes (the tests above), so any counterexample is the
/// bug's doing; `expected` is the property its shortest trace breaks.
fn assert_caught(scenario: Scenario, expected: &str) {
    let violations = find_violations(scenario);
    let mut shown: Vec<&String> = Vec::new();
    for (name, trace) in &violations {
        println!("counterexample to \"{name}\"");
        if !shown.contains(&trace) {
            println!("{trace}");
            shown.push(trace);
        }
    }
    assert!(
        !violations.is_empty(),
        "the checker found no counterexample; expected one to \"{expected}\""
    );
}

/// [`assert_caught`] for a scenario too large to search breadth first in
/// the suite's memory: any counterexample, not the shortest, and its
/// property's name.
fn assert_caught_depth_first(scenario: Scenario, expected: &str) {
    let violations = find_violations_depth_first(scenario);
    println!("counterexamples to {violations:?}");
    assert!(
        !violations.is_empty(),
        "the checker found no counterexample; expected one to \"{expected}\""
    );
}

/// A coordinator that skips the rescan moves to {2,3,4} as soon as n3 has
/// recorded the joint configuration; b's round then asks n3 and n4, which
/// never heard of a's grant, and b is granted a's token again.
#[test]
fn model_catches_a_change_of_members_that_skips_the_rescan() {
    let scenario = with_bug(node_1_replaced_after_a_grant(), Bug::SkipRescan);
    assert_caught(scenario, FENCED);
}

/// With replies sent before the writes they depend on are durable, n3
/// accepts b's grant, says so, and crashes before syncing: a's proposer
/// then finds n3 empty and grants the same token to a.
#[test]
fn model_catches_reply_before_persist() {
    let scenario = with_bug(crash_of_the_shared_acceptor(), Bug::ReplyBeforePersist);
    assert_caught(scenario, FENCED);
}

/// With promises forgotten at restart, n3 promises b's ballot, crashes,
/// and then accepts a's lower ballot: both values are chosen.
#[test]
fn model_catches_forget_promises() {
    // A round that times out prepares again: that second prepare is what
    // the restarted n3 promises, having forgotten the promise it made.
    let scenario = Scenario {
        phase_timeout_ms: 10,
        horizon_ms: 10,
        ..with_bug(crash_of_the_shared_acceptor(), Bug::ForgetPromises)
    };
    assert_caught(scenario, FENCED);
}

/// With the age taken from any promise, an acceptor that missed a's
/// renewal reports the old grant's age, and b's proposer takes the renewed
/// lease for expired while a still holds it.
#[test]
fn model_catches_age_of_any_ballot() {
    let scenario = with_bug(renewal_racing_expiry(), Bug::AgeOfAnyBallot);
    assert_caught(scenario, EXCLUSIVE);
}

/// Without the drift margin a's slow clock lets it act until 22 ms of real
/// time on a grant the fast acceptors let go at 20 ms, when b gets it.
#[test]
fn model_catches_no_drift_margin() {
    let scenario = with_bug(renewal_racing_expiry(), Bug::NoDriftMargin);
    assert_caught(scenario, EXCLUSIVE);
}

/// Trusting one clock, b's proposer takes n3's age, three times the true
/// one, and grants while a still holds.
#[test]
fn model_catches_trust_one_clock() {
    let scenario = with_bug(one_fast_clock(N3, N2), Bug::TrustOneClock);
    assert_caught(scenario, EXCLUSIVE);
}

/// The joint scenario above can fail: trusting the largest age lets node
/// 4's fast clock end a's lease under joint quorums too.
#[test]
fn model_catches_trust_one_clock_under_joint_quorums() {
    let scenario = Scenario {
        replacing: true,
        ..with_bug(one_fast_clock(N4, N4), Bug::TrustOneClock)
    };
    assert_caught(scenario, EXCLUSIVE);
}

/// Trusting its own clock on the fast path, n1 grants b the lease its
/// fast clock alone says a's lease ran out.
#[test]
fn model_catches_a_fast_path_that_trusts_its_own_clock() {
    let scenario = with_bug(one_fast_clock(N1, N1), Bug::TrustOneClock);
    assert_caught(scenario, EXCLUSIVE);
}

/// With a re-grant to the holder keeping its token, b's second acquire is
/// granted the token it already has.
#[test]
fn model_catches_no_token_bump() {
    let scenario = with_bug(retried_acquire(), Bug::NoTokenBump);
    assert_caught(scenario, FENCED);
}

/// Counting a bare majority of lazy acceptances, a's renewal is chosen on
/// n1 and n2 alone; n2 forgets it, and its fast clock and n3's old one
/// both say the lease ran out.
#[test]
fn model_catches_a_lazy_renewal_counted_from_a_majority() {
    let scenario = with_bug(a_renewal_forgotten_by_a_fast_clock(), Bug::LazyMajority);
    assert_caught_depth_first(scenario, EXCLUSIVE);
}

/// Accepting a new token lazily because the holder is the same, the
/// crashes forget b's second grant, and the read shows the first again.
#[test]
fn model_catches_a_new_grant_accepted_lazily() {
    let scenario = with_bug(retried_acquire_read_across_crashes(), Bug::LazyForTheHolder);
    assert_caught_depth_first(scenario, FENCED);
}

// The deep configuration: wider bounds than the default suite, minutes in
// release mode (`docs/model-check.md` gives the command and the times).

/// Contention with one tick of time: a pre-empted round's pause (it waits
/// for the other's write) may also end by its timer, so rounds that were
/// both refused, and wait for writes that never come, go on.
fn contention_with_pauses() -> Scenario {
    Scenario {
        horizon_ms: 10,
        backoff_ms: 10,
        ..contention()
    }
}

#[test]
#[ignore = "deep configuration: minutes in release mode"]
fn deep_contention_is_linearizable_and_fenced_across_a_crash_of_any_node() {
    let scenario = Scenario {
        crashes: 1,
        crashable: vec![N1, N2, N3],
        ..contention_with_pauses()
    };
    assert_safe(scenario, &[GRANTED, HANDED_OVER]);
}

#[test]
#[ignore = "deep configuration: minutes in release mode"]
fn deep_contention_is_linearizable_and_fenced_when_any_message_may_overtake_any_other() {
    let scenario = Scenario {
        fifo: false,
        ..contention_with_pauses()
    };
    assert_safe(scenario, &[GRANTED, HANDED_OVER]);
}

#[test]
#[ignore = "deep configuration: minutes in release mode"]
fn deep_contention_is_linearizable_and_fenced_under_duplication_and_loss() {
    let scenario = Scenario {
        duplicates: 1,
        losses: 1,
        ..contention_with_pauses()
    };
    assert_safe(scenario, &[GRANTED, HANDED_OVER]);
}

/// Phases time out after one tick, so duelling proposers retry with ever
/// higher ballots while their older messages are still in flight.
#[test]
#[ignore = "deep configuration: minutes in release mode"]
fn deep_duelling_proposers_that_time_out_and_retry_stay_linearizable() {
    let scenario = Scenario {
        horizon_ms: 10,
        phase_timeout_ms: 10,
        backoff_ms: 10,
        request_deadline_ms: 20,
        ..contention_of_two_acquires()
    };
    assert_safe(scenario, &[GRANTED]);
}

#[test]
#[ignore = "deep configuration: minutes in release mode"]
fn deep_no_two_holders_overlap_when_a_renewal_races_an_expiry_across_a_crash() {
    let scenario = Scenario {
        crashes: 1,
        crashable: vec![N3],
        ..renewal_racing_expiry()
    };
    assert_safe(scenario, &[GRANTED, RENEWED, HANDED_OVER]);
}

#[test]
#[ignore = "deep configuration: minutes in release mode"]
fn deep_no_two_holders_overlap_when_a_renewal_races_an_expiry_and_messages_overtake() {
    let scenario = Scenario {
        reorders: 1,
        ..renewal_racing_expiry()
    };
    assert_safe(scenario, &[GRANTED, RENEWED, HANDED_OVER]);
}

#[test]
#[ignore = "deep configuration: minutes in release mode"]
fn deep_reads_are_linearizable_across_a_crash_of_any_node() {
    let scenario = Scenario {
        crashable: vec![N1, N2, N3],
        ..reader_restart()
    };
    assert_safe(scenario, &[GRANTED, READ_SEES_HOLDER]);
}

/// The change of members with either old member that rescans, n2 or n3,
/// crashing once during the rescan: n3 is the one member of the new
/// configuration that took a's grant only from n2's rescan.
#[test]
#[ignore = "deep configuration: minutes in release mode"]
fn deep_a_grant_survives_a_change_of_members_when_either_rescanning_member_crashes() {
    let scenario = Scenario {
        crashes: 1,
        crashable: vec![N2, N3],
        crash_during_rescan: true,
        ..node_1_replaced_after_a_grant()
    };
    assert_safe(scenario, &[GRANTED, MEMBERS_CHANGED, JOINER_ANSWERED]);
}
