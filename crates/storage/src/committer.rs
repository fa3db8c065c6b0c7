//! Group commit: one thread owns the [`Store`] and turns every batch that
//! queued up during an fsync into the next single transaction.
//!
//! An fsync costs about the same for one record as for a hundred, so under
//! load the cost of durability is shared by every write that waits for it.
//! With nothing in flight, a lone batch is committed at once: group commit
//! never waits to fill a group.

use crate::error::PersistError;
use crate::store::Store;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tenure_core::{Write, WriteId};

/// Called once a batch is durable, with its highest [`WriteId`], or with
/// the error that stopped it.
pub type Done = Box<dyn FnOnce(Result<WriteId, PersistError>) + Send>;

/// One transaction the committer made: how many writes it held, and how
/// long it took with its fsync (the wait in the queue before it excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub writes: usize,
    pub took: Duration,
}

/// Told of every transaction, on the committer thread: for metrics.
pub type Observer = Box<dyn Fn(Commit) + Send>;

struct Batch {
    writes: Vec<Write>,
    done: Done,
}

/// A thread that owns the store, fed through a bounded queue.
pub struct Committer {
    queue: Option<SyncSender<Batch>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl Committer {
    /// Start the committer thread. At most `queue_bound` batches wait in the
    /// queue (a bound of 0 counts as 1), and one transaction merges at most
    /// that many. If the thread cannot be started, every batch is answered
    /// with [`PersistError::CommitterGone`].
    pub fn spawn(store: Store, queue_bound: usize) -> Committer {
        Committer::spawn_observed(store, queue_bound, Box::new(|_| {}))
    }

    /// [`Committer::spawn`], telling `observe` of every transaction.
    pub fn spawn_observed(store: Store, queue_bound: usize, observe: Observer) -> Committer {
        let bound = queue_bound.max(1);
        let (queue, batches) = mpsc::sync_channel(bound);
        let thread = std::thread::Builder::new()
            .name("tenure-committer".into())
            .spawn(move || commit_loop(store, batches, bound, observe))
            .ok();
        Committer {
            queue: thread.is_some().then_some(queue),
            thread,
        }
    }

    /// Queue `writes` to be made durable, then `done` is called on the
    /// committer thread (on this thread if the committer is gone). Blocks
    /// while the queue is full: that is the backpressure on the node.
    ///
    /// Once a persist has failed, this batch and every later one get the
    /// error, and nothing is written again. An empty batch is acknowledged
    /// with the highest id made durable so far (0 if none).
    pub fn submit(&self, writes: Vec<Write>, done: Done) {
        let Some(queue) = &self.queue else {
            done(Err(PersistError::CommitterGone));
            return;
        };
        if let Err(mpsc::SendError(batch)) = queue.send(Batch { writes, done }) {
            (batch.done)(Err(PersistError::CommitterGone));
        }
    }

    /// Commit everything queued, close the store cleanly, join the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Closing the queue lets the thread drain what is left, then exit.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            // Callback panics are caught and a panic inside a commit is a
            // persist error, so a join error can only come from closing the
            // store after a failure: every batch was answered by then.
            let _ = thread.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn commit_loop(mut store: Store, batches: Receiver<Batch>, max_group: usize, observe: Observer) {
    let mut durable_through = WriteId(0);
    let mut group: Vec<Batch> = Vec::with_capacity(max_group);
    while let Ok(first) = batches.recv() {
        // Everything that queued while the last fsync ran joins this one.
        group.push(first);
        while group.len() < max_group {
            match batches.try_recv() {
                Ok(batch) => group.push(batch),
                Err(_) => break,
            }
        }

        let mut writes = Vec::new();
        let mut answers = Vec::with_capacity(group.len());
        for batch in group.drain(..) {
            let highest = batch.writes.iter().map(|w| w.id).max();
            // Submission order is kept, so a later write of a name wins.
            writes.extend(batch.writes);
            answers.push((highest, batch.done));
        }
        let started = Instant::now();
        let result = store.persist(&writes);
        if result.is_ok() {
            let commit = Commit {
                writes: writes.len(),
                took: started.elapsed(),
            };
            let _ = panic::catch_unwind(AssertUnwindSafe(|| observe(commit)));
            if let Some(highest) = answers.iter().filter_map(|(h, _)| *h).max() {
                durable_through = durable_through.max(highest);
            }
        }
        for (highest, done) in answers {
            let answer = match &result {
                Ok(()) => Ok(highest.unwrap_or(durable_through)),
                Err(error) => Err(error.clone()),
            };
            // A panicking callback is its caller's bug; it must not stop
            // durability for every other batch.
            let _ = panic::catch_unwind(AssertUnwindSafe(|| done(answer)));
        }
    }
    // The queue is closed and empty: dropping the store closes redb cleanly.
    drop(store);
}
