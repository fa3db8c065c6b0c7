//! A node's disk: what was synced survives a crash, what was not is lost.

use std::collections::BTreeMap;
use tenure_core::{Durable, LeaseName, Write, WriteId};

#[derive(Default)]
pub struct Disk {
    durable: BTreeMap<LeaseName, Durable>,
    unsynced: Vec<Write>,
    /// Boots so far; the next incarnation is this plus one.
    pub boots: u32,
}

impl Disk {
    pub fn write(&mut self, write: Write) {
        self.unsynced.push(write);
    }

    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }

    pub fn last_unsynced(&self) -> Option<WriteId> {
        self.unsynced.last().map(|w| w.id)
    }

    /// Make every write up to `through` durable.
    pub fn sync(&mut self, through: WriteId) {
        let keep = self
            .unsynced
            .split_off(self.unsynced.partition_point(|w| w.id <= through));
        for w in std::mem::replace(&mut self.unsynced, keep) {
            self.durable.insert(w.name, w.state);
        }
    }

    /// A crash: unsynced writes are gone.
    pub fn crash(&mut self) {
        self.unsynced.clear();
    }

    pub fn records(&self) -> Vec<(LeaseName, Durable)> {
        self.durable
            .iter()
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect()
    }
}
