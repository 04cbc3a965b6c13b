//! A partition's producer state as stored: idempotency entries and producer sessions, read through the engine and changed by the same engine
//! write as the batches that change them (appends, replicated appends, truncation), or
//! by an expiry pass. The decisions are [`crate::dedupe`]'s.

use crate::dedupe::{self, Check, Dedupe};
use crate::engine::{Engine, WriteOp};
use crate::error::{Error, Result};
use fjord_protocol::codec::{Batch, IdempotencyEntry, ProducerEntry, ProducerExt, StateKey};
use std::collections::HashMap;

/// The producer state one write reads and changes: what it read (or already changed, so
/// a later batch of the same run sees an earlier one's key) and the ops to write.
pub struct StateRun<'a> {
    engine: &'a dyn Engine,
    store: &'a str,
    idempotency: HashMap<Vec<u8>, Option<IdempotencyEntry>>,
    producers: HashMap<u64, Option<ProducerEntry>>,
    /// `(state key, Some(value) | None to delete)`, in order.
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl<'a> StateRun<'a> {
    pub fn new(engine: &'a dyn Engine, store: &'a str) -> Self {
        Self { engine, store, idempotency: HashMap::new(), producers: HashMap::new(), ops: Vec::new() }
    }

    fn idempotency_entry(&mut self, key: &[u8]) -> Result<Option<IdempotencyEntry>> {
        if let Some(e) = self.idempotency.get(key) {
            return Ok(*e);
        }
        let stored = self.engine.get_state(self.store, &StateKey::Idempotency(key).encode())?;
        let entry = match stored {
            Some(bytes) => Some(IdempotencyEntry::decode(&bytes).ok_or(Error::BadMeta("idempotency entry"))?),
            None => None,
        };
        self.idempotency.insert(key.to_vec(), entry);
        Ok(entry)
    }

    fn producer_entry(&mut self, id: u64) -> Result<Option<ProducerEntry>> {
        if let Some(e) = self.producers.get(&id) {
            return Ok(e.clone());
        }
        let stored = self.engine.get_state(self.store, &StateKey::Producer(id).encode())?;
        let entry = match stored {
            Some(bytes) => Some(ProducerEntry::decode(&bytes).ok_or(Error::BadMeta("producer entry"))?),
            None => None,
        };
        self.producers.insert(id, entry.clone());
        Ok(entry)
    }

    /// Whether a leader may write `batch` (new), must answer it as a replay, or must
    /// refuse it. A batch without a producer extension is always new.
    pub fn check(&mut self, batch: &Batch, d: &Dedupe) -> Result<Check> {
        let Some(ext) = batch.ext() else { return Ok(Check::New) };
        if let Some(idem) = &ext.idempotency {
            let found = self.idempotency_entry(&idem.key)?;
            match dedupe::idempotency(found.as_ref(), idem, d) {
                Check::New => {}
                decided => return Ok(decided),
            }
        }
        if let Some(s) = &ext.session {
            let state = self.producer_entry(s.producer_id)?;
            return Ok(dedupe::session(state.as_ref(), s, batch.record_count()));
        }
        Ok(Check::New)
    }

    /// Records what writing `batch` changes (a leader's accepted batch, or a batch a
    /// follower replicates: every replica keeps the same state).
    pub fn record(&mut self, batch: &Batch) -> Result<()> {
        let Some(ext) = batch.ext() else { return Ok(()) };
        if let Some(idem) = &ext.idempotency {
            // One put, no read: a follower replicating keeps up at the leader's pace.
            let entry = IdempotencyEntry {
                fingerprint: idem.fingerprint,
                base_offset: batch.base_offset(),
                record_count: batch.record_count(),
                default_timestamp: ext.default_timestamp,
                routed_with: idem.routed_with,
                written_ms: ext.default_timestamp,
            };
            self.ops.push((StateKey::Idempotency(&idem.key).encode(), Some(entry.encode())));
            self.idempotency.insert(idem.key.clone(), Some(entry));
        }
        if let Some(s) = &ext.session {
            let old = self.producer_entry(s.producer_id)?;
            let next =
                dedupe::after_session_batch(old, s, batch.base_offset(), batch.record_count(), ext.default_timestamp);
            self.ops.push((StateKey::Producer(s.producer_id).encode(), Some(next.encode())));
            self.producers.insert(s.producer_id, Some(next));
        }
        Ok(())
    }

    /// Forgets the batches a truncation to `log_end` removes (`(base offset, extension)`
    /// of each): their idempotency entries go, and their producers' sequences go back.
    pub fn forget(&mut self, removed: &[(u64, ProducerExt)], log_end: u64) -> Result<()> {
        for (base, ext) in removed {
            if let Some(idem) = &ext.idempotency {
                if let Some(entry) = self.idempotency_entry(&idem.key)? {
                    if entry.base_offset == *base {
                        self.ops.push((StateKey::Idempotency(&idem.key).encode(), None));
                        self.idempotency.insert(idem.key.clone(), None);
                    }
                }
            }
            if let Some(s) = &ext.session {
                if let Some(state) = self.producer_entry(s.producer_id)? {
                    let next = dedupe::after_truncation(state, log_end);
                    self.ops.push((StateKey::Producer(s.producer_id).encode(), Some(next.encode())));
                    self.producers.insert(s.producer_id, Some(next));
                }
            }
        }
        Ok(())
    }

    /// Removes idempotency entries written before `now_ms - window_ms` and producer
    /// sessions idle since before `now_ms - expiration_ms`. Returns how many of each.
    /// One pass over the entries (there is no time-ordered index: it would double the
    /// writes of every keyed append, and the pass runs only every cleanup interval).
    pub fn expire(&mut self, now_ms: i64, window_ms: i64, expiration_ms: i64) -> Result<(u64, u64)> {
        let cutoff = now_ms.saturating_sub(window_ms);
        let mut expired = Vec::new();
        self.engine.scan_state(self.store, StateKey::IDEMPOTENCY_PREFIX, &mut |k, v| {
            if let (Some(key), Some(e)) = (k.strip_prefix(StateKey::IDEMPOTENCY_PREFIX), IdempotencyEntry::decode(v)) {
                if e.written_ms < cutoff {
                    expired.push(key.to_vec());
                }
            }
            true
        })?;
        for key in &expired {
            self.ops.push((StateKey::Idempotency(key).encode(), None));
            self.idempotency.insert(key.clone(), None);
        }
        let idle_before = now_ms.saturating_sub(expiration_ms);
        let mut idle = Vec::new();
        self.engine.scan_state(self.store, StateKey::PRODUCER_PREFIX, &mut |k, v| {
            let id = k.get(2..10).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
            if let (Some(id), Some(e)) = (id, ProducerEntry::decode(v)) {
                if e.last_write_ms < idle_before {
                    idle.push(id);
                }
            }
            true
        })?;
        for id in &idle {
            self.ops.push((StateKey::Producer(*id).encode(), None));
            self.producers.insert(*id, None);
        }
        Ok((expired.len() as u64, idle.len() as u64))
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The engine ops of the changes, in order.
    pub fn write_ops(&self) -> Vec<WriteOp<'_>> {
        self.ops
            .iter()
            .map(|(key, value)| match value {
                Some(value) => WriteOp::PutState { key, value },
                None => WriteOp::DeleteState { key },
            })
            .collect()
    }
}

/// Counts a store's idempotency entries and producer sessions (tests and measurements).
pub fn count(engine: &dyn Engine, store: &str) -> Result<(u64, u64)> {
    let (mut keys, mut producers) = (0u64, 0u64);
    engine.scan_state(store, StateKey::IDEMPOTENCY_PREFIX, &mut |_, _| {
        keys += 1;
        true
    })?;
    engine.scan_state(store, StateKey::PRODUCER_PREFIX, &mut |_, _| {
        producers += 1;
        true
    })?;
    Ok((keys, producers))
}
