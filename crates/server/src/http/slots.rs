//! Connection slots: at most `max` client connections at once.
//!
//! A new connection that finds every slot taken does not simply get a
//! `503`: it takes the slot of the oldest connection with no request in
//! flight, preferring one that has never sent a request. So connections
//! that only sit there (a port scan, a flood of idle sockets, a client
//! that never speaks) cannot keep out a client that asks. Only when every
//! slot is busy with a request is the newcomer refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub(super) struct Slots {
    max: usize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// By age: the oldest first.
    open: BTreeMap<u64, Entry>,
}

struct Entry {
    activity: Arc<Activity>,
    evict: oneshot::Sender<()>,
}

/// What a connection is doing, as its requests tell.
#[derive(Default)]
pub(super) struct Activity {
    in_flight: AtomicUsize,
    asked: AtomicBool,
}

impl Activity {
    /// A request began; it ends when the guard drops.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.asked.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }
}

pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's slot, given back on drop. `evicted` fires when a newer
/// connection took it: the connection is then closed.
pub(super) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    pub activity: Arc<Activity>,
    pub evicted: oneshot::Receiver<()>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().open.remove(&self.id);
    }
}

/// What taking a slot came to.
pub(super) enum Taken {
    Free(Slot),
    /// The slot of an idle connection, which is being closed.
    Evicted(Slot),
    /// Every slot is busy with a request.
    Full,
}

impl Slots {
    pub(super) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            table: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn take(self: &Arc<Self>) -> Taken {
        let mut table = self.lock();
        let mut evicted = false;
        if table.open.len() >= self.max {
            let silent = table
                .open
                .iter()
                .find(|(_, e)| !e.activity.asked.load(Ordering::Relaxed) && e.activity.idle());
            let victim = silent
                .or_else(|| table.open.iter().find(|(_, e)| e.activity.idle()))
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                return Taken::Full;
            };
            if let Some(entry) = table.open.remove(&victim) {
                let _ = entry.evict.send(());
            }
            evicted = true;
        }
        let id = table.next;
        table.next += 1;
        let activity = Arc::new(Activity::default());
        let (evict, evicted_rx) = oneshot::channel();
        table.open.insert(
            id,
            Entry {
                activity: Arc::clone(&activity),
                evict,
            },
        );
        let slot = Slot {
            slots: Arc::clone(self),
            id,
            activity,
            evicted: evicted_rx,
        };
        if evicted {
            Taken::Evicted(slot)
        } else {
            Taken::Free(slot)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(taken: Taken) -> Slot {
        match taken {
            Taken::Free(s) | Taken::Evicted(s) => s,
            Taken::Full => panic!("full"),
        }
    }

    #[test]
    fn a_full_table_gives_the_oldest_silent_slot_to_a_newcomer() {
        let slots = Slots::new(3);
        let mut silent = slot(slots.take());
        let asked = slot(slots.take());
        let busy = slot(slots.take());
        drop(asked.activity.begin()); // asked once, idle now
        let _request = busy.activity.begin();
        let Taken::Evicted(newcomer) = slots.take() else {
            panic!("not evicted")
        };
        assert!(
            silent.evicted.try_recv().is_ok(),
            "the silent one goes first"
        );
        drop(newcomer.activity.begin());
        // Then the oldest idle one; never the busy one.
        let mut asked = asked;
        assert!(matches!(slots.take(), Taken::Evicted(_)));
        assert!(asked.evicted.try_recv().is_ok());
        drop(newcomer);
        assert!(matches!(slots.take(), Taken::Free(_)));
    }

    #[test]
    fn when_every_slot_is_busy_the_newcomer_is_refused() {
        let slots = Slots::new(2);
        let a = slot(slots.take());
        let b = slot(slots.take());
        let (_ra, _rb) = (a.activity.begin(), b.activity.begin());
        assert!(matches!(slots.take(), Taken::Full));
        drop(_ra);
        assert!(matches!(slots.take(), Taken::Evicted(_)));
    }
}
