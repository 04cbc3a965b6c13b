//! Commits and their fencing, where a member starts, auto-commit, seek.

use super::*;
use crate::common::*;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

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

/// Offsets expiry (Kafka's `offsets.retention.minutes`, here `offsets_retention_ms`): a
/// group that became empty loses its committed offsets, and is gone, once the retention
/// has passed since it emptied and since its last commit; a group with a live member
/// keeps offsets committed before that, however old. Waits are on the condition.
#[tokio::test]
async fn an_empty_groups_offsets_expire_and_a_live_groups_do_not() {
    let h = Harness::with_node_config(|n| n.offsets_retention_ms = 300).await;
    h.create_topic(json!({"name": "t", "partitions": 1})).await;
    h.fill("t", 0, 0, 5).await;
    // The live group commits first: by the time the other expires, its commit is older.
    let manual = |client: &str| {
        let mut body = member("t", client, "range", "earliest");
        body["auto_commit"] = json!(false);
        body
    };
    let live = h.join_id("live", manual("a")).await;
    h.poll("live", &live, "timeout_ms=0").await;
    let commit = |m: &str, g: u64| json!({"member_id": m, "generation": g, "offsets": [{"topic": "t", "partition": 0, "offset": 3}]});
    let live_generation = generation(&h.describe("live").await);
    h.post_json("/v1/groups/live/offsets", &commit(&live, live_generation)).await.expect_no_content();

    let gone = h.join_id("gone", manual("b")).await;
    h.poll("gone", &gone, "timeout_ms=0").await;
    let gone_generation = generation(&h.describe("gone").await);
    h.post_json("/v1/groups/gone/offsets", &commit(&gone, gone_generation)).await.expect_no_content();
    h.delete(&format!("/v1/groups/gone/members/{gone}")).await.expect_no_content();
    assert_eq!(h.committed("gone", "t").await, BTreeMap::from([(0, 3)]), "kept while the retention runs");

    let deadline = Instant::now() + Duration::from_secs(20);
    while h.get("/v1/groups/gone").await.status != axum::http::StatusCode::NOT_FOUND {
        assert!(Instant::now() < deadline, "the empty group's offsets never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.get("/v1/groups/gone").await.expect_error(404, "unknown_group");
    assert!(!h.group_names().await.contains(&"gone".to_owned()));
    assert_eq!(h.committed("live", "t").await, BTreeMap::from([(0, 3)]), "a group with a member keeps its offsets");
    // Joining again starts from scratch: nothing committed, so `earliest` applies.
    let again = h.join_id("gone", manual("b")).await;
    assert_eq!(polled(&h.poll("gone", &again, "timeout_ms=0").await).first(), Some(&(0, 0)));
    h.shutdown().await;
}
