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
    h.shutdown().await;
}
