//! Records and batches for the storage tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use tenure_core::lease::Grant;
use tenure_core::{
    Ballot, Durable, HolderId, LeaseName, LeaseValue, LockDelay, Token, Ttl, Write, WriteId,
};

pub fn name(i: u64) -> LeaseName {
    LeaseName::new(&format!("lease/{i}")).unwrap()
}

pub fn ballot(counter: u64) -> Ballot {
    Ballot {
        counter,
        node: 2,
        incarnation: 1,
    }
}

/// A full record: promised, accepted and held, so every field is on disk.
pub fn state(version: u64) -> Durable {
    let accepted = ballot(version);
    Durable {
        promised: accepted.successor(),
        accepted: Some((
            accepted,
            LeaseValue {
                token: Token(version),
                grant: Some(Grant {
                    holder: HolderId::new(&format!("holder-{version}")).unwrap(),
                    ttl: Ttl::from_millis(10_000).unwrap(),
                    lock_delay: LockDelay::from_millis(0).unwrap(),
                }),
                ..LeaseValue::default()
            },
        )),
    }
}

pub fn write(id: u64, name: LeaseName, state: Durable) -> Write {
    Write {
        id: WriteId(id),
        name,
        state,
    }
}

/// A deterministic workload: batch `b` rewrites a few names shared with
/// other batches and adds one name of its own, so a half-applied batch or
/// an old version shows up as a wrong map.
pub fn batches(count: u64) -> Vec<Vec<Write>> {
    let mut id = 0;
    (1..=count)
        .map(|b| {
            let mut batch = Vec::new();
            for shared in [b % 5, (b * 3) % 7 + 5] {
                id += 1;
                batch.push(write(id, name(shared), state(b * 10 + shared)));
            }
            id += 1;
            batch.push(write(id, name(100 + b), state(b)));
            batch
        })
        .collect()
}

pub type Map = BTreeMap<LeaseName, Durable>;

pub fn apply(map: &mut Map, batch: &[Write]) {
    for w in batch {
        map.insert(w.name.clone(), w.state.clone());
    }
}

pub fn as_map(records: Vec<(LeaseName, Durable)>) -> Map {
    let len = records.len();
    let map: Map = records.into_iter().collect();
    assert_eq!(map.len(), len, "a name was loaded twice");
    map
}
