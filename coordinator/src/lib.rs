//! Cluster metadata and coordination.
//!
//! The [`Coordinator`] trait is what storage nodes and gateways use to read and change
//! cluster metadata. It knows nothing of ZooKeeper: the embedded backend
//! ([`EmbeddedCoordinator`]) is a metadata store in one process and a JSON file for
//! `fjord standalone`; the ZooKeeper backend ([`ZkCoordinator`]) serves a cluster. Neither
//! decides anything: topic changes are validated and placed by [`topics`], leadership
//! is decided by the [`controller`], the same on both.
//!
//! # Layout
//! - [`api`] — the [`Coordinator`] trait.
//! - [`model`] — nodes, topics, partition states, topic config with Kafka's key names,
//!   topic-name validation.
//! - [`topics`] — the one validation and placement path of topic changes.
//! - [`producers`] — producer session registration rules (names, epochs).
//! - [`placement`] — Kafka's rack-aware (and rack-unaware) replica placement.
//! - [`controller`] — leader election and ISR changes on node loss: [`controller::plan`]
//!   (pure) and the loop that applies it.
//! - [`embedded`] — the single-process backend.
//! - [`zk`] — the ZooKeeper backend.
//! - `testing` (feature `testing`) — a throwaway ZooKeeper server for tests.

pub mod api;
pub mod controller;
pub mod embedded;
pub mod model;
pub mod placement;
pub mod producers;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;
pub mod zk;

pub use api::{Coordinator, SessionStats};
pub use embedded::EmbeddedCoordinator;
pub use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};
pub use model::{
    validate_topic_name, CleanupPolicy, ClusterMetadata, ElectionRequest, GatewayInfo, NewTopic, NodeInfo,
    PartitionState, PipelineRecord, ProducerInfo, TopicChange, TopicConfig, TopicMetadata,
};
pub use zk::ZkCoordinator;
