//! Exactly-once produce through the handlers: idempotency keys (replay, reuse,
//! expiry, concurrency, deterministic routing), producer sessions (sequences, fencing)
//! and conditional appends, over a real storage node. The failover cases are in the
//! real-process cluster tests (`tests/exactly_once.rs`).

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A JSON produce with extra headers.
async fn produce_with(h: &Harness, uri: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut b = Request::builder().method(Method::POST).uri(uri).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    h.send(b.body(Body::from(body.to_string())).expect("request")).await
}

fn offsets(v: &Value) -> Vec<(u64, u64)> {
    v["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| (o["partition"].as_u64().expect("partition"), o["offset"].as_u64().expect("offset")))
        .collect()
}

fn replayed(r: &Reply) -> Option<&str> {
    r.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok())
}

/// A retry with the same key and body is answered with the original partitions, offsets
/// and timestamps, says it is a replay, and writes nothing — on both routes, for a
/// request spanning several partitions; unkeyed records follow the key, not round robin.
#[tokio::test]
async fn a_retried_key_is_answered_with_the_original_offsets_and_writes_nothing() {
    let h = harness_with_topic(3).await;
    let body = json!({"records": [{"value": 1}, {"value": 2}, {"key": "k", "value": 3}, {"value": 4, "partition": 2}]});
    let first = produce_with(&h, "/v1/topics/t/records?acks=all", &[("idempotency-key", "req-1")], &body).await;
    let first_body = first.expect_status(200);
    assert_eq!(replayed(&first), None, "a first attempt is not a replay");
    let before = h.snapshot().await;
    for (attempt, key) in ["req-1", "\"req-1\""].iter().enumerate() {
        let again = produce_with(&h, "/v1/topics/t/records?acks=1", &[("idempotency-key", key)], &body).await;
        let again_body = again.expect_status(200);
        assert_eq!(replayed(&again), Some("true"), "attempt {attempt}");
        assert_eq!(again_body, first_body, "same partitions, offsets and timestamps (attempt {attempt})");
    }
    assert_eq!(h.snapshot().await, before, "a replay writes nothing");

    // Unkeyed records of keyed requests follow the key, not the round robin: a retry
    // after other requests moved the round robin lands on the same partition.
    let mut partitions = std::collections::BTreeSet::new();
    for i in 0..6 {
        let key = format!("spread-{i}");
        let one = json!({"records": [{"value": i}]});
        let first = produce_with(&h, "/v1/topics/t/records", &[("idempotency-key", &key)], &one).await;
        let first = offsets(&first.expect_status(200));
        h.produce("t", json!([{"value": "moves the round robin"}])).await;
        let retry = produce_with(&h, "/v1/topics/t/records", &[("idempotency-key", &key)], &one).await;
        assert_eq!((offsets(&retry.expect_status(200)), replayed(&retry)), (first.clone(), Some("true")), "{key}");
        partitions.insert(first[0].0);
    }
    assert!(partitions.len() > 1, "keys spread over the partitions: {partitions:?}");

    // The partition route, octet-stream body.
    let uri = "/v1/topics/t/partitions/1/records?key=x";
    let send = || {
        let req = Request::post(uri)
            .header("content-type", "application/octet-stream")
            .header("idempotency-key", "raw-1")
            .body(Body::from("raw bytes"))
            .expect("request");
        h.send(req)
    };
    let a = send().await.expect_status(200);
    let b = send().await;
    assert_eq!((b.expect_status(200), replayed(&b)), (a, Some("true")));
    h.shutdown().await;
}

/// The same key with another request — another body, route, partition, media type or
/// `key` parameter — is `422 idempotency_key_reused` and writes nothing; `acks` and
/// `timeout_ms` may differ on a retry.
#[tokio::test]
async fn reusing_a_key_for_another_request_is_422() {
    let h = harness_with_topic(2).await;
    let body = json!({"records": [{"value": "a", "partition": 0}]});
    produce_with(&h, "/v1/topics/t/records", &[("idempotency-key", "k1")], &body).await.expect_status(200);
    let before = h.snapshot().await;
    let other = json!({"records": [{"value": "b", "partition": 0}]});
    let cases = [
        ("/v1/topics/t/records", other.clone()),
        ("/v1/topics/t/partitions/0/records", body.clone()),
        ("/v1/topics/t/records?timestamp=5", body.clone()),
    ];
    for (uri, b) in &cases {
        let r = produce_with(&h, uri, &[("idempotency-key", "k1")], b).await;
        let message = r.expect_error(422, "idempotency_key_reused");
        assert!(message.contains("nothing was written"), "{uri}: {message}");
    }
    let r = produce_with(&h, "/v1/topics/t/records?acks=all&timeout_ms=999", &[("idempotency-key", "k1")], &body).await;
    assert_eq!(replayed(&r), Some("true"), "acks and timeout_ms are not part of the request's identity");
    assert_eq!(h.snapshot().await, before);
    h.shutdown().await;
}

/// Two identical keyed requests in flight at once: one write, both answered with the
/// same offsets.
#[tokio::test]
async fn identical_requests_in_flight_together_write_once() {
    let h = harness_with_topic(1).await;
    let before = h.high_watermarks("t").await[0];
    for round in 0..20 {
        let key = format!("race-{round}");
        let body = json!({"records": [{"value": round}, {"value": round + 1}]});
        let headers = [("idempotency-key", key.as_str())];
        let (a, b) = tokio::join!(
            produce_with(&h, "/v1/topics/t/records?acks=all", &headers, &body),
            produce_with(&h, "/v1/topics/t/records?acks=all", &headers, &body),
        );
        let (ja, jb) = (a.expect_status(200), b.expect_status(200));
        assert_eq!(offsets(&ja), offsets(&jb), "round {round}");
        let replays = [replayed(&a), replayed(&b)].iter().filter(|r| **r == Some("true")).count();
        assert_eq!(replays, 1, "round {round}: exactly one of the two is the replay");
    }
    assert_eq!(h.high_watermarks("t").await[0], before + 40, "each round wrote its two records once");
    h.shutdown().await;
}

/// After the topic's `idempotency.window.ms` the key is forgotten: the same request is
/// written again, once. (Each attempt before that is a replay and writes nothing.)
#[tokio::test]
async fn after_the_window_a_key_is_new() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "w", "config": {"idempotency.window.ms": 1000}})).await;
    let body = json!({"records": [{"value": "once"}]});
    let first = produce_with(&h, "/v1/topics/w/records?acks=all", &[("idempotency-key", "k")], &body).await;
    let first_offset = offsets(&first.expect_status(200))[0].1;
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        let r = produce_with(&h, "/v1/topics/w/records?acks=all", &[("idempotency-key", "k")], &body).await;
        let b = r.expect_status(200);
        if replayed(&r).is_none() {
            break offsets(&b)[0].1;
        }
        assert_eq!(offsets(&b)[0].1, first_offset, "within the window: the original offset");
        assert!(Instant::now() < deadline, "still a replay 20 s after a 1 s window");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(second, first_offset + 1, "written again, right after the first");
    assert_eq!(h.high_watermarks("w").await, vec![2]);
    h.shutdown().await;
}

/// Malformed exactly-once headers and parameters are 400s that write nothing; the
/// window configs are bounded.
#[tokio::test]
async fn bad_headers_and_parameters_are_400() {
    let h = harness_with_topic(1).await;
    let before = h.snapshot().await;
    let body = json!({"records": [{"value": 1}]});
    let long = "k".repeat(256);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/v1/topics/t/records", vec![("idempotency-key", "")]),
        ("/v1/topics/t/records", vec![("idempotency-key", &long)]),
        ("/v1/topics/t/records", vec![("idempotency-key", "\"unterminated")]),
        ("/v1/topics/t/partitions/0/records", vec![("producer-id", "1"), ("producer-epoch", "0")]),
        (
            "/v1/topics/t/partitions/0/records",
            vec![("producer-id", "x"), ("producer-epoch", "0"), ("producer-sequence", "0")],
        ),
        ("/v1/topics/t/records", vec![("producer-id", "1"), ("producer-epoch", "0"), ("producer-sequence", "0")]),
        ("/v1/topics/t/partitions/0/records?expected_offset=-1", vec![]),
        ("/v1/topics/t/partitions/0/records?expected_offset=1&acks=0", vec![]),
    ];
    for (uri, headers) in &cases {
        produce_with(&h, uri, headers, &body).await.expect_error(400, "invalid_request");
    }
    let r = produce_with(&h, "/v1/topics/t/records?expected_offset=1", &[], &body).await;
    r.expect_error(400, "invalid_request");
    for bad in [json!(999), json!(604_800_001u64), json!("soon")] {
        let spec = json!({"name": "x", "config": {"idempotency.window.ms": bad}});
        h.post_json("/v1/topics", &spec).await.expect_error(400, "invalid_config");
        let spec = json!({"name": "x", "config": {"producer.id.expiration.ms": bad}});
        h.post_json("/v1/topics", &spec).await.expect_error(400, "invalid_config");
    }
    assert_eq!(h.snapshot().await, before);
    h.shutdown().await;
}

/// `?expected_offset=N` writes only where the log ends: a stale expectation is `412
/// offset_mismatch` with the end offset and writes nothing; of concurrent writers that
/// expect the same offset exactly one wins.
#[tokio::test]
async fn conditional_appends_write_only_at_the_expected_end() {
    let h = harness_with_topic(1).await; // one seed record: the log ends at 1
    let body = json!({"records": [{"value": "e1"}, {"value": "e2"}]});
    let r = produce_with(&h, "/v1/topics/t/partitions/0/records?expected_offset=1", &[], &body).await;
    assert_eq!(offsets(&r.expect_status(200)), [(0, 1), (0, 2)]);
    let stale = produce_with(&h, "/v1/topics/t/partitions/0/records?expected_offset=1", &[], &body).await;
    stale.expect_error(412, "offset_mismatch");
    assert_eq!(stale.json()["error"]["details"]["log_end_offset"], 3);
    assert_eq!(h.high_watermarks("t").await, vec![3]);

    for round in 0..10u64 {
        let end = 3 + round;
        let uri = format!("/v1/topics/t/partitions/0/records?expected_offset={end}&acks=all");
        let one = json!({"records": [{"value": round}]});
        let writers: Vec<_> = (0..4).map(|_| produce_with(&h, &uri, &[], &one)).collect();
        let answers = futures::future::join_all(writers).await;
        let won = answers.iter().filter(|r| r.status == 200).count();
        let lost = answers.iter().filter(|r| r.status == 412).count();
        assert_eq!((won, lost), (1, 3), "round {round}: {:?}", answers.iter().map(Reply::text).collect::<Vec<_>>());
    }
    assert_eq!(h.high_watermarks("t").await, vec![13]);
    h.shutdown().await;
}

async fn session_produce(h: &Harness, id: u64, p: u32, epoch: String, seq: u32, n: usize) -> Reply {
    let records: Vec<Value> = (0..n).map(|i| json!({"value": format!("s{seq}-{i}")})).collect();
    let uri = format!("/v1/topics/t/partitions/{p}/records?acks=all");
    let (id, seq) = (id.to_string(), seq.to_string());
    let headers =
        [("producer-id", id.as_str()), ("producer-epoch", epoch.as_str()), ("producer-sequence", seq.as_str())];
    produce_with(h, &uri, &headers, &json!({ "records": records })).await
}

/// Producer sessions: a registration gets an id at epoch 0; sequences run on per
/// partition; a repeated sequence is a replay; a gap is `409 out_of_order_sequence` with
/// the expected sequence; registering again fences the old epoch (`409
/// producer_fenced`) even on a partition the new epoch has not written to; an unknown
/// id is `404 unknown_producer_id`; none of the refusals writes anything.
#[tokio::test]
async fn producer_sessions_sequence_replay_and_fence() {
    let h = harness_with_topic(2).await;
    let reg = h.post_json("/v1/producers", &json!({"name": "writer"})).await.expect_status(200);
    let (id, epoch) = (reg["producer_id"].as_u64().expect("id"), reg["producer_epoch"].as_u64().expect("epoch"));
    assert_eq!(epoch, 0);
    let e0 = "0".to_owned();
    let send = |p: u32, epoch: String, seq: u32, n: usize| session_produce(&h, id, p, epoch, seq, n);
    assert_eq!(offsets(&send(0, e0.clone(), 0, 2).await.expect_status(200)), [(0, 1), (0, 2)]);
    assert_eq!(offsets(&send(0, e0.clone(), 2, 1).await.expect_status(200)), [(0, 3)]);
    assert_eq!(offsets(&send(1, e0.clone(), 0, 1).await.expect_status(200)), [(1, 0)], "sequences are per partition");
    let before = h.snapshot().await;
    let again = send(0, e0.clone(), 0, 2).await;
    assert_eq!((offsets(&again.expect_status(200)), replayed(&again)), (vec![(0, 1), (0, 2)], Some("true")));
    let gap = send(0, e0.clone(), 5, 1).await;
    gap.expect_error(409, "out_of_order_sequence");
    assert_eq!(gap.json()["error"]["details"]["expected_sequence"], 3);
    assert_eq!(h.snapshot().await, before, "replays and refusals write nothing");

    let reg2 = h.post_json("/v1/producers", &json!({"name": "writer"})).await.expect_status(200);
    assert_eq!((reg2["producer_id"].as_u64(), reg2["producer_epoch"].as_u64()), (Some(id), Some(1)));
    let fenced = send(1, e0.clone(), 1, 1).await;
    fenced.expect_error(409, "producer_fenced");
    assert_eq!(fenced.json()["error"]["details"]["producer_epoch"], 1);
    assert_eq!(offsets(&send(1, "1".into(), 0, 1).await.expect_status(200)), [(1, 1)], "the new epoch starts at 0");
    send(1, "2".into(), 0, 1).await.expect_error(400, "invalid_request");

    let unknown = [("producer-id", "999999"), ("producer-epoch", "0"), ("producer-sequence", "0")];
    let r = produce_with(&h, "/v1/topics/t/partitions/0/records", &unknown, &json!({"records": [{"value": 1}]})).await;
    r.expect_error(404, "unknown_producer_id");
    h.post_json("/v1/producers", &json!({"name": "bad/name"})).await.expect_error(400, "invalid_request");
    h.post_json("/v1/producers", &json!({"nam": "x"})).await.expect_error(400, "invalid_json");
    h.shutdown().await;
}
