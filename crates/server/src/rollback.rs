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
//! Opening the store has already committed a new incarnation, so the next
//! open would look clean: the verdict is kept in a marker file in the data
//! directory, written (and fsynced) before the node refuses to start, and
//! removed only when an operator starts it with the override.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use tenure_storage::Recovery;

/// The marker's name in the data directory.
pub const MARKER: &str = "ROLLED-BACK";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackError {
    #[error(
        "the store in {dir} rolled back its newest commit at a start (see {marker}): \
         after a power cut during a commit that loses nothing, but bit rot looks the same and \
         may have lost acknowledged state. Check the disk (docs/operations.md, \"A store that \
         rolled back\"), then start with --accept-rolled-back-store, or replace the node"
    )]
    Refused { dir: PathBuf, marker: PathBuf },
    #[error("cannot record or clear the rollback marker {path}")]
    Marker {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether this node may go on from its store. `recovery` is how the
/// store opened now; `accept` is the operator's override.
pub fn gate(dir: &Path, recovery: Recovery, accept: bool) -> Result<(), RollbackError> {
    let marker = dir.join(MARKER);
    // A marker that cannot even be looked at counts as present.
    let marked = match std::fs::symlink_metadata(&marker) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    };
    let rolled_back = recovery == Recovery::RolledBack || marked;
    if !rolled_back {
        return Ok(());
    }
    if accept {
        match fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RollbackError::Marker {
                    path: marker,
                    source,
                })
            }
        }
        tracing::warn!(
            dir = %dir.display(),
            "starting on a store that rolled back its newest commit, as the operator asked"
        );
        return Ok(());
    }
    if !marked {
        write_marker(dir, &marker).map_err(|source| RollbackError::Marker {
            path: marker.clone(),
            source,
        })?;
    }
    Err(RollbackError::Refused {
        dir: dir.to_path_buf(),
        marker,
    })
}

fn write_marker(dir: &Path, marker: &Path) -> std::io::Result<()> {
    let mut file = File::create(marker)?;
    writeln!(
        file,
        "This node's store rolled back its newest commit when it was opened.\n\
         It will not start until an operator checks it and starts it with\n\
         --accept-rolled-back-store (which removes this file). See docs/operations.md."
    )?;
    file.sync_all()?;
    // The file's name must survive a crash as well as its contents.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_or_repaired_store_starts() {
        let dir = tempfile::tempdir().unwrap();
        gate(dir.path(), Recovery::Clean, false).unwrap();
        gate(dir.path(), Recovery::Repaired, false).unwrap();
        assert!(!dir.path().join(MARKER).exists());
    }

    #[test]
    fn a_rollback_refuses_this_start_and_every_later_one_until_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let refused = gate(dir.path(), Recovery::RolledBack, false).unwrap_err();
        assert!(matches!(refused, RollbackError::Refused { .. }));
        assert!(refused.to_string().contains("--accept-rolled-back-store"));
        // The next open looks clean (the failed start committed a new
        // incarnation), but the marker remembers.
        assert!(matches!(
            gate(dir.path(), Recovery::Clean, false),
            Err(RollbackError::Refused { .. })
        ));
        gate(dir.path(), Recovery::Clean, true).unwrap();
        assert!(!dir.path().join(MARKER).exists());
        gate(dir.path(), Recovery::Clean, false).unwrap();
    }

    #[test]
    fn the_override_also_covers_a_rollback_seen_now() {
        let dir = tempfile::tempdir().unwrap();
        gate(dir.path(), Recovery::RolledBack, true).unwrap();
        assert!(!dir.path().join(MARKER).exists());
    }
}
