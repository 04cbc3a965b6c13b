//! A partition replica's log, over a small storage-engine seam.
//!
//! Everything that makes a log a log lives here: dense offsets, the high watermark,
//! the leader-epoch history (KIP-101), the write fence of the replica's role, reads,
//! timestamp look-up, retention, compaction, truncation by epoch, and group commit of
//! appends. It knows nothing of HTTP, replication protocols or cluster coordination:
//! `fjord-storage-node` builds replicas, replication and the node's API on top of it.
//! See ARCHITECTURE.md ("The log") for the invariants.
//!
//! # Layout
//! - [`engine`] — the [`Engine`] seam a log is stored through, and [`MemEngine`], the
//!   in-memory double for unit tests.
//! - [`rocks`] — [`RocksEngine`], one column family per partition replica, and the WAL
//!   sync policy ([`WalSync`]).
//! - [`partition`] — [`PartitionLog`], one replica's log: offsets, high watermark, epoch
//!   history, reads, timestamp look-up, retention, truncation.
//! - [`compaction`] — what a compaction pass keeps (a plan from the scanned batches),
//!   applied by [`PartitionLog::compact`].
//! - [`role`] — [`Role`], who may write the log.
//! - [`dedupe`] — exactly-once appends: idempotency keys and producer sessions, as pure
//!   decisions; [`producers`] — that state as stored, written with the batches.
//! - [`append`] — [`AppendQueue`], group commit of produce appends.
//! - [`error`] — [`Error`], this crate's one error type.
//! - `conformance` (tests) — the storage conformance suite, run against every engine, and
//!   the model-based property test.

pub mod append;
pub mod compaction;
pub mod dedupe;
pub mod engine;
pub mod error;
pub mod partition;
pub mod producers;
pub mod rocks;
pub mod role;

#[cfg(test)]
mod conformance;

pub use append::{AppendQueue, CommitObserver};
pub use compaction::Compacted;
pub use dedupe::{Dedupe, Replay};
pub use engine::{Engine, EngineStats, FamilyStats, MemEngine, WriteOp};
pub use error::{Error, Result};
pub use partition::{Append, Appended, LogOffsets, PartitionLog, Removed};
pub use rocks::{Compression, RocksEngine, RocksOptions, WalSync};
pub use role::Role;
