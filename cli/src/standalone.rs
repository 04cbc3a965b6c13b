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
    let controller =
        fjord_coordinator::controller::start_with(coordinator.clone(), node.id(), node.controller_stats()).await;
    let nodes = Arc::new(SingleNode { id: node.id(), api: node.clone() });
    let state = AppState::new(coordinator, nodes, config.gateway.clone());
    state.register_collector(Box::new(node.metrics_collector()));
    let listener = TcpListener::bind(&config.gateway.listen)
        .await
        .with_context(|| format!("binding {}", config.gateway.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %dir.display(), "fjord standalone is listening");
    let (stop_worker, worker) = start_worker(&config, addr);
    let served = fjord_gateway::serve(listener, state, shutdown).await;
    tracing::info!("shutting down");
    let _ = stop_worker.send(());
    if let Some(w) = worker {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), w).await;
    }
    controller.stop().await;
    node.shutdown().await;
    served.context("serving HTTP")
}

/// The in-process stream processor: a client of this process's own API (over loopback
/// HTTP, with the bootstrap token when authentication is on). Not started with TLS on
/// (run `fjord processor` with `--ca-file` then) or when `processor.enabled` is false.
fn start_worker(
    config: &StandaloneConfig,
    addr: std::net::SocketAddr,
) -> (tokio::sync::oneshot::Sender<()>, Option<tokio::task::JoinHandle<()>>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    if !config.processor.enabled {
        return (stop, None);
    }
    if config.gateway.tls.is_some() {
        tracing::info!("stream processor not started in-process with TLS on: run `fjord processor --ca-file …`");
        return (stop, None);
    }
    let ip = if addr.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { addr.ip() };
    let base = format!("http://{}", std::net::SocketAddr::new(ip, addr.port()));
    let token_file = config.gateway.auth.enabled.then(|| config.gateway.auth.bootstrap_token_file.clone()).flatten();
    let state_dir = config.storage.data_dir.join("processor-state");
    // Its requests go to this gateway, which refuses a `timeout_ms` above its maximum.
    let max_request_timeout_ms =
        config.gateway.max_timeout_ms.min(fjord_streams::runtime::DEFAULT_MAX_REQUEST_TIMEOUT_MS);
    let task = tokio::spawn(async move {
        let token = match token_file {
            Some(path) => match tokio::fs::read_to_string(&path).await {
                Ok(t) => Some(t.trim().to_owned()),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "stream processor not started: no bootstrap token");
                    return;
                }
            },
            None => None,
        };
        let client = match fjord_client::Client::connect(&base, token.as_deref(), None) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "stream processor not started");
                return;
            }
        };
        let cfg = fjord_streams::worker::WorkerConfig {
            instance: "standalone".into(),
            state_dir: Some(state_dir),
            max_request_timeout_ms,
            ..Default::default()
        };
        fjord_streams::worker::run(client, cfg, async { stopped.await.unwrap_or(()) }).await;
    });
    (stop, Some(task))
}
