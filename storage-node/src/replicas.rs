//! The replicas open on this node, kept in line with the metadata snapshot.
//!
//! [`Replicas::reconcile`] opens the replicas newly assigned to this node, updates
//! leadership, epochs, ISR and config of the others, and drops the stores of replicas
//! no longer assigned (deleted topics). It blocks (RocksDB): call it on a blocking thread.
//!
//! **Damaged replicas.** A read that finds a stored batch failing its checksum reports
//! it here ([`Replicas::checked`]): the replica is *damaged* from that offset, the node
//! lists it among its registration's `offline_replicas` (the node's task, not this
//! module), and the controller elects another in-sync leader and takes this node out of
//! the ISR. Once another node leads, reconciliation cuts the log at the damaged batch
//! and the replica follows again, fetching the batch back from the new leader, and
//! rejoins the ISR once caught up. With no other in-sync replica the partition stays
//! offline (and the node's log says why).

use crate::counters::NodeMetrics;
use crate::replica::{set_role, Replica, ReplicaMeta};
use fjord_coordinator::ClusterMetadata;
use fjord_log::{CommitObserver, Engine, EngineStats, PartitionLog};
use fjord_protocol::codec::StoreName;
use fjord_protocol::{ErrorCode, FjordError, NodeId, Result, TopicPartition};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tracing::{debug, error, info, warn};

pub struct Replicas {
    me: NodeId,
    engine: Arc<dyn Engine>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    open: RwLock<HashMap<TopicPartition, Arc<Replica>>>,
    /// Damaged replicas: the base offset of the first damaged batch found.
    damaged: Mutex<BTreeMap<TopicPartition, u64>>,
    /// Wakes when `damaged` changes.
    damage_changed: Notify,
    metrics: Arc<NodeMetrics>,
    /// Every append queue's observer: into `metrics`.
    commits: CommitObserver,
}

impl Replicas {
    pub fn new(me: NodeId, engine: Arc<dyn Engine>, metadata: watch::Receiver<Arc<ClusterMetadata>>) -> Self {
        let metrics = Arc::new(NodeMetrics::default());
        let counted = metrics.clone();
        let commits: CommitObserver = Arc::new(move |batches, took| {
            counted.group_commit_batches.observe(batches as f64);
            NodeMetrics::observe(&counted.append_write_duration, took);
        });
        Self {
            me,
            engine,
            metadata,
            open: RwLock::new(HashMap::new()),
            damaged: Mutex::new(BTreeMap::new()),
            damage_changed: Notify::new(),
            metrics,
            commits,
        }
    }

    /// What this node counts as it works.
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    /// The storage engine's own figures.
    pub fn engine_stats(&self) -> EngineStats {
        self.engine.stats()
    }

    /// `result` of reading `tp`'s log, after noting a damaged batch it found.
    pub fn checked<T>(&self, tp: &TopicPartition, result: fjord_log::Result<T>) -> fjord_log::Result<T> {
        if let Err(fjord_log::Error::Damaged { offset, detail }) = &result {
            // A read that began before the damaged batch was cut can report it after the
            // cut. Marked again then, the replica would stay offline for good: its
            // registration still lists it, so nothing would change to cut it again.
            let gone = self.open.read().get(tp).is_none_or(|r| *offset >= r.log.offsets().log_end);
            if gone {
                debug!(partition = %tp, offset, "a read reported a damaged batch that is cut already");
                return result;
            }
            let mut damaged = self.damaged.lock();
            let first = !damaged.contains_key(tp);
            let at = damaged.entry(tp.clone()).or_insert(*offset);
            *at = (*at).min(*offset);
            drop(damaged);
            if first {
                error!(
                    partition = %tp, offset, %detail,
                    "a stored batch failed its checksum: this node gives the partition up, cuts its log there \
                     once another in-sync replica leads, and fetches the batch again from it"
                );
                self.damage_changed.notify_one();
            }
        }
        result
    }

    /// The replicas found damaged and not yet cut (this node's `offline_replicas`).
    pub fn damaged(&self) -> BTreeSet<TopicPartition> {
        self.damaged.lock().keys().cloned().collect()
    }

    /// Resolves when [`damaged`](Self::damaged) may have changed.
    pub async fn damage_changed(&self) {
        self.damage_changed.notified().await;
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// The latest metadata snapshot this node follows.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    /// A receiver of the metadata snapshots.
    pub fn metadata_feed(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.metadata.clone()
    }

    pub fn all(&self) -> Vec<Arc<Replica>> {
        self.open.read().values().cloned().collect()
    }

    /// The replicas this node follows on `leader`.
    pub fn followed_on(&self, leader: NodeId) -> Vec<Arc<Replica>> {
        self.open.read().values().filter(|r| r.state.lock().meta.leader == Some(leader)).cloned().collect()
    }

    /// The other nodes that lead a replica this node holds.
    pub fn leaders_followed(&self) -> HashSet<NodeId> {
        self.open.read().values().filter_map(|r| r.state.lock().meta.leader).filter(|l| *l != self.me).collect()
    }

    /// The replica of `tp` if this node leads it; else the error a caller should see
    /// (`unknown_topic`, `unknown_partition`, `not_leader`, `leader_not_available`).
    pub fn leader(&self, tp: &TopicPartition) -> Result<Arc<Replica>> {
        let found = self.open.read().get(tp).cloned();
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
            return Err(not_leader(tp, p.leader, self.me));
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
        let leader = replica.state.lock().meta.leader;
        if leader != Some(self.me) {
            return Err(not_leader(tp, leader, self.me));
        }
        Ok(replica)
    }

    /// Brings the open replicas in line with `meta` (blocking); how many stores it
    /// dropped.
    pub fn reconcile(&self, meta: &ClusterMetadata) -> Result<usize> {
        let wanted = self.wanted(meta);
        let current: HashMap<TopicPartition, Arc<Replica>> = self.open.read().clone();
        let mut next = HashMap::with_capacity(wanted.len());
        for (store, (tp, topic_id, rm)) in &wanted {
            let name = store.encode();
            let replica = match current.get(tp).filter(|r| r.log.name() == name) {
                Some(r) => {
                    self.apply(r, rm.clone());
                    r.clone()
                }
                None => match self.open_replica(&name, tp, topic_id, rm) {
                    Some(r) => r,
                    // One bad store must not keep every other replica from following
                    // the metadata; this one is retried on the next change.
                    None => continue,
                },
            };
            self.cut_if_damaged(&replica);
            replica.advance_leader_high_watermark(self.me);
            next.insert(tp.clone(), replica);
        }
        let forgotten = {
            let mut damaged = self.damaged.lock();
            let before = damaged.len();
            damaged.retain(|tp, _| next.contains_key(tp));
            damaged.len() != before
        };
        if forgotten {
            self.damage_changed.notify_one();
        }
        *self.open.write() = next;
        if meta.unreadable_topics {
            warn!("a topic in the metadata cannot be read: dropping no store until it can");
            return Ok(0);
        }
        self.drop_unassigned(&wanted, &meta.held_topic_ids)
    }

    /// Every replica `meta` assigns to this node, by store.
    fn wanted(&self, meta: &ClusterMetadata) -> HashMap<StoreName, (TopicPartition, String, ReplicaMeta)> {
        let mut wanted = HashMap::new();
        for t in meta.topics.values() {
            for p in t.partitions.iter().filter(|p| p.replicas.contains(&self.me)) {
                let rm = ReplicaMeta {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    isr: p.isr.clone(),
                    replicas: p.replicas.clone(),
                    version: p.version,
                    config: t.config.clone(),
                };
                wanted.insert(
                    StoreName::new(&t.topic_id, p.partition),
                    (TopicPartition::new(&t.name, p.partition), t.topic_id.clone(), rm),
                );
            }
        }
        wanted
    }

    fn open_replica(&self, name: &str, tp: &TopicPartition, topic_id: &str, rm: &ReplicaMeta) -> Option<Arc<Replica>> {
        let log = match PartitionLog::open(self.engine.clone(), name) {
            Ok(log) => log,
            Err(e) => {
                warn!(partition = %tp, store = %name, error = %e, "cannot open replica; skipping it");
                return None;
            }
        };
        set_role(&log, self.me, rm.leader, rm.leader_epoch);
        debug!(partition = %tp, store = %name, "opened replica");
        if rm.leader == Some(self.me) {
            info!(partition = %tp, epoch = rm.leader_epoch, "leading");
        }
        Some(Arc::new(Replica::new(tp.clone(), topic_id.to_owned(), log, rm.clone(), Some(self.commits.clone()))))
    }

    /// Applies newer metadata to an open replica and, when leadership changed, its role.
    fn apply(&self, r: &Replica, rm: ReplicaMeta) {
        let (leader, epoch) = (rm.leader, rm.leader_epoch);
        if r.apply_meta(rm) {
            if leader == Some(self.me) {
                info!(partition = %r.tp, epoch, "became leader");
            } else {
                debug!(partition = %r.tp, ?leader, epoch, "following");
            }
            // Waits for an append in flight: none of the old role lands after this.
            set_role(&r.log, self.me, leader, epoch);
        }
    }

    /// A damaged replica that another node now leads cuts its log at the damage: that
    /// leader was in the ISR, so it holds every committed record cut here, and the
    /// follower fetches them back from it. A fetcher that picked the replica up since its
    /// role changed is harmless: the cut holds the writer lock, and whatever was appended
    /// at or after the damage goes with it.
    fn cut_if_damaged(&self, r: &Replica) {
        let Some(at) = self.damaged.lock().get(&r.tp).copied() else { return };
        let Some(leader) = r.state.lock().meta.leader.filter(|l| *l != self.me) else { return };
        match r.log.truncate_to(at) {
            Ok(log_end) => {
                info!(partition = %r.tp, offset = at, leader, log_end, "cut the log at the damaged batch; fetching it again");
                self.damaged.lock().remove(&r.tp);
                self.damage_changed.notify_one();
            }
            Err(e) => warn!(partition = %r.tp, error = %e, "cannot cut the log at the damaged batch; retrying"),
        }
    }

    /// Drops the stores of replicas the metadata does not assign here — a deleted topic,
    /// a moved replica — but not those of topics it holds back (`held`: they exist but
    /// could not be read whole); how many it dropped.
    fn drop_unassigned(
        &self,
        wanted: &HashMap<StoreName, (TopicPartition, String, ReplicaMeta)>,
        held: &std::collections::BTreeSet<String>,
    ) -> Result<usize> {
        let stores = self.engine.list_partitions().map_err(FjordError::from)?;
        let mut dropped = 0;
        for name in stores {
            let Some(store) = StoreName::parse(&name) else { continue };
            if wanted.contains_key(&store) || held.contains(&store.topic_id) {
                continue;
            }
            info!(store = %name, "dropping the store of a replica no longer assigned here");
            match self.engine.drop_partition(&name) {
                Ok(()) => dropped += 1,
                Err(e) => warn!(store = %name, error = %e, "cannot drop store; retrying on the next change"),
            }
        }
        Ok(dropped)
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

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_coordinator::{PartitionState, TopicConfig, TopicMetadata};
    use fjord_log::MemEngine;
    use fjord_protocol::codec::{BatchBuilder, Record};

    fn damaged(offset: u64) -> fjord_log::Result<()> {
        Err(fjord_log::Error::Damaged { offset, detail: "test".into() })
    }

    /// **A late damage report for a batch already cut is ignored.** A read that began
    /// before the cut reports the damage after it: the batch is no longer in the log (its
    /// offset is at or past the log end), and the replica is not marked damaged again; a
    /// report of a batch still in the log marks it.
    #[test]
    fn a_damage_report_for_a_batch_already_cut_is_ignored() {
        let mut meta = ClusterMetadata::default();
        let p = PartitionState {
            partition: 0,
            replicas: vec![1],
            leader: Some(1),
            leader_epoch: 1,
            isr: vec![1],
            version: 0,
        };
        let topic = TopicMetadata {
            name: "t".into(),
            topic_id: "id".into(),
            config: TopicConfig::default(),
            partitions: vec![p],
        };
        meta.topics.insert("t".into(), Arc::new(topic));
        let (_tx, rx) = watch::channel(Arc::new(meta.clone()));
        let replicas = Replicas::new(1, Arc::new(MemEngine::new()), rx);
        replicas.reconcile(&meta).expect("reconcile");
        let tp = TopicPartition::new("t", 0);
        let log = replicas.all().pop().expect("the replica").log.clone();
        let mut batch = BatchBuilder::default();
        batch
            .push(&Record {
                timestamp: 1,
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: Vec::new(),
            })
            .expect("push");
        log.append(batch.finish().expect("batch"), 1).expect("append");
        assert_eq!(log.offsets().log_end, 1);

        assert!(replicas.checked(&tp, damaged(1)).is_err(), "the error still reaches the reader");
        assert!(replicas.damaged().is_empty(), "offset 1 is past the log end: cut already");
        let _ = replicas.checked(&tp, damaged(0));
        assert_eq!(replicas.damaged().into_iter().collect::<Vec<_>>(), vec![tp], "offset 0 is in the log");
    }
}
