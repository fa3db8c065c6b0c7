//! `/v1/locks/{name}`: acquire, renew, release and read, and how each core
//! outcome maps to HTTP.

use super::caller::Caller;
use super::error::ApiError;
use super::input::{self, LockRequest};
use super::view::view_json;
use super::{wait, watch, AppState, OpLabel};
use crate::grant_key::KeyRefusal;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, FromRequest, Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tenure_core::{HolderId, LeaseName, LeaseView, Micros, Op, Outcome, Token, Ttl};

type Params = Query<Vec<(String, String)>>;
type ParamsRejection = axum::extract::rejection::QueryRejection;

pub async fn put_lock(
    State(app): State<AppState>,
    Path(name): Path<String>,
    params: Result<Params, ParamsRejection>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    // The body is read here, under a deadline, rather than by an
    // extractor: a client that sends its head and then trickles the body
    // must not hold a connection forever.
    let limit = app.limits.body_read_timeout;
    let body = match tokio::time::timeout(limit, Bytes::from_request(request, &())).await {
        Ok(body) => body,
        Err(_) => {
            let e = ApiError::bad_request(
                format!("the body did not arrive within {} ms", limit.as_millis()),
                None,
            );
            return labelled("acquire", Err(e));
        }
    };
    let (label, result) = put_inner(&app, &name, params, body, &caller).await;
    labelled(label, result)
}

async fn put_inner(
    app: &AppState,
    name: &str,
    params: Result<Params, ParamsRejection>,
    body: Result<Bytes, BytesRejection>,
    caller: &Caller,
) -> (&'static str, Result<Response, ApiError>) {
    let parsed = (|| {
        let name = lock_name(name)?;
        let pairs = query_pairs(params)?;
        let params = input::query_params(&pairs, &["wait"])?;
        let wait = input::param(&params, "wait")
            .map(|w| input::parse_wait(w, app.limits.max_wait))
            .transpose()?;
        let body = body.map_err(|e| body_rejection(e, app.limits.max_body_bytes))?;
        let request = input::parse_lock_request(&body)?;
        Ok::<_, ApiError>((name, wait, request))
    })();
    let (name, wait, request) = match parsed {
        Ok(p) => p,
        Err(e) => return ("acquire", Err(e)),
    };
    match request {
        LockRequest::Renew { holder, token, key } => {
            if let Err(refused) = check_key(app, &name, &holder, token, key.as_deref()) {
                return ("renew", Err(refused));
            }
            // A renewal answers at once: a `wait` (checked above) has
            // nothing to wait for, as a `ttl_ms` has nothing to change, so
            // a client may send one request shape for both.
            let op = Op::Renew {
                holder: holder.clone(),
                token,
            };
            let result = match app.call(name.clone(), op).await {
                Ok(Outcome::Renewed { token, ttl }) => {
                    Ok(grant(app, StatusCode::OK, &name, &holder, token, ttl))
                }
                Ok(Outcome::Conflict(view)) => Ok(conflict(&view, Some((&holder, token)))),
                Ok(other) => Err(unexpected(&other)),
                Err(e) => Err(ApiError::call(e)),
            };
            ("renew", result)
        }
        LockRequest::Acquire {
            holder,
            ttl,
            lock_delay,
        } => {
            let op = Op::Acquire {
                holder: holder.clone(),
                ttl,
                lock_delay,
                wait: Micros::ZERO,
            };
            let outcome = match wait {
                Some(wait) => {
                    // A long poll holds a connection and a place in the
                    // name's queue for as long as it waits: bounded.
                    let _held = match app.waits.take(caller) {
                        Ok(held) => held,
                        Err(full) => {
                            let refused = full.answer(&app.metrics, "waiting acquires");
                            return ("acquire_wait", Err(refused));
                        }
                    };
                    wait::acquire_waiting(app, &name, op, wait).await
                }
                None => app.call(name.clone(), op).await,
            };
            let result = match outcome {
                Ok(Outcome::Granted { token, ttl }) => {
                    Ok(grant(app, StatusCode::CREATED, &name, &holder, token, ttl))
                }
                Ok(Outcome::Conflict(view)) => Ok(conflict(&view, None)),
                Ok(other) => Err(unexpected(&other)),
                Err(e) => Err(ApiError::call(e)),
            };
            // A long poll's latency is mostly its wait: measured apart, so
            // that the acquire histogram stays about the service itself.
            (
                if wait.is_some() {
                    "acquire_wait"
                } else {
                    "acquire"
                },
                result,
            )
        }
    }
}

pub async fn delete_lock(
    State(app): State<AppState>,
    Path(name): Path<String>,
    params: Result<Params, ParamsRejection>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let parsed = (|| {
        let name = lock_name(&name)?;
        let pairs = query_pairs(params)?;
        let params = input::query_params(&pairs, &["holder", "token", "key", "force"])?;
        let token = input::param(&params, "token").ok_or_else(|| {
            ApiError::bad_request(
                "missing query parameter token: the token of the grant to release",
                Some("token"),
            )
        })?;
        let token = input::parse_token(token)?;
        match input::param(&params, "force") {
            None => {}
            Some("true") => return Ok::<_, ApiError>((name, None, token)),
            Some(other) => {
                return Err(ApiError::bad_request(
                    format!(
                        "force={other:?}: write force=true to end grant {token} whoever holds it"
                    ),
                    Some("force"),
                ))
            }
        }
        let holder = input::param(&params, "holder").ok_or_else(|| {
            ApiError::bad_request(
                "missing query parameter holder: DELETE /v1/locks/{name}?holder=H&token=T",
                Some("holder"),
            )
        })?;
        let holder = HolderId::new(holder).map_err(|e| ApiError::input(&e))?;
        check_key(&app, &name, &holder, token, input::param(&params, "key"))?;
        Ok((name, Some(holder), token))
    })();
    let (name, holder, token) = match parsed {
        Ok(p) => p,
        Err(e) => return labelled("release", Err(e)),
    };
    let Some(holder) = holder else {
        return labelled("force", force(&app, name, token, &caller).await);
    };
    let op = Op::Release {
        holder: holder.clone(),
        token,
    };
    let result = match app.call(name, op).await {
        Ok(Outcome::Released { .. }) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(Outcome::Conflict(view)) => Ok(conflict(&view, Some((&holder, token)))),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(ApiError::call(e)),
    };
    labelled("release", result)
}

/// An operator ends grant `token` of `name`, whoever holds it: the name
/// stays in its lock-delay for the grant's ttl and lock-delay from now
/// (docs/api.md, "Forced release"). Logged with who asked.
async fn force(
    app: &AppState,
    name: LeaseName,
    token: Token,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let holder = match app.call(name.clone(), Op::Read).await {
        Ok(Outcome::Observed(LeaseView::Held { holder, .. })) => Some(holder),
        _ => None,
    };
    match app.call(name.clone(), Op::Force { token }).await {
        Ok(Outcome::Released { .. }) => {
            let holder = holder.map_or_else(|| "its holder".to_string(), |h| h.to_string());
            tracing::warn!(
                name = %name,
                token = token.0,
                "forced release of grant {} of {holder} by {}",
                token.0,
                caller.describe()
            );
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Ok(Outcome::Conflict(view)) => Ok(conflict(&view, None)),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(ApiError::call(e)),
    }
}

pub async fn get_lock(
    State(app): State<AppState>,
    Path(name): Path<String>,
    params: Result<Params, ParamsRejection>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Some(name) = name.strip_suffix(HISTORY_SUFFIX) {
        return labelled("history", history(&app, name, params));
    }
    let parsed = (|| {
        let name = lock_name(&name)?;
        let pairs = query_pairs(params)?;
        let params = input::query_params(&pairs, &["watch"])?;
        let watching = match input::param(&params, "watch") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad_request(
                    format!("watch={other:?}: write watch=true to stream changes"),
                    Some("watch"),
                ))
            }
        };
        Ok::<_, ApiError>((name, watching))
    })();
    let result = match parsed {
        Err(e) => Err(e),
        Ok((name, true)) => return labelled("watch", Ok(watch::stream(app, &caller, name))),
        Ok((name, false)) => match app.call(name, Op::Read).await {
            Ok(Outcome::Observed(view)) => Ok(observed(&view)),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(ApiError::call(e)),
        },
    };
    labelled("read", result)
}

/// `GET /v1/locks/{name}/history`: the name's last changes as this node
/// learnt them, newest first.
fn history(
    app: &AppState,
    name: &str,
    params: Result<Params, ParamsRejection>,
) -> Result<Response, ApiError> {
    let name = LeaseName::new(name).map_err(|e| ApiError::input(&e))?;
    input::query_params(&query_pairs(params)?, &[])?;
    let changes = app.history.of(&name);
    Ok(Json(json!({ "name": name.as_str(), "changes": changes })).into_response())
}

/// The path under a lock's own that shows its history.
pub(super) const HISTORY_SUFFIX: &str = "/history";
/// Where the lock paths begin; the name follows.
pub(super) const LOCKS_PREFIX: &str = "/v1/locks/";

fn lock_name(name: &str) -> Result<LeaseName, ApiError> {
    LeaseName::new(name).map_err(|e| ApiError::input(&e))
}

/// `/v1/locks/{name}/history` is only read, so a lock's own name may not
/// end in `/history`. Said before routing: the lock routes would take the
/// path for a name.
pub async fn history_is_read_only(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    if let Some(of) = path
        .strip_prefix(LOCKS_PREFIX)
        .and_then(|name| name.strip_suffix(HISTORY_SUFFIX))
        .filter(|_| !read)
    {
        let e = ApiError::read_only(format!(
            "{path} is the history of {of}, which can only be read (GET); a lock's name may not end in {HISTORY_SUFFIX}"
        ));
        return labelled("history", Err(e));
    }
    next.run(request).await
}

fn labelled(label: &'static str, result: Result<Response, ApiError>) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(OpLabel(label));
    response
}

fn query_pairs(params: Result<Params, ParamsRejection>) -> Result<Vec<(String, String)>, ApiError> {
    params
        .map(|Query(pairs)| pairs)
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}"), None))
}

fn body_rejection(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(limit)
    } else {
        ApiError::bad_request(format!("could not read the body: {rejection}"), None)
    }
}

fn unexpected(outcome: &Outcome) -> ApiError {
    ApiError::internal(format!("unexpected outcome {outcome:?}"))
}

/// A grant or renewal. `max_drift_ppm` is the cluster's ρ: the holder's
/// deadline is `sent + ttl_ms·(1 − 2ρ) − margin` (docs/api.md).
fn grant(
    app: &AppState,
    status: StatusCode,
    name: &LeaseName,
    holder: &HolderId,
    token: Token,
    ttl: Ttl,
) -> Response {
    let mut body = json!({
        "token": token.0,
        "holder": holder.as_str(),
        "ttl_ms": ttl.as_millis(),
        "max_drift_ppm": app.drift.ppm(),
    });
    // Only in answers to the holder's own acquire or renewal: never stored,
    // so never in a read, a conflict or a watch.
    if let Some(keys) = &app.grant_keys {
        body["key"] = keys.key_of(name, holder, token).into();
    }
    (status, axum::Json(body)).into_response()
}

/// With grant keys, a renewal or release must carry its grant's key: holder
/// and token are public. Checked before the node loop sees the request.
fn check_key(
    app: &AppState,
    name: &LeaseName,
    holder: &HolderId,
    token: Token,
    key: Option<&str>,
) -> Result<(), ApiError> {
    let Some(keys) = &app.grant_keys else {
        return Ok(());
    };
    keys.check(name, holder, token, key).map_err(|refusal| {
        app.metrics.http_refused("grant_key");
        ApiError::forbidden(match refusal {
            KeyRefusal::Missing => format!(
                "this cluster needs grant {token}'s key to renew or release it: the \"key\" of \
                 the answer that granted it (in the body to renew, ?key= to release)"
            ),
            KeyRefusal::Wrong => format!("that is not the key of grant {token} of {holder}"),
        })
    })
}

/// `409`: who holds the name, with which token, for how long; and, for a
/// renewal or release (`mine`), why the caller's grant is not current.
fn conflict(view: &LeaseView, mine: Option<(&HolderId, Token)>) -> Response {
    let mut body = view_json(view);
    let error = match (view, mine) {
        (LeaseView::Held { holder, token, .. }, None) => {
            format!("held by {holder} with token {token}")
        }
        (LeaseView::LockDelayed { holder, .. }, None) => format!(
            "the lease expired without a release and is in its lock-delay: only {holder} may acquire it until remaining_ms passes"
        ),
        (LeaseView::Free { .. }, None) => "the lease could not be granted".to_string(),
        (_, Some((holder, token))) => match view {
            LeaseView::LockDelayed { holder: h, token: t, .. } if h == holder && *t == token => format!(
                "grant {token} of {holder} expired: the lease stays in its lock-delay, and only {holder} may acquire it until remaining_ms passes"
            ),
            LeaseView::Free { .. } => format!(
                "grant {token} of {holder} is no longer current: the lease is free (released or expired); acquire it anew"
            ),
            LeaseView::Held { holder: h, token: t, .. }
            | LeaseView::LockDelayed { holder: h, token: t, .. } => format!(
                "grant {token} of {holder} is not the current grant: {h} holds token {t}"
            ),
        },
    };
    body["error"] = json!(error);
    (StatusCode::CONFLICT, axum::Json(body)).into_response()
}

/// A read: `200` when held, `404` when nobody holds the name (lock-delayed
/// included), with the last token either way.
fn observed(view: &LeaseView) -> Response {
    let status = match view {
        LeaseView::Held { .. } => StatusCode::OK,
        LeaseView::Free { .. } | LeaseView::LockDelayed { .. } => StatusCode::NOT_FOUND,
    };
    (status, axum::Json(view_json(view))).into_response()
}
