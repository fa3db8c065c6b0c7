//! A network of nodes driven in simulated time: every message takes the
//! same one-way delay, disks are instant, and timers fire when due.

use std::collections::{BTreeMap, BTreeSet};
use tenure_core::{
    Failure, Instant, LeaseName, Micros, Node, NodeId, Op, Outcome, RequestId, Transmit,
};

pub struct Net {
    pub nodes: Vec<Node>,
    pub now: Instant,
    delay: Micros,
    /// Messages in flight by arrival time, in send order.
    in_flight: BTreeMap<(Instant, u64), (NodeId, Transmit)>,
    sent: u64,
    /// Every answer, as the node gave it, with when.
    pub answers: Vec<(Instant, RequestId, Result<Outcome, Failure>)>,
    /// Nodes cut off: what is sent to them is lost.
    pub cut: BTreeSet<NodeId>,
    /// Nodes stopped: they neither hear nor say anything.
    pub stopped: BTreeSet<NodeId>,
}

impl Net {
    pub fn new(nodes: Vec<Node>, delay: Micros) -> Net {
        Net {
            nodes,
            now: Instant::from_micros(1_000_000),
            delay,
            in_flight: BTreeMap::new(),
            sent: 0,
            answers: Vec::new(),
            cut: BTreeSet::new(),
            stopped: BTreeSet::new(),
        }
    }

    /// A client request to the node at `index`, now.
    pub fn submit(&mut self, index: usize, request: RequestId, name: &LeaseName, op: Op) {
        let now = self.now;
        self.nodes[index].submit(now, request, name.clone(), op);
        self.flush();
    }

    /// Sync every write at once and put what each node sends on the wire.
    fn flush(&mut self) {
        let now = self.now;
        for node in &mut self.nodes {
            super::sync_all_writes(node, now);
            let stopped = self.stopped.contains(&node.id());
            while let Some(t) = node.poll_transmit() {
                if stopped || self.cut.contains(&t.to) || self.stopped.contains(&t.to) {
                    continue;
                }
                self.sent += 1;
                let at = now.plus(self.delay);
                self.in_flight.insert((at, self.sent), (node.id(), t));
            }
            while let Some(r) = node.poll_reply() {
                self.answers.push((now, r.request, r.result));
            }
            while node.poll_event().is_some() {}
        }
    }

    /// When the next message arrives or timer fires.
    fn next_at(&self) -> Option<Instant> {
        let message = self.in_flight.keys().next().map(|&(at, _)| at);
        let timer = self
            .nodes
            .iter()
            .filter(|n| !self.stopped.contains(&n.id()))
            .filter_map(Node::poll_timeout)
            .min();
        message.into_iter().chain(timer).min()
    }

    /// Deliver messages and fire timers in time order up to `until`, then
    /// stand at `until`; bounded.
    pub fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            self.flush();
            let Some(at) = self.next_at().filter(|at| *at <= until) else {
                self.now = self.now.max(until);
                return;
            };
            self.now = self.now.max(at);
            let now = self.now;
            let due_message = self.in_flight.keys().next().is_some_and(|&(m, _)| m <= now);
            if due_message {
                let (_, (from, t)) = self.in_flight.pop_first().expect("a message");
                if self.stopped.contains(&t.to) {
                    continue;
                }
                self.nodes[usize::from(t.to.0 - 1)].handle_message(now, from, t.stamp, t.message);
            } else {
                for node in &mut self.nodes {
                    if self.stopped.contains(&node.id()) {
                        continue;
                    }
                    if node.poll_timeout().is_some_and(|t| t <= now) {
                        node.handle_timeout(now);
                    }
                }
            }
        }
        panic!("the network did not reach {until:?} within the step bound");
    }

    /// Send `op` on `name` through the node at `index` as `request`, and
    /// run until its answer, which must come `within`.
    pub fn call(
        &mut self,
        index: usize,
        request: RequestId,
        name: &LeaseName,
        op: Op,
        within: Micros,
    ) -> Result<Outcome, Failure> {
        self.submit(index, request, name, op.clone());
        let step = Micros::from_millis(10);
        for _ in 0..=within.0 / step.0 {
            if let Some(i) = self.answers.iter().position(|a| a.1 == request) {
                return self.answers.remove(i).2;
            }
            let next = self.now.plus(step);
            self.run_until(next);
        }
        panic!("no answer to {op:?} within {within:?}");
    }
}
