//! A real process, killed with SIGKILL while it persists, loses nothing it
//! acknowledged.
//!
//! The test binary re-runs itself as the child: `child_persists_until_killed`
//! does nothing unless `CHILD_DIR` is set, in which case it persists batches
//! to that directory and prints `ack N` after each persist returns. The
//! parent reads some acks, kills the child mid-stream, reopens the store and
//! checks every acknowledged batch. A SIGKILL keeps the kernel's page cache,
//! so this pins the process side (redb's commit protocol, our ack order);
//! SimDisk's power cuts pin the disk side.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use tenure_core::{LeaseName, Write};
use tenure_storage::Recovery;

const CHILD_DIR: &str = "TENURE_STORAGE_TEST_CHILD_DIR";
const CHILD_ROUND: &str = "TENURE_STORAGE_TEST_CHILD_ROUND";
/// The child stops by itself after this many batches.
const MAX_BATCHES: u64 = 20_000;

/// Batch `i` of round `r`: a name of its own and one shared with others.
fn batch(round: u64, i: u64) -> Vec<Write> {
    let version = round * 1_000_000 + i;
    vec![
        write(3 * i, own_name(round, i), state(version)),
        write(3 * i + 1, shared_name(i), state(version)),
        horizon(3 * i + 2, version),
    ]
}

fn own_name(round: u64, i: u64) -> LeaseName {
    LeaseName::new(&format!("round-{round}/batch-{i}")).unwrap()
}

fn shared_name(i: u64) -> LeaseName {
    LeaseName::new(&format!("shared/{}", i % 7)).unwrap()
}

#[test]
fn child_persists_until_killed() {
    let (Ok(dir), Ok(round)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ROUND)) else {
        return;
    };
    let round: u64 = round.parse().unwrap();
    let (mut store, _) = StoreOptions::default()
        .open(StoreAt::dir(Path::new(&dir)), collect)
        .unwrap();
    for i in 1..=MAX_BATCHES {
        store.persist(&batch(round, i)).unwrap();
        // Only after persist returned: this line is the acknowledgement.
        println!("ack {i}");
    }
}

#[test]
fn a_killed_process_loses_no_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();
    // Acknowledged batches of earlier rounds must survive later kills too.
    let mut acked_before: Vec<(u64, u64)> = Vec::new();
    for round in 1..=3u64 {
        let mut child = Command::new(&me)
            .args(["--exact", "child_persists_until_killed", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // A different kill point each round.
        let kill_after = 10 + 13 * round;
        let mut acked = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("ack ") {
                acked = n.parse().unwrap();
                if acked >= kill_after {
                    break;
                }
            }
        }
        // SIGKILL on unix: no destructor, no clean close.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(acked >= kill_after, "the child stopped after {acked} acks");

        let (store, recovered) = StoreOptions::default()
            .open(StoreAt::dir(dir.path()), collect)
            .unwrap();
        assert_ne!(
            store.recovery(),
            Recovery::Clean,
            "a killed store was closed"
        );
        let got = as_map(recovered);
        for &(earlier, i) in &acked_before {
            let earlier_batch = batch(earlier, i);
            let (name, state) = register(&earlier_batch[0]);
            assert_eq!(got.get(name), Some(state), "round {earlier} batch {i} lost");
        }
        for i in 1..=acked {
            acked_before.push((round, i));
            let expected = batch(round, i);
            let (own, own_state) = register(&expected[0]);
            assert_eq!(
                got.get(own),
                Some(own_state),
                "round {round}: acknowledged batch {i} is missing"
            );
            // A later, unacknowledged batch may have landed too, never an older one.
            let (shared_name, shared_state) = register(&expected[1]);
            let shared = got.get(shared_name).unwrap();
            let (ballot, _) = shared.accepted.as_ref().unwrap();
            assert!(ballot.counter >= shared_state.accepted.as_ref().unwrap().0.counter);
            assert!(
                got.horizon >= round * 1_000_000 + i,
                "round {round}: the horizon of acknowledged batch {i} went back"
            );
        }
        drop(store);
    }
}
