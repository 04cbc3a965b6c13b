//! Consumer groups over stateless gateways.
//!
//! All group state lives with the group's coordinator on a storage node; every call
//! here names the group (and member) and is forwarded there, so any gateway serves any
//! call. A member's poll is three steps: `PollBegin` at the coordinator (heartbeat,
//! auto-commit, hand-over, where to read), fetches from the partition leaders, and
//! `PollEnd` (where the member is now).

use crate::auth::Caller;
use crate::body::{self, Format};
use crate::error::{parse_json, ApiError, ApiResult, ErrorBody};
use crate::http::extract::{require_json, ApiPath, ApiQuery};
use crate::http::params;
use crate::http::records::{payload_len, render_batches};
use crate::http::sse::{self, EventSource};
use crate::quota::Kind;
use crate::state::AppState;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use fjord_protocol::auth::{Operation, ResourceType};
use fjord_protocol::group::{
    Assignor, CommitOffset, GroupDescription, GroupRequest, GroupResponse, GroupSummary, JoinGroup, Membership,
    OffsetReset, PartitionOffset, PollPlan,
};
use fjord_protocol::names::{is_valid_name, MAX_CLIENT_ID_LEN, MAX_NAME_LEN};
use fjord_protocol::{ErrorCode, FetchRequest, FjordError, OffsetSpec, TopicPartition};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups))
        .routes(routes!(describe_group, delete_group))
        .routes(routes!(join_group))
        .routes(routes!(leave_group))
        .routes(routes!(poll))
        .routes(routes!(commit_offsets, group_offsets))
        .routes(routes!(seek))
}

/// How long a call to a group's coordinator may take, moves included.
const GROUP_CALL_DEADLINE: Duration = Duration::from_secs(15);
const DEFAULT_SESSION_TIMEOUT_MS: u64 = 45_000;
/// While a member waits for partitions another member still owns, its long polls are
/// cut to this, so it picks them up soon after they are released.
const PENDING_POLL_WAIT: Duration = Duration::from_millis(500);
/// Longest wait of each poll behind a member's event stream.
const STREAM_POLL_WAIT: Duration = Duration::from_secs(1);

/// A group id: `[a-zA-Z0-9._-]{1,249}`, like a topic name.
fn validate_group(group: &str) -> ApiResult<()> {
    if is_valid_name(group, MAX_NAME_LEN) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidGroupId,
            format!("group id `{group}` is invalid: use 1 to 249 characters from [a-zA-Z0-9._-]"),
        ))
    }
}

pub(crate) async fn call(state: &AppState, req: GroupRequest) -> ApiResult<GroupResponse> {
    state.call_group(req, Instant::now() + GROUP_CALL_DEADLINE).await
}

fn unexpected(r: &GroupResponse) -> ApiError {
    ApiError::new(ErrorCode::Internal, format!("unexpected coordinator answer: {r:?}"))
}

/// The groups and their state.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"groups": [{"group": "billing", "state": "stable", "members": 2}]}))]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
}

/// List consumer groups.
#[utoipa::path(
    get,
    path = "/v1/groups",
    tag = "groups",
    responses(
        (status = 200, body = GroupList),
        (status = 503, description = "Retriable: a coordinator is not available", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn list_groups(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<GroupList>> {
    let count = state.offsets_topic().await?;
    let calls = (0..count).map(|partition| call(&state, GroupRequest::List { partition }));
    let mut groups = Vec::new();
    for answer in futures::future::join_all(calls).await {
        match answer? {
            GroupResponse::Listed { groups: g } => groups.extend(g),
            other => return Err(unexpected(&other)),
        }
    }
    let meta = state.metadata();
    groups.retain(|g| caller.may(&meta, ResourceType::Group, &g.group, Operation::Describe));
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(Json(GroupList { groups }))
}

/// Describe a group: state, generation, members with their assignment, and committed
/// offsets.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}",
    tag = "groups",
    params(("group" = String, Path, description = "Group id")),
    responses(
        (status = 200, body = GroupDescription),
        (status = 400, description = "Invalid group id", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 503, description = "Retriable: the coordinator is not available", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn describe_group(
    State(state): State<AppState>,
    ApiPath(group): ApiPath<String>,
) -> ApiResult<Json<GroupDescription>> {
    validate_group(&group)?;
    match call(&state, GroupRequest::Describe { group }).await? {
        GroupResponse::Described(d) => Ok(Json(d)),
        other => Err(unexpected(&other)),
    }
}

/// Delete a group that has no members, with its committed offsets.
#[utoipa::path(
    delete,
    path = "/v1/groups/{group}",
    tag = "groups",
    params(("group" = String, Path, description = "Group id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid group id", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 409, description = "The group still has members", body = ErrorBody),
        (status = 503, description = "Retriable: the coordinator is not available", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn delete_group(State(state): State<AppState>, ApiPath(group): ApiPath<String>) -> ApiResult<StatusCode> {
    validate_group(&group)?;
    call(&state, GroupRequest::Delete { group }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"topics": ["orders"], "session_timeout_ms": 30000, "auto_offset_reset": "earliest",
    "assignor": "sticky", "auto_commit": false, "client_id": "worker-1"}))]
pub struct JoinRequest {
    /// Topics to consume (at least one; each must exist).
    #[schema(min_items = 1)]
    pub topics: Vec<String>,
    /// A member that does not poll for this long is evicted and its partitions
    /// reassigned (default 45000; 1000 to 1800000). Polls are capped at half of it.
    #[schema(minimum = 1000, maximum = 1800000)]
    pub session_timeout_ms: Option<u64>,
    /// Where to start in a partition without a committed offset (default `latest`).
    pub auto_offset_reset: Option<OffsetReset>,
    /// Every member of a group must use the same assignor (default `range`).
    pub assignor: Option<Assignor>,
    /// Each poll commits what the member's previous poll returned (default `true`).
    pub auto_commit: Option<bool>,
    /// Shown in the group description and prefixed to the member id; `[a-zA-Z0-9._-]{1,100}`.
    #[schema(pattern = "^[a-zA-Z0-9._-]+$", min_length = 1, max_length = 100)]
    pub client_id: Option<String>,
}

/// A member's identity and assignment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"member_id": "worker-1-3b0c6f4e-…", "generation": 4,
    "assignment": [{"topic": "orders", "partition": 0}, {"topic": "orders", "partition": 1}],
    "pending": [{"topic": "orders", "partition": 2}]}))]
pub struct MemberAssignment {
    pub member_id: String,
    /// Commits carry it; it changes on every rebalance.
    pub generation: u32,
    /// The partitions the member owns and reads now.
    pub assignment: Vec<TopicPartition>,
    /// Partitions assigned to it that another member has not released yet; they join
    /// `assignment` on a later poll.
    pub pending: Vec<TopicPartition>,
}

impl From<Membership> for MemberAssignment {
    fn from(m: Membership) -> Self {
        Self { member_id: m.member_id, generation: m.generation, assignment: m.assignment, pending: m.pending }
    }
}

/// Join a group. The coordinator computes the assignment on the server; other members
/// learn of the rebalance on their next poll. Any gateway serves any later call.
#[utoipa::path(
    post,
    path = "/v1/groups/{group}/members",
    tag = "groups",
    params(("group" = String, Path, description = "Group id")),
    request_body(content = JoinRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Joined", body = MemberAssignment),
        (status = 400, description = "Malformed body or bad value", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 404, description = "A topic does not exist", body = ErrorBody),
        (status = 409, description = "The group uses another assignor", body = ErrorBody),
        (status = 503, description = "Retriable: the coordinator is not available", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn join_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(group): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<MemberAssignment>> {
    validate_group(&group)?;
    require_json(&headers)?;
    let req: JoinRequest = parse_json(&body?)?;
    if req.topics.is_empty() {
        return Err(ApiError::bad_request("`topics` must name at least one topic"));
    }
    let meta = state.metadata();
    for t in &req.topics {
        state.topic(t)?;
        caller.require(&meta, ResourceType::Topic, t, Operation::Consume)?;
    }
    if let Some(c) = &req.client_id {
        if !is_valid_name(c, MAX_CLIENT_ID_LEN) {
            return Err(ApiError::bad_request(format!(
                "client_id `{c}` is invalid: use 1 to 100 characters from [a-zA-Z0-9._-]"
            )));
        }
    }
    let session_timeout_ms = req.session_timeout_ms.unwrap_or(DEFAULT_SESSION_TIMEOUT_MS);
    let join = JoinGroup {
        group,
        topics: req.topics,
        session_timeout_ms,
        auto_offset_reset: req.auto_offset_reset.unwrap_or_default(),
        assignor: req.assignor.unwrap_or_default(),
        auto_commit: req.auto_commit.unwrap_or(true),
        client_id: req.client_id,
    };
    match call(&state, GroupRequest::Join(join)).await? {
        GroupResponse::Joined(m) => Ok(Json(m.into())),
        other => Err(unexpected(&other)),
    }
}

/// Leave a group at once (with auto-commit, the member's position is committed first);
/// its partitions are reassigned.
#[utoipa::path(
    delete,
    path = "/v1/groups/{group}/members/{member_id}",
    tag = "groups",
    params(("group" = String, Path, description = "Group id"), ("member_id" = String, Path, description = "Member id")),
    responses(
        (status = 204, description = "Left"),
        (status = 400, description = "Invalid group id", body = ErrorBody),
        (status = 404, description = "Unknown member", body = ErrorBody),
        (status = 503, description = "Retriable: the coordinator is not available", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn leave_group(
    State(state): State<AppState>,
    ApiPath((group, member_id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    validate_group(&group)?;
    call(&state, GroupRequest::Leave { group, member_id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollParams {
    /// Long poll: wait up to this long (ms) for a record when none is there (default 0;
    /// at most half the session timeout).
    timeout_ms: Option<u64>,
    /// Most records to return (default 500).
    max_records: Option<u32>,
    /// Soft limit on the bytes read (default 1 MiB; at least one record is returned).
    max_bytes: Option<u64>,
    /// How keys and values are shown (default `json`).
    format: Option<Format>,
    /// With `Accept: text/event-stream`: how often (ms) a heartbeat comment is sent while
    /// no record arrives (default 15000).
    #[param(minimum = 100, maximum = 60000)]
    heartbeat_ms: Option<u64>,
}

/// A member's poll answer. `records` are in partition order, offsets ascending in each.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"member_id": "worker-1-3b0c6f4e-…", "generation": 4,
    "assignment": [{"topic": "orders", "partition": 0}], "pending": [],
    "records": [{"topic": "orders", "partition": 0, "offset": 41, "timestamp": 1_700_000_000_000i64,
        "key": "user-42", "value": {"action": "login"}, "headers": []}]}))]
pub struct PollResponse {
    pub member_id: String,
    pub generation: u32,
    pub assignment: Vec<TopicPartition>,
    pub pending: Vec<TopicPartition>,
    pub records: Vec<body::ConsumedRecord>,
}

/// Poll a member's records: a heartbeat, then records from every partition the member
/// owns, long-polling up to `timeout_ms`. With auto-commit, this poll first commits what
/// the previous poll returned. The answer carries the current generation and
/// assignment. With `Accept: text/event-stream` the poll becomes a Server-Sent Events
/// stream (`event: record`, `id: topic:partition:offset`; `event: assignment` on each
/// change; comments as heartbeats) that keeps polling for the member while it is open.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/members/{member_id}/records",
    tag = "groups",
    params(
        ("group" = String, Path, description = "Group id"),
        ("member_id" = String, Path, description = "Member id"),
        PollParams,
    ),
    responses(
        (status = 200, description = "Records (possibly none) and the member's assignment; with \
            `Accept: text/event-stream`, a stream of `assignment` and `record` events", content(
            (PollResponse = "application/json"),
            (String = "text/event-stream", example = json!("event: assignment\ndata: {\"member_id\":\"worker-1-…\",\"generation\":4,\"assignment\":[{\"topic\":\"orders\",\"partition\":0}],\"pending\":[]}\n\nevent: record\nid: orders:0:41\ndata: {\"topic\":\"orders\",\"partition\":0,\"offset\":41,\"timestamp\":1700000000000,\"key\":\"user-42\",\"value\":{\"action\":\"login\"},\"headers\":[]}\n\n:heartbeat\n\n")),
        )),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 404, description = "Unknown member (left or evicted): join again", body = ErrorBody),
        (status = 409, description = "No committed offset and auto_offset_reset is none", body = ErrorBody),
        (status = 416, description = "Committed offset out of range and auto_offset_reset is none", body = ErrorBody),
        (status = 503, description = "Retriable: a coordinator or leader is not available", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn poll(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((group, member_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PollParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    validate_group(&group)?;
    let wait = params::timeout(&state, q.timeout_ms, 0)?;
    let (max_records, max_bytes) = params::read_limits(q.max_records, q.max_bytes)?;
    let heartbeat = params::heartbeat(q.heartbeat_ms)?;
    let opts = PollOptions { wait, max_records, max_bytes: max_bytes as usize, format: q.format.unwrap_or_default() };
    if sse::wants_event_stream(&headers) {
        return poll_stream(state, caller, group, member_id, opts, heartbeat).await;
    }
    let out = poll_once(&state, &caller, &group, &member_id, &opts).await?;
    let mut body = Vec::with_capacity(out.records.iter().map(|(_, r)| r.len() + 1).sum::<usize>() + 256);
    body.extend_from_slice(b"{\"member_id\":");
    body.extend_from_slice(&json_bytes(&out.membership.member_id)?);
    body.extend_from_slice(format!(",\"generation\":{},\"assignment\":", out.membership.generation).as_bytes());
    body.extend_from_slice(&json_bytes(&out.membership.assignment)?);
    body.extend_from_slice(b",\"pending\":");
    body.extend_from_slice(&json_bytes(&out.membership.pending)?);
    body.extend_from_slice(b",\"records\":[");
    for (i, (_, r)) in out.records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(r);
    }
    body.extend_from_slice(b"]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn json_bytes<T: Serialize + ?Sized>(v: &T) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

#[derive(Clone, Copy)]
struct PollOptions {
    wait: Duration,
    max_records: u32,
    max_bytes: usize,
    format: Format,
}

struct PollOutcome {
    membership: Membership,
    /// Rendered records with their partition and offset, in answer order.
    records: Vec<((TopicPartition, u64), Vec<u8>)>,
}

/// What one partition's fetch brought.
struct Fetched {
    tp: TopicPartition,
    from: u64,
    batches: Vec<Bytes>,
    high_watermark: u64,
}

/// Resolves a partition's start from `auto_offset_reset` (no position, or a position
/// outside the log).
async fn reset_position(
    state: &AppState,
    tp: &TopicPartition,
    reset: OffsetReset,
    why: FjordError,
    deadline: Instant,
) -> ApiResult<u64> {
    let spec = match reset {
        OffsetReset::Earliest => OffsetSpec::Earliest,
        OffsetReset::Latest => OffsetSpec::Latest,
        OffsetReset::None => return Err(why.into()),
    };
    let found = state
        .call_leader(tp, deadline, |node| {
            let tp = tp.clone();
            async move { node.list_offset(tp, spec).await }
        })
        .await?;
    Ok(found.offset)
}

/// One poll of a member: `PollBegin`, fetches, `PollEnd`. A long poll of a member that
/// owns no partition yet (all pending a hand-over, or more members than partitions)
/// waits out its time — a client loop would otherwise spin — then polls once more, so
/// it answers with whatever the member owns by then.
async fn poll_once(
    state: &AppState,
    caller: &Caller,
    group: &str,
    member_id: &str,
    opts: &PollOptions,
) -> ApiResult<PollOutcome> {
    // A stream polls on: its token and its right to read must still hold each time.
    let meta = state.metadata();
    caller.still_valid(&meta)?;
    caller.require(&meta, ResourceType::Group, group, Operation::Consume)?;
    state.quotas.admit(caller.principal(), Kind::ConsumeBytes)?;
    let begin = GroupRequest::PollBegin { group: group.to_owned(), member_id: member_id.to_owned() };
    let plan: PollPlan = match call(state, begin).await? {
        GroupResponse::Poll(p) => p,
        other => return Err(unexpected(&other)),
    };
    // Reading needs consume on every topic the member owns partitions of. Refused before
    // anything is read; the member's positions stay where they were.
    let topics: std::collections::BTreeSet<&str> = plan.positions.iter().map(|(tp, _)| tp.topic.as_str()).collect();
    for t in topics {
        caller.require(&meta, ResourceType::Topic, t, Operation::Consume)?;
    }
    let mut wait = opts.wait.min(Duration::from_millis(plan.session_timeout_ms / 2));
    if !plan.membership.pending.is_empty() {
        wait = wait.min(PENDING_POLL_WAIT);
    }
    if plan.positions.is_empty() && !wait.is_zero() {
        let end = GroupRequest::PollEnd {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
            generation: plan.membership.generation,
            positions: Vec::new(),
        };
        call(state, end).await?;
        tokio::time::sleep(wait).await;
        let again = PollOptions { wait: Duration::ZERO, ..*opts };
        return Box::pin(poll_once(state, caller, group, member_id, &again)).await;
    }
    let route_deadline = Instant::now() + wait.max(Duration::from_secs(5));

    // Where to read in each owned partition.
    let mut positions: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    for (tp, pos) in &plan.positions {
        let pos = match pos {
            Some(p) => *p,
            None => {
                let why = FjordError::new(
                    ErrorCode::NoCommittedOffset,
                    format!("group `{group}` has no committed offset for {tp} and auto_offset_reset is none"),
                );
                reset_position(state, tp, plan.auto_offset_reset, why, route_deadline).await?
            }
        };
        positions.insert(tp.clone(), pos);
    }

    // Answer at once with whatever is there; else long-poll every partition and answer
    // with the first that has records.
    let mut fetched = fetch_all(state, &mut positions, plan.auto_offset_reset, Duration::ZERO, route_deadline).await?;
    if fetched.iter().all(|f| f.batches.is_empty()) && !wait.is_zero() {
        fetched = fetch_all(state, &mut positions, plan.auto_offset_reset, wait, route_deadline).await?;
    }

    let mut records = Vec::new();
    let mut bytes = 0usize;
    'partitions: for f in fetched {
        let topic_json = json_bytes(&f.tp.topic)?;
        let mut payload = 0usize;
        let (rendered, next) = render_batches(&f.batches, f.from, f.high_watermark, |r| {
            if records.len() as u32 >= opts.max_records || (bytes >= opts.max_bytes && !records.is_empty()) {
                return None;
            }
            let mut out = Vec::new();
            body::render_record(&mut out, &topic_json, f.tp.partition, r, opts.format);
            bytes += out.len();
            payload += payload_len(r);
            records.push(((f.tp.clone(), r.offset), out));
            Some(())
        })?;
        state.metrics.gateway.consumed(&f.tp.topic, rendered as usize, payload);
        state.quotas.charge(caller.principal(), Kind::ConsumeBytes, payload as u64);
        positions.insert(f.tp.clone(), next);
        if rendered == 0 && records.len() as u32 >= opts.max_records {
            break 'partitions;
        }
    }

    let end = GroupRequest::PollEnd {
        group: group.to_owned(),
        member_id: member_id.to_owned(),
        generation: plan.membership.generation,
        positions: positions
            .into_iter()
            .map(|(tp, offset)| PartitionOffset { topic: tp.topic, partition: tp.partition, offset })
            .collect(),
    };
    call(state, end).await?;
    Ok(PollOutcome { membership: plan.membership, records })
}

/// Fetches every partition in `positions` with `max_wait`; with a wait, returns as soon
/// as one partition has records. A position outside its log is reset per `reset`.
async fn fetch_all(
    state: &AppState,
    positions: &mut BTreeMap<TopicPartition, u64>,
    reset: OffsetReset,
    max_wait: Duration,
    deadline: Instant,
) -> ApiResult<Vec<Fetched>> {
    let poll_deadline = Instant::now() + max_wait;
    let mut calls: FuturesUnordered<_> = positions
        .iter()
        .map(|(tp, offset)| {
            let (tp, offset) = (tp.clone(), *offset);
            async move {
                let result = state
                    .call_leader(&tp, deadline, |node| {
                        let req = FetchRequest {
                            tp: tp.clone(),
                            offset,
                            max_bytes: 1 << 20,
                            max_wait: poll_deadline.saturating_duration_since(Instant::now()),
                        };
                        async move { node.fetch(req).await }
                    })
                    .await;
                (tp, offset, result)
            }
        })
        .collect();
    let mut out = Vec::new();
    while let Some((tp, from, result)) = calls.next().await {
        match result {
            Ok(r) => {
                // A leader answers with batches only when it has a record at or after
                // `from` below its high watermark.
                let has_records = !r.batches.is_empty() && from < r.high_watermark;
                out.push(Fetched { tp, from, batches: r.batches, high_watermark: r.high_watermark });
                if has_records && !max_wait.is_zero() {
                    // Answer now; the other long polls are dropped.
                    break;
                }
            }
            Err(e) if e.code() == ErrorCode::OffsetOutOfRange => {
                let why = e.0.clone();
                let at = reset_position(state, &tp, reset, why, deadline).await?;
                tracing::info!(partition = %tp, from, to = at, "group position out of range; reset");
                positions.insert(tp, at);
            }
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.tp.cmp(&b.tp));
    Ok(out)
}

/// A member's polls as Server-Sent Events: `event: assignment` whenever the generation
/// or assignment changes, then the poll's records as `event: record` with
/// `id: topic:partition:offset`.
struct MemberSource {
    state: AppState,
    caller: Caller,
    group: String,
    member_id: String,
    opts: PollOptions,
    last: Option<(u32, Vec<TopicPartition>)>,
}

impl MemberSource {
    fn events(&mut self, out: PollOutcome) -> Vec<Event> {
        let mut events = Vec::with_capacity(out.records.len() + 1);
        let now = (out.membership.generation, out.membership.assignment.clone());
        if self.last.as_ref() != Some(&now) {
            let data = serde_json::to_string(&MemberAssignment::from(out.membership)).unwrap_or_default();
            events.push(Event::default().event("assignment").data(data));
            self.last = Some(now);
        }
        for ((tp, offset), r) in out.records {
            events.push(
                Event::default()
                    .event("record")
                    .id(format!("{}:{}:{offset}", tp.topic, tp.partition))
                    .data(String::from_utf8_lossy(&r)),
            );
        }
        events
    }
}

impl EventSource for MemberSource {
    async fn next_events(&mut self) -> ApiResult<Vec<Event>> {
        // Idle polls are short so that a rebalance is announced (and partitions handed
        // over) within about a second, not after a whole long poll.
        let wait = if self.opts.wait.is_zero() { STREAM_POLL_WAIT } else { self.opts.wait.min(STREAM_POLL_WAIT) };
        let opts = PollOptions { wait, ..self.opts };
        // Over the consume quota, a stream pauses rather than fails (Kafka's throttle).
        if let Some(pause) = self.state.quotas.debt(self.caller.principal(), Kind::ConsumeBytes) {
            tokio::time::sleep(pause).await;
        }
        let out = poll_once(&self.state, &self.caller, &self.group, &self.member_id, &opts).await?;
        Ok(self.events(out))
    }
}

/// The member poll as a Server-Sent Events stream. The first poll runs before the
/// stream starts, so a bad member gets a plain error.
async fn poll_stream(
    state: AppState,
    caller: Caller,
    group: String,
    member_id: String,
    opts: PollOptions,
    heartbeat: Duration,
) -> ApiResult<Response> {
    let first = poll_once(&state, &caller, &group, &member_id, &PollOptions { wait: Duration::ZERO, ..opts }).await?;
    let mut source = MemberSource { state, caller, group, member_id, opts, last: None };
    let first = source.events(first);
    let open = source.state.metrics.gateway.streams_open.clone();
    Ok(sse::stream(source, Ok(first), heartbeat, open).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"member_id": "worker-1-3b0c6f4e-…", "generation": 4,
    "offsets": [{"topic": "orders", "partition": 0, "offset": 42}]}))]
pub struct CommitRequest {
    /// The committing member; omit only for a group without members.
    pub member_id: Option<String>,
    /// The generation of the member's last poll.
    pub generation: Option<u32>,
    #[schema(min_items = 1)]
    pub offsets: Vec<CommitEntry>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: u32,
    /// The next offset to read (the last processed offset + 1).
    pub offset: u64,
    /// Free text kept with the offset.
    pub metadata: Option<String>,
}

/// Commit offsets. A member commits in the generation of its last poll and only the
/// partitions it owns; otherwise the commit is refused with `stale_generation` and
/// nothing is committed.
#[utoipa::path(
    post,
    path = "/v1/groups/{group}/offsets",
    tag = "groups",
    params(("group" = String, Path, description = "Group id")),
    request_body(content = CommitRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "Committed"),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 404, description = "Unknown member, topic or partition", body = ErrorBody),
        (status = 409, description = "Stale generation or a partition the member does not own", body = ErrorBody),
        (status = 503, description = "Retriable: the coordinator is not available", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn commit_offsets(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(group): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    validate_group(&group)?;
    require_json(&headers)?;
    let req: CommitRequest = parse_json(&body?)?;
    if req.offsets.is_empty() {
        return Err(ApiError::bad_request("`offsets` is empty"));
    }
    let meta = state.metadata();
    for o in &req.offsets {
        check_partition(&state, &o.topic, o.partition)?;
        caller.require(&meta, ResourceType::Topic, &o.topic, Operation::Consume)?;
    }
    let offsets = req
        .offsets
        .into_iter()
        .map(|o| CommitOffset { topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata })
        .collect();
    call(&state, GroupRequest::Commit { group, member_id: req.member_id, generation: req.generation, offsets }).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn check_partition(state: &AppState, topic: &str, partition: u32) -> ApiResult<()> {
    let meta = state.topic(topic)?;
    if partition as usize >= meta.partitions.len() {
        return Err(crate::state::unknown_partition(&meta, partition));
    }
    Ok(())
}

/// A group's position in one partition.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupPartitionOffset {
    pub topic: String,
    pub partition: u32,
    /// The committed offset (next to read); `null` if none.
    pub offset: Option<u64>,
    pub metadata: Option<String>,
    /// The member owning the partition now, if any.
    pub member_id: Option<String>,
    /// The partition's high watermark; `null` if its leader did not answer.
    pub high_watermark: Option<u64>,
    /// `high_watermark - offset` (or from the log start without a commit).
    pub lag: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"group": "billing", "offsets": [{"topic": "orders", "partition": 0, "offset": 40,
    "metadata": null, "member_id": "worker-1-3b0c6f4e-…", "high_watermark": 42, "lag": 2}]}))]
pub struct GroupOffsets {
    pub group: String,
    pub offsets: Vec<GroupPartitionOffset>,
}

/// A group's committed offsets and lag per partition (committed or assigned).
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/offsets",
    tag = "groups",
    params(("group" = String, Path, description = "Group id")),
    responses(
        (status = 200, body = GroupOffsets),
        (status = 400, description = "Invalid group id", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 503, description = "Retriable: the coordinator is not available", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn group_offsets(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(group): ApiPath<String>,
) -> ApiResult<Json<GroupOffsets>> {
    validate_group(&group)?;
    let d = match call(&state, GroupRequest::Describe { group: group.clone() }).await? {
        GroupResponse::Described(d) => d,
        other => return Err(unexpected(&other)),
    };
    let offsets = offsets_with_lag(&state, &caller, &d).await;
    Ok(Json(GroupOffsets { group, offsets }))
}

/// A described group's rows (committed or assigned partitions the caller may describe)
/// with each partition's high watermark and the lag behind it.
pub(crate) async fn offsets_with_lag(
    state: &AppState,
    caller: &Caller,
    d: &GroupDescription,
) -> Vec<GroupPartitionOffset> {
    let mut rows: BTreeMap<TopicPartition, GroupPartitionOffset> = BTreeMap::new();
    fn row<'a>(
        rows: &'a mut BTreeMap<TopicPartition, GroupPartitionOffset>,
        tp: &TopicPartition,
    ) -> &'a mut GroupPartitionOffset {
        rows.entry(tp.clone()).or_insert_with(|| GroupPartitionOffset {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: None,
            metadata: None,
            member_id: None,
            high_watermark: None,
            lag: None,
        })
    }
    for c in &d.offsets {
        let r = row(&mut rows, &TopicPartition::new(c.topic.clone(), c.partition));
        r.offset = Some(c.offset);
        r.metadata = c.metadata.clone();
    }
    for m in &d.members {
        for tp in &m.assignment {
            row(&mut rows, tp).member_id = Some(m.member_id.clone());
        }
    }
    // As Kafka's OffsetFetch: only the topics the caller may describe (and no leader is
    // asked about the others).
    let meta = state.metadata();
    rows.retain(|tp, _| caller.may(&meta, ResourceType::Topic, &tp.topic, Operation::Describe));
    let deadline = Instant::now() + Duration::from_secs(2);
    let statuses = futures::future::join_all(rows.keys().map(|tp| {
        let state = state.clone();
        async move {
            state
                .call_leader(tp, deadline, |node| {
                    let tp = tp.clone();
                    async move { node.partition_status(tp).await }
                })
                .await
                .ok()
        }
    }))
    .await;
    rows.into_values()
        .zip(statuses)
        .map(|(mut r, status)| {
            if let Some(s) = status {
                r.high_watermark = Some(s.high_watermark);
                let from = r.offset.unwrap_or(s.log_start_offset);
                r.lag = Some(s.high_watermark.saturating_sub(from));
            }
            r
        })
        .collect()
}

/// Where to seek to.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeekTo {
    /// The log start of each partition.
    #[schema(title = "SeekToEarliest")]
    Earliest,
    /// The high watermark of each partition: only records produced from now on.
    #[schema(title = "SeekToLatest")]
    Latest,
    /// This offset in every partition named.
    #[schema(title = "SeekToOffset")]
    Offset(u64),
    /// The first record at or after this time (ms); the high watermark where there is none.
    #[schema(title = "SeekToTimestamp")]
    Timestamp(i64),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"topic": "orders", "partitions": [0, 1], "to": {"timestamp": 1_700_000_000_000i64}}))]
pub struct SeekRequest {
    pub topic: String,
    /// Default: every partition of the topic.
    pub partitions: Option<Vec<u32>>,
    /// `"earliest"`, `"latest"`, `{"offset": n}` or `{"timestamp": ms}`.
    pub to: SeekTo,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"offsets": [{"topic": "orders", "partition": 0, "offset": 17}]}))]
pub struct SeekResponse {
    /// The committed offset of each partition after the seek.
    pub offsets: Vec<SeekedOffset>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeekedOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// Move a group to the earliest or latest offset, an offset, or a timestamp (replay
/// from any point): sets the committed offsets, and the position of the member owning
/// each partition, so its next poll reads from there.
#[utoipa::path(
    post,
    path = "/v1/groups/{group}/seek",
    tag = "groups",
    params(("group" = String, Path, description = "Group id")),
    request_body(content = SeekRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The offsets sought to", body = SeekResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 404, description = "Unknown topic or partition", body = ErrorBody),
        (status = 416, description = "An offset outside the partition's log", body = ErrorBody),
        (status = 503, description = "Retriable: the coordinator or a leader is not available", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn seek(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(group): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SeekResponse>> {
    validate_group(&group)?;
    require_json(&headers)?;
    let req: SeekRequest = parse_json(&body?)?;
    let meta = state.topic(&req.topic)?;
    caller.require(&state.metadata(), ResourceType::Topic, &req.topic, Operation::Consume)?;
    let partitions = match req.partitions {
        Some(ps) if ps.is_empty() => return Err(ApiError::bad_request("`partitions` is empty")),
        Some(ps) => ps,
        None => (0..meta.partitions.len() as u32).collect(),
    };
    for p in &partitions {
        check_partition(&state, &req.topic, *p)?;
    }
    if let SeekTo::Timestamp(ts) = req.to {
        if ts < 0 {
            return Err(ApiError::bad_request(format!("timestamp must be milliseconds since the epoch, got {ts}")));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let resolved = futures::future::join_all(partitions.iter().map(|p| {
        let tp = TopicPartition::new(req.topic.clone(), *p);
        let state = state.clone();
        async move {
            let offset = match req.to {
                SeekTo::Earliest | SeekTo::Latest | SeekTo::Timestamp(_) => {
                    let spec = match req.to {
                        SeekTo::Earliest => OffsetSpec::Earliest,
                        SeekTo::Latest => OffsetSpec::Latest,
                        SeekTo::Timestamp(ts) => OffsetSpec::Timestamp(ts),
                        SeekTo::Offset(_) => unreachable!("matched above"),
                    };
                    state
                        .call_leader(&tp, deadline, |node| {
                            let tp = tp.clone();
                            async move { node.list_offset(tp, spec).await }
                        })
                        .await?
                        .offset
                }
                SeekTo::Offset(o) => {
                    let s = state
                        .call_leader(&tp, deadline, |node| {
                            let tp = tp.clone();
                            async move { node.partition_status(tp).await }
                        })
                        .await?;
                    if o < s.log_start_offset || o > s.high_watermark {
                        return Err(ApiError::new(
                            ErrorCode::OffsetOutOfRange,
                            format!(
                                "offset {o} is outside {tp}: log start {}, high watermark {}",
                                s.log_start_offset, s.high_watermark
                            ),
                        ));
                    }
                    o
                }
            };
            Ok::<_, ApiError>(PartitionOffset { topic: tp.topic, partition: tp.partition, offset })
        }
    }))
    .await
    .into_iter()
    .collect::<ApiResult<Vec<_>>>()?;
    call(&state, GroupRequest::Seek { group, offsets: resolved.clone() }).await?;
    Ok(Json(SeekResponse {
        offsets: resolved
            .into_iter()
            .map(|o| SeekedOffset { topic: o.topic, partition: o.partition, offset: o.offset })
            .collect(),
    }))
}
