//! Bad input: a clear 4xx and nothing changed.

use super::*;
use crate::common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Group ids outside `[a-zA-Z0-9._-]{1,249}` are 400 `invalid_group_id` on every group
/// route, and no group comes into being; 249 characters is the longest id accepted.
#[tokio::test]
async fn invalid_group_ids_are_refused_on_every_route() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    let long = "g".repeat(250);
    for g in ["bad%20name", "a%2Fb", "%C3%BC", "semi%3Bcolon", "star*", long.as_str()] {
        let code = "invalid_group_id";
        h.get(&format!("/v1/groups/{g}")).await.expect_error(400, code);
        h.delete(&format!("/v1/groups/{g}")).await.expect_error(400, code);
        h.post_json(&format!("/v1/groups/{g}/members"), &json!({"topics": ["t"]})).await.expect_error(400, code);
        h.delete(&format!("/v1/groups/{g}/members/m-1")).await.expect_error(400, code);
        h.get(&format!("/v1/groups/{g}/members/m-1/records")).await.expect_error(400, code);
        h.get_with(&format!("/v1/groups/{g}/members/m-1/records"), &[("accept", "text/event-stream")])
            .await
            .expect_error(400, code);
        h.get(&format!("/v1/groups/{g}/offsets")).await.expect_error(400, code);
        h.post_json(
            &format!("/v1/groups/{g}/offsets"),
            &json!({"offsets": [{"topic": "t", "partition": 0, "offset": 0}]}),
        )
        .await
        .expect_error(400, code);
        h.post_json(&format!("/v1/groups/{g}/seek"), &json!({"topic": "t", "to": "earliest"}))
            .await
            .expect_error(400, code);
    }
    assert!(h.group_names().await.is_empty(), "a refused request created a group");

    let longest = "g".repeat(249);
    h.join(&longest, json!({"topics": ["t"]})).await;
    assert_eq!(h.group_names().await, vec![longest]);
    h.shutdown().await;
}

/// A join with a malformed body, wrong field types, unknown fields, an unknown assignor
/// or reset, no topics, an unknown topic, a session timeout outside [1000, 1800000], a bad
/// client id, or a non-JSON Content-Type is refused with its code, and neither changes an
/// existing group nor creates a new one. The bounds themselves are accepted.
#[tokio::test]
async fn join_rejects_bad_bodies_and_changes_nothing() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    h.join("g", json!({"topics": ["t"]})).await;
    let before = h.fingerprint("g").await;
    let long_client = "c".repeat(101);
    let cases: Vec<(String, &str, u16, &str)> = vec![
        (r#"{"topics": ["#.into(), "application/json", 400, "invalid_json"),
        ("".into(), "application/json", 400, "invalid_json"),
        ("{}".into(), "application/json", 400, "invalid_json"),
        ("[]".into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": "t"}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": [1]}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": ["t"], "session_timeout_ms": "5000"}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": ["t"], "session_timeout_ms": -1}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": ["t"], "auto_commit": "yes"}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": ["t"], "client_id": 7}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": ["t"], "extra": 1}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": ["t"], "group": "g"}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": ["t"], "assignor": "magic"}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": ["t"], "assignor": "Range"}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": ["t"], "auto_offset_reset": "never"}"#.into(), "application/json", 400, "invalid_json"),
        (r#"{"topics": []}"#.into(), "application/json", 400, "invalid_request"),
        (r#"{"topics": ["nope"]}"#.into(), "application/json", 404, "unknown_topic"),
        (r#"{"topics": ["t", "nope"]}"#.into(), "application/json", 404, "unknown_topic"),
        (r#"{"topics": ["t"], "session_timeout_ms": 0}"#.into(), "application/json", 400, "invalid_request"),
        (r#"{"topics": ["t"], "session_timeout_ms": 999}"#.into(), "application/json", 400, "invalid_request"),
        (r#"{"topics": ["t"], "session_timeout_ms": 1800001}"#.into(), "application/json", 400, "invalid_request"),
        (r#"{"topics": ["t"], "client_id": ""}"#.into(), "application/json", 400, "invalid_request"),
        (r#"{"topics": ["t"], "client_id": "a b"}"#.into(), "application/json", 400, "invalid_request"),
        (r#"{"topics": ["t"], "client_id": "ü"}"#.into(), "application/json", 400, "invalid_request"),
        (format!(r#"{{"topics": ["t"], "client_id": "{long_client}"}}"#), "application/json", 400, "invalid_request"),
        (r#"{"topics": ["t"]}"#.into(), "text/plain", 415, "unsupported_media_type"),
        (r#"{"topics": ["t"]}"#.into(), "application/x-ndjson", 415, "unsupported_media_type"),
    ];
    for (body, content_type, status, code) in &cases {
        for group in ["g", "fresh"] {
            let reply = h.post(&format!("/v1/groups/{group}/members"), Some(*content_type), body.clone()).await;
            reply.expect_error(*status, code);
        }
    }
    assert_eq!(h.fingerprint("g").await, before, "a refused join changed the group");
    assert_eq!(h.fingerprint("fresh").await, Value::Null, "a refused join created a group");

    // The bounds are valid.
    let client = "c".repeat(100);
    let low = h.join("bounds", json!({"topics": ["t"], "session_timeout_ms": 1000, "client_id": client})).await;
    assert!(member_id(&low).starts_with(&format!("{client}-")), "the member id is prefixed by the client id: {low}");
    h.join("bounds", json!({"topics": ["t"], "session_timeout_ms": 1_800_000})).await;
    let d = h.describe("bounds").await;
    let timeouts: BTreeSet<u64> = d["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["session_timeout_ms"].as_u64().expect("ms"))
        .collect();
    assert_eq!(timeouts, BTreeSet::from([1000, 1_800_000]));
    h.shutdown().await;
}

/// A poll with a bad `max_records`, `max_bytes`, `timeout_ms` or `format` is 400 and is
/// not a poll: no auto-commit of the previous poll, no hand-over (the other member's
/// partitions stay pending). The same poll with good parameters then does both.
#[tokio::test]
async fn poll_rejects_bad_parameters_and_changes_nothing() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    h.fill("t", 0, 0, 3).await;
    h.fill("t", 1, 0, 3).await;
    let a = h.join_id("g", member("t", "a", "range", "earliest")).await;
    assert_eq!(polled(&h.poll("g", &a, "").await).len(), 6);
    let b = h.join_id("g", member("t", "b", "range", "earliest")).await;
    let before = h.fingerprint("g").await;
    assert_eq!(before["offsets"], json!([]), "{before}");
    assert_eq!(partitions(&before["members"][1]["pending"]), set([1]), "{before}");

    for q in [
        "max_records=0",
        "max_records=100001",
        "max_records=-1",
        "max_records=many",
        "max_bytes=0",
        "max_bytes=67108865",
        "max_bytes=-5",
        "timeout_ms=-1",
        "timeout_ms=60001",
        "timeout_ms=soon",
        "format=xml",
    ] {
        h.get(&format!("/v1/groups/g/members/{a}/records?{q}")).await.expect_error(400, "invalid_request");
        h.get_with(&format!("/v1/groups/g/members/{a}/records?{q}"), &[("accept", "text/event-stream")])
            .await
            .expect_error(400, "invalid_request");
    }
    assert_eq!(h.fingerprint("g").await, before, "a refused poll committed or handed over");

    // The bounds are valid, and a real poll commits and hands over.
    let answer = h.poll("g", &a, "max_records=100000&max_bytes=67108864&timeout_ms=0").await;
    assert_eq!(partitions(&answer["assignment"]), set([0]));
    assert_eq!(h.committed("g", "t").await, BTreeMap::from([(0, 3), (1, 3)]));
    let answer = h.poll("g", &b, "").await;
    assert_eq!(partitions(&answer["assignment"]), set([1]));
    h.shutdown().await;
}

/// Polling, leaving and committing as a member the group does not have is 404
/// `unknown_member_id` (in an existing group and in one that does not exist, plain or as
/// an event stream), and changes nothing.
#[tokio::test]
async fn unknown_members_are_404_and_change_nothing() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 1})).await;
    let a = h.join_id("g", json!({"topics": ["t"]})).await;
    let gen = generation(&h.poll("g", &a, "").await);
    let before = h.fingerprint("g").await;
    for group in ["g", "nogroup"] {
        let code = "unknown_member_id";
        h.get(&format!("/v1/groups/{group}/members/ghost/records")).await.expect_error(404, code);
        h.get_with(&format!("/v1/groups/{group}/members/ghost/records"), &[("accept", "text/event-stream")])
            .await
            .expect_error(404, code);
        h.delete(&format!("/v1/groups/{group}/members/ghost")).await.expect_error(404, code);
        let commit =
            json!({"member_id": "ghost", "generation": gen, "offsets": [{"topic": "t", "partition": 0, "offset": 0}]});
        h.post_json(&format!("/v1/groups/{group}/offsets"), &commit).await.expect_error(404, code);
    }
    // A member id of another group is unknown here too.
    let other = h.join_id("other", json!({"topics": ["t"]})).await;
    h.get(&format!("/v1/groups/g/members/{other}/records")).await.expect_error(404, "unknown_member_id");
    assert_eq!(h.fingerprint("g").await, before);
    assert_eq!(h.fingerprint("nogroup").await, Value::Null);
    h.shutdown().await;
}

/// A commit with a malformed body, wrong types, unknown fields, no offsets, no generation
/// for a member, an unknown topic or partition (even next to a good entry), or a
/// non-JSON Content-Type is refused, and no offset moves.
#[tokio::test]
async fn commit_rejects_bad_bodies_and_commits_nothing() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    h.fill("t", 0, 0, 3).await;
    let a = h.join_id("g", json!({"topics": ["t"], "auto_commit": false})).await;
    let gen = generation(&h.poll("g", &a, "").await);
    let good = json!({"member_id": a, "generation": gen, "offsets": [{"topic": "t", "partition": 0, "offset": 1}]});
    h.post_json("/v1/groups/g/offsets", &good).await.expect_no_content();
    let before = h.fingerprint("g").await;
    assert_eq!(h.committed("g", "t").await, BTreeMap::from([(0, 1)]));

    // Malformed JSON and the wrong media type, as raw bodies.
    let good_entries = json!([{"topic": "t", "partition": 0, "offset": 2}]);
    let raw: &[(&str, &str, u16, &str)] = &[
        (r#"{"offsets": ["#, "application/json", 400, "invalid_json"),
        ("", "application/json", 400, "invalid_json"),
        ("[]", "application/json", 400, "invalid_json"),
    ];
    for (body, content_type, status, code) in raw {
        h.post("/v1/groups/g/offsets", Some(*content_type), *body).await.expect_error(*status, code);
    }
    let well_formed = json!({"member_id": a, "generation": gen, "offsets": good_entries}).to_string();
    h.post("/v1/groups/g/offsets", Some("text/plain"), well_formed).await.expect_error(415, "unsupported_media_type");

    // Well-formed JSON that is not a good commit.
    let with = |offsets: Value| json!({"member_id": a, "generation": gen, "offsets": offsets});
    let entry = |e: Value| with(json!([e]));
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({}), 400, "invalid_json"),
        (with(json!(5)), 400, "invalid_json"),
        (entry(json!({"topic": "t", "partition": 0, "offset": -1})), 400, "invalid_json"),
        (entry(json!({"topic": "t", "partition": 0, "offset": "2"})), 400, "invalid_json"),
        (entry(json!({"topic": "t", "partition": "0", "offset": 2})), 400, "invalid_json"),
        (entry(json!({"topic": "t", "offset": 2})), 400, "invalid_json"),
        (entry(json!({"topic": "t", "partition": 0, "offset": 2, "leader_epoch": 1})), 400, "invalid_json"),
        (json!({"member_id": a, "generation": gen.to_string(), "offsets": good_entries}), 400, "invalid_json"),
        (json!({"member_id": 5, "generation": gen, "offsets": good_entries}), 400, "invalid_json"),
        (json!({"member_id": a, "generation": gen, "offsets": good_entries, "extra": 1}), 400, "invalid_json"),
        (with(json!([])), 400, "invalid_request"),
        (json!({"member_id": a, "offsets": good_entries}), 400, "invalid_request"),
        (entry(json!({"topic": "nope", "partition": 0, "offset": 2})), 404, "unknown_topic"),
        (entry(json!({"topic": "t", "partition": 2, "offset": 2})), 404, "unknown_partition"),
        (
            with(json!([{"topic": "t", "partition": 0, "offset": 2}, {"topic": "t", "partition": 9, "offset": 2}])),
            404,
            "unknown_partition",
        ),
    ];
    for (body, status, code) in &cases {
        h.post_json("/v1/groups/g/offsets", body).await.expect_error(*status, code);
    }
    assert_eq!(h.fingerprint("g").await, before, "a refused commit changed the group");

    // Member-less commits to a group that does not exist are checked the same way, and
    // a refused one does not create the group.
    for (entry, status, code) in [
        (json!({"topic": "nope", "partition": 0, "offset": 0}), 404, "unknown_topic"),
        (json!({"topic": "t", "partition": 2, "offset": 0}), 404, "unknown_partition"),
    ] {
        h.post_json("/v1/groups/fresh/offsets", &json!({"offsets": [entry]})).await.expect_error(status, code);
    }
    assert_eq!(h.fingerprint("fresh").await, Value::Null);
    h.shutdown().await;
}

/// A seek with a bad `to` (unknown word, negative or non-numeric offset, unknown key,
/// two keys, negative timestamp), an empty or unknown partition list, an unknown topic,
/// unknown fields, a non-JSON Content-Type, or an offset past a partition's high
/// watermark (416, even when another listed partition is fine) moves no offset. The high
/// watermark itself is a valid target.
#[tokio::test]
async fn seek_rejects_bad_targets_and_moves_nothing() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    h.fill("t", 0, 0, 3).await;
    h.fill("t", 1, 0, 1).await;
    let baseline =
        json!({"offsets": [{"topic": "t", "partition": 0, "offset": 1}, {"topic": "t", "partition": 1, "offset": 0}]});
    h.post_json("/v1/groups/g/offsets", &baseline).await.expect_no_content();
    let before = h.fingerprint("g").await;

    let cases: &[(&str, &str, u16, &str)] = &[
        (r#"{"topic": "t", "to": "#, "application/json", 400, "invalid_json"),
        (r#"{"topic": "t"}"#, "application/json", 400, "invalid_json"),
        (r#"{"to": "earliest"}"#, "application/json", 400, "invalid_json"),
        (r#"{"topic": "t", "to": "middle"}"#, "application/json", 400, "invalid_json"),
        (r#"{"topic": "t", "to": null}"#, "application/json", 400, "invalid_json"),
        (r#"{"topic": "t", "to": {"offset": -1}}"#, "application/json", 400, "invalid_json"),
        (r#"{"topic": "t", "to": {"offset": "1"}}"#, "application/json", 400, "invalid_json"),
        (r#"{"topic": "t", "to": {"when": 5}}"#, "application/json", 400, "invalid_json"),
        (r#"{"topic": "t", "to": {"offset": 1, "timestamp": 2}}"#, "application/json", 400, "invalid_json"),
        (r#"{"topic": "t", "to": "earliest", "group": "g"}"#, "application/json", 400, "invalid_json"),
        (r#"{"topic": "t", "partitions": "0", "to": "earliest"}"#, "application/json", 400, "invalid_json"),
        (r#"{"topic": "t", "to": {"timestamp": -1}}"#, "application/json", 400, "invalid_request"),
        (r#"{"topic": "t", "partitions": [], "to": "earliest"}"#, "application/json", 400, "invalid_request"),
        (r#"{"topic": "t", "partitions": [5], "to": "earliest"}"#, "application/json", 404, "unknown_partition"),
        (r#"{"topic": "t", "partitions": [0, 5], "to": "earliest"}"#, "application/json", 404, "unknown_partition"),
        (r#"{"topic": "nope", "to": "earliest"}"#, "application/json", 404, "unknown_topic"),
        (r#"{"topic": "t", "partitions": [0], "to": {"offset": 4}}"#, "application/json", 416, "offset_out_of_range"),
        (r#"{"topic": "t", "to": {"offset": 2}}"#, "application/json", 416, "offset_out_of_range"),
        (r#"{"topic": "t", "to": "earliest"}"#, "text/plain", 415, "unsupported_media_type"),
    ];
    for (body, content_type, status, code) in cases {
        for group in ["g", "fresh"] {
            h.post(&format!("/v1/groups/{group}/seek"), Some(*content_type), *body).await.expect_error(*status, code);
        }
    }
    assert_eq!(h.fingerprint("g").await, before, "a refused seek moved an offset");
    assert_eq!(h.fingerprint("fresh").await, Value::Null, "a refused seek created a group");

    let sought = h.post_json("/v1/groups/g/seek", &json!({"topic": "t", "partitions": [0], "to": {"offset": 3}})).await;
    assert_eq!(sought.expect_status(200), json!({"offsets": [{"topic": "t", "partition": 0, "offset": 3}]}));
    assert_eq!(h.committed("g", "t").await, BTreeMap::from([(0, 3), (1, 0)]));
    h.shutdown().await;
}

/// Deleting a group that has members is 409 `group_not_empty` and keeps it whole;
/// deleting, describing or reading the offsets of a group that does not exist is 404
/// `unknown_group`.
#[tokio::test]
async fn delete_refuses_groups_with_members_and_unknown_groups() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 1})).await;
    h.join("g", json!({"topics": ["t"]})).await;
    let before = h.fingerprint("g").await;
    h.delete("/v1/groups/g").await.expect_error(409, "group_not_empty");
    assert_eq!(h.fingerprint("g").await, before);
    h.delete("/v1/groups/nope").await.expect_error(404, "unknown_group");
    h.get("/v1/groups/nope").await.expect_error(404, "unknown_group");
    h.get("/v1/groups/nope/offsets").await.expect_error(404, "unknown_group");
    assert_eq!(h.group_names().await, vec!["g".to_owned()]);
    h.shutdown().await;
}

/// `__consumer_offsets` cannot be produced to (either route, any body type), created,
/// altered or deleted, before the first group call creates it and after: 400, and its
/// partitions and their high watermarks stay as they were. Reading it is allowed.
#[tokio::test]
async fn the_offsets_topic_is_refused_for_writes_and_changes() {
    let h = Harness::new().await;
    const T: &str = "__consumer_offsets";
    let hr = &h;
    let refuse_all = || async move {
        let h = hr;
        let record = json!({"records": [{"value": 1}]});
        h.post_json(&format!("/v1/topics/{T}/records"), &record).await.expect_error(400, "invalid_request");
        h.post_json(&format!("/v1/topics/{T}/partitions/0/records"), &record)
            .await
            .expect_error(400, "invalid_request");
        h.post(&format!("/v1/topics/{T}/records"), Some("application/x-ndjson"), "{\"value\": 1}\n")
            .await
            .expect_error(400, "invalid_request");
        h.post(&format!("/v1/topics/{T}/records?key=k"), Some("application/octet-stream"), "raw")
            .await
            .expect_error(400, "invalid_request");
        h.post_json("/v1/topics", &json!({"name": T, "partitions": 1})).await.expect_error(400, "invalid_request");
        h.patch_json(&format!("/v1/topics/{T}"), &json!({"partitions": 64})).await.expect_error(400, "invalid_request");
        h.patch_json(&format!("/v1/topics/{T}"), &json!({"config": {"retention.ms": 1}}))
            .await
            .expect_error(400, "invalid_request");
        h.delete(&format!("/v1/topics/{T}")).await.expect_error(400, "invalid_request");
    };

    // Before it exists: refused, and not created by the attempts.
    refuse_all().await;
    h.get(&format!("/v1/topics/{T}")).await.expect_error(404, "unknown_topic");

    // After the first group call created it.
    h.create_topic(json!({"name": "t", "partitions": 1})).await;
    h.join("g", json!({"topics": ["t"]})).await;
    let described = h.get(&format!("/v1/topics/{T}")).await.expect_status(200);
    let hws = h.high_watermarks(T).await;
    assert!(hws.iter().sum::<u64>() > 0, "the join wrote group state: {described}");
    refuse_all().await;
    let after = h.get(&format!("/v1/topics/{T}")).await.expect_status(200);
    assert_eq!(after["partitions"].as_array().map(Vec::len), described["partitions"].as_array().map(Vec::len));
    assert_eq!(after["config"], described["config"]);
    assert_eq!(h.high_watermarks(T).await, hws, "a refused write reached the offsets topic");
    h.get(&format!("/v1/topics/{T}/partitions/0/records?offset=earliest")).await.expect_status(200);
    h.shutdown().await;
}
