//! Replica placement, Kafka's algorithms from `AdminUtils` (ZooKeeper mode):
//!
//! - [`assign_replicas`] — `assignReplicasToBrokersRackUnaware`. Leaders (first replicas)
//!   go round robin from a start index; followers are shifted so that replicas of
//!   consecutive partitions do not pile onto the same node pairs.
//! - [`assign_replicas_rack_aware`] — `assignReplicasToBrokers`: the same round robin over
//!   a rack-alternated node list, so each partition's replicas land on as many distinct
//!   racks as possible (KIP-36), falling back to the rack-unaware algorithm when no node
//!   has a rack.

use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};
use std::collections::{BTreeMap, BTreeSet};

/// A replication factor `n` nodes can hold: at least 1, at most `n`.
fn check_replication_factor(replication_factor: u32, n: usize) -> Result<()> {
    if replication_factor == 0 {
        return Err(FjordError::new(ErrorCode::InvalidReplicationFactor, "replication factor must be at least 1"));
    }
    if replication_factor as usize > n {
        return Err(FjordError::new(
            ErrorCode::InvalidReplicationFactor,
            format!("replication factor {replication_factor} is larger than the {n} live storage node(s)"),
        ));
    }
    Ok(())
}

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
    check_replication_factor(replication_factor, n)?;
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

/// Assigns replicas like [`assign_replicas`], but over `nodes` given with their racks
/// (Kafka's `AdminUtils.assignReplicasToBrokers`, KIP-36):
///
/// - no node has a rack → exactly [`assign_replicas`] over the sorted ids;
/// - every node has a rack → each partition's replicas span `min(rf, racks)` distinct
///   racks, and leaders and followers still spread evenly over the nodes;
/// - only some nodes have a rack → an error, as in Kafka: placing replicas by rack while
///   some nodes have none would silently defeat the rack guarantee.
///
/// `nodes` may come in any order; an id given twice is refused. `start_index` and
/// `shift` index the rack-alternated list (Kafka draws them at random).
pub fn assign_replicas_rack_aware(
    nodes: &[(NodeId, Option<String>)],
    first_partition: u32,
    partitions: u32,
    replication_factor: u32,
    start_index: usize,
    shift: usize,
) -> Result<Vec<Vec<NodeId>>> {
    let mut racks = BTreeMap::new();
    for (id, rack) in nodes {
        if racks.insert(*id, rack.as_deref()).is_some() {
            return Err(FjordError::new(ErrorCode::InvalidRequest, format!("node {id} is listed twice")));
        }
    }
    let n = racks.len();
    check_replication_factor(replication_factor, n)?;
    let without_rack: Vec<_> = racks.iter().filter(|(_, r)| r.is_none()).map(|(id, _)| *id).collect();
    if without_rack.len() == n {
        let ids: Vec<_> = racks.keys().copied().collect();
        return assign_replicas(&ids, first_partition, partitions, replication_factor, start_index, shift);
    }
    if !without_rack.is_empty() {
        // Kafka: "Not all brokers have rack information for replica rack aware assignment."
        return Err(FjordError::new(
            ErrorCode::InvalidReplicationFactor,
            format!(
                "rack-aware placement needs a rack on every storage node, but node(s) {without_rack:?} have none; \
                 set `rack` on every node or on none"
            ),
        ));
    }
    let rack_of: BTreeMap<NodeId, &str> = racks.iter().filter_map(|(id, r)| Some((*id, (*r)?))).collect();
    let arranged = rack_alternated(&rack_of);
    let num_racks = rack_of.values().collect::<BTreeSet<_>>().len();
    let start = start_index % n;
    let mut next_shift = shift % n;
    let mut out = Vec::with_capacity(partitions as usize);
    for p in first_partition..first_partition + partitions {
        let p = p as usize;
        if p > 0 && p.is_multiple_of(n) {
            next_shift += 1;
        }
        let first = (p + start) % n;
        let leader = arranged[first];
        let mut replicas = vec![leader];
        let mut used_racks: BTreeSet<&str> = rack_of.get(&leader).copied().into_iter().collect();
        let mut used_nodes = BTreeSet::from([leader]);
        // Kafka walks the list from the leader with a rack-scaled shift and takes the next
        // node whose rack has no replica yet (until every rack has one) and that holds no
        // replica yet. `k` is not reset between replicas, exactly as in Kafka, so the
        // assignment matches Kafka's for the same inputs.
        let mut k = 0usize;
        for _ in 1..replication_factor {
            // n - 1 consecutive `k` visit every other node once, and one of them always
            // qualifies while rf <= n, so this bound only guards against a logic error.
            let mut chosen = None;
            for _ in 0..n {
                let offset = 1 + (next_shift * num_racks + k) % (n - 1).max(1);
                let node = arranged[(first + offset) % n];
                k += 1;
                let rack = rack_of.get(&node).copied().unwrap_or_default();
                let rack_ok = !used_racks.contains(rack) || used_racks.len() == num_racks;
                let node_ok = !used_nodes.contains(&node) || used_nodes.len() == n;
                if rack_ok && node_ok {
                    chosen = Some((node, rack));
                    break;
                }
            }
            let (node, rack) = chosen.ok_or_else(|| {
                FjordError::new(ErrorCode::Internal, format!("rack-aware placement found no replica for partition {p}"))
            })?;
            replicas.push(node);
            used_racks.insert(rack);
            used_nodes.insert(node);
        }
        out.push(replicas);
    }
    Ok(out)
}

/// Kafka's `getRackAlternatedBrokerList`: racks in name order, nodes within a rack in id
/// order, taking one node from each rack in turn. With racks a: 1 2 3, b: 4 5 6,
/// c: 7 8 9 this gives 1 4 7 2 5 8 3 6 9, so round robin over the list alternates racks.
fn rack_alternated(rack_of: &BTreeMap<NodeId, &str>) -> Vec<NodeId> {
    let mut grouped: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    for (id, rack) in rack_of {
        grouped.entry(rack).or_default().push(*id);
    }
    let mut by_rack: Vec<_> = grouped.into_values().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(rack_of.len());
    while out.len() < rack_of.len() {
        for ids in &mut by_rack {
            out.extend(ids.next());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn racked(nodes: &[(NodeId, &str)]) -> Vec<(NodeId, Option<String>)> {
        nodes.iter().map(|(id, rack)| (*id, Some((*rack).to_owned()))).collect()
    }

    /// Kafka's `AdminRackAwareTest.testGetRackAlternatedBrokerListAndAssignReplicasToBrokers`:
    /// the same inputs give the same assignment as Kafka.
    #[test]
    fn matches_kafkas_rack_aware_assignment() {
        let nodes = [(0, "rack1"), (1, "rack3"), (2, "rack3"), (3, "rack2"), (4, "rack2"), (5, "rack1")];
        let rack_of: BTreeMap<NodeId, &str> = nodes.iter().copied().collect();
        assert_eq!(rack_alternated(&rack_of), vec![0, 3, 1, 5, 4, 2]);
        let mut without_5 = rack_of.clone();
        without_5.remove(&5);
        assert_eq!(rack_alternated(&without_5), vec![0, 3, 1, 4, 2]);

        let a = assign_replicas_rack_aware(&racked(&nodes), 0, 7, 3, 0, 0).expect("assign");
        let expected: Vec<Vec<NodeId>> = vec![
            vec![0, 3, 1],
            vec![3, 1, 5],
            vec![1, 5, 4],
            vec![5, 4, 2],
            vec![4, 2, 0],
            vec![2, 0, 3],
            vec![0, 4, 2],
        ];
        assert_eq!(a, expected);
    }

    /// Over many cluster shapes and rotations: replicas are distinct, each partition spans
    /// `min(rf, racks)` racks, and leaders spread evenly (each node leads the same number
    /// of partitions when the partition count is a multiple of the node count).
    #[test]
    fn rack_aware_spreads_replicas_over_racks_and_leaders_over_nodes() {
        let shapes: [&[(NodeId, &str)]; 5] = [
            &[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")],
            &[(1, "a"), (2, "b"), (3, "c")],
            // Uneven racks: a has three nodes, b and c one each.
            &[(10, "a"), (11, "a"), (12, "a"), (20, "b"), (30, "c")],
            &[(1, "a"), (2, "a"), (3, "b")],
            &[(7, "only"), (8, "only"), (9, "only")],
        ];
        for nodes in shapes {
            let n = nodes.len();
            let num_racks = nodes.iter().map(|(_, r)| *r).collect::<BTreeSet<_>>().len();
            let rack_of: BTreeMap<NodeId, &str> = nodes.iter().copied().collect();
            for rf in 1..=n as u32 {
                for (start, shift) in [(0, 0), (1, 2), (n - 1, n + 3)] {
                    let partitions = 4 * n as u32;
                    let a =
                        assign_replicas_rack_aware(&racked(nodes), 0, partitions, rf, start, shift).expect("assign");
                    assert_eq!(a.len(), partitions as usize);
                    let mut leaders = BTreeMap::new();
                    for r in &a {
                        assert_eq!(r.len(), rf as usize);
                        assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), rf as usize, "distinct {r:?} in {nodes:?}");
                        let racks: BTreeSet<_> = r.iter().map(|id| rack_of[id]).collect();
                        assert_eq!(racks.len(), (rf as usize).min(num_racks), "racks of {r:?} in {nodes:?} rf {rf}");
                        *leaders.entry(r[0]).or_insert(0) += 1;
                    }
                    assert_eq!(leaders.len(), n, "every node leads some partition: {leaders:?}");
                    assert!(leaders.values().all(|c| *c == 4), "{leaders:?}");
                }
            }
        }
    }

    #[test]
    fn without_racks_it_is_the_rack_unaware_assignment() {
        let ids = [1, 2, 3, 4, 5];
        // Any input order: the rack-unaware algorithm wants sorted ids.
        let nodes: Vec<_> = [3, 1, 5, 2, 4].iter().map(|id| (*id, None)).collect();
        for (first, count, rf, start, shift) in [(0, 10, 3, 2, 1), (4, 7, 2, 0, 0), (0, 5, 5, 9, 4)] {
            assert_eq!(
                assign_replicas_rack_aware(&nodes, first, count, rf, start, shift).expect("rack aware"),
                assign_replicas(&ids, first, count, rf, start, shift).expect("rack unaware"),
            );
        }
    }

    #[test]
    fn rack_aware_refuses_partial_racks_duplicates_and_bad_factors() {
        let partial = vec![(1, Some("a".to_owned())), (2, None), (3, Some("b".to_owned()))];
        let err = assign_replicas_rack_aware(&partial, 0, 1, 2, 0, 0).expect_err("partial racks");
        assert_eq!(err.code, ErrorCode::InvalidReplicationFactor);
        assert!(err.message.contains("[2]") && err.message.contains("rack"), "{}", err.message);

        let dup = vec![(1, Some("a".to_owned())), (1, Some("b".to_owned()))];
        assert_eq!(assign_replicas_rack_aware(&dup, 0, 1, 1, 0, 0).expect_err("dup").code, ErrorCode::InvalidRequest);

        let nodes = racked(&[(1, "a"), (2, "b")]);
        let err = assign_replicas_rack_aware(&nodes, 0, 1, 3, 0, 0).expect_err("rf > nodes");
        assert_eq!(err.code, ErrorCode::InvalidReplicationFactor);
        assert!(err.message.contains("larger than the 2 live"), "{}", err.message);
        let err = assign_replicas_rack_aware(&nodes, 0, 1, 0, 0, 0).expect_err("rf 0");
        assert_eq!(err.code, ErrorCode::InvalidReplicationFactor);
        assert_eq!(
            assign_replicas_rack_aware(&racked(&[(4, "a")]), 0, 2, 1, 0, 0).expect("one node"),
            vec![vec![4]; 2]
        );
    }
}
