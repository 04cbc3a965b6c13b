//! Group commit of produce appends. While one blocking append of a partition runs,
//! batches arriving for it queue up; the next run stamps them all and writes them in one
//! storage write (and, with `wal_sync = "always"`, one fsync). Each producer's batch
//! stays its own batch with its own offsets, so nothing is re-encoded, and no batch
//! waits for a timer: a lone request is written at once, as before.
//!
//! Profiled reason: with many small concurrent produce requests, a blocking-pool hand-off
//! and a RocksDB write per request made context switches the largest cost of the server
//! (bench/README.md, "Profiles").
//!
//! Answers are [`FjordError`]s, not this crate's [`Error`]: the queue serves the node's
//! produce path, whose errors go out as they are.

use crate::dedupe::Dedupe;
use crate::error::Error;
use crate::partition::{Append, Appended, PartitionLog};
use fjord_protocol::FjordError;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Told of every storage write a queue makes: how many produce batches it held (the
/// group-commit size) and how long the write took (with `wal_sync = "always"`, its fsync
/// included). Called on the writer's thread: keep it cheap.
pub type CommitObserver = Arc<dyn Fn(usize, Duration) + Send + Sync>;

struct Waiter {
    append: Append,
    epoch: u32,
    dedupe: Option<Dedupe>,
    tx: oneshot::Sender<Result<Appended, FjordError>>,
}

/// The appends waiting for one partition's writer.
pub struct AppendQueue {
    log: Arc<PartitionLog>,
    state: Mutex<QueueState>,
    observer: Option<CommitObserver>,
}

#[derive(Default)]
struct QueueState {
    waiting: Vec<Waiter>,
    /// A blocking task is draining `waiting`.
    running: bool,
}

impl AppendQueue {
    pub fn new(log: Arc<PartitionLog>) -> Arc<Self> {
        Arc::new(Self { log, state: Mutex::new(QueueState::default()), observer: None })
    }

    /// A queue that tells `observer` of each write it makes.
    pub fn with_observer(log: Arc<PartitionLog>, observer: CommitObserver) -> Arc<Self> {
        Arc::new(Self { log, state: Mutex::new(QueueState::default()), observer: Some(observer) })
    }

    /// Appends as the leader in `leader_epoch` ([`PartitionLog::append_all`]), possibly in
    /// one write with other producers' batches.
    pub async fn append(
        self: &Arc<Self>,
        append: Append,
        leader_epoch: u32,
        dedupe: Option<Dedupe>,
    ) -> Result<Appended, FjordError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.state.lock();
            s.waiting.push(Waiter { append, epoch: leader_epoch, dedupe, tx });
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            let queue = self.clone();
            tokio::task::spawn_blocking(move || queue.drain());
        }
        rx.await.map_err(|_| FjordError::from(Error::Aborted("the append task")))?
    }

    /// Writes what is waiting, in arrival order, until nothing is.
    fn drain(&self) {
        let _running = Running(self);
        loop {
            let waiting = {
                let mut s = self.state.lock();
                if s.waiting.is_empty() {
                    s.running = false;
                    return;
                }
                std::mem::take(&mut s.waiting)
            };
            // One write per run of equal epochs (a leadership change between two requests
            // splits them; the log refuses the stale epoch's run).
            let mut rest = waiting.into_iter().peekable();
            while let Some(first) = rest.next() {
                let (epoch, dedupe) = (first.epoch, first.dedupe);
                let mut appends = vec![first.append];
                let mut senders = vec![first.tx];
                while let Some(w) = rest.next_if(|w| w.epoch == epoch) {
                    appends.push(w.append);
                    senders.push(w.tx);
                }
                let (batches, started) = (appends.len(), Instant::now());
                let written = self.log.append_all(appends, epoch, dedupe);
                if let Some(observe) = &self.observer {
                    observe(batches, started.elapsed());
                }
                match written {
                    Ok(results) => {
                        for (result, tx) in results.into_iter().zip(senders) {
                            let _ = tx.send(result.map_err(FjordError::from));
                        }
                    }
                    Err(e) => {
                        let e = FjordError::from(e);
                        for tx in senders {
                            let _ = tx.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}

/// Lets a later append start a new drain if this one panicked (its waiters' senders are
/// dropped, so they get an error rather than hang).
struct Running<'a>(&'a AppendQueue);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.state.lock().running = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MemEngine;
    use bytes::Bytes;
    use fjord_protocol::{ErrorCode, Record};

    fn batch(n: usize) -> Bytes {
        let mut b = fjord_protocol::BatchBuilder::default();
        for i in 0..n {
            b.push(&Record { timestamp: 1, value: Some(Bytes::from(vec![i as u8])), ..Default::default() })
                .expect("push");
        }
        b.finish().expect("finish")
    }

    /// Many concurrent appends to one partition each get their own offsets: together
    /// they cover the log densely from 0 without overlap, the log ends after the last
    /// of them, and a corrupt batch among them fails alone. The observer hears of every
    /// batch once, in writes that hold one or more of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_get_disjoint_dense_offsets() {
        let log = Arc::new(PartitionLog::open(Arc::new(MemEngine::default()), "p").expect("open"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let observer: CommitObserver = {
            let seen = seen.clone();
            Arc::new(move |batches, _took| seen.lock().push(batches))
        };
        let queue = AppendQueue::with_observer(log.clone(), observer);
        let mut tasks = Vec::new();
        for i in 0..64usize {
            let queue = queue.clone();
            tasks.push(tokio::spawn(async move {
                let b = if i == 13 { Bytes::from_static(b"not a batch") } else { batch(i % 3 + 1) };
                (i, queue.append(b.into(), 0, None).await)
            }));
        }
        let mut spans = Vec::new();
        for t in tasks {
            let (i, result) = t.await.expect("task");
            if i == 13 {
                assert_eq!(result.expect_err("corrupt").code, ErrorCode::CorruptBatch);
                continue;
            }
            let b = result.expect("append");
            assert_eq!(b.record_count() as usize, i % 3 + 1);
            spans.push((b.base_offset(), b.next_offset()));
        }
        spans.sort_unstable();
        assert_eq!(spans.first().map(|s| s.0), Some(0));
        for w in spans.windows(2) {
            assert_eq!(w[0].1, w[1].0, "offsets are dense and disjoint: {spans:?}");
        }
        let total: usize = (0..64).filter(|i| *i != 13).map(|i| i % 3 + 1).sum();
        assert_eq!(log.offsets().log_end, total as u64);
        let seen = seen.lock();
        assert_eq!(seen.iter().sum::<usize>(), 64, "every batch observed once: {seen:?}");
        assert!(seen.iter().all(|n| *n >= 1));
    }

    /// A stale leader epoch is refused for its own requests only.
    #[tokio::test]
    async fn a_fenced_epoch_fails_only_its_run() {
        let log = Arc::new(PartitionLog::open(Arc::new(MemEngine::default()), "p").expect("open"));
        log.become_leader(2);
        let queue = AppendQueue::new(log.clone());
        let (stale, current) =
            tokio::join!(queue.append(batch(1).into(), 1, None), queue.append(batch(2).into(), 2, None));
        assert_eq!(stale.expect_err("fenced").code, ErrorCode::NotLeader);
        assert_eq!(current.expect("current epoch").base_offset(), 0);
        assert_eq!(log.offsets().log_end, 2);
    }
}
