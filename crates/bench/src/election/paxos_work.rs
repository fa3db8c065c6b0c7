//! The Paxos work of tenure's nodes, summed from their `/metrics`.

use crate::failover;
use anyhow::Result;
use std::time::Duration;

/// Paxos work summed over tenure's nodes, from their metrics.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct PaxosWork {
    pub prepares: u64,
    pub accepts: u64,
    pub nacks: u64,
}

impl PaxosWork {
    pub fn read(urls: &[String]) -> Result<PaxosWork> {
        let agent = crate::procs::agent(Duration::from_secs(5));
        let mut w = PaxosWork::default();
        for u in urls {
            let v = failover::tenure_metric_values(
                &agent,
                u,
                &[
                    r#"tenure_paxos_phases_total{phase="prepare"} "#,
                    r#"tenure_paxos_phases_total{phase="accept"} "#,
                    "tenure_paxos_nacks_received_total ",
                ],
            )?;
            let n = |i: usize| v[i].unwrap_or(0.0) as u64;
            w.prepares += n(0);
            w.accepts += n(1);
            w.nacks += n(2);
        }
        Ok(w)
    }

    pub fn since(self, before: PaxosWork) -> PaxosWork {
        PaxosWork {
            prepares: self.prepares.saturating_sub(before.prepares),
            accepts: self.accepts.saturating_sub(before.accepts),
            nacks: self.nacks.saturating_sub(before.nacks),
        }
    }

    pub fn add(&mut self, other: PaxosWork) {
        self.prepares += other.prepares;
        self.accepts += other.accepts;
        self.nacks += other.nacks;
    }
}
