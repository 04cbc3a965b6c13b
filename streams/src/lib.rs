//! Stream processing over Fjord topics, in the spirit of Kafka Streams: a pipeline reads
//! source topics, filters, maps, re-keys (through an internal repartition topic),
//! aggregates in windows of event time and joins, and writes to sink topics.
//!
//! A pipeline runs as *tasks*, one per input partition of each stage
//! ([`topology`]), spread over any number of processor instances through a consumer
//! group: an instance that joins takes a share of the tasks, one that leaves or dies
//! gives them back. A task's state (windows, sessions, join buffers) is kept in memory
//! or in a local RocksDB ([`store`]) and backed by a compacted changelog topic, from
//! which a task that starts anywhere restores it ([`changelog`]). Outputs, changelog writes and offset commits follow a
//! protocol that makes a crash at any point cost nothing but time: no output twice, no
//! input counted twice ([`changelog`] says how).
//!
//! # Layout
//! - [`record`] — [`Rec`], the record the steps see.
//! - [`topology`] — the DSL ([`Topology::source`] … `sink`) and the stages it compiles to.
//! - [`window`] — tumbling, hopping and session windows with grace.
//! - [`aggregate`] — count, sum, min, max, avg, fold.
//! - [`task`] — processing one batch of one task: pure and deterministic.
//! - [`store`] — where a task's state lives: memory, or a local RocksDB.
//! - [`changelog`] — the write order, the changelog records and restoring from them.
//! - [`pipeline`] — JSON definitions with jq expressions, compiled to a [`Topology`].
//! - [`runtime`] — [`Processor`]: a processor instance over a Fjord cluster.
//! - [`worker`] — runs every pipeline stored in the cluster.

pub mod aggregate;
pub mod changelog;
pub mod pipeline;
pub mod record;
pub mod runtime;
pub mod store;
pub mod task;
pub mod topology;
pub mod window;
pub mod worker;

pub use aggregate::{field, Agg};
pub use record::Rec;
pub use runtime::{Processor, ProcessorConfig, ProcessorStatus};
pub use topology::{Emit, JoinWindow, Topology};
pub use window::WindowSpec;
