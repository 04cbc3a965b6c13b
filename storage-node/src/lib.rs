//! The Fjord storage node: partition replicas as leader or follower, replication,
//! log cleanup, the consumer-group coordinator, and the node's internal API. The log
//! itself is `fjord-log`; the internal API's contract and client are `fjord-rpc`.
//!
//! # Layout
//! - [`node`] — [`StorageNode`]: follows the metadata, implements the
//!   [`NodeApi`](fjord_protocol::NodeApi) (produce, fetch, offsets, groups) and runs the
//!   background tasks.
//! - [`replicas`] — the replicas open on this node, reconciled with the metadata.
//! - [`replica`] — one replica: its log and, under one lock, what the metadata says
//!   and what its leader knows of its followers.
//! - [`leader`] — replication, leader side: replica fetches, HW, ISR changes.
//! - [`follower`] — replication, follower side: one fetcher per leader node, truncation
//!   by epoch.
//! - [`cleanup`] — retention and compaction runs.
//! - [`groups`] — the consumer-group coordinator and its assignors.
//! - [`internal`] — the internal API's server.
//! - [`config`] — [`NodeConfig`].

pub mod cleanup;
pub mod config;
pub mod counters;
pub mod follower;
pub mod groups;
pub mod internal;
pub mod leader;
pub mod metrics;
pub mod node;
pub mod replica;
pub mod replicas;

pub use config::{NodeConfig, ReplicationSettings};
pub use node::StorageNode;
