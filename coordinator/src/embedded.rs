//! The single-process coordinator behind `fjord standalone`.
//!
//! Topics are persisted to `metadata.json` in the data directory (written to a temp file,
//! fsynced and renamed, so a crash leaves either the old or the new file); nodes are
//! ephemeral, like ZooKeeper's `/brokers/ids`. Every change replaces the snapshot
//! published on the watch channel.

use crate::model::{
    check_partition_count, unknown_topic, ClusterMetadata, GatewayInfo, NewTopic, NodeInfo, PartitionState,
    TopicChange, TopicMetadata,
};
use crate::placement::assign_replicas;
use crate::{validate_topic_name, Coordinator};
use async_trait::async_trait;
use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{watch, Mutex};

const FILE_NAME: &str = "metadata.json";

#[derive(Serialize, Deserialize)]
struct Persisted {
    cluster_id: String,
    topics: BTreeMap<String, TopicMetadata>,
}

pub struct EmbeddedCoordinator {
    path: Option<PathBuf>,
    /// Serializes writers; readers use the watch channel.
    write: Mutex<()>,
    tx: watch::Sender<Arc<ClusterMetadata>>,
    /// Whether this backend plays controller itself: makes the first registered node the
    /// controller and elects leaders on every change. Off when a real controller
    /// ([`crate::controller::run`]) does that job, since the two would fight.
    self_managed: bool,
}

fn storage_error(what: &str, e: impl std::fmt::Display) -> FjordError {
    FjordError::new(ErrorCode::StorageError, format!("{what}: {e}"))
}

impl EmbeddedCoordinator {
    /// Opens (or starts) the metadata kept in `dir`.
    pub async fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        let p = path.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<Option<Persisted>> {
            match std::fs::read(&p) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| storage_error(&format!("reading {}", p.display()), e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(storage_error(&format!("reading {}", p.display()), e)),
            }
        })
        .await
        .map_err(|e| storage_error("metadata loader", e))??;
        let mut meta = ClusterMetadata::default();
        match loaded {
            Some(p) => {
                meta.cluster_id = p.cluster_id;
                meta.topics = p.topics;
            }
            None => meta.cluster_id = uuid::Uuid::new_v4().to_string(),
        }
        // Nodes are ephemeral: no leader until its node registers again.
        for t in meta.topics.values_mut() {
            for p in &mut t.partitions {
                p.leader = None;
                p.isr.clear();
            }
        }
        let this =
            Self { path: Some(path), write: Mutex::new(()), tx: watch::channel(Arc::new(meta)).0, self_managed: true };
        this.persist(&this.current()).await?;
        Ok(this)
    }

    /// A coordinator that keeps nothing on disk (unit tests).
    pub fn in_memory() -> Self {
        let meta = ClusterMetadata { cluster_id: uuid::Uuid::new_v4().to_string(), ..Default::default() };
        Self { path: None, write: Mutex::new(()), tx: watch::channel(Arc::new(meta)).0, self_managed: true }
    }

    /// An in-memory coordinator that leaves the controller's job to an external
    /// controller ([`crate::controller::run`]), as the ZooKeeper backend does: nobody is
    /// controller until a node campaigns, and partitions get no leader and no ISR
    /// changes except through [`Coordinator::update_partition_state`]. For tests of the
    /// controller and of multi-node behaviour without ZooKeeper.
    pub fn in_memory_with_external_controller() -> Self {
        Self { self_managed: false, ..Self::in_memory() }
    }

    fn current(&self) -> ClusterMetadata {
        (**self.tx.borrow()).clone()
    }

    async fn persist(&self, meta: &ClusterMetadata) -> Result<()> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        let bytes =
            serde_json::to_vec_pretty(&Persisted { cluster_id: meta.cluster_id.clone(), topics: meta.topics.clone() })
                .map_err(|e| storage_error("encoding metadata", e))?;
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| storage_error("metadata writer", e))?
            .map_err(|e| storage_error("writing metadata", e))
    }

    /// Applies `f` to a copy of the metadata, persists it and publishes it.
    async fn update<T>(&self, f: impl FnOnce(&mut ClusterMetadata) -> Result<T>) -> Result<T> {
        let _guard = self.write.lock().await;
        let mut meta = self.current();
        let out = f(&mut meta)?;
        if self.self_managed {
            elect_leaders(&mut meta);
        }
        self.persist(&meta).await?;
        self.tx.send_replace(Arc::new(meta));
        Ok(out)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Gives every leaderless partition the first live replica as leader (the embedded
/// backend has no ISR history to consult: its one node is always in sync), bumping the
/// leader epoch as every leader change does.
fn elect_leaders(meta: &mut ClusterMetadata) {
    for t in meta.topics.values_mut() {
        for p in &mut t.partitions {
            let live = |id: &u32| meta.nodes.contains_key(id);
            if p.leader.is_some_and(|l| live(&l)) {
                continue;
            }
            let leader = p.replicas.iter().copied().find(|id| live(id));
            let isr: Vec<_> = p.replicas.iter().copied().filter(|id| live(id)).collect();
            if leader != p.leader {
                p.leader = leader;
                p.leader_epoch += 1;
            }
            if leader != p.leader || isr != p.isr {
                p.version += 1;
            }
            p.isr = isr;
        }
    }
}

fn new_partitions(meta: &ClusterMetadata, first: u32, count: u32, rf: u32, seed: usize) -> Result<Vec<PartitionState>> {
    let nodes: Vec<_> = meta.nodes.keys().copied().collect();
    let assignment = assign_replicas(&nodes, first, count, rf, seed, seed / 7)?;
    Ok(assignment
        .into_iter()
        .zip(first..)
        .map(|(replicas, partition)| PartitionState {
            partition,
            replicas,
            leader: None,
            leader_epoch: 0,
            isr: vec![],
            version: 0,
        })
        .collect())
}

#[async_trait]
impl Coordinator for EmbeddedCoordinator {
    fn metadata(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.tx.subscribe()
    }

    async fn update_node(&self, node: NodeInfo) -> Result<()> {
        self.update(|m| match m.nodes.get_mut(&node.id) {
            Some(n) => {
                *n = node;
                Ok(())
            }
            None => Err(FjordError::new(ErrorCode::InvalidRequest, format!("node {} is not registered", node.id))),
        })
        .await
    }

    async fn register_gateway(&self, gateway: GatewayInfo) -> Result<()> {
        self.update(|m| {
            m.gateways.insert(gateway.id.clone(), gateway);
            Ok(())
        })
        .await
    }

    async fn update_partition_state(&self, topic: &str, state: PartitionState) -> Result<i32> {
        self.update(|m| {
            let t = m.topics.get_mut(topic).ok_or_else(|| unknown_topic(topic))?;
            let p = t.partitions.get_mut(state.partition as usize).ok_or_else(|| {
                FjordError::new(ErrorCode::UnknownPartition, format!("{topic} has no partition {}", state.partition))
            })?;
            if p.version != state.version {
                return Err(FjordError::new(
                    ErrorCode::StaleVersion,
                    format!("{topic}-{}: state version is {}, not {}", state.partition, p.version, state.version),
                ));
            }
            p.leader = state.leader;
            p.leader_epoch = state.leader_epoch;
            p.isr = state.isr;
            p.version += 1;
            Ok(p.version)
        })
        .await
    }

    async fn campaign_controller(&self, node: NodeId) -> Result<Option<u32>> {
        self.update(|m| match m.controller {
            Some(c) if c != node => Ok(None),
            Some(_) => Ok(Some(m.controller_epoch)),
            None => {
                m.controller = Some(node);
                m.controller_epoch += 1;
                Ok(Some(m.controller_epoch))
            }
        })
        .await
    }

    async fn register_node(&self, node: NodeInfo) -> Result<()> {
        let self_managed = self.self_managed;
        self.update(|m| {
            if self_managed {
                m.controller.get_or_insert(node.id);
            }
            m.nodes.insert(node.id, node);
            Ok(())
        })
        .await
    }

    async fn create_topic(&self, spec: NewTopic) -> Result<TopicMetadata> {
        validate_topic_name(&spec.name)?;
        check_partition_count(spec.partitions)?;
        self.update(|m| {
            if m.topics.contains_key(&spec.name) {
                return Err(FjordError::new(
                    ErrorCode::TopicAlreadyExists,
                    format!("topic `{}` already exists", spec.name),
                ));
            }
            let topic_id = uuid::Uuid::new_v4();
            let seed = topic_id.as_u128() as usize;
            let partitions = new_partitions(m, 0, spec.partitions, spec.replication_factor, seed)?;
            let name = spec.name.clone();
            m.topics.insert(
                name.clone(),
                TopicMetadata {
                    name: name.clone(),
                    topic_id: topic_id.simple().to_string(),
                    config: spec.config,
                    partitions,
                },
            );
            Ok(name)
        })
        .await
        .and_then(|name| self.tx.borrow().topics.get(&name).cloned().ok_or_else(|| unknown_topic(&name)))
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        self.update(|m| m.topics.remove(name).map(|_| ()).ok_or_else(|| unknown_topic(name))).await
    }

    async fn alter_topic(&self, name: &str, change: TopicChange) -> Result<TopicMetadata> {
        self.update(|m| {
            let topic = m.topics.get(name).ok_or_else(|| unknown_topic(name))?;
            let current = topic.partitions.len() as u32;
            let mut added = Vec::new();
            if let Some(n) = change.partitions {
                check_partition_count(n)?;
                if n < current {
                    return Err(FjordError::new(
                        ErrorCode::InvalidPartitions,
                        format!("topic `{name}` has {current} partitions; the count can only grow, not shrink to {n}"),
                    ));
                }
                let rf = topic.replication_factor() as u32;
                let seed = current as usize;
                added = new_partitions(m, current, n - current, rf, seed)?;
            }
            let topic = m.topics.get_mut(name).ok_or_else(|| unknown_topic(name))?;
            topic.partitions.extend(added);
            if let Some(config) = change.config {
                topic.config = config;
            }
            Ok(())
        })
        .await?;
        self.tx.borrow().topics.get(name).cloned().ok_or_else(|| unknown_topic(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TopicConfig;

    fn node(id: u32) -> NodeInfo {
        NodeInfo { id, endpoint: "in-process".into(), rack: None, shutting_down: false }
    }

    fn topic(name: &str, partitions: u32) -> NewTopic {
        NewTopic { name: name.into(), partitions, replication_factor: 1, config: TopicConfig::default() }
    }

    #[tokio::test]
    async fn topics_survive_reopen_and_leaders_return_with_a_new_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = EmbeddedCoordinator::open(dir.path()).await.expect("open");
        c.register_node(node(0)).await.expect("register");
        let t = c.create_topic(topic("orders", 3)).await.expect("create");
        assert_eq!(t.partitions.len(), 3);
        assert!(t.partitions.iter().all(|p| p.leader == Some(0) && p.leader_epoch == 1 && p.isr == vec![0]));
        let cluster_id = c.metadata().borrow().cluster_id.clone();
        drop(c);

        let c = EmbeddedCoordinator::open(dir.path()).await.expect("reopen");
        {
            let m = c.metadata();
            let m = m.borrow();
            assert_eq!(m.cluster_id, cluster_id);
            assert_eq!(m.topics["orders"].topic_id, t.topic_id);
            assert!(m.topics["orders"].partitions.iter().all(|p| p.leader.is_none()));
        }
        c.register_node(node(0)).await.expect("register");
        let m = c.metadata().borrow().clone();
        assert!(m.topics["orders"].partitions.iter().all(|p| p.leader == Some(0) && p.leader_epoch == 2));
    }

    #[tokio::test]
    async fn create_alter_delete_with_clear_errors() {
        let c = EmbeddedCoordinator::in_memory();
        c.register_node(node(0)).await.expect("register");
        c.create_topic(topic("t", 2)).await.expect("create");
        assert_eq!(c.create_topic(topic("t", 2)).await.expect_err("dup").code, ErrorCode::TopicAlreadyExists);
        assert_eq!(c.create_topic(topic("bad name", 1)).await.expect_err("name").code, ErrorCode::InvalidTopicName);
        assert_eq!(c.create_topic(topic("z", 0)).await.expect_err("zero").code, ErrorCode::InvalidPartitions);
        let rf3 = NewTopic { replication_factor: 3, ..topic("rf3", 1) };
        assert_eq!(c.create_topic(rf3).await.expect_err("rf").code, ErrorCode::InvalidReplicationFactor);

        let grown = c.alter_topic("t", TopicChange { partitions: Some(4), config: None }).await.expect("grow");
        assert_eq!(grown.partitions.len(), 4);
        assert_eq!(grown.partitions[3].leader, Some(0));
        let shrink = c.alter_topic("t", TopicChange { partitions: Some(1), config: None }).await;
        assert_eq!(shrink.expect_err("shrink").code, ErrorCode::InvalidPartitions);
        assert_eq!(c.metadata().borrow().topics["t"].partitions.len(), 4, "a refused change changes nothing");

        c.delete_topic("t").await.expect("delete");
        assert_eq!(c.delete_topic("t").await.expect_err("gone").code, ErrorCode::UnknownTopic);
        assert!(c.metadata().borrow().topics.is_empty());
    }
}
