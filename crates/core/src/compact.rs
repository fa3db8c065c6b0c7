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
use crate::lease::{self, LeaseValue, Rules, Token};
use crate::message::{Message, Report};
use crate::proposer::{Effects, To};
use crate::quorum::Quorums;
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

/// Why a name is being settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Purpose {
    /// Every member accepts the dead value, then deletes it.
    Compact,
    /// A quorum of a configuration in change accepts the name's value
    /// again: the rescan of docs/membership.md, which puts every value on
    /// a majority of the new member list.
    Carry,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Settling {
    ballot: Ballot,
    phase: Phase,
    until: Instant,
    purpose: Purpose,
}

/// A rescan: passes over every stored name, each carried at the current
/// quorums, until a pass carries every name it meets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Rescan {
    /// The last name the current pass looked at; `None` at a pass's start.
    cursor: Option<LeaseName>,
    /// The pass looked at its last name; it ends when its carries do.
    scanned_all: bool,
    /// Carries of this pass that failed: the pass is repeated.
    failed: u64,
    /// Passes in a row that had a carry fail: each waits longer before
    /// the next, so that a name in constant use is not pre-empted by a
    /// carry every few milliseconds.
    failed_passes: u32,
    next_step: Instant,
    /// This node's token floor, which covers every name the members
    /// compacted (compaction needs every member), and the members that
    /// hold it durably: the rescan ends once a quorum does.
    floor: Token,
    floor_held: BTreeSet<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Compactor {
    config: Compaction,
    node: NodeId,
    quorums: Quorums,
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
    rescan: Option<Rescan>,
    /// Names carried by rescans in this life.
    carried: u64,
}

impl Compactor {
    pub(crate) fn new(
        config: Compaction,
        node: NodeId,
        quorums: Quorums,
        rules: Rules,
        now: Instant,
    ) -> Compactor {
        Compactor {
            config,
            node,
            quorums,
            rules,
            next_scan: config.idle_after.map(|_| now.plus(config.scan_every)),
            cursor: None,
            settling: BTreeMap::new(),
            seen: Ballot::ZERO,
            dead_this_scan: 0,
            dead_last_scan: 0,
            rescan: None,
            carried: 0,
        }
    }

    pub(crate) fn next_timer(&self) -> Option<Instant> {
        let settle = self.settling.values().map(|s| s.until).min();
        let rescan = self.rescan.as_ref().map(|r| r.next_step);
        [self.next_scan, settle, rescan].into_iter().flatten().min()
    }

    /// Start a rescan (a running one starts over), carrying `floor`,
    /// this node's token floor, with the names.
    pub(crate) fn start_rescan(&mut self, now: Instant, floor: Token, out: &mut Effects) {
        self.rescan = Some(Rescan {
            cursor: None,
            scanned_all: false,
            failed: 0,
            failed_passes: 0,
            next_step: now,
            floor,
            floor_held: BTreeSet::new(),
        });
        out.sends
            .push((To::All, Message::RaiseFloor { token: floor }));
    }

    /// `from` holds `token` as its token floor, durably.
    pub(crate) fn on_floor_raised(&mut self, from: NodeId, token: Token) {
        if let Some(rescan) = self.rescan.as_mut() {
            if token >= rescan.floor {
                rescan.floor_held.insert(from);
            }
        }
    }

    /// Whether a rescan is running.
    pub(crate) fn rescanning(&self) -> bool {
        self.rescan.is_some()
    }

    /// Names carried by rescans in this life.
    pub(crate) fn carried(&self) -> u64 {
        self.carried
    }

    /// Whether a rescan step is due, and if so, where it starts and how
    /// many names it takes: no more than may be settled at once. A pass
    /// that looked at every name ends once its carries have: done when
    /// none failed, else it starts over.
    pub(crate) fn rescan_due(
        &mut self,
        now: Instant,
        out: &mut Effects,
    ) -> Option<(Option<LeaseName>, usize)> {
        let carrying = self
            .settling
            .values()
            .filter(|s| s.purpose == Purpose::Carry)
            .count();
        let room = self.config.max_settling.saturating_sub(self.settling.len());
        let rescan = self.rescan.as_mut()?;
        if rescan.next_step > now {
            return None;
        }
        if rescan.scanned_all {
            if carrying > 0 {
                rescan.next_step = now.plus(STEP_PAUSE);
                return None;
            }
            let floor_held = &rescan.floor_held;
            let floor_carried = self.quorums.is_quorum(|m| floor_held.contains(&m));
            if rescan.failed == 0 && floor_carried {
                self.rescan = None;
                return None;
            }
            if !floor_carried {
                // The floor again, to the members that have not said
                // they hold it, once a settle's time.
                let raise = Message::RaiseFloor {
                    token: rescan.floor,
                };
                for &member in self.quorums.members() {
                    if !rescan.floor_held.contains(&member) {
                        out.sends.push((To::Node(member), raise.clone()));
                    }
                }
            }
            if rescan.failed == 0 {
                // Every name is carried: only the floor is still out.
                rescan.next_step = now.plus(self.config.settle_timeout);
                return None;
            }
            // Again, for the names whose carry failed, after a pause
            // that doubles with each failed pass, up to a settle's time.
            rescan.cursor = None;
            rescan.scanned_all = false;
            rescan.failed = 0;
            rescan.failed_passes = rescan.failed_passes.saturating_add(1);
            let doubled = STEP_PAUSE.0 << rescan.failed_passes.min(8);
            // Staggered by id: nodes that rescan at once (every old member,
            // when a change asks them together) carry the same names, and
            // in step they would pre-empt each other's carries for ever.
            let stagger = 4 + u64::from(self.node.0 % 4);
            let pause = Micros(doubled.min(self.config.settle_timeout.0) * stagger / 4);
            rescan.next_step = now.plus(pause);
            return None;
        }
        if room == 0 {
            rescan.next_step = now.plus(STEP_PAUSE);
            return None;
        }
        Some((rescan.cursor.clone(), room.min(self.config.scan_batch)))
    }

    /// A rescan step looked at `seen` names of the `asked`, the last of
    /// them `last`.
    pub(crate) fn rescanned(
        &mut self,
        now: Instant,
        asked: usize,
        seen: usize,
        last: Option<LeaseName>,
    ) {
        let Some(rescan) = self.rescan.as_mut() else {
            return;
        };
        rescan.scanned_all = seen < asked || last.is_none();
        rescan.cursor = last;
        rescan.next_step = now.plus(STEP_PAUSE);
    }

    /// Carry `name` at `ballot`; a name already being settled counts as a
    /// failure of this pass, to be carried by the next.
    pub(crate) fn start_carry(
        &mut self,
        now: Instant,
        name: LeaseName,
        ballot: Ballot,
        out: &mut Effects,
    ) {
        if !self.begin(now, name, ballot, Purpose::Carry, out) {
            self.carry_failed();
        }
    }

    fn carry_failed(&mut self) {
        if let Some(rescan) = self.rescan.as_mut() {
            rescan.failed += 1;
        }
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
        self.begin(now, name, ballot, Purpose::Compact, out);
    }

    /// Start settling `name`, unless it is being settled already.
    fn begin(
        &mut self,
        now: Instant,
        name: LeaseName,
        ballot: Ballot,
        purpose: Purpose,
        out: &mut Effects,
    ) -> bool {
        if self.settling.contains_key(&name) {
            return false;
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
            purpose,
        };
        self.settling.insert(name, settling);
        true
    }

    /// Whether `message` answers one of this compactor's settles.
    pub(crate) fn owns(&self, message: &Message) -> bool {
        let ballot = match message {
            Message::Promise { ballot, .. }
            | Message::Accepted { ballot, .. }
            | Message::Nack { ballot, .. } => *ballot,
            _ => return false,
        };
        message
            .name()
            .and_then(|name| self.settling.get(name))
            .is_some_and(|s| s.ballot == ballot)
    }

    /// An answer to a settle (`owns` said so).
    pub(crate) fn on_reply(&mut self, from: NodeId, message: Message, out: &mut Effects) {
        let Some(name) = message.name().cloned() else {
            return;
        };
        let Some(settling) = self.settling.get_mut(&name) else {
            return;
        };
        let (ballot, purpose) = (settling.ballot, settling.purpose);
        let enough = |has: &dyn Fn(NodeId) -> bool| match purpose {
            Purpose::Compact => settled(&self.quorums, &self.rules, has),
            Purpose::Carry => self.quorums.is_quorum(has),
        };
        match (message, &mut settling.phase) {
            (Message::Nack { promised, .. }, _) => {
                // Someone else is writing (the name is in use after all),
                // or a member's floor is above this ballot.
                self.seen = self.seen.max(promised);
                self.settling.remove(&name);
                if purpose == Purpose::Carry {
                    self.carry_failed();
                }
            }
            (Message::Promise { accepted, .. }, Phase::Preparing { promises }) => {
                promises.insert(from, accepted);
                if !enough(&|m| promises.contains_key(&m)) {
                    return;
                }
                let (idle_after, rules) = (self.config.idle_after, self.rules);
                let rank = self.quorums.age_rank();
                let learnt = crate::proposer::highest_reported(promises, &rules, rank);
                // A carry takes any stored value; with nothing stored
                // (compacted everywhere it asked) it has nothing to carry.
                let carry = purpose == Purpose::Carry;
                let wanted =
                    learnt.filter(|l| carry || is_dead(idle_after, &rules, &l.value, l.age));
                let Some(learnt) = wanted else {
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
                if !enough(&|m| all.contains(&m)) {
                    return;
                }
                self.settling.remove(&name);
                match purpose {
                    Purpose::Compact => {
                        out.sends.push((To::All, Message::Compact { name, ballot }))
                    }
                    Purpose::Carry => self.carried += 1,
                }
            }
            _ => {} // A duplicate, or late.
        }
    }

    /// The members changed: settles counted answers under the old
    /// quorums, so they are given up (a carry among them fails its pass,
    /// which starts over), and the next ones count under `quorums`.
    pub(crate) fn reconfigure(&mut self, quorums: Quorums) {
        self.quorums = quorums;
        self.give_up(|_| false);
    }

    /// Give up the settles whose time ran out: a member is down or slow.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.give_up(|s| s.until > now);
    }

    /// Give up every settle but those to `keep`; a carry given up fails
    /// its rescan's pass.
    fn give_up(&mut self, keep: impl Fn(&Settling) -> bool) {
        let mut carries_lost = 0;
        self.settling.retain(|_, s| {
            let kept = keep(s);
            carries_lost += u64::from(!kept && s.purpose == Purpose::Carry);
            kept
        });
        if let Some(rescan) = self.rescan.as_mut() {
            rescan.failed += carries_lost;
        }
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

/// Whether the members for which `has` holds are enough to settle: every
/// member.
fn settled(quorums: &Quorums, rules: &Rules, has: impl Fn(NodeId) -> bool) -> bool {
    if rules.bugs.has(crate::bugs::Bug::CompactOnMajority) {
        quorums.is_quorum(has)
    } else {
        quorums.is_everyone(has)
    }
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
