//! What a store gives back after a restart, on a real directory and on a SimDisk.

mod common;

use common::*;
use tenure_storage::{OpenError, Recovered, Recovery, SimDisk};

#[test]
fn persisted_records_come_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let (mut store, recovered) = StoreOptions::default()
            .open(StoreAt::dir(dir.path()), collect)
            .unwrap();
        assert!(recovered.records.is_empty());
        persist_batches(&mut store, 20)
    };
    let (store, recovered) = StoreOptions::default()
        .open(StoreAt::dir(dir.path()), collect)
        .unwrap();
    assert_eq!(as_map(recovered), expected);
    assert_eq!(store.recovery(), Recovery::Clean);
}

/// A consumer of the streaming open sees exactly what `open` collects,
/// in name order, with the incarnation `open` would have taken.
#[test]
fn streamed_records_are_the_collected_ones() {
    let disk = SimDisk::new();
    let expected = {
        let (mut store, _) = StoreOptions::default()
            .open(StoreAt::backend(disk.backend()), collect)
            .unwrap();
        persist_batches(&mut store, 20)
    };
    let (_store, (boot, streamed)) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), |boot, records| {
            (boot, records.collect::<Vec<_>>())
        })
        .unwrap();
    assert_eq!(boot.incarnation, 2);
    assert!(streamed.windows(2).all(|w| w[0].0 < w[1].0));
    let streamed = Recovered {
        incarnation: boot.incarnation,
        horizon: boot.horizon,
        token_floor: boot.token_floor,
        configuration: boot.configuration,
        records: streamed,
    };
    assert_eq!(as_map(streamed), expected);
    // A consumer that stops early still gets a store, checked in full.
    let (_store, first) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), |_, records| {
            records.next()
        })
        .unwrap();
    assert!(first.is_some());
    let (_store, recovered) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap();
    assert_eq!(recovered.incarnation, 4);
}

/// Ballots carry the incarnation: a node that reused one could propose two
/// values under one ballot.
#[test]
fn every_open_takes_a_new_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    for expected in 1..=4 {
        let (_store, recovered) = StoreOptions::default()
            .open(StoreAt::dir(dir.path()), collect)
            .unwrap();
        assert_eq!(recovered.incarnation, expected);
    }
    let disk = SimDisk::new();
    for expected in 1..=3 {
        let (_store, recovered) = StoreOptions::default()
            .open(StoreAt::backend(disk.backend()), collect)
            .unwrap();
        assert_eq!(recovered.incarnation, expected);
    }
}

#[test]
fn the_last_write_of_a_name_in_a_batch_wins() {
    let disk = SimDisk::new();
    {
        let (mut store, _) = StoreOptions::default()
            .open(StoreAt::backend(disk.backend()), collect)
            .unwrap();
        store
            .persist(&[
                write(1, name(1), state(1)),
                write(2, name(2), state(2)),
                write(3, name(1), state(3)),
            ])
            .unwrap();
    }
    let (_store, recovered) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap();
    assert_eq!(
        recovered.records,
        vec![(name(1), state(3)), (name(2), state(2))]
    );
}

#[test]
fn a_batch_costs_one_fsync_and_an_empty_batch_none() {
    let disk = SimDisk::new();
    let (mut store, _) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap();
    // Warm up past the file's first growth, which syncs its length once.
    let warm = batches(5);
    let last = warm.iter().flatten().map(|w| w.id.0).max().unwrap_or(0);
    for batch in warm {
        store.persist(&batch).unwrap();
    }
    let before = disk.stats().syncs;
    for batch in batches_after(last, 30) {
        store.persist(&batch).unwrap();
    }
    store.persist(&[]).unwrap();
    assert_eq!(disk.stats().syncs - before, 30);
}

#[test]
fn a_crashed_store_reopens_with_everything_persisted() {
    let disk = SimDisk::new();
    let expected = {
        let (mut store, _) = StoreOptions::default()
            .open(StoreAt::backend(disk.backend()), collect)
            .unwrap();
        let expected = persist_batches(&mut store, 10);
        disk.crash();
        expected
    };
    let (store, recovered) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap();
    assert_eq!(store.recovery(), Recovery::Repaired);
    assert_eq!(recovered.incarnation, 2);
    assert_eq!(as_map(recovered), expected);
}

#[test]
fn a_store_open_elsewhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = StoreOptions::default()
        .open(StoreAt::dir(dir.path()), collect)
        .unwrap();
    let err = StoreOptions::default()
        .open(StoreAt::dir(dir.path()), collect)
        .unwrap_err();
    assert!(matches!(err, OpenError::InUse { .. }), "{err}");
}

#[test]
fn a_directory_that_cannot_be_created_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = StoreOptions::default()
        .open(StoreAt::dir(&file.join("store")), collect)
        .unwrap_err();
    assert!(matches!(err, OpenError::Directory { .. }), "{err}");
}

#[test]
fn two_phase_commit_stores_the_same_records() {
    let disk = SimDisk::new();
    let options = StoreOptions {
        two_phase_commit: true,
        ..StoreOptions::default()
    };
    let expected = {
        let (mut store, _) = options
            .open(StoreAt::backend(disk.backend()), collect)
            .unwrap();
        persist_batches(&mut store, 5)
    };
    let (_store, recovered) = options
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap();
    assert_eq!(as_map(recovered), expected);
}

/// The cluster identity a node records comes back at every later open, and
/// a new store has none: the node compares and refuses a mismatch.
#[test]
fn a_recorded_cluster_identity_comes_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = StoreOptions::default()
            .open(StoreAt::dir(dir.path()), collect)
            .unwrap();
        assert_eq!(store.identity(), None);
        store
            .record_identity("cluster prod, members 1,2,3")
            .unwrap();
        assert_eq!(store.identity(), Some("cluster prod, members 1,2,3"));
        persist_batches(&mut store, 2);
    }
    let (store, _) = StoreOptions::default()
        .open(StoreAt::dir(dir.path()), collect)
        .unwrap();
    assert_eq!(store.identity(), Some("cluster prod, members 1,2,3"));
}
