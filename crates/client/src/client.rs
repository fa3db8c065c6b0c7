//! `Client`: requests to a list of nodes, with failover, a deadline on every
//! call, and retries only where retrying is safe.
//!
//! Every node serves the whole API, so any node will do. The client keeps
//! the last node that answered as its first choice and moves to the next on
//! a connection failure, a timeout or a `503`. It backs off (exponential,
//! full jitter) only after a full round through the nodes has failed.

mod answers;
mod causes;
mod history;
pub use history::HistoryChange;
mod members;
pub use members::Members;
mod inputs;

use crate::clock::{Clock, Stamp};
use crate::error::Error;
use crate::state::LeaseState;
use crate::time;
use crate::tls::TlsOptions;
use answers::{conflict_error, conflict_state, granted, parse_state, refusal};
use bytes::Bytes;
use causes::{deepest_cause, refused, OnceError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use inputs::{check, query_escape};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenure_core::{DriftBound, HolderId, LeaseName, Ttl};

/// The server answers within its own 3 s request deadline (`503` after);
/// an attempt gets a little more before the client gives up on that node.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);
/// How long one call may take, across all its attempts and nodes.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers are a few hundred bytes; refuse to buffer more than this.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// A bound on attempts per call, whatever the deadline.
const MAX_ATTEMPTS: u32 = 64;
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long after the end of a caller's wait an acquire may still take, for
/// the answer of a long poll that ended then to arrive.
const LONG_POLL_ANSWER_GRACE: Duration = Duration::from_millis(500);
/// A node that does not accept a connection within this is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The endpoints of `tenure dev`.
pub const DEV_ENDPOINTS: &str = "http://127.0.0.1:7400,http://127.0.0.1:7401,http://127.0.0.1:7402";

type Http = hyper_util::client::legacy::Client<crate::tls::Connector, Full<Bytes>>;

fn http_client(tls: &TlsOptions) -> Result<Http, Error> {
    let mut tcp = HttpConnector::new();
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    tcp.set_nodelay(true);
    // The TLS connector above it takes https:// URIs.
    tcp.enforce_http(false);
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            // Bounded: a client keeps at most a few idle connections a node.
            .pool_max_idle_per_host(8)
            .build(crate::tls::connector(tcp, tls)?),
    )
}

/// A handle on a tenure cluster. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    http: Http,
    /// The node to try first: the last one that answered.
    preferred: AtomicUsize,
    attempt_timeout: Duration,
    call_timeout: Duration,
    /// Give a call up once every node has refused the connection twice
    /// in a row (see `Client::giving_up_when_refused`).
    give_up_when_refused: bool,
    /// The clock send times and deadlines are read on.
    clock: Clock,
    /// Sent as `Authorization: Bearer` when the cluster asks for tokens.
    token: Option<HeaderValue>,
}

/// Which failures a call may retry, on the same node or another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, renewals (bound to a token) and acquires (a retried acquire
    /// by the same holder supersedes an unknown earlier grant with a fresh
    /// one): a repeat can do no harm, whatever became of the first.
    Always,
    /// Releases: retried only when the first attempt certainly had no
    /// effect (no connection, or a `503` that says the outcome is known),
    /// so that a `409` always means what it says about the caller's grant.
    IfNotApplied,
}

/// One request, as sent to any node.
pub(crate) struct Request {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
    /// How long one attempt may take (longer for a long poll).
    pub attempt_timeout: Duration,
}

/// A node's answer, and when the request that got it was sent.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// When the attempt that got this answer was sent, on the holder's
    /// clock: where a grant's validity starts.
    pub sent: Stamp,
    pub endpoint: String,
}

/// A grant or renewal: its token and ttl, and the send time it counts from.
#[derive(Clone, Debug)]
pub struct Granted {
    pub token: u64,
    pub ttl: Ttl,
    pub holder: String,
    /// When the winning request was sent, on the client's clock.
    pub sent: Stamp,
    /// The cluster's bound on clock drift, as the answering node gave it
    /// (the default when it gave none): the holder's deadline shrinks the
    /// ttl by twice it.
    pub drift: DriftBound,
    /// The grant's secret key, from a cluster started with
    /// `--grant-secret`: renewing or releasing the grant needs it, and
    /// only the holder ever sees it.
    pub key: Option<String>,
}

impl Granted {
    /// The last instant this process may act as holder, keeping `margin`.
    pub fn deadline(&self, margin: Duration) -> Stamp {
        time::deadline(self.sent, self.ttl, self.drift, margin)
    }

    /// Whether, `now`, most of a fresh lease is left (see
    /// `time::most_of_the_lease_left`).
    pub fn most_of_the_lease_left(&self, now: Stamp, margin: Duration) -> bool {
        time::most_of_the_lease_left(self.sent, now, self.ttl, self.drift, margin)
    }
}

impl Client {
    /// A client over `endpoints` (`http://host:port`), with the default
    /// timeouts.
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Result<Client, Error> {
        Client::with_timeouts(endpoints, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CALL_TIMEOUT)
    }

    /// Endpoints from a comma-separated list, as `TENURE_ENDPOINTS` holds.
    pub fn from_list(list: &str) -> Result<Client, Error> {
        let endpoints: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Client::new(&endpoints)
    }

    /// `attempt`: the most one request to one node may take. `call`: the
    /// most one call may take across retries and nodes.
    pub fn with_timeouts<S: AsRef<str>>(
        endpoints: &[S],
        attempt: Duration,
        call: Duration,
    ) -> Result<Client, Error> {
        if endpoints.is_empty() {
            return Err(Error::invalid("no endpoints given", Some("endpoints")));
        }
        let mut parsed = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let e = e.as_ref().trim_end_matches('/');
            let uri: Uri = e.parse().map_err(|err| {
                Error::invalid(format!("endpoint {e:?}: {err}"), Some("endpoints"))
            })?;
            let scheme = uri.scheme_str();
            if !matches!(scheme, Some("http" | "https")) || uri.authority().is_none() {
                return Err(Error::invalid(
                    format!("endpoint {e:?}: write it as http://host:port or https://host:port"),
                    Some("endpoints"),
                ));
            }
            parsed.push(e.to_string());
        }
        let http = http_client(&TlsOptions::default())?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints: parsed,
                http,
                preferred: AtomicUsize::new(0),
                attempt_timeout: attempt,
                call_timeout: call,
                give_up_when_refused: false,
                token: None,
                clock: Clock::default(),
            }),
        })
    }

    /// This client, but a call gives up (`Error::Unreachable`) once every
    /// node has refused the connection twice in a row, instead of retrying
    /// until its deadline: for one-shot commands, where "nothing listens
    /// there" is the likeliest cause and the user should hear it at once.
    /// Not for a lease holder: a cluster that restarts within the ttl
    /// keeps its lease only if renewals keep trying.
    pub fn giving_up_when_refused(&self) -> Client {
        self.rebuilt(|inner| inner.give_up_when_refused = true)
    }

    /// This client, reading send times and deadlines on `clock` instead of
    /// `CLOCK_BOOTTIME` (a [`SuspendableClock`](crate::SuspendableClock),
    /// say, to test how a program stops after a suspend).
    pub fn with_clock(&self, clock: Clock) -> Client {
        self.rebuilt(|inner| inner.clock = clock)
    }

    /// A client that sends `token` with every request (`Authorization:
    /// Bearer`), for a cluster started with `--tokens`.
    pub fn with_token(&self, token: &str) -> Result<Client, Error> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| Error::invalid("a token is printable ASCII", Some("token")))?;
        value.set_sensitive(true);
        Ok(self.rebuilt(|inner| inner.token = Some(value)))
    }

    /// A client that trusts `tls.ca` for `https://` endpoints and presents
    /// `tls.cert` to a cluster that requires client certificates. Its
    /// connections are its own.
    pub fn with_tls(&self, tls: &TlsOptions) -> Result<Client, Error> {
        let http = http_client(tls)?;
        Ok(self.rebuilt(|inner| inner.http = http))
    }

    /// The clock this client's deadlines are counted on.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// A new handle with `change` made, sharing the connections.
    fn rebuilt(&self, change: impl FnOnce(&mut Inner)) -> Client {
        let mut inner = Inner {
            endpoints: self.inner.endpoints.clone(),
            http: self.inner.http.clone(),
            preferred: AtomicUsize::new(self.inner.preferred.load(Ordering::Relaxed)),
            attempt_timeout: self.inner.attempt_timeout,
            call_timeout: self.inner.call_timeout,
            give_up_when_refused: self.inner.give_up_when_refused,
            clock: self.inner.clock.clone(),
            token: self.inner.token.clone(),
        };
        change(&mut inner);
        Client {
            inner: Arc::new(inner),
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    /// Send `request` to the nodes in turn until one answers with anything
    /// but `503`, or `until` passes, retrying as `retry` allows.
    pub(crate) async fn send(
        &self,
        request: &Request,
        retry: Retry,
        until: Stamp,
    ) -> Result<Answer, Error> {
        let n = self.inner.endpoints.len();
        let first = self.inner.preferred.load(Ordering::Relaxed) % n;
        let mut backoff = BACKOFF_FIRST;
        let mut last = String::from("no attempt made before the deadline");
        let mut outcome_unknown = false;
        let mut attempts = 0u32;
        // Attempts in a row whose connection was refused.
        let mut refused_in_row = 0usize;
        while attempts < MAX_ATTEMPTS {
            let now = self.inner.clock.now();
            if now >= until {
                break;
            }
            let index = (first + attempts as usize) % n;
            attempts += 1;
            let endpoint = &self.inner.endpoints[index];
            let limit = request
                .attempt_timeout
                .min(until.saturating_duration_since(now));
            let sent = self.inner.clock.now();
            let result = tokio::time::timeout(limit, self.once(endpoint, request)).await;
            // Whether this attempt may have been applied.
            let was_refused = matches!(result, Ok(Err(OnceError::Refused(_))));
            let maybe_applied = match result {
                Ok(Ok((status, body))) if status != StatusCode::SERVICE_UNAVAILABLE => {
                    self.inner.preferred.store(index, Ordering::Relaxed);
                    return Ok(Answer {
                        status,
                        body,
                        sent,
                        endpoint: endpoint.clone(),
                    });
                }
                Ok(Ok((_, body))) => {
                    let unknown = body["outcome_unknown"].as_bool().unwrap_or(true);
                    last = format!(
                        "{endpoint}: 503 {}",
                        body["error"].as_str().unwrap_or("unavailable")
                    );
                    unknown
                }
                Ok(Err(OnceError::Refused(e))) => {
                    last = format!("{endpoint}: cannot connect: {e}");
                    refused_in_row += 1;
                    // Not when an earlier attempt may have taken effect:
                    // the caller must hear that its outcome is unknown.
                    if self.inner.give_up_when_refused
                        && refused_in_row >= 2 * n
                        && !outcome_unknown
                    {
                        return Err(Error::Unreachable {
                            endpoints: self.inner.endpoints.join(", "),
                            cause: e,
                        });
                    }
                    false
                }
                Ok(Err(OnceError::NotSent(e))) => {
                    last = format!("{endpoint}: {e}");
                    false
                }
                Ok(Err(OnceError::Failed(e))) => {
                    last = format!("{endpoint}: {e}");
                    true
                }
                Err(_) => {
                    last = format!("{endpoint}: no answer within {} ms", limit.as_millis());
                    true
                }
            };
            if !was_refused {
                refused_in_row = 0;
            }
            outcome_unknown |= maybe_applied;
            // The next call starts with the next node, not this failing one.
            self.inner
                .preferred
                .store((index + 1) % n, Ordering::Relaxed);
            if maybe_applied && retry == Retry::IfNotApplied {
                break;
            }
            if attempts as usize % n == 0 {
                let pause =
                    jittered(backoff).min(until.saturating_duration_since(self.inner.clock.now()));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        Err(Error::Unavailable {
            outcome_unknown,
            attempts,
            last,
        })
    }

    /// `GET path` from the first node that answers: its `200`, or the
    /// refusal it gave.
    pub(crate) async fn get_ok(&self, path: String) -> Result<Answer, Error> {
        let request = Request {
            method: Method::GET,
            path,
            body: None,
            attempt_timeout: self.inner.attempt_timeout,
        };
        let until = self.inner.clock.now() + self.inner.call_timeout;
        let answer = self.send(&request, Retry::Always, until).await?;
        if answer.status != StatusCode::OK {
            return Err(refusal(&answer));
        }
        Ok(answer)
    }

    async fn once(
        &self,
        endpoint: &str,
        request: &Request,
    ) -> Result<(StatusCode, Value), OnceError> {
        let uri = format!("{endpoint}{}", request.path);
        let body = match &request.body {
            Some(v) => Full::new(Bytes::from(v.to_string())),
            None => Full::new(Bytes::new()),
        };
        let mut req = hyper::Request::builder()
            .method(request.method.clone())
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(token) = &self.inner.token {
            req = req.header(hyper::header::AUTHORIZATION, token.clone());
        }
        let req = req
            .body(body)
            .map_err(|e| OnceError::NotSent(e.to_string()))?;
        let response = self.inner.http.request(req).await.map_err(|e| {
            let cause = deepest_cause(&e);
            if !e.is_connect() {
                OnceError::Failed(cause)
            } else if refused(&e) {
                OnceError::Refused(cause)
            } else {
                OnceError::NotSent(format!("cannot connect: {cause}"))
            }
        })?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| OnceError::Failed(format!("reading the answer: {e}")))?
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| OnceError::Failed(format!("answer is not JSON: {e}")))?
        };
        Ok((status, body))
    }

    /// `PUT /v1/locks/{name}` without a token: one acquire, or a long poll
    /// of up to `wait`. `Ok(Err(state))` is a `409`.
    pub async fn acquire_once(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        wait: Option<Duration>,
    ) -> Result<Result<Granted, LeaseState>, Error> {
        self.acquire_by(name, holder, ttl, wait, None).await
    }

    /// [`Client::acquire_once`], but retrying no later than `give_up` (when
    /// given): a caller whose own wait ends there must not be kept past it
    /// by retries against nodes that are down.
    pub(crate) async fn acquire_by(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        wait: Option<Duration>,
        give_up: Option<Stamp>,
    ) -> Result<Result<Granted, LeaseState>, Error> {
        let (name, holder, ttl) = check(name, holder, ttl)?;
        let mut path = format!("/v1/locks/{}", name.as_str());
        let mut attempt_timeout = self.inner.attempt_timeout;
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            path.push_str(&format!("?wait={}ms", time::ceil_millis(wait)));
            attempt_timeout += wait;
        }
        let request = Request {
            method: Method::PUT,
            path,
            body: Some(json!({ "holder": holder.as_str(), "ttl_ms": ttl.as_millis() })),
            attempt_timeout,
        };
        let mut until = self.inner.clock.now() + attempt_timeout.max(self.inner.call_timeout);
        if let Some(at) = give_up {
            // A long poll ends at `give_up` on the node; its answer gets a
            // moment more to arrive.
            until = until.min(at + LONG_POLL_ANSWER_GRACE);
        }
        let answer = self.send(&request, Retry::Always, until).await?;
        match answer.status {
            StatusCode::CREATED => granted(&answer).map(Ok),
            StatusCode::CONFLICT => conflict_state(&answer).map(Err),
            _ => Err(refusal(&answer)),
        }
    }

    /// `PUT /v1/locks/{name}` with the token: renew grant `token`, retrying
    /// until `until`. A `409` is `Error::Conflict`: the grant is gone.
    /// `key`: the grant's key, where the cluster gives keys.
    pub async fn renew(
        &self,
        name: &str,
        holder: &str,
        token: u64,
        key: Option<&str>,
        until: Stamp,
    ) -> Result<Granted, Error> {
        let name = LeaseName::new(name).map_err(|e| Error::invalid(e, Some("name")))?;
        let holder = HolderId::new(holder).map_err(|e| Error::invalid(e, Some("holder")))?;
        let mut body = json!({ "holder": holder.as_str(), "token": token });
        if let Some(key) = key {
            body["key"] = key.into();
        }
        let request = Request {
            method: Method::PUT,
            path: format!("/v1/locks/{}", name.as_str()),
            body: Some(body),
            attempt_timeout: self.inner.attempt_timeout,
        };
        let answer = self.send(&request, Retry::Always, until).await?;
        match answer.status {
            StatusCode::OK => granted(&answer),
            StatusCode::CONFLICT => Err(conflict_error(&answer)),
            _ => Err(refusal(&answer)),
        }
    }

    /// `DELETE /v1/locks/{name}`: end grant `token` of `holder`; `key`:
    /// the grant's key, where the cluster gives keys.
    pub async fn release(
        &self,
        name: &str,
        holder: &str,
        token: u64,
        key: Option<&str>,
    ) -> Result<(), Error> {
        let name = LeaseName::new(name).map_err(|e| Error::invalid(e, Some("name")))?;
        let holder = HolderId::new(holder).map_err(|e| Error::invalid(e, Some("holder")))?;
        let mut path = format!(
            "/v1/locks/{}?holder={}&token={token}",
            name.as_str(),
            query_escape(holder.as_str())
        );
        if let Some(key) = key {
            path.push_str(&format!("&key={}", query_escape(key)));
        }
        self.end_grant(path).await
    }

    /// `DELETE /v1/locks/{name}?token=T&force=true`: end grant `token`,
    /// whoever holds it, as an operator (a token with `admin` on the name,
    /// where the cluster checks tokens). The name stays in its lock-delay
    /// for the grant's ttl and lock-delay: the forced-out holder's renewals
    /// are refused, and it stops by its own clock before anyone else holds.
    pub async fn force_release(&self, name: &str, token: u64) -> Result<(), Error> {
        let name = LeaseName::new(name).map_err(|e| Error::invalid(e, Some("name")))?;
        self.end_grant(format!(
            "/v1/locks/{}?token={token}&force=true",
            name.as_str()
        ))
        .await
    }

    /// A `DELETE` that ends a grant: retried only when the first attempt
    /// certainly did nothing (a retry of one that took effect would hear
    /// `409` about its own work).
    async fn end_grant(&self, path: String) -> Result<(), Error> {
        let request = Request {
            method: Method::DELETE,
            path,
            body: None,
            attempt_timeout: self.inner.attempt_timeout,
        };
        let until = self.inner.clock.now() + self.inner.call_timeout;
        let answer = self.send(&request, Retry::IfNotApplied, until).await?;
        match answer.status {
            StatusCode::NO_CONTENT => Ok(()),
            StatusCode::CONFLICT => Err(conflict_error(&answer)),
            _ => Err(refusal(&answer)),
        }
    }

    /// `GET /v1/locks/{name}`: a linearizable read.
    pub async fn read(&self, name: &str) -> Result<LeaseState, Error> {
        let name = LeaseName::new(name).map_err(|e| Error::invalid(e, Some("name")))?;
        let request = Request {
            method: Method::GET,
            path: format!("/v1/locks/{}", name.as_str()),
            body: None,
            attempt_timeout: self.inner.attempt_timeout,
        };
        let until = self.inner.clock.now() + self.inner.call_timeout;
        let answer = self.send(&request, Retry::Always, until).await?;
        match answer.status {
            StatusCode::OK | StatusCode::NOT_FOUND => parse_state(&answer),
            _ => Err(refusal(&answer)),
        }
    }

    /// `GET /v1/cluster` from each node in turn: what each node says, or
    /// why it did not answer. Not retried: this reports on the nodes.
    pub async fn cluster(&self) -> Vec<(String, Result<Value, String>)> {
        let mut out = Vec::new();
        for endpoint in &self.inner.endpoints {
            let request = Request {
                method: Method::GET,
                path: "/v1/cluster".into(),
                body: None,
                attempt_timeout: self.inner.attempt_timeout,
            };
            let result =
                match tokio::time::timeout(request.attempt_timeout, self.once(endpoint, &request))
                    .await
                {
                    Ok(Ok((StatusCode::OK, body))) => Ok(body),
                    Ok(Ok((status, body))) => Err(format!("{status}: {body}")),
                    Ok(Err(OnceError::Refused(e))) => Err(format!("cannot connect: {e}")),
                    Ok(Err(OnceError::NotSent(e) | OnceError::Failed(e))) => Err(e),
                    Err(_) => Err("no answer in time".into()),
                };
            out.push((endpoint.clone(), result));
        }
        out
    }

    /// Start a streaming request (a watch): the response head, from the
    /// first node that gives one.
    pub(crate) async fn open_stream(
        &self,
        path: &str,
        start: usize,
    ) -> Result<(usize, hyper::Response<hyper::body::Incoming>), String> {
        let endpoint = &self.inner.endpoints[start % self.inner.endpoints.len()];
        let mut req = hyper::Request::builder()
            .method(Method::GET)
            .uri(format!("{endpoint}{path}"));
        if let Some(token) = &self.inner.token {
            req = req.header(hyper::header::AUTHORIZATION, token.clone());
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(self.inner.attempt_timeout, self.inner.http.request(req)).await {
            Ok(Ok(r)) => Ok((start % self.inner.endpoints.len(), r)),
            Ok(Err(e)) => Err(format!("{endpoint}: {}", deepest_cause(&e))),
            Err(_) => Err(format!("{endpoint}: no answer in time")),
        }
    }

    pub(crate) fn preferred(&self) -> usize {
        self.inner.preferred.load(Ordering::Relaxed)
    }
}

/// Full jitter: a pause uniformly in `[0, ceiling]`, so that clients that
/// failed together do not retry together.
pub(crate) fn jittered(ceiling: Duration) -> Duration {
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(fastrand::u64(0..=micros))
}
