//! A change of members, driven by one node, the coordinator, in two
//! epochs (docs/membership.md):
//!
//! 1. It adopts `e+1 = (old, new)`, the joint configuration, and tells
//!    every member of both lists, until a majority of `old` says it has
//!    recorded it. From then on the change is **in force**: a majority of
//!    `old` refuses every message of epoch `e`, so no round of the old
//!    quorums can choose anything any more.
//! 2. It asks every member of `old` to rescan (`Node::start_rescan`),
//!    until a majority of `old` says its rescan ended: every value chosen
//!    under `old` was on a majority of `old`, so one of them carried it
//!    onto a joint quorum, and with it onto a majority of `new`.
//! 3. It adopts `e+2 = (new)` and tells every member of both lists.
//!
//! Every step may be repeated, so a coordinator that crashes, or another
//! node asked to make the same change, resumes from the joint
//! configuration it finds recorded.
//!
//! Changes begun at once on several nodes make several joint
//! configurations of one epoch, and a node keeps the first it adopts. If
//! the coordinator learns that none of them can reach a majority of `old`
//! any more (each is held by too few, counting every member not heard
//! from as a possible holder), none ever came into force, so no round
//! chose anything under any of them: it moves on to a joint configuration
//! of the next epoch with the same `old` (docs/membership.md, "Two changes
//! at once").

use crate::ballot::NodeId;
use crate::configuration::Stamp;
use crate::quorum::Quorums;
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

/// Where a change stands on its coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeStep {
    /// The joint configuration is adopted here; a majority of the old
    /// members has not yet said it recorded it.
    Recording,
    /// In force; a majority of the old members has not yet rescanned.
    Rescanning,
}

/// Why a change of members cannot start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    #[error(
        "a change to members {under_way:?} is under way: finish it (ask for the same members again) before another"
    )]
    UnderWay { under_way: Vec<NodeId> },
    #[error(transparent)]
    Configuration(#[from] crate::configuration::ConfigurationError),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Change {
    /// A majority of these must answer each step.
    old: Quorums,
    /// Everyone to tell: the members of both lists.
    everyone: Vec<NodeId>,
    step: ChangeStep,
    /// Who answered this step, the coordinator included.
    answered: BTreeSet<NodeId>,
    /// Members of `old` known to hold another configuration of this
    /// change's epoch: they never record this one.
    others: BTreeMap<NodeId, Stamp>,
    /// Since when this change is known never to come into force.
    pub(crate) stuck_since: Option<Instant>,
    /// When to ask again those that have not answered.
    pub(crate) ask_at: Instant,
}

impl Change {
    pub(crate) fn new(me: NodeId, old: &[NodeId], everyone: &[NodeId], now: Instant) -> Change {
        Change {
            old: Quorums::majority(old),
            everyone: everyone.to_vec(),
            step: ChangeStep::Recording,
            answered: [me].into(),
            others: BTreeMap::new(),
            stuck_since: None,
            ask_at: now,
        }
    }

    pub(crate) fn step(&self) -> ChangeStep {
        self.step
    }

    /// Whom this step still waits for: for recording, every member of both
    /// lists (the joining ones must learn the configuration too), for the
    /// rescan, the old members.
    pub(crate) fn unanswered(&self) -> Vec<NodeId> {
        let asked = match self.step {
            ChangeStep::Recording => &self.everyone,
            ChangeStep::Rescanning => self.old.members(),
        };
        asked
            .iter()
            .copied()
            .filter(|m| !self.answered.contains(m))
            .collect()
    }

    /// `from` answered `step`. Returns whether the step is now done: a
    /// majority of the old members answered it.
    pub(crate) fn answered(&mut self, from: NodeId, step: ChangeStep) -> bool {
        if step != self.step {
            return false; // Late, from a step already passed.
        }
        self.answered.insert(from);
        self.old.is_quorum(|m| self.answered.contains(&m))
    }

    /// `from` holds the configuration stamped `stamp`, another of this
    /// change's epoch. A node never swaps a configuration for another of
    /// the same epoch, so this stays true while the change waits.
    pub(crate) fn holds_other(&mut self, from: NodeId, stamp: Stamp) {
        if self.step == ChangeStep::Recording && self.old.contains(from) {
            self.others.insert(from, stamp);
        }
    }

    /// Whether no configuration of this epoch can come into force any
    /// more: neither this one nor any other known can gather a majority of
    /// `old`, even with every member not heard from.
    pub(crate) fn cannot_come_into_force(&self) -> bool {
        if self.step != ChangeStep::Recording {
            return false;
        }
        let unknown = |m: NodeId| !self.answered.contains(&m) && !self.others.contains_key(&m);
        let ours = self
            .old
            .is_quorum(|m| self.answered.contains(&m) || unknown(m));
        let theirs = self.others.values().any(|stamp| {
            self.old
                .is_quorum(|m| self.others.get(&m) == Some(stamp) || unknown(m))
        });
        !ours && !theirs
    }

    /// On to the rescan, which starts with nobody's answer.
    pub(crate) fn rescan(&mut self, now: Instant) {
        self.step = ChangeStep::Rescanning;
        self.answered.clear();
        self.ask_at = now;
    }

    pub(crate) fn everyone(&self) -> &[NodeId] {
        &self.everyone
    }
}
