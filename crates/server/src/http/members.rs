//! `/v1/members`: the cluster's configuration, and an operator's change of
//! it (docs/membership.md). `tenure members` is the command line over it.
//!
//! A change is coordinated by the node that is asked, one step at a time
//! (`tenure_core::Node::change_members`). The `PUT` waits for it to finish
//! for up to [`CHANGE_WAIT`]; asking again for the same members resumes a
//! change that a crash or a lost quorum interrupted, through any node.

use super::error::ApiError;
use super::{AppState, OpLabel};
use crate::node_loop::MembersNow;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tenure_core::{ChangeError, ChangeStep, NodeId};

/// How long a `PUT` waits for its change to finish before it answers
/// `202` with how far it got.
pub const CHANGE_WAIT: Duration = Duration::from_secs(30);

pub async fn list(State(app): State<AppState>) -> Response {
    let now = app.node.members_now().borrow().clone();
    labelled((StatusCode::OK, axum::Json(members_json(&app, &now))).into_response())
}

pub async fn change(State(app): State<AppState>, request: Request) -> Response {
    let limit = app.limits.body_read_timeout;
    let body = match tokio::time::timeout(limit, Bytes::from_request(request, &())).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return labelled(
                ApiError::bad_request(format!("could not read the body: {e}"), None)
                    .into_response(),
            )
        }
        Err(_) => {
            let e = ApiError::bad_request(
                format!("the body did not arrive within {} ms", limit.as_millis()),
                None,
            );
            return labelled(e.into_response());
        }
    };
    labelled(match change_inner(&app, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    })
}

fn labelled(mut response: Response) -> Response {
    response.extensions_mut().insert(OpLabel("members"));
    response
}

/// What a change asks for: every member of the new configuration, with its
/// peer address, and (optionally) the epoch the operator read, so that a
/// change computed from a configuration that has moved on since is
/// refused rather than applied to the wrong one.
struct Target {
    members: BTreeMap<NodeId, String>,
    epoch: Option<u64>,
}

fn parse_target(body: &[u8]) -> Result<Target, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}"), None))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::unprocessable(
            "the body is a JSON object: {\"members\": {\"1\": \"host:port\", ...}, \"epoch\": N}",
            None,
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "members" | "epoch"))
    {
        return Err(ApiError::unprocessable(
            format!("unknown field {unknown:?}: the fields are members and epoch"),
            Some(unknown),
        ));
    }
    let Some(listed) = object.get("members").and_then(Value::as_object) else {
        return Err(ApiError::unprocessable(
            "members is an object of every member's id and peer address, e.g. {\"1\": \"10.0.0.1:7401\"}",
            Some("members"),
        ));
    };
    let mut members = BTreeMap::new();
    for (id, address) in listed {
        let id = id
            .parse::<u16>()
            .ok()
            .filter(|&id| id >= 1)
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("member id {id:?} is not a number from 1 to 65535"),
                    Some("members"),
                )
            })?;
        let address = address
            .as_str()
            .map(str::trim)
            .filter(|a| !a.is_empty() && a.len() <= 255 && a.contains(':'))
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("the peer address of member {id} is host:port, not {address}"),
                    Some("members"),
                )
            })?;
        members.insert(NodeId(id), address.to_string());
    }
    let epoch = match object.get("epoch") {
        None | Some(Value::Null) => None,
        Some(e) => Some(e.as_u64().filter(|&e| e >= 1).ok_or_else(|| {
            ApiError::unprocessable("epoch is a whole number from 1", Some("epoch"))
        })?),
    };
    Ok(Target { members, epoch })
}

async fn change_inner(app: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let target = parse_target(body)?;
    let ids: Vec<NodeId> = target.members.keys().copied().collect();
    let mut now = app.node.members_now();
    {
        let current = now.borrow_and_update();
        let c = &current.configuration;
        // A change under way to these members is resumed, whatever epoch
        // the operator read before it began.
        let resuming = tenure_core::same_members(&c.joining, &ids);
        if let Some(epoch) = target.epoch.filter(|&e| e != c.epoch.0 && !resuming) {
            if !c.is_settled_on(&ids) {
                return Err(ApiError::conflict(format!(
                    "the configuration is at epoch {} now, not {epoch}: read it again \
                     (tenure members list) and decide the change on what it is",
                    c.epoch.0
                )));
            }
        }
        let added = ids.iter().filter(|m| !c.members.contains(m)).count();
        let removed = c.members.iter().filter(|m| !ids.contains(m)).count();
        if !resuming && (added > 1 || removed > 1) {
            // Each step keeps a quorum of the old members able to carry
            // the change; a leap to members that are not up yet could
            // come into force and then wait for them for ever.
            return Err(ApiError::bad_request(
                format!(
                    "one member at a time: add one, remove one or replace one (this asks to add \
                     {added} and remove {removed}); make the change in steps"
                ),
                Some("members"),
            ));
        }
        for (id, address) in &target.members {
            if let Some(known) = c.addresses.get(id).filter(|known| *known != address) {
                return Err(ApiError::bad_request(
                    format!(
                        "member {id} is at {known}, not {address}: a change of members does \
                         not move a member (see docs/operations.md)"
                    ),
                    Some("members"),
                ));
            }
        }
    }
    let begun = app
        .node
        .change_members(ids.clone(), target.members.clone())
        .await
        .map_err(ApiError::call)?;
    match begun {
        Ok(()) => {}
        Err(e @ ChangeError::UnderWay { .. }) => return Err(ApiError::conflict(e.to_string())),
        Err(e) => return Err(ApiError::bad_request(e.to_string(), Some("members"))),
    }
    let begun_at = now.borrow_and_update().configuration.epoch;
    let finished = tokio::time::timeout(CHANGE_WAIT, async {
        loop {
            let c = now.borrow_and_update().configuration.clone();
            if c.is_settled_on(&ids) {
                return Ok(true);
            }
            if c.joining.is_empty() && c.epoch > begun_at {
                // Another change, asked at once elsewhere, took effect.
                return Err(c);
            }
            if now.changed().await.is_err() {
                return Ok(false);
            }
        }
    })
    .await
    .unwrap_or(Ok(false));
    let finished = match finished {
        Ok(finished) => finished,
        Err(other) => {
            return Err(ApiError::conflict(format!(
                "another change of members, asked at the same time, took effect instead: the \
                 members are now {:?} ({}); read them again and decide",
                other.members.iter().map(|m| m.0).collect::<Vec<_>>(),
                other.epoch
            )))
        }
    };
    let state = now.borrow().clone();
    let body = members_json(app, &state);
    let status = if finished {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, axum::Json(body)).into_response())
}

/// The configuration as this node has it, and the change it coordinates.
fn members_json(app: &AppState, now: &MembersNow) -> Value {
    let c = &now.configuration;
    let ids = |list: &[NodeId]| list.iter().map(|m| m.0).collect::<Vec<_>>();
    let addresses: BTreeMap<String, &String> = c
        .addresses
        .iter()
        .map(|(id, address)| (id.0.to_string(), address))
        .collect();
    json!({
        "cluster_id": &*app.cluster_id,
        "node": app.peers.me.0,
        "epoch": c.epoch.0,
        "members": ids(&c.members),
        "joining": ids(&c.joining),
        "addresses": addresses,
        "change": now.step.map(|step| match step {
            ChangeStep::Recording => "recording",
            ChangeStep::Rescanning => "rescanning",
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_names_every_member_at_its_address() {
        let t =
            parse_target(br#"{"members": {"1": "a:1", "4": "d:1"}, "epoch": 2}"#).expect("valid");
        assert_eq!(t.members.len(), 2);
        assert_eq!(t.epoch, Some(2));
        for bad in [
            &br#"{"members": {"0": "a:1"}}"#[..],
            br#"{"members": {"x": "a:1"}}"#,
            br#"{"members": {"1": "nowhere"}}"#,
            br#"{"members": [1, 2]}"#,
            br#"{"members": {"1": "a:1"}, "epoch": 0}"#,
            br#"{"members": {"1": "a:1"}, "extra": true}"#,
            br#"[1]"#,
        ] {
            assert!(
                parse_target(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
