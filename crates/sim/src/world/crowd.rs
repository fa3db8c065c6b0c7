//! The contention phase once faults heal: a crowd on one fresh name
//! (see `crate::contend`).

use super::*;

impl World {
    /// Once the cluster is healthy again: a crowd on one fresh name, on
    /// every node at once.
    pub(super) fn start_crowd(&mut self) {
        let name = LeaseName::new(CROWD_NAME).unwrap_or_else(|_| unreachable!());
        let until = self.now + contend::CONTENTION_US;
        let count = self.rng.between(4, 12) as usize;
        self.trace.line(
            self.now,
            format_args!("a crowd of {count} contends for {name}"),
        );
        let serving = self.serving_nodes();
        // In half the runs one node dies mid-way, as a node is killed
        // under a real crowd: a majority stays up, so every request on
        // the others must still be answered in time. Its crowd only tries
        // the lock, as the benchmark's does: a waiter lost with its node
        // stays queued until its wait runs out, and a history with several
        // such open for seconds is beyond the linearizability search.
        // Not after a change of members, whose liveness under contention
        // is a question of its own (docs/membership.md).
        let crash = serving.len() >= 3
            && self.member_plan.is_none()
            && self.crowd_crash_rng.chance(500_000);
        for i in 0..count {
            let clock = self.new_clock(Side::Holder);
            let node = serving[i % serving.len()];
            let waits = self.rng.chance(500_000) && !crash;
            self.crowd.push(Contender::new(
                CROWD + i,
                clock,
                node,
                waits,
                name.clone(),
                until,
            ));
            // Within a millisecond of each other: a stampede on a fresh name.
            let at = self.now + self.rng.below(1_000);
            self.schedule(at, Event::CrowdWake { contender: i });
        }
        if crash {
            let node = serving[self.crowd_crash_rng.below(serving.len() as u64) as usize];
            let at = self.now
                + self
                    .crowd_crash_rng
                    .between(50_000, contend::CONTENTION_US * 3 / 4);
            self.schedule(at, Event::CrowdCrash { node });
        }
    }

    /// Crash `node` under the crowd, unless another node is down (a
    /// majority must stay up); it comes back once the crowd is done. Its
    /// contenders find their connection gone and go on through the next
    /// node, as a client given every node's address does.
    pub(super) fn crash_under_crowd(&mut self, node: usize) {
        let serving = self.serving_nodes();
        if serving.iter().any(|&n| self.nodes[n].node.is_none()) {
            return;
        }
        self.go_down(node);
        let until = self.crowd.iter().map(|c| c.until).max().unwrap_or(self.now);
        self.schedule(until.max(self.now) + 100_000, Event::Restart { node });
        let others: Vec<usize> = serving.into_iter().filter(|&n| n != node).collect();
        for i in 0..self.crowd.len() {
            if self.crowd[i].node != node {
                continue;
            }
            let next = others[i % others.len()];
            let asks = self.crowd[i].lost_node(self.now, next, &mut self.history);
            self.crowd_asks(i, asks);
        }
    }

    pub(super) fn crowd_asks(&mut self, contender: usize, asks: Vec<Ask>) {
        for ask in asks {
            match ask {
                Ask::Send {
                    node,
                    request,
                    op,
                    history,
                } => {
                    let name = LeaseName::new(CROWD_NAME).unwrap_or_else(|_| unreachable!());
                    let client = CROWD + contender;
                    self.trace.line(
                        self.now,
                        format_args!("crowd {contender} -> node {node} #{request} {op:?}"),
                    );
                    let at = self.now + self.rng.between(50, 1_500);
                    self.schedule(
                        at,
                        Event::Submit {
                            node,
                            client,
                            request: (client as u64) << 40 | request,
                            name,
                            op,
                            history,
                        },
                    );
                }
                Ask::WakeAt(at) => self.schedule(at, Event::CrowdWake { contender }),
            }
        }
    }
}
