//! The fast path: what the winner of a name's last round knows, so that its
//! next round can skip phase 1.
//!
//! When a round's accept at ballot `b` is acknowledged by a majority, those
//! acceptors have also promised `b.successor()` and the proposer knows the
//! value they accepted: exactly what a phase 1 at `b.successor()` would
//! have told it. That is a [`FastPath`] reservation.

use crate::ballot::Ballot;
use crate::lease::LeaseValue;
use crate::packed::{put_ballot, put_value, put_varint, PackedMap, Packing, Reader};
use crate::time::{Instant, Micros};

/// Acceptors of a majority have promised `ballot`, and `value` was the
/// highest accepted below it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct FastPath {
    pub ballot: Ballot,
    pub value: LeaseValue,
    /// The value's age when it was last confirmed, and when (local clock).
    /// Confirmation comes after every acceptance, so age + elapsed stays a
    /// lower bound of the lease's true age, as far as this node's clock
    /// can be trusted; `age` alone needs no clock of this node.
    pub age: Micros,
    /// The ballot of the accept that started the value's lease clock.
    pub origin: Ballot,
    pub confirmed_at: Instant,
}

impl FastPath {
    pub fn age(&self, now: Instant) -> Micros {
        self.age.saturating_add(now.since(self.confirmed_at))
    }
}

/// A node keeps up to `max_fast_paths` reservations, most for names whose
/// holders then go quiet, so they are kept packed (see `crate::packed`):
/// `ballot ‖ varint(age) ‖ varint(confirmed_at) ‖ origin ‖ lease value
/// near the ballot`.
pub(super) struct FastPathPacking;

pub(super) type FastPaths = PackedMap<FastPathPacking>;

impl Packing for FastPathPacking {
    type Value = FastPath;

    fn pack(fast: &FastPath, out: &mut Vec<u8>) {
        put_ballot(out, fast.ballot);
        put_varint(out, fast.age.0);
        put_varint(out, fast.confirmed_at.as_micros());
        put_ballot(out, fast.origin);
        put_value(out, &fast.value, fast.ballot);
    }

    fn unpack(r: &mut Reader<'_>) -> Option<FastPath> {
        let ballot = r.ballot()?;
        let age = Micros(r.varint()?);
        let confirmed_at = Instant::from_micros(r.varint()?);
        let origin = r.ballot()?;
        let value = r.value(ballot)?;
        Some(FastPath {
            ballot,
            value,
            age,
            origin,
            confirmed_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::LeaseName;
    use crate::packed::tests::{arb_ballot, arb_value};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_reservation_unpacks_to_itself(
            (ballot, value) in arb_ballot().prop_flat_map(|b| (Just(b), arb_value(b))),
            origin in arb_ballot(),
            age in any::<u64>(),
            confirmed_at in any::<u64>(),
        ) {
            let fast = FastPath {
                ballot,
                value,
                age: Micros(age),
                origin,
                confirmed_at: Instant::from_micros(confirmed_at),
            };
            let name = LeaseName::new("n").unwrap();
            let mut map = FastPaths::default();
            map.insert(&name, &fast);
            prop_assert_eq!(map.get(&name), Some(fast));
        }
    }
}
