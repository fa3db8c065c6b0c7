//! Making the core's writes durable: each batch drained from
//! `Node::poll_write` goes to the storage committer, whose callback sends
//! the durable write id back to the node loop.
//!
//! Group commit needs nothing here: while one fsync is in flight, the
//! writes the loop produces queue in the committer and go into the next.
//!
//! A persist error is fail-stop. After a failed fsync the kernel may have
//! dropped the dirty pages and a retry can "succeed" without the data
//! (PostgreSQL's fsync bug), so this node can no longer vouch for any
//! promise it makes. It exits at once, without acknowledging anything: the
//! replies held back for those writes are never released.

use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Instant;
use tenure_core::{Write, WriteId};
use tenure_storage::{Committer, PersistError};
use tokio::sync::mpsc;

/// The exit code of a fail-stop (EX_IOERR from sysexits.h).
pub const FAIL_STOP_EXIT_CODE: i32 = 74;

pub type Ack = Result<WriteId, PersistError>;

pub struct Persist {
    committer: Committer,
    // Unbounded on purpose, and bounded in fact: there is one ack per
    // submitted batch, and the committer's own queue bounds those. A
    // bounded channel here could deadlock the committer thread against a
    // node loop blocked in `submit`.
    acks: mpsc::UnboundedSender<Ack>,
    metrics: Arc<Metrics>,
}

impl Persist {
    pub fn new(
        committer: Committer,
        metrics: Arc<Metrics>,
    ) -> (Persist, mpsc::UnboundedReceiver<Ack>) {
        let (acks, rx) = mpsc::unbounded_channel();
        (
            Persist {
                committer,
                acks,
                metrics,
            },
            rx,
        )
    }

    /// Hand `writes` to storage. When the committer's queue is full this
    /// blocks the node loop, which is the right pushback: nothing the loop
    /// does can complete until the disk catches up.
    pub fn submit(&self, writes: Vec<Write>) {
        let count = writes.len();
        let started = Instant::now();
        let acks = self.acks.clone();
        let metrics = self.metrics.clone();
        self.committer.submit(
            writes,
            Box::new(move |result| {
                metrics.persisted(count, started.elapsed());
                // The loop is gone only during shutdown, after its last write.
                let _ = acks.send(result);
            }),
        );
    }

    /// Wait for every submitted write to be durable, then stop the
    /// committer. Blocking: call from a blocking thread.
    pub fn shutdown(self) {
        self.committer.shutdown();
    }
}

/// Log the error and exit the process, releasing nothing.
pub fn fail_stop(error: &PersistError) -> ! {
    tracing::error!(%error, "storage failed to persist acceptor state; stopping (fail-stop)");
    eprintln!("tenure: fatal storage error, stopping: {error}");
    std::process::exit(FAIL_STOP_EXIT_CODE)
}
