//! `/ui`: a live page of the locks and the cluster, served by every node
//! from files built into the binary (no CDN, no build step), under a
//! Content-Security-Policy that allows nothing but this node.
//!
//! `/ui/events` pushes what the page shows as server-sent events, fed by
//! the same machinery as watches: each change this node learns of (its own
//! rounds, and the news its peers send once a value is chosen) makes it
//! read the name (linearizably) and send it with its last changes; a lease
//! shown is read again when its remaining time runs out; the cluster is
//! sent every second. The page never polls.

use super::caller::Caller;
use super::status::cluster_json;
use super::view::view_json;
use super::watch::{streamed, Slot};
use super::{AppState, OpLabel};
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenure_core::{LeaseName, LeaseView, Op, Outcome};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::time::Instant;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// Nothing but this node's own scripts, styles and event stream.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Names a page shows: the most recently changed.
pub const MAX_NAMES: usize = 200;
/// Changes sent with each name.
const CHANGES_SHOWN: usize = 8;
const CLUSTER_EVERY: Duration = Duration::from_secs(1);
const EVENTS_BUFFERED: usize = 64;
const EXPIRY_SLACK: Duration = Duration::from_millis(5);

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        text,
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response.extensions_mut().insert(OpLabel("ui"));
    response
}

/// `GET /ui/events`: the page's event stream. It holds a connection as a
/// watch does, and counts against the same bound.
pub async fn events(State(app): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    let slot = Slot {
        serves: "watches and live pages",
        content_type: "text/event-stream",
        buffered: EVENTS_BUFFERED,
    };
    let mut response = streamed(app, &caller, slot, feed);
    response.extensions_mut().insert(OpLabel("ui"));
    response
}

/// One server-sent event.
fn event(kind: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// Feed one page until it goes away or the node stops. The cluster is
/// sent every second from here; the names are read by a task of their
/// own (`read_names`), so that slow reads (no quorum) never hold up the
/// cluster view the operator opened the page to see.
async fn feed(app: AppState, events: mpsc::Sender<Bytes>) {
    let mut stop = app.stop.clone();
    // Subscribed before the first reads, so no change falls in between.
    let mut news = app.history.news();
    let wanted = Arc::new(Wanted::default());
    let reader = tokio::spawn(read_names(app.clone(), events.clone(), wanted.clone()));
    wanted.recent(&app);
    let mut tick = tokio::time::interval(CLUSTER_EVERY);
    loop {
        tokio::select! {
            heard = news.recv() => match heard {
                Ok(name) => wanted.add(name),
                // Too slow to keep up: start over from the recent names.
                Err(broadcast::error::RecvError::Lagged(_)) => wanted.recent(&app),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                if events.send(event("cluster", &cluster(&app))).await.is_err() {
                    break;
                }
            }
            () = events.closed() => break,
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    reader.abort();
}

/// Names waiting to be read for a page, each once however often it
/// changed meanwhile.
#[derive(Default)]
struct Wanted {
    names: Mutex<(VecDeque<LeaseName>, HashSet<LeaseName>)>,
    added: Notify,
}

impl Wanted {
    fn add(&self, name: LeaseName) {
        {
            let mut guard = self.names.lock().unwrap_or_else(|e| e.into_inner());
            let (queue, queued) = &mut *guard;
            if queued.insert(name.clone()) {
                queue.push_back(name);
            }
        }
        self.added.notify_one();
    }

    /// The recent names, oldest first: the page puts each name it hears
    /// of at the top.
    fn recent(&self, app: &AppState) {
        for name in app.history.recent_names(MAX_NAMES).into_iter().rev() {
            self.add(name);
        }
    }

    fn take(&self) -> Option<LeaseName> {
        let mut guard = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let (queue, queued) = &mut *guard;
        let name = queue.pop_front()?;
        queued.remove(&name);
        Some(name)
    }
}

/// Read each wanted name and send it with its last changes, and read a
/// shown lease again when its time runs out. Only the `MAX_NAMES` names
/// sent most recently are read again: a page shows no more.
async fn read_names(app: AppState, events: mpsc::Sender<Bytes>, wanted: Arc<Wanted>) {
    let mut shown: VecDeque<LeaseName> = VecDeque::new();
    let mut expiries: HashMap<LeaseName, Instant> = HashMap::new();
    loop {
        while let Some(name) = wanted.take() {
            let Some(expiry) = send_lock(&app, &events, &name).await else {
                return;
            };
            if let Some(at) = shown.iter().position(|n| *n == name) {
                shown.remove(at);
            }
            shown.push_front(name.clone());
            if shown.len() > MAX_NAMES {
                if let Some(old) = shown.pop_back() {
                    expiries.remove(&old);
                }
            }
            match expiry {
                Some(at) => expiries.insert(name, at),
                None => expiries.remove(&name),
            };
        }
        let next_expiry = expiries.values().min().copied();
        let far = Instant::now() + Duration::from_secs(3_600);
        tokio::select! {
            () = wanted.added.notified() => {}
            () = tokio::time::sleep_until(next_expiry.unwrap_or(far)), if next_expiry.is_some() => {
                let now = Instant::now();
                expiries.retain(|name, at| {
                    let due = *at <= now;
                    if due {
                        wanted.add(name.clone());
                    }
                    !due
                });
            }
            () = events.closed() => return,
        }
    }
}

/// Read `name` and send it with its last changes: when its time runs
/// out, if held, or `None` when the page has gone.
async fn send_lock(
    app: &AppState,
    events: &mpsc::Sender<Bytes>,
    name: &LeaseName,
) -> Option<Option<Instant>> {
    let mut expiry = None;
    let view = match app.call(name.clone(), Op::Read).await {
        Ok(Outcome::Observed(view)) => {
            if let LeaseView::Held { remaining, .. } | LeaseView::LockDelayed { remaining, .. } =
                &view
            {
                expiry = Some(Instant::now() + Duration::from_micros(remaining.0) + EXPIRY_SLACK);
            }
            view_json(&view)
        }
        Ok(other) => json!({ "state": "error", "error": format!("unexpected outcome {other:?}") }),
        Err(e) => json!({ "state": "unavailable", "error": e.to_string() }),
    };
    let mut changes = app.history.of(name);
    changes.truncate(CHANGES_SHOWN);
    let data = json!({ "name": name.as_str(), "view": view, "changes": changes });
    events.send(event("lock", &data)).await.ok()?;
    Some(expiry)
}

/// The cluster as `/v1/cluster` shows it, with this node's fsync times.
fn cluster(app: &AppState) -> serde_json::Value {
    let mut cluster = cluster_json(app);
    let (p50, p99, commits) = app.metrics.fsync_summary();
    let ms = |s: Option<f64>| s.map(|s| s * 1e3);
    cluster["fsync"] =
        json!({ "p50_ms_at_most": ms(p50), "p99_ms_at_most": ms(p99), "commits": commits });
    cluster
}
