//! The storage node's internal HTTP API: what gateways call to reach a partition leader
//! (the [`NodeApi`] over the network) and what followers call to replicate.
//!
//! | route | body / answer |
//! |---|---|
//! | `POST /internal/v1/produce?topic&partition&acks&timeout_ms` | an encoded batch → `ProduceResponse` JSON |
//! | `GET /internal/v1/fetch?topic&partition&offset&max_bytes&max_wait_ms` | framed batches; offsets in `x-fjord-*` headers |
//! | `GET /internal/v1/list_offset?topic&partition&spec` | `spec` = `earliest`, `latest` or a timestamp → `ListOffsetResponse` |
//! | `GET /internal/v1/status?topic&partition` | `PartitionStatus` |
//! | `POST /internal/v1/replica_fetch` | `ReplicaFetchRequest` JSON → [`crate::replication::ReplicaFetchAnswer`] |
//! | `GET /internal/v1/epoch_end?topic&partition&epoch` | `EpochEndOffset` |
//! | `POST /internal/v1/group` | `GroupRequest` JSON → `GroupResponse` JSON |
//!
//! Errors are `FjordError` JSON (`{"code", "message"}`) with the code's HTTP status.
//! Not for clients: bind it to an address only the cluster reaches.

use crate::StorageNode;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fjord_protocol::codec::encode_frames;
use fjord_protocol::group::GroupRequest;
use fjord_protocol::node::{HEADER_HIGH_WATERMARK, HEADER_LOG_END_OFFSET, HEADER_LOG_START_OFFSET};
use fjord_protocol::{
    Acks, ErrorCode, FetchRequest, FjordError, NodeApi, OffsetSpec, ProduceRequest, ReplicaFetchRequest, TopicPartition,
};
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Most one fetch may read, whatever the caller asks.
const MAX_FETCH_BYTES: usize = 64 << 20;

/// Most a long poll may wait, whatever the caller asks.
const MAX_WAIT: Duration = Duration::from_secs(60);

struct Failure(FjordError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

impl From<FjordError> for Failure {
    fn from(e: FjordError) -> Self {
        Self(e)
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(FjordError::new(ErrorCode::InvalidRequest, message))
}

#[derive(Deserialize)]
struct PartitionQuery {
    topic: String,
    partition: u32,
}

#[derive(Deserialize)]
struct ProduceQuery {
    topic: String,
    partition: u32,
    acks: String,
    timeout_ms: u64,
}

#[derive(Deserialize)]
struct FetchQuery {
    topic: String,
    partition: u32,
    offset: u64,
    max_bytes: usize,
    max_wait_ms: u64,
}

#[derive(Deserialize)]
struct ListOffsetQuery {
    topic: String,
    partition: u32,
    spec: String,
}

#[derive(Deserialize)]
struct EpochQuery {
    topic: String,
    partition: u32,
    epoch: u32,
}

async fn produce(State(node): State<Arc<StorageNode>>, Query(q): Query<ProduceQuery>, body: Bytes) -> Response {
    let Some(acks) = Acks::parse(&q.acks) else { return bad("acks must be 0, 1 or all").into_response() };
    let req = ProduceRequest {
        tp: TopicPartition::new(q.topic, q.partition),
        batch: body,
        acks,
        timeout: Duration::from_millis(q.timeout_ms).min(MAX_WAIT),
    };
    match node.produce(req).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

async fn fetch(State(node): State<Arc<StorageNode>>, Query(q): Query<FetchQuery>) -> Response {
    let req = FetchRequest {
        tp: TopicPartition::new(q.topic, q.partition),
        offset: q.offset,
        max_bytes: q.max_bytes.clamp(1, MAX_FETCH_BYTES),
        max_wait: Duration::from_millis(q.max_wait_ms).min(MAX_WAIT),
    };
    let r = match node.fetch(req).await {
        Ok(r) => r,
        Err(e) => return Failure(e).into_response(),
    };
    let mut body = Vec::with_capacity(r.batches.iter().map(|b| b.len() + 4).sum());
    if let Err(e) = encode_frames(r.batches.iter().map(|b| &b[..]), &mut body) {
        return Failure(FjordError::new(ErrorCode::Internal, e.to_string())).into_response();
    }
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (HEADER_HIGH_WATERMARK, r.high_watermark),
        (HEADER_LOG_START_OFFSET, r.log_start_offset),
        (HEADER_LOG_END_OFFSET, r.log_end_offset),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    (headers, body).into_response()
}

async fn list_offset(State(node): State<Arc<StorageNode>>, Query(q): Query<ListOffsetQuery>) -> Response {
    let Some(spec) = OffsetSpec::parse(&q.spec) else {
        return bad("spec must be earliest, latest or a timestamp").into_response();
    };
    match node.list_offset(TopicPartition::new(q.topic, q.partition), spec).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

async fn status(State(node): State<Arc<StorageNode>>, Query(q): Query<PartitionQuery>) -> Response {
    match node.partition_status(TopicPartition::new(q.topic, q.partition)).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

async fn replica_fetch(State(node): State<Arc<StorageNode>>, Json(req): Json<ReplicaFetchRequest>) -> Response {
    match node.replica_fetch(req).await.encode() {
        Ok(body) => body.into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

async fn epoch_end(State(node): State<Arc<StorageNode>>, Query(q): Query<EpochQuery>) -> Response {
    match node.epoch_end_offset(&TopicPartition::new(q.topic, q.partition), q.epoch) {
        Ok(r) => Json(r).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

async fn group(State(node): State<Arc<StorageNode>>, Json(req): Json<GroupRequest>) -> Response {
    match node.group(req).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

/// The internal API of `node`.
pub fn router(node: Arc<StorageNode>) -> Router {
    Router::new()
        .route("/internal/v1/produce", post(produce))
        .route("/internal/v1/fetch", get(fetch))
        .route("/internal/v1/list_offset", get(list_offset))
        .route("/internal/v1/status", get(status))
        .route("/internal/v1/replica_fetch", post(replica_fetch))
        .route("/internal/v1/epoch_end", get(epoch_end))
        .route("/internal/v1/group", post(group))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::max(256 << 20))
        .with_state(node)
}

/// Serves the internal API until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    node: Arc<StorageNode>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node)).with_graceful_shutdown(shutdown).await
}
