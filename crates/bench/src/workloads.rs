//! The workloads, written once against `LockClient` and run against both
//! systems.

use crate::clients::LockClient;
use crate::stats::Latencies;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// The ttl every workload's grants carry: etcd accepts it as is (its
/// minimum with default flags is 2 s), and nothing expires mid-run.
pub const TTL_MS: u64 = 10_000;

#[derive(Default)]
pub struct Sequential {
    pub acquire: Latencies,
    pub renew: Latencies,
    pub release: Latencies,
    pub read: Latencies,
    /// etcd only: the transaction of the acquire alone, i.e. a lock taken
    /// by a client whose session lease already exists.
    pub acquire_txn_only: Latencies,
}

impl Sequential {
    /// One round on a fresh name: acquire, renew, read, release, one
    /// request at a time; recorded when `record` (warm-up rounds are not).
    pub fn round<C: LockClient>(
        &mut self,
        client: &mut C,
        name: &str,
        record: bool,
        txn_only: impl Fn(&C) -> Option<Duration>,
    ) -> anyhow::Result<()> {
        let t = Instant::now();
        let g = client.acquire(name, TTL_MS)?;
        let acquire = t.elapsed();
        let txn = txn_only(client);
        let t = Instant::now();
        client.renew(&g)?;
        let renew = t.elapsed();
        let t = Instant::now();
        client.read(name)?;
        let read = t.elapsed();
        let t = Instant::now();
        client.release(&g)?;
        let release = t.elapsed();
        if record {
            self.acquire.push(acquire);
            self.renew.push(renew);
            self.read.push(read);
            self.release.push(release);
            if let Some(d) = txn {
                self.acquire_txn_only.push(d);
            }
        }
        Ok(())
    }
}

pub struct Cycles {
    pub clients: usize,
    pub seconds: f64,
    pub cycles: u64,
    pub errors: u64,
    pub latency: Latencies,
}

impl Cycles {
    pub fn per_second(&self) -> f64 {
        self.cycles as f64 / self.seconds
    }

    /// Two runs of the same level as one.
    pub fn merge(mut self, other: Cycles) -> Cycles {
        self.seconds += other.seconds;
        self.cycles += other.cycles;
        self.errors += other.errors;
        self.latency.extend(other.latency);
        self
    }
}

/// `clients` threads, each with its own client (and connection), each
/// looping acquire (fresh name) → renew → release for `run_for`.
pub fn cycles<C: LockClient + 'static>(
    clients: usize,
    run_for: Duration,
    run: &str,
    make: impl Fn(usize) -> C,
) -> Cycles {
    let start = Arc::new(Barrier::new(clients + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for c in 0..clients {
        let mut client = make(c);
        let (start, stop, errors) = (start.clone(), stop.clone(), errors.clone());
        let run = run.to_string();
        threads.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    // One unmeasured cycle opens the connection.
                    let _ = cycle(&mut client, &format!("cyc-{run}-{c}-warm"));
                    start.wait();
                    let mut lat = Latencies::default();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match cycle(&mut client, &format!("cyc-{run}-{c}-{i}")) {
                            Ok(()) => lat.push(t.elapsed()),
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        i += 1;
                    }
                    lat
                })
                .expect("spawn a client thread"),
        );
    }
    start.wait();
    let began = Instant::now();
    std::thread::sleep(run_for);
    stop.store(true, Ordering::Relaxed);
    let mut latency = Latencies::default();
    for t in threads {
        latency.extend(t.join().expect("client thread"));
    }
    // Cycles that finished after the stop still count: they ran within the
    // measured span, which ends when the last one does.
    let seconds = began.elapsed().as_secs_f64();
    Cycles {
        clients,
        seconds,
        cycles: latency.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        latency,
    }
}

fn cycle(client: &mut dyn LockClient, name: &str) -> anyhow::Result<()> {
    let g = client.acquire(name, TTL_MS)?;
    client.renew(&g)?;
    client.release(&g)
}

pub struct NodeLoss {
    pub clients: usize,
    /// Requests that failed on the nodes that stayed up, after the kill.
    pub failed_on_live_nodes: u64,
    /// Requests that failed on the killed node (the client then moved to
    /// the next node): what any client of a dead server sees.
    pub failed_on_killed_node: u64,
    /// The longest time, from the kill on, in which no cycle completed
    /// anywhere.
    pub longest_stall: Duration,
    /// The slowest single request that succeeded after the kill.
    pub slowest_request: Duration,
    pub cycles_after_kill: u64,
    /// What the first failure on a surviving node said.
    pub first_live_error: Option<String>,
}

/// Cycles from `clients` threads spread over the nodes; at `kill_at`,
/// `kill()` SIGKILLs node `victim`; the run goes on for `run_for` in all.
/// A client whose request fails moves to the next node and starts a new
/// cycle.
/// What `node_loss` runs: how many clients for how long, and which node
/// (of how many) dies when.
pub struct LossPlan {
    pub clients: usize,
    pub run_for: Duration,
    pub kill_at: Duration,
    pub victim: usize,
    pub nodes: usize,
}

pub fn node_loss<C: LockClient + 'static>(
    plan: LossPlan,
    run: &str,
    make: impl Fn(usize) -> C,
    kill: impl FnOnce(),
) -> NodeLoss {
    let LossPlan {
        clients,
        run_for,
        kill_at,
        victim,
        nodes,
    } = plan;
    let start = Arc::new(Barrier::new(clients + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let done: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for c in 0..clients {
        let mut client = make(c);
        let (start, stop, killed_at, done) =
            (start.clone(), stop.clone(), killed_at.clone(), done.clone());
        let run = run.to_string();
        threads.push(std::thread::spawn(move || {
            let mut at = c % nodes;
            let _ = cycle(&mut client, &format!("loss-{run}-{c}-warm"));
            start.wait();
            let (mut live, mut dead) = (0u64, 0u64);
            let mut first_error: Option<String> = None;
            let mut slowest = Duration::ZERO;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("loss-{run}-{c}-{i}");
                i += 1;
                let mut step = |r: anyhow::Result<()>, t: Instant, at: &mut usize| {
                    // A request counts from the kill on when it ENDED after
                    // it: one in flight at the kill is affected by it.
                    let after_kill = killed_at.lock().expect("lock").is_some();
                    match r {
                        Ok(()) => {
                            if after_kill {
                                slowest = slowest.max(t.elapsed());
                            }
                            true
                        }
                        Err(e) => {
                            if *at == victim && after_kill {
                                dead += 1;
                            } else if after_kill {
                                live += 1;
                                first_error.get_or_insert_with(|| format!("{e:#}"));
                            }
                            client_moves(at, nodes);
                            false
                        }
                    }
                };
                let t = Instant::now();
                let g = match client.acquire(&name, TTL_MS) {
                    Ok(g) => {
                        step(Ok(()), t, &mut at);
                        g
                    }
                    Err(e) => {
                        step(Err(e), t, &mut at);
                        client.next_node();
                        continue;
                    }
                };
                let t = Instant::now();
                let r = client.renew(&g);
                if !step(r, t, &mut at) {
                    client.next_node();
                    continue;
                }
                let t = Instant::now();
                let r = client.release(&g);
                if !step(r, t, &mut at) {
                    client.next_node();
                    continue;
                }
                done.lock().expect("lock").push(Instant::now());
            }
            (live, dead, slowest, first_error)
        }));
    }
    start.wait();
    let began = Instant::now();
    std::thread::sleep(kill_at);
    let at = Instant::now();
    *killed_at.lock().expect("lock") = Some(at);
    kill();
    std::thread::sleep(run_for.saturating_sub(began.elapsed()));
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let (mut live, mut dead, mut slowest) = (0, 0, Duration::ZERO);
    let mut first_live_error = None;
    for t in threads {
        let (l, d, s, e) = t.join().expect("client thread");
        live += l;
        dead += d;
        slowest = slowest.max(s);
        first_live_error = first_live_error.or(e);
    }
    let mut times: Vec<Instant> = done
        .lock()
        .expect("lock")
        .iter()
        .copied()
        .filter(|&t| t >= at)
        .collect();
    times.sort();
    let cycles_after_kill = times.len() as u64;
    let mut prev = at;
    let mut longest = Duration::ZERO;
    for t in times.iter().copied().chain(std::iter::once(end)) {
        longest = longest.max(t.saturating_duration_since(prev));
        prev = t.max(prev);
    }
    NodeLoss {
        clients,
        failed_on_live_nodes: live,
        failed_on_killed_node: dead,
        longest_stall: longest,
        slowest_request: slowest,
        cycles_after_kill,
        first_live_error,
    }
}

fn client_moves(at: &mut usize, nodes: usize) {
    *at = (*at + 1) % nodes;
}

/// What `fill` did.
pub struct Fill {
    pub granted: u64,
    pub failed: u64,
    pub seconds: f64,
    /// Whether it stopped at `limit` before every name was asked for.
    pub cut_short: bool,
    pub first_error: Option<String>,
}

impl Fill {
    pub fn per_second(&self) -> f64 {
        self.granted as f64 / self.seconds.max(1e-9)
    }
}

/// Take the names `idle-{run}-{i}` for every `i` in `names` with a one-hour
/// ttl from `clients` threads (each its own connection, taking the next
/// index as it goes) and leave them held (idle). Stops asking at `limit`.
/// Every `every`, `report(granted so far, seconds so far)`.
pub fn fill<C: LockClient + 'static>(
    names: std::ops::Range<usize>,
    clients: usize,
    run: &str,
    limit: Duration,
    make: impl Fn(usize) -> C,
    every: Duration,
    report: &mut dyn FnMut(u64, f64),
) -> Fill {
    let granted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(names.start as u64));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let began = Instant::now();
    let deadline = began + limit;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let mut client = make(c);
            let (granted, failed, next, first_error) = (
                granted.clone(),
                failed.clone(),
                next.clone(),
                first_error.clone(),
            );
            let (run, end, done) = (run.to_string(), names.end as u64, done_tx.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= end || Instant::now() >= deadline {
                            break;
                        }
                        match client.acquire(&format!("idle-{run}-{i}"), 3_600_000) {
                            Ok(_) => {
                                granted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .expect("lock")
                                    .get_or_insert_with(|| format!("{e:#}"));
                            }
                        }
                    }
                    drop(done);
                })
                .expect("spawn a fill thread")
        })
        .collect();
    drop(done_tx);
    // Every thread holds a sender: the channel disconnects when the last
    // one ends; until then, report at each `every`.
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(every) {
        report(
            granted.load(Ordering::Relaxed),
            began.elapsed().as_secs_f64(),
        );
    }
    for t in threads {
        t.join().expect("fill thread");
    }
    let seconds = began.elapsed().as_secs_f64();
    let first_error = first_error.lock().expect("lock").take();
    let (granted, failed) = (
        granted.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    Fill {
        granted,
        failed,
        seconds,
        cut_short: granted + failed < names.len() as u64,
        first_error,
    }
}
