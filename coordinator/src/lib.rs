//! Cluster metadata and coordination.
//!
//! The [`Coordinator`] trait is what storage nodes and gateways use to read and change
//! cluster metadata. It knows nothing of ZooKeeper: the embedded backend
//! ([`EmbeddedCoordinator`]) serves `fjord standalone` from one process and a JSON file;
//! the ZooKeeper backend (the cluster issue) implements the same trait.
//!
//! # Layout
//! - [`model`] — nodes, topics, partition states, topic config with Kafka's key names,
//!   topic-name validation.
//! - [`placement`] — Kafka's round-robin replica placement.
//! - [`embedded`] — the single-process backend.
//! - [`zk`] — the ZooKeeper backend ([`ZkCoordinator`]).
//! - `testing` (feature `testing`) — a throwaway ZooKeeper server for tests.

pub mod controller;
pub mod embedded;
pub mod model;
pub mod placement;
#[cfg(feature = "testing")]
pub mod testing;
pub mod zk;

pub use embedded::EmbeddedCoordinator;
pub use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};
pub use model::{
    validate_topic_name, ClusterMetadata, GatewayInfo, NewTopic, NodeInfo, PartitionState, TopicChange, TopicConfig,
    TopicMetadata,
};
pub use zk::ZkCoordinator;

use async_trait::async_trait;
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
    /// `state.version`; returns the new version. A lost race answers
    /// [`ErrorCode::StaleVersion`]: re-read the metadata and decide again. The replica
    /// list is not changed by this call.
    async fn update_partition_state(&self, topic: &str, state: PartitionState) -> Result<i32>;

    /// Tries to become the controller. `Ok(Some(epoch))` when `node` is the controller
    /// (now or already), with the controller epoch; `Ok(None)` when another node is.
    async fn campaign_controller(&self, node: NodeId) -> Result<Option<u32>>;
}
