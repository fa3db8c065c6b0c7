//! A damaged store is refused, never served (Protocol-Aware Recovery, FAST'18).
//!
//! Two layers guard a record: redb's page checksums, verified at every open
//! by default, and the record's own CRC32C, checked on every load. Each
//! layer is tested alone where it can be.

mod common;

use common::*;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use tenure_core::LeaseName;
use tenure_storage::{
    OpenError, RecordError, Recovered, Recovery, SimDisk, Store, StoreOptions, FILE_NAME,
};

/// The holder id of the record the tests damage: unique bytes to find.
const MARKED: u64 = 777_777_777;

fn marked_name() -> LeaseName {
    // Sorts after every `lease/…` name, so later writes leave its page alone.
    LeaseName::new("zz/marked").unwrap()
}

fn needle() -> Vec<u8> {
    format!("holder-{MARKED}").into_bytes()
}

/// Options that trust redb's pages, leaving only the records' own checksums.
fn trusting() -> StoreOptions {
    StoreOptions {
        verify_pages_on_open: false,
        ..StoreOptions::default()
    }
}

/// Two hundred records, the marked one, then more batches elsewhere.
fn fill(store: &mut Store) -> Map {
    let mut expected = Map::new();
    let many: Vec<_> = (0..200).map(|i| write(i + 1, name(i), state(i))).collect();
    store.persist(&many).unwrap();
    apply(&mut expected, &many);
    let marked = vec![write(1000, marked_name(), state(MARKED))];
    store.persist(&marked).unwrap();
    apply(&mut expected, &marked);
    for batch in batches_after(1000, 10) {
        store.persist(&batch).unwrap();
        apply(&mut expected, &batch);
    }
    expected
}

fn refused(result: Result<(Store, Recovered), OpenError>) -> OpenError {
    match result {
        Ok((_, recovered)) => panic!(
            "a damaged store opened with {} records",
            recovered.records.len()
        ),
        Err(e) => e,
    }
}

/// Damage every copy of the marked record: freed pages may hold old ones.
fn damage_marked_record(disk: &SimDisk) {
    let found = disk.find(&needle());
    assert!(!found.is_empty());
    for offset in found {
        disk.corrupt(offset + 3, 0x01);
    }
}

/// The record's own checksum, with redb's page verification off: the layer
/// that still stands when redb trusts a damaged page.
#[test]
fn a_flipped_byte_in_a_record_is_refused_by_the_records_checksum() {
    let trusting = trusting();
    let disk = SimDisk::new();
    drop(fill(
        &mut trusting
            .open(StoreAt::backend(disk.backend()), collect)
            .unwrap()
            .0,
    ));
    damage_marked_record(&disk);
    let err = refused(trusting.open(StoreAt::backend(disk.backend()), collect));
    assert!(
        matches!(
            &err,
            OpenError::CorruptRecord { key, source: RecordError::Checksum { .. }, .. }
                if key == "zz/marked"
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Do NOT delete"), "{err}");
}

/// Streaming records into a consumer refuses the same damage, whether the
/// consumer reads every record or none, and takes no incarnation for it.
#[test]
fn a_flipped_byte_in_a_record_fails_a_streaming_open_too() {
    let trusting = trusting();
    let disk = SimDisk::new();
    drop(fill(
        &mut trusting
            .open(StoreAt::backend(disk.backend()), collect)
            .unwrap()
            .0,
    ));
    let copies = disk.find(&needle());
    let flip = || {
        for &offset in &copies {
            disk.corrupt(offset + 3, 0x01);
        }
    };
    flip();
    let stopped_at = |read_all: bool| {
        let mut seen = 0;
        let result = trusting.open(StoreAt::backend(disk.backend()), |_, records| {
            if read_all {
                seen = records.count();
            }
        });
        let err = result.expect_err("a damaged store must not open");
        assert!(
            matches!(&err, OpenError::CorruptRecord { key, .. } if key == "zz/marked"),
            "{err}"
        );
        seen
    };
    // The iteration ends at the damaged record: names after it never arrive.
    assert!(stopped_at(true) > 0);
    assert_eq!(stopped_at(false), 0);
    // No incarnation was taken on the damaged store: undamaged again, it
    // opens with the one after the filling open's.
    flip();
    let (_store, incarnation) = trusting
        .open(StoreAt::backend(disk.backend()), |boot, _| boot.incarnation)
        .unwrap();
    assert_eq!(incarnation, 2);
}

#[test]
fn a_flipped_byte_in_a_record_is_refused_by_page_verification() {
    let disk = SimDisk::new();
    drop(fill(
        &mut StoreOptions::default()
            .open(StoreAt::backend(disk.backend()), collect)
            .unwrap()
            .0,
    ));
    damage_marked_record(&disk);
    let err = refused(StoreOptions::default().open(StoreAt::backend(disk.backend()), collect));
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
}

/// After a crash redb repairs before anything is read; the damage must
/// stop that repair rather than be repaired away.
#[test]
fn a_flipped_byte_found_by_crash_recovery_is_refused() {
    for verify_pages_on_open in [false, true] {
        let options = StoreOptions {
            verify_pages_on_open,
            ..StoreOptions::default()
        };
        let disk = SimDisk::new();
        {
            let (mut store, _) = options
                .open(StoreAt::backend(disk.backend()), collect)
                .unwrap();
            fill(&mut store);
            disk.crash();
        }
        damage_marked_record(&disk);
        let err = refused(options.open(StoreAt::backend(disk.backend()), collect));
        assert!(
            matches!(
                err,
                OpenError::Corrupt { .. } | OpenError::CorruptRecord { .. }
            ),
            "{err}"
        );
    }
}

fn flip_in_file(dir: &Path) {
    let path = dir.join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = needle();
    let offsets: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert!(!offsets.is_empty());
    for offset in offsets {
        bytes[offset + 3] ^= 0x01;
    }
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_in_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(fill(
        &mut StoreOptions::default()
            .open(StoreAt::dir(dir.path()), collect)
            .unwrap()
            .0,
    ));
    flip_in_file(dir.path());
    let err = refused(StoreOptions::default().open(StoreAt::dir(dir.path()), collect));
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(fill(
        &mut StoreOptions::default()
            .open(StoreAt::dir(dir.path()), collect)
            .unwrap()
            .0,
    ));
    let path = dir.path().join(FILE_NAME);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    refused(StoreOptions::default().open(StoreAt::dir(dir.path()), collect));
}

#[test]
fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), vec![0xA5; 64 * 1024]).unwrap();
    refused(StoreOptions::default().open(StoreAt::dir(dir.path()), collect));
}

/// Pins the reason pages are verified at every open: without it, one
/// flipped byte in a branch page opened a store of 201 records with 34, and
/// a flipped length made the open try to allocate 45 GB. A flip anywhere
/// must be refused, or land in bytes nothing reads, so that the store opens
/// with exactly its records: never a third outcome.
#[test]
fn no_flipped_byte_makes_the_store_serve_other_records() {
    let base = SimDisk::new();
    let expected = fill(
        &mut StoreOptions::default()
            .open(StoreAt::backend(base.backend()), collect)
            .unwrap()
            .0,
    );
    let len = base.durable_len();
    let mut refusals = 0;
    // Every 61st byte: a prime stride meets every offset within a page.
    for offset in (0..len).step_by(61) {
        let disk = base.fork();
        disk.corrupt(offset, 0x10);
        match StoreOptions::default().open(StoreAt::backend(disk.backend()), collect) {
            Err(_) => refusals += 1,
            Ok((store, recovered)) => {
                assert_eq!(store.recovery(), Recovery::Clean);
                let got = as_map(recovered);
                assert!(got == expected, "a flip at {offset} served other records");
                // Nothing unverified is left to trip over later.
                panic::catch_unwind(AssertUnwindSafe(move || drop(store)))
                    .expect("a verified store closes");
            }
        }
    }
    assert!(refusals > 0);
}
