//! `tenure server --join`: a new node learns the configuration that took
//! it in from the running members, and starts in it.

use anyhow::{Context, Result};
use std::time::Duration;
use tenure_core::{Configuration, Epoch, NodeId};

/// How often a node not yet taken in asks again.
const ASK_EVERY: Duration = Duration::from_secs(1);

/// The cluster id and the configuration that includes `me`, from the
/// members at `urls`; waits until one does. A node with a store of its own
/// (`has_store`) was a member already: if the cluster's configuration no
/// longer includes it, it was removed, and waiting would be for nothing.
pub async fn learn(urls: &str, me: NodeId, has_store: bool) -> Result<(String, Configuration)> {
    let conn = crate::client_cmds::Conn::from_env(urls);
    let client = conn.client().context("--join")?;
    let mut said = false;
    loop {
        match client.members().await {
            Ok(now) => {
                let ids = |list: &[u16]| list.iter().map(|&i| NodeId(i)).collect::<Vec<_>>();
                let configuration = Configuration {
                    epoch: Epoch(now.epoch),
                    members: ids(&now.members),
                    joining: ids(&now.joining),
                    addresses: now
                        .addresses
                        .iter()
                        .map(|(&id, a)| (NodeId(id), a.clone()))
                        .collect(),
                };
                if configuration.includes(me) {
                    tracing::info!(
                        cluster = %now.cluster_id,
                        epoch = now.epoch,
                        members = ?now.members,
                        joining = ?now.joining,
                        "joining"
                    );
                    return Ok((now.cluster_id, configuration));
                }
                anyhow::ensure!(
                    !has_store,
                    "node {me} is not a member of cluster {} (members {:?}, epoch {}), but its \
                     data directory is a member's: it was removed (tenure members remove). \
                     Delete the data directory to retire it; to bring it back, add it again \
                     (tenure members add) and start it on an empty data directory",
                    now.cluster_id,
                    now.members,
                    now.epoch
                );
                if !said {
                    said = true;
                    tracing::warn!(
                        "node {me} is not a member of cluster {} (members {:?}, epoch {}): \
                         waiting for `tenure members add {}=<this node's peer address>` \
                         (or `replace`)",
                        now.cluster_id,
                        now.members,
                        now.epoch,
                        me.0
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the members from {urls}; asking again")
            }
        }
        tokio::time::sleep(ASK_EVERY).await;
    }
}
