//! How a register is packed in memory (see `crate::packed`).
//!
//! A [`Register`] with its value is 160 bytes inline, and its name and
//! holder were two more allocations; packed, the storage bench's idle name
//! is 70 bytes in one allocation.
//!
//! ```text
//! register = flags ‖ [promised] ‖ [accepted]
//! flags    = bit 0: accepted present
//!            bit 1: promised is accepted.ballot.successor(), so not written
//!            bit 2: the clock's origin is accepted.ballot, so not written
//! accepted = ballot ‖ varint(clock_start) ‖ [origin] ‖ lease value near
//!            the ballot
//! ```

use super::{Accepted, Register};
use crate::packed::{put_ballot, put_value, put_varint, PackedMap, Packing, Reader};
use crate::time::Instant;

const ACCEPTED: u8 = 1;
const PROMISED_SUCCESSOR: u8 = 1 << 1;
const ORIGIN_IS_BALLOT: u8 = 1 << 2;

/// Every name's register, in name order.
pub(super) type Registers = PackedMap<RegisterPacking>;

pub(super) struct RegisterPacking;

impl Packing for RegisterPacking {
    type Value = Register;

    fn pack(register: &Register, out: &mut Vec<u8>) {
        let accepted = register.accepted.as_ref();
        let successor = accepted.is_some_and(|a| register.promised == a.ballot.successor());
        let mut flags = 0;
        if accepted.is_some() {
            flags |= ACCEPTED;
        }
        if successor {
            flags |= PROMISED_SUCCESSOR;
        }
        let own_origin = accepted.is_some_and(|a| a.origin == a.ballot);
        if own_origin {
            flags |= ORIGIN_IS_BALLOT;
        }
        out.push(flags);
        if !successor {
            put_ballot(out, register.promised);
        }
        if let Some(a) = accepted {
            put_ballot(out, a.ballot);
            put_varint(out, a.clock_start.as_micros());
            if !own_origin {
                put_ballot(out, a.origin);
            }
            put_value(out, &a.value, a.ballot);
        }
    }

    fn unpack(r: &mut Reader<'_>) -> Option<Register> {
        let flags = r.byte()?;
        let promised = if flags & PROMISED_SUCCESSOR == 0 {
            Some(r.ballot()?)
        } else {
            None
        };
        let accepted = if flags & ACCEPTED != 0 {
            let ballot = r.ballot()?;
            let clock_start = Instant::from_micros(r.varint()?);
            let origin = if flags & ORIGIN_IS_BALLOT != 0 {
                ballot
            } else {
                r.ballot()?
            };
            let value = r.value(ballot)?;
            Some(Accepted {
                ballot,
                value,
                clock_start,
                origin,
            })
        } else {
            None
        };
        let promised = match (promised, &accepted) {
            (Some(p), _) => p,
            (None, Some(a)) => a.ballot.successor(),
            (None, None) => return None,
        };
        Some(Register { promised, accepted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::Ballot;
    use crate::input::{HolderId, LeaseName, LockDelay, Ttl};
    use crate::lease::{Grant, LeaseValue, Token, WriteLog};
    use crate::packed::tests::{arb_ballot, arb_value};
    use proptest::prelude::*;

    fn name(s: &str) -> LeaseName {
        LeaseName::new(s).unwrap()
    }

    fn arb_register() -> impl Strategy<Value = Register> {
        let accepted = prop::option::of(arb_ballot().prop_flat_map(|ballot| {
            (
                arb_value(ballot),
                any::<u64>(),
                prop::option::of(arb_ballot()),
            )
                .prop_map(move |(value, clock, origin)| Accepted {
                    ballot,
                    value,
                    clock_start: Instant::from_micros(clock),
                    origin: origin.unwrap_or(ballot),
                })
        }));
        (arb_ballot(), accepted, any::<bool>()).prop_map(|(promised, accepted, successor)| {
            let promised = match (&accepted, successor) {
                (Some(a), true) => a.ballot.successor(),
                _ => promised,
            };
            Register { promised, accepted }
        })
    }

    proptest! {
        #[test]
        fn every_register_unpacks_to_itself(register in arb_register()) {
            let mut registers = Registers::default();
            registers.insert(&name("n"), &register);
            prop_assert_eq!(registers.get(&name("n")), Some(register));
        }

        #[test]
        fn packed_registers_are_equal_exactly_when_the_registers_are(
            a in arb_register(),
            b in arb_register(),
        ) {
            let one = |r: &Register| {
                let mut registers = Registers::default();
                registers.insert(&name("n"), r);
                registers
            };
            prop_assert_eq!(one(&a) == one(&b), a == b);
        }
    }

    /// What an idle name costs: pins the point of packing.
    #[test]
    fn an_idle_lease_packs_small() {
        let ballot = Ballot {
            counter: 1_234_567,
            node: 2,
            incarnation: 7,
        };
        let mut writes = WriteLog::default();
        for back in (0..4).rev() {
            writes = writes.after(Ballot {
                counter: ballot.counter - back,
                ..ballot
            });
        }
        let register = Register {
            promised: ballot.successor(),
            accepted: Some(Accepted {
                ballot,
                value: LeaseValue {
                    token: Token(4_321),
                    grant: Some(Grant {
                        holder: HolderId::new("host-42.example:4242").unwrap(),
                        ttl: Ttl::from_millis(86_400_000).unwrap(),
                        lock_delay: LockDelay::NONE,
                        waiter: None,
                        expired: false,
                    }),
                    waiters: Default::default(),
                    writes,
                },
                clock_start: Instant::from_micros(3_600_000_000),
                origin: ballot,
            }),
        };
        let mut out = Vec::new();
        RegisterPacking::pack(&register, &mut out);
        assert_eq!(
            RegisterPacking::unpack(&mut Reader::new(&out)),
            Some(register)
        );
        // Flags 1, ballot 5, clock 5, token 2, holder 21 (with its length),
        // ttl 4, lock-delay 1, count 1, slot tags 1, and three write-log
        // ballots 1 each (the fourth is the accepted one); the promise is
        // the accepted ballot's successor: 0, and so is the clock's origin
        // (the accepted ballot). The name adds its length + 1.
        assert_eq!(out.len(), 46);
    }
}
