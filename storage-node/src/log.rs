//! One partition replica's log, over any [`Engine`].
//!
//! Offsets are dense and never reused. The log keeps, in memory, the log start offset,
//! the log end offset (LEO: the next offset to write), the high watermark (HW: records
//! below it are committed and visible to consumers), its size, and the leader-epoch
//! history (KIP-101: epoch → first offset written in it). Everything but the HW is
//! recovered from the engine on open; the HW is raised by the replica layer.
//!
//! Appends (and retention) to one partition are serialized by a writer lock held across
//! the engine write, so offsets are assigned and stored in order. The offsets live under
//! a separate lock that is never held across I/O: readers only copy what they need.

use crate::engine::{Engine, EngineError, WriteOp};
use bytes::{Bytes, BytesMut};
use fjord_protocol::codec::{self, Batch, CodecError};
use fjord_protocol::{ErrorCode, FjordError};
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::watch;

const META_LOG_START: &str = "log_start";
const META_SIZE: &str = "size";
const META_EPOCHS: &str = "epochs";

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("corrupt batch: {0}")]
    Corrupt(#[from] CodecError),
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: u64, log_start: u64, log_end: u64 },
    #[error("stored metadata `{0}` is malformed")]
    BadMeta(&'static str),
    #[error("replicated batch starts at {got}, the log ends at {expected}")]
    NotContiguous { expected: u64, got: u64 },
    #[error("this replica is {role:?}; it cannot take this write")]
    Fenced { role: Role },
}

impl From<LogError> for FjordError {
    fn from(e: LogError) -> Self {
        let code = match &e {
            LogError::Engine(_) | LogError::BadMeta(_) | LogError::NotContiguous { .. } => ErrorCode::StorageError,
            LogError::Corrupt(_) => ErrorCode::CorruptBatch,
            LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            LogError::Fenced { .. } => ErrorCode::NotLeader,
        };
        FjordError::new(code, e.to_string())
    }
}

pub type LogResult<T> = Result<T, LogError>;

/// A snapshot of a log's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogOffsets {
    pub log_start: u64,
    pub log_end: u64,
    pub high_watermark: u64,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Default)]
struct State {
    log_start: u64,
    log_end: u64,
    high_watermark: u64,
    size_bytes: u64,
    /// (leader epoch, first offset written in that epoch), ascending.
    epochs: Vec<(u32, u64)>,
}

/// Who may write this log. Checked and changed under the writer lock, so a role change
/// waits for an append in flight and no append of an ended role lands after it (Kafka
/// guards the same with its partition's leader-ISR lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// No fencing: any append is taken (a log used on its own, as in unit tests).
    #[default]
    Unfenced,
    /// No writes at all (the partition has no leader).
    Offline,
    /// Leader in `epoch`; `start_offset` is the LEO it had when it became leader (where
    /// its epoch starts: a follower joins the ISR only once it has reached it).
    Leader { epoch: u32, start_offset: u64 },
    /// Follower in `epoch`; replicated appends only once truncated for it (KIP-101).
    Follower { epoch: u32, truncated: bool },
}

/// What retention removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Removed {
    pub batches: u64,
    pub bytes: u64,
}

pub struct PartitionLog {
    engine: Arc<dyn Engine>,
    name: String,
    /// Serializes appends and retention; held across their engine writes.
    writer: Mutex<()>,
    /// Held only to copy or update offsets, never across engine I/O, so readers on async
    /// threads never wait behind a write (or its fsync).
    state: Mutex<State>,
    /// Changed only with the writer lock held.
    role: Mutex<Role>,
    hw_tx: watch::Sender<u64>,
}

fn u64_meta(engine: &dyn Engine, name: &str, key: &'static str) -> LogResult<Option<u64>> {
    match engine.get_meta(name, key)? {
        None => Ok(None),
        Some(v) => {
            let arr: [u8; 8] = v.as_slice().try_into().map_err(|_| LogError::BadMeta(key))?;
            Ok(Some(u64::from_be_bytes(arr)))
        }
    }
}

fn encode_epochs(epochs: &[(u32, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(epochs.len() * 12);
    for (e, o) in epochs {
        out.extend_from_slice(&e.to_be_bytes());
        out.extend_from_slice(&o.to_be_bytes());
    }
    out
}

fn decode_epochs(bytes: &[u8]) -> LogResult<Vec<(u32, u64)>> {
    if !bytes.len().is_multiple_of(12) {
        return Err(LogError::BadMeta(META_EPOCHS));
    }
    Ok(bytes
        .chunks_exact(12)
        .map(|c| {
            let mut e = [0u8; 4];
            let mut o = [0u8; 8];
            e.copy_from_slice(&c[..4]);
            o.copy_from_slice(&c[4..]);
            (u32::from_be_bytes(e), u64::from_be_bytes(o))
        })
        .collect())
}

impl PartitionLog {
    /// Opens the log stored as `name`, creating it empty if it does not exist.
    pub fn open(engine: Arc<dyn Engine>, name: &str) -> LogResult<Self> {
        engine.create_partition(name)?;
        let log_start = u64_meta(&*engine, name, META_LOG_START)?.unwrap_or(0);
        let size_bytes = u64_meta(&*engine, name, META_SIZE)?.unwrap_or(0);
        let epochs = match engine.get_meta(name, META_EPOCHS)? {
            Some(b) => decode_epochs(&b)?,
            None => Vec::new(),
        };
        let log_end = match engine.last_batch(name)? {
            Some(bytes) => Batch::parse(Bytes::from(bytes))?.next_offset(),
            None => log_start,
        };
        // The HW is not trusted from disk: the replica layer re-establishes it (a lone
        // in-sync leader's HW is its LEO; a follower learns it from its leader).
        let state = State { log_start, log_end, high_watermark: log_start, size_bytes, epochs };
        Ok(Self {
            engine,
            name: name.to_owned(),
            writer: Mutex::new(()),
            state: Mutex::new(state),
            role: Mutex::new(Role::Unfenced),
            hw_tx: watch::channel(log_start).0,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn offsets(&self) -> LogOffsets {
        let s = self.state.lock();
        LogOffsets {
            log_start: s.log_start,
            log_end: s.log_end,
            high_watermark: s.high_watermark,
            size_bytes: s.size_bytes,
        }
    }

    /// The leader-epoch history: (epoch, first offset of that epoch).
    pub fn epochs(&self) -> Vec<(u32, u64)> {
        self.state.lock().epochs.clone()
    }

    /// Wakes when the high watermark changes.
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<u64> {
        self.hw_tx.subscribe()
    }

    pub fn role(&self) -> Role {
        *self.role.lock()
    }

    /// Becomes the leader in `epoch`, once any append in flight has finished.
    pub fn become_leader(&self, epoch: u32) {
        let _writer = self.writer.lock();
        let start_offset = self.state.lock().log_end;
        *self.role.lock() = Role::Leader { epoch, start_offset };
    }

    /// Becomes a follower in `epoch` (not yet truncated for it), once any append in
    /// flight has finished.
    pub fn become_follower(&self, epoch: u32) {
        let _writer = self.writer.lock();
        *self.role.lock() = Role::Follower { epoch, truncated: false };
    }

    /// A follower in `leader_epoch` whose log the leader found ahead of its own must
    /// truncate by epoch again before fetching; a no-op if the role has moved on.
    pub fn require_truncation(&self, leader_epoch: u32) {
        let _writer = self.writer.lock();
        let mut role = self.role.lock();
        if matches!(*role, Role::Follower { epoch, .. } if epoch == leader_epoch) {
            *role = Role::Follower { epoch: leader_epoch, truncated: false };
        }
    }

    /// Takes no writes, once any append in flight has finished.
    pub fn go_offline(&self) {
        let _writer = self.writer.lock();
        *self.role.lock() = Role::Offline;
    }

    /// Appends one encoded, validated batch as leader in `leader_epoch`, assigning offsets
    /// from the LEO. Returns the batch with its base offset and epoch stamped. Refused
    /// unless this log is unfenced or the leader in exactly that epoch.
    pub fn append(&self, batch: Bytes, leader_epoch: u32) -> LogResult<Batch> {
        let mut buf = batch.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let writer = self.writer.lock();
        match self.role() {
            Role::Unfenced => {}
            Role::Leader { epoch, .. } if epoch == leader_epoch => {}
            role => return Err(LogError::Fenced { role }),
        }
        let base = self.state.lock().log_end;
        codec::stamp(&mut buf, base, leader_epoch)?;
        let batch = Batch::parse(buf.freeze())?;
        self.store(&writer, batch)
    }

    /// Appends a batch its leader already stamped (a follower replicating in
    /// `leader_epoch`). A batch that ends at or before the LEO is already here and
    /// skipped (`Ok(false)`); one that does not start at the LEO is refused, so a
    /// follower's log stays dense. Refused unless this log is unfenced or a follower
    /// truncated for exactly that epoch.
    pub fn append_replicated(&self, batch: Batch, leader_epoch: u32) -> LogResult<bool> {
        let writer = self.writer.lock();
        match self.role() {
            Role::Unfenced => {}
            Role::Follower { epoch, truncated: true } if epoch == leader_epoch => {}
            role => return Err(LogError::Fenced { role }),
        }
        let log_end = self.state.lock().log_end;
        if batch.next_offset() <= log_end {
            return Ok(false);
        }
        if batch.base_offset() != log_end {
            return Err(LogError::NotContiguous { expected: log_end, got: batch.base_offset() });
        }
        self.store(&writer, batch)?;
        Ok(true)
    }

    /// Writes a stamped batch at the LEO. The caller holds the writer lock.
    fn store(&self, _writer: &parking_lot::MutexGuard<'_, ()>, batch: Batch) -> LogResult<Batch> {
        let epoch = batch.leader_epoch();
        let base = batch.base_offset();
        let (size_before, history) = {
            let s = self.state.lock();
            let new_epoch = s.epochs.last().is_none_or(|(e, _)| epoch > *e);
            (s.size_bytes, new_epoch.then(|| s.epochs.clone()))
        };
        let size = size_before + batch.len() as u64;
        let size_bytes = size.to_be_bytes();
        let epochs = history.map(|mut h| {
            h.push((epoch, base));
            encode_epochs(&h)
        });
        let mut ops = vec![
            WriteOp::PutBatch { base_offset: base, bytes: batch.as_bytes() },
            WriteOp::PutMeta { key: META_SIZE, value: &size_bytes },
        ];
        if let Some(epochs) = &epochs {
            ops.push(WriteOp::PutMeta { key: META_EPOCHS, value: epochs });
        }
        self.engine.write(&self.name, &ops)?;
        let mut s = self.state.lock();
        if epochs.is_some() {
            s.epochs.push((epoch, base));
        }
        s.log_end = batch.next_offset();
        s.size_bytes = size;
        Ok(batch)
    }

    /// Removes every record at or after `offset` — whole batches, so a batch holding
    /// `offset` goes entirely — for a follower whose log diverged from its new leader's
    /// (KIP-101). The epoch history and, if needed, the high watermark follow. Returns
    /// the new LEO.
    pub fn truncate_to(&self, offset: u64) -> LogResult<u64> {
        let writer = self.writer.lock();
        self.truncate_locked(&writer, offset)
    }

    /// A follower in `leader_epoch` truncating for it (KIP-101): cuts the log at
    /// `offset` and from then on takes replicated appends of that epoch. Refused if the
    /// role has moved on meanwhile.
    pub fn truncate_for_epoch(&self, leader_epoch: u32, offset: u64) -> LogResult<u64> {
        let writer = self.writer.lock();
        match self.role() {
            Role::Unfenced => {}
            Role::Follower { epoch, .. } if epoch == leader_epoch => {}
            role => return Err(LogError::Fenced { role }),
        }
        let end = self.truncate_locked(&writer, offset)?;
        if matches!(self.role(), Role::Follower { .. }) {
            *self.role.lock() = Role::Follower { epoch: leader_epoch, truncated: true };
        }
        Ok(end)
    }

    fn truncate_locked(&self, _writer: &parking_lot::MutexGuard<'_, ()>, offset: u64) -> LogResult<u64> {
        let (log_end, size) = {
            let s = self.state.lock();
            (s.log_end, s.size_bytes)
        };
        if offset >= log_end {
            return Ok(log_end);
        }
        let mut first_removed = None;
        let mut removed_bytes = 0u64;
        let mut err = None;
        self.engine.scan(&self.name, offset, &mut |base, bytes| {
            match Batch::parse(Bytes::copy_from_slice(bytes)) {
                Ok(b) if b.next_offset() <= offset => {}
                Ok(_) => {
                    first_removed.get_or_insert(base);
                    removed_bytes += bytes.len() as u64;
                }
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = err {
            return Err(e.into());
        }
        let Some(new_end) = first_removed else { return Ok(log_end) };
        let size = size.saturating_sub(removed_bytes);
        let size_bytes = size.to_be_bytes();
        let history: Vec<(u32, u64)> =
            self.state.lock().epochs.iter().copied().filter(|(_, start)| *start < new_end).collect();
        let epochs = encode_epochs(&history);
        self.engine.write(
            &self.name,
            &[
                WriteOp::DeleteBatches { from: new_end, to: u64::MAX },
                WriteOp::PutMeta { key: META_SIZE, value: &size_bytes },
                WriteOp::PutMeta { key: META_EPOCHS, value: &epochs },
            ],
        )?;
        let mut s = self.state.lock();
        s.log_end = new_end;
        s.size_bytes = size;
        s.epochs = history;
        if s.high_watermark > new_end {
            s.high_watermark = new_end;
            drop(s);
            self.hw_tx.send_replace(new_end);
        }
        Ok(new_end)
    }

    /// KIP-101/279: for a follower whose latest epoch is `epoch`, the largest epoch of
    /// this log that is `<= epoch` and the offset where it ends (where the next epoch
    /// starts, or the LEO for the latest epoch). `None` when every epoch here is later.
    pub fn epoch_end_offset(&self, epoch: u32) -> Option<(u32, u64)> {
        let s = self.state.lock();
        let idx = s.epochs.iter().rposition(|(e, _)| *e <= epoch)?;
        let end = s.epochs.get(idx + 1).map_or(s.log_end, |(_, start)| *start);
        Some((s.epochs[idx].0, end))
    }

    /// Raises the high watermark to `hw` (clamped to the LEO); never lowers it.
    pub fn advance_high_watermark(&self, hw: u64) {
        let mut s = self.state.lock();
        let hw = hw.min(s.log_end);
        if hw > s.high_watermark {
            s.high_watermark = hw;
            drop(s);
            // Concurrent advances may get here out of order: only ever raise the published
            // value, or a later, lower send would leave waiters below the real HW.
            self.hw_tx.send_if_modified(|published| {
                let raise = hw > *published;
                if raise {
                    *published = hw;
                }
                raise
            });
        }
    }

    /// Batches from the one holding `offset`, up to `max_bytes` (at least one batch),
    /// only batches that start below `upto` (the HW, for consumers).
    pub fn read(&self, offset: u64, max_bytes: usize, upto: u64) -> LogResult<Vec<Bytes>> {
        let (log_start, log_end) = {
            let s = self.state.lock();
            (s.log_start, s.log_end)
        };
        if offset < log_start || offset > log_end {
            return Err(LogError::OffsetOutOfRange { offset, log_start, log_end });
        }
        let mut out = Vec::new();
        let mut total = 0usize;
        self.engine.scan(&self.name, offset, &mut |base, bytes| {
            if base >= upto {
                return false;
            }
            if base > offset && out.is_empty() {
                // The batch holding `offset` is gone (retention ran concurrently).
                return false;
            }
            let count = bytes.get(17..21).map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
            if base + u64::from(count) <= offset {
                return true;
            }
            total += bytes.len();
            out.push(Bytes::copy_from_slice(bytes));
            total < max_bytes
        })?;
        if out.is_empty() {
            let log_start = self.state.lock().log_start;
            if offset < log_start {
                return Err(LogError::OffsetOutOfRange { offset, log_start, log_end });
            }
        }
        Ok(out)
    }

    /// The earliest offset whose record timestamp is `>= ts` among committed records,
    /// with that timestamp; `None` when no such record exists.
    pub fn offset_for_timestamp(&self, ts: i64) -> LogResult<Option<(u64, i64)>> {
        let (log_start, hw) = {
            let s = self.state.lock();
            (s.log_start, s.high_watermark)
        };
        let mut found = None;
        let mut err = None;
        self.engine.scan(&self.name, log_start, &mut |base, bytes| {
            if base >= hw {
                return false;
            }
            let batch = match Batch::parse(Bytes::copy_from_slice(bytes)) {
                Ok(b) => b,
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            };
            if batch.max_timestamp() < ts {
                return true;
            }
            found = batch
                .records()
                .find(|r| r.offset >= log_start && r.offset < hw && r.timestamp >= ts)
                .map(|r| (r.offset, r.timestamp));
            found.is_none()
        })?;
        match err {
            Some(e) => Err(e.into()),
            None => Ok(found),
        }
    }

    /// Deletes whole batches from the log start while they are older than
    /// `retention_ms` (by their max timestamp) or while the log stays at least
    /// `retention_bytes` without them (Kafka's rule). `-1` disables either limit.
    /// Only committed batches (below the HW) are removed; the log end never moves.
    pub fn apply_retention(&self, now_ms: i64, retention_ms: i64, retention_bytes: i64) -> LogResult<Removed> {
        if retention_ms < 0 && retention_bytes < 0 {
            return Ok(Removed::default());
        }
        let _writer = self.writer.lock();
        let (log_start, hw, mut size) = {
            let s = self.state.lock();
            (s.log_start, s.high_watermark, s.size_bytes)
        };
        let mut new_start = log_start;
        let mut removed = Removed::default();
        let mut err = None;
        self.engine.scan(&self.name, log_start, &mut |_base, bytes| {
            let batch = match Batch::parse(Bytes::copy_from_slice(bytes)) {
                Ok(b) => b,
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            };
            if batch.next_offset() > hw {
                return false;
            }
            let len = bytes.len() as u64;
            let too_old = retention_ms >= 0 && batch.max_timestamp() < now_ms.saturating_sub(retention_ms);
            let too_big = retention_bytes >= 0 && size.saturating_sub(len) >= retention_bytes as u64;
            if !(too_old || too_big) {
                return false;
            }
            new_start = batch.next_offset();
            size -= len;
            removed.batches += 1;
            removed.bytes += len;
            true
        })?;
        if let Some(e) = err {
            return Err(e.into());
        }
        if new_start == log_start {
            return Ok(removed);
        }
        let start_bytes = new_start.to_be_bytes();
        let size_bytes = size.to_be_bytes();
        self.engine.write(
            &self.name,
            &[
                WriteOp::DeleteBatches { from: log_start, to: new_start },
                WriteOp::PutMeta { key: META_LOG_START, value: &start_bytes },
                WriteOp::PutMeta { key: META_SIZE, value: &size_bytes },
            ],
        )?;
        let mut s = self.state.lock();
        s.log_start = new_start;
        s.size_bytes = size;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MemEngine;
    use fjord_protocol::codec::BatchBuilder;
    use fjord_protocol::Record;

    fn batch(n: usize) -> Bytes {
        let mut b = BatchBuilder::default();
        for i in 0..n {
            b.push(&Record { timestamp: i as i64, value: Some(Bytes::from(vec![i as u8])), ..Default::default() })
                .expect("push");
        }
        b.finish().expect("finish")
    }

    /// A stamped batch as a leader in `epoch` would send it, starting at `base`.
    fn stamped(n: usize, base: u64, epoch: u32) -> Batch {
        let mut buf = BytesMut::from(&batch(n)[..]);
        codec::stamp(&mut buf, base, epoch).expect("stamp");
        Batch::parse(buf.freeze()).expect("parse")
    }

    fn log() -> PartitionLog {
        PartitionLog::open(Arc::new(MemEngine::new()), "p").expect("open")
    }

    fn fenced<T: std::fmt::Debug>(r: LogResult<T>) -> bool {
        matches!(r, Err(LogError::Fenced { .. }))
    }

    #[test]
    fn a_leader_takes_appends_of_its_epoch_only() {
        let log = log();
        log.append(batch(2), 1).expect("unfenced append");
        log.become_leader(2);
        assert_eq!(log.role(), Role::Leader { epoch: 2, start_offset: 2 }, "the epoch starts at the LEO");
        assert!(fenced(log.append(batch(1), 1)), "an append of the ended epoch is refused");
        assert_eq!(log.append(batch(1), 2).expect("append").base_offset(), 2);
        assert!(fenced(log.append_replicated(stamped(1, 3, 2), 2)), "a leader takes no replicated batches");
        log.go_offline();
        assert!(fenced(log.append(batch(1), 2)));
        assert_eq!(log.offsets().log_end, 3, "refused writes change nothing");
    }

    #[test]
    fn a_follower_appends_only_after_truncating_for_its_epoch() {
        let log = log();
        log.become_follower(3);
        assert!(fenced(log.append_replicated(stamped(2, 0, 3), 3)), "not truncated for epoch 3 yet");
        assert!(fenced(log.append(batch(1), 3)), "a follower takes no client appends");
        assert_eq!(log.truncate_for_epoch(3, 0).expect("truncate"), 0);
        assert!(log.append_replicated(stamped(2, 0, 3), 3).expect("append"));
        assert!(!log.append_replicated(stamped(2, 0, 3), 3).expect("duplicate"), "already here: skipped");
        assert!(fenced(log.append_replicated(stamped(1, 2, 4), 4)), "another epoch's fetch answer is refused");
        log.require_truncation(3);
        assert!(fenced(log.append_replicated(stamped(1, 2, 3), 3)));
        log.become_follower(4);
        assert!(fenced(log.truncate_for_epoch(3, 0)), "truncation for an ended epoch is refused");
        assert_eq!(log.offsets().log_end, 2);
        assert!(matches!(
            log.append_replicated(stamped(1, 5, 3), 3),
            Err(LogError::Fenced { .. }) | Err(LogError::NotContiguous { .. })
        ));
    }

    #[test]
    fn truncation_cuts_whole_batches_and_follows_epochs_and_hw() {
        let log = log();
        log.append(batch(3), 1).expect("e1"); // 0..3
        log.append(batch(2), 2).expect("e2"); // 3..5
        log.append(batch(2), 2).expect("e2"); // 5..7
        log.advance_high_watermark(7);
        assert_eq!(log.truncate_to(4).expect("truncate"), 3, "the batch holding 4 goes entirely");
        let o = log.offsets();
        assert_eq!((o.log_end, o.high_watermark), (3, 3));
        assert_eq!(log.epochs(), vec![(1, 0)], "epoch 2 started at 3: gone");
        assert_eq!(log.truncate_to(10).expect("no-op"), 3);
        assert_eq!(log.append(batch(1), 5).expect("append").base_offset(), 3, "appends continue at the new LEO");
    }

    #[test]
    fn epoch_end_offsets_follow_kip_279() {
        let log = log();
        log.append(batch(2), 1).expect("e1"); // 0..2
        log.append(batch(3), 3).expect("e3"); // 2..5
        assert_eq!(log.epoch_end_offset(0), None, "no epoch at or before 0");
        assert_eq!(log.epoch_end_offset(1), Some((1, 2)));
        assert_eq!(log.epoch_end_offset(2), Some((1, 2)), "the largest epoch <= 2 is 1");
        assert_eq!(log.epoch_end_offset(3), Some((3, 5)), "the latest epoch ends at the LEO");
        assert_eq!(log.epoch_end_offset(9), Some((3, 5)));
    }
}
