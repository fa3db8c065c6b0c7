//! The client API: axum routes on a hyper connection loop that bounds
//! connections and header read time.
//!
//! - `locks`: `PUT`/`DELETE`/`GET /v1/locks/{name}` and outcome mapping.
//! - `wait`: `?wait=` long-polls, queued in the core.
//! - `view`: a lease's state as JSON, for answers and watch lines.
//! - `watch`: `?watch=true` NDJSON streams.
//! - `status`: `/v1/cluster`, `/metrics`, `/healthz`.
//! - `members`: `/v1/members`, the configuration and changes of it.
//! - `ui`: the live page at `/ui`, its files and its event stream.
//! - `input`, `error`: what clients send, and what refusals say.
//! - `serve`: the accept loop and graceful shutdown.

pub mod auth;
mod bounds;
mod caller;
mod error;
mod input;
mod locks;
mod members;
mod refusals;
mod serve;
mod slots;
mod status;
mod ui;
mod view;
mod wait;
mod watch;

pub use bounds::{Counted, StreamBound};
pub use serve::serve;

use crate::config::HttpLimits;
use crate::metrics::Metrics;
use crate::node_loop::{CallError, NodeHandle};
use crate::peer::PeerView;
use crate::wakeups::Wakeups;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure_core::{Failure, LeaseName, Op, Outcome};
use tokio::sync::watch as signal;

/// Everything a handler may use; cloned for every request (by each
/// middleware and the handler), so the clone is one reference count, not
/// one per field.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl AppState {
    pub fn new(app: App) -> AppState {
        AppState(Arc::new(app))
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct App {
    pub node: NodeHandle,
    /// The cluster's name (`--cluster-id`).
    pub cluster_id: Arc<str>,
    pub wakeups: Wakeups,
    pub metrics: Arc<Metrics>,
    /// Each name's last changes, as this node learnt them.
    pub history: Arc<crate::history::History>,
    /// The tokens requests must carry, when the node was given some.
    pub auth: Option<Arc<auth::Auth>>,
    /// Grant keys, with `--grant-secret`: told with every grant, required
    /// to renew or release it.
    pub grant_keys: Option<Arc<crate::grant_key::GrantKeys>>,
    /// Shared: the state is cloned for every request.
    pub peers: Arc<PeerView>,
    pub incarnation: u32,
    /// The cluster's bound on clock drift, told to holders with each grant.
    pub drift: tenure_core::DriftBound,
    pub limits: HttpLimits,
    /// A backstop on one call to the node loop: the core fails a request at
    /// its own deadline, so this only fires if the loop is wedged.
    pub call_timeout: Duration,
    /// Flips to true at shutdown: long-polls and watches end.
    pub stop: signal::Receiver<bool>,
    /// Watches and live pages streaming (`limits.max_watches`, and per
    /// caller `limits.max_watches_per_caller`).
    pub watches: Arc<StreamBound>,
    /// Acquires waiting (`limits.max_waits`, `limits.max_waits_per_caller`).
    pub waits: Arc<StreamBound>,
    /// The store's file, whose size `/metrics` reports.
    pub store_file: Arc<std::path::Path>,
}

impl AppState {
    pub async fn call(&self, name: LeaseName, op: Op) -> Result<Outcome, CallError> {
        self.call_waiting(name, op, Duration::ZERO).await
    }

    /// A call that may wait `wait` in the core before its answer.
    pub async fn call_waiting(
        &self,
        name: LeaseName,
        op: Op,
        wait: Duration,
    ) -> Result<Outcome, CallError> {
        if let Some(reason) = self.peers.rates.refusal() {
            return Err(CallError::ClockDisagrees(reason));
        }
        let backstop = self.call_timeout + wait;
        match tokio::time::timeout(backstop, self.node.call(name, op)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Failed(Failure::Unavailable {
                outcome_unknown: true,
            })),
        }
    }
}

/// The operation a response answered, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct OpLabel(pub &'static str);

pub fn router(state: AppState) -> Router {
    let max_body = state.limits.max_body_bytes;
    Router::new()
        .route(
            "/v1/locks/{*name}",
            put(locks::put_lock)
                .delete(locks::delete_lock)
                .get(locks::get_lock),
        )
        .route("/v1/cluster", get(status::cluster))
        .route("/v1/members", get(members::list).put(members::change))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/style.css", get(ui::style_css))
        .route("/ui/events", get(ui::events))
        .route("/metrics", get(status::metrics))
        .route("/healthz", get(status::healthz))
        .fallback(status::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(locks::history_is_read_only))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            caller::identify,
        ))
        .layer(middleware::from_fn(refusals::json_refusals))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// Count every response by operation and status, with its latency.
async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let fallback = match (request.method().as_str(), request.uri().path()) {
        (_, p) if !p.starts_with("/v1/locks/") => "other",
        ("PUT", _) => "acquire",
        ("DELETE", _) => "release",
        ("GET", _) => "read",
        _ => "other",
    };
    let response = next.run(request).await;
    let op = response
        .extensions()
        .get::<OpLabel>()
        .map_or(fallback, |l| l.0);
    state
        .metrics
        .http_request(op, response.status().as_u16(), started.elapsed());
    response
}
