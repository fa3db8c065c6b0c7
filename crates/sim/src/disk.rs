//! A node's disk: the real storage (`tenure_storage::Store`, redb) on a
//! simulated device that loses everything not synced when the node crashes.
//!
//! Writes the node issues wait here until the simulated fsync completes;
//! then they are committed to the store in one transaction, as the server's
//! group commit does. A crash before that loses them, like a real crash
//! before the fsync returned.

use tenure_core::{Config, Instant, Node, Write, WriteId};
use tenure_storage::{
    boot_node, Boot, BootError, PersistError, SimDisk, Store, StoreAt, StoreOptions,
};

pub struct Disk {
    device: SimDisk,
    store: Option<Store>,
    unsynced: Vec<Write>,
}

impl Default for Disk {
    fn default() -> Self {
        Disk {
            device: SimDisk::new(),
            store: None,
            unsynced: Vec::new(),
        }
    }
}

impl Disk {
    /// Start a node on the store exactly as `tenure server` does
    /// (`tenure_storage::boot_node`): the acceptor built from the records
    /// as they are read, in a new incarnation, durably bumped.
    pub fn boot(
        &mut self,
        config: impl FnOnce(Boot) -> Config,
        now: Instant,
    ) -> Result<Node, BootError> {
        let at = StoreAt::backend(self.device.backend());
        let (store, node) = boot_node(&StoreOptions::default(), at, config, now)?;
        self.store = Some(store);
        Ok(node)
    }

    pub fn write(&mut self, write: Write) {
        self.unsynced.push(write);
    }

    pub fn last_unsynced(&self) -> Option<WriteId> {
        self.unsynced.last().map(|w| w.id)
    }

    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }

    /// Commit every write up to `through` with one fsync. `fail` makes that
    /// fsync fail, which the caller must treat as fail-stop.
    pub fn sync(&mut self, through: WriteId, fail: bool) -> Result<(), PersistError> {
        let keep = self
            .unsynced
            .split_off(self.unsynced.partition_point(|w| w.id <= through));
        let batch = std::mem::replace(&mut self.unsynced, keep);
        if fail {
            self.device.fail_next_sync();
        }
        match self.store.as_mut() {
            Some(store) => store.persist(&batch),
            None => Ok(()),
        }
    }

    /// The node crashed: the device loses what was not synced, and writes
    /// still waiting for their fsync are gone with the process.
    pub fn crash(&mut self) {
        self.unsynced.clear();
        self.store = None;
        self.device.crash();
    }
}
