//! The router: every route registered through utoipa-axum, so the served routes and the
//! OpenAPI spec come from the same place and cannot drift.
//!
//! One module per resource (`topics`, `produce` and `records`, `groups`, `cluster`),
//! plus what they share: `extract` (extractors whose rejections are API errors),
//! `params` (shared parameters, checked once) and `sse` (the one Server-Sent Events pump).

pub mod cluster;
pub mod exactly_once;
pub mod extract;
pub mod groups;
pub mod params;
pub mod produce;
pub mod producers;
pub mod records;
pub mod sse;
pub mod topics;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use fjord_protocol::ErrorCode;
use std::future::Future;
use std::sync::OnceLock;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fjord",
        description = "A Kafka-style distributed commit log with a plain HTTP API: topics, \
            partitions, produce with `acks`, long-poll consume, consumer groups served by \
            any gateway, Server-Sent Events streams.\n\nEvery error is \
            `{\"error\": {\"code\", \"message\", \"retriable\"}}`; retriable errors carry `Retry-After`.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "topics", description = "Create, describe, alter and delete topics"),
        (name = "records", description = "Produce and consume records"),
        (name = "groups", description = "Consumer groups: membership with server-side assignment, polls through any \
            gateway, committed offsets, seek"),
        (name = "cluster", description = "Cluster description and health"),
    ),
    components(schemas(crate::body::Format))
)]
struct ApiDoc;

fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(topics::router())
        .merge(records::router())
        .merge(producers::router())
        .merge(groups::router())
        .merge(cluster::router())
        .routes(utoipa_axum::routes!(openapi_json))
        .split_for_parts()
}

/// This OpenAPI document, as JSON.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "cluster",
    responses((status = 200, description = "The OpenAPI document of this API", body = Object))
)]
async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    static SPEC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    Json(SPEC.get_or_init(openapi))
}

/// The OpenAPI document of the API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this route; see /openapi.json")
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(ErrorCode::Internal, "internal error").into_response()
}

/// The whole API as a router, ready to serve (or to test with `oneshot`).
pub fn app(state: AppState) -> Router {
    let (router, _) = routes();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_request_bytes))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}
