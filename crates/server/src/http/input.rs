//! Parsing what clients send: JSON bodies, query strings, durations.
//!
//! Bodies are parsed into a `serde_json::Value` first and checked field by
//! field, so that every refusal names the field and says what to fix; the
//! values then go through the core's validating constructors. Nothing
//! reaches the node loop unless all of it is valid.

use super::error::ApiError;
use serde_json::{Map, Value};
use std::time::Duration;
use tenure_core::{HolderId, LockDelay, Token, Ttl};

pub const BODY_SHAPE: &str = r#"{"holder": "...", "ttl_ms": N, "token": T and "key": K (to renew), "lock_delay_ms": N (optional)}"#;

/// A validated `PUT /v1/locks/{name}` body.
#[derive(Debug, PartialEq, Eq)]
pub enum LockRequest {
    Acquire {
        holder: HolderId,
        ttl: Ttl,
        lock_delay: LockDelay,
    },
    Renew {
        holder: HolderId,
        token: Token,
        /// The grant's key, where the cluster gives keys.
        key: Option<String>,
    },
}

pub fn parse_lock_request(body: &[u8]) -> Result<LockRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            format!("a JSON body is required: {BODY_SHAPE}"),
            None,
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("malformed JSON ({e}); expected {BODY_SHAPE}"), None)
    })?;
    let Value::Object(fields) = value else {
        return Err(ApiError::unprocessable(
            format!("the body must be a JSON object: {BODY_SHAPE}"),
            None,
        ));
    };
    // A map keeps the last of two equal keys; which one a client meant is
    // anyone's guess, so refuse to guess.
    if let Some(twice) = duplicate_key(body) {
        return Err(ApiError::bad_request(
            format!("field {twice:?} is given twice"),
            Some(&twice),
        ));
    }
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["holder", "ttl_ms", "token", "key", "lock_delay_ms"].contains(&k.as_str()))
    {
        return Err(ApiError::unprocessable(
            format!("unknown field {unknown:?}; expected {BODY_SHAPE}"),
            Some(unknown),
        ));
    }
    let holder = match fields.get("holder") {
        None | Some(Value::Null) => {
            return Err(ApiError::unprocessable(
                "missing field \"holder\": who is asking, e.g. \"web-3:pid-4242\"",
                Some("holder"),
            ))
        }
        Some(Value::String(s)) => HolderId::new(s).map_err(|e| ApiError::input(&e))?,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "\"holder\" must be a string",
                Some("holder"),
            ))
        }
    };
    let ttl_ms = whole_number(&fields, "ttl_ms")?;
    let lock_delay_ms = whole_number(&fields, "lock_delay_ms")?;
    match whole_number(&fields, "token")? {
        Some(token) => {
            if lock_delay_ms.is_some() {
                return Err(ApiError::unprocessable(
                    "\"lock_delay_ms\" is set by the acquire; a renewal (with \"token\") cannot change it",
                    Some("lock_delay_ms"),
                ));
            }
            // A renewal keeps the grant's ttl. A ttl in the body is checked
            // (a client sending the same body to acquire and renew is
            // common) but does not change the grant.
            if let Some(ttl_ms) = ttl_ms {
                Ttl::from_millis(ttl_ms).map_err(|e| ApiError::input(&e))?;
            }
            let key = match fields.get("key") {
                None | Some(Value::Null) => None,
                Some(Value::String(k)) => Some(k.clone()),
                Some(_) => {
                    return Err(ApiError::unprocessable(
                        "\"key\" must be a string: the key of the 201 that granted the lease",
                        Some("key"),
                    ))
                }
            };
            Ok(LockRequest::Renew {
                holder,
                token: Token(token),
                key,
            })
        }
        None => {
            if fields.contains_key("key") {
                return Err(ApiError::unprocessable(
                    "\"key\" goes with \"token\", to renew a grant; an acquire has no key yet",
                    Some("key"),
                ));
            }
            let Some(ttl_ms) = ttl_ms else {
                return Err(ApiError::unprocessable(
                    "missing field \"ttl_ms\": how long the lease lasts without renewal, in milliseconds",
                    Some("ttl_ms"),
                ));
            };
            let ttl = Ttl::from_millis(ttl_ms).map_err(|e| ApiError::input(&e))?;
            let lock_delay = match lock_delay_ms {
                Some(ms) => LockDelay::from_millis(ms).map_err(|e| ApiError::input(&e))?,
                None => LockDelay::NONE,
            };
            Ok(LockRequest::Acquire {
                holder,
                ttl,
                lock_delay,
            })
        }
    }
}

/// The first key of the top-level object that appears twice, if any.
fn duplicate_key(body: &[u8]) -> Option<String> {
    struct Keys(Option<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut seen: Vec<String> = Vec::new();
                    let mut twice = None;
                    while let Some(key) = map.next_key::<String>()? {
                        let _: serde::de::IgnoredAny = map.next_value()?;
                        if twice.is_none() && seen.contains(&key) {
                            twice = Some(key.clone());
                        }
                        seen.push(key);
                    }
                    Ok(Keys(twice))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    serde_json::from_slice::<Keys>(body).ok().and_then(|k| k.0)
}

fn whole_number(fields: &Map<String, Value>, field: &str) -> Result<Option<u64>, ApiError> {
    match fields.get(field) {
        None => Ok(None),
        Some(Value::Null) => Err(ApiError::unprocessable(
            format!("\"{field}\" is null; give a whole number, or leave the field out"),
            Some(field),
        )),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::unprocessable(
                format!("\"{field}\" must be a whole, non-negative number (got {v})"),
                Some(field),
            )
        }),
    }
}

/// Query parameters, each allowed at most once, unknown ones refused.
pub fn query_params<'a>(
    pairs: &'a [(String, String)],
    allowed: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, ApiError> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (key, value) in pairs {
        if !allowed.contains(&key.as_str()) {
            return Err(ApiError::bad_request(
                format!(
                    "unknown query parameter {key:?}; this route takes: {}",
                    allowed.join(", ")
                ),
                Some(key),
            ));
        }
        if seen.iter().any(|(k, _)| k == key) {
            return Err(ApiError::bad_request(
                format!("query parameter {key:?} is given twice"),
                Some(key),
            ));
        }
        seen.push((key, value));
    }
    Ok(seen)
}

pub fn param<'a>(params: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// `500ms`, `30s`, `2m`: a whole number, without leading zeros, and a
/// unit (the OpenAPI file's pattern says the same).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    if number.len() > 1 && number.starts_with('0') {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

pub fn parse_wait(text: &str, max: Duration) -> Result<Duration, ApiError> {
    let wait = parse_duration(text).ok_or_else(|| {
        ApiError::bad_request(
            format!("wait={text:?} is not a duration; write e.g. 500ms, 30s or 2m"),
            Some("wait"),
        )
    })?;
    if wait > max {
        return Err(ApiError::bad_request(
            format!(
                "wait={text} is longer than the longest allowed, {}s",
                max.as_secs()
            ),
            Some("wait"),
        ));
    }
    Ok(wait)
}

pub fn parse_token(text: &str) -> Result<Token, ApiError> {
    text.parse().map(Token).map_err(|_| {
        ApiError::bad_request(
            format!("token={text:?} is not a whole number; pass the token of your grant"),
            Some("token"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn err(body: &str) -> (StatusCode, String) {
        let e = parse_lock_request(body.as_bytes()).unwrap_err();
        let status = e.status();
        (status, format!("{e:?}"))
    }

    #[test]
    fn an_acquire_body_parses_with_defaults() {
        assert_eq!(
            parse_lock_request(br#"{"holder":"a","ttl_ms":1000}"#).unwrap(),
            LockRequest::Acquire {
                holder: HolderId::new("a").unwrap(),
                ttl: Ttl::from_millis(1000).unwrap(),
                lock_delay: LockDelay::NONE,
            }
        );
    }

    #[test]
    fn a_body_with_a_token_is_a_renewal() {
        assert_eq!(
            parse_lock_request(br#"{"holder":"a","ttl_ms":1000,"token":7}"#).unwrap(),
            LockRequest::Renew {
                holder: HolderId::new("a").unwrap(),
                token: Token(7),
                key: None,
            }
        );
    }

    #[test]
    fn each_bad_body_is_refused_naming_its_field() {
        assert_eq!(err("{").0, StatusCode::BAD_REQUEST);
        assert_eq!(err("").0, StatusCode::BAD_REQUEST);
        assert_eq!(err("[1]").0, StatusCode::UNPROCESSABLE_ENTITY);
        let (s, m) = err(r#"{"ttl_ms":1000}"#);
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(m.contains("holder"));
        let (s, m) = err(r#"{"holder":"a","ttl_ms":"10s"}"#);
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(m.contains("ttl_ms"));
        let (s, m) = err(r#"{"holder":"a","ttl_ms":1}"#);
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(m.contains("ttl_ms"));
        let (s, m) = err(r#"{"holder":"a","ttl_ms":1000,"tll":3}"#);
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(m.contains("tll"));
        let (s, m) = err(r#"{"holder":"a b","ttl_ms":1000}"#);
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(m.contains("holder"));
        let (_, m) = err(r#"{"holder":"a","ttl_ms":1000,"token":-1}"#);
        assert!(m.contains("token"));
        // A null is not "left out": an acquire with "token": null would
        // otherwise be taken for an acquire.
        let (s, m) = err(r#"{"holder":"a","ttl_ms":1000,"token":null}"#);
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(m.contains("token"));
        let (s, m) = err(r#"{"holder":"a","ttl_ms":1000,"holder":"b"}"#);
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(m.contains("twice"), "{m}");
    }

    #[test]
    fn durations_take_ms_s_and_m() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1h"), None);
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("030s"), None);
        let max = Duration::from_secs(300);
        assert!(parse_wait("10m", max).is_err());
        // The bounds docs/openapi.yaml's pattern draws.
        for ok in ["0ms", "300000ms", "300s", "5m", "0m", "299999ms"] {
            assert!(parse_wait(ok, max).is_ok(), "{ok}");
        }
        for bad in ["300001ms", "301s", "6m", "00s", "1h", "1.5s", "-1s", ""] {
            assert!(parse_wait(bad, max).is_err(), "{bad}");
        }
    }
}

/// Fuzzing: whatever a client sends, parsing answers a valid request or a
/// 4xx that says what to fix, never a panic or a 5xx. `PROPTEST_CASES=100000`
/// for a long run; `cargo test` runs proptest's 256 cases.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// A JSON value of any type, shallow: what a confused client sends.
    fn json_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,200}".prop_map(Value::String),
            prop::collection::vec(any::<u8>().prop_map(Value::from), 0..3).prop_map(Value::Array),
        ]
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("holder".to_string()),
            Just("ttl_ms".to_string()),
            Just("token".to_string()),
            Just("lock_delay_ms".to_string()),
            "[a-z_]{0,12}",
        ]
    }

    fn refused_with_4xx(result: Result<LockRequest, ApiError>) -> Result<(), TestCaseError> {
        if let Err(e) = result {
            prop_assert!(e.status().is_client_error(), "{e:?}");
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_body_parses_or_is_refused_with_a_4xx(body in prop::collection::vec(any::<u8>(), 0..512)) {
            refused_with_4xx(parse_lock_request(&body))?;
        }

        #[test]
        fn any_object_of_any_fields_parses_or_is_refused_with_a_4xx(
            fields in prop::collection::vec((field(), json_value()), 0..6),
        ) {
            let body: String = format!(
                "{{{}}}",
                fields
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let parsed = parse_lock_request(body.as_bytes());
            if let Ok(request) = &parsed {
                // Accepted only with every field valid and none twice.
                let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
                let mut unique = names.clone();
                unique.sort_unstable();
                unique.dedup();
                prop_assert_eq!(unique.len(), names.len(), "{} accepted as {:?}", body, request);
            }
            refused_with_4xx(parsed)?;
        }

        #[test]
        fn any_query_value_parses_or_is_refused(text in ".{0,40}") {
            let _ = parse_duration(&text);
            if let Err(e) = parse_wait(&text, Duration::from_secs(300)) {
                prop_assert!(e.status().is_client_error());
            }
            if let Err(e) = parse_token(&text) {
                prop_assert!(e.status().is_client_error());
            }
        }
    }
}
