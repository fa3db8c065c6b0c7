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

use crate::clients::{b64, prefix_end, Etcd, Grant, LockClient, Tenure};
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
    // Let the long-poll reach the node and park (it gets its 409 inside).
    std::thread::sleep(Duration::from_millis(300));
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

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Result<Value> {
    let mut r = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())?;
    let text = r.body_mut().read_to_string()?;
    if r.status().as_u16() != 200 {
        bail!("etcd {url}: {} {text}", r.status());
    }
    Ok(serde_json::from_str(&text)?)
}

fn rev(v: &Value) -> i64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `concurrency.Mutex.Lock` over the gateway; returns when granted.
fn mutex_lock(base: &str, name: &str, ready: mpsc::Sender<()>) -> Result<Instant> {
    let agent = crate::procs::agent(WAIT);
    let lease = post(
        &agent,
        &format!("{base}/v3/lease/grant"),
        &json!({"TTL": "60"}),
    )?;
    let id: u64 = lease["ID"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("no lease ID")?;
    let prefix = format!("/tenure-bench/{name}/");
    let end = base64::engine::general_purpose::STANDARD.encode(prefix_end(&prefix));
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
    loop {
        // waitDeletes: the last key created before ours, if any.
        let before = post(
            &agent,
            &format!("{base}/v3/kv/range"),
            &json!({
                "key": b64(&prefix), "range_end": end,
                "max_create_revision": (my_rev - 1).to_string(),
                "sort_order": "DESCEND", "sort_target": "CREATE", "limit": "1",
            }),
        )?;
        let Some(kv) = before["kvs"].get(0) else {
            let at = Instant::now();
            let _ = post(
                &agent,
                &format!("{base}/v3/lease/revoke"),
                &json!({"ID": id.to_string()}),
            );
            if !signalled {
                bail!("the etcd waiter was granted before the holder died");
            }
            return Ok(at);
        };
        let watched = kv["key"].as_str().context("no key")?.to_string();
        let from = rev(&before["header"]["revision"]);
        let response = agent
            .post(&format!("{base}/v3/watch"))
            .header("content-type", "application/json")
            .send(
                json!({"create_request": {"key": watched, "start_revision": from.to_string()}})
                    .to_string(),
            )?;
        let mut lines = BufReader::new(response.into_body().into_reader()).lines();
        let mut deleted = false;
        for line in lines.by_ref() {
            let v: Value = serde_json::from_str(&line?)?;
            let result = &v["result"];
            if result["created"] == true && !signalled {
                signalled = true;
                let _ = ready.send(());
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
