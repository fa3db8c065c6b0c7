//! The queue: waiters on ONE name, each waiting for the lock the way its
//! system's users wait, holding it `HOLD`, releasing it, and queueing
//! again.
//!
//! - tenure: `PUT /v1/locks/{name}?wait=5s` (a long poll); `201` granted;
//!   a `409` when the wait ran out counts as a timeout, and the waiter
//!   polls again (its wait goes on). Release: `DELETE` with the token.
//! - etcd: `concurrency.Mutex` on the waiter's own session (one lease,
//!   granted before the run): the txn `create_revision(pfx/LEASE) == 0` →
//!   put it with the lease (else read it: the waiter keeps its place), in
//!   both branches read the prefix's first-created key; the owner is
//!   granted; otherwise `waitDeletes`: watch the last key created before
//!   ours until it is deleted, then look again. A watch that sees no
//!   delete within 5 s counts as a timeout, as tenure's `409` does, and
//!   the waiter runs `Lock` again (same key, same place). Release
//!   (`Unlock`): delete the key.
//!
//! Waiters count themselves in and out of a shared counter as they start
//! and stop waiting, so each wait knows how many were waiting before it.
//!
//! Optionally one node is SIGKILLed part way (`queue-kill`): a waiter whose
//! long poll or watch breaks with it asks again through the next node. Its
//! place in the queue is the system's business: etcd keeps its key, which
//! belongs to its session; tenure's entry belonged to the dead node, and
//! the waiter queues again at the back.

use super::client::{release_retrying, Client, EtcdTry, Release, TenureTry};
use super::fifo::{self, Hold, Wait};
use super::outcome::{Failure, Tally};
use super::trylock::{Kill, HOLD, WARM_TRIES};
use crate::clients::{b64, prefix_end};
use crate::failover::{self, rev};
use crate::stats::{longest_gap, Latencies};
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// How long one long poll (tenure) or one watch (etcd) waits.
pub const POLL: Duration = Duration::from_secs(5);
/// How long after the end of the run a waiter still waits before it gives
/// up (its wait is then recorded as not granted).
pub const DRAIN: Duration = Duration::from_secs(10);

/// One try for the lock that may wait.
pub enum Poll {
    Granted(u64),
    /// The wait ran out without the grant (a timeout).
    RanOut,
    Failed(Failure),
}

pub trait Waiter: Client {
    /// Wait for `name` for up to `POLL`.
    fn poll(&mut self, name: &str) -> Poll;
}

pub struct Plan {
    pub waiters: usize,
    pub run_for: Duration,
    pub name: String,
    pub kill: Option<Kill>,
}

/// What one queue run (or the runs of one level, merged) measured.
#[derive(Default)]
pub struct QueueRun {
    pub waiters: usize,
    pub seconds: f64,
    /// Grants answered within the span.
    pub grants: u64,
    /// Every wait after each waiter's first (see `run`), granted or not.
    pub waits: Vec<Wait>,
    /// Grant's answer → release's answer.
    pub holds: Latencies,
    /// Release's answer → the next grant's answer.
    pub handoffs: Latencies,
    pub tally: Tally,
    pub kill: Option<Kill>,
    /// Grants answered after the kill.
    pub grants_after_kill: u64,
    /// The longest span with no grant: over the run, or from the kill on.
    pub longest_without_grant: Duration,
}

impl QueueRun {
    pub fn grants_per_s(&self) -> f64 {
        self.grants as f64 / self.seconds.max(1e-9)
    }

    pub fn merge(mut self, o: QueueRun) -> QueueRun {
        self.seconds += o.seconds;
        self.grants += o.grants;
        self.waits.extend(o.waits);
        self.holds.extend(o.holds);
        self.handoffs.extend(o.handoffs);
        self.tally.merge(o.tally);
        self.grants_after_kill += o.grants_after_kill;
        self.longest_without_grant = self.longest_without_grant.max(o.longest_without_grant);
        self
    }

    /// Every wait's length.
    pub fn wait_latencies(&self) -> Latencies {
        let mut l = Latencies::default();
        for w in &self.waits {
            l.push(w.waited);
        }
        l
    }

    /// The waits against the FIFO bound of this run.
    pub fn fifo(&mut self) -> (Duration, Duration, fifo::FifoCheck) {
        let us = |x: f64| Duration::from_nanos((x * 1e3) as u64);
        let hold = us(self.holds.us(0.5));
        let handoff = us(self.handoffs.us(0.5));
        (hold, handoff, fifo::check(&self.waits, hold, handoff))
    }
}

#[derive(Default)]
struct WaiterLog {
    waits: Vec<Wait>,
    holds: Vec<Hold>,
    tally: Tally,
}

/// `plan.waiters` threads, waiter `i` made by `make(i)`, for `plan.run_for`;
/// `kill()` is called at `plan.kill`'s time.
///
/// All waiters begin their first wait together, so client-side counts say
/// nothing of the order they reach the server in: a first wait is given
/// `waiters - 1` ahead. Once the run is over, waiters stop queueing
/// again; one still waiting then waits at most `DRAIN` more.
pub fn run<W: Waiter + 'static>(
    plan: Plan,
    make: impl Fn(usize) -> W,
    kill: impl FnOnce(),
) -> QueueRun {
    let start = Arc::new(Barrier::new(plan.waiters + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let waiting = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..plan.waiters)
        .map(|i| {
            let mut w = make(i);
            let (start, stop, waiting) = (start.clone(), stop.clone(), waiting.clone());
            let (name, n, run_for) = (plan.name.clone(), plan.waiters, plan.run_for);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut log = WaiterLog::default();
                    let warm = (0..WARM_TRIES).any(|_| match w.warm() {
                        Ok(()) => true,
                        Err(f) => {
                            log.tally.count(&f);
                            false
                        }
                    });
                    start.wait();
                    let give_up_at = Instant::now() + run_for + DRAIN;
                    let mut first = true;
                    while warm && !stop.load(Ordering::Relaxed) {
                        let already = waiting.fetch_add(1, Ordering::SeqCst);
                        let ahead = if first { n - 1 } else { already };
                        first = false;
                        let began = Instant::now();
                        let granted = wait_for(&mut w, &name, give_up_at, &mut log.tally);
                        let ended = Instant::now();
                        waiting.fetch_sub(1, Ordering::SeqCst);
                        log.waits.push(Wait {
                            ahead,
                            waited: ended - began,
                            granted: granted.is_some(),
                        });
                        let Some(grant) = granted else { break };
                        std::thread::sleep(HOLD);
                        let released =
                            release_retrying(&mut w, &name, grant, &mut |f, _| log.tally.count(f));
                        if released {
                            log.holds.push(Hold {
                                granted: ended,
                                released: Instant::now(),
                            });
                        }
                    }
                    w.close();
                    log
                })
                .expect("spawn a waiter")
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut killed_at = None;
    if let Some(k) = plan.kill {
        std::thread::sleep(k.at);
        killed_at = Some(Instant::now());
        kill();
    }
    std::thread::sleep(plan.run_for.saturating_sub(began.elapsed()));
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut out = QueueRun {
        waiters: plan.waiters,
        seconds: (end - began).as_secs_f64(),
        kill: plan.kill,
        ..QueueRun::default()
    };
    let mut holds = Vec::new();
    for t in threads {
        let log = t.join().expect("waiter");
        out.waits.extend(log.waits);
        out.tally.merge(log.tally);
        holds.extend(log.holds);
    }
    out.grants = holds.iter().filter(|h| h.granted <= end).count() as u64;
    let grants: Vec<Instant> = holds
        .iter()
        .map(|h| h.granted)
        .filter(|&g| g <= end)
        .collect();
    out.longest_without_grant = longest_gap(killed_at.unwrap_or(began), &grants, end);
    if let Some(k) = killed_at {
        out.grants_after_kill = grants.iter().filter(|&&g| g >= k).count() as u64;
    }
    for h in &holds {
        out.holds.push(h.released - h.granted);
    }
    out.handoffs = fifo::handoffs(&mut holds);
    out
}

/// Poll until granted (the grant), or until `give_up_at` (`None`).
fn wait_for(w: &mut dyn Waiter, name: &str, give_up_at: Instant, tally: &mut Tally) -> Option<u64> {
    while Instant::now() < give_up_at {
        match w.poll(name) {
            Poll::Granted(g) => return Some(g),
            Poll::RanOut => tally.count(&Failure::Timeout(format!(
                "no grant within a {} s wait",
                POLL.as_secs()
            ))),
            Poll::Failed(f) => {
                tally.count(&f);
                if f.is_connection() {
                    w.next_node();
                }
            }
        }
    }
    None
}

impl Waiter for TenureTry {
    fn poll(&mut self, name: &str) -> Poll {
        match self.acquire_waiting(name, POLL) {
            Ok((201, text)) => match serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["token"].as_u64())
            {
                Some(token) => Poll::Granted(token),
                None => Poll::Failed(Failure::Other(format!("201 without a token: {text}"))),
            },
            Ok((409, _)) => Poll::RanOut,
            Ok((status, text)) => Poll::Failed(Failure::status(status, &text)),
            Err(f) => Poll::Failed(f),
        }
    }
}

/// An etcd waiter: `concurrency.Mutex` on its own session.
pub struct EtcdMutex {
    inner: EtcdTry,
}

impl EtcdMutex {
    pub fn new(urls: &[String], first: usize, holder: String) -> EtcdMutex {
        EtcdMutex {
            inner: EtcdTry::new(urls, first, holder),
        }
    }

    fn prefix(name: &str) -> String {
        format!("/tenure-bench-queue/{name}/")
    }

    fn my_key(&self, name: &str) -> String {
        format!("{}{:x}", Self::prefix(name), self.inner.lease())
    }

    /// `Mutex.Lock`'s txn: our key's create revision, and whether we own
    /// the lock already.
    fn enqueue(&self, name: &str) -> Result<(i64, bool), Failure> {
        let prefix = Self::prefix(name);
        let key = b64(&self.my_key(name));
        let owner = json!({
            "key": b64(&prefix),
            "range_end": base64::engine::general_purpose::STANDARD.encode(prefix_end(&prefix)),
            "sort_order": "ASCEND", "sort_target": "CREATE", "limit": "1",
        });
        let v = self.inner.call(
            "/v3/kv/txn",
            &json!({
                "compare": [{"target": "CREATE", "key": key, "create_revision": "0"}],
                "success": [
                    {"request_put": {"key": key, "value": "", "lease": self.inner.lease().to_string()}},
                    {"request_range": owner},
                ],
                "failure": [
                    {"request_range": {"key": key}},
                    {"request_range": owner},
                ],
            }),
        )?;
        let mine = if v["succeeded"] == true {
            rev(&v["header"]["revision"])
        } else {
            rev(&v["responses"][0]["response_range"]["kvs"][0]["create_revision"])
        };
        let owner = &v["responses"][1]["response_range"]["kvs"][0];
        let owns = owner.is_null() || rev(&owner["create_revision"]) == mine;
        Ok((mine, owns))
    }
}

impl Client for EtcdMutex {
    fn warm(&mut self) -> Result<(), Failure> {
        self.inner.warm()
    }

    fn release(&mut self, name: &str, _: u64) -> Result<Release, Failure> {
        let key = b64(&self.my_key(name));
        self.inner
            .call("/v3/kv/deleterange", &json!({ "key": key }))
            .map(|_| Release::Released)
    }

    fn node(&self) -> usize {
        self.inner.node()
    }

    fn nodes(&self) -> usize {
        self.inner.nodes()
    }

    fn next_node(&mut self) {
        self.inner.next_node()
    }

    fn close(&mut self) {
        self.inner.close()
    }
}

impl Waiter for EtcdMutex {
    fn poll(&mut self, name: &str) -> Poll {
        let (mine, owns) = match self.enqueue(name) {
            Ok(x) => x,
            Err(f) => return Poll::Failed(f),
        };
        if owns {
            return Poll::Granted(mine as u64);
        }
        match failover::wait_deletes_within(
            self.inner.agent(),
            self.inner.base(),
            &Self::prefix(name),
            mine - 1,
            Some(POLL),
            &mut || {},
        ) {
            Ok(()) => Poll::Granted(mine as u64),
            Err(e) => match Failure::of_anyhow(&e) {
                // The watch's own deadline: the wait ran out.
                Failure::Timeout(_) => Poll::RanOut,
                f => Poll::Failed(f),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Condvar, Mutex};

    /// A FIFO lock in memory: the holder, and the waiters in turn.
    #[derive(Default)]
    struct Line {
        holder: Option<usize>,
        queue: VecDeque<usize>,
    }

    struct Fake {
        me: usize,
        line: Arc<(Mutex<Line>, Condvar)>,
    }

    impl Client for Fake {
        fn warm(&mut self) -> Result<(), Failure> {
            Ok(())
        }
        fn release(&mut self, _: &str, _: u64) -> Result<Release, Failure> {
            let (lock, cv) = &*self.line;
            let mut l = lock.lock().unwrap();
            assert_eq!(l.holder, Some(self.me), "released a lock not held");
            l.holder = l.queue.pop_front();
            cv.notify_all();
            Ok(Release::Released)
        }
        fn node(&self) -> usize {
            0
        }
        fn nodes(&self) -> usize {
            1
        }
        fn next_node(&mut self) {}
        fn close(&mut self) {}
    }

    impl Waiter for Fake {
        fn poll(&mut self, _: &str) -> Poll {
            let (lock, cv) = &*self.line;
            let mut l = lock.lock().unwrap();
            if l.holder.is_none() && l.queue.is_empty() {
                l.holder = Some(self.me);
                return Poll::Granted(1);
            }
            if !l.queue.contains(&self.me) {
                l.queue.push_back(self.me);
            }
            let (l, timeout) = cv
                .wait_timeout_while(l, Duration::from_millis(500), |l| l.holder != Some(self.me))
                .unwrap();
            if timeout.timed_out() && l.holder != Some(self.me) {
                Poll::RanOut
            } else {
                Poll::Granted(1)
            }
        }
    }

    #[test]
    fn waiters_queue_hold_and_release_and_each_wait_knows_who_was_ahead() {
        let line = Arc::new((Mutex::new(Line::default()), Condvar::new()));
        let mut r = run(
            Plan {
                waiters: 4,
                run_for: Duration::from_millis(200),
                name: "n".into(),
                kill: None,
            },
            |me| Fake {
                me,
                line: line.clone(),
            },
            || {},
        );
        assert!(r.grants > 4, "{} grants", r.grants);
        assert_eq!(r.tally, Tally::default());
        // Every waiter's first wait began with the others: 3 ahead.
        assert!(r.waits.iter().filter(|w| w.ahead == 3).count() >= 4);
        assert!(r.waits.iter().all(|w| w.ahead <= 3 && w.granted));
        // One handoff between each two holds in a row.
        assert_eq!(r.handoffs.len() + 1, r.holds.len());
        let (hold, _, check) = r.fifo();
        assert!(hold >= HOLD);
        assert_eq!(check.waits, r.waits.len());
        let l = line.0.lock().unwrap();
        assert_eq!((l.holder, l.queue.len()), (None, 0));
    }

    #[test]
    fn a_kill_is_made_on_time_and_the_grants_after_it_are_counted() {
        let line = Arc::new((Mutex::new(Line::default()), Condvar::new()));
        let killed = Arc::new(Mutex::new(None));
        let k = killed.clone();
        let began = Instant::now();
        let mut r = run(
            Plan {
                waiters: 4,
                run_for: Duration::from_millis(300),
                name: "n".into(),
                kill: Some(Kill {
                    at: Duration::from_millis(100),
                    victim: 0,
                }),
            },
            |me| Fake {
                me,
                line: line.clone(),
            },
            move || *k.lock().unwrap() = Some(began.elapsed()),
        );
        let at = killed.lock().unwrap().expect("killed");
        assert!(at >= Duration::from_millis(100), "{at:?}");
        assert!(r.grants_after_kill > 0 && r.grants_after_kill < r.grants);
        assert!(r.longest_without_grant < Duration::from_millis(200));
        assert!(r.json()["longest_without_grant_after_kill_ms"].is_number());
    }
}
