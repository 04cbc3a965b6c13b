//! Producer sessions (exactly-once produce for clients that produce continuously, KIP-98):
//! a producer registers under a stable name and gets an id and epoch; its produce
//! requests carry them with a per-partition sequence ([`crate::http::exactly_once`]).
//! Registering the name again bumps the epoch and fences the older instance.

use crate::auth::Caller;
use crate::error::{parse_json, ApiResult, ErrorBody};
use crate::http::extract::require_json;
use crate::state::AppState;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use bytes::Bytes;
use fjord_protocol::auth::{Operation, ResourceType};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register_producer))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "billing-writer"}))]
pub struct RegisterProducer {
    /// The producer's stable name: the same name after a restart gets the same id and
    /// the next epoch.
    #[schema(min_length = 1, max_length = 249, pattern = "^[a-zA-Z0-9._-]+$")]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "billing-writer", "producer_id": 4294967317u64, "producer_epoch": 3}))]
pub struct ProducerSession {
    pub name: String,
    /// Send as the `Producer-Id` header.
    pub producer_id: u64,
    /// Send as the `Producer-Epoch` header; start each partition's `Producer-Sequence`
    /// at 0 with it.
    pub producer_epoch: u32,
}

/// Register a producer session: a new id at epoch 0 for a new name, the same id and the
/// next epoch for a known one — which fences every request of the older epochs (`409
/// producer_fenced`). Then produce to a partition with the headers `Producer-Id`,
/// `Producer-Epoch` and `Producer-Sequence` (the sequence of the request's first record,
/// from 0 per partition; a request of n records uses n numbers): a repeated sequence is
/// answered as a replay, a gap is `409 out_of_order_sequence`.
#[utoipa::path(
    post,
    path = "/v1/producers",
    tag = "records",
    request_body(content = RegisterProducer, content_type = "application/json"),
    responses(
        (status = 200, description = "Registered", body = ProducerSession),
        (status = 400, description = "Malformed body or name", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn register_producer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ProducerSession>> {
    require_json(&headers)?;
    let req: RegisterProducer = parse_json(&body?)?;
    fjord_coordinator::producers::check_producer_name(&req.name)?;
    caller.require(&state.metadata(), ResourceType::Producer, &req.name, Operation::Produce)?;
    let p = state.coordinator.register_producer(&req.name).await?;
    tracing::info!(producer = %p.name, id = p.id, epoch = p.epoch, "registered a producer session");
    Ok(Json(ProducerSession { name: p.name, producer_id: p.id, producer_epoch: p.epoch }))
}
