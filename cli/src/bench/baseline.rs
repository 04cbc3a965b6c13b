//! The two baselines, measured in the same invocation so results read as fractions of
//! this machine's limits:
//!
//! - **storage**: the same batches appended (or, for `consume`, read) straight through
//!   [`PartitionLog`] over a [`RocksEngine`] in a temp dir, with the storage node's
//!   default options (including its 200 ms background WAL sync), one log per partition,
//!   each append on a blocking thread as the storage node does, same concurrency;
//! - **http**: the same requests (same body bytes, same concurrency, same client) against
//!   an in-process axum server on 127.0.0.1:0 that reads the body and answers 200 `{}`
//!   (for `consume`: answers every GET with a real consume answer captured from the run).
//!
//! Both run closed loop: they measure limits, whatever `--rate` the main run used.

use super::driver::{drive, Op, Outcome, Plan, Stats};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use fjord_log::{Engine, PartitionLog, RocksEngine};
use fjord_protocol::Batch;
use fjord_storage_node::NodeConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A temp-dir RocksDB with one log per partition, synced in the background like the
/// storage node's `wal_sync = "interval"`.
pub struct Store {
    pub logs: Arc<Vec<Arc<PartitionLog>>>,
    syncer: tokio::task::JoinHandle<()>,
    // Dropped last: removes the files.
    _dir: tempfile::TempDir,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.syncer.abort();
    }
}

impl Store {
    pub async fn open(partitions: u32) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temp dir for the storage baseline")?;
        let config = NodeConfig::default();
        let opts = config.rocks_options();
        let path = dir.path().join("storage");
        let logs = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(&path, &opts)?);
            let logs = (0..partitions)
                .map(|p| PartitionLog::open(engine.clone(), &format!("bench-{p}")).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((engine, logs))
        })
        .await??;
        let (engine, logs) = logs;
        let every = Duration::from_millis(config.wal_sync_interval_ms);
        let syncer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let engine = engine.clone();
                // A failed sync would show in the storage node's log; here it only
                // changes what the baseline measures, so it is ignored.
                let _ = tokio::task::spawn_blocking(move || engine.sync()).await;
            }
        });
        Ok(Self { logs: Arc::new(logs), syncer, _dir: dir })
    }
}

/// Appends a batch to the partitions in turn, as a leader does (append, then raise the
/// high watermark).
pub struct AppendOp {
    pub logs: Arc<Vec<Arc<PartitionLog>>>,
    pub next: usize,
    pub batch: Bytes,
    pub records: u64,
    pub bytes: u64,
}

impl Op for AppendOp {
    async fn call(&mut self, _intended: Instant) -> Outcome {
        let Some(log) = self.logs.get(self.next % self.logs.len().max(1)).cloned() else {
            return Outcome::err("no_partition");
        };
        self.next = self.next.wrapping_add(1);
        let batch = self.batch.clone();
        let done = tokio::task::spawn_blocking(move || {
            let stored = log.append(batch, 1)?;
            log.advance_high_watermark(stored.next_offset());
            Ok::<_, fjord_log::Error>(())
        })
        .await;
        match done {
            Ok(Ok(())) => Outcome::ok(self.records, self.bytes),
            Ok(Err(_)) => Outcome::err("storage_error"),
            Err(_) => Outcome::err("task_failed"),
        }
    }
}

/// Reads one partition from its start to its end, again and again.
pub struct ReadOp {
    pub log: Arc<PartitionLog>,
    pub next: u64,
    pub max_bytes: usize,
    pub record_size: u64,
    pub max_records: u64,
}

impl Op for ReadOp {
    async fn call(&mut self, _intended: Instant) -> Outcome {
        let log = self.log.clone();
        let (offset, max_bytes) = (self.next, self.max_bytes);
        let read = tokio::task::spawn_blocking(move || {
            let hw = log.offsets().high_watermark;
            log.read(offset, max_bytes, hw).map(|batches| (batches, hw))
        })
        .await;
        let (batches, hw) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => return Outcome::err("storage_error"),
            Err(_) => return Outcome::err("task_failed"),
        };
        // Count the records at or after `offset`, at most max_records, like the gateway.
        let mut records = 0u64;
        let mut next = offset;
        for b in batches {
            let Ok(batch) = Batch::parse(b) else { return Outcome::err("corrupt_batch") };
            let from = batch.base_offset().max(offset);
            let upto = batch.next_offset().min(hw);
            let n = upto.saturating_sub(from).min(self.max_records - records);
            records += n;
            next = from + n;
            if records >= self.max_records {
                break;
            }
        }
        self.next = if records == 0 || next >= hw { self.log.offsets().log_start } else { next };
        Outcome::ok(records, records * self.record_size)
    }
}

/// Appends `batch` to every log until each holds about `bytes_per_log` bytes (not measured).
pub async fn prefill(store: &Store, batch: &Bytes, bytes_per_log: u64) -> anyhow::Result<()> {
    let per_batch = batch.len().max(1) as u64;
    let rounds = bytes_per_log.div_ceil(per_batch).max(1);
    let logs = store.logs.clone();
    let batch = batch.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for log in logs.iter() {
            for _ in 0..rounds {
                let stored = log.append(batch.clone(), 1)?;
                log.advance_high_watermark(stored.next_offset());
            }
        }
        Ok(())
    })
    .await?
}

/// Storage baseline for `consume`: prefill, then read like the consumers do.
pub async fn storage_read(
    partitions: u32,
    workers: usize,
    batch: Bytes,
    prefill_bytes: u64,
    read: (usize, u64, u64),
    plan: impl Fn() -> Plan,
) -> anyhow::Result<(Stats, Plan)> {
    let (max_bytes, max_records, record_size) = read;
    let store = Store::open(partitions).await?;
    prefill(&store, &batch, prefill_bytes / u64::from(partitions.max(1))).await?;
    let ops = (0..workers)
        .map(|i| {
            let log = store.logs[i % store.logs.len()].clone();
            ReadOp { log, next: 0, max_bytes, record_size, max_records }
        })
        .collect();
    let plan = plan();
    let stats = drive(plan, ops).await?;
    Ok((stats, plan))
}

/// A no-op HTTP server: POST reads the body and answers `{}`; GET answers `get_body`.
pub struct NoopServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NoopServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NoopServer {
    pub async fn start(get_body: Bytes) -> anyhow::Result<Self> {
        let handler = move |method: Method, body: Bytes| {
            let get_body = get_body.clone();
            async move {
                let out = if method == Method::GET {
                    get_body
                } else {
                    // Touch the body so it cannot be optimised away.
                    std::hint::black_box(body.len());
                    Bytes::from_static(b"{}")
                };
                (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], out).into_response()
            }
        };
        let app = axum::Router::new().fallback(handler).layer(DefaultBodyLimit::disable());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the no-op server")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // The server only ends when the task is aborted.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}
