//! Produce requests that span partitions whose leaders answer differently: per-record
//! results in request order, HTTP 207 when some partitions fail, the partition's own
//! error when all fail — and a failed partition's records are not written.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use fjord_coordinator::{Coordinator, EmbeddedCoordinator, NewTopic, TopicConfig};
use fjord_gateway::{AppState, GatewayConfig, NodeDirectory};
use fjord_protocol::group::{GroupRequest, GroupResponse};
use fjord_protocol::{
    ErrorCode, FetchRequest, FetchResponse, FjordError, ListOffsetResponse, NodeApi, NodeId, OffsetSpec,
    PartitionStatus, ProduceRequest, ProduceResponse, Result, TopicPartition,
};
use fjord_storage_node::{NodeConfig, StorageNode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

/// A real storage node whose produce to one partition fails as if its ISR were too small.
struct FailingPartition {
    inner: Arc<StorageNode>,
    failing: Option<u32>,
}

#[async_trait]
impl NodeApi for FailingPartition {
    async fn produce(&self, req: ProduceRequest) -> Result<ProduceResponse> {
        if self.failing.is_none_or(|p| p == req.tp.partition) {
            return Err(FjordError::new(ErrorCode::NotEnoughReplicas, format!("{}: test double refuses", req.tp)));
        }
        self.inner.produce(req).await
    }
    async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        self.inner.fetch(req).await
    }
    async fn list_offset(&self, tp: TopicPartition, spec: OffsetSpec) -> Result<ListOffsetResponse> {
        self.inner.list_offset(tp, spec).await
    }
    async fn partition_status(&self, tp: TopicPartition) -> Result<PartitionStatus> {
        self.inner.partition_status(tp).await
    }
    async fn group(&self, req: GroupRequest) -> Result<GroupResponse> {
        self.inner.group(req).await
    }
}

struct Directory(Arc<FailingPartition>);

impl NodeDirectory for Directory {
    fn node(&self, id: NodeId) -> Option<Arc<dyn NodeApi>> {
        (id == self.0.inner.id()).then(|| self.0.clone() as Arc<dyn NodeApi>)
    }
}

type Controller = fjord_coordinator::controller::ControllerTask;

async fn setup(failing: Option<u32>) -> (axum::Router, Arc<StorageNode>, tempfile::TempDir, Controller) {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = Arc::new(EmbeddedCoordinator::in_memory());
    let config = NodeConfig {
        data_dir: dir.path().to_owned(),
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 8 << 20,
        ..Default::default()
    };
    let node = StorageNode::start(&config, coordinator.clone(), "in-process".into()).await.expect("node");
    coordinator
        .create_topic(NewTopic {
            name: "t".into(),
            partitions: 2,
            replication_factor: 1,
            config: TopicConfig::default(),
        })
        .await
        .expect("topic");
    let controller = fjord_coordinator::controller::spawn(coordinator.clone(), node.id());
    let mut rx = coordinator.metadata();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        rx.wait_for(|m| m.topics["t"].partitions.iter().all(|p| p.leader.is_some())),
    )
    .await
    .expect("leaders within 10 s")
    .expect("metadata feed");
    node.sync_with_metadata().await.expect("node applies the new topic");
    let nodes = Arc::new(Directory(Arc::new(FailingPartition { inner: node.clone(), failing })));
    let app = fjord_gateway::app(AppState::new(coordinator, nodes, GatewayConfig::default()));
    (app, node, dir, controller)
}

async fn produce(app: &axum::Router, body: Value) -> (StatusCode, Value) {
    let req = Request::post("/v1/topics/t/records?acks=all")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{status}: {e}: {}", String::from_utf8_lossy(&bytes))),
    )
}

async fn high_watermark(node: &StorageNode, partition: u32) -> u64 {
    node.partition_status(TopicPartition::new("t", partition)).await.expect("status").high_watermark
}

/// Records for a healthy and a failing partition, interleaved: 207, each record's result
/// in request order (offsets for partition 0, the error for partition 1), and nothing
/// written to partition 1.
#[tokio::test]
async fn some_partitions_failing_gives_207_with_per_record_results() {
    let (app, node, _dir, _controller) = setup(Some(1)).await;
    let (status, body) = produce(
        &app,
        json!({"records": [{"partition": 0, "value": 1}, {"partition": 1, "value": 2}, {"partition": 0, "value": 3}]}),
    )
    .await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    let offsets = body["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 3);
    assert_eq!((offsets[0]["partition"].clone(), offsets[0]["offset"].clone()), (json!(0), json!(0)));
    assert_eq!(offsets[1]["partition"], 1);
    assert!(offsets[1].get("offset").is_none(), "{body}");
    assert_eq!(offsets[1]["error"]["code"], "not_enough_replicas");
    assert_eq!(offsets[1]["error"]["retriable"], true);
    assert_eq!((offsets[2]["partition"].clone(), offsets[2]["offset"].clone()), (json!(0), json!(1)));
    assert_eq!(high_watermark(&node, 0).await, 2);
    assert_eq!(high_watermark(&node, 1).await, 0, "the failed partition's record was not written");
}

/// When every partition of a request fails, the answer is that failure itself (here
/// 503 `not_enough_replicas`, retriable, with Retry-After), not a 207.
#[tokio::test]
async fn all_partitions_failing_gives_the_error_itself() {
    let (app, node, _dir, _controller) = setup(None).await;
    let (status, body) =
        produce(&app, json!({"records": [{"partition": 0, "value": 1}, {"partition": 1, "value": 2}]})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "not_enough_replicas");
    assert_eq!(high_watermark(&node, 0).await + high_watermark(&node, 1).await, 0);
}
