//! Packing is exact: every value unpacks to itself, and equal bytes are
//! equal values. The generators are shared with the packings of other
//! modules.

use super::*;
use proptest::prelude::*;

pub(crate) fn arb_ballot() -> impl Strategy<Value = Ballot> {
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

/// Any lease value, with write logs as the proposer builds them (some
/// slots `near`, some just below it) as well as arbitrary ones.
pub(crate) fn arb_value(near: Ballot) -> impl Strategy<Value = LeaseValue> {
    let grant = prop::option::of(
        (
            "[!-~]{1,128}",
            crate::input::MIN_TTL_MS..=crate::input::MAX_TTL_MS,
            0..=crate::input::MAX_LOCK_DELAY_MS,
            any::<bool>(),
        )
            .prop_map(|(holder, ttl, delay, expired)| Grant {
                holder: HolderId::new(&holder).unwrap(),
                ttl: Ttl::from_millis(ttl).unwrap(),
                lock_delay: LockDelay::from_millis(delay).unwrap(),
                waiter: None,
                expired,
            }),
    );
    let waiter_id =
        (any::<u16>(), any::<u32>(), any::<u64>()).prop_map(|(node, incarnation, seq)| WaiterId {
            node,
            incarnation,
            seq,
        });
    let grant = (grant, prop::option::of(waiter_id.clone()))
        .prop_map(|(grant, waiter)| grant.map(|g| Grant { waiter, ..g }));
    let waiters = prop::collection::vec(
        (
            waiter_id,
            "[!-~]{1,16}",
            crate::input::MIN_TTL_MS..=crate::input::MAX_TTL_MS,
            0..=crate::input::MAX_LOCK_DELAY_MS,
            any::<u64>(),
        )
            .prop_map(|(id, holder, ttl, delay, until)| Waiter {
                id,
                holder: HolderId::new(&holder).unwrap(),
                ttl: Ttl::from_millis(ttl).unwrap(),
                lock_delay: LockDelay::from_millis(delay).unwrap(),
                until: Micros(until),
            }),
        0..4,
    );
    (
        any::<u64>(),
        grant,
        any::<u64>(),
        prop::array::uniform8(arb_ballot()),
        0usize..5,
        waiters,
    )
        .prop_map(move |(token, grant, count, mut recent, at, waiters)| {
            if at < REMEMBERED_WRITES {
                recent[at] = near;
                recent[(at + 1) % REMEMBERED_WRITES] = Ballot {
                    counter: near.counter.saturating_sub(3),
                    ..near
                };
            }
            LeaseValue {
                token: Token(token),
                grant,
                waiters: Waiters(waiters),
                writes: WriteLog { count, recent },
            }
        })
}

/// A name and a lease value relative to the ballot before it.
struct Plain;
impl Packing for Plain {
    type Value = (Ballot, LeaseValue);
    fn pack((near, value): &(Ballot, LeaseValue), out: &mut Vec<u8>) {
        put_ballot(out, *near);
        put_value(out, value, *near);
    }
    fn unpack(r: &mut Reader<'_>) -> Option<(Ballot, LeaseValue)> {
        let near = r.ballot()?;
        Some((near, r.value(near)?))
    }
}

fn name(s: &str) -> LeaseName {
    LeaseName::new(s).unwrap()
}

fn arb_entry() -> impl Strategy<Value = (Ballot, LeaseValue)> {
    arb_ballot().prop_flat_map(|near| (Just(near), arb_value(near)))
}

proptest! {
    #[test]
    fn every_value_unpacks_to_itself(entry in arb_entry(), n in "[a-z0-9./:_-]{1,128}") {
        let packed = pack::<Plain>(&name(&n), &entry);
        prop_assert_eq!(packed.name(), n.as_bytes());
        prop_assert_eq!(try_unpack::<Plain>(&packed), Some(entry));
    }

    #[test]
    fn packed_entries_are_equal_exactly_when_the_values_are(
        a in arb_entry(),
        b in arb_entry(),
    ) {
        let (pa, pb) = (pack::<Plain>(&name("n"), &a), pack::<Plain>(&name("n"), &b));
        prop_assert_eq!(pa.0 == pb.0, a == b);
    }

    #[test]
    fn a_packed_map_behaves_as_a_map_in_name_order(
        ops in prop::collection::vec(("[a-c]{1,2}", arb_entry(), 0u8..4), 0..40)
    ) {
        let mut model = std::collections::BTreeMap::new();
        let mut map = PackedMap::<Plain>::default();
        for (n, entry, how) in ops {
            match how {
                0 => {
                    map.insert(&name(&n), &entry);
                    model.insert(n, entry);
                }
                1 => {
                    prop_assert_eq!(map.remove(&name(&n)), model.remove(&n).is_some());
                }
                _ => {
                    *map.entry(name(&n)).or_insert_with(Default::default) = entry.clone();
                    model.insert(n, entry);
                }
            }
        }
        prop_assert_eq!(map.len(), model.len());
        for (n, entry) in &model {
            prop_assert_eq!(map.get(&name(n)), Some(entry.clone()));
            prop_assert!(map.contains(&name(n)));
        }
        prop_assert!(map.values().eq(model.values().cloned()));
        let rebuilt: PackedMap<Plain> = model
            .iter()
            .map(|(n, e)| (name(n), e.clone()))
            .collect();
        prop_assert!(rebuilt == map);
    }
}

#[test]
fn entry_inserts_a_default_value_like_a_map() {
    let mut map = PackedMap::<Plain>::default();
    drop(map.entry(name("a")).or_insert_with(Default::default));
    assert_eq!(map.len(), 1);
    assert_eq!(map.get(&name("a")), Some(Default::default()));
    assert_eq!(map.get(&name("b")), None);
}

#[test]
fn equality_and_hash_see_contents_not_only_names() {
    use std::collections::hash_map::DefaultHasher;
    let hash = |m: &PackedMap<Plain>| {
        let mut h = DefaultHasher::new();
        m.hash(&mut h);
        h.finish()
    };
    let mut a = PackedMap::<Plain>::default();
    a.entry(name("a")).or_insert_with(Default::default).1.token = Token(1);
    let mut b = a.clone();
    assert!(a == b);
    assert_eq!(hash(&a), hash(&b));
    b.entry(name("a")).or_insert_with(Default::default).1.token = Token(2);
    assert!(a != b);
    assert_ne!(hash(&a), hash(&b));
}
