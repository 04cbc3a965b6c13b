//! The router: every route registered through utoipa-axum, so the served routes and the
//! OpenAPI spec come from the same place and cannot drift.
//!
//! One module per resource (`topics`, `produce` and `records`, `groups`, `cluster`),
//! plus what they share: `extract` (extractors whose rejections are API errors),
//! `params` (shared parameters, checked once) and `sse` (the one Server-Sent Events pump).

pub mod auth;
pub mod cluster;
pub mod elections;
pub mod exactly_once;
pub mod extract;
pub mod groups;
pub mod params;
pub mod pipelines;
pub mod produce;
pub mod producers;
pub mod records;
pub mod security;
pub mod sse;
pub mod topics;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use fjord_protocol::ErrorCode;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;
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
        (name = "pipelines", description = "Stream processing: pipelines of filters, maps (jq expressions), \
            repartitions, windowed aggregations and joins over topics, run by processors with state restored from \
            changelog topics and outputs written exactly once"),
        (name = "security", description = "Bearer tokens and ACLs. With `gateway.auth.enabled`, every route but \
            `/healthz`, `/readyz` and `/openapi.json` needs `Authorization: Bearer <token>`: none or a bad one is \
            `401 unauthenticated`, a token whose scopes or principal's ACLs do not allow the call is `403 forbidden`; \
            nothing is done in either case."),
    ),
    components(schemas(crate::body::Format)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// The `bearer` security scheme every operation but the public ones names.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("fjord_<id>_<secret>")
            .description(Some("A Fjord token (POST /v1/tokens, or the bootstrap token file)"))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

impl BearerAuth {
    /// Every operation under the bearer scheme (all but those marked public) can be
    /// refused by authentication, authorization or a quota: its responses say so (run on
    /// the merged document, once every route is in).
    fn document_refusals(openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Response, ResponseBuilder};
        let error = |what: &str| -> RefOr<Response> {
            let content = utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build();
            RefOr::T(ResponseBuilder::new().description(what).content("application/json", content).build())
        };
        for item in openapi.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for op in ops.into_iter().flatten() {
                if op.security.is_some() {
                    continue; // public
                }
                let r = &mut op.responses.responses;
                r.entry("401".into()).or_insert_with(|| {
                    error("`unauthenticated` (authentication on): no token, or one unknown, expired or revoked; nothing done")
                });
                r.entry("403".into()).or_insert_with(|| {
                    error("`forbidden`: the token's scopes or its principal's ACLs do not allow this; nothing done")
                });
                r.entry("429".into()).or_insert_with(|| {
                    error("`quota_exceeded`: the principal is over a quota; nothing done; retry after `Retry-After`")
                });
            }
        }
    }
}

/// The name rule the handlers check — 1 to `max` characters of `[a-zA-Z0-9._-]`,
/// Kafka's — put into the schema of every path parameter that names a topic, group or
/// pipeline and of the topic names in request bodies, written once here rather than in
/// each route's `params(...)`, so generated clients and validators know it.
fn document_name_rules(openapi: &mut utoipa::openapi::OpenApi) {
    use fjord_protocol::names::MAX_NAME_LEN;
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{ArrayItems, ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;
    let rule = |max: usize| -> RefOr<Schema> {
        let s = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[a-zA-Z0-9._-]+$"))
            .min_length(Some(1))
            .max_length(Some(max));
        RefOr::T(Schema::Object(s.build()))
    };
    for item in openapi.paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for p in ops.into_iter().flatten().flat_map(|op| op.parameters.iter_mut().flatten()) {
            let max = match (&p.parameter_in, p.name.as_str()) {
                (ParameterIn::Path, "topic" | "group") => MAX_NAME_LEN,
                (ParameterIn::Path, "pipeline") => fjord_streams::runtime::MAX_APP_ID_LEN,
                _ => continue,
            };
            p.schema = Some(rule(max));
        }
    }
    // Topic names inside request bodies (a list's items, or the string itself).
    let schemas = &mut openapi.components.get_or_insert_with(Default::default).schemas;
    for (schema, field) in [("JoinRequest", "topics"), ("SeekRequest", "topic"), ("CommitEntry", "topic")] {
        let Some(RefOr::T(Schema::Object(o))) = schemas.get_mut(schema) else { continue };
        match o.properties.get_mut(field) {
            Some(RefOr::T(Schema::Array(a))) => a.items = ArrayItems::RefOrSchema(Box::new(rule(MAX_NAME_LEN))),
            Some(s) => *s = rule(MAX_NAME_LEN),
            None => {}
        }
    }
}

fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(topics::router())
        .merge(records::router())
        .merge(producers::router())
        .merge(groups::router())
        .merge(cluster::router())
        .merge(elections::router())
        .merge(security::router())
        .merge(pipelines::router())
        .routes(utoipa_axum::routes!(openapi_json))
        .split_for_parts();
    BearerAuth::document_refusals(&mut spec);
    document_name_rules(&mut spec);
    (router, spec)
}

/// This OpenAPI document, as JSON.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "cluster",
    security(()),
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

/// How much longer than the longest `timeout_ms` a request may take in all before the
/// gateway answers `request_timeout` itself (a group call's own deadline, with room).
const REQUEST_DEADLINE_SLACK: Duration = Duration::from_secs(20);

/// Bounds every request's handling (until the response head; a stream's body then goes
/// on): nothing a gateway waits on — a node cut off mid-call, ZooKeeper — can hold a
/// request forever. Past the bound the answer is `request_timeout` (retriable; a write may
/// have happened, as for any timeout).
async fn request_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the gateway gave up on the request after {} ms; a write it carried may have happened",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// The whole API as a router, ready to serve (or to test with `oneshot`).
pub fn app(state: AppState) -> Router {
    let (router, _) = routes();
    let limit = Duration::from_millis(state.config.max_timeout_ms) + REQUEST_DEADLINE_SLACK;
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authorize))
        .layer(axum::middleware::from_fn_with_state(limit, request_deadline))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), crate::metrics::record))
        .layer(DefaultBodyLimit::max(state.config.max_request_bytes))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// Serves the API on `listener` (with TLS when `gateway.tls` is set) until `shutdown`
/// completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match state.config.tls.clone() {
        None => axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await,
        Some(config) => {
            let tls = crate::tls::Tls::load(&config).map_err(std::io::Error::other)?;
            let listener = crate::tls::TlsListener::new(listener, tls)?;
            let app = app(state).into_make_service_with_connect_info::<crate::tls::Peer>();
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// A handler that never answers is cut off at the deadline with `request_timeout`
    /// in the API's error shape; a quick one is untouched.
    #[tokio::test]
    async fn requests_past_the_deadline_are_answered_request_timeout() {
        let app = Router::new()
            .route("/stuck", get(std::future::pending::<&'static str>))
            .route("/quick", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(Duration::from_millis(50), request_deadline));
        let stuck = app
            .clone()
            .oneshot(Request::get("/stuck").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(stuck.status().as_u16(), 504);
        let body = stuck.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            (v["error"]["code"].as_str(), v["error"]["retriable"].as_bool()),
            (Some("request_timeout"), Some(true))
        );
        let quick =
            app.oneshot(Request::get("/quick").body(Body::empty()).expect("request")).await.expect("infallible");
        assert_eq!(quick.status().as_u16(), 200);
    }
}
