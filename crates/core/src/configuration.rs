//! Who the members are, and since when: a member list, or two during a
//! change of members, numbered by an epoch that only rises
//! (docs/membership.md, "Configurations and epochs").
//!
//! Every peer message is stamped with its sender's configuration (its
//! [`Stamp`]). A node answers a message of another stamp with its own
//! configuration and nothing else, and the node that is behind adopts the
//! later one, durably, before it acts under it. So once a majority of the
//! old members has moved on, no round of the old epoch can gather a
//! quorum: what a change's rescan carries cannot be overtaken behind its
//! back.
//!
//! The stamp is the epoch and a digest of the member lists: two different
//! configurations of one epoch (two changes begun at once on two nodes)
//! never pass for each other. A node keeps the first of them it adopted,
//! so at most one of them reaches a majority of the old members, and only
//! that one goes on (`change.rs`).

use crate::ballot::NodeId;
use crate::quorum::Quorums;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The number of a configuration. A cluster starts at [`Epoch::FIRST`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl Epoch {
    /// A cluster's first configuration, and that of every store written
    /// before configurations were recorded.
    pub const FIRST: Epoch = Epoch(1);
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

/// What every peer message is stamped with: its sender's configuration,
/// in short. Equal stamps are equal configurations, but for a digest
/// collision, which two lists of at most seven small ids make unlikely
/// only by chance, never by design.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub epoch: Epoch,
    pub digest: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Configuration {
    pub epoch: Epoch,
    pub members: Vec<NodeId>,
    /// During a change, the list being moved to: quorums then need a
    /// majority of `members` and of this list at once. Empty otherwise.
    pub joining: Vec<NodeId>,
    /// Where to reach members, as the operator gave them: opaque to the
    /// core and not part of the stamp, carried so that a node learns how
    /// to dial a member it learns of. Empty where nothing dials (the
    /// simulator, the model).
    pub addresses: BTreeMap<NodeId, String>,
}

/// Why a configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigurationError {
    #[error("a cluster has 1 to 7 members, not {0}")]
    MemberCount(usize),
    #[error("node {0} is listed twice among the members")]
    DuplicateMember(NodeId),
    #[error("epochs start at 1, and 0 marks none")]
    ZeroEpoch,
}

impl Configuration {
    /// A cluster's first configuration: `members`, with no change under way.
    pub fn first(members: Vec<NodeId>) -> Configuration {
        Configuration {
            epoch: Epoch::FIRST,
            members,
            joining: Vec::new(),
            addresses: BTreeMap::new(),
        }
    }

    /// A first configuration of the members `addresses` names, at those
    /// addresses.
    pub fn first_at(addresses: BTreeMap<NodeId, String>) -> Configuration {
        let members = addresses.keys().copied().collect();
        Configuration {
            addresses,
            ..Configuration::first(members)
        }
    }

    pub fn check(&self) -> Result<(), ConfigurationError> {
        if self.epoch.0 == 0 {
            return Err(ConfigurationError::ZeroEpoch);
        }
        if self.members.is_empty() {
            return Err(ConfigurationError::MemberCount(0));
        }
        for list in [&self.members, &self.joining] {
            if list.len() > 7 {
                return Err(ConfigurationError::MemberCount(list.len()));
            }
            if let Some(dup) = list
                .iter()
                .find(|m| list.iter().filter(|n| n == m).count() > 1)
            {
                return Err(ConfigurationError::DuplicateMember(*dup));
            }
        }
        Ok(())
    }

    /// The sets of members that decide under this configuration.
    pub fn quorums(&self) -> Quorums {
        if self.joining.is_empty() {
            Quorums::majority(&self.members)
        } else {
            Quorums::joint(&self.members, &self.joining)
        }
    }

    /// The stamp of this configuration: the same on every node, whatever
    /// the order its lists were given in.
    pub fn stamp(&self) -> Stamp {
        // FNV-1a: fixed, so that every build and node computes the same.
        let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |word: u64| {
            for byte in word.to_le_bytes() {
                digest ^= u64::from(byte);
                digest = digest.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(self.epoch.0);
        for list in [&self.members, &self.joining] {
            let mut sorted = list.clone();
            sorted.sort_unstable();
            eat(sorted.len() as u64);
            for m in sorted {
                eat(u64::from(m.0));
            }
        }
        // Not the addresses: each node's first configuration has those its
        // own flags give, which may name a member differently (a host name
        // here, an address there, a forwarder), and the members are the
        // same members.
        Stamp {
            epoch: self.epoch,
            digest,
        }
    }

    /// The joint configuration a change of members to `target` goes
    /// through: these members and `target`, at the next epoch
    /// (`change.rs`). Every node that begins the same change from the
    /// same configuration makes the same one.
    /// `addresses` are those of members new to the cluster (or moved).
    pub fn joint_to(
        &self,
        target: Vec<NodeId>,
        addresses: &BTreeMap<NodeId, String>,
    ) -> Configuration {
        let mut known = self.addresses.clone();
        known.extend(addresses.iter().map(|(m, a)| (*m, a.clone())));
        known.retain(|m, _| self.members.contains(m) || target.contains(m));
        Configuration {
            epoch: Epoch(self.epoch.0 + 1),
            members: self.members.clone(),
            joining: target,
            addresses: known,
        }
    }

    /// The configuration a change ends in: the joining members alone, at
    /// the next epoch.
    pub fn completed(&self) -> Configuration {
        Configuration {
            epoch: Epoch(self.epoch.0 + 1),
            members: self.joining.clone(),
            joining: Vec::new(),
            addresses: self
                .addresses
                .iter()
                .filter(|(m, _)| self.joining.contains(m))
                .map(|(m, a)| (*m, a.clone()))
                .collect(),
        }
    }

    /// Whether this configuration is `target` alone, no change under way.
    pub fn is_settled_on(&self, target: &[NodeId]) -> bool {
        self.joining.is_empty() && same_members(&self.members, target)
    }

    /// Whether `node` is in either list.
    pub fn includes(&self, node: NodeId) -> bool {
        self.members.contains(&node) || self.joining.contains(&node)
    }
}

/// Whether two member lists hold the same members, in any order.
pub fn same_members(a: &[NodeId], b: &[NodeId]) -> bool {
    let sorted = |list: &[NodeId]| {
        let mut list = list.to_vec();
        list.sort_unstable();
        list
    };
    sorted(a) == sorted(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u16]) -> Vec<NodeId> {
        list.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn a_first_configuration_is_epoch_one_with_plain_majorities() {
        let c = Configuration::first(ids(&[1, 2, 3]));
        assert_eq!(c.epoch, Epoch::FIRST);
        assert_eq!(c.check(), Ok(()));
        assert!(c.quorums().is_quorum(|m| m != NodeId(3)));
        assert!(!c.includes(NodeId(4)));
    }

    #[test]
    fn a_joint_configuration_needs_a_majority_of_both_lists() {
        let c = Configuration {
            epoch: Epoch(2),
            members: ids(&[1, 2, 3]),
            joining: ids(&[2, 3, 4]),
            addresses: BTreeMap::new(),
        };
        assert!(c.includes(NodeId(4)));
        // {1, 2}: a majority of the old list only.
        assert!(!c.quorums().is_quorum(|m| m == NodeId(1) || m == NodeId(2)));
        assert!(c.quorums().is_quorum(|m| m == NodeId(2) || m == NodeId(3)));
    }

    #[test]
    fn stamps_tell_configurations_of_one_epoch_apart_but_not_the_order_of_a_list() {
        let joint = |joining: &[u16]| Configuration {
            epoch: Epoch(2),
            members: ids(&[1, 2, 3]),
            joining: ids(joining),
            addresses: BTreeMap::new(),
        };
        assert_ne!(joint(&[1, 2, 4]).stamp(), joint(&[1, 2, 5]).stamp());
        assert_eq!(joint(&[1, 2, 4]).stamp(), joint(&[4, 2, 1]).stamp());
        // The lists are told apart, not only their union.
        let plain = Configuration::first(ids(&[1, 2, 3, 4]));
        let split = Configuration {
            epoch: Epoch::FIRST,
            members: ids(&[1, 2]),
            joining: ids(&[3, 4]),
            addresses: BTreeMap::new(),
        };
        assert_ne!(plain.stamp(), split.stamp());
    }

    #[test]
    fn a_change_carries_the_addresses_of_the_members_it_keeps_or_adds() {
        let at = |list: &[(u16, &str)]| -> BTreeMap<NodeId, String> {
            list.iter()
                .map(|&(i, a)| (NodeId(i), a.to_string()))
                .collect()
        };
        let old = Configuration::first_at(at(&[(1, "a:1"), (2, "b:1"), (3, "c:1")]));
        assert_eq!(old.members, ids(&[1, 2, 3]));
        let joint = old.joint_to(ids(&[1, 2, 4]), &at(&[(4, "d:1")]));
        assert_eq!(joint.addresses.len(), 4, "{joint:?}");
        let done = joint.completed();
        assert_eq!(done.addresses, at(&[(1, "a:1"), (2, "b:1"), (4, "d:1")]));
        // Nodes that name a member by other addresses agree all the same.
        let named = Configuration::first_at(at(&[(1, "a:2"), (2, "b:1"), (3, "c:1")]));
        assert_eq!(old.stamp(), named.stamp());
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let mut c = Configuration::first(ids(&[1, 2, 2]));
        assert_eq!(
            c.check(),
            Err(ConfigurationError::DuplicateMember(NodeId(2)))
        );
        c.members = Vec::new();
        assert_eq!(c.check(), Err(ConfigurationError::MemberCount(0)));
        c = Configuration::first(ids(&[1, 2, 3]));
        c.epoch = Epoch(0);
        assert_eq!(c.check(), Err(ConfigurationError::ZeroEpoch));
        c = Configuration::first(ids(&[1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(c.check(), Err(ConfigurationError::MemberCount(8)));
    }
}
