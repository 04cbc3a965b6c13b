//! A processor worker: runs every pipeline stored in the cluster (`GET /v1/pipelines`),
//! starting a [`Processor`] for each new one and stopping it when its definition is
//! deleted — what `fjord processor` does without `--pipeline`, and what `fjord
//! standalone` runs inside. Any number of workers may run: each pipeline's instances
//! share its tasks through its consumer group.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use fjord_client::Client;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pipeline::PipelineDef;
use crate::runtime::{Processor, ProcessorConfig, ProcessorError};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's name in every pipeline's group.
    pub instance: String,
    /// How often the stored pipelines are listed.
    pub refresh: Duration,
    pub session_timeout_ms: u64,
    pub replication_factor: Option<u32>,
    /// Keep each pipeline's task state in a local RocksDB under this directory
    /// (`None`: in memory).
    pub state_dir: Option<std::path::PathBuf>,
    /// [`ProcessorConfig::max_request_timeout_ms`] of every pipeline it runs.
    pub max_request_timeout_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            instance: "worker".into(),
            refresh: Duration::from_secs(2),
            session_timeout_ms: 10_000,
            replication_factor: None,
            state_dir: None,
            max_request_timeout_ms: crate::runtime::DEFAULT_MAX_REQUEST_TIMEOUT_MS,
        }
    }
}

struct Running {
    definition: Value,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ProcessorError>>,
}

/// Runs until `shutdown` completes; then stops every pipeline (each leaves its group).
pub async fn run(client: Client, cfg: WorkerConfig, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    // Definitions that failed to start or stopped with an error: retried after a pause.
    let mut failed: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        match client.list_pipelines().await {
            Ok(list) => {
                let wanted: BTreeMap<String, (Value, i64)> =
                    list.into_iter().map(|p| (p.name, (p.definition, p.created_ms))).collect();
                // Stop what was deleted (or replaced by another definition of the name).
                let gone: Vec<String> = running
                    .iter()
                    .filter(|(n, r)| wanted.get(*n).map(|w| &w.0) != Some(&r.definition))
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in gone {
                    if let Some(r) = running.remove(&name) {
                        let _ = r.stop.send(());
                        let _ = tokio::time::timeout(Duration::from_secs(10), r.task).await;
                        tracing::info!(pipeline = name, "pipeline stopped: its definition is gone");
                    }
                }
                // Reap the ones that ended by themselves.
                let ended: Vec<String> =
                    running.iter().filter(|(_, r)| r.task.is_finished()).map(|(n, _)| n.clone()).collect();
                for name in ended {
                    if let Some(r) = running.remove(&name) {
                        match r.task.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                tracing::error!(pipeline = name, error = %e, "pipeline failed; restarting it shortly")
                            }
                            Err(e) => tracing::error!(pipeline = name, error = %e, "pipeline task panicked"),
                        }
                        failed.insert(name, Instant::now());
                    }
                }
                failed.retain(|_, at| at.elapsed() < Duration::from_secs(5));
                for (name, (definition, created_ms)) in wanted {
                    if running.contains_key(&name) || failed.contains_key(&name) {
                        continue;
                    }
                    match start(&client, &cfg, &definition, created_ms) {
                        Ok((stop, task)) => {
                            tracing::info!(pipeline = name, "pipeline started");
                            running.insert(name, Running { definition, stop, task });
                        }
                        Err(e) => {
                            tracing::error!(pipeline = name, error = e, "pipeline cannot start");
                            failed.insert(name, Instant::now());
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the pipelines; retrying"),
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(cfg.refresh) => {}
        }
    }
    for (_, r) in running {
        let _ = r.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), r.task).await;
    }
}

type Started = (oneshot::Sender<()>, JoinHandle<Result<(), ProcessorError>>);

fn start(client: &Client, cfg: &WorkerConfig, definition: &Value, created_ms: i64) -> Result<Started, String> {
    let def: PipelineDef = serde_json::from_value(definition.clone()).map_err(|e| e.to_string())?;
    let compiled = def.compile().map_err(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
    let mut pc = ProcessorConfig::new(def.name.clone());
    pc.instance.clone_from(&cfg.instance);
    pc.session_timeout_ms = cfg.session_timeout_ms;
    pc.replication_factor = cfg.replication_factor;
    pc.expression_errors = Some(compiled.expression_errors.clone());
    pc.state_dir.clone_from(&cfg.state_dir);
    pc.incarnation = created_ms.to_string();
    pc.max_request_timeout_ms = cfg.max_request_timeout_ms;
    let processor = Processor::new(client.clone(), compiled.topology, pc).map_err(|e| e.to_string())?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move { processor.run(async { stopped.await.unwrap_or(()) }).await });
    Ok((stop, task))
}
