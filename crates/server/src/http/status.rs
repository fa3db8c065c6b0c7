//! `/v1/cluster`, `/metrics`, `/healthz`, and the JSON 404.

use super::{AppState, OpLabel};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn cluster(State(app): State<AppState>) -> Response {
    let mut response = axum::Json(cluster_json(&app)).into_response();
    response.extensions_mut().insert(OpLabel("cluster"));
    response
}

/// This node, the members, and their reachability, as `/v1/cluster` and
/// the live page show them.
pub fn cluster_json(app: &AppState) -> serde_json::Value {
    let rates = app.peers.rates.last_rates();
    let links = app.peers.members();
    let members: Vec<_> = links
        .iter()
        .map(|(id, (addr, link))| {
            let me = *id == app.peers.me;
            let rate = rates.get(id);
            json!({
                "id": id.0,
                "peer_addr": addr,
                "self": me,
                "connected": me || link.connected(),
                "last_heard_ms": if me { Some(0) } else { link.last_heard().map(|d| d.as_millis()) },
                "round_trip_ms": if me { None } else {
                    app.peers.rates.round_trip(*id).map(|d| (d.as_secs_f64() * 1e5).round() / 100.0)
                },
                "clock_rate_ppm": if me { Some(0) } else { rate.map(|r| r.ppm.round() as i64) },
                "clock_rate_allowed_ppm": rate.map(|r| r.allowed_ppm.round() as i64),
            })
        })
        .collect();
    json!({
        "node": app.peers.me.0,
        "incarnation": app.incarnation,
        "members": members,
        "reachable": app.peers.reachable(),
        "quorum": links.len() / 2 + 1,
        "max_drift_ppm": app.drift.ppm(),
        "peer_tls": app.peers.tls.is_some(),
        "clock": clock_status(app),
    })
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    let mut extra = app.peers.render_metrics();
    crate::metrics::process::render_build_info(&mut extra, crate::peer::frame::PROTOCOL_VERSION);
    crate::metrics::process::render(&mut extra);
    crate::metrics::process::render_worker_threads(&mut extra);
    extra.push_str(&format!(
        "# HELP tenure_watched_names Names with a watch streaming from this node.\n\
         # TYPE tenure_watched_names gauge\n\
         tenure_watched_names {}\n",
        app.wakeups.watched()
    ));
    let now = app.node.members_now().borrow().clone();
    let c = &now.configuration;
    extra.push_str(&format!(
        "# HELP tenure_configuration_epoch The epoch of this node's configuration: it rises by one at each step of a change of members.
         # TYPE tenure_configuration_epoch gauge
         tenure_configuration_epoch {}
         # HELP tenure_configuration_members The members of this node's configuration (the old list during a change).
         # TYPE tenure_configuration_members gauge
         tenure_configuration_members {}
         # HELP tenure_configuration_changing Whether a change of members is under way: quorums need a majority of the old and of the new members.
         # TYPE tenure_configuration_changing gauge
         tenure_configuration_changing {}
",
        c.epoch.0,
        c.members.len(),
        u8::from(!c.joining.is_empty())
    ));
    // One stat per scrape: too cheap to be worth a blocking-pool hop.
    if let Ok(file) = std::fs::metadata(&app.store_file) {
        extra.push_str(&format!(
            "# HELP tenure_store_bytes The size of this node's store file; compaction gives back the space of deleted names.\n\
             # TYPE tenure_store_bytes gauge\n\
             tenure_store_bytes {}\n",
            file.len()
        ));
    }
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

/// `{"state": "agrees"}`, or `{"state": "disagrees", "reason": ...,
/// "refusing": ...}` (refusing unless `--no-clock-check`).
fn clock_status(app: &AppState) -> serde_json::Value {
    use crate::peer::rates::Verdict;
    match app.peers.rates.verdict_now() {
        Verdict::Agrees => json!({ "state": "agrees" }),
        Verdict::Disagrees { reason } => json!({
            "state": "disagrees",
            "reason": reason,
            "refusing": app.peers.rates.refusal().is_some(),
        }),
    }
}

/// 200 whenever the process serves HTTP, with one exception. Whether a
/// quorum is reachable is in the body, not the status: restarting a node
/// because the network around it is partitioned would only make things
/// worse. A clock that disagrees with a majority is this node's own fault,
/// and it serves nothing meanwhile: `503`, so that a load balancer sends
/// clients elsewhere.
pub async fn healthz(State(app): State<AppState>) -> Response {
    let reachable = app.peers.reachable();
    let quorum = app.peers.members().len() / 2 + 1;
    let refusal = app.peers.rates.refusal();
    let status = if refusal.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut response = (
        status,
        axum::Json(json!({
            "status": if refusal.is_some() { "clock_disagrees" } else { "ok" },
            "node": app.peers.me.0,
            "quorum_reachable": reachable >= quorum,
            "clock": clock_status(&app),
        })),
    )
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
