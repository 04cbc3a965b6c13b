//! Retention and compaction over the API.

use crate::common::*;
use serde_json::{json, Value};

/// Retention by size deletes whole old batches: the log start moves up, reading below it
/// is 416 `offset_out_of_range`, and reading from the new log start (or `earliest`) works.
#[tokio::test]
async fn retention_moves_the_log_start() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "r", "config": {"retention.bytes": 1, "retention.ms": -1}})).await;
    for i in 0..3 {
        h.produce("r", json!([{"value": i}])).await;
    }
    h.node.apply_retention_now().await;

    let described = h.get("/v1/topics/r").await.expect_status(200);
    let log_start = described["partitions"][0]["log_start_offset"].as_u64().expect("log start");
    assert!(log_start > 0, "retention removed nothing: {described}");
    // Kafka's rule: delete while the rest still holds retention.bytes, so only the newest
    // batch (offset 2) stays.
    assert_eq!(log_start, 2);
    assert_eq!(described["partitions"][0]["high_watermark"], 3);

    h.get("/v1/topics/r/partitions/0/records?offset=0").await.expect_error(416, "offset_out_of_range");
    h.get("/v1/topics/r/partitions/0/records?offset=1").await.expect_error(416, "offset_out_of_range");
    let read = h.consume("r", 0, &format!("offset={log_start}")).await;
    assert_eq!(read["records"][0]["offset"], 2);
    assert_eq!(read["records"][0]["value"], 2);
    let earliest = h.consume("r", 0, "offset=earliest").await;
    assert_eq!(earliest["records"][0]["offset"], 2);
    let offsets = h.get("/v1/topics/r/partitions/0/offsets").await.expect_status(200);
    assert_eq!(offsets["log_start_offset"], 2);
    h.shutdown().await;
}

/// A compacted topic (`cleanup.policy` `compact` or `compact,delete`, in either order)
/// is created with the compaction keys shown; a record without a key is refused with
/// 400 `invalid_record` naming the topic, in every body format, and nothing of the
/// request is written (Kafka refuses keyless records on compacted topics too).
#[tokio::test]
async fn a_compacted_topic_refuses_records_without_a_key() {
    let h = Harness::new().await;
    let created = h
        .create_topic(
            json!({"name": "c", "config": {"cleanup.policy": "delete,compact", "delete.retention.ms": "1000"}}),
        )
        .await;
    assert_eq!(created["config"]["cleanup.policy"], "compact,delete", "normalized");
    assert_eq!(created["config"]["delete.retention.ms"], 1000);
    h.patch_json("/v1/topics/c", &json!({"config": {"cleanup.policy": "compact"}})).await.expect_status(200);
    h.produce("c", json!([{"key": "k", "value": 1}])).await;
    let before = h.snapshot().await;

    let message = h
        .post_json("/v1/topics/c/records", &json!({"records": [{"key": "a", "value": 1}, {"value": 2}]}))
        .await
        .expect_error(400, "invalid_record");
    assert!(message.contains("record 1") && message.contains("`c`") && message.contains("key"), "{message}");
    h.post_json("/v1/topics/c/partitions/0/records", &json!({"records": [{"value": null}]}))
        .await
        .expect_error(400, "invalid_record");
    h.post("/v1/topics/c/records", Some("application/x-ndjson"), "{\"key\":\"a\",\"value\":1}\n{\"value\":2}\n")
        .await
        .expect_error(400, "invalid_record");
    h.post("/v1/topics/c/records", Some("application/octet-stream"), "no key")
        .await
        .expect_error(400, "invalid_record");
    assert_eq!(h.snapshot().await, before, "nothing was written");

    // A keyed record (an empty key is a key) and a tombstone are fine.
    h.post("/v1/topics/c/records?key=", Some("application/octet-stream"), "v").await.expect_status(200);
    h.produce("c", json!([{"key": "k", "value": null}])).await;
    assert_eq!(h.high_watermarks("c").await, vec![3]);
    h.shutdown().await;
}

/// Compaction over the API: keys overwritten in separate requests (one batch each) are
/// reduced to their latest record, at its original offset; a read from the start or
/// from inside a gap gets the survivors with the right `next_offset`; the log start, the
/// high watermark and the timestamp look-up are unchanged or skip removed records.
#[tokio::test]
async fn compaction_keeps_the_latest_record_per_key() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "c", "config": {"cleanup.policy": "compact"}})).await;
    let writes = [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2), ("a", 3), ("d", 1)];
    for (i, (k, v)) in writes.iter().enumerate() {
        let placed = h.produce("c", json!([{"key": k, "value": v, "timestamp": 1_000 + i}])).await;
        assert_eq!(placed[0]["offset"], i);
    }
    h.node.compact_now().await;

    let read = h.consume("c", 0, "offset=earliest").await;
    let got: Vec<(u64, String, i64)> = read["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            let offset = r["offset"].as_u64().expect("offset");
            (offset, r["key"].as_str().expect("key").to_owned(), r["value"].as_i64().expect("value"))
        })
        .collect();
    assert_eq!(got, [(3, "c".into(), 1), (4, "b".into(), 2), (5, "a".into(), 3), (6, "d".into(), 1)]);
    assert_eq!(read["next_offset"], 7);
    let inside_gap = h.consume("c", 0, "offset=1").await;
    assert_eq!(inside_gap["records"][0]["offset"], 3, "a read inside a gap starts at the next record");
    assert_eq!(inside_gap["next_offset"], 7);
    let offsets = h.get("/v1/topics/c/partitions/0/offsets?timestamp=1000").await.expect_status(200);
    assert_eq!((offsets["log_start_offset"].clone(), offsets["high_watermark"].clone()), (json!(0), json!(7)));
    assert_eq!(offsets["offset"], 3, "the first record at or after the time that is still there");

    // A topic with the `delete` policy is not compacted.
    h.create_topic(json!({"name": "d"})).await;
    for v in 0..3 {
        h.produce("d", json!([{"key": "k", "value": v}])).await;
    }
    h.node.compact_now().await;
    h.node.apply_retention_now().await;
    assert_eq!(h.consume("d", 0, "offset=earliest").await["records"].as_array().map(Vec::len), Some(3));
    h.shutdown().await;
}

/// The periodic cleanup removes a tombstone once it is older than `delete.retention.ms`
/// even when nothing is written any more: a pass that kept it remembers when it expires
/// instead of waiting for the log to change.
#[tokio::test]
async fn tombstones_expire_without_new_writes() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "c", "config": {"cleanup.policy": "compact,delete", "delete.retention.ms": 1500}}))
        .await;
    let now = fjord_protocol::now_ms();
    h.produce("c", json!([{"key": "k", "value": 1}])).await;
    h.produce("c", json!([{"key": "k", "value": null, "timestamp": now - 1000}])).await;
    h.produce("c", json!([{"key": "other", "value": 1}])).await;
    let offsets = |read: Value| -> Vec<u64> {
        read["records"].as_array().expect("records").iter().map(|r| r["offset"].as_u64().expect("offset")).collect()
    };

    h.node.apply_retention_now().await;
    let kept = offsets(h.consume("c", 0, "offset=earliest").await);
    if fjord_protocol::now_ms() < now + 500 {
        assert_eq!(kept, [1, 2], "the value is gone, the young tombstone stays");
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        h.node.apply_retention_now().await;
        if offsets(h.consume("c", 0, "offset=earliest").await) == [2] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the tombstone was never removed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    h.shutdown().await;
}
