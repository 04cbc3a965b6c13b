//! A storage node: the replicas the metadata assigns to it, served as their leader.
//!
//! The node follows the coordinator's metadata snapshot: on every change it opens the
//! replicas newly assigned to it, updates leadership, epochs, ISR and config of the
//! others, and drops the stores of replicas no longer assigned (deleted topics). All
//! RocksDB work runs on blocking threads.

use crate::config::NodeConfig;
use crate::engine::Engine;
use crate::log::{LogOffsets, PartitionLog};
use crate::rocks::{RocksEngine, WalSync};
use async_trait::async_trait;
use fjord_coordinator::{ClusterMetadata, Coordinator, NodeInfo, TopicConfig};
use fjord_protocol::{
    Acks, ErrorCode, FetchRequest, FetchResponse, FjordError, ListOffsetResponse, NodeApi, NodeId, OffsetSpec,
    PartitionStatus, ProduceRequest, ProduceResponse, Result, TopicPartition,
};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// What the metadata says about one replica.
#[derive(Debug, Clone)]
struct ReplicaMeta {
    leader: Option<NodeId>,
    leader_epoch: u32,
    isr: Vec<NodeId>,
    config: TopicConfig,
}

struct Replica {
    tp: TopicPartition,
    log: Arc<PartitionLog>,
    meta: RwLock<ReplicaMeta>,
}

/// The engine store name of a replica: the topic id keeps a re-created topic of the
/// same name from seeing the old one's data.
fn store_name(topic_id: &str, partition: u32) -> String {
    format!("p.{topic_id}.{partition}")
}

fn internal(what: &str, e: impl std::fmt::Display) -> FjordError {
    FjordError::new(ErrorCode::Internal, format!("{what}: {e}"))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub struct StorageNode {
    id: NodeId,
    engine: Arc<dyn Engine>,
    replicas: RwLock<HashMap<TopicPartition, Arc<Replica>>>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    /// Serializes reconciliations (the metadata loop and explicit calls).
    reconciling: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl StorageNode {
    /// Opens RocksDB under `config.data_dir`, follows `coordinator`'s metadata, registers
    /// this node, and starts the background tasks (metadata, retention, WAL sync).
    pub async fn start(config: &NodeConfig, coordinator: Arc<dyn Coordinator>, endpoint: String) -> Result<Arc<Self>> {
        let path = config.data_dir.join("storage");
        let opts = config.rocks_options();
        let engine = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&path).map_err(|e| internal("creating data dir", e))?;
            RocksEngine::open(&path, &opts).map_err(|e| FjordError::new(ErrorCode::StorageError, e.to_string()))
        })
        .await
        .map_err(|e| internal("opening storage", e))??;
        let node = Self::with_engine(config.node_id, Arc::new(engine), coordinator.metadata()).await?;
        coordinator
            .register_node(NodeInfo { id: config.node_id, endpoint, rack: config.rack.clone(), shutting_down: false })
            .await?;
        // Registration changed the metadata (leaders); apply it before serving.
        node.sync_with_metadata().await?;
        node.spawn_background(config);
        Ok(node)
    }

    /// A node over any engine, following `metadata`; no background tasks.
    pub async fn with_engine(
        id: NodeId,
        engine: Arc<dyn Engine>,
        metadata: watch::Receiver<Arc<ClusterMetadata>>,
    ) -> Result<Arc<Self>> {
        let node = Arc::new(Self {
            id,
            engine,
            replicas: RwLock::new(HashMap::new()),
            metadata,
            reconciling: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
        });
        node.sync_with_metadata().await?;
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    fn spawn_background(self: &Arc<Self>, config: &NodeConfig) {
        let mut tasks = self.tasks.lock();
        let weak = Arc::downgrade(self);
        let mut rx = self.metadata.clone();
        tasks.push(tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(node) = weak.upgrade() else { return };
                if let Err(e) = node.sync_with_metadata().await {
                    warn!(error = %e, "applying metadata failed; retrying on the next change");
                }
            }
        }));

        let weak = Arc::downgrade(self);
        let every = Duration::from_millis(config.retention_check_interval_ms);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(node) = weak.upgrade() else { return };
                node.run_retention().await;
            }
        }));

        if config.wal_sync == WalSync::Interval {
            let engine = self.engine.clone();
            let every = Duration::from_millis(config.wal_sync_interval_ms);
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let engine = engine.clone();
                    match tokio::task::spawn_blocking(move || engine.sync()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => warn!(error = %e, "WAL sync failed"),
                        Err(e) => warn!(error = %e, "WAL sync task failed"),
                    }
                }
            }));
        }
    }

    /// Stops the background tasks and makes every write durable.
    pub async fn shutdown(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || engine.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "final WAL sync failed"),
            Err(e) => warn!(error = %e, "final WAL sync task failed"),
        }
    }

    /// Brings the open replicas in line with the current metadata snapshot.
    pub async fn sync_with_metadata(self: &Arc<Self>) -> Result<()> {
        let _one_at_a_time = self.reconciling.lock().await;
        let meta = self.metadata.borrow().clone();
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.reconcile(&meta)).await.map_err(|e| internal("metadata task", e))?
    }

    fn reconcile(&self, meta: &ClusterMetadata) -> Result<()> {
        let mut wanted: HashMap<String, (TopicPartition, ReplicaMeta)> = HashMap::new();
        for t in meta.topics.values() {
            for p in t.partitions.iter().filter(|p| p.replicas.contains(&self.id)) {
                let rm = ReplicaMeta {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    isr: p.isr.clone(),
                    config: t.config.clone(),
                };
                wanted.insert(store_name(&t.topic_id, p.partition), (TopicPartition::new(&t.name, p.partition), rm));
            }
        }

        let current: HashMap<TopicPartition, Arc<Replica>> = self.replicas.read().clone();
        let mut next = HashMap::with_capacity(wanted.len());
        for (name, (tp, rm)) in &wanted {
            let replica = match current.get(tp).filter(|r| r.log.name() == name) {
                Some(r) => {
                    *r.meta.write() = rm.clone();
                    r.clone()
                }
                None => {
                    let log = PartitionLog::open(self.engine.clone(), name).map_err(FjordError::from)?;
                    debug!(partition = %tp, store = %name, "opened replica");
                    Arc::new(Replica { tp: tp.clone(), log: Arc::new(log), meta: RwLock::new(rm.clone()) })
                }
            };
            self.maybe_advance_high_watermark(&replica);
            next.insert(tp.clone(), replica);
        }
        *self.replicas.write() = next;

        let stores = self.engine.list_partitions().map_err(|e| internal("listing stores", e))?;
        for name in stores.into_iter().filter(|n| n.starts_with("p.") && !wanted.contains_key(n)) {
            info!(store = %name, "dropping the store of a replica no longer assigned here");
            self.engine.drop_partition(&name).map_err(|e| internal("dropping store", e))?;
        }
        Ok(())
    }

    /// HW = min LEO over the ISR. Until followers exist (the cluster issue), a leader
    /// whose ISR is itself alone commits everything it has appended.
    fn maybe_advance_high_watermark(&self, replica: &Replica) {
        let meta = replica.meta.read();
        if meta.leader == Some(self.id) && meta.isr.iter().all(|id| *id == self.id) {
            let leo = replica.log.offsets().log_end;
            replica.log.advance_high_watermark(leo);
        }
    }

    fn leader_replica(&self, tp: &TopicPartition) -> Result<Arc<Replica>> {
        let found = self.replicas.read().get(tp).cloned();
        let Some(replica) = found else {
            let meta = self.metadata.borrow();
            let Some(topic) = meta.topic(&tp.topic) else {
                return Err(FjordError::new(ErrorCode::UnknownTopic, format!("topic `{}` does not exist", tp.topic)));
            };
            let Some(p) = topic.partitions.get(tp.partition as usize) else {
                return Err(FjordError::new(
                    ErrorCode::UnknownPartition,
                    format!(
                        "topic `{}` has {} partitions; there is no partition {}",
                        tp.topic,
                        topic.partitions.len(),
                        tp.partition
                    ),
                ));
            };
            return Err(not_leader(tp, p.leader, self.id));
        };
        let meta = replica.meta.read();
        if meta.leader != Some(self.id) {
            return Err(not_leader(tp, meta.leader, self.id));
        }
        drop(meta);
        Ok(replica)
    }

    async fn run_retention(&self) {
        let replicas: Vec<Arc<Replica>> = self.replicas.read().values().cloned().collect();
        for r in replicas {
            let config = r.meta.read().config.clone();
            let log = r.log.clone();
            let result = tokio::task::spawn_blocking(move || {
                log.apply_retention(now_ms(), config.retention_ms, config.retention_bytes)
            })
            .await;
            match result {
                Ok(Ok(removed)) if removed.batches > 0 => {
                    info!(partition = %r.tp, batches = removed.batches, bytes = removed.bytes, "retention removed batches")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(partition = %r.tp, error = %e, "retention failed"),
                Err(e) => warn!(partition = %r.tp, error = %e, "retention task failed"),
            }
        }
    }

    /// Runs retention over every replica now (tests and admin use).
    pub async fn apply_retention_now(&self) {
        self.run_retention().await;
    }
}

fn not_leader(tp: &TopicPartition, leader: Option<NodeId>, me: NodeId) -> FjordError {
    match leader {
        Some(l) if l != me => {
            FjordError::new(ErrorCode::NotLeader, format!("node {me} is not the leader of {tp}; node {l} is"))
        }
        _ => FjordError::new(ErrorCode::LeaderNotAvailable, format!("{tp} has no leader available right now")),
    }
}

fn offsets_to_status(o: LogOffsets, leader_epoch: u32) -> PartitionStatus {
    PartitionStatus {
        log_start_offset: o.log_start,
        high_watermark: o.high_watermark,
        log_end_offset: o.log_end,
        leader_epoch,
    }
}

#[async_trait]
impl NodeApi for StorageNode {
    async fn produce(&self, req: ProduceRequest) -> Result<ProduceResponse> {
        let replica = self.leader_replica(&req.tp)?;
        let (epoch, isr, min_isr) = {
            let m = replica.meta.read();
            (m.leader_epoch, m.isr.len() as u32, m.config.min_insync_replicas)
        };
        if req.acks == Acks::All && isr < min_isr {
            return Err(FjordError::new(
                ErrorCode::NotEnoughReplicas,
                format!("{}: {isr} in-sync replica(s), min.insync.replicas is {min_isr}; nothing was written", req.tp),
            ));
        }
        let log = replica.log.clone();
        let mut hw_rx = log.subscribe_high_watermark();
        let batch = req.batch;
        let appended = tokio::task::spawn_blocking(move || log.append(batch, epoch))
            .await
            .map_err(|e| internal("append task", e))?
            .map_err(FjordError::from)?;
        self.maybe_advance_high_watermark(&replica);
        if req.acks == Acks::All {
            let target = appended.next_offset();
            let deadline = Instant::now() + req.timeout;
            while *hw_rx.borrow_and_update() < target {
                if !matches!(tokio::time::timeout_at(deadline, hw_rx.changed()).await, Ok(Ok(()))) {
                    return Err(FjordError::new(
                        ErrorCode::RequestTimeout,
                        format!(
                            "{}: appended at {} but not replicated within the timeout",
                            req.tp,
                            appended.base_offset()
                        ),
                    ));
                }
            }
        }
        Ok(ProduceResponse { base_offset: appended.base_offset(), record_count: appended.record_count() })
    }

    async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let replica = self.leader_replica(&req.tp)?;
        let log = replica.log.clone();
        let mut hw_rx = log.subscribe_high_watermark();
        let deadline = Instant::now() + req.max_wait;
        loop {
            // Mark the current HW seen before reading the offsets: a change after this
            // point wakes `changed()` below, so no append is missed.
            hw_rx.borrow_and_update();
            let o = log.offsets();
            if req.offset < o.log_start || req.offset > o.log_end {
                return Err(FjordError::new(
                    ErrorCode::OffsetOutOfRange,
                    format!(
                        "offset {} is out of range for {}: log start {}, high watermark {}",
                        req.offset, req.tp, o.log_start, o.high_watermark
                    ),
                ));
            }
            if req.offset < o.high_watermark {
                let log = log.clone();
                let (offset, max_bytes, hw) = (req.offset, req.max_bytes, o.high_watermark);
                let batches = tokio::task::spawn_blocking(move || log.read(offset, max_bytes, hw))
                    .await
                    .map_err(|e| internal("read task", e))?
                    .map_err(FjordError::from)?;
                return Ok(FetchResponse {
                    batches,
                    high_watermark: o.high_watermark,
                    log_start_offset: o.log_start,
                    log_end_offset: o.log_end,
                });
            }
            if !matches!(tokio::time::timeout_at(deadline, hw_rx.changed()).await, Ok(Ok(()))) {
                let o = log.offsets();
                return Ok(FetchResponse {
                    batches: Vec::new(),
                    high_watermark: o.high_watermark,
                    log_start_offset: o.log_start,
                    log_end_offset: o.log_end,
                });
            }
        }
    }

    async fn list_offset(&self, tp: TopicPartition, spec: OffsetSpec) -> Result<ListOffsetResponse> {
        let replica = self.leader_replica(&tp)?;
        let o = replica.log.offsets();
        match spec {
            OffsetSpec::Earliest => Ok(ListOffsetResponse { offset: o.log_start, timestamp: None }),
            OffsetSpec::Latest => Ok(ListOffsetResponse { offset: o.high_watermark, timestamp: None }),
            OffsetSpec::Timestamp(ts) => {
                let log = replica.log.clone();
                let found = tokio::task::spawn_blocking(move || log.offset_for_timestamp(ts))
                    .await
                    .map_err(|e| internal("offset look-up task", e))?
                    .map_err(FjordError::from)?;
                Ok(match found {
                    Some((offset, ts)) => ListOffsetResponse { offset, timestamp: Some(ts) },
                    None => ListOffsetResponse { offset: replica.log.offsets().high_watermark, timestamp: None },
                })
            }
        }
    }

    async fn partition_status(&self, tp: TopicPartition) -> Result<PartitionStatus> {
        let replica = self.leader_replica(&tp)?;
        let epoch = replica.meta.read().leader_epoch;
        Ok(offsets_to_status(replica.log.offsets(), epoch))
    }
}

/// Replicas currently open (for tests).
impl StorageNode {
    pub fn open_replicas(&self) -> HashSet<TopicPartition> {
        self.replicas.read().keys().cloned().collect()
    }
}
