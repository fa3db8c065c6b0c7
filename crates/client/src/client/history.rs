//! `GET /v1/locks/{name}/history`: a name's last changes, as one node
//! learnt them.

use super::*;
use serde::Deserialize;

/// One change of a name's grant, newest first in a history.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
pub struct HistoryChange {
    /// `granted`, `renewed`, `released`, `expired` or `superseded`.
    pub change: String,
    pub holder: String,
    pub token: u64,
    pub ttl_ms: u64,
    /// The node whose proposal made the change.
    pub proposer: u16,
    /// From the start of the proposer's round to the value chosen.
    pub took_ms: f64,
    /// When it happened, by the answering node's wall clock.
    pub at_unix_ms: u64,
    /// How long before the answer it happened, on that node's clock.
    pub ago_ms: u64,
}

impl Client {
    /// The last changes of `name` as the first node that answers learnt
    /// them, newest first. Each node keeps its own; they agree on order.
    pub async fn history(&self, name: &str) -> Result<Vec<HistoryChange>, Error> {
        let name = LeaseName::new(name).map_err(|e| Error::invalid(e, Some("name")))?;
        let answer = self
            .get_ok(format!("/v1/locks/{}/history", name.as_str()))
            .await?;
        serde_json::from_value(answer.body["changes"].clone())
            .map_err(|e| answers::protocol(&answer, &format!("not a history: {e}")))
    }
}
