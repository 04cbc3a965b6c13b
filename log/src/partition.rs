//! One partition replica's log, over any [`Engine`].
//!
//! Offsets are dense and never reused (ARCHITECTURE.md, "Invariants"). The log keeps, in memory, the log start offset,
//! the log end offset (LEO: the next offset to write), the high watermark (HW: records
//! below it are committed and visible to consumers), its size, and the leader-epoch
//! history (KIP-101: epoch → first offset written in it). Everything but the HW is
//! recovered from the engine on open; the HW is raised by the replica layer.
//!
//! Appends (and retention, truncation, compaction) to one partition are serialized by a
//! writer lock held across the engine write, so offsets are assigned and stored in order.
//! The offsets live under a separate lock that is never held across I/O: readers only
//! copy what they need.
//!
//! # Gaps
//! Offsets are dense when written, but compaction ([`PartitionLog::compact`]) removes
//! records without renumbering the rest: it rewrites a batch as smaller batches, one per
//! run of consecutive survivors, each stored under its own base offset. A log may thus
//! have gaps between batches (never inside one). A read at an offset inside a gap starts
//! at the next batch; only an offset below the log start is out of range. The last batch
//! is never compacted, so the LEO can always be recovered from it.

use crate::compaction::{Compacted, Horizons, KeyIndex, Rewrite};
use crate::dedupe::{Check, Dedupe, Replay};
use crate::engine::{Engine, WriteOp};
use crate::error::{Error, Result};
use crate::producers::StateRun;
use crate::role::Role;
use bytes::{Bytes, BytesMut};
use fjord_protocol::codec::{self, Batch, MetaKey};
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::watch;

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
    /// Bumped, under the writer lock, by every write that removes or rewrites batches
    /// (retention, truncation, compaction): a compaction planned without the writer lock
    /// is applied only if this has not moved meanwhile.
    generation: u64,
    /// The high watermark last stored under [`MetaKey::HighWatermark`] (`None`: never).
    checkpointed_hw: Option<u64>,
}

/// One producer's batch for a leader to append.
#[derive(Debug, Clone)]
pub struct Append {
    pub batch: Bytes,
    /// A conditional append: only if the log ends exactly here.
    pub expected_offset: Option<u64>,
}

impl From<Bytes> for Append {
    fn from(batch: Bytes) -> Self {
        Self { batch, expected_offset: None }
    }
}

/// What became of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Written: the batch with its offsets and epoch stamped.
    Written(Batch),
    /// A replay of a batch written before: nothing written.
    Replayed(Replay),
}

impl Appended {
    pub fn base_offset(&self) -> u64 {
        match self {
            Self::Written(b) => b.base_offset(),
            Self::Replayed(r) => r.base_offset,
        }
    }

    pub fn record_count(&self) -> u32 {
        match self {
            Self::Written(b) => b.record_count(),
            Self::Replayed(r) => r.record_count,
        }
    }

    /// One past the last offset.
    pub fn next_offset(&self) -> u64 {
        self.base_offset() + u64::from(self.record_count())
    }
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

fn u64_meta(engine: &dyn Engine, name: &str, key: MetaKey) -> Result<Option<u64>> {
    match engine.get_meta(name, key)? {
        None => Ok(None),
        Some(v) => codec::decode_u64(&v).map(Some).ok_or(Error::BadMeta(key.as_str())),
    }
}

/// `(base offset, next offset)` from an encoded batch's header; `None` if it is too
/// short to have one (whole-batch validation is [`Batch::parse`]'s job).
fn batch_range(bytes: &[u8]) -> Option<(u64, u64)> {
    let base = u64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
    let count = u32::from_be_bytes(bytes.get(17..21)?.try_into().ok()?);
    Some((base, base.saturating_add(u64::from(count))))
}

impl PartitionLog {
    /// Calls `f(batch, stored_len)` on each batch from the one holding `offset` on, in
    /// order, until it answers `Ok(false)`. A stored batch that does not parse
    /// ([`Error::Damaged`]), or an error from `f`, ends the scan with that error.
    fn scan_batches(&self, offset: u64, mut f: impl FnMut(Batch, u64) -> Result<bool>) -> Result<()> {
        let mut failed = None;
        self.engine.scan(&self.name, offset, &mut |base, bytes| {
            let step = Batch::parse(Bytes::copy_from_slice(bytes))
                .map_err(|e| Error::Damaged { offset: base, detail: e.to_string() })
                .and_then(|b| f(b, bytes.len() as u64));
            step.unwrap_or_else(|e| {
                failed = Some(e);
                false
            })
        })?;
        failed.map_or(Ok(()), Err)
    }
}

impl PartitionLog {
    /// Opens the log stored as `name`, creating it empty if it does not exist.
    pub fn open(engine: Arc<dyn Engine>, name: &str) -> Result<Self> {
        engine.create_partition(name)?;
        let log_start = u64_meta(&*engine, name, MetaKey::LogStart)?.unwrap_or(0);
        let size_bytes = u64_meta(&*engine, name, MetaKey::Size)?.unwrap_or(0);
        let epochs = match engine.get_meta(name, MetaKey::Epochs)? {
            Some(b) => codec::decode_epochs(&b).ok_or(Error::BadMeta(MetaKey::Epochs.as_str()))?,
            None => Vec::new(),
        };
        let log_end = match engine.last_batch(name)? {
            Some(bytes) => Batch::parse(Bytes::from(bytes))?.next_offset(),
            None => log_start,
        };
        // The checkpointed HW covered committed records when it was stored (and every
        // truncation since lowered it with the batches it removed), so the log serves
        // up to it at once; the replica layer raises it from there (a lone in-sync
        // leader's HW is its LEO; others learn theirs from replication).
        let checkpointed_hw = u64_meta(&*engine, name, MetaKey::HighWatermark)?;
        let high_watermark = checkpointed_hw.unwrap_or(log_start).clamp(log_start, log_end);
        let state = State { log_start, log_end, high_watermark, size_bytes, epochs, generation: 0, checkpointed_hw };
        Ok(Self {
            engine,
            name: name.to_owned(),
            writer: Mutex::new(()),
            state: Mutex::new(state),
            role: Mutex::new(Role::Unfenced),
            hw_tx: watch::channel(high_watermark).0,
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
    /// from the LEO, with no producer-state checks. Returns the batch with its base offset
    /// and epoch stamped. Refused unless this log is unfenced or the leader in exactly
    /// that epoch.
    pub fn append(&self, batch: Bytes, leader_epoch: u32) -> Result<Batch> {
        let mut out = self.append_all(vec![Append::from(batch)], leader_epoch, None)?;
        match out.pop() {
            Some(Ok(Appended::Written(b))) => Ok(b),
            Some(Ok(Appended::Replayed(_))) => Err(Error::BadMeta("a plain append was answered as a replay")),
            Some(Err(e)) => Err(e),
            None => Err(Error::BadMeta("append_all answered nothing")),
        }
    }

    /// Group commit: appends several producers' batches, in order, in one storage write,
    /// as one append after another — each stamped at the offset after the previous one.
    /// With `dedupe`, each batch is first checked against the partition's producer state
    /// ([`crate::dedupe`]): a replay is answered with the original offsets and not
    /// written, a refused one gets its error; then a conditional append whose
    /// `expected_offset` is not where the log ends is refused. A batch that does not
    /// parse or is refused gets its own error and the others are written; an error of the
    /// whole write (fenced, storage) is the outer one and nothing is written. Producer
    /// state changes go in the same write as the batches.
    pub fn append_all(
        &self,
        appends: Vec<Append>,
        leader_epoch: u32,
        dedupe: Option<Dedupe>,
    ) -> Result<Vec<Result<Appended>>> {
        let writer = self.writer.lock();
        match self.role() {
            Role::Unfenced => {}
            Role::Leader { epoch, .. } if epoch == leader_epoch => {}
            role => return Err(Error::Fenced { role }),
        }
        let mut next = self.state.lock().log_end;
        let mut run = StateRun::new(&*self.engine, &self.name);
        let mut out = Vec::with_capacity(appends.len());
        let mut good = Vec::new();
        for a in appends {
            let admitted = self.admit(a, next, leader_epoch, dedupe.as_ref(), &mut run);
            if let Ok(Appended::Written(b)) = &admitted {
                next = b.next_offset();
                good.push(b.clone());
            }
            out.push(admitted);
        }
        if !good.is_empty() {
            self.store(&writer, &good, &run.write_ops())?;
        }
        Ok(out)
    }

    /// One append of a run: stamped at `next`, checked, and recorded in `run` if new.
    fn admit(
        &self,
        a: Append,
        next: u64,
        leader_epoch: u32,
        dedupe: Option<&Dedupe>,
        run: &mut StateRun<'_>,
    ) -> Result<Appended> {
        let mut buf = a.batch.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        codec::stamp(&mut buf, next, leader_epoch)?;
        let batch = Batch::parse(buf.freeze())?;
        if let Some(d) = dedupe {
            match run.check(&batch, d)? {
                Check::New => {}
                Check::Replay(r) => return Ok(Appended::Replayed(r)),
                Check::Refuse(e) => return Err(e),
            }
        }
        if let Some(expected) = a.expected_offset.filter(|e| *e != next) {
            return Err(Error::OffsetMismatch { expected, log_end: next });
        }
        run.record(&batch)?;
        Ok(Appended::Written(batch))
    }

    /// Appends a batch its leader already stamped (a follower replicating in
    /// `leader_epoch`). `from` is where the leader's answer vouches for the log: the
    /// offset the follower fetched at for the answer's first batch, the previous
    /// batch's next offset for the others; the leader has no record in
    /// `[from, base offset)`.
    ///
    /// A batch that ends at or before the LEO is already here and skipped (`Ok(false)`).
    /// One that starts after the LEO is taken when the answer covers the LEO (`from <=
    /// LEO`): the leader's compaction left a gap there, and the LEO moves past it. One
    /// that starts before the LEO and ends after it (replicas compact on their own, so
    /// this log may end inside one of the leader's batches) is cut to its records from
    /// the LEO on. Anything else is refused. Refused unless this log is unfenced or a
    /// follower truncated for exactly that epoch.
    pub fn append_replicated(&self, batch: Batch, leader_epoch: u32, from: u64) -> Result<bool> {
        let writer = self.writer.lock();
        match self.role() {
            Role::Unfenced => {}
            Role::Follower { epoch, truncated: true } if epoch == leader_epoch => {}
            role => return Err(Error::Fenced { role }),
        }
        let log_end = self.state.lock().log_end;
        if batch.next_offset() <= log_end {
            return Ok(false);
        }
        let batch = if batch.base_offset() > log_end {
            if from > log_end {
                return Err(Error::NotContiguous { expected: log_end, got: batch.base_offset() });
            }
            batch
        } else if batch.base_offset() < log_end {
            let rest: Vec<codec::RecordView> = batch.records().filter(|r| r.offset >= log_end).collect();
            codec::rebuild_with(&rest, log_end, batch.leader_epoch(), batch.ext().as_ref())?
        } else {
            batch
        };
        // The leader's producer state decisions are replicated as they are: this replica
        // only keeps the same state, in the same write, so it answers replays as leader.
        let mut run = StateRun::new(&*self.engine, &self.name);
        run.record(&batch)?;
        self.store(&writer, std::slice::from_ref(&batch), &run.write_ops())?;
        Ok(true)
    }

    /// Writes stamped batches, consecutive and of one leader epoch, at or after the LEO,
    /// in one storage write. The caller holds the writer lock.
    fn store(&self, _writer: &parking_lot::MutexGuard<'_, ()>, batches: &[Batch], state: &[WriteOp<'_>]) -> Result<()> {
        let (Some(first), Some(last)) = (batches.first(), batches.last()) else {
            return Ok(());
        };
        let epoch = first.leader_epoch();
        let base = first.base_offset();
        let (size_before, history) = {
            let s = self.state.lock();
            let new_epoch = s.epochs.last().is_none_or(|(e, _)| epoch > *e);
            (s.size_bytes, new_epoch.then(|| s.epochs.clone()))
        };
        let size = size_before + batches.iter().map(|b| b.len() as u64).sum::<u64>();
        let size_bytes = codec::encode_u64(size);
        let epochs = history.map(|mut h| {
            h.push((epoch, base));
            codec::encode_epochs(&h)
        });
        let mut ops: Vec<WriteOp<'_>> =
            batches.iter().map(|b| WriteOp::PutBatch { base_offset: b.base_offset(), bytes: b.as_bytes() }).collect();
        ops.push(WriteOp::PutMeta { key: MetaKey::Size, value: &size_bytes });
        if let Some(epochs) = &epochs {
            ops.push(WriteOp::PutMeta { key: MetaKey::Epochs, value: epochs });
        }
        ops.extend_from_slice(state);
        self.engine.write(&self.name, &ops)?;
        let mut s = self.state.lock();
        if epochs.is_some() {
            s.epochs.push((epoch, base));
        }
        s.log_end = last.next_offset();
        s.size_bytes = size;
        Ok(())
    }

    /// Removes every record at or after `offset` — whole batches, so a batch holding
    /// `offset` goes entirely — for a follower whose log diverged from its new leader's
    /// (KIP-101), or a replica cutting its log at a damaged batch (which goes whole,
    /// whatever it held). The new LEO is the end of the last batch kept (the log start if none
    /// is), as re-opening the log would find it, also when compaction left a gap before
    /// `offset`. The epoch history and, if needed, the high watermark follow. Returns
    /// the new LEO.
    pub fn truncate_to(&self, offset: u64) -> Result<u64> {
        let writer = self.writer.lock();
        self.truncate_locked(&writer, offset)
    }

    /// A follower in `leader_epoch` truncating for it (KIP-101): cuts the log at
    /// `offset` and from then on takes replicated appends of that epoch. Refused if the
    /// role has moved on meanwhile.
    pub fn truncate_for_epoch(&self, leader_epoch: u32, offset: u64) -> Result<u64> {
        let writer = self.writer.lock();
        match self.role() {
            Role::Unfenced => {}
            Role::Follower { epoch, .. } if epoch == leader_epoch => {}
            role => return Err(Error::Fenced { role }),
        }
        let end = self.truncate_locked(&writer, offset)?;
        if matches!(self.role(), Role::Follower { .. }) {
            *self.role.lock() = Role::Follower { epoch: leader_epoch, truncated: true };
        }
        Ok(end)
    }

    fn truncate_locked(&self, _writer: &parking_lot::MutexGuard<'_, ()>, offset: u64) -> Result<u64> {
        let (log_start, log_end, size) = {
            let s = self.state.lock();
            (s.log_start, s.log_end, s.size_bytes)
        };
        if offset >= log_end {
            return Ok(log_end);
        }
        let mut first_removed = None;
        let mut removed_bytes = 0u64;
        let mut removed_exts = Vec::new();
        self.engine.scan(&self.name, offset, &mut |base, bytes| {
            // A damaged batch (cut because it is: `truncate_to` its base offset) goes by
            // its key and stored length; what it held, producer extension included, is
            // unknown, so it counts as reaching past `offset`.
            let parsed = Batch::parse(Bytes::copy_from_slice(bytes)).ok();
            if parsed.as_ref().is_none_or(|b| b.next_offset() > offset) {
                first_removed.get_or_insert(base);
                removed_bytes += bytes.len() as u64;
                if let Some(ext) = parsed.as_ref().and_then(Batch::ext) {
                    removed_exts.push((base, ext));
                }
            }
            true
        })?;
        let Some(first_removed) = first_removed else { return Ok(log_end) };
        // The batch before the first one removed ends the log now; with a gap before it
        // that is below `first_removed`.
        let mut kept_end = None;
        if first_removed > 0 {
            self.engine.scan(&self.name, first_removed - 1, &mut |base, bytes| {
                if base < first_removed {
                    kept_end = batch_range(bytes).map(|(_, next)| next);
                }
                false
            })?;
        }
        let new_end = kept_end.unwrap_or(log_start).max(log_start);
        let size = size.saturating_sub(removed_bytes);
        let size_bytes = codec::encode_u64(size);
        let history: Vec<(u32, u64)> =
            self.state.lock().epochs.iter().copied().filter(|(_, start)| *start < new_end).collect();
        let epochs = codec::encode_epochs(&history);
        let mut run = StateRun::new(&*self.engine, &self.name);
        run.forget(&removed_exts, new_end)?;
        let mut ops = vec![
            WriteOp::DeleteBatches { from: first_removed, to: u64::MAX },
            WriteOp::PutMeta { key: MetaKey::Size, value: &size_bytes },
            WriteOp::PutMeta { key: MetaKey::Epochs, value: &epochs },
        ];
        // A checkpoint above the new end would, after a restart, cover whatever is
        // appended there next: it comes down in the same write.
        let lowered_hw =
            self.state.lock().checkpointed_hw.is_some_and(|c| c > new_end).then(|| codec::encode_u64(new_end));
        if let Some(hw) = &lowered_hw {
            ops.push(WriteOp::PutMeta { key: MetaKey::HighWatermark, value: hw });
        }
        ops.extend(run.write_ops());
        self.engine.write(&self.name, &ops)?;
        let mut s = self.state.lock();
        if lowered_hw.is_some() {
            s.checkpointed_hw = Some(new_end);
        }
        s.log_end = new_end;
        s.size_bytes = size;
        s.epochs = history;
        s.generation += 1;
        if s.high_watermark > new_end {
            s.high_watermark = new_end;
            drop(s);
            self.hw_tx.send_replace(new_end);
        }
        Ok(new_end)
    }

    /// A follower in `leader_epoch` whose log ends below its leader's log start (the
    /// leader's retention removed what it would fetch next) starts over there, empty, as
    /// Kafka's `truncateFullyAndStartAt`: every batch goes, the log starts and ends at
    /// `offset`, the epoch history is cleared (the next batch fetched starts it again).
    /// Producer state stays: its entries answer replays of batches that are gone with the
    /// offsets they had. Refused if the role has moved on, or if `offset` is not above
    /// this log's end (then there is nothing to skip: truncate by epoch instead).
    pub fn reset_to(&self, leader_epoch: u32, offset: u64) -> Result<()> {
        let _writer = self.writer.lock();
        match self.role() {
            Role::Unfenced => {}
            Role::Follower { epoch, .. } if epoch == leader_epoch => {}
            role => return Err(Error::Fenced { role }),
        }
        let log_end = self.state.lock().log_end;
        if offset <= log_end {
            return Err(Error::OffsetOutOfRange { offset, log_start: self.state.lock().log_start, log_end });
        }
        let start = codec::encode_u64(offset);
        let size = codec::encode_u64(0);
        let epochs = codec::encode_epochs(&[]);
        self.engine.write(
            &self.name,
            &[
                WriteOp::DeleteBatches { from: 0, to: u64::MAX },
                WriteOp::PutMeta { key: MetaKey::LogStart, value: &start },
                WriteOp::PutMeta { key: MetaKey::Size, value: &size },
                WriteOp::PutMeta { key: MetaKey::Epochs, value: &epochs },
                WriteOp::PutMeta { key: MetaKey::HighWatermark, value: &start },
            ],
        )?;
        {
            let mut s = self.state.lock();
            s.log_start = offset;
            s.log_end = offset;
            s.high_watermark = offset;
            s.checkpointed_hw = Some(offset);
            s.size_bytes = 0;
            s.epochs.clear();
            s.generation += 1;
        }
        self.hw_tx.send_replace(offset);
        if matches!(self.role(), Role::Follower { .. }) {
            *self.role.lock() = Role::Follower { epoch: leader_epoch, truncated: true };
        }
        Ok(())
    }

    /// Removes idempotency entries older than `idempotency_window_ms` and producer
    /// sessions idle for longer than `producer_expiration_ms` (by the gateway times their
    /// batches carry). Returns how many of each went.
    pub fn expire_producer_state(
        &self,
        now_ms: i64,
        idempotency_window_ms: i64,
        producer_expiration_ms: i64,
    ) -> Result<(u64, u64)> {
        let _writer = self.writer.lock();
        let mut run = StateRun::new(&*self.engine, &self.name);
        let expired = run.expire(now_ms, idempotency_window_ms, producer_expiration_ms)?;
        if !run.is_empty() {
            self.engine.write(&self.name, &run.write_ops())?;
        }
        Ok(expired)
    }

    /// How many idempotency entries and producer sessions this log keeps.
    pub fn producer_state_count(&self) -> Result<(u64, u64)> {
        crate::producers::count(&*self.engine, &self.name)
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

    /// Stores the high watermark if it moved since the last checkpoint (Kafka's
    /// `replica.high.watermark.checkpoint.interval.ms` task calls this per replica), so
    /// that a restarted replica serves the records it knew committed at once. Returns
    /// whether anything was written.
    pub fn checkpoint_high_watermark(&self) -> Result<bool> {
        let unchanged = |s: &State| s.checkpointed_hw == Some(s.high_watermark);
        // The common case, an idle partition, without waiting for its writer lock.
        if unchanged(&self.state.lock()) {
            return Ok(false);
        }
        // Under the writer lock a truncation cannot lower the HW between the read and
        // the write (it would be stored above the new log end).
        let _writer = self.writer.lock();
        let (hw, stored) = {
            let s = self.state.lock();
            (s.high_watermark, s.checkpointed_hw)
        };
        if stored == Some(hw) {
            return Ok(false);
        }
        let value = codec::encode_u64(hw);
        self.engine.write(&self.name, &[WriteOp::PutMeta { key: MetaKey::HighWatermark, value: &value }])?;
        self.state.lock().checkpointed_hw = Some(hw);
        Ok(true)
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

    /// Batches from the one holding `offset` — or, when compaction removed it, the next
    /// one — up to `max_bytes` (at least one batch), only batches that start below `upto`
    /// (the HW, for consumers). An empty answer for an offset below `upto` means no
    /// record is left in `[offset, upto)`. Each batch's checksum is verified first: one
    /// that fails ends the read with [`Error::Damaged`] (the batches before it are not
    /// returned either, so the caller sees the damage, not a short read).
    pub fn read(&self, offset: u64, max_bytes: usize, upto: u64) -> Result<Vec<Bytes>> {
        let (log_start, log_end) = {
            let s = self.state.lock();
            (s.log_start, s.log_end)
        };
        if offset < log_start || offset > log_end {
            return Err(Error::OffsetOutOfRange { offset, log_start, log_end });
        }
        let mut out = Vec::new();
        let mut total = 0usize;
        let mut damaged = None;
        self.engine.scan(&self.name, offset, &mut |base, bytes| {
            if base >= upto {
                return false;
            }
            // Checked before it is looked at: a damaged header's offsets mean nothing.
            if let Err(e) = codec::verify_checksum(bytes) {
                damaged = Some(Error::Damaged { offset: base, detail: e.to_string() });
                return false;
            }
            if batch_range(bytes).is_none_or(|(_, next)| next <= offset) {
                // Ends before `offset` (the batch before a gap).
                return true;
            }
            total += bytes.len();
            out.push(Bytes::copy_from_slice(bytes));
            total < max_bytes
        })?;
        if let Some(e) = damaged {
            return Err(e);
        }
        // Retention may have removed the batches holding `offset` while we scanned, and
        // the scan then went on past them: it raises the log start before deleting, so
        // if the scan saw the deletion this sees the new log start.
        let log_start = self.state.lock().log_start;
        if offset < log_start {
            return Err(Error::OffsetOutOfRange { offset, log_start, log_end });
        }
        Ok(out)
    }

    /// The earliest offset whose record timestamp is `>= ts` among committed records,
    /// with that timestamp; `None` when no such record exists.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(u64, i64)>> {
        let (log_start, hw) = {
            let s = self.state.lock();
            (s.log_start, s.high_watermark)
        };
        let mut found = None;
        self.scan_batches(log_start, |batch, _| {
            if batch.base_offset() >= hw {
                return Ok(false);
            }
            if batch.max_timestamp() < ts {
                return Ok(true);
            }
            found = batch
                .records()
                .find(|r| r.offset >= log_start && r.offset < hw && r.timestamp >= ts)
                .map(|r| (r.offset, r.timestamp));
            Ok(found.is_none())
        })?;
        Ok(found)
    }

    /// Deletes whole batches from the log start while they are older than
    /// `retention_ms` (by their max timestamp) or while the log stays at least
    /// `retention_bytes` without them (Kafka's rule). `-1` disables either limit.
    /// Only committed batches (below the HW) are removed; the log end never moves.
    pub fn apply_retention(&self, now_ms: i64, retention_ms: i64, retention_bytes: i64) -> Result<Removed> {
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
        self.scan_batches(log_start, |batch, len| {
            if batch.next_offset() > hw {
                return Ok(false);
            }
            let too_old = retention_ms >= 0 && batch.max_timestamp() < now_ms.saturating_sub(retention_ms);
            let too_big = retention_bytes >= 0 && size.saturating_sub(len) >= retention_bytes as u64;
            if !(too_old || too_big) {
                return Ok(false);
            }
            new_start = batch.next_offset();
            size -= len;
            removed.batches += 1;
            removed.bytes += len;
            Ok(true)
        })?;
        if new_start == log_start {
            return Ok(removed);
        }
        let start_bytes = codec::encode_u64(new_start);
        let size_bytes = codec::encode_u64(size);
        // The log start moves before the batches go, so a concurrent read that sees them
        // gone also sees the new log start (and answers out of range, not with whatever
        // follows the gap).
        self.state.lock().log_start = new_start;
        let written = self.engine.write(
            &self.name,
            &[
                WriteOp::DeleteBatches { from: log_start, to: new_start },
                WriteOp::PutMeta { key: MetaKey::LogStart, value: &start_bytes },
                WriteOp::PutMeta { key: MetaKey::Size, value: &size_bytes },
            ],
        );
        let mut s = self.state.lock();
        if let Err(e) = written {
            s.log_start = log_start;
            return Err(e);
        }
        s.size_bytes = size;
        s.generation += 1;
        Ok(removed)
    }
}

impl PartitionLog {
    /// One compaction pass (see [`crate::compaction`] for what it keeps): planned by two
    /// scans without the writer lock, then applied in one atomic engine write under it,
    /// only if no retention, truncation or other compaction removed anything meanwhile —
    /// otherwise nothing is written and `Ok(None)` says the pass should be retried.
    pub fn compact(
        &self,
        now_ms: i64,
        delete_retention_ms: i64,
        min_compaction_lag_ms: i64,
        idempotency_window_ms: i64,
    ) -> Result<Option<Compacted>> {
        let (horizons, generation) = {
            let s = self.state.lock();
            let h = Horizons {
                log_start: s.log_start,
                log_end: s.log_end,
                high_watermark: s.high_watermark,
                now_ms,
                delete_retention_ms,
                min_compaction_lag_ms,
                idempotency_window_ms,
            };
            (h, s.generation)
        };
        let (plan, due_ms) = self.plan_compaction(horizons)?;
        if plan.is_empty() {
            return Ok(Some(Compacted { due_ms, ..Compacted::default() }));
        }
        Ok(self.apply_compaction(&plan, generation)?.map(|done| Compacted { due_ms, ..done }))
    }

    /// The rewrites of one pass: the key index over the committed records, then the
    /// rewrite of each batch of the cleanable range.
    fn plan_compaction(&self, h: Horizons) -> Result<(Vec<Rewrite>, Option<i64>)> {
        let mut index = KeyIndex::new(h);
        self.scan_batches(h.log_start, |batch, _| Ok(index.observe(&batch)))?;
        let cleanable_end = index.cleanable_end();
        let mut plan = Vec::new();
        if cleanable_end > h.log_start {
            self.scan_batches(h.log_start, |batch, len| {
                if batch.base_offset() >= cleanable_end {
                    return Ok(false);
                }
                plan.extend(index.rewrite(&batch, len)?);
                Ok(true)
            })?;
        }
        Ok((plan, index.due_ms()))
    }

    /// Writes `plan` in one engine write, unless the log changed since `generation`.
    fn apply_compaction(&self, plan: &[Rewrite], generation: u64) -> Result<Option<Compacted>> {
        let _writer = self.writer.lock();
        let size = {
            let s = self.state.lock();
            if s.generation != generation {
                return Ok(None);
            }
            s.size_bytes
        };
        let mut ops = Vec::with_capacity(plan.len() * 2 + 1);
        let (mut old_bytes, mut new_bytes) = (0u64, 0u64);
        for rw in plan {
            old_bytes += rw.len;
            if rw.runs.first().is_none_or(|run| run.base_offset() != rw.base) {
                ops.push(WriteOp::DeleteBatch { base_offset: rw.base });
            }
            for run in &rw.runs {
                new_bytes += run.len() as u64;
                ops.push(WriteOp::PutBatch { base_offset: run.base_offset(), bytes: run.as_bytes() });
            }
        }
        let size = size.saturating_sub(old_bytes) + new_bytes;
        let size_bytes = codec::encode_u64(size);
        ops.push(WriteOp::PutMeta { key: MetaKey::Size, value: &size_bytes });
        self.engine.write(&self.name, &ops)?;
        {
            let mut s = self.state.lock();
            s.size_bytes = size;
            s.generation += 1;
        }
        Ok(Some(Compacted {
            batches: plan.len() as u64,
            records: plan.iter().map(|rw| rw.removed).sum(),
            bytes: old_bytes.saturating_sub(new_bytes),
            due_ms: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compaction::Compacted;
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

    fn fenced<T: std::fmt::Debug>(r: Result<T>) -> bool {
        matches!(r, Err(Error::Fenced { .. }))
    }

    #[test]
    fn a_leader_takes_appends_of_its_epoch_only() {
        let log = log();
        log.append(batch(2), 1).expect("unfenced append");
        log.become_leader(2);
        assert_eq!(log.role(), Role::Leader { epoch: 2, start_offset: 2 }, "the epoch starts at the LEO");
        assert!(fenced(log.append(batch(1), 1)), "an append of the ended epoch is refused");
        assert_eq!(log.append(batch(1), 2).expect("append").base_offset(), 2);
        assert!(fenced(log.append_replicated(stamped(1, 3, 2), 2, 3)), "a leader takes no replicated batches");
        log.go_offline();
        assert!(fenced(log.append(batch(1), 2)));
        assert_eq!(log.offsets().log_end, 3, "refused writes change nothing");
    }

    #[test]
    fn a_follower_appends_only_after_truncating_for_its_epoch() {
        let log = log();
        log.become_follower(3);
        assert!(fenced(log.append_replicated(stamped(2, 0, 3), 3, 0)), "not truncated for epoch 3 yet");
        assert!(fenced(log.append(batch(1), 3)), "a follower takes no client appends");
        assert_eq!(log.truncate_for_epoch(3, 0).expect("truncate"), 0);
        assert!(log.append_replicated(stamped(2, 0, 3), 3, 0).expect("append"));
        assert!(!log.append_replicated(stamped(2, 0, 3), 3, 0).expect("duplicate"), "already here: skipped");
        assert!(fenced(log.append_replicated(stamped(1, 2, 4), 4, 2)), "another epoch's fetch answer is refused");
        log.require_truncation(3);
        assert!(fenced(log.append_replicated(stamped(1, 2, 3), 3, 2)));
        log.become_follower(4);
        assert!(fenced(log.truncate_for_epoch(3, 0)), "truncation for an ended epoch is refused");
        assert_eq!(log.offsets().log_end, 2);
        assert!(matches!(
            log.append_replicated(stamped(1, 5, 3), 3, 5),
            Err(Error::Fenced { .. }) | Err(Error::NotContiguous { .. })
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

    // ----- compaction -----------------------------------------------------------------

    const DAY: i64 = 86_400_000;

    /// One batch of `(key, value, timestamp)` records; `None` value: a tombstone.
    fn kv(records: &[(Option<&str>, Option<&str>, i64)]) -> Bytes {
        let mut b = BatchBuilder::default();
        for (k, v, ts) in records {
            b.push(&Record {
                timestamp: *ts,
                key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                headers: vec![codec::Header { name: "h".into(), value: Bytes::from_static(b"x") }],
            })
            .expect("push");
        }
        b.finish().expect("finish")
    }

    /// Every record from the log start to `upto`, as (offset, key, value).
    fn contents(log: &PartitionLog, upto: u64) -> Vec<(u64, Option<String>, Option<String>)> {
        let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
        let start = log.offsets().log_start;
        log.read(start, usize::MAX, upto)
            .expect("read")
            .into_iter()
            .map(|b| Batch::parse(b).expect("valid batch"))
            .flat_map(|b| b.records().collect::<Vec<_>>())
            .map(|r| (r.offset, text(r.key), text(r.value)))
            .collect()
    }

    fn stored_batches(log: &PartitionLog) -> Vec<(u64, u64, u32)> {
        log.read(log.offsets().log_start, usize::MAX, u64::MAX)
            .expect("read")
            .into_iter()
            .map(|b| Batch::parse(b).expect("valid batch"))
            .map(|b| (b.base_offset(), b.next_offset(), b.leader_epoch()))
            .collect()
    }

    fn size_of_stored(log: &PartitionLog) -> u64 {
        log.read(log.offsets().log_start, usize::MAX, u64::MAX).expect("read").iter().map(|b| b.len() as u64).sum()
    }

    fn entry(offset: u64, k: &str, v: &str) -> (u64, Option<String>, Option<String>) {
        (offset, Some(k.to_owned()), Some(v.to_owned()))
    }

    fn compact(log: &PartitionLog, now: i64, delete_retention_ms: i64, lag_ms: i64) -> Compacted {
        log.compact(now, delete_retention_ms, lag_ms, 0).expect("compact").expect("not raced")
    }

    /// Keys overwritten many times, across batches and epochs: after one pass only the
    /// latest record of each key is left, at its original offset, with its epoch and
    /// timestamp; the size shrinks by exactly the bytes reported, and the stored size
    /// is the sum of the stored batches.
    #[test]
    fn compaction_keeps_the_latest_record_per_key_at_its_offset() {
        let log = log();
        for round in 0..4 {
            let v = format!("v{round}");
            log.append(kv(&[(Some("a"), Some(&v), 10), (Some("b"), Some(&v), 11), (Some("c"), Some(&v), 12)]), 1)
                .expect("append");
        }
        // 12..14: a overwritten again, d new; the epoch changes.
        log.append(kv(&[(Some("a"), Some("last"), 20), (Some("d"), Some("d0"), 21)]), 2).expect("append");
        log.append(kv(&[(Some("e"), Some("tail"), 30)]), 2).expect("append"); // 14: the last batch
        log.advance_high_watermark(15);
        let before = log.offsets();

        let done = compact(&log, 1_000, DAY, 0);
        assert_eq!((done.batches, done.records), (4, 10), "rounds 0-2 wholly (9), `a` of round 3");
        assert_eq!(
            contents(&log, 15),
            vec![
                entry(10, "b", "v3"),
                entry(11, "c", "v3"),
                entry(12, "a", "last"),
                entry(13, "d", "d0"),
                entry(14, "e", "tail")
            ]
        );
        assert_eq!(
            stored_batches(&log),
            vec![(10, 12, 1), (12, 14, 2), (14, 15, 2)],
            "round 3 rewritten as its run [10, 12), keeping epoch 1; the rest untouched"
        );
        let after = log.offsets();
        assert_eq!((after.log_start, after.log_end, after.high_watermark), (0, 15, 15), "offsets never change");
        assert_eq!(after.size_bytes, before.size_bytes - done.bytes);
        assert_eq!(after.size_bytes, size_of_stored(&log));
        let ts: Vec<i64> = log
            .read(10, usize::MAX, 15)
            .expect("read")
            .into_iter()
            .flat_map(|b| Batch::parse(b).expect("valid").records().map(|r| r.timestamp).collect::<Vec<_>>())
            .collect();
        assert_eq!(ts, [11, 12, 20, 21, 30], "record timestamps are kept");
        assert_eq!(log.epochs(), vec![(1, 0), (2, 12)], "the epoch history is untouched");

        assert_eq!(compact(&log, 1_000, DAY, 0), Compacted::default(), "a second pass has nothing to do");
    }

    /// A tombstone that is the latest of its key stays while younger than
    /// `delete.retention.ms` (by its timestamp), and `due_ms` says when it expires; after
    /// that it goes too. The records it deleted go on the first pass.
    #[test]
    fn tombstones_go_after_delete_retention_ms() {
        let log = log();
        log.append(kv(&[(Some("k"), Some("v"), 100), (Some("j"), Some("v"), 100)]), 1).expect("append"); // 0..2
        log.append(kv(&[(Some("k"), None, 1_000)]), 1).expect("append"); // 2: tombstone
        log.append(kv(&[(Some("j"), Some("w"), 1_000)]), 1).expect("append"); // 3: last batch
        log.advance_high_watermark(4);

        let done = compact(&log, 1_000 + 500, 500, 0);
        assert_eq!(done.records, 2, "the overwritten and deleted values go");
        assert_eq!(done.due_ms, Some(1_501), "the tombstone expires once older than 500 ms");
        assert_eq!(contents(&log, 4), vec![(2, Some("k".into()), None), entry(3, "j", "w")], "tombstone kept");

        let done = compact(&log, 1_501, 500, 0);
        assert_eq!((done.batches, done.records, done.due_ms), (1, 1, None));
        assert_eq!(contents(&log, 4), vec![entry(3, "j", "w")], "tombstone gone");
        assert_eq!(log.offsets().size_bytes, size_of_stored(&log));
    }

    /// The last batch of the log is never rewritten, even when all of it is committed
    /// and superseded (it is Kafka's active segment; the LEO is recovered from it).
    /// Records without a key are kept.
    #[test]
    fn the_last_batch_is_never_rewritten() {
        let log = log();
        log.append(kv(&[(Some("k"), Some("1"), 0), (None, Some("keyless"), 0), (Some("k"), Some("2"), 0)]), 1)
            .expect("append");
        log.advance_high_watermark(3);
        assert_eq!(compact(&log, 10, 0, 0), Compacted::default(), "the only batch is the last one");
        assert_eq!(contents(&log, 3).len(), 3);

        log.append(kv(&[(Some("k"), None, 0), (Some("k"), Some("3"), 0)]), 1).expect("append"); // 3..5
        log.advance_high_watermark(5);
        let done = compact(&log, 10, 0, 0);
        assert_eq!(done.records, 2);
        assert_eq!(
            contents(&log, 5),
            vec![(1, None, Some("keyless".into())), (3, Some("k".into()), None), entry(4, "k", "3")],
            "the keyless record stays; the superseded tombstone in the last batch stays too"
        );
        assert_eq!(stored_batches(&log), vec![(1, 2, 1), (3, 5, 1)]);
    }

    /// Only committed records count and only wholly committed batches are rewritten: a
    /// batch above the HW is untouched, and a record superseded only above the HW stays.
    #[test]
    fn records_above_the_hw_are_untouched() {
        let log = log();
        log.append(kv(&[(Some("a"), Some("0"), 0), (Some("b"), Some("0"), 0)]), 1).expect("append"); // 0..2
        log.append(kv(&[(Some("a"), Some("1"), 0), (Some("a"), Some("2"), 0)]), 1).expect("append"); // 2..4
        log.append(kv(&[(Some("b"), Some("1"), 0)]), 1).expect("append"); // 4
        log.append(kv(&[(Some("c"), Some("0"), 0)]), 1).expect("append"); // 5: last
        log.advance_high_watermark(3); // inside the second batch

        let done = compact(&log, 10, DAY, 0);
        assert_eq!(done.records, 1, "only a@0 (superseded by a@2, which is committed)");
        assert_eq!(stored_batches(&log), vec![(1, 2, 1), (2, 4, 1), (4, 5, 1), (5, 6, 1)]);
        assert_eq!(
            contents(&log, u64::MAX),
            vec![entry(1, "b", "0"), entry(2, "a", "1"), entry(3, "a", "2"), entry(4, "b", "1"), entry(5, "c", "0")],
            "b@1 stays: it is superseded only above the HW; the batch holding the HW is not rewritten"
        );

        log.advance_high_watermark(6);
        compact(&log, 10, DAY, 0);
        assert_eq!(contents(&log, 6), vec![entry(3, "a", "2"), entry(4, "b", "1"), entry(5, "c", "0")]);
    }

    /// `min.compaction.lag.ms` stops the cleanable range at the first batch whose newest
    /// record is younger than it; `due_ms` says when that batch comes of age.
    #[test]
    fn min_compaction_lag_holds_back_young_batches() {
        let log = log();
        log.append(kv(&[(Some("k"), Some("old"), 100)]), 1).expect("append"); // 0
        log.append(kv(&[(Some("k"), Some("young"), 900)]), 1).expect("append"); // 1
        log.append(kv(&[(Some("k"), Some("older"), 50)]), 1).expect("append"); // 2: behind a young one
        log.append(kv(&[(Some("k"), Some("new"), 950)]), 1).expect("append"); // 3: last
        log.advance_high_watermark(4);

        let done = compact(&log, 1_000, DAY, 500);
        assert_eq!((done.records, done.due_ms), (1, Some(1_400)));
        assert_eq!(contents(&log, 4), vec![entry(1, "k", "young"), entry(2, "k", "older"), entry(3, "k", "new")]);
        let done = compact(&log, 1_400, DAY, 500);
        assert_eq!((done.records, done.due_ms), (2, None));
        assert_eq!(contents(&log, 4), vec![entry(3, "k", "new")]);
    }

    /// A read at an offset inside a gap starts at the next batch; an empty answer below
    /// `upto` means nothing is left there; below the log start is still out of range;
    /// the timestamp look-up skips removed records; retention removes batches across
    /// gaps and moves the log start past them.
    #[test]
    fn reads_timestamps_and_retention_across_gaps() {
        let log = log();
        log.append(kv(&[(Some("a"), Some("0"), 10), (Some("x"), Some("0"), 11)]), 1).expect("append"); // 0..2
        log.append(kv(&[(Some("a"), Some("1"), 20), (Some("b"), Some("0"), 21)]), 1).expect("append"); // 2..4
        log.append(kv(&[(Some("a"), None, 30), (Some("b"), Some("1"), 31)]), 1).expect("append"); // 4..6
        log.append(kv(&[(Some("c"), Some("0"), 40)]), 1).expect("append"); // 6: last
        log.advance_high_watermark(7);
        compact(&log, 100, 0, 0); // the tombstone a@4 is older than 0 ms: gone with a@0, a@2, b@3
        assert_eq!(stored_batches(&log), vec![(1, 2, 1), (5, 6, 1), (6, 7, 1)]);

        let first = |offset: u64, upto: u64| {
            log.read(offset, 1, upto)
                .expect("read")
                .first()
                .map(|b| Batch::parse(b.clone()).expect("valid").base_offset())
        };
        assert_eq!(first(0, 7), Some(1), "from the log start, inside a gap");
        assert_eq!(first(2, 7), Some(5), "inside the gap [2, 5)");
        assert_eq!(first(4, 7), Some(5));
        assert_eq!(first(5, 7), Some(5));
        assert_eq!(first(3, 5), None, "nothing left in [3, 5)");
        assert_eq!(log.offset_for_timestamp(12).expect("look-up"), Some((5, 31)), "removed records are skipped");
        assert_eq!(log.offset_for_timestamp(0).expect("look-up"), Some((1, 11)));

        let first_len = log.read(0, 1, 7).expect("read")[0].len() as u64;
        let removed = log.apply_retention(100, -1, (size_of_stored(&log) - first_len) as i64).expect("retention");
        assert_eq!(removed.batches, 1);
        assert_eq!(log.offsets().log_start, 2, "the log start is the end of the removed batch, inside the gap");
        assert_eq!(first(2, 7), Some(5));
        assert!(matches!(log.read(1, 1, 7), Err(Error::OffsetOutOfRange { .. })));
        assert_eq!(log.offsets().size_bytes, size_of_stored(&log));
    }

    /// Re-opening a compacted log recovers the same log start, LEO, size and epochs,
    /// and the same records.
    #[test]
    fn reopening_after_compaction_recovers_the_same_offsets() {
        let engine = Arc::new(MemEngine::new());
        let log = PartitionLog::open(engine.clone(), "p").expect("open");
        for i in 0..5 {
            let v = i.to_string();
            log.append(kv(&[(Some("k"), Some(&v), i), (Some(&v), Some(&v), i)]), 1 + i as u32 / 2).expect("append");
        }
        log.advance_high_watermark(10);
        log.apply_retention(0, -1, log.offsets().size_bytes as i64 - 1).expect("retention");
        assert!(compact(&log, 10, DAY, 0).records > 0);
        let (offsets, epochs, records) = (log.offsets(), log.epochs(), contents(&log, 10));
        drop(log);

        let log = PartitionLog::open(engine, "p").expect("re-open");
        let o = log.offsets();
        assert_eq!((o.log_start, o.log_end, o.size_bytes), (offsets.log_start, offsets.log_end, offsets.size_bytes));
        assert_eq!(log.epochs(), epochs);
        log.advance_high_watermark(10);
        assert_eq!(contents(&log, 10), records);
        assert_eq!(log.append(kv(&[(Some("k"), Some("n"), 0)]), 3).expect("append").base_offset(), 10);
    }

    /// A follower fetching at its LEO inside a gap of its leader's log gets the batch
    /// after the gap and moves its LEO past it; a batch holding the LEO inside it
    /// (replicas compact on their own) is cut to its records from the LEO on; an answer
    /// that does not cover the LEO is refused.
    #[test]
    fn a_follower_appends_across_a_gap() {
        let log = log();
        log.become_follower(1);
        log.truncate_for_epoch(1, 0).expect("truncate");
        assert!(log.append_replicated(stamped(2, 0, 1), 1, 0).expect("append"));
        // Fetched at 2; the leader compacted [2, 5) away and answered from 5.
        assert!(log.append_replicated(stamped(3, 5, 1), 1, 2).expect("across the gap"));
        assert_eq!(log.offsets().log_end, 8);
        // A later batch of the same answer, after another gap.
        assert!(log.append_replicated(stamped(1, 9, 1), 1, 8).expect("across the gap"));
        assert_eq!(log.offsets().log_end, 10);
        assert!(matches!(
            log.append_replicated(stamped(1, 12, 1), 1, 11),
            Err(Error::NotContiguous { expected: 10, got: 12 })
        ));
        // The leader's batch [8, 13) holds our LEO 10.
        assert!(log.append_replicated(stamped(5, 8, 1), 1, 10).expect("overlapping"));
        assert_eq!(log.offsets().log_end, 13);
        assert_eq!(stored_batches(&log), vec![(0, 2, 1), (5, 8, 1), (9, 10, 1), (10, 13, 1)]);
        let values: Vec<Option<Bytes>> = log
            .read(10, usize::MAX, u64::MAX)
            .expect("read")
            .into_iter()
            .flat_map(|b| Batch::parse(b).expect("valid").records().map(|r| r.value).collect::<Vec<_>>())
            .collect();
        assert_eq!(values, [2u8, 3, 4].map(|i| Some(Bytes::from(vec![i]))), "records 10..13 of the leader's batch");
        assert_eq!(log.offsets().size_bytes, size_of_stored(&log));

        // Re-opened, the LEO is the same.
        let engine = log.engine.clone();
        drop(log);
        assert_eq!(PartitionLog::open(engine, "p").expect("re-open").offsets().log_end, 13);
    }

    /// Truncating at an offset after a gap cuts the batches from it on; the LEO is then
    /// the end of the last batch kept, as re-opening would find it.
    #[test]
    fn truncation_across_a_gap_ends_at_the_last_kept_batch() {
        let engine = Arc::new(MemEngine::new());
        let log = PartitionLog::open(engine.clone(), "p").expect("open");
        log.append(kv(&[(Some("a"), Some("0"), 0), (Some("b"), Some("0"), 0)]), 1).expect("append"); // 0..2
        log.append(kv(&[(Some("a"), Some("1"), 0), (Some("b"), Some("1"), 0)]), 1).expect("append"); // 2..4
        log.append(kv(&[(Some("c"), Some("0"), 0)]), 1).expect("append"); // 4
        log.append(kv(&[(Some("d"), Some("0"), 0)]), 2).expect("append"); // 5
        log.advance_high_watermark(6);
        compact(&log, 0, DAY, 0);
        assert_eq!(stored_batches(&log), vec![(2, 4, 1), (4, 5, 1), (5, 6, 2)]);

        assert_eq!(log.truncate_to(5).expect("truncate"), 5);
        assert_eq!(log.epochs(), vec![(1, 0)]);
        assert_eq!(log.truncate_to(3).expect("truncate"), 0, "the batch holding 3 goes; nothing is left before it");
        assert_eq!(log.offsets().size_bytes, 0);
        drop(log);
        let log = PartitionLog::open(engine, "p").expect("re-open");
        assert_eq!(log.offsets().log_end, 0);
    }

    /// A pass planned before retention removed batches writes nothing (it would put
    /// rewritten copies of them back below the new log start) and says so; the next
    /// pass does the work over the log as it is.
    #[test]
    fn a_pass_that_raced_retention_writes_nothing() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        /// Runs `hook` right after the `countdown`-th scan from now has finished.
        struct Hooked {
            inner: MemEngine,
            countdown: AtomicUsize,
            hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
        }
        impl Engine for Hooked {
            fn list_partitions(&self) -> Result<Vec<String>> {
                self.inner.list_partitions()
            }
            fn create_partition(&self, name: &str) -> Result<()> {
                self.inner.create_partition(name)
            }
            fn drop_partition(&self, name: &str) -> Result<()> {
                self.inner.drop_partition(name)
            }
            fn write(&self, name: &str, ops: &[WriteOp<'_>]) -> Result<()> {
                self.inner.write(name, ops)
            }
            fn get_meta(&self, name: &str, key: MetaKey) -> Result<Option<Vec<u8>>> {
                self.inner.get_meta(name, key)
            }
            fn scan(&self, name: &str, offset: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<()> {
                self.inner.scan(name, offset, f)?;
                if self.countdown.fetch_sub(1, Ordering::SeqCst) == 1 {
                    let hook = self.hook.lock().take();
                    if let Some(hook) = hook {
                        hook();
                    }
                }
                Ok(())
            }
            fn last_batch(&self, name: &str) -> Result<Option<Vec<u8>>> {
                self.inner.last_batch(name)
            }
            fn get_state(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
                self.inner.get_state(name, key)
            }
            fn scan_state(&self, name: &str, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
                self.inner.scan_state(name, prefix, f)
            }
            fn sync(&self) -> Result<()> {
                Ok(())
            }
        }

        let engine = Arc::new(Hooked {
            inner: MemEngine::new(),
            countdown: AtomicUsize::new(usize::MAX),
            hook: Mutex::new(None),
        });
        let log = Arc::new(PartitionLog::open(engine.clone(), "p").expect("open"));
        let first = log.append(kv(&[(Some("k"), Some("0"), 0), (Some("0"), Some("0"), 0)]), 1).expect("append");
        log.append(kv(&[(Some("k"), Some("1"), 0), (Some("1"), Some("1"), 0)]), 1).expect("append");
        log.append(kv(&[(Some("k"), Some("2"), 0), (Some("2"), Some("2"), 0)]), 1).expect("append");
        log.advance_high_watermark(6);

        // Right after the pass's second scan (its plan rewrites [0, 2) and [2, 4)),
        // retention removes [0, 2).
        let keep = (log.offsets().size_bytes - first.len() as u64) as i64;
        let racing = log.clone();
        *engine.hook.lock() = Some(Box::new(move || {
            assert_eq!(racing.apply_retention(0, -1, keep).expect("retention").batches, 1);
        }));
        engine.countdown.store(2, Ordering::SeqCst);
        assert_eq!(log.compact(0, DAY, 0, 0).expect("compact"), None, "raced: nothing written");
        assert_eq!(stored_batches(&log), vec![(2, 4, 1), (4, 6, 1)], "[0, 2) is not brought back");
        assert_eq!(log.offsets().log_start, 2);
        assert_eq!(log.offsets().size_bytes, size_of_stored(&log));

        let done = compact(&log, 0, DAY, 0);
        assert_eq!((done.batches, done.records), (1, 1));
        assert_eq!(stored_batches(&log), vec![(3, 4, 1), (4, 6, 1)]);
        assert_eq!(log.offsets().size_bytes, size_of_stored(&log));
    }
}
