//! Gateway configuration.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the public HTTP API listens on.
    pub listen: String,
    /// Largest request body accepted.
    pub max_request_bytes: usize,
    /// Create a topic on its first produce (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partition count of auto-created topics (Kafka's `num.partitions`).
    pub default_partitions: u32,
    /// Replication factor of auto-created topics.
    pub default_replication_factor: u32,
    /// Upper bound on any request's `timeout_ms`.
    pub max_timeout_ms: u64,
    /// Bytes of `acks=0` batches this gateway holds that no storage node has answered
    /// yet (Kafka's producer `buffer.memory`). A request that does not fit waits for
    /// room up to its `timeout_ms`, then is refused `429 throttled` with nothing written:
    /// fire-and-forget producers are slowed to what the cluster takes instead of piling
    /// up tasks and memory without bound.
    pub max_unacknowledged_bytes: usize,
    /// Partition count of the internal `__consumer_offsets` topic, created on the first
    /// consumer-group call (Kafka's `offsets.topic.num.partitions`). Fixed once created.
    pub offsets_topic_partitions: u32,
    /// Its replication factor (Kafka's `offsets.topic.replication.factor`), capped at
    /// the live storage nodes when it is created.
    pub offsets_topic_replication_factor: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            max_request_bytes: 64 << 20,
            auto_create_topics: true,
            default_partitions: 1,
            default_replication_factor: 1,
            max_timeout_ms: 60_000,
            max_unacknowledged_bytes: 64 << 20,
            offsets_topic_partitions: 16,
            offsets_topic_replication_factor: 3,
        }
    }
}

impl GatewayConfig {
    /// Checks values that serde cannot, naming the bad key.
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("gateway.listen: `{}` is not an address like 127.0.0.1:8080", self.listen));
        }
        if self.max_request_bytes < 1024 {
            return Err("gateway.max_request_bytes must be at least 1024".into());
        }
        if self.max_unacknowledged_bytes < 1024 || self.max_unacknowledged_bytes > u32::MAX as usize {
            return Err("gateway.max_unacknowledged_bytes must be between 1024 and 4294967295".into());
        }
        if self.default_partitions == 0 {
            return Err("gateway.default_partitions must be at least 1".into());
        }
        if self.offsets_topic_partitions == 0 || self.offsets_topic_partitions > 1000 {
            return Err("gateway.offsets_topic_partitions must be between 1 and 1000".into());
        }
        if self.offsets_topic_replication_factor == 0 {
            return Err("gateway.offsets_topic_replication_factor must be at least 1".into());
        }
        if self.default_replication_factor == 0 {
            return Err("gateway.default_replication_factor must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The acks=0 budget is refused outside 1 KiB..4 GiB, naming the key.
    #[test]
    fn max_unacknowledged_bytes_is_bounded() {
        assert_eq!(GatewayConfig::default().validate(), Ok(()));
        for bad in [0, 1023, u32::MAX as usize + 1] {
            let e = GatewayConfig { max_unacknowledged_bytes: bad, ..Default::default() }.validate();
            assert!(e.as_ref().is_err_and(|m| m.contains("gateway.max_unacknowledged_bytes")), "{bad}: {e:?}");
        }
        assert_eq!(GatewayConfig { max_unacknowledged_bytes: 1024, ..Default::default() }.validate(), Ok(()));
    }
}
