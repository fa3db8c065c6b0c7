//! Per-name wakeups: how long-polls and watches sleep instead of polling.
//!
//! The node loop calls [`Wakeups::notify`] when this node completes a round
//! that grants or releases a name, or accepts a peer's proposal that changes
//! a name's holder or token. A waiter subscribes BEFORE it asks the cluster
//! (a `Notified` future registered first cannot miss a later notify), then
//! sleeps until woken or until the lease it was told about runs out.
//!
//! Changes this node never takes part in (a round between two other nodes)
//! wake nobody here; waiters cover that with their own timers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tenure_core::LeaseName;
use tokio::sync::Notify;

/// Entries are dropped when their last subscriber goes; this many dead
/// entries trigger a sweep.
const SWEEP_AT: usize = 1_024;

#[derive(Clone, Default)]
pub struct Wakeups {
    names: Arc<Mutex<HashMap<LeaseName, Weak<Notify>>>>,
}

impl Wakeups {
    pub fn new() -> Wakeups {
        Wakeups::default()
    }

    /// The wakeup for `name`, shared by everyone waiting on it.
    pub fn subscribe(&self, name: &LeaseName) -> Arc<Notify> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = names.get(name).and_then(Weak::upgrade) {
            return live;
        }
        if names.len() >= SWEEP_AT {
            names.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        names.insert(name.clone(), Arc::downgrade(&notify));
        notify
    }

    /// Wake everyone waiting on `name`; free when nobody is.
    pub fn notify(&self, name: &LeaseName) {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = names.get(name).and_then(Weak::upgrade) {
            live.notify_waiters();
        }
    }

    /// Names with at least one live subscriber.
    pub fn watched(&self) -> usize {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.values().filter(|w| w.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_subscriber_registered_before_a_change_is_woken_by_it() {
        let wakeups = Wakeups::new();
        let name = LeaseName::new("a").unwrap();
        let notify = wakeups.subscribe(&name);
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        wakeups.notify(&name);
        tokio::time::timeout(Duration::from_secs(1), notified)
            .await
            .expect("woken");
    }

    #[test]
    fn entries_of_gone_subscribers_do_not_accumulate() {
        let wakeups = Wakeups::new();
        for i in 0..(SWEEP_AT * 3) {
            let name = LeaseName::new(&format!("n{i}")).unwrap();
            drop(wakeups.subscribe(&name));
        }
        assert!(wakeups.names.lock().unwrap().len() <= SWEEP_AT + 1);
        assert_eq!(wakeups.watched(), 0);
    }
}
