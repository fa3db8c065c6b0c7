//! The steps that share the two clusters: each runs both systems, taking
//! turns (round by round, or each level in two halves), and keeps the
//! figures of each in its `SystemResults`.

use crate::clients::{Etcd, Tenure};
use crate::election::{self, Contest, ElectionResults};
use crate::failover::{self, LetGo};
use crate::procs;
use crate::sizes::LEVELS;
use crate::stats::Latencies;
use crate::workloads::{self, Cycles, Sequential};
use crate::{Run, Shared};
use anyhow::{Context, Result};
use std::time::Duration;

/// The shared clusters of a run whose shared step is running.
fn clusters(shared: &mut Option<Shared>) -> &mut Shared {
    shared
        .as_mut()
        .expect("the shared clusters run before a shared step")
}

pub(crate) fn sequential(run: &mut Run) -> Result<()> {
    let Run {
        shared,
        tenure: t,
        etcd: e,
        progress,
        sizes,
        id,
        ..
    } = run;
    let Shared { etcd, tenure } = clusters(shared);
    progress.next("sequential latency, tenure and etcd taking turns round by round");
    let leader = etcd.leader()?;
    let mut tc = Tenure::new(&tenure.urls, 0, "seq".into());
    let mut ec = Etcd::new(&etcd.urls, leader);
    let (mut t_seq, mut e_seq) = (Sequential::default(), Sequential::default());
    let warm = (sizes.sequential / 10).max(10);
    for i in 0..warm + sizes.sequential {
        let record = i >= warm;
        let name = format!("seq-{id}-{i}");
        let mut tenure_round = || {
            t_seq
                .round(&mut tc, &name, record, |_| None)
                .context("tenure sequential")
        };
        let mut etcd_round = || {
            e_seq
                .round(&mut ec, &name, record, |c: &Etcd| Some(c.last_txn))
                .context("etcd sequential")
        };
        if i % 2 == 0 {
            tenure_round()?;
            etcd_round()?;
        } else {
            etcd_round()?;
            tenure_round()?;
        }
    }
    t.sequential = Some(t_seq);
    e.sequential = Some(e_seq);
    Ok(())
}

pub(crate) fn cycles(run: &mut Run) -> Result<()> {
    let Run {
        shared,
        tenure: t,
        etcd: e,
        progress,
        sizes,
        id,
        ..
    } = run;
    let Shared { etcd, tenure } = clusters(shared);
    let half = Duration::from_millis(sizes.cycle_secs * 500);
    for n in LEVELS {
        progress.next(&format!(
            "cycles with {n} clients, tenure and etcd taking turns"
        ));
        let mut t_level: Option<Cycles> = None;
        let mut e_level: Option<Cycles> = None;
        for part in 0..2 {
            let urls = tenure.urls.clone();
            let tc = workloads::cycles(n, half, &format!("t{id}-{n}-{part}"), move |i| {
                Tenure::new(&urls, i, format!("c{i}"))
            });
            t_level = Some(match t_level {
                Some(prev) => prev.merge(tc),
                None => tc,
            });
            let urls = etcd.urls.clone();
            let ec = workloads::cycles(n, half, &format!("e{id}-{n}-{part}"), move |i| {
                Etcd::new(&urls, i)
            });
            e_level = Some(match e_level {
                Some(prev) => prev.merge(ec),
                None => ec,
            });
        }
        t.cycles.extend(t_level);
        e.cycles.extend(e_level);
    }
    t.rss_kib = Some(procs::rss_kib_per_node(&tenure.nodes));
    e.rss_kib = Some(procs::rss_kib_per_node(&etcd.nodes));
    Ok(())
}

pub(crate) fn failover(run: &mut Run) -> Result<()> {
    let Run {
        shared,
        tenure: t,
        etcd: e,
        progress,
        sizes,
        id,
        ..
    } = run;
    let Shared { etcd, tenure } = clusters(shared);
    for &ttl_ms in sizes.failover_ttls_ms {
        progress.next(&format!(
            "failover at ttl {} s: tenure, then etcd",
            ttl_ms / 1000
        ));
        let name = format!("fo-{id}-{ttl_ms}");
        t.failover
            .push(failover::tenure(&tenure.urls, &name, ttl_ms, LetGo::Dies)?);
        e.failover
            .push(failover::etcd(&etcd.urls, &name, ttl_ms, LetGo::Dies)?);
    }
    Ok(())
}

pub(crate) fn handoff(run: &mut Run) -> Result<()> {
    let Run {
        shared,
        tenure: t,
        etcd: e,
        progress,
        sizes,
        id,
        ..
    } = run;
    let Shared { etcd, tenure } = clusters(shared);
    progress.next(&format!(
        "graceful handoff, {} times each, taking turns",
        sizes.handoffs
    ));
    let (mut t_handoff, mut e_handoff) = (Latencies::default(), Latencies::default());
    for i in 0..sizes.handoffs {
        let name = format!("ho-{id}-{i}");
        let ttl = workloads::TTL_MS;
        t_handoff.push(failover::tenure(&tenure.urls, &name, ttl, LetGo::Releases)?.takeover);
        e_handoff.push(failover::etcd(&etcd.urls, &name, ttl, LetGo::Releases)?.takeover);
    }
    t.handoff = Some(t_handoff);
    e.handoff = Some(e_handoff);
    Ok(())
}

pub(crate) fn election(run: &mut Run) -> Result<()> {
    let Run {
        shared,
        tenure: t,
        etcd: e,
        progress,
        sizes,
        id,
        ..
    } = run;
    let Shared { etcd, tenure } = clusters(shared);
    progress.next(&format!(
        "election: {} uncontested campaigns each, taking turns",
        sizes.campaigns
    ));
    let (mut te, mut ee) = (ElectionResults::default(), ElectionResults::default());
    let leader = etcd.leader()?;
    let agent = procs::agent(Duration::from_secs(40));
    let (tu, eu) = (&tenure.urls[0], &etcd.urls[leader]);
    let warm = (sizes.campaigns / 10).max(2);
    for i in 0..warm + sizes.campaigns {
        let record = i >= warm;
        let name = format!("elu-{id}-{i}");
        let mut tenure_round = || {
            election::tenure_uncontested(&mut te.uncontested, &agent, tu, &name, record)
                .context("tenure campaign")
        };
        let mut etcd_round = || {
            election::etcd_uncontested(&mut ee.uncontested, &agent, eu, &name, record)
                .context("etcd campaign")
        };
        if i % 2 == 0 {
            tenure_round()?;
            etcd_round()?;
        } else {
            etcd_round()?;
            tenure_round()?;
        }
    }
    progress.next(&format!(
        "election: {} handoffs among 3 candidates each, in halves taking turns",
        sizes.election_handoffs
    ));
    let first = sizes.election_handoffs / 2;
    for (part, rounds) in [first, sizes.election_handoffs - first]
        .into_iter()
        .enumerate()
    {
        let name = format!("elh-{id}-{part}");
        let (times, work) =
            election::tenure_handoffs(&tenure.urls, &name, rounds, Contest::of_three())
                .context("tenure election handoffs")?;
        te.handoff.extend(times);
        let (sum, n) = te.handoff_paxos.get_or_insert_default();
        sum.add(work);
        *n += rounds;
        ee.handoff.extend(
            election::etcd_handoffs(&etcd.urls, &name, rounds, Contest::of_three())
                .context("etcd election handoffs")?,
        );
    }
    t.election = Some(te);
    e.election = Some(ee);
    Ok(())
}

/// 16 clients cycling; a third of the way in, one node of each system is
/// SIGKILLed (tenure: node 1; etcd: the raft leader at that moment). The
/// killed nodes stay dead for the rest of the run.
pub(crate) fn kill(run: &mut Run) -> Result<()> {
    let Run {
        shared,
        tenure: t,
        etcd: e,
        progress,
        sizes,
        id,
        ..
    } = run;
    let Shared { etcd, tenure } = clusters(shared);
    progress.next("tenure: SIGKILL node 1 under 16 clients");
    let urls = tenure.urls.clone();
    let victim = tenure.nodes[0].take();
    t.loss = Some(workloads::node_loss(
        workloads::LossPlan {
            clients: 16,
            run_for: Duration::from_secs(sizes.loss_secs),
            kill_at: Duration::from_secs(sizes.loss_secs / 3),
            victim: 0,
            nodes: 3,
        },
        &format!("t{id}"),
        move |i| Tenure::new(&urls, i, format!("l{i}")),
        move || drop(victim),
    ));

    let leader = etcd.leader()?;
    progress.next(&format!(
        "etcd: SIGKILL the leader (member {}) under 16 clients",
        leader + 1
    ));
    let urls = etcd.urls.clone();
    let victim = etcd.nodes[leader].take();
    e.loss = Some(workloads::node_loss(
        workloads::LossPlan {
            clients: 16,
            run_for: Duration::from_secs(sizes.loss_secs),
            kill_at: Duration::from_secs(sizes.loss_secs / 3),
            victim: leader,
            nodes: 3,
        },
        &format!("e{id}"),
        move |i| Etcd::new(&urls, i),
        move || drop(victim),
    ));
    Ok(())
}
