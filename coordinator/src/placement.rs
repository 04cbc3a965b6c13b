//! Replica placement: Kafka's rack-unaware round robin
//! (`AdminUtils.assignReplicasToBrokersRackUnaware`). Leaders (first replicas) go round
//! robin from a start index; followers are shifted so that replicas of consecutive
//! partitions do not pile onto the same node pairs.

use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};

/// Assigns `partitions` partitions, numbered from `first_partition`, with
/// `replication_factor` replicas each over `nodes` (sorted ids).
/// `start_index` and `shift` pick the rotation; Kafka draws them at random.
pub fn assign_replicas(
    nodes: &[NodeId],
    first_partition: u32,
    partitions: u32,
    replication_factor: u32,
    start_index: usize,
    shift: usize,
) -> Result<Vec<Vec<NodeId>>> {
    let n = nodes.len();
    if replication_factor == 0 {
        return Err(FjordError::new(ErrorCode::InvalidReplicationFactor, "replication factor must be at least 1"));
    }
    if replication_factor as usize > n {
        return Err(FjordError::new(
            ErrorCode::InvalidReplicationFactor,
            format!("replication factor {replication_factor} is larger than the {n} live storage node(s)"),
        ));
    }
    let mut out = Vec::with_capacity(partitions as usize);
    let start = start_index % n;
    let mut next_shift = shift % n;
    for p in first_partition..first_partition + partitions {
        let p = p as usize;
        if p > 0 && p.is_multiple_of(n) {
            next_shift += 1;
        }
        let first = (p + start) % n;
        let mut replicas = vec![nodes[first]];
        for j in 0..replication_factor as usize - 1 {
            let offset = 1 + (next_shift + j) % (n - 1);
            replicas.push(nodes[(first + offset) % n]);
        }
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn replicas_are_distinct_and_leaders_spread_evenly() {
        let nodes = [1, 2, 3, 4, 5];
        let a = assign_replicas(&nodes, 0, 10, 3, 2, 1).expect("assign");
        assert_eq!(a.len(), 10);
        let mut leaders = BTreeMap::new();
        for r in &a {
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "distinct replicas {r:?}");
            *leaders.entry(r[0]).or_insert(0) += 1;
        }
        assert!(leaders.values().all(|c| *c == 2), "{leaders:?}");
    }

    #[test]
    fn single_node_gets_everything() {
        assert_eq!(assign_replicas(&[7], 0, 3, 1, 0, 0).expect("assign"), vec![vec![7]; 3]);
    }

    #[test]
    fn too_few_nodes_is_a_clear_error() {
        let err = assign_replicas(&[1], 0, 1, 3, 0, 0).expect_err("rf > nodes");
        assert_eq!(err.code, ErrorCode::InvalidReplicationFactor);
        assert!(err.message.contains("larger than the 1 live"));
        assert_eq!(assign_replicas(&[1], 0, 1, 0, 0, 0).expect_err("rf 0").code, ErrorCode::InvalidReplicationFactor);
    }
}
