//! The cluster processes: `fjord storage-node` and `fjord gateway`, coordinated through
//! ZooKeeper.

use crate::config::{GatewayProcessConfig, StorageNodeConfig, ZookeeperConfig};
use anyhow::Context;
use fjord_coordinator::zk::ZkCoordinator;
use fjord_coordinator::{Coordinator, GatewayInfo};
use fjord_gateway::remote::RemoteNodes;
use fjord_gateway::AppState;
use fjord_storage_node::StorageNode;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{info, warn};

async fn connect(z: &ZookeeperConfig) -> anyhow::Result<Arc<ZkCoordinator>> {
    let zk = ZkCoordinator::connect(&z.connect, &z.chroot, Duration::from_millis(z.session_timeout_ms))
        .await
        .with_context(|| format!("connecting to ZooKeeper at {}", z.connect))?;
    Ok(Arc::new(zk))
}

/// Runs a storage node (and its controller candidate) until `shutdown`, then hands its
/// leaderships away (controlled shutdown) and stops.
pub async fn run_storage_node(
    config: StorageNodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let id = config.storage.node_id;
    let secret = config.cluster.secret().map_err(anyhow::Error::msg)?;
    let mut config = config;
    config.storage.cluster_secret = secret.clone();
    let zk = connect(&config.zookeeper).await?;
    let coordinator: Arc<dyn Coordinator> = zk.clone();
    let listener = TcpListener::bind(&config.internal.listen)
        .await
        .with_context(|| format!("binding {}", config.internal.listen))?;
    let endpoint = match &config.internal.advertised {
        Some(a) => a.clone(),
        None => listener.local_addr()?.to_string(),
    };
    tokio::fs::create_dir_all(&config.storage.data_dir)
        .await
        .with_context(|| format!("creating data dir {}", config.storage.data_dir.display()))?;
    let node = StorageNode::start(&config.storage, coordinator.clone(), endpoint.clone())
        .await
        .context("starting the storage node")?;
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(fjord_storage_node::internal::serve(listener, node.clone(), secret, async {
        let _ = server_stopped.await;
    }));
    let (stop_controller, controller_stopped) = oneshot::channel::<()>();
    let controller = tokio::spawn(fjord_coordinator::controller::run(
        coordinator.clone(),
        id,
        config.controller.clone(),
        node.controller_stats(),
        async {
            let _ = controller_stopped.await;
        },
    ));
    info!(node = id, %endpoint, "storage node is up");

    shutdown.await;
    controlled_shutdown(&coordinator, id, Duration::from_millis(config.internal.controlled_shutdown_timeout_ms)).await;
    let _ = stop_controller.send(());
    let _ = controller.await;
    let _ = stop_server.send(());
    let served = server.await;
    node.shutdown().await;
    zk.close().await;
    match served {
        Ok(r) => r.context("serving the internal API"),
        Err(e) => Err(anyhow::anyhow!("internal API task failed: {e}")),
    }
}

/// Kafka's controlled shutdown: mark this node as leaving so the controller moves its
/// leaderships to other in-sync replicas, and wait (bounded) until it leads nothing that
/// could move. A partition with no other live in-sync replica stays led by this node
/// (writable) until the process ends (controller::plan).
async fn controlled_shutdown(coordinator: &Arc<dyn Coordinator>, id: u32, timeout: Duration) {
    let mut rx = coordinator.metadata();
    let me = rx.borrow().nodes.get(&id).cloned();
    let Some(mut me) = me else { return };
    me.shutting_down = true;
    if let Err(e) = coordinator.update_node(me).await {
        warn!(error = %e, "could not announce the controlled shutdown");
        return;
    }
    let leads_nothing = |m: &fjord_coordinator::ClusterMetadata| {
        let successor = |r: &u32| *r != id && m.nodes.get(r).is_some_and(|n| !n.shutting_down);
        !m.topics.values().flat_map(|t| &t.partitions).any(|p| p.leader == Some(id) && p.isr.iter().any(successor))
    };
    let waited = tokio::time::timeout(timeout, async {
        while !leads_nothing(&rx.borrow_and_update()) {
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    match waited {
        Ok(()) => info!(node = id, "leaderships handed over; stopping"),
        Err(_) => warn!(node = id, "leaderships not all handed over in time; stopping anyway"),
    }
}

/// Runs a gateway until `shutdown`.
pub async fn run_gateway(
    config: GatewayProcessConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let zk = connect(&config.zookeeper).await?;
    let listener = TcpListener::bind(&config.gateway.listen)
        .await
        .with_context(|| format!("binding {}", config.gateway.listen))?;
    let endpoint = listener.local_addr()?.to_string();
    let id = config.id.clone().unwrap_or_else(default_gateway_id);
    zk.register_gateway(GatewayInfo { id: id.clone(), endpoint: endpoint.clone() })
        .await
        .context("registering the gateway")?;
    let secret = config.cluster.secret().map_err(anyhow::Error::msg)?;
    let nodes = Arc::new(RemoteNodes::new(zk.metadata(), secret.as_ref()).context("HTTP client")?);
    let state = AppState::new(zk.clone(), nodes, config.gateway.clone());
    if config.gateway.auth.enabled {
        if let Some(path) =
            fjord_gateway::auth::bootstrap(zk.as_ref(), &config.gateway.auth).await.map_err(anyhow::Error::msg)?
        {
            info!(file = %path.display(), "bootstrap token ready");
        }
    }
    info!(gateway = %id, %endpoint, "gateway is listening");
    let served = fjord_gateway::serve(listener, state, shutdown).await;
    zk.close().await;
    served.context("serving HTTP")
}

/// `gw-<host>-<pid>`: unique across hosts and across processes on one host (a pid alone
/// is not: every container's first process has the same one).
fn default_gateway_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String =
        host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')).take(64).collect();
    match host.as_str() {
        "" => format!("gw-{}", std::process::id()),
        h => format!("gw-{h}-{}", std::process::id()),
    }
}
