//! Ballots: the numbers that order Paxos proposals for one name.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node of the cluster. Ids are small and configured by the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u16);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A ballot `(counter, node, incarnation)`, ordered lexicographically.
///
/// Paxos needs every ballot used for a name to be proposed with one value at
/// most. `node` separates proposers; `incarnation` (a per-node number that
/// storage bumps durably at every start) separates the lives of one node, so
/// a proposer that crashed and forgot which counters it used can never reuse
/// one; within one life the proposer never hands out a counter twice.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    pub counter: u64,
    pub node: u16,
    pub incarnation: u32,
}

impl Ballot {
    /// Below every ballot a proposer uses; the promise of an acceptor that
    /// has promised nothing.
    pub const ZERO: Ballot = Ballot {
        counter: 0,
        node: 0,
        incarnation: 0,
    };

    /// The ballot that an acceptor promises along with accepting `self`: the
    /// same proposer's next one. This piggybacked promise is what lets the
    /// proposer that just won skip phase 1 next time (the fast path).
    pub fn successor(self) -> Ballot {
        Ballot {
            counter: self.counter.saturating_add(1),
            ..self
        }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.counter, self.node, self.incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(counter: u64, node: u16, incarnation: u32) -> Ballot {
        Ballot {
            counter,
            node,
            incarnation,
        }
    }

    #[test]
    fn ballots_order_by_counter_then_node_then_incarnation() {
        assert!(b(2, 1, 1) > b(1, 3, 9));
        assert!(b(1, 2, 1) > b(1, 1, 9));
        assert!(b(1, 1, 2) > b(1, 1, 1));
        assert!(b(1, 1, 1) > Ballot::ZERO);
    }

    #[test]
    fn successor_is_the_same_proposers_next_ballot() {
        let s = b(7, 2, 3).successor();
        assert_eq!(s, b(8, 2, 3));
        assert!(
            s > b(7, 3, 99),
            "a successor outranks every ballot of the same counter"
        );
    }
}
