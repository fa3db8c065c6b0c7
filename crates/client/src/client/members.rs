//! `/v1/members`: the cluster's configuration, and changes of it
//! (`tenure members`, docs/operations.md).

use super::*;
use serde::Deserialize;
use std::collections::BTreeMap;

/// How long one attempt to change the members may take: the node waits up
/// to 30 s for the change to finish before it answers.
const CHANGE_ATTEMPT: Duration = Duration::from_secs(40);

/// A cluster's configuration, as one node has it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Members {
    pub cluster_id: String,
    /// The node that answered.
    pub node: u16,
    /// Rises by one at each step of a change.
    pub epoch: u64,
    pub members: Vec<u16>,
    /// During a change, the members being moved to; empty otherwise.
    pub joining: Vec<u16>,
    /// Every member's peer address, by id.
    pub addresses: BTreeMap<u16, String>,
    /// How far the change the answering node coordinates is: `recording`
    /// or `rescanning`; `None` when it coordinates none.
    pub change: Option<String>,
}

impl Members {
    /// Whether a change of members is under way.
    pub fn changing(&self) -> bool {
        !self.joining.is_empty()
    }
}

impl Client {
    /// The configuration, as the first node that answers has it.
    pub async fn members(&self) -> Result<Members, Error> {
        let answer = self.get_ok("/v1/members".into()).await?;
        parse_members(&answer)
    }

    /// Change the members to `target` (every member, with its peer
    /// address), decided on the configuration of `epoch`. Returns the
    /// configuration after, and whether the change finished; if not, the
    /// same call again resumes it. Asking again is always safe: a change
    /// to the members there are does nothing.
    pub async fn change_members(
        &self,
        target: &BTreeMap<u16, String>,
        epoch: u64,
    ) -> Result<(Members, bool), Error> {
        let members: BTreeMap<String, &String> =
            target.iter().map(|(id, a)| (id.to_string(), a)).collect();
        let request = Request {
            method: Method::PUT,
            path: "/v1/members".into(),
            body: Some(json!({ "members": members, "epoch": epoch })),
            attempt_timeout: CHANGE_ATTEMPT,
        };
        let until = self.inner.clock.now() + CHANGE_ATTEMPT * 2;
        let answer = self.send(&request, Retry::Always, until).await?;
        match answer.status {
            StatusCode::OK => Ok((parse_members(&answer)?, true)),
            StatusCode::ACCEPTED => Ok((parse_members(&answer)?, false)),
            StatusCode::CONFLICT => Err(Error::Invalid {
                message: answer.body["error"]
                    .as_str()
                    .unwrap_or("the change was refused")
                    .to_string(),
                field: None,
            }),
            _ => Err(refusal(&answer)),
        }
    }
}

fn parse_members(answer: &Answer) -> Result<Members, Error> {
    serde_json::from_value(answer.body.clone())
        .map_err(|e| answers::protocol(answer, &format!("not a configuration: {e}")))
}
