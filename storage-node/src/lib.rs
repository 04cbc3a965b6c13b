//! The Fjord storage node: partition logs in RocksDB, leader/follower partition state,
//! retention, and the [`NodeApi`](fjord_protocol::NodeApi) that gateways call.
//!
//! # Layout
//! - [`engine`] — the [`Engine`] seam a log is stored through, and [`MemEngine`], the
//!   in-memory double for unit tests.
//! - [`rocks`] — [`RocksEngine`], one column family per partition replica, and the WAL
//!   sync policy ([`WalSync`]).
//! - [`log`] — [`PartitionLog`], one replica's log: offsets, high watermark, epoch
//!   history, reads, timestamp look-up, retention, compaction.
//! - [`node`] — [`StorageNode`]: opens the replicas the metadata assigns to this node,
//!   serves produce/fetch/offsets as their leader, runs retention, compaction and WAL
//!   sync.
//! - [`groups`] — the consumer-group coordinator (membership, server-side assignment,
//!   committed offsets in the internal `__consumer_offsets` topic) and its assignors.
//! - [`replication`] — leader side (follower progress, HW, ISR changes) and follower
//!   side (one fetcher per leader node, truncation by epoch).
//! - [`internal`] — the node's internal HTTP API: produce/fetch/offsets for gateways,
//!   replica fetch and epoch look-up for followers.
//! - [`config`] — [`NodeConfig`].

mod append;
pub mod config;
pub mod engine;
pub mod groups;
pub mod internal;
pub mod log;
pub mod node;
pub mod replication;
pub mod rocks;

pub use config::NodeConfig;
pub use engine::{Engine, MemEngine};
pub use log::{PartitionLog, Role};
pub use node::StorageNode;
pub use rocks::{Compression, RocksEngine, RocksOptions, WalSync};

#[cfg(test)]
mod conformance;
