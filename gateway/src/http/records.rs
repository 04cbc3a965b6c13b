//! Consume (long poll or Server-Sent Events) and partition offsets; the produce
//! handlers are in [`super::produce`] and share the partition route.

use super::produce::{__path_produce_to_partition, __path_produce_to_topic, produce_to_partition, produce_to_topic};
use crate::auth::Caller;
use crate::body::{self, ConsumeResponse, Format};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::params;
use crate::http::sse::{self, EventSource};
use crate::quota::Kind;
use crate::state::{unknown_partition, AppState};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use fjord_protocol::auth::{Operation, ResourceType};
use fjord_protocol::{Batch, ErrorCode, FetchRequest, OffsetSpec, TopicPartition};
use serde::{Deserialize, Serialize};
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
    format: Option<Format>,
    /// With `Accept: text/event-stream`: how often (ms) a heartbeat comment is sent while
    /// no record arrives (default 15000).
    #[param(minimum = 100, maximum = 60000)]
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
///
/// With `Accept: application/vnd.fjord.records` the answer is binary, for consumers that
/// do not need JSON: records back to back, each `offset` u64, `timestamp` i64, then the
/// layout of the binary produce body (`key_length` i32, -1 for none, key, `value_length`
/// i32, -1 for a tombstone, value, `header_count` u16, per header `name_length` u16,
/// name, `value_length` i32, value), big-endian; the next offset, the high watermark and
/// the record count come as headers. `format` does not apply.
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
            `Accept: text/event-stream`, a stream of `record` events; with \
            `Accept: application/vnd.fjord.records`, binary records (the layout above)", content(
            (ConsumeResponse = "application/json"),
            (body::BinaryConsumeBody = "application/vnd.fjord.records"),
            (String = "text/event-stream", example = json!("event: record\nid: 0:41\ndata: {\"topic\":\"orders\",\"partition\":0,\"offset\":41,\"timestamp\":1700000000000,\"key\":\"user-42\",\"value\":{\"action\":\"login\"},\"headers\":[]}\n\n:heartbeat\n\n")),
        ), headers(
            ("Next-Offset" = u64, description = "Binary answers: the offset to ask for next"),
            ("High-Watermark" = u64, description = "Binary answers: the partition's high watermark"),
            ("Record-Count" = u32, description = "Binary answers: how many records the body holds"),
        )),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 404, description = "Unknown topic or partition", body = ErrorBody),
        (status = 416, description = "Offset below the log start or beyond the log end", body = ErrorBody),
        (status = 503, description = "Retriable: the partition has no leader", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn consume(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((topic, partition)): ApiPath<(String, u32)>,
    ApiQuery(q): ApiQuery<ConsumeParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let wait = params::timeout(&state, q.timeout_ms, 0)?;
    let (max_records, max_bytes) = params::read_limits(q.max_records, q.max_bytes)?;
    let stream = sse::wants_event_stream(&headers);
    let resume = if stream { last_event_offset(&headers, partition)? } else { None };
    let start = match (q.offset.as_deref(), q.timestamp) {
        _ if resume.is_some() => Start::At(resume.unwrap_or_default()),
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give `offset` or `timestamp`, not both")),
        (None, Some(ts)) => Start::Spec(OffsetSpec::Timestamp(params::timestamp(ts)?)),
        (None | Some("earliest"), None) => Start::Spec(OffsetSpec::Earliest),
        (Some("latest"), None) => Start::Spec(OffsetSpec::Latest),
        (Some(s), None) => Start::At(s.parse::<u64>().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidOffset,
                format!("offset must be a non-negative integer, `earliest` or `latest`, got `{s}`"),
            )
        })?),
    };
    let heartbeat = params::heartbeat(q.heartbeat_ms)?;
    state.quotas.admit(caller.principal(), Kind::ConsumeBytes)?;
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
        return partition_stream(state, caller, tp, offset, opts).await;
    }
    let fetched = fetch_from(&state, &tp, offset, max_bytes as usize, wait).await?;
    if sse::accepts(&headers, body::BINARY_RECORDS) {
        return binary_answer(&state, &caller, &tp, offset, max_records, &fetched);
    }

    let topic_json = serde_json::to_vec(&topic).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let mut out = Vec::with_capacity(fetched.batches.iter().map(Bytes::len).sum::<usize>() * 4 / 3 + 64);
    out.extend_from_slice(b"{\"records\":[");
    let mut n = 0u32;
    let mut payload = 0usize;
    let (_, next) = render_batches(&fetched.batches, offset, fetched.high_watermark, |r| {
        if n >= max_records {
            return None;
        }
        if n > 0 {
            out.push(b',');
        }
        body::render_record(&mut out, &topic_json, partition, r, format);
        n += 1;
        payload += payload_len(r);
        Some(())
    })?;
    state.metrics.gateway.consumed(&topic, n as usize, payload);
    state.quotas.charge(caller.principal(), Kind::ConsumeBytes, payload as u64);
    out.extend_from_slice(
        format!("],\"next_offset\":{next},\"high_watermark\":{}}}", fetched.high_watermark).as_bytes(),
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// A consume answer in the binary layout ([`body::render_binary_record`], no JSON):
/// records back to back; the next offset, the high watermark and the record count in
/// the `Next-Offset`, `High-Watermark` and `Record-Count` headers.
fn binary_answer(
    state: &AppState,
    caller: &Caller,
    tp: &TopicPartition,
    offset: u64,
    max_records: u32,
    fetched: &fjord_protocol::FetchResponse,
) -> ApiResult<Response> {
    let mut out = Vec::with_capacity(fetched.batches.iter().map(Bytes::len).sum::<usize>() + 64);
    let mut payload = 0usize;
    let mut taken = 0u32;
    // A record the layout cannot hold ends the answer before it; alone, it is the error.
    let mut unfit = None;
    let (_, next) = render_batches(&fetched.batches, offset, fetched.high_watermark, |r| {
        if taken >= max_records {
            return None;
        }
        if let Err(e) = body::render_binary_record(&mut out, r) {
            unfit = Some(e);
            return None;
        }
        taken += 1;
        payload += payload_len(r);
        Some(())
    })?;
    if let (0, Some(e)) = (taken, unfit) {
        return Err(ApiError::bad_request(format!("{e}; read it with format=json")));
    }
    state.metrics.gateway.consumed(&tp.topic, taken as usize, payload);
    state.quotas.charge(caller.principal(), Kind::ConsumeBytes, payload as u64);
    Ok((
        [
            (header::CONTENT_TYPE, body::BINARY_RECORDS.to_owned()),
            (HeaderName::from_static("next-offset"), next.to_string()),
            (HeaderName::from_static("high-watermark"), fetched.high_watermark.to_string()),
            (HeaderName::from_static("record-count"), taken.to_string()),
        ],
        out,
    )
        .into_response())
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
/// A record's key and value bytes (what the consumed-bytes metric counts).
pub(crate) fn payload_len(r: &fjord_protocol::RecordView) -> usize {
    r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len)
}

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

struct StreamOptions {
    max_bytes: usize,
    format: Format,
    heartbeat: Duration,
}

/// A partition's records from an offset on, as Server-Sent Events: `event: record`,
/// `id: partition:offset`, the record JSON as data; each step long-polls for up to one
/// heartbeat interval.
struct PartitionSource {
    state: AppState,
    /// Checked before each read: a revoked or expired token, or a consume right taken
    /// away, ends the stream.
    caller: Caller,
    tp: TopicPartition,
    topic_json: Vec<u8>,
    next: u64,
    opts: StreamOptions,
}

impl PartitionSource {
    fn render(&mut self, r: fjord_protocol::FetchResponse) -> ApiResult<Vec<Event>> {
        let mut events = Vec::new();
        let (topic_json, partition, format) = (&self.topic_json, self.tp.partition, self.opts.format);
        let mut payload = 0usize;
        let (_, next) = render_batches(&r.batches, self.next, r.high_watermark, |rec| {
            let mut out = Vec::new();
            body::render_record(&mut out, topic_json, partition, rec, format);
            payload += payload_len(rec);
            events.push(
                Event::default()
                    .event("record")
                    .id(format!("{partition}:{}", rec.offset))
                    .data(String::from_utf8_lossy(&out)),
            );
            Some(())
        })?;
        self.next = next;
        self.state.metrics.gateway.consumed(&self.tp.topic, events.len(), payload);
        self.state.quotas.charge(self.caller.principal(), Kind::ConsumeBytes, payload as u64);
        Ok(events)
    }
}

impl EventSource for PartitionSource {
    async fn next_events(&mut self) -> ApiResult<Vec<Event>> {
        let meta = self.state.metadata();
        self.caller.still_valid(&meta)?;
        self.caller.require(&meta, ResourceType::Topic, &self.tp.topic, Operation::Consume)?;
        // Over the consume quota, a stream pauses rather than fails (Kafka's throttle).
        if let Some(wait) = self.state.quotas.debt(self.caller.principal(), Kind::ConsumeBytes) {
            tokio::time::sleep(wait).await;
        }
        let r = fetch_from(&self.state, &self.tp, self.next, self.opts.max_bytes, self.opts.heartbeat).await?;
        self.render(r)
    }
}

/// The stream of `tp` from `offset`. The first read happens before the stream
/// starts, so that a bad offset is a plain 416.
async fn partition_stream(
    state: AppState,
    caller: Caller,
    tp: TopicPartition,
    offset: u64,
    opts: StreamOptions,
) -> ApiResult<Response> {
    let first = fetch_from(&state, &tp, offset, opts.max_bytes, Duration::ZERO).await?;
    let topic_json = serde_json::to_vec(&tp.topic).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let heartbeat = opts.heartbeat;
    let mut source = PartitionSource { state, caller, tp, topic_json, next: offset, opts };
    let first = source.render(first);
    let open = source.state.metrics.gateway.streams_open.clone();
    Ok(sse::stream(source, first, heartbeat, open).into_response())
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
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn partition_offsets(
    State(state): State<AppState>,
    ApiPath((topic, partition)): ApiPath<(String, u32)>,
    ApiQuery(q): ApiQuery<OffsetsParams>,
) -> ApiResult<Json<PartitionOffsets>> {
    q.timestamp.map(params::timestamp).transpose()?;
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
