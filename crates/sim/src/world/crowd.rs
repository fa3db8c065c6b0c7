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
        for i in 0..count {
            let clock = self.new_clock(Side::Holder);
            let node = serving[i % serving.len()];
            let waits = self.rng.chance(500_000);
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
