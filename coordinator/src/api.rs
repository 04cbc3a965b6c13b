//! The [`Coordinator`] trait: what storage nodes, gateways and the controller use to
//! read and change cluster metadata, whatever the backend.

use crate::model::{
    ClusterMetadata, GatewayInfo, NewTopic, NodeInfo, PartitionState, ProducerInfo, TopicChange, TopicMetadata,
};
use async_trait::async_trait;
use fjord_protocol::{NodeId, Result};
use std::sync::Arc;
use tokio::sync::watch;

/// Reads and changes cluster metadata. Reads come from a snapshot that is replaced
/// whenever the metadata changes, so readers never block writers.
#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// The current snapshot; `changed()` on the receiver wakes on every update.
    fn metadata(&self) -> watch::Receiver<Arc<ClusterMetadata>>;

    /// Registers a live storage node (ephemeral: it lasts as long as this process).
    async fn register_node(&self, node: NodeInfo) -> Result<()>;

    /// Removes a node's registration, as the end of its process (or ZooKeeper session)
    /// does; a no-op for a node this client has not registered.
    async fn unregister_node(&self, id: NodeId) -> Result<()>;

    /// Creates a topic, placing its replicas on the live nodes.
    async fn create_topic(&self, spec: NewTopic) -> Result<TopicMetadata>;

    async fn delete_topic(&self, name: &str) -> Result<()>;

    /// Increases the partition count and/or changes config keys.
    async fn alter_topic(&self, name: &str, change: TopicChange) -> Result<TopicMetadata>;

    /// Replaces a registered node's info (e.g. sets `shutting_down`).
    async fn update_node(&self, node: NodeInfo) -> Result<()>;

    /// Registers a live gateway (ephemeral).
    async fn register_gateway(&self, gateway: GatewayInfo) -> Result<()>;

    /// Writes one partition's leader, epoch and ISR if its stored version is still
    /// `state.version`; returns the new version. A lost race answers `stale_version`
    /// ([`ErrorCode::StaleVersion`](fjord_protocol::ErrorCode::StaleVersion)): re-read the
    /// metadata and decide again. The replica list is not changed by this call.
    async fn update_partition_state(&self, topic: &str, state: PartitionState) -> Result<i32>;

    /// Tries to become the controller. `Ok(Some(epoch))` when `node` is the controller
    /// (now or already), with the controller epoch; `Ok(None)` when another node is.
    async fn campaign_controller(&self, node: NodeId) -> Result<Option<u32>>;

    /// Registers a producer session under `name` (validated as a topic name is): the
    /// first registration gets a new id and epoch 0, each later one the same id and the
    /// next epoch, which fences the older instances. Persistent, unlike nodes.
    async fn register_producer(&self, name: &str) -> Result<ProducerInfo>;
}
