//! The storage engine seam: what a partition log needs from its key-value store.
//!
//! [`PartitionLog`](crate::partition::PartitionLog) holds all log logic (offsets, high
//! watermark, retention, epochs) on top of this small trait, so the same logic and the
//! same conformance suite run over RocksDB ([`crate::rocks::RocksEngine`]) and the
//! in-memory test double ([`MemEngine`]).

use crate::error::{Error, Result};
use fjord_protocol::codec::MetaKey;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};

/// One part of an atomic write to a partition's store.
#[derive(Debug, Clone, Copy)]
pub enum WriteOp<'a> {
    /// Store an encoded batch under its base offset.
    PutBatch { base_offset: u64, bytes: &'a [u8] },
    /// Remove the batches whose base offsets are in `[from, to)`.
    DeleteBatches { from: u64, to: u64 },
    /// Remove the one batch stored under `base_offset` (compaction: a point delete, not a
    /// range tombstone, so many of them do not slow RocksDB's reads down).
    DeleteBatch { base_offset: u64 },
    /// Set one of the partition's metadata values.
    PutMeta { key: MetaKey, value: &'a [u8] },
    /// Set one of the partition's producer-state values (an encoded
    /// [`StateKey`](fjord_protocol::codec::StateKey)).
    PutState { key: &'a [u8], value: &'a [u8] },
    /// Remove one producer-state value.
    DeleteState { key: &'a [u8] },
}

/// What one part of an engine's storage (RocksDB: a column family) holds and owes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyStats {
    pub name: &'static str,
    /// Bytes in memtables (mutable and immutable) not yet flushed.
    pub memtable_bytes: u64,
    /// Bytes compactions still have to rewrite to bring the levels within their targets.
    pub pending_compaction_bytes: u64,
    /// Bytes of the live table files.
    pub table_bytes: u64,
    /// Bytes of the live blob files.
    pub blob_bytes: u64,
    /// Writes slowed (`delays`) and stopped (`stops`) by this family since the engine
    /// opened: too many memtables, level-0 files or pending compaction bytes.
    pub stall_delays: u64,
    pub stall_stops: u64,
}

/// What an engine reports about itself for metrics, read when asked (nothing is counted
/// on the write path). Engines without such parts report the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub families: Vec<FamilyStats>,
    /// Bytes the block cache holds, and at most may.
    pub block_cache_usage_bytes: u64,
    pub block_cache_capacity_bytes: u64,
    pub running_compactions: u64,
    pub running_flushes: u64,
    /// Writes are stopped right now.
    pub write_stopped: bool,
    /// The rate writes are slowed to right now, bytes/s (0: not slowed).
    pub delayed_write_rate: u64,
}

/// A key-value store holding many partition logs. Calls block: async code runs them on
/// a blocking thread.
pub trait Engine: Send + Sync + 'static {
    /// Names of the partition stores that exist.
    fn list_partitions(&self) -> Result<Vec<String>>;
    /// Creates an empty partition store; a no-op if it exists.
    fn create_partition(&self, name: &str) -> Result<()>;
    /// Removes a partition store and its metadata; a no-op if it does not exist.
    fn drop_partition(&self, name: &str) -> Result<()>;
    /// Applies `ops` atomically and in order (a later op on the same key wins), durable
    /// per the engine's sync policy.
    fn write(&self, name: &str, ops: &[WriteOp<'_>]) -> Result<()>;
    fn get_meta(&self, name: &str, key: MetaKey) -> Result<Option<Vec<u8>>>;
    /// Calls `f(base_offset, batch)` for the batch holding `offset` (the last batch whose
    /// base offset is `<= offset`; the first batch if none is) and every later batch, in
    /// order, until `f` returns `false`.
    fn scan(&self, name: &str, offset: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<()>;
    /// The batch with the highest base offset.
    fn last_batch(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// One producer-state value.
    fn get_state(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Calls `f(key, value)` for the producer-state values whose keys start with
    /// `prefix`, in key order, until it returns `false`.
    fn scan_state(&self, name: &str, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;
    /// Makes every write so far durable (used by the interval sync policy).
    fn sync(&self) -> Result<()>;
    /// Gives the disk space of the stores dropped so far back, for engines that keep a
    /// dropped store's data until later (RocksDB: until a compaction passes over it).
    /// Blocks for as long as that takes: call it off the paths that serve requests.
    fn reclaim_dropped(&self) -> Result<()> {
        Ok(())
    }
    /// The engine's own figures, for metrics.
    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }
}

#[derive(Default)]
struct MemPartition {
    batches: BTreeMap<u64, Vec<u8>>,
    meta: HashMap<MetaKey, Vec<u8>>,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// An in-memory [`Engine`] for unit tests. "Restarting" a log over the same `MemEngine`
/// exercises the log's recovery from stored state.
#[derive(Default)]
pub struct MemEngine {
    partitions: Mutex<BTreeMap<String, MemPartition>>,
}

impl MemEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Engine for MemEngine {
    fn list_partitions(&self) -> Result<Vec<String>> {
        Ok(self.partitions.lock().keys().cloned().collect())
    }

    fn create_partition(&self, name: &str) -> Result<()> {
        self.partitions.lock().entry(name.to_owned()).or_default();
        Ok(())
    }

    fn drop_partition(&self, name: &str) -> Result<()> {
        self.partitions.lock().remove(name);
        Ok(())
    }

    fn write(&self, name: &str, ops: &[WriteOp<'_>]) -> Result<()> {
        let mut all = self.partitions.lock();
        let p = all.get_mut(name).ok_or_else(|| Error::NoSuchStore(name.to_owned()))?;
        for op in ops {
            match *op {
                WriteOp::PutBatch { base_offset, bytes } => {
                    p.batches.insert(base_offset, bytes.to_vec());
                }
                WriteOp::DeleteBatches { from, to } => {
                    let doomed: Vec<u64> = p.batches.range(from..to).map(|(k, _)| *k).collect();
                    for k in doomed {
                        p.batches.remove(&k);
                    }
                }
                WriteOp::DeleteBatch { base_offset } => {
                    p.batches.remove(&base_offset);
                }
                WriteOp::PutMeta { key, value } => {
                    p.meta.insert(key, value.to_vec());
                }
                WriteOp::PutState { key, value } => {
                    p.state.insert(key.to_vec(), value.to_vec());
                }
                WriteOp::DeleteState { key } => {
                    p.state.remove(key);
                }
            }
        }
        Ok(())
    }

    fn get_meta(&self, name: &str, key: MetaKey) -> Result<Option<Vec<u8>>> {
        let all = self.partitions.lock();
        let p = all.get(name).ok_or_else(|| Error::NoSuchStore(name.to_owned()))?;
        Ok(p.meta.get(&key).cloned())
    }

    fn scan(&self, name: &str, offset: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<()> {
        // Copy out under the lock so `f` may take its time.
        let batches: Vec<(u64, Vec<u8>)> = {
            let all = self.partitions.lock();
            let p = all.get(name).ok_or_else(|| Error::NoSuchStore(name.to_owned()))?;
            let start = p.batches.range(..=offset).next_back().map_or(0, |(k, _)| *k);
            p.batches.range(start..).map(|(k, v)| (*k, v.clone())).collect()
        };
        for (k, v) in batches {
            if !f(k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn last_batch(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let all = self.partitions.lock();
        let p = all.get(name).ok_or_else(|| Error::NoSuchStore(name.to_owned()))?;
        Ok(p.batches.values().next_back().cloned())
    }

    fn get_state(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let all = self.partitions.lock();
        let p = all.get(name).ok_or_else(|| Error::NoSuchStore(name.to_owned()))?;
        Ok(p.state.get(key).cloned())
    }

    fn scan_state(&self, name: &str, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = {
            let all = self.partitions.lock();
            let p = all.get(name).ok_or_else(|| Error::NoSuchStore(name.to_owned()))?;
            p.state
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        for (k, v) in entries {
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}
