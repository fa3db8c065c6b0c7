//! A lease's state as the cluster reports it (reads, `409`s, watch lines).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Who holds a name, as one node saw it at one moment. `remaining` is on the
/// answering node's clock: fine for people and for choosing when to try
/// again, never for deciding that the caller itself holds anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LeaseState {
    Held {
        holder: String,
        token: u64,
        remaining_ms: u64,
        ttl_ms: u64,
        /// Long polls queued for it: the first gets it next.
        #[serde(default)]
        waiters: u32,
    },
    /// Expired without a release; only `holder` may take it for
    /// `remaining_ms`.
    LockDelayed {
        holder: String,
        token: u64,
        remaining_ms: u64,
        #[serde(default)]
        waiters: u32,
    },
    /// Nobody holds it; `token` is the last one granted (0: never).
    Free { token: u64 },
    /// A watch line: the node could not reach a quorum; it keeps trying.
    Unavailable { error: String },
}

impl LeaseState {
    /// Whether `other` is the same state with the same holder and token:
    /// only the time left may differ.
    pub fn same_as(&self, other: &LeaseState) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.holder() == other.holder()
            && self.token() == other.token()
    }

    /// The holder, when someone holds the name.
    pub fn holder(&self) -> Option<&str> {
        match self {
            LeaseState::Held { holder, .. } => Some(holder),
            _ => None,
        }
    }

    pub fn token(&self) -> Option<u64> {
        match self {
            LeaseState::Held { token, .. }
            | LeaseState::LockDelayed { token, .. }
            | LeaseState::Free { token } => Some(*token),
            LeaseState::Unavailable { .. } => None,
        }
    }

    /// How long the answering node expects to go on refusing others.
    pub fn remaining(&self) -> Option<Duration> {
        match self {
            LeaseState::Held { remaining_ms, .. }
            | LeaseState::LockDelayed { remaining_ms, .. } => {
                Some(Duration::from_millis(*remaining_ms))
            }
            _ => None,
        }
    }
}

impl fmt::Display for LeaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseState::Held {
                holder,
                token,
                remaining_ms,
                ttl_ms,
                waiters,
            } => {
                write!(
                    f,
                    "held by {holder} with token {token}, for {remaining_ms} ms more as the cluster counts (a {ttl_ms} ms ttl, stretched for clock drift)"
                )?;
                queued(f, *waiters)
            }
            LeaseState::LockDelayed {
                holder,
                token,
                remaining_ms,
                waiters,
            } => {
                write!(
                    f,
                    "expired (token {token} of {holder}), in its lock-delay for {remaining_ms} ms"
                )?;
                queued(f, *waiters)
            }
            LeaseState::Free { token } => write!(f, "free (last token {token})"),
            LeaseState::Unavailable { error } => write!(f, "unavailable: {error}"),
        }
    }
}

/// ", 3 waiting" after a state with a queue; nothing without one.
fn queued(f: &mut fmt::Formatter<'_>, waiters: u32) -> fmt::Result {
    match waiters {
        0 => Ok(()),
        n => write!(f, ", {n} waiting"),
    }
}

/// The current leader of an election: the holder of its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub id: String,
    pub token: u64,
}

impl LeaseState {
    /// The leader this state shows: `None` when nobody holds the name, and
    /// also for an `Unavailable` line (unknown is not a change).
    pub fn leader(&self) -> Option<Leader> {
        match self {
            LeaseState::Held { holder, token, .. } => Some(Leader {
                id: holder.clone(),
                token: *token,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_state_the_server_reports() {
        let held: LeaseState = serde_json::from_str(
            r#"{"state":"held","holder":"web-1","token":1,"remaining_ms":9987,"ttl_ms":10000,"waiters":2,"error":"x"}"#,
        )
        .expect("held");
        assert_eq!(held.holder(), Some("web-1"));
        assert_eq!(
            held.to_string(),
            "held by web-1 with token 1, for 9987 ms more as the cluster counts (a 10000 ms ttl, stretched for clock drift), 2 waiting"
        );
        let free: LeaseState = serde_json::from_str(r#"{"state":"free","token":4}"#).expect("free");
        assert_eq!(free, LeaseState::Free { token: 4 });
        let delayed: LeaseState = serde_json::from_str(
            r#"{"state":"lock_delayed","holder":"a","token":2,"remaining_ms":5}"#,
        )
        .expect("delayed");
        assert_eq!(delayed.remaining(), Some(Duration::from_millis(5)));
        let down: LeaseState =
            serde_json::from_str(r#"{"state":"unavailable","error":"no quorum"}"#).expect("down");
        assert_eq!(down.token(), None);
    }
}
