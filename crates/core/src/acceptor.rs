//! The acceptor: phase 1b and 2b of Paxos for every name this node stores.
//!
//! A state change that a reply depends on produces a [`Record`] that the node
//! must make durable before that reply leaves (see `node.rs`).
//!
//! # The promise horizon
//!
//! An acceptance is written per name, with its value. A promise is not: the
//! acceptor keeps one durable number, the horizon, above the counter of every
//! ballot it has promised in this life. After a restart, every ballot below
//! the old horizon counts as promised for every name (the floor), which
//! covers each forgotten promise: a proposer that is refused jumps above it.
//! So phase 1 costs no fsync; only a promise at or above the horizon raises
//! it first, by [`HORIZON_STEP`] so that this is rare (once per life, and
//! once more each time another node's restart lifts the cluster's counters).
//!
//! # Lazy acceptances
//!
//! An accept whose value differs from the one this acceptor holds only in
//! its write log (a renewal, or a value proposed again unchanged) is
//! acknowledged without waiting for its record: the record goes into the
//! same ordered stream, and a crash before it lands leaves the acceptor
//! with the earlier value, whose clock a restart starts again from boot.
//! Forgetting such an acceptance can only make a lease look younger
//! (docs/safety.md, "Forgetting is aging"). The promise of the successor
//! ballot that the acceptance makes is kept by the horizon instead, which
//! is raised first when it does not cover it.
//!
//! # Compacted names
//!
//! A register may be deleted once every member accepted the same free,
//! idle value at one ballot (`compact.rs`, docs/storage.md). Its promise
//! folds into the floor (the horizon already covers it for the next life)
//! and its token into a node-wide durable token floor. A name this
//! acceptor does not store is reported at ballot zero with that floor, so
//! a quorum that finds no register starts the name above every token any
//! member compacted.

use crate::ballot::Ballot;
use crate::bugs::{Bug, Bugs};
use crate::configuration::Configuration;
use crate::input::{HolderId, LeaseName};
use crate::lease::{LeaseValue, Token};
use crate::message::{Message, Report};
use crate::packed::ValueMut;
use crate::time::{Instant, Micros};
use packed::{RegisterPacking, Registers};
use serde::{Deserialize, Serialize};

mod packed;

/// What an acceptor keeps on disk for one name. The acceptance time is not
/// here: monotonic clock readings mean nothing after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Durable {
    pub promised: Ballot,
    pub accepted: Option<(Ballot, LeaseValue)>,
}

/// An accepted value with the local time its lease clock started, and the
/// ballot of the accept that started that clock.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Accepted {
    ballot: Ballot,
    value: LeaseValue,
    clock_start: Instant,
    origin: Ballot,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Register {
    promised: Ballot,
    accepted: Option<Accepted>,
}

impl Register {
    fn durable(&self) -> Durable {
        Durable {
            promised: self.promised,
            accepted: self.accepted.as_ref().map(|a| (a.ballot, a.value.clone())),
        }
    }

    fn report(&self, now: Instant) -> Option<Report> {
        self.accepted.as_ref().map(|a| Report {
            ballot: a.ballot,
            value: a.value.clone(),
            age: now.since(a.clock_start),
            origin: a.origin,
        })
    }
}

/// How far a promise raises the horizon past its own counter.
pub const HORIZON_STEP: u64 = 1 << 20;

/// Something the acceptor needs durable.
// The register is the common record; boxing it would allocate per write.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Record {
    /// The state of one name, after an acceptance.
    Register { name: LeaseName, state: Durable },
    /// The promise horizon: the next life's floor. Only ever raised.
    Horizon(u64),
    /// Delete the register of `name`, and raise the node's token floor to
    /// `token_floor`, in one transaction.
    Compact { name: LeaseName, token_floor: Token },
    /// Raise the node's token floor to this.
    TokenFloor(Token),
    /// The node's configuration from now on: written before the node acts
    /// under it, and only ever replaced by a later epoch.
    Configuration(Configuration),
}

/// A reply, the record that must be durable before it is sent, and a
/// record written after that one whose durability the reply does not wait
/// for (see "Lazy acceptances" above).
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    pub write: Option<Record>,
    pub lazy: Option<Record>,
    pub reply: Message,
}

impl Step {
    fn strict(write: Option<Record>, reply: Message) -> Step {
        Step {
            write,
            lazy: None,
            reply,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Acceptor {
    registers: Registers,
    /// Promised for every name: below it lie the promises of earlier lives,
    /// which were not written one by one.
    floor: Ballot,
    /// Every promise of this life has a counter below this, and the record
    /// that raised it is issued before any reply that relies on it.
    horizon: u64,
    /// Above the token of every register this node compacted: where a name
    /// it does not store starts.
    token_floor: Token,
    bugs: Bugs,
}

impl Acceptor {
    /// Rebuild from disk after a start: the stored `horizon` and records.
    /// Every loaded value's lease clock starts now: the new process cannot
    /// know how old it was, and starting it late only makes a lease last
    /// longer, never shorter.
    pub fn recover(
        horizon: u64,
        token_floor: Token,
        records: impl IntoIterator<Item = (LeaseName, Durable)>,
        now: Instant,
        bugs: Bugs,
    ) -> Acceptor {
        let forget = bugs.has(Bug::ForgetPromises);
        let floor = if forget {
            Ballot::ZERO
        } else {
            Ballot {
                counter: horizon,
                node: 0,
                incarnation: 0,
            }
        };
        let registers = records
            .into_iter()
            .map(|(name, d)| {
                let promised = if forget {
                    d.accepted.as_ref().map_or(Ballot::ZERO, |(b, _)| *b)
                } else {
                    d.promised.max(floor)
                };
                // The clock started before the crash, at an origin the
                // new process does not know: it counts from boot, and from
                // the value's own accept, which is no earlier than it.
                let accepted = d.accepted.map(|(ballot, value)| Accepted {
                    ballot,
                    value,
                    clock_start: now,
                    origin: ballot,
                });
                (name, Register { promised, accepted })
            })
            .collect();
        Acceptor {
            registers,
            floor,
            horizon,
            token_floor,
            bugs,
        }
    }

    pub fn len(&self) -> usize {
        self.registers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.registers.is_empty()
    }

    /// The highest ballot promised for any name, so that a restarted
    /// proposer starts its counter above what the cluster has seen.
    pub fn highest_promise(&self) -> Ballot {
        self.registers
            .values()
            .map(|r| r.promised)
            .fold(self.floor, Ballot::max)
    }

    /// The durable horizon this acceptor relies on (see the module docs).
    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    /// The token floor: no compacted register had a higher token.
    pub fn token_floor(&self) -> Token {
        self.token_floor
    }

    /// Up to `limit` stored names after `cursor`, in name order, with
    /// their accepted values as a look would report them.
    pub fn scan(
        &self,
        cursor: Option<&LeaseName>,
        limit: usize,
        now: Instant,
    ) -> Vec<(LeaseName, Option<Report>)> {
        self.registers
            .after(cursor)
            .take(limit)
            .map(|(name, r)| (name, r.report(now)))
            .collect()
    }

    /// Delete the register of `name` if it still holds the value accepted
    /// at `ballot`, which every member accepted durably (the compactor's
    /// rule, see the module docs). The promise goes into the floor, which
    /// the horizon already covers, and the token into the token floor.
    pub fn handle_compact(&mut self, name: &LeaseName, ballot: Ballot) -> Option<Record> {
        let register = self.registers.get(name)?;
        let accepted = register.accepted.as_ref()?;
        if accepted.ballot != ballot {
            return None; // Written again since: no longer what was settled.
        }
        let token = accepted.value.token;
        self.registers.remove(name);
        self.floor = self.floor.max(register.promised);
        self.token_floor = self.token_floor.max(token);
        Some(Record::Compact {
            name: name.clone(),
            token_floor: self.token_floor,
        })
    }

    /// Raise the token floor to `token`; the record to make durable when
    /// that raised it.
    pub fn raise_token_floor(&mut self, token: Token) -> Option<Record> {
        (token > self.token_floor).then(|| {
            self.token_floor = token;
            Record::TokenFloor(token)
        })
    }

    /// The register of `name`, to read or change; a name never seen starts
    /// promised up to the floor.
    fn register(&mut self, name: &LeaseName) -> ValueMut<'_, RegisterPacking> {
        let floor = self.floor;
        self.registers
            .entry(name.clone())
            .or_insert_with(|| Register {
                promised: floor,
                accepted: None,
            })
    }

    /// Phase 1b. Promises `ballot` unless a higher one was promised. An equal
    /// ballot is answered again: proposers never reuse a ballot, so a repeat
    /// can only be a duplicate, or the proposer's own piggybacked ballot.
    /// Needs a write only when the promise is not below the horizon.
    pub fn handle_prepare(&mut self, now: Instant, name: &LeaseName, ballot: Ballot) -> Step {
        let raise = self.raise_horizon_for(ballot);
        let floor = self.floor_report();
        let mut register = self.register(name);
        if ballot < register.promised {
            return nack(name, ballot, register.promised);
        }
        let mut write = None;
        if ballot > register.promised {
            register.promised = ballot;
            write = match raise {
                Raise::Covered => None,
                Raise::To(horizon) => Some(Record::Horizon(horizon)),
                // Counters this high never occur; should one, its promise is
                // kept by a record of its own.
                Raise::Impossible => Some(Record::Register {
                    name: name.clone(),
                    state: register.durable(),
                }),
            };
        }
        let reply = Message::Promise {
            name: name.clone(),
            ballot,
            accepted: register.report(now).or(floor),
        };
        drop(register);
        if let Some(Record::Horizon(horizon)) = write {
            self.horizon = horizon;
        }
        Step::strict(write, reply)
    }

    /// Whether a promise of `ballot` is below the horizon, and if not, what
    /// to raise it to.
    fn raise_horizon_for(&self, ballot: Ballot) -> Raise {
        if ballot.counter < self.horizon {
            Raise::Covered
        } else {
            ballot
                .counter
                .checked_add(HORIZON_STEP)
                .map_or(Raise::Impossible, Raise::To)
        }
    }

    /// Phase 2b. Accepting also promises the proposer's next ballot, which
    /// is what lets it skip phase 1 next time. `age` restarts the lease
    /// clock where the proposer observed it: zero for a fresh value. When
    /// this acceptor already runs the clock of the same `origin`, it keeps
    /// the older start of the two: both are lower bounds of the same age,
    /// and its own needs no other node's clock.
    ///
    /// A value that differs from the held one only in its write log is
    /// accepted lazily (the module docs say why that is safe); its reply
    /// says so, and the proposer counts it as durable only from every
    /// member at once.
    pub fn handle_accept(
        &mut self,
        now: Instant,
        name: &LeaseName,
        ballot: Ballot,
        value: &LeaseValue,
        age: Micros,
        origin: Ballot,
    ) -> Step {
        let raise = self.raise_horizon_for(ballot.successor());
        let bugs = self.bugs;
        let mut register = self.register(name);
        let accepted_reply = |durable| Message::Accepted {
            name: name.clone(),
            ballot,
            durable,
        };
        if register
            .accepted
            .as_ref()
            .is_some_and(|a| a.ballot == ballot)
        {
            // A duplicate of an accept already taken: a ballot carries one
            // value. Its reply waits for every write before it, the lazy
            // record of the first copy included: a proposer resends an
            // accept to have it confirmed durable.
            return Step::strict(None, accepted_reply(true));
        }
        if ballot < register.promised {
            return nack(name, ballot, register.promised);
        }
        let lazy = register
            .accepted
            .as_ref()
            .is_some_and(|a| only_the_write_log_differs(&a.value, value, bugs))
            && !matches!(raise, Raise::Impossible);
        register.promised = ballot.successor();
        let carried = now.minus(age);
        let clock_start = match &register.accepted {
            Some(a) if a.origin == origin => a.clock_start.min(carried),
            _ => carried,
        };
        register.accepted = Some(Accepted {
            ballot,
            value: value.clone(),
            clock_start,
            origin,
        });
        let record = Record::Register {
            name: name.clone(),
            state: register.durable(),
        };
        drop(register);
        if !lazy {
            return Step::strict(Some(record), accepted_reply(true));
        }
        // The successor's promise is not in a durable record until the lazy
        // one lands: the horizon must cover it first.
        let write = match raise {
            Raise::To(horizon) => {
                self.horizon = horizon;
                Some(Record::Horizon(horizon))
            }
            Raise::Covered | Raise::Impossible => None,
        };
        Step {
            write,
            lazy: Some(record),
            reply: accepted_reply(false),
        }
    }

    /// A read-only look: reports the accepted value, promises nothing.
    /// `durable` says whether that value's record has landed (the node
    /// knows; the acceptor does not).
    pub fn handle_peek(&self, now: Instant, name: &LeaseName, id: u64, durable: bool) -> Message {
        Message::Peeked {
            name: name.clone(),
            id,
            accepted: self.report(name, now),
            durable,
        }
    }

    /// The accepted value of `name` and its age, as a promise would report
    /// them.
    pub fn report(&self, name: &LeaseName, now: Instant) -> Option<Report> {
        if self.bugs.has(Bug::PromiseHidesFloor) {
            if let Some(r) = self.registers.get(name) {
                return r.report(now);
            }
        }
        // A register holding only a promise has nothing accepted either.
        self.registers
            .get(name)
            .and_then(|r| r.report(now))
            .or_else(|| self.floor_report())
    }

    /// What a name this node does not store reports: nothing, or, once a
    /// register was compacted, a free value at ballot zero with the token
    /// floor, which a proposer starts from.
    fn floor_report(&self) -> Option<Report> {
        (self.token_floor > Token(0)).then(|| Report {
            ballot: Ballot::ZERO,
            value: LeaseValue {
                token: self.token_floor,
                ..LeaseValue::default()
            },
            age: Micros::ZERO,
            origin: Ballot::ZERO,
        })
    }

    /// The token and holder of the value accepted for `name`.
    pub fn holder_and_token(&self, name: &LeaseName) -> Option<(Token, Option<HolderId>)> {
        let accepted = self.registers.get(name)?.accepted?;
        let holder = accepted.value.grant.map(|g| g.holder);
        Some((accepted.value.token, holder))
    }

    /// The state of one name as a record would carry it, for inspection and
    /// tests. Its promise may be newer than the name's last record: promises
    /// below the horizon are not written one by one.
    pub fn durable(&self, name: &LeaseName) -> Option<Durable> {
        self.registers.get(name).as_ref().map(Register::durable)
    }
}

enum Raise {
    Covered,
    To(u64),
    Impossible,
}

fn nack(name: &LeaseName, ballot: Ballot, promised: Ballot) -> Step {
    Step::strict(
        None,
        Message::Nack {
            name: name.clone(),
            ballot,
            promised,
        },
    )
}

/// Whether forgetting an acceptance of `incoming` over `held` is only a
/// younger clock for the same lease: every field but the write log is the
/// same (token, grant with holder, ttl, lock-delay, expiry mark and waiter,
/// and the queue). The write log only tells a retried round whether its
/// attempt took effect, and a lazy attempt's operations can all be applied
/// again: they changed nothing but the clock.
fn only_the_write_log_differs(held: &LeaseValue, incoming: &LeaseValue, bugs: Bugs) -> bool {
    if bugs.has(Bug::LazyForTheHolder) {
        let holder = |v: &LeaseValue| v.grant.as_ref().map(|g| g.holder.clone());
        return holder(held).is_some() && holder(held) == holder(incoming);
    }
    held.token == incoming.token && held.grant == incoming.grant && held.waiters == incoming.waiters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> LeaseName {
        LeaseName::new("n").unwrap()
    }
    fn b(counter: u64, node: u16) -> Ballot {
        Ballot {
            counter,
            node,
            incarnation: 1,
        }
    }
    fn value(token: u64) -> LeaseValue {
        LeaseValue {
            token: Token(token),
            grant: None,
            ..LeaseValue::default()
        }
    }
    fn t(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    #[test]
    fn the_first_promise_raises_the_horizon_before_it_is_reported() {
        let mut a = Acceptor::default();
        let step = a.handle_prepare(t(0), &name(), b(1, 1));
        assert_eq!(step.write, Some(Record::Horizon(1 + HORIZON_STEP)));
        assert!(matches!(
            step.reply,
            Message::Promise { accepted: None, .. }
        ));
        assert_eq!(a.horizon(), 1 + HORIZON_STEP);
    }

    #[test]
    fn a_promise_below_the_horizon_needs_no_write() {
        let mut a = Acceptor::default();
        a.handle_prepare(t(0), &name(), b(1, 1));
        let other = LeaseName::new("other").unwrap();
        for (n, ballot) in [(&name(), b(2, 2)), (&other, b(HORIZON_STEP, 3))] {
            let step = a.handle_prepare(t(1), n, ballot);
            assert_eq!(step.write, None);
            assert!(matches!(step.reply, Message::Promise { .. }));
        }
        // At the horizon it is raised again, past the new promise.
        let step = a.handle_prepare(t(2), &other, b(HORIZON_STEP + 1, 1));
        assert_eq!(step.write, Some(Record::Horizon(2 * HORIZON_STEP + 1)));
    }

    #[test]
    fn after_a_restart_every_ballot_below_the_old_horizon_is_refused_for_every_name() {
        let mut a = Acceptor::default();
        a.handle_prepare(t(0), &name(), b(7, 1));
        let horizon = a.horizon();
        // The promise of 7 was never written; the restarted acceptor still
        // refuses 6, for this name and any other, and tells how high to go.
        let mut a = Acceptor::recover(horizon, Token(0), [], t(10), Bugs::NONE);
        for n in [name(), LeaseName::new("never-seen").unwrap()] {
            assert_eq!(
                a.handle_prepare(t(10), &n, b(6, 2)).reply,
                Message::Nack {
                    name: n.clone(),
                    ballot: b(6, 2),
                    promised: Ballot {
                        counter: horizon,
                        node: 0,
                        incarnation: 0
                    }
                }
            );
            let step = a.handle_accept(t(10), &n, b(6, 2), &value(1), Micros::ZERO, b(6, 2));
            assert!(matches!(step.reply, Message::Nack { .. }));
        }
        assert!(a.highest_promise().counter >= horizon);
        // Above the floor it promises, raising the horizon first.
        let step = a.handle_prepare(t(11), &name(), b(horizon, 2));
        assert_eq!(step.write, Some(Record::Horizon(horizon + HORIZON_STEP)));
    }

    #[test]
    fn a_lower_prepare_or_accept_is_nacked_with_the_promise_and_changes_nothing() {
        let mut a = Acceptor::default();
        a.handle_prepare(t(0), &name(), b(5, 1));
        let before = a.clone();
        let step = a.handle_prepare(t(1), &name(), b(4, 9));
        assert_eq!(step.write, None);
        assert_eq!(
            step.reply,
            Message::Nack {
                name: name(),
                ballot: b(4, 9),
                promised: b(5, 1)
            }
        );
        let step = a.handle_accept(t(1), &name(), b(4, 9), &value(1), Micros::ZERO, b(4, 9));
        assert!(matches!(step.reply, Message::Nack { .. }));
        assert_eq!(a, before);
    }

    #[test]
    fn accepting_promises_the_proposers_next_ballot() {
        let mut a = Acceptor::default();
        let step = a.handle_accept(t(0), &name(), b(3, 2), &value(1), Micros::ZERO, b(3, 2));
        let Some(Record::Register { state, .. }) = step.write else {
            panic!("an acceptance writes the name's record")
        };
        assert_eq!(state.promised, b(4, 2));
        // Another proposer with the same counter is now below the promise.
        assert!(matches!(
            a.handle_prepare(t(0), &name(), b(4, 1)).reply,
            Message::Nack { .. }
        ));
        // The winner's own next ballot is still accepted without phase 1.
        let step = a.handle_accept(t(0), &name(), b(4, 2), &value(2), Micros::ZERO, b(4, 2));
        assert!(matches!(step.reply, Message::Accepted { .. }));
    }

    #[test]
    fn a_value_that_differs_only_in_its_write_log_is_accepted_lazily() {
        let mut a = Acceptor::default();
        let step = a.handle_accept(t(0), &name(), b(3, 2), &value(1), Micros::ZERO, b(3, 2));
        assert!(step.write.is_some() && step.lazy.is_none());
        let renewed = |after: u64| LeaseValue {
            writes: value(1).writes.after(b(after, 2)),
            ..value(1)
        };
        // The successor's promise is above the horizon: raise it first, and
        // the reply waits for that record but not for the value's.
        let step = a.handle_accept(t(1), &name(), b(4, 2), &renewed(4), Micros::ZERO, b(4, 2));
        assert_eq!(step.write, Some(Record::Horizon(5 + HORIZON_STEP)));
        assert!(matches!(step.lazy, Some(Record::Register { .. })));
        assert!(matches!(
            step.reply,
            Message::Accepted { durable: false, .. }
        ));
        let step = a.handle_accept(t(2), &name(), b(5, 2), &renewed(5), Micros::ZERO, b(5, 2));
        assert_eq!(step.write, None);
        let Some(Record::Register { state, .. }) = step.lazy else {
            panic!("a lazy acceptance still writes the name's record")
        };
        assert_eq!(state.promised, b(6, 2));
        // A repeat is answered as durable: its reply waits for every write.
        let step = a.handle_accept(t(2), &name(), b(5, 2), &renewed(5), Micros::ZERO, b(5, 2));
        assert_eq!((step.write, step.lazy), (None, None));
        assert!(matches!(
            step.reply,
            Message::Accepted { durable: true, .. }
        ));
        // A new token is a new grant: durable before the reply.
        let step = a.handle_accept(t(3), &name(), b(6, 2), &value(2), Micros::ZERO, b(6, 2));
        assert!(step.write.is_some() && step.lazy.is_none());
        assert!(matches!(
            step.reply,
            Message::Accepted { durable: true, .. }
        ));
    }

    #[test]
    fn a_duplicate_accept_is_acknowledged_without_a_write() {
        let mut a = Acceptor::default();
        a.handle_accept(t(0), &name(), b(3, 2), &value(1), Micros::ZERO, b(3, 2));
        let step = a.handle_accept(t(5), &name(), b(3, 2), &value(1), Micros::ZERO, b(3, 2));
        assert_eq!(step.write, None);
        assert!(matches!(step.reply, Message::Accepted { .. }));
    }

    #[test]
    fn a_promise_reports_the_age_of_the_accepted_value() {
        let mut a = Acceptor::default();
        a.handle_accept(t(10), &name(), b(1, 1), &value(1), Micros::ZERO, b(1, 1));
        let step = a.handle_prepare(t(250), &name(), b(9, 1));
        let Message::Promise {
            accepted: Some(report),
            ..
        } = step.reply
        else {
            panic!()
        };
        assert_eq!(report.age, Micros::from_millis(240));
    }

    #[test]
    fn an_unchanged_reproposal_keeps_the_lease_clock_where_it_was_observed() {
        let mut a = Acceptor::default();
        a.handle_accept(
            t(1000),
            &name(),
            b(1, 1),
            &value(1),
            Micros::from_millis(700),
            b(0, 1),
        );
        let Message::Peeked {
            accepted: Some(report),
            ..
        } = a.handle_peek(t(1100), &name(), 1, true)
        else {
            panic!()
        };
        assert_eq!(report.age, Micros::from_millis(800));
    }

    fn age_at(a: &Acceptor, ms: u64) -> (Micros, Ballot) {
        let Message::Peeked {
            accepted: Some(report),
            ..
        } = a.handle_peek(t(ms), &name(), 1, true)
        else {
            panic!("nothing accepted")
        };
        (report.age, report.origin)
    }

    /// A value whose clock goes on from an origin this acceptor already
    /// timed keeps its own, older start rather than a proposer's younger
    /// age; a clock of another origin starts where the proposer says.
    #[test]
    fn a_clock_of_the_same_origin_keeps_its_own_start() {
        let mut a = Acceptor::default();
        a.handle_accept(t(1000), &name(), b(1, 1), &value(1), Micros::ZERO, b(1, 1));
        a.handle_accept(
            t(1500),
            &name(),
            b(2, 1),
            &value(1),
            Micros::from_millis(100),
            b(1, 1),
        );
        assert_eq!(age_at(&a, 1600), (Micros::from_millis(600), b(1, 1)));
        a.handle_accept(
            t(1700),
            &name(),
            b(3, 2),
            &value(1),
            Micros::from_millis(50),
            b(3, 2),
        );
        assert_eq!(age_at(&a, 1800), (Micros::from_millis(150), b(3, 2)));
        // A carried age older than its own start wins too: both bound
        // the same clock from below.
        a.handle_accept(
            t(1900),
            &name(),
            b(4, 2),
            &value(1),
            Micros::from_millis(900),
            b(3, 2),
        );
        assert_eq!(age_at(&a, 2000), (Micros::from_millis(1000), b(3, 2)));
    }

    #[test]
    fn recovery_restarts_lease_clocks_at_boot_and_keeps_promises() {
        let d = Durable {
            promised: b(9, 3),
            accepted: Some((b(7, 1), value(4))),
        };
        let a = Acceptor::recover(0, Token(0), [(name(), d.clone())], t(50), Bugs::NONE);
        assert_eq!(a.durable(&name()), Some(d));
        let Message::Peeked {
            accepted: Some(report),
            ..
        } = a.handle_peek(t(50), &name(), 1, true)
        else {
            panic!()
        };
        assert_eq!(report.age, Micros::ZERO);
        // The origin is lost with the process: the value's own accept,
        // which is no earlier, stands for it.
        assert_eq!(report.origin, b(7, 1));
        assert_eq!(a.highest_promise(), b(9, 3));
    }
}
