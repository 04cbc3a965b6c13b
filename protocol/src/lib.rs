//! Wire types shared by every Fjord part.
//!
//! This crate is small on purpose: it has no I/O and no storage or HTTP framework
//! dependencies, so the gateway can speak to storage nodes without linking RocksDB.
//!
//! # Layout
//! - [`codec`] — every byte layout Fjord writes — the record-batch encoding (stored in
//!   RocksDB and sent from gateway to storage node) and the RocksDB key layout.
//! - [`error`] — [`ErrorCode`], the stable machine codes with HTTP status and
//!   `retriable` flag, and [`FjordError`].
//! - [`partitioner`] — Kafka's murmur2 partitioner, so keys land where Kafka puts them.
//! - [`group`] — consumer-group calls to a group's coordinator.
//! - [`node`] — the [`NodeApi`] trait a gateway uses to reach a partition leader,
//!   in-process (standalone) or over the network (cluster).

pub mod codec;
pub mod error;
pub mod group;
pub mod node;
pub mod partitioner;

pub use codec::{Batch, BatchBuilder, Header, Record, RecordView};
pub use error::{ErrorCode, FjordError, Result};
pub use node::{
    Acks, EpochEndOffset, FetchRequest, FetchResponse, ListOffsetResponse, NodeApi, OffsetSpec, PartitionStatus,
    ProduceRequest, ProduceResponse, ReplicaFetchPartition, ReplicaFetchRequest, ReplicaFetchResult, TopicPartition,
};

/// Identifier of a storage node (a Kafka broker id).
pub type NodeId = u32;

/// Wall-clock time in ms since the Unix epoch: record timestamps and retention.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
