//! Storage node configuration.

use fjord_log::{Compression, RocksOptions, WalSync};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id (Kafka's `broker.id`).
    pub node_id: u32,
    /// Rack, for rack-aware replica placement.
    pub rack: Option<String>,
    /// Where RocksDB keeps the partition logs (`<data_dir>/storage`).
    pub data_dir: PathBuf,
    /// When the write-ahead log is fsynced: `always` or `interval` (see [`WalSync`]).
    pub wal_sync: WalSync,
    /// Period of the background fsync with `wal_sync = "interval"`.
    pub wal_sync_interval_ms: u64,
    /// Shared RocksDB block cache.
    pub block_cache_bytes: usize,
    /// Cap on all RocksDB memtables together.
    pub write_buffer_bytes: usize,
    /// Block compression of partition files: `none` (default, as Kafka stores what
    /// producers send) or `lz4` (see [`Compression`]).
    pub compression: Compression,
    /// Below this many bytes free on the data directory's file system the node refuses
    /// writes that add data (`507 insufficient_storage`, retriable, nothing written) and
    /// takes them again once space returns (Redpanda's `storage_min_free_bytes`). Keeps
    /// RocksDB from running out of space itself, after which it takes no writes until a
    /// restart. Default 1 GiB; `0` turns the check off.
    pub min_free_bytes: u64,
    /// How often retention and compaction run over every partition.
    pub retention_check_interval_ms: u64,
    /// A follower that has not caught up for this long leaves the ISR
    /// (Kafka's `replica.lag.time.max.ms`).
    pub replica_lag_time_max_ms: u64,
    /// Long-poll time of a follower's fetch (Kafka's `replica.fetch.wait.max.ms`).
    pub replica_fetch_wait_max_ms: u64,
    /// Soft limit of one partition's data in one replica fetch.
    pub replica_fetch_max_bytes: usize,
    /// How often every replica's high watermark is stored, if it moved (Kafka's
    /// `replica.high.watermark.checkpoint.interval.ms`); also on shutdown. A restarted
    /// replica serves up to its checkpoint at once.
    pub hw_checkpoint_interval_ms: u64,
    /// How long the committed offsets of a group without members are kept after it
    /// became empty and after its last commit (Kafka's `offsets.retention.minutes`,
    /// 7 days by default); then the group is removed.
    pub offsets_retention_ms: u64,
    /// The cluster's internal-API secret (read from `cluster.secret_file` by the
    /// process, never from this config): followers send it to leaders.
    #[serde(skip)]
    pub cluster_secret: Option<fjord_rpc::ClusterSecret>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let rocks = RocksOptions::default();
        Self {
            node_id: 0,
            rack: None,
            data_dir: PathBuf::from("data"),
            wal_sync: WalSync::Interval,
            wal_sync_interval_ms: 200,
            block_cache_bytes: rocks.block_cache_bytes,
            write_buffer_bytes: rocks.write_buffer_bytes,
            compression: rocks.compression,
            min_free_bytes: 1 << 30,
            retention_check_interval_ms: 30_000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1 << 20,
            hw_checkpoint_interval_ms: 5_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            cluster_secret: None,
        }
    }
}

impl NodeConfig {
    pub fn rocks_options(&self) -> RocksOptions {
        RocksOptions {
            wal_sync: self.wal_sync,
            block_cache_bytes: self.block_cache_bytes,
            write_buffer_bytes: self.write_buffer_bytes,
            compression: self.compression,
            min_free_bytes: self.min_free_bytes,
        }
    }

    /// Checks values that serde cannot, naming the bad key.
    pub fn validate(&self) -> Result<(), String> {
        if self.wal_sync_interval_ms == 0 {
            return Err("storage.wal_sync_interval_ms must be at least 1".into());
        }
        if self.offsets_retention_ms == 0 {
            return Err("storage.offsets_retention_ms must be at least 1".into());
        }
        if self.hw_checkpoint_interval_ms == 0 {
            return Err("storage.hw_checkpoint_interval_ms must be at least 1".into());
        }
        if self.retention_check_interval_ms == 0 {
            return Err("storage.retention_check_interval_ms must be at least 1".into());
        }
        if self.replica_lag_time_max_ms == 0 || self.replica_fetch_wait_max_ms == 0 {
            return Err(
                "storage.replica_lag_time_max_ms and storage.replica_fetch_wait_max_ms must be at least 1".into()
            );
        }
        if self.write_buffer_bytes < (4 << 20) {
            return Err("storage.write_buffer_bytes must be at least 4 MiB".into());
        }
        Ok(())
    }
}

/// Replication timing (Kafka's `replica.lag.time.max.ms`, `replica.fetch.wait.max.ms`).
#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    pub lag_time_max: Duration,
    pub fetch_wait_max: Duration,
    pub fetch_max_bytes: usize,
    /// The credential of this node's calls to leaders (the cluster's secret, if any).
    pub cluster_secret: Option<fjord_rpc::ClusterSecret>,
}

impl ReplicationSettings {
    pub fn from_config(c: &NodeConfig) -> Self {
        Self {
            lag_time_max: Duration::from_millis(c.replica_lag_time_max_ms),
            fetch_wait_max: Duration::from_millis(c.replica_fetch_wait_max_ms),
            fetch_max_bytes: c.replica_fetch_max_bytes,
            cluster_secret: c.cluster_secret.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zero intervals are refused, naming the key.
    #[test]
    fn checkpoint_interval_and_offsets_retention_must_be_positive() {
        assert_eq!(NodeConfig::default().validate(), Ok(()));
        let e = NodeConfig { hw_checkpoint_interval_ms: 0, ..Default::default() }.validate();
        assert!(e.is_err_and(|m| m.contains("storage.hw_checkpoint_interval_ms")));
        let e = NodeConfig { offsets_retention_ms: 0, ..Default::default() }.validate();
        assert!(e.is_err_and(|m| m.contains("storage.offsets_retention_ms")));
    }
}
