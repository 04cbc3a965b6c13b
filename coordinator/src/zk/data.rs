//! What Fjord stores in its znodes: JSON in Kafka's spirit (ARCHITECTURE.md,
//! "ZooKeeper layout"), decoded with typed errors so one bad znode is skipped and logged
//! rather than taken as truth.

use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `/brokers/topics/{topic}`: the topic id and the replica assignment per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicZnode {
    pub topic_id: String,
    /// Partition number (a decimal string in JSON, as in Kafka) → assigned replicas.
    pub partitions: BTreeMap<u32, Vec<NodeId>>,
}

impl TopicZnode {
    /// The assignment as a list indexed by partition, if the partitions are exactly
    /// `0..n` (anything else was not written by Fjord).
    pub fn dense_assignment(&self) -> Option<Vec<Vec<NodeId>>> {
        let dense = self.partitions.keys().copied().eq(0..self.partitions.len() as u32);
        dense.then(|| self.partitions.values().cloned().collect())
    }
}

/// `/brokers/topics/{topic}/partitions/{p}/state`. Its znode version is the
/// partition state's `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateZnode {
    pub leader: Option<NodeId>,
    pub leader_epoch: u32,
    pub isr: Vec<NodeId>,
    /// The controller epoch known to the writer (fencing information for readers).
    #[serde(default)]
    pub controller_epoch: u32,
}

/// `/producers/{name}`. The id and epoch are the znode's creation zxid and data
/// version, so the data only names the producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerZnode {
    pub name: String,
}

/// `/controller`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerZnode {
    pub id: NodeId,
}

/// `/cluster/id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdZnode {
    pub id: String,
}

fn corrupt(path: &str, why: impl std::fmt::Display) -> FjordError {
    FjordError::new(ErrorCode::Internal, format!("znode {path} holds unexpected data: {why}"))
}

pub fn encode<T: Serialize>(path: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| corrupt(path, e))
}

pub fn decode<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(path, e))
}

/// `/controller_epoch` holds a plain decimal integer, as in Kafka.
pub fn encode_epoch(epoch: u32) -> Vec<u8> {
    epoch.to_string().into_bytes()
}

pub fn decode_epoch(path: &str, bytes: &[u8]) -> Result<u32> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| corrupt(path, format!("expected a decimal epoch, got {:?}", String::from_utf8_lossy(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_znode_uses_string_partition_keys_like_kafka() {
        let t = TopicZnode { topic_id: "abc".into(), partitions: BTreeMap::from([(0, vec![1, 2]), (1, vec![2, 1])]) };
        let bytes = encode("/t", &t).expect("encode");
        assert_eq!(String::from_utf8_lossy(&bytes), r#"{"topic_id":"abc","partitions":{"0":[1,2],"1":[2,1]}}"#);
        let back: TopicZnode = decode("/t", &bytes).expect("decode");
        assert_eq!(back, t);
        assert_eq!(back.dense_assignment(), Some(vec![vec![1, 2], vec![2, 1]]));
    }

    #[test]
    fn gaps_in_the_assignment_are_not_dense() {
        let t = TopicZnode { topic_id: "x".into(), partitions: BTreeMap::from([(0, vec![1]), (2, vec![1])]) };
        assert_eq!(t.dense_assignment(), None);
    }

    #[test]
    fn state_and_epoch_round_trip_and_bad_data_is_a_typed_error() {
        let s = StateZnode { leader: None, leader_epoch: 0, isr: vec![1, 2, 3], controller_epoch: 4 };
        let back: StateZnode = decode("/s", &encode("/s", &s).expect("encode")).expect("decode");
        assert_eq!(back, s);
        assert_eq!(decode_epoch("/e", &encode_epoch(17)).expect("epoch"), 17);
        assert_eq!(decode_epoch("/e", b"seventeen").expect_err("bad").code, ErrorCode::Internal);
        let err = decode::<StateZnode>("/s", b"{").expect_err("bad json");
        assert!(err.message.contains("/s"), "{}", err.message);
    }
}
