//! `POST /v1/elections` on one node: what needs no election is answered as such, and
//! bad requests are refused with their codes and leave no request behind. Elections that
//! move leadership need several nodes: `tests/cluster.rs`.

use crate::common::Harness;
use serde_json::json;

/// On one node every partition is led by its preferred (only) replica: each one asked
/// for — listed or, with `partitions` omitted, all of them — is `already_preferred`, and
/// no request is left for the controller.
#[tokio::test]
async fn partitions_led_by_their_preferred_replica_need_no_election() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "a", "partitions": 2})).await;
    h.create_topic(json!({"name": "b", "partitions": 1})).await;
    let r = h
        .post_json(
            "/v1/elections",
            &json!({"type": "preferred", "partitions": [
        {"topic": "b", "partition": 0}, {"topic": "a", "partition": 1}, {"topic": "b", "partition": 0}]}),
        )
        .await
        .expect_status(200);
    let node = h.node.id();
    let listed: Vec<(String, u64, String)> = r["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| {
            assert_eq!((x["leader"].as_u64(), x["preferred"].as_u64()), (Some(node.into()), Some(node.into())), "{x}");
            (
                x["topic"].as_str().expect("topic").to_owned(),
                x["partition"].as_u64().expect("p"),
                x["outcome"].as_str().expect("o").to_owned(),
            )
        })
        .collect();
    let done = "already_preferred".to_owned();
    assert_eq!(listed, vec![("a".into(), 1, done.clone()), ("b".into(), 0, done.clone())], "sorted, once each");
    let all = h.post_json("/v1/elections", &json!({})).await.expect_status(200);
    assert_eq!(all["results"].as_array().expect("results").len(), 3, "every partition: {all}");
    assert!(all["results"].as_array().expect("results").iter().all(|x| x["outcome"] == "already_preferred"));
    assert!(h.coordinator.metadata().borrow().preferred_election.is_none(), "nothing asked of the controller");
    h.shutdown().await;
}

/// Every malformed request is refused with its code and asks nothing of the controller.
#[tokio::test]
async fn bad_election_requests_are_refused_and_change_nothing() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "a", "partitions": 2})).await;
    let cases = [
        (json!({"partitions": [{"topic": "nope", "partition": 0}]}), 404, "unknown_topic"),
        (json!({"partitions": [{"topic": "a", "partition": 2}]}), 404, "unknown_partition"),
        (json!({"partitions": []}), 400, "invalid_request"),
        (json!({"type": "unclean"}), 400, "invalid_json"),
        (json!({"partitions": [{"topic": "a"}]}), 400, "invalid_json"),
        (json!({"partitions": [{"topic": "a", "partition": -1}]}), 400, "invalid_json"),
        (json!({"timeout_ms": 1u64 << 40}), 400, "invalid_request"),
        (json!({"surprise": true}), 400, "invalid_json"),
    ];
    for (body, status, code) in cases {
        let r = h.post_json("/v1/elections", &body).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.text());
        r.expect_error(status, code);
    }
    let too_many: Vec<_> =
        (0..=fjord_gateway::http::elections::MAX_PARTITIONS).map(|_| json!({"topic": "a", "partition": 0})).collect();
    h.post_json("/v1/elections", &json!({"partitions": too_many})).await.expect_error(400, "invalid_request");
    h.post("/v1/elections", Some("text/plain"), "{}").await.expect_error(415, "unsupported_media_type");
    h.post("/v1/elections", Some("application/json"), "{").await.expect_error(400, "invalid_json");
    assert!(h.coordinator.metadata().borrow().preferred_election.is_none(), "a refused request asked the controller");
    h.shutdown().await;
}
