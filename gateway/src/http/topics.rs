//! Topic administration.

use crate::auth::Caller;
use crate::error::{parse_json, ApiError, ApiResult, ErrorBody};
use crate::http::extract::{require_json, ApiPath};
use crate::state::{unknown_topic, AppState};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use bytes::Bytes;
use fjord_coordinator::{NewTopic, TopicChange, TopicConfig, TopicMetadata};
use fjord_protocol::auth::{Operation, ResourceType};
use fjord_protocol::group::OFFSETS_TOPIC;
use fjord_protocol::{ErrorCode, TopicPartition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::time::Instant;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long a create or alter waits for the controller to elect the new partitions'
/// leaders before it answers (with whatever leaders there are by then).
const LEADERS_WAIT: Duration = Duration::from_secs(5);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_topics, create_topic)).routes(routes!(
        get_topic,
        alter_topic,
        delete_topic
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "orders", "partitions": 3, "replication_factor": 1, "config": {"retention.ms": 86_400_000}}))]
pub struct CreateTopic {
    /// `[a-zA-Z0-9._-]{1,249}`, not `.` or `..`.
    #[schema(pattern = "^[a-zA-Z0-9._-]+$", min_length = 1, max_length = 249)]
    pub name: String,
    /// Default 1.
    #[schema(minimum = 1, maximum = 10000)]
    pub partitions: Option<u32>,
    /// Default 1; at most the number of live storage nodes.
    #[schema(minimum = 1)]
    pub replication_factor: Option<u32>,
    /// Kafka topic config keys. Numbers may also be given as decimal strings (as Kafka's
    /// tools send them).
    #[schema(value_type = Option<TopicConfigChanges>)]
    pub config: Option<Map<String, Value>>,
}

/// Topic config keys to set, by Kafka's names; on alter, `null` resets a key to its
/// default. Unknown keys are refused.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TopicConfigChanges {
    /// Delete batches older than this (ms); `-1` keeps them forever. Default 7 days.
    #[schema(rename = "retention.ms", minimum = -1)]
    retention_ms: Option<i64>,
    /// Delete the oldest batches while the partition is larger than this; `-1`: no limit (default).
    #[schema(rename = "retention.bytes", minimum = -1)]
    retention_bytes: Option<i64>,
    /// `delete` (default), `compact`, or both (`compact,delete`, in either order).
    #[schema(rename = "cleanup.policy", pattern = "^\\s*(delete|compact)\\s*(,\\s*(delete|compact)\\s*)?$")]
    cleanup_policy: Option<String>,
    /// How long a tombstone of a compacted topic stays (ms). Default 1 day.
    #[schema(rename = "delete.retention.ms", minimum = 0)]
    delete_retention_ms: Option<i64>,
    /// Records younger than this are not compacted yet (ms). Default 0.
    #[schema(rename = "min.compaction.lag.ms", minimum = 0)]
    min_compaction_lag_ms: Option<i64>,
    /// `acks=all` needs this many in-sync replicas. Default 1.
    #[schema(rename = "min.insync.replicas", minimum = 1)]
    min_insync_replicas: Option<u32>,
    /// Largest record (key + value + headers) accepted. Default 1048588.
    #[schema(rename = "max.message.bytes", minimum = 1)]
    max_message_bytes: Option<u32>,
    /// Whether a replica outside the ISR may be elected when no ISR member is live
    /// (acknowledged records may be lost). Default false.
    #[schema(rename = "unclean.leader.election.enable")]
    unclean_leader_election_enable: Option<bool>,
    /// How long an `Idempotency-Key` is remembered (ms): a retry within it is answered
    /// with the original offsets. Default 300000 (5 minutes).
    #[schema(rename = "idempotency.window.ms", minimum = 1000, maximum = 604800000)]
    idempotency_window_ms: Option<i64>,
    /// An idle producer session is forgotten after this (ms). Default 86400000 (1 day).
    #[schema(rename = "producer.id.expiration.ms", minimum = 1000, maximum = 604800000)]
    producer_id_expiration_ms: Option<i64>,
}

/// A topic's effective config, every key with its value.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TopicConfigValues {
    #[schema(rename = "retention.ms")]
    retention_ms: i64,
    #[schema(rename = "retention.bytes")]
    retention_bytes: i64,
    /// `delete`, `compact` or `compact,delete`.
    #[schema(rename = "cleanup.policy")]
    cleanup_policy: String,
    #[schema(rename = "delete.retention.ms")]
    delete_retention_ms: i64,
    #[schema(rename = "min.compaction.lag.ms")]
    min_compaction_lag_ms: i64,
    #[schema(rename = "min.insync.replicas")]
    min_insync_replicas: u32,
    #[schema(rename = "max.message.bytes")]
    max_message_bytes: u32,
    #[schema(rename = "unclean.leader.election.enable")]
    unclean_leader_election_enable: bool,
    #[schema(rename = "idempotency.window.ms")]
    idempotency_window_ms: i64,
    #[schema(rename = "producer.id.expiration.ms")]
    producer_id_expiration_ms: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"partitions": 6, "config": {"retention.ms": -1, "retention.bytes": null}}), min_properties = 1)]
pub struct AlterTopic {
    /// New partition count; it can only grow.
    #[schema(minimum = 1, maximum = 10000)]
    pub partitions: Option<u32>,
    /// Config keys to change; `null` resets a key to its default.
    #[schema(value_type = Option<TopicConfigChanges>)]
    pub config: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"topics": [{"name": "orders", "partitions": 3, "replication_factor": 1}]}))]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionDescription {
    pub partition: u32,
    /// The leader's node id; `null` while the partition has none.
    pub leader: Option<u32>,
    pub leader_epoch: u32,
    pub replicas: Vec<u32>,
    pub isr: Vec<u32>,
    /// `null` when the leader could not be asked.
    pub log_start_offset: Option<u64>,
    pub high_watermark: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "orders", "topic_id": "6f1c…", "replication_factor": 1,
    "partitions": [{"partition": 0, "leader": 0, "leader_epoch": 1, "replicas": [0], "isr": [0], "log_start_offset": 0, "high_watermark": 42}],
    "config": {"retention.ms": 604_800_000, "retention.bytes": -1, "cleanup.policy": "delete",
        "delete.retention.ms": 86_400_000, "min.compaction.lag.ms": 0, "min.insync.replicas": 1,
        "max.message.bytes": 1_048_588, "unclean.leader.election.enable": false}}))]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: String,
    pub replication_factor: u32,
    pub partitions: Vec<PartitionDescription>,
    /// Every config key with its effective value.
    #[schema(value_type = TopicConfigValues)]
    pub config: Value,
}

/// Refuses changes to the internal offsets topic (reading it is allowed, as in Kafka).
pub(crate) fn refuse_internal(topic: &str) -> ApiResult<()> {
    if topic == OFFSETS_TOPIC {
        return Err(ApiError::bad_request(format!(
            "`{OFFSETS_TOPIC}` is internal: it holds consumer-group state and cannot be written, altered or deleted"
        )));
    }
    Ok(())
}

async fn describe(state: &AppState, t: &TopicMetadata) -> TopicDescription {
    let deadline = Instant::now() + Duration::from_millis(500);
    let lookups = t.partitions.iter().map(|p| {
        let tp = TopicPartition::new(&t.name, p.partition);
        async move {
            state
                .call_leader(&tp, deadline, |node| {
                    let tp = tp.clone();
                    async move { node.partition_status(tp).await }
                })
                .await
                .ok()
        }
    });
    let statuses = futures::future::join_all(lookups).await;
    let partitions = t
        .partitions
        .iter()
        .zip(statuses)
        .map(|(p, s)| PartitionDescription {
            partition: p.partition,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            log_start_offset: s.map(|s| s.log_start_offset),
            high_watermark: s.map(|s| s.high_watermark),
        })
        .collect();
    TopicDescription {
        replication_factor: t.replication_factor() as u32,
        config: serde_json::to_value(&t.config).unwrap_or(Value::Null),
        name: t.name.clone(),
        topic_id: t.topic_id.clone(),
        partitions,
    }
}

/// List topics.
#[utoipa::path(
    get,
    path = "/v1/topics",
    tag = "topics",
    responses(
        (status = 200, body = TopicList),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn list_topics(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Json<TopicList> {
    let meta = state.metadata();
    Json(TopicList {
        topics: meta
            .topics
            .values()
            .filter(|t| caller.may(&meta, ResourceType::Topic, &t.name, Operation::Describe))
            .map(|t| TopicSummary {
                name: t.name.clone(),
                partitions: t.partitions.len() as u32,
                replication_factor: t.replication_factor() as u32,
            })
            .collect(),
    })
}

/// Create a topic.
#[utoipa::path(
    post,
    path = "/v1/topics",
    tag = "topics",
    request_body = CreateTopic,
    responses(
        (status = 201, description = "Created", body = TopicDescription),
        (status = 400, description = "Invalid name, partition count, replication factor or config", body = ErrorBody),
        (status = 409, description = "The topic exists", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn create_topic(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<TopicDescription>)> {
    require_json(&headers)?;
    let req: CreateTopic = parse_json(&body?)?;
    refuse_internal(&req.name)?;
    caller.require_create_topic(&state.metadata(), &req.name)?;
    let config = TopicConfig::default().with_changes(&req.config.unwrap_or_default())?;
    let spec = NewTopic {
        name: req.name,
        partitions: req.partitions.unwrap_or(1),
        replication_factor: req.replication_factor.unwrap_or(1),
        config,
    };
    let created = state.coordinator.create_topic(spec).await?;
    let created = state.await_leaders(created, Instant::now() + LEADERS_WAIT).await;
    Ok((StatusCode::CREATED, Json(describe(&state, &created).await)))
}

/// Describe a topic: partitions with leader, replicas, ISR and offsets; config.
#[utoipa::path(
    get,
    path = "/v1/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    responses(
        (status = 200, body = TopicDescription),
        (status = 400, description = "Invalid topic name", body = ErrorBody),
        (status = 404, description = "Unknown topic", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn get_topic(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<Json<TopicDescription>> {
    let t = state.topic(&topic)?;
    Ok(Json(describe(&state, &t).await))
}

/// Grow the partition count and/or change config.
#[utoipa::path(
    patch,
    path = "/v1/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    request_body = AlterTopic,
    responses(
        (status = 200, body = TopicDescription),
        (status = 400, description = "A shrinking partition count, bad config, or nothing to change", body = ErrorBody),
        (status = 404, description = "Unknown topic", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn alter_topic(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<TopicDescription>> {
    refuse_internal(&name)?;
    require_json(&headers)?;
    let req: AlterTopic = parse_json(&body?)?;
    if req.partitions.is_none() && req.config.is_none() {
        return Err(ApiError::bad_request("nothing to change: give `partitions` and/or `config`"));
    }
    let current = state.topic(&name)?;
    let config = match &req.config {
        Some(changes) => Some(current.config.with_changes(changes)?),
        None => None,
    };
    let altered = state.coordinator.alter_topic(&name, TopicChange { partitions: req.partitions, config }).await?;
    let altered = state.await_leaders(altered, Instant::now() + LEADERS_WAIT).await;
    Ok(Json(describe(&state, &altered).await))
}

/// Delete a topic and all its data.
#[utoipa::path(
    delete,
    path = "/v1/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid topic name", body = ErrorBody),
        (status = 404, description = "Unknown topic", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn delete_topic(State(state): State<AppState>, ApiPath(name): ApiPath<String>) -> ApiResult<StatusCode> {
    refuse_internal(&name)?;
    state.topic(&name)?;
    match state.coordinator.delete_topic(&name).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e) if e.code == ErrorCode::UnknownTopic => Err(unknown_topic(&name)),
        Err(e) => Err(e.into()),
    }
}
