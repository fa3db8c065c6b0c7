//! Per-name state packed into one small allocation per name.
//!
//! A node keeps state for every name it ever stored, most of them idle, so
//! the in-memory form of that state decides what a million names cost. A
//! [`PackedMap`] keeps each entry as one boxed byte string: the name, then
//! the entry in varints, written and read by a [`Packing`]. The acceptor's
//! registers and the proposer's fast paths are kept this way.
//!
//! The layouts are private to this process, never stored or sent (storage
//! has its own versioned record format), so they may change freely. They
//! must only be exact: `unpack(pack(x)) == x` for every value, including
//! write-log slots no write has filled, which a peer may send with any
//! content. Packing is a function of the value, so two packed entries are
//! equal exactly when the values are; equality and hashing of a map compare
//! bytes.
//!
//! ```text
//! entry  = bytes(name) ‖ packed value
//! bytes  = varint(length) ‖ the bytes
//! ballot = varint(counter) ‖ varint(node) ‖ varint(incarnation)
//! lease  = varint(token) ‖ bytes(holder, or none without a grant)
//!          ‖ [varint(ttl ms) ‖ varint(lock-delay ms · 2 + 1 if expired),
//!             with a grant]
//!          ‖ varint(write count) ‖ (slot tags ‖ slots) per four slots
//!          ‖ varint(queue length · 2 + 1 if the grant went to a waiter)
//!          ‖ [waiter, the grant's] ‖ queued*
//! waiter = varint(node) ‖ varint(incarnation) ‖ varint(seq)
//! queued = waiter ‖ bytes(holder) ‖ varint(ttl ms) ‖ varint(lock-delay ms)
//!          ‖ varint(until µs)
//! ```
//!
//! A lease value's write-log ballots are written relative to a nearby
//! ballot the caller names (the accepted ballot, or the reserved one), with
//! 2 bits per slot: 0 `Ballot::ZERO`, 1 the nearby ballot itself, 2 its node
//! and incarnation with the counter lowered by a varint, 3 a ballot in full.
//! Names and holders are non-empty, so an empty holder means no grant.

use crate::ballot::Ballot;
use crate::input::{HolderId, LeaseName, LockDelay, Ttl};
use crate::lease::{
    Grant, LeaseValue, Token, Waiter, WaiterId, Waiters, WriteLog, REMEMBERED_WRITES,
};
use crate::time::Micros;
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

/// How one kind of entry is written and read back.
pub(crate) trait Packing {
    type Value;
    fn pack(value: &Self::Value, out: &mut Vec<u8>);
    /// `None` only for bytes `pack` did not write.
    fn unpack(bytes: &mut Reader<'_>) -> Option<Self::Value>;
}

/// A map from names to values, each entry packed into one allocation.
pub(crate) struct PackedMap<P: Packing> {
    set: BTreeSet<Packed>,
    packing: PhantomData<P>,
}

impl<P: Packing> PackedMap<P> {
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub(crate) fn get(&self, name: &LeaseName) -> Option<P::Value> {
        self.set.get(name.as_str().as_bytes()).map(unpack::<P>)
    }

    pub(crate) fn contains(&self, name: &LeaseName) -> bool {
        self.set.contains(name.as_str().as_bytes())
    }

    pub(crate) fn insert(&mut self, name: &LeaseName, value: &P::Value) {
        self.set.replace(pack::<P>(name, value));
    }

    /// Whether there was an entry to remove.
    pub(crate) fn remove(&mut self, name: &LeaseName) -> bool {
        self.set.remove(name.as_str().as_bytes())
    }

    /// Like `BTreeMap::entry`: the value of `name`, to read or change.
    pub(crate) fn entry(&mut self, name: LeaseName) -> Entry<'_, P> {
        Entry { map: self, name }
    }

    /// Entries after `cursor` (from the first when `None`), unpacked, in
    /// name order.
    pub(crate) fn after<'a>(
        &'a self,
        cursor: Option<&LeaseName>,
    ) -> impl Iterator<Item = (LeaseName, P::Value)> + 'a {
        use std::ops::Bound;
        let from = match cursor {
            Some(name) => Bound::Excluded(name.as_str().as_bytes()),
            None => Bound::Unbounded,
        };
        self.set
            .range::<[u8], _>((from, Bound::Unbounded))
            .filter_map(|packed| {
                let name = std::str::from_utf8(packed.name()).ok()?;
                Some((LeaseName::new(name).ok()?, unpack::<P>(packed)))
            })
    }

    /// Every value, unpacked, in name order.
    pub(crate) fn values(&self) -> impl Iterator<Item = P::Value> + '_ {
        self.set.iter().map(unpack::<P>)
    }
}

impl<P: Packing> Default for PackedMap<P> {
    fn default() -> Self {
        PackedMap {
            set: BTreeSet::new(),
            packing: PhantomData,
        }
    }
}

impl<P: Packing> Clone for PackedMap<P> {
    fn clone(&self) -> Self {
        PackedMap {
            set: self.set.clone(),
            packing: PhantomData,
        }
    }
}

/// Packs each value as it arrives, so a recovery that streams records in
/// never holds them unpacked all at once.
impl<P: Packing> FromIterator<(LeaseName, P::Value)> for PackedMap<P> {
    fn from_iter<I: IntoIterator<Item = (LeaseName, P::Value)>>(entries: I) -> Self {
        PackedMap {
            set: entries
                .into_iter()
                .map(|(name, value)| pack::<P>(&name, &value))
                .collect(),
            packing: PhantomData,
        }
    }
}

/// Contents, not just names: packing is canonical, so equal bytes are
/// equal values.
impl<P: Packing> PartialEq for PackedMap<P> {
    fn eq(&self, other: &Self) -> bool {
        self.set.len() == other.set.len()
            && self.set.iter().zip(&other.set).all(|(a, b)| a.0 == b.0)
    }
}

impl<P: Packing> Eq for PackedMap<P> {}

impl<P: Packing> Hash for PackedMap<P> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.set.len());
        for packed in &self.set {
            packed.0.hash(state);
        }
    }
}

impl<P: Packing> fmt::Debug for PackedMap<P>
where
    P::Value: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.set.iter().map(|p| {
                let name = std::str::from_utf8(p.name()).unwrap_or_default();
                (name, unpack::<P>(p))
            }))
            .finish()
    }
}

pub(crate) struct Entry<'a, P: Packing> {
    map: &'a mut PackedMap<P>,
    name: LeaseName,
}

impl<'a, P: Packing> Entry<'a, P> {
    /// The value of the name, `default()` if it has none yet. Changes made
    /// through the guard are packed and stored when it is dropped, and a
    /// name that had no entry gets one even if nothing changed (as
    /// `BTreeMap::entry(..).or_insert_with(..)` would insert it).
    pub(crate) fn or_insert_with(self, default: impl FnOnce() -> P::Value) -> ValueMut<'a, P> {
        let value = self.map.get(&self.name).unwrap_or_else(default);
        ValueMut {
            set: &mut self.map.set,
            name: self.name,
            value,
        }
    }
}

/// An unpacked value that is packed back into its map when dropped, like
/// `std::collections::binary_heap::PeekMut`.
pub(crate) struct ValueMut<'a, P: Packing> {
    set: &'a mut BTreeSet<Packed>,
    name: LeaseName,
    value: P::Value,
}

impl<P: Packing> std::ops::Deref for ValueMut<'_, P> {
    type Target = P::Value;
    fn deref(&self) -> &P::Value {
        &self.value
    }
}

impl<P: Packing> std::ops::DerefMut for ValueMut<'_, P> {
    fn deref_mut(&mut self) -> &mut P::Value {
        &mut self.value
    }
}

impl<P: Packing> Drop for ValueMut<'_, P> {
    fn drop(&mut self) {
        let packed = pack::<P>(&self.name, &self.value);
        let unchanged = self
            .set
            .get(packed.name())
            .is_some_and(|old| old.0 == packed.0);
        if !unchanged {
            self.set.replace(packed);
        }
    }
}

fn pack<P: Packing>(name: &LeaseName, value: &P::Value) -> Packed {
    let mut out = Vec::with_capacity(64);
    put_bytes(&mut out, name.as_str().as_bytes());
    P::pack(value, &mut out);
    Packed(out.into_boxed_slice())
}

fn unpack<P: Packing>(packed: &Packed) -> P::Value {
    // Only `pack` makes these bytes, so they always read back.
    try_unpack::<P>(packed).expect("an entry packed by PackedMap unpacks")
}

fn try_unpack<P: Packing>(packed: &Packed) -> Option<P::Value> {
    let mut r = Reader(&packed.0);
    r.bytes()?;
    let value = P::unpack(&mut r)?;
    r.0.is_empty().then_some(value)
}

/// One name and its value, packed. Ordered and compared by name only,
/// which makes it a set element keyed by name; [`PackedMap`] compares
/// contents.
#[derive(Clone)]
struct Packed(Box<[u8]>);

impl Packed {
    fn name(&self) -> &[u8] {
        Reader(&self.0).bytes().unwrap_or_default()
    }
}

impl Borrow<[u8]> for Packed {
    fn borrow(&self) -> &[u8] {
        self.name()
    }
}

impl PartialEq for Packed {
    fn eq(&self, other: &Packed) -> bool {
        self.name() == other.name()
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
        self.name().cmp(other.name())
    }
}

const SLOT_ZERO: u8 = 0;
const SLOT_NEAR: u8 = 1;
const SLOT_BELOW_NEAR: u8 = 2;
const SLOT_FULL: u8 = 3;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn put_ballot(out: &mut Vec<u8>, b: Ballot) {
    put_varint(out, b.counter);
    put_varint(out, u64::from(b.node));
    put_varint(out, u64::from(b.incarnation));
}

/// A lease value, its write-log ballots written relative to `near`.
const _: () = assert!(REMEMBERED_WRITES % 4 == 0, "tag bytes hold four slots");

pub(crate) fn put_value(out: &mut Vec<u8>, value: &LeaseValue, near: Ballot) {
    put_varint(out, value.token.0);
    match &value.grant {
        Some(g) => {
            put_bytes(out, g.holder.as_str().as_bytes());
            put_varint(out, g.ttl.as_millis());
            put_varint(out, g.lock_delay.as_millis() << 1 | u64::from(g.expired));
        }
        None => put_bytes(out, &[]),
    }
    let writes = &value.writes;
    put_varint(out, writes.count);
    // Two bits per slot, four slots to a tag byte, the tags before the
    // slots they describe.
    for slots in writes.recent.chunks(4) {
        let tags_at = out.len();
        out.push(0);
        let mut tags = 0u8;
        for (i, slot) in slots.iter().enumerate() {
            let tag = if *slot == Ballot::ZERO {
                SLOT_ZERO
            } else if *slot == near {
                SLOT_NEAR
            } else if slot.node == near.node
                && slot.incarnation == near.incarnation
                && slot.counter < near.counter
            {
                put_varint(out, near.counter - slot.counter);
                SLOT_BELOW_NEAR
            } else {
                put_ballot(out, *slot);
                SLOT_FULL
            };
            tags |= tag << (2 * i);
        }
        out[tags_at] = tags;
    }
    let handed_to = value.grant.as_ref().and_then(|g| g.waiter);
    put_varint(
        out,
        (value.waiters.len() as u64) << 1 | u64::from(handed_to.is_some()),
    );
    if let Some(id) = handed_to {
        put_waiter_id(out, id);
    }
    for w in value.waiters.iter() {
        put_waiter_id(out, w.id);
        put_bytes(out, w.holder.as_str().as_bytes());
        put_varint(out, w.ttl.as_millis());
        put_varint(out, w.lock_delay.as_millis());
        put_varint(out, w.until.0);
    }
}

fn holder_from(bytes: &[u8]) -> Option<HolderId> {
    HolderId::new(std::str::from_utf8(bytes).ok()?).ok()
}

fn put_waiter_id(out: &mut Vec<u8>, id: WaiterId) {
    put_varint(out, u64::from(id.node));
    put_varint(out, u64::from(id.incarnation));
    put_varint(out, id.seq);
}

/// Reads what the `put_*` functions wrote, in the same order.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    #[cfg(test)]
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader(bytes)
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub(crate) fn varint(&mut self) -> Option<u64> {
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

    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(bytes)
    }

    pub(crate) fn ballot(&mut self) -> Option<Ballot> {
        Some(Ballot {
            counter: self.varint()?,
            node: u16::try_from(self.varint()?).ok()?,
            incarnation: u32::try_from(self.varint()?).ok()?,
        })
    }

    pub(crate) fn value(&mut self, near: Ballot) -> Option<LeaseValue> {
        let token = Token(self.varint()?);
        let holder = self.bytes()?;
        let mut grant = if holder.is_empty() {
            None
        } else {
            let holder = holder_from(holder)?;
            let ttl = Ttl::from_millis(self.varint()?).ok()?;
            let delay_and_flag = self.varint()?;
            Some(Grant {
                holder,
                ttl,
                lock_delay: LockDelay::from_millis(delay_and_flag >> 1).ok()?,
                waiter: None,
                expired: delay_and_flag & 1 == 1,
            })
        };
        let count = self.varint()?;
        let mut recent = [Ballot::ZERO; REMEMBERED_WRITES];
        for slots in recent.chunks_mut(4) {
            let tags = self.byte()?;
            for (i, slot) in slots.iter_mut().enumerate() {
                *slot = match (tags >> (2 * i)) & 0b11 {
                    SLOT_ZERO => Ballot::ZERO,
                    SLOT_NEAR => near,
                    SLOT_BELOW_NEAR => Ballot {
                        counter: near.counter.checked_sub(self.varint()?)?,
                        ..near
                    },
                    _ => self.ballot()?,
                };
            }
        }
        let queue_and_flag = self.varint()?;
        if queue_and_flag & 1 == 1 {
            grant.as_mut()?.waiter = Some(self.waiter_id()?);
        }
        let queued = usize::try_from(queue_and_flag >> 1).ok()?;
        let mut waiters = Vec::with_capacity(queued.min(crate::lease::MAX_WAITERS));
        for _ in 0..queued {
            let id = self.waiter_id()?;
            let holder = self.bytes()?;
            waiters.push(Waiter {
                id,
                holder: holder_from(holder)?,
                ttl: Ttl::from_millis(self.varint()?).ok()?,
                lock_delay: LockDelay::from_millis(self.varint()?).ok()?,
                until: Micros(self.varint()?),
            });
        }
        Some(LeaseValue {
            token,
            grant,
            waiters: Waiters(waiters),
            writes: WriteLog { count, recent },
        })
    }

    fn waiter_id(&mut self) -> Option<WaiterId> {
        Some(WaiterId {
            node: u16::try_from(self.varint()?).ok()?,
            incarnation: u32::try_from(self.varint()?).ok()?,
            seq: self.varint()?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
