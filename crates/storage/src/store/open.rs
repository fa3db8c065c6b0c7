//! Opening a store: the one way ([`StoreOptions::open`]), its records
//! streamed to their consumer and checked as they are read, and the
//! durable start of a new life.

use super::*;

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

/// Where a store lives: a directory, or (tests, the simulator, the
/// storage benchmark) any redb backend.
pub struct StoreAt<'a>(Place<'a>);

type Create = Box<dyn FnOnce(&Builder) -> Result<Database, DatabaseError>>;

enum Place<'a> {
    Dir(&'a Path),
    Backend { location: String, create: Create },
}

impl<'a> StoreAt<'a> {
    /// The file [`FILE_NAME`] in `dir`, both created if missing.
    pub fn dir(dir: &'a Path) -> StoreAt<'a> {
        StoreAt(Place::Dir(dir))
    }

    /// Any redb backend: a simulated device, or a file whose syncs are
    /// timed.
    pub fn backend(backend: impl StorageBackend) -> StoreAt<'static> {
        StoreAt(Place::Backend {
            location: format!("{backend:?}"),
            create: Box::new(move |builder| builder.create_with_backend(backend)),
        })
    }
}

impl std::fmt::Debug for StoreAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Place::Dir(dir) => write!(f, "{}", dir.display()),
            Place::Backend { location, .. } => f.write_str(location),
        }
    }
}

impl StoreOptions {
    /// Open or create the store at `at`, and hand its records to `build` as
    /// they are read, rather than collected first: a node builds its
    /// acceptor straight from them, so a million records never exist twice
    /// in memory. This is the one way to open a store; [`collect`] is the
    /// `build` that keeps everything, for tests and tools.
    ///
    /// `build` gets the new incarnation, the promise horizon, and the
    /// records in name order. Each record is checked as it is read; the
    /// first that fails ends the iteration, and then `open` returns the
    /// error and drops what `build` made. Records `build` leaves unread are
    /// read and checked all the same. Only when every record was good is
    /// the incarnation (first open: 1) made durable, before this returns:
    /// `build` must let nothing that uses it (a ballot, a message) out of
    /// the process. A store that is corrupt, unreadable, or cannot record
    /// the new incarnation is an error, never an empty start.
    pub fn open<T>(
        &self,
        at: StoreAt<'_>,
        build: impl FnOnce(Boot, &mut Records<'_>) -> T,
    ) -> Result<(Store, T), OpenError> {
        match at.0 {
            Place::Dir(dir) => self.open_dir(dir, build),
            Place::Backend { location, create } => self.open_with(location, create, build),
        }
    }

    fn open_dir<T>(
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
        let rolled_back_now = fell_back.load(Ordering::Relaxed);
        let recovered = recover(
            &db,
            &location,
            self.two_phase_commit,
            rolled_back_now,
            build,
        );
        let (built, meta) = match recovered {
            Ok(recovered) => recovered,
            Err(error) => {
                // A panic inside redb may have poisoned its locks, and its
                // Drop would then panic too: contain that as well.
                let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(db)));
                return Err(error);
            }
        };

        // A rollback is reported at every open until it is accepted, not
        // only at the one that saw it: the verdict is in the store.
        let recovery = if rolled_back_now || meta.rolled_back {
            Recovery::RolledBack
        } else if meta.closed {
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
            last_write: WriteId(0),
            identity: meta.identity,
            configuration: meta.configuration,
            deleted_since_shrink: 0,
            shrink_stagger: 0,
        };
        Ok((store, built))
    }
}

/// The records of a store being opened, in name order, each checked as it
/// is read (see [`StoreOptions::open`]). Ends early at the first bad one;
/// `open` then fails.
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Boot {
    /// New for this start (see [`Recovered::incarnation`]).
    pub incarnation: u32,
    /// The acceptor's promise horizon, as last made durable.
    pub horizon: u64,
    /// The acceptor's token floor, as last made durable.
    pub token_floor: Token,
    /// The configuration last made durable, if the node ever recorded one.
    pub configuration: Option<Configuration>,
}

/// The `build` of [`StoreOptions::open`] that keeps every record: for
/// tests and tools (a node builds its acceptor from the records instead).
pub fn collect(boot: Boot, records: &mut Records<'_>) -> Recovered {
    Recovered {
        incarnation: boot.incarnation,
        horizon: boot.horizon,
        token_floor: boot.token_floor,
        configuration: boot.configuration,
        records: records.collect(),
    }
}

/// Read the meta table, stream every record into `build`, check that all
/// were read and good, then durably take the next incarnation. Returns what
/// `build` made and what the meta table said.
fn recover<T>(
    db: &Database,
    location: &str,
    two_phase_commit: bool,
    rolled_back_now: bool,
    build: impl FnOnce(Boot, &mut Records<'_>) -> T,
) -> Result<(T, Meta), OpenError> {
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
        token_floor: meta.token_floor,
        configuration: meta.configuration.clone(),
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
        begin_incarnation(
            db,
            incarnation,
            meta.format,
            two_phase_commit,
            rolled_back_now,
        )
    })?
    .map_err(|source| OpenError::Write {
        store: location.to_string(),
        source,
    })?;
    Ok((built, meta))
}

/// What the meta table says about the file before this open.
struct Meta {
    /// The file's format; `None` for a new store (no tables yet).
    format: Option<u32>,
    closed: bool,
    incarnation: u32,
    horizon: u64,
    token_floor: Token,
    /// An earlier open rolled back and nobody has accepted it yet.
    rolled_back: bool,
    identity: Option<String>,
    configuration: Option<Configuration>,
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
                token_floor: Token(0),
                rolled_back: false,
                identity: None,
                configuration: None,
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
    if ![FORMAT, FORMAT_BEFORE_COMPACTION, FORMAT_BEFORE_HORIZON].contains(&format) {
        return Err(OpenError::UnsupportedFormat {
            store: location.to_string(),
            found: format,
            supported: FORMAT,
        });
    }
    let incarnation = meta_u32(INCARNATION_KEY)?;
    let closed = meta_u32(CLOSED_KEY)? == 1;
    // An entry later formats added: absent in older stores.
    let optional = |key: &str| meta.get(key).map_err(|e| unreadable(e.into()));
    let horizon = match optional(HORIZON_KEY)? {
        Some(value) => record::decode_u64(HORIZON_KEY, value.value())
            .map_err(|e| bad_record(HORIZON_KEY, e))?,
        None => 0,
    };
    let token_floor = match optional(TOKEN_FLOOR_KEY)? {
        Some(value) => Token(
            record::decode_u64(TOKEN_FLOOR_KEY, value.value())
                .map_err(|e| bad_record(TOKEN_FLOOR_KEY, e))?,
        ),
        None => Token(0),
    };
    let rolled_back = match optional(ROLLED_BACK_KEY)? {
        Some(value) => {
            record::decode_u32(ROLLED_BACK_KEY, value.value())
                .map_err(|e| bad_record(ROLLED_BACK_KEY, e))?
                == 1
        }
        None => false,
    };
    let identity = optional(IDENTITY_KEY)?
        .map(|value| record::decode_text(IDENTITY_KEY, value.value()))
        .transpose()
        .map_err(|e| bad_record(IDENTITY_KEY, e))?;
    let configuration = optional(CONFIGURATION_KEY)?
        .map(|value| record::decode_configuration(CONFIGURATION_KEY, value.value()))
        .transpose()
        .map_err(|e| bad_record(CONFIGURATION_KEY, e))?;
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
        token_floor,
        rolled_back,
        identity,
        configuration,
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
    rolled_back: bool,
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
        if rolled_back {
            // In the same commit as the incarnation: no crash can keep the
            // next open from knowing.
            let value = record::encode_u32(ROLLED_BACK_KEY, 1);
            meta.insert(ROLLED_BACK_KEY, value.as_slice())?;
        }
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

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
