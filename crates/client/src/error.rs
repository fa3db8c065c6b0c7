//! What can go wrong when talking to a tenure cluster.

use crate::state::LeaseState;
use std::fmt;
use std::time::Duration;

/// An error from a call to the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lease rules refused the operation (`409`): someone else holds the
    /// name, or the grant named is no longer current. The state says who
    /// holds what, and for how long.
    #[error("{message}")]
    Conflict { state: LeaseState, message: String },
    /// No node gave an answer before the call's deadline. When
    /// `outcome_unknown` is true a write may still take effect.
    #[error("no node answered in time ({last}); tried {attempts} times")]
    Unavailable {
        outcome_unknown: bool,
        attempts: u32,
        last: String,
    },
    /// Every node refused the connection (only from a client made with
    /// `Client::giving_up_when_refused`): nothing listens there.
    #[error("cannot connect to any node ({endpoints}): {cause}; is the cluster running? (`tenure dev` starts one on this machine)")]
    Unreachable { endpoints: String, cause: String },
    /// The request was refused as malformed (`4xx` other than `409`), or a
    /// value given to the client was out of range before anything was sent.
    #[error("invalid request: {message}")]
    Invalid {
        message: String,
        field: Option<String>,
    },
    /// The cluster wants a token (`401`: none was sent, or it is not
    /// known) or the token does not allow this (`403`): see
    /// `Client::with_token`.
    #[error("refused ({status}): {message}")]
    Denied { status: u16, message: String },
    /// A node answered something this client does not understand.
    #[error("unexpected answer from {endpoint}: {message}")]
    Protocol { endpoint: String, message: String },
    /// `acquire` with a bounded wait: the wait ended with the name still
    /// held by another.
    #[error("still held after waiting {waited:?}: {state}")]
    WaitExpired { waited: Duration, state: LeaseState },
    /// The lease was lost (its local deadline passed, or a renewal was
    /// refused) before the operation could use it.
    #[error("the lease was lost: {0}")]
    Lost(LostReason),
}

impl Error {
    pub(crate) fn invalid(e: impl std::fmt::Display, field: Option<&str>) -> Error {
        Error::Invalid {
            message: e.to_string(),
            field: field.map(str::to_string),
        }
    }
}

/// Why a lease can no longer be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// Its local deadline passed without a successful renewal.
    Expired,
    /// A renewal was refused: the grant is gone (released by someone with
    /// its token, or superseded). The state says who holds the name now.
    Refused(LeaseState),
    /// This process released it, or dropped the guard.
    Released,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LostReason::Expired => write!(f, "its deadline passed without a successful renewal"),
            LostReason::Refused(state) => write!(f, "a renewal was refused: {state}"),
            LostReason::Released => write!(f, "it was released"),
        }
    }
}
