//! The API a gateway uses to reach a partition's leader.
//!
//! In `fjord standalone` the storage node implements it in-process; in a cluster a
//! network client implements it over the storage node's internal HTTP API. Either way
//! the gateway only sees this trait.

use crate::error::Result;
use crate::group::{GroupRequest, GroupResponse};
use crate::names::TopicPartition;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Kafka's `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Answer once the request is accepted; the append happens afterwards.
    None,
    /// Answer after the leader's append.
    #[default]
    Leader,
    /// Answer after the high watermark passes the batch's last offset.
    All,
}

impl Acks {
    /// The query-string form: `0`, `1` or `all` (`-1` is accepted as `all`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "0",
            Self::Leader => "1",
            Self::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "0" => Some(Self::None),
            "1" => Some(Self::Leader),
            "all" | "-1" => Some(Self::All),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProduceRequest {
    pub tp: TopicPartition,
    /// One encoded batch ([`crate::codec`]); base offset and epoch are assigned by the leader.
    pub batch: Bytes,
    pub acks: Acks,
    /// How long to wait for replication with `acks=all`.
    pub timeout: Duration,
    /// A conditional append: written only if the partition's log ends exactly here.
    pub expected_offset: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceResponse {
    pub base_offset: u64,
    pub record_count: u32,
    /// Set when the batch was a retry of one already written (its idempotency key or
    /// producer sequence): these are the original offsets, and nothing was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ProduceReplay>,
}

/// What a replayed batch was originally written as, beyond its offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceReplay {
    /// The time stamped on records that came without one.
    pub default_timestamp: i64,
    /// The partition count the original request was routed with (idempotency keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_with: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub tp: TopicPartition,
    pub offset: u64,
    /// Soft limit: at least one batch is returned when one is available.
    pub max_bytes: usize,
    /// Long poll: wait up to this long for data at `offset`.
    pub max_wait: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct FetchResponse {
    /// Encoded batches in offset order. The first may start before the requested offset
    /// and the last may end at or beyond the high watermark: readers skip records
    /// outside `[offset, high_watermark)`. On a compacted topic there may be gaps in the
    /// offsets, before the first batch and between batches. Empty with a high watermark
    /// above the requested offset means no record is left in `[offset, high_watermark)`:
    /// a reader continues at the high watermark.
    pub batches: Vec<Bytes>,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The earliest offset whose timestamp is at or after this time (ms).
    Timestamp(i64),
}

impl OffsetSpec {
    /// The query-string form: `earliest`, `latest` or the timestamp.
    pub fn to_query(self) -> String {
        match self {
            Self::Earliest => "earliest".into(),
            Self::Latest => "latest".into(),
            Self::Timestamp(t) => t.to_string(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "earliest" => Some(Self::Earliest),
            "latest" => Some(Self::Latest),
            ts => ts.parse::<i64>().ok().map(Self::Timestamp),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOffsetResponse {
    pub offset: u64,
    /// The record's timestamp, for a timestamp look-up that found one.
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub log_end_offset: u64,
    pub leader_epoch: u32,
}

/// What a partition leader serves.
#[async_trait]
pub trait NodeApi: Send + Sync + 'static {
    async fn produce(&self, req: ProduceRequest) -> Result<ProduceResponse>;
    async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse>;
    async fn list_offset(&self, tp: TopicPartition, spec: OffsetSpec) -> Result<ListOffsetResponse>;
    async fn partition_status(&self, tp: TopicPartition) -> Result<PartitionStatus>;
    /// A consumer-group call, served by the group's coordinator: the leader of the
    /// group's partition of [`OFFSETS_TOPIC`](crate::group::OFFSETS_TOPIC).
    async fn group(&self, req: GroupRequest) -> Result<GroupResponse>;
}
