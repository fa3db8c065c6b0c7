//! The durable acceptor state of one tenure node.
//!
//! The core says what must be durable ([`tenure_core::Write`]) and waits for
//! [`tenure_core::Node::handle_durable`] before anything that depends on it
//! leaves the node. This crate makes it so:
//!
//! - `store`: one redb file per node; [`StoreOptions::open`] loads every
//!   record and durably takes a fresh incarnation, [`Store::persist`] makes
//!   a batch durable in one transaction with one fsync, and fails stop.
//! - `boot`: a node built on its store, as the server and the simulator
//!   both start one ([`boot_node`]).
//! - `record`: the layout of a value and its own CRC32C, so that a flipped
//!   byte is refused rather than served.
//! - `committer`: group commit on a thread of its own behind a bounded queue.
//! - `sim_disk` (feature `sim-disk`): an in-memory disk that tests and the
//!   simulator crash, fail and slow.
//!
//! `docs/storage.md` gives the reasons, the costs, and the rule for deleting
//! names later.

mod boot;
mod committer;
mod error;
mod record;
#[cfg(feature = "sim-disk")]
mod sim_disk;
mod store;

pub use boot::{boot_node, BootError};
pub use committer::{Commit, Committer, Done, Observer};
pub use error::{OpenError, PersistError};
pub use record::RecordError;
#[cfg(feature = "sim-disk")]
pub use sim_disk::{DiskStats, SimBackend, SimDisk};
pub use store::{
    collect, Boot, Records, Recovered, Recovery, Store, StoreAt, StoreOptions,
    DEFAULT_CACHE_SIZE_BYTES, FILE_NAME,
};
