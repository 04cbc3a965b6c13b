//! `GET /metrics`: the process's Prometheus metrics in the OpenMetrics text format, with
//! values that match what the test did.

use crate::common::*;
use serde_json::json;

/// The value of the sample `name{labels}` in an OpenMetrics text, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Requests are counted by route template and status (a topic name is never a route
/// label), records produced and consumed by topic; the storage node's partition gauges
/// (log end, high watermark, leadership, ISR) and node gauges are what the partitions
/// hold, and a group's members, generation, committed offset and lag are what it did;
/// the answer is OpenMetrics text ending in `# EOF`.
#[tokio::test]
async fn metrics_count_what_was_done() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    for i in 0..3 {
        h.produce("t", json!([{"value": i, "partition": 0}, {"value": i, "partition": 1}])).await;
    }
    h.post_json("/v1/topics/t/records", &json!({"records": [{"value": "x", "partition": 0}]})).await.expect_status(200);
    h.get("/v1/topics/nope/partitions/0/records").await.expect_error(404, "unknown_topic");
    h.get("/no/such/route").await.expect_error(404, "not_found");
    let read = h.consume("t", 0, "offset=0&max_records=3").await;
    assert_eq!(read["records"].as_array().map(Vec::len), Some(3));

    // A group with a member that committed offset 2 of partition 0's 4 records.
    let join = json!({"topics": ["t"], "auto_commit": false, "auto_offset_reset": "earliest"});
    let joined = h.post_json("/v1/groups/g/members", &join).await.expect_status(200);
    let member = joined["member_id"].as_str().expect("member id").to_owned();
    let polled = h.get(&format!("/v1/groups/g/members/{member}/records?timeout_ms=0")).await.expect_status(200);
    let commit = json!({"member_id": member, "generation": polled["generation"],
                        "offsets": [{"topic": "t", "partition": 0, "offset": 2}]});
    h.post_json("/v1/groups/g/offsets", &commit).await.expect_no_content();

    let reply = h.get("/metrics").await;
    assert_eq!(reply.status.as_u16(), 200);
    let content_type = reply.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = reply.text();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    let produce = r#"route="/v1/topics/{topic}/records",method="POST",status="200""#;
    assert_eq!(sample(&text, &format!("fjord_gateway_requests_total{{{produce}}}")), Some(4.0), "{text}");
    let consume = r#"route="/v1/topics/{topic}/partitions/{partition}/records",method="GET""#;
    assert_eq!(sample(&text, &format!("fjord_gateway_requests_total{{{consume},status=\"404\"}}")), Some(1.0));
    assert_eq!(sample(&text, &format!("fjord_gateway_requests_total{{{consume},status=\"200\"}}")), Some(1.0));
    assert_eq!(
        sample(&text, r#"fjord_gateway_requests_total{route="unmatched",method="GET",status="404"}"#),
        Some(1.0)
    );
    assert!(!text.contains("nope"), "a path's topic name must not become a label");
    assert_eq!(sample(&text, &format!("fjord_gateway_request_duration_seconds_count{{{consume}}}")), Some(2.0));
    assert_eq!(sample(&text, r#"fjord_gateway_produced_records_total{topic="t"}"#), Some(7.0));
    // The read's 3 records, then the group poll's 7.
    assert_eq!(sample(&text, r#"fjord_gateway_consumed_records_total{topic="t"}"#), Some(10.0));
    // Each value is one byte of JSON ("0", "1", "2"; the 4th record's is "\"x\"": 3).
    assert_eq!(sample(&text, r#"fjord_gateway_consumed_bytes_total{topic="t"}"#), Some(12.0));
    assert_eq!(sample(&text, r#"fjord_group_members{group="g"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"fjord_group_generation{group="g"}"#), polled["generation"].as_f64());
    assert_eq!(sample(&text, r#"fjord_group_committed_offset{group="g",topic="t",partition="0"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"fjord_group_lag{group="g",topic="t",partition="0"}"#), Some(2.0));

    // The storage node's gauges: partition 0 holds 4 records, partition 1 three.
    assert_eq!(sample(&text, r#"fjord_partition_log_end_offset{topic="t",partition="0"}"#), Some(4.0));
    assert_eq!(sample(&text, r#"fjord_partition_high_watermark{topic="t",partition="1"}"#), Some(3.0));
    assert_eq!(sample(&text, r#"fjord_partition_leader{topic="t",partition="1"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"fjord_partition_under_replicated{topic="t",partition="0"}"#), Some(0.0));
    // t's 2 partitions and the 16 of __consumer_offsets, created by the group calls.
    let offsets_partitions = f64::from(fjord_gateway::GatewayConfig::default().offsets_topic_partitions);
    assert_eq!(sample(&text, "fjord_node_leader_partitions"), Some(2.0 + offsets_partitions));
    assert_eq!(sample(&text, "fjord_node_under_replicated_partitions"), Some(0.0));
    assert_eq!(sample(&text, "fjord_controller_active"), Some(1.0));
    assert_eq!(sample(&text, "fjord_controller_preferred_replica_imbalance_count"), Some(0.0));
    // The controller (in this process, counting into the node's metrics) became it once
    // and elected the first leader of each of the 18 partitions.
    assert_eq!(sample(&text, "fjord_controller_activations_total"), Some(1.0));
    let elections = |kind: &str| sample(&text, &format!("fjord_controller_leader_elections_total{{kind=\"{kind}\"}}"));
    assert_eq!(elections("clean"), Some(2.0 + offsets_partitions));
    assert_eq!((elections("unclean"), elections("preferred")), (Some(0.0), Some(0.0)));
    // One replica per partition: no follower, no ISR change; no ZooKeeper session.
    assert_eq!(sample(&text, "fjord_node_isr_shrinks_total"), Some(0.0));
    let samples_of = |name: &str| text.lines().filter(|l| l.starts_with(name)).count();
    assert_eq!(samples_of("fjord_partition_follower_lag_"), 0, "no follower: {text}");
    assert!(!text.contains("fjord_zookeeper_") && !text.contains("fjord_gateway_zookeeper"), "embedded coordinator");
    // RocksDB's figures, per column family.
    assert!(sample(&text, r#"fjord_rocksdb_memtable_bytes{family="log"}"#).is_some_and(|v| v > 0.0), "{text}");
    assert_eq!(sample(&text, "fjord_rocksdb_block_cache_capacity_bytes"), Some(f64::from(8u32 << 20)));
    assert_eq!(sample(&text, r#"fjord_rocksdb_write_stalls_total{family="log",kind="stop"}"#), Some(0.0));
    h.shutdown().await;
}

/// The storage node's request figures move by exactly what one request did: a produce
/// of two partitions with `acks=1` is two leader produces and two batches written (in one
/// or two storage writes), and one partition read is one consumer read of stored batches.
#[tokio::test]
async fn node_request_figures_move_by_what_one_request_did() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    h.produce("t", json!([{"value": 0, "partition": 0}])).await;
    let figures = |text: &str| {
        let s = |series: &str| sample(text, series).unwrap_or_else(|| panic!("{series} missing: {text}"));
        (
            s(r#"fjord_node_produce_duration_seconds_count{acks="1"}"#),
            s("fjord_node_group_commit_batches_sum"),
            s("fjord_node_append_write_duration_seconds_count"),
            s(r#"fjord_node_fetch_read_duration_seconds_count{kind="consumer"}"#),
        )
    };
    let before = figures(&h.get("/metrics").await.text());
    let records = json!({"records": [{"value": 1, "partition": 0}, {"value": 2, "partition": 1}]});
    h.post_json("/v1/topics/t/records?acks=1", &records).await.expect_status(200);
    h.consume("t", 0, "offset=0").await;
    let after = figures(&h.get("/metrics").await.text());
    assert_eq!(after.0 - before.0, 2.0, "two leader produces");
    assert_eq!(after.1 - before.1, 2.0, "two batches written");
    assert!((1.0..=2.0).contains(&(after.2 - before.2)), "one or two storage writes: {before:?} -> {after:?}");
    assert_eq!(after.3 - before.3, 1.0, "one consumer read");
    h.shutdown().await;
}
