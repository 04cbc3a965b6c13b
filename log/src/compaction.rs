//! What one compaction pass (Kafka's `cleanup.policy=compact`) keeps: pure planning over
//! the batches of a log, applied by [`PartitionLog::compact`](crate::PartitionLog::compact).
//!
//! A pass keeps at least the latest record of every key, never changing an offset:
//!
//! - Which records count: the committed ones, `[log start, HW)`. For each key the latest
//!   offset among them wins, wherever it lies in that range.
//! - Which batches may be rewritten (the "cleanable" range, as Kafka's cleaner picks whole
//!   segments): from the log start, batches wholly below the HW, stopping at the last
//!   batch of the log (never rewritten, as Kafka never cleans the active segment: the LEO
//!   is recovered from it) and, when `min_compaction_lag_ms > 0`, at the first batch
//!   whose newest record is younger than that.
//! - In those batches a keyed record survives if it is the latest of its key, except a
//!   tombstone (no value) whose timestamp is older than `delete_retention_ms`. Records
//!   without a key survive (a compacted topic refuses them on produce; older ones stay).
//!
//! Simplification vs Kafka: a tombstone's age is its record timestamp (producer- or
//! append-time), not the time since the cleaner first passed over its segment; a
//! tombstone produced with an old timestamp may thus go on the first pass.
//!
//! - A batch carrying a producer extension (an idempotency key or a producer session's
//!   sequence, [`crate::dedupe`]) written less than `idempotency_window_ms` ago is kept
//!   whole: a replica that copies it later (a follower catching up) rebuilds the
//!   partition's dedupe state from it, with the batch's own offsets.
//!
//! A batch that loses records is replaced by one batch per run of consecutive survivors,
//! with the original leader epoch and timestamps (offsets stay; the log gets gaps); one
//! with no survivor is deleted.

use fjord_protocol::codec::{self, Batch, CodecError, RecordView};
use std::collections::HashMap;

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compacted {
    /// Batches rewritten as smaller ones or, with no record left, deleted.
    pub batches: u64,
    /// Records removed.
    pub records: u64,
    /// Bytes the log shrank by, net (0 if it did not: a batch split into several runs
    /// takes a header per run, which a few small removed records may not pay for).
    pub bytes: u64,
    /// The earliest time (ms) at which a pass over the same committed records could
    /// remove more: a kept tombstone passing `delete.retention.ms`, or the first batch
    /// held back by `min.compaction.lag.ms` leaving it. `None`: only new committed
    /// records can give a pass more to do.
    pub due_ms: Option<i64>,
}

/// The log a pass plans over, and its settings.
#[derive(Debug, Clone, Copy)]
pub struct Horizons {
    pub log_start: u64,
    pub log_end: u64,
    pub high_watermark: u64,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub idempotency_window_ms: i64,
}

/// One batch a pass rewrites: its base offset and stored length, and the batches of its
/// surviving runs (none: it is deleted).
#[derive(Debug)]
pub struct Rewrite {
    pub base: u64,
    pub len: u64,
    pub runs: Vec<Batch>,
    /// Records removed.
    pub removed: u64,
}

/// The first pass over the log: the latest committed offset of every key, and where the
/// cleanable range ends. Feed it every batch from the log start, in order.
#[derive(Debug)]
pub struct KeyIndex {
    h: Horizons,
    latest: HashMap<Vec<u8>, u64>,
    cleanable_end: u64,
    cleanable: bool,
    due_ms: Option<i64>,
}

impl KeyIndex {
    pub fn new(h: Horizons) -> Self {
        Self { h, latest: HashMap::new(), cleanable_end: h.log_start, cleanable: true, due_ms: None }
    }

    /// Takes the next batch; `false` once the scan can stop (batches at the HW and after).
    pub fn observe(&mut self, batch: &Batch) -> bool {
        let h = self.h;
        if batch.base_offset() >= h.high_watermark {
            return false;
        }
        if self.cleanable {
            let committed = batch.next_offset() <= h.high_watermark;
            let last = batch.next_offset() >= h.log_end;
            let lag_horizon = h.now_ms.saturating_sub(h.min_compaction_lag_ms);
            let too_new = h.min_compaction_lag_ms > 0 && batch.max_timestamp() > lag_horizon;
            if committed && !last && !too_new {
                self.cleanable_end = batch.next_offset();
            } else {
                self.cleanable = false;
                if committed && !last {
                    self.due(batch.max_timestamp().saturating_add(h.min_compaction_lag_ms));
                }
            }
        }
        for r in batch.records().filter(|r| r.offset >= h.log_start && r.offset < h.high_watermark) {
            if let Some(k) = r.key {
                match self.latest.get_mut(&k[..]) {
                    Some(o) => *o = r.offset,
                    None => {
                        self.latest.insert(k.to_vec(), r.offset);
                    }
                }
            }
        }
        true
    }

    /// Where the cleanable range ends: the second pass rewrites batches below it only.
    pub fn cleanable_end(&self) -> u64 {
        self.cleanable_end
    }

    fn due(&mut self, t: i64) {
        self.due_ms = Some(self.due_ms.map_or(t, |d| d.min(t)));
    }

    /// The second pass, one batch of the cleanable range at a time: how the batch is
    /// rewritten, or `None` when it keeps every record.
    pub fn rewrite(&mut self, batch: &Batch, stored_len: u64) -> Result<Option<Rewrite>, CodecError> {
        if let Some(ext) = batch.ext() {
            let kept_until = ext.default_timestamp.saturating_add(self.h.idempotency_window_ms);
            if kept_until >= self.h.now_ms {
                self.due(kept_until.saturating_add(1));
                return Ok(None);
            }
        }
        let tombstone_horizon = self.h.now_ms.saturating_sub(self.h.delete_retention_ms);
        let mut kept: Vec<RecordView> = Vec::new();
        let mut dropped = 0u64;
        for r in batch.records() {
            let keep = match &r.key {
                None => true,
                Some(k) if self.latest.get(&k[..]) != Some(&r.offset) => false,
                Some(_) if r.value.is_some() => true,
                Some(_) if r.timestamp < tombstone_horizon => false,
                Some(_) => {
                    self.due(r.timestamp.saturating_add(self.h.delete_retention_ms).saturating_add(1));
                    true
                }
            };
            if keep {
                kept.push(r);
            } else {
                dropped += 1;
            }
        }
        if dropped == 0 {
            return Ok(None);
        }
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 1..=kept.len() {
            if i == kept.len() || kept[i].offset != kept[i - 1].offset + 1 {
                runs.push(codec::rebuild(&kept[start..i], kept[start].offset, batch.leader_epoch())?);
                start = i;
            }
        }
        Ok(Some(Rewrite { base: batch.base_offset(), len: stored_len, runs, removed: dropped }))
    }

    /// When a pass over the same committed records could do more (see [`Compacted`]).
    pub fn due_ms(&self) -> Option<i64> {
        self.due_ms
    }
}
