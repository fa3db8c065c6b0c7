//! The same four lock operations against both systems, each over one
//! kept-alive HTTP/1.1 connection per client (ureq), JSON both ways.
//!
//! etcd is driven through its HTTP/JSON gRPC gateway, which every etcd
//! member serves on its client port, with the recipe `concurrency.Mutex`
//! (and `etcdctl lock`) uses:
//!
//! - acquire: grant a lease (`/v3/lease/grant`, the session), then one
//!   transaction (`/v3/kv/txn`): if `create_revision(pfx/LEASE) == 0` put
//!   `pfx/LEASE` with the lease, and in both branches read the prefix's
//!   first-created key (the owner); granted when the owner is our key;
//! - renew: one keepalive of the lease (`/v3/lease/keepalive`);
//! - release: revoke the lease (`/v3/lease/revoke`), which deletes the key
//!   with it in one raft entry (`Mutex.Unlock` + `Session.Close` in one);
//! - read: the owner range of `concurrency.Election.Leader`, linearizable
//!   (etcd's default: not `serializable`).

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A grant held by a client: enough to renew and release it.
#[derive(Clone, Debug)]
pub struct Grant {
    pub name: String,
    /// tenure: the fencing token; etcd: the lease id.
    pub id: u64,
}

pub trait LockClient: Send {
    fn acquire(&mut self, name: &str, ttl_ms: u64) -> Result<Grant>;
    fn renew(&mut self, grant: &Grant) -> Result<()>;
    fn release(&mut self, grant: &Grant) -> Result<()>;
    fn read(&mut self, name: &str) -> Result<()>;
    /// Move to the next node (after a node stopped answering).
    fn next_node(&mut self);
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// A tenure client: `PUT`/`DELETE`/`GET /v1/locks/{name}`.
pub struct Tenure {
    agent: ureq::Agent,
    urls: Vec<String>,
    at: usize,
    holder: String,
}

impl Tenure {
    pub fn new(urls: &[String], first: usize, holder: String) -> Tenure {
        Tenure {
            agent: crate::procs::agent(TIMEOUT),
            urls: urls.to_vec(),
            at: first % urls.len(),
            holder,
        }
    }

    fn lock_url(&self, name: &str) -> String {
        format!("{}/v1/locks/{name}", self.urls[self.at])
    }
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<(u16, String)> {
    let mut r = r?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string()?;
    Ok((status, text))
}

impl LockClient for Tenure {
    fn acquire(&mut self, name: &str, ttl_ms: u64) -> Result<Grant> {
        let body = format!(r#"{{"holder":"{}","ttl_ms":{ttl_ms}}}"#, self.holder);
        let (status, text) = answer(
            self.agent
                .put(&self.lock_url(name))
                .header("content-type", "application/json")
                .send(&body),
        )?;
        if status != 201 {
            bail!("tenure acquire: {status} {text}");
        }
        let v: Value = serde_json::from_str(&text)?;
        let id = v["token"].as_u64().context("no token")?;
        Ok(Grant {
            name: name.to_string(),
            id,
        })
    }

    fn renew(&mut self, g: &Grant) -> Result<()> {
        let body = format!(r#"{{"holder":"{}","token":{}}}"#, self.holder, g.id);
        let (status, text) = answer(
            self.agent
                .put(&self.lock_url(&g.name))
                .header("content-type", "application/json")
                .send(&body),
        )?;
        if status != 200 {
            bail!("tenure renew: {status} {text}");
        }
        Ok(())
    }

    fn release(&mut self, g: &Grant) -> Result<()> {
        let url = format!(
            "{}?holder={}&token={}",
            self.lock_url(&g.name),
            self.holder,
            g.id
        );
        let (status, text) = answer(self.agent.delete(&url).call())?;
        if status != 204 {
            bail!("tenure release: {status} {text}");
        }
        Ok(())
    }

    fn read(&mut self, name: &str) -> Result<()> {
        let (status, text) = answer(self.agent.get(&self.lock_url(name)).call())?;
        if status != 200 && status != 404 {
            bail!("tenure read: {status} {text}");
        }
        Ok(())
    }

    fn next_node(&mut self) {
        self.at = (self.at + 1) % self.urls.len();
    }
}

/// An etcd client through the HTTP/JSON gateway, with the Mutex recipe.
pub struct Etcd {
    agent: ureq::Agent,
    urls: Vec<String>,
    at: usize,
    /// How long the transaction alone took in the last acquire: the cost
    /// of a lock for a client whose session (lease) already exists.
    pub last_txn: Duration,
    /// The ttl etcd granted the last acquire's lease, in seconds (it
    /// raises a ttl below its minimum).
    pub last_ttl_s: i64,
}

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The range end that makes a range over `prefix` a prefix range
/// (`clientv3.GetPrefixRangeEnd`): the prefix with its last byte plus one.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn lock_prefix(name: &str) -> String {
    format!("/tenure-bench/{name}/")
}

/// The owner query of `concurrency.Mutex` (`WithFirstCreate`).
fn owner_range(prefix: &str) -> Value {
    json!({
        "key": b64(prefix),
        "range_end": base64::engine::general_purpose::STANDARD.encode(prefix_end(prefix)),
        "sort_order": "ASCEND",
        "sort_target": "CREATE",
        "limit": "1",
    })
}

impl Etcd {
    pub fn new(urls: &[String], first: usize) -> Etcd {
        Etcd {
            agent: crate::procs::agent(TIMEOUT),
            urls: urls.to_vec(),
            at: first % urls.len(),
            last_txn: Duration::ZERO,
            last_ttl_s: 0,
        }
    }

    fn call(&self, path: &str, body: &Value) -> Result<Value> {
        let (status, text) = answer(
            self.agent
                .post(&format!("{}{path}", self.urls[self.at]))
                .header("content-type", "application/json")
                .send(body.to_string()),
        )?;
        if status != 200 {
            bail!("etcd {path}: {status} {text}");
        }
        let v: Value = serde_json::from_str(&text)?;
        if let Some(e) = v.get("error") {
            bail!("etcd {path}: {e}");
        }
        Ok(v)
    }
}

pub fn id_of(v: &Value) -> Option<u64> {
    v.as_str()?.parse().ok()
}

impl LockClient for Etcd {
    fn acquire(&mut self, name: &str, ttl_ms: u64) -> Result<Grant> {
        let ttl_s = ttl_ms.div_ceil(1000).max(1);
        let lease = self.call("/v3/lease/grant", &json!({ "TTL": ttl_s.to_string() }))?;
        let id = id_of(&lease["ID"]).context("etcd grant: no ID")?;
        self.last_ttl_s = lease["TTL"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let prefix = lock_prefix(name);
        let key = format!("{prefix}{id:x}");
        let started = Instant::now();
        let txn = self.call(
            "/v3/kv/txn",
            &json!({
                "compare": [{"target": "CREATE", "key": b64(&key), "create_revision": "0"}],
                "success": [
                    {"request_put": {"key": b64(&key), "value": "", "lease": id.to_string()}},
                    {"request_range": owner_range(&prefix)},
                ],
                "failure": [
                    {"request_range": {"key": b64(&key)}},
                    {"request_range": owner_range(&prefix)},
                ],
            }),
        )?;
        self.last_txn = started.elapsed();
        let owner = &txn["responses"][1]["response_range"]["kvs"][0]["key"];
        if owner.as_str() != Some(b64(&key).as_str()) {
            bail!("etcd acquire of {name}: owner is {owner}, not us");
        }
        Ok(Grant {
            name: name.to_string(),
            id,
        })
    }

    fn renew(&mut self, g: &Grant) -> Result<()> {
        let v = self.call("/v3/lease/keepalive", &json!({ "ID": g.id.to_string() }))?;
        let ttl: i64 = v["result"]["TTL"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if ttl <= 0 {
            bail!("etcd keepalive: lease {} is gone: {v}", g.id);
        }
        Ok(())
    }

    fn release(&mut self, g: &Grant) -> Result<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": g.id.to_string() }))?;
        Ok(())
    }

    fn read(&mut self, name: &str) -> Result<()> {
        self.call("/v3/kv/range", &owner_range(&lock_prefix(name)))?;
        Ok(())
    }

    fn next_node(&mut self) {
        self.at = (self.at + 1) % self.urls.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("ab\u{7f}"), b"ab\x80".to_vec());
        assert_eq!(b64("/a/"), "L2Ev");
    }
}
