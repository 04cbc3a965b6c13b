//! The API a gateway uses to reach a partition's leader.
//!
//! In `fjord standalone` the storage node implements it in-process; in a cluster a
//! network client implements it over the storage node's internal HTTP API. Either way
//! the gateway only sees this trait.

use crate::error::Result;
use async_trait::async_trait;
use bytes::Bytes;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

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

#[derive(Debug, Clone)]
pub struct ProduceRequest {
    pub tp: TopicPartition,
    /// One encoded batch ([`crate::codec`]); base offset and epoch are assigned by the leader.
    pub batch: Bytes,
    pub acks: Acks,
    /// How long to wait for replication with `acks=all`.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceResponse {
    pub base_offset: u64,
    pub record_count: u32,
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
    /// outside `[offset, high_watermark)`.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetResponse {
    pub offset: u64,
    /// The record's timestamp, for a timestamp look-up that found one.
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
}
