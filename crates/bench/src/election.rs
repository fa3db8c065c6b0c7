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

use crate::clients::b64;
use crate::failover::{self, rev};
use crate::stats::Latencies;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// The longest single long poll of tenure's client (`MAX_POLL`).
const TENURE_POLL_MS: u64 = 30_000;
/// `LeaderElection`'s default ttl.
const TENURE_TTL_MS: u64 = 10_000;
/// `Lock::acquire`'s safety margin (`DEFAULT_MARGIN`).
const TENURE_MARGIN_MS: u64 = 100;
/// `concurrency.NewSession`'s default ttl.
const ETCD_SESSION_TTL_S: u64 = 60;
/// How long the driver waits for any one event before giving up.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A candidate in an election, as its system's library runs one.
pub trait Candidate: Send + 'static {
    /// Return once this candidate leads. `queued` is called when it is
    /// waiting behind a leader and will be woken by its resignation
    /// (etcd: the watch on the key before ours is in place). tenure
    /// candidates cannot see that from the client side; see `Queued`.
    fn campaign(&mut self, queued: &mut dyn FnMut()) -> Result<()>;
    /// Stop leading, freeing the election for the next candidate.
    fn resign(&mut self) -> Result<()>;
    /// Leave for good (etcd: revoke the session). Not timed.
    fn close(&mut self) -> Result<()>;
}

/// A tenure candidate: `LeaderElection::campaign` / `resign`.
pub struct TenureCandidate {
    agent: ureq::Agent,
    url: String,
    id: String,
    token: Option<u64>,
    /// When the last campaign's long poll answered 201 (before the
    /// renewal that `campaign` sends when the poll waited).
    pub granted_at: Option<Instant>,
}

impl TenureCandidate {
    /// A candidate `id` for election `name` through the node at `base`.
    pub fn new(agent: &ureq::Agent, base: &str, name: &str, id: &str) -> TenureCandidate {
        TenureCandidate {
            agent: agent.clone(),
            url: format!("{base}/v1/locks/{name}"),
            id: id.to_string(),
            token: None,
            granted_at: None,
        }
    }

    fn put(&self, query: &str, body: &str) -> Result<(u16, Value)> {
        let mut r = self
            .agent
            .put(&format!("{}{query}", self.url))
            .header("content-type", "application/json")
            .send(body)?;
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string()?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// Whether `Lock::acquire` renews a grant its long poll answered after
/// `waited`: when less than two thirds of the usable lease is left
/// (`tenure_client::time::most_of_the_lease_left`, less its drift
/// allowance: a few milliseconds at this ttl).
fn poll_waited(waited: Duration) -> bool {
    let usable = Duration::from_millis(TENURE_TTL_MS - TENURE_MARGIN_MS);
    waited * 3 > usable
}

impl Candidate for TenureCandidate {
    fn campaign(&mut self, _queued: &mut dyn FnMut()) -> Result<()> {
        let acquire = format!(r#"{{"holder":"{}","ttl_ms":{TENURE_TTL_MS}}}"#, self.id);
        loop {
            let sent = Instant::now();
            let (status, v) = self.put(&format!("?wait={TENURE_POLL_MS}ms"), &acquire)?;
            match status {
                201 => {}
                // The wait ran out: poll again, as the client does.
                409 => continue,
                _ => bail!("tenure campaign: {status} {v}"),
            }
            self.granted_at = Some(Instant::now());
            let token = v["token"].as_u64().context("tenure campaign: no token")?;
            if !poll_waited(sent.elapsed()) {
                self.token = Some(token);
                return Ok(());
            }
            let renew = format!(r#"{{"holder":"{}","token":{token}}}"#, self.id);
            let (status, v) = self.put("", &renew)?;
            match status {
                200 => {
                    self.token = Some(token);
                    return Ok(());
                }
                // Lost between the poll and the renewal: wait again.
                409 => continue,
                _ => bail!("tenure campaign, renewal after the grant: {status} {v}"),
            }
        }
    }

    fn resign(&mut self) -> Result<()> {
        let token = self.token.take().context("tenure resign: not leading")?;
        let mut r = self
            .agent
            .delete(&format!("{}?holder={}&token={token}", self.url, self.id))
            .call()?;
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string()?;
        if status != 204 {
            bail!("tenure resign: {status} {text}");
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// An etcd candidate: a `concurrency.Session` and `Election` on it.
pub struct EtcdCandidate {
    agent: ureq::Agent,
    base: String,
    prefix: String,
    id: String,
    lease: u64,
    key: String,
    /// The create revision of our key while we campaign or lead.
    leader_rev: i64,
}

impl EtcdCandidate {
    /// `concurrency.NewSession` (a lease grant), then an election on
    /// `name` through the member at `base`.
    pub fn open(agent: &ureq::Agent, base: &str, name: &str, id: &str) -> Result<EtcdCandidate> {
        let lease = failover::grant_session(agent, base, ETCD_SESSION_TTL_S)?;
        let prefix = format!("/tenure-bench-election/{name}/");
        Ok(EtcdCandidate {
            agent: agent.clone(),
            base: base.to_string(),
            key: format!("{prefix}{lease:x}"),
            prefix,
            id: id.to_string(),
            lease,
            leader_rev: 0,
        })
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        failover::post(&self.agent, &format!("{}{path}", self.base), body)
    }
}

impl Candidate for EtcdCandidate {
    fn campaign(&mut self, queued: &mut dyn FnMut()) -> Result<()> {
        let key = b64(&self.key);
        let txn = self.post(
            "/v3/kv/txn",
            &json!({
                "compare": [{"target": "CREATE", "key": key, "create_revision": "0"}],
                "success": [{"request_put": {
                    "key": key, "value": b64(&self.id), "lease": self.lease.to_string()
                }}],
                "failure": [{"request_range": {"key": key}}],
            }),
        )?;
        self.leader_rev = if txn["succeeded"] == true {
            rev(&txn["header"]["revision"])
        } else {
            // Our key is there already (a campaign again on one session):
            // keep its place. Its value is ours, so no `Proclaim`.
            rev(&txn["responses"][0]["response_range"]["kvs"][0]["create_revision"])
        };
        failover::wait_deletes(
            &self.agent,
            &self.base,
            &self.prefix,
            self.leader_rev - 1,
            queued,
        )
    }

    fn resign(&mut self) -> Result<()> {
        let key = b64(&self.key);
        self.post(
            "/v3/kv/txn",
            &json!({
                "compare": [{
                    "target": "CREATE", "key": key,
                    "create_revision": self.leader_rev.to_string()
                }],
                "success": [{"request_delete_range": {"key": key}}],
            }),
        )?;
        self.leader_rev = 0;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.post("/v3/lease/revoke", &json!({"ID": self.lease.to_string()}))?;
        Ok(())
    }
}

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

/// How the driver knows a candidate is queued behind the leader.
pub enum Queued {
    /// The candidate calls back (etcd: its watch was created).
    Signalled,
    /// tenure: the node the candidate talks to (`urls[i]` for candidate
    /// `i`) answered its first try `409` and parked it: that node's
    /// `tenure_outcomes_total{op="acquire",outcome="conflict"}` went up and
    /// `tenure_watched_names` is at least 1. A waiter subscribes to the
    /// name's wakeups before that try, so a resignation after it wakes it.
    NodeMetrics(Vec<String>),
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
            Queued::NodeMetrics(urls) => Some(failover::tenure_conflicts(&self.agent, &urls[who])?),
            Queued::Signalled => None,
        };
        self.send(who, Cmd::Campaign)?;
        match (&self.queued, before) {
            (Queued::NodeMetrics(urls), Some(before)) => {
                failover::tenure_await_parked(&self.agent, &urls[who], before)
            }
            _ => self.expect("queued", |e| match e {
                Event::Queued(w) if *w == who => Some(()),
                _ => None,
            }),
        }
    }
}

/// Leadership handoffs among `candidates` (3 in the benchmark): the first
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

/// Three tenure candidates on election `name`, candidate `i` through node
/// `i`. Also returns the Paxos phases the nodes started meanwhile (the
/// whole step: setup, rounds, and everyone leaving).
pub fn tenure_handoffs(
    urls: &[String],
    name: &str,
    rounds: usize,
) -> Result<(Latencies, PaxosWork)> {
    let agent = crate::procs::agent(Duration::from_millis(TENURE_POLL_MS + 10_000));
    let candidates = (0..3)
        .map(|i| TenureCandidate::new(&agent, &urls[i % urls.len()], name, &format!("cand-{i}")))
        .collect();
    let before = PaxosWork::read(urls)?;
    let times = handoffs(candidates, rounds, Queued::NodeMetrics(urls.to_vec()))?;
    Ok((times, PaxosWork::read(urls)?.since(before)))
}

/// Three etcd candidates on election `name`, candidate `i` through member
/// `i`, each with its own session.
pub fn etcd_handoffs(urls: &[String], name: &str, rounds: usize) -> Result<Latencies> {
    let agent = crate::procs::agent(Duration::from_secs(120));
    let candidates = (0..3)
        .map(|i| EtcdCandidate::open(&agent, &urls[i % urls.len()], name, &format!("cand-{i}")))
        .collect::<Result<Vec<_>>>()?;
    handoffs(candidates, rounds, Queued::Signalled)
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
    use std::sync::{Arc, Condvar, Mutex};

    #[test]
    fn a_candidate_renews_only_after_a_poll_that_waited_a_third_of_the_lease() {
        // ttl 10 s less the 100 ms margin: the client renews past about 3.3 s.
        assert!(!poll_waited(Duration::ZERO));
        assert!(!poll_waited(Duration::from_millis(3_300)));
        assert!(poll_waited(Duration::from_millis(3_301)));
        assert!(poll_waited(Duration::from_secs(29)));
    }

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
