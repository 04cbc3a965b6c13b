//! HTTP handler tests of consumer groups (`/v1/groups/…`) and of Server-Sent Events on
//! the partition read route: the whole router over a real storage node (RocksDB in a
//! temp dir, background tasks running) and the embedded coordinator, driven with
//! `oneshot` (no socket).
//!
//! Every rejected request is checked for its status, its stable error `code`, and for
//! having changed nothing: the group's description (generation, members, who owns what,
//! what is pending, committed offsets) is the same afterwards, and a group that did not
//! exist still does not.
//!
//! Session eviction is not tested here (the process tests cover it): every member keeps
//! the default 45 s session, far longer than any test here runs, so no member expires
//! while a test relies on it. Waits are on conditions with deadlines, never on sleeps.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::Harness;
use fjord_gateway::GatewayConfig;
use fjord_protocol::group::coordinator_partition;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------
// Harness: the shared one (common/mod.rs) plus group helpers
// ---------------------------------------------------------------------------------------

impl Harness {
    /// Produces `n` records to one partition, values `"p{partition}-{i}"` from `from`.
    async fn fill(&self, topic: &str, partition: u32, from: u64, n: u64) {
        let records: Vec<Value> =
            (from..from + n).map(|i| json!({"value": format!("p{partition}-{i}"), "partition": partition})).collect();
        self.produce(topic, Value::Array(records)).await;
    }

    /// The high watermark of every partition of `topic`, from the offsets route.
    async fn high_watermarks(&self, topic: &str) -> Vec<u64> {
        let described = self.get(&format!("/v1/topics/{topic}")).await.expect_status(200);
        let count = described["partitions"].as_array().expect("partitions array").len();
        let mut out = Vec::new();
        for p in 0..count {
            let offsets = self.get(&format!("/v1/topics/{topic}/partitions/{p}/offsets")).await.expect_status(200);
            out.push(offsets["high_watermark"].as_u64().expect("high watermark"));
        }
        out
    }

    // --- groups ---

    /// Joins, asserting 200; returns the answer.
    async fn join(&self, group: &str, body: Value) -> Value {
        self.post_json(&format!("/v1/groups/{group}/members"), &body).await.expect_status(200)
    }

    /// Joins and returns the member id.
    async fn join_id(&self, group: &str, body: Value) -> String {
        member_id(&self.join(group, body).await)
    }

    /// Polls, asserting 200; returns the answer.
    async fn poll(&self, group: &str, member: &str, query: &str) -> Value {
        self.get(&format!("/v1/groups/{group}/members/{member}/records?{query}")).await.expect_status(200)
    }

    async fn describe(&self, group: &str) -> Value {
        self.get(&format!("/v1/groups/{group}")).await.expect_status(200)
    }

    /// What must not change when a request is refused: the group's description without
    /// the members' `last_seen_ms_ago` (a clock), or `null` for a group that does not exist.
    async fn fingerprint(&self, group: &str) -> Value {
        let reply = self.get(&format!("/v1/groups/{group}")).await;
        if reply.status == StatusCode::NOT_FOUND {
            reply.expect_error(404, "unknown_group");
            return Value::Null;
        }
        let mut d = reply.expect_status(200);
        for m in d["members"].as_array_mut().expect("members array") {
            m.as_object_mut().expect("member object").remove("last_seen_ms_ago");
        }
        d
    }

    /// The group's committed offsets in `topic`, by partition.
    async fn committed(&self, group: &str, topic: &str) -> BTreeMap<u32, u64> {
        let d = self.describe(group).await;
        d["offsets"]
            .as_array()
            .expect("offsets array")
            .iter()
            .filter(|o| o["topic"] == topic)
            .map(|o| (as_u32(&o["partition"]), o["offset"].as_u64().expect("offset")))
            .collect()
    }

    /// GET /v1/groups/{g}/offsets as rows by partition (one topic).
    async fn offset_rows(&self, group: &str) -> BTreeMap<u32, Value> {
        let body = self.get(&format!("/v1/groups/{group}/offsets")).await.expect_status(200);
        assert_eq!(body["group"], group);
        body["offsets"]
            .as_array()
            .expect("offsets array")
            .iter()
            .map(|r| (as_u32(&r["partition"]), r.clone()))
            .collect()
    }

    async fn group_names(&self) -> Vec<String> {
        let list = self.get("/v1/groups").await.expect_status(200);
        list["groups"]
            .as_array()
            .expect("groups array")
            .iter()
            .map(|g| g["group"].as_str().expect("name").to_owned())
            .collect()
    }

    /// Polls each member in turn, twice, asserting after every poll that no partition is
    /// owned twice; afterwards nothing may be pending. Returns each member's assignment.
    /// Two rounds always suffice: in the first every old owner releases what moved away
    /// from it, in the second every member takes what is left of its target.
    async fn settle(&self, group: &str, members: &[&str]) -> BTreeMap<String, BTreeSet<u32>> {
        let mut out = BTreeMap::new();
        for _round in 0..2 {
            for m in members {
                let answer = self.poll(group, m, "").await;
                out.insert((*m).to_owned(), partitions(&answer["assignment"]));
                assert_owned_at_most_once(&self.describe(group).await);
            }
        }
        let d = self.describe(group).await;
        for m in d["members"].as_array().expect("members") {
            assert_eq!(m["pending"], json!([]), "still pending after two rounds: {d}");
        }
        out
    }
}

fn as_u32(v: &Value) -> u32 {
    u32::try_from(v.as_u64().unwrap_or_else(|| panic!("not a u32: {v}"))).expect("u32")
}

fn member_id(answer: &Value) -> String {
    answer["member_id"].as_str().unwrap_or_else(|| panic!("no member_id in {answer}")).to_owned()
}

fn generation(answer: &Value) -> u64 {
    answer["generation"].as_u64().unwrap_or_else(|| panic!("no generation in {answer}"))
}

/// The partition numbers of a `[{"topic", "partition"}]` list.
fn partitions(list: &Value) -> BTreeSet<u32> {
    list.as_array().unwrap_or_else(|| panic!("not a list: {list}")).iter().map(|tp| as_u32(&tp["partition"])).collect()
}

/// `(partition, offset)` of each record of a poll answer, in answer order.
fn polled(answer: &Value) -> Vec<(u32, u64)> {
    answer["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {answer}"))
        .iter()
        .map(|r| (as_u32(&r["partition"]), r["offset"].as_u64().expect("offset")))
        .collect()
}

fn none() -> Vec<(u32, u64)> {
    Vec::new()
}

fn all(n: u32) -> BTreeSet<u32> {
    (0..n).collect()
}

fn set<const N: usize>(ps: [u32; N]) -> BTreeSet<u32> {
    ps.into_iter().collect()
}

/// No partition is owned by two members in a group description.
#[track_caller]
fn assert_owned_at_most_once(description: &Value) {
    let mut seen = BTreeSet::new();
    for m in description["members"].as_array().expect("members") {
        for tp in m["assignment"].as_array().expect("assignment") {
            let key = (tp["topic"].to_string(), as_u32(&tp["partition"]));
            assert!(seen.insert(key), "a partition is owned twice: {description}");
        }
    }
}

/// A join body.
fn member(topic: &str, client: &str, assignor: &str, reset: &str) -> Value {
    json!({"topics": [topic], "client_id": client, "assignor": assignor, "auto_offset_reset": reset})
}

// ---------------------------------------------------------------------------------------
// Bad input: clear 4xx, nothing changed
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Assignment
// ---------------------------------------------------------------------------------------

/// Two members `a` and `b` join a 6-partition topic with `assignor`; after each polls
/// once more (the hand-over), their assignments are disjoint, cover all 6, 3 each, and
/// for range and roundrobin are the ones Kafka's assignors give (members in id order).
/// A third member `c` makes a new generation; after the hand-over the three are
/// disjoint, covering, 2 each. Returns the assignments before and after `c` joined.
async fn two_then_three(assignor: &str) -> (BTreeMap<String, BTreeSet<u32>>, BTreeMap<String, BTreeSet<u32>>) {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "six", "partitions": 6})).await;
    let first = h.join("g", member("six", "a", assignor, "latest")).await;
    assert_eq!(partitions(&first["assignment"]), all(6), "a lone member owns everything: {first}");
    let a = member_id(&first);
    let second = h.join("g", member("six", "b", assignor, "latest")).await;
    let b = member_id(&second);
    assert!(generation(&second) > generation(&first), "a join starts a new generation");
    assert!(partitions(&second["assignment"]).is_empty(), "b owns nothing a still owns: {second}");

    let two = h.settle("g", &[&a, &b]).await;
    let (pa, pb) = (&two[&a], &two[&b]);
    assert!(pa.is_disjoint(pb), "{assignor}: {two:?}");
    assert_eq!(pa | pb, all(6), "{assignor}: {two:?}");
    assert_eq!((pa.len(), pb.len()), (3, 3), "{assignor}: {two:?}");
    match assignor {
        "range" => assert_eq!((pa.clone(), pb.clone()), (set([0, 1, 2]), set([3, 4, 5]))),
        "roundrobin" => assert_eq!((pa.clone(), pb.clone()), (set([0, 2, 4]), set([1, 3, 5]))),
        _ => {}
    }
    let d = h.describe("g").await;
    assert_eq!(d["assignor"], assignor);
    assert_eq!(generation(&d), generation(&second));

    let third = h.join("g", member("six", "c", assignor, "latest")).await;
    let c = member_id(&third);
    assert!(generation(&third) > generation(&second), "a join starts a new generation");
    let three = h.settle("g", &[&a, &b, &c]).await;
    let (qa, qb, qc) = (&three[&a], &three[&b], &three[&c]);
    assert!(qa.is_disjoint(qb) && qa.is_disjoint(qc) && qb.is_disjoint(qc), "{assignor}: {three:?}");
    assert_eq!(&(qa | qb) | qc, all(6), "{assignor}: {three:?}");
    assert_eq!((qa.len(), qb.len(), qc.len()), (2, 2, 2), "{assignor}: {three:?}");
    let d = h.describe("g").await;
    assert_eq!(generation(&d), generation(&third), "settling is polls, not rebalances");
    h.shutdown().await;
    let names = |m: BTreeMap<String, BTreeSet<u32>>| -> BTreeMap<String, BTreeSet<u32>> {
        m.into_iter().map(|(id, ps)| (id.split('-').next().expect("client prefix").to_owned(), ps)).collect()
    };
    (names(two), names(three))
}

/// Range: two members split six partitions into contiguous halves; three into thirds.
#[tokio::test]
async fn range_assigns_disjoint_covering_ranges() {
    let (_, three) = two_then_three("range").await;
    assert_eq!(three["a"], set([0, 1]));
    assert_eq!(three["b"], set([2, 3]));
    assert_eq!(three["c"], set([4, 5]));
}

/// Roundrobin: partitions dealt in turn to members in id order.
#[tokio::test]
async fn roundrobin_deals_partitions_in_turn() {
    let (_, three) = two_then_three("roundrobin").await;
    assert_eq!(three["a"], set([0, 3]));
    assert_eq!(three["b"], set([1, 4]));
    assert_eq!(three["c"], set([2, 5]));
}

/// Sticky: when a third member joins, the two old members keep partitions they had, and
/// only what balance requires moves: 2 of 6 (one from each), all to the newcomer.
#[tokio::test]
async fn sticky_moves_only_what_balance_requires() {
    let (two, three) = two_then_three("sticky").await;
    assert!(three["a"].is_subset(&two["a"]), "a lost a partition it could keep: {two:?} → {three:?}");
    assert!(three["b"].is_subset(&two["b"]), "b lost a partition it could keep: {two:?} → {three:?}");
    let moved = (&two["a"] - &three["a"]).len() + (&two["b"] - &three["b"]).len();
    assert_eq!(moved, 2, "{two:?} → {three:?}");
}

/// A member asking for another assignor than the group's (explicitly, or the default
/// `range` by omission) is 409 `inconsistent_group_protocol` and the group is unchanged;
/// once the group is empty again, a new member may pick another assignor.
#[tokio::test]
async fn another_assignor_is_an_inconsistent_group_protocol() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    let a = h.join_id("g", json!({"topics": ["t"], "assignor": "sticky"})).await;
    let before = h.fingerprint("g").await;
    h.post_json("/v1/groups/g/members", &json!({"topics": ["t"], "assignor": "range"}))
        .await
        .expect_error(409, "inconsistent_group_protocol");
    h.post_json("/v1/groups/g/members", &json!({"topics": ["t"], "assignor": "roundrobin"}))
        .await
        .expect_error(409, "inconsistent_group_protocol");
    h.post_json("/v1/groups/g/members", &json!({"topics": ["t"]}))
        .await
        .expect_error(409, "inconsistent_group_protocol");
    assert_eq!(h.fingerprint("g").await, before);
    h.join("g", json!({"topics": ["t"], "assignor": "sticky"})).await;

    let d = h.describe("g").await;
    for m in d["members"].as_array().expect("members") {
        h.delete(&format!("/v1/groups/g/members/{}", m["member_id"].as_str().expect("id"))).await.expect_no_content();
    }
    h.join("g", json!({"topics": ["t"], "assignor": "roundrobin"})).await;
    assert_eq!(h.describe("g").await["assignor"], "roundrobin");
    h.get(&format!("/v1/groups/g/members/{a}/records")).await.expect_error(404, "unknown_member_id");
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Hand-over
// ---------------------------------------------------------------------------------------

/// KIP-848 hand-over: after `b` joins, `b`'s join answer lists the partitions `a` still
/// owns as `pending`, and `b` reads none of them while `a` owns them. `a`'s next poll
/// commits what it read (auto-commit) and releases them; `b`'s next poll owns them and
/// starts exactly at `a`'s commit: no record read twice, none skipped.
#[tokio::test]
async fn hand_over_waits_for_the_old_owner_to_poll() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "h", "partitions": 6})).await;
    for p in 0..6 {
        h.fill("h", p, 0, 2).await;
    }
    let a = h.join_id("g", member("h", "a", "range", "earliest")).await;
    assert_eq!(polled(&h.poll("g", &a, "").await).len(), 12);

    let joined = h.join("g", member("h", "b", "range", "earliest")).await;
    let b = member_id(&joined);
    assert_eq!(partitions(&joined["assignment"]), BTreeSet::new(), "{joined}");
    assert_eq!(partitions(&joined["pending"]), set([3, 4, 5]), "{joined}");
    let d = h.describe("g").await;
    let by_id: BTreeMap<&str, &Value> =
        d["members"].as_array().expect("members").iter().map(|m| (m["member_id"].as_str().expect("id"), m)).collect();
    assert_eq!(partitions(&by_id[a.as_str()]["assignment"]), all(6), "{d}");
    assert_eq!(partitions(&by_id[b.as_str()]["pending"]), set([3, 4, 5]), "{d}");

    // b polls before a has released anything: nothing to read.
    let early = h.poll("g", &b, "").await;
    assert_eq!((partitions(&early["assignment"]), partitions(&early["pending"])), (BTreeSet::new(), set([3, 4, 5])));
    assert_eq!(polled(&early), none());

    for p in 0..6 {
        h.fill("h", p, 2, 1).await;
    }
    let released = h.poll("g", &a, "").await;
    assert_eq!(partitions(&released["assignment"]), set([0, 1, 2]), "{released}");
    assert_eq!(partitions(&released["pending"]), BTreeSet::new());
    assert_eq!(polled(&released), vec![(0, 2), (1, 2), (2, 2)], "a reads only what it still owns");
    assert_eq!(
        h.committed("g", "h").await,
        (0..6).map(|p| (p, 2)).collect::<BTreeMap<u32, u64>>(),
        "a committed before releasing"
    );

    let taken = h.poll("g", &b, "").await;
    assert_eq!(partitions(&taken["assignment"]), set([3, 4, 5]), "{taken}");
    assert_eq!(partitions(&taken["pending"]), BTreeSet::new());
    assert_eq!(polled(&taken), vec![(3, 2), (4, 2), (5, 2)], "b starts at a's commit");
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Commits
// ---------------------------------------------------------------------------------------

/// Commit fencing: a member's commit carries the generation of its last poll and names
/// only partitions it owns. A commit in any other generation, or for a partition the
/// member does not own (alone or next to one it does), is 409 `stale_generation` and
/// commits nothing. A member may still commit what it owns in its last polled
/// generation after a rebalance, until its next poll releases it (KIP-848). A commit
/// without a member to a group that has members is 409.
#[tokio::test]
async fn commits_are_fenced_by_generation_and_ownership() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "f", "partitions": 2})).await;
    h.fill("f", 0, 0, 3).await;
    h.fill("f", 1, 0, 3).await;
    let a = h.join_id("g", json!({"topics": ["f"], "client_id": "a", "auto_commit": false})).await;
    let g1 = generation(&h.poll("g", &a, "").await);
    let commit = |member: &str, gen: u64, entries: &[(u32, u64)]| {
        let offsets: Vec<Value> =
            entries.iter().map(|(p, o)| json!({"topic": "f", "partition": p, "offset": o})).collect();
        json!({"member_id": member, "generation": gen, "offsets": offsets})
    };

    for gen in [0, g1 + 1, 99] {
        h.post_json("/v1/groups/g/offsets", &commit(&a, gen, &[(0, 3)])).await.expect_error(409, "stale_generation");
    }
    assert_eq!(h.committed("g", "f").await, BTreeMap::new(), "a fenced commit committed");
    h.post_json("/v1/groups/g/offsets", &commit(&a, g1, &[(0, 3)])).await.expect_no_content();
    assert_eq!(h.committed("g", "f").await, BTreeMap::from([(0, 3)]));

    // b joins; a still owns partition 1 until its next poll, and may commit it in g1.
    let joined = h.join("g", json!({"topics": ["f"], "client_id": "b", "auto_commit": false})).await;
    let (b, g2) = (member_id(&joined), generation(&joined));
    assert_eq!(partitions(&joined["pending"]), set([1]));
    h.post_json("/v1/groups/g/offsets", &commit(&a, g1, &[(1, 3)])).await.expect_no_content();
    assert_eq!(h.committed("g", "f").await, BTreeMap::from([(0, 3), (1, 3)]));
    // b does not own partition 1 yet.
    h.post_json("/v1/groups/g/offsets", &commit(&b, g2, &[(1, 1)])).await.expect_error(409, "stale_generation");

    // a polls in g2 and releases partition 1: g1 is stale now, and partition 1 is not a's.
    assert_eq!(generation(&h.poll("g", &a, "").await), g2);
    let before = h.committed("g", "f").await;
    h.post_json("/v1/groups/g/offsets", &commit(&a, g1, &[(0, 1)])).await.expect_error(409, "stale_generation");
    h.post_json("/v1/groups/g/offsets", &commit(&a, g2, &[(1, 1)])).await.expect_error(409, "stale_generation");
    h.post_json("/v1/groups/g/offsets", &commit(&a, g2, &[(0, 1), (1, 1)])).await.expect_error(409, "stale_generation");
    h.post_json("/v1/groups/g/offsets", &json!({"offsets": [{"topic": "f", "partition": 0, "offset": 1}]}))
        .await
        .expect_error(409, "stale_generation");
    assert_eq!(h.committed("g", "f").await, before, "a fenced commit committed");

    // What each owns, each may commit (backwards too, as in Kafka).
    h.post_json("/v1/groups/g/offsets", &commit(&a, g2, &[(0, 1)])).await.expect_no_content();
    assert_eq!(partitions(&h.poll("g", &b, "").await["assignment"]), set([1]));
    h.post_json("/v1/groups/g/offsets", &commit(&b, g2, &[(1, 2)])).await.expect_no_content();
    assert_eq!(h.committed("g", "f").await, BTreeMap::from([(0, 1), (1, 2)]));
    h.shutdown().await;
}

/// The documented fence is the generation of the member's *last poll*: a member that
/// last polled in generation 1 and has not polled since a rebalance to generation 2
/// must not commit in generation 2 (it has not seen that generation's assignment).
#[tokio::test]
async fn a_commit_in_a_generation_the_member_has_not_polled_in_is_stale() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "f", "partitions": 2})).await;
    h.fill("f", 0, 0, 3).await;
    let a = h.join_id("g", json!({"topics": ["f"], "client_id": "a", "auto_commit": false})).await;
    let g1 = generation(&h.poll("g", &a, "").await);
    let g2 = generation(&h.join("g", json!({"topics": ["f"], "client_id": "b", "auto_commit": false})).await);
    assert!(g2 > g1);
    // a still owns partition 0 (and keeps it), but its last poll was in g1.
    let body = json!({"member_id": a, "generation": g2, "offsets": [{"topic": "f", "partition": 0, "offset": 3}]});
    h.post_json("/v1/groups/g/offsets", &body).await.expect_error(409, "stale_generation");
    assert_eq!(h.committed("g", "f").await, BTreeMap::new());
    h.shutdown().await;
}

/// A commit without a member to a group that has none is accepted (it creates the
/// group, `empty`, generation 0) and shows in GET /v1/groups/{g}/offsets with its
/// metadata and `lag = high_watermark − offset`; uncommitted partitions are not listed.
#[tokio::test]
async fn a_member_less_commit_to_an_empty_group_shows_with_its_lag() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    h.fill("t", 0, 0, 5).await;
    let body = json!({"offsets": [{"topic": "t", "partition": 0, "offset": 2, "metadata": "batch-7"}]});
    h.post_json("/v1/groups/solo/offsets", &body).await.expect_no_content();
    let rows = h.offset_rows("solo").await;
    assert_eq!(
        rows.values().cloned().collect::<Vec<_>>(),
        vec![json!({"topic": "t", "partition": 0, "offset": 2, "metadata": "batch-7", "member_id": null,
                    "high_watermark": 5, "lag": 3})]
    );
    let d = h.describe("solo").await;
    assert_eq!(
        (d["state"].clone(), d["generation"].clone(), d["members"].clone()),
        (json!("empty"), json!(0), json!([]))
    );
    let list = h.get("/v1/groups").await.expect_status(200);
    assert_eq!(list["groups"], json!([{"group": "solo", "state": "empty", "members": 0}]));

    // More records raise the lag; a later commit lowers it.
    h.fill("t", 0, 5, 2).await;
    assert_eq!(h.offset_rows("solo").await[&0]["lag"], 5);
    h.post_json("/v1/groups/solo/offsets", &json!({"offsets": [{"topic": "t", "partition": 0, "offset": 7}]}))
        .await
        .expect_no_content();
    let rows = h.offset_rows("solo").await;
    let row = &rows[&0];
    assert_eq!((row["offset"].clone(), row["lag"].clone(), row["metadata"].clone()), (json!(7), json!(0), Value::Null));
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Where a member starts
// ---------------------------------------------------------------------------------------

/// `auto_offset_reset = none` without a committed offset: the poll is 409
/// `no_committed_offset` and commits nothing; once an offset is committed, the poll
/// reads from exactly there.
#[tokio::test]
async fn reset_none_without_a_committed_offset_is_409() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "r", "partitions": 1})).await;
    h.fill("r", 0, 0, 3).await;
    let joined = h.join("g", json!({"topics": ["r"], "auto_offset_reset": "none"})).await;
    let m = member_id(&joined);
    h.get(&format!("/v1/groups/g/members/{m}/records")).await.expect_error(409, "no_committed_offset");
    h.get(&format!("/v1/groups/g/members/{m}/records")).await.expect_error(409, "no_committed_offset");
    assert_eq!(h.committed("g", "r").await, BTreeMap::new());
    let commit = json!({"member_id": m, "generation": generation(&joined),
                        "offsets": [{"topic": "r", "partition": 0, "offset": 1}]});
    h.post_json("/v1/groups/g/offsets", &commit).await.expect_no_content();
    assert_eq!(polled(&h.poll("g", &m, "").await), vec![(0, 1), (0, 2)]);
    h.shutdown().await;
}

/// `auto_offset_reset = earliest` reads every partition from offset 0.
#[tokio::test]
async fn reset_earliest_reads_from_the_start() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "r", "partitions": 2})).await;
    h.fill("r", 0, 0, 3).await;
    h.fill("r", 1, 0, 2).await;
    let m = h.join_id("g", json!({"topics": ["r"], "auto_offset_reset": "earliest"})).await;
    let answer = h.poll("g", &m, "").await;
    assert_eq!(polled(&answer), vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]);
    let values: Vec<&str> =
        answer["records"].as_array().expect("records").iter().map(|r| r["value"].as_str().expect("value")).collect();
    assert_eq!(values, ["p0-0", "p0-1", "p0-2", "p1-0", "p1-1"]);
    h.shutdown().await;
}

/// `auto_offset_reset = latest` (the default): the first poll returns nothing, and the
/// next returns exactly the records produced after it.
#[tokio::test]
async fn reset_latest_reads_only_what_comes_after_the_first_poll() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "r", "partitions": 2})).await;
    h.fill("r", 0, 0, 3).await;
    h.fill("r", 1, 0, 2).await;
    let m = h.join_id("g", json!({"topics": ["r"]})).await;
    assert_eq!(polled(&h.poll("g", &m, "").await), none());
    h.fill("r", 0, 3, 2).await;
    h.fill("r", 1, 2, 1).await;
    let answer = h.poll("g", &m, "").await;
    assert_eq!(polled(&answer), vec![(0, 3), (0, 4), (1, 2)]);
    let values: Vec<&str> =
        answer["records"].as_array().expect("records").iter().map(|r| r["value"].as_str().expect("value")).collect();
    assert_eq!(values, ["p0-3", "p0-4", "p1-2"]);
    assert_eq!(polled(&h.poll("g", &m, "").await), none());
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Auto-commit
// ---------------------------------------------------------------------------------------

/// With auto-commit, a poll commits nothing of what it returns; the next poll commits
/// exactly it (per partition, the last returned offset + 1). With `auto_commit = false`,
/// polls commit nothing.
#[tokio::test]
async fn auto_commit_commits_the_previous_poll_on_the_next() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "a", "partitions": 2})).await;
    h.fill("a", 0, 0, 2).await;
    h.fill("a", 1, 0, 2).await;
    let m = h.join_id("auto", json!({"topics": ["a"], "auto_offset_reset": "earliest"})).await;

    assert_eq!(polled(&h.poll("auto", &m, "max_records=3").await), vec![(0, 0), (0, 1), (1, 0)]);
    let rows = h.offset_rows("auto").await;
    for p in [0, 1] {
        assert_eq!(rows[&p]["offset"], Value::Null, "committed before the next poll: {rows:?}");
        assert_eq!(rows[&p]["member_id"], json!(m));
        assert_eq!(rows[&p]["lag"], 2, "lag counts from the log start without a commit");
    }

    assert_eq!(polled(&h.poll("auto", &m, "max_records=3").await), vec![(1, 1)]);
    assert_eq!(h.committed("auto", "a").await, BTreeMap::from([(0, 2), (1, 1)]));
    assert_eq!(polled(&h.poll("auto", &m, "").await), none());
    assert_eq!(h.committed("auto", "a").await, BTreeMap::from([(0, 2), (1, 2)]));
    let rows = h.offset_rows("auto").await;
    assert_eq!((rows[&0]["lag"].clone(), rows[&1]["lag"].clone()), (json!(0), json!(0)));

    let n = h.join_id("manual", json!({"topics": ["a"], "auto_offset_reset": "earliest", "auto_commit": false})).await;
    assert_eq!(polled(&h.poll("manual", &n, "").await).len(), 4);
    assert_eq!(polled(&h.poll("manual", &n, "").await), none());
    h.fill("a", 0, 2, 1).await;
    assert_eq!(polled(&h.poll("manual", &n, "").await), vec![(0, 2)]);
    assert_eq!(polled(&h.poll("manual", &n, "").await), none());
    assert_eq!(h.committed("manual", "a").await, BTreeMap::new());
    assert!(h.offset_rows("manual").await.values().all(|r| r["offset"].is_null()));
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Seek
// ---------------------------------------------------------------------------------------

/// Seek by timestamp lands each partition on its first record at or after the time (on
/// the high watermark where there is none); earliest, latest and an explicit offset
/// (for the listed partitions only) do what they say. Each seek is the group's committed
/// offsets, and the owning member's next poll starts exactly there.
#[tokio::test]
async fn seek_moves_the_group_and_the_owner_reads_from_there() {
    let h = Harness::new().await;
    // Explicit timestamps are long past: keep them from retention.
    h.create_topic(json!({"name": "s", "partitions": 3, "config": {"retention.ms": -1}})).await;
    let ts = |p: u32, t: i64| json!({"value": format!("p{p}@{t}"), "partition": p, "timestamp": t});
    h.produce("s", json!([ts(0, 1000), ts(0, 2000), ts(0, 3000)])).await;
    h.produce("s", json!([ts(1, 1500), ts(1, 2500)])).await;
    h.produce("s", json!([ts(2, 500)])).await;
    let m = h.join_id("g", json!({"topics": ["s"], "auto_offset_reset": "earliest"})).await;
    assert_eq!(polled(&h.poll("g", &m, "").await).len(), 6);
    let hr = &h;
    let seek = |to: Value| async move {
        let h = hr;
        let reply = h.post_json("/v1/groups/g/seek", &json!({"topic": "s", "to": to})).await;
        let body = reply.expect_status(200);
        body["offsets"]
            .as_array()
            .expect("offsets")
            .iter()
            .map(|o| {
                assert_eq!(o["topic"], "s");
                (as_u32(&o["partition"]), o["offset"].as_u64().expect("offset"))
            })
            .collect::<BTreeMap<u32, u64>>()
    };

    let at = seek(json!({"timestamp": 2000})).await;
    assert_eq!(at, BTreeMap::from([(0, 1), (1, 1), (2, 1)]));
    assert_eq!(h.committed("g", "s").await, at);
    let answer = h.poll("g", &m, "").await;
    assert_eq!(polled(&answer), vec![(0, 1), (0, 2), (1, 1)]);
    assert!(answer["records"].as_array().expect("records").iter().all(|r| r["timestamp"].as_i64() >= Some(2000)));

    assert_eq!(seek(json!({"timestamp": 0})).await, BTreeMap::from([(0, 0), (1, 0), (2, 0)]));
    assert_eq!(seek(json!({"timestamp": 9999})).await, BTreeMap::from([(0, 3), (1, 2), (2, 1)]));
    assert_eq!(polled(&h.poll("g", &m, "").await), none());

    assert_eq!(seek(json!("earliest")).await, BTreeMap::from([(0, 0), (1, 0), (2, 0)]));
    assert_eq!(h.committed("g", "s").await, BTreeMap::from([(0, 0), (1, 0), (2, 0)]));
    assert_eq!(polled(&h.poll("g", &m, "").await), vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]);

    assert_eq!(seek(json!("latest")).await, BTreeMap::from([(0, 3), (1, 2), (2, 1)]));
    assert_eq!(polled(&h.poll("g", &m, "").await), none());
    h.produce("s", json!([ts(1, 4000)])).await;
    assert_eq!(polled(&h.poll("g", &m, "").await), vec![(1, 2)]);

    let one = h.post_json("/v1/groups/g/seek", &json!({"topic": "s", "partitions": [0], "to": {"offset": 1}})).await;
    assert_eq!(one.expect_status(200), json!({"offsets": [{"topic": "s", "partition": 0, "offset": 1}]}));
    // This poll auto-commits how far the previous one read in partition 1 (3); partition
    // 0 starts where the seek put it.
    assert_eq!(polled(&h.poll("g", &m, "").await), vec![(0, 1), (0, 2)]);
    assert_eq!(h.committed("g", "s").await, BTreeMap::from([(0, 1), (1, 3), (2, 1)]));
    h.shutdown().await;
}

/// A seek while the owning member's long poll is in flight still decides where the
/// member's next poll starts: the in-flight poll must not overwrite it with the position
/// it read up to, and its auto-commit must not overwrite the sought offset.
#[tokio::test]
async fn a_seek_during_an_in_flight_poll_is_not_lost() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "s", "partitions": 1})).await;
    h.fill("s", 0, 0, 3).await;
    let m = h.join_id("g", json!({"topics": ["s"], "auto_offset_reset": "earliest"})).await;
    assert_eq!(polled(&h.poll("g", &m, "").await).len(), 3);

    let app = h.app.clone();
    let uri = format!("/v1/groups/g/members/{m}/records?timeout_ms=10000");
    let in_flight = tokio::spawn(async move {
        let response = app.oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("infallible");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice::<Value>(&body).expect("JSON")
    });
    // The in-flight poll has begun once it auto-committed the previous poll's 3.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.committed("g", "s").await.get(&0) != Some(&3) {
        assert!(Instant::now() < deadline, "the long poll never began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sought = h.post_json("/v1/groups/g/seek", &json!({"topic": "s", "to": "earliest"})).await;
    assert_eq!(sought.expect_status(200)["offsets"][0]["offset"], 0);
    h.fill("s", 0, 3, 1).await;
    let answered = in_flight.await.expect("poll task");
    assert_eq!(polled(&answered), vec![(0, 3)], "the in-flight poll read from where it began");

    assert_eq!(
        polled(&h.poll("g", &m, "").await),
        vec![(0, 0), (0, 1), (0, 2), (0, 3)],
        "the next poll starts at the sought offset"
    );
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Member polls: long polls, paging, listing, partitions added
// ---------------------------------------------------------------------------------------

/// A member's long poll on an empty log answers with a record produced while it waits.
#[tokio::test]
async fn a_member_long_poll_answers_when_a_record_arrives() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "w", "partitions": 2})).await;
    let m = h.join_id("g", json!({"topics": ["w"], "auto_offset_reset": "earliest"})).await;
    assert_eq!(polled(&h.poll("g", &m, "").await), none());
    let app = h.app.clone();
    let uri = format!("/v1/groups/g/members/{m}/records?timeout_ms=20000");
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        let response = app.oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("infallible");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice::<Value>(&body).expect("JSON")
    });
    h.fill("w", 1, 0, 1).await;
    let answer = waiting.await.expect("poll task");
    assert_eq!(polled(&answer), vec![(1, 0)], "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15), "the long poll waited out its timeout instead");
    h.shutdown().await;
}

/// `max_records` and `max_bytes` limit a member's poll (`max_bytes` still returns one
/// record), and the next poll continues exactly after the last record returned.
#[tokio::test]
async fn max_records_and_max_bytes_page_a_member_without_gaps() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "p", "partitions": 1})).await;
    h.fill("p", 0, 0, 5).await;
    let m = h.join_id("g", json!({"topics": ["p"], "auto_offset_reset": "earliest"})).await;
    assert_eq!(polled(&h.poll("g", &m, "max_records=2").await), vec![(0, 0), (0, 1)]);
    assert_eq!(polled(&h.poll("g", &m, "max_bytes=1").await), vec![(0, 2)]);
    assert_eq!(polled(&h.poll("g", &m, "max_records=1").await), vec![(0, 3)]);
    assert_eq!(polled(&h.poll("g", &m, "").await), vec![(0, 4)]);
    assert_eq!(polled(&h.poll("g", &m, "").await), none());
    assert_eq!(h.committed("g", "p").await, BTreeMap::from([(0, 5)]));
    h.shutdown().await;
}

/// GET /v1/groups lists every group, gathered from every partition of the offsets topic
/// (these ids are coordinated by different ones), sorted by id, with its state and member
/// count.
#[tokio::test]
async fn the_group_list_shows_every_group_with_state_and_members() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 1})).await;
    assert_eq!(h.get("/v1/groups").await.expect_status(200), json!({"groups": []}));
    let names = ["zeta", "alpha", "billing", "orders.v2", "x_1", "M-9"];
    let count = GatewayConfig::default().offsets_topic_partitions;
    let coordinators: BTreeSet<u32> = names.iter().map(|g| coordinator_partition(g, count)).collect();
    assert!(coordinators.len() > 1, "the ids should spread over coordinators: {coordinators:?}");
    for (i, g) in names.iter().enumerate() {
        for _ in 0..i % 3 {
            h.join(g, json!({"topics": ["t"]})).await;
        }
        if i % 3 == 0 {
            h.post_json(
                &format!("/v1/groups/{g}/offsets"),
                &json!({"offsets": [{"topic": "t", "partition": 0, "offset": 0}]}),
            )
            .await
            .expect_no_content();
        }
    }
    let mut expected: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let members = i % 3;
            json!({"group": g, "state": if members == 0 { "empty" } else { "stable" }, "members": members})
        })
        .collect();
    expected.sort_by(|a, b| a["group"].as_str().cmp(&b["group"].as_str()));
    assert_eq!(h.get("/v1/groups").await.expect_status(200)["groups"], Value::Array(expected));
    h.shutdown().await;
}

/// Adding partitions to a subscribed topic rebalances the group (the node's sweep
/// notices; waited for with a deadline): a new generation whose assignment covers the
/// new partitions once the members have polled.
#[tokio::test]
async fn adding_partitions_to_a_subscribed_topic_rebalances() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "grow", "partitions": 2})).await;
    let a = h.join_id("g", member("grow", "a", "range", "earliest")).await;
    let b = h.join_id("g", member("grow", "b", "range", "earliest")).await;
    h.settle("g", &[&a, &b]).await;
    let before = generation(&h.describe("g").await);
    h.patch_json("/v1/topics/grow", &json!({"partitions": 4})).await.expect_status(200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while generation(&h.describe("g").await) == before {
        assert!(Instant::now() < deadline, "no rebalance after the topic grew");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = h.settle("g", &[&a, &b]).await;
    assert_eq!((after[&a].clone(), after[&b].clone()), (set([0, 1]), set([2, 3])));
    h.fill("grow", 3, 0, 1).await;
    assert_eq!(polled(&h.poll("g", &b, "").await), vec![(3, 0)]);
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Leave and delete
// ---------------------------------------------------------------------------------------

/// Leaving is 204 and a new generation; with auto-commit, what the leaver read is
/// committed, so the remaining member takes its partitions (on its next poll) from
/// exactly there. A member that left is unknown. When the last member leaves the group
/// is `empty` but keeps its offsets; deleting it is 204 and then it is 404 everywhere.
#[tokio::test]
async fn leaving_hands_partitions_over_and_an_empty_group_can_be_deleted() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "l", "partitions": 6})).await;
    for p in 0..6 {
        h.fill("l", p, 0, 1).await;
    }
    let a = h.join_id("g", member("l", "a", "range", "earliest")).await;
    assert_eq!(polled(&h.poll("g", &a, "").await).len(), 6);
    let b = h.join_id("g", member("l", "b", "range", "earliest")).await;
    let settled = h.settle("g", &[&a, &b]).await;
    assert_eq!(settled[&b], set([3, 4, 5]));
    for p in 0..6 {
        h.fill("l", p, 1, 1).await;
    }
    assert_eq!(polled(&h.poll("g", &b, "").await), vec![(3, 1), (4, 1), (5, 1)]);
    let gen_before = generation(&h.describe("g").await);

    h.delete(&format!("/v1/groups/g/members/{b}")).await.expect_no_content();
    let d = h.describe("g").await;
    assert_eq!(generation(&d), gen_before + 1, "leaving starts a new generation: {d}");
    let members: Vec<&str> =
        d["members"].as_array().expect("members").iter().map(|m| m["member_id"].as_str().expect("id")).collect();
    assert_eq!(members, [a.as_str()]);
    let committed = h.committed("g", "l").await;
    assert_eq!((committed[&3], committed[&4], committed[&5]), (2, 2, 2), "b's reads were committed when it left");

    let answer = h.poll("g", &a, "").await;
    assert_eq!(partitions(&answer["assignment"]), all(6), "{answer}");
    assert_eq!(generation(&answer), gen_before + 1);
    assert_eq!(polled(&answer), vec![(0, 1), (1, 1), (2, 1)], "a reads none of what b already read");

    h.delete(&format!("/v1/groups/g/members/{b}")).await.expect_error(404, "unknown_member_id");
    h.get(&format!("/v1/groups/g/members/{b}/records")).await.expect_error(404, "unknown_member_id");

    h.delete(&format!("/v1/groups/g/members/{a}")).await.expect_no_content();
    let d = h.describe("g").await;
    assert_eq!((d["state"].clone(), d["members"].clone()), (json!("empty"), json!([])));
    assert_eq!(generation(&d), gen_before + 2);
    assert_eq!(d["offsets"].as_array().map(Vec::len), Some(6), "an empty group keeps its offsets: {d}");

    h.delete("/v1/groups/g").await.expect_no_content();
    h.get("/v1/groups/g").await.expect_error(404, "unknown_group");
    h.get("/v1/groups/g/offsets").await.expect_error(404, "unknown_group");
    h.delete("/v1/groups/g").await.expect_error(404, "unknown_group");
    assert!(h.group_names().await.is_empty());
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Server-Sent Events on GET /v1/topics/{t}/partitions/{p}/records
// ---------------------------------------------------------------------------------------

/// One block of an event stream: an event (`event`, `id`, `data`) or comments.
#[derive(Debug, Default)]
struct Block {
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
    comments: Vec<String>,
}

/// Reads an event stream's body block by block.
struct EventReader {
    body: Body,
    buf: Vec<u8>,
}

impl EventReader {
    /// The next block, waiting for it until `deadline`.
    async fn next_block(&mut self, deadline: Instant) -> Block {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8(self.buf[..end].to_vec()).expect("UTF-8 stream");
                self.buf.drain(..end + 2);
                let mut block = Block::default();
                for line in text.lines() {
                    if let Some(comment) = line.strip_prefix(':') {
                        block.comments.push(comment.trim().to_owned());
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                    match field {
                        "event" => block.event = Some(value),
                        "id" => block.id = Some(value),
                        "data" => block.data = Some(value),
                        other => panic!("unexpected field `{other}` in {text:?}"),
                    }
                }
                return block;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no complete block before the deadline; buffered {:?}", self.buf))
                .expect("the stream ended")
                .expect("stream error");
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    /// The next `record` event (heartbeats skipped) as `(id, data)`.
    async fn next_record(&mut self, deadline: Instant) -> (String, Value) {
        loop {
            let block = self.next_block(deadline).await;
            if block.event.is_none() && block.data.is_none() {
                continue;
            }
            assert_eq!(block.event.as_deref(), Some("record"), "{block:?}");
            let data = serde_json::from_str(block.data.as_deref().expect("data")).expect("record JSON");
            return (block.id.expect("an id"), data);
        }
    }

    /// The next `n` records as `(id, offset, value)`.
    async fn records(&mut self, n: usize) -> Vec<(String, u64, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        for _ in 0..n {
            let (id, data) = self.next_record(deadline).await;
            out.push((id, data["offset"].as_u64().expect("offset"), data["value"].as_str().expect("value").to_owned()));
        }
        out
    }
}

impl Harness {
    /// Opens an event stream, asserting 200 and `text/event-stream`.
    async fn stream(&self, uri: &str, headers: &[(&str, &str)]) -> EventReader {
        let mut builder = Request::get(uri).header(header::ACCEPT, "text/event-stream");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response =
            self.app.clone().oneshot(builder.body(Body::empty()).expect("request")).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(content_type.starts_with("text/event-stream"), "content type `{content_type}`");
        EventReader { body: response.into_body(), buf: Vec::new() }
    }
}

/// `(id, offset, value)` of records `from..to` of partition `p` as `fill` wrote them.
fn expected(p: u32, from: u64, to: u64) -> Vec<(String, u64, String)> {
    (from..to).map(|o| (format!("{p}:{o}"), o, format!("p{p}-{o}"))).collect()
}

/// Records produced before and after the stream opened all arrive, in order, as
/// `event: record` with `id: partition:offset` and the record as data.
#[tokio::test]
async fn sse_streams_records_from_before_and_after_opening() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "e", "partitions": 2})).await;
    h.fill("e", 1, 0, 3).await;
    h.fill("e", 0, 0, 1).await;
    let mut s = h.stream("/v1/topics/e/partitions/1/records?offset=earliest", &[]).await;
    assert_eq!(s.records(3).await, expected(1, 0, 3));
    h.fill("e", 1, 3, 2).await;
    h.fill("e", 0, 1, 1).await;
    h.fill("e", 1, 5, 1).await;
    assert_eq!(s.records(3).await, expected(1, 3, 6), "only partition 1, in order, nothing skipped");

    // From an offset, too.
    let mut s = h.stream("/v1/topics/e/partitions/1/records?offset=4", &[]).await;
    assert_eq!(s.records(2).await, expected(1, 4, 6));
    h.shutdown().await;
}

/// With `heartbeat_ms=100`, an idle stream sends a `:heartbeat` comment; a record
/// produced afterwards still arrives. `heartbeat_ms` outside [100, 60000] is 400.
#[tokio::test]
async fn sse_sends_heartbeats_while_idle() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "e", "partitions": 1})).await;
    h.fill("e", 0, 0, 2).await;
    for q in ["heartbeat_ms=99", "heartbeat_ms=60001", "heartbeat_ms=-1", "heartbeat_ms=often"] {
        h.get_with(&format!("/v1/topics/e/partitions/0/records?{q}"), &[("accept", "text/event-stream")])
            .await
            .expect_error(400, "invalid_request");
    }
    let mut s = h.stream("/v1/topics/e/partitions/0/records?offset=latest&heartbeat_ms=100", &[]).await;
    let block = s.next_block(Instant::now() + Duration::from_secs(5)).await;
    assert_eq!((block.event.as_deref(), block.data.as_deref()), (None, None), "no record is due: {block:?}");
    assert_eq!(block.comments, ["heartbeat"]);
    let block = s.next_block(Instant::now() + Duration::from_secs(5)).await;
    assert_eq!(block.comments, ["heartbeat"], "heartbeats keep coming while idle");
    h.fill("e", 0, 2, 1).await;
    assert_eq!(s.records(1).await, expected(0, 2, 3));
    h.shutdown().await;
}

/// Reconnecting with `Last-Event-ID: p:o` resumes at o + 1 (over the query's offset):
/// no gap, no repeat — the record after the last one expected is a new one produced as
/// a marker. A Last-Event-ID naming another partition, or malformed, is 400; one past
/// the log end is 416.
#[tokio::test]
async fn sse_resumes_after_last_event_id() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "e", "partitions": 2})).await;
    h.fill("e", 0, 0, 5).await;
    let uri = "/v1/topics/e/partitions/0/records?offset=earliest";
    let mut first = h.stream(uri, &[]).await;
    let seen = first.records(3).await;
    assert_eq!(seen, expected(0, 0, 3));
    let last_id = seen[2].0.clone();
    drop(first);

    let mut resumed = h.stream(uri, &[("last-event-id", last_id.as_str())]).await;
    assert_eq!(resumed.records(2).await, expected(0, 3, 5));
    h.fill("e", 0, 5, 1).await;
    assert_eq!(resumed.records(1).await, expected(0, 5, 6), "nothing between the resumed records and the marker");

    // Resuming after the last record waits for the next one.
    let mut tail = h.stream(uri, &[("last-event-id", "0:5")]).await;
    h.fill("e", 0, 6, 1).await;
    assert_eq!(tail.records(1).await, expected(0, 6, 7));

    for bad in ["1:2", "2", "0:x", "-1:2", "0:-1", ""] {
        let reply = h.get_with(uri, &[("accept", "text/event-stream"), ("last-event-id", bad)]).await;
        let message = reply.expect_error(400, "invalid_request");
        if bad == "1:2" {
            assert!(message.contains("partition 1"), "{message}");
        }
    }
    h.get_with(uri, &[("accept", "text/event-stream"), ("last-event-id", "0:100")])
        .await
        .expect_error(416, "offset_out_of_range");
    h.shutdown().await;
}

/// A member's poll as an event stream: first `event: assignment` with the member's id,
/// generation and partitions, then `event: record` with `id: topic:partition:offset` for
/// records there before and produced after. After a rebalance, an `assignment` event with
/// the new generation comes before any record read in it.
#[tokio::test]
async fn member_event_stream_sends_the_assignment_then_records() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "ms", "partitions": 2})).await;
    h.fill("ms", 0, 0, 2).await;
    let joined = h.join("g", member("ms", "a", "range", "earliest")).await;
    let a = member_id(&joined);
    let mut s = h.stream(&format!("/v1/groups/g/members/{a}/records"), &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = s.next_block(deadline).await;
    assert_eq!(first.event.as_deref(), Some("assignment"), "{first:?}");
    let assignment: Value = serde_json::from_str(first.data.as_deref().expect("data")).expect("JSON");
    assert_eq!(assignment["member_id"], json!(a));
    assert_eq!(assignment["generation"], joined["generation"]);
    assert_eq!(partitions(&assignment["assignment"]), all(2));
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(s.next_record(deadline).await.0);
    }
    h.fill("ms", 1, 0, 1).await;
    ids.push(s.next_record(deadline).await.0);
    assert_eq!(ids, ["ms:0:0", "ms:0:1", "ms:1:0"]);

    // b joins. The long poll a's stream has in flight belongs to the old generation and
    // may still return a record; the record after that is read in the new generation,
    // so its `assignment` event must come first.
    let b = h.join("g", member("ms", "b", "range", "earliest")).await;
    h.fill("ms", 0, 2, 1).await;
    let mut seen: Vec<(Option<String>, Option<String>)> = Vec::new();
    let mut announced = None;
    while !seen.iter().any(|(_, id)| id.as_deref() == Some("ms:0:3")) {
        let block = s.next_block(deadline).await;
        if block.event.is_none() {
            continue;
        }
        if block.event.as_deref() == Some("assignment") {
            announced = Some(serde_json::from_str::<Value>(block.data.as_deref().expect("data")).expect("JSON"));
        }
        if block.id.as_deref() == Some("ms:0:2") {
            h.fill("ms", 0, 3, 1).await;
        }
        seen.push((block.event, block.id));
    }
    let records: Vec<&str> = seen.iter().filter_map(|(_, id)| id.as_deref()).collect();
    assert_eq!(records, ["ms:0:2", "ms:0:3"], "{seen:?}");
    let at = seen.iter().position(|(e, _)| e.as_deref() == Some("assignment")).expect("an assignment event");
    assert!(at < seen.len() - 1, "the new assignment came after a record of the new generation: {seen:?}");
    let announced = announced.expect("assignment");
    assert_eq!(announced["generation"], b["generation"], "{announced}");
    assert_eq!(partitions(&announced["assignment"]), set([0]), "{announced}");
    h.shutdown().await;
}

/// A rebalance reaches an idle member's event stream promptly: the `assignment` event
/// should not wait for the stream's long poll (15 s, twice) to end without records.
#[tokio::test]
async fn member_event_stream_announces_a_rebalance_without_waiting_for_records() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "ms", "partitions": 2})).await;
    let a = h.join_id("g", member("ms", "a", "range", "earliest")).await;
    let mut s = h.stream(&format!("/v1/groups/g/members/{a}/records"), &[]).await;
    let first = s.next_block(Instant::now() + Duration::from_secs(10)).await;
    assert_eq!(first.event.as_deref(), Some("assignment"), "{first:?}");
    let b = h.join("g", member("ms", "b", "range", "earliest")).await;
    // Well under the stream's 15 s long poll, well over what a coordinator call takes.
    let deadline = Instant::now() + Duration::from_secs(5);
    let block = s.next_block(deadline).await;
    assert_eq!(block.event.as_deref(), Some("assignment"), "{block:?}");
    let announced: Value = serde_json::from_str(block.data.as_deref().expect("data")).expect("JSON");
    assert_eq!(announced["generation"], b["generation"]);
    h.shutdown().await;
}
