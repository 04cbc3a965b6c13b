//! `/v1/pipelines`: a definition is checked whole before anything is stored (every kind
//! of bad one refused with where it is wrong, nothing created), a stored one is listed
//! and described, a name is taken once, and a delete removes it with its group and
//! internal topics. The processors that run pipelines are tested against real processes
//! (`tests/streams.rs`).

use crate::common::*;
use fjord_protocol::auth::{Operation, PatternType, ResourcePattern, ResourceType, Scope};
use serde_json::{json, Value};

fn def(name: &str, steps: Value) -> Value {
    json!({"name": name, "source": ["orders"], "steps": steps, "sink": "counts"})
}

async fn names(h: &Harness) -> Vec<String> {
    let list = h.get("/v1/pipelines").await.expect_status(200);
    list["pipelines"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn bad_definitions_are_refused_with_where_and_store_nothing() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "orders", "partitions": 2})).await;
    h.create_topic(json!({"name": "counts", "partitions": 1})).await;
    let cases: Vec<(Value, &str)> = vec![
        (def("p", json!([{"filter": ".amount >"}])), "steps[0].filter (at character"),
        (def("p", json!([{"map": "nosuch(.)"}])), "steps[0].map (at character 0): nosuch is not defined"),
        (
            def("p", json!([{"aggregate": {"op": "count", "window": {"tumbling": {"size_ms": 0}}}}])),
            "steps[0].aggregate.window",
        ),
        (def("p", json!([{"aggregate": {"op": "sum"}}])), "steps[0].aggregate.of"),
        (def("p", json!([{"filtr": "."}])), "not a pipeline definition"),
        (json!({"name": "p", "source": ["nope"], "sink": "counts"}), "source[0]: topic `nope` does not exist"),
        (json!({"name": "p", "source": ["orders"], "sink": "nope"}), "sink: topic `nope` does not exist"),
        (
            def("p", json!([{"join_table": {"table": "missing"}}])),
            "steps[0].join_table.table: topic `missing` does not exist",
        ),
        (json!({"name": "bad name", "source": ["orders"], "sink": "counts"}), "name: 1–100 characters"),
        (json!({"name": "p", "source": [], "sink": "counts"}), "source: at least one topic"),
    ];
    for (body, says) in cases {
        let message = h.post_json("/v1/pipelines", &body).await.expect_error(400, "invalid_pipeline");
        assert!(message.contains(says), "{body}: {message:?} should say {says:?}");
    }
    h.post("/v1/pipelines", Some("application/json"), "{not json").await.expect_error(400, "invalid_json");
    h.post("/v1/pipelines", Some("text/plain"), "{}").await.expect_error(415, "unsupported_media_type");
    assert!(names(&h).await.is_empty());
    let topics = h.topic_names().await;
    assert!(topics.iter().all(|t| !t.starts_with("p-")), "no internal topic was made: {topics:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_pipeline_is_stored_listed_described_and_deleted() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "orders", "partitions": 2})).await;
    h.create_topic(json!({"name": "counts", "partitions": 1})).await;
    let body = def("per-region", json!([{"key_by": ".region"}, {"aggregate": {"op": "count"}}]));
    let created = h.post_json("/v1/pipelines", &body).await.expect_status(201);
    assert_eq!(created["name"], "per-region");
    assert_eq!(created["definition"]["steps"][0], json!({"key_by": ".region"}));
    assert_eq!(names(&h).await, vec!["per-region"]);
    h.post_json("/v1/pipelines", &body).await.expect_error(409, "pipeline_already_exists");
    let d = h.get("/v1/pipelines/per-region").await.expect_status(200);
    assert_eq!(d["state"], "idle", "no processor runs here: {d}");
    assert_eq!(d["instances"], json!([]));
    assert_eq!(d["definition"]["sink"], "counts");
    h.get("/v1/pipelines/nope").await.expect_error(404, "unknown_pipeline");
    // Internal topics a processor made are deleted with the pipeline.
    h.create_topic(json!({"name": "per-region-changelog-0", "partitions": 2})).await;
    h.create_topic(json!({"name": "per-region-repartition-1", "partitions": 2})).await;
    assert_eq!(
        h.get("/v1/pipelines/per-region").await.expect_status(200)["internal_topics"].as_array().map(Vec::len),
        Some(2)
    );
    h.delete("/v1/pipelines/per-region").await.expect_no_content();
    assert!(names(&h).await.is_empty());
    let topics = h.topic_names().await;
    assert_eq!(topics, vec!["__consumer_offsets", "counts", "orders"], "internal topics gone, inputs and sink kept");
    h.delete("/v1/pipelines/per-region").await.expect_error(404, "unknown_pipeline");
    // What an earlier pipeline of a name left behind blocks a new one of that name.
    h.create_topic(json!({"name": "again-changelog-0", "partitions": 2})).await;
    let message =
        h.post_json("/v1/pipelines", &def("again", json!([]))).await.expect_error(409, "pipeline_already_exists");
    assert!(message.contains("again-changelog-0"), "{message}");
    h.shutdown().await;
}

/// Creating a pipeline needs the rights it will use: consume on its group and inputs,
/// produce on its sink — a processor must not lend a pipeline more than its creator has.
#[tokio::test]
async fn creating_a_pipeline_needs_the_rights_it_uses() {
    let h = Harness::secured().await;
    h.create_topic(json!({"name": "orders", "partitions": 1})).await;
    h.create_topic(json!({"name": "counts", "partitions": 1})).await;
    let acl = |rt: &str, name: &str, op: &str| json!({"principal": "bob", "resource_type": rt, "pattern_type": "literal", "name": name, "operation": op, "permission": "allow"});
    h.post_json("/v1/acls", &json!({"acls": [acl("group", "p", "consume"), acl("topic", "orders", "consume")]}))
        .await
        .expect_status(201);
    let all = vec![Scope {
        resource: ResourcePattern {
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Literal,
            name: "*".into(),
        },
        operations: vec![Operation::All],
    }];
    let mut scopes = Scope::everything();
    scopes.extend(all);
    let bob = h.mint("bob", scopes, None, None).await;
    let body = def("p", json!([])).to_string();
    let post =
        || h.request_as(Some(&bob), axum::http::Method::POST, "/v1/pipelines", Some("application/json"), body.clone());
    post().await.expect_error(403, "forbidden");
    assert!(h.coordinator.metadata().borrow().pipelines.is_empty(), "nothing stored");
    h.post_json(
        "/v1/acls",
        &json!({"acls": [acl("topic", "counts", "produce"), acl("topic", "p-changelog-0", "create")]}),
    )
    .await
    .expect_status(201);
    post().await.expect_status(201);
    h.shutdown().await;
}
