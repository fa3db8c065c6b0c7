//! What can go wrong, one enum per operation, so that a caller matches only
//! what its call can do. Every message says what happened and what the
//! operator should do next.

use crate::record::RecordError;
use std::path::PathBuf;
use std::sync::Arc;

/// The advice for every kind of corruption. Starting over empty is the one
/// thing that must not happen: an acceptor that forgets its promises can
/// let two proposers both win.
const CORRUPT_ADVICE: &str = "this node must not serve from it. Do NOT delete or recreate the \
     store: a node that restarts empty forgets its Paxos promises and can break agreement. Keep \
     this node stopped (the cluster serves on while a majority is up), keep the directory for \
     inspection, and follow docs/storage.md, \"When the store is corrupt\"";

/// Why [`Store::open`](crate::Store::open) refused to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(
        "cannot create or open the store directory {path}: {source}; check that it exists, \
         is a directory, and is writable by this user"
    )]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "store {store} is open in another process; stop the other tenure node that uses this \
         data directory, or give this one its own"
    )]
    InUse { store: String },
    #[error(
        "store {store} could not be read ({source}); if this is a disk error, {CORRUPT_ADVICE}"
    )]
    Unreadable {
        store: String,
        #[source]
        source: redb::Error,
    },
    #[error("store {store} is corrupt ({detail}); {CORRUPT_ADVICE}")]
    Corrupt { store: String, detail: String },
    #[error("store {store} holds a corrupt record under key {key:?} ({source}); {CORRUPT_ADVICE}")]
    CorruptRecord {
        store: String,
        key: String,
        #[source]
        source: RecordError,
    },
    #[error(
        "store {store} has format version {found}, which this build cannot read (it reads \
         {supported}); run the tenure version that wrote it"
    )]
    UnsupportedFormat {
        store: String,
        found: u32,
        supported: u32,
    },
    #[error(
        "could not durably record a new incarnation in store {store} ({source}); the node must \
         not start without one. Check that the disk is writable and not full"
    )]
    Write {
        store: String,
        #[source]
        source: redb::Error,
    },
    #[error("could not durably record in store {store} that its rollback was accepted ({source})")]
    AcceptRollback {
        store: String,
        #[source]
        source: redb::Error,
    },
    #[error("could not durably record the cluster identity in store {store} ({source})")]
    RecordIdentity {
        store: String,
        #[source]
        source: redb::Error,
    },
    #[error("could not durably record the configuration in store {store} ({source})")]
    RecordConfiguration {
        store: String,
        #[source]
        source: redb::Error,
    },
    #[error(
        "store {store} has been opened {max} times, so no fresh incarnation is left and ballots \
         could repeat; this node cannot start with this store (see docs/storage.md)",
        max = u32::MAX
    )]
    IncarnationExhausted { store: String },
}

/// Why [`Store::persist`](crate::Store::persist) or a
/// [`Committer`](crate::Committer) batch did not become durable.
///
/// Every error is final for the store that returned it: after one, nothing
/// written later is ever acknowledged (fail-stop), because after a failed
/// fsync the kernel may have dropped the writes while reads still show them,
/// and a retried fsync can succeed without them.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    #[error(
        "could not make acceptor state durable ({0}); the store now refuses every write: restart \
         the node so it recovers from what reached the disk, and check the disk and kernel log \
         if this repeats"
    )]
    Write(#[source] Arc<redb::Error>),
    #[error("could not encode the acceptor state of {name:?} ({source}); this is a bug in tenure")]
    Encode {
        name: String,
        #[source]
        source: postcard::Error,
    },
    #[error(
        "storage panicked while committing ({message}); the store may be damaged: restart the \
         node so that it verifies the store as it opens it"
    )]
    Panicked { message: String },
    #[error(
        "an earlier write failed, so this store refuses all writes until the node restarts and \
         recovers from disk (first failure: {first})"
    )]
    FailStopped {
        #[source]
        first: Arc<PersistError>,
    },
    #[error(
        "the committer thread is gone (it panicked or was shut down), so nothing more can be \
         made durable; restart the node"
    )]
    CommitterGone,
}

impl PersistError {
    /// The error every later call reports after `self` stopped the store.
    pub(crate) fn stopped(self) -> PersistError {
        match self {
            already @ PersistError::FailStopped { .. } => already,
            first => PersistError::FailStopped {
                first: Arc::new(first),
            },
        }
    }
}
