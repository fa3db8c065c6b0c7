//! A store that rolled back does not vote until an operator says so.
//!
//! When redb finds that the newest commit fails verification it falls back
//! to the commit before (`Recovery::RolledBack`). After a power cut in the
//! middle of a commit that loses nothing: the commit never completed its
//! fsync, so nothing in it was acknowledged. But bit rot in pages only the
//! newest commit uses looks the same, and then an acknowledged accept, a
//! promise horizon or an incarnation may be gone. An acceptor that forgets
//! what it acknowledged can let two values be chosen, so the node stops,
//! as it does after a failed fsync, and an operator decides.
//!
//! The store keeps the verdict itself, written in the same commit as the
//! open's new incarnation, and reports it at every open until it is
//! accepted (`Store::accept_rollback`): no crash, at any point, can make a
//! later start look clean.

use std::path::{Path, PathBuf};
use tenure_storage::{Recovery, Store};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackError {
    #[error(
        "the store in {dir} rolled back its newest commit when it was opened: after a power cut \
         during a commit that loses nothing, but bit rot looks the same and may have lost \
         acknowledged state. Check the disk (docs/operations.md, \"A store that rolled back\"), \
         then start with --accept-rolled-back-store, or replace the node"
    )]
    Refused { dir: PathBuf },
    #[error("cannot record that the rolled-back store in {dir} was accepted")]
    Accept {
        dir: PathBuf,
        // Boxed: an open error is large, and this one is rare.
        source: Box<tenure_storage::OpenError>,
    },
}

/// Whether this node may go on from `store`; `accept` is the operator's
/// override, which clears the store's verdict durably.
pub fn gate(store: &mut Store, dir: &Path, accept: bool) -> Result<(), RollbackError> {
    if store.recovery() != Recovery::RolledBack {
        return Ok(());
    }
    if !accept {
        return Err(RollbackError::Refused {
            dir: dir.to_path_buf(),
        });
    }
    store
        .accept_rollback()
        .map_err(|source| RollbackError::Accept {
            dir: dir.to_path_buf(),
            source: Box::new(source),
        })?;
    tracing::warn!(
        dir = %dir.display(),
        "starting on a store that rolled back its newest commit, as the operator asked"
    );
    Ok(())
}
