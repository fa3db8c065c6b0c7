//! Starting a node from its store: the one path `tenure server` and the
//! simulator share, so that the way a node boots is the way it is
//! simulated.

use crate::error::OpenError;
use crate::store::{Boot, Store, StoreAt, StoreOptions};
use tenure_core::{Config, ConfigError, Instant, Node};

/// Why a node could not start from its store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("invalid cluster configuration")]
    Config(#[from] ConfigError),
}

/// Open the store at `at` and build the node on it: the acceptor from the
/// records as they are read, with the incarnation and promise horizon the
/// store hands out, into the configuration `config` makes of them. The
/// members the store last recorded, if any, replace those `config` gives:
/// a node acts under the latest configuration it made durable. `now` is
/// the node's clock at boot, where every lease clock it loads starts.
pub fn boot_node(
    options: &StoreOptions,
    at: StoreAt<'_>,
    config: impl FnOnce(Boot) -> Config,
    now: Instant,
) -> Result<(Store, Node), BootError> {
    let (store, node) = options.open(at, |boot, records| {
        let stored = boot.configuration.clone();
        let mut config = config(boot.clone());
        if let Some(stored) = stored {
            config.configuration = stored;
        }
        assert_eq!(
            (
                config.incarnation,
                config.promise_horizon,
                config.token_floor
            ),
            (boot.incarnation, boot.horizon, boot.token_floor),
            "a node starts in the life its store hands out"
        );
        Node::new(config, records, now)
    })?;
    Ok((store, node?))
}
