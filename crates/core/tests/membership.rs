//! Changing members with joint quorums and a rescan (docs/membership.md),
//! through whole nodes on a simulated network. The coordinator is not
//! built yet: the tests move nodes from one configuration to the next by
//! restarting them on their durable state, as the coordinator will.
//!
//! The scenario is ScyllaDB's scylladb/scylladb#5251: a grant accepted
//! by nodes 1 and 3 only; node 3's disk dies; node 4 replaces it. Without
//! the rescan, the new quorum {2, 4} has never heard of the grant.

mod common;

use common::net::Net;
use tenure_core::{
    Ballot, ChangeError, ChangeStep, Compaction, Config, Configuration, Durable, Epoch, Failure,
    HolderId, Instant, LeaseName, LeaseView, LockDelay, Message, Micros, Node, NodeId, Op, Outcome,
    Record, RequestId, Rules, Timing, Token, Transmit, Ttl, HORIZON_STEP,
};

fn name() -> LeaseName {
    named("scheduler")
}

fn named(s: &str) -> LeaseName {
    LeaseName::new(s).unwrap()
}

fn acquire(holder: &str) -> Op {
    Op::Acquire {
        holder: HolderId::new(holder).unwrap(),
        ttl: Ttl::from_millis(60_000).unwrap(),
        lock_delay: LockDelay::NONE,
        wait: Micros::ZERO,
    }
}

fn ids(list: &[u16]) -> Vec<NodeId> {
    list.iter().map(|i| NodeId(*i)).collect()
}

/// The configuration `members` (moving to `joining`) at `epoch`.
fn configuration(epoch: u64, members: &[u16], joining: &[u16]) -> Configuration {
    Configuration {
        epoch: Epoch(epoch),
        members: ids(members),
        joining: ids(joining),
        addresses: Default::default(),
    }
}

/// Node `node` in configuration `members` (moving to `joining`) of
/// `epoch`, in life `incarnation`, on `state` recovered from its store.
fn node(
    node: u16,
    (epoch, members, joining): (u64, &[u16], &[u16]),
    incarnation: u32,
    state: Option<Durable>,
    now: Instant,
) -> Node {
    let config = Config {
        node: NodeId(node),
        incarnation,
        // Above every promise of an earlier life: a restart may only
        // over-count what it promised.
        promise_horizon: if incarnation > 1 { 8 * HORIZON_STEP } else { 0 },
        token_floor: Token(0),
        configuration: configuration(epoch, members, joining),
        rules: Rules::default(),
        timing: Timing::default(),
        compaction: Compaction::default(),
        seed: u64::from(node),
    };
    let recovered = state.map(|s| (name(), s));
    Node::new(config, recovered, now).expect("a valid config")
}

/// Like [`node`], on the state of several names.
fn node_with(
    id: u16,
    lists: (u64, &[u16], &[u16]),
    incarnation: u32,
    states: Vec<(LeaseName, Durable)>,
    now: Instant,
) -> Node {
    let mut n = node(id, lists, incarnation, None, now);
    if !states.is_empty() {
        let config = n.config().clone();
        n = Node::new(config, states, now).expect("a valid config");
    }
    n
}

/// A node that is down for good: it holds nothing and does nothing, and
/// what is sent to it is lost.
fn dead(id: u16, now: Instant) -> Node {
    node(id, (1, &[id], &[]), 1, None, now)
}

struct Run {
    net: Net,
    next: u64,
}

impl Run {
    fn call(&mut self, at: u16, op: Op) -> Result<Outcome, Failure> {
        self.call_on(at, &name(), op)
    }

    fn call_on(&mut self, at: u16, lease: &LeaseName, op: Op) -> Result<Outcome, Failure> {
        let request = RequestId(self.next);
        self.next += 1;
        let within = Micros::from_millis(10_000);
        self.net
            .call(usize::from(at - 1), request, lease, op, within)
    }

    fn state(&self, id: u16) -> Option<Durable> {
        self.net.nodes[usize::from(id - 1)].acceptor_state(&name())
    }

    /// What node `id` stores of `names`.
    fn states(&self, id: u16, names: &[LeaseName]) -> Vec<(LeaseName, Durable)> {
        let node = &self.net.nodes[usize::from(id - 1)];
        names
            .iter()
            .filter_map(|n| node.acceptor_state(n).map(|s| (n.clone(), s)))
            .collect()
    }

    /// Run until node `id` coordinates no change; bounded.
    fn finish_change(&mut self, id: u16) {
        let index = usize::from(id - 1);
        for _ in 0..1_000 {
            if self.net.nodes[index].change_step().is_none() {
                return;
            }
            let next = self.net.now.plus(Micros::from_millis(10));
            self.net.run_until(next);
        }
        panic!("the change coordinated by node {id} did not end");
    }

    /// Run until no node is rescanning; bounded.
    fn finish_rescans(&mut self) {
        for _ in 0..1_000 {
            if self.net.nodes.iter().all(|n| !n.rescanning()) {
                return;
            }
            let next = self.net.now.plus(Micros::from_millis(10));
            self.net.run_until(next);
        }
        panic!("a rescan did not end");
    }
}

/// Three fresh nodes under `rules`, and `a` granted the name through node
/// 1 while node 2 is cut off: accepted by nodes 1 and 3 only. Returns the
/// run, node 2 reachable again, and the grant's token.
fn granted_by_1_and_3(rules: Rules) -> (Run, Token) {
    let nodes = common::fresh_nodes_tuned(3, |n| u64::from(n.0), |c| c.rules = rules);
    let mut run = Run {
        net: Net::new(nodes, Micros::from_millis(1)),
        next: 1,
    };
    run.net.cut.insert(NodeId(2));
    let token = match run.call(1, acquire("a")) {
        Ok(Outcome::Granted { token, .. }) => token,
        other => panic!("the first grant: {other:?}"),
    };
    assert!(run.state(2).is_none(), "node 2 never heard of the grant");
    run.net.cut.clear();
    (run, token)
}

/// The grant to `a` through node 1, accepted by nodes 1 and 3 only, then
/// node 3 lost for good and node 4 in its place, under the joint
/// configuration {1,2,3} + {1,2,4}; with `rescan`, nodes 1 and 2 carry
/// their names before the move to {1,2,4} alone. Then node 1 goes down,
/// and `b` asks for the name through node 4. Returns that answer and the
/// grant's token.
fn replace_node_3(rescan: bool) -> (Result<Outcome, Failure>, Token) {
    let (mut run, token) = granted_by_1_and_3(Rules::default());
    assert!(run.state(3).is_some());

    // Node 3's disk is gone; node 4 joins empty. Nodes 1 and 2 restart
    // into the joint configuration.
    let now = run.net.now;
    let (one, two) = (run.state(1), run.state(2));
    let joint =
        |id, incarnation, state| node(id, (2, &[1, 2, 3], &[1, 2, 4]), incarnation, state, now);
    run.net = Net::new(
        vec![
            joint(1, 2, one),
            joint(2, 2, two),
            dead(3, now),
            joint(4, 1, None),
        ],
        Micros::from_millis(1),
    );
    run.net.now = now;
    run.net.cut.insert(NodeId(3));
    if rescan {
        for id in [1, 2] {
            run.net.nodes[id - 1].start_rescan(now);
        }
        run.finish_rescans();
        let carried: u64 = run.net.nodes.iter().map(Node::carried_names).sum();
        assert!(carried >= 1, "the grant was carried");
    }

    // The move to {1,2,4}; then node 1 goes down too.
    let now = run.net.now;
    let (two, four) = (run.state(2), run.state(4));
    let new = |id, incarnation, state| node(id, (3, &[1, 2, 4], &[]), incarnation, state, now);
    run.net = Net::new(
        vec![dead(1, now), new(2, 3, two), dead(3, now), new(4, 2, four)],
        Micros::from_millis(1),
    );
    run.net.now = now;
    run.net.cut.extend([NodeId(1), NodeId(3)]);
    (run.call(4, acquire("b")), token)
}

#[test]
fn a_replaced_node_loses_no_grant_when_the_rescan_carries_every_name() {
    let (answer, token) = replace_node_3(true);
    match answer {
        Ok(Outcome::Conflict(LeaseView::Held {
            holder, token: t, ..
        })) => {
            assert_eq!(holder.as_str(), "a");
            assert_eq!(t, token);
        }
        other => panic!("b must be refused while a holds the name: {other:?}"),
    }
}

#[test]
fn without_the_rescan_the_new_quorum_grants_the_name_again() {
    // What the rescan is for: the same steps without it give b the name
    // that a holds, with a token a already has.
    let (answer, token) = replace_node_3(false);
    match answer {
        Ok(Outcome::Granted { token: t, .. }) => assert!(t <= token, "{t:?} vs {token:?}"),
        other => panic!("expected the lost grant to show: {other:?}"),
    }
}

#[test]
fn growing_from_three_to_five_survives_a_crash_mid_rescan_and_two_losses_after() {
    // Twelve names, each granted by a different pair of the three.
    let names: Vec<LeaseName> = (0..12).map(|i| named(&format!("job-{i}"))).collect();
    let mut run = Run {
        net: Net::new(
            common::fresh_nodes(3, |n| u64::from(n.0)),
            Micros::from_millis(1),
        ),
        next: 1,
    };
    let mut tokens = Vec::new();
    for (i, lease) in names.iter().enumerate() {
        let left_out = NodeId(1 + (i % 3) as u16);
        run.net.cut = [left_out].into();
        let at = 1 + ((i + 1) % 3) as u16;
        match run.call_on(at, lease, acquire("a")) {
            Ok(Outcome::Granted { token, .. }) => tokens.push(token),
            other => panic!("grant of {lease}: {other:?}"),
        }
    }
    run.net.cut.clear();

    // Joint configuration {1,2,3} + {1,...,5}; 4 and 5 join empty.
    let now = run.net.now;
    let joint = |id, incarnation, states| {
        node_with(
            id,
            (2, &[1, 2, 3], &[1, 2, 3, 4, 5]),
            incarnation,
            states,
            now,
        )
    };
    let old: Vec<_> = (1..=3).map(|id| run.states(id, &names)).collect();
    run.net = Net::new(
        vec![
            joint(1, 2, old[0].clone()),
            joint(2, 2, old[1].clone()),
            joint(3, 2, old[2].clone()),
            joint(4, 1, Vec::new()),
            joint(5, 1, Vec::new()),
        ],
        Micros::from_millis(1),
    );
    run.net.now = now;
    for i in 0..3 {
        run.net.nodes[i].start_rescan(now);
    }
    // Node 1 crashes a moment into its rescan and restarts on what it
    // made durable; the rescan is started again, as the coordinator
    // resumes a change.
    let soon = run.net.now.plus(Micros::from_millis(2));
    run.net.run_until(soon);
    let now = run.net.now;
    let kept = run.states(1, &names);
    run.net.nodes[0] = node_with(1, (2, &[1, 2, 3], &[1, 2, 3, 4, 5]), 3, kept, now);
    run.net.nodes[0].start_rescan(now);
    run.finish_rescans();

    // Five members; then 1 and 2 are lost. {3, 4, 5} is a majority and
    // must know every grant.
    let now = run.net.now;
    let five = |id, incarnation, states| {
        node_with(id, (3, &[1, 2, 3, 4, 5], &[]), incarnation, states, now)
    };
    let states: Vec<_> = (3..=5).map(|id| run.states(id, &names)).collect();
    run.net = Net::new(
        vec![
            dead(1, now),
            dead(2, now),
            five(3, 3, states[0].clone()),
            five(4, 2, states[1].clone()),
            five(5, 2, states[2].clone()),
        ],
        Micros::from_millis(1),
    );
    run.net.now = now;
    run.net.cut.extend([NodeId(1), NodeId(2)]);
    for (lease, token) in names.iter().zip(&tokens) {
        match run.call_on(5, lease, acquire("b")) {
            Ok(Outcome::Conflict(LeaseView::Held {
                holder, token: t, ..
            })) => {
                assert_eq!((holder.as_str(), t), ("a", *token), "{lease}");
            }
            other => panic!("{lease}: b must be refused: {other:?}"),
        }
    }
}

/// `old` restarted in configuration `members` (moving to `joining`), the
/// epoch after its own, on what it made durable of `names`, its token
/// floor included.
fn restart(
    old: &Node,
    members: &[u16],
    joining: &[u16],
    names: &[LeaseName],
    now: Instant,
) -> Node {
    let mut config = old.config().clone();
    config.incarnation += 1;
    config.promise_horizon = 8 * HORIZON_STEP * u64::from(config.incarnation);
    config.token_floor = old.token_floor();
    config.configuration = configuration(old.epoch().0 + 1, members, joining);
    let states: Vec<_> = names
        .iter()
        .filter_map(|n| old.acceptor_state(n).map(|s| (n.clone(), s)))
        .collect();
    Node::new(config, states, now).expect("a valid config")
}

/// A node joining empty in the epoch after `like`'s, compacting as it does.
fn joiner(id: u16, like: &Node, members: &[u16], joining: &[u16], now: Instant) -> Node {
    let mut config = like.config().clone();
    config.node = NodeId(id);
    config.incarnation = 1;
    config.promise_horizon = 0;
    config.token_floor = Token(0);
    config.configuration = configuration(like.epoch().0 + 1, members, joining);
    config.seed = u64::from(id);
    Node::new(config, [], now).expect("a valid config")
}

#[test]
fn a_compacted_names_floor_reaches_the_nodes_that_join_two_replacements_on() {
    let compaction = Compaction {
        idle_after: Some(Micros::from_millis(3_000)),
        scan_every: Micros::from_millis(500),
        ..Compaction::default()
    };
    let nodes = common::fresh_nodes_tuned(
        3,
        |n| u64::from(n.0),
        |config| {
            config.timing.request_deadline = Micros::from_millis(1_000);
            config.compaction = compaction;
        },
    );
    let mut run = Run {
        net: Net::new(nodes, Micros::from_millis(1)),
        next: 1,
    };
    let job = named("nightly-report");
    let mut last = Token(0);
    for holder in ["a", "b", "c"] {
        last = match run.call_on(1, &job, acquire(holder)) {
            Ok(Outcome::Granted { token, .. }) => token,
            other => panic!("grant: {other:?}"),
        };
        let release = Op::Release {
            holder: HolderId::new(holder).unwrap(),
            token: last,
        };
        run.call_on(1, &job, release).unwrap();
    }
    let until = run.net.now.plus(Micros::from_millis(5_000));
    run.net.run_until(until);
    for n in &run.net.nodes {
        assert!(n.acceptor_state(&job).is_none(), "compacted everywhere");
        assert_eq!(n.token_floor(), last);
    }
    let names = [job.clone()];

    // Replace 3 by 4, then 2 by 5, each with the rescan.
    let steps: [(&[u16], &[u16], u16, u16); 2] = [
        (&[1, 2, 3], &[1, 2, 4], 3, 4),
        (&[1, 2, 4], &[1, 4, 5], 2, 5),
    ];
    for (old, new, gone, joins) in steps {
        let now = run.net.now;
        let index = |id: u16| usize::from(id - 1);
        let mut next: Vec<Node> = Vec::new();
        for id in 1..=5u16 {
            let n = if old.contains(&id) && id != gone {
                restart(&run.net.nodes[index(id)], old, new, &names, now)
            } else if id == joins {
                joiner(id, &run.net.nodes[0], old, new, now)
            } else {
                dead(id, now)
            };
            next.push(n);
        }
        run.net = Net::new(next, Micros::from_millis(1));
        run.net.now = now;
        run.net.cut = (1..=5u16)
            .filter(|id| !(old.contains(id) || *id == joins) || *id == gone)
            .map(NodeId)
            .collect();
        for &id in old.iter().filter(|id| **id != gone) {
            run.net.nodes[index(id)].start_rescan(now);
        }
        run.finish_rescans();
        assert_eq!(
            run.net.nodes[index(joins)].token_floor(),
            last,
            "node {joins}"
        );
    }

    // {1, 4, 5}, and node 1 down: the quorum {4, 5} holds only nodes that
    // joined after the name was compacted. Its next grant is above every
    // earlier token.
    let now = run.net.now;
    let mut next: Vec<Node> = (1..=5u16).map(|id| dead(id, now)).collect();
    for id in [4u16, 5] {
        next[usize::from(id - 1)] = restart(
            &run.net.nodes[usize::from(id - 1)],
            &[1, 4, 5],
            &[],
            &names,
            now,
        );
    }
    run.net = Net::new(next, Micros::from_millis(1));
    run.net.now = now;
    run.net.cut = [1, 2, 3].into_iter().map(NodeId).collect();
    match run.call_on(5, &job, acquire("d")) {
        Ok(Outcome::Granted { token, .. }) => assert!(token > last, "{token:?} after {last:?}"),
        other => panic!("a grant of the compacted name: {other:?}"),
    }
}

#[test]
fn a_rescan_goes_on_through_a_partition_and_ends_once_a_quorum_answers() {
    // Replace 3 by 4 with node 2 cut off at first: the joint quorum needs
    // node 2, so neither the names nor the floor can be carried.
    assert_eq!(rescan_with_node_2_cut_for(Micros::from_millis(5_000)), 1);
}

#[test]
fn a_lost_floor_message_is_sent_again_and_the_rescan_ends() {
    // Node 2 misses only the first RaiseFloor: every name is carried in
    // the first pass, and the rescan waits for the floor alone.
    assert_eq!(rescan_with_node_2_cut_for(Micros::ZERO), 1);
}

/// Replace 3 by 4 with node 2 cut off for `cut_for` from the rescan's
/// start; then run the rescan to its end. Names carried.
fn rescan_with_node_2_cut_for(cut_for: Micros) -> u64 {
    let mut run = granted_at_the_first_epoch();
    let now = run.net.now;
    let names = [name()];
    let joint: Vec<Node> = (1..=4u16)
        .map(|id| match id {
            1 | 2 => restart(
                &run.net.nodes[usize::from(id - 1)],
                &[1, 2, 3],
                &[1, 2, 4],
                &names,
                now,
            ),
            3 => dead(3, now),
            _ => joiner(4, &run.net.nodes[0], &[1, 2, 3], &[1, 2, 4], now),
        })
        .collect();
    run.net = Net::new(joint, Micros::from_millis(1));
    run.net.now = now;
    run.net.cut = [NodeId(2), NodeId(3)].into();
    run.net.nodes[0].start_rescan(now);
    // Whatever the rescan sent meanwhile to node 2 is lost: its first
    // floor message at least.
    run.net.run_until(now.plus(cut_for));
    if cut_for > Micros::ZERO {
        assert!(
            run.net.nodes[0].rescanning(),
            "no quorum: the rescan goes on"
        );
        assert_eq!(run.net.nodes[0].carried_names(), 0);
    }
    // Node 2 is back: the rescan carries the name and the floor, and ends.
    run.net.cut = [NodeId(3)].into();
    run.finish_rescans();
    assert!(run.state(2).is_some(), "node 2 now holds the grant");
    run.net.nodes[0].carried_names()
}

/// Three fresh nodes at the first epoch, with `a` granted the name
/// through node 1.
fn granted_at_the_first_epoch() -> Run {
    let mut run = Run {
        net: Net::new(
            common::fresh_nodes(3, |n| u64::from(n.0)),
            Micros::from_millis(1),
        ),
        next: 1,
    };
    match run.call(1, acquire("a")) {
        Ok(Outcome::Granted { .. }) => run,
        other => panic!("the first grant: {other:?}"),
    }
}

fn refused_to_b_while_a_holds(answer: Result<Outcome, Failure>) {
    match answer {
        Ok(Outcome::Conflict(LeaseView::Held { holder, .. })) => assert_eq!(holder.as_str(), "a"),
        other => panic!("b must be refused while a holds the name: {other:?}"),
    }
}

#[test]
fn a_node_behind_adopts_the_later_configuration_and_its_request_completes() {
    let mut run = granted_at_the_first_epoch();
    let later = configuration(2, &[1, 2, 3], &[]);
    let now = run.net.now;
    run.net.nodes[0].reconfigure(now, later.clone());
    // Node 2 can reach node 1 only: its round's messages are answered with
    // node 1's configuration, which it adopts, and its round asks again.
    run.net.cut.insert(NodeId(3));
    refused_to_b_while_a_holds(run.call(2, acquire("b")));
    assert_eq!(run.net.nodes[1].configuration(), &later);
    assert_eq!(
        run.net.nodes[2].epoch(),
        Epoch::FIRST,
        "node 3 heard nothing"
    );

    // Node 3 is reached again: the first message it gets from a node of
    // the later epoch makes it answer with its own, and learn the later.
    run.net.cut.clear();
    run.net.cut.insert(NodeId(1));
    refused_to_b_while_a_holds(run.call(2, acquire("b")));
    assert_eq!(run.net.nodes[2].configuration(), &later);
}

#[test]
fn a_message_of_an_older_epoch_changes_nothing_and_is_answered_with_the_configuration() {
    // Once a majority has moved on, a round of the old epoch gathers no
    // quorum: what a change's rescan carries cannot be overtaken.
    let mut run = granted_at_the_first_epoch();
    let now = run.net.now;
    let later = configuration(2, &[1, 2, 3], &[]);
    let two = &mut run.net.nodes[1];
    two.reconfigure(now, later.clone());
    let written: Vec<_> = std::iter::from_fn(|| two.poll_write()).collect();
    assert!(
        matches!(written.as_slice(), [w] if w.record == Record::Configuration(later.clone())),
        "the configuration is written before the node acts under it: {written:?}"
    );
    two.handle_durable(now, written[0].id);
    let before = two.acceptor_state(&name());
    let ballot = Ballot {
        counter: 1 << 40,
        node: 1,
        incarnation: 1,
    };
    let prepare = Message::Prepare {
        name: name(),
        ballot,
    };
    let first = Configuration::first(ids(&[1, 2, 3])).stamp();
    two.handle_message(now, NodeId(1), first, prepare);
    assert!(two.poll_write().is_none(), "no promise was made");
    assert_eq!(two.acceptor_state(&name()), before);
    let sent: Vec<Transmit> = std::iter::from_fn(|| two.poll_transmit()).collect();
    assert_eq!(
        sent,
        vec![Transmit {
            to: NodeId(1),
            stamp: later.stamp(),
            message: Message::Configuration(later),
        }]
    );
}

#[test]
fn a_round_under_way_asks_again_under_the_new_quorums_once_they_are_durable() {
    let mut run = granted_at_the_first_epoch();
    let now = run.net.now;
    let one = &mut run.net.nodes[0];
    one.submit(now, RequestId(99), name(), acquire("b"));
    common::sync_all_writes(one, now);
    let first: Vec<Transmit> = std::iter::from_fn(|| one.poll_transmit()).collect();
    let stamp = one.stamp();
    assert!(!first.is_empty() && first.iter().all(|t| t.stamp == stamp));

    // Node 4 joins: the round's answers so far counted under {1,2,3}.
    let joint = configuration(2, &[1, 2, 3], &[1, 2, 4]);
    let theirs = joint.stamp();
    one.handle_message(now, NodeId(2), theirs, Message::Configuration(joint));
    assert_eq!(one.epoch(), Epoch(2));
    assert!(
        one.poll_transmit().is_none(),
        "nothing leaves under the new configuration before it is durable"
    );
    common::sync_all_writes(one, now);
    let again: Vec<Transmit> = std::iter::from_fn(|| one.poll_transmit()).collect();
    assert!(!again.is_empty(), "the round asked again");
    assert!(again.iter().all(|t| t.stamp == theirs));
    // {1, 2} is a majority of both lists: the look asks node 2 again, with
    // a new look, whose answers count under the joint quorums.
    let peeks = |sent: &[Transmit]| -> Vec<u64> {
        sent.iter()
            .filter_map(|t| match t.message {
                Message::Peek { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    };
    let (before, after) = (peeks(&first), peeks(&again));
    assert!(!after.is_empty() && after.iter().all(|id| !before.contains(id)));
}

/// The scylladb#5251 replace, driven by the coordinator on node 1: a grant
/// accepted by nodes 1 and 3 only; node 3 lost; node 4 joins empty; node 1
/// moves the members to {1, 2, 4}; then node 1 goes down too and `b` asks
/// through node 4. Returns that answer, the grant's token, and the nodes.
fn coordinated_replace(rules: Rules) -> (Result<Outcome, Failure>, Token, Vec<Node>) {
    let (mut run, token) = granted_by_1_and_3(rules);

    // Node 3 is lost; node 4 starts empty under the joint configuration,
    // as a joining node learns it from the cluster.
    let now = run.net.now;
    let mut nodes = std::mem::take(&mut run.net.nodes);
    let like = nodes[0].clone();
    nodes[2] = dead(3, now);
    nodes.push(joiner(4, &like, &[1, 2, 3], &[1, 2, 4], now));
    run.net = Net::new(nodes, Micros::from_millis(1));
    run.net.now = now;
    run.net.cut = [NodeId(3)].into();
    run.net.nodes[0]
        .change_members(now, ids(&[1, 2, 4]))
        .expect("the change starts");
    run.finish_change(1);
    let after = configuration(3, &[1, 2, 4], &[]);
    assert_eq!(run.net.nodes[0].configuration(), &after);

    // Node 1 goes down: {2, 4} decides, and node 4 learns the final
    // configuration from node 2 if the coordinator's word was not enough.
    run.net.cut.insert(NodeId(1));
    let answer = run.call(4, acquire("b"));
    (answer, token, run.net.nodes)
}

#[test]
fn the_coordinator_replaces_a_lost_node_without_losing_a_grant() {
    let (answer, token, nodes) = coordinated_replace(Rules::default());
    match answer {
        Ok(Outcome::Conflict(LeaseView::Held {
            holder, token: t, ..
        })) => assert_eq!((holder.as_str(), t), ("a", token)),
        other => panic!("b must be refused while a holds the name: {other:?}"),
    }
    let after = configuration(3, &[1, 2, 4], &[]);
    for id in [2, 4] {
        assert_eq!(nodes[id - 1].configuration(), &after, "node {id}");
    }
}

#[test]
fn a_coordinator_that_skips_the_rescan_loses_the_grant() {
    // The same change with the rescan left out: the new quorum {2, 4}
    // never heard of a's grant, and gives b the name with a reused token.
    let rules = Rules {
        bugs: tenure_core::Bugs::inject(tenure_core::Bug::SkipRescan),
        ..Rules::default()
    };
    let (answer, token, _) = coordinated_replace(rules);
    match answer {
        Ok(Outcome::Granted { token: t, .. }) => assert!(t <= token, "{t:?} vs {token:?}"),
        other => panic!("expected the lost grant to show: {other:?}"),
    }
}

#[test]
fn asking_again_resumes_a_change_and_another_change_waits_for_it() {
    let mut run = granted_at_the_first_epoch();
    let now = run.net.now;
    // Node 3 is cut off: it cannot record, but 1 and 2 are a majority.
    run.net.cut.insert(NodeId(3));
    let one = &mut run.net.nodes[0];
    one.change_members(now, ids(&[1, 2]))
        .expect("a shrink starts");
    assert_eq!(one.change_step(), Some(ChangeStep::Recording));
    assert_eq!(
        one.change_members(now, ids(&[1, 2, 3, 4])),
        Err(ChangeError::UnderWay {
            under_way: ids(&[1, 2])
        })
    );
    // Node 1 restarts on its durable state, which holds the joint
    // configuration; asking for the same members resumes the change.
    let mut config = one.config().clone();
    config.incarnation += 1;
    config.promise_horizon = 8 * HORIZON_STEP;
    let states: Vec<_> = one
        .acceptor_state(&name())
        .map(|s| (name(), s))
        .into_iter()
        .collect();
    run.net.nodes[0] = Node::new(config, states, now).expect("a valid config");
    assert_eq!(
        run.net.nodes[0].change_step(),
        None,
        "a restart coordinates nothing"
    );
    run.net.nodes[0]
        .change_members(now, ids(&[2, 1]))
        .expect("the change resumes");
    run.finish_change(1);
    let after = configuration(3, &[1, 2], &[]);
    assert_eq!(run.net.nodes[0].configuration(), &after);
    // The two members serve the name on their own.
    refused_to_b_while_a_holds(run.call(2, acquire("b")));
    assert_eq!(run.net.nodes[1].configuration(), &after);
    // Asking for the members there are changes nothing.
    let now = run.net.now;
    assert_eq!(run.net.nodes[0].change_members(now, ids(&[1, 2])), Ok(()));
    assert_eq!(run.net.nodes[0].change_step(), None);
}

#[test]
fn two_changes_begun_at_once_on_two_nodes_never_both_take_effect() {
    // Node 1 grows to {1,2,3,4} while node 3 grows to {1,2,3,5}: two
    // configurations of epoch 2. Node 2 records the first it hears of;
    // only that change reaches a majority of {1,2,3}, and the other's
    // coordinator adopts the winner's final configuration.
    let mut run = granted_at_the_first_epoch();
    let now = run.net.now;
    let mut nodes = std::mem::take(&mut run.net.nodes);
    let like = nodes[0].clone();
    nodes.push(joiner(4, &like, &[1, 2, 3], &[1, 2, 3, 4], now));
    nodes.push(joiner(5, &like, &[1, 2, 3], &[1, 2, 3, 5], now));
    run.net = Net::new(nodes, Micros::from_millis(1));
    run.net.now = now;
    run.net.nodes[0]
        .change_members(now, ids(&[1, 2, 3, 4]))
        .expect("node 1's change starts");
    run.net.nodes[2]
        .change_members(now, ids(&[1, 2, 3, 5]))
        .expect("node 3's change starts");
    let until = run.net.now.plus(Micros::from_millis(10_000));
    run.net.run_until(until);

    let finals: Vec<&Configuration> = run
        .net
        .nodes
        .iter()
        .map(Node::configuration)
        .filter(|c| c.epoch == Epoch(3))
        .collect();
    assert!(finals.len() >= 3, "a majority moved on: {finals:?}");
    assert!(finals.windows(2).all(|w| w[0] == w[1]), "{finals:?}");
    for n in &run.net.nodes[..3] {
        assert_eq!(n.configuration(), finals[0], "node {}", n.id());
        assert_eq!(n.change_step(), None, "node {}", n.id());
    }
    // The name is still a's, under the winner's members.
    refused_to_b_while_a_holds(run.call(2, acquire("b")));
}

#[test]
fn three_changes_begun_at_once_on_three_nodes_end_in_one() {
    // Nodes 1, 2 and 3 each begin a different change at once: each holds
    // a joint configuration of epoch 2 that nobody else will record, so
    // none can come into force. Once a coordinator knows that, it begins
    // its change again at epoch 3, which the others adopt; the cluster
    // ends in one configuration, and the grant made before is kept.
    let mut run = granted_at_the_first_epoch();
    let now = run.net.now;
    let mut nodes = std::mem::take(&mut run.net.nodes);
    let like = nodes[0].clone();
    for (id, joining) in [(4, [1, 2, 3, 4]), (5, [1, 2, 3, 5]), (6, [1, 2, 3, 6])] {
        nodes.push(joiner(id, &like, &[1, 2, 3], &joining, now));
    }
    run.net = Net::new(nodes, Micros::from_millis(1));
    run.net.now = now;
    for (at, new) in [(0, 4), (1, 5), (2, 6)] {
        run.net.nodes[at]
            .change_members(now, ids(&[1, 2, 3, new]))
            .expect("each change starts");
    }
    let until = run.net.now.plus(Micros::from_millis(30_000));
    run.net.run_until(until);

    let settled: Vec<&Configuration> = run.net.nodes[..3].iter().map(Node::configuration).collect();
    assert!(
        settled.windows(2).all(|w| w[0] == w[1]) && settled[0].joining.is_empty(),
        "the members agree on one configuration, no change under way: {settled:?}"
    );
    assert_eq!(settled[0].members.len(), 4, "{settled:?}");
    for n in &run.net.nodes[..3] {
        assert_eq!(n.change_step(), None, "node {}", n.id());
    }
    refused_to_b_while_a_holds(run.call(2, acquire("b")));
}
