//! A task's changelog: how its state survives a crash or a move, and why a replayed
//! batch writes nothing twice.
//!
//! Each stage has a compacted changelog topic with one partition per task (partition
//! *p* holds the task of input partition *p*); a stateless stage's holds only its
//! intents, which is what makes its batches exact on a redo too. A batch of input offsets
//! `[start, end]` is written in this order, each write acknowledged (`acks=all`) before
//! the next:
//!
//! 1. **the changelog**, one request to the task's partition (so one batch, written
//!    whole or not at all): the *intent* `{seq, starts, ends, counters before and after}`
//!    under the key `__intent`, and every changed state key as `{batch: seq, before,
//!    after}`;
//! 2. **the outputs**, to sink and repartition topics;
//! 3. **the commit** of `ends`.
//!
//! Every request carries an `Idempotency-Key` derived from the pipeline, stage, task,
//! batch number and offsets. A task that starts (after a crash, or on another instance)
//! reads its changelog: if the latest intent's `starts` are the committed offsets, that
//! batch was begun but not committed, so its keys take their `before` values, and the
//! batch is processed again *exactly* — the same records of each input, no more, from
//! the same state.
//! Processing is deterministic, so the requests are the same, and the server answers
//! each already-written one from its idempotency record without writing. Outputs are
//! written once and state is counted once: effectively once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::MemStore;
use crate::task::{Change, Counters, TaskState};

/// The changelog key of a task's latest batch.
pub const INTENT_KEY: &str = "__intent";

/// A batch begun: its number, its input offsets and the task's counters around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The task's batch number (one more than the last committed batch's).
    pub seq: u64,
    /// Per input of the stage: the first offset of the batch (the committed one) and
    /// the one after its last record.
    pub starts: Vec<u64>,
    pub ends: Vec<u64>,
    pub before: Counters,
    pub after: Counters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    batch: u64,
    before: Option<Value>,
    after: Option<Value>,
}

/// The changelog records of a batch: `(key, value)`, the intent first.
pub fn records(intent: &Intent, changes: &[Change]) -> Vec<(String, Value)> {
    let mut out = Vec::with_capacity(changes.len() + 1);
    out.push((INTENT_KEY.to_owned(), serde_json::to_value(intent).unwrap_or(Value::Null)));
    for c in changes {
        let e = Entry { batch: intent.seq, before: c.before.clone(), after: c.after.clone() };
        out.push((c.key.clone(), serde_json::to_value(e).unwrap_or(Value::Null)));
    }
    out
}

/// A task's state as its changelog leaves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub state: TaskState,
    /// The latest batch, if any.
    pub intent: Option<Intent>,
    /// The latest batch was begun and not committed: process it again, exactly.
    pub pending: bool,
    /// Changelog entries that did not decode (left out of the state, and reported).
    pub undecodable: u64,
}

/// Rebuilds a task's state from its changelog records in offset order (`None`: a
/// tombstone), given the group's committed offsets for the stage's inputs.
pub fn restore(records: impl IntoIterator<Item = (String, Option<Value>)>, committed: &[Option<u64>]) -> Restored {
    let mut latest: BTreeMap<String, Option<Value>> = BTreeMap::new();
    for (k, v) in records {
        latest.insert(k, v);
    }
    let mut undecodable = 0;
    let intent: Option<Intent> = match latest.remove(INTENT_KEY).flatten() {
        None => None,
        Some(v) => serde_json::from_value(v).map_err(|_| undecodable += 1).ok(),
    };
    let pending = intent.as_ref().is_some_and(|i| {
        i.starts.len() == committed.len()
            && i.ends.len() == committed.len()
            && i.starts.iter().zip(committed).all(|(s, c)| Some(*s) == *c)
    });
    let mut store = BTreeMap::new();
    for (k, v) in latest {
        let Some(v) = v else { continue };
        let Ok(e) = serde_json::from_value::<Entry>(v) else {
            undecodable += 1;
            continue;
        };
        let value = match &intent {
            Some(i) if pending && e.batch == i.seq => e.before,
            _ => e.after,
        };
        if let Some(value) = value {
            store.insert(k, value);
        }
    }
    let counters = match &intent {
        Some(i) if pending => i.before,
        Some(i) => i.after,
        None => Counters::default(),
    };
    Restored { state: TaskState { store: MemStore(store), counters }, intent, pending, undecodable }
}

/// The state keys that a committed batch deleted: their changelog entries can become
/// tombstones (a later, separate write; losing it only keeps a dead entry).
pub fn deleted_keys(changes: &[Change]) -> Vec<String> {
    changes.iter().filter(|c| c.after.is_none()).map(|c| c.key.clone()).collect()
}
