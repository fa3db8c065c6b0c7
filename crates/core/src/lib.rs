//! The protocol core of tenure: one Paxos register per lease name, with the
//! lease rules as pure functions of the register value and its age.
//!
//! Nothing here does IO. Time arrives as [`Instant`] arguments, messages as
//! [`Message`] values, and everything the protocol wants done comes out of
//! the `poll_*` methods of [`Node`], whose docs give the call order. The
//! server, the simulator and the model check are all shells around [`Node`].
//!
//! - `ballot`: ballots and node ids.
//! - [`input`]: validated names, holder ids, ttls (bad input stops here).
//! - [`lease`]: the register value and the lease operations.
//! - [`acceptor`]: Paxos phase 1b/2b, and what must be durable.
//! - `proposer`: the round state machine: looks, contention, the fast
//!   path, retries, and waiting acquires.
//! - `node`: acceptor + proposer, persist-before-send, and events.
//!
//! `docs/protocol.md` and `docs/safety.md` explain why each rule is there.

pub mod acceptor;
mod ballot;
mod bugs;
mod change;
mod compact;
mod configuration;
pub mod input;
pub mod lease;
mod message;
mod node;
mod packed;
mod proposer;
mod quorum;
mod time;

pub use acceptor::{Durable, Record, HORIZON_STEP};
pub use ballot::{Ballot, NodeId};
pub use bugs::{Bug, Bugs};
pub use change::{ChangeError, ChangeStep};
pub use compact::Compaction;
pub use configuration::{same_members, Configuration, ConfigurationError, Epoch, Stamp};
pub use input::{HolderId, InputError, LeaseName, LockDelay, Ttl};
pub use lease::{
    holder_deadline, LeaseValue, LeaseView, Op, OutOfTouch, Outcome, Rules, Token, Transition,
    TransitionKind, WaiterId, MAX_WAITERS,
};
pub use message::{Chosen, Message, Report};
pub use node::{Config, ConfigError, Event, Node, Transmit, Write, WriteId, MAX_CHANGES_TOLD};
pub use proposer::{Failure, PhaseKind, Reply, RequestId, Timing};
pub use quorum::Quorums;
pub use time::{DriftBound, Instant, Micros};
