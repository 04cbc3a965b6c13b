//! Produce, in named steps: [`parse`] the body into records, [`route`] them (validate
//! every record and pick its partition — nothing is written unless the whole request
//! passes, and a topic is auto-created only then), [`dispatch`] one batch per partition
//! to its leader, and [`assemble`] the answer in request order.

use crate::auth::Caller;
use crate::body::{self, InRecord};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::http::exactly_once::{self, ProducerHeaders, RequestShape};
use crate::http::extract::{media_type, ApiPath, ApiQuery};
use crate::http::params;
use crate::quota::Kind;
use crate::state::AppState;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use fjord_coordinator::{NewTopic, TopicConfig, TopicMetadata};
use fjord_protocol::codec::ProducerExt;
use fjord_protocol::{partitioner, Acks, BatchBuilder, ErrorCode, FjordError, ProduceRequest, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

const DEFAULT_PRODUCE_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProduceParams {
    /// `0` (answer once accepted), `1` (after the leader's append, the default) or
    /// `all` (after every in-sync replica has it; `-1` is a synonym).
    #[param(example = "all", pattern = "^(0|1|-1|all)$")]
    acks: Option<String>,
    /// How long to wait for the append and replication (ms, default 30000).
    timeout_ms: Option<u64>,
    /// For `application/octet-stream` bodies: the record key (UTF-8).
    key: Option<String>,
    /// For `application/octet-stream` and `application/vnd.fjord.records` bodies on the
    /// topic route: the partition (of every record).
    partition: Option<u32>,
    /// For `application/octet-stream` and `application/vnd.fjord.records` bodies: the
    /// records' timestamp (ms; default: when the gateway received them).
    #[param(minimum = 0)]
    timestamp: Option<i64>,
    /// Only the partition route takes a condition; read here to refuse it clearly.
    #[param(ignore)]
    expected_offset: Option<serde_json::Value>,
}

/// The query of a produce to one partition: [`ProduceParams`] without `partition` (the
/// path names it).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PartitionProduceParams {
    /// `0` (answer once accepted), `1` (after the leader's append, the default) or
    /// `all` (after every in-sync replica has it; `-1` is a synonym).
    #[param(example = "all", pattern = "^(0|1|-1|all)$")]
    acks: Option<String>,
    /// How long to wait for the append and replication (ms, default 30000).
    timeout_ms: Option<u64>,
    /// For `application/octet-stream` bodies: the record key (UTF-8).
    key: Option<String>,
    /// For `application/octet-stream` and `application/vnd.fjord.records` bodies: the
    /// records' timestamp (ms; default: when the gateway received them).
    #[param(minimum = 0)]
    timestamp: Option<i64>,
    /// Conditional append: write only if the partition's log ends exactly at this
    /// offset (its next offset is this), else `412 offset_mismatch` with the current end
    /// in `error.details.log_end_offset` and nothing written. Needs `acks` 1 or `all`.
    #[param(minimum = 0, example = 42)]
    expected_offset: Option<u64>,
}

impl PartitionProduceParams {
    fn split(self) -> (ProduceParams, Option<u64>) {
        let q = ProduceParams {
            acks: self.acks,
            timeout_ms: self.timeout_ms,
            key: self.key,
            partition: None,
            timestamp: self.timestamp,
            expected_offset: None,
        };
        (q, self.expected_offset)
    }
}

/// Where each record went, in request order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"offsets": [{"partition": 0, "offset": 41, "timestamp": 1_700_000_000_000i64}]}))]
pub struct ProduceResponse {
    pub offsets: Vec<ProducedOffset>,
}

/// A record's partition and offset, or the error that kept it from being written.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProducedOffset {
    pub partition: u32,
    /// Absent with `acks=0` (not known when the answer is sent) and on error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The media types a produce body may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceMedia {
    /// `application/json` (or no `Content-Type`): `{"records": [...]}`.
    Json,
    /// `application/x-ndjson` (also `application/jsonl`, `application/jsonlines`): one
    /// record object per line.
    Ndjson,
    /// `application/octet-stream`: one raw value; key, partition and timestamp from the query.
    Octet,
    /// [`body::BINARY_RECORDS`]: length-prefixed binary records.
    Binary,
}

impl ProduceMedia {
    /// The media type's canonical name (what a request's fingerprint covers).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Ndjson => "application/x-ndjson",
            Self::Octet => "application/octet-stream",
            Self::Binary => body::BINARY_RECORDS,
        }
    }

    pub fn of(headers: &HeaderMap) -> ApiResult<Self> {
        let Some(media) = media_type(headers)? else { return Ok(Self::Json) };
        match media.as_str() {
            "application/json" => Ok(Self::Json),
            "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => Ok(Self::Ndjson),
            "application/octet-stream" => Ok(Self::Octet),
            body::BINARY_RECORDS => Ok(Self::Binary),
            other => Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "Content-Type `{other}` is not supported; use application/json, application/x-ndjson, \
                     application/octet-stream or {}",
                    body::BINARY_RECORDS
                ),
            )),
        }
    }
}

/// Produce to a topic: records go to their explicit partition, their key's partition
/// (Kafka's murmur2), or — unkeyed — one partition per request, round robin.
#[utoipa::path(
    post,
    path = "/v1/topics/{topic}/records",
    tag = "records",
    params(
        ("topic" = String, Path, description = "Topic name"),
        ProduceParams,
        ("Idempotency-Key" = Option<String>, Header, max_length = 255, min_length = 1, example = "order-7f3a-submit",
            description = "Makes the request safe to retry: a retry with the same key and the same request \
            (topic, path, Content-Type, key/partition/timestamp/expected_offset parameters and body) within the \
            topic's `idempotency.window.ms`, through any gateway and across leader failover, is answered with the \
            original partitions and offsets (header `Idempotent-Replayed`) and writes nothing; the same key with \
            another request is `422 idempotency_key_reused`. 1 to 255 printable ASCII characters, bare or as a \
            quoted string. Unkeyed records go to a partition derived from the key."),
    ),
    request_body(
        description = "Records as JSON, as NDJSON (one record object per line), one raw value \
            (`application/octet-stream`, key and partition from the query), or length-prefixed \
            binary records (`application/vnd.fjord.records`, for heavy producers: no JSON, no \
            base64). Binary layout, records back to back, integers big-endian: \
            `key_length` i32 (-1: no key), key bytes, `value_length` i32 (-1: tombstone), value \
            bytes, `header_count` u16, then per header `name_length` u16, UTF-8 name, \
            `value_length` i32 (>= 0), value bytes. Partition and timestamp from the query.",
        content(
            (body::ProduceBody<'static> = "application/json"),
            (String = "application/x-ndjson", example = json!("{\"key\":\"a\",\"value\":1}\n{\"value_base64\":\"AAE=\"}\n")),
            (body::OctetBody = "application/octet-stream"),
            (body::BinaryBody = "application/vnd.fjord.records"),
        )
    ),
    responses(
        (status = 200, description = "Every record was written (or, with Idempotency-Key, had been)", body = ProduceResponse, headers(("Idempotent-Replayed" = String, description = "`true`: a retry of an idempotent request already written, answered with its original offsets and nothing written; `partial`: some partitions were"))),
        (status = 207, description = "Some partitions failed; see each record's `error`", body = ProduceResponse, headers(("Idempotent-Replayed" = String, description = "`true`: a retry of an idempotent request already written, answered with its original offsets and nothing written; `partial`: some partitions were"))),
        (status = 400, description = "Malformed body, parameters or headers, or a record without a key on a compacted topic; nothing written", body = ErrorBody),
        (status = 404, description = "Unknown topic (auto-create off) or partition", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the key was used for another request within the window; nothing written", body = ErrorBody),
        (status = 413, description = "A record or the body is too large; nothing written", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = 429, description = "`throttled` (acks=0): the gateway's budget of unanswered acks=0 bytes stayed full for timeout_ms; nothing written; retriable, with Retry-After", body = ErrorBody),
        (status = 503, description = "Retriable: no leader, not enough in-sync replicas", body = ErrorBody),
        (status = 504, description = "Retriable: not replicated within timeout_ms", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn produce_to_topic(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(topic): ApiPath<String>,
    ApiQuery(q): ApiQuery<ProduceParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    if q.expected_offset.is_some() {
        return Err(ApiError::bad_request(
            "expected_offset needs the partition route, /v1/topics/{topic}/partitions/{partition}/records",
        ));
    }
    produce(state, &caller, topic, None, q, None, headers, body?).await
}

/// Produce to one partition.
#[utoipa::path(
    post,
    path = "/v1/topics/{topic}/partitions/{partition}/records",
    tag = "records",
    params(
        ("topic" = String, Path, description = "Topic name"),
        ("partition" = u32, Path, description = "Partition number"),
        PartitionProduceParams,
        ("Idempotency-Key" = Option<String>, Header, max_length = 255, min_length = 1, example = "order-7f3a-submit",
            description = "Makes the request safe to retry: a retry with the same key and the same request \
            (topic, path, Content-Type, key/partition/timestamp/expected_offset parameters and body) within the \
            topic's `idempotency.window.ms`, through any gateway and across leader failover, is answered with the \
            original partitions and offsets (header `Idempotent-Replayed`) and writes nothing; the same key with \
            another request is `422 idempotency_key_reused`. 1 to 255 printable ASCII characters, bare or as a \
            quoted string. Unkeyed records go to a partition derived from the key."),
        ("Producer-Id" = Option<u64>, Header, example = 1, description = "Producer session (from `POST /v1/producers`); \
            with Producer-Epoch and Producer-Sequence."),
        ("Producer-Epoch" = Option<u32>, Header, example = 0, description = "The session's epoch; an older one than the \
            latest registration is `409 producer_fenced`."),
        ("Producer-Sequence" = Option<u32>, Header, example = 42, description = "The sequence of the request's first record on \
            this partition, from 0 per epoch; n records use n numbers. A sequence already written is answered as \
            a replay; a gap is `409 out_of_order_sequence` with the expected one in `error.details`."),
    ),
    request_body(
        description = "As for the topic route; a record's `partition`, if given, must match the path.",
        content(
            (body::ProduceBody<'static> = "application/json"),
            (String = "application/x-ndjson"),
            (body::OctetBody = "application/octet-stream"),
            (body::BinaryBody = "application/vnd.fjord.records"),
        )
    ),
    responses(
        (status = 200, description = "Every record was written (or, retried, had been)", body = ProduceResponse, headers(("Idempotent-Replayed" = String, description = "`true`: a retry of an idempotent request already written, answered with its original offsets and nothing written; `partial`: some partitions were"))),
        (status = 400, description = "Malformed body, parameters or headers, or a record without a key on a compacted topic; nothing written", body = ErrorBody),
        (status = 404, description = "Unknown topic or partition, or `unknown_producer_id`", body = ErrorBody),
        (status = 409, description = "`producer_fenced` (a newer registration of the producer; current epoch in `error.details.producer_epoch`) or `out_of_order_sequence` (expected sequence in `error.details.expected_sequence`); nothing written", body = ErrorBody),
        (status = 412, description = "`offset_mismatch`: the log does not end at `expected_offset` (its end in `error.details.log_end_offset`); nothing written", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the key was used for another request within the window; nothing written", body = ErrorBody),
        (status = 413, description = "A record or the body is too large; nothing written", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = 429, description = "`throttled` (acks=0): the gateway's budget of unanswered acks=0 bytes stayed full for timeout_ms; nothing written; retriable, with Retry-After", body = ErrorBody),
        (status = 503, description = "Retriable: no leader, not enough in-sync replicas", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn produce_to_partition(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((topic, partition)): ApiPath<(String, u32)>,
    ApiQuery(q): ApiQuery<PartitionProduceParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (q, expected_offset) = q.split();
    produce(state, &caller, topic, Some(partition), q, expected_offset, headers, body?).await
}

#[allow(clippy::too_many_arguments)] // the request's parts, each from its own extractor
async fn produce(
    state: AppState,
    caller: &Caller,
    topic: String,
    path_partition: Option<u32>,
    q: ProduceParams,
    expected_offset: Option<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let acks = params::acks(q.acks.as_deref())?;
    let timeout = params::timeout(&state, q.timeout_ms, DEFAULT_PRODUCE_TIMEOUT_MS)?;
    if expected_offset.is_some() && acks == Acks::None {
        return Err(ApiError::bad_request(
            "expected_offset needs acks=1 or acks=all: with acks=0 nobody learns whether the condition held",
        ));
    }
    let media = ProduceMedia::of(&headers)?;
    let producer = ProducerHeaders::parse(&headers, path_partition.is_some())?;
    let fingerprint = match producer.idempotency_key {
        Some(_) => RequestShape {
            topic: &topic,
            path_partition,
            media: media.as_str(),
            key: q.key.as_deref(),
            partition: q.partition,
            timestamp: q.timestamp,
            expected_offset,
            body: &body,
        }
        .fingerprint(),
        None => [0; 16],
    };
    let body_bytes = body.len();
    let records = parse(&q, media, body)?;
    // Charged for what the request carries, before anything is written.
    state.quotas.spend(caller.principal(), Kind::ProduceBytes, body_bytes as u64)?;
    fjord_coordinator::validate_topic_name(&topic)?;
    crate::http::topics::refuse_internal(&topic)?;
    if let Some(session) = &producer.session {
        exactly_once::check_registered(&state, session).await?;
    }
    let (targets, count) = route(&state, caller, &topic, &records, path_partition, producer.routing_seed()).await?;
    let now = fjord_protocol::now_ms();
    let ext = producer.ext(fingerprint, count, now);
    let batches = batches(&records, &targets, now, ext.as_ref())?;
    if acks == Acks::None {
        let room = unacknowledged_room(&state, &batches, timeout).await?;
        dispatch_unacknowledged(&state, &topic, batches, timeout, ext.is_some(), room);
        state.metrics.gateway.produced(&topic, records.len(), body_bytes);
        let offsets = targets
            .iter()
            .map(|p| ProducedOffset { partition: *p, offset: None, timestamp: None, error: None })
            .collect();
        return Ok(Json(ProduceResponse { offsets }).into_response());
    }
    let results = dispatch(&state, &topic, batches, acks, timeout, expected_offset, ext.is_some()).await;
    let written: usize = results.iter().filter(|d| d.result.is_ok()).map(|d| d.records.len()).sum();
    // Bytes in, as Kafka's BytesInPerSec: the body's share of the records written.
    state.metrics.gateway.produced(&topic, written, body_bytes * written / records.len().max(1));
    assemble(&records, results, now)
}

/// Step 1: the body as records, per its media type; refuses an empty request.
fn parse(q: &ProduceParams, media: ProduceMedia, body: Bytes) -> ApiResult<Vec<InRecord>> {
    let records = match media {
        ProduceMedia::Json => body::parse_json(&body)?,
        ProduceMedia::Ndjson => body::parse_ndjson(&body)?,
        ProduceMedia::Octet => vec![InRecord {
            key: q.key.clone().map(Bytes::from),
            value: Some(body),
            headers: Vec::new(),
            partition: q.partition,
            timestamp: q.timestamp.map(params::timestamp).transpose()?,
        }],
        ProduceMedia::Binary => {
            body::parse_binary(&body, q.partition, q.timestamp.map(params::timestamp).transpose()?)?
        }
    };
    if records.is_empty() {
        return Err(ApiError::bad_request("the request has no records"));
    }
    Ok(records)
}

/// Step 2: every record checked and given its partition, in request order, with the
/// partition count it was routed with. Validates everything before writing anything —
/// and before auto-creating the topic, so that a rejected request leaves no topic
/// behind. Unkeyed records go to one partition per request: round robin, or from
/// `seed` (an idempotency key's hash) so that a retry lands where its first attempt did.
async fn route(
    state: &AppState,
    caller: &Caller,
    topic: &str,
    records: &[InRecord],
    path_partition: Option<u32>,
    seed: Option<u64>,
) -> ApiResult<(Vec<u32>, u32)> {
    let round = seed.unwrap_or_else(|| state.round_robin.fetch_add(1, Ordering::Relaxed));
    let sticky_for = |count: u32| (round % u64::from(count.max(1))) as u32;
    let routed = match existing_topic_for_produce(state, topic)? {
        Some(meta) => {
            let count = meta.partitions.len() as u32;
            route_records(topic, records, path_partition, count, &meta.config, sticky_for(count)).map(|t| (t, count))
        }
        None => {
            // Check against the topic as it would be created, then against what was
            // actually created (another request may have created it differently).
            let count = state.config.default_partitions;
            route_records(topic, records, path_partition, count, &TopicConfig::default(), sticky_for(count))?;
            caller.require_create_topic(&state.metadata(), topic)?;
            let meta = auto_create_topic(state, topic).await?;
            let count = meta.partitions.len() as u32;
            route_records(topic, records, path_partition, count, &meta.config, sticky_for(count)).map(|t| (t, count))
        }
    };
    routed
}

/// The topic to produce to: `Ok(Some)` when it exists, `Ok(None)` when it does not but
/// will be auto-created (after the request is validated), else `unknown_topic`.
fn existing_topic_for_produce(state: &AppState, name: &str) -> ApiResult<Option<Arc<TopicMetadata>>> {
    match state.topic(name) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.code() == ErrorCode::UnknownTopic && state.config.auto_create_topics => Ok(None),
        Err(e) => Err(e),
    }
}

/// Auto-creates `name` with the gateway's defaults (or returns it if another request
/// created it first).
async fn auto_create_topic(state: &AppState, name: &str) -> ApiResult<Arc<TopicMetadata>> {
    let spec = NewTopic {
        name: name.to_owned(),
        partitions: state.config.default_partitions,
        replication_factor: state.config.default_replication_factor,
        config: TopicConfig::default(),
    };
    match state.coordinator.create_topic(spec).await {
        Ok(t) => {
            tracing::info!(topic = name, "auto-created topic on first produce");
            Ok(Arc::new(t))
        }
        // Another request created it first.
        Err(e) if e.code == ErrorCode::TopicAlreadyExists => state.topic(name),
        Err(e) => Err(e.into()),
    }
}

/// Checks every record against a topic with `count` partitions and `config`
/// (`max.message.bytes`; a compacted topic takes only keyed records, as Kafka), and
/// picks each record's partition. Nothing is written before this passes for the whole
/// request.
fn route_records(
    topic: &str,
    records: &[InRecord],
    path_partition: Option<u32>,
    count: u32,
    config: &TopicConfig,
    sticky: u32,
) -> ApiResult<Vec<u32>> {
    let max_bytes = config.max_message_bytes as usize;
    let compacted = config.compacts();
    let mut targets = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let size = r.encoded_len();
        if size > max_bytes {
            return Err(ApiError::new(
                ErrorCode::RecordTooLarge,
                format!("record {i} is {size} bytes; topic `{topic}` allows at most {max_bytes} (max.message.bytes)"),
            ));
        }
        if compacted && r.key.is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidRecord,
                format!("record {i} has no key: compacted topic `{topic}` cannot accept a record without a key"),
            ));
        }
        let p = match (path_partition, r.partition) {
            (Some(path), Some(rec)) if path != rec => {
                return Err(ApiError::bad_request(format!(
                    "record {i} names partition {rec} but the path names partition {path}"
                )))
            }
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => match &r.key {
                Some(k) => partitioner::partition_for_key(k, count),
                None => sticky,
            },
        };
        if p >= count {
            return Err(ApiError::new(
                ErrorCode::UnknownPartition,
                format!("topic `{topic}` has {count} partition(s); there is no partition {p}"),
            ));
        }
        targets.push(p);
    }
    Ok(targets)
}

/// One partition's batch and the request indexes of its records.
struct PartitionBatch {
    partition: u32,
    batch: Bytes,
    records: Vec<usize>,
}

/// The records as one batch per partition (stamped `now` where they have no
/// timestamp), each carrying `ext` when the request is idempotent or sequenced.
fn batches(
    records: &[InRecord],
    targets: &[u32],
    now: i64,
    ext: Option<&ProducerExt>,
) -> ApiResult<Vec<PartitionBatch>> {
    let mut by_partition: BTreeMap<u32, (BatchBuilder, Vec<usize>)> = BTreeMap::new();
    for (i, (r, p)) in records.iter().zip(targets).enumerate() {
        let (builder, idx) = match by_partition.entry(*p) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let builder = match ext {
                    Some(ext) => BatchBuilder::with_ext(body_hint(records), ext)
                        .map_err(|e| ApiError::bad_request(format!("producer headers: {e}")))?,
                    None => BatchBuilder::with_capacity(body_hint(records)),
                };
                e.insert((builder, Vec::new()))
            }
        };
        builder
            .push_parts(
                r.timestamp.unwrap_or(now),
                r.key.as_deref(),
                r.value.as_deref(),
                r.headers.iter().map(|h| (h.name.as_str(), &h.value[..])),
            )
            .map_err(|e| ApiError::bad_request(format!("record {i}: {e}")))?;
        idx.push(i);
    }
    by_partition
        .into_iter()
        .map(|(partition, (builder, records))| {
            let batch = builder.finish().map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(PartitionBatch { partition, batch, records })
        })
        .collect()
}

/// Capacity hint for one partition's batch buffer.
fn body_hint(records: &[InRecord]) -> usize {
    records.iter().map(|r| r.encoded_len() + fjord_protocol::codec::RECORD_OVERHEAD).sum::<usize>().min(8 << 20)
}

/// What one partition's leader answered.
struct Dispatched {
    partition: u32,
    records: Vec<usize>,
    result: ApiResult<fjord_protocol::ProduceResponse>,
}

/// Step 3: each batch to its partition's leader, concurrently, retrying leader moves
/// until the deadline.
async fn dispatch(
    state: &AppState,
    topic: &str,
    batches: Vec<PartitionBatch>,
    acks: Acks,
    timeout: Duration,
    expected_offset: Option<u64>,
    idempotent: bool,
) -> Vec<Dispatched> {
    let deadline = Instant::now() + timeout;
    // A retry of an idempotent batch is answered as a replay if the first try was
    // written, so the gateway itself retries what leaves that unknown.
    let also: &[ErrorCode] =
        if idempotent { &[ErrorCode::NodeDisconnected, ErrorCode::LeaderChangedAfterAppend] } else { &[] };
    let calls = batches.into_iter().map(|b| {
        let tp = TopicPartition::new(topic, b.partition);
        async move {
            let result = state
                .call_leader_retrying(&tp, deadline, also, |node| {
                    let req = ProduceRequest { tp: tp.clone(), batch: b.batch.clone(), acks, timeout, expected_offset };
                    async move { node.produce(req).await }
                })
                .await;
            Dispatched { partition: b.partition, records: b.records, result }
        }
    });
    futures::future::join_all(calls).await
}

/// `acks=0` back-pressure: room for the request's batches in the gateway's budget of
/// unanswered bytes, waited for up to the request's timeout; `429 throttled` (nothing
/// written) if none comes. A request larger than the whole budget needs all of it.
async fn unacknowledged_room(
    state: &AppState,
    batches: &[PartitionBatch],
    timeout: Duration,
) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    let bytes = batches.iter().map(|b| b.batch.len()).sum::<usize>().clamp(1, state.config.max_unacknowledged_bytes);
    let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
    match tokio::time::timeout(timeout, state.unacknowledged.clone().acquire_many_owned(bytes)).await {
        Ok(Ok(permit)) => Ok(permit),
        // Timed out, or the semaphore was closed (never done): either way nothing is sent.
        _ => Err(ApiError::new(
            ErrorCode::Throttled,
            format!(
                "this gateway already holds {} bytes of acks=0 records not yet written \
                 (max_unacknowledged_bytes); nothing was written: retry later or use acks=1",
                state.config.max_unacknowledged_bytes
            ),
        )),
    }
}

/// `acks=0`: the batches go out after the answer, holding `room` until every partition
/// has answered; failures are only logged.
fn dispatch_unacknowledged(
    state: &AppState,
    topic: &str,
    batches: Vec<PartitionBatch>,
    timeout: Duration,
    idempotent: bool,
    room: tokio::sync::OwnedSemaphorePermit,
) {
    let (state, topic) = (state.clone(), topic.to_owned());
    tokio::spawn(async move {
        for d in dispatch(&state, &topic, batches, Acks::None, timeout, None, idempotent).await {
            if let Err(e) = d.result {
                tracing::warn!(partition = d.partition, error = %e.0, "acks=0 produce failed after the answer was sent");
            }
        }
        drop(room);
    });
}

/// Step 4: each record's partition and offset (or its partition's error) in request
/// order: 200 when all were written, 207 when some were, the error itself when none. A
/// replayed partition answers its original offsets and default timestamp; the
/// `Idempotent-Replayed` header says whether all (`true`) or some (`partial`) were.
fn assemble(records: &[InRecord], results: Vec<Dispatched>, now: i64) -> ApiResult<Response> {
    let mut offsets: Vec<Option<ProducedOffset>> = (0..records.len()).map(|_| None).collect();
    let mut first_error: Option<FjordError> = None;
    let mut failed = 0usize;
    let (mut replayed, mut answered) = (0usize, 0usize);
    for d in results {
        match d.result {
            Ok(resp) => {
                answered += 1;
                let default_ts = match resp.replay {
                    Some(r) => {
                        replayed += 1;
                        r.default_timestamp
                    }
                    None => now,
                };
                for (n, i) in d.records.into_iter().enumerate() {
                    offsets[i] = Some(ProducedOffset {
                        partition: d.partition,
                        offset: Some(resp.base_offset + n as u64),
                        timestamp: Some(records[i].timestamp.unwrap_or(default_ts)),
                        error: None,
                    });
                }
            }
            Err(e) => {
                failed += d.records.len();
                let detail = ErrorBody::from_error(&e.0).error;
                for i in d.records {
                    offsets[i] = Some(ProducedOffset {
                        partition: d.partition,
                        offset: None,
                        timestamp: None,
                        error: Some(detail.clone()),
                    });
                }
                first_error.get_or_insert(e.0);
            }
        }
    }
    if failed == records.len() {
        if let Some(e) = first_error {
            return Err(e.into());
        }
    }
    let status = if failed > 0 { StatusCode::MULTI_STATUS } else { StatusCode::OK };
    let mut response =
        (status, Json(ProduceResponse { offsets: offsets.into_iter().flatten().collect() })).into_response();
    if replayed > 0 {
        let value = if replayed == answered && failed == 0 { "true" } else { "partial" };
        response.headers_mut().insert(exactly_once::IDEMPOTENT_REPLAYED, HeaderValue::from_static(value));
    }
    Ok(response)
}
