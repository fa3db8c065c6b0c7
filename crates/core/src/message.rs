//! The messages nodes exchange. Every message names its lease: each name is
//! an independent register, and a message for one never touches another.

use crate::ballot::Ballot;
use crate::input::LeaseName;
use crate::lease::LeaseValue;
use crate::time::Micros;
use serde::{Deserialize, Serialize};

/// An acceptor's accepted value as it reports it: with the value's age on
/// the acceptor's own clock, a lower bound of the time since the request
/// that last restarted the lease clock was sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Report {
    pub ballot: Ballot,
    pub value: LeaseValue,
    pub age: Micros,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// Phase 1a.
    Prepare { name: LeaseName, ballot: Ballot },
    /// Phase 1b: the acceptor will accept nothing below `ballot`.
    Promise {
        name: LeaseName,
        ballot: Ballot,
        accepted: Option<Report>,
    },
    /// Phase 2a. `age` is zero for a fresh value and the observed age for a
    /// value proposed again unchanged, so that re-proposing never restarts a
    /// lease's clock.
    Accept {
        name: LeaseName,
        ballot: Ballot,
        value: LeaseValue,
        age: Micros,
    },
    /// Phase 2b. Accepting `ballot` also promised `ballot.successor()`.
    Accepted { name: LeaseName, ballot: Ballot },
    /// A refusal of `ballot`: the acceptor has promised `promised`.
    Nack {
        name: LeaseName,
        ballot: Ballot,
        promised: Ballot,
    },
    /// A read-only look at the acceptor's state; promises nothing.
    Peek { name: LeaseName, id: u64 },
    Peeked {
        name: LeaseName,
        id: u64,
        accepted: Option<Report>,
    },
}

impl Message {
    /// The message's name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::Promise { .. } => "promise",
            Message::Accept { .. } => "accept",
            Message::Accepted { .. } => "accepted",
            Message::Nack { .. } => "nack",
            Message::Peek { .. } => "peek",
            Message::Peeked { .. } => "peeked",
        }
    }

    pub fn name(&self) -> &LeaseName {
        match self {
            Message::Prepare { name, .. }
            | Message::Promise { name, .. }
            | Message::Accept { name, .. }
            | Message::Accepted { name, .. }
            | Message::Nack { name, .. }
            | Message::Peek { name, .. }
            | Message::Peeked { name, .. } => name,
        }
    }
}
