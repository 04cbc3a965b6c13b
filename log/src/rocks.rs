//! The RocksDB [`Engine`]: one column family per partition replica, keyed by the batch's
//! base offset (big-endian, [`fjord_protocol::codec::offset_key`]), plus a `meta` column
//! family keyed by [`fjord_protocol::codec::meta_key`].
//!
//! Memory is bounded for any number of partitions: one LRU block cache and one
//! `db_write_buffer_size` cap are shared by every column family.

use crate::engine::{Engine, WriteOp};
use crate::error::{Error, Result};
use fjord_protocol::codec::{decode_offset_key, meta_key, meta_range, offset_key, state_prefix, MetaKey};
use parking_lot::Mutex;
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, MultiThreaded, Options, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Db = rocksdb::DBWithThreadMode<MultiThreaded>;

const META_CF: &str = "meta";

/// When RocksDB's write-ahead log is fsynced.
///
/// A process kill (`kill -9`) never loses a write RocksDB acknowledged: the WAL is
/// written to the OS before the write returns. The policy decides what a machine crash
/// or power loss may lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WalSync {
    /// fsync before acknowledging every write. Concurrent writers share one fsync
    /// (RocksDB's group commit). Loses nothing on power loss.
    Always,
    /// fsync in the background every `wal_sync_interval_ms`; a power loss may lose that
    /// window (replication covers it in a cluster, as in Kafka).
    #[default]
    Interval,
}

/// How RocksDB compresses the blocks of a partition's files.
///
/// Kafka brokers store batches as the producer sent them (`compression.type=producer`,
/// and producers default to no compression); Fjord likewise defaults to `none`: log
/// values are written once and read sequentially, and compressing incompressible payloads
/// cost 13% of the server's CPU under produce load (bench/README.md, "Profiles").
/// Choose `lz4` for compressible data (JSON) when disk matters more than CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Lz4,
}

impl Compression {
    fn rocks(self) -> rocksdb::DBCompressionType {
        match self {
            Compression::None => rocksdb::DBCompressionType::None,
            Compression::Lz4 => rocksdb::DBCompressionType::Lz4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RocksOptions {
    pub wal_sync: WalSync,
    /// Shared block cache for all partitions.
    pub block_cache_bytes: usize,
    /// Cap on all memtables together.
    pub write_buffer_bytes: usize,
    pub compression: Compression,
    /// Below this many bytes available on the data directory's file system, writes that
    /// add data are refused (`insufficient_storage`) before RocksDB runs out of space —
    /// a write RocksDB itself cannot make leaves it read-only until restart. `0`: no
    /// check.
    pub min_free_bytes: u64,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            wal_sync: WalSync::Interval,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 128 << 20,
            compression: Compression::None,
            min_free_bytes: 0,
        }
    }
}

/// How long a measurement of the free space is trusted.
const FREE_SPACE_CHECK_EVERY: Duration = Duration::from_millis(100);

/// The data directory's free space, measured at most every [`FREE_SPACE_CHECK_EVERY`].
struct FreeSpace {
    path: PathBuf,
    min_free: u64,
    /// When it was last measured, and whether it was enough then.
    last: Mutex<Option<(Instant, bool)>>,
}

impl FreeSpace {
    /// `Err(NoSpace)` while less than `min_free` bytes are available.
    fn check(&self) -> Result<()> {
        if self.min_free == 0 {
            return Ok(());
        }
        let mut last = self.last.lock();
        let enough = match *last {
            Some((at, enough)) if at.elapsed() < FREE_SPACE_CHECK_EVERY => enough,
            _ => {
                // A file system that cannot be asked is not taken for a full one.
                let enough = rustix::fs::statvfs(&self.path)
                    .map_or(true, |v| v.f_bavail.saturating_mul(v.f_frsize) >= self.min_free);
                *last = Some((Instant::now(), enough));
                enough
            }
        };
        if enough {
            Ok(())
        } else {
            Err(Error::NoSpace(format!(
                "this node's data directory has less than storage.min_free_bytes ({}) available; nothing was written",
                self.min_free
            )))
        }
    }
}

pub struct RocksEngine {
    db: Db,
    cf_opts: Options,
    write_opts: WriteOptions,
    free: FreeSpace,
}

fn backend(e: rocksdb::Error) -> Error {
    let msg = e.into_string();
    if msg.contains("No space left on device") {
        return Error::NoSpace(format!(
            "the data directory is full; this node takes no writes until it restarts ({msg})"
        ));
    }
    Error::Engine(msg)
}

impl RocksEngine {
    pub fn open(path: &Path, opts: &RocksOptions) -> Result<Self> {
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_block_size(64 << 10);

        let mut cf_opts = Options::default();
        cf_opts.set_block_based_table_factory(&table);
        cf_opts.set_compression_type(opts.compression.rocks());
        cf_opts.set_write_buffer_size((opts.write_buffer_bytes / 4).max(1 << 20));

        let mut db_opts = cf_opts.clone();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_db_write_buffer_size(opts.write_buffer_bytes);
        db_opts.set_max_background_jobs(2);
        db_opts.set_enable_pipelined_write(true);
        // Hand written WAL and table data to the disk in 1 MiB steps (sync_file_range)
        // instead of leaving it all to the periodic WAL fsync and the kernel's writeback,
        // whose bursts showed up as produce and end-to-end tail latency.
        db_opts.set_wal_bytes_per_sync(1 << 20);
        db_opts.set_bytes_per_sync(1 << 20);

        let existing = match Db::list_cf(&db_opts, path) {
            Ok(names) => names,
            Err(_) => vec![rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_owned()],
        };
        let mut names: Vec<String> = existing;
        if !names.iter().any(|n| n == META_CF) {
            names.push(META_CF.to_owned());
        }
        // The meta column family is read by key on the produce path (exactly-once
        // appends look up each batch's idempotency key or producer): small blocks and a
        // bloom filter, in the table and the memtable, so a lookup of a new key — the
        // common case — touches no data block.
        let mut meta_table = BlockBasedOptions::default();
        meta_table.set_block_cache(&cache);
        meta_table.set_block_size(4 << 10);
        meta_table.set_bloom_filter(10.0, false);
        meta_table.set_whole_key_filtering(true);
        let mut meta_opts = cf_opts.clone();
        meta_opts.set_block_based_table_factory(&meta_table);
        meta_opts.set_memtable_prefix_bloom_ratio(0.1);
        meta_opts.set_memtable_whole_key_filtering(true);
        let descriptors = names.iter().map(|n| {
            let opts = if n == META_CF { meta_opts.clone() } else { cf_opts.clone() };
            ColumnFamilyDescriptor::new(n, opts)
        });
        let db = Db::open_cf_descriptors(&db_opts, path, descriptors).map_err(backend)?;

        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(opts.wal_sync == WalSync::Always);
        let free = FreeSpace { path: path.to_owned(), min_free: opts.min_free_bytes, last: Mutex::new(None) };
        Ok(Self { db, cf_opts, write_opts, free })
    }

    fn cf(&self, name: &str) -> Result<std::sync::Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db.cf_handle(name).ok_or_else(|| Error::NoSuchStore(name.to_owned()))
    }

    fn meta_cf(&self) -> Result<std::sync::Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db.cf_handle(META_CF).ok_or_else(|| Error::Engine("meta column family missing".into()))
    }
}

fn is_partition_cf(name: &str) -> bool {
    name != META_CF && name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME
}

impl Engine for RocksEngine {
    fn list_partitions(&self) -> Result<Vec<String>> {
        let names = Db::list_cf(&Options::default(), self.db.path()).map_err(backend)?;
        Ok(names.into_iter().filter(|n| is_partition_cf(n)).collect())
    }

    fn create_partition(&self, name: &str) -> Result<()> {
        if !is_partition_cf(name) {
            return Err(Error::Engine(format!("`{name}` is a reserved column family name")));
        }
        if self.db.cf_handle(name).is_some() {
            return Ok(());
        }
        self.db.create_cf(name, &self.cf_opts).map_err(backend)
    }

    fn drop_partition(&self, name: &str) -> Result<()> {
        if self.db.cf_handle(name).is_some() {
            self.db.drop_cf(name).map_err(backend)?;
        }
        let meta = self.meta_cf()?;
        let mut batch = WriteBatch::default();
        let (start, end) = meta_range(name);
        batch.delete_range_cf(&meta, start, end);
        self.db.write_opt(batch, &self.write_opts).map_err(backend)
    }

    fn write(&self, name: &str, ops: &[WriteOp<'_>]) -> Result<()> {
        // Writes that add data are refused while space is low; deletions (retention,
        // compaction) pass: they free it.
        if ops.iter().any(|op| matches!(op, WriteOp::PutBatch { .. })) {
            self.free.check()?;
        }
        let cf = self.cf(name)?;
        let mut batch = WriteBatch::default();
        for op in ops {
            match *op {
                WriteOp::PutBatch { base_offset, bytes } => batch.put_cf(&cf, offset_key(base_offset), bytes),
                WriteOp::DeleteBatches { from, to } => batch.delete_range_cf(&cf, offset_key(from), offset_key(to)),
                WriteOp::DeleteBatch { base_offset } => batch.delete_cf(&cf, offset_key(base_offset)),
                WriteOp::PutMeta { key, value } => batch.put_cf(&self.meta_cf()?, meta_key(name, key), value),
                WriteOp::PutState { key, value } => batch.put_cf(&self.meta_cf()?, state_prefix(name, key), value),
                WriteOp::DeleteState { key } => batch.delete_cf(&self.meta_cf()?, state_prefix(name, key)),
            }
        }
        self.db.write_opt(batch, &self.write_opts).map_err(backend)
    }

    fn get_meta(&self, name: &str, key: MetaKey) -> Result<Option<Vec<u8>>> {
        self.cf(name)?;
        self.db.get_cf(&self.meta_cf()?, meta_key(name, key)).map_err(backend)
    }

    fn scan(&self, name: &str, offset: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<()> {
        let cf = self.cf(name)?;
        let mut it = self.db.raw_iterator_cf(&cf);
        it.seek_for_prev(offset_key(offset));
        if !it.valid() {
            it.status().map_err(backend)?;
            it.seek_to_first();
        }
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let base = decode_offset_key(k).map_err(|e| Error::Engine(format!("bad key in `{name}`: {e}")))?;
            if !f(base, v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(backend)
    }

    fn last_batch(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let cf = self.cf(name)?;
        let mut it = self.db.raw_iterator_cf(&cf);
        it.seek_to_last();
        if it.valid() {
            return Ok(it.value().map(<[u8]>::to_vec));
        }
        it.status().map_err(backend)?;
        Ok(None)
    }

    fn get_state(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.cf(name)?;
        self.db.get_cf(&self.meta_cf()?, state_prefix(name, key)).map_err(backend)
    }

    fn scan_state(&self, name: &str, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        self.cf(name)?;
        let meta = self.meta_cf()?;
        let full = state_prefix(name, prefix);
        let skip = state_prefix(name, b"").len();
        let mut it = self.db.raw_iterator_cf(&meta);
        it.seek(&full);
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            if !k.starts_with(&full) || !f(&k[skip..], v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(backend)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(backend)
    }
}
