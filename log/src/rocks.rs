//! The RocksDB [`Engine`]: every partition replica's batches in one shared `log` column
//! family, keyed `{store}\0{base offset}` ([`fjord_protocol::codec::batch_key`]); their
//! metadata and producer state in the `meta` column family (`{store}\0{key}`,
//! [`fjord_protocol::codec::meta_key`]), which also lists the stores that exist
//! (`\xff{store}`, [`fjord_protocol::codec::store_key`]).
//!
//! **Why one family for all.** The first layout gave each replica its own column family.
//! RocksDB rewrites, fsyncs and re-reads its OPTIONS file — one section per family — on
//! every family created or dropped, so a new topic of N partitions took O(N²) to open:
//! 87 s for 1,000, and 10,000 never (bench/README.md, "Scale"). Creating a store is now one
//! key, and memory, open files and start-up time do not grow with the number of
//! partitions: one memtable, one block cache and one set of files serve them all.
//!
//! **Values in blob files.** Batches of at least [`MIN_BLOB_BYTES`] go to RocksDB's blob
//! files at flush and stay there: the partitions' keys interleave in the family's files,
//! and without blobs every compaction would rewrite the log data of every partition it
//! touched. Compactions move keys and blob references only; a blob file goes once no key
//! points into it (retention, deletes). Blob garbage collection is off: it rewrote the
//! live blobs of the oldest files and took the disk writes per payload byte from 2.3 to
//! 4.0 (bench/README.md, "Scale"); the price is that a file holding one long-kept batch
//! (a compacted topic's, say) keeps its expired neighbours on disk too.
//!
//! **Earlier data directories** (one family per replica) are migrated on open: each
//! replica's batches are copied into the shared family, made durable, and its family
//! dropped; the metadata keys already had today's layout.

use crate::engine::{Engine, EngineStats, FamilyStats, WriteOp};
use crate::error::{Error, Result};
use fjord_protocol::codec::{
    batch_key, batch_range, decode_batch_key, decode_offset_key, decode_store_key, meta_key, meta_range, state_prefix,
    store_key, MetaKey, STORE_KEY_PREFIX,
};
use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, MultiThreaded, Options, ReadOptions, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Db = rocksdb::DBWithThreadMode<MultiThreaded>;

const META_CF: &str = "meta";
const LOG_CF: &str = "log";

/// Batches of at least this many bytes are stored in blob files (see the module docs);
/// smaller ones (a single small record) stay in the family's table files.
pub const MIN_BLOB_BYTES: u64 = 512;

/// How much of a legacy column family one write of its migration copies.
const MIGRATION_WRITE_BYTES: usize = 4 << 20;

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
    write_opts: WriteOptions,
    free: FreeSpace,
    /// The stores that exist. Writes and reads hold it shared, so a drop (exclusive)
    /// never interleaves with them: nothing lands in a store's range after its drop.
    stores: RwLock<BTreeSet<String>>,
    /// Batch key ranges of stores dropped and not yet compacted away.
    dropped: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    /// One [`Engine::reclaim_dropped`] at a time.
    reclaiming: Mutex<()>,
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

/// Table and blob files RocksDB keeps open at once (the rest wait in its file caches, and
/// are opened again when read): half the process's file-descriptor limit — the other half
/// is for connections — and 256 to 8,192. The number of files grows with the data, not
/// with the partitions.
fn max_open_files() -> i32 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    i32::try_from((limit / 2).clamp(256, 8192)).unwrap_or(8192)
}

/// A column family of the first layout: one partition store.
fn is_legacy_store_cf(name: &str) -> bool {
    name != META_CF && name != LOG_CF && name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME
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
        db_opts.set_max_open_files(max_open_files());

        // Every partition's appends share this family's memtables: half the memory cap
        // each, and up to four (one filling, the others flushing), so a flush in progress
        // does not stall writers; `db_write_buffer_size` still caps them all.
        let mut log_opts = cf_opts.clone();
        log_opts.set_write_buffer_size((opts.write_buffer_bytes / 2).max(1 << 20));
        log_opts.set_max_write_buffer_number(4);
        log_opts.set_enable_blob_files(true);
        log_opts.set_min_blob_size(MIN_BLOB_BYTES);
        log_opts.set_blob_compression_type(opts.compression.rocks());
        // No blob garbage collection: see the module docs.
        log_opts.set_enable_blob_gc(false);
        log_opts.set_blob_cache(&cache);

        let mut names =
            Db::list_cf(&db_opts, path).unwrap_or_else(|_| vec![rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_owned()]);
        for wanted in [META_CF, LOG_CF] {
            if !names.iter().any(|n| n == wanted) {
                names.push(wanted.to_owned());
            }
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
            let opts = match n.as_str() {
                META_CF => meta_opts.clone(),
                LOG_CF => log_opts.clone(),
                _ => cf_opts.clone(),
            };
            ColumnFamilyDescriptor::new(n, opts)
        });
        let db = Db::open_cf_descriptors(&db_opts, path, descriptors).map_err(backend)?;

        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(opts.wal_sync == WalSync::Always);
        let free = FreeSpace { path: path.to_owned(), min_free: opts.min_free_bytes, last: Mutex::new(None) };
        let engine = Self {
            db,
            write_opts,
            free,
            stores: RwLock::new(BTreeSet::new()),
            dropped: Mutex::new(Vec::new()),
            reclaiming: Mutex::new(()),
        };
        *engine.stores.write() = engine.stored_names()?;
        for legacy in names.iter().filter(|n| is_legacy_store_cf(n)) {
            engine.migrate(legacy)?;
        }
        Ok(engine)
    }

    /// The stores the metadata family lists.
    fn stored_names(&self) -> Result<BTreeSet<String>> {
        let meta = self.meta_cf()?;
        let mut it = self.db.raw_iterator_cf(&meta);
        it.seek([STORE_KEY_PREFIX]);
        let mut names = BTreeSet::new();
        while let Some(k) = it.key() {
            let name = decode_store_key(k).map_err(|e| Error::Engine(format!("bad store key: {e}")))?;
            names.insert(name.to_owned());
            it.next();
        }
        it.status().map_err(backend)?;
        Ok(names)
    }

    /// Moves a legacy store's column family into the shared log family: its batches
    /// copied, made durable, the store listed, then its family dropped. Interrupted, it
    /// runs again on the next open (the copies are the same keys and values).
    fn migrate(&self, name: &str) -> Result<()> {
        let log = self.log_cf()?;
        let (mut batches, mut bytes) = (0u64, 0u64);
        {
            let legacy = self.db.cf_handle(name).ok_or_else(|| Error::NoSuchStore(name.to_owned()))?;
            let mut it = self.db.raw_iterator_cf(&legacy);
            it.seek_to_first();
            let mut batch = WriteBatch::default();
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                let base = decode_offset_key(k).map_err(|e| Error::Engine(format!("bad key in `{name}`: {e}")))?;
                batch.put_cf(&log, batch_key(name, base), v);
                (batches, bytes) = (batches + 1, bytes + v.len() as u64);
                if batch.size_in_bytes() >= MIGRATION_WRITE_BYTES {
                    self.db.write_opt(std::mem::take(&mut batch), &self.write_opts).map_err(backend)?;
                }
                it.next();
            }
            it.status().map_err(backend)?;
            batch.put_cf(&self.meta_cf()?, store_key(name), b"");
            self.db.write_opt(batch, &self.write_opts).map_err(backend)?;
        }
        // Durable before the original goes.
        self.db.flush_wal(true).map_err(backend)?;
        self.db.drop_cf(name).map_err(backend)?;
        self.stores.write().insert(name.to_owned());
        tracing::info!(store = name, batches, bytes, "moved a partition store into the shared log column family");
        Ok(())
    }

    fn log_cf(&self) -> Result<std::sync::Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db.cf_handle(LOG_CF).ok_or_else(|| Error::Engine("log column family missing".into()))
    }

    fn meta_cf(&self) -> Result<std::sync::Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db.cf_handle(META_CF).ok_or_else(|| Error::Engine("meta column family missing".into()))
    }

    /// A read lock on the store list, after checking that `name` is on it (recursive: a
    /// scan's callback may call the engine again while a drop waits).
    fn existing(&self, name: &str) -> Result<parking_lot::RwLockReadGuard<'_, BTreeSet<String>>> {
        let stores = self.stores.read_recursive();
        if !stores.contains(name) {
            return Err(Error::NoSuchStore(name.to_owned()));
        }
        Ok(stores)
    }

    /// An iterator over `name`'s batches only.
    fn batches(&self, name: &str) -> Result<rocksdb::DBRawIteratorWithThreadMode<'_, Db>> {
        let (start, end) = batch_range(name);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(start);
        ro.set_iterate_upper_bound(end);
        Ok(self.db.raw_iterator_cf_opt(&self.log_cf()?, ro))
    }
}

impl Engine for RocksEngine {
    fn list_partitions(&self) -> Result<Vec<String>> {
        Ok(self.stores.read().iter().cloned().collect())
    }

    fn create_partition(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.contains('\0') {
            return Err(Error::Engine(format!("`{}` is not a valid store name", name.escape_debug())));
        }
        if self.stores.read().contains(name) {
            return Ok(());
        }
        let mut stores = self.stores.write();
        if stores.contains(name) {
            return Ok(());
        }
        self.db.put_cf_opt(&self.meta_cf()?, store_key(name), b"", &self.write_opts).map_err(backend)?;
        stores.insert(name.to_owned());
        Ok(())
    }

    fn drop_partition(&self, name: &str) -> Result<()> {
        let mut stores = self.stores.write();
        let (log, meta) = (self.log_cf()?, self.meta_cf()?);
        let mut batch = WriteBatch::default();
        let (start, end) = batch_range(name);
        batch.delete_range_cf(&log, &start, &end);
        let (meta_start, meta_end) = meta_range(name);
        batch.delete_range_cf(&meta, meta_start, meta_end);
        batch.delete_cf(&meta, store_key(name));
        self.db.write_opt(batch, &self.write_opts).map_err(backend)?;
        let existed = stores.remove(name);
        drop(stores);
        if !existed {
            return Ok(());
        }
        // Table files wholly inside the range go at once; the rest of the space comes back
        // when a compaction passes over the range (`reclaim_dropped`, or RocksDB's own).
        self.db.delete_file_in_range_cf(&log, &start, &end).map_err(backend)?;
        self.dropped.lock().push((start, end));
        Ok(())
    }

    fn write(&self, name: &str, ops: &[WriteOp<'_>]) -> Result<()> {
        // Writes that add data are refused while space is low; deletions (retention,
        // compaction) pass: they free it.
        if ops.iter().any(|op| matches!(op, WriteOp::PutBatch { .. })) {
            self.free.check()?;
        }
        let _exists = self.existing(name)?;
        let (log, meta) = (self.log_cf()?, self.meta_cf()?);
        let mut batch = WriteBatch::default();
        for op in ops {
            match *op {
                WriteOp::PutBatch { base_offset, bytes } => batch.put_cf(&log, batch_key(name, base_offset), bytes),
                WriteOp::DeleteBatches { from, to } => {
                    batch.delete_range_cf(&log, batch_key(name, from), batch_key(name, to))
                }
                WriteOp::DeleteBatch { base_offset } => batch.delete_cf(&log, batch_key(name, base_offset)),
                WriteOp::PutMeta { key, value } => batch.put_cf(&meta, meta_key(name, key), value),
                WriteOp::PutState { key, value } => batch.put_cf(&meta, state_prefix(name, key), value),
                WriteOp::DeleteState { key } => batch.delete_cf(&meta, state_prefix(name, key)),
            }
        }
        self.db.write_opt(batch, &self.write_opts).map_err(backend)
    }

    fn get_meta(&self, name: &str, key: MetaKey) -> Result<Option<Vec<u8>>> {
        let _exists = self.existing(name)?;
        self.db.get_cf(&self.meta_cf()?, meta_key(name, key)).map_err(backend)
    }

    fn scan(&self, name: &str, offset: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<()> {
        let _exists = self.existing(name)?;
        let mut it = self.batches(name)?;
        it.seek_for_prev(batch_key(name, offset));
        if !it.valid() {
            it.status().map_err(backend)?;
            it.seek_to_first();
        }
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let base = decode_batch_key(name, k).map_err(|e| Error::Engine(format!("bad key in `{name}`: {e}")))?;
            if !f(base, v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(backend)
    }

    fn last_batch(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let _exists = self.existing(name)?;
        let mut it = self.batches(name)?;
        it.seek_to_last();
        if let Some(v) = it.value() {
            return Ok(Some(v.to_vec()));
        }
        it.status().map_err(backend)?;
        Ok(None)
    }

    fn get_state(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _exists = self.existing(name)?;
        self.db.get_cf(&self.meta_cf()?, state_prefix(name, key)).map_err(backend)
    }

    fn scan_state(&self, name: &str, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let _exists = self.existing(name)?;
        let meta = self.meta_cf()?;
        let full = state_prefix(name, prefix);
        let skip = state_prefix(name, b"").len();
        let mut it = self.db.raw_iterator_cf(&meta);
        it.seek(&full);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
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

    /// Compacts each dropped store's key range: the keys go, and with them the blob files
    /// no key refers to any more. In the sorted levels a store's keys are contiguous, so
    /// this rewrites the keys of the files around the range (and the newest level), not the
    /// whole family, and no blob.
    fn reclaim_dropped(&self) -> Result<()> {
        let _one = self.reclaiming.lock();
        loop {
            let next = self.dropped.lock().pop();
            let Some((start, end)) = next else { return Ok(()) };
            self.db.compact_range_cf(&self.log_cf()?, Some(&start), Some(&end));
        }
    }

    fn stats(&self) -> EngineStats {
        let int = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        let families = [META_CF, LOG_CF]
            .into_iter()
            .filter_map(|name| {
                let cf = self.db.cf_handle(name)?;
                let int = |p: &str| self.db.property_int_value_cf(&cf, p).ok().flatten().unwrap_or(0);
                let stalls = self.db.property_value_cf(&cf, "rocksdb.cf-write-stall-stats").ok().flatten();
                let stalls = stalls.as_deref().unwrap_or("");
                Some(FamilyStats {
                    name,
                    memtable_bytes: int("rocksdb.cur-size-all-mem-tables"),
                    pending_compaction_bytes: int("rocksdb.estimate-pending-compaction-bytes"),
                    table_bytes: int("rocksdb.live-sst-files-size"),
                    blob_bytes: int("rocksdb.live-blob-file-size"),
                    stall_delays: stall_count(stalls, "total-delays"),
                    stall_stops: stall_count(stalls, "total-stops"),
                })
            })
            .collect();
        EngineStats {
            families,
            block_cache_usage_bytes: int("rocksdb.block-cache-usage"),
            block_cache_capacity_bytes: int("rocksdb.block-cache-capacity"),
            running_compactions: int("rocksdb.num-running-compactions"),
            running_flushes: int("rocksdb.num-running-flushes"),
            write_stopped: int("rocksdb.is-write-stopped") != 0,
            delayed_write_rate: int("rocksdb.actual-delayed-write-rate"),
        }
    }
}

/// One count of RocksDB's `rocksdb.cf-write-stall-stats` text (`Write Stall (count): a: 1,
/// total-delays: 0, total-stops: 0`); 0 where it is missing.
fn stall_count(text: &str, key: &str) -> u64 {
    let key = format!("{key}: ");
    text.split([',', '\n'])
        .find_map(|part| part.trim().strip_prefix(key.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_protocol::codec::offset_key;

    /// A data directory of the first layout: `store`'s batches in a column family of
    /// its own, keyed by the bare offset; its metadata already as today.
    fn write_legacy_layout(path: &Path, store: &str, batches: &[(u64, &[u8])], log_start: &[u8]) {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = Db::open_cf(&opts, path, [META_CF, store]).expect("open a legacy layout");
        let cf = db.cf_handle(store).expect("store family");
        for (base, bytes) in batches {
            db.put_cf(&cf, offset_key(*base), bytes).expect("put batch");
        }
        let meta = db.cf_handle(META_CF).expect("meta family");
        db.put_cf(&meta, meta_key(store, MetaKey::LogStart), log_start).expect("put meta");
    }

    fn all_batches(engine: &RocksEngine, store: &str) -> Vec<(u64, Vec<u8>)> {
        let mut seen = Vec::new();
        engine
            .scan(store, 0, &mut |base, bytes| {
                seen.push((base, bytes.to_vec()));
                true
            })
            .expect("scan");
        seen
    }

    /// Opening a data directory of the per-replica layout keeps every batch and value of
    /// it, serves them from the shared family, drops the old family, and a second open
    /// finds nothing more to move.
    #[test]
    fn a_per_replica_layout_is_moved_into_the_shared_family_on_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let big = vec![7u8; 4096];
        let batches: Vec<(u64, &[u8])> = vec![(0, b"first"), (3, &big), (9, b"last")];
        write_legacy_layout(dir.path(), "p.t.0", &batches, &5u64.to_be_bytes());
        let want: Vec<(u64, Vec<u8>)> = batches.iter().map(|(b, v)| (*b, v.to_vec())).collect();
        for open in 1..=2 {
            let engine = RocksEngine::open(dir.path(), &RocksOptions::default()).expect("open");
            assert_eq!(engine.list_partitions().expect("list"), vec!["p.t.0".to_owned()], "open {open}");
            assert_eq!(all_batches(&engine, "p.t.0"), want, "open {open}: every batch, in order");
            assert_eq!(engine.last_batch("p.t.0").expect("last"), Some(b"last".to_vec()));
            assert_eq!(
                engine.get_meta("p.t.0", MetaKey::LogStart).expect("meta"),
                Some(5u64.to_be_bytes().to_vec()),
                "open {open}: metadata kept"
            );
            drop(engine);
            let families = Db::list_cf(&Options::default(), dir.path()).expect("list families");
            assert!(!families.iter().any(|f| f == "p.t.0"), "open {open}: the old family is gone: {families:?}");
        }
    }

    fn live_blob_bytes(engine: &RocksEngine) -> u64 {
        let log = engine.log_cf().expect("log family");
        engine.db.property_int_value_cf(&log, "rocksdb.live-blob-file-size").expect("property").expect("a value")
    }

    /// **A dropped store's disk space comes back.** Its batches, flushed to blob files
    /// shared with another store's, stay on disk after the drop until
    /// `reclaim_dropped` compacts its range away; then the blob file holding them is gone
    /// and the other store still reads whole.
    #[test]
    fn a_dropped_stores_space_is_given_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = RocksEngine::open(dir.path(), &RocksOptions::default()).expect("open");
        let big = vec![3u8; 256 << 10];
        for store in ["p.t.0", "p.t.1"] {
            engine.create_partition(store).expect("create");
        }
        for base in 0..8 {
            engine.write("p.t.0", &[WriteOp::PutBatch { base_offset: base, bytes: &big }]).expect("write");
        }
        engine.write("p.t.1", &[WriteOp::PutBatch { base_offset: 0, bytes: b"small" }]).expect("write");
        engine.db.flush_cf(&engine.log_cf().expect("log")).expect("flush");
        assert!(live_blob_bytes(&engine) >= 2 << 20, "the batches are in blob files: {}", live_blob_bytes(&engine));

        engine.drop_partition("p.t.0").expect("drop");
        assert!(live_blob_bytes(&engine) >= 2 << 20, "the file holds another store's key: nothing is freed yet");
        engine.reclaim_dropped().expect("reclaim");
        assert!(live_blob_bytes(&engine) < 64 << 10, "left after the reclaim: {} bytes", live_blob_bytes(&engine));
        assert_eq!(all_batches(&engine, "p.t.1"), vec![(0, b"small".to_vec())]);
    }

    /// Stores with names that are prefixes of each other keep apart in the shared family:
    /// a scan, a last-batch look-up and a drop of one never see or touch the other.
    #[test]
    fn stores_whose_names_are_prefixes_of_each_other_stay_apart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = RocksEngine::open(dir.path(), &RocksOptions::default()).expect("open");
        for (store, bytes) in [("p.t.1", b"one"), ("p.t.10", b"ten"), ("p.t.100", b"hun")] {
            engine.create_partition(store).expect("create");
            engine.write(store, &[WriteOp::PutBatch { base_offset: 4, bytes }]).expect("write");
        }
        assert_eq!(all_batches(&engine, "p.t.1"), vec![(4, b"one".to_vec())]);
        assert_eq!(engine.last_batch("p.t.10").expect("last"), Some(b"ten".to_vec()));
        engine.drop_partition("p.t.10").expect("drop");
        assert_eq!(all_batches(&engine, "p.t.1"), vec![(4, b"one".to_vec())]);
        assert_eq!(all_batches(&engine, "p.t.100"), vec![(4, b"hun".to_vec())]);
        assert!(matches!(engine.scan("p.t.10", 0, &mut |_, _| true), Err(Error::NoSuchStore(_))));
        engine.create_partition("p.t.10").expect("re-create");
        assert_eq!(all_batches(&engine, "p.t.10"), vec![], "a re-created store starts empty");
        assert!(engine.create_partition("bad\0name").is_err(), "a NUL in a store name is refused");
    }

    /// The engine's figures follow what it holds: written batches show in the log
    /// family's memtable, a flush moves them into blob files and empties the memtable,
    /// reading them fills the block cache (within its configured capacity), and the
    /// write-stall counts RocksDB reports are parsed (a fresh store has none).
    #[test]
    fn stats_follow_what_is_written_and_flushed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = RocksOptions { block_cache_bytes: 8 << 20, ..RocksOptions::default() };
        let engine = RocksEngine::open(dir.path(), &opts).expect("open");
        let family = |stats: &EngineStats, name: &str| {
            stats.families.iter().find(|f| f.name == name).cloned().expect("family reported")
        };
        let empty = engine.stats();
        assert_eq!(empty.block_cache_capacity_bytes, 8 << 20);
        assert_eq!(family(&empty, LOG_CF).blob_bytes, 0);
        assert!(!empty.write_stopped);
        let raw = engine.db.property_value_cf(&engine.log_cf().expect("log"), "rocksdb.cf-write-stall-stats");
        let raw = raw.expect("property").expect("a value");
        assert!(raw.contains("total-stops: 0") && raw.contains("total-delays: 0"), "format: {raw}");

        engine.create_partition("p.t.0").expect("create");
        let big = vec![5u8; 64 << 10];
        for base in 0..32 {
            engine.write("p.t.0", &[WriteOp::PutBatch { base_offset: base, bytes: &big }]).expect("write");
        }
        let written = family(&engine.stats(), LOG_CF);
        assert!(written.memtable_bytes >= 2 << 20, "2 MiB in the memtable: {written:?}");
        assert_eq!(written.blob_bytes, 0, "nothing flushed yet");

        engine.db.flush_cf(&engine.log_cf().expect("log")).expect("flush");
        let flushed = family(&engine.stats(), LOG_CF);
        assert!(flushed.blob_bytes >= 2 << 20, "in blob files after the flush: {flushed:?}");
        assert!(flushed.memtable_bytes < 1 << 20, "the memtable emptied: {flushed:?}");
        assert!(flushed.table_bytes > 0, "the keys are in a table file: {flushed:?}");
        assert_eq!((flushed.stall_delays, flushed.stall_stops), (0, 0));

        let before = engine.stats().block_cache_usage_bytes;
        assert_eq!(all_batches(&engine, "p.t.0").len(), 32);
        let after = engine.stats();
        assert!(after.block_cache_usage_bytes > before, "reads fill the cache: {before} -> {after:?}");
        assert!(after.block_cache_usage_bytes <= after.block_cache_capacity_bytes);
    }

    #[test]
    fn write_stall_counts_are_read_from_rocksdbs_text() {
        let text = "Write Stall (count): cf-l0-file-count-limit-delays-with-ongoing-compaction: 1, \
                    memtable-limit-stops: 2, total-delays: 3, total-stops: 12\n";
        assert_eq!(stall_count(text, "total-delays"), 3);
        assert_eq!(stall_count(text, "total-stops"), 12);
        assert_eq!(stall_count(text, "memtable-limit-stops"), 2);
        assert_eq!(stall_count("", "total-stops"), 0);
    }
}
