//! Records of layout version 1, written before a lease value carried its
//! queue of waiters and remembered eight writes: read and converted, never
//! written.

use serde::Deserialize;
use tenure_core::lease::{Grant, LeaseValue, Token, WriteLog, REMEMBERED_WRITES};
use tenure_core::{Ballot, Durable, HolderId, LockDelay, Ttl};

#[derive(Deserialize)]
struct DurableV1 {
    promised: Ballot,
    accepted: Option<(Ballot, LeaseValueV1)>,
}

#[derive(Deserialize)]
struct LeaseValueV1 {
    token: Token,
    grant: Option<GrantV1>,
    writes: WriteLogV1,
}

/// The four ballots of the last writes, at `number % 4`.
#[derive(Deserialize)]
struct WriteLogV1 {
    count: u64,
    recent: [Ballot; 4],
}

impl WriteLogV1 {
    /// The same knowledge in today's wider log: each remembered write in
    /// its slot, and the slots it never knew left at the zero ballot,
    /// which says "cannot tell".
    fn widen(self) -> WriteLog {
        let mut recent = [Ballot::ZERO; REMEMBERED_WRITES];
        for number in self.count.saturating_sub(3).max(1)..=self.count {
            let slot = (number % REMEMBERED_WRITES as u64) as usize;
            recent[slot] = self.recent[(number % 4) as usize];
        }
        WriteLog {
            count: self.count,
            recent,
        }
    }
}

#[derive(Deserialize)]
struct GrantV1 {
    holder: HolderId,
    ttl: Ttl,
    lock_delay: LockDelay,
}

/// Decode a version 1 payload as today's [`Durable`]: no waiters, and no
/// grant handed to one.
pub(super) fn decode(payload: &[u8]) -> Result<(Durable, &[u8]), postcard::Error> {
    let (old, rest) = postcard::take_from_bytes::<DurableV1>(payload)?;
    let accepted = old.accepted.map(|(ballot, v)| {
        let grant = v.grant.map(|g| Grant {
            holder: g.holder,
            ttl: g.ttl,
            lock_delay: g.lock_delay,
            waiter: None,
            expired: false,
        });
        let value = LeaseValue {
            token: v.token,
            grant,
            waiters: Default::default(),
            writes: v.writes.widen(),
        };
        (ballot, value)
    });
    let durable = Durable {
        promised: old.promised,
        accepted,
    };
    Ok((durable, rest))
}
