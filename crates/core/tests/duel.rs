//! How long two proposers take to settle a name they both want at once: the
//! handoff of a leader election, where every waiting candidate's node is
//! woken by the same release. Liveness, not safety: it pins the backoff's
//! shape (docs/protocol.md), measured in simulated time on a network with a
//! fixed one-way delay and instant disks.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use tenure_core::{
    HolderId, Instant, LeaseName, LockDelay, Message, Micros, Node, NodeId, Op, Outcome, RequestId,
    Ttl,
};

/// One-way delay of every message, self-addressed ones included.
const DELAY_US: u64 = 500;

struct Net {
    nodes: Vec<Node>,
    now: Instant,
    /// Messages in flight by arrival time, in send order.
    in_flight: BTreeMap<(Instant, u64), (NodeId, NodeId, Message)>,
    sent: u64,
    answered: BTreeMap<RequestId, (Instant, Outcome)>,
}

impl Net {
    fn new(trial: u64) -> Net {
        let nodes = common::fresh_nodes(3, |node| trial * 16 + u64::from(node.0));
        Net {
            nodes,
            now: Instant::from_micros(1_000_000),
            in_flight: BTreeMap::new(),
            sent: 0,
            answered: BTreeMap::new(),
        }
    }

    /// Sync every write at once and put what each node sends on the wire.
    fn flush(&mut self) {
        let now = self.now;
        for node in &mut self.nodes {
            common::sync_all_writes(node, now);
            while let Some(t) = node.poll_transmit() {
                self.sent += 1;
                let at = now.plus(Micros(DELAY_US));
                self.in_flight
                    .insert((at, self.sent), (node.id(), t.to, t.message));
            }
            while let Some(r) = node.poll_reply() {
                let outcome = r.result.expect("no failure on a healthy network");
                self.answered.insert(r.request, (now, outcome));
            }
        }
    }

    /// Deliver messages and fire timers in time order until every request
    /// in `want` is answered; bounded.
    fn run_until_answered(&mut self, want: &BTreeSet<RequestId>) {
        for _ in 0..100_000 {
            self.flush();
            if want.iter().all(|r| self.answered.contains_key(r)) {
                return;
            }
            let next_message = self.in_flight.keys().next().map(|&(at, _)| at);
            let next_timer = self.nodes.iter().filter_map(Node::poll_timeout).min();
            let at = match (next_message, next_timer) {
                (Some(m), Some(t)) => m.min(t),
                (Some(m), None) => m,
                (None, Some(t)) => t,
                (None, None) => panic!("nothing left to happen"),
            };
            self.now = self.now.max(at);
            let now = self.now;
            if next_message == Some(at) {
                let (_, (from, to, message)) = self.in_flight.pop_first().expect("a message");
                self.nodes[usize::from(to.0 - 1)].handle_message(now, from, message);
            } else {
                for node in &mut self.nodes {
                    if node.poll_timeout().is_some_and(|t| t <= now) {
                        node.handle_timeout(now);
                    }
                }
            }
        }
        panic!("no answer within the step bound");
    }
}

fn acquire(holder: &str) -> Op {
    Op::Acquire {
        holder: HolderId::new(holder).expect("a valid holder"),
        ttl: Ttl::from_millis(10_000).expect("a valid ttl"),
        lock_delay: LockDelay::NONE,
    }
}

/// Simulated time from two simultaneous acquires (nodes 1 and 2) of a name
/// to the second answer, and whether exactly one was granted.
fn duel(trial: u64) -> (Micros, bool) {
    let mut net = Net::new(trial);
    let name = LeaseName::new("leader").expect("a valid name");
    let start = net.now;
    let (a, b) = (RequestId(1), RequestId(2));
    net.nodes[0].submit(start, a, name.clone(), acquire("candidate-1"));
    net.nodes[1].submit(start, b, name, acquire("candidate-2"));
    net.run_until_answered(&[a, b].into());
    let granted = [a, b]
        .iter()
        .filter(|r| matches!(net.answered[r].1, Outcome::Granted { .. }))
        .count();
    let last = net
        .answered
        .values()
        .map(|(at, _)| *at)
        .max()
        .expect("answers");
    (last.since(start), granted == 1)
}

#[test]
fn two_proposers_wanting_one_name_at_once_settle_it_within_a_few_round_trips() {
    let mut took: Vec<u64> = (0..200)
        .map(|trial| {
            let (took, one_winner) = duel(trial);
            assert!(one_winner, "trial {trial}: exactly one grant");
            took.0
        })
        .collect();
    took.sort_unstable();
    let (p50, p90) = (took[took.len() / 2], took[took.len() * 9 / 10]);
    // A round trip is 1 ms here. The winner is usually answered after 4
    // (its round is pre-empted once); the loser keeps preparing, and its
    // prepares are refused by the ballot the winner reserves for its next
    // round, until one gets through and reports the grant: a conflict, and
    // the name is settled. That wait is the backoff's. With the pause drawn from the
    // full 20 ms after every clash it took p50 23.4 ms, p90 34.6 ms; with
    // the bound starting at 2.5 ms and doubling, 9.3 and 15.9 ms. A loser
    // still preparing breaks the winner's reservation, so its next renewal
    // (a candidate renews after a long wait) needs phase 1 again.
    assert!(p50 <= 12_000, "p50 {p50} µs; all: {took:?}");
    assert!(p90 <= 20_000, "p90 {p90} µs; all: {took:?}");
}
