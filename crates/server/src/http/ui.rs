//! `/ui`: a live page of the locks and the cluster, served by every node
//! from files built into the binary (no CDN, no build step), under a
//! Content-Security-Policy that allows nothing but this node.
//!
//! `/ui/events` pushes what the page shows as server-sent events, fed by
//! the same machinery as watches: each change this node learns of (its own
//! rounds, and the news its peers send once a value is chosen) makes it
//! read the name (linearizably) and send it with its last changes; a lease
//! is read again when its remaining time runs out; the cluster is sent
//! every second. The page never polls.

use super::error::ApiError;
use super::status::cluster_json;
use super::view::view_json;
use super::{AppState, OpLabel};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;
use tenure_core::{LeaseName, LeaseView, Op, Outcome};
use tokio::sync::{broadcast, mpsc};
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
pub async fn events(State(app): State<AppState>) -> Response {
    let Ok(permit) = app.watches.clone().try_acquire_owned() else {
        app.metrics.http_refused("watches");
        let refused = ApiError::unavailable(format!(
            "this node serves {} watches and live pages at once and has none free; open the page on another node",
            app.limits.max_watches
        ));
        return refused.into_response();
    };
    let (events, rx) = mpsc::channel::<Bytes>(EVENTS_BUFFERED);
    tokio::spawn(async move {
        feed(app, events).await;
        drop(permit);
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty()));
    response.extensions_mut().insert(OpLabel("ui"));
    response
}

/// One server-sent event.
fn event(kind: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// Feed one page until it goes away or the node stops.
async fn feed(app: AppState, events: mpsc::Sender<Bytes>) {
    let mut stop = app.stop.clone();
    // Subscribed before the first reads, so no change falls in between.
    let mut news = app.history.news();
    // When each lease shown runs out, to read it again then.
    let mut expiries: HashMap<LeaseName, Instant> = HashMap::new();
    if events.send(event("cluster", &cluster(&app))).await.is_err() {
        return;
    }
    if !send_recent(&app, &events, &mut expiries).await {
        return;
    }
    let mut tick = tokio::time::interval_at(Instant::now() + CLUSTER_EVERY, CLUSTER_EVERY);
    loop {
        let next_expiry = expiries.values().min().copied();
        let far = Instant::now() + Duration::from_secs(3_600);
        let sent = tokio::select! {
            heard = news.recv() => match heard {
                Ok(name) => send_lock(&app, &events, &name, &mut expiries).await,
                // Too slow to keep up: start over from the recent names.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    send_recent(&app, &events, &mut expiries).await
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => events.send(event("cluster", &cluster(&app))).await.is_ok(),
            () = tokio::time::sleep_until(next_expiry.unwrap_or(far)), if next_expiry.is_some() => {
                let now = Instant::now();
                let due: Vec<LeaseName> = expiries
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(name, _)| name.clone())
                    .collect();
                let mut ok = true;
                for name in due {
                    expiries.remove(&name);
                    ok = ok && send_lock(&app, &events, &name, &mut expiries).await;
                }
                ok
            }
            () = events.closed() => return,
            _ = stop.changed() => return,
        };
        if !sent || *stop.borrow() {
            return;
        }
    }
}

/// The recent names, each with its state. False when the page has gone.
async fn send_recent(
    app: &AppState,
    events: &mpsc::Sender<Bytes>,
    expiries: &mut HashMap<LeaseName, Instant>,
) -> bool {
    // Oldest first: the page puts each name it hears of at the top.
    for name in app.history.recent_names(MAX_NAMES).iter().rev() {
        if !send_lock(app, events, name, expiries).await {
            return false;
        }
    }
    events.send(event("ready", &json!({}))).await.is_ok()
}

/// Read `name` and send it with its last changes. False when the page
/// has gone.
async fn send_lock(
    app: &AppState,
    events: &mpsc::Sender<Bytes>,
    name: &LeaseName,
    expiries: &mut HashMap<LeaseName, Instant>,
) -> bool {
    let view = match app.call(name.clone(), Op::Read).await {
        Ok(Outcome::Observed(view)) => {
            match &view {
                LeaseView::Held { remaining, .. } | LeaseView::LockDelayed { remaining, .. } => {
                    let at = Instant::now() + Duration::from_micros(remaining.0) + EXPIRY_SLACK;
                    expiries.insert(name.clone(), at);
                }
                LeaseView::Free { .. } => {
                    expiries.remove(name);
                }
            }
            view_json(&view)
        }
        Ok(other) => json!({ "state": "error", "error": format!("unexpected outcome {other:?}") }),
        Err(e) => json!({ "state": "unavailable", "error": e.to_string() }),
    };
    let mut changes = app.history.of(name);
    changes.truncate(CHANGES_SHOWN);
    let data = json!({ "name": name.as_str(), "view": view, "changes": changes });
    events.send(event("lock", &data)).await.is_ok()
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
