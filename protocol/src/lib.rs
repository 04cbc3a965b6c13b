//! Wire types shared by every Fjord part.
//!
//! This crate is small on purpose: it has no I/O and no storage or HTTP framework
//! dependencies, so the gateway can speak to storage nodes without linking RocksDB. It
//! only declares modules and re-exports; every item lives in a module.
//!
//! # Layout
//! - [`body`] — the public API's record bodies: parsing what producers send (JSON,
//!   NDJSON, raw bytes, length-prefixed binary records) and rendering what consumers
//!   read.
//! - [`codec`] — every byte layout Fjord writes: the record-batch encoding (stored in
//!   RocksDB and sent between nodes), length-prefixed frames, partition store names and
//!   RocksDB keys, and the keys of `__consumer_offsets` records.
//! - [`error`] — [`ErrorCode`], the stable machine codes with HTTP status and
//!   `retriable` flag, and [`FjordError`].
//! - [`names`] — [`NodeId`], [`TopicPartition`] and the character rule of every
//!   user-chosen name.
//! - [`partitioner`] — Kafka's murmur2 partitioner, so keys land where Kafka puts them.
//! - [`group`] — consumer-group calls to a group's coordinator, the assignors, and how a
//!   group finds its coordinator.
//! - [`node`] — the [`NodeApi`] trait a gateway uses to reach a partition leader,
//!   in-process (standalone) or over the network (`fjord-rpc`).
//! - [`clock`] — [`now_ms`].
//! - [`auth`] — resources, operations, Kafka's ACL rule and token scopes (pure).

pub mod auth;
pub mod body;
pub mod clock;
pub mod codec;
pub mod error;
pub mod group;
pub mod names;
pub mod node;
pub mod partitioner;

pub use clock::now_ms;
pub use codec::{Batch, BatchBuilder, Header, Record, RecordView};
pub use error::{ErrorCode, ErrorDetails, FjordError, Result};
pub use names::{NodeId, TopicPartition};
pub use node::{
    Acks, FetchRequest, FetchResponse, ListOffsetResponse, NodeApi, OffsetSpec, PartitionStatus, ProduceReplay,
    ProduceRequest, ProduceResponse,
};
