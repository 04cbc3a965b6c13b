//! Consume: parameters, and round trips byte for byte in every format, partitioning and positions.

use crate::common::*;
use axum::body::Body;
use axum::http::Request;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use fjord_gateway::GatewayConfig;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use tower::ServiceExt;

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
/// text sent — odd whitespace, `1.50`, `1e3`, escapes — not re-encoded. The binary layout
/// (`Accept: application/vnd.fjord.records`) gives the same bytes, offsets and timestamps
/// and pages like JSON; its errors stay JSON.
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

    // The binary layout gives the same records, byte for byte, with their offsets and
    // timestamps, and pages like JSON.
    let json = default_format.expect_status(200);
    let binary = [("accept", fjord_client::BINARY_RECORDS)];
    let reply = h.get_with("/v1/topics/rt/partitions/0/records?offset=earliest", &binary).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let header = |r: &Reply, name: &str| -> u64 {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(reply.headers[axum::http::header::CONTENT_TYPE], fjord_client::BINARY_RECORDS);
    assert_eq!(
        (header(&reply, "next-offset"), header(&reply, "high-watermark"), header(&reply, "record-count")),
        (n, n, n)
    );
    let records = fjord_client::binary::read_consumed(&reply.body).expect("a well-formed binary answer");
    assert_eq!(records.len(), expected.len());
    for (i, (r, e)) in records.iter().zip(&expected).enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.timestamp, json["records"][i]["timestamp"].as_i64().expect("timestamp"), "record {i}");
        assert_eq!(r.key.as_deref(), e.key.as_deref(), "key of record {i}");
        assert_eq!(r.value.as_deref(), e.value.as_deref(), "value of record {i}");
        let headers: Vec<(String, Vec<u8>)> = r.headers.iter().map(|(k, v)| (k.clone(), v.to_vec())).collect();
        assert_eq!(headers, e.headers, "headers of record {i}");
    }
    let page = h.get_with("/v1/topics/rt/partitions/0/records?offset=2&max_records=3&format=base64", &binary).await;
    let paged = fjord_client::binary::read_consumed(&page.body).expect("well formed");
    assert_eq!(paged.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![2, 3, 4]);
    assert_eq!((header(&page, "next-offset"), header(&page, "record-count")), (5, 3));
    let end = h.get_with(&format!("/v1/topics/rt/partitions/0/records?offset={n}"), &binary).await;
    assert!(end.status == 200 && end.body.is_empty(), "{} {:?}", end.status, end.body);
    assert_eq!((header(&end, "next-offset"), header(&end, "record-count")), (n, 0));
    // Errors stay JSON, with their codes.
    h.get_with(&format!("/v1/topics/rt/partitions/0/records?offset={}", n + 1), &binary)
        .await
        .expect_error(416, "offset_out_of_range");
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
