//! The acceptor: phase 1b and 2b of Paxos for every name this node stores.
//!
//! Every state change here produces a [`Durable`] record that the node must
//! make durable before any reply that follows it leaves (see `node.rs`).

use crate::ballot::Ballot;
use crate::bugs::{Bug, Bugs};
use crate::input::LeaseName;
use crate::lease::LeaseValue;
use crate::message::{Message, Report};
use crate::time::{Instant, Micros};
use packed::Registers;
use serde::{Deserialize, Serialize};

mod packed;

/// What an acceptor keeps on disk for one name. The acceptance time is not
/// here: monotonic clock readings mean nothing after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Durable {
    pub promised: Ballot,
    pub accepted: Option<(Ballot, LeaseValue)>,
}

/// An accepted value with the local time its lease clock started.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Accepted {
    ballot: Ballot,
    value: LeaseValue,
    clock_start: Instant,
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
        })
    }
}

/// A reply, and the record that must be durable before it is sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    pub write: Option<(LeaseName, Durable)>,
    pub reply: Message,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Acceptor {
    registers: Registers,
}

impl Acceptor {
    /// Rebuild from disk after a start. Every loaded value's lease clock
    /// starts now: the new process cannot know how old it was, and starting
    /// it late only makes a lease last longer, never shorter.
    pub fn recover(
        records: impl IntoIterator<Item = (LeaseName, Durable)>,
        now: Instant,
        bugs: Bugs,
    ) -> Acceptor {
        let registers = records
            .into_iter()
            .map(|(name, d)| {
                let promised = if bugs.has(Bug::ForgetPromises) {
                    d.accepted.as_ref().map_or(Ballot::ZERO, |(b, _)| *b)
                } else {
                    d.promised
                };
                let accepted = d.accepted.map(|(ballot, value)| Accepted {
                    ballot,
                    value,
                    clock_start: now,
                });
                (name, Register { promised, accepted })
            })
            .collect();
        Acceptor { registers }
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
            .max()
            .unwrap_or(Ballot::ZERO)
    }

    /// Phase 1b. Promises `ballot` unless a higher one was promised. An equal
    /// ballot is answered again: proposers never reuse a ballot, so a repeat
    /// can only be a duplicate, or the proposer's own piggybacked ballot.
    pub fn handle_prepare(&mut self, now: Instant, name: &LeaseName, ballot: Ballot) -> Step {
        let mut register = self.registers.entry(name.clone()).or_default();
        if ballot < register.promised {
            return nack(name, ballot, register.promised);
        }
        let write = (ballot > register.promised).then(|| {
            register.promised = ballot;
            (name.clone(), register.durable())
        });
        Step {
            write,
            reply: Message::Promise {
                name: name.clone(),
                ballot,
                accepted: register.report(now),
            },
        }
    }

    /// Phase 2b. Accepting also promises the proposer's next ballot, which
    /// is what lets it skip phase 1 next time. `age` restarts the lease
    /// clock where the proposer observed it: zero for a fresh value.
    pub fn handle_accept(
        &mut self,
        now: Instant,
        name: &LeaseName,
        ballot: Ballot,
        value: &LeaseValue,
        age: Micros,
    ) -> Step {
        let mut register = self.registers.entry(name.clone()).or_default();
        let accepted_reply = Message::Accepted {
            name: name.clone(),
            ballot,
        };
        if register
            .accepted
            .as_ref()
            .is_some_and(|a| a.ballot == ballot)
        {
            // A duplicate of an accept already taken: a ballot carries one value.
            return Step {
                write: None,
                reply: accepted_reply,
            };
        }
        if ballot < register.promised {
            return nack(name, ballot, register.promised);
        }
        register.promised = ballot.successor();
        register.accepted = Some(Accepted {
            ballot,
            value: value.clone(),
            clock_start: now.minus(age),
        });
        Step {
            write: Some((name.clone(), register.durable())),
            reply: accepted_reply,
        }
    }

    /// A read-only look: reports the accepted value, promises nothing.
    pub fn handle_peek(&self, now: Instant, name: &LeaseName, id: u64) -> Message {
        Message::Peeked {
            name: name.clone(),
            id,
            accepted: self.registers.get(name).and_then(|r| r.report(now)),
        }
    }

    /// The durable state of one name, for inspection and tests.
    pub fn durable(&self, name: &LeaseName) -> Option<Durable> {
        self.registers.get(name).as_ref().map(Register::durable)
    }
}

fn nack(name: &LeaseName, ballot: Ballot, promised: Ballot) -> Step {
    Step {
        write: None,
        reply: Message::Nack {
            name: name.clone(),
            ballot,
            promised,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::Token;

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
    fn a_promise_is_written_before_it_is_reported() {
        let mut a = Acceptor::default();
        let step = a.handle_prepare(t(0), &name(), b(1, 1));
        assert_eq!(
            step.write,
            Some((
                name(),
                Durable {
                    promised: b(1, 1),
                    accepted: None
                }
            ))
        );
        assert!(matches!(
            step.reply,
            Message::Promise { accepted: None, .. }
        ));
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
        let step = a.handle_accept(t(1), &name(), b(4, 9), &value(1), Micros::ZERO);
        assert!(matches!(step.reply, Message::Nack { .. }));
        assert_eq!(a, before);
    }

    #[test]
    fn accepting_promises_the_proposers_next_ballot() {
        let mut a = Acceptor::default();
        let step = a.handle_accept(t(0), &name(), b(3, 2), &value(1), Micros::ZERO);
        assert_eq!(step.write.unwrap().1.promised, b(4, 2));
        // Another proposer with the same counter is now below the promise.
        assert!(matches!(
            a.handle_prepare(t(0), &name(), b(4, 1)).reply,
            Message::Nack { .. }
        ));
        // The winner's own next ballot is still accepted without phase 1.
        let step = a.handle_accept(t(0), &name(), b(4, 2), &value(2), Micros::ZERO);
        assert!(matches!(step.reply, Message::Accepted { .. }));
    }

    #[test]
    fn a_duplicate_accept_is_acknowledged_without_a_write() {
        let mut a = Acceptor::default();
        a.handle_accept(t(0), &name(), b(3, 2), &value(1), Micros::ZERO);
        let step = a.handle_accept(t(5), &name(), b(3, 2), &value(1), Micros::ZERO);
        assert_eq!(step.write, None);
        assert!(matches!(step.reply, Message::Accepted { .. }));
    }

    #[test]
    fn a_promise_reports_the_age_of_the_accepted_value() {
        let mut a = Acceptor::default();
        a.handle_accept(t(10), &name(), b(1, 1), &value(1), Micros::ZERO);
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
        );
        let Message::Peeked {
            accepted: Some(report),
            ..
        } = a.handle_peek(t(1100), &name(), 1)
        else {
            panic!()
        };
        assert_eq!(report.age, Micros::from_millis(800));
    }

    #[test]
    fn recovery_restarts_lease_clocks_at_boot_and_keeps_promises() {
        let d = Durable {
            promised: b(9, 3),
            accepted: Some((b(7, 1), value(4))),
        };
        let a = Acceptor::recover([(name(), d.clone())], t(50), Bugs::NONE);
        assert_eq!(a.durable(&name()), Some(d));
        let Message::Peeked {
            accepted: Some(report),
            ..
        } = a.handle_peek(t(50), &name(), 1)
        else {
            panic!()
        };
        assert_eq!(report.age, Micros::ZERO);
        assert_eq!(a.highest_promise(), b(9, 3));
    }
}
