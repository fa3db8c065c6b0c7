//! Failover: a holder dies right after renewing; how long until a waiter,
//! already waiting the way each system's lock recipe waits, is granted?
//!
//! The holder's "death" is the end of its renewals: neither system ties a
//! lease to a connection, so from the cluster's side that is what a SIGKILL
//! of the holder's process looks like. The clock starts when the holder's
//! last renewal was answered.
//!
//! - tenure: the waiter long-polls `PUT /v1/locks/{name}?wait=60s` through
//!   another node than the holder's.
//! - etcd: the waiter runs `concurrency.Mutex.Lock`: its own session lease,
//!   the create-revision transaction, then `waitDeletes`: range the last
//!   key created before its own, watch that key (`/v3/watch`, streamed)
//!   until it is deleted, range again; granted when none is left.

use crate::clients::{b64, id_of, prefix_end, Etcd, Grant, LockClient, Tenure};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Failover {
    /// The ttl asked for, in ms.
    pub ttl_ms: u64,
    /// The ttl the system granted, in ms.
    pub granted_ttl_ms: u64,
    /// From the holder's last answered renewal to the waiter's grant.
    pub takeover: Duration,
}

const WAIT: Duration = Duration::from_secs(60);

/// How the holder lets go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LetGo {
    /// Renews once more, then stops renewing (its process died); the
    /// clock starts when that renewal was answered.
    Dies,
    /// Releases (tenure: `DELETE`; etcd: revokes its session lease); the
    /// clock starts when the release is sent.
    Releases,
}

pub fn tenure(urls: &[String], name: &str, ttl_ms: u64, how: LetGo) -> Result<Failover> {
    let mut holder = Tenure::new(urls, 0, "holder".into());
    let grant = holder.acquire(name, ttl_ms)?;
    let probe = crate::procs::agent(Duration::from_secs(5));
    let before = tenure_waiters(&probe, &urls[1 % urls.len()], name)?;
    let url = format!("{}/v1/locks/{name}?wait=60s", urls[1 % urls.len()]);
    let body = format!(r#"{{"holder":"waiter","ttl_ms":{ttl_ms}}}"#);
    let waiter = std::thread::spawn(move || -> Result<Instant> {
        let agent = crate::procs::agent(WAIT + Duration::from_secs(5));
        let mut r = agent
            .put(&url)
            .header("content-type", "application/json")
            .send(&body)?;
        let at = Instant::now();
        let text = r.body_mut().read_to_string()?;
        if r.status().as_u16() != 201 {
            bail!("tenure waiter: {} {text}", r.status());
        }
        Ok(at)
    });
    // Wait for the long poll to join the name's queue.
    tenure_await_queued(&probe, &urls[1 % urls.len()], name, before)?;
    let died = let_go(&mut holder, &grant, how)?;
    drop(holder);
    let granted = waiter.join().expect("waiter thread")?;
    Ok(Failover {
        ttl_ms,
        granted_ttl_ms: ttl_ms,
        takeover: granted.saturating_duration_since(died),
    })
}

pub fn etcd(urls: &[String], name: &str, ttl_ms: u64, how: LetGo) -> Result<Failover> {
    let mut holder = Etcd::new(urls, 0);
    let grant = holder.acquire(name, ttl_ms)?;
    let granted_ttl_ms = holder.last_ttl_s.max(0) as u64 * 1000;
    let (ready_tx, ready_rx) = mpsc::channel();
    let waiter_urls = urls.to_vec();
    let name = name.to_string();
    let waiter = std::thread::spawn(move || {
        mutex_lock(&waiter_urls[1 % waiter_urls.len()], &name, ready_tx)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the etcd waiter never started watching")?;
    let died = let_go(&mut holder, &grant, how)?;
    drop(holder);
    let granted = waiter.join().expect("waiter thread")?;
    Ok(Failover {
        ttl_ms,
        granted_ttl_ms,
        takeover: granted.saturating_duration_since(died),
    })
}

fn let_go(holder: &mut impl LockClient, grant: &Grant, how: LetGo) -> Result<Instant> {
    match how {
        LetGo::Dies => {
            holder.renew(grant)?;
            Ok(Instant::now())
        }
        LetGo::Releases => {
            let sent = Instant::now();
            holder.release(grant)?;
            Ok(sent)
        }
    }
}

/// The values of the metric lines of node `base` that start with each of
/// `prefixes` (the name and labels, then a space): `None` for a line not
/// there (a counter never incremented is not rendered).
pub fn tenure_metric_values(
    agent: &ureq::Agent,
    base: &str,
    prefixes: &[&str],
) -> Result<Vec<Option<f64>>> {
    let mut r = agent.get(&format!("{base}/metrics")).call()?;
    let text = r.body_mut().read_to_string()?;
    if r.status().as_u16() != 200 {
        bail!("tenure {base}/metrics: {}", r.status());
    }
    Ok(prefixes
        .iter()
        .map(|prefix| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .collect())
}

/// How many acquires wait in the queue of `name`, as a linearizable read
/// through node `base` shows it (`waiters` of a held lease; 0 otherwise).
pub fn tenure_waiters(agent: &ureq::Agent, base: &str, name: &str) -> Result<u64> {
    let mut r = agent.get(&format!("{base}/v1/locks/{name}")).call()?;
    let text = r.body_mut().read_to_string()?;
    let status = r.status().as_u16();
    if status != 200 && status != 404 {
        bail!("tenure read of {name} through {base}: {status} {text}");
    }
    let view: serde_json::Value = serde_json::from_str(&text)?;
    Ok(view["waiters"].as_u64().unwrap_or(0))
}

/// Return once more than `before` acquires wait in the queue of `name`: a
/// long poll sent just now has joined it, so a release from then on hands
/// the lease to it (or to one queued before it). Nothing pushes this to a
/// client, so the name is read every 2 ms (10 s at most); only one waiter
/// must be in the making.
pub fn tenure_await_queued(agent: &ureq::Agent, base: &str, name: &str, before: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiters = tenure_waiters(agent, base, name)?;
        if waiters > before {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no long poll joined the queue of {name} within 10 s ({waiters} waiting)");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A new etcd lease of `ttl_s` seconds (a `concurrency` session); its ID.
pub fn grant_session(agent: &ureq::Agent, base: &str, ttl_s: u64) -> Result<u64> {
    let lease = post(
        agent,
        &format!("{base}/v3/lease/grant"),
        &json!({"TTL": ttl_s.to_string()}),
    )?;
    id_of(&lease["ID"]).context("etcd session: no lease ID")
}

/// An etcd answer other than `200`, kept whole so that a caller can tell
/// a `503` from a refusal.
#[derive(Debug)]
pub struct HttpStatus {
    pub url: String,
    pub status: u16,
    pub text: String,
}

impl std::fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As `http::StatusCode` shows itself: "503 Service Unavailable".
        let code = ureq::http::StatusCode::from_u16(self.status);
        match code {
            Ok(code) => write!(f, "etcd {}: {code} {}", self.url, self.text),
            Err(_) => write!(f, "etcd {}: {} {}", self.url, self.status, self.text),
        }
    }
}

impl std::error::Error for HttpStatus {}

pub fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Result<Value> {
    let mut r = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())?;
    let text = r.body_mut().read_to_string()?;
    let status = r.status().as_u16();
    if status != 200 {
        return Err(HttpStatus {
            url: url.to_string(),
            status,
            text,
        }
        .into());
    }
    Ok(serde_json::from_str(&text)?)
}

pub fn rev(v: &Value) -> i64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `concurrency.Mutex.Lock` over the gateway; returns when granted.
fn mutex_lock(base: &str, name: &str, ready: mpsc::Sender<()>) -> Result<Instant> {
    let agent = crate::procs::agent(WAIT);
    let id = grant_session(&agent, base, 60)?;
    let prefix = format!("/tenure-bench/{name}/");
    let key = format!("{prefix}{id:x}");
    let txn = post(
        &agent,
        &format!("{base}/v3/kv/txn"),
        &json!({
            "compare": [{"target": "CREATE", "key": b64(&key), "create_revision": "0"}],
            "success": [{"request_put": {"key": b64(&key), "value": "", "lease": id.to_string()}}],
        }),
    )?;
    let my_rev = rev(&txn["header"]["revision"]);
    let mut signalled = false;
    wait_deletes(&agent, base, &prefix, my_rev - 1, &mut || {
        if !signalled {
            signalled = true;
            let _ = ready.send(());
        }
    })?;
    let at = Instant::now();
    let _ = post(
        &agent,
        &format!("{base}/v3/lease/revoke"),
        &json!({"ID": id.to_string()}),
    );
    if !signalled {
        bail!("the etcd waiter was granted before the holder died");
    }
    Ok(at)
}

/// `waitDeletes` of etcd's `concurrency` package, over the gateway: until
/// no key under `prefix` created at or before `max_rev` is left, watch the
/// last one created (from the range's revision on) until it is deleted.
/// `watching` is called each time a watch is in place.
pub fn wait_deletes(
    agent: &ureq::Agent,
    base: &str,
    prefix: &str,
    max_rev: i64,
    watching: &mut dyn FnMut(),
) -> Result<()> {
    wait_deletes_within(agent, base, prefix, max_rev, None, watching)
}

/// `wait_deletes`, each watch given up after `watch_for` (a timeout
/// error, like any request's); `None`: the agent's timeout.
pub fn wait_deletes_within(
    agent: &ureq::Agent,
    base: &str,
    prefix: &str,
    max_rev: i64,
    watch_for: Option<Duration>,
    watching: &mut dyn FnMut(),
) -> Result<()> {
    let end = base64::engine::general_purpose::STANDARD.encode(prefix_end(prefix));
    loop {
        let before = post(
            agent,
            &format!("{base}/v3/kv/range"),
            &json!({
                "key": b64(prefix), "range_end": end,
                "max_create_revision": max_rev.to_string(),
                "sort_order": "DESCEND", "sort_target": "CREATE", "limit": "1",
            }),
        )?;
        let Some(kv) = before["kvs"].get(0) else {
            return Ok(());
        };
        let watched = kv["key"].as_str().context("no key")?.to_string();
        let from = rev(&before["header"]["revision"]);
        let mut request = agent
            .post(&format!("{base}/v3/watch"))
            .header("content-type", "application/json");
        if let Some(d) = watch_for {
            request = request.config().timeout_global(Some(d)).build();
        }
        let response = request.send(
            json!({"create_request": {"key": watched, "start_revision": from.to_string()}})
                .to_string(),
        )?;
        let mut lines = BufReader::new(response.into_body().into_reader()).lines();
        let mut deleted = false;
        for line in lines.by_ref() {
            let v: Value = serde_json::from_str(&line?)?;
            let result = &v["result"];
            if result["created"] == true {
                watching();
            }
            if let Some(events) = result["events"].as_array() {
                if events.iter().any(|e| e["type"] == "DELETE") {
                    deleted = true;
                    break;
                }
            }
        }
        if !deleted {
            bail!("the etcd watch ended without the delete");
        }
    }
}
