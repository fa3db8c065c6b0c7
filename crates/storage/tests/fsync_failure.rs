//! A failed fsync is fail-stop (the PostgreSQL fsync lesson).
//!
//! After a failed fsync, Linux may have marked the dirty pages clean: reads
//! still show the data, a retried fsync succeeds, and yet the data never
//! reaches the disk. A store that retried and reported success would
//! acknowledge promises it has lost. SimDisk models exactly that, and these
//! tests pin that nothing is acknowledged after the first failure.

mod common;

use common::*;
use std::sync::mpsc;
use std::time::Duration;
use tenure_core::Write;
use tenure_storage::{Committer, OpenError, PersistError, SimDisk};

const WAIT: Duration = Duration::from_secs(10);

fn assert_nothing_acked_is_missing(disk: &SimDisk, acked: &[Vec<Write>], failed: &[Write]) {
    disk.crash();
    let (_store, recovered) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap();
    let got = as_map(recovered);
    let mut expected = Map::new();
    for batch in acked {
        apply(&mut expected, batch);
    }
    let mut with_failed = expected.clone();
    apply(&mut with_failed, failed);
    assert!(
        got == expected || got == with_failed,
        "after a crash the store holds {got:?}, expected the acknowledged {expected:?}"
    );
}

#[test]
fn after_a_failed_fsync_the_store_never_reports_success_again() {
    let disk = SimDisk::new();
    let work = batches(4);
    let (mut store, _) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap();
    store.persist(&work[0]).unwrap();

    disk.fail_next_sync();
    let err = store.persist(&work[1]).unwrap_err();
    assert!(matches!(err, PersistError::Write(_)), "{err}");
    assert!(store.is_stopped());

    // The disk works again, and a retry would "succeed": it must not be tried.
    let writes_before = disk.stats().writes;
    for batch in &work[2..] {
        let err = store.persist(batch).unwrap_err();
        assert!(matches!(err, PersistError::FailStopped { .. }), "{err}");
    }
    assert!(matches!(
        store.persist(&[]),
        Err(PersistError::FailStopped { .. })
    ));
    assert_eq!(disk.stats().writes, writes_before, "a stopped store wrote");
    drop(store);

    assert_nothing_acked_is_missing(&disk, &work[..1], &work[1]);
}

#[test]
fn after_a_failed_fsync_the_committer_fails_that_batch_and_every_later_one() {
    let disk = SimDisk::new();
    let work = batches(5);
    let (store, _) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap();
    let committer = Committer::spawn(store, 16);
    let submit = |batch: &Vec<Write>| {
        let (tx, rx) = mpsc::channel();
        committer.submit(
            batch.clone(),
            Box::new(move |result| tx.send(result).unwrap()),
        );
        rx.recv_timeout(WAIT).unwrap()
    };

    let last_id = work[0].iter().map(|w| w.id).max().unwrap();
    assert_eq!(submit(&work[0]).unwrap(), last_id);

    disk.fail_next_sync();
    assert!(matches!(submit(&work[1]), Err(PersistError::Write(_))));

    let stats = disk.stats();
    for batch in &work[2..] {
        assert!(matches!(
            submit(batch),
            Err(PersistError::FailStopped { .. })
        ));
    }
    assert!(matches!(
        submit(&Vec::new()),
        Err(PersistError::FailStopped { .. })
    ));
    assert_eq!(
        disk.stats().writes,
        stats.writes,
        "a stopped committer wrote"
    );
    assert_eq!(
        disk.stats().syncs,
        stats.syncs,
        "a stopped committer synced"
    );
    committer.shutdown();

    assert_nothing_acked_is_missing(&disk, &work[..1], &work[1]);
}

#[test]
fn a_failed_fsync_during_open_stops_the_open() {
    let disk = SimDisk::new();
    drop(
        StoreOptions::default()
            .open(StoreAt::backend(disk.backend()), collect)
            .unwrap(),
    );
    disk.fail_next_sync();
    let err = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap_err();
    assert!(
        matches!(err, OpenError::Write { .. } | OpenError::Unreadable { .. }),
        "{err}"
    );
    // No ballot was ever drawn from the incarnation that failed to become
    // durable, so the next open may take it again.
    disk.crash();
    let (_store, recovered) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap();
    assert!(recovered.incarnation >= 2);
}

/// A panic inside a commit (here from the disk itself) is a failed persist
/// like any other: reported, and final.
#[test]
fn a_panic_inside_a_commit_stops_the_store() {
    let disk = SimDisk::new();
    let work = batches(3);
    let (mut store, _) = StoreOptions::default()
        .open(StoreAt::backend(disk.backend()), collect)
        .unwrap();
    store.persist(&work[0]).unwrap();
    disk.set_sync_hook(|_| panic!("the disk driver failed an assertion"));
    let err = store.persist(&work[1]).unwrap_err();
    assert!(matches!(err, PersistError::Panicked { .. }), "{err}");
    disk.clear_sync_hook();
    let writes = disk.stats().writes;
    assert!(matches!(
        store.persist(&work[2]),
        Err(PersistError::FailStopped { .. })
    ));
    assert_eq!(disk.stats().writes, writes, "a stopped store wrote");
    // redb's own close may trip over what the panic left behind.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(store)));
    assert_nothing_acked_is_missing(&disk, &work[..1], &work[1]);
}
