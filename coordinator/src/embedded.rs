//! The single-process metadata store behind `fjord standalone`.
//!
//! A plain store: it keeps what it is told and decides nothing. Topic changes are
//! validated and placed by [`crate::topics`]; leaders, epochs and ISRs are written by the
//! controller ([`crate::controller`]) through [`Coordinator::update_partition_state`],
//! exactly as on ZooKeeper. Topics — with their partition states, so leader epochs and
//! ISRs survive a restart — the controller epoch, producer sessions, tokens and ACLs are persisted to `metadata.json` in
//! the data directory (written to a temp file, fsynced and renamed, so a crash leaves
//! either the old or the new file); nodes, gateways and the controller are ephemeral,
//! like ZooKeeper's `/brokers/ids` and `/controller`. Every change replaces the snapshot
//! published on the watch channel.

use crate::api::Coordinator;
use crate::model::{
    ClusterMetadata, ElectionRequest, GatewayInfo, NewTopic, NodeInfo, PartitionState, PipelineRecord, ProducerInfo,
    TopicChange, TopicMetadata,
};
use crate::producers;
use crate::topics::{self, unknown_topic};
use async_trait::async_trait;
use fjord_protocol::auth::{AclBinding, TokenRecord};
use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{watch, Mutex};

const FILE_NAME: &str = "metadata.json";

#[derive(Serialize, Deserialize)]
struct Persisted {
    cluster_id: String,
    /// Kept across restarts so a new controller's epoch is always higher (ZooKeeper's
    /// `/controller_epoch`). Absent in files written before it was stored.
    #[serde(default)]
    controller_epoch: u32,
    topics: BTreeMap<String, Arc<TopicMetadata>>,
    /// Producer sessions by id; absent in files written before they existed.
    #[serde(default)]
    producers: BTreeMap<u64, ProducerInfo>,
    /// Tokens and ACLs; absent in files written before security existed.
    #[serde(default)]
    tokens: BTreeMap<String, Arc<TokenRecord>>,
    #[serde(default)]
    acls: BTreeSet<AclBinding>,
    /// Pipelines; absent in files written before stream processing existed.
    #[serde(default)]
    pipelines: BTreeMap<String, PipelineRecord>,
}

pub struct EmbeddedCoordinator {
    path: Option<PathBuf>,
    /// Serializes writers; readers use the watch channel.
    write: Mutex<()>,
    tx: watch::Sender<Arc<ClusterMetadata>>,
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
                meta.controller_epoch = p.controller_epoch;
                meta.topics = p.topics;
                meta.producers = p.producers;
                meta.tokens = p.tokens;
                meta.acls = p.acls;
                meta.pipelines = p.pipelines;
            }
            None => meta.cluster_id = uuid::Uuid::new_v4().to_string(),
        }
        let this = Self { path: Some(path), write: Mutex::new(()), tx: watch::channel(Arc::new(meta)).0 };
        this.persist(&this.current()).await?;
        Ok(this)
    }

    /// A store that keeps nothing on disk (tests).
    pub fn in_memory() -> Self {
        let meta = ClusterMetadata { cluster_id: uuid::Uuid::new_v4().to_string(), ..Default::default() };
        Self { path: None, write: Mutex::new(()), tx: watch::channel(Arc::new(meta)).0 }
    }

    fn current(&self) -> ClusterMetadata {
        (**self.tx.borrow()).clone()
    }

    async fn persist(&self, meta: &ClusterMetadata) -> Result<()> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        let persisted = Persisted {
            cluster_id: meta.cluster_id.clone(),
            controller_epoch: meta.controller_epoch,
            topics: meta.topics.clone(),
            producers: meta.producers.clone(),
            tokens: meta.tokens.clone(),
            acls: meta.acls.clone(),
            pipelines: meta.pipelines.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&persisted).map_err(|e| storage_error("encoding metadata", e))?;
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| storage_error("metadata writer", e))?
            .map_err(|e| storage_error("writing metadata", e))
    }

    /// Applies `f` to a copy of the metadata, persists it and publishes it; on an error
    /// nothing changes.
    async fn update<T>(&self, f: impl FnOnce(&mut ClusterMetadata) -> Result<T>) -> Result<T> {
        let _guard = self.write.lock().await;
        let mut meta = self.current();
        let out = f(&mut meta)?;
        self.persist(&meta).await?;
        self.tx.send_replace(Arc::new(meta));
        Ok(out)
    }
}

/// Writes one partition's state into `m` if its version is still `state.version`.
fn write_state(m: &mut ClusterMetadata, topic: &str, state: PartitionState) -> Result<i32> {
    let t = Arc::make_mut(m.topics.get_mut(topic).ok_or_else(|| unknown_topic(topic))?);
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
        self.update(|m| write_state(m, topic, state)).await
    }

    async fn write_plan(
        &self,
        controller_epoch: u32,
        states: Vec<(String, PartitionState)>,
    ) -> Result<Vec<Result<i32>>> {
        self.update(|m| {
            if m.controller_epoch != controller_epoch {
                return Err(crate::api::fenced(controller_epoch, m.controller_epoch));
            }
            Ok(states.into_iter().map(|(topic, state)| write_state(m, &topic, state)).collect())
        })
        .await
    }

    /// Never anything to remove: the embedded store writes a topic whole or not at all.
    async fn remove_incomplete_topic(&self, _name: &str, _topic_id: &str) -> Result<bool> {
        Ok(false)
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

    async fn register_producer(&self, name: &str) -> Result<ProducerInfo> {
        producers::check_producer_name(name)?;
        self.update(|m| {
            let found = m.producers.values_mut().find(|p| p.name == name);
            if let Some(p) = found {
                p.epoch = p.epoch.checked_add(1).ok_or_else(|| producers::producer_epoch_exhausted(name))?;
                return Ok(p.clone());
            }
            let id = m.producers.keys().next_back().map_or(1, |last| last + 1);
            let p = ProducerInfo { name: name.to_owned(), id, epoch: 0 };
            m.producers.insert(id, p.clone());
            Ok(p)
        })
        .await
    }

    async fn create_token(&self, token: TokenRecord) -> Result<()> {
        self.update(|m| {
            if m.tokens.contains_key(&token.id) {
                return Err(crate::api::token_exists(&token.id));
            }
            m.tokens.insert(token.id.clone(), Arc::new(token));
            Ok(())
        })
        .await
    }

    async fn delete_token(&self, id: &str) -> Result<bool> {
        self.update(|m| Ok(m.tokens.remove(id).is_some())).await
    }

    async fn create_acls(&self, acls: Vec<AclBinding>) -> Result<()> {
        self.update(|m| {
            m.acls.extend(acls);
            Ok(())
        })
        .await
    }

    async fn create_pipeline(&self, pipeline: PipelineRecord) -> Result<()> {
        self.update(|m| {
            if m.pipelines.contains_key(&pipeline.name) {
                return Err(crate::api::pipeline_exists(&pipeline.name));
            }
            m.pipelines.insert(pipeline.name.clone(), pipeline);
            Ok(())
        })
        .await
    }

    async fn delete_pipeline(&self, name: &str) -> Result<bool> {
        self.update(|m| Ok(m.pipelines.remove(name).is_some())).await
    }

    // Kept in memory only: a request pending when the process stops is dropped, and the
    // one node of a standalone leads every partition anyway.
    async fn request_preferred_election(&self, request: ElectionRequest) -> Result<()> {
        self.update(|m| {
            if m.preferred_election.is_some() {
                return Err(crate::api::election_in_progress());
            }
            m.preferred_election = Some(request);
            Ok(())
        })
        .await
    }

    async fn clear_preferred_election(&self, id: &str) -> Result<bool> {
        self.update(|m| {
            let pending = m.preferred_election.as_ref().is_some_and(|r| r.id == id);
            if pending {
                m.preferred_election = None;
            }
            Ok(pending)
        })
        .await
    }

    async fn delete_acls(&self, acls: Vec<AclBinding>) -> Result<()> {
        self.update(|m| {
            for acl in &acls {
                m.acls.remove(acl);
            }
            Ok(())
        })
        .await
    }

    async fn register_node(&self, node: NodeInfo) -> Result<()> {
        self.update(|m| {
            m.nodes.insert(node.id, node);
            Ok(())
        })
        .await
    }

    async fn unregister_node(&self, id: NodeId) -> Result<()> {
        self.update(|m| {
            m.nodes.remove(&id);
            Ok(())
        })
        .await
    }

    async fn create_topic(&self, spec: NewTopic) -> Result<TopicMetadata> {
        topics::check_new_topic(&spec)?;
        self.update(|m| {
            let topic = topics::plan_new_topic(m, spec)?;
            m.topics.insert(topic.name.clone(), Arc::new(topic.clone()));
            Ok(topic)
        })
        .await
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        self.update(|m| m.topics.remove(name).map(|_| ()).ok_or_else(|| unknown_topic(name))).await
    }

    async fn alter_topic(&self, name: &str, change: TopicChange) -> Result<TopicMetadata> {
        self.update(|m| {
            let live = topics::live_nodes(m.nodes.values());
            let topic = Arc::make_mut(m.topics.get_mut(name).ok_or_else(|| unknown_topic(name))?);
            let current = topic.partitions.len() as u32;
            let added = topics::added_partitions(name, current, &change)?;
            if added > 0 {
                let rf = topic.replication_factor() as u32;
                topic.partitions.extend(topics::new_partitions(&live, current, added, rf)?);
            }
            if let Some(config) = change.config {
                topic.config = config;
            }
            Ok(topic.clone())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TopicConfig;

    fn node(id: u32) -> NodeInfo {
        NodeInfo {
            id,
            endpoint: "in-process".into(),
            rack: None,
            shutting_down: false,
            offline_replicas: Default::default(),
        }
    }

    fn topic(name: &str, partitions: u32) -> NewTopic {
        NewTopic { name: name.into(), partitions, replication_factor: 1, config: TopicConfig::default() }
    }

    /// What the store is told survives a restart — topics with their partition states
    /// (leader, epoch, ISR, version) and the controller epoch — while nodes and the
    /// controller, which are ephemeral, do not; a new controller's epoch is higher.
    /// The store elects nobody itself: a created partition stays leaderless.
    #[tokio::test]
    async fn topics_and_partition_states_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = EmbeddedCoordinator::open(dir.path()).await.expect("open");
        c.register_node(node(0)).await.expect("register");
        let t = c.create_topic(topic("orders", 3)).await.expect("create");
        assert!(t.partitions.iter().all(|p| p.leader.is_none() && p.leader_epoch == 0 && p.isr == vec![0]), "{t:?}");
        assert_eq!(c.metadata().borrow().topics["orders"].partitions, t.partitions, "no election of its own");
        let first = c.campaign_controller(0).await.expect("campaign").expect("wins");
        let p = &t.partitions[1];
        let led = PartitionState { leader: Some(0), leader_epoch: 7, isr: vec![0], ..p.clone() };
        let version = c.update_partition_state("orders", led.clone()).await.expect("write");
        let cluster_id = c.metadata().borrow().cluster_id.clone();
        drop(c);

        let c = EmbeddedCoordinator::open(dir.path()).await.expect("reopen");
        let m = c.metadata().borrow().clone();
        assert_eq!(m.cluster_id, cluster_id);
        assert_eq!(m.topics["orders"].topic_id, t.topic_id);
        assert_eq!(m.topics["orders"].partitions[1], PartitionState { version, ..led });
        assert_eq!(m.topics["orders"].partitions[0], t.partitions[0]);
        assert!(m.nodes.is_empty() && m.controller.is_none(), "nodes and the controller are ephemeral");
        let second = c.campaign_controller(0).await.expect("campaign").expect("wins");
        assert!(second > first, "controller epoch {second} must exceed {first}");
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
        assert_eq!((grown.partitions[3].leader, grown.partitions[3].leader_epoch), (None, 0), "the controller elects");
        let shrink = c.alter_topic("t", TopicChange { partitions: Some(1), config: None }).await;
        assert_eq!(shrink.expect_err("shrink").code, ErrorCode::InvalidPartitions);
        assert_eq!(c.metadata().borrow().topics["t"].partitions.len(), 4, "a refused change changes nothing");

        c.delete_topic("t").await.expect("delete");
        assert_eq!(c.delete_topic("t").await.expect_err("gone").code, ErrorCode::UnknownTopic);
        assert!(c.metadata().borrow().topics.is_empty());
    }
}
