//! The internal API's contract: routes, their query and body types, and the byte
//! layout of fetch answers. The server (`fjord_storage_node::internal`) and the client
//! ([`crate::client`]) are both written against this module only.
//!
//! | route | request | answer |
//! |---|---|---|
//! | [`Route::Produce`] | [`ProduceQuery`], an encoded batch | [`ProduceResponse`](fjord_protocol::ProduceResponse) JSON |
//! | [`Route::Fetch`] | [`FetchQuery`] | batches as [frames](fjord_protocol::codec::encode_frames); offsets in [`HEADER_HIGH_WATERMARK`] and its siblings |
//! | [`Route::ListOffset`] | [`ListOffsetQuery`] | [`ListOffsetResponse`](fjord_protocol::ListOffsetResponse) JSON |
//! | [`Route::Status`] | [`PartitionQuery`] | [`PartitionStatus`](fjord_protocol::PartitionStatus) JSON |
//! | [`Route::ReplicaFetch`] | [`ReplicaFetchRequest`] JSON | [`ReplicaFetchAnswer`] (binary) |
//! | [`Route::EpochEnd`] | [`EpochQuery`] | [`EpochEndOffset`] JSON |
//! | [`Route::Group`] | [`GroupRequest`](fjord_protocol::group::GroupRequest) JSON | [`GroupResponse`](fjord_protocol::group::GroupResponse) JSON |
//!
//! Every error is a [`FjordError`] as JSON (`{"code", "message"}`) with the code's HTTP
//! status. Not for clients: bind the internal listener where only the cluster reaches it.

use bytes::Bytes;
use fjord_protocol::codec::{decode_frames, encode_frames};
use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};
use serde::{Deserialize, Serialize};

/// The HTTP method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One route of the internal API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Append a batch as the partition's leader.
    Produce,
    /// Read committed batches, long-polling.
    Fetch,
    /// The offset of `earliest`, `latest` or a timestamp.
    ListOffset,
    /// Log start, high watermark, log end and leader epoch.
    Status,
    /// A follower's fetch for every partition it follows on this leader.
    ReplicaFetch,
    /// KIP-279's OffsetsForLeaderEpoch.
    EpochEnd,
    /// A consumer-group call to the group's coordinator.
    Group,
}

impl Route {
    pub const ALL: [Route; 7] = [
        Route::Produce,
        Route::Fetch,
        Route::ListOffset,
        Route::Status,
        Route::ReplicaFetch,
        Route::EpochEnd,
        Route::Group,
    ];

    pub const fn path(self) -> &'static str {
        match self {
            Route::Produce => "/internal/v1/produce",
            Route::Fetch => "/internal/v1/fetch",
            Route::ListOffset => "/internal/v1/list_offset",
            Route::Status => "/internal/v1/status",
            Route::ReplicaFetch => "/internal/v1/replica_fetch",
            Route::EpochEnd => "/internal/v1/epoch_end",
            Route::Group => "/internal/v1/group",
        }
    }

    pub const fn method(self) -> Method {
        match self {
            Route::Produce | Route::ReplicaFetch | Route::Group => Method::Post,
            Route::Fetch | Route::ListOffset | Route::Status | Route::EpochEnd => Method::Get,
        }
    }
}

/// Liveness of a storage node's internal listener (not under `/internal/v1`).
pub const HEALTH_PATH: &str = "/healthz";

/// Response headers of [`Route::Fetch`] carrying the partition's offsets.
pub const HEADER_HIGH_WATERMARK: &str = "x-fjord-high-watermark";
pub const HEADER_LOG_START_OFFSET: &str = "x-fjord-log-start-offset";
pub const HEADER_LOG_END_OFFSET: &str = "x-fjord-log-end-offset";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionQuery {
    pub topic: String,
    pub partition: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceQuery {
    pub topic: String,
    pub partition: u32,
    /// `0`, `1` or `all` ([`Acks::as_str`](fjord_protocol::Acks::as_str)).
    pub acks: String,
    pub timeout_ms: u64,
    /// A conditional append ([`ProduceRequest::expected_offset`](fjord_protocol::ProduceRequest::expected_offset)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchQuery {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub max_bytes: usize,
    pub max_wait_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOffsetQuery {
    pub topic: String,
    pub partition: u32,
    /// `earliest`, `latest` or a timestamp ([`OffsetSpec::to_query`](fjord_protocol::OffsetSpec::to_query)).
    pub spec: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochQuery {
    pub topic: String,
    pub partition: u32,
    pub epoch: u32,
}

/// A follower's fetch from one leader, for every partition it follows there (one
/// fetcher per follower/leader node pair, as in Kafka).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFetchRequest {
    pub follower: NodeId,
    /// Long poll: wait up to this long for new data when none of the partitions has any.
    pub max_wait_ms: u64,
    /// Soft limit per partition.
    pub max_bytes: usize,
    pub partitions: Vec<ReplicaFetchPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFetchPartition {
    pub topic: String,
    pub partition: u32,
    /// The follower's LEO: it has every record below this.
    pub fetch_offset: u64,
    /// The leader epoch the follower believes current; a mismatch is refused (fencing).
    pub leader_epoch: u32,
}

/// One partition's part of a replica fetch answer. Its batches follow the header in the
/// answer's body, `batches` frames of it, in partition order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFetchResult {
    pub topic: String,
    pub partition: u32,
    pub error: Option<FjordError>,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub batches: u32,
}

/// KIP-279's OffsetsForLeaderEpoch answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEndOffset {
    /// The largest epoch of the leader's log `<=` the one asked about; `None` when the
    /// leader has no such epoch (the follower then truncates to `end_offset`).
    pub epoch: Option<u32>,
    pub end_offset: u64,
}

/// A replica fetch answer: per-partition headers and, in the same order, their batches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaFetchAnswer {
    pub results: Vec<ReplicaFetchResult>,
    pub batches: Vec<Bytes>,
}

impl ReplicaFetchAnswer {
    /// `[u32 header length][header JSON][frames]`.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let internal =
            |what: &str, e: &dyn std::fmt::Display| FjordError::new(ErrorCode::Internal, format!("{what}: {e}"));
        let header = serde_json::to_vec(&self.results).map_err(|e| internal("encoding fetch header", &e))?;
        let header_len = u32::try_from(header.len()).map_err(|e| internal("fetch header length", &e))?;
        let mut out = Vec::with_capacity(4 + header.len() + self.batches.iter().map(|b| b.len() + 4).sum::<usize>());
        out.extend_from_slice(&header_len.to_be_bytes());
        out.extend_from_slice(&header);
        encode_frames(self.batches.iter().map(|b| &b[..]), &mut out).map_err(|e| internal("encoding batches", &e))?;
        Ok(out)
    }

    /// The answer [`encode`](Self::encode) wrote; `corrupt_batch` for anything else.
    pub fn decode(mut body: Bytes) -> Result<Self> {
        let bad = |what: &str| FjordError::new(ErrorCode::CorruptBatch, format!("bad replica fetch answer: {what}"));
        if body.len() < 4 {
            return Err(bad("too short"));
        }
        let len = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
        if body.len() - 4 < len {
            return Err(bad("truncated header"));
        }
        let _ = body.split_to(4);
        let header = body.split_to(len);
        let results: Vec<ReplicaFetchResult> =
            serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
        let batches = decode_frames(body).map_err(|_| bad("truncated frames"))?;
        if batches.len() != results.iter().map(|r| r.batches as usize).sum::<usize>() {
            return Err(bad("batch count does not match the header"));
        }
        Ok(Self { results, batches })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_lives_under_the_internal_prefix_once() {
        let mut paths: Vec<&str> = Route::ALL.iter().map(|r| r.path()).collect();
        assert!(paths.iter().all(|p| p.starts_with("/internal/v1/")));
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), Route::ALL.len());
    }

    #[test]
    fn replica_fetch_answers_round_trip_and_reject_damage() {
        let answer = ReplicaFetchAnswer {
            results: vec![
                ReplicaFetchResult {
                    topic: "t".into(),
                    partition: 0,
                    error: None,
                    high_watermark: 5,
                    log_start_offset: 0,
                    batches: 2,
                },
                ReplicaFetchResult {
                    topic: "t".into(),
                    partition: 1,
                    error: Some(FjordError::new(ErrorCode::NotLeader, "moved")),
                    high_watermark: 0,
                    log_start_offset: 0,
                    batches: 0,
                },
            ],
            batches: vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")],
        };
        let bytes = Bytes::from(answer.encode().expect("encode"));
        assert_eq!(ReplicaFetchAnswer::decode(bytes.clone()).expect("decode"), answer);
        for cut in [0, 3, 10, bytes.len() - 1] {
            let err = ReplicaFetchAnswer::decode(bytes.slice(..cut)).expect_err("damaged");
            assert_eq!(err.code, ErrorCode::CorruptBatch, "cut at {cut}");
        }
    }
}
