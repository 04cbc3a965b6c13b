//! A storage node: the replicas the metadata assigns to it, as leader or follower, the
//! [`NodeApi`] that gateways call, and the background work that keeps it all going.
//!
//! The node follows the coordinator's metadata snapshot: on every change its
//! [`Replicas`] are reconciled with it and a fetcher is started per leader node it
//! follows ([`crate::follower`]). All RocksDB work runs on blocking threads.

use crate::cleanup;
use crate::config::{NodeConfig, ReplicationSettings};
use crate::counters::NodeMetrics;
use crate::follower::FollowerSide;
use crate::groups::{GroupCoordinator, GroupHost, LedLog};
use crate::leader::LeaderSide;
use crate::replica::Replica;
use crate::replicas::Replicas;
use async_trait::async_trait;
use fjord_coordinator::{ClusterMetadata, Coordinator, NodeInfo};
use fjord_log::{Append, Appended, Dedupe, Engine, RocksEngine, WalSync};
use fjord_protocol::group::{GroupRequest, GroupResponse};
use fjord_protocol::{
    now_ms, Acks, ErrorCode, FetchRequest, FetchResponse, FjordError, ListOffsetResponse, NodeApi, NodeId, OffsetSpec,
    PartitionStatus, ProduceReplay, ProduceRequest, ProduceResponse, Result, TopicPartition,
};
use fjord_rpc::{EpochEndOffset, ReplicaFetchAnswer, ReplicaFetchRequest};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

fn internal(what: &str, e: impl std::fmt::Display) -> FjordError {
    FjordError::new(ErrorCode::Internal, format!("{what}: {e}"))
}

pub struct StorageNode {
    id: NodeId,
    engine: Arc<dyn Engine>,
    replicas: Arc<Replicas>,
    leader: Arc<LeaderSide>,
    follower: Arc<FollowerSide>,
    /// Serializes reconciliations (the metadata loop and explicit calls).
    reconciling: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// For this node's registration ([`Self::sync_offline_replicas`]).
    coordinator: Arc<dyn Coordinator>,
    /// The consumer groups of the offsets-topic partitions this node leads.
    groups: Arc<GroupCoordinator>,
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
        let node = Self::with_engine(
            config.node_id,
            Arc::new(engine),
            coordinator.clone(),
            ReplicationSettings::from_config(config),
            Duration::from_millis(config.offsets_retention_ms),
        )
        .await?;
        coordinator
            .register_node(NodeInfo {
                id: config.node_id,
                endpoint,
                rack: config.rack.clone(),
                shutting_down: false,
                offline_replicas: Default::default(),
            })
            .await?;
        // Registration changed the metadata (leaders); apply it before serving.
        node.sync_with_metadata().await?;
        node.spawn_background(config);
        Ok(node)
    }

    /// A node over any engine, following `coordinator`'s metadata; no background tasks
    /// besides replica fetchers.
    pub async fn with_engine(
        id: NodeId,
        engine: Arc<dyn Engine>,
        coordinator: Arc<dyn Coordinator>,
        replication: ReplicationSettings,
        offsets_retention: Duration,
    ) -> Result<Arc<Self>> {
        let replicas = Arc::new(Replicas::new(id, engine.clone(), coordinator.metadata()));
        let node = Arc::new(Self {
            id,
            engine,
            leader: Arc::new(LeaderSide::new(replicas.clone(), coordinator.clone(), replication.lag_time_max)),
            coordinator,
            follower: Arc::new(FollowerSide::new(replicas.clone(), replication)?),
            replicas,
            reconciling: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            groups: Arc::new(GroupCoordinator::new(offsets_retention)),
        });
        node.sync_with_metadata().await?;
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The collector of this node's metrics, for a Prometheus registry.
    pub fn metrics_collector(&self) -> crate::metrics::NodeCollector {
        crate::metrics::NodeCollector::new(
            self.replicas.clone(),
            Arc::downgrade(&self.groups),
            Arc::downgrade(&self.coordinator),
        )
    }

    /// Where this node's controller loop (same process) counts what it does, for its
    /// metrics: give it to [`fjord_coordinator::controller::run`].
    pub fn controller_stats(&self) -> Arc<fjord_coordinator::controller::ControllerStats> {
        self.replicas.metrics().controller.clone()
    }

    fn spawn_background(self: &Arc<Self>, config: &NodeConfig) {
        let mut tasks = self.tasks.lock();
        let weak = Arc::downgrade(self);
        let mut rx = self.replicas.metadata_feed();
        tasks.push(tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(node) = weak.upgrade() else { return };
                if let Err(e) = node.sync_with_metadata().await {
                    warn!(error = %e, "applying metadata failed; retrying on the next change");
                }
            }
        }));
        let (weak, replicas, mut rx) = (Arc::downgrade(self), self.replicas.clone(), self.replicas.metadata_feed());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(node) = weak.upgrade() else { return };
                let synced = node.sync_offline_replicas().await;
                drop(node);
                if !synced {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                tokio::select! {
                    () = replicas.damage_changed() => {}
                    changed = rx.changed() => if changed.is_err() { return },
                }
            }
        }));
        let cleanup_every = Duration::from_millis(config.retention_check_interval_ms);
        tasks.push(self.every(cleanup_every, true, |node| async move { cleanup::clean_all(&node.replicas).await }));
        let checkpoint_every = Duration::from_millis(config.hw_checkpoint_interval_ms);
        tasks.push(self.every(checkpoint_every, true, |node| async move {
            cleanup::checkpoint_high_watermarks(&node.replicas).await
        }));
        let shrink_every = (self.leader.lag_time_max() / 4).max(Duration::from_millis(100));
        tasks.push(self.every(shrink_every, false, |node| async move { node.leader.shrink_isrs() }));
        // Session timeouts are at least a second: a quarter of that bounds how late an
        // eviction comes.
        tasks.push(self.every(
            Duration::from_millis(250),
            false,
            |node| async move { node.groups.sweep(&*node).await },
        ));
        if config.wal_sync == WalSync::Interval {
            let every = Duration::from_millis(config.wal_sync_interval_ms);
            tasks.push(self.every(every, false, |node| async move { node.sync_wal("WAL sync").await }));
        }
    }

    /// A task that runs `f` every `period` while the node lives (after one period
    /// first when `delay_first`).
    fn every<F, Fut>(self: &Arc<Self>, period: Duration, delay_first: bool, f: F) -> JoinHandle<()>
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            if delay_first {
                tick.tick().await;
            }
            loop {
                tick.tick().await;
                let Some(node) = weak.upgrade() else { return };
                f(node).await;
            }
        })
    }

    /// Makes this node's registration list its damaged replicas as `offline_replicas`
    /// (the controller then moves their leadership and ISR membership); whether it
    /// matches now (`false`: the write failed, retry).
    async fn sync_offline_replicas(&self) -> bool {
        let wanted = self.replicas.damaged();
        let Some(me) = self.replicas.metadata().nodes.get(&self.id).cloned() else { return true };
        if me.offline_replicas == wanted {
            return true;
        }
        let listed: Vec<String> = wanted.iter().map(ToString::to_string).collect();
        match self.coordinator.update_node(NodeInfo { offline_replicas: wanted, ..me }).await {
            Ok(()) => {
                info!(offline_replicas = ?listed, "registration updated");
                true
            }
            Err(e) => {
                warn!(error = %e, "could not update this node's offline replicas; retrying");
                false
            }
        }
    }

    async fn sync_wal(&self, what: &str) {
        let engine = self.engine.clone();
        let metrics = self.replicas.metrics().clone();
        match tokio::task::spawn_blocking(move || NodeMetrics::time(&metrics.wal_sync_duration, || engine.sync())).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "{what} failed"),
            Err(e) => warn!(error = %e, "{what} task failed"),
        }
    }

    /// Stops the background tasks, checkpoints every high watermark and makes every
    /// write durable.
    pub async fn shutdown(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        self.follower.stop();
        cleanup::checkpoint_high_watermarks(&self.replicas).await;
        self.sync_wal("final WAL sync").await;
    }

    /// Brings the open replicas in line with the current metadata snapshot.
    pub async fn sync_with_metadata(self: &Arc<Self>) -> Result<()> {
        let _one_at_a_time = self.reconciling.lock().await;
        let meta = self.replicas.metadata();
        let replicas = self.replicas.clone();
        let dropped = tokio::task::spawn_blocking(move || replicas.reconcile(&meta))
            .await
            .map_err(|e| internal("metadata task", e))??;
        self.follower.ensure_fetchers();
        if dropped > 0 {
            // Their disk space back, off the metadata path (a compaction can take a while).
            let engine = self.engine.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = engine.reclaim_dropped() {
                    warn!(error = %e, "giving back the space of dropped stores failed; RocksDB's own compactions will");
                }
            });
        }
        Ok(())
    }

    /// Runs retention and compaction over every replica now, per each topic's
    /// `cleanup.policy` (tests and admin use).
    pub async fn apply_retention_now(&self) {
        cleanup::clean_all(&self.replicas).await;
    }

    /// Runs a compaction pass over every replica of a compacted topic now, even one
    /// whose log has not changed since its last pass (tests and admin use).
    pub async fn compact_now(&self) {
        cleanup::compact_all(&self.replicas).await;
    }

    /// Serves a follower's fetch (see [`LeaderSide::replica_fetch`]).
    pub async fn replica_fetch(&self, req: ReplicaFetchRequest) -> ReplicaFetchAnswer {
        self.leader.replica_fetch(req).await
    }

    /// KIP-279's OffsetsForLeaderEpoch, answered as the leader of `tp`.
    pub fn epoch_end_offset(&self, tp: &TopicPartition, epoch: u32) -> Result<EpochEndOffset> {
        self.leader.epoch_end_offset(tp, epoch)
    }

    /// Appends a produce request's batch as the leader in its current epoch, checked
    /// against the partition's producer state ([`fjord_log::dedupe`]: a retry of a batch
    /// already written comes back as a replay, nothing written) and, for a conditional
    /// append, against where the log ends. Refused with `not_enough_replicas` and nothing
    /// written when `acks=all` finds the ISR below `min.insync.replicas`.
    async fn append_as_leader(&self, replica: &Replica, req: &ProduceRequest) -> Result<(Appended, u32, u32)> {
        let (epoch, isr, min_isr, window) = {
            let s = replica.state.lock();
            let c = &s.meta.config;
            (s.meta.leader_epoch, s.meta.isr.len() as u32, c.min_insync_replicas, c.idempotency_window_ms)
        };
        if req.acks == Acks::All && isr < min_isr {
            return Err(FjordError::new(
                ErrorCode::NotEnoughReplicas,
                format!("{}: {isr} in-sync replica(s), min.insync.replicas is {min_isr}; nothing was written", req.tp),
            ));
        }
        let append = Append { batch: req.batch.clone(), expected_offset: req.expected_offset };
        let dedupe = Dedupe { now_ms: now_ms(), idempotency_window_ms: window };
        let appended = replica.appends.append(append, epoch, Some(dedupe)).await?;
        if matches!(appended, Appended::Written(_)) {
            self.leader.appended(replica);
        }
        Ok((appended, epoch, min_isr))
    }

    /// `acks=all`: waits until the HW passes the batch (a replay's original batch) while
    /// this replica still leads in the epoch it answered in, or the deadline.
    async fn await_replication(
        &self,
        replica: &Replica,
        req: &ProduceRequest,
        appended: &Appended,
        epoch: u32,
    ) -> Result<()> {
        let mut hw_rx = replica.log.subscribe_high_watermark();
        let target = appended.next_offset();
        let deadline = Instant::now() + req.timeout;
        let mut meta_rx = self.replicas.metadata_feed();
        meta_rx.borrow_and_update();
        loop {
            // Only a leader still in the epoch it appended in may count the HW as
            // covering its batch: once demoted, this replica truncates by epoch and its
            // HW may pass the same offsets holding the new leader's records.
            if replica.led_by(self.id) != Some(epoch) {
                return Err(FjordError::new(
                    ErrorCode::LeaderChangedAfterAppend,
                    format!(
                        "{}: leadership moved before the batch at {} was replicated; it may or may not be kept",
                        req.tp,
                        appended.base_offset()
                    ),
                ));
            }
            if *hw_rx.borrow_and_update() >= target {
                return Ok(());
            }
            tokio::select! {
                changed = tokio::time::timeout_at(deadline, hw_rx.changed()) => {
                    if !matches!(changed, Ok(Ok(()))) {
                        return Err(FjordError::new(
                            ErrorCode::RequestTimeout,
                            format!("{}: appended at {} but not replicated within the timeout", req.tp, appended.base_offset()),
                        ));
                    }
                }
                changed = meta_rx.changed() => {
                    if changed.is_err() {
                        // No more metadata (shutting down): nothing will move the HW.
                        return Err(FjordError::new(ErrorCode::ShuttingDown, format!("{}: shutting down", req.tp)));
                    }
                }
            }
        }
    }

    /// A produce request to a partition this node leads (see [`NodeApi::produce`]).
    async fn produce_as_leader(&self, req: ProduceRequest) -> Result<ProduceResponse> {
        let replica = self.replicas.leader(&req.tp)?;
        let (appended, epoch, min_isr) = self.append_as_leader(&replica, &req).await?;
        if req.acks == Acks::All {
            self.await_replication(&replica, &req, &appended, epoch).await?;
            // Committed, but by fewer replicas than promised (Kafka's
            // NOT_ENOUGH_REPLICAS_AFTER_APPEND): the ISR shrank while we waited.
            let isr_now = replica.state.lock().meta.isr.len() as u32;
            if isr_now < min_isr {
                return Err(FjordError::new(
                    ErrorCode::NotEnoughReplicasAfterAppend,
                    format!(
                        "{}: written at {} but the ISR shrank to {isr_now} (min.insync.replicas {min_isr})",
                        req.tp,
                        appended.base_offset()
                    ),
                ));
            }
        }
        let replay = match &appended {
            Appended::Written(_) => None,
            Appended::Replayed(r) => {
                Some(ProduceReplay { default_timestamp: r.default_timestamp, routed_with: r.routed_with })
            }
        };
        Ok(ProduceResponse { base_offset: appended.base_offset(), record_count: appended.record_count(), replay })
    }
}

#[async_trait]
impl NodeApi for StorageNode {
    async fn produce(&self, req: ProduceRequest) -> Result<ProduceResponse> {
        let started = std::time::Instant::now();
        let acks = req.acks;
        let answer = self.produce_as_leader(req).await;
        let series = match acks {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => 2,
        };
        NodeMetrics::observe(&self.replicas.metrics().produce_acks[series], started.elapsed());
        answer
    }

    async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let replica = self.replicas.leader(&req.tp)?;
        let log = replica.log.clone();
        let mut hw_rx = log.subscribe_high_watermark();
        let deadline = Instant::now() + req.max_wait;
        let mut timed_out = false;
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
            let answer = |batches| FetchResponse {
                batches,
                high_watermark: o.high_watermark,
                log_start_offset: o.log_start,
                log_end_offset: o.log_end,
            };
            // Every answer's HW is the one it was read under (or at most the requested
            // offset): empty batches then mean no record in [offset, HW), which a
            // consumer may skip (compaction can leave a gap reaching the HW).
            if req.offset < o.high_watermark {
                let log = log.clone();
                let (offset, max_bytes, hw) = (req.offset, req.max_bytes, o.high_watermark);
                let took = self.replicas.metrics().fetch_consumer.clone();
                let read =
                    tokio::task::spawn_blocking(move || NodeMetrics::time(&took, || log.read(offset, max_bytes, hw)))
                        .await
                        .map_err(|e| internal("read task", e))?;
                let batches = self.replicas.checked(&req.tp, read).map_err(FjordError::from)?;
                return Ok(answer(batches));
            }
            if timed_out {
                return Ok(answer(Vec::new()));
            }
            // On timeout, one more look: the HW may have moved just now.
            timed_out = !matches!(tokio::time::timeout_at(deadline, hw_rx.changed()).await, Ok(Ok(())));
        }
    }

    async fn list_offset(&self, tp: TopicPartition, spec: OffsetSpec) -> Result<ListOffsetResponse> {
        let replica = self.replicas.leader(&tp)?;
        let o = replica.log.offsets();
        match spec {
            OffsetSpec::Earliest => Ok(ListOffsetResponse { offset: o.log_start, timestamp: None }),
            OffsetSpec::Latest => Ok(ListOffsetResponse { offset: o.high_watermark, timestamp: None }),
            OffsetSpec::Timestamp(ts) => {
                let log = replica.log.clone();
                let found = tokio::task::spawn_blocking(move || log.offset_for_timestamp(ts))
                    .await
                    .map_err(|e| internal("offset look-up task", e))?;
                let found = self.replicas.checked(&tp, found).map_err(FjordError::from)?;
                Ok(match found {
                    Some((offset, ts)) => ListOffsetResponse { offset, timestamp: Some(ts) },
                    None => ListOffsetResponse { offset: replica.log.offsets().high_watermark, timestamp: None },
                })
            }
        }
    }

    async fn group(&self, req: GroupRequest) -> Result<GroupResponse> {
        self.groups.handle(self, req).await
    }

    async fn partition_status(&self, tp: TopicPartition) -> Result<PartitionStatus> {
        let replica = self.replicas.leader(&tp)?;
        let epoch = replica.state.lock().meta.leader_epoch;
        let o = replica.log.offsets();
        Ok(PartitionStatus {
            log_start_offset: o.log_start,
            high_watermark: o.high_watermark,
            log_end_offset: o.log_end,
            leader_epoch: epoch,
        })
    }
}

#[async_trait]
impl GroupHost for StorageNode {
    fn node_id(&self) -> NodeId {
        self.id
    }

    fn metadata(&self) -> Arc<ClusterMetadata> {
        self.replicas.metadata()
    }

    fn led_log(&self, tp: &TopicPartition) -> Result<LedLog> {
        let r = self.replicas.leader(tp)?;
        let leader_epoch = r.state.lock().meta.leader_epoch;
        Ok(LedLog { topic_id: r.topic_id.clone(), leader_epoch, log: r.log.clone() })
    }

    async fn append(&self, req: ProduceRequest) -> Result<ProduceResponse> {
        self.produce(req).await
    }
}
