//! Stream-processing pipelines: `/v1/pipelines`. A definition is validated here (it
//! compiles, its topics exist, the caller may read its inputs and write its sink) and
//! stored in the coordinator; processors (`fjord processor`, and the one inside
//! `fjord standalone`) pick it up and run it. A pipeline's status is its consumer group
//! (named after it): instances, their tasks, committed offsets, lag and the tasks'
//! late/skipped counts (kept in the commits' metadata).

use crate::auth::Caller;
use crate::error::{parse_json, ApiError, ApiResult, ErrorBody};
use crate::http::extract::{require_json, ApiPath};
use crate::http::groups::{self, GroupPartitionOffset};
use crate::state::AppState;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use bytes::Bytes;
use fjord_coordinator::{ClusterMetadata, PipelineRecord};
use fjord_protocol::auth::{Operation, ResourceType};
use fjord_protocol::group::{GroupRequest, GroupResponse, MemberDescription};
use fjord_protocol::ErrorCode;
use fjord_streams::pipeline::{PipelineDef, Step};
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_pipelines, create_pipeline))
        .routes(routes!(describe_pipeline, delete_pipeline))
}

/// A stored pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineInfo {
    pub name: String,
    pub definition: PipelineDef,
    pub created_ms: i64,
    /// Who created it.
    pub principal: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineInfo>,
}

/// One input partition of a pipeline: where its task is, and how far behind.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineInput {
    #[serde(flatten)]
    pub offsets: GroupPartitionOffset,
    /// Records its task dropped because their window had closed.
    pub late_records: Option<u64>,
    /// Records a step could not take (no key where one is needed, a number that is not).
    pub skipped_records: Option<u64>,
    /// Records the pipeline's expressions failed on, in the instance running this task.
    pub expression_errors: Option<u64>,
    /// The last error that instance met (a write it retried, a task it could not start).
    pub last_error: Option<String>,
}

/// A pipeline and what its processors are doing.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineDescription {
    #[serde(flatten)]
    pub info: PipelineInfo,
    /// `running` (instances in its group) or `idle` (none yet, or all gone).
    pub state: String,
    /// The processor instances (its group's members) and their input partitions.
    pub instances: Vec<MemberDescription>,
    /// Every input partition: committed offset, lag, and the task's tallies.
    pub inputs: Vec<PipelineInput>,
    /// The internal topics it made (repartition and changelog topics).
    pub internal_topics: Vec<String>,
}

fn info(r: &PipelineRecord) -> ApiResult<PipelineInfo> {
    let definition: PipelineDef = serde_json::from_value(r.definition.clone())
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("stored pipeline {} does not decode: {e}", r.name)))?;
    Ok(PipelineInfo { name: r.name.clone(), definition, created_ms: r.created_ms, principal: r.principal.clone() })
}

fn unknown_pipeline(name: &str) -> ApiError {
    ApiError::new(ErrorCode::UnknownPipeline, format!("no pipeline named `{name}`"))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidPipeline, message)
}

/// The topics a pipeline made for itself: `{name}-repartition-{n}`, `{name}-changelog-{n}`.
fn internal_topics(meta: &ClusterMetadata, name: &str) -> Vec<String> {
    let (r, c) = (format!("{name}-repartition-"), format!("{name}-changelog-"));
    meta.topics
        .keys()
        .filter(|t| [&r, &c].iter().any(|p| t.strip_prefix(p.as_str()).is_some_and(|n| n.parse::<usize>().is_ok())))
        .cloned()
        .collect()
}

/// List the pipelines the caller may describe (their groups).
#[utoipa::path(
    get,
    path = "/v1/pipelines",
    tag = "pipelines",
    responses(
        (status = 200, body = PipelineList),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn list_pipelines(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<PipelineList>> {
    let meta = state.metadata();
    let pipelines = meta
        .pipelines
        .values()
        .filter(|p| caller.may(&meta, ResourceType::Group, &p.name, Operation::Describe))
        .map(info)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(PipelineList { pipelines }))
}

/// Create a pipeline: it is checked whole (every expression compiles, every window is
/// valid, every topic it reads and the sink exist) and then stored; processors start
/// running it within seconds. Needs `consume` on the group named after it and on every
/// topic it reads, `produce` on its sink, and `create` on its internal topics.
#[utoipa::path(
    post,
    path = "/v1/pipelines",
    tag = "pipelines",
    request_body(content = PipelineDef, content_type = "application/json", example = json!({
        "name": "orders-per-region", "source": ["orders"],
        "steps": [{"filter": ".amount > 0"}, {"key_by": ".region"},
                  {"aggregate": {"op": "count", "window": {"tumbling": {"size_ms": 60000}}, "grace_ms": 5000, "emit": "final"}}],
        "sink": "orders-per-region"})),
    responses(
        (status = 201, description = "Stored; processors pick it up", body = PipelineInfo),
        (status = 400, description = "`invalid_pipeline`: the definition does not parse or compile, or names a topic that does not exist; the message says where. Nothing stored", body = ErrorBody),
        (status = 409, description = "`pipeline_already_exists`: the name is taken, or its group or internal topics are left from an earlier pipeline", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn create_pipeline(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<PipelineInfo>)> {
    require_json(&headers)?;
    let raw: serde_json::Value = parse_json(&body?)?;
    let def: PipelineDef =
        serde_json::from_value(raw.clone()).map_err(|e| invalid(format!("not a pipeline definition: {e}")))?;
    let compiled = def.compile().map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        invalid(lines.join("; "))
    })?;
    let meta = state.metadata();
    // Who may do this: the pipeline is a consumer group reading its inputs and writing
    // its sink, with the caller's rights (a processor must not lend it more).
    caller.require(&meta, ResourceType::Group, &def.name, Operation::Consume)?;
    let mut reads: Vec<(String, String)> =
        def.source.iter().enumerate().map(|(i, t)| (format!("source[{i}]"), t.clone())).collect();
    for (i, step) in def.steps.iter().enumerate() {
        match step {
            Step::JoinTable(j) => reads.push((format!("steps[{i}].join_table.table"), j.table.clone())),
            Step::JoinStream(j) => reads.push((format!("steps[{i}].join_stream.topic"), j.topic.clone())),
            _ => {}
        }
    }
    for (path, topic) in &reads {
        if meta.topic(topic).is_none() {
            return Err(invalid(format!("{path}: topic `{topic}` does not exist")));
        }
        caller.require(&meta, ResourceType::Topic, topic, Operation::Consume)?;
    }
    if meta.topic(&def.sink).is_none() {
        return Err(invalid(format!("sink: topic `{}` does not exist", def.sink)));
    }
    caller.require(&meta, ResourceType::Topic, &def.sink, Operation::Produce)?;
    for s in 0..compiled.topology.stages.len() {
        caller.require_create_topic(&meta, &format!("{}-changelog-{s}", def.name))?;
        if s > 0 {
            caller.require_create_topic(&meta, &format!("{}-repartition-{s}", def.name))?;
        }
    }
    if meta.pipelines.contains_key(&def.name) {
        return Err(ApiError::new(ErrorCode::PipelineAlreadyExists, format!("a pipeline named `{}` exists", def.name)));
    }
    let leftovers = internal_topics(&meta, &def.name);
    if !leftovers.is_empty() {
        return Err(ApiError::new(
            ErrorCode::PipelineAlreadyExists,
            format!("topics {leftovers:?} exist, left by an earlier pipeline of this name: delete them first"),
        ));
    }
    match groups::call(&state, GroupRequest::Describe { group: def.name.clone() }).await {
        Ok(GroupResponse::Described(d)) if !d.members.is_empty() || !d.offsets.is_empty() => {
            return Err(ApiError::new(
                ErrorCode::PipelineAlreadyExists,
                format!(
                    "consumer group `{}` exists (a pipeline runs as the group of its name): delete it first",
                    def.name
                ),
            ))
        }
        Ok(_) => {}
        Err(e) if e.code() == ErrorCode::UnknownGroup => {}
        Err(e) => return Err(e),
    }
    let record = PipelineRecord {
        name: def.name.clone(),
        definition: raw,
        created_ms: fjord_protocol::now_ms(),
        principal: caller.principal().to_owned(),
    };
    state.coordinator.create_pipeline(record.clone()).await?;
    tracing::info!(target: "audit", principal = caller.principal(), pipeline = def.name, "pipeline created");
    Ok((StatusCode::CREATED, Json(info(&record)?)))
}

/// A pipeline's definition and status: its processor instances and tasks, and per input
/// partition the committed offset, lag and the task's late and skipped records.
#[utoipa::path(
    get,
    path = "/v1/pipelines/{pipeline}",
    tag = "pipelines",
    params(("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 200, body = PipelineDescription),
        (status = 404, description = "`unknown_pipeline`", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn describe_pipeline(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<PipelineDescription>> {
    let meta = state.metadata();
    let record = meta.pipelines.get(&name).ok_or_else(|| unknown_pipeline(&name))?;
    let info = info(record)?;
    let (instances, inputs) = match groups::call(&state, GroupRequest::Describe { group: name.clone() }).await {
        Ok(GroupResponse::Described(d)) => {
            let inputs = groups::offsets_with_lag(&state, &caller, &d)
                .await
                .into_iter()
                .map(|o| {
                    let tallies: Option<serde_json::Value> =
                        o.metadata.as_deref().and_then(|m| serde_json::from_str(m).ok());
                    let get = |k: &str| tallies.as_ref().and_then(|t| t[k].as_u64());
                    let last_error = tallies.as_ref().and_then(|t| t["last_error"].as_str().map(str::to_owned));
                    PipelineInput {
                        late_records: get("late"),
                        skipped_records: get("skipped"),
                        expression_errors: get("expression_errors"),
                        last_error,
                        offsets: o,
                    }
                })
                .collect();
            (d.members, inputs)
        }
        Ok(_) => (Vec::new(), Vec::new()),
        Err(e) if e.code() == ErrorCode::UnknownGroup => (Vec::new(), Vec::new()),
        Err(e) => return Err(e),
    };
    let state_name = if instances.is_empty() { "idle" } else { "running" };
    Ok(Json(PipelineDescription {
        info,
        state: state_name.into(),
        instances,
        inputs,
        internal_topics: internal_topics(&meta, &name),
    }))
}

/// Stop a pipeline and clean up: its definition is removed (processors stop running it
/// within seconds), then — once its group has no members, or after 15 s — its group and
/// internal topics are deleted. Its sink topic and inputs are left as they are.
#[utoipa::path(
    delete,
    path = "/v1/pipelines/{pipeline}",
    tag = "pipelines",
    params(("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 204, description = "Deleted, with its group and internal topics"),
        (status = 404, description = "`unknown_pipeline`", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn delete_pipeline(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if !state.coordinator.delete_pipeline(&name).await? {
        return Err(unknown_pipeline(&name));
    }
    tracing::info!(target: "audit", principal = caller.principal(), pipeline = name, "pipeline deleted");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match groups::call(&state, GroupRequest::Describe { group: name.clone() }).await {
            Ok(GroupResponse::Described(d)) if !d.members.is_empty() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(_) => break,
            Err(e) if e.code() == ErrorCode::UnknownGroup => break,
            Err(e) if e.code().retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(e),
        }
    }
    match groups::call(&state, GroupRequest::Delete { group: name.clone() }).await {
        Ok(_) => {}
        Err(e) if matches!(e.code(), ErrorCode::UnknownGroup | ErrorCode::GroupNotEmpty) => {
            tracing::warn!(pipeline = name, error = %e.0, "the pipeline's group was not deleted");
        }
        Err(e) => return Err(e),
    }
    for topic in internal_topics(&state.metadata(), &name) {
        match state.coordinator.delete_topic(&topic).await {
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::UnknownTopic => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
