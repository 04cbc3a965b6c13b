//! One validation and placement path for topic changes, shared by every backend: a
//! backend only stores what these functions decide.
//!
//! New partitions are placed with Kafka's rack-aware assignment over the *live* nodes
//! (registered and not shutting down), from a random rotation as Kafka draws one per
//! topic, and start leaderless at epoch 0 with every replica in the ISR; the controller
//! ([`crate::controller::plan`]) elects their leaders.

use crate::model::{ClusterMetadata, NewTopic, NodeInfo, PartitionState, TopicChange, TopicMetadata, MAX_PARTITIONS};
use crate::placement::assign_replicas_rack_aware;
use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};

/// The nodes new replicas may go to: registered and not shutting down, by id, with
/// their racks.
pub fn live_nodes<'a>(nodes: impl IntoIterator<Item = &'a NodeInfo>) -> Vec<(NodeId, Option<String>)> {
    let mut live: Vec<_> = nodes.into_iter().filter(|n| !n.shutting_down).map(|n| (n.id, n.rack.clone())).collect();
    live.sort_unstable();
    live
}

/// A partition count a topic may have: 1 to [`MAX_PARTITIONS`].
pub fn check_partition_count(n: u32) -> Result<()> {
    if n == 0 || n > MAX_PARTITIONS {
        return Err(FjordError::new(
            ErrorCode::InvalidPartitions,
            format!("partition count must be between 1 and {MAX_PARTITIONS}, got {n}"),
        ));
    }
    Ok(())
}

/// What every backend checks before creating `spec`: the name and the partition count.
/// (The replication factor is checked by the placement, against the live nodes.)
pub fn check_new_topic(spec: &NewTopic) -> Result<()> {
    crate::model::validate_topic_name(&spec.name)?;
    check_partition_count(spec.partitions)
}

/// The partitions of a new topic, or new partitions `first..first + count` of an
/// existing one, placed on `live` with `replication_factor` replicas each.
pub fn new_partitions(
    live: &[(NodeId, Option<String>)],
    first: u32,
    count: u32,
    replication_factor: u32,
) -> Result<Vec<PartitionState>> {
    let (start, shift) = random_rotation();
    let assignment = assign_replicas_rack_aware(live, first, count, replication_factor, start, shift)?;
    Ok(assignment.into_iter().zip(first..).map(|(replicas, partition)| new_partition(partition, replicas)).collect())
}

/// A partition as created: no leader, epoch 0, every replica in sync.
pub fn new_partition(partition: u32, replicas: Vec<NodeId>) -> PartitionState {
    PartitionState { partition, isr: replicas.clone(), replicas, leader: None, leader_epoch: 0, version: 0 }
}

/// The topic `spec` describes, with a fresh topic id, placed on `meta`'s live nodes.
pub fn plan_new_topic(meta: &ClusterMetadata, spec: NewTopic) -> Result<TopicMetadata> {
    check_new_topic(&spec)?;
    if meta.topics.contains_key(&spec.name) {
        return Err(already_exists(&spec.name));
    }
    let partitions = new_partitions(&live_nodes(meta.nodes.values()), 0, spec.partitions, spec.replication_factor)?;
    Ok(TopicMetadata { name: spec.name, topic_id: new_topic_id(), config: spec.config, partitions })
}

/// How many partitions `change` adds to a topic that has `current` (0 when it adds
/// none); refuses a count out of range or a decrease.
pub fn added_partitions(name: &str, current: u32, change: &TopicChange) -> Result<u32> {
    let Some(n) = change.partitions else { return Ok(0) };
    check_partition_count(n)?;
    if n < current {
        return Err(FjordError::new(
            ErrorCode::InvalidPartitions,
            format!("topic `{name}` has {current} partitions; the count can only grow, not shrink to {n}"),
        ));
    }
    Ok(n - current)
}

pub fn already_exists(name: &str) -> FjordError {
    FjordError::new(ErrorCode::TopicAlreadyExists, format!("topic `{name}` already exists"))
}

pub fn unknown_topic(name: &str) -> FjordError {
    FjordError::new(ErrorCode::UnknownTopic, format!("topic `{name}` does not exist"))
}

/// A new topic incarnation's id: a UUID in hex, no dashes (store names embed it).
pub fn new_topic_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Kafka draws the placement's start index and shift at random per topic.
fn random_rotation() -> (usize, usize) {
    let r = uuid::Uuid::new_v4().as_u128();
    (r as usize, (r >> 64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TopicConfig;

    fn node(id: NodeId, shutting_down: bool) -> NodeInfo {
        NodeInfo { id, endpoint: String::new(), rack: None, shutting_down, offline_replicas: Default::default() }
    }

    #[test]
    fn new_partitions_go_to_live_nodes_leaderless_with_every_replica_in_sync() {
        let mut meta = ClusterMetadata::default();
        for (id, leaving) in [(3, false), (1, false), (2, true)] {
            meta.nodes.insert(id, node(id, leaving));
        }
        assert_eq!(live_nodes(meta.nodes.values()), vec![(1, None), (3, None)]);
        let spec = NewTopic { name: "t".into(), partitions: 4, replication_factor: 2, config: TopicConfig::default() };
        let t = plan_new_topic(&meta, spec.clone()).expect("placed");
        assert_eq!(t.partitions.len(), 4);
        for (i, p) in t.partitions.iter().enumerate() {
            assert_eq!(p.partition as usize, i);
            assert_eq!((p.leader, p.leader_epoch, p.version), (None, 0, 0));
            assert_eq!(p.isr, p.replicas);
            let mut r = p.replicas.clone();
            r.sort_unstable();
            assert_eq!(r, vec![1, 3], "no replica on the leaving node 2: {p:?}");
        }
        let rf3 = plan_new_topic(&meta, NewTopic { replication_factor: 3, ..spec.clone() });
        assert_eq!(rf3.expect_err("two live nodes").code, ErrorCode::InvalidReplicationFactor);
        meta.topics.insert("t".into(), std::sync::Arc::new(t));
        assert_eq!(plan_new_topic(&meta, spec).expect_err("exists").code, ErrorCode::TopicAlreadyExists);
    }

    #[test]
    fn partition_counts_only_grow_within_bounds() {
        let grow = |n| TopicChange { partitions: Some(n), config: None };
        assert_eq!(added_partitions("t", 2, &grow(5)).expect("grow"), 3);
        assert_eq!(added_partitions("t", 2, &grow(2)).expect("same"), 0);
        assert_eq!(added_partitions("t", 2, &TopicChange::default()).expect("config only"), 0);
        for bad in [1, 0, MAX_PARTITIONS + 1] {
            assert_eq!(added_partitions("t", 2, &grow(bad)).expect_err("bad").code, ErrorCode::InvalidPartitions);
        }
    }
}
