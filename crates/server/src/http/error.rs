//! Error responses: every refusal is JSON that says what to fix.

use crate::node_loop::CallError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tenure_core::{Failure, InputError};

/// Seconds a client should wait before retrying a 503. One second is long
/// enough for a restarted peer to reconnect, short against any sane ttl.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>, field: Option<&str>) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": error.into(), "field": field }),
        }
    }

    /// No token, or one this node does not know.
    pub fn unauthorized(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, error, None)
    }

    /// A known token without the permission the request needs.
    pub fn forbidden(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, error, None)
    }

    /// A path that serves only reads.
    pub fn read_only(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, error, None)
    }

    /// Unparseable input, or a value out of its allowed range.
    pub fn bad_request(error: impl Into<String>, field: Option<&str>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, field)
    }

    /// Well-formed JSON of the wrong shape: a missing, unknown or
    /// wrongly-typed field.
    pub fn unprocessable(error: impl Into<String>, field: Option<&str>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error, field)
    }

    /// The state the request was decided on has changed, or a change
    /// under way must finish first; nothing was done.
    pub fn conflict(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, error, None)
    }

    pub fn too_large(limit_bytes: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit_bytes} bytes"),
            None,
        )
    }

    pub fn input(error: &InputError) -> ApiError {
        ApiError::bad_request(error.to_string(), Some(error.field()))
    }

    pub fn call(error: CallError) -> ApiError {
        if let CallError::ClockDisagrees(reason) = error {
            return ApiError::unavailable(format!("{reason}; retry through another node"));
        }
        let (message, outcome_unknown) = match error {
            CallError::Failed(Failure::Unavailable { outcome_unknown }) => (
                "no quorum of nodes answered within the request deadline; retry through any node",
                outcome_unknown,
            ),
            CallError::Failed(Failure::Overloaded) => (
                "too many requests are queued for this name on this node; retry shortly",
                false,
            ),
            CallError::Stopping => (
                "this node is shutting down; retry through another node",
                true,
            ),
            CallError::Failed(_) | CallError::ClockDisagrees(_) => {
                ("the request failed; retry through any node", true)
            }
        };
        let mut body = json!({ "error": message, "outcome_unknown": outcome_unknown });
        if outcome_unknown {
            body["hint"] = json!(
                "the operation may still take effect: a retried acquire by the same holder \
                 supersedes it with a higher token; a renewal or release names its token, so \
                 retrying it is safe"
            );
        }
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body,
        }
    }

    /// A bound of this node is reached; nothing was done.
    pub fn unavailable(error: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({ "error": error.into(), "outcome_unknown": false }),
        }
    }

    /// A bound of this caller's own is reached; nothing was done.
    pub fn too_many(error: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({ "error": error.into(), "outcome_unknown": false }),
        }
    }

    pub fn internal(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error, None)
    }

    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
        }
        response
    }
}
