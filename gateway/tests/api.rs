//! HTTP handler tests of the gateway: the whole router over a real storage node (RocksDB
//! in a temp dir) and the embedded coordinator, driven with `oneshot` (no socket).
//!
//! Every rejected request is checked for its status, its stable error `code`, and — for
//! produce and create — for having changed nothing: no high watermark moved and no topic
//! appeared (a rejected produce must not auto-create its topic).

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::Harness;
use fjord_gateway::GatewayConfig;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------
// Harness: the shared one (common/mod.rs) plus what these tests compare
// ---------------------------------------------------------------------------------------

/// What the tests compare to prove a request changed nothing: every topic with the high
/// watermark of each of its partitions.
type Snapshot = BTreeMap<String, Vec<u64>>;

impl Harness {
    /// Consumes, asserting 200.
    async fn consume(&self, topic: &str, partition: u32, query: &str) -> Value {
        self.get(&format!("/v1/topics/{topic}/partitions/{partition}/records?{query}")).await.expect_status(200)
    }

    /// The high watermark of every partition of `topic`, as GET /v1/topics/{t} shows it
    /// (or the offsets route when the describe could not reach the leader in time).
    async fn high_watermarks(&self, topic: &str) -> Vec<u64> {
        let described = self.get(&format!("/v1/topics/{topic}")).await.expect_status(200);
        let mut out = Vec::new();
        for p in described["partitions"].as_array().expect("partitions array") {
            let hw = match p["high_watermark"].as_u64() {
                Some(hw) => hw,
                None => {
                    let n = p["partition"].as_u64().expect("partition number");
                    let offsets = self.get(&format!("/v1/topics/{topic}/partitions/{n}/offsets")).await;
                    offsets.expect_status(200)["high_watermark"].as_u64().expect("high watermark")
                }
            };
            out.push(hw);
        }
        out
    }

    async fn topic_names(&self) -> Vec<String> {
        let list = self.get("/v1/topics").await.expect_status(200);
        list["topics"]
            .as_array()
            .expect("topics array")
            .iter()
            .map(|t| t["name"].as_str().expect("topic name").to_owned())
            .collect()
    }

    async fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot::new();
        for name in self.topic_names().await {
            let hws = self.high_watermarks(&name).await;
            out.insert(name, hws);
        }
        out
    }
}

/// A topic `t` with `partitions` partitions and one record already on partition 0, so
/// that "nothing written" is checked against a non-empty log.
async fn harness_with_topic(partitions: u32) -> Harness {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": partitions})).await;
    h.produce("t", json!([{"value": "seed", "partition": 0}])).await;
    h
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Produce: bad input
// ---------------------------------------------------------------------------------------

/// Malformed or ill-typed JSON bodies, conflicting or invalid fields, empty record lists
/// and negative timestamps are refused with their documented code, and neither write to
/// an existing topic nor auto-create a missing one.
#[tokio::test]
async fn produce_rejects_bad_json_bodies_and_writes_nothing() {
    let h = harness_with_topic(1).await;
    let before = h.snapshot().await;
    let cases: &[(&str, u16, &str)] = &[
        (r#"{"records": ["#, 400, "invalid_json"),
        ("", 400, "invalid_json"),
        ("{}", 400, "invalid_json"),
        (r#"{"records": [{"value": 1, "partition": "x"}]}"#, 400, "invalid_json"),
        (r#"{"records": 5}"#, 400, "invalid_json"),
        (r#"{"records": [{"value_base64": 5}]}"#, 400, "invalid_json"),
        (r#"{"records": [{"key": 7, "value": 1}]}"#, 400, "invalid_json"),
        (r#"{"records": [{"valeu": 1}]}"#, 400, "invalid_json"),
        (r#"{"records": [{"value": 1}], "extra": true}"#, 400, "invalid_json"),
        (r#"{"records": [{"value": 1, "headers": [{"name": "h", "valeu": "x"}]}]}"#, 400, "invalid_json"),
        (r#"{"records": [{"value": 1, "value_base64": "AA=="}]}"#, 400, "invalid_request"),
        (r#"{"records": [{"key": "a", "key_base64": "YQ==", "value": 1}]}"#, 400, "invalid_request"),
        (
            r#"{"records": [{"value": 1, "headers": [{"name": "h", "value": "a", "value_base64": "YQ=="}]}]}"#,
            400,
            "invalid_request",
        ),
        (r#"{"records": [{"value_base64": "not base64!"}]}"#, 400, "invalid_base64"),
        (r#"{"records": [{"key_base64": "***", "value": 1}]}"#, 400, "invalid_base64"),
        (r#"{"records": [{"value": 1, "headers": [{"name": "h", "value_base64": "%%"}]}]}"#, 400, "invalid_base64"),
        (r#"{"records": []}"#, 400, "invalid_request"),
        (r#"{"records": [{"value": 1, "timestamp": -5}]}"#, 400, "invalid_request"),
    ];
    for (body, status, code) in cases {
        for topic in ["t", "fresh"] {
            for uri in [format!("/v1/topics/{topic}/records"), format!("/v1/topics/{topic}/partitions/0/records")] {
                let reply = h.post(&uri, Some("application/json"), *body).await;
                let message = reply.expect_error(*status, code);
                if *code == "invalid_base64" {
                    assert!(message.contains("base64"), "{message}");
                }
            }
        }
    }
    assert_eq!(h.snapshot().await, before, "a rejected produce changed the log or created a topic");
    h.shutdown().await;
}

/// Validation is all or nothing across the whole request: one bad record anywhere (bad
/// base64, a tombstone with a negative timestamp, an unknown partition) keeps every
/// record, on every partition, from being written.
#[tokio::test]
async fn a_bad_record_in_the_middle_writes_nothing() {
    let h = harness_with_topic(3).await;
    let before = h.snapshot().await;
    // "alice" goes to partition 0 and "carol" to 2: the good records span partitions.
    let good = |k: &str| json!({"key": k, "value": {"ok": true}});
    let cases = [
        (json!({"value_base64": "!!!"}), 400, "invalid_base64"),
        (json!({"key": "x", "timestamp": -1}), 400, "invalid_request"),
        (json!({"value": 1, "partition": 99}), 404, "unknown_partition"),
        (json!({"value": 1, "value_base64": "AA=="}), 400, "invalid_request"),
    ];
    for (bad, status, code) in cases {
        let records = json!([good("alice"), good("carol"), bad, good("alice")]);
        let reply = h.post_json("/v1/topics/t/records", &json!({ "records": records })).await;
        let message = reply.expect_error(status, code);
        if code != "unknown_partition" {
            assert!(message.contains("record 2"), "the message names the bad record: {message}");
        }
    }
    assert_eq!(h.snapshot().await, before);
    h.shutdown().await;
}

/// NDJSON: a malformed line is `invalid_json` naming the line number (blank lines count),
/// and none of the good lines before it are written.
#[tokio::test]
async fn ndjson_bad_line_is_named_and_nothing_is_written() {
    let h = harness_with_topic(1).await;
    let before = h.snapshot().await;
    let cases = [
        ("{\"value\": 1}\n\n{\"value\": 2}\n{\"value\":\n", "invalid_json", "line 4"),
        ("{\"value\": 1}\n{\"valeu\": 2}\n", "invalid_json", "line 2"),
        ("{\"value\": 1}\r\n[1, 2]\n", "invalid_json", "line 2"),
        ("{\"value\": 1}\n{\"value_base64\": \"@@\"}\n", "invalid_base64", "record 1"),
    ];
    for (body, code, named) in cases {
        for topic in ["t", "fresh"] {
            let reply = h.post(&format!("/v1/topics/{topic}/records"), Some("application/x-ndjson"), body).await;
            let message = reply.expect_error(400, code);
            assert!(message.contains(named), "`{message}` should name {named}");
        }
    }
    // A body of blank lines has no records.
    h.post("/v1/topics/t/records", Some("application/x-ndjson"), "\n \n").await.expect_error(400, "invalid_request");
    assert_eq!(h.snapshot().await, before);
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Topics and partitions that do not exist or cannot exist
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Consume parameters
// ---------------------------------------------------------------------------------------

/// Consume parameters: malformed offsets are `invalid_offset`; offsets past the log end
/// are 416 `offset_out_of_range` (the log end itself is a valid, empty position); other
/// bad parameters — `offset` with `timestamp`, an unknown format, zero `max_records` or
/// `max_bytes`, a negative timestamp, a `timeout_ms` above the gateway's maximum — are 400.
#[tokio::test]
async fn consume_rejects_bad_offsets_and_parameters() {
    let h = Harness::with_config(GatewayConfig { max_timeout_ms: 1000, ..Default::default() }).await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    h.produce("t", json!([{"value": 1, "partition": 0}])).await;
    let get = |q: &str| format!("/v1/topics/t/partitions/0/records?{q}");
    for q in ["offset=-1", "offset=abc", "offset=", "offset=1.0", "offset=EARLIEST", "offset=18446744073709551616"] {
        let message = h.get(&get(q)).await.expect_error(400, "invalid_offset");
        assert!(message.contains("offset"), "{message}");
    }
    h.get(&get("offset=2")).await.expect_error(416, "offset_out_of_range");
    h.get("/v1/topics/t/partitions/1/records?offset=1000").await.expect_error(416, "offset_out_of_range");
    for q in [
        "offset=0&timestamp=5",
        "timestamp=-1",
        "timestamp=soon",
        "format=xml",
        "max_records=0",
        "max_records=-3",
        "max_bytes=0",
        "timeout_ms=1001",
        "timeout_ms=-1",
    ] {
        h.get(&get(q)).await.expect_error(400, "invalid_request");
    }
    h.get("/v1/topics/t/partitions/0/offsets?timestamp=-1").await.expect_error(400, "invalid_request");
    // The produce route enforces the same timeout bound.
    h.post_json("/v1/topics/t/records?timeout_ms=1001", &json!({"records": [{"value": 1}]}))
        .await
        .expect_error(400, "invalid_request");

    // The boundaries are accepted: the log end is a valid position, the max timeout is allowed.
    let at_end = h.consume("t", 0, "offset=1&timeout_ms=0").await;
    assert_eq!(at_end, json!({"records": [], "next_offset": 1, "high_watermark": 1}));
    let all = h.consume("t", 0, "offset=0&max_records=1&format=text").await;
    assert_eq!(all["records"][0]["value"], "1");
    assert_eq!(h.high_watermarks("t").await, vec![1, 0]);
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Size limits, content types, acks
// ---------------------------------------------------------------------------------------

/// A record larger than the topic's `max.message.bytes` is 413 `record_too_large` and
/// nothing of its request is written; a record of exactly the limit is accepted. On a
/// missing topic the default limit applies and the rejected request creates no topic.
#[tokio::test]
async fn record_above_max_message_bytes_is_413() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "small", "config": {"max.message.bytes": 100}})).await;
    h.produce("small", json!([{"value": "seed"}])).await;
    let before = h.snapshot().await;

    let big = B64.encode([7u8; 200]);
    let message = h
        .post_json("/v1/topics/small/records", &json!({"records": [{"value": 1}, {"value_base64": big}]}))
        .await
        .expect_error(413, "record_too_large");
    assert!(message.contains("record 1") && message.contains("100"), "{message}");
    h.post("/v1/topics/small/records", Some("application/octet-stream"), vec![7u8; 200])
        .await
        .expect_error(413, "record_too_large");
    // Key and headers count too: 60 + 41 > 100.
    h.post_json(
        "/v1/topics/small/records",
        &json!({"records": [{"key": "k".repeat(60), "value_base64": B64.encode([1u8; 40]), "headers": [{"name": "h"}]}]}),
    )
    .await
    .expect_error(413, "record_too_large");
    // No topic is auto-created by a record above the default limit (1048588 bytes).
    h.post("/v1/topics/fresh/records", Some("application/octet-stream"), vec![0u8; 1_048_589])
        .await
        .expect_error(413, "record_too_large");
    assert_eq!(h.snapshot().await, before);

    // Exactly the limit is fine.
    h.post("/v1/topics/small/records", Some("application/octet-stream"), vec![7u8; 100]).await.expect_status(200);
    assert_eq!(h.high_watermarks("small").await, vec![2]);
    h.shutdown().await;
}

/// A body above the gateway's `max_request_bytes` is 413 `request_too_large` on the
/// produce and create routes, whatever its content type, and changes nothing.
#[tokio::test]
async fn body_above_gateway_limit_is_413() {
    let h = Harness::with_config(GatewayConfig { max_request_bytes: 4096, ..Default::default() }).await;
    h.create_topic(json!({"name": "t"})).await;
    h.produce("t", json!([{"value": "seed"}])).await;
    let before = h.snapshot().await;
    let big_json = json!({"records": [{"value": "x".repeat(10_000)}]}).to_string();
    for topic in ["t", "fresh"] {
        h.post(&format!("/v1/topics/{topic}/records"), Some("application/json"), big_json.clone())
            .await
            .expect_error(413, "request_too_large");
        h.post(&format!("/v1/topics/{topic}/partitions/0/records"), Some("application/json"), big_json.clone())
            .await
            .expect_error(413, "request_too_large");
        h.post(&format!("/v1/topics/{topic}/records"), Some("application/octet-stream"), vec![1u8; 10_240])
            .await
            .expect_error(413, "request_too_large");
    }
    let big_create = json!({"name": "huge", "config": {"cleanup.policy": "x".repeat(10_000)}}).to_string();
    h.post("/v1/topics", Some("application/json"), big_create).await.expect_error(413, "request_too_large");
    assert_eq!(h.snapshot().await, before);

    // Just under the limit is fine.
    let fits = json!({"records": [{"value": "x".repeat(4000)}]}).to_string();
    assert!(fits.len() <= 4096);
    h.post("/v1/topics/t/records", Some("application/json"), fits).await.expect_status(200);
    h.shutdown().await;
}

/// One record in the `application/vnd.fjord.records` layout.
fn binary_record(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    fjord_gateway::body::write_binary_record(&mut out, key, value, headers).expect("fits");
    out
}

/// The binary body format: records with keys (hashed to Kafka's partition), headers,
/// binary values and tombstones are written in order and read back byte for byte;
/// `partition` and `timestamp` come from the query; malformed bodies (truncated, bad
/// lengths, bad header names) are 400 and write nothing, nor auto-create a topic.
#[tokio::test]
async fn binary_records_round_trip_and_bad_ones_write_nothing() {
    const CT: &str = "application/vnd.fjord.records";
    let h = harness_with_topic(3).await;
    let mut body = binary_record(None, Some(&[0, 159, 146, 150]), &[("trace", b"abc")]);
    body.extend(binary_record(Some(b"user-42"), Some(br#"{"a":1}"#), &[]));
    body.extend(binary_record(Some(b"gone"), None, &[]));
    let reply = h.post("/v1/topics/t/partitions/1/records?timestamp=1700000000000", Some(CT), body.clone()).await;
    let offsets = reply.expect_status(200)["offsets"].clone();
    assert_eq!(
        offsets,
        json!([{"partition": 1, "offset": 0, "timestamp": 1_700_000_000_000i64},
               {"partition": 1, "offset": 1, "timestamp": 1_700_000_000_000i64},
               {"partition": 1, "offset": 2, "timestamp": 1_700_000_000_000i64}])
    );
    let read = h.consume("t", 1, "offset=earliest&format=base64").await["records"].clone();
    assert_eq!(read[0]["value_base64"], B64.encode([0, 159, 146, 150]));
    assert!(read[0]["key_base64"].is_null());
    assert_eq!(read[0]["headers"], json!([{"name": "trace", "value_base64": B64.encode("abc")}]));
    assert_eq!(read[1]["key_base64"], B64.encode("user-42"));
    assert_eq!(read[1]["value_base64"], B64.encode(br#"{"a":1}"#));
    assert!(read[2]["value"].is_null() && read[2]["value_base64"].is_null(), "a tombstone: {}", read[2]);

    // The topic route: a key picks the partition Kafka would; `partition` pins all of them.
    let keyed = binary_record(Some(b"user-42"), Some(b"v"), &[]);
    let by_key = h.post("/v1/topics/t/records", Some(CT), keyed.clone()).await.expect_status(200);
    let json_key = h.produce("t", json!([{"key": "user-42", "value": 1}])).await;
    assert_eq!(by_key["offsets"][0]["partition"], json_key[0]["partition"]);
    let pinned = h.post("/v1/topics/t/records?partition=2", Some(CT), body.clone()).await.expect_status(200);
    assert!(pinned["offsets"].as_array().expect("offsets").iter().all(|o| o["partition"] == 2), "{pinned}");

    let before = h.snapshot().await;
    let mut negative = (-7i32).to_be_bytes().to_vec();
    negative.extend_from_slice(&[0; 6]);
    let mut bad_name = binary_record(None, Some(b"v"), &[("h", b"x")]);
    let at = bad_name.len() - 6;
    bad_name[at] = 0xff;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (body[..body.len() - 1].to_vec(), "record 2: the body ends inside"),
        ([body.clone(), vec![0, 0]].concat(), "record 3: the body ends inside the key length"),
        (negative, "record 0: the key length is -7"),
        (vec![0x7f, 0xff, 0xff, 0xff, 0, 0], "record 0: the body ends inside the key"),
        (bad_name, "not valid UTF-8"),
        (Vec::new(), "no records"),
    ];
    for (bad, message) in &cases {
        for topic in ["t", "fresh"] {
            for uri in [format!("/v1/topics/{topic}/records"), format!("/v1/topics/{topic}/partitions/0/records")] {
                let got = h.post(&uri, Some(CT), bad.clone()).await.expect_error(400, "invalid_request");
                assert!(got.contains(message), "{got:?} should contain {message:?}");
            }
        }
    }
    h.post("/v1/topics/t/records?timestamp=-1", Some(CT), body.clone()).await.expect_error(400, "invalid_request");
    h.post("/v1/topics/t/records?partition=9", Some(CT), body).await.expect_error(404, "unknown_partition");
    assert_eq!(h.snapshot().await, before);
    h.shutdown().await;
}

/// Bodies that are not JSON, NDJSON or raw bytes are 415 `unsupported_media_type` and
/// change nothing; a missing Content-Type means JSON and works, as do media type
/// parameters and case differences.
#[tokio::test]
async fn unsupported_content_types_are_415() {
    let h = harness_with_topic(1).await;
    let before = h.snapshot().await;
    let body = r#"{"records": [{"value": 1}]}"#;
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"]
    {
        for topic in ["t", "fresh"] {
            let message = h
                .post(&format!("/v1/topics/{topic}/records"), Some(ct), body)
                .await
                .expect_error(415, "unsupported_media_type");
            assert!(message.contains("application/json"), "the message says what is supported: {message}");
            h.post(&format!("/v1/topics/{topic}/partitions/0/records"), Some(ct), body)
                .await
                .expect_error(415, "unsupported_media_type");
        }
        h.post("/v1/topics", Some(ct), r#"{"name": "new"}"#).await.expect_error(415, "unsupported_media_type");
        h.request(Method::PATCH, "/v1/topics/t", Some(ct), r#"{"partitions": 2}"#)
            .await
            .expect_error(415, "unsupported_media_type");
    }
    assert_eq!(h.snapshot().await, before);

    // No Content-Type: JSON.
    let offsets = h.post("/v1/topics/t/records", None, body).await.expect_status(200)["offsets"].clone();
    assert_eq!(offsets[0]["offset"], 1);
    h.post("/v1/topics/t/records", Some("Application/JSON; charset=utf-8"), body).await.expect_status(200);
    h.post("/v1/topics", None, r#"{"name": "new"}"#).await.expect_status(201);
    assert_eq!(h.high_watermarks("t").await, vec![3]);
    h.shutdown().await;
}

/// `acks`: an unknown value is 400; `all` below `min.insync.replicas` is 503
/// `not_enough_replicas`, retriable with `Retry-After`, and writes nothing; `0` answers
/// without offsets and the record still becomes readable; `1`, `all` and `-1` answer
/// with offsets.
#[tokio::test]
async fn acks_modes() {
    let h = harness_with_topic(1).await;
    h.create_topic(json!({"name": "strict", "config": {"min.insync.replicas": 2}})).await;
    let before = h.snapshot().await;
    let one = json!({"records": [{"value": 1}]});
    for acks in ["2", "any", ""] {
        h.post_json(&format!("/v1/topics/t/records?acks={acks}"), &one).await.expect_error(400, "invalid_request");
    }
    for uri in ["/v1/topics/strict/records?acks=all", "/v1/topics/strict/partitions/0/records?acks=-1"] {
        let reply = h.post_json(uri, &one).await;
        reply.expect_error(503, "not_enough_replicas");
        assert_eq!(reply.json()["error"]["retriable"], true);
        assert_eq!(reply.headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
    }
    assert_eq!(h.snapshot().await, before);
    // acks=1 on that topic still works: min.insync.replicas only binds acks=all.
    h.post_json("/v1/topics/strict/records?acks=1", &one).await.expect_status(200);

    // acks=0: answered before the append, so no offset; then readable.
    let reply = h.post_json("/v1/topics/t/records?acks=0", &json!({"records": [{"value": {"fire": "forget"}}]})).await;
    assert_eq!(reply.expect_status(200), json!({"offsets": [{"partition": 0}]}));
    let read = h.consume("t", 0, "offset=1&timeout_ms=5000").await;
    assert_eq!(read["records"][0]["value"], json!({"fire": "forget"}));
    assert_eq!(read["records"][0]["offset"], 1);

    for acks in ["1", "all", "-1"] {
        let offsets = h.post_json(&format!("/v1/topics/t/records?acks={acks}"), &one).await.expect_status(200);
        assert!(offsets["offsets"][0]["offset"].is_u64(), "{offsets}");
    }
    assert_eq!(h.high_watermarks("t").await, vec![5]);
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Topic administration
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Routing errors
// ---------------------------------------------------------------------------------------

/// Unknown routes are 404 `not_found` and known routes with the wrong method are 405
/// `method_not_allowed`, both in the API's JSON error shape.
#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let h = harness_with_topic(1).await;
    for uri in
        ["/", "/nope", "/v1", "/v1/topic", "/v1/topics/t/partitions/0", "/v1/topics/t/records/extra", "/v2/topics"]
    {
        h.get(uri).await.expect_error(404, "not_found");
    }
    for (method, uri) in [
        (Method::PUT, "/v1/topics"),
        (Method::DELETE, "/v1/topics"),
        (Method::PUT, "/v1/topics/t"),
        (Method::POST, "/v1/topics/t"),
        (Method::GET, "/v1/topics/t/records"),
        (Method::DELETE, "/v1/topics/t/partitions/0/records"),
        (Method::POST, "/v1/topics/t/partitions/0/offsets"),
        (Method::POST, "/healthz"),
        (Method::POST, "/openapi.json"),
    ] {
        h.request(method, uri, Some("application/json"), "{}").await.expect_error(405, "method_not_allowed");
    }
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

/// What a record should read back as.
#[derive(Debug, Clone)]
struct Expected {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

fn rec(key: Option<&[u8]>, value: Option<&[u8]>) -> Expected {
    Expected { key: key.map(<[u8]>::to_vec), value: value.map(<[u8]>::to_vec), headers: Vec::new(), timestamp: None }
}

/// Checks one `field` (`key`, `value`, or a header's `value`) of a consumed object
/// against the stored bytes, for `format`: exactly one of `field` / `field_base64` is
/// present, in the representation the format prescribes, and it decodes to `expected`
/// byte for byte. For inline JSON values, the raw response must contain the exact text.
#[track_caller]
fn check_bytes(obj: &Value, field: &str, expected: Option<&[u8]>, format: &str, is_value: bool, raw: &[u8]) {
    let b64_field = format!("{field}_base64");
    let Some(bytes) = expected else {
        assert_eq!(obj.get(field), Some(&Value::Null), "`{field}` should be null in {obj}");
        assert!(obj.get(&b64_field).is_none_or(Value::is_null), "{obj}");
        return;
    };
    let as_json = serde_json::from_slice::<Value>(bytes).ok();
    let as_text = std::str::from_utf8(bytes).ok();
    let inline_json = format == "json" && is_value;
    if inline_json && as_json.is_some() {
        assert_eq!(obj.get(field), as_json.as_ref(), "`{field}` should be inline JSON in {obj}");
        assert!(obj.get(&b64_field).is_none(), "{obj}");
        let mut needle = format!("\"{field}\":").into_bytes();
        needle.extend_from_slice(bytes);
        assert!(
            contains(raw, &needle),
            "the response does not hold the exact JSON text {:?}",
            String::from_utf8_lossy(bytes)
        );
    } else if format != "base64" && !inline_json && as_text.is_some() {
        assert_eq!(obj.get(field).and_then(Value::as_str), as_text, "`{field}` should be text in {obj}");
        assert!(obj.get(&b64_field).is_none(), "{obj}");
    } else {
        assert!(obj.get(field).is_none(), "`{field}` should be given as `{b64_field}` only in {obj}");
        let encoded =
            obj.get(&b64_field).and_then(Value::as_str).unwrap_or_else(|| panic!("no `{b64_field}` in {obj}"));
        let decoded = B64.decode(encoded).unwrap_or_else(|e| panic!("`{b64_field}` is not base64 ({e}) in {obj}"));
        assert_eq!(decoded, bytes, "`{b64_field}` decodes to other bytes in {obj}");
    }
}

/// Every way in (JSON with inline or base64 values and keys, repeated and binary headers,
/// tombstones; NDJSON; raw octet-stream with `?key=`/`?timestamp=`) reads back byte for
/// byte in every format (`json`, `text`, `base64`). A JSON value comes back as the exact
/// text sent — odd whitespace, `1.50`, `1e3`, escapes — not re-encoded.
#[tokio::test]
async fn round_trips_are_byte_exact_in_every_format() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "rt"})).await;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let odd_json = r#"{ "price" :  1.50, "tags":[ "a" ,"b" ],"n": 1e3 , "nested": {"x": null, "s": "\u00e9\n"}}"#;
    let json_string = r#""text \"quoted\" \u00e9""#;
    let body = format!(
        r#"{{"records": [
            {{"key": "k\u00e9", "value": {odd_json},
              "headers": [{{"name": "h", "value": "1"}}, {{"name": "bin", "value_base64": "AP8="}},
                          {{"name": "h", "value": "2"}}, {{"name": "empty"}}]}},
            {{"key_base64": "/wA=", "value_base64": "{all}"}},
            {{"key": "tomb", "value": null}},
            {{"key": "tomb2"}},
            {{"value": {json_string}, "timestamp": 42}},
            {{"value":-0.0}},
            {{"value_base64": ""}}
        ]}}"#,
        all = B64.encode(&all_bytes),
    );
    let offsets =
        h.post("/v1/topics/rt/records", Some("application/json"), body).await.expect_status(200)["offsets"].clone();
    let got: Vec<u64> =
        offsets.as_array().expect("offsets").iter().map(|o| o["offset"].as_u64().expect("offset")).collect();
    assert_eq!(got, (0..7).collect::<Vec<_>>(), "offsets in request order");
    assert_eq!(offsets[4]["timestamp"], 42);

    let mut expected = vec![
        Expected {
            headers: vec![
                ("h".into(), b"1".to_vec()),
                ("bin".into(), vec![0x00, 0xff]),
                ("h".into(), b"2".to_vec()),
                ("empty".into(), Vec::new()),
            ],
            ..rec(Some("k\u{e9}".as_bytes()), Some(odd_json.as_bytes()))
        },
        rec(Some(&[0xff, 0x00]), Some(&all_bytes)),
        rec(Some(b"tomb"), None),
        rec(Some(b"tomb2"), None),
        Expected { timestamp: Some(42), ..rec(None, Some(json_string.as_bytes())) },
        rec(None, Some(b"-0.0")),
        rec(None, Some(b"")),
    ];

    let ndjson = "{\"key\": \"n1\", \"value\": [1,  2]}\r\n\n{\"value_base64\": \"AAE=\", \"headers\": [{\"name\": \"h\", \"value\": \"x\"}]}\n";
    h.post("/v1/topics/rt/records", Some("application/x-ndjson"), ndjson).await.expect_status(200);
    expected.push(rec(Some(b"n1"), Some(b"[1,  2]")));
    expected.push(Expected { headers: vec![("h".into(), b"x".to_vec())], ..rec(None, Some(&[0, 1])) });

    let raw_value = vec![0u8, 1, 2, 0xff, b'x', b'"', b'\\'];
    let reply = h
        .post("/v1/topics/rt/records?key=raw%20key&timestamp=1234", Some("application/octet-stream"), raw_value.clone())
        .await;
    assert_eq!(reply.expect_status(200)["offsets"][0]["timestamp"], 1234);
    expected.push(Expected { timestamp: Some(1234), ..rec(Some(b"raw key"), Some(&raw_value)) });
    h.post("/v1/topics/rt/records", Some("application/octet-stream"), "hello \u{2713} \"world\"")
        .await
        .expect_status(200);
    expected.push(rec(None, Some("hello \u{2713} \"world\"".as_bytes())));
    h.post("/v1/topics/rt/records", Some("application/octet-stream"), r#"{"a" :1}"#).await.expect_status(200);
    expected.push(rec(None, Some(br#"{"a" :1}"#)));
    let n = expected.len() as u64;

    let default_format = h.get("/v1/topics/rt/partitions/0/records?offset=earliest").await;
    for format in ["json", "text", "base64"] {
        let reply = h.get(&format!("/v1/topics/rt/partitions/0/records?offset=earliest&format={format}")).await;
        let read = reply.expect_status(200);
        if format == "json" {
            assert_eq!(default_format.body, reply.body, "json is the default format");
        }
        assert_eq!(read["next_offset"], n);
        assert_eq!(read["high_watermark"], n);
        let records = read["records"].as_array().expect("records");
        assert_eq!(records.len(), expected.len(), "{format}");
        for (i, (r, e)) in records.iter().zip(&expected).enumerate() {
            assert_eq!(r["topic"], "rt");
            assert_eq!(r["partition"], 0);
            assert_eq!(r["offset"], i as u64, "{format}");
            if let Some(ts) = e.timestamp {
                assert_eq!(r["timestamp"], ts);
            }
            check_bytes(r, "key", e.key.as_deref(), format, false, &reply.body);
            check_bytes(r, "value", e.value.as_deref(), format, true, &reply.body);
            let headers = r["headers"].as_array().expect("headers array");
            let names: Vec<&str> = headers.iter().map(|h| h["name"].as_str().expect("header name")).collect();
            let expected_names: Vec<&str> = e.headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, expected_names, "header names in order, repeats kept ({format})");
            for (hv, (_, bytes)) in headers.iter().zip(&e.headers) {
                check_bytes(hv, "value", Some(bytes), format, false, &reply.body);
            }
        }
    }
    h.shutdown().await;
}

/// Keyed records go where Kafka's murmur2 partitioner puts them ("alice" and "bob" on 0,
/// "carol" on 2 of 3), an explicit partition wins over the key, and the unkeyed records
/// of one request all go to one partition, with consecutive requests taking turns.
#[tokio::test]
async fn keyed_records_use_murmur2_and_unkeyed_records_stick_per_request() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "k", "partitions": 3})).await;
    let offsets = h
        .produce(
            "k",
            json!([{"key": "alice", "value": 1}, {"key": "bob", "value": 2}, {"key": "carol", "value": 3},
                   {"key": "alice", "value": 4}, {"key": "alice", "value": 5, "partition": 1}]),
        )
        .await;
    let placed: Vec<(u64, u64)> = offsets
        .iter()
        .map(|o| (o["partition"].as_u64().expect("partition"), o["offset"].as_u64().expect("offset")))
        .collect();
    assert_eq!(placed, vec![(0, 0), (0, 1), (2, 0), (0, 2), (1, 0)]);
    let p0 = h.consume("k", 0, "offset=earliest").await;
    let keys: Vec<&str> =
        p0["records"].as_array().expect("records").iter().map(|r| r["key"].as_str().expect("key")).collect();
    assert_eq!(keys, ["alice", "bob", "alice"]);

    // A binary key hashes its bytes: "carol" as base64 lands where "carol" does.
    let same = h.produce("k", json!([{"key_base64": B64.encode("carol"), "value": 6}])).await;
    assert_eq!(same[0]["partition"], 2);

    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let offsets = h.produce("k", json!([{"value": 1}, {"value": 2}, {"value": 3}, {"value": 4}])).await;
        let partitions: BTreeSet<u64> = offsets.iter().map(|o| o["partition"].as_u64().expect("partition")).collect();
        assert_eq!(partitions.len(), 1, "one request's unkeyed records share a partition: {offsets:?}");
        let first = offsets[0]["offset"].as_u64().expect("offset");
        let got: Vec<u64> = offsets.iter().map(|o| o["offset"].as_u64().expect("offset")).collect();
        assert_eq!(got, (first..first + 4).collect::<Vec<_>>(), "in one batch, consecutive offsets");
        seen.extend(partitions);
    }
    assert_eq!(seen, BTreeSet::from([0, 1, 2]), "consecutive requests go round robin");
    h.shutdown().await;
}

/// Consume positions: `latest` with no wait returns nothing and `next_offset` equal to
/// the high watermark; a long poll answers with a record produced while it waits; the
/// offsets route finds the first offset at or after a timestamp and consume can start
/// there; `max_records` limits a read and `next_offset` continues exactly after it.
#[tokio::test]
async fn consume_positions_timestamps_and_paging() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "c", "config": {"retention.ms": -1}})).await;
    h.produce("c", json!([{"value": "a", "timestamp": 1000}, {"value": "b", "timestamp": 2000}, {"value": "c", "timestamp": 3000}]))
        .await;

    let latest = h.consume("c", 0, "offset=latest&timeout_ms=0").await;
    assert_eq!(latest, json!({"records": [], "next_offset": 3, "high_watermark": 3}));

    let offsets = h.get("/v1/topics/c/partitions/0/offsets").await.expect_status(200);
    assert_eq!(offsets, json!({"partition": 0, "log_start_offset": 0, "high_watermark": 3, "log_end_offset": 3}));
    let at = h.get("/v1/topics/c/partitions/0/offsets?timestamp=1500").await.expect_status(200);
    assert_eq!((at["offset"].clone(), at["timestamp"].clone()), (json!(1), json!(2000)));
    let exact = h.get("/v1/topics/c/partitions/0/offsets?timestamp=3000").await.expect_status(200);
    assert_eq!(exact["offset"], 2);
    let after = h.get("/v1/topics/c/partitions/0/offsets?timestamp=5000").await.expect_status(200);
    assert_eq!(after["offset"], 3, "no record that late: the high watermark");
    assert!(after.get("timestamp").is_none(), "{after}");

    let from_ts = h.consume("c", 0, "timestamp=1500").await;
    let values: Vec<&str> =
        from_ts["records"].as_array().expect("records").iter().map(|r| r["value"].as_str().expect("v")).collect();
    assert_eq!(values, ["b", "c"]);
    assert_eq!(from_ts["records"][0]["offset"], 1);
    assert_eq!(from_ts["next_offset"], 3);

    // Paging with max_records = 2: [0, 1], then [2], then nothing.
    let mut offset = 0u64;
    let mut pages = Vec::new();
    loop {
        let page = h.consume("c", 0, &format!("offset={offset}&max_records=2")).await;
        let got: Vec<u64> =
            page["records"].as_array().expect("records").iter().map(|r| r["offset"].as_u64().expect("o")).collect();
        let next = page["next_offset"].as_u64().expect("next_offset");
        if got.is_empty() {
            assert_eq!(next, offset, "an empty read does not move");
            break;
        }
        assert_eq!(next, got[got.len() - 1] + 1);
        pages.push(got);
        offset = next;
    }
    assert_eq!(pages, vec![vec![0, 1], vec![2]]);
    let one = h.consume("c", 0, "offset=earliest&max_records=1").await;
    assert_eq!((one["records"].as_array().map(Vec::len), one["next_offset"].clone()), (Some(1), json!(1)));

    // A long poll from the high watermark answers with the record produced meanwhile.
    let app = h.app.clone();
    let poll = tokio::spawn(async move {
        let request = Request::get("/v1/topics/c/partitions/0/records?offset=3&timeout_ms=5000")
            .body(Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice::<Value>(&body).expect("JSON")
    });
    h.produce("c", json!([{"value": "late"}])).await;
    let polled = poll.await.expect("poll task");
    assert_eq!(polled["records"][0]["value"], "late");
    assert_eq!(polled["records"][0]["offset"], 3);
    assert_eq!(polled["next_offset"], 4);
    h.shutdown().await;
}

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

// ---------------------------------------------------------------------------------------
// Cluster, health, OpenAPI
// ---------------------------------------------------------------------------------------

/// The cluster route lists the one live node, and both health routes answer ok.
#[tokio::test]
async fn cluster_and_health() {
    let h = Harness::new().await;
    let cluster = h.get("/v1/cluster").await.expect_status(200);
    assert_eq!(cluster["nodes"], json!([{"id": 0, "endpoint": "in-process", "rack": null}]));
    assert_eq!(cluster["controller"], 0);
    assert!(!cluster["cluster_id"].as_str().unwrap_or("").is_empty());
    assert_eq!(h.get("/healthz").await.expect_status(200), json!({"status": "ok"}));
    assert_eq!(h.get("/readyz").await.expect_status(200), json!({"status": "ok"}));
    h.shutdown().await;
}

/// The routes of the README's API table, as (method, path with parameters blanked).
fn readme_routes() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let table = readme.split("| route | what |").nth(1).expect("the README has the route table");
    let mut out = BTreeSet::new();
    let rows = table
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty() || l.starts_with("|---"))
        .take_while(|l| l.starts_with('|'));
    for row in rows {
        let cell = row.trim_start_matches('|').split('|').next().expect("first cell");
        let mut methods: Vec<String> = Vec::new();
        for span in cell.split('`').skip(1).step_by(2) {
            let tokens: Vec<&str> = span.split_whitespace().collect();
            let named: Vec<String> = tokens
                .iter()
                .filter(|t| t.chars().all(|c| c.is_ascii_uppercase()))
                .map(|t| t.to_ascii_lowercase())
                .collect();
            if !named.is_empty() {
                methods = named;
            }
            let path = tokens.iter().rev().find(|t| t.starts_with('/') && t.len() > 1).expect("a path in the span");
            for m in &methods {
                out.insert((m.clone(), blank_params(path)));
            }
        }
    }
    out
}

/// `/v1/topics/{topic}/partitions/{p}` → `/v1/topics/{}/partitions/{}`.
fn blank_params(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// GET /openapi.json serves the same OpenAPI 3 document as `fjord_gateway::openapi()`,
/// and it documents every route of the README's API table, and no other.
#[tokio::test]
async fn openapi_json_documents_every_readme_route() {
    let h = Harness::new().await;
    let served = h.get("/openapi.json").await.expect_status(200);
    assert!(served["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "openapi version: {}", served["openapi"]);
    let built = serde_json::to_value(fjord_gateway::openapi()).expect("spec serializes");
    assert_eq!(served, built);

    let mut documented = BTreeSet::new();
    for (path, item) in served["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                documented.insert((method.clone(), blank_params(path)));
            }
        }
    }
    let listed = readme_routes();
    assert!(listed.len() >= 12, "the README table parsed to too few routes: {listed:?}");
    let missing: Vec<_> = listed.difference(&documented).collect();
    assert!(missing.is_empty(), "README routes missing from the OpenAPI document: {missing:?}");
    let unlisted: Vec<_> = documented.difference(&listed).collect();
    assert!(unlisted.is_empty(), "OpenAPI routes missing from the README table: {unlisted:?}");
    h.shutdown().await;
}

/// The committed `openapi.yaml` is exactly what the handlers generate.
/// `FJORD_UPDATE_OPENAPI=1 cargo test -p fjord-gateway openapi` rewrites it.
#[test]
fn openapi_yaml_is_in_sync() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
    let rendered = fjord_gateway::openapi().to_yaml().expect("the spec renders as YAML");
    if std::env::var("FJORD_UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(path, &rendered).expect("write openapi.yaml");
        return;
    }
    let fix = "run `FJORD_UPDATE_OPENAPI=1 cargo test -p fjord-gateway openapi` \
               (or `cargo run -p fjord -- openapi > openapi.yaml`)";
    let committed = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path} ({e}); {fix}"));
    if committed != rendered {
        let line = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| committed.lines().count().min(rendered.lines().count()) + 1, |i| i + 1);
        panic!("openapi.yaml is out of date (first difference at line {line}); {fix}");
    }
}
