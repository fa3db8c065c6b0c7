//! An acquire that does not wait, and its release, for both systems, each
//! client over one kept-alive connection (ureq) to one node at a time.
//!
//! - tenure: `PUT /v1/locks/{name}` `{"holder","ttl_ms"}` without `wait`:
//!   `201` granted (the token), `409` held; release `DELETE
//!   /v1/locks/{name}?holder=H&token=T`.
//! - etcd: one lease per client (a `concurrency` session), granted before
//!   the workload and reused for every lock; the lock is one key, taken by
//!   the txn `create_revision(key) == 0` → put the key with the lease
//!   (granted: the txn's revision is the key's create revision) else read
//!   it (refused, unless the key carries our lease: an earlier try whose
//!   answer was lost took effect, and the lock is ours); release is the
//!   txn `create_revision(key) == ours` → delete it, as `Election.Resign`
//!   deletes its key.

use super::outcome::Failure;
use crate::clients::{b64, id_of};
use crate::failover::rev;
use crate::workloads::TTL_MS;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long a client waits for any one answer before counting a timeout.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// `concurrency.NewSession`'s default ttl: the workloads end well within
/// it, so no keepalive is sent.
const ETCD_SESSION_TTL_S: u64 = 60;

/// The answer to one acquire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// tenure: the token; etcd: the key's create revision.
    Granted(u64),
    /// Someone else holds the name.
    Refused,
    Failed(Failure),
}

/// How a release ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    Released,
    /// The grant is no longer the current one: an earlier try of this
    /// release took effect although its answer was lost.
    NotCurrent,
}

/// A client of a lock, talking to one node at a time: what every recipe
/// does besides taking the lock.
pub trait Client: Send {
    /// Open the connection (etcd: and grant the client's lease); not timed.
    fn warm(&mut self) -> Result<(), Failure>;
    fn release(&mut self, name: &str, grant: u64) -> Result<Release, Failure>;
    /// The node (0-based) this client talks to, of `nodes()`.
    fn node(&self) -> usize;
    fn nodes(&self) -> usize;
    /// Move to the next node (after a connection error: a dead node).
    fn next_node(&mut self);
    /// Leave (etcd: revoke the lease, and with it any key left); not timed.
    fn close(&mut self);
}

/// An acquire that does not wait.
pub trait TryLock: Client {
    fn try_acquire(&mut self, name: &str) -> Attempt;
}

/// `(status, body)` of a request, or why there is none.
pub fn answer(
    r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), Failure> {
    let mut r = r.map_err(|e| Failure::of_ureq(&e))?;
    let status = r.status().as_u16();
    let text = r
        .body_mut()
        .read_to_string()
        .map_err(|e| Failure::of_ureq(&e))?;
    Ok((status, text))
}

pub struct TenureTry {
    agent: ureq::Agent,
    urls: Vec<String>,
    at: usize,
    holder: String,
}

impl TenureTry {
    pub fn new(urls: &[String], first: usize, holder: String) -> TenureTry {
        TenureTry {
            agent: crate::procs::agent(CLIENT_TIMEOUT),
            urls: urls.to_vec(),
            at: first % urls.len(),
            holder,
        }
    }

    fn lock_url(&self, name: &str) -> String {
        format!("{}/v1/locks/{name}", self.urls[self.at])
    }

    /// `PUT /v1/locks/{name}?wait=...`: a long poll of up to `wait`, given
    /// the client's timeout beyond it.
    pub fn acquire_waiting(
        &mut self,
        name: &str,
        wait: Duration,
    ) -> Result<(u16, String), Failure> {
        let body = format!(r#"{{"holder":"{}","ttl_ms":{TTL_MS}}}"#, self.holder);
        let url = format!("{}?wait={}ms", self.lock_url(name), wait.as_millis());
        let sent = self
            .agent
            .put(&url)
            .header("content-type", "application/json")
            .config()
            .timeout_global(Some(wait + CLIENT_TIMEOUT))
            .build()
            .send(&body);
        answer(sent)
    }
}

impl Client for TenureTry {
    fn warm(&mut self) -> Result<(), Failure> {
        let url = format!("{}/healthz", self.urls[self.at]);
        match answer(self.agent.get(&url).call())? {
            (200, _) => Ok(()),
            (status, text) => Err(Failure::status(status, &text)),
        }
    }

    fn release(&mut self, name: &str, token: u64) -> Result<Release, Failure> {
        let url = format!(
            "{}?holder={}&token={token}",
            self.lock_url(name),
            self.holder
        );
        match answer(self.agent.delete(&url).call())? {
            (204, _) => Ok(Release::Released),
            (409, _) => Ok(Release::NotCurrent),
            (status, text) => Err(Failure::status(status, &text)),
        }
    }

    fn node(&self) -> usize {
        self.at
    }

    fn nodes(&self) -> usize {
        self.urls.len()
    }

    fn next_node(&mut self) {
        self.at = (self.at + 1) % self.urls.len();
    }

    fn close(&mut self) {}
}

impl TryLock for TenureTry {
    fn try_acquire(&mut self, name: &str) -> Attempt {
        let body = format!(r#"{{"holder":"{}","ttl_ms":{TTL_MS}}}"#, self.holder);
        let sent = self
            .agent
            .put(&self.lock_url(name))
            .header("content-type", "application/json")
            .send(&body);
        match answer(sent) {
            Ok((201, text)) => match serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["token"].as_u64())
            {
                Some(token) => Attempt::Granted(token),
                None => Attempt::Failed(Failure::Other(format!("201 without a token: {text}"))),
            },
            Ok((409, _)) => Attempt::Refused,
            Ok((status, text)) => Attempt::Failed(Failure::status(status, &text)),
            Err(f) => Attempt::Failed(f),
        }
    }
}

pub struct EtcdTry {
    agent: ureq::Agent,
    urls: Vec<String>,
    at: usize,
    holder: String,
    /// The client's session lease (0 until `warm`).
    lease: u64,
}

/// The one key of a try-lock on `name`.
fn try_key(name: &str) -> String {
    format!("/tenure-bench-try/{name}")
}

impl EtcdTry {
    pub fn new(urls: &[String], first: usize, holder: String) -> EtcdTry {
        EtcdTry {
            agent: crate::procs::agent(CLIENT_TIMEOUT),
            urls: urls.to_vec(),
            at: first % urls.len(),
            holder,
            lease: 0,
        }
    }

    pub fn lease(&self) -> u64 {
        self.lease
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// The member this client talks to, `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.urls[self.at]
    }

    /// One gateway call: the answer's JSON, or why there is none.
    pub fn call(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let sent = self
            .agent
            .post(&format!("{}{path}", self.urls[self.at]))
            .header("content-type", "application/json")
            .send(body.to_string());
        match answer(sent)? {
            (200, text) => {
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| Failure::Other(format!("etcd {path}: {e}: {text}")))?;
                match v.get("error") {
                    Some(e) => Err(Failure::Other(format!("etcd {path}: {e}"))),
                    None => Ok(v),
                }
            }
            (status, text) => Err(Failure::status(status, &format!("etcd {path}: {text}"))),
        }
    }
}

impl Client for EtcdTry {
    fn warm(&mut self) -> Result<(), Failure> {
        let v = self.call(
            "/v3/lease/grant",
            &json!({ "TTL": ETCD_SESSION_TTL_S.to_string() }),
        )?;
        self.lease = id_of(&v["ID"]).ok_or_else(|| Failure::Other(format!("no lease ID: {v}")))?;
        Ok(())
    }

    fn release(&mut self, name: &str, created: u64) -> Result<Release, Failure> {
        let key = b64(&try_key(name));
        let v = self.call(
            "/v3/kv/txn",
            &json!({
                "compare": [{"target": "CREATE", "key": key, "create_revision": created.to_string()}],
                "success": [{"request_delete_range": {"key": key}}],
            }),
        )?;
        Ok(if v["succeeded"] == true {
            Release::Released
        } else {
            Release::NotCurrent
        })
    }

    fn node(&self) -> usize {
        self.at
    }

    fn nodes(&self) -> usize {
        self.urls.len()
    }

    fn next_node(&mut self) {
        self.at = (self.at + 1) % self.urls.len();
    }

    fn close(&mut self) {
        if self.lease != 0 {
            // Through every node in turn: the one in use may be dead.
            for _ in 0..self.urls.len() {
                let revoked = self.call("/v3/lease/revoke", &json!({"ID": self.lease.to_string()}));
                if revoked.is_ok() {
                    return;
                }
                self.next_node();
            }
        }
    }
}

impl TryLock for EtcdTry {
    fn try_acquire(&mut self, name: &str) -> Attempt {
        let key = b64(&try_key(name));
        let txn = self.call(
            "/v3/kv/txn",
            &json!({
                "compare": [{"target": "CREATE", "key": key, "create_revision": "0"}],
                "success": [{"request_put": {
                    "key": key, "value": b64(&self.holder), "lease": self.lease.to_string()
                }}],
                "failure": [{"request_range": {"key": key}}],
            }),
        );
        let v = match txn {
            Ok(v) => v,
            Err(f) => return Attempt::Failed(f),
        };
        if v["succeeded"] == true {
            return Attempt::Granted(rev(&v["header"]["revision"]) as u64);
        }
        // The key is there. With our lease on it, an earlier try whose
        // answer was lost (a timeout while the leader changed) took
        // effect: the lock is ours, as `Mutex.Lock` finds its own key.
        let kv = &v["responses"][0]["response_range"]["kvs"][0];
        if id_of(&kv["lease"]) == Some(self.lease) {
            Attempt::Granted(rev(&kv["create_revision"]) as u64)
        } else {
            Attempt::Refused
        }
    }
}

/// How long a release keeps trying: the client's timeout.
const RELEASE_FOR: Duration = CLIENT_TIMEOUT;
/// The pause after each round of the nodes, doubling up to the most: the
/// schedule of tenure's client (`BACKOFF_FIRST`, `BACKOFF_MAX`).
const RELEASE_PAUSE_FIRST: Duration = Duration::from_millis(50);
const RELEASE_PAUSE_MAX: Duration = Duration::from_secs(1);

/// Release `grant`, as tenure's client sends a request: after a failure,
/// again through the next node, pausing after each round of the nodes, for
/// at most `RELEASE_FOR`; every failure is reported to `failed` with the
/// node it came from. Whether the grant was released; one left held runs
/// out with its ttl (etcd: its lease's).
pub fn release_retrying(
    client: &mut dyn Client,
    name: &str,
    grant: u64,
    failed: &mut dyn FnMut(&Failure, usize),
) -> bool {
    let give_up_at = Instant::now() + RELEASE_FOR;
    let mut pause = RELEASE_PAUSE_FIRST;
    for attempt in 1.. {
        match client.release(name, grant) {
            Ok(Release::Released) => return true,
            // Only a lost answer of an earlier try explains it.
            Ok(Release::NotCurrent) if attempt > 1 => return true,
            Ok(Release::NotCurrent) => {
                let f = Failure::Other(format!(
                    "the release of grant {grant} found it no longer current"
                ));
                failed(&f, client.node());
                return false;
            }
            Err(f) => {
                failed(&f, client.node());
                client.next_node();
                if attempt % client.nodes() == 0 {
                    std::thread::sleep(
                        pause.min(give_up_at.saturating_duration_since(Instant::now())),
                    );
                    pause = (pause * 2).min(RELEASE_PAUSE_MAX);
                }
            }
        }
        if Instant::now() >= give_up_at {
            break;
        }
    }
    false
}
