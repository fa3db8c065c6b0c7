//! A lease's state as the API shows it: in reads, conflicts and watch
//! lines alike.

use serde_json::json;
use tenure_core::LeaseView;

/// A view as a JSON object: the state, and who, which token, how long.
pub fn view_json(view: &LeaseView) -> serde_json::Value {
    match view {
        LeaseView::Held {
            holder,
            token,
            ttl,
            remaining,
            waiters,
        } => json!({
            "state": "held",
            "holder": holder.as_str(),
            "token": token.0,
            "remaining_ms": remaining.ceil_millis(),
            "ttl_ms": ttl.as_millis(),
            "waiters": waiters,
        }),
        LeaseView::LockDelayed {
            holder,
            token,
            remaining,
            waiters,
        } => json!({
            "state": "lock_delayed",
            "holder": holder.as_str(),
            "token": token.0,
            "remaining_ms": remaining.ceil_millis(),
            "waiters": waiters,
        }),
        LeaseView::Free { token } => json!({
            "state": "free",
            "token": token.0,
        }),
    }
}
