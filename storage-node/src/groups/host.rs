//! What the group coordinator needs from the node it runs on: a narrow seam, so the
//! coordinator neither reaches into the node's replicas nor imports the node.

use async_trait::async_trait;
use fjord_coordinator::ClusterMetadata;
use fjord_log::PartitionLog;
use fjord_protocol::{NodeId, ProduceRequest, ProduceResponse, Result, TopicPartition};
use std::sync::Arc;

/// An offsets-topic partition this node leads.
pub struct LedLog {
    /// The topic incarnation and leader epoch: a shard loaded under other ones is stale.
    pub topic_id: String,
    pub leader_epoch: u32,
    pub log: Arc<PartitionLog>,
}

#[async_trait]
pub trait GroupHost: Send + Sync {
    fn node_id(&self) -> NodeId;
    /// The metadata snapshot the node follows.
    fn metadata(&self) -> Arc<ClusterMetadata>;
    /// `tp`'s log if this node leads it; the error a caller should see otherwise.
    fn led_log(&self, tp: &TopicPartition) -> Result<LedLog>;
    /// Appends as the partition's leader (the node's produce path).
    async fn append(&self, req: ProduceRequest) -> Result<ProduceResponse>;
}
