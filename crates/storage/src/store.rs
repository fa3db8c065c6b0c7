//! The durable state of one node: every name's acceptor record and the
//! node's incarnation, in one redb file.
//!
//! Two tables, both `&str -> &[u8]`, every value framed and checksummed by
//! `record.rs`:
//! - `registers`: lease name → [`Durable`];
//! - `meta`: `format` (the layout of this file), `incarnation`, and
//!   `horizon` (the acceptor's promise horizon; absent means 0).

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
use tenure_core::{Durable, LeaseName, Record, Write};

const REGISTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("registers");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";
const INCARNATION_KEY: &str = "incarnation";
const HORIZON_KEY: &str = "horizon";
/// 1 once a life closed the store, 0 while one has it open. Informational
/// only: nothing about safety depends on it.
const CLOSED_KEY: &str = "closed";
/// The layout of the whole file: which tables, which keys. Bump it, with a
/// migration, when either changes. Format 2 added `horizon`: a build that
/// knows only format 1 would ignore it and forget promises, so it must
/// refuse the file. A format 1 file is read as horizon 0 (every promise of
/// that format was written per name) and upgraded at open.
const FORMAT: u32 = 2;
const FORMAT_BEFORE_HORIZON: u32 = 1;
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
    /// see [`StoreOptions::two_phase_commit`]). A node should log this
    /// loudly. See docs/storage.md.
    RolledBack,
}

/// How to open a store. `StoreOptions::default()` is what a node uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// redb's page cache bound, in bytes.
    pub cache_size_bytes: usize,
    /// Verify the checksum of every page at every open, not only after an
    /// unclean shutdown. redb trusts the structure of a file it closed
    /// cleanly; a damaged branch page can then hide a subtree, or point at
    /// an old copy of a page whose records carry valid checksums of their
    /// own. Costs one read of the whole file per start.
    pub verify_pages_on_open: bool,
    /// Commit with two fsyncs instead of one. Then a newest commit that
    /// fails verification is reported as corruption instead of being rolled
    /// back (see [`Recovery::RolledBack`]), at the cost of a second fsync in
    /// every commit.
    pub two_phase_commit: bool,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            cache_size_bytes: DEFAULT_CACHE_SIZE_BYTES,
            verify_pages_on_open: true,
            two_phase_commit: false,
        }
    }
}

/// The on-disk state of one node.
pub struct Store {
    db: Database,
    two_phase_commit: bool,
    /// Set by the first failed persist; every later persist returns it.
    stopped: Option<PersistError>,
    recovery: Recovery,
    location: String,
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

impl StoreOptions {
    /// Open or create the store in directory `dir` (see [`Store::open`]).
    pub fn open(&self, dir: &Path) -> Result<(Store, Recovered), OpenError> {
        self.open_into(dir, collect)
    }

    /// Open or create the store on `backend` (see [`Store::open_with_backend`]).
    pub fn open_backend(
        &self,
        backend: impl StorageBackend,
    ) -> Result<(Store, Recovered), OpenError> {
        self.open_backend_into(backend, collect)
    }

    /// Open or create the store in directory `dir`, and hand its records to
    /// `build` as they are read, rather than collected first: a node builds
    /// its acceptor straight from them, so a million records never exist
    /// twice in memory.
    ///
    /// `build` gets the new incarnation, the promise horizon, and the
    /// records in name order. Each
    /// record is checked as it is read; the first that fails ends the
    /// iteration, and then `open_into` returns the error and drops what
    /// `build` made. Records `build` leaves unread are read and checked all
    /// the same. Only when every record was good is the incarnation made
    /// durable, before this returns: `build` must let nothing that uses it
    /// (a ballot, a message) out of the process.
    pub fn open_into<T>(
        &self,
        dir: &Path,
        build: impl FnOnce(Boot, &mut Records<'_>) -> T,
    ) -> Result<(Store, T), OpenError> {
        let directory = |source| OpenError::Directory {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(directory)?;
        let path = dir.join(FILE_NAME);
        let new_file = !path.try_exists().map_err(directory)?;
        let opened = self.open_with(
            path.display().to_string(),
            |builder| builder.create(&path),
            build,
        )?;
        if new_file {
            // The file's fsync does not make its directory entry durable: without
            // this, a power cut could remove a store whose incarnation was
            // already handed out, and the node would reuse its ballots.
            sync_dir(dir).map_err(directory)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(directory)?;
            }
        }
        Ok(opened)
    }

    /// As [`StoreOptions::open_into`], on any redb backend.
    pub fn open_backend_into<T>(
        &self,
        backend: impl StorageBackend,
        build: impl FnOnce(Boot, &mut Records<'_>) -> T,
    ) -> Result<(Store, T), OpenError> {
        let location = format!("{backend:?}");
        self.open_with(
            location,
            move |builder| builder.create_with_backend(backend),
            build,
        )
    }

    fn open_with<T>(
        &self,
        location: String,
        create: impl FnOnce(&Builder) -> Result<Database, DatabaseError>,
        build: impl FnOnce(Boot, &mut Records<'_>) -> T,
    ) -> Result<(Store, T), OpenError> {
        let fell_back = Arc::new(AtomicBool::new(false));
        let mut builder = Database::builder();
        builder.set_cache_size(self.cache_size_bytes);
        builder.set_check_integrity_on_open(self.verify_pages_on_open);
        let seen = fell_back.clone();
        builder.set_repair_callback(move |session| {
            // redb calls back at progress 0.3 only when the newest commit
            // failed verification, just before it falls back to the one
            // before (pinned by the crash tests).
            if (0.2..0.5).contains(&session.progress()) {
                seen.store(true, Ordering::Relaxed);
            }
        });

        let db =
            guarded(&location, || create(&builder))?.map_err(|e| database_error(&location, e))?;
        let (built, closed) = match recover(&db, &location, self.two_phase_commit, build) {
            Ok(recovered) => recovered,
            Err(error) => {
                // A panic inside redb may have poisoned its locks, and its
                // Drop would then panic too: contain that as well.
                let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(db)));
                return Err(error);
            }
        };

        let recovery = if fell_back.load(Ordering::Relaxed) {
            Recovery::RolledBack
        } else if closed {
            Recovery::Clean
        } else {
            Recovery::Repaired
        };
        let store = Store {
            db,
            two_phase_commit: self.two_phase_commit,
            stopped: None,
            recovery,
            location,
        };
        Ok((store, built))
    }
}

/// The records of a store being opened, in name order, each checked as it
/// is read (see [`StoreOptions::open_into`]). Ends early at the first bad
/// one; `open_into` then fails.
pub struct Records<'a> {
    location: &'a str,
    range: Option<redb::Range<'static, &'static str, &'static [u8]>>,
    read: u64,
    error: Option<OpenError>,
}

impl Iterator for Records<'_> {
    type Item = (LeaseName, Durable);

    fn next(&mut self) -> Option<(LeaseName, Durable)> {
        if self.error.is_some() {
            return None;
        }
        let range = self.range.as_mut()?;
        let location = self.location;
        let entry = match guarded(location, || range.next()) {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                self.range = None;
                return None;
            }
            Err(panicked) => {
                self.error = Some(panicked);
                return None;
            }
        };
        let decoded = entry
            .map_err(|e| unreadable(location, e.into()))
            .and_then(|(key, value)| {
                let key = key.value();
                let bad_record = |source| OpenError::CorruptRecord {
                    store: location.to_string(),
                    key: key.to_string(),
                    source,
                };
                let name = LeaseName::new(key).map_err(|e| bad_record(RecordError::Name(e)))?;
                let state = record::decode_durable(key, value.value()).map_err(bad_record)?;
                Ok((name, state))
            });
        match decoded {
            Ok(record) => {
                self.read += 1;
                Some(record)
            }
            Err(error) => {
                self.error = Some(error);
                None
            }
        }
    }
}

/// What a store says a node starts from, besides its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boot {
    /// New for this start (see [`Recovered::incarnation`]).
    pub incarnation: u32,
    /// The acceptor's promise horizon, as last made durable.
    pub horizon: u64,
}

fn collect(boot: Boot, records: &mut Records<'_>) -> Recovered {
    Recovered {
        incarnation: boot.incarnation,
        horizon: boot.horizon,
        records: records.collect(),
    }
}

/// Read the meta table, stream every record into `build`, check that all
/// were read and good, then durably take the next incarnation. Returns what
/// `build` made, and whether the last life closed the store.
fn recover<T>(
    db: &Database,
    location: &str,
    two_phase_commit: bool,
    build: impl FnOnce(Boot, &mut Records<'_>) -> T,
) -> Result<(T, bool), OpenError> {
    let txn = guarded(location, || db.begin_read())?.map_err(|e| unreadable(location, e.into()))?;
    let opened = guarded(location, || open_tables(&txn, location));
    let (meta, registers) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) | Err(error) => {
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(txn)));
            return Err(error);
        }
    };
    // Never wrap: incarnation 1 again would let ballots repeat.
    let incarnation =
        meta.incarnation
            .checked_add(1)
            .ok_or_else(|| OpenError::IncarnationExhausted {
                store: location.to_string(),
            })?;
    let (count, range) = match registers {
        Some((count, range)) => (count, Some(range)),
        None => (0, None),
    };
    let mut records = Records {
        location,
        range,
        read: 0,
        error: None,
    };
    let boot = Boot {
        incarnation,
        horizon: meta.horizon,
    };
    let built = build(boot, &mut records);
    // Check the records `build` left unread too.
    for _ in records.by_ref() {}
    let (read, error) = (records.read, records.error.take());
    // redb may panic dropping what a panic left behind.
    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop((records, txn))));
    if let Some(error) = error {
        return Err(error);
    }
    // A record that is silently skipped is a promise forgotten.
    if read != count {
        return Err(OpenError::Corrupt {
            store: location.to_string(),
            detail: format!("its registers table claims {count} records but {read} were found"),
        });
    }
    guarded(location, || {
        begin_incarnation(db, incarnation, meta.format, two_phase_commit)
    })?
    .map_err(|source| OpenError::Write {
        store: location.to_string(),
        source,
    })?;
    Ok((built, meta.closed))
}

impl Store {
    /// Open or create the store in directory `dir`. Loads every record, and
    /// durably bumps the node's incarnation (first open → 1) before
    /// returning. A store that is corrupt, unreadable, or cannot record the
    /// new incarnation is an error, never an empty start.
    pub fn open(dir: &Path) -> Result<(Store, Recovered), OpenError> {
        StoreOptions::default().open(dir)
    }

    /// As [`Store::open`], on any redb backend: a
    /// [`SimDisk`](crate::SimDisk) backend in tests and the simulator.
    pub fn open_with_backend(
        backend: impl StorageBackend,
    ) -> Result<(Store, Recovered), OpenError> {
        StoreOptions::default().open_backend(backend)
    }

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
        }
        result
    }

    /// Whether a persist has failed, so this store will never write again.
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// What recovery found in the newest commit.
    pub fn recovery(&self) -> Recovery {
        self.recovery
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
                }
            }
            if let Some(horizon) = horizon {
                let mut meta = txn.open_table(META).map_err(|e| failed(e.into()))?;
                meta.insert(
                    HORIZON_KEY,
                    record::encode_u64(HORIZON_KEY, horizon).as_slice(),
                )
                .map_err(|e| failed(e.into()))?;
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

/// What the meta table says about the file before this open.
struct Meta {
    /// The file's format; `None` for a new store (no tables yet).
    format: Option<u32>,
    closed: bool,
    incarnation: u32,
    horizon: u64,
}

/// The registers table's record count, and a range over all its records.
type Registers = (u64, redb::Range<'static, &'static str, &'static [u8]>);

fn open_tables(
    txn: &redb::ReadTransaction,
    location: &str,
) -> Result<(Meta, Option<Registers>), OpenError> {
    let unreadable = |source: redb::Error| unreadable(location, source);
    let corrupt = |detail: String| OpenError::Corrupt {
        store: location.to_string(),
        detail,
    };
    let bad_record = |key: &str, source: RecordError| OpenError::CorruptRecord {
        store: location.to_string(),
        key: key.to_string(),
        source,
    };

    let meta = optional_table(txn.open_table(META)).map_err(unreadable)?;
    let registers: Option<ReadOnlyTable<&str, &[u8]>> =
        optional_table(txn.open_table(REGISTERS)).map_err(unreadable)?;
    let (meta, registers) = match (meta, registers) {
        (None, None) => {
            let meta = Meta {
                format: None,
                closed: true,
                incarnation: 0,
                horizon: 0,
            };
            return Ok((meta, None));
        }
        (Some(meta), Some(registers)) => (meta, registers),
        // Both tables are created by the first open's one transaction.
        _ => return Err(corrupt("one of its two tables is missing".into())),
    };

    let meta_u32 = |key: &str| -> Result<u32, OpenError> {
        let value = meta
            .get(key)
            .map_err(|e| unreadable(e.into()))?
            .ok_or_else(|| corrupt(format!("its {key:?} entry is missing")))?;
        record::decode_u32(key, value.value()).map_err(|e| bad_record(key, e))
    };
    let format = meta_u32(FORMAT_KEY)?;
    if format != FORMAT && format != FORMAT_BEFORE_HORIZON {
        return Err(OpenError::UnsupportedFormat {
            store: location.to_string(),
            found: format,
            supported: FORMAT,
        });
    }
    let incarnation = meta_u32(INCARNATION_KEY)?;
    let closed = meta_u32(CLOSED_KEY)? == 1;
    let horizon = match meta.get(HORIZON_KEY).map_err(|e| unreadable(e.into()))? {
        Some(value) => record::decode_u64(HORIZON_KEY, value.value())
            .map_err(|e| bad_record(HORIZON_KEY, e))?,
        None => 0,
    };
    let count = registers.len().map_err(|e| unreadable(e.into()))?;
    // The table's own `range` keeps the transaction alive: it may outlive
    // `registers`.
    let range = registers
        .range::<&str>(..)
        .map_err(|e| unreadable(e.into()))?;
    let meta = Meta {
        format: Some(format),
        closed,
        incarnation,
        horizon,
    };
    Ok((meta, Some((count, range))))
}

fn unreadable(location: &str, source: redb::Error) -> OpenError {
    OpenError::Unreadable {
        store: location.to_string(),
        source,
    }
}

fn optional_table<T>(opened: Result<T, TableError>) -> Result<Option<T>, redb::Error> {
    match opened {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Record `incarnation` durably (and create the tables of a new store, or
/// upgrade the format of an old one).
fn begin_incarnation(
    db: &Database,
    incarnation: u32,
    format: Option<u32>,
    two_phase_commit: bool,
) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.set_two_phase_commit(two_phase_commit);
    {
        let mut meta = txn.open_table(META)?;
        if format != Some(FORMAT) {
            meta.insert(
                FORMAT_KEY,
                record::encode_u32(FORMAT_KEY, FORMAT).as_slice(),
            )?;
            txn.open_table(REGISTERS)?;
        }
        let value = record::encode_u32(INCARNATION_KEY, incarnation);
        meta.insert(INCARNATION_KEY, value.as_slice())?;
        meta.insert(CLOSED_KEY, record::encode_u32(CLOSED_KEY, 0).as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

fn database_error(location: &str, error: DatabaseError) -> OpenError {
    let store = location.to_string();
    match error {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            OpenError::InUse { store }
        }
        DatabaseError::Storage(StorageError::Corrupted(detail)) => {
            OpenError::Corrupt { store, detail }
        }
        other => OpenError::Unreadable {
            store,
            source: other.into(),
        },
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

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
