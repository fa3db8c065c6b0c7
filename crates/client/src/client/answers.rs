//! Reading a node's answers: grants, states, conflicts and refusals.

use super::*;

pub(super) fn granted(answer: &Answer) -> Result<Granted, Error> {
    let token = answer.body["token"].as_u64();
    let ttl = answer.body["ttl_ms"]
        .as_u64()
        .and_then(|ms| Ttl::from_millis(ms).ok());
    let holder = answer.body["holder"].as_str();
    match (token, ttl, holder) {
        (Some(token), Some(ttl), Some(holder)) => Ok(Granted {
            token,
            ttl,
            holder: holder.to_string(),
            sent: answer.sent,
            drift: answer.body["max_drift_ppm"]
                .as_u64()
                .and_then(|ppm| u32::try_from(ppm).ok())
                .and_then(DriftBound::from_ppm)
                .unwrap_or_default(),
            key: answer.body["key"].as_str().map(str::to_string),
        }),
        _ => Err(protocol(answer, "a grant without token, ttl_ms or holder")),
    }
}

pub(super) fn parse_state(answer: &Answer) -> Result<LeaseState, Error> {
    serde_json::from_value(answer.body.clone())
        .map_err(|e| protocol(answer, &format!("not a lease state: {e}")))
}

pub(super) fn conflict_state(answer: &Answer) -> Result<LeaseState, Error> {
    parse_state(answer)
}

pub(super) fn conflict_error(answer: &Answer) -> Error {
    match parse_state(answer) {
        Ok(state) => Error::Conflict {
            message: answer.body["error"]
                .as_str()
                .map_or_else(|| state.to_string(), str::to_string),
            state,
        },
        Err(e) => e,
    }
}

pub(super) fn refusal(answer: &Answer) -> Error {
    if matches!(
        answer.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        return Error::Denied {
            status: answer.status.as_u16(),
            message: answer.body["error"]
                .as_str()
                .unwrap_or("refused")
                .to_string(),
        };
    }
    if answer.status.is_client_error() {
        Error::Invalid {
            message: answer.body["error"]
                .as_str()
                .unwrap_or("refused")
                .to_string(),
            field: answer.body["field"].as_str().map(str::to_string),
        }
    } else {
        protocol(answer, &format!("status {}", answer.status))
    }
}

pub(super) fn protocol(answer: &Answer, message: &str) -> Error {
    Error::Protocol {
        endpoint: answer.endpoint.clone(),
        message: message.to_string(),
    }
}
