//! Every refusal is JSON, also the ones the router makes by itself (a
//! method a route does not take, a body over the limit), and request heads
//! too large to serve are refused here, with JSON, well below the sizes
//! at which hyper would refuse them itself with an empty body. (A request
//! that is not HTTP at all gets hyper's bare `400`: there is no request to
//! answer.)

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The longest request target served; tenure's are under 400 bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes served (names and values).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most headers served; a client sends a handful.
pub const MAX_HEADERS: usize = 64;
/// Where hyper itself stops parsing, answering a bare 431: well above
/// `MAX_HEADERS`, so that the JSON refusal comes first.
pub const HYPER_MAX_HEADERS: usize = 256;

pub async fn json_refusals(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let uri_len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if uri_len > MAX_URI_BYTES {
        return refusal(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {uri_len} bytes; at most {MAX_URI_BYTES} are served"),
        );
    }
    let header_len: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    let header_count = request.headers().len();
    if header_count > MAX_HEADERS {
        return refusal(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request has {header_count} headers; at most {MAX_HEADERS} are served"),
        );
    }
    if header_len > MAX_HEADER_BYTES {
        return refusal(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the headers are {header_len} bytes; at most {MAX_HEADER_BYTES} are served"),
        );
    }
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = match status {
        // The method router adds the Allow header outside this layer.
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not served on {path}; the Allow header lists what is")
        }
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_string(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "send the body as application/json".to_string(),
        other => other.canonical_reason().unwrap_or("refused").to_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = json!({ "error": error, "field": null }).to_string();
    Response::from_parts(parts, Body::from(body))
}

fn refusal(status: StatusCode, error: String) -> Response {
    (status, axum::Json(json!({ "error": error, "field": null }))).into_response()
}
