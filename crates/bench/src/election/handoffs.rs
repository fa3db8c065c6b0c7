//! Leadership handoffs: a driver sends each candidate, on its own thread,
//! when to campaign and when to resign, and times each resignation to the
//! next leader.

use super::candidates::{Candidate, EtcdCandidate, Failures, TenureCandidate, TENURE_POLL_MS};
use super::paxos_work::PaxosWork;
use crate::failover;
use crate::stats::Latencies;
use anyhow::{bail, Result};
use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How long the driver waits for any one event before giving up.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How the driver knows a candidate is queued behind the leader.
pub enum Queued {
    /// The candidate calls back (etcd: its watch was created).
    Signalled,
    /// tenure: the election's queue (read through the node candidate `i`
    /// talks to, `urls[i]`) holds one more waiter than before its
    /// campaign: its long poll has joined the queue, so a resignation
    /// after that hands leadership on in turn.
    Waiters { urls: Vec<String>, name: String },
}

enum Cmd {
    Campaign,
    Resign { then_leave: bool },
}

enum Event {
    Leads(usize, Instant),
    Queued(usize),
    Resigned(usize, Instant),
    Left(usize),
    Failed(usize, String),
}

struct Driver {
    cmds: Vec<Sender<Cmd>>,
    events: Receiver<Event>,
    stash: VecDeque<Event>,
    queued: Queued,
    agent: ureq::Agent,
}

impl Driver {
    fn send(&self, who: usize, cmd: Cmd) -> Result<()> {
        self.cmds[who]
            .send(cmd)
            .map_err(|_| anyhow::anyhow!("candidate {who} is gone"))
    }

    /// The first event (stashed or new) that `want` accepts.
    fn expect<T>(&mut self, what: &str, want: impl Fn(&Event) -> Option<T>) -> Result<T> {
        if let Some(i) = self.stash.iter().position(|e| want(e).is_some()) {
            let e = self.stash.remove(i).expect("present");
            return Ok(want(&e).expect("accepted"));
        }
        loop {
            let e = match self.events.recv_timeout(EVENT_TIMEOUT) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => bail!("election: no {what} in {EVENT_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => bail!("election: every candidate is gone"),
            };
            if let Event::Failed(who, error) = &e {
                bail!("election: candidate {who} failed: {error}");
            }
            match want(&e) {
                Some(t) => return Ok(t),
                None => self.stash.push_back(e),
            }
        }
    }

    /// Send `who` campaigning behind the leader; return once it is queued.
    fn join_queue(&mut self, who: usize) -> Result<()> {
        // A candidate re-watching within one campaign (etcd, when a key
        // between it and the leader goes) says so more than once: only a
        // signal from this campaign counts.
        self.stash
            .retain(|e| !matches!(e, Event::Queued(w) if *w == who));
        let before = match &self.queued {
            Queued::Waiters { urls, name } => {
                Some(failover::tenure_waiters(&self.agent, &urls[who], name)?)
            }
            Queued::Signalled => None,
        };
        self.send(who, Cmd::Campaign)?;
        match (&self.queued, before) {
            (Queued::Waiters { urls, name }, Some(before)) => {
                failover::tenure_await_queued(&self.agent, &urls[who], name, before)
            }
            _ => self.expect("queued", |e| match e {
                Event::Queued(w) if *w == who => Some(()),
                _ => None,
            }),
        }
    }
}

/// Leadership handoffs among `candidates` (3 or 32 in the benchmark): the first
/// campaigns and leads, the others queue; then `rounds` times the leader
/// resigns, and the time from its resignation being sent to the next
/// candidate's campaign returning is recorded; the one that resigned
/// campaigns again, to the back of the queue, before the next round. At
/// the end each leader in turn resigns and leaves.
pub fn handoffs<C: Candidate>(
    candidates: Vec<C>,
    rounds: usize,
    queued: Queued,
) -> Result<Latencies> {
    let n = candidates.len();
    let (event_tx, events) = mpsc::channel();
    let mut cmds = Vec::new();
    let mut threads = Vec::new();
    for (i, c) in candidates.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel();
        cmds.push(tx);
        let events = event_tx.clone();
        threads.push(std::thread::spawn(move || candidate_loop(i, c, rx, events)));
    }
    drop(event_tx);
    let mut d = Driver {
        cmds,
        events,
        stash: VecDeque::new(),
        queued,
        agent: crate::procs::agent(Duration::from_secs(5)),
    };
    let mut handoff = Latencies::default();
    d.send(0, Cmd::Campaign)?;
    d.expect("first leader", |e| match e {
        Event::Leads(0, _) => Some(()),
        _ => None,
    })?;
    for who in 1..n {
        d.join_queue(who)?;
    }
    let mut leader = 0;
    for _ in 0..rounds {
        d.send(leader, Cmd::Resign { then_leave: false })?;
        let sent = d.expect("resignation", |e| match e {
            Event::Resigned(w, at) if *w == leader => Some(*at),
            _ => None,
        })?;
        let (next, at) = d.expect("next leader", |e| match e {
            Event::Leads(w, at) => Some((*w, *at)),
            _ => None,
        })?;
        handoff.push(at.saturating_duration_since(sent));
        d.join_queue(leader)?;
        leader = next;
    }
    for left in 0..n {
        d.send(leader, Cmd::Resign { then_leave: true })?;
        d.expect("leaving", |e| match e {
            Event::Left(w) if *w == leader => Some(()),
            _ => None,
        })?;
        if left + 1 < n {
            leader = d.expect("next leader", |e| match e {
                Event::Leads(w, _) => Some(*w),
                _ => None,
            })?;
        }
    }
    for t in threads {
        t.join().expect("candidate thread");
    }
    Ok(handoff)
}

fn candidate_loop<C: Candidate>(i: usize, mut c: C, cmds: Receiver<Cmd>, events: Sender<Event>) {
    let failed = |e: anyhow::Error| {
        let _ = events.send(Event::Failed(i, format!("{e:#}")));
    };
    while let Ok(cmd) = cmds.recv() {
        match cmd {
            Cmd::Campaign => {
                let q = events.clone();
                match c.campaign(&mut || {
                    let _ = q.send(Event::Queued(i));
                }) {
                    Ok(()) => {
                        let _ = events.send(Event::Leads(i, Instant::now()));
                    }
                    Err(e) => return failed(e),
                }
            }
            Cmd::Resign { then_leave } => {
                let sent = Instant::now();
                if let Err(e) = c.resign() {
                    return failed(e);
                }
                let _ = events.send(Event::Resigned(i, sent));
                if then_leave {
                    if let Err(e) = c.close() {
                        return failed(e);
                    }
                    let _ = events.send(Event::Left(i));
                    return;
                }
            }
        }
    }
    // The driver gave up: leave quietly.
    let _ = c.close();
}

/// Who stands in a handoff step, and what becomes of their failures.
#[derive(Clone)]
pub struct Contest {
    pub candidates: usize,
    pub failures: Failures,
}

impl Contest {
    /// The election step: 3 candidates; the first failure ends it.
    pub fn of_three() -> Contest {
        Contest {
            candidates: 3,
            failures: None,
        }
    }
}

/// tenure candidates on election `name`, candidate `i` through node `i`
/// (modulo the node count). Also returns the Paxos phases the nodes
/// started meanwhile (the whole step: setup, rounds, and everyone
/// leaving).
pub fn tenure_handoffs(
    urls: &[String],
    name: &str,
    rounds: usize,
    contest: Contest,
) -> Result<(Latencies, PaxosWork)> {
    let agent = crate::procs::agent(Duration::from_millis(TENURE_POLL_MS + 10_000));
    let node_of = |i: usize| &urls[i % urls.len()];
    let candidates = (0..contest.candidates)
        .map(|i| {
            TenureCandidate::new(&agent, node_of(i), name, &format!("cand-{i}"))
                .riding_out(contest.failures.clone())
        })
        .collect();
    let nodes = (0..contest.candidates)
        .map(|i| node_of(i).clone())
        .collect();
    let before = PaxosWork::read(urls)?;
    let queued = Queued::Waiters {
        urls: nodes,
        name: name.to_string(),
    };
    let times = handoffs(candidates, rounds, queued)?;
    Ok((times, PaxosWork::read(urls)?.since(before)))
}

/// etcd candidates on election `name`, candidate `i` through member `i`
/// (modulo the member count), each with its own session.
pub fn etcd_handoffs(
    urls: &[String],
    name: &str,
    rounds: usize,
    contest: Contest,
) -> Result<Latencies> {
    let agent = crate::procs::agent(Duration::from_secs(120));
    let candidates = (0..contest.candidates)
        .map(|i| {
            EtcdCandidate::open(&agent, &urls[i % urls.len()], name, &format!("cand-{i}"))
                .map(|c| c.riding_out(contest.failures.clone()))
        })
        .collect::<Result<Vec<_>>>()?;
    handoffs(candidates, rounds, Queued::Signalled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Condvar, Mutex};

    /// An election in memory: a leader and a queue, woken in order.
    #[derive(Default)]
    struct Board {
        leader: Option<usize>,
        queue: VecDeque<usize>,
        campaigns: usize,
    }

    struct Fake {
        me: usize,
        board: Arc<(Mutex<Board>, Condvar)>,
    }

    impl Candidate for Fake {
        fn campaign(&mut self, queued: &mut dyn FnMut()) -> Result<()> {
            let (lock, cv) = &*self.board;
            let mut b = lock.lock().unwrap();
            b.campaigns += 1;
            if b.leader.is_none() {
                b.leader = Some(self.me);
                return Ok(());
            }
            b.queue.push_back(self.me);
            queued();
            while b.leader != Some(self.me) {
                b = cv.wait(b).unwrap();
            }
            Ok(())
        }

        fn resign(&mut self) -> Result<()> {
            let (lock, cv) = &*self.board;
            let mut b = lock.lock().unwrap();
            if b.leader != Some(self.me) {
                bail!("{} resigned without leading", self.me);
            }
            b.leader = b.queue.pop_front();
            cv.notify_all();
            Ok(())
        }

        fn close(&mut self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn handoffs_pass_leadership_round_robin_and_everyone_leaves() {
        let board = Arc::new((Mutex::new(Board::default()), Condvar::new()));
        let fakes = (0..3)
            .map(|me| Fake {
                me,
                board: board.clone(),
            })
            .collect();
        let mut times = handoffs(fakes, 7, Queued::Signalled).unwrap();
        assert_eq!(times.len(), 7);
        assert!(times.max_us() < 5e6);
        let b = board.0.lock().unwrap();
        // 3 to start, one again after each of the 7 resignations.
        assert_eq!(b.campaigns, 3 + 7);
        assert_eq!(b.leader, None);
        assert!(b.queue.is_empty());
    }

    #[test]
    fn a_failing_candidate_fails_the_run() {
        struct Broken;
        impl Candidate for Broken {
            fn campaign(&mut self, _: &mut dyn FnMut()) -> Result<()> {
                bail!("no cluster")
            }
            fn resign(&mut self) -> Result<()> {
                Ok(())
            }
            fn close(&mut self) -> Result<()> {
                Ok(())
            }
        }
        let err = handoffs(vec![Broken, Broken, Broken], 3, Queued::Signalled).unwrap_err();
        assert!(format!("{err:#}").contains("no cluster"), "{err:#}");
    }
}
