//! Topics: what does not or cannot exist, and topic administration.

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use fjord_gateway::GatewayConfig;
use serde_json::{json, Value};

/// With `auto_create_topics = false`, every route of a missing topic answers 404
/// `unknown_topic`, and producing does not create it.
#[tokio::test]
async fn unknown_topic_is_404_without_auto_create() {
    let h = Harness::with_config(GatewayConfig { auto_create_topics: false, ..Default::default() }).await;
    let record = json!({"records": [{"value": 1}]});
    h.post_json("/v1/topics/nope/records", &record).await.expect_error(404, "unknown_topic");
    h.post_json("/v1/topics/nope/partitions/0/records", &record).await.expect_error(404, "unknown_topic");
    h.post("/v1/topics/nope/records", Some("application/octet-stream"), "raw").await.expect_error(404, "unknown_topic");
    h.get("/v1/topics/nope/partitions/0/records").await.expect_error(404, "unknown_topic");
    h.get("/v1/topics/nope/partitions/0/records?offset=latest&timeout_ms=100").await.expect_error(404, "unknown_topic");
    h.get("/v1/topics/nope/partitions/0/offsets").await.expect_error(404, "unknown_topic");
    h.get("/v1/topics/nope").await.expect_error(404, "unknown_topic");
    h.patch_json("/v1/topics/nope", &json!({"partitions": 2})).await.expect_error(404, "unknown_topic");
    h.request(Method::DELETE, "/v1/topics/nope", None, Body::empty()).await.expect_error(404, "unknown_topic");
    assert!(h.topic_names().await.is_empty());
    h.shutdown().await;
}

/// With auto-create on (the default), the first produce creates the topic with the
/// gateway's default partition count, writes the records, and the topic is listed.
#[tokio::test]
async fn first_produce_auto_creates_the_topic() {
    let h = Harness::with_config(GatewayConfig { default_partitions: 2, ..Default::default() }).await;
    assert!(h.topic_names().await.is_empty());
    let offsets = h.produce("events", json!([{"value": 1, "partition": 1}])).await;
    assert_eq!(offsets, vec![json!({"partition": 1, "offset": 0, "timestamp": offsets[0]["timestamp"]})]);
    let list = h.get("/v1/topics").await.expect_status(200);
    assert_eq!(list["topics"], json!([{"name": "events", "partitions": 2, "replication_factor": 1}]));
    assert_eq!(h.high_watermarks("events").await, vec![0, 1]);
    let read = h.consume("events", 1, "offset=earliest").await;
    assert_eq!(read["records"][0]["value"], 1);

    // The partition route auto-creates too.
    h.post_json("/v1/topics/other/partitions/0/records", &json!({"records": [{"value": 2}]})).await.expect_status(200);
    assert_eq!(h.topic_names().await, vec!["events".to_owned(), "other".to_owned()]);
    h.shutdown().await;
}

/// Names outside `[a-zA-Z0-9._-]{1,249}` (or `.`/`..`) are `invalid_topic_name` on every
/// route — produce (even with auto-create on), consume, offsets, describe, alter, delete,
/// create — and no topic is created.
#[tokio::test]
async fn invalid_topic_names_are_refused_everywhere() {
    let h = Harness::new().await;
    let long = "x".repeat(250);
    let record = json!({"records": [{"value": 1}]});
    for name in ["bad%20name", long.as_str(), "..", ".", "%C3%BC", "a%2Fb"] {
        h.post_json(&format!("/v1/topics/{name}/records"), &record).await.expect_error(400, "invalid_topic_name");
        h.post_json(&format!("/v1/topics/{name}/partitions/0/records"), &record)
            .await
            .expect_error(400, "invalid_topic_name");
        h.post(&format!("/v1/topics/{name}/records?key=k"), Some("application/octet-stream"), "v")
            .await
            .expect_error(400, "invalid_topic_name");
        h.get(&format!("/v1/topics/{name}/partitions/0/records")).await.expect_error(400, "invalid_topic_name");
        h.get(&format!("/v1/topics/{name}/partitions/0/offsets")).await.expect_error(400, "invalid_topic_name");
        h.get(&format!("/v1/topics/{name}")).await.expect_error(400, "invalid_topic_name");
        h.patch_json(&format!("/v1/topics/{name}"), &json!({"partitions": 2}))
            .await
            .expect_error(400, "invalid_topic_name");
        h.request(Method::DELETE, &format!("/v1/topics/{name}"), None, Body::empty())
            .await
            .expect_error(400, "invalid_topic_name");
    }
    for name in ["bad name", long.as_str(), "..", ".", "", "ü", "a/b"] {
        h.post_json("/v1/topics", &json!({"name": name})).await.expect_error(400, "invalid_topic_name");
    }
    // 249 characters is the longest valid name.
    h.create_topic(json!({"name": "y".repeat(249)})).await;
    assert_eq!(h.topic_names().await, vec!["y".repeat(249)]);
    h.shutdown().await;
}

/// Partitions that do not exist are 404 `unknown_partition` (path or record field, and
/// nothing is written); a non-numeric path partition and a record partition that
/// disagrees with the path are 400 `invalid_request`.
#[tokio::test]
async fn unknown_and_malformed_partitions() {
    let h = harness_with_topic(2).await;
    let before = h.snapshot().await;
    let one = json!({"records": [{"value": 1}]});
    h.post_json("/v1/topics/t/partitions/99/records", &one).await.expect_error(404, "unknown_partition");
    h.post("/v1/topics/t/partitions/2/records", Some("application/octet-stream"), "v")
        .await
        .expect_error(404, "unknown_partition");
    h.post_json("/v1/topics/t/records", &json!({"records": [{"value": 1}, {"value": 2, "partition": 99}]}))
        .await
        .expect_error(404, "unknown_partition");
    h.post("/v1/topics/t/records?partition=2", Some("application/octet-stream"), "v")
        .await
        .expect_error(404, "unknown_partition");
    h.get("/v1/topics/t/partitions/99/records").await.expect_error(404, "unknown_partition");
    h.get("/v1/topics/t/partitions/2/offsets").await.expect_error(404, "unknown_partition");
    for bad in ["abc", "-1", "1.5", "4294967296"] {
        h.post_json(&format!("/v1/topics/t/partitions/{bad}/records"), &one).await.expect_error(400, "invalid_request");
        h.get(&format!("/v1/topics/t/partitions/{bad}/records")).await.expect_error(400, "invalid_request");
        h.get(&format!("/v1/topics/t/partitions/{bad}/offsets")).await.expect_error(400, "invalid_request");
    }
    let message = h
        .post_json(
            "/v1/topics/t/partitions/0/records",
            &json!({"records": [{"value": 1}, {"value": 2, "partition": 1}]}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert!(message.contains("record 1") && message.contains("partition"), "{message}");
    // An unknown partition must not auto-create a missing topic either.
    h.post_json("/v1/topics/fresh/records", &json!({"records": [{"value": 1, "partition": 5}]}))
        .await
        .expect_error(404, "unknown_partition");
    assert_eq!(h.snapshot().await, before);

    // A record partition equal to the path partition is fine.
    h.post_json("/v1/topics/t/partitions/1/records", &json!({"records": [{"value": 1, "partition": 1}]}))
        .await
        .expect_status(200);
    assert_eq!(h.high_watermarks("t").await, vec![1, 1]);
    h.shutdown().await;
}

/// Creating a topic validates partitions, replication factor, config keys and values
/// (naming the bad key) and the body's fields; a duplicate is 409 and leaves the
/// existing topic as it was. Nothing is created by a refused request.
#[tokio::test]
async fn create_topic_validates_its_input() {
    let h = Harness::new().await;
    let cases = [
        (json!({"name": "a", "partitions": 0}), 400, "invalid_partitions", "partition"),
        (json!({"name": "a", "partitions": 10_001}), 400, "invalid_partitions", "partition"),
        (json!({"name": "a", "replication_factor": 3}), 400, "invalid_replication_factor", "replication factor"),
        (json!({"name": "a", "replication_factor": 0}), 400, "invalid_replication_factor", "replication factor"),
        (json!({"name": "a", "config": {"retention.mss": 1}}), 400, "invalid_config", "retention.mss"),
        (json!({"name": "a", "config": {"retention.ms": "soon"}}), 400, "invalid_config", "retention.ms"),
        (json!({"name": "a", "config": {"min.insync.replicas": 0}}), 400, "invalid_config", "min.insync.replicas"),
        (json!({"name": "a", "config": {"cleanup.policy": "shred"}}), 400, "invalid_config", "cleanup.policy"),
        (json!({"name": "a", "config": {"cleanup.policy": "compact,shred"}}), 400, "invalid_config", "cleanup.policy"),
        (json!({"name": "a", "config": {"delete.retention.ms": -1}}), 400, "invalid_config", "delete.retention.ms"),
        (
            json!({"name": "a", "config": {"min.compaction.lag.ms": "x"}}),
            400,
            "invalid_config",
            "min.compaction.lag.ms",
        ),
        (json!({"name": "a", "partitionz": 2}), 400, "invalid_json", "partitionz"),
        (json!({"name": "a", "partitions": "2"}), 400, "invalid_json", "invalid type"),
        (json!({"partitions": 2}), 400, "invalid_json", "name"),
    ];
    for (spec, status, code, named) in cases {
        let message = h.post_json("/v1/topics", &spec).await.expect_error(status, code);
        assert!(message.contains(named), "`{message}` should name {named}");
    }
    h.post("/v1/topics", Some("application/json"), "{").await.expect_error(400, "invalid_json");
    assert!(h.topic_names().await.is_empty());

    let created = h
        .create_topic(json!({"name": "a", "partitions": 2, "config": {"retention.ms": "1000", "retention.bytes": 5}}))
        .await;
    assert_eq!(created["name"], "a");
    assert_eq!(created["partitions"].as_array().map(Vec::len), Some(2));
    assert_eq!(created["config"]["retention.ms"], 1000);
    assert_eq!(created["config"]["retention.bytes"], 5);
    assert_eq!(created["config"]["max.message.bytes"], 1_048_588);
    assert_eq!(created["config"]["cleanup.policy"], "delete");
    assert_eq!(created["config"]["delete.retention.ms"], 86_400_000);
    assert_eq!(created["config"]["min.compaction.lag.ms"], 0);
    let message = h
        .post_json("/v1/topics", &json!({"name": "a", "partitions": 5}))
        .await
        .expect_error(409, "topic_already_exists");
    assert!(message.contains("`a`"), "{message}");
    let described = h.get("/v1/topics/a").await.expect_status(200);
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(2));
    assert_eq!(described["topic_id"], created["topic_id"]);
    h.shutdown().await;
}

/// PATCH: the partition count only grows (a shrink is `invalid_partitions` and changes
/// nothing); new partitions accept produce at once; config changes show in GET and other
/// keys keep their values; bad config and empty changes are refused.
#[tokio::test]
async fn alter_topic_grows_partitions_and_changes_config() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2, "config": {"retention.bytes": 1000}})).await;
    h.produce("t", json!([{"value": 1, "partition": 1}])).await;

    h.patch_json("/v1/topics/t", &json!({"partitions": 1})).await.expect_error(400, "invalid_partitions");
    h.patch_json("/v1/topics/t", &json!({"partitions": 0})).await.expect_error(400, "invalid_partitions");
    h.patch_json("/v1/topics/t", &json!({"partitions": 3, "config": {"bogus.key": 1}}))
        .await
        .expect_error(400, "invalid_config");
    h.patch_json("/v1/topics/t", &json!({})).await.expect_error(400, "invalid_request");
    h.patch_json("/v1/topics/t", &json!({"partitons": 3})).await.expect_error(400, "invalid_json");
    assert_eq!(h.high_watermarks("t").await, vec![0, 1], "refused changes leave the partitions as they were");

    let grown = h.patch_json("/v1/topics/t", &json!({"partitions": 4})).await.expect_status(200);
    assert_eq!(grown["partitions"].as_array().map(Vec::len), Some(4));
    for p in 2..4 {
        let reply =
            h.post_json(&format!("/v1/topics/t/partitions/{p}/records"), &json!({"records": [{"value": p}]})).await;
        let placed = &reply.expect_status(200)["offsets"][0];
        assert_eq!((placed["partition"].clone(), placed["offset"].clone()), (json!(p), json!(0)));
    }
    assert_eq!(h.high_watermarks("t").await, vec![0, 1, 1, 1]);
    let list = h.get("/v1/topics").await.expect_status(200);
    assert_eq!(list["topics"][0]["partitions"], 4);

    let changed =
        h.patch_json("/v1/topics/t", &json!({"config": {"retention.ms": -1, "max.message.bytes": "500"}})).await;
    changed.expect_status(200);
    let config = h.get("/v1/topics/t").await.expect_status(200)["config"].clone();
    assert_eq!(config["retention.ms"], -1);
    assert_eq!(config["max.message.bytes"], 500);
    assert_eq!(config["retention.bytes"], 1000, "keys not named keep their value");
    // The new max.message.bytes is enforced.
    h.post("/v1/topics/t/partitions/0/records", Some("application/octet-stream"), vec![0u8; 501])
        .await
        .expect_error(413, "record_too_large");
    // null resets a key to its default.
    h.patch_json("/v1/topics/t", &json!({"config": {"retention.bytes": null}})).await.expect_status(200);
    let config = h.get("/v1/topics/t").await.expect_status(200)["config"].clone();
    assert_eq!(config["retention.bytes"], -1);
    assert_eq!(config["retention.ms"], -1);
    h.shutdown().await;
}

/// DELETE removes the topic and its data: 204, then every route says 404; deleting it
/// again or deleting an unknown topic is 404. A topic re-created under the same name
/// starts empty — the old records are gone.
#[tokio::test]
async fn delete_topic_removes_it_and_its_data() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t"})).await;
    h.produce("t", json!([{"value": "old-1"}, {"value": "old-2"}, {"value": "old-3"}])).await;
    assert_eq!(h.high_watermarks("t").await, vec![3]);

    let deleted = h.request(Method::DELETE, "/v1/topics/t", None, Body::empty()).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.body.is_empty());
    h.get("/v1/topics/t").await.expect_error(404, "unknown_topic");
    h.get("/v1/topics/t/partitions/0/records").await.expect_error(404, "unknown_topic");
    assert!(h.topic_names().await.is_empty());
    h.request(Method::DELETE, "/v1/topics/t", None, Body::empty()).await.expect_error(404, "unknown_topic");
    h.request(Method::DELETE, "/v1/topics/never", None, Body::empty()).await.expect_error(404, "unknown_topic");

    // Re-created under the same name: empty, and what is produced to it stays — also
    // after the storage node has applied the new metadata (deleting the old data).
    h.create_topic(json!({"name": "t"})).await;
    assert_eq!(h.high_watermarks("t").await, vec![0], "a re-created topic starts empty");
    let read = h.consume("t", 0, "offset=earliest").await;
    assert_eq!(read, json!({"records": [], "next_offset": 0, "high_watermark": 0}));
    let offsets = h.produce("t", json!([{"value": "new"}])).await;
    assert_eq!(offsets[0]["offset"], 0, "the first record of the re-created topic");
    h.node.sync_with_metadata().await.expect("the node applies the metadata");
    let read = h.consume("t", 0, "offset=earliest").await;
    let values: Vec<&Value> = read["records"].as_array().expect("records").iter().map(|r| &r["value"]).collect();
    assert_eq!(values, [&json!("new")], "only the acknowledged record of the new topic");
    h.shutdown().await;
}
