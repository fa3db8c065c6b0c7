//! Compaction of dead names, through whole nodes on a simulated network:
//! a name nobody uses is deleted from every member, and what a client can
//! see of it afterwards never goes back (docs/storage.md, "Space").

mod common;

use common::net::Net;
use tenure_core::{
    Compaction, Failure, HolderId, LeaseName, LeaseView, LockDelay, Micros, Node, NodeId, Op,
    Outcome, RequestId, Token, Ttl, HORIZON_STEP,
};

const IDLE_AFTER: Micros = Micros::from_millis(3_000);

fn nodes() -> Vec<Node> {
    common::fresh_nodes_tuned(
        3,
        |node| u64::from(node.0),
        |config| {
            config.timing.request_deadline = Micros::from_millis(1_000);
            config.compaction = Compaction {
                idle_after: Some(IDLE_AFTER),
                scan_every: Micros::from_millis(500),
                ..Compaction::default()
            };
        },
    )
}

fn name(s: &str) -> LeaseName {
    LeaseName::new(s).unwrap()
}

fn holder(s: &str) -> HolderId {
    HolderId::new(s).unwrap()
}

fn acquire(h: &str) -> Op {
    Op::Acquire {
        holder: holder(h),
        ttl: Ttl::from_millis(1_000).unwrap(),
        lock_delay: LockDelay::NONE,
        wait: Micros::ZERO,
    }
}

struct Run {
    net: Net,
    next: u64,
}

impl Run {
    fn new() -> Run {
        Run {
            net: Net::new(nodes(), Micros::from_millis(1)),
            next: 1,
        }
    }

    /// Send `op` through node `at` (1-based) and run until its answer.
    fn call(&mut self, at: usize, lease: &str, op: Op) -> Result<Outcome, Failure> {
        let request = RequestId(self.next);
        self.next += 1;
        let within = Micros::from_millis(2_000);
        self.net.call(at - 1, request, &name(lease), op, within)
    }

    fn wait(&mut self, d: Micros) {
        let until = self.net.now.plus(d);
        self.net.run_until(until);
    }

    fn stored(&self, lease: &str) -> Vec<bool> {
        let n = name(lease);
        self.net
            .nodes
            .iter()
            .map(|node| node.acceptor_state(&n).is_some())
            .collect()
    }
}

fn granted(result: Result<Outcome, Failure>) -> Token {
    match result {
        Ok(Outcome::Granted { token, .. }) => token,
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[test]
fn a_dead_name_is_deleted_everywhere_and_what_clients_see_never_goes_back() {
    let mut run = Run::new();
    // Another name raises the token floor further than this one's token.
    for _ in 0..3 {
        let t = granted(run.call(2, "busy", acquire("b")));
        run.call(
            2,
            "busy",
            Op::Release {
                holder: holder("b"),
                token: t,
            },
        )
        .unwrap();
    }
    let token = granted(run.call(1, "job-1", acquire("a")));
    run.call(
        1,
        "job-1",
        Op::Release {
            holder: holder("a"),
            token,
        },
    )
    .unwrap();
    assert_eq!(run.stored("job-1"), [true, true, true]);

    // Short of the idle time nothing goes; after it, from every member.
    run.wait(Micros::from_millis(2_500));
    assert_eq!(run.stored("job-1"), [true, true, true]);
    run.wait(Micros::from_millis(2_000));
    assert_eq!(run.stored("job-1"), [false, false, false]);
    assert_eq!(run.stored("busy"), [false, false, false]);
    for node in &run.net.nodes {
        assert!(node.token_floor() >= Token(3), "{:?}", node.token_floor());
        assert_eq!(node.compacted_names(), 2);
    }

    // A read reports it free at a token no lower than its last, and
    // writes nothing back.
    match run.call(3, "job-1", Op::Read) {
        Ok(Outcome::Observed(LeaseView::Free { token: seen })) => assert!(seen >= token),
        other => panic!("a read of a compacted name: {other:?}"),
    }
    // The old grant's renewal fails and does not bring the name back.
    let renewal = run.call(
        2,
        "job-1",
        Op::Renew {
            holder: holder("a"),
            token,
        },
    );
    assert!(matches!(renewal, Ok(Outcome::Conflict(_))), "{renewal:?}");
    assert_eq!(run.stored("job-1"), [false, false, false]);

    // The next grant is above every token the name had.
    let next = granted(run.call(2, "job-1", acquire("c")));
    assert!(next > token, "{next:?} after {token:?}");
    assert_eq!(run.stored("job-1"), [true, true, true]);
}

#[test]
fn a_held_name_stays() {
    let mut run = Run::new();
    let token = granted(run.call(1, "held", acquire("a")));
    for _ in 0..10 {
        run.wait(Micros::from_millis(500));
        let renewed = run.call(
            1,
            "held",
            Op::Renew {
                holder: holder("a"),
                token,
            },
        );
        assert!(
            matches!(renewed, Ok(Outcome::Renewed { .. })),
            "{renewed:?}"
        );
    }
    assert_eq!(run.stored("held"), [true, true, true]);
}

#[test]
fn with_a_member_down_no_name_is_deleted() {
    let mut run = Run::new();
    let token = granted(run.call(1, "job-2", acquire("a")));
    run.call(
        1,
        "job-2",
        Op::Release {
            holder: holder("a"),
            token,
        },
    )
    .unwrap();
    run.net.cut.insert(NodeId(3));
    run.wait(Micros::from_millis(8_000));
    assert_eq!(run.stored("job-2"), [true, true, true]);
    // The writer counts it dead, waiting.
    assert_eq!(run.net.nodes[0].dead_names(), 1);
    // Back, the next scan settles it.
    run.net.cut.clear();
    run.wait(Micros::from_millis(3_000));
    assert_eq!(run.stored("job-2"), [false, false, false]);
    run.wait(Micros::from_millis(11_000));
    assert_eq!(run.net.nodes[0].dead_names(), 0);
}

/// A member's restart raises its promise floor for every name above the
/// ballots an idle node would use: its settles are refused, and the next
/// ones must start above what the refusal showed.
#[test]
fn a_restarted_member_with_a_higher_floor_does_not_stop_compaction() {
    let mut run = Run::new();
    let token = granted(run.call(1, "job-3", acquire("a")));
    run.call(
        1,
        "job-3",
        Op::Release {
            holder: holder("a"),
            token,
        },
    )
    .unwrap();
    let n = name("job-3");
    let state = run.net.nodes[2].acceptor_state(&n).expect("stored");
    let mut config = run.net.nodes[2].config().clone();
    config.incarnation += 1;
    config.promise_horizon = 40 * HORIZON_STEP;
    run.net.nodes[2] = Node::new(config, [(n, state)], run.net.now).expect("restart");
    run.wait(Micros::from_millis(6_000));
    assert_eq!(run.stored("job-3"), [false, false, false]);
}
