//! `PUT /v1/locks/{name}?wait=30s`: an acquire that may wait.
//!
//! The waiting itself happens in the core: the request joins the name's
//! queue in the register and is answered when the lease is handed to it,
//! or with the last `409` once the wait is over. Here it only ends early
//! at shutdown (the request leaves the queue, and the client is told to
//! retry through another node), and retries an acquire whose outcome a
//! lost race left unknown while the wait has time: a retried acquire by
//! the same holder supersedes whatever the lost attempt did.

use super::AppState;
use crate::node_loop::CallError;
use std::time::Duration;
use tenure_core::{Failure, LeaseName, Micros, Op, Outcome};
use tokio::time::Instant;

/// Least time left in a wait worth another try after an unknown outcome.
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
        let left = deadline.saturating_duration_since(Instant::now());
        let mut attempt = op.clone();
        if let Op::Acquire { wait, .. } = &mut attempt {
            *wait = Micros(u64::try_from(left.as_micros()).unwrap_or(u64::MAX));
        }
        let answer = tokio::select! {
            answer = app.call_waiting(name.clone(), attempt, left) => answer,
            _ = stop.wait_for(|stopping| *stopping) => return Err(CallError::Stopping),
        };
        match answer {
            Err(CallError::Failed(Failure::Unavailable {
                outcome_unknown: true,
            })) if Instant::now() + RETRY_SLACK < deadline && !*stop.borrow() => {
                tokio::time::sleep(RETRY_SLACK).await;
            }
            answer => return answer,
        }
    }
}
