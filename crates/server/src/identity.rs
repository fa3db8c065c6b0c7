//! Which cluster a data directory belongs to, and who its members are.
//!
//! A store remembers what its node was told when it was created: the
//! cluster id and the member ids. A node started with other flags on it
//! (a wrong `--peers`, a one-node cluster on a member's data, another
//! cluster's directory) would vote in a second cluster with the first one's
//! promises and values, and could grant a name already held with a token
//! already given. So it refuses to start, and says what differs.
//!
//! Once the members were changed (`tenure members`), the store holds the
//! configuration its node adopted, and that, not the identity recorded at
//! the first start, says who the members are: flags that name the members
//! before or after the change are both accepted, the store's configuration
//! wins, and flags that name neither are refused. Peers check the cluster
//! id in every hello (`peer::inbound`); members are checked by the
//! configuration stamp on every message (`tenure_core::Configuration`).

use crate::config::ServerConfig;
use std::path::PathBuf;
use tenure_core::{same_members, Configuration, NodeId};
use tenure_storage::Store;

/// A cluster id: what `--cluster-id` accepts.
pub const MAX_CLUSTER_ID_BYTES: usize = 64;

/// The identity text of `config`: `cluster <id>, members <ids>`, with the
/// ids in order, so that equal identities have equal texts.
pub fn of(config: &ServerConfig) -> String {
    let members: Vec<String> = config.members().iter().map(|m| m.0.to_string()).collect();
    format!(
        "cluster {}, members {}",
        config.cluster_id,
        members.join(",")
    )
}

/// What a node says of its cluster in every hello: the cluster id. The
/// members are told apart by every message's configuration stamp.
pub fn hello(config: &ServerConfig) -> String {
    format!("cluster {}", config.cluster_id)
}

/// The identity text of a changed configuration, for messages.
fn of_configuration(cluster_id: &str, c: &Configuration) -> String {
    let ids = |list: &[NodeId]| {
        let mut list = list.to_vec();
        list.sort_unstable();
        list.iter()
            .map(|m| m.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if c.joining.is_empty() {
        format!(
            "cluster {cluster_id}, members {} ({})",
            ids(&c.members),
            c.epoch
        )
    } else {
        format!(
            "cluster {cluster_id}, members {} moving to {} ({})",
            ids(&c.members),
            ids(&c.joining),
            c.epoch
        )
    }
}

/// Why a cluster id was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a cluster id is 1 to {MAX_CLUSTER_ID_BYTES} letters, digits, '.', '_' or '-', not {0:?}")]
pub struct ClusterIdError(pub String);

pub fn check_cluster_id(id: &str) -> Result<(), ClusterIdError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_CLUSTER_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ClusterIdError(id.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error(
        "the data directory {dir} belongs to {stored}, but this node was started as {given}. \
         Start it with that cluster's --cluster-id and --peers; a node of another cluster needs \
         a data directory of its own. To change a stopped cluster's members on purpose, see \
         docs/operations.md (\"The cluster's identity\")"
    )]
    Mismatch {
        dir: PathBuf,
        stored: String,
        given: String,
    },
    #[error("cannot record the cluster identity in {dir}")]
    Record {
        dir: PathBuf,
        // Boxed: an open error is large, and this one is rare.
        source: Box<tenure_storage::OpenError>,
    },
}

/// Whether this node may start on `store` as `config` says: a new store (or
/// one from before identities) takes the configured identity; a store of
/// another identity is refused unless the operator asked to rewrite it, or
/// its members were changed since and the flags name them. `starting` is
/// the configuration the node was built in; a joining node's is recorded.
pub fn gate(
    store: &mut Store,
    config: &ServerConfig,
    starting: &Configuration,
) -> Result<(), IdentityError> {
    let given = of(config);
    let dir = || config.data_dir.clone();
    let record = |source| IdentityError::Record {
        dir: dir(),
        source: Box::new(source),
    };
    if config.joined.is_some() && store.configuration().is_none() {
        store.record_configuration(starting).map_err(record)?;
    }
    match (store.identity(), store.configuration()) {
        (Some(stored), _) if stored == given => return Ok(()),
        (Some(stored), Some(changed)) => {
            let flags = config.members();
            let names = |list: &[NodeId]| same_members(&flags, list);
            let everyone = changed.quorums().members().to_vec();
            let same_cluster = stored.starts_with(&format!("{}, ", hello(config)));
            let same_members = config.joined.is_some()
                || names(&changed.members)
                || names(&changed.joining)
                || names(&everyone);
            if same_cluster && same_members {
                return Ok(());
            }
            return Err(IdentityError::Mismatch {
                dir: dir(),
                stored: of_configuration(
                    stored
                        .strip_prefix("cluster ")
                        .and_then(|rest| rest.split(", ").next())
                        .unwrap_or(stored),
                    changed,
                ),
                given,
            });
        }
        (Some(stored), None) if !config.rewrite_cluster_identity => {
            return Err(IdentityError::Mismatch {
                dir: dir(),
                stored: stored.to_string(),
                given,
            })
        }
        (Some(stored), None) => tracing::warn!(
            dir = %config.data_dir.display(),
            "the data directory belonged to {stored}; it now belongs to {given}, as the operator asked"
        ),
        (None, _) => {
            tracing::info!(dir = %config.data_dir.display(), "this data directory belongs to {given}")
        }
    }
    store.record_identity(&given).map_err(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_identity_names_the_cluster_and_its_members_in_order() {
        let peers: BTreeMap<NodeId, String> = [(3, "c:1"), (1, "a:1"), (2, "b:1")]
            .into_iter()
            .map(|(id, addr)| (NodeId(id), addr.to_string()))
            .collect();
        let mut config = ServerConfig::new(NodeId(1), PathBuf::from("d"), peers);
        config.cluster_id = "prod-eu".into();
        assert_eq!(of(&config), "cluster prod-eu, members 1,2,3");
    }

    /// A store whose members were changed (to 1, 2 and 4, at epoch 3)
    /// starts with the flags of before or after the change, and refuses
    /// flags that name neither, or another cluster.
    #[test]
    fn a_changed_store_takes_the_flags_of_before_or_after_the_change_only() {
        use tenure_core::Epoch;
        use tenure_storage::{StoreAt, StoreOptions};
        let dir = tempfile::tempdir().expect("tempdir");
        let config_of = |ids: &[u16], cluster: &str| {
            let peers: BTreeMap<NodeId, String> = ids
                .iter()
                .map(|&id| (NodeId(id), format!("h{id}:1")))
                .collect();
            let mut config = ServerConfig::new(NodeId(1), dir.path().to_path_buf(), peers);
            config.cluster_id = cluster.into();
            config
        };
        let (mut store, _) = StoreOptions::default()
            .open(StoreAt::dir(dir.path()), tenure_storage::collect)
            .expect("a new store");
        let first = config_of(&[1, 2, 3], "tenure");
        let starting = first.first_configuration();
        gate(&mut store, &first, &starting).expect("a new store takes the flags");
        let changed = Configuration {
            epoch: Epoch(3),
            members: [1, 2, 4].map(NodeId).to_vec(),
            joining: Vec::new(),
            addresses: BTreeMap::new(),
        };
        store.record_configuration(&changed).expect("record");
        for ok in [&[1, 2, 3][..], &[1, 2, 4]] {
            gate(&mut store, &config_of(ok, "tenure"), &changed).expect("before or after");
        }
        for (ids, cluster) in [(&[3][..], "tenure"), (&[1, 2, 4], "other")] {
            let refused = gate(&mut store, &config_of(ids, cluster), &changed)
                .expect_err("neither")
                .to_string();
            assert!(refused.contains("members 1,2,4 (epoch 3)"), "{refused}");
        }
    }

    #[test]
    fn cluster_ids_are_short_plain_words() {
        assert!(check_cluster_id("prod-eu_1.a").is_ok());
        for bad in ["", "a b", "x/y", &"x".repeat(65)] {
            assert!(check_cluster_id(bad).is_err(), "{bad:?}");
        }
    }
}
