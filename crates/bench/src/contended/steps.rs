//! The contended steps: each runs both systems, taking turns (each level
//! in two halves, or round by round), and keeps the figures of each.

use super::client::{EtcdTry, TenureTry};
use super::outcome::Tally;
use super::queue::{self, EtcdMutex, QueueRun};
use super::trylock::{self, Kill, TryLockRun};
use super::{
    stampede, Election32, ELECTION_CANDIDATES, KILL_CLIENTS, QUEUE_LEVELS, STAMPEDE_CLIENTS,
    TRYLOCK_LEVELS,
};
use crate::election::{self, Contest};
use crate::procs::{EtcdCluster, TenureCluster};
use crate::{Run, Shared};
use anyhow::Result;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `prev` and `next` as one, for the halves of a level.
fn merged<T>(prev: Option<T>, next: T, merge: fn(T, T) -> T) -> Option<T> {
    Some(match prev {
        Some(p) => merge(p, next),
        None => next,
    })
}

/// The shared clusters of a run whose shared step is running.
fn clusters(shared: &mut Option<Shared>) -> &mut Shared {
    shared
        .as_mut()
        .expect("the shared clusters run before a shared step")
}

/// Each level in two halves, taking turns: tenure, etcd, tenure, etcd.
pub(crate) fn trylock_step(run: &mut Run) -> Result<()> {
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
    let half = Duration::from_millis(sizes.contended_secs * 500);
    for n in TRYLOCK_LEVELS {
        progress.next(&format!(
            "try-lock: {n} clients on one name, tenure and etcd taking turns"
        ));
        let (mut tl, mut el) = (None, None);
        for part in 0..2 {
            let plan = |system: &str| trylock::Plan {
                clients: n,
                run_for: half,
                name: format!("try-{system}{id}-{n}-{part}"),
                kill: None,
            };
            let urls = tenure.urls.clone();
            let r = trylock::run(
                plan("t"),
                |i| TenureTry::new(&urls, i, format!("t{i}")),
                || {},
            );
            tl = merged(tl, r, TryLockRun::merge);
            let urls = etcd.urls.clone();
            let r = trylock::run(
                plan("e"),
                |i| EtcdTry::new(&urls, i, format!("e{i}")),
                || {},
            );
            el = merged(el, r, TryLockRun::merge);
        }
        t.contended.trylock.extend(tl);
        e.contended.trylock.extend(el);
    }
    Ok(())
}

/// Each level in two halves, taking turns.
pub(crate) fn queue_step(run: &mut Run) -> Result<()> {
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
    let half = Duration::from_millis(sizes.contended_secs * 500);
    for n in QUEUE_LEVELS {
        progress.next(&format!(
            "queue: {n} waiters on one name, tenure and etcd taking turns"
        ));
        let (mut tq, mut eq) = (None, None);
        for part in 0..2 {
            let plan = |system: &str| queue::Plan {
                waiters: n,
                run_for: half,
                name: format!("queue-{system}{id}-{n}-{part}"),
                kill: None,
            };
            let urls = tenure.urls.clone();
            let tenure_waiter = |i| TenureTry::new(&urls, i, format!("w{i}"));
            let r = queue::run(plan("t"), tenure_waiter, || {});
            tq = merged(tq, r, QueueRun::merge);
            let urls = etcd.urls.clone();
            let etcd_waiter = |i| EtcdMutex::new(&urls, i, format!("w{i}"));
            let r = queue::run(plan("e"), etcd_waiter, || {});
            eq = merged(eq, r, QueueRun::merge);
        }
        t.contended.queue.extend(tq);
        e.contended.queue.extend(eq);
    }
    Ok(())
}

/// The election step's handoffs among 32 candidates, in two halves taking
/// turns, each on a fresh election; failures are counted and ridden out.
pub(crate) fn election32_step(run: &mut Run) -> Result<()> {
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
        "election: {} handoffs among {ELECTION_CANDIDATES} candidates each, in halves taking turns",
        sizes.election32_handoffs
    ));
    let mut te = Election32 {
        candidates: ELECTION_CANDIDATES,
        ..Election32::default()
    };
    let mut ee = Election32 {
        candidates: ELECTION_CANDIDATES,
        ..Election32::default()
    };
    let contest = |tally: &Arc<Mutex<Tally>>| Contest {
        candidates: ELECTION_CANDIDATES,
        failures: Some(tally.clone()),
    };
    let first = sizes.election32_handoffs / 2;
    for (part, rounds) in [first, sizes.election32_handoffs - first]
        .into_iter()
        .enumerate()
    {
        let name = format!("el32-{id}-{part}");
        let tally = Arc::new(Mutex::new(Tally::default()));
        match election::tenure_handoffs(&tenure.urls, &name, rounds, contest(&tally)) {
            Ok((times, _)) => te.handoffs.extend(times),
            Err(err) => {
                te.failed.get_or_insert(format!("{err:#}"));
            }
        }
        te.tally.merge(tally.lock().expect("tally").clone());
        let tally = Arc::new(Mutex::new(Tally::default()));
        match election::etcd_handoffs(&etcd.urls, &name, rounds, contest(&tally)) {
            Ok(times) => ee.handoffs.extend(times),
            Err(err) => {
                ee.failed.get_or_insert(format!("{err:#}"));
            }
        }
        ee.tally.merge(tally.lock().expect("tally").clone());
    }
    t.contended.election32 = Some(te);
    e.contended.election32 = Some(ee);
    Ok(())
}

/// Rounds taking turns one by one, each on a name never used before.
pub(crate) fn stampede_step(run: &mut Run) -> Result<()> {
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
        "stampede: {STAMPEDE_CLIENTS} clients on a fresh name, {} rounds each, taking turns",
        sizes.stampede_rounds
    ));
    let mut tp = stampede::Pool::new(STAMPEDE_CLIENTS, |i| {
        TenureTry::new(&tenure.urls, i, format!("s{i}"))
    });
    let mut ep = stampede::Pool::new(STAMPEDE_CLIENTS, |i| {
        EtcdTry::new(&etcd.urls, i, format!("s{i}"))
    });
    for i in 0..sizes.stampede_rounds {
        let name = format!("stampede-{id}-{i}");
        if i % 2 == 0 {
            tp.round(&name);
            ep.round(&name);
        } else {
            ep.round(&name);
            tp.round(&name);
        }
    }
    t.contended.stampede = Some(tp.finish());
    e.contended.stampede = Some(ep.finish());
    Ok(())
}

/// Which system a workload under a kill runs on.
#[derive(Clone, Copy)]
enum System {
    Tenure,
    Etcd,
}

impl System {
    /// The letter its names carry.
    fn letter(self) -> &'static str {
        match self {
            System::Tenure => "t",
            System::Etcd => "e",
        }
    }
}

/// A workload on fresh clusters (the shared ones have a dead node after
/// `kill`): tenure, then etcd, each with one node SIGKILLed a third of the
/// way in, as the `kill` step chooses: tenure's node 1, etcd's raft leader
/// at that moment. `work(system, urls, kill, victim)` runs it on one
/// system, calling `victim` at the kill's time; `what` names it.
fn under_a_kill<R>(
    run: &mut Run,
    what: &str,
    mut work: impl FnMut(System, &[String], Kill, Box<dyn FnOnce()>) -> R,
) -> Result<(R, R)> {
    let Run {
        opts,
        progress,
        sizes,
        tls,
        ..
    } = run;
    progress.next(&format!("{what} under a node kill: fresh clusters"));
    let mut etcd = EtcdCluster::start(&opts.data, tls.as_ref())?;
    let mut tenure = TenureCluster::start(&opts.tenure_bin, &opts.data, tls.as_ref())?;
    let at = Duration::from_secs(sizes.loss_secs / 3);

    progress.next(&format!(
        "{what}: tenure, SIGKILL node 1 at {} s",
        at.as_secs()
    ));
    let victim = tenure.nodes[0].take();
    let kill = Kill { at, victim: 0 };
    let t = work(
        System::Tenure,
        &tenure.urls,
        kill,
        Box::new(move || drop(victim)),
    );

    let leader = etcd.leader()?;
    progress.next(&format!(
        "{what}: etcd, SIGKILL the leader (member {}) at {} s",
        leader + 1,
        at.as_secs()
    ));
    let victim = etcd.nodes[leader].take();
    let kill = Kill { at, victim: leader };
    let e = work(
        System::Etcd,
        &etcd.urls,
        kill,
        Box::new(move || drop(victim)),
    );
    Ok((t, e))
}

/// Try-lock at `KILL_CLIENTS` clients under a node kill.
pub(crate) fn trylock_kill_step(run: &mut Run) -> Result<()> {
    let (run_for, id) = (Duration::from_secs(run.sizes.loss_secs), run.id.clone());
    let what = format!("try-lock, {KILL_CLIENTS} clients");
    let (t, e) = under_a_kill(run, &what, |system, urls, kill, victim| {
        let plan = trylock::Plan {
            clients: KILL_CLIENTS,
            run_for,
            name: format!("try-kill-{}{id}", system.letter()),
            kill: Some(kill),
        };
        match system {
            System::Tenure => {
                trylock::run(plan, |i| TenureTry::new(urls, i, format!("k{i}")), victim)
            }
            System::Etcd => trylock::run(plan, |i| EtcdTry::new(urls, i, format!("k{i}")), victim),
        }
    })?;
    run.tenure.contended.trylock_kill = Some(t);
    run.etcd.contended.trylock_kill = Some(e);
    Ok(())
}

/// The queue of `KILL_CLIENTS` waiters under a node kill.
pub(crate) fn queue_kill_step(run: &mut Run) -> Result<()> {
    let (run_for, id) = (Duration::from_secs(run.sizes.loss_secs), run.id.clone());
    let what = format!("queue, {KILL_CLIENTS} waiters");
    let (t, e) = under_a_kill(run, &what, |system, urls, kill, victim| {
        let plan = queue::Plan {
            waiters: KILL_CLIENTS,
            run_for,
            name: format!("queue-kill-{}{id}", system.letter()),
            kill: Some(kill),
        };
        match system {
            System::Tenure => {
                queue::run(plan, |i| TenureTry::new(urls, i, format!("q{i}")), victim)
            }
            System::Etcd => queue::run(plan, |i| EtcdMutex::new(urls, i, format!("q{i}")), victim),
        }
    })?;
    run.tenure.contended.queue_kill = Some(t);
    run.etcd.contended.queue_kill = Some(e);
    Ok(())
}
