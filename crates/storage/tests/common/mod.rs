//! Records and batches for the storage tests.
#![allow(dead_code)]

// Every test opens stores the one way there is.
use std::collections::BTreeMap;
use tenure_core::lease::Grant;
use tenure_core::{
    Ballot, Durable, HolderId, LeaseName, LeaseValue, LockDelay, Record, Token, Ttl, Write, WriteId,
};
use tenure_storage::Recovered;
#[allow(unused_imports)] // Each test file uses a different part.
pub use tenure_storage::{collect, StoreAt, StoreOptions};

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
                    waiter: None,
                    expired: false,
                }),
                ..LeaseValue::default()
            },
        )),
    }
}

pub fn write(id: u64, name: LeaseName, state: Durable) -> Write {
    Write {
        id: WriteId(id),
        record: Record::Register { name, state },
    }
}

pub fn horizon(id: u64, horizon: u64) -> Write {
    Write {
        id: WriteId(id),
        record: Record::Horizon(horizon),
    }
}

/// The name and state a register write carries.
pub fn register(write: &Write) -> (&LeaseName, &Durable) {
    match &write.record {
        Record::Register { name, state } => (name, state),
        _ => panic!("not a register write"),
    }
}

/// A deterministic workload: batch `b` rewrites a few names shared with
/// other batches and adds one name of its own, so a half-applied batch or
/// an old version shows up as a wrong map.
pub fn batches(count: u64) -> Vec<Vec<Write>> {
    batches_after(0, count)
}

/// [`batches`], its write ids after `last_id`: a store takes ids that only
/// rise, as a node issues them.
pub fn batches_after(last_id: u64, count: u64) -> Vec<Vec<Write>> {
    let mut id = last_id;
    (1..=count)
        .map(|b| {
            let mut batch = Vec::new();
            for shared in [b % 5, (b * 3) % 7 + 5] {
                id += 1;
                batch.push(write(id, name(shared), state(b * 10 + shared)));
            }
            id += 1;
            batch.push(write(id, name(100 + b), state(b)));
            if b % 3 == 0 {
                id += 1;
                batch.push(horizon(id, b * 1000));
            }
            if b % 4 == 0 {
                // The name the batch before added, compacted.
                id += 1;
                batch.push(Write {
                    id: WriteId(id),
                    record: Record::Compact {
                        name: name(100 + b - 1),
                        token_floor: tenure_core::Token(b),
                    },
                });
            }
            batch
        })
        .collect()
}

/// What a store should hold: the horizon and every name's record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Map {
    pub horizon: u64,
    pub token_floor: u64,
    pub registers: BTreeMap<LeaseName, Durable>,
    pub configuration: Option<tenure_core::Configuration>,
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    pub fn get(&self, name: &LeaseName) -> Option<&Durable> {
        self.registers.get(name)
    }
}

pub fn apply(map: &mut Map, batch: &[Write]) {
    for w in batch {
        match &w.record {
            Record::Register { name, state } => {
                map.registers.insert(name.clone(), state.clone());
            }
            Record::Horizon(h) => map.horizon = map.horizon.max(*h),
            Record::Compact { name, token_floor } => {
                map.registers.remove(name);
                map.token_floor = map.token_floor.max(token_floor.0);
            }
            Record::TokenFloor(floor) => map.token_floor = map.token_floor.max(floor.0),
            Record::Configuration(c) => map.configuration = Some(c.clone()),
        }
    }
}

/// Persist `batches(count)` into `store`, one batch per persist; what the
/// store should then hold.
pub fn persist_batches(store: &mut tenure_storage::Store, count: u64) -> Map {
    let mut expected = Map::new();
    for batch in batches(count) {
        store.persist(&batch).unwrap();
        apply(&mut expected, &batch);
    }
    expected
}

pub fn as_map(recovered: Recovered) -> Map {
    let len = recovered.records.len();
    let registers: BTreeMap<_, _> = recovered.records.into_iter().collect();
    assert_eq!(registers.len(), len, "a name was loaded twice");
    Map {
        horizon: recovered.horizon,
        token_floor: recovered.token_floor.0,
        registers,
        configuration: recovered.configuration,
    }
}
