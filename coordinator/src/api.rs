//! The [`Coordinator`] trait: what storage nodes, gateways and the controller use to
//! read and change cluster metadata, whatever the backend.

use crate::model::{
    ClusterMetadata, ElectionRequest, GatewayInfo, NewTopic, NodeInfo, PartitionState, PipelineRecord, ProducerInfo,
    TopicChange, TopicMetadata,
};
use async_trait::async_trait;
use fjord_protocol::auth::{AclBinding, TokenRecord};
use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};
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

    /// Writes a controller's decisions (one [`crate::controller::plan`]), fenced by the
    /// controller epoch: if `controller_epoch` is not the current epoch — the writer was
    /// deposed and a newer controller was elected — nothing is written and the answer is
    /// `stale_version`. Otherwise each state is written as [`update_partition_state`]
    /// writes it (only if its stored version is still `state.version`), with one result
    /// per state in order, and the snapshot is published once for the whole plan rather
    /// than once per partition (a topic of thousands of partitions is one write of the
    /// embedded store, one round of ZooKeeper writes).
    ///
    /// [`update_partition_state`]: Coordinator::update_partition_state
    async fn write_plan(
        &self,
        controller_epoch: u32,
        states: Vec<(String, PartitionState)>,
    ) -> Result<Vec<Result<i32>>>;

    /// Removes the topic `name` if it is still the incarnation `topic_id` and still
    /// incomplete (see [`ClusterMetadata::incomplete_topics`]); whether it did. The
    /// controller's call, for a creation or deletion that stopped half-way.
    ///
    /// [`ClusterMetadata::incomplete_topics`]: crate::ClusterMetadata::incomplete_topics
    async fn remove_incomplete_topic(&self, name: &str, topic_id: &str) -> Result<bool>;

    /// Tries to become the controller. `Ok(Some(epoch))` when `node` is the controller
    /// (now or already), with the controller epoch; `Ok(None)` when another node is.
    async fn campaign_controller(&self, node: NodeId) -> Result<Option<u32>>;

    /// Registers a producer session under `name` (validated as a topic name is): the
    /// first registration gets a new id and epoch 0, each later one the same id and the
    /// next epoch, which fences the older instances. Persistent, unlike nodes.
    async fn register_producer(&self, name: &str) -> Result<ProducerInfo>;

    /// Stores a new token record (persistent); an id already stored is `invalid_request`.
    async fn create_token(&self, token: TokenRecord) -> Result<()>;

    /// Removes a token; `Ok(false)` if there was none by that id.
    async fn delete_token(&self, id: &str) -> Result<bool>;

    /// Adds ACL bindings (persistent); one already stored is left as it is.
    async fn create_acls(&self, acls: Vec<AclBinding>) -> Result<()>;

    /// Removes ACL bindings; those not stored are ignored.
    async fn delete_acls(&self, acls: Vec<AclBinding>) -> Result<()>;

    /// Stores a new pipeline (persistent); a name already stored is
    /// `pipeline_already_exists`.
    async fn create_pipeline(&self, pipeline: PipelineRecord) -> Result<()>;

    /// Removes a pipeline; `Ok(false)` if there was none by that name.
    async fn delete_pipeline(&self, name: &str) -> Result<bool>;

    /// Asks the controller for a preferred-leader election (it shows up as
    /// [`ClusterMetadata::preferred_election`]); `election_in_progress` while an earlier
    /// one is pending.
    async fn request_preferred_election(&self, request: ElectionRequest) -> Result<()>;

    /// Removes the pending election request if its id is `id` (the controller, once it
    /// has run it); `Ok(false)` if that one is not pending.
    async fn clear_preferred_election(&self, id: &str) -> Result<bool>;

    /// The state of this client's session with its backend, for metrics; `None` for a
    /// backend without sessions (the embedded one lives in the process).
    fn session_stats(&self) -> Option<SessionStats> {
        None
    }
}

/// A coordinator client's session with its backend (ZooKeeper), since the client started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Connected now.
    pub connected: bool,
    /// Times the connection was lost (it reconnects by itself while the session lives).
    pub disconnects: u64,
    /// Sessions that expired and had to be replaced (registrations and watches again).
    pub expirations: u64,
    /// While not connected: since when (the snapshot may be stale since then).
    pub disconnected_since: Option<std::time::Instant>,
}

/// The answer to asking for an election while another is pending.
pub(crate) fn election_in_progress() -> FjordError {
    FjordError::new(
        ErrorCode::ElectionInProgress,
        "a preferred-leader election asked for earlier is still pending; retry once it is done",
    )
}

/// The answer to storing a pipeline whose name is taken.
pub(crate) fn pipeline_exists(name: &str) -> FjordError {
    FjordError::new(ErrorCode::PipelineAlreadyExists, format!("a pipeline named {name} already exists"))
}

/// The answer to storing a token whose id is taken.
pub(crate) fn token_exists(id: &str) -> FjordError {
    FjordError::new(ErrorCode::InvalidRequest, format!("a token with id {id} already exists"))
}

/// The answer to a plan written under controller epoch `mine` when `current` is the
/// controller epoch ([`Coordinator::write_plan`]).
pub(crate) fn fenced(mine: u32, current: u32) -> FjordError {
    FjordError::new(
        ErrorCode::StaleVersion,
        format!("controller epoch {mine} is not the current one ({current}): a newer controller decides"),
    )
}
