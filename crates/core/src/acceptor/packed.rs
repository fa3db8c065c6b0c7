//! The acceptor's registers in memory: one small allocation per name.
//!
//! A node keeps the register of every name it ever stored, most of them
//! idle, so their in-memory form decides what a million names cost. A
//! [`Register`] with its value is 160 bytes inline, its name and holder two
//! more allocations, and the map's nodes are often half empty. Here each
//! name is one boxed byte string instead: the name, then the register in
//! varints, with ballots that repeat the accepted one stored as a one-byte
//! tag. An idle lease costs about 40 to 80 bytes plus 16 in the set.
//!
//! The layout is private to this process and never stored or sent (storage
//! has its own versioned record format), so it can change freely. It must
//! only be exact: `unpack(pack(r)) == r` for every register, including
//! write-log slots that no write has filled, which a peer may send with
//! any content. Packing is a function of the register, so two packed
//! registers are equal exactly when the registers are.
//!
//! ```text
//! entry    = varint(name length) ‖ name ‖ flags ‖ [promised] ‖ [accepted]
//! flags    = bit 0: accepted present
//!            bit 1: promised is accepted.ballot.successor() (so not stored)
//!            bit 2: the value has a grant
//! accepted = ballot ‖ varint(clock_start) ‖ varint(token)
//!            ‖ [varint(holder length) ‖ holder ‖ varint(ttl) ‖ varint(lock_delay)]
//!            ‖ varint(write count) ‖ slot tags ‖ slots
//! ballot   = varint(counter) ‖ varint(node) ‖ varint(incarnation)
//! slot tag = 2 bits per write-log slot: 0 Ballot::ZERO, 1 the accepted
//!            ballot, 2 the accepted ballot's node and incarnation with
//!            counter lowered by a varint delta, 3 a ballot in full
//! ```

use super::{Accepted, Register};
use crate::ballot::Ballot;
use crate::input::{HolderId, LeaseName, LockDelay, Ttl};
use crate::lease::{Grant, LeaseValue, Token, WriteLog, REMEMBERED_WRITES};
use crate::time::Instant;
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};

const ACCEPTED: u8 = 1;
const PROMISED_SUCCESSOR: u8 = 1 << 1;
const GRANT: u8 = 1 << 2;

const SLOT_ZERO: u8 = 0;
const SLOT_ACCEPTED: u8 = 1;
const SLOT_BELOW_ACCEPTED: u8 = 2;
const SLOT_FULL: u8 = 3;

/// Every name's register, in name order.
#[derive(Clone, Default)]
pub(super) struct Registers {
    set: BTreeSet<Packed>,
}

impl Registers {
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub(super) fn get(&self, name: &LeaseName) -> Option<Register> {
        self.set.get(name.as_str().as_bytes()).map(Packed::unpack)
    }

    /// Like `BTreeMap::entry`: the register of `name`, to read or change.
    pub(super) fn entry(&mut self, name: LeaseName) -> Entry<'_> {
        Entry {
            registers: self,
            name,
        }
    }

    /// Every register, unpacked, in name order.
    pub(super) fn values(&self) -> impl Iterator<Item = Register> + '_ {
        self.set.iter().map(Packed::unpack)
    }
}

/// Packs each register as it arrives, so a recovery that streams records
/// in never holds them unpacked all at once.
impl FromIterator<(LeaseName, Register)> for Registers {
    fn from_iter<I: IntoIterator<Item = (LeaseName, Register)>>(records: I) -> Registers {
        Registers {
            set: records
                .into_iter()
                .map(|(name, register)| Packed::pack(&name, &register))
                .collect(),
        }
    }
}

/// Contents, not just names: packing is canonical, so equal bytes are
/// equal registers.
impl PartialEq for Registers {
    fn eq(&self, other: &Registers) -> bool {
        self.set.len() == other.set.len()
            && self.set.iter().zip(&other.set).all(|(a, b)| a.0 == b.0)
    }
}

impl Eq for Registers {}

impl Hash for Registers {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.set.len());
        for packed in &self.set {
            packed.0.hash(state);
        }
    }
}

impl fmt::Debug for Registers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.set.iter().map(|p| (p.name(), p.unpack())))
            .finish()
    }
}

pub(super) struct Entry<'a> {
    registers: &'a mut Registers,
    name: LeaseName,
}

impl<'a> Entry<'a> {
    /// The register of the name, a default one if it has none yet. Changes
    /// made through the guard are packed and stored when it is dropped,
    /// and a name that had no register gets one even if nothing changed
    /// (as `BTreeMap::entry(..).or_default()` would insert it).
    pub(super) fn or_default(self) -> RegisterMut<'a> {
        let register = self.registers.get(&self.name).unwrap_or_default();
        RegisterMut {
            set: &mut self.registers.set,
            name: self.name,
            register,
        }
    }
}

/// An unpacked register that is packed back into its set when dropped,
/// like `std::collections::binary_heap::PeekMut`.
pub(super) struct RegisterMut<'a> {
    set: &'a mut BTreeSet<Packed>,
    name: LeaseName,
    register: Register,
}

impl std::ops::Deref for RegisterMut<'_> {
    type Target = Register;
    fn deref(&self) -> &Register {
        &self.register
    }
}

impl std::ops::DerefMut for RegisterMut<'_> {
    fn deref_mut(&mut self) -> &mut Register {
        &mut self.register
    }
}

impl Drop for RegisterMut<'_> {
    fn drop(&mut self) {
        let packed = Packed::pack(&self.name, &self.register);
        let unchanged = self
            .set
            .get(packed.name_bytes())
            .is_some_and(|old| old.0 == packed.0);
        if !unchanged {
            self.set.replace(packed);
        }
    }
}

/// One name and its register, packed. Ordered and compared by name only,
/// which makes it a set element keyed by name; [`Registers`] compares
/// contents.
#[derive(Clone)]
struct Packed(Box<[u8]>);

impl Packed {
    fn pack(name: &LeaseName, register: &Register) -> Packed {
        let mut out = Vec::with_capacity(64);
        put_bytes(&mut out, name.as_str().as_bytes());
        let accepted = register.accepted.as_ref();
        let successor = accepted.is_some_and(|a| register.promised == a.ballot.successor());
        let grant = accepted.and_then(|a| a.value.grant.as_ref());
        let mut flags = 0;
        if accepted.is_some() {
            flags |= ACCEPTED;
        }
        if successor {
            flags |= PROMISED_SUCCESSOR;
        }
        if grant.is_some() {
            flags |= GRANT;
        }
        out.push(flags);
        if !successor {
            put_ballot(&mut out, register.promised);
        }
        if let Some(a) = accepted {
            put_ballot(&mut out, a.ballot);
            put_varint(&mut out, a.clock_start.as_micros());
            put_varint(&mut out, a.value.token.0);
            if let Some(g) = grant {
                put_bytes(&mut out, g.holder.as_str().as_bytes());
                put_varint(&mut out, g.ttl.as_millis());
                put_varint(&mut out, g.lock_delay.as_millis());
            }
            let writes = &a.value.writes;
            put_varint(&mut out, writes.count);
            let tags_at = out.len();
            out.push(0);
            let mut tags = 0u8;
            for (i, slot) in writes.recent.iter().enumerate() {
                let tag = if *slot == Ballot::ZERO {
                    SLOT_ZERO
                } else if *slot == a.ballot {
                    SLOT_ACCEPTED
                } else if slot.node == a.ballot.node
                    && slot.incarnation == a.ballot.incarnation
                    && slot.counter < a.ballot.counter
                {
                    put_varint(&mut out, a.ballot.counter - slot.counter);
                    SLOT_BELOW_ACCEPTED
                } else {
                    put_ballot(&mut out, *slot);
                    SLOT_FULL
                };
                tags |= tag << (2 * i);
            }
            out[tags_at] = tags;
        }
        Packed(out.into_boxed_slice())
    }

    fn unpack(&self) -> Register {
        // Only `pack` makes these bytes, so they always read back.
        self.try_unpack()
            .expect("a register packed by Packed::pack unpacks")
    }

    fn try_unpack(&self) -> Option<Register> {
        let mut r = Reader(&self.0);
        r.bytes()?;
        let flags = r.byte()?;
        let promised = if flags & PROMISED_SUCCESSOR == 0 {
            Some(r.ballot()?)
        } else {
            None
        };
        let accepted = if flags & ACCEPTED != 0 {
            let ballot = r.ballot()?;
            let clock_start = Instant::from_micros(r.varint()?);
            let token = Token(r.varint()?);
            let grant = if flags & GRANT != 0 {
                let holder = HolderId::new(std::str::from_utf8(r.bytes()?).ok()?).ok()?;
                let ttl = Ttl::from_millis(r.varint()?).ok()?;
                let lock_delay = LockDelay::from_millis(r.varint()?).ok()?;
                Some(Grant {
                    holder,
                    ttl,
                    lock_delay,
                })
            } else {
                None
            };
            let count = r.varint()?;
            let tags = r.byte()?;
            let mut recent = [Ballot::ZERO; REMEMBERED_WRITES];
            for (i, slot) in recent.iter_mut().enumerate() {
                *slot = match (tags >> (2 * i)) & 0b11 {
                    SLOT_ZERO => Ballot::ZERO,
                    SLOT_ACCEPTED => ballot,
                    SLOT_BELOW_ACCEPTED => Ballot {
                        counter: ballot.counter.checked_sub(r.varint()?)?,
                        ..ballot
                    },
                    _ => r.ballot()?,
                };
            }
            Some(Accepted {
                ballot,
                value: LeaseValue {
                    token,
                    grant,
                    writes: WriteLog { count, recent },
                },
                clock_start,
            })
        } else {
            None
        };
        let promised = match (promised, &accepted) {
            (Some(p), _) => p,
            (None, Some(a)) => a.ballot.successor(),
            (None, None) => return None,
        };
        r.0.is_empty().then_some(Register { promised, accepted })
    }

    fn name_bytes(&self) -> &[u8] {
        Reader(&self.0).bytes().unwrap_or_default()
    }

    fn name(&self) -> &str {
        std::str::from_utf8(self.name_bytes()).unwrap_or_default()
    }
}

impl Borrow<[u8]> for Packed {
    fn borrow(&self) -> &[u8] {
        self.name_bytes()
    }
}

impl PartialEq for Packed {
    fn eq(&self, other: &Packed) -> bool {
        self.name_bytes() == other.name_bytes()
    }
}

impl Eq for Packed {}

impl PartialOrd for Packed {
    fn partial_cmp(&self, other: &Packed) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Packed {
    fn cmp(&self, other: &Packed) -> Ordering {
        self.name_bytes().cmp(other.name_bytes())
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_ballot(out: &mut Vec<u8>, b: Ballot) {
    put_varint(out, b.counter);
    put_varint(out, u64::from(b.node));
    put_varint(out, u64::from(b.incarnation));
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(bytes)
    }

    fn ballot(&mut self) -> Option<Ballot> {
        Some(Ballot {
            counter: self.varint()?,
            node: u16::try_from(self.varint()?).ok()?,
            incarnation: u32::try_from(self.varint()?).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> LeaseName {
        LeaseName::new(s).unwrap()
    }

    fn arb_ballot() -> impl Strategy<Value = Ballot> {
        prop_oneof![
            Just(Ballot::ZERO),
            (0u64..40, 0u16..4, 0u32..3).prop_map(|(counter, node, incarnation)| Ballot {
                counter,
                node,
                incarnation
            }),
            (any::<u64>(), any::<u16>(), any::<u32>()).prop_map(|(counter, node, incarnation)| {
                Ballot {
                    counter,
                    node,
                    incarnation,
                }
            }),
            Just(Ballot {
                counter: u64::MAX,
                node: u16::MAX,
                incarnation: u32::MAX
            }),
        ]
    }

    fn arb_register() -> impl Strategy<Value = Register> {
        let grant = prop::option::of(
            (
                "[!-~]{1,128}",
                crate::input::MIN_TTL_MS..=crate::input::MAX_TTL_MS,
                0..=crate::input::MAX_LOCK_DELAY_MS,
            )
                .prop_map(|(holder, ttl, delay)| Grant {
                    holder: HolderId::new(&holder).unwrap(),
                    ttl: Ttl::from_millis(ttl).unwrap(),
                    lock_delay: LockDelay::from_millis(delay).unwrap(),
                }),
        );
        let accepted = prop::option::of(
            (
                arb_ballot(),
                any::<u64>(),
                any::<u64>(),
                grant,
                any::<u64>(),
                prop::array::uniform4(arb_ballot()),
                0usize..5,
            )
                .prop_map(|(ballot, clock, token, grant, count, mut recent, same)| {
                    // Write logs as the proposer builds them: some slots
                    // the accepted ballot, some just below it.
                    if same < REMEMBERED_WRITES {
                        recent[same] = ballot;
                        recent[(same + 1) % REMEMBERED_WRITES] = Ballot {
                            counter: ballot.counter.saturating_sub(3),
                            ..ballot
                        };
                    }
                    Accepted {
                        ballot,
                        value: LeaseValue {
                            token: Token(token),
                            grant,
                            writes: WriteLog { count, recent },
                        },
                        clock_start: Instant::from_micros(clock),
                    }
                }),
        );
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
        fn every_register_unpacks_to_itself(register in arb_register(), n in "[a-z0-9./:_-]{1,128}") {
            let packed = Packed::pack(&name(&n), &register);
            prop_assert_eq!(packed.name(), n.as_str());
            prop_assert_eq!(packed.try_unpack(), Some(register));
        }

        #[test]
        fn packed_registers_are_equal_exactly_when_the_registers_are(
            a in arb_register(),
            b in arb_register(),
        ) {
            let (pa, pb) = (Packed::pack(&name("n"), &a), Packed::pack(&name("n"), &b));
            prop_assert_eq!(pa.0 == pb.0, a == b);
        }

        #[test]
        fn registers_behave_as_a_map_in_name_order(
            ops in prop::collection::vec(("[a-c]{1,2}", arb_register()), 0..40)
        ) {
            let mut model = std::collections::BTreeMap::new();
            let mut registers = Registers::default();
            for (n, register) in ops {
                *registers.entry(name(&n)).or_default() = register.clone();
                model.insert(n, register);
            }
            prop_assert_eq!(registers.len(), model.len());
            for (n, register) in &model {
                prop_assert_eq!(registers.get(&name(n)), Some(register.clone()));
            }
            prop_assert!(registers.values().eq(model.values().cloned()));
            let rebuilt: Registers = model
                .iter()
                .map(|(n, r)| (name(n), r.clone()))
                .collect();
            prop_assert_eq!(&rebuilt, &registers);
        }
    }

    #[test]
    fn entry_inserts_a_default_register_like_a_map() {
        let mut registers = Registers::default();
        drop(registers.entry(name("a")).or_default());
        assert_eq!(registers.len(), 1);
        assert_eq!(registers.get(&name("a")), Some(Register::default()));
        assert_eq!(registers.get(&name("b")), None);
    }

    #[test]
    fn equality_and_hash_see_contents_not_only_names() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |r: &Registers| {
            let mut h = DefaultHasher::new();
            r.hash(&mut h);
            h.finish()
        };
        let mut a = Registers::default();
        a.entry(name("a")).or_default().promised = Ballot {
            counter: 1,
            node: 1,
            incarnation: 1,
        };
        let mut b = a.clone();
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b));
        b.entry(name("a")).or_default().promised.counter = 2;
        assert_ne!(a, b);
        assert_ne!(hash(&a), hash(&b));
    }

    /// What an idle lease costs: pins the point of this module.
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
                    }),
                    writes,
                },
                clock_start: Instant::from_micros(3_600_000_000),
            }),
        };
        let packed = Packed::pack(&name("svc-0123/shard-456/leader"), &register);
        assert_eq!(packed.try_unpack(), Some(register));
        // Name 26 and holder 21 (each with its length), flags 1, ballot 5,
        // clock 5, token 2, ttl 4, lock-delay 1, count 1, slot tags 1, and
        // three write-log ballots 1 each (the fourth is the accepted one);
        // the promise is the accepted ballot's successor: 0.
        assert_eq!(packed.0.len(), 70);
    }
}
