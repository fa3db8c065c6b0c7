//! One candidate of each system, doing what its library does (see the
//! module above for the requests).

use crate::clients::b64;
use crate::contended::outcome::{Failure, Tally};
use crate::failover::{self, rev};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest single long poll of tenure's client (`MAX_POLL`).
pub(super) const TENURE_POLL_MS: u64 = 30_000;
/// `LeaderElection`'s default ttl.
const TENURE_TTL_MS: u64 = 10_000;
/// `Lock::acquire`'s safety margin (`DEFAULT_MARGIN`).
const TENURE_MARGIN_MS: u64 = 100;
/// `concurrency.NewSession`'s default ttl.
const ETCD_SESSION_TTL_S: u64 = 60;
/// Tries of a resignation that meets failures, when they are ridden out.
const RESIGN_TRIES: usize = 10;

/// Where a candidate counts the failures it rides out (the election among
/// 32 candidates: each failure is counted, then the library's next step
/// follows: poll again, or send the resignation again); `None`: the first
/// failure ends the step, as in the election among 3.
pub type Failures = Option<Arc<Mutex<Tally>>>;

/// Count `failure` and go on, or end with `error`.
fn ride_out(failures: &Failures, failure: Failure, error: anyhow::Error) -> Result<()> {
    match failures {
        Some(tally) => {
            tally.lock().expect("failure tally").count(&failure);
            Ok(())
        }
        None => Err(error),
    }
}

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
    failures: Failures,
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
            failures: None,
        }
    }

    /// Count failures and ride them out (see `Failures`).
    pub fn riding_out(mut self, failures: Failures) -> TenureCandidate {
        self.failures = failures;
        self
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
            let (status, v) = match self.put(&format!("?wait={TENURE_POLL_MS}ms"), &acquire) {
                Ok(answer) => answer,
                Err(e) => {
                    ride_out(&self.failures, Failure::of_anyhow(&e), e)?;
                    continue;
                }
            };
            match status {
                201 => {}
                // The wait ran out: poll again, as the client does. Where
                // failures are counted, a whole wait without the grant is
                // one (a timeout).
                409 => {
                    if let Some(tally) = &self.failures {
                        tally
                            .lock()
                            .expect("failure tally")
                            .count(&Failure::Timeout(format!(
                                "no grant within a {TENURE_POLL_MS} ms long poll"
                            )));
                    }
                    continue;
                }
                _ => {
                    let failure = Failure::status(status, &v.to_string());
                    ride_out(
                        &self.failures,
                        failure,
                        anyhow!("tenure campaign: {status} {v}"),
                    )?;
                    continue;
                }
            }
            self.granted_at = Some(Instant::now());
            let token = v["token"].as_u64().context("tenure campaign: no token")?;
            if !poll_waited(sent.elapsed()) {
                self.token = Some(token);
                return Ok(());
            }
            let renew = format!(r#"{{"holder":"{}","token":{token}}}"#, self.id);
            match self.put("", &renew) {
                Ok((200, _)) => {
                    self.token = Some(token);
                    return Ok(());
                }
                // Lost between the poll and the renewal: wait again.
                Ok((409, _)) => continue,
                Ok((status, v)) => ride_out(
                    &self.failures,
                    Failure::status(status, &v.to_string()),
                    anyhow!("tenure campaign, renewal after the grant: {status} {v}"),
                )?,
                Err(e) => ride_out(&self.failures, Failure::of_anyhow(&e), e)?,
            }
        }
    }

    fn resign(&mut self) -> Result<()> {
        let token = self.token.take().context("tenure resign: not leading")?;
        for attempt in 0..RESIGN_TRIES {
            let answer = (|| -> Result<(u16, String)> {
                let mut r = self
                    .agent
                    .delete(&format!("{}?holder={}&token={token}", self.url, self.id))
                    .call()?;
                let status = r.status().as_u16();
                Ok((status, r.body_mut().read_to_string()?))
            })();
            match answer {
                Ok((204, _)) => return Ok(()),
                // Only an earlier try that took effect, its answer lost,
                // explains it.
                Ok((409, _)) if attempt > 0 => return Ok(()),
                Ok((status, text)) => ride_out(
                    &self.failures,
                    Failure::status(status, &text),
                    anyhow!("tenure resign: {status} {text}"),
                )?,
                Err(e) => ride_out(&self.failures, Failure::of_anyhow(&e), e)?,
            }
        }
        bail!("tenure resign: {RESIGN_TRIES} tries failed")
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
    failures: Failures,
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
            failures: None,
        })
    }

    /// Count failures and ride them out (see `Failures`).
    pub fn riding_out(mut self, failures: Failures) -> EtcdCandidate {
        self.failures = failures;
        self
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        failover::post(&self.agent, &format!("{}{path}", self.base), body)
    }
}

impl Candidate for EtcdCandidate {
    fn campaign(&mut self, queued: &mut dyn FnMut()) -> Result<()> {
        let key = b64(&self.key);
        loop {
            let txn = self.post(
                "/v3/kv/txn",
                &json!({
                    "compare": [{"target": "CREATE", "key": key, "create_revision": "0"}],
                    "success": [{"request_put": {
                        "key": key, "value": b64(&self.id), "lease": self.lease.to_string()
                    }}],
                    "failure": [{"request_range": {"key": key}}],
                }),
            );
            let txn = match txn {
                Ok(txn) => txn,
                Err(e) => {
                    ride_out(&self.failures, Failure::of_anyhow(&e), e)?;
                    continue;
                }
            };
            self.leader_rev = if txn["succeeded"] == true {
                rev(&txn["header"]["revision"])
            } else {
                // Our key is there already (a campaign again on one
                // session, or after a failed wait): keep its place. Its
                // value is ours, so no `Proclaim`.
                rev(&txn["responses"][0]["response_range"]["kvs"][0]["create_revision"])
            };
            match failover::wait_deletes(
                &self.agent,
                &self.base,
                &self.prefix,
                self.leader_rev - 1,
                queued,
            ) {
                Ok(()) => return Ok(()),
                Err(e) => ride_out(&self.failures, Failure::of_anyhow(&e), e)?,
            }
        }
    }

    fn resign(&mut self) -> Result<()> {
        let key = b64(&self.key);
        for _ in 0..RESIGN_TRIES {
            let deleted = self.post(
                "/v3/kv/txn",
                &json!({
                    "compare": [{
                        "target": "CREATE", "key": key,
                        "create_revision": self.leader_rev.to_string()
                    }],
                    "success": [{"request_delete_range": {"key": key}}],
                }),
            );
            match deleted {
                Ok(_) => {
                    self.leader_rev = 0;
                    return Ok(());
                }
                Err(e) => ride_out(&self.failures, Failure::of_anyhow(&e), e)?,
            }
        }
        bail!("etcd resign: {RESIGN_TRIES} tries failed")
    }

    fn close(&mut self) -> Result<()> {
        self.post("/v3/lease/revoke", &json!({"ID": self.lease.to_string()}))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_renews_only_after_a_poll_that_waited_a_third_of_the_lease() {
        // ttl 10 s less the 100 ms margin: the client renews past about 3.3 s.
        assert!(!poll_waited(Duration::ZERO));
        assert!(!poll_waited(Duration::from_millis(3_300)));
        assert!(poll_waited(Duration::from_millis(3_301)));
        assert!(poll_waited(Duration::from_secs(29)));
    }

    #[test]
    fn a_failure_ends_the_step_unless_the_candidate_counts_and_rides_it_out() {
        let failure = || Failure::status(503, "no quorum");
        let error = || anyhow!("tenure campaign: 503 no quorum");
        // The election among 3: the first failure ends the step, as it
        // always did.
        let err = ride_out(&None, failure(), error()).unwrap_err();
        assert_eq!(err.to_string(), "tenure campaign: 503 no quorum");
        // Among 32: counted, and the candidate goes on.
        let tally = Arc::new(Mutex::new(Tally::default()));
        ride_out(&Some(tally.clone()), failure(), error()).unwrap();
        ride_out(
            &Some(tally.clone()),
            Failure::Timeout("30 s".into()),
            error(),
        )
        .unwrap();
        let t = tally.lock().unwrap();
        assert_eq!((t.server_5xx, t.timeouts, t.errors()), (1, 1, 2));
    }
}
