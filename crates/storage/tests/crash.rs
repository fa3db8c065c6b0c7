//! Crash consistency: a power cut at every I/O point of a workload.
//!
//! The workload is: open the store (which commits a new incarnation), then
//! persist batches one by one. For every k, the process dies at its k-th
//! mutating disk call (`write`, `set_len` or `sync_data`), the power goes,
//! and the store is reopened. Each power cut is tried twice: once losing
//! everything unsynced, once keeping a seeded random subset of the unsynced
//! sectors (a torn write). After each:
//!
//! - the reopen succeeds: a crash alone must never stop a node;
//! - the records are exactly the acknowledged batches, or those plus the
//!   one batch in flight, whole: nothing acknowledged is missing, nothing is
//!   half-applied, nothing unknown appears;
//! - the new incarnation is above every incarnation handed out before.

mod common;

use common::*;
use tenure_core::Write;
use tenure_storage::{Recovery, SimDisk};

/// What one life of the workload got acknowledged before it died.
struct Life {
    incarnation: Option<u32>,
    acked: usize,
}

fn live(disk: &SimDisk, options: &StoreOptions, batches: &[Vec<Write>]) -> Life {
    let Ok((mut store, recovered)) = options.open(StoreAt::backend(disk.backend()), collect) else {
        return Life {
            incarnation: None,
            acked: 0,
        };
    };
    let mut acked = 0;
    for batch in batches {
        if store.persist(batch).is_err() {
            break;
        }
        acked += 1;
    }
    Life {
        incarnation: Some(recovered.incarnation),
        acked,
    }
}

struct Sweep {
    crashes: usize,
    rolled_back: usize,
}

/// Builds a disk with some history, then crashes the workload after every
/// I/O call in turn.
fn sweep(options: &StoreOptions) -> Sweep {
    let history = batches(4);
    let workload: Vec<Vec<Write>> = batches(14).split_off(4);

    let base = SimDisk::new();
    let mut base_map = Map::new();
    let base_incarnation = {
        let (mut store, recovered) = options
            .open(StoreAt::backend(base.backend()), collect)
            .unwrap();
        for batch in &history {
            store.persist(batch).unwrap();
            apply(&mut base_map, batch);
        }
        recovered.incarnation
    };

    let clean = base.fork();
    let before = clean.stats().io_calls();
    let life = live(&clean, options, &workload);
    assert_eq!(life.acked, workload.len(), "the workload runs clean");
    let io_points = clean.stats().io_calls() - before;
    assert!(io_points > 30, "only {io_points} I/O points");

    let mut sweep = Sweep {
        crashes: 0,
        rolled_back: 0,
    };
    for k in 0..=io_points {
        for torn in [false, true] {
            let disk = base.fork();
            disk.die_after(k);
            let life = live(&disk, options, &workload);
            if torn {
                disk.crash_torn(k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED);
            } else {
                disk.crash();
            }
            let context = format!("crash after I/O call {k} (torn: {torn})");

            let (mut store, recovered) = options
                .open(StoreAt::backend(disk.backend()), collect)
                .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
            sweep.crashes += 1;
            let rolled_back = store.recovery() == Recovery::RolledBack;
            if rolled_back {
                sweep.rolled_back += 1;
            }

            let mut acked = base_map.clone();
            for batch in &workload[..life.acked] {
                apply(&mut acked, batch);
            }
            let mut with_next = acked.clone();
            if let Some(next) = workload.get(life.acked) {
                apply(&mut with_next, next);
            }
            let incarnation = recovered.incarnation;
            let got = as_map(recovered);
            assert!(
                got == acked || got == with_next,
                "{context}: {} batches acknowledged, store holds neither them \
                 nor them plus the next one\n got: {got:?}\n acked: {acked:?}",
                life.acked
            );

            let floor = life.incarnation.unwrap_or(base_incarnation);
            assert!(
                incarnation > floor,
                "{context}: incarnation {incarnation} reused (last handed out: {floor})",
            );

            // The recovered store takes writes again.
            store.persist(&workload[0]).unwrap();

            // A rollback is reported at every open, however the lives in
            // between ended, until it is accepted.
            if rolled_back {
                drop(store);
                let (mut again, _) = options
                    .open(StoreAt::backend(disk.backend()), collect)
                    .unwrap_or_else(|e| panic!("{context}: second reopen failed: {e}"));
                assert_eq!(
                    again.recovery(),
                    Recovery::RolledBack,
                    "{context}: the next open forgot the rollback"
                );
                again.accept_rollback().unwrap();
                drop(again);
                let (after, _) = options
                    .open(StoreAt::backend(disk.backend()), collect)
                    .unwrap_or_else(|e| panic!("{context}: third reopen failed: {e}"));
                assert_ne!(
                    after.recovery(),
                    Recovery::RolledBack,
                    "{context}: accepted, and still reported"
                );
            }
        }
    }
    sweep
}

#[test]
fn a_power_cut_at_any_io_point_loses_nothing_acknowledged_and_tears_nothing() {
    let sweep = sweep(&StoreOptions::default());
    assert!(sweep.crashes > 60);
    // Pins the detection behind Recovery::RolledBack: some torn cut must
    // leave a newest commit that fails verification.
    assert!(
        sweep.rolled_back > 0,
        "no crash made redb fall back to the previous commit"
    );
}

#[test]
fn with_two_phase_commit_a_power_cut_never_rolls_back_a_commit() {
    let sweep = sweep(&StoreOptions {
        two_phase_commit: true,
        ..StoreOptions::default()
    });
    assert!(sweep.crashes > 60);
    assert_eq!(sweep.rolled_back, 0);
}
