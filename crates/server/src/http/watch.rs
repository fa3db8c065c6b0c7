//! `GET /v1/locks/{name}?watch=true`: an NDJSON stream of the name's state,
//! one line at the start and one at every change of holder or token.
//!
//! Each line comes from a linearizable read. The stream re-reads when this
//! node sees the name change, when the current lease's remaining time runs
//! out (an expiry changes nothing on disk, so nothing else would wake it),
//! and every `watch_fallback` for changes made by rounds this node took no
//! part in. A stream with nothing new repeats its last line every
//! `HEARTBEAT`, so that a client can tell a quiet name from a node that
//! froze with the connection open, and go elsewhere.

use super::caller::Caller;
use super::view::view_json;
use super::AppState;
use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tenure_core::{LeaseName, LeaseView, Op, Outcome};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Lines buffered for a slow reader before the watch waits on it.
const LINES_BUFFERED: usize = 16;
/// After a failed read, wait this long before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
const EXPIRY_SLACK: Duration = Duration::from_millis(5);
/// The longest a stream goes without a line.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

pub fn stream(app: AppState, caller: &Caller, name: LeaseName) -> Response {
    let slot = Slot {
        serves: "watches",
        content_type: "application/x-ndjson",
        buffered: LINES_BUFFERED,
    };
    streamed(app, caller, slot, move |app, lines| watch(app, name, lines))
}

/// What a long-lived stream is, for [`streamed`].
pub(super) struct Slot {
    /// What the bound counts, as a refusal says.
    pub serves: &'static str,
    pub content_type: &'static str,
    /// Chunks buffered for a slow reader before `feed` waits on it.
    pub buffered: usize,
}

/// A response streamed from `feed`, which writes until the client goes.
/// It holds a connection for as long as it lasts, so it takes one of the
/// node's watch slots: bounded in all, so that streams cannot take every
/// connection from lock clients (`503` when none is free), and per caller,
/// so that one client cannot take them all (`429`).
pub(super) fn streamed<Feed>(
    app: AppState,
    caller: &Caller,
    slot: Slot,
    feed: impl FnOnce(AppState, mpsc::Sender<Bytes>) -> Feed,
) -> Response
where
    Feed: std::future::Future<Output = ()> + Send + 'static,
{
    let held = match app.watches.take(caller) {
        Ok(held) => held,
        Err(full) => return full.answer(&app.metrics, slot.serves).into_response(),
    };
    let (chunks, rx) = mpsc::channel::<Bytes>(slot.buffered);
    let fed = feed(app, chunks);
    tokio::spawn(async move {
        fed.await;
        drop(held);
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, slot.content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// What makes a line worth sending: a change of state, holder or token.
type Key = (&'static str, Option<String>, u64);

async fn watch(app: AppState, name: LeaseName, lines: mpsc::Sender<Bytes>) {
    let mut stop = app.stop.clone();
    let mut last: Option<Key> = None;
    let mut last_sent = Instant::now();
    loop {
        if *stop.borrow() {
            return; // Shutting down: end the stream so the drain can finish.
        }
        let wakeup = app.wakeups.subscribe(&name);
        let woken = wakeup.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();

        let (line, key, recheck) = match app.call(name.clone(), Op::Read).await {
            Ok(Outcome::Observed(view)) => {
                let recheck = match &view {
                    LeaseView::Held { remaining, .. }
                    | LeaseView::LockDelayed { remaining, .. } => {
                        Duration::from_micros(remaining.0) + EXPIRY_SLACK
                    }
                    LeaseView::Free { .. } => app.limits.watch_fallback,
                };
                (view_json(&view), key(&view), recheck)
            }
            Ok(other) => (
                json!({ "state": "error", "error": format!("unexpected outcome {other:?}") }),
                ("error", None, 0),
                RETRY_AFTER_FAILURE,
            ),
            Err(e) => (
                json!({ "state": "unavailable", "error": e.to_string() }),
                ("unavailable", None, 0),
                RETRY_AFTER_FAILURE,
            ),
        };
        if last.as_ref() != Some(&key) || last_sent.elapsed() >= HEARTBEAT {
            let mut bytes = line.to_string().into_bytes();
            bytes.push(b'\n');
            if lines.send(Bytes::from(bytes)).await.is_err() {
                return; // The client went away.
            }
            last = Some(key);
            last_sent = Instant::now();
        }
        let heartbeat_due = (last_sent + HEARTBEAT).saturating_duration_since(Instant::now());
        let wake_at = Instant::now() + recheck.min(app.limits.watch_fallback).min(heartbeat_due);
        tokio::select! {
            () = &mut woken => {}
            () = tokio::time::sleep_until(wake_at) => {}
            () = lines.closed() => return,
            _ = stop.changed() => return,
        }
    }
}

fn key(view: &LeaseView) -> Key {
    match view {
        LeaseView::Held { holder, token, .. } => ("held", Some(holder.to_string()), token.0),
        LeaseView::LockDelayed { holder, token, .. } => {
            ("lock_delayed", Some(holder.to_string()), token.0)
        }
        LeaseView::Free { token } => ("free", None, token.0),
    }
}
