//! [`NodeClient`]: one storage node's internal API over HTTP, for gateways (the
//! [`NodeApi`]) and for followers (replica fetch, epoch look-up).
//!
//! Transport failures map to codes that say what a caller may do: a connection that
//! could not be made is `leader_not_available` (nothing was sent: refresh the metadata
//! and retry), a call that ran out of time is `request_timeout`, and anything else after
//! the request was sent is `internal` (the outcome is unknown).

use crate::contract::{
    EpochEndOffset, EpochQuery, FetchQuery, ListOffsetQuery, Method, PartitionQuery, ProduceQuery, ReplicaFetchAnswer,
    ReplicaFetchRequest, Route, HEADER_HIGH_WATERMARK, HEADER_LOG_END_OFFSET, HEADER_LOG_START_OFFSET,
};
use crate::secret::ClusterSecret;
use async_trait::async_trait;
use bytes::Bytes;
use fjord_protocol::codec::decode_frames;
use fjord_protocol::group::{GroupRequest, GroupResponse};
use fjord_protocol::{
    ErrorCode, FetchRequest, FetchResponse, FjordError, ListOffsetResponse, NodeApi, OffsetSpec, PartitionStatus,
    ProduceRequest, ProduceResponse, Result, TopicPartition,
};
use std::time::Duration;

/// Time allowed for a call beyond the wait it asks the node for.
const PRODUCE_SLACK: Duration = Duration::from_secs(5);
const FETCH_SLACK: Duration = Duration::from_secs(10);
/// Calls that do not wait on the node: offsets, status.
const QUICK_CALL: Duration = Duration::from_secs(10);
/// Group writes wait for replication (up to 10 s on the node).
const GROUP_CALL: Duration = Duration::from_secs(20);
const EPOCH_CALL: Duration = Duration::from_secs(5);

/// One storage node's internal API.
#[derive(Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    base: String,
}

/// An HTTP client for internal calls: short connect timeout, pooled keep-alive, and the
/// cluster credential on every call when the cluster has one.
pub fn http_client(secret: Option<&ClusterSecret>) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(s) = secret {
        headers.insert(reqwest::header::AUTHORIZATION, s.header_value());
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| FjordError::new(ErrorCode::Internal, format!("HTTP client: {e}")))
}

fn transport(e: &reqwest::Error) -> FjordError {
    if e.is_connect() {
        FjordError::new(ErrorCode::LeaderNotAvailable, format!("storage node unreachable: {e}"))
    } else if e.is_timeout() {
        FjordError::new(ErrorCode::RequestTimeout, format!("storage node did not answer in time: {e}"))
    } else {
        // Sent (or being sent) on a connection that broke: the node may have acted.
        FjordError::new(ErrorCode::NodeDisconnected, format!("the storage node's connection broke mid-call: {e}"))
    }
}

/// The answer if it is a success, else the node's [`FjordError`].
async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        // A cluster misconfigured, not the caller's credential: never a public 401.
        return Err(FjordError::new(
            ErrorCode::Internal,
            "a storage node refused this process's cluster credential (cluster.secret_file differs or is missing)",
        ));
    }
    let body = resp.bytes().await.map_err(|e| transport(&e))?;
    Err(serde_json::from_slice::<FjordError>(&body).unwrap_or_else(|_| {
        FjordError::new(ErrorCode::Internal, format!("storage node answered {status} without an error body"))
    }))
}

fn header_u64(resp: &reqwest::Response, name: &str) -> Result<u64> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| FjordError::new(ErrorCode::Internal, format!("storage node answer lacks {name}")))
}

impl NodeClient {
    /// The node whose internal API listens at `endpoint` (`host:port`).
    pub fn new(http: reqwest::Client, endpoint: &str) -> Self {
        Self { http, base: format!("http://{endpoint}") }
    }

    fn request(&self, route: Route, timeout: Duration) -> reqwest::RequestBuilder {
        let url = format!("{}{}", self.base, route.path());
        let builder = match route.method() {
            Method::Get => self.http.get(url),
            Method::Post => self.http.post(url),
        };
        builder.timeout(timeout)
    }

    async fn send(builder: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        check(builder.send().await.map_err(|e| transport(&e))?).await
    }

    async fn json<T: serde::de::DeserializeOwned>(builder: reqwest::RequestBuilder) -> Result<T> {
        Self::send(builder).await?.json().await.map_err(|e| transport(&e))
    }

    /// A follower's fetch of every partition it follows on this node.
    pub async fn replica_fetch(&self, req: &ReplicaFetchRequest, timeout: Duration) -> Result<ReplicaFetchAnswer> {
        let resp = Self::send(self.request(Route::ReplicaFetch, timeout).json(req)).await?;
        ReplicaFetchAnswer::decode(resp.bytes().await.map_err(|e| transport(&e))?)
    }

    /// KIP-279: where `epoch` ends on this leader's log of `tp`.
    pub async fn epoch_end(&self, tp: &TopicPartition, epoch: u32) -> Result<EpochEndOffset> {
        let q = EpochQuery { topic: tp.topic.clone(), partition: tp.partition, epoch };
        Self::json(self.request(Route::EpochEnd, EPOCH_CALL).query(&q)).await
    }
}

#[async_trait]
impl NodeApi for NodeClient {
    async fn produce(&self, req: ProduceRequest) -> Result<ProduceResponse> {
        let q = ProduceQuery {
            topic: req.tp.topic,
            partition: req.tp.partition,
            acks: req.acks.as_str().to_owned(),
            timeout_ms: req.timeout.as_millis() as u64,
            expected_offset: req.expected_offset,
        };
        Self::json(self.request(Route::Produce, req.timeout + PRODUCE_SLACK).query(&q).body(req.batch)).await
    }

    async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let q = FetchQuery {
            topic: req.tp.topic,
            partition: req.tp.partition,
            offset: req.offset,
            max_bytes: req.max_bytes,
            max_wait_ms: req.max_wait.as_millis() as u64,
        };
        let resp = Self::send(self.request(Route::Fetch, req.max_wait + FETCH_SLACK).query(&q)).await?;
        let high_watermark = header_u64(&resp, HEADER_HIGH_WATERMARK)?;
        let log_start_offset = header_u64(&resp, HEADER_LOG_START_OFFSET)?;
        let log_end_offset = header_u64(&resp, HEADER_LOG_END_OFFSET)?;
        let body: Bytes = resp.bytes().await.map_err(|e| transport(&e))?;
        let batches = decode_frames(body).map_err(|e| FjordError::new(ErrorCode::CorruptBatch, e.to_string()))?;
        Ok(FetchResponse { batches, high_watermark, log_start_offset, log_end_offset })
    }

    async fn list_offset(&self, tp: TopicPartition, spec: OffsetSpec) -> Result<ListOffsetResponse> {
        let q = ListOffsetQuery { topic: tp.topic, partition: tp.partition, spec: spec.to_query() };
        Self::json(self.request(Route::ListOffset, QUICK_CALL).query(&q)).await
    }

    async fn partition_status(&self, tp: TopicPartition) -> Result<PartitionStatus> {
        let q = PartitionQuery { topic: tp.topic, partition: tp.partition };
        Self::json(self.request(Route::Status, QUICK_CALL).query(&q)).await
    }

    async fn group(&self, req: GroupRequest) -> Result<GroupResponse> {
        Self::json(self.request(Route::Group, GROUP_CALL).json(&req)).await
    }
}
