//! A storage node: the replicas the metadata assigns to it, as leader or follower.
//!
//! The node follows the coordinator's metadata snapshot: on every change it opens the
//! replicas newly assigned to it, updates leadership, epochs, ISR and config of the
//! others, starts a fetcher per leader node it follows ([`crate::replication`]), and
//! drops the stores of replicas no longer assigned (deleted topics). All RocksDB work
//! runs on blocking threads.

use crate::append::AppendQueue;
use crate::config::NodeConfig;
use crate::engine::Engine;
use crate::groups::coordinator::GroupCoordinator;
use crate::log::{LogOffsets, PartitionLog, Role};
use crate::rocks::{RocksEngine, WalSync};
use async_trait::async_trait;
use fjord_coordinator::{ClusterMetadata, Coordinator, NodeInfo, TopicConfig};
use fjord_protocol::group::{GroupRequest, GroupResponse};
use fjord_protocol::{
    Acks, ErrorCode, FetchRequest, FetchResponse, FjordError, ListOffsetResponse, NodeApi, NodeId, OffsetSpec,
    PartitionStatus, ProduceRequest, ProduceResponse, Result, TopicPartition,
};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// What the metadata says about one replica.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaMeta {
    pub(crate) leader: Option<NodeId>,
    pub(crate) leader_epoch: u32,
    pub(crate) isr: Vec<NodeId>,
    pub(crate) replicas: Vec<NodeId>,
    /// Version of the partition state this was read from (for conditional ISR writes).
    pub(crate) version: i32,
    pub(crate) config: TopicConfig,
}

/// What a leader knows of one follower.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FollowerProgress {
    /// The follower has every record below this.
    pub(crate) fetch_offset: u64,
    /// Last time the follower had everything the leader had.
    pub(crate) last_caught_up: Instant,
    /// The leader's LEO and the time at the follower's previous fetch (Kafka's
    /// `lastFetchLeaderLogEndOffset`): reaching it counts as caught up as of then, so a
    /// follower keeping pace under steady writes stays in the ISR.
    pub(crate) last_fetch_leader_leo: u64,
    pub(crate) last_fetch_time: Instant,
}

pub(crate) struct Replica {
    pub(crate) tp: TopicPartition,
    /// The topic this replica belongs to: a re-created topic of the same name has another.
    pub(crate) topic_id: String,
    pub(crate) log: Arc<PartitionLog>,
    pub(crate) meta: RwLock<ReplicaMeta>,
    /// Leader side: progress of each follower, reset on every leadership change.
    pub(crate) followers: Mutex<HashMap<NodeId, FollowerProgress>>,
    /// When this node last became the leader (ISR shrink grace for silent followers).
    pub(crate) leader_since: Mutex<Instant>,
    /// An ISR change of this leader is being written.
    pub(crate) isr_write_pending: AtomicBool,
    /// The ISR being written, until the write is answered. The HW counts its members
    /// too ("maximal ISR", KIP-497): once the coordinator may hold an expanded ISR, a
    /// joining follower may be elected leader, so records it lacks must not be committed.
    /// Kept with the state version the write was based on until a snapshot newer than
    /// that shows the truth (an ambiguous failure may still have been applied).
    pub(crate) pending_isr: Mutex<Option<(i32, Vec<NodeId>)>>,
    /// What the last completed compaction pass saw, so an unchanged log is not scanned
    /// again on every tick.
    pub(crate) compacted: Mutex<Option<CompactionMark>>,
    /// Produce appends waiting for the writer (group commit).
    pub(crate) appends: Arc<AppendQueue>,
}

/// The state a compaction pass ran over: another pass can only do more once the HW,
/// the log start or the settings change, or `due_ms` (a tombstone expiring, a batch
/// leaving `min.compaction.lag.ms`) passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompactionMark {
    high_watermark: u64,
    log_start: u64,
    delete_retention_ms: i64,
    min_compaction_lag_ms: i64,
    due_ms: Option<i64>,
}

/// The engine store name of a replica: the topic id keeps a re-created topic of the
/// same name from seeing the old one's data.
fn store_name(topic_id: &str, partition: u32) -> String {
    format!("p.{topic_id}.{partition}")
}

pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> FjordError {
    FjordError::new(ErrorCode::Internal, format!("{what}: {e}"))
}

pub struct StorageNode {
    pub(crate) id: NodeId,
    engine: Arc<dyn Engine>,
    pub(crate) replicas: RwLock<HashMap<TopicPartition, Arc<Replica>>>,
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) metadata: watch::Receiver<Arc<ClusterMetadata>>,
    pub(crate) replication: ReplicationSettings,
    /// Bumped on every leader append: wakes long-polling replica fetches.
    pub(crate) appended: watch::Sender<u64>,
    /// One fetcher task per leader node this node follows partitions of.
    pub(crate) fetchers: Mutex<HashMap<NodeId, JoinHandle<()>>>,
    pub(crate) http: reqwest::Client,
    /// This node itself, for tasks it spawns.
    pub(crate) weak_self: std::sync::Weak<StorageNode>,
    /// Serializes reconciliations (the metadata loop and explicit calls).
    reconciling: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The consumer groups of the offsets-topic partitions this node leads.
    groups: GroupCoordinator,
}

/// Replication timing (Kafka's `replica.lag.time.max.ms`, `replica.fetch.wait.max.ms`).
#[derive(Debug, Clone, Copy)]
pub struct ReplicationSettings {
    pub lag_time_max: Duration,
    pub fetch_wait_max: Duration,
    pub fetch_max_bytes: usize,
}

impl ReplicationSettings {
    pub fn from_config(c: &NodeConfig) -> Self {
        Self {
            lag_time_max: Duration::from_millis(c.replica_lag_time_max_ms),
            fetch_wait_max: Duration::from_millis(c.replica_fetch_wait_max_ms),
            fetch_max_bytes: c.replica_fetch_max_bytes,
        }
    }
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
        )
        .await?;
        coordinator
            .register_node(NodeInfo { id: config.node_id, endpoint, rack: config.rack.clone(), shutting_down: false })
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
    ) -> Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| internal("HTTP client", e))?;
        let node = Arc::new_cyclic(|weak_self| Self {
            weak_self: weak_self.clone(),
            id,
            engine,
            replicas: RwLock::new(HashMap::new()),
            metadata: coordinator.metadata(),
            coordinator,
            replication,
            appended: watch::channel(0).0,
            fetchers: Mutex::new(HashMap::new()),
            http,
            reconciling: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            groups: GroupCoordinator::default(),
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

        let weak = Arc::downgrade(self);
        let every = (self.replication.lag_time_max / 4).max(Duration::from_millis(100));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(node) = weak.upgrade() else { return };
                node.shrink_isrs();
            }
        }));

        let weak = Arc::downgrade(self);
        tasks.push(tokio::spawn(async move {
            // Session timeouts are at least a second: a quarter of that bounds how late
            // an eviction comes.
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(node) = weak.upgrade() else { return };
                node.groups.sweep(&node).await;
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
        for (_, t) in self.fetchers.lock().drain() {
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
        tokio::task::spawn_blocking(move || node.reconcile(&meta))
            .await
            .map_err(|e| internal("metadata task", e))??;
        self.ensure_fetchers();
        Ok(())
    }

    fn reconcile(&self, meta: &ClusterMetadata) -> Result<()> {
        let mut wanted: HashMap<String, (TopicPartition, String, ReplicaMeta)> = HashMap::new();
        for t in meta.topics.values() {
            for p in t.partitions.iter().filter(|p| p.replicas.contains(&self.id)) {
                let rm = ReplicaMeta {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    isr: p.isr.clone(),
                    replicas: p.replicas.clone(),
                    version: p.version,
                    config: t.config.clone(),
                };
                wanted.insert(
                    store_name(&t.topic_id, p.partition),
                    (TopicPartition::new(&t.name, p.partition), t.topic_id.clone(), rm),
                );
            }
        }

        let current: HashMap<TopicPartition, Arc<Replica>> = self.replicas.read().clone();
        let mut next = HashMap::with_capacity(wanted.len());
        for (name, (tp, topic_id, rm)) in &wanted {
            let replica = match current.get(tp).filter(|r| r.log.name() == name) {
                Some(r) => {
                    self.apply_replica_meta(r, rm.clone());
                    r.clone()
                }
                None => {
                    let log = match PartitionLog::open(self.engine.clone(), name) {
                        Ok(log) => log,
                        Err(e) => {
                            // One bad store must not keep every other replica from
                            // following the metadata; this one is retried on the next change.
                            warn!(partition = %tp, store = %name, error = %e, "cannot open replica; skipping it");
                            continue;
                        }
                    };
                    set_role(&log, self.id, rm.leader, rm.leader_epoch);
                    debug!(partition = %tp, store = %name, "opened replica");
                    let log = Arc::new(log);
                    let r = Arc::new(Replica {
                        tp: tp.clone(),
                        topic_id: topic_id.clone(),
                        appends: AppendQueue::new(log.clone()),
                        log,
                        meta: RwLock::new(rm.clone()),
                        followers: Mutex::new(HashMap::new()),
                        leader_since: Mutex::new(Instant::now()),
                        isr_write_pending: AtomicBool::new(false),
                        pending_isr: Mutex::new(None),
                        compacted: Mutex::new(None),
                    });
                    if rm.leader == Some(self.id) {
                        info!(partition = %tp, epoch = rm.leader_epoch, "leading");
                    }
                    r
                }
            };
            self.maybe_advance_high_watermark(&replica);
            next.insert(tp.clone(), replica);
        }
        *self.replicas.write() = next;

        let stores = self.engine.list_partitions().map_err(|e| internal("listing stores", e))?;
        for name in stores.into_iter().filter(|n| n.starts_with("p.") && !wanted.contains_key(n)) {
            info!(store = %name, "dropping the store of a replica no longer assigned here");
            if let Err(e) = self.engine.drop_partition(&name) {
                warn!(store = %name, error = %e, "cannot drop store; retrying on the next change");
            }
        }
        Ok(())
    }

    /// Applies newer metadata to an open replica. A snapshot older than what this node
    /// already applied (its own ISR write, seen before the snapshot) is ignored.
    fn apply_replica_meta(&self, r: &Replica, rm: ReplicaMeta) {
        let mut meta = r.meta.write();
        if rm.version < meta.version && rm.leader_epoch == meta.leader_epoch {
            meta.config = rm.config;
            return;
        }
        {
            let mut pending = r.pending_isr.lock();
            if pending.as_ref().is_some_and(|(base, _)| rm.version > *base) {
                *pending = None;
            }
        }
        let leadership_changed = rm.leader != meta.leader || rm.leader_epoch != meta.leader_epoch;
        if leadership_changed {
            r.followers.lock().clear();
            *r.pending_isr.lock() = None;
            *r.leader_since.lock() = Instant::now();
            if rm.leader == Some(self.id) {
                info!(partition = %r.tp, epoch = rm.leader_epoch, "became leader");
            } else {
                debug!(partition = %r.tp, leader = ?rm.leader, epoch = rm.leader_epoch, "following");
            }
        }
        let (leader, epoch) = (rm.leader, rm.leader_epoch);
        *meta = rm;
        drop(meta);
        if leadership_changed {
            // Waits for an append in flight: none of the old role lands after this.
            set_role(&r.log, self.id, leader, epoch);
        }
    }

    /// A leader's HW is the least LEO over the ISR (its own included) and over any member
    /// an ISR write in flight is adding; followers that have not fetched since it became
    /// leader hold it back, as in Kafka.
    pub(crate) fn maybe_advance_high_watermark(&self, replica: &Replica) {
        let meta = replica.meta.read();
        if meta.leader != Some(self.id) {
            return;
        }
        let mut hw = replica.log.offsets().log_end;
        let pending = replica.pending_isr.lock().as_ref().map(|(_, isr)| isr.clone()).unwrap_or_default();
        let followers = replica.followers.lock();
        let maximal = meta.isr.iter().chain(pending.iter().filter(|id| !meta.isr.contains(id)));
        for f in maximal.filter(|id| **id != self.id) {
            match followers.get(f) {
                Some(p) => hw = hw.min(p.fetch_offset),
                None => return,
            }
        }
        drop(followers);
        drop(meta);
        replica.log.advance_high_watermark(hw);
    }

    pub(crate) fn leader_replica(&self, tp: &TopicPartition) -> Result<Arc<Replica>> {
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
        // The open replica may belong to an earlier topic of the same name (deleted and
        // re-created) until this node applies the new metadata: never serve it then.
        let current = self.metadata.borrow().topic(&tp.topic).is_some_and(|t| t.topic_id == replica.topic_id);
        if !current {
            return Err(FjordError::new(
                ErrorCode::LeaderNotAvailable,
                format!("{tp} is being re-created on this node; retry shortly"),
            ));
        }
        let meta = replica.meta.read();
        if meta.leader != Some(self.id) {
            return Err(not_leader(tp, meta.leader, self.id));
        }
        drop(meta);
        Ok(replica)
    }

    /// The periodic log cleanup of every replica, leader or follower (each replica
    /// cleans its own log, as in Kafka): retention where `cleanup.policy` has `delete`,
    /// then compaction where it has `compact`.
    async fn run_retention(&self) {
        let replicas: Vec<Arc<Replica>> = self.replicas.read().values().cloned().collect();
        for r in replicas {
            let config = r.meta.read().config.clone();
            if config.deletes() {
                let log = r.log.clone();
                let result = tokio::task::spawn_blocking(move || {
                    log.apply_retention(fjord_protocol::now_ms(), config.retention_ms, config.retention_bytes)
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
            if config.compacts() {
                self.compact_replica(&r, false).await;
            }
        }
    }

    /// One compaction pass over a replica's log on a blocking thread; unless `force`,
    /// skipped when nothing it depends on changed since the last completed pass.
    async fn compact_replica(&self, r: &Replica, force: bool) {
        let config = r.meta.read().config.clone();
        let o = r.log.offsets();
        let now = fjord_protocol::now_ms();
        let mark = CompactionMark {
            high_watermark: o.high_watermark,
            log_start: o.log_start,
            delete_retention_ms: config.delete_retention_ms,
            min_compaction_lag_ms: config.min_compaction_lag_ms,
            due_ms: None,
        };
        let previous = *r.compacted.lock();
        if !force
            && previous
                .is_some_and(|p| CompactionMark { due_ms: None, ..p } == mark && p.due_ms.is_none_or(|due| now < due))
        {
            return;
        }
        let log = r.log.clone();
        let result = tokio::task::spawn_blocking(move || {
            log.compact(now, config.delete_retention_ms, config.min_compaction_lag_ms)
        })
        .await;
        match result {
            Ok(Ok(Some(done))) => {
                *r.compacted.lock() = Some(CompactionMark { due_ms: done.due_ms, ..mark });
                if done.batches > 0 {
                    info!(
                        partition = %r.tp,
                        batches = done.batches,
                        records = done.records,
                        bytes = done.bytes,
                        "compaction rewrote batches"
                    );
                }
            }
            // The log changed under the pass; the next tick tries again.
            Ok(Ok(None)) => debug!(partition = %r.tp, "compaction pass raced another change; retrying later"),
            Ok(Err(e)) => warn!(partition = %r.tp, error = %e, "compaction failed"),
            Err(e) => warn!(partition = %r.tp, error = %e, "compaction task failed"),
        }
    }

    /// Runs retention and compaction over every replica now, per each topic's
    /// `cleanup.policy` (tests and admin use).
    pub async fn apply_retention_now(&self) {
        self.run_retention().await;
    }

    /// Runs a compaction pass over every replica of a compacted topic now, even one
    /// whose log has not changed since its last pass (tests and admin use).
    pub async fn compact_now(&self) {
        let replicas: Vec<Arc<Replica>> = self.replicas.read().values().cloned().collect();
        for r in replicas {
            if r.meta.read().config.compacts() {
                self.compact_replica(&r, true).await;
            }
        }
    }
}

/// The log's write fence for what the metadata says: leader, follower (to truncate for
/// the epoch first) or offline.
fn set_role(log: &PartitionLog, me: NodeId, leader: Option<NodeId>, epoch: u32) {
    match leader {
        Some(l) if l == me => log.become_leader(epoch),
        Some(_) => log.become_follower(epoch),
        None => log.go_offline(),
    }
    debug_assert!(!matches!(log.role(), Role::Unfenced));
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
        let mut hw_rx = replica.log.subscribe_high_watermark();
        let appended = replica.appends.append(req.batch, epoch).await?;
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
        self.maybe_advance_high_watermark(&replica);
        if req.acks == Acks::All {
            let target = appended.next_offset();
            let deadline = Instant::now() + req.timeout;
            let mut meta_rx = self.metadata.clone();
            meta_rx.borrow_and_update();
            loop {
                // Only a leader still in the epoch it appended in may count the HW as
                // covering its batch: once demoted, this replica truncates by epoch and
                // its HW may pass the same offsets holding the new leader's records.
                let still_leader = {
                    let m = replica.meta.read();
                    m.leader == Some(self.id) && m.leader_epoch == epoch
                };
                if !still_leader {
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
                    break;
                }
                tokio::select! {
                    changed = tokio::time::timeout_at(deadline, hw_rx.changed()) => {
                        if !matches!(changed, Ok(Ok(()))) {
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
                    changed = meta_rx.changed() => {
                        if changed.is_err() {
                            // No more metadata (shutting down): nothing will move the HW.
                            return Err(FjordError::new(ErrorCode::ShuttingDown, format!("{}: shutting down", req.tp)));
                        }
                    }
                }
            }
            // Committed, but by fewer replicas than promised (Kafka's
            // NOT_ENOUGH_REPLICAS_AFTER_APPEND): the ISR shrank while we waited.
            let isr_now = replica.meta.read().isr.len() as u32;
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
        Ok(ProduceResponse { base_offset: appended.base_offset(), record_count: appended.record_count() })
    }

    async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let replica = self.leader_replica(&req.tp)?;
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
            // Every answer's HW is the one it was read under (or at most the requested
            // offset): empty batches then mean no record in [offset, HW), which a
            // consumer may skip (compaction can leave a gap reaching the HW).
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
            if timed_out {
                return Ok(FetchResponse {
                    batches: Vec::new(),
                    high_watermark: o.high_watermark,
                    log_start_offset: o.log_start,
                    log_end_offset: o.log_end,
                });
            }
            // On timeout, one more look: the HW may have moved just now.
            timed_out = !matches!(tokio::time::timeout_at(deadline, hw_rx.changed()).await, Ok(Ok(())));
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

    async fn group(&self, req: GroupRequest) -> Result<GroupResponse> {
        self.groups.handle(self, req).await
    }

    async fn partition_status(&self, tp: TopicPartition) -> Result<PartitionStatus> {
        let replica = self.leader_replica(&tp)?;
        let epoch = replica.meta.read().leader_epoch;
        Ok(offsets_to_status(replica.log.offsets(), epoch))
    }
}
