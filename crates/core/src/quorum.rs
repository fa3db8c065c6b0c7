//! Which sets of members decide.
//!
//! Today that is any majority of the members. A configuration in change
//! (docs/membership.md) needs a majority of the old member list and a
//! majority of the new one at once, as Raft's joint consensus does, so
//! that every set that decides under either list, or under both, meets
//! every other. The rounds ask this type, never a count, whether a set of
//! answers decides.

use crate::ballot::NodeId;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Quorums {
    /// Each member list, sorted; a set decides when it holds a majority
    /// of every one of them.
    lists: Vec<Vec<NodeId>>,
    /// Every member of any list, sorted: whom rounds ask.
    members: Vec<NodeId>,
}

impl Quorums {
    /// Any majority of `members`.
    pub fn majority(members: &[NodeId]) -> Quorums {
        Quorums::of(vec![members.to_vec()])
    }

    /// A majority of `old` and a majority of `new`, both at once.
    pub fn joint(old: &[NodeId], new: &[NodeId]) -> Quorums {
        Quorums::of(vec![old.to_vec(), new.to_vec()])
    }

    fn of(mut lists: Vec<Vec<NodeId>>) -> Quorums {
        for list in &mut lists {
            list.sort_unstable();
            list.dedup();
            assert!(!list.is_empty(), "a member list is never empty");
        }
        let mut members: Vec<NodeId> = lists.iter().flatten().copied().collect();
        members.sort_unstable();
        members.dedup();
        Quorums { lists, members }
    }

    /// Every member, sorted by id.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.members.binary_search(&node).is_ok()
    }

    /// Whether the members for which `has` holds decide.
    pub fn is_quorum(&self, has: impl Fn(NodeId) -> bool) -> bool {
        self.lists.iter().all(|list| {
            let have = list.iter().filter(|m| has(**m)).count();
            have > list.len() / 2
        })
    }

    /// Whether every member is among those for which `has` holds.
    pub fn is_everyone(&self, has: impl Fn(NodeId) -> bool) -> bool {
        self.members.iter().all(|m| has(*m))
    }

    /// How many ages of one clock the age rule needs, and the rank of the
    /// one it takes: the largest majority of any list. With fewer bad
    /// clocks than that, one of the largest this many ages is a good
    /// node's (docs/safety.md, "One faulty clock", Rule 1). A later rank
    /// is never less safe: it gives a smaller age, and a lease that looks
    /// younger lasts longer, never shorter.
    pub fn age_rank(&self) -> usize {
        self.lists
            .iter()
            .map(|list| list.len() / 2 + 1)
            .max()
            .unwrap_or(1)
    }

    /// `first`, then as many of `rest` (in their order) as it takes to
    /// decide: the smallest set to ask when most answers agree.
    pub fn smallest_from(&self, first: NodeId, rest: &[NodeId]) -> Vec<NodeId> {
        let mut asked = vec![first];
        for node in rest {
            if self.is_quorum(|m| asked.contains(&m)) {
                break;
            }
            asked.push(*node);
        }
        asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u16]) -> Vec<NodeId> {
        list.iter().map(|i| NodeId(*i)).collect()
    }

    fn decides(q: &Quorums, set: &[u16]) -> bool {
        q.is_quorum(|m| set.contains(&m.0))
    }

    #[test]
    fn a_majority_of_three_is_two() {
        let q = Quorums::majority(&ids(&[3, 1, 2]));
        assert_eq!(q.members(), ids(&[1, 2, 3]).as_slice());
        assert!(decides(&q, &[1, 3]));
        assert!(!decides(&q, &[2]));
        assert!(!decides(&q, &[2, 9]), "a stranger counts for nothing");
        assert_eq!(q.age_rank(), 2);
    }

    #[test]
    fn a_joint_quorum_is_a_majority_of_each_list() {
        // Node 3 replaced by node 4: 1 and 2 decide alone, as they are a
        // majority of both lists; 1 and 4 are not a majority of the old.
        let q = Quorums::joint(&ids(&[1, 2, 3]), &ids(&[1, 2, 4]));
        assert_eq!(q.members(), ids(&[1, 2, 3, 4]).as_slice());
        assert!(decides(&q, &[1, 2]));
        assert!(!decides(&q, &[1, 4]));
        assert!(!decides(&q, &[1, 3]));
        assert!(decides(&q, &[2, 3, 4]));
        // Three to five: two of the old and three of the new.
        let grow = Quorums::joint(&ids(&[1, 2, 3]), &ids(&[1, 2, 3, 4, 5]));
        assert!(!decides(&grow, &[1, 2]));
        assert!(decides(&grow, &[1, 2, 4]));
        assert!(!decides(&grow, &[1, 4, 5]));
        assert_eq!(grow.age_rank(), 3);
    }

    #[test]
    fn every_two_quorums_meet() {
        let configs = [
            Quorums::majority(&ids(&[1, 2, 3])),
            Quorums::majority(&ids(&[1, 2, 3, 4, 5])),
            Quorums::joint(&ids(&[1, 2, 3]), &ids(&[1, 2, 4])),
            Quorums::joint(&ids(&[1, 2, 3]), &ids(&[1, 2, 3, 4, 5])),
            Quorums::joint(&ids(&[1, 2, 3, 4, 5]), &ids(&[1, 2, 3])),
        ];
        for q in &configs {
            let n = q.members().len();
            let sets: Vec<Vec<NodeId>> = (0u32..1 << n)
                .map(|bits| {
                    (0..n)
                        .filter(|i| bits & (1 << i) != 0)
                        .map(|i| q.members()[i])
                        .collect()
                })
                .filter(|s: &Vec<NodeId>| q.is_quorum(|m| s.contains(&m)))
                .collect();
            for a in &sets {
                for b in &sets {
                    assert!(a.iter().any(|m| b.contains(m)), "{a:?} and {b:?} in {q:?}");
                }
            }
        }
    }

    #[test]
    fn the_smallest_set_to_ask_decides() {
        let q = Quorums::majority(&ids(&[1, 2, 3, 4, 5]));
        assert_eq!(
            q.smallest_from(NodeId(1), &ids(&[4, 2, 3, 5])),
            ids(&[1, 4, 2])
        );
        let joint = Quorums::joint(&ids(&[1, 2, 3]), &ids(&[1, 2, 4]));
        assert_eq!(
            joint.smallest_from(NodeId(1), &ids(&[4, 3, 2])),
            ids(&[1, 4, 3])
        );
    }
}
