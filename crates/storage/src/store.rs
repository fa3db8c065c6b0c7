//! The durable state of one node: every name's acceptor record and the
//! node's incarnation, in one redb file.
//!
//! Two tables, both `&str -> &[u8]`, every value framed and checksummed by
//! `record.rs`:
//! - `registers`: lease name → [`Durable`];
//! - `meta`: `format` (the layout of this file), `incarnation`,
//!   `horizon` (the acceptor's promise horizon; absent means 0), and
//!   `token-floor` (above the token of every compacted name; absent
//!   means 0).

use crate::error::{OpenError, PersistError};
use crate::record::{self, RecordError};
use redb::{
    Builder, Database, DatabaseError, Durability, ReadOnlyTable, ReadableDatabase,
    ReadableTableMetadata, StorageBackend, StorageError, TableDefinition, TableError,
};
use std::fs::File;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tenure_core::{Configuration, Durable, LeaseName, Record, Token, Write, WriteId};

mod open;

pub use open::{collect, Boot, Records, StoreAt, StoreOptions};

const REGISTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("registers");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";
const INCARNATION_KEY: &str = "incarnation";
const HORIZON_KEY: &str = "horizon";
const TOKEN_FLOOR_KEY: &str = "token-floor";
/// 1 once a life closed the store, 0 while one has it open. Informational
/// only: nothing about safety depends on it.
const CLOSED_KEY: &str = "closed";
/// 1 from an open that found the newest commit damaged and fell back to
/// the one before, written in the same commit as that open's incarnation,
/// until an operator accepts the store (`Store::accept_rollback`). Absent
/// in stores that never rolled back. (A build that does not know it
/// starts anyway, as builds before it did.)
const ROLLED_BACK_KEY: &str = "rolled-back";
/// The cluster this store belongs to and its members, as the node that
/// created it was told (`Store::record_identity`), so that a node started
/// with other flags, or on another cluster's data, is refused rather than
/// split the cluster. Absent in stores from before it; a build that does
/// not know it starts anyway.
const IDENTITY_KEY: &str = "identity";
/// The members and their epoch the node last acted under
/// (`tenure_core::Configuration`), written before it acts under them.
/// Absent in stores from before it and in stores whose node never changed
/// members: the node then starts at the first epoch, from its flags.
const CONFIGURATION_KEY: &str = "configuration";
/// The layout of the whole file: which tables, which keys. Bump it, with a
/// migration, when either changes. Format 2 added `horizon`: a build that
/// knows only format 1 would ignore it and forget promises, so it must
/// refuse the file. A format 1 file is read as horizon 0 (every promise of
/// that format was written per name) and upgraded at open. Format 3 added
/// `token-floor` and deleted registers (compaction): a build that knows
/// only format 2 would start a compacted name at token 0 again. Older
/// formats are read as token floor 0 (nothing was ever deleted).
const FORMAT: u32 = 3;
const FORMAT_BEFORE_COMPACTION: u32 = 2;
const FORMAT_BEFORE_HORIZON: u32 = 1;
/// The fewest registers deleted (compacted names) after which the store
/// compacts its file: a million names used once and deleted would
/// otherwise keep their 285 MB (docs/storage.md, "Space").
pub const SHRINK_AFTER_DELETES: u64 = 10_000;

/// The store's file inside the node's data directory.
pub const FILE_NAME: &str = "acceptor.redb";

/// Bounds redb's page cache. Loading reads every record once at start, and
/// then the node serves from the acceptor's own map, so the cache only
/// holds the pages writes touch: the B-tree's branch pages (about 1.5 MB
/// for a million names) and the leaves of recent writes, half of it at
/// most for a commit's dirty pages. Pages it drops stay in the kernel's
/// page cache. A million idle leases filled a 3-node cluster no slower
/// with 8 MiB than with 32 MiB, and 25 MB less resident per node (the
/// node targets 200 MB for a million idle names; see docs/storage.md).
pub const DEFAULT_CACHE_SIZE_BYTES: usize = 8 * 1024 * 1024;

/// Everything the node had promised and accepted, and its fresh incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// New for this start, and durable before `open` returned, so ballots
    /// of this life never repeat one of an earlier life.
    pub incarnation: u32,
    /// The acceptor's promise horizon, as last made durable.
    pub horizon: u64,
    /// The acceptor's token floor, as last made durable.
    pub token_floor: Token,
    /// The configuration last made durable, if any.
    pub configuration: Option<Configuration>,
    /// Every stored name, in name order.
    pub records: Vec<(LeaseName, Durable)>,
}

/// How the previous life of the store ended, as far as the file tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The store is new, or its last user closed it.
    Clean,
    /// The last process stopped without closing the store (a crash, a
    /// kill). redb verified every page of the newest commit and rebuilt its
    /// free-page lists: nothing acknowledged was lost.
    Repaired,
    /// The newest commit failed verification and redb fell back to the
    /// commit before it. After a power cut during a commit this is expected
    /// and harmless: that commit never completed its fsync, so nothing in it
    /// was acknowledged. The same symptom can also be damage to pages only
    /// the newest commit uses, which would lose acknowledged state; with one
    /// fsync per commit the two cannot be told apart (two-phase commit can:
    /// see [`StoreOptions::two_phase_commit`]). The verdict is written in
    /// the same commit as the new incarnation, so every later open reports
    /// it too, until [`Store::accept_rollback`]. See docs/storage.md.
    RolledBack,
}

/// The on-disk state of one node.
pub struct Store {
    db: Database,
    two_phase_commit: bool,
    /// Set by the first failed persist; every later persist returns it.
    stopped: Option<PersistError>,
    recovery: Recovery,
    location: String,
    /// Registers deleted since the file was last compacted.
    deleted_since_shrink: u64,
    /// See [`Store::stagger_shrinks`].
    shrink_stagger: u8,
    /// The id of the last write persisted in this life: ids only rise.
    last_write: WriteId,
    /// The cluster identity recorded in the store, if any.
    identity: Option<String>,
    /// The configuration recorded in the store, if any.
    configuration: Option<Configuration>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .field("recovery", &self.recovery)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Make `writes` durable in one transaction with one fsync; a later
    /// write of a name supersedes an earlier one. Returns only after the
    /// fsync. After any error, every later call fails too (fail-stop).
    pub fn persist(&mut self, writes: &[Write]) -> Result<(), PersistError> {
        if let Some(stopped) = &self.stopped {
            return Err(stopped.clone());
        }
        if writes.is_empty() {
            return Ok(());
        }
        // The node issues writes in order and they land in that order; a
        // shell that sent one twice or out of order could let a later
        // state be overwritten by an earlier one.
        for w in writes {
            assert!(
                w.id > self.last_write,
                "write {} persisted after write {}",
                w.id.0,
                self.last_write.0
            );
            self.last_write = w.id;
        }
        // redb may panic on a store damaged under it; that is a failed
        // persist like any other, and stops the store.
        let result = panic::catch_unwind(AssertUnwindSafe(|| self.commit(writes))).unwrap_or_else(
            |payload| {
                Err(PersistError::Panicked {
                    message: panic_message(payload.as_ref()),
                })
            },
        );
        if let Err(error) = &result {
            self.stopped = Some(error.clone().stopped());
            return result;
        }
        let adopted = writes.iter().rev().find_map(|w| match &w.record {
            Record::Configuration(c) => Some(c.clone()),
            _ => None,
        });
        if adopted.is_some() {
            self.configuration = adopted;
        }
        self.deleted_since_shrink += writes
            .iter()
            .filter(|w| matches!(w.record, Record::Compact { .. }))
            .count() as u64;
        let due = self.deleted_since_shrink >= SHRINK_AFTER_DELETES
            && self.deleted_since_shrink >= self.shrink_due();
        if due {
            // The batch is durable whatever happens here; a failure stops
            // later writes, as a failed commit would.
            if let Err(error) = self.shrink() {
                self.stopped = Some(error.stopped());
            }
        }
        result
    }

    /// Deletes after which the file is compacted: at least
    /// [`SHRINK_AFTER_DELETES`], and as many as the names still stored, so
    /// that the file is compacted once at least about half of it is free
    /// and the work stays proportional to the deletes. Staggered by
    /// [`Store::stagger_shrinks`], so that members that delete the same
    /// names do not all hold their commits at once.
    fn shrink_due(&self) -> u64 {
        let stored = self
            .db
            .begin_read()
            .ok()
            .and_then(|txn| txn.open_table(REGISTERS).ok()?.len().ok())
            .unwrap_or(0);
        let base = stored.max(SHRINK_AFTER_DELETES);
        base.saturating_mul(4 + u64::from(self.shrink_stagger)) / 4
    }

    /// Shift this store's compactions of its file by `step` (0 to 3)
    /// quarters of the usual interval: each member of a cluster takes
    /// its own, so that at most one of them holds its commits while its
    /// file is compacted.
    pub fn stagger_shrinks(&mut self, step: u8) {
        self.shrink_stagger = step % 4;
    }

    /// Give the pages that deleted registers freed back to the file
    /// system: redb reuses free pages but keeps the file's length until it
    /// is compacted. Runs [`SHRINK_AFTER_DELETES`] deletes after the last
    /// time by itself, and holds the store (so the node's commits) while
    /// it runs; see docs/storage.md, "Space", for how long.
    pub fn shrink(&mut self) -> Result<(), PersistError> {
        self.deleted_since_shrink = 0;
        let db = &mut self.db;
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            while db.compact().map_err(redb::Error::from)? {}
            Ok::<(), redb::Error>(())
        }));
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PersistError::Write(Arc::new(e))),
            Err(payload) => Err(PersistError::Panicked {
                message: panic_message(payload.as_ref()),
            }),
        }
    }

    /// Whether a persist has failed, so this store will never write again.
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// What recovery found in the newest commit.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// An operator has checked a store that rolled back and accepts it:
    /// clear the mark that made every open since report
    /// [`Recovery::RolledBack`], durably. This life still reports it.
    pub fn accept_rollback(&mut self) -> Result<(), OpenError> {
        self.clear_rollback()
            .map_err(|source| OpenError::AcceptRollback {
                store: self.location.clone(),
                source,
            })
    }

    fn clear_rollback(&mut self) -> Result<(), redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        txn.set_two_phase_commit(self.two_phase_commit);
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(
                ROLLED_BACK_KEY,
                record::encode_u32(ROLLED_BACK_KEY, 0).as_slice(),
            )?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The cluster identity this store was created for (see
    /// [`Store::record_identity`]); `None` in a new store, or one from
    /// before identities were kept.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The configuration the node last recorded (see
    /// [`tenure_core::Record::Configuration`]); `None` in a new store, or
    /// one whose node has only ever had its first configuration.
    pub fn configuration(&self) -> Option<&Configuration> {
        self.configuration.as_ref()
    }

    /// Record, durably, the identity of the cluster this store belongs to:
    /// an opaque text its node compares at every start.
    pub fn record_identity(&mut self, identity: &str) -> Result<(), OpenError> {
        let value = record::encode_text(IDENTITY_KEY, identity);
        self.put_meta(IDENTITY_KEY, &value)
            .map_err(|source| OpenError::RecordIdentity {
                store: self.location.clone(),
                source,
            })?;
        self.identity = Some(identity.to_string());
        Ok(())
    }

    /// Record, durably, the configuration a node starts in when it has
    /// none yet: the one a joining node was given. Later ones are the
    /// node's own records.
    pub fn record_configuration(&mut self, configuration: &Configuration) -> Result<(), OpenError> {
        let store = self.location.clone();
        let failed = |source| OpenError::RecordConfiguration {
            store: store.clone(),
            source,
        };
        let value = record::encode_configuration(CONFIGURATION_KEY, configuration)
            .map_err(|e| failed(redb::Error::Corrupted(e.to_string())))?;
        self.put_meta(CONFIGURATION_KEY, &value).map_err(failed)?;
        self.configuration = Some(configuration.clone());
        Ok(())
    }

    /// Write one meta entry, durably, in a transaction of its own.
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        txn.set_two_phase_commit(self.two_phase_commit);
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(key, value)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The file (or backend) this store lives in, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn commit(&self, writes: &[Write]) -> Result<(), PersistError> {
        let failed = |e: redb::Error| PersistError::Write(Arc::new(e));
        let mut txn = self.db.begin_write().map_err(|e| failed(e.into()))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| failed(e.into()))?;
        txn.set_two_phase_commit(self.two_phase_commit);
        {
            let mut table = txn.open_table(REGISTERS).map_err(|e| failed(e.into()))?;
            let mut horizon = None;
            let mut token_floor = None;
            let mut configuration = None;
            // In order, so that the last write of a name is the one that stays.
            for write in writes {
                match &write.record {
                    Record::Register { name, state } => {
                        let name = name.as_str();
                        let value = record::encode_durable(name, state).map_err(|source| {
                            PersistError::Encode {
                                name: name.to_string(),
                                source,
                            }
                        })?;
                        table
                            .insert(name, value.as_slice())
                            .map_err(|e| failed(e.into()))?;
                    }
                    Record::Horizon(h) => horizon = horizon.max(Some(*h)),
                    Record::Compact {
                        name,
                        token_floor: floor,
                    } => {
                        table.remove(name.as_str()).map_err(|e| failed(e.into()))?;
                        token_floor = token_floor.max(Some(floor.0));
                    }
                    Record::TokenFloor(floor) => token_floor = token_floor.max(Some(floor.0)),
                    Record::Configuration(c) => configuration = Some(c),
                }
            }
            let numbers = [(HORIZON_KEY, horizon), (TOKEN_FLOOR_KEY, token_floor)];
            if numbers.iter().any(|(_, n)| n.is_some()) || configuration.is_some() {
                let mut meta = txn.open_table(META).map_err(|e| failed(e.into()))?;
                if let Some(c) = configuration {
                    let value =
                        record::encode_configuration(CONFIGURATION_KEY, c).map_err(|source| {
                            PersistError::Encode {
                                name: CONFIGURATION_KEY.to_string(),
                                source,
                            }
                        })?;
                    meta.insert(CONFIGURATION_KEY, value.as_slice())
                        .map_err(|e| failed(e.into()))?;
                }
                for (key, n) in numbers {
                    if let Some(n) = n {
                        meta.insert(key, record::encode_u64(key, n).as_slice())
                            .map_err(|e| failed(e.into()))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| failed(e.into()))
    }
}

impl Drop for Store {
    /// Record a clean close, for [`Recovery::Clean`] next time. A stopped
    /// store writes nothing more, and a failure here only makes the next
    /// open report [`Recovery::Repaired`].
    fn drop(&mut self) {
        if self.stopped.is_some() {
            return;
        }
        let close = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_two_phase_commit(self.two_phase_commit);
            {
                let mut meta = txn.open_table(META)?;
                meta.insert(CLOSED_KEY, record::encode_u32(CLOSED_KEY, 1).as_slice())?;
            }
            txn.commit()?;
            Ok(())
        };
        let _ = close();
    }
}

/// Run `f`, turning a panic into a corruption error. redb trusts the
/// structure of a file it closed cleanly, and may panic on one that was
/// damaged since; a damaged store must stop the node with an error that
/// says so, not with a panic that reads like a bug.
fn guarded<T>(location: &str, f: impl FnOnce() -> T) -> Result<T, OpenError> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| OpenError::Corrupt {
        store: location.to_string(),
        detail: format!("reading it panicked: {}", panic_message(payload.as_ref())),
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}
