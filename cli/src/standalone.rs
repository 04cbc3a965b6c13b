//! `fjord standalone`: one storage node, its controller, the gateway and the embedded
//! metadata store in one process, with no ZooKeeper. The controller is the same one a
//! cluster runs (ARCHITECTURE.md, "One control path").

use crate::config::StandaloneConfig;
use anyhow::Context;
use fjord_coordinator::EmbeddedCoordinator;
use fjord_gateway::{AppState, SingleNode};
use fjord_storage_node::StorageNode;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Runs until `shutdown` completes, then drains requests and syncs storage.
pub async fn run(config: StandaloneConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let mut config = config;
    let dir = config.storage.data_dir.clone();
    tokio::fs::create_dir_all(&dir).await.with_context(|| format!("creating data dir {}", dir.display()))?;
    let coordinator = Arc::new(EmbeddedCoordinator::open(&dir).await.context("opening cluster metadata")?);
    if config.gateway.auth.enabled {
        let auth = &mut config.gateway.auth;
        auth.bootstrap_token_file.get_or_insert_with(|| dir.join("bootstrap-token"));
        if let Some(path) =
            fjord_gateway::auth::bootstrap(coordinator.as_ref(), auth).await.map_err(anyhow::Error::msg)?
        {
            tracing::info!(file = %path.display(), principal = %auth.bootstrap_principal, "bootstrap token ready");
        }
    }
    let node = StorageNode::start(&config.storage, coordinator.clone(), "in-process".into())
        .await
        .context("starting the storage node")?;
    // Started after the node registered: partitions it led before a restart keep their
    // leader and epoch instead of going offline and back.
    let controller = fjord_coordinator::controller::start(coordinator.clone(), node.id()).await;
    let nodes = Arc::new(SingleNode { id: node.id(), api: node.clone() });
    let state = AppState::new(coordinator, nodes, config.gateway.clone());
    state.register_collector(Box::new(node.metrics_collector()));
    let listener = TcpListener::bind(&config.gateway.listen)
        .await
        .with_context(|| format!("binding {}", config.gateway.listen))?;
    tracing::info!(addr = %listener.local_addr()?, data_dir = %dir.display(), "fjord standalone is listening");
    let served = fjord_gateway::serve(listener, state, shutdown).await;
    tracing::info!("shutting down");
    controller.stop().await;
    node.shutdown().await;
    served.context("serving HTTP")
}
