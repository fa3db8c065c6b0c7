//! `PUT /v1/locks/{name}?wait=30s`: acquire, and on `409` sleep until the
//! name changes here or the holder's time runs out, then try again.
//!
//! Never a tight loop: between two attempts the waiter is either woken by a
//! change this node saw (a release, a new grant) or sleeps out the lease's
//! reported remaining time. It ends with a grant or, once the wait is over,
//! with the last `409`.

use super::AppState;
use crate::node_loop::CallError;
use std::time::Duration;
use tenure_core::{Failure, LeaseName, LeaseView, Op, Outcome};
use tokio::time::Instant;

/// Added to a reported remaining time, and the least pause between tries,
/// so that a try lands just after the expiry rather than just before it.
const RETRY_SLACK: Duration = Duration::from_millis(5);

pub async fn acquire_waiting(
    app: &AppState,
    name: &LeaseName,
    op: Op,
    wait: Duration,
) -> Result<Outcome, CallError> {
    let deadline = Instant::now() + wait;
    let mut stop = app.stop.clone();
    loop {
        // Subscribe before asking, so a change after the answer cannot be
        // missed between the answer and the sleep.
        let wakeup = app.wakeups.subscribe(name);
        let woken = wakeup.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();

        let outcome = match app.call(name.clone(), op.clone()).await {
            // A round that lost a race may be unable to tell whether its
            // write took effect. Inside a wait the answer is to acquire
            // again: a retried acquire by the same holder supersedes any
            // grant the lost attempt made, so the caller never sees an
            // unknown outcome for a wait that still has time.
            Err(CallError::Failed(Failure::Unavailable {
                outcome_unknown: true,
            })) if Instant::now() + RETRY_SLACK < deadline && !*stop.borrow() => {
                tokio::time::sleep(RETRY_SLACK).await;
                continue;
            }
            answer => answer?,
        };
        let remaining = match &outcome {
            Outcome::Conflict(LeaseView::Held { remaining, .. })
            | Outcome::Conflict(LeaseView::LockDelayed { remaining, .. }) => {
                Duration::from_micros(remaining.0)
            }
            _ => return Ok(outcome),
        };
        let now = Instant::now();
        if now >= deadline || *stop.borrow() {
            return Ok(outcome);
        }
        let retry_at = (now + remaining.max(RETRY_SLACK) + RETRY_SLACK).min(deadline);
        tokio::select! {
            () = &mut woken => {}
            () = tokio::time::sleep_until(retry_at) => {}
            _ = stop.changed() => return Ok(outcome),
        }
    }
}
