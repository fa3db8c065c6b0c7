//! Compaction: deleting the registers of names nobody uses any more.
//!
//! A name used once (a lock named by a job id) would otherwise cost a
//! record on every node for ever. The rule (docs/storage.md, "Space"):
//!
//! 1. **Settle.** The node that wrote a name's value, finding it free,
//!    with nobody waiting, and idle for `idle_after`, prepares a fresh
//!    ballot `b` and needs a promise from *every* member. If the value the
//!    promises show is still free, idle and unqueued, it proposes that same
//!    value at `b` and waits until *every* member has accepted it durably.
//! 2. **Compact.** It sends `Compact{name, b}` to every member. Each
//!    deletes the register only if it still holds the value accepted at
//!    `b`, folding its promise into the promise floor and its token into
//!    the token floor (`acceptor.rs`).
//!
//! Every member, not a majority: a member that did not accept `b` could
//! hold an older value (a held lease at an older token) that, in a quorum
//! with members that deleted, would be the highest reported. With every
//! member at `b` before any deletes, each member either still reports `b`
//! or reports nothing with a token floor at or above `b`'s token. So a
//! member that is down stops compaction, and the names stay.
//!
//! Only the writer of the last value settles it, so nodes do not duel
//! over the same names, and a settle that fails for any reason (a nack, a
//! member down, the name used again) is dropped: the next scan tries again.

use crate::ballot::{Ballot, NodeId};
use crate::input::LeaseName;
use crate::lease::{self, LeaseValue, Rules};
use crate::message::{Message, Report};
use crate::proposer::{Effects, To};
use crate::time::{Instant, Micros};
use std::collections::{BTreeMap, BTreeSet};

/// When and how fast names are compacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Compaction {
    /// How long a name must have been free, with nobody waiting, before it
    /// is deleted (the lease clock's age, judged as a quorum judges it).
    /// `None`: never.
    pub idle_after: Option<Micros>,
    /// How often a scan over the stored names starts.
    pub scan_every: Micros,
    /// Names looked at in one step of a scan.
    pub scan_batch: usize,
    /// Names being settled at once.
    pub max_settling: usize,
    /// How long a settle waits for every member before it gives up.
    pub settle_timeout: Micros,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            idle_after: None,
            scan_every: Micros::from_millis(10_000),
            scan_batch: 1_024,
            max_settling: 64,
            settle_timeout: Micros::from_millis(2_000),
        }
    }
}

impl Compaction {
    /// Names dead after `idle_after`, scanned for every hundredth of that
    /// (at least every second, at most every ten minutes): a name goes at
    /// most about 1 % later than it could, and a large store is not
    /// scanned again and again for names that cannot have died since.
    pub fn after(idle_after: Micros) -> Compaction {
        let scan_every = Micros(idle_after.0 / 100)
            .clamp(Micros::from_millis(1_000), Micros::from_millis(600_000));
        Compaction {
            idle_after: Some(idle_after),
            scan_every,
            ..Compaction::default()
        }
    }
}

/// The pause between the steps of one scan, so that a large store is
/// scanned in slices between other work.
const STEP_PAUSE: Micros = Micros::from_millis(10);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Preparing {
        promises: BTreeMap<NodeId, Option<Report>>,
    },
    Accepting {
        /// Boxed: the one large variant, and rare.
        accept: Box<Message>,
        durable: BTreeSet<NodeId>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Settling {
    ballot: Ballot,
    phase: Phase,
    until: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Compactor {
    config: Compaction,
    node: NodeId,
    members: Vec<NodeId>,
    rules: Rules,
    /// When the next step of a scan is due (`None`: compaction is off).
    next_scan: Option<Instant>,
    /// The last name the current scan looked at.
    cursor: Option<LeaseName>,
    settling: BTreeMap<LeaseName, Settling>,
    /// The highest promise a nack showed: the next settle starts above it,
    /// or a member whose restart raised its floor would refuse them all.
    seen: Ballot,
    /// Dead names (whoever wrote them) seen so far in this scan, and in
    /// the last whole scan.
    dead_this_scan: u64,
    dead_last_scan: u64,
}

impl Compactor {
    pub(crate) fn new(
        config: Compaction,
        node: NodeId,
        members: Vec<NodeId>,
        rules: Rules,
        now: Instant,
    ) -> Compactor {
        Compactor {
            config,
            node,
            members,
            rules,
            next_scan: config.idle_after.map(|_| now.plus(config.scan_every)),
            cursor: None,
            settling: BTreeMap::new(),
            seen: Ballot::ZERO,
            dead_this_scan: 0,
            dead_last_scan: 0,
        }
    }

    pub(crate) fn next_timer(&self) -> Option<Instant> {
        let settle = self.settling.values().map(|s| s.until).min();
        [self.next_scan, settle].into_iter().flatten().min()
    }

    /// Whether `report` shows a value this node may settle: its own write,
    /// free, nobody queued, idle long enough.
    /// Counts dead names for [`Compactor::dead_names`] as the scan goes.
    pub(crate) fn wants(&mut self, report: &Report) -> bool {
        if !is_dead(
            self.config.idle_after,
            &self.rules,
            &report.value,
            report.age,
        ) {
            return false;
        }
        self.dead_this_scan += 1;
        report.ballot.node == self.node.0
    }

    /// Names the last whole scan found dead but still stored: compaction
    /// has not reached them yet, or a member is down.
    pub(crate) fn dead_names(&self) -> u64 {
        self.dead_last_scan
    }

    /// Whether a scan step is due, and if so, where it starts and how many
    /// names it takes (the node runs it against its acceptor).
    pub(crate) fn scan_due(&self, now: Instant) -> Option<(Option<&LeaseName>, usize)> {
        let due = self.next_scan.is_some_and(|at| at <= now);
        let room = self.config.max_settling.saturating_sub(self.settling.len());
        (due && room > 0).then_some((self.cursor.as_ref(), self.config.scan_batch))
    }

    /// A scan step looked at `seen` names, the last of them `last`.
    pub(crate) fn scanned(&mut self, now: Instant, seen: usize, last: Option<LeaseName>) {
        if seen < self.config.scan_batch || last.is_none() {
            self.cursor = None;
            self.dead_last_scan = std::mem::take(&mut self.dead_this_scan);
            self.next_scan = Some(now.plus(self.config.scan_every));
        } else {
            self.cursor = last;
            self.next_scan = Some(now.plus(STEP_PAUSE));
        }
    }

    /// The highest promise a settle was refused for.
    pub(crate) fn seen(&self) -> Ballot {
        self.seen
    }

    /// Whether more names may be settled now.
    pub(crate) fn has_room(&self) -> bool {
        self.settling.len() < self.config.max_settling
    }

    /// Start settling `name` at `ballot`, which no proposer of this node
    /// uses for anything else.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        name: LeaseName,
        ballot: Ballot,
        out: &mut Effects,
    ) {
        if self.settling.contains_key(&name) {
            return;
        }
        out.sends.push((
            To::All,
            Message::Prepare {
                name: name.clone(),
                ballot,
            },
        ));
        let settling = Settling {
            ballot,
            phase: Phase::Preparing {
                promises: BTreeMap::new(),
            },
            until: now.plus(self.config.settle_timeout),
        };
        self.settling.insert(name, settling);
    }

    /// Whether `message` answers one of this compactor's settles.
    pub(crate) fn owns(&self, message: &Message) -> bool {
        let ballot = match message {
            Message::Promise { ballot, .. }
            | Message::Accepted { ballot, .. }
            | Message::Nack { ballot, .. } => *ballot,
            _ => return false,
        };
        self.settling
            .get(message.name())
            .is_some_and(|s| s.ballot == ballot)
    }

    /// An answer to a settle (`owns` said so).
    pub(crate) fn on_reply(&mut self, from: NodeId, message: Message, out: &mut Effects) {
        let name = message.name().clone();
        let quorum = self.members.len() / 2 + 1;
        let needed = self.needed(quorum);
        let Some(settling) = self.settling.get_mut(&name) else {
            return;
        };
        let ballot = settling.ballot;
        match (message, &mut settling.phase) {
            (Message::Nack { promised, .. }, _) => {
                // Someone else is writing (the name is in use after all),
                // or a member's floor is above this ballot.
                self.seen = self.seen.max(promised);
                self.settling.remove(&name);
            }
            (Message::Promise { accepted, .. }, Phase::Preparing { promises }) => {
                promises.insert(from, accepted);
                if promises.len() < needed {
                    return;
                }
                let (idle_after, rules) = (self.config.idle_after, self.rules);
                let learnt = crate::proposer::highest_reported(promises, &rules, quorum);
                let Some(learnt) = learnt.filter(|l| is_dead(idle_after, &rules, &l.value, l.age))
                else {
                    self.settling.remove(&name);
                    return;
                };
                // The same value, its clock going on: accepting it changes
                // nothing but where every member stands.
                let accept = Message::Accept {
                    name: name.clone(),
                    ballot,
                    value: learnt.value,
                    age: learnt.age,
                    origin: learnt.origin,
                };
                out.sends.push((To::All, accept.clone()));
                settling.phase = Phase::Accepting {
                    accept: Box::new(accept),
                    durable: BTreeSet::new(),
                };
            }
            (
                Message::Accepted { durable, .. },
                Phase::Accepting {
                    accept,
                    durable: all,
                },
            ) => {
                if !durable {
                    // A lazy acceptance: a repeat is answered only once
                    // the record has landed.
                    out.sends.push((To::Node(from), (**accept).clone()));
                    return;
                }
                all.insert(from);
                if all.len() < needed {
                    return;
                }
                self.settling.remove(&name);
                out.sends.push((To::All, Message::Compact { name, ballot }));
            }
            _ => {} // A duplicate, or late.
        }
    }

    /// Answers a settle needs: every member's.
    fn needed(&self, quorum: usize) -> usize {
        if self.rules.bugs.has(crate::bugs::Bug::CompactOnMajority) {
            quorum
        } else {
            self.members.len()
        }
    }

    /// Give up the settles whose time ran out: a member is down or slow.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.settling.retain(|_, s| s.until > now);
    }
}

/// Free, nobody queued, and idle for at least `idle_after` (never when
/// that is `None`).
fn is_dead(idle_after: Option<Micros>, rules: &Rules, value: &LeaseValue, age: Micros) -> bool {
    let Some(idle_after) = idle_after else {
        return false;
    };
    value.waiters.is_empty()
        && age >= idle_after
        && matches!(
            lease::view(value, age, rules),
            lease::LeaseView::Free { .. }
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_runs_every_hundredth_of_the_idle_time_within_bounds() {
        let every = |ms| Compaction::after(Micros::from_millis(ms)).scan_every;
        assert_eq!(every(6_000), Micros::from_millis(1_000));
        assert_eq!(every(300_000), Micros::from_millis(3_000));
        assert_eq!(every(90_000_000), Micros::from_millis(600_000));
        assert_eq!(
            Compaction::after(Micros::from_millis(6_000)).idle_after,
            Some(Micros::from_millis(6_000))
        );
    }
}
