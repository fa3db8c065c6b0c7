//! `/v1/cluster`, `/metrics`, `/healthz`, and the JSON 404.

use super::{AppState, OpLabel};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn cluster(State(app): State<AppState>) -> Response {
    let members: Vec<_> = app
        .peers
        .members
        .iter()
        .map(|(id, (addr, link))| {
            let me = *id == app.peers.me;
            json!({
                "id": id.0,
                "peer_addr": addr,
                "self": me,
                "connected": me || link.connected(),
                "last_heard_ms": if me { Some(0) } else { link.last_heard().map(|d| d.as_millis()) },
            })
        })
        .collect();
    let mut response = axum::Json(json!({
        "node": app.peers.me.0,
        "incarnation": app.incarnation,
        "members": members,
        "reachable": app.peers.reachable(),
        "quorum": app.peers.members.len() / 2 + 1,
        "max_drift_ppm": app.drift.ppm(),
    }))
    .into_response();
    response.extensions_mut().insert(OpLabel("cluster"));
    response
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    let mut extra = app.peers.render_metrics();
    extra.push_str(&format!(
        "# HELP tenure_watched_names Names with a watch streaming from this node.\n\
         # TYPE tenure_watched_names gauge\n\
         tenure_watched_names {}\n",
        app.wakeups.watched()
    ));
    let mut response = (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&extra),
    )
        .into_response();
    response.extensions_mut().insert(OpLabel("metrics"));
    response
}

/// Liveness: 200 whenever the process serves HTTP. Whether a quorum is
/// reachable is in the body, not the status: restarting a node because the
/// network around it is partitioned would only make things worse.
pub async fn healthz(State(app): State<AppState>) -> Response {
    let reachable = app.peers.reachable();
    let quorum = app.peers.members.len() / 2 + 1;
    let mut response = axum::Json(json!({
        "status": "ok",
        "node": app.peers.me.0,
        "quorum_reachable": reachable >= quorum,
    }))
    .into_response();
    response.extensions_mut().insert(OpLabel("healthz"));
    response
}

pub async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "error": format!("no route {}; see docs/api.md (PUT|GET|DELETE /v1/locks/{{name}}, GET /v1/cluster, /metrics, /healthz)", uri.path()),
            "field": null,
        })),
    )
        .into_response()
}
