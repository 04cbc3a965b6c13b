//! The server of the storage node's internal API: exactly the routes of
//! [`fjord_rpc::contract`], mapped onto the node. Not for clients: bind it to an address
//! only the cluster reaches, and give the cluster a secret ([`ClusterSecret`]): then every
//! route but the health check refuses a caller without it (`401 unauthenticated`).

use crate::StorageNode;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use fjord_protocol::codec::encode_frames;
use fjord_protocol::group::GroupRequest;
use fjord_protocol::{Acks, ErrorCode, FetchRequest, FjordError, NodeApi, OffsetSpec, ProduceRequest, TopicPartition};
use fjord_rpc::contract::{
    EpochQuery, FetchQuery, ListOffsetQuery, Method, PartitionQuery, ProduceQuery, Route, HEADER_HIGH_WATERMARK,
    HEADER_LOG_END_OFFSET, HEADER_LOG_START_OFFSET, HEALTH_PATH,
};
use fjord_rpc::{ClusterSecret, ReplicaFetchRequest};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Most one fetch may read, whatever the caller asks.
const MAX_FETCH_BYTES: usize = 64 << 20;

/// Most a long poll may wait, whatever the caller asks.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Largest request body (a produce batch).
const MAX_BODY_BYTES: usize = 256 << 20;

/// An error answered as `FjordError` JSON with its code's status.
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

type Answer = Result<Response, Failure>;

fn bad(message: impl Into<String>) -> Failure {
    Failure(FjordError::new(ErrorCode::InvalidRequest, message))
}

fn json<T: serde::Serialize>(r: fjord_protocol::Result<T>) -> Answer {
    Ok(Json(r?).into_response())
}

async fn produce(State(node): State<Arc<StorageNode>>, Query(q): Query<ProduceQuery>, body: Bytes) -> Answer {
    let acks = Acks::parse(&q.acks).ok_or_else(|| bad("acks must be 0, 1 or all"))?;
    let req = ProduceRequest {
        tp: TopicPartition::new(q.topic, q.partition),
        batch: body,
        acks,
        timeout: Duration::from_millis(q.timeout_ms).min(MAX_WAIT),
        expected_offset: q.expected_offset,
    };
    json(node.produce(req).await)
}

async fn fetch(State(node): State<Arc<StorageNode>>, Query(q): Query<FetchQuery>) -> Answer {
    let req = FetchRequest {
        tp: TopicPartition::new(q.topic, q.partition),
        offset: q.offset,
        max_bytes: q.max_bytes.clamp(1, MAX_FETCH_BYTES),
        max_wait: Duration::from_millis(q.max_wait_ms).min(MAX_WAIT),
    };
    let r = node.fetch(req).await?;
    let mut body = Vec::with_capacity(r.batches.iter().map(|b| b.len() + 4).sum());
    encode_frames(r.batches.iter().map(|b| &b[..]), &mut body)
        .map_err(|e| FjordError::new(ErrorCode::Internal, e.to_string()))?;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (HEADER_HIGH_WATERMARK, r.high_watermark),
        (HEADER_LOG_START_OFFSET, r.log_start_offset),
        (HEADER_LOG_END_OFFSET, r.log_end_offset),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    Ok((headers, body).into_response())
}

async fn list_offset(State(node): State<Arc<StorageNode>>, Query(q): Query<ListOffsetQuery>) -> Answer {
    let spec = OffsetSpec::parse(&q.spec).ok_or_else(|| bad("spec must be earliest, latest or a timestamp"))?;
    json(node.list_offset(TopicPartition::new(q.topic, q.partition), spec).await)
}

async fn status(State(node): State<Arc<StorageNode>>, Query(q): Query<PartitionQuery>) -> Answer {
    json(node.partition_status(TopicPartition::new(q.topic, q.partition)).await)
}

async fn replica_fetch(State(node): State<Arc<StorageNode>>, Json(req): Json<ReplicaFetchRequest>) -> Answer {
    Ok(node.replica_fetch(req).await.encode()?.into_response())
}

async fn epoch_end(State(node): State<Arc<StorageNode>>, Query(q): Query<EpochQuery>) -> Answer {
    json(node.epoch_end_offset(&TopicPartition::new(q.topic, q.partition), q.epoch))
}

async fn group(State(node): State<Arc<StorageNode>>, Json(req): Json<GroupRequest>) -> Answer {
    json(node.group(req).await)
}

/// `handler` under the method the contract gives `route`.
macro_rules! on {
    ($route:expr, $handler:expr) => {
        match $route.method() {
            Method::Get => get($handler),
            Method::Post => post($handler),
        }
    };
}

/// The handler of `route`.
fn handler(route: Route) -> MethodRouter<Arc<StorageNode>> {
    match route {
        Route::Produce => on!(route, produce),
        Route::Fetch => on!(route, fetch),
        Route::ListOffset => on!(route, list_offset),
        Route::Status => on!(route, status),
        Route::ReplicaFetch => on!(route, replica_fetch),
        Route::EpochEnd => on!(route, epoch_end),
        Route::Group => on!(route, group),
    }
}

/// The OpenMetrics text format's media type.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Refuses a call without the cluster secret (`401`, nothing done); the health check
/// is open, as a load balancer's probe carries no credential.
async fn require_secret(
    axum::extract::State(secret): axum::extract::State<ClusterSecret>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = req.headers().get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes());
    if req.uri().path() == HEALTH_PATH || secret.verify(given) {
        return next.run(req).await;
    }
    tracing::info!(target: "audit", path = req.uri().path(), decision = "deny", "internal call without the cluster secret");
    let mut r = Failure(FjordError::new(
        ErrorCode::Unauthenticated,
        "the internal API needs the cluster secret (Authorization: Bearer, cluster.secret_file)",
    ))
    .into_response();
    r.headers_mut()
        .insert(axum::http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"fjord-internal\""));
    r
}

/// The internal API of `node`, and its `/metrics` for Prometheus; with `secret`, every
/// route but the health check requires it.
pub fn router(node: Arc<StorageNode>, secret: Option<ClusterSecret>) -> Router {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(node.metrics_collector()));
    let registry = Arc::new(registry);
    let metrics = get(move || {
        let registry = registry.clone();
        async move {
            let mut out = String::new();
            match prometheus_client::encoding::text::encode(&mut out, &registry) {
                Ok(()) => ([(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], out).into_response(),
                Err(e) => {
                    Failure(FjordError::new(ErrorCode::Internal, format!("encoding metrics: {e}"))).into_response()
                }
            }
        }
    });
    let router = Route::ALL
        .into_iter()
        .fold(Router::new(), |r, route| r.route(route.path(), handler(route)))
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .route("/metrics", metrics)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(node);
    match secret {
        Some(secret) => router.layer(axum::middleware::from_fn_with_state(secret, require_secret)),
        None => router,
    }
}

/// Serves the internal API until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    node: Arc<StorageNode>,
    secret: Option<ClusterSecret>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node, secret)).with_graceful_shutdown(shutdown).await
}
