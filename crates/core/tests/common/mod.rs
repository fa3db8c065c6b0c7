//! Pieces the hand-driven network tests share.

// Each test file uses its own part of these.
#![allow(dead_code)]

pub mod net;

use tenure_core::{Config, Instant, Node, NodeId, Rules, Timing};

/// `size` nodes in their first life on empty storage, default rules and
/// timing; `seed` picks each node's backoff seed.
pub fn fresh_nodes(size: u16, seed: impl Fn(NodeId) -> u64) -> Vec<Node> {
    fresh_nodes_with(size, Rules::default(), seed)
}

/// Like [`fresh_nodes`], with `rules` (an injected bug, say).
pub fn fresh_nodes_with(size: u16, rules: Rules, seed: impl Fn(NodeId) -> u64) -> Vec<Node> {
    fresh_nodes_tuned(size, seed, |config| config.rules = rules)
}

/// Like [`fresh_nodes`], with `tune` applied to each node's configuration.
pub fn fresh_nodes_tuned(
    size: u16,
    seed: impl Fn(NodeId) -> u64,
    tune: impl Fn(&mut Config),
) -> Vec<Node> {
    let members: Vec<NodeId> = (1..=size).map(NodeId).collect();
    members
        .iter()
        .map(|&node| {
            let mut config = Config {
                node,
                incarnation: 1,
                promise_horizon: 0,
                token_floor: tenure_core::Token(0),
                configuration: tenure_core::Configuration::first(members.clone()),
                rules: Rules::default(),
                timing: Timing::default(),
                compaction: tenure_core::Compaction::default(),
                seed: seed(node),
            };
            tune(&mut config);
            Node::new(config, [], Instant::ZERO).expect("a valid config")
        })
        .collect()
}

/// Make every write `node` has queued durable at once, as an instant disk.
pub fn sync_all_writes(node: &mut Node, now: Instant) {
    let mut last = None;
    while let Some(w) = node.poll_write() {
        last = Some(w.id);
    }
    if let Some(id) = last {
        node.handle_durable(now, id);
    }
}
