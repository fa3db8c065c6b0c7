//! A single-node cluster in this process, for the server's own tests.

use std::collections::BTreeMap;
use tenure_core::NodeId;
use tenure_server::{server, Listeners, Running, ServerConfig};

/// Start node 1 of a one-node cluster on `dir`, with `tune` applied to
/// its configuration; ports chosen by the OS.
pub async fn start_single(dir: &std::path::Path, tune: impl FnOnce(&mut ServerConfig)) -> Running {
    let listeners = Listeners::bind("127.0.0.1:0", "127.0.0.1:0")
        .await
        .expect("bind");
    let peer = listeners.peer.local_addr().expect("addr").to_string();
    let mut config = ServerConfig::new(
        NodeId(1),
        dir.to_path_buf(),
        BTreeMap::from([(NodeId(1), peer)]),
    );
    tune(&mut config);
    server::start(config, listeners).await.expect("start")
}
