//! A task: one stage over one input partition, and its state. Processing is a pure
//! function of the state before a batch and the batch's records — the same batch from
//! the same state gives the same outputs and the same state changes, byte for byte,
//! which is what makes a replay after a crash write nothing twice (see
//! [`crate::changelog`]).
//!
//! State lives in an ordered map of string keys to JSON values, laid out per step:
//! - `{step}/k/{key}` — a running aggregate without windows;
//! - `{step}/w/{end}/{start}/{key}` — a time window's aggregate, ordered by window end
//!   so the windows that close are a prefix;
//! - `{step}/s/{key}` — a key's open sessions;
//! - `{step}/L|R/{len}:{key}/{time}/{seq}` — the buffered sides of a stream–stream join.
//!
//! Times in keys are written so that string order is time order (`ord`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::aggregate::{Agg, Skip};
use crate::record::Rec;
pub use crate::store::Change;
use crate::store::{MemStore, Store};
use crate::topology::{Dest, Emit, JoinWindow, Op, Stage};
use crate::window::{WindowSpec, Windows};

/// Table topic → key → latest value.
pub type Tables = BTreeMap<String, BTreeMap<String, Value>>;

/// A task's clock and tallies, kept with its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// The largest event time a stateful step has seen (`i64::MIN` before any record):
    /// the time of the records as that step gets them, so a `timestamp` step before it
    /// sets the clock windows go by.
    pub stream_time: i64,
    /// Records dropped because their window had closed.
    pub late: u64,
    /// Records a step could not take (no key where one is needed, a numeric
    /// aggregation's field not a number).
    pub skipped: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Self { stream_time: i64::MIN, late: 0, skipped: 0 }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskState<S = MemStore> {
    pub store: S,
    pub counters: Counters,
}

/// A record of a batch: which of the stage's inputs it came from, and its offset.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    pub input: usize,
    pub offset: u64,
    pub rec: Rec,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub dest: Dest,
    pub rec: Rec,
}

/// What a batch did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub outputs: Vec<Output>,
    pub changes: Vec<Change>,
    pub before: Counters,
    pub after: Counters,
}

/// A time as a fixed-width string whose order is the time's order.
fn ord(t: i64) -> String {
    format!("{:020}", (t as i128 - i64::MIN as i128) as u64)
}

/// The key part of state keys: its length first, so no key is a prefix of another's.
fn kpart(key: &str) -> String {
    format!("{}:{key}", key.len())
}

/// The windowed aggregate's record: keyed by the group key.
fn windowed(key: &str, start: i64, end: i64, value: Value, timestamp: i64) -> Rec {
    Rec {
        key: Some(key.to_owned()),
        value: json!({"key": key, "window_start": start, "window_end": end, "value": value}),
        timestamp,
    }
}

impl<S: Store> TaskState<S> {
    /// The state after a batch: its changes and counters applied.
    pub fn apply(&mut self, outcome: &Outcome) -> Result<(), String> {
        self.store.apply(&outcome.changes)?;
        self.counters = outcome.after;
        Ok(())
    }
}

/// [`compute`], then [`TaskState::apply`] on an in-memory state: it moves on at once.
pub fn process(stage: &Stage, tables: &Tables, state: &mut TaskState, batch: &[InputRecord]) -> Outcome {
    let outcome = compute(stage, tables, state, batch.to_vec());
    // A memory store's apply cannot fail.
    let _ = state.apply(&outcome);
    outcome
}

/// Processes one batch: every record through the stage's steps in order, then the
/// windows that the batch's stream time closed. The state is read, never changed: the
/// batch's writes go to an overlay and come out as [`Outcome::changes`], applied by the
/// caller once they are safely written ([`TaskState::apply`]).
pub fn compute<S: Store>(stage: &Stage, tables: &Tables, state: &TaskState<S>, batch: Vec<InputRecord>) -> Outcome {
    let before = state.counters;
    let mut run = Run {
        stage,
        tables,
        store: &state.store,
        touched: BTreeMap::new(),
        c: state.counters,
        out: Vec::new(),
        seq: String::new(),
        n: 0,
    };
    for r in batch {
        let Some(input) = stage.inputs.get(r.input) else { continue };
        run.seq = format!("{:02}{:020}", r.input, r.offset);
        run.n = 0;
        run.step(input.entry, r.rec, input.right);
    }
    run.seq = "zz".into();
    run.n = 0;
    run.close_windows();
    let Run { touched, c, out, .. } = run;
    let changes = touched
        .into_iter()
        .filter_map(|(key, t)| (t.before != t.now).then_some(Change { key, before: t.before, after: t.now }))
        .collect();
    Outcome { outputs: out, changes, before, after: c }
}

/// A key written in this batch: its value before the batch and now (`None`: absent).
struct Touch {
    before: Option<Value>,
    now: Option<Value>,
}

struct Run<'a> {
    stage: &'a Stage,
    tables: &'a Tables,
    /// The state before the batch (read only) …
    store: &'a dyn Store,
    /// … and the batch's writes over it.
    touched: BTreeMap<String, Touch>,
    c: Counters,
    out: Vec<Output>,
    /// The input record being processed (join buffers' unique part), and a counter of
    /// records it buffered.
    seq: String,
    n: u32,
}

impl Run<'_> {
    /// A key's value as the batch has left it so far.
    fn get(&self, key: &str) -> Option<Value> {
        match self.touched.get(key) {
            Some(t) => t.now.clone(),
            None => self.store.get(key),
        }
    }

    fn set(&mut self, key: String, now: Option<Value>) {
        let store = self.store;
        self.touched.entry(key).or_insert_with_key(|k| Touch { before: store.get(k), now: None }).now = now;
    }

    fn put(&mut self, key: String, value: Value) {
        self.set(key, Some(value));
    }

    fn delete(&mut self, key: &str) {
        self.set(key.to_owned(), None);
    }

    /// Entries with keys in `[lo, hi)`, as the batch has left them so far.
    fn range(&self, lo: String, hi: String) -> Vec<(String, Value)> {
        let mut merged: BTreeMap<String, Value> = self.store.range(&lo, &hi).into_iter().collect();
        if lo < hi {
            for (k, t) in self.touched.range(lo..hi) {
                match &t.now {
                    Some(v) => {
                        merged.insert(k.clone(), v.clone());
                    }
                    None => {
                        merged.remove(k);
                    }
                }
            }
        }
        merged.into_iter().collect()
    }

    fn step(&mut self, i: usize, rec: Rec, right: bool) {
        let stage = self.stage;
        let Some(op) = stage.ops.get(i) else { return };
        match op {
            Op::Filter(pred) => {
                if pred(&rec) {
                    self.step(i + 1, rec, false);
                }
            }
            Op::Map(f) => {
                let key = rec.key.clone();
                let mut r = f(rec);
                r.key = key;
                self.step(i + 1, r, false);
            }
            Op::FlatMap(f) => {
                let key = rec.key.clone();
                for mut r in f(rec) {
                    r.key.clone_from(&key);
                    self.step(i + 1, r, false);
                }
            }
            Op::KeyBy(f) => match f(&rec) {
                Some(k) => self.step(i + 1, Rec { key: Some(k), ..rec }, false),
                None => self.c.skipped += 1,
            },
            Op::Aggregate { windows, agg, emit } => match windows {
                None => self.aggregate(i, agg, rec),
                Some(spec) if matches!(spec.windows, Windows::Session { .. }) => self.session(i, spec, agg, *emit, rec),
                Some(spec) => self.time_windows(i, spec, agg, *emit, rec),
            },
            Op::JoinTable { table, joiner, left } => {
                let row = rec.key.as_ref().and_then(|k| self.tables.get(table).and_then(|t| t.get(k)));
                if row.is_some() || *left {
                    let value = joiner(&rec, row);
                    self.step(i + 1, Rec { value, ..rec }, false);
                }
            }
            Op::JoinStream { window, joiner, .. } => self.join(i, window, joiner, rec, right),
            Op::To(dest) => self.out.push(Output { dest: dest.clone(), rec }),
        }
    }

    fn aggregate(&mut self, i: usize, agg: &Agg, rec: Rec) {
        let Some(key) = rec.key.clone() else {
            self.c.skipped += 1;
            return;
        };
        let skey = format!("{i:03}/k/{key}");
        let acc = self.get(&skey).map(|v| v["acc"].clone()).unwrap_or_else(|| agg.init());
        match agg.add(&acc, &rec) {
            Err(Skip) => self.c.skipped += 1,
            Ok(acc) => {
                let value = json!({"key": key, "value": agg.finish(&acc)});
                self.put(skey, json!({"acc": acc}));
                self.step(i + 1, Rec { key: Some(key), value, timestamp: rec.timestamp }, false);
            }
        }
    }

    fn time_windows(&mut self, i: usize, spec: &WindowSpec, agg: &Agg, emit: Emit, rec: Rec) {
        self.c.stream_time = self.c.stream_time.max(rec.timestamp);
        let Some(key) = rec.key.clone() else {
            self.c.skipped += 1;
            return;
        };
        let mut late = false;
        for (start, end) in spec.windows_for(rec.timestamp) {
            if spec.time_window_closed(end, self.c.stream_time) {
                late = true;
                continue;
            }
            let skey = format!("{i:03}/w/{}/{}/{key}", ord(end), ord(start));
            let acc = self.get(&skey).map(|v| v["acc"].clone()).unwrap_or_else(|| agg.init());
            let Ok(acc) = agg.add(&acc, &rec) else {
                self.c.skipped += 1;
                return;
            };
            let finished = agg.finish(&acc);
            self.put(skey, json!({"key": key, "start": start, "end": end, "acc": acc}));
            if emit == Emit::Updates {
                self.step(i + 1, windowed(&key, start, end, finished, rec.timestamp), false);
            }
        }
        if late {
            self.c.late += 1;
        }
    }

    fn session(&mut self, i: usize, spec: &WindowSpec, agg: &Agg, emit: Emit, rec: Rec) {
        let Windows::Session { gap_ms } = spec.windows else { return };
        self.c.stream_time = self.c.stream_time.max(rec.timestamp);
        let Some(key) = rec.key.clone() else {
            self.c.skipped += 1;
            return;
        };
        let skey = format!("{i:03}/s/{key}");
        let sessions: Vec<Value> = self.get(&skey).and_then(|v| v["sessions"].as_array().cloned()).unwrap_or_default();
        let ts = rec.timestamp;
        let (mut start, mut end) = (ts, ts);
        let mut acc = agg.init();
        let mut kept = Vec::new();
        for s in sessions {
            let (s0, s1) = (s["start"].as_i64().unwrap_or(0), s["end"].as_i64().unwrap_or(0));
            // A session already closed (emitted at the end of its batch) takes nothing
            // more, whichever batch the record is in.
            let open = !spec.session_closed(s1, self.c.stream_time);
            if open && s0.saturating_sub(gap_ms) <= ts && ts <= s1.saturating_add(gap_ms) {
                start = start.min(s0);
                end = end.max(s1);
                acc = agg.merge(&acc, &s["acc"]);
            } else {
                kept.push(s);
            }
        }
        if spec.session_closed(end, self.c.stream_time) {
            self.c.late += 1;
            return;
        }
        let Ok(acc) = agg.add(&acc, &rec) else {
            self.c.skipped += 1;
            return;
        };
        let finished = agg.finish(&acc);
        kept.push(json!({"start": start, "end": end, "acc": acc}));
        kept.sort_by_key(|s| s["start"].as_i64().unwrap_or(0));
        self.put(skey, json!({"key": key, "sessions": kept}));
        if emit == Emit::Updates {
            self.step(i + 1, windowed(&key, start, end, finished, ts), false);
        }
    }

    fn join(&mut self, i: usize, w: &JoinWindow, joiner: &crate::topology::StreamJoiner, rec: Rec, right: bool) {
        self.c.stream_time = self.c.stream_time.max(rec.timestamp);
        let Some(key) = rec.key.clone() else {
            self.c.skipped += 1;
            return;
        };
        let t = rec.timestamp;
        // Late: its grace is over. Buffers are kept exactly as long as a record that is
        // not late could still match them (see close_windows).
        if t.saturating_add(w.grace_ms) < self.c.stream_time {
            self.c.late += 1;
            return;
        }
        let (own, other) = if right { ("R", "L") } else { ("L", "R") };
        // The other side's times that match: for a left record t, right in
        // [t - before, t + after]; for a right record, left in [t - after, t + before].
        let (lo, hi) = if right {
            (t.saturating_sub(w.after_ms), t.saturating_add(w.before_ms))
        } else {
            (t.saturating_sub(w.before_ms), t.saturating_add(w.after_ms))
        };
        let k = kpart(&key);
        let mine = format!("{i:03}/{own}/{k}/{}/{}/{}", ord(t), self.seq, self.n);
        self.n += 1;
        self.put(mine, json!({"t": t, "v": rec.value}));
        let matches = self.range(
            format!("{i:03}/{other}/{k}/{}", ord(lo)),
            format!("{i:03}/{other}/{k}/{}", ord(hi.saturating_add(1))),
        );
        for (_, m) in matches {
            let them = Rec { key: Some(key.clone()), value: m["v"].clone(), timestamp: m["t"].as_i64().unwrap_or(0) };
            let (l, r) = if right { (&them, &rec) } else { (&rec, &them) };
            let value = joiner(l, r);
            let timestamp = l.timestamp.max(r.timestamp);
            self.step(i + 1, Rec { key: Some(key.clone()), value, timestamp }, false);
        }
    }

    /// Closes what the stream time has passed: emits final windows and drops expired
    /// windows, sessions and join buffers.
    fn close_windows(&mut self) {
        let st = self.c.stream_time;
        if st == i64::MIN {
            return;
        }
        let stage = self.stage;
        for (i, op) in stage.ops.iter().enumerate() {
            match op {
                Op::Aggregate { windows: Some(spec), agg, emit } => match spec.windows {
                    Windows::Session { .. } => self.close_sessions(i, spec, agg, *emit),
                    _ => {
                        // Closed iff end + grace <= st, i.e. end < st - grace + 1.
                        let bound = st.saturating_sub(spec.grace_ms).saturating_add(1);
                        for (skey, v) in self.range(format!("{i:03}/w/"), format!("{i:03}/w/{}", ord(bound))) {
                            self.delete(&skey);
                            if *emit == Emit::Final {
                                let (start, end) = (v["start"].as_i64().unwrap_or(0), v["end"].as_i64().unwrap_or(0));
                                let key = v["key"].as_str().unwrap_or_default();
                                let rec = windowed(key, start, end, agg.finish(&v["acc"]), start.max(end - 1));
                                self.step(i + 1, rec, false);
                            }
                        }
                    }
                },
                Op::JoinStream { window, .. } => {
                    // A left record at t matches right records up to t + after, which are
                    // taken while their time + grace ≥ stream time: it is kept while
                    // t + after + grace ≥ stream time; a right one while
                    // t + before + grace ≥ stream time.
                    let left = format!("{i:03}/L/");
                    for (skey, v) in self.range(format!("{i:03}/"), format!("{i:03}0")) {
                        let t = v["t"].as_i64().unwrap_or(0);
                        let reach = if skey.starts_with(&left) { window.after_ms } else { window.before_ms };
                        if t.saturating_add(reach).saturating_add(window.grace_ms) < st {
                            self.delete(&skey);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn close_sessions(&mut self, i: usize, spec: &WindowSpec, agg: &Agg, emit: Emit) {
        let st = self.c.stream_time;
        for (skey, v) in self.range(format!("{i:03}/s/"), format!("{i:03}/s0")) {
            let key = v["key"].as_str().unwrap_or_default().to_owned();
            let sessions = v["sessions"].as_array().cloned().unwrap_or_default();
            let (closed, open): (Vec<Value>, Vec<Value>) =
                sessions.into_iter().partition(|s| spec.session_closed(s["end"].as_i64().unwrap_or(0), st));
            if closed.is_empty() {
                continue;
            }
            if open.is_empty() {
                self.delete(&skey);
            } else {
                self.put(skey, json!({"key": key, "sessions": open}));
            }
            if emit == Emit::Final {
                for s in closed {
                    let (start, end) = (s["start"].as_i64().unwrap_or(0), s["end"].as_i64().unwrap_or(0));
                    self.step(i + 1, windowed(&key, start, end, agg.finish(&s["acc"]), end), false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
