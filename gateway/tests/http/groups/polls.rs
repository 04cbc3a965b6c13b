//! Member polls (long polls, paging, listing, partitions added), leave and delete.

use super::*;
use crate::common::*;
use axum::body::Body;
use axum::http::Request;
use fjord_gateway::GatewayConfig;
use fjord_protocol::group::coordinator_partition;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

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

/// A long poll of a member that owns no partition (a second member of a one-partition
/// topic) waits out its `timeout_ms` before answering, empty, instead of answering at
/// once and making a client loop spin; then it answers with what the member owns.
#[tokio::test]
async fn a_member_without_partitions_long_polls_instead_of_spinning() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "one", "partitions": 1})).await;
    let a = h.join_id("g", json!({"topics": ["one"], "auto_offset_reset": "earliest"})).await;
    let b = h.join_id("g", json!({"topics": ["one"], "auto_offset_reset": "earliest"})).await;
    let owners = h.settle("g", &[&a, &b]).await;
    let idle =
        owners.iter().find(|(_, ps)| ps.is_empty()).map(|(m, _)| m.clone()).expect("a member without partitions");
    for _ in 0..3 {
        let started = Instant::now();
        let answer = h.poll("g", &idle, "timeout_ms=400").await;
        assert_eq!(polled(&answer), none(), "{answer}");
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "answered after {:?}: it did not wait",
            started.elapsed()
        );
    }
    h.shutdown().await;
}
