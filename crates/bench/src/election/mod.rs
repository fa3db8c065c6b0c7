//! Leader election: tenure's `LeaderElection` (crates/client) against etcd's
//! `concurrency.Election`, both driven over HTTP/JSON with ureq like the
//! rest of the benchmark, each doing what its library does.
//!
//! - tenure: the leader is the holder of the lease `name`. `campaign` is
//!   `Lock::acquire`: `PUT /v1/locks/{name}?wait=30000ms` (a long poll,
//!   again on each `409` when the wait runs out), and since a grant won by
//!   a long poll is trusted only from the poll's send time, the client
//!   renews it at once and returns after that renewal. `resign` is the
//!   release (`DELETE` with the token).
//! - etcd: a session (`/v3/lease/grant`, TTL 60 s, as `NewSession`), then
//!   `Campaign`: a txn that puts `pfx/LEASEID` (value: the candidate's id)
//!   with the lease if its create revision is 0, then `waitDeletes`: range
//!   the last key under the prefix created before ours, watch it over the
//!   streamed `/v3/watch` until it is deleted, range again, until none is
//!   left. `Resign` is a txn that deletes our key if its create revision is
//!   still ours. The session is revoked when the candidate leaves.
//!
//! Neither side renews in the background here: every election in the
//! benchmark is over well within both ttls (tenure 10 s, `LeaderElection`'s
//! default; etcd 60 s, `NewSession`'s).
//!
//! `candidates` runs one candidate of each system, `handoffs` drives
//! candidates through leadership handoffs, `paxos_work` reads what tenure's
//! nodes did meanwhile; this file times uncontested campaigns and holds
//! the step's figures.

mod candidates;
mod handoffs;
mod paxos_work;

pub use candidates::{Candidate, EtcdCandidate, Failures, TenureCandidate};
pub use handoffs::{etcd_handoffs, handoffs, tenure_handoffs, Contest, Queued};
pub use paxos_work::PaxosWork;

use crate::stats::Latencies;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Uncontested campaigns, each on an election nobody else is in.
#[derive(Default)]
pub struct Uncontested {
    /// From the start of the campaign to leading, session included (etcd:
    /// grant + txn + range; tenure: long poll answered, + renewal if the
    /// poll waited, which an uncontested one does not).
    pub campaign: Latencies,
    /// etcd: the campaign on a session already open (txn + range).
    /// tenure: the long poll's answer alone (no session to leave out).
    pub campaign_part: Latencies,
    /// `resign`, leader to nobody.
    pub resign: Latencies,
}

impl Uncontested {
    fn push(&mut self, campaign: Duration, part: Duration, resign: Duration) {
        self.campaign.push(campaign);
        self.campaign_part.push(part);
        self.resign.push(resign);
    }
}

/// One uncontested tenure campaign and resignation on a fresh `name`.
pub fn tenure_uncontested(
    out: &mut Uncontested,
    agent: &ureq::Agent,
    base: &str,
    name: &str,
    record: bool,
) -> Result<()> {
    let mut c = TenureCandidate::new(agent, base, name, "solo");
    let t = Instant::now();
    c.campaign(&mut || {})?;
    let campaign = t.elapsed();
    let granted = c.granted_at.context("no grant time")? - t;
    let t = Instant::now();
    c.resign()?;
    if record {
        out.push(campaign, granted, t.elapsed());
    }
    Ok(())
}

/// One uncontested etcd campaign (new session, campaign), resignation,
/// and session close (not timed) on a fresh `name`.
pub fn etcd_uncontested(
    out: &mut Uncontested,
    agent: &ureq::Agent,
    base: &str,
    name: &str,
    record: bool,
) -> Result<()> {
    let t = Instant::now();
    let mut c = EtcdCandidate::open(agent, base, name, "solo")?;
    let session = Instant::now();
    let mut queued = false;
    c.campaign(&mut || queued = true)?;
    let (campaign, part) = (t.elapsed(), session.elapsed());
    if queued {
        bail!("etcd uncontested campaign on {name} had to wait");
    }
    let t = Instant::now();
    c.resign()?;
    let resign = t.elapsed();
    c.close()?;
    if record {
        out.push(campaign, part, resign);
    }
    Ok(())
}

/// What the election step measured for one system.
#[derive(Default)]
pub struct ElectionResults {
    pub uncontested: Uncontested,
    pub handoff: Latencies,
    /// tenure: the Paxos work of the handoff steps, and how many rounds
    /// they had.
    pub handoff_paxos: Option<(PaxosWork, usize)>,
}

impl ElectionResults {
    pub fn json(&mut self, part: &str) -> Value {
        let mut v = json!({
            "campaign_uncontested": self.uncontested.campaign.json(),
            part: self.uncontested.campaign_part.json(),
            "resign": self.uncontested.resign.json(),
            "handoff_resign_to_next_leader": {
                "n": self.handoff.len(),
                "p50_us": crate::stats::round1(self.handoff.us(0.5)),
                "max_us": crate::stats::round1(self.handoff.max_us()),
            },
        });
        if let Some((w, rounds)) = self.handoff_paxos {
            v["handoff_paxos_work"] = json!({
                "rounds": rounds,
                "prepares": w.prepares,
                "accepts": w.accepts,
                "nacks": w.nacks,
                "note": "summed over the 3 nodes for the whole handoff step: the first campaigns, every round, and the candidates leaving at the end",
            });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_names_each_figure() {
        let mut r = ElectionResults::default();
        r.handoff.push(Duration::from_millis(3));
        r.handoff.push(Duration::from_millis(9));
        let v = r.json("campaign_session_open");
        assert!(v["campaign_session_open"].is_object());
        assert!(v["campaign_uncontested"].is_object());
        assert_eq!(v["handoff_resign_to_next_leader"]["n"], 2);
        assert_eq!(v["handoff_resign_to_next_leader"]["max_us"], 9000.0);
    }
}
