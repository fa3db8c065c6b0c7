//! The messages nodes exchange. Every message names its lease: each name is
//! an independent register, and a message for one never touches another.

use crate::ballot::Ballot;
use crate::configuration::Configuration;
use crate::input::LeaseName;
use crate::lease::{LeaseValue, Token, Transition};
use crate::time::Micros;
use serde::{Deserialize, Serialize};

/// An acceptor's accepted value as it reports it: with the value's age on
/// the acceptor's own clock, a lower bound of the time since the accept
/// that last restarted the lease clock was sent, and that accept's ballot
/// (`origin`). The age counts only if the acceptor's clock keeps the drift
/// bound; a proposer trusts no single one (docs/safety.md, "One faulty
/// clock").
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Report {
    pub ballot: Ballot,
    pub value: LeaseValue,
    pub age: Micros,
    pub origin: Ballot,
}

/// A value chosen for `name` at `ballot`, and what it changed. Ballots of
/// a name's chosen values only rise, so they order its changes the same
/// way on every node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chosen {
    pub name: LeaseName,
    pub ballot: Ballot,
    /// From the start of the round to the value chosen, on the proposer's
    /// clock.
    pub took: Micros,
    pub changes: Vec<Transition>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// Phase 1a.
    Prepare {
        name: LeaseName,
        ballot: Ballot,
    },
    /// Phase 1b: the acceptor will accept nothing below `ballot`.
    Promise {
        name: LeaseName,
        ballot: Ballot,
        accepted: Option<Report>,
    },
    /// Phase 2a. `age` is zero for a fresh value, whose lease clock starts
    /// at this accept (`origin == ballot`), and the observed age for a
    /// value whose clock goes on from `origin` (proposed again unchanged,
    /// or with only its queue changed), so that re-proposing never
    /// restarts a lease's clock.
    Accept {
        name: LeaseName,
        ballot: Ballot,
        value: LeaseValue,
        age: Micros,
        origin: Ballot,
    },
    /// Phase 2b. Accepting `ballot` also promised `ballot.successor()`.
    /// `durable` is false for a lazy acceptance, whose record may not have
    /// landed yet (`acceptor.rs`).
    Accepted {
        name: LeaseName,
        ballot: Ballot,
        durable: bool,
    },
    /// A refusal of `ballot`: the acceptor has promised `promised`.
    Nack {
        name: LeaseName,
        ballot: Ballot,
        promised: Ballot,
    },
    /// A read-only look at the acceptor's state; promises nothing.
    Peek {
        name: LeaseName,
        id: u64,
    },
    /// `durable` is false when the value reported was accepted lazily and
    /// its record may not have landed yet.
    Peeked {
        name: LeaseName,
        id: u64,
        accepted: Option<Report>,
        durable: bool,
    },
    /// Delete the name's register if it still holds the value accepted at
    /// `ballot`, which every member accepted durably and which leaves the
    /// name free with nobody waiting (`compact.rs`). Not answered: a lost
    /// one leaves the register, and a later scan settles it again.
    Compact {
        name: LeaseName,
        ballot: Ballot,
    },
    /// News, not protocol: a value this node proposed was chosen, and
    /// what it changed (nothing but the queue, when `changes` is empty),
    /// for the other nodes' histories and live pages. Acceptors ignore
    /// it, and losing it loses only a line of history.
    Chosen(Chosen),
    /// Raise the acceptor's token floor to at least `token`, durably, and
    /// answer `FloorRaised`: a rescan carries the floor of compacted
    /// names, which no register holds, to the members that join
    /// (docs/membership.md).
    RaiseFloor {
        token: Token,
    },
    FloorRaised {
        token: Token,
    },
    /// The sender's configuration: the answer to a message of another
    /// epoch, in place of any other (`configuration.rs`), and how a change
    /// of members is told (`change.rs`). A node that is behind adopts it,
    /// and answers `Recorded` once it holds it durably.
    Configuration(Configuration),
    /// The sender holds the configuration of this message's epoch durably.
    Recorded,
    /// Rescan every stored name under this message's epoch, and answer
    /// `Rescanned` once the rescan has ended (`change.rs`).
    Rescan,
    Rescanned,
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
            Message::Compact { .. } => "compact",
            Message::Chosen(_) => "chosen",
            Message::RaiseFloor { .. } => "raise-floor",
            Message::FloorRaised { .. } => "floor-raised",
            Message::Configuration(_) => "configuration",
            Message::Recorded => "recorded",
            Message::Rescan => "rescan",
            Message::Rescanned => "rescanned",
        }
    }

    /// The name the message is about; `None` for those about the node.
    pub fn name(&self) -> Option<&LeaseName> {
        Some(match self {
            Message::Prepare { name, .. }
            | Message::Promise { name, .. }
            | Message::Accept { name, .. }
            | Message::Accepted { name, .. }
            | Message::Nack { name, .. }
            | Message::Peek { name, .. }
            | Message::Peeked { name, .. }
            | Message::Compact { name, .. }
            | Message::Chosen(Chosen { name, .. }) => name,
            Message::RaiseFloor { .. }
            | Message::FloorRaised { .. }
            | Message::Configuration(_)
            | Message::Recorded
            | Message::Rescan
            | Message::Rescanned => return None,
        })
    }
}
