//! The harness of every HTTP handler test: the whole router over a real storage node
//! (RocksDB in a temp dir, background tasks running), the embedded metadata store and
//! its controller, driven with `oneshot` (no socket); plus the helpers several areas use.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use fjord_coordinator::{Coordinator, EmbeddedCoordinator};
use fjord_gateway::{AppState, GatewayConfig, SingleNode};
use fjord_protocol::group::{GroupRequest, GroupResponse};
use fjord_protocol::{
    FetchRequest, FetchResponse, ListOffsetResponse, NodeApi, OffsetSpec, PartitionStatus, ProduceRequest,
    ProduceResponse, TopicPartition,
};
use fjord_storage_node::{NodeConfig, StorageNode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tempfile::TempDir;
use tokio::sync::watch;
use tower::ServiceExt;

/// One gateway over one storage node with its own data directory.
pub struct Harness {
    pub app: Router,
    pub node: Arc<StorageNode>,
    pub coordinator: Arc<dyn Coordinator>,
    /// Sent as the bearer token by every helper request (a harness with auth on).
    pub token: Option<String>,
    /// The controller over the embedded store, as in `fjord standalone`.
    _controller: fjord_coordinator::controller::ControllerTask,
    // Dropped last: RocksDB lives in it.
    _dir: TempDir,
}

/// A storage node whose produce calls wait until the gate opens.
struct GatedNode {
    node: Arc<StorageNode>,
    gate: watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl NodeApi for GatedNode {
    async fn produce(&self, req: ProduceRequest) -> fjord_protocol::Result<ProduceResponse> {
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        self.node.produce(req).await
    }
    async fn fetch(&self, req: FetchRequest) -> fjord_protocol::Result<FetchResponse> {
        self.node.fetch(req).await
    }
    async fn list_offset(&self, tp: TopicPartition, spec: OffsetSpec) -> fjord_protocol::Result<ListOffsetResponse> {
        self.node.list_offset(tp, spec).await
    }
    async fn partition_status(&self, tp: TopicPartition) -> fjord_protocol::Result<PartitionStatus> {
        self.node.partition_status(tp).await
    }
    async fn group(&self, req: GroupRequest) -> fjord_protocol::Result<GroupResponse> {
        self.node.group(req).await
    }
}

/// A response, fully read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}); status {}: {}", self.status, self.text()))
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text());
        self.json()
    }

    /// Asserts 204 with an empty body.
    #[track_caller]
    pub fn expect_no_content(&self) {
        assert_eq!(self.status, StatusCode::NO_CONTENT, "unexpected status; body: {}", self.text());
        assert!(self.body.is_empty(), "204 with a body: {}", self.text());
    }

    /// Asserts an error response: status, the `{"error": {"code", "message", "retriable"}}`
    /// shape, the code, and `Retry-After` exactly on retriable errors. Returns the message.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> String {
        let body = self.expect_status(status);
        let error = body.get("error").unwrap_or_else(|| panic!("no `error` object in {body}"));
        assert_eq!(error["code"], code, "wrong error code in {body}");
        let message = error["message"].as_str().unwrap_or_else(|| panic!("no message in {body}"));
        assert!(!message.is_empty(), "empty message in {body}");
        let retriable = error["retriable"].as_bool().unwrap_or_else(|| panic!("no retriable flag in {body}"));
        assert_eq!(
            self.headers.contains_key(header::RETRY_AFTER),
            retriable,
            "Retry-After must be sent exactly on retriable errors: {body}"
        );
        let content_type = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(content_type.starts_with("application/json"), "error content type is `{content_type}`");
        message.to_owned()
    }
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_config(GatewayConfig::default()).await
    }

    pub async fn with_config(config: GatewayConfig) -> Self {
        Self::build(config, None, |_| {}).await
    }

    /// A harness whose storage node runs with `node` applied to its config.
    pub async fn with_node_config(node: impl FnOnce(&mut NodeConfig)) -> Self {
        Self::build(GatewayConfig::default(), None, node).await
    }

    /// A harness whose storage node takes no produce call until `gate` says `true`
    /// (the node is slow, or busy): produce calls wait at the gate, everything else is
    /// served at once.
    pub async fn with_gated_produce(config: GatewayConfig, gate: watch::Receiver<bool>) -> Self {
        Self::build(config, Some(gate), |_| {}).await
    }

    async fn build(
        config: GatewayConfig,
        gate: Option<watch::Receiver<bool>>,
        tweak: impl FnOnce(&mut NodeConfig),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator: Arc<dyn Coordinator> = Arc::new(EmbeddedCoordinator::in_memory());
        let mut node_config = NodeConfig {
            data_dir: dir.path().to_path_buf(),
            // Many of these run in parallel; keep each RocksDB small.
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 8 << 20,
            ..Default::default()
        };
        tweak(&mut node_config);
        let node = StorageNode::start(&node_config, coordinator.clone(), "in-process".into())
            .await
            .expect("storage node starts");
        let controller =
            fjord_coordinator::controller::start_with(coordinator.clone(), node.id(), node.controller_stats()).await;
        let api: Arc<dyn NodeApi> = match gate {
            Some(gate) => Arc::new(GatedNode { node: node.clone(), gate }),
            None => node.clone(),
        };
        let state = AppState::new(coordinator.clone(), Arc::new(SingleNode { id: node.id(), api }), config);
        state.register_collector(Box::new(node.metrics_collector()));
        Self { app: fjord_gateway::app(state), node, coordinator, token: None, _controller: controller, _dir: dir }
    }

    /// A harness with authentication on; its helpers send the token of `admin`, a super
    /// user with every scope (as a bootstrap token).
    pub async fn secured() -> Self {
        Self::secured_with(GatewayConfig::default()).await
    }

    /// [`secured`](Self::secured) over `config`.
    pub async fn secured_with(mut config: GatewayConfig) -> Self {
        config.auth.enabled = true;
        let mut h = Self::with_config(config).await;
        h.token = Some(h.mint("admin", fjord_protocol::auth::Scope::everything(), None, None).await);
        h
    }

    /// Stores a new token straight in the metadata (as a bootstrap would) and returns it.
    pub async fn mint(
        &self,
        principal: &str,
        scopes: Vec<fjord_protocol::auth::Scope>,
        expires_ms: Option<i64>,
        issued_by: Option<String>,
    ) -> String {
        let t = fjord_gateway::auth::mint(principal, scopes, expires_ms, issued_by, String::new()).expect("mint");
        self.coordinator.create_token(t.record).await.expect("store token");
        t.token
    }

    /// A request with exactly this bearer token (or none), whatever the harness's own.
    pub async fn request_as(
        &self,
        token: Option<&str>,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        if let Some(t) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(builder.body(body.into()).expect("valid request")).await
    }

    /// Stops the node's background tasks so RocksDB closes before its directory goes.
    pub async fn shutdown(self) {
        self.node.shutdown().await;
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("read response body").to_bytes();
        Reply { status, headers, body }
    }

    pub async fn request(&self, method: Method, uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Reply {
        self.request_as(self.token.as_deref(), method, uri, content_type, body).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.request(Method::GET, uri, None, Body::empty()).await
    }

    /// A GET with extra request headers.
    pub async fn get_with(&self, uri: &str, headers: &[(&str, &str)]) -> Reply {
        let mut builder = Request::get(uri);
        if let Some(t) = &self.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(Body::empty()).expect("valid request")).await
    }

    pub async fn delete(&self, uri: &str) -> Reply {
        self.request(Method::DELETE, uri, None, Body::empty()).await
    }

    pub async fn post(&self, uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Reply {
        self.request(Method::POST, uri, content_type, body).await
    }

    pub async fn post_json(&self, uri: &str, body: &Value) -> Reply {
        self.post(uri, Some("application/json"), body.to_string()).await
    }

    pub async fn patch_json(&self, uri: &str, body: &Value) -> Reply {
        self.request(Method::PATCH, uri, Some("application/json"), body.to_string()).await
    }

    /// Creates a topic, asserting 201.
    pub async fn create_topic(&self, spec: Value) -> Value {
        self.post_json("/v1/topics", &spec).await.expect_status(201)
    }

    /// Produces `records` to the topic route, asserting 200; returns the `offsets` array.
    pub async fn produce(&self, topic: &str, records: Value) -> Vec<Value> {
        let reply = self.post_json(&format!("/v1/topics/{topic}/records"), &json!({ "records": records })).await;
        let body = reply.expect_status(200);
        body["offsets"].as_array().expect("offsets array").clone()
    }
}

// ---------------------------------------------------------------------------------------
// What the tests compare to prove a request changed nothing
// ---------------------------------------------------------------------------------------

/// What the tests compare to prove a request changed nothing: every topic with the high
/// watermark of each of its partitions.
pub type Snapshot = BTreeMap<String, Vec<u64>>;

impl Harness {
    /// Consumes, asserting 200.
    pub async fn consume(&self, topic: &str, partition: u32, query: &str) -> Value {
        self.get(&format!("/v1/topics/{topic}/partitions/{partition}/records?{query}")).await.expect_status(200)
    }

    /// The high watermark of every partition of `topic`, as GET /v1/topics/{t} shows it
    /// (or the offsets route when the describe could not reach the leader in time).
    pub async fn high_watermarks(&self, topic: &str) -> Vec<u64> {
        let described = self.get(&format!("/v1/topics/{topic}")).await.expect_status(200);
        let mut out = Vec::new();
        for p in described["partitions"].as_array().expect("partitions array") {
            let hw = match p["high_watermark"].as_u64() {
                Some(hw) => hw,
                None => {
                    let n = p["partition"].as_u64().expect("partition number");
                    let offsets = self.get(&format!("/v1/topics/{topic}/partitions/{n}/offsets")).await;
                    offsets.expect_status(200)["high_watermark"].as_u64().expect("high watermark")
                }
            };
            out.push(hw);
        }
        out
    }

    pub async fn topic_names(&self) -> Vec<String> {
        let list = self.get("/v1/topics").await.expect_status(200);
        list["topics"]
            .as_array()
            .expect("topics array")
            .iter()
            .map(|t| t["name"].as_str().expect("topic name").to_owned())
            .collect()
    }

    pub async fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot::new();
        for name in self.topic_names().await {
            let hws = self.high_watermarks(&name).await;
            out.insert(name, hws);
        }
        out
    }
}

/// A topic `t` with `partitions` partitions and one record already on partition 0, so
/// that "nothing written" is checked against a non-empty log.
pub async fn harness_with_topic(partitions: u32) -> Harness {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": partitions})).await;
    h.produce("t", json!([{"value": "seed", "partition": 0}])).await;
    h
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
