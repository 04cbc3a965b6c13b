//! Produce and consume.

use crate::body::{self, ConsumeResponse, Format, InRecord};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::state::{unknown_partition, AppState};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use fjord_coordinator::{NewTopic, TopicConfig, TopicMetadata};
use fjord_protocol::{
    partitioner, Acks, Batch, BatchBuilder, ErrorCode, FetchRequest, FjordError, OffsetSpec, ProduceRequest,
    TopicPartition,
};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(produce_to_topic))
        .routes(routes!(produce_to_partition, consume))
        .routes(routes!(partition_offsets))
}

const DEFAULT_PRODUCE_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_MAX_RECORDS: u32 = 500;
const MAX_MAX_RECORDS: u32 = 100_000;
const DEFAULT_MAX_BYTES: u64 = 1 << 20;
const MAX_MAX_BYTES: u64 = 64 << 20;

/// A read's `max_records` and `max_bytes`, defaulted and checked.
pub(crate) fn read_limits(max_records: Option<u32>, max_bytes: Option<u64>) -> ApiResult<(u32, u64)> {
    let max_records = max_records.unwrap_or(DEFAULT_MAX_RECORDS);
    if max_records == 0 || max_records > MAX_MAX_RECORDS {
        return Err(ApiError::bad_request(format!("max_records must be between 1 and {MAX_MAX_RECORDS}")));
    }
    let max_bytes = max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    if max_bytes == 0 || max_bytes > MAX_MAX_BYTES {
        return Err(ApiError::bad_request(format!("max_bytes must be between 1 and {MAX_MAX_BYTES}")));
    }
    Ok((max_records, max_bytes))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProduceParams {
    /// `0` (answer once accepted), `1` (after the leader's append, the default) or
    /// `all` (after every in-sync replica has it; `-1` is a synonym).
    #[param(example = "all")]
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
    timestamp: Option<i64>,
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

fn parse_acks(s: Option<&str>) -> ApiResult<Acks> {
    match s {
        None => Ok(Acks::Leader),
        Some(s) => Acks::parse(s).ok_or_else(|| ApiError::bad_request(format!("acks must be 0, 1 or all, got `{s}`"))),
    }
}

/// A request's `timeout_ms`, at most the gateway's `max_timeout_ms`; when it is not
/// given, `default` capped at that maximum.
pub(crate) fn timeout(state: &AppState, ms: Option<u64>, default: u64) -> ApiResult<Duration> {
    let Some(ms) = ms else { return Ok(Duration::from_millis(default.min(state.config.max_timeout_ms))) };
    if ms > state.config.max_timeout_ms {
        return Err(ApiError::bad_request(format!(
            "timeout_ms must be at most {}, got {ms}",
            state.config.max_timeout_ms
        )));
    }
    Ok(Duration::from_millis(ms))
}

pub(crate) fn path_error(r: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {}", r.body_text()))
}

pub(crate) fn query_error(r: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("bad query string: {}", r.body_text()))
}

/// The `timestamp` query parameter (octet and binary bodies).
fn query_timestamp(ts: Option<i64>) -> ApiResult<Option<i64>> {
    match ts {
        Some(ts) if ts < 0 => {
            Err(ApiError::bad_request(format!("timestamp must be milliseconds since the epoch, got {ts}")))
        }
        ts => Ok(ts),
    }
}

/// The media type of the body, lower-cased, without parameters. A missing header means JSON.
fn media_type(headers: &HeaderMap) -> ApiResult<String> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok("application/json".to_owned()),
        Some(v) => {
            let s = v.to_str().map_err(|_| ApiError::bad_request("Content-Type is not valid text"))?;
            Ok(s.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        }
    }
}

/// Produce to a topic: records go to their explicit partition, their key's partition
/// (Kafka's murmur2), or — unkeyed — one partition per request, round robin.
#[utoipa::path(
    post,
    path = "/v1/topics/{topic}/records",
    tag = "records",
    params(("topic" = String, Path, description = "Topic name"), ProduceParams),
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
        (status = 200, description = "Every record was written", body = ProduceResponse),
        (status = 207, description = "Some partitions failed; see each record's `error`", body = ProduceResponse),
        (status = 400, description = "Malformed body or parameters, or a record without a key on a compacted topic; nothing written", body = ErrorBody),
        (status = 404, description = "Unknown topic (auto-create off) or partition", body = ErrorBody),
        (status = 413, description = "A record or the body is too large; nothing written", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = 503, description = "Retriable: no leader, not enough in-sync replicas", body = ErrorBody),
        (status = 504, description = "Retriable: not replicated within timeout_ms", body = ErrorBody),
    )
)]
pub async fn produce_to_topic(
    State(state): State<AppState>,
    topic: Result<Path<String>, PathRejection>,
    query: Result<Query<ProduceParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Path(topic) = topic.map_err(path_error)?;
    let Query(q) = query.map_err(query_error)?;
    produce(state, topic, None, q, headers, body?).await
}

/// Produce to one partition.
#[utoipa::path(
    post,
    path = "/v1/topics/{topic}/partitions/{partition}/records",
    tag = "records",
    params(
        ("topic" = String, Path, description = "Topic name"),
        ("partition" = u32, Path, description = "Partition number"),
        ProduceParams,
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
        (status = 200, description = "Every record was written", body = ProduceResponse),
        (status = 400, description = "Malformed body or parameters, or a record without a key on a compacted topic; nothing written", body = ErrorBody),
        (status = 404, description = "Unknown topic or partition", body = ErrorBody),
        (status = 413, description = "A record or the body is too large; nothing written", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = 503, description = "Retriable: no leader, not enough in-sync replicas", body = ErrorBody),
    )
)]
pub async fn produce_to_partition(
    State(state): State<AppState>,
    path: Result<Path<(String, u32)>, PathRejection>,
    query: Result<Query<ProduceParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Path((topic, partition)) = path.map_err(path_error)?;
    let Query(q) = query.map_err(query_error)?;
    produce(state, topic, Some(partition), q, headers, body?).await
}

/// The topic to produce to: `Ok(Some)` when it exists, `Ok(None)` when it does not but
/// will be auto-created (after the request is validated), else `unknown_topic`.
fn existing_topic_for_produce(state: &AppState, name: &str) -> ApiResult<Option<TopicMetadata>> {
    match state.topic(name) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.code() == ErrorCode::UnknownTopic && state.config.auto_create_topics => Ok(None),
        Err(e) => Err(e),
    }
}

/// Auto-creates `name` with the gateway's defaults (or returns it if another request
/// created it first).
async fn auto_create_topic(state: &AppState, name: &str) -> ApiResult<TopicMetadata> {
    let spec = NewTopic {
        name: name.to_owned(),
        partitions: state.config.default_partitions,
        replication_factor: state.config.default_replication_factor,
        config: TopicConfig::default(),
    };
    match state.coordinator.create_topic(spec).await {
        Ok(t) => {
            tracing::info!(topic = name, "auto-created topic on first produce");
            Ok(t)
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

async fn produce(
    state: AppState,
    topic: String,
    path_partition: Option<u32>,
    q: ProduceParams,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let acks = parse_acks(q.acks.as_deref())?;
    let timeout = timeout(&state, q.timeout_ms, DEFAULT_PRODUCE_TIMEOUT_MS)?;
    let media = media_type(&headers)?;
    let records = match media.as_str() {
        "application/json" => body::parse_json(&body)?,
        "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => body::parse_ndjson(&body)?,
        "application/octet-stream" => vec![InRecord {
            key: q.key.map(Bytes::from),
            value: Some(body),
            headers: Vec::new(),
            partition: q.partition,
            timestamp: query_timestamp(q.timestamp)?,
        }],
        body::BINARY_RECORDS => body::parse_binary(&body, q.partition, query_timestamp(q.timestamp)?)?,
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "Content-Type `{other}` is not supported; use application/json, application/x-ndjson, \
                     application/octet-stream or {}",
                    body::BINARY_RECORDS
                ),
            ))
        }
    };
    if records.is_empty() {
        return Err(ApiError::bad_request("the request has no records"));
    }
    fjord_coordinator::validate_topic_name(&topic)?;
    crate::http::topics::refuse_internal(&topic)?;

    // Validate everything before writing anything — and before auto-creating the topic,
    // so that a rejected request leaves no topic behind.
    let round = state.round_robin.fetch_add(1, Ordering::Relaxed);
    let sticky_for = |count: u32| (round % u64::from(count.max(1))) as u32;
    let targets = match existing_topic_for_produce(&state, &topic)? {
        Some(meta) => {
            let count = meta.partitions.len() as u32;
            route_records(&topic, &records, path_partition, count, &meta.config, sticky_for(count))?
        }
        None => {
            // Check against the topic as it would be created, then against what was
            // actually created (another request may have created it differently).
            let count = state.config.default_partitions;
            route_records(&topic, &records, path_partition, count, &TopicConfig::default(), sticky_for(count))?;
            let meta = auto_create_topic(&state, &topic).await?;
            let count = meta.partitions.len() as u32;
            route_records(&topic, &records, path_partition, count, &meta.config, sticky_for(count))?
        }
    };

    let now = fjord_protocol::now_ms();
    let mut groups: BTreeMap<u32, (BatchBuilder, Vec<usize>)> = BTreeMap::new();
    for (i, (r, p)) in records.iter().zip(&targets).enumerate() {
        let (builder, idx) =
            groups.entry(*p).or_insert_with(|| (BatchBuilder::with_capacity(body_hint(&records)), Vec::new()));
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

    let deadline = Instant::now() + timeout;
    let mut calls = Vec::with_capacity(groups.len());
    for (p, (builder, idx)) in groups {
        let batch = builder.finish().map_err(|e| ApiError::bad_request(e.to_string()))?;
        let tp = TopicPartition::new(&topic, p);
        let state = state.clone();
        let call = async move {
            let result = state
                .call_leader(&tp, deadline, |node| {
                    let req = ProduceRequest { tp: tp.clone(), batch: batch.clone(), acks, timeout };
                    async move { node.produce(req).await }
                })
                .await;
            (p, idx, result)
        };
        calls.push(call);
    }

    let mut offsets: Vec<Option<ProducedOffset>> = (0..records.len()).map(|_| None).collect();
    if acks == Acks::None {
        for call in calls {
            tokio::spawn(async move {
                let (p, _, result) = call.await;
                if let Err(e) = result {
                    tracing::warn!(partition = p, error = %e.0, "acks=0 produce failed after the answer was sent");
                }
            });
        }
        for (i, p) in targets.iter().enumerate() {
            offsets[i] = Some(ProducedOffset { partition: *p, offset: None, timestamp: None, error: None });
        }
        return Ok(Json(ProduceResponse { offsets: offsets.into_iter().flatten().collect() }).into_response());
    }

    let results = futures::future::join_all(calls).await;
    let mut first_error: Option<FjordError> = None;
    let mut failed = 0usize;
    for (p, idx, result) in results {
        match result {
            Ok(resp) => {
                for (n, i) in idx.into_iter().enumerate() {
                    offsets[i] = Some(ProducedOffset {
                        partition: p,
                        offset: Some(resp.base_offset + n as u64),
                        timestamp: Some(records[i].timestamp.unwrap_or(now)),
                        error: None,
                    });
                }
            }
            Err(e) => {
                failed += idx.len();
                let detail = ErrorBody::from_error(&e.0).error;
                for i in idx {
                    offsets[i] = Some(ProducedOffset {
                        partition: p,
                        offset: None,
                        timestamp: None,
                        error: Some(ErrorDetail {
                            code: detail.code.clone(),
                            message: detail.message.clone(),
                            retriable: detail.retriable,
                        }),
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
    Ok((status, Json(ProduceResponse { offsets: offsets.into_iter().flatten().collect() })).into_response())
}

/// Capacity hint for one partition's batch buffer.
fn body_hint(records: &[InRecord]) -> usize {
    records.iter().map(|r| r.encoded_len() + fjord_protocol::codec::RECORD_OVERHEAD).sum::<usize>().min(8 << 20)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsumeParams {
    /// Where to start: an offset, `earliest` (the default) or `latest` (only new records).
    #[param(example = "earliest")]
    offset: Option<String>,
    /// Start at the first record whose timestamp is at or after this time (ms); not with `offset`.
    timestamp: Option<i64>,
    /// Most records to return (default 500).
    max_records: Option<u32>,
    /// Soft limit on the bytes read (default 1 MiB; at least one record is returned).
    max_bytes: Option<u64>,
    /// Long poll: wait up to this long (ms) for a record when none is there (default 0).
    timeout_ms: Option<u64>,
    /// How keys and values are shown (default `json`).
    #[param(inline)]
    format: Option<Format>,
    /// With `Accept: text/event-stream`: how often (ms) a heartbeat comment is sent while
    /// no record arrives (default 15000).
    heartbeat_ms: Option<u64>,
}

/// Read records from a partition, starting at an offset, `earliest`, `latest` or a
/// timestamp. Answers at once when records are there; otherwise waits up to `timeout_ms`
/// and answers as soon as one arrives. Only committed records (below the high
/// watermark) are returned.
///
/// With `Accept: text/event-stream` the answer is a Server-Sent Events stream of the
/// partition from that offset on: `event: record` with `id: partition:offset` and the
/// record as JSON data, heartbeat comments while idle. A client that reconnects with
/// `Last-Event-ID` resumes after that record, without gaps or repeats.
#[utoipa::path(
    get,
    path = "/v1/topics/{topic}/partitions/{partition}/records",
    tag = "records",
    params(
        ("topic" = String, Path, description = "Topic name"),
        ("partition" = u32, Path, description = "Partition number"),
        ConsumeParams,
    ),
    responses(
        (status = 200, description = "Records (possibly none) and the next offset to ask for; with \
            `Accept: text/event-stream`, a stream of `record` events", content(
            (ConsumeResponse = "application/json"),
            (String = "text/event-stream", example = json!("event: record\nid: 0:41\ndata: {\"topic\":\"orders\",\"partition\":0,\"offset\":41,\"timestamp\":1700000000000,\"key\":\"user-42\",\"value\":{\"action\":\"login\"},\"headers\":[]}\n\n:heartbeat\n\n")),
        )),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 404, description = "Unknown topic or partition", body = ErrorBody),
        (status = 416, description = "Offset below the log start or beyond the log end", body = ErrorBody),
        (status = 503, description = "Retriable: the partition has no leader", body = ErrorBody),
    )
)]
pub async fn consume(
    State(state): State<AppState>,
    path: Result<Path<(String, u32)>, PathRejection>,
    query: Result<Query<ConsumeParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Path((topic, partition)) = path.map_err(path_error)?;
    let Query(q) = query.map_err(query_error)?;
    let wait = timeout(&state, q.timeout_ms, 0)?;
    let (max_records, max_bytes) = read_limits(q.max_records, q.max_bytes)?;
    let stream = wants_event_stream(&headers);
    let resume = if stream { last_event_offset(&headers, partition)? } else { None };
    let start = match (q.offset.as_deref(), q.timestamp) {
        _ if resume.is_some() => Start::At(resume.unwrap_or_default()),
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give `offset` or `timestamp`, not both")),
        (None, Some(ts)) if ts < 0 => {
            return Err(ApiError::bad_request(format!("timestamp must be milliseconds since the epoch, got {ts}")))
        }
        (None, Some(ts)) => Start::Spec(OffsetSpec::Timestamp(ts)),
        (None | Some("earliest"), None) => Start::Spec(OffsetSpec::Earliest),
        (Some("latest"), None) => Start::Spec(OffsetSpec::Latest),
        (Some(s), None) => Start::At(s.parse::<u64>().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidOffset,
                format!("offset must be a non-negative integer, `earliest` or `latest`, got `{s}`"),
            )
        })?),
    };
    let heartbeat = match q.heartbeat_ms {
        None => DEFAULT_HEARTBEAT,
        Some(ms) if (100..=60_000).contains(&ms) => Duration::from_millis(ms),
        Some(ms) => return Err(ApiError::bad_request(format!("heartbeat_ms must be between 100 and 60000, got {ms}"))),
    };
    let meta = state.topic(&topic)?;
    if partition as usize >= meta.partitions.len() {
        return Err(unknown_partition(&meta, partition));
    }
    let tp = TopicPartition::new(&topic, partition);
    let route_deadline = Instant::now() + wait.max(Duration::from_secs(5));

    let offset = match start {
        Start::At(o) => o,
        Start::Spec(spec) => {
            state
                .call_leader(&tp, route_deadline, |node| {
                    let tp = tp.clone();
                    async move { node.list_offset(tp, spec).await }
                })
                .await?
                .offset
        }
    };
    let format = q.format.unwrap_or_default();
    if stream {
        let opts = StreamOptions { max_bytes: max_bytes as usize, format, heartbeat };
        return Ok(partition_stream(state, tp, offset, opts).await?.into_response());
    }
    let fetched = fetch_from(&state, &tp, offset, max_bytes as usize, wait).await?;

    let topic_json = serde_json::to_vec(&topic).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let mut out = Vec::with_capacity(fetched.batches.iter().map(Bytes::len).sum::<usize>() * 4 / 3 + 64);
    out.extend_from_slice(b"{\"records\":[");
    let mut n = 0u32;
    let (_, next) = render_batches(&fetched.batches, offset, fetched.high_watermark, |r| {
        if n >= max_records {
            return None;
        }
        if n > 0 {
            out.push(b',');
        }
        body::render_record(&mut out, &topic_json, partition, r, format);
        n += 1;
        Some(())
    })?;
    out.extend_from_slice(
        format!("],\"next_offset\":{next},\"high_watermark\":{}}}", fetched.high_watermark).as_bytes(),
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// One fetch from `tp`'s leader at `offset`, long-polling up to `wait`.
async fn fetch_from(
    state: &AppState,
    tp: &TopicPartition,
    offset: u64,
    max_bytes: usize,
    wait: Duration,
) -> ApiResult<fjord_protocol::FetchResponse> {
    let poll_deadline = Instant::now() + wait;
    let route_deadline = Instant::now() + wait.max(Duration::from_secs(5));
    state
        .call_leader(tp, route_deadline, |node| {
            let req = FetchRequest {
                tp: tp.clone(),
                offset,
                max_bytes,
                max_wait: poll_deadline.saturating_duration_since(Instant::now()),
            };
            async move { node.fetch(req).await }
        })
        .await
}

/// Calls `f` on each fetched record in `[from, high_watermark)`, in order, until it
/// returns `None`. Returns how many records `f` took and the offset after the last one
/// — `from` if none, or the high watermark when the fetch found no record at all in
/// `[from, high_watermark)` (compaction removed them: a fetch returns the batch of the
/// first record at or after `from` when there is one below the HW; see `FetchResponse`).
pub(crate) fn render_batches(
    batches: &[Bytes],
    from: u64,
    high_watermark: u64,
    mut f: impl FnMut(&fjord_protocol::RecordView) -> Option<()>,
) -> ApiResult<(u32, u64)> {
    let mut next = from;
    let mut n = 0u32;
    let mut seen = false;
    for bytes in batches {
        let batch = Batch::parse(bytes.clone()).map_err(|e| ApiError::new(ErrorCode::CorruptBatch, e.to_string()))?;
        for r in batch.records() {
            if r.offset < from {
                continue;
            }
            if r.offset >= high_watermark {
                break;
            }
            seen = true;
            if f(&r).is_none() {
                return Ok((n, next));
            }
            next = r.offset + 1;
            n += 1;
        }
    }
    if !seen && from < high_watermark {
        next = high_watermark;
    }
    Ok((n, next))
}

/// Whether the client asked for a Server-Sent Events stream.
pub(crate) fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream")))
}

/// The offset after the one in `Last-Event-ID: partition:offset`, to resume a stream.
fn last_event_offset(headers: &HeaderMap, partition: u32) -> ApiResult<Option<u64>> {
    let Some(v) = headers.get("last-event-id") else { return Ok(None) };
    let bad = || ApiError::bad_request("Last-Event-ID must be `partition:offset`, as sent in the stream's event ids");
    let s = v.to_str().map_err(|_| bad())?;
    let (p, o) = s.trim().split_once(':').ok_or_else(bad)?;
    let (p, o) = (p.parse::<u32>().map_err(|_| bad())?, o.parse::<u64>().map_err(|_| bad())?);
    if p != partition {
        return Err(ApiError::bad_request(format!(
            "Last-Event-ID names partition {p} but this stream reads partition {partition}"
        )));
    }
    Ok(Some(o.saturating_add(1)))
}

/// An error as the last event of a stream.
pub(crate) fn sse_error_event(e: &FjordError) -> Event {
    let body = serde_json::to_string(&ErrorBody::from_error(e)).unwrap_or_default();
    Event::default().event("error").data(body)
}

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

struct StreamOptions {
    max_bytes: usize,
    format: Format,
    heartbeat: Duration,
}

/// A partition's records from `offset` on as Server-Sent Events: `event: record`,
/// `id: partition:offset`, the record JSON as data; comments as heartbeats.
async fn partition_stream(
    state: AppState,
    tp: TopicPartition,
    offset: u64,
    opts: StreamOptions,
) -> ApiResult<Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>>> {
    // The first read happens before the stream starts, so that a bad offset is a plain 416.
    let first = fetch_from(&state, &tp, offset, opts.max_bytes, Duration::ZERO).await?;
    let topic_json = serde_json::to_vec(&tp.topic).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let (mut tx, rx) = futures::channel::mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        let mut next = offset;
        let mut fetched: ApiResult<fjord_protocol::FetchResponse> = Ok(first);
        loop {
            let r = match fetched {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(sse_error_event(&e.0)).await;
                    return;
                }
            };
            let mut events = Vec::new();
            let rendered = render_batches(&r.batches, next, r.high_watermark, |rec| {
                let mut out = Vec::new();
                body::render_record(&mut out, &topic_json, tp.partition, rec, opts.format);
                events.push(
                    Event::default()
                        .event("record")
                        .id(format!("{}:{}", tp.partition, rec.offset))
                        .data(String::from_utf8_lossy(&out)),
                );
                Some(())
            });
            match rendered {
                Ok((_, n)) => next = n,
                Err(e) => {
                    let _ = tx.send(sse_error_event(&e.0)).await;
                    return;
                }
            }
            for event in events {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            fetched = fetch_from(&state, &tp, next, opts.max_bytes, opts.heartbeat).await;
        }
    });
    Ok(Sse::new(rx.map(Ok)).keep_alive(KeepAlive::new().interval(opts.heartbeat).text("heartbeat")))
}

enum Start {
    At(u64),
    Spec(OffsetSpec),
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OffsetsParams {
    /// Also look up the earliest offset whose timestamp is at or after this time (ms).
    timestamp: Option<i64>,
}

/// A partition's offsets.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"partition": 0, "log_start_offset": 0, "high_watermark": 42, "log_end_offset": 42}))]
pub struct PartitionOffsets {
    pub partition: u32,
    /// The first offset still stored.
    pub log_start_offset: u64,
    /// One past the last committed offset: the next offset a consumer waits for.
    pub high_watermark: u64,
    /// The next offset to be written.
    pub log_end_offset: u64,
    /// With `?timestamp=`: the earliest offset whose timestamp is at or after it
    /// (the high watermark when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// With `?timestamp=`: the timestamp of the record at `offset`, if one was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

/// A partition's log start offset, high watermark and log end offset, and optionally
/// the offset for a timestamp.
#[utoipa::path(
    get,
    path = "/v1/topics/{topic}/partitions/{partition}/offsets",
    tag = "records",
    params(
        ("topic" = String, Path, description = "Topic name"),
        ("partition" = u32, Path, description = "Partition number"),
        OffsetsParams,
    ),
    responses(
        (status = 200, body = PartitionOffsets),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 404, description = "Unknown topic or partition", body = ErrorBody),
        (status = 503, description = "Retriable: the partition has no leader", body = ErrorBody),
    )
)]
pub async fn partition_offsets(
    State(state): State<AppState>,
    path: Result<Path<(String, u32)>, PathRejection>,
    query: Result<Query<OffsetsParams>, QueryRejection>,
) -> ApiResult<Json<PartitionOffsets>> {
    let Path((topic, partition)) = path.map_err(path_error)?;
    let Query(q) = query.map_err(query_error)?;
    if let Some(ts) = q.timestamp.filter(|ts| *ts < 0) {
        return Err(ApiError::bad_request(format!("timestamp must be milliseconds since the epoch, got {ts}")));
    }
    let meta = state.topic(&topic)?;
    if partition as usize >= meta.partitions.len() {
        return Err(unknown_partition(&meta, partition));
    }
    let tp = TopicPartition::new(&topic, partition);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = state
        .call_leader(&tp, deadline, |node| {
            let tp = tp.clone();
            async move { node.partition_status(tp).await }
        })
        .await?;
    let found = match q.timestamp {
        None => None,
        Some(ts) => Some(
            state
                .call_leader(&tp, deadline, |node| {
                    let tp = tp.clone();
                    async move { node.list_offset(tp, OffsetSpec::Timestamp(ts)).await }
                })
                .await?,
        ),
    };
    Ok(Json(PartitionOffsets {
        partition,
        log_start_offset: status.log_start_offset,
        high_watermark: status.high_watermark,
        log_end_offset: status.log_end_offset,
        offset: found.map(|f| f.offset),
        timestamp: found.and_then(|f| f.timestamp),
    }))
}
