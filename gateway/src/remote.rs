//! Reaching storage nodes over their internal HTTP API (a cluster's gateway).
//!
//! [`RemoteNodes`] is a [`NodeDirectory`] over the metadata's node endpoints; each
//! [`RemoteNode`] implements [`NodeApi`] with HTTP calls. A connection that cannot be
//! made is answered as `leader_not_available`, so the gateway refreshes its metadata
//! and retries within the request deadline; an error after the request was sent is not
//! retried (the write may have happened).

use crate::state::NodeDirectory;
use async_trait::async_trait;
use bytes::Bytes;
use fjord_coordinator::ClusterMetadata;
use fjord_protocol::codec::decode_frames;
use fjord_protocol::group::{GroupRequest, GroupResponse};
use fjord_protocol::node::{HEADER_HIGH_WATERMARK, HEADER_LOG_END_OFFSET, HEADER_LOG_START_OFFSET};
use fjord_protocol::{
    ErrorCode, FetchRequest, FetchResponse, FjordError, ListOffsetResponse, NodeApi, NodeId, OffsetSpec,
    PartitionStatus, ProduceRequest, ProduceResponse, Result, TopicPartition,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One storage node's internal API.
pub struct RemoteNode {
    http: reqwest::Client,
    base: String,
}

fn unreachable(e: &reqwest::Error) -> FjordError {
    FjordError::new(ErrorCode::LeaderNotAvailable, format!("storage node unreachable: {e}"))
}

fn transport(e: &reqwest::Error) -> FjordError {
    if e.is_connect() {
        unreachable(e)
    } else if e.is_timeout() {
        FjordError::new(ErrorCode::RequestTimeout, format!("storage node did not answer in time: {e}"))
    } else {
        FjordError::new(ErrorCode::Internal, format!("storage node call failed: {e}"))
    }
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
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

impl RemoteNode {
    pub fn new(http: reqwest::Client, endpoint: &str) -> Self {
        Self { http, base: format!("http://{endpoint}/internal/v1") }
    }

    fn tp_query(tp: &TopicPartition) -> [(&'static str, String); 2] {
        [("topic", tp.topic.clone()), ("partition", tp.partition.to_string())]
    }
}

#[async_trait]
impl NodeApi for RemoteNode {
    async fn produce(&self, req: ProduceRequest) -> Result<ProduceResponse> {
        let resp = self
            .http
            .post(format!("{}/produce", self.base))
            .query(&Self::tp_query(&req.tp))
            .query(&[("acks", req.acks.as_str()), ("timeout_ms", &req.timeout.as_millis().to_string())])
            .timeout(req.timeout + Duration::from_secs(5))
            .body(req.batch)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        check(resp).await?.json().await.map_err(|e| transport(&e))
    }

    async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let resp = self
            .http
            .get(format!("{}/fetch", self.base))
            .query(&Self::tp_query(&req.tp))
            .query(&[
                ("offset", req.offset.to_string()),
                ("max_bytes", req.max_bytes.to_string()),
                ("max_wait_ms", req.max_wait.as_millis().to_string()),
            ])
            .timeout(req.max_wait + Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let resp = check(resp).await?;
        let high_watermark = header_u64(&resp, HEADER_HIGH_WATERMARK)?;
        let log_start_offset = header_u64(&resp, HEADER_LOG_START_OFFSET)?;
        let log_end_offset = header_u64(&resp, HEADER_LOG_END_OFFSET)?;
        let body: Bytes = resp.bytes().await.map_err(|e| transport(&e))?;
        let batches = decode_frames(body).map_err(|e| FjordError::new(ErrorCode::CorruptBatch, e.to_string()))?;
        Ok(FetchResponse { batches, high_watermark, log_start_offset, log_end_offset })
    }

    async fn list_offset(&self, tp: TopicPartition, spec: OffsetSpec) -> Result<ListOffsetResponse> {
        let resp = self
            .http
            .get(format!("{}/list_offset", self.base))
            .query(&Self::tp_query(&tp))
            .query(&[("spec", spec.to_query())])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| transport(&e))?;
        check(resp).await?.json().await.map_err(|e| transport(&e))
    }

    async fn partition_status(&self, tp: TopicPartition) -> Result<PartitionStatus> {
        let resp = self
            .http
            .get(format!("{}/status", self.base))
            .query(&Self::tp_query(&tp))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| transport(&e))?;
        check(resp).await?.json().await.map_err(|e| transport(&e))
    }

    async fn group(&self, req: GroupRequest) -> Result<GroupResponse> {
        let resp = self
            .http
            .post(format!("{}/group", self.base))
            .json(&req)
            // Group writes wait for replication (up to 10 s on the node).
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map_err(|e| transport(&e))?;
        check(resp).await?.json().await.map_err(|e| transport(&e))
    }
}

/// Storage nodes by id, from the metadata's endpoints; clients are kept per endpoint.
pub struct RemoteNodes {
    http: reqwest::Client,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    cache: Mutex<HashMap<NodeId, (String, Arc<RemoteNode>)>>,
}

impl RemoteNodes {
    pub fn new(metadata: watch::Receiver<Arc<ClusterMetadata>>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| FjordError::new(ErrorCode::Internal, format!("HTTP client: {e}")))?;
        Ok(Self { http, metadata, cache: Mutex::new(HashMap::new()) })
    }
}

impl NodeDirectory for RemoteNodes {
    fn node(&self, id: NodeId) -> Option<Arc<dyn NodeApi>> {
        let endpoint = self.metadata.borrow().nodes.get(&id)?.endpoint.clone();
        let mut cache = self.cache.lock();
        match cache.get(&id) {
            Some((e, node)) if *e == endpoint => Some(node.clone()),
            _ => {
                let node = Arc::new(RemoteNode::new(self.http.clone(), &endpoint));
                cache.insert(id, (endpoint, node.clone()));
                Some(node)
            }
        }
    }
}
