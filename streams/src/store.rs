//! Where a task's state lives: in memory ([`MemStore`]), or in a local RocksDB
//! ([`RocksStore`]) so a task's state need not fit in memory. Either way it is a cache
//! of the task's changelog: a task that starts loads it from the changelog (the local
//! RocksDB is wiped when the processor starts), so no local file is ever the only copy.
//!
//! The engine only reads a store ([`crate::task::compute`]); a batch's changes are
//! applied once they are written ([`Store::apply`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB};
use serde_json::Value;

/// One state key's change over a batch (`None`: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A task's state: string keys to JSON values, ordered by key.
pub trait Store {
    fn get(&self, key: &str) -> Option<Value>;
    /// Entries with keys in `[lo, hi)`, in key order.
    fn range(&self, lo: &str, hi: &str) -> Vec<(String, Value)>;
    /// Number of keys.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A batch's changes (`after: None` removes the key).
    fn apply(&mut self, changes: &[Change]) -> Result<(), String>;
}

/// State in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemStore(pub BTreeMap<String, Value>);

impl Store for MemStore {
    fn get(&self, key: &str) -> Option<Value> {
        self.0.get(key).cloned()
    }

    fn range(&self, lo: &str, hi: &str) -> Vec<(String, Value)> {
        if lo >= hi {
            return Vec::new();
        }
        self.0.range(lo.to_owned()..hi.to_owned()).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn apply(&mut self, changes: &[Change]) -> Result<(), String> {
        for c in changes {
            match &c.after {
                Some(v) => {
                    self.0.insert(c.key.clone(), v.clone());
                }
                None => {
                    self.0.remove(&c.key);
                }
            }
        }
        Ok(())
    }
}

/// One processor's local RocksDB, shared by its tasks (each under its own key prefix).
#[derive(Clone)]
pub struct LocalDb(Arc<DB>);

impl LocalDb {
    /// Opens a fresh database in `dir` (anything there before is removed: state comes
    /// from the changelogs). WAL off and no sync: it is a cache.
    pub fn open_fresh(dir: &Path) -> Result<Self, String> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| format!("clearing {}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_background_jobs(1);
        DB::open(&opts, dir).map(|db| Self(Arc::new(db))).map_err(|e| format!("opening {}: {e}", dir.display()))
    }

    /// The store of one task, emptied, then loaded with `entries`.
    pub fn task_store(&self, task: &str, entries: BTreeMap<String, Value>) -> Result<RocksStore, String> {
        let prefix = format!("{task}\u{0}");
        let store = RocksStore { db: self.0.clone(), prefix, len: 0 };
        store.clear()?;
        let mut batch = WriteBatch::default();
        for (k, v) in &entries {
            batch.put(store.key(k), serde_json::to_vec(v).map_err(|e| e.to_string())?);
        }
        store.write(batch)?;
        Ok(RocksStore { len: entries.len(), ..store })
    }
}

/// A task's state in the processor's local RocksDB.
pub struct RocksStore {
    db: Arc<DB>,
    prefix: String,
    len: usize,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RocksStore({:?}, {} keys)", self.prefix, self.len)
    }
}

impl RocksStore {
    fn key(&self, k: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + k.len());
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(k.as_bytes());
        out
    }

    /// The prefix's end: the prefix with its last byte (the `\0` separator) plus one.
    fn end(&self) -> Vec<u8> {
        let mut e = self.prefix.as_bytes().to_vec();
        if let Some(last) = e.last_mut() {
            *last += 1;
        }
        e
    }

    fn write(&self, batch: WriteBatch) -> Result<(), String> {
        let mut w = WriteOptions::default();
        w.disable_wal(true);
        self.db.write_opt(batch, &w).map_err(|e| e.to_string())
    }

    /// Removes every key of this task.
    pub fn clear(&self) -> Result<(), String> {
        let mut batch = WriteBatch::default();
        batch.delete_range(self.prefix.as_bytes(), &self.end()[..]);
        self.write(batch)
    }
}

impl Store for RocksStore {
    fn get(&self, key: &str) -> Option<Value> {
        let bytes = self.db.get(self.key(key)).ok().flatten()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn range(&self, lo: &str, hi: &str) -> Vec<(String, Value)> {
        if lo >= hi {
            return Vec::new();
        }
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(self.key(hi));
        let start = self.key(lo);
        let iter = self.db.iterator_opt(IteratorMode::From(&start, rocksdb::Direction::Forward), opts);
        let mut out = Vec::new();
        for item in iter {
            let Ok((k, v)) = item else { break };
            let Some(key) = k.strip_prefix(self.prefix.as_bytes()) else { break };
            if let (Ok(key), Ok(value)) = (std::str::from_utf8(key), serde_json::from_slice::<Value>(&v)) {
                out.push((key.to_owned(), value));
            }
        }
        out
    }

    fn len(&self) -> usize {
        self.len
    }

    fn apply(&mut self, changes: &[Change]) -> Result<(), String> {
        let mut batch = WriteBatch::default();
        let mut len = self.len as i64;
        for c in changes {
            match &c.after {
                Some(v) => batch.put(self.key(&c.key), serde_json::to_vec(v).map_err(|e| e.to_string())?),
                None => batch.delete(self.key(&c.key)),
            }
            len += i64::from(c.after.is_some()) - i64::from(c.before.is_some());
        }
        self.write(batch)?;
        self.len = len.max(0) as usize;
        Ok(())
    }
}

/// The store a running task uses.
#[derive(Debug)]
pub enum AnyStore {
    Mem(MemStore),
    Rocks(RocksStore),
}

impl Store for AnyStore {
    fn get(&self, key: &str) -> Option<Value> {
        match self {
            AnyStore::Mem(s) => s.get(key),
            AnyStore::Rocks(s) => s.get(key),
        }
    }

    fn range(&self, lo: &str, hi: &str) -> Vec<(String, Value)> {
        match self {
            AnyStore::Mem(s) => s.range(lo, hi),
            AnyStore::Rocks(s) => s.range(lo, hi),
        }
    }

    fn len(&self) -> usize {
        match self {
            AnyStore::Mem(s) => s.len(),
            AnyStore::Rocks(s) => s.len(),
        }
    }

    fn apply(&mut self, changes: &[Change]) -> Result<(), String> {
        match self {
            AnyStore::Mem(s) => s.apply(changes),
            AnyStore::Rocks(s) => s.apply(changes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(key: &str, before: Option<Value>, after: Option<Value>) -> Change {
        Change { key: key.into(), before, after }
    }

    /// The two stores answer alike: gets, half-open ranges in key order (keys that are
    /// prefixes of others included), lengths, and tasks that share a database see only
    /// their own keys.
    #[test]
    fn rocks_and_memory_stores_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = LocalDb::open_fresh(&dir.path().join("state")).expect("open");
        let mut rocks = db.task_store("0/1", BTreeMap::from([("a".to_owned(), json!(1))])).expect("task");
        let mut other = db.task_store("0/10", BTreeMap::from([("a".to_owned(), json!("other"))])).expect("task");
        let mut mem = MemStore(BTreeMap::from([("a".to_owned(), json!(1))]));
        let changes = vec![
            change("b", None, Some(json!({"n": 2}))),
            change("ba", None, Some(json!(3))),
            change("c", None, Some(json!([4]))),
            change("a", Some(json!(1)), None),
        ];
        rocks.apply(&changes).expect("apply");
        mem.apply(&changes).expect("apply");
        other.apply(&[change("b", None, Some(json!("x")))]).expect("apply");
        for (lo, hi) in [("", "z"), ("b", "c"), ("b", "ba"), ("ba", "bb"), ("c", "c"), ("z", "a")] {
            assert_eq!(rocks.range(lo, hi), mem.range(lo, hi), "[{lo}, {hi})");
        }
        for k in ["a", "b", "ba", "c", "d"] {
            assert_eq!(rocks.get(k), mem.get(k), "{k}");
        }
        assert_eq!((rocks.len(), mem.len()), (3, 3));
        assert_eq!(other.get("a"), Some(json!("other")));
        assert_eq!(other.range("", "z").len(), 2);
        // A task started again on the same database starts from what it is given.
        let again = db.task_store("0/1", BTreeMap::new()).expect("task");
        assert_eq!(again.range("", "z"), Vec::new());
        assert_eq!(other.get("b"), Some(json!("x")), "another task's keys are untouched");
    }
}
