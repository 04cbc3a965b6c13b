//! Cluster description and health.

use crate::error::ErrorBody;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cluster))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeDescription {
    pub id: u32,
    pub endpoint: String,
    pub rack: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"cluster_id": "2b0c…", "controller": 0, "nodes": [{"id": 0, "endpoint": "in-process", "rack": null}]}))]
pub struct ClusterDescription {
    pub cluster_id: String,
    /// The controller's node id.
    pub controller: Option<u32>,
    /// Live storage nodes.
    pub nodes: Vec<NodeDescription>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or why not.
    pub status: String,
}

/// The cluster: id, controller and live storage nodes.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "cluster",
    responses(
        (status = 200, body = ClusterDescription),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn cluster(State(state): State<AppState>) -> Json<ClusterDescription> {
    let m = state.metadata();
    Json(ClusterDescription {
        cluster_id: m.cluster_id.clone(),
        controller: m.controller,
        nodes: m
            .nodes
            .values()
            .map(|n| NodeDescription { id: n.id, endpoint: n.endpoint.clone(), rack: n.rack.clone() })
            .collect(),
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "cluster", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: at least one storage node is live, so requests can be served.
#[utoipa::path(
    get,
    path = "/readyz",
    security(()),
    tag = "cluster",
    responses((status = 200, body = Health), (status = 503, description = "No storage node is live", body = Health))
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    if state.metadata().nodes.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "no storage node is live".into() }))
    } else {
        (StatusCode::OK, Json(Health { status: "ok".into() }))
    }
}

/// Every metric of this process (the gateway's, and in `fjord standalone` the storage
/// node's), in the OpenMetrics text format, for Prometheus to scrape.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "cluster",
    responses((status = 200, description = "Prometheus metrics of this process, as `application/openmetrics-text; version=1.0.0` (the OpenMetrics text format, which Prometheus scrapes)"))
)]
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = state.metrics.encode().into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
    response
}
