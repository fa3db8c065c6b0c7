//! The register value of one name: the fencing token, the current grant,
//! the queue of waiting acquires, and the write log.

use super::queue::{WaiterId, Waiters};
use crate::ballot::Ballot;
use crate::input::{HolderId, LockDelay, Ttl};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A fencing token: strictly increases with every grant of one name.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Token(pub u64);

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One grant of a lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub holder: HolderId,
    pub ttl: Ttl,
    pub lock_delay: LockDelay,
    /// The waiting acquire this grant went to, when it was handed to the
    /// head of the queue or granted to a request that was waiting: that
    /// request finds its grant here when it next looks.
    pub waiter: Option<WaiterId>,
    /// A round found this grant past its ttl and wrote so, before it said
    /// so to anyone: from here on no answer shows it held, whatever the
    /// age another quorum of clocks would report (docs/safety.md, "Expiry
    /// is written").
    pub expired: bool,
}

/// The value of one name's register.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseValue {
    /// The token of the latest grant; zero before the first. Never decreases:
    /// release and expiry keep it, so the next grant is above every earlier.
    pub token: Token,
    /// The latest grant, until it is released. A grant past its ttl stays
    /// here (expired) until someone acquires or releases.
    pub grant: Option<Grant>,
    /// Acquires waiting for the lease, first come first served.
    pub waiters: Waiters,
    /// Which rounds wrote this value and its recent ancestors; lets a round
    /// that retries find out whether its earlier attempt already took effect.
    pub writes: WriteLog,
}

/// How many recent writes a value remembers. Under contention a round
/// may learn the fate of its write only after several other writes (each
/// release hands the lease on, each waiter joins the queue), so the window
/// is wider than a quiet name would need.
pub const REMEMBERED_WRITES: usize = 8;

/// The number of value-changing rounds a register has seen, and the ballots
/// at which the last [`REMEMBERED_WRITES`] of them were proposed.
///
/// A round that sent a value-changing accept and then had to retry cannot
/// simply apply its operations again: its first attempt may have been
/// accepted and adopted (an acquire would then grant twice, a release would
/// report a conflict with itself). Ballots are unique, so finding its own
/// ballot here tells it exactly whether that attempt took effect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriteLog {
    pub count: u64,
    pub recent: [Ballot; REMEMBERED_WRITES],
}

impl WriteLog {
    /// The log after one more write, proposed at `ballot`.
    pub fn after(&self, ballot: Ballot) -> WriteLog {
        let count = self.count + 1;
        let mut recent = self.recent;
        recent[(count % REMEMBERED_WRITES as u64) as usize] = ballot;
        WriteLog { count, recent }
    }

    /// Whether write number `number` was the one proposed at `ballot`:
    /// `Some(true)` or `Some(false)`, or `None` when it is too long ago to
    /// tell. A slot holding the zero ballot (which no accept uses) was never
    /// filled or was forgotten, and tells nothing either.
    pub fn wrote(&self, number: u64, ballot: Ballot) -> Option<bool> {
        if number > self.count {
            return Some(false);
        }
        if self.count - number >= REMEMBERED_WRITES as u64 {
            return None;
        }
        let slot = self.recent[(number % REMEMBERED_WRITES as u64) as usize];
        (slot != Ballot::ZERO).then_some(slot == ballot)
    }
}
