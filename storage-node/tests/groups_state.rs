//! The group coordinator over a real storage node (RocksDB in a temp dir) and the
//! embedded metadata store with its controller.

use fjord_coordinator::{Coordinator, EmbeddedCoordinator, NewTopic, TopicConfig};
use fjord_protocol::group::{CommitOffset, GroupRequest, GroupResponse, JoinGroup, OffsetReset, OFFSETS_TOPIC};
use fjord_protocol::{Batch, FetchRequest, NodeApi, TopicPartition};
use fjord_storage_node::{NodeConfig, StorageNode};
use std::sync::Arc;
use std::time::Duration;

async fn start(dir: &std::path::Path, coordinator: Arc<dyn Coordinator>) -> Arc<StorageNode> {
    let config = NodeConfig {
        data_dir: dir.to_owned(),
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 8 << 20,
        ..Default::default()
    };
    StorageNode::start(&config, coordinator, "in-process".into()).await.expect("node starts")
}

async fn records_in(node: &StorageNode, tp: &TopicPartition) -> usize {
    let mut n = 0;
    let mut offset = 0;
    loop {
        let r = node
            .fetch(FetchRequest { tp: tp.clone(), offset, max_bytes: 1 << 20, max_wait: Duration::ZERO })
            .await
            .expect("fetch");
        let mut next = offset;
        for b in r.batches {
            let batch = Batch::parse(b).expect("batch");
            n += batch.records().filter(|rec| rec.offset >= offset && rec.offset < r.high_watermark).count();
            next = next.max(batch.next_offset());
        }
        if next >= r.high_watermark || next == offset {
            return n;
        }
        offset = next;
    }
}

/// A group's state survives compaction of its offsets-topic partition and a restart
/// of its coordinator: after many commits, compaction leaves one record per key (so
/// the partition stops growing with commits), and a new coordinator rebuilt from
/// the compacted log knows the member, its generation and assignment, and the last
/// committed offset of every partition.
#[tokio::test]
async fn group_state_survives_compaction_and_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator: Arc<dyn Coordinator> = Arc::new(EmbeddedCoordinator::in_memory());
    let node = start(dir.path(), coordinator.clone()).await;
    let _controller = fjord_coordinator::controller::spawn(coordinator.clone(), node.id());
    for (name, config) in [("t", TopicConfig::default()), (OFFSETS_TOPIC, TopicConfig::offsets_topic())] {
        let spec =
            NewTopic { name: name.into(), partitions: if name == "t" { 2 } else { 1 }, replication_factor: 1, config };
        coordinator.create_topic(spec).await.expect("create topic");
    }
    let mut rx = coordinator.metadata();
    tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|m| m.topics.values().all(|t| t.partitions.iter().all(|p| p.leader.is_some()))),
    )
    .await
    .expect("leaders within 10 s")
    .expect("metadata feed");
    node.sync_with_metadata().await.expect("sync");

    let join = JoinGroup {
        group: "g".into(),
        topics: vec!["t".into()],
        session_timeout_ms: 60_000,
        auto_offset_reset: OffsetReset::Earliest,
        assignor: fjord_protocol::group::Assignor::Range,
        auto_commit: false,
        client_id: Some("w".into()),
    };
    let GroupResponse::Joined(m) = node.group(GroupRequest::Join(join)).await.expect("join") else {
        panic!("join answer")
    };
    assert_eq!(m.assignment.len(), 2, "a lone member owns both partitions: {m:?}");
    for i in 1..=50u64 {
        let offsets = (0..2)
            .map(|p| CommitOffset { topic: "t".into(), partition: p, offset: i * 10 + u64::from(p), metadata: None })
            .collect();
        let commit = GroupRequest::Commit {
            group: "g".into(),
            member_id: Some(m.member_id.clone()),
            generation: Some(m.generation),
            offsets,
        };
        node.group(commit).await.expect("commit");
    }
    let tp = TopicPartition::new(OFFSETS_TOPIC, 0);
    let before = records_in(&node, &tp).await;
    assert!(before >= 101, "one record per commit and partition plus the group record: {before}");
    node.compact_now().await;
    let after = records_in(&node, &tp).await;
    // One group record and two offset records survive, plus the newest batch, which
    // compaction leaves alone.
    assert!(after <= 5, "compaction left {after} of {before} records");

    node.shutdown().await;
    drop(node);
    let node = start(dir.path(), coordinator.clone()).await;
    let GroupResponse::Described(d) = node.group(GroupRequest::Describe { group: "g".into() }).await.expect("describe")
    else {
        panic!("describe answer")
    };
    assert_eq!(d.generation, m.generation);
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, m.member_id);
    assert_eq!(d.members[0].assignment, m.assignment);
    let committed: Vec<(u32, u64)> = d.offsets.iter().map(|o| (o.partition, o.offset)).collect();
    assert_eq!(committed, [(0, 500), (1, 501)]);
    node.shutdown().await;
}
