//! Produce: bad input is refused with its code and writes nothing; size limits, media types, acks.

use crate::common::*;
use axum::http::{header, Method};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use fjord_gateway::GatewayConfig;
use serde_json::json;

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
    fjord_client::binary::write_record(&mut out, key, value, headers).expect("fits");
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

/// `acks=0` back-pressure: while the storage node has not answered, the gateway holds at
/// most `max_unacknowledged_bytes` of acks=0 batches. A request that does not fit waits
/// up to its `timeout_ms` and is refused `429 throttled` (retriable) with nothing
/// written; once the node answers, the room comes back and the next request goes
/// through. Without the budget the second request would be answered 200 and written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_0_waits_for_room_and_is_throttled_with_nothing_written() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let config = GatewayConfig { max_unacknowledged_bytes: 4096, ..Default::default() };
    let h = Harness::with_gated_produce(config, gate).await;
    h.create_topic(json!({"name": "t", "partitions": 1})).await;
    let record = |tag: &str| json!({"records": [{"key": tag, "value": "x".repeat(3000)}]});

    h.post_json("/v1/topics/t/records?acks=0", &record("first")).await.expect_status(200);
    // The node holds the first batch: 3,000 more bytes do not fit in 4,096.
    let reply = h.post_json("/v1/topics/t/records?acks=0&timeout_ms=300", &record("throttled")).await;
    reply.expect_error(429, "throttled");
    assert_eq!(reply.json()["error"]["retriable"], true);

    open.send_replace(true);
    wait_for_high_watermark(&h, 1).await;
    // Room again: the next request fits (waiting, if need be, for the first's permit).
    h.post_json("/v1/topics/t/records?acks=0&timeout_ms=5000", &record("third")).await.expect_status(200);
    wait_for_high_watermark(&h, 2).await;
    let read = h.consume("t", 0, "offset=0&max_records=10").await;
    let keys: Vec<String> = read["records"].as_array().expect("records").iter().map(|r| r["key"].to_string()).collect();
    assert_eq!(keys, vec!["\"first\"", "\"third\""], "the throttled request wrote nothing");
    h.shutdown().await;
}

/// Waits (bounded) until partition 0 of `t` has high watermark `hw`.
async fn wait_for_high_watermark(h: &Harness, hw: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = h.high_watermarks("t").await;
        if now == vec![hw] {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "high watermark {now:?}, waited for {hw}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
