//! Try-lock: clients on ONE name, each in a loop: acquire without waiting;
//! on a grant hold it `HOLD` and release it; refused, try again at once.
//! Optionally one node is SIGKILLed part way (`trylock-kill`): a client
//! whose request meets a dead connection moves to the next node.

use super::client::{release_retrying, Attempt, TryLock};
use super::outcome::{Failure, Tally};
use crate::stats::{longest_gap, Latencies};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// How long a holder keeps the lock before releasing it.
pub const HOLD: Duration = Duration::from_millis(2);
/// Tries to open a client's connection (etcd: and grant its lease).
pub const WARM_TRIES: usize = 5;

/// Node `victim` (0-based) is SIGKILLed `at` into the run.
#[derive(Clone, Copy, Debug)]
pub struct Kill {
    pub at: Duration,
    pub victim: usize,
}

pub struct Plan {
    pub clients: usize,
    pub run_for: Duration,
    pub name: String,
    pub kill: Option<Kill>,
}

/// What one try-lock run (or several of one level, merged) measured.
#[derive(Default)]
pub struct TryLockRun {
    pub clients: usize,
    /// The measured span (to the stop), summed over merged runs.
    pub seconds: f64,
    /// Grants answered within the span.
    pub grants: u64,
    pub conflicts: u64,
    /// Each acquire that got a decision: a grant or a conflict.
    pub decisions: Latencies,
    /// Failures of requests to the nodes that stayed up (every node, when
    /// none is killed).
    pub live: Tally,
    /// Failures of requests to the killed node once it was killed
    /// (connection errors are expected there).
    pub killed_node: Tally,
    /// The longest span with no grant anywhere: over the run, or from the
    /// kill on when there is one.
    pub longest_without_grant: Duration,
    pub kill: Option<Kill>,
    /// Grants answered after the kill.
    pub grants_after_kill: u64,
}

impl TryLockRun {
    pub fn grants_per_s(&self) -> f64 {
        self.grants as f64 / self.seconds.max(1e-9)
    }

    /// Two runs of the same level as one.
    pub fn merge(mut self, o: TryLockRun) -> TryLockRun {
        self.seconds += o.seconds;
        self.grants += o.grants;
        self.conflicts += o.conflicts;
        self.decisions.extend(o.decisions);
        self.live.merge(o.live);
        self.killed_node.merge(o.killed_node);
        self.longest_without_grant = self.longest_without_grant.max(o.longest_without_grant);
        self.grants_after_kill += o.grants_after_kill;
        self
    }
}

/// What one client thread saw.
#[derive(Default)]
struct ClientLog {
    decisions: Latencies,
    conflicts: u64,
    grants: Vec<Instant>,
    live: Tally,
    killed_node: Tally,
}

impl ClientLog {
    /// Count failure `f` of a request to node `node`. A request counts
    /// against the killed node when it ENDED after the kill: one in flight
    /// at the kill is affected by it.
    fn failed(&mut self, f: &Failure, node: usize, kill: Option<Kill>, killed: &AtomicBool) {
        let on_dead_node = kill.is_some_and(|k| k.victim == node) && killed.load(Ordering::SeqCst);
        if on_dead_node {
            self.killed_node.count(f);
        } else {
            self.live.count(f);
        }
    }
}

/// `plan.clients` threads, client `i` made by `make(i)` (its first node is
/// `i` modulo the node count: round-robin), running the loop for
/// `plan.run_for`; `kill()` is called at `plan.kill`'s time.
pub fn run<C: TryLock + 'static>(
    plan: Plan,
    make: impl Fn(usize) -> C,
    kill: impl FnOnce(),
) -> TryLockRun {
    let start = Arc::new(Barrier::new(plan.clients + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..plan.clients)
        .map(|i| {
            let mut client = make(i);
            let (start, stop, killed) = (start.clone(), stop.clone(), killed.clone());
            let (name, k) = (plan.name.clone(), plan.kill);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut log = ClientLog::default();
                    let warm = (0..WARM_TRIES).any(|_| match client.warm() {
                        Ok(()) => true,
                        Err(f) => {
                            log.live.count(&f);
                            false
                        }
                    });
                    start.wait();
                    while warm && !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let attempt = client.try_acquire(&name);
                        let answered = Instant::now();
                        match attempt {
                            Attempt::Granted(grant) => {
                                log.decisions.push(answered - t);
                                log.grants.push(answered);
                                std::thread::sleep(HOLD);
                                release_retrying(&mut client, &name, grant, &mut |f, node| {
                                    log.failed(f, node, k, &killed)
                                });
                            }
                            Attempt::Refused => {
                                log.decisions.push(answered - t);
                                log.conflicts += 1;
                            }
                            Attempt::Failed(f) => {
                                log.failed(&f, client.node(), k, &killed);
                                if f.is_connection() {
                                    client.next_node();
                                }
                            }
                        }
                    }
                    client.close();
                    log
                })
                .expect("spawn a try-lock client")
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut killed_at = None;
    if let Some(k) = plan.kill {
        std::thread::sleep(k.at);
        killed_at = Some(Instant::now());
        killed.store(true, Ordering::SeqCst);
        kill();
    }
    std::thread::sleep(plan.run_for.saturating_sub(began.elapsed()));
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut out = TryLockRun {
        clients: plan.clients,
        seconds: (end - began).as_secs_f64(),
        kill: plan.kill,
        ..TryLockRun::default()
    };
    let mut grants = Vec::new();
    for t in threads {
        let log = t.join().expect("try-lock client");
        out.decisions.extend(log.decisions);
        out.conflicts += log.conflicts;
        out.live.merge(log.live);
        out.killed_node.merge(log.killed_node);
        grants.extend(log.grants);
    }
    grants.retain(|&g| g <= end);
    out.grants = grants.len() as u64;
    let from = killed_at.unwrap_or(began);
    out.longest_without_grant = longest_gap(from, &grants, end);
    if let Some(k) = killed_at {
        out.grants_after_kill = grants.iter().filter(|&&g| g >= k).count() as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contended::client::{Client, Release};
    use std::sync::Mutex;

    /// A lock in memory; node 1 refuses connections once `dead` is set.
    struct Fake {
        held: Arc<Mutex<Option<u64>>>,
        next: Arc<Mutex<u64>>,
        dead: Arc<AtomicBool>,
        at: usize,
    }

    impl Fake {
        fn down(&self) -> Option<Failure> {
            (self.at == 1 && self.dead.load(Ordering::SeqCst))
                .then(|| Failure::Connection("refused".into()))
        }
    }

    impl TryLock for Fake {
        fn try_acquire(&mut self, _: &str) -> Attempt {
            if let Some(f) = self.down() {
                return Attempt::Failed(f);
            }
            let mut held = self.held.lock().unwrap();
            if held.is_some() {
                return Attempt::Refused;
            }
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *held = Some(*next);
            Attempt::Granted(*next)
        }
    }

    impl Client for Fake {
        fn warm(&mut self) -> Result<(), Failure> {
            Ok(())
        }
        fn release(&mut self, _: &str, grant: u64) -> Result<Release, Failure> {
            if let Some(f) = self.down() {
                return Err(f);
            }
            let mut held = self.held.lock().unwrap();
            assert_eq!(*held, Some(grant), "released a grant not held");
            *held = None;
            Ok(Release::Released)
        }
        fn node(&self) -> usize {
            self.at
        }
        fn nodes(&self) -> usize {
            3
        }
        fn next_node(&mut self) {
            self.at = (self.at + 1) % 3;
        }
        fn close(&mut self) {}
    }

    #[test]
    fn clients_of_a_killed_node_move_on_and_their_errors_are_counted_apart() {
        let held = Arc::new(Mutex::new(None));
        let next = Arc::new(Mutex::new(0));
        let dead = Arc::new(AtomicBool::new(false));
        let d = dead.clone();
        let r = run(
            Plan {
                clients: 6,
                run_for: Duration::from_millis(300),
                name: "n".into(),
                kill: Some(Kill {
                    at: Duration::from_millis(100),
                    victim: 1,
                }),
            },
            |i| Fake {
                held: held.clone(),
                next: next.clone(),
                dead: dead.clone(),
                at: i % 3,
            },
            move || d.store(true, Ordering::SeqCst),
        );
        assert!(r.grants > 0 && r.grants_after_kill > 0);
        // Grants answered after the stop are decisions but not counted grants.
        assert!(r.decisions.len() as u64 >= r.conflicts + r.grants);
        // Two clients started on node 1; each meets the dead node once,
        // (a holder there may meet it on its release too) and moves on.
        assert!(
            (2..=4).contains(&r.killed_node.connection),
            "{:?}",
            r.killed_node
        );
        assert_eq!(r.live, Tally::default());
        assert!(r.longest_without_grant < Duration::from_millis(150));
        assert_eq!(held.lock().unwrap().take(), None);
    }
}
