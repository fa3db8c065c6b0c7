//! The model as stateright explores it: the initial states, every action
//! that may happen next, what each does, and the properties checked in
//! every state.

use super::cluster::*;
use super::network::Network;
use super::shared::Shared;
use super::spec::{ClientId, Event, SpecRet, SpecView};
use stateright::{Model, Property};
use std::collections::BTreeMap;
use tenure_core::{Instant, Message, Node};

impl Model for LeaseModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let machines = (0..self.machines())
            .map(|n| {
                let config = self.config(n, 1, 0);
                Shared::new(Machine {
                    token_floor: config.token_floor,
                    configuration: config.configuration.clone(),
                    node: Node::new(config, [], Instant::ZERO).expect("a valid config"),
                    disk: BTreeMap::new(),
                    horizon: 0,
                    unsynced: Vec::new(),
                })
            })
            .collect();
        let clients = self
            .scenario
            .clients
            .iter()
            .map(|_| Client {
                next: 0,
                outstanding: None,
                token: None,
            })
            .collect();
        vec![State {
            now: Instant::ZERO,
            machines,
            network: Network::default(),
            clients,
            crashes_left: self.scenario.crashes,
            losses_left: self.scenario.losses,
            reorders_left: self.scenario.reorders,
            duplicates_left: self.scenario.duplicates,
            history: Vec::new(),
            linearizable: true,
            grants: Vec::new(),
            holds: Vec::new(),
            change_asked: false,
            rescan_begun: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for (c, client) in s.clients.iter().enumerate() {
            let steps = &self.scenario.clients[c].steps;
            let due = steps
                .get(client.next)
                .is_some_and(|&(_, start_ms)| s.now >= Instant::ZERO.plus(ms(start_ms)));
            let script = &self.scenario.clients[c];
            let waits = script.after_change && !self.has_changed(s, script.node);
            if client.outstanding.is_none() && due && !waits {
                actions.push(Action::Submit(c as ClientId));
            }
        }
        let fifo = self.scenario.fifo;
        for envelope in s.network.deliverable(fifo) {
            if self.scenario.replacing && envelope.to == LOST {
                continue; // Lost with its node.
            }
            // A duplicated reply is worth no more than the reply: the
            // proposer counts each acceptor once per phase, and the copy
            // is garbage as soon as the first is counted.
            let is_request = matches!(
                envelope.message,
                Message::Prepare { .. } | Message::Accept { .. } | Message::Peek { .. }
            );
            if s.duplicates_left > 0 && is_request {
                actions.push(Action::Duplicate(envelope.clone()));
            }
            actions.push(Action::Deliver(envelope));
        }
        if fifo && s.reorders_left > 0 {
            for envelope in s.network.overtaking() {
                actions.push(Action::Reorder(envelope));
            }
        }
        // Without FIFO a message that is never delivered is as good as
        // lost, and the checker already explores never delivering it.
        if fifo && s.losses_left > 0 {
            for envelope in s.network.deliverable(false) {
                actions.push(Action::Drop(envelope));
            }
        }
        for (n, machine) in s.machines.iter().enumerate() {
            if !machine.unsynced.is_empty() {
                actions.push(Action::Sync(n));
            }
            if machine
                .node
                .poll_timeout()
                .is_some_and(|t| t <= self.node_clock(n, s.now))
            {
                actions.push(Action::Timeout(n));
            }
            if self.may_crash(s, n) {
                actions.push(Action::Crash(n));
            }
        }
        if let Some(change) = &self.scenario.change {
            let answered = change.after_answer_to.is_none_or(|c| {
                let client = &s.clients[usize::from(c)];
                client.next > 0 && client.outstanding.is_none()
            });
            if answered && !s.change_asked {
                actions.push(Action::BeginChange(change.coordinator));
            }
        }
        let quiet = self
            .scenario
            .slow_messages
            .is_none_or(|slow| s.network.len() <= slow);
        if quiet
            && s.now.plus(ms(self.scenario.tick_ms))
                <= Instant::ZERO.plus(ms(self.scenario.horizon_ms))
        {
            actions.push(Action::Tick);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        // The node whose state the action changed, if one did: only
        // envelopes to or from it can have become garbage.
        let touched = match action {
            Action::Submit(c) => {
                self.submit(&mut s, c);
                Touched::Node(self.scenario.clients[usize::from(c)].node)
            }
            Action::Deliver(envelope) => {
                s.network.take(&envelope);
                let to = envelope.to;
                self.deliver(&mut s, envelope);
                Touched::Node(to)
            }
            Action::Reorder(envelope) => {
                s.reorders_left -= 1;
                s.network.take(&envelope);
                let to = envelope.to;
                self.deliver(&mut s, envelope);
                Touched::Node(to)
            }
            Action::Duplicate(envelope) => {
                s.duplicates_left -= 1;
                if self.scenario.fifo {
                    // The copy comes late: behind everything sent so far.
                    s.network.take(&envelope);
                    s.network.send(envelope.clone(), true);
                }
                let to = envelope.to;
                self.deliver(&mut s, envelope);
                Touched::Node(to)
            }
            Action::Drop(envelope) => {
                s.losses_left -= 1;
                s.network.take(&envelope);
                Touched::Nothing
            }
            Action::Sync(n) => {
                s.machines[n].edit().sync(self.node_clock(n, s.now));
                // What the sync released.
                self.step(&mut s, n, |_, _| {});
                Touched::Node(n)
            }
            Action::Timeout(n) => {
                self.step(&mut s, n, |node, now| node.handle_timeout(now));
                Touched::Node(n)
            }
            Action::Crash(n) => {
                s.crashes_left -= 1;
                self.crash(&mut s, n);
                // The last crash may turn more envelopes into garbage.
                Touched::Everything
            }
            Action::BeginChange(n) => {
                let change = self.scenario.change.as_ref().expect("a scenario change");
                self.begin_change(&mut s, change);
                Touched::Node(n)
            }
            // Whether a message is ignored does not depend on the time.
            Action::Tick => {
                s.now = s.now.plus(ms(self.scenario.tick_ms));
                Touched::Nothing
            }
        };
        self.collect_garbage(&mut s, touched);
        s.rescan_begun |= s.machines.iter().any(|m| m.node.rescanning());
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(LINEARIZABLE, |model: &LeaseModel, s: &State| {
                !model.scenario.leases_outlive_horizon() || s.linearizable
            }),
            Property::always(FENCED, |_, s: &State| fenced(&s.grants)),
            Property::always(EXCLUSIVE, |_, s: &State| exclusive(&s.holds)),
            Property::sometimes(GRANTED, |_, s: &State| !s.grants.is_empty()),
            Property::sometimes(HANDED_OVER, |_, s: &State| {
                s.grants.iter().any(|g| g.client != s.grants[0].client)
            }),
            Property::sometimes(RENEWED, |_, s: &State| {
                s.history.iter().any(|e| {
                    matches!(
                        e,
                        Event::Return {
                            ret: SpecRet::Renewed { .. },
                            ..
                        }
                    )
                })
            }),
            Property::sometimes(READ_SEES_HOLDER, |_, s: &State| {
                s.history.iter().any(|e| {
                    matches!(
                        e,
                        Event::Return {
                            ret: SpecRet::Observed(SpecView::Held { .. }),
                            ..
                        }
                    )
                })
            }),
            Property::sometimes(MEMBERS_CHANGED, |model: &LeaseModel, s: &State| {
                (0..s.machines.len()).any(|n| model.has_changed(s, n))
            }),
            Property::sometimes(JOINER_ANSWERED, |model: &LeaseModel, s: &State| {
                let joins = |op: u8| model.scenario.clients[usize::from(op / 16)].node >= NODES;
                s.history
                    .iter()
                    .any(|e| matches!(e, Event::Return { op, .. } if joins(*op)))
            }),
            Property::sometimes(OUTCOME_UNKNOWN, |_, s: &State| {
                // Invoked, never answered, and the client has moved on.
                let answered = |op: u8| {
                    s.history
                        .iter()
                        .any(|e| matches!(e, Event::Return { op: o, .. } if *o == op))
                };
                let waiting = |op: u8| {
                    s.clients
                        .iter()
                        .any(|c| c.outstanding.is_some_and(|r| r.op == op))
                };
                s.history.iter().any(|e| match e {
                    Event::Invoke { op, .. } => !answered(*op) && !waiting(*op),
                    Event::Return { .. } => false,
                })
            }),
        ]
    }
}

pub const LINEARIZABLE: &str = "the register is linearizable";
pub const FENCED: &str = "tokens rise and are never granted twice";
pub const EXCLUSIVE: &str = "no two holders overlap";
pub const GRANTED: &str = "a lease is granted";
pub const HANDED_OVER: &str = "the lease passes to another client";
pub const RENEWED: &str = "a lease is renewed";
pub const READ_SEES_HOLDER: &str = "a read sees the lease held";
pub const MEMBERS_CHANGED: &str = "the members change";
pub const JOINER_ANSWERED: &str = "a client of a joining node is answered";
pub const OUTCOME_UNKNOWN: &str = "a request ends with its outcome unknown";

/// Fencing: no token is granted twice, and a grant requested after another
/// grant was received carries a higher token.
pub fn fenced(grants: &[GrantRecord]) -> bool {
    grants.iter().enumerate().all(|(i, g)| {
        g.token > g.floor && grants[..i].iter().all(|earlier| earlier.token != g.token)
    })
}

/// Exclusivity: the holding intervals of different clients are disjoint.
pub fn exclusive(holds: &[Hold]) -> bool {
    holds.iter().enumerate().all(|(i, a)| {
        holds[..i]
            .iter()
            .all(|b| a.client == b.client || !a.overlaps(b))
    })
}
