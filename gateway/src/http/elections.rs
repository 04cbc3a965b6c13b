//! On-demand leader elections: `POST /v1/elections` (Kafka's `ElectLeaders`, KIP-460,
//! preferred type). The gateway checks the request, answers for the partitions that need
//! nothing, and leaves a request for the controller
//! ([`fjord_coordinator::Coordinator::request_preferred_election`]) — only the controller
//! changes leadership — then waits, up to `timeout_ms`, for the metadata to show each
//! election done.

use crate::error::{parse_json, ApiError, ApiResult, ErrorBody};
use crate::http::extract::require_json;
use crate::http::params;
use crate::state::AppState;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use bytes::Bytes;
use fjord_coordinator::controller::preferred_available;
use fjord_coordinator::{ClusterMetadata, ElectionRequest};
use fjord_protocol::{ErrorCode, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long an election request waits for the controller when `timeout_ms` is not given.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The most partitions one request may name (omit `partitions` for all of them).
pub const MAX_PARTITIONS: usize = 10_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(elect_leaders))
}

/// Which election: only `preferred` for now (Kafka's `PREFERRED`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ElectionType {
    /// Leadership goes back to each partition's preferred replica (the first assigned),
    /// where that replica is live and in sync. Loses nothing.
    #[default]
    Preferred,
}

/// One partition of a topic.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionRef {
    #[schema(pattern = "^[a-zA-Z0-9._-]+$", min_length = 1, max_length = 249)]
    pub topic: String,
    #[schema(minimum = 0)]
    pub partition: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElectionSpec {
    #[serde(rename = "type", default)]
    #[schema(rename = "type")]
    pub election_type: ElectionType,
    /// The partitions to elect; omitted, every partition of the cluster.
    #[schema(min_items = 1, max_items = 10000)]
    pub partitions: Option<Vec<PartitionRef>>,
    /// How long to wait for the controller to carry the elections out (default 10000,
    /// at most the gateway's `max_timeout_ms`); what is not done by then is `pending`.
    #[schema(minimum = 0)]
    pub timeout_ms: Option<u64>,
}

/// What became of one partition's election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ElectionOutcome {
    /// The preferred replica leads now, by this election.
    Elected,
    /// The preferred replica already led (Kafka's `ELECTION_NOT_NEEDED`).
    AlreadyPreferred,
    /// The preferred replica is down, shutting down, damaged for this partition or not
    /// in the ISR: leadership stays (Kafka's `PREFERRED_LEADER_NOT_AVAILABLE`). Retry
    /// once it is back in sync.
    PreferredNotAvailable,
    /// Asked of the controller, not done within `timeout_ms`; it still runs.
    Pending,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ElectionResult {
    pub topic: String,
    pub partition: u32,
    pub outcome: ElectionOutcome,
    /// The preferred replica (first assigned).
    pub preferred: Option<u32>,
    /// The leader when the answer was made.
    pub leader: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ElectionResults {
    /// One per partition asked for, in topic and partition order.
    pub results: Vec<ElectionResult>,
}

/// The partitions `spec` names (all of them when it names none), each checked to exist.
fn selected(meta: &ClusterMetadata, spec: &ElectionSpec) -> ApiResult<BTreeSet<TopicPartition>> {
    let Some(list) = &spec.partitions else {
        return Ok(meta
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(|p| TopicPartition::new(t.name.clone(), p.partition)))
            .collect());
    };
    if list.is_empty() || list.len() > MAX_PARTITIONS {
        return Err(ApiError::bad_request(format!(
            "partitions must list 1 to {MAX_PARTITIONS} partitions (omit it for every partition), got {}",
            list.len()
        )));
    }
    let mut out = BTreeSet::new();
    for r in list {
        let Some(topic) = meta.topic(&r.topic) else {
            return Err(ApiError::new(ErrorCode::UnknownTopic, format!("topic `{}` does not exist", r.topic)));
        };
        if r.partition as usize >= topic.partitions.len() {
            return Err(ApiError::new(
                ErrorCode::UnknownPartition,
                format!(
                    "topic `{}` has {} partitions; there is no partition {}",
                    r.topic,
                    topic.partitions.len(),
                    r.partition
                ),
            ));
        }
        out.insert(TopicPartition::new(r.topic.clone(), r.partition));
    }
    Ok(out)
}

/// Where one partition stands: `None` while an election asked for may still move it.
fn settled(meta: &ClusterMetadata, tp: &TopicPartition, asked: bool) -> Option<ElectionOutcome> {
    let p = meta.partition(&tp.topic, tp.partition)?;
    let preferred = p.replicas.first().copied();
    if p.leader.is_some() && p.leader == preferred {
        return Some(if asked { ElectionOutcome::Elected } else { ElectionOutcome::AlreadyPreferred });
    }
    if !preferred_available(meta, &tp.topic, p) {
        return Some(ElectionOutcome::PreferredNotAvailable);
    }
    None
}

/// Elect leaders: hand each partition's leadership back to its preferred replica (the
/// first assigned), as Kafka's `kafka-leader-election --election-type preferred` does.
/// The controller carries it out; the answer waits for it up to `timeout_ms` and says,
/// per partition, what became of it. Leadership moves only to a live, in-sync replica, so
/// no acknowledged record is lost. Needs `alter` on the cluster.
#[utoipa::path(
    post,
    path = "/v1/elections",
    tag = "cluster",
    request_body(content = ElectionSpec, content_type = "application/json", example = json!({
        "type": "preferred", "partitions": [{"topic": "orders", "partition": 0}], "timeout_ms": 10000})),
    responses(
        (status = 200, description = "Each partition's outcome", body = ElectionResults),
        (status = 400, description = "`invalid_json` / `invalid_request`: a body of the wrong shape, an empty or too long `partitions`, a `timeout_ms` above the maximum. Nothing done", body = ErrorBody),
        (status = 404, description = "`unknown_topic` / `unknown_partition`: a partition that does not exist. Nothing done", body = ErrorBody),
        (status = 409, description = "`election_in_progress`: an election asked for earlier is still pending; nothing done. Retriable", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn elect_leaders(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ElectionResults>> {
    require_json(&headers)?;
    let spec: ElectionSpec = parse_json(&body?)?;
    let timeout = params::timeout(&state, spec.timeout_ms, DEFAULT_TIMEOUT_MS)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rx = state.coordinator.metadata();
    let meta = rx.borrow_and_update().clone();
    let wanted = selected(&meta, &spec)?;
    let mut outcomes: BTreeMap<TopicPartition, Option<ElectionOutcome>> = wanted
        .into_iter()
        .map(|tp| {
            let now = settled(&meta, &tp, false);
            (tp, now)
        })
        .collect();
    let asked: BTreeSet<TopicPartition> =
        outcomes.iter().filter(|(_, o)| o.is_none()).map(|(tp, _)| tp.clone()).collect();
    if !asked.is_empty() {
        let id = uuid::Uuid::new_v4().to_string();
        state.coordinator.request_preferred_election(ElectionRequest { id: id.clone(), partitions: asked }).await?;
        loop {
            let meta = rx.borrow_and_update().clone();
            let ours_pending = meta.preferred_election.as_ref().is_some_and(|r| r.id == id);
            for (tp, outcome) in outcomes.iter_mut().filter(|(_, o)| o.is_none()) {
                *outcome = settled(&meta, tp, true);
                // The controller ran the request and left this one as it was.
                if outcome.is_none() && !ours_pending {
                    *outcome = Some(ElectionOutcome::PreferredNotAvailable);
                }
            }
            if outcomes.values().all(Option::is_some) {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ApiError::new(ErrorCode::ShuttingDown, "the metadata feed closed")),
                Err(_) => break,
            }
        }
    }
    let meta = rx.borrow().clone();
    let results = outcomes
        .into_iter()
        .map(|(tp, outcome)| {
            let p = meta.partition(&tp.topic, tp.partition);
            ElectionResult {
                outcome: outcome.unwrap_or(ElectionOutcome::Pending),
                preferred: p.and_then(|p| p.replicas.first().copied()),
                leader: p.and_then(|p| p.leader),
                topic: tp.topic,
                partition: tp.partition,
            }
        })
        .collect();
    Ok(Json(ElectionResults { results }))
}
