//! Records of layout version 2, written before a grant could be marked
//! expired: read and converted, never written.

use serde::Deserialize;
use tenure_core::lease::{Grant, LeaseValue, Token, WaiterId, Waiters, WriteLog};
use tenure_core::{Ballot, Durable, HolderId, LockDelay, Ttl};

#[derive(Deserialize)]
struct DurableV2 {
    promised: Ballot,
    accepted: Option<(Ballot, LeaseValueV2)>,
}

#[derive(Deserialize)]
struct LeaseValueV2 {
    token: Token,
    grant: Option<GrantV2>,
    waiters: Waiters,
    writes: WriteLog,
}

#[derive(Deserialize)]
struct GrantV2 {
    holder: HolderId,
    ttl: Ttl,
    lock_delay: LockDelay,
    waiter: Option<WaiterId>,
}

/// Decode a version 2 payload as today's [`Durable`]: no grant marked
/// expired yet (whether one is, its age shows, as it did then).
pub(super) fn decode(payload: &[u8]) -> Result<(Durable, &[u8]), postcard::Error> {
    let (old, rest) = postcard::take_from_bytes::<DurableV2>(payload)?;
    let accepted = old.accepted.map(|(ballot, v)| {
        let grant = v.grant.map(|g| Grant {
            holder: g.holder,
            ttl: g.ttl,
            lock_delay: g.lock_delay,
            waiter: g.waiter,
            expired: false,
        });
        let value = LeaseValue {
            token: v.token,
            grant,
            waiters: v.waiters,
            writes: v.writes,
        };
        (ballot, value)
    });
    let durable = Durable {
        promised: old.promised,
        accepted,
    };
    Ok((durable, rest))
}
