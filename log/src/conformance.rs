//! Storage conformance suite and model-based property test for [`PartitionLog`].
//!
//! # What the suite proves
//! All log logic lives in [`PartitionLog`] above the small [`Engine`] seam, so its
//! contract must hold identically over every engine. Each case below is a plain function
//! over a [`Harness`] that creates a fresh engine and can "restart" it; the
//! `conformance!` macro runs every case against [`MemEngine`] (`mem::<case>`: a restart
//! re-opens the logs over the same engine) and against the real [`RocksEngine`] in a
//! temporary directory (`rocks::<case>`: a restart closes RocksDB and opens it again from
//! disk). Together the cases pin down that:
//! - appends assign dense offsets from 0, stamp base offset and leader epoch, and what is
//!   read back, from any offset (mid-batch included), equals what was appended byte for
//!   byte: absent, empty and binary keys and values, tombstones, repeated header names;
//! - reads honour `max_bytes` softly (at least one batch, stop once the total reaches it),
//!   are empty at the LEO, fail with [`Error::OffsetOutOfRange`] below the log start or
//!   above the LEO, and never return a batch starting at or after `upto`;
//! - the high watermark only rises, is clamped to the LEO, and wakes its subscribers; the
//!   value it publishes never goes backwards, even under concurrent advances;
//! - a restart recovers log start, LEO, size and epoch history (even when retention has
//!   removed every batch); the HW restarts at its last checkpoint (the log start without
//!   one) for the replica layer to raise, and a truncation below the checkpoint lowers
//!   it in the same write, so a restart never serves what was appended after it;
//! - the leader-epoch history records the first offset of each new epoch;
//! - retention by time and by bytes (Kafka's rule) removes whole committed batches from
//!   the start only, moves the log start, keeps the LEO, and shrinks the size exactly;
//! - `offset_for_timestamp` finds the earliest committed offset whose timestamp is `>= t`,
//!   also when timestamps inside a batch are not monotonic;
//! - compaction keeps the latest committed record per key at its offset, rewrites a
//!   batch as runs of survivors (leaving gaps that reads skip), and a restart recovers
//!   the compacted log as it was;
//! - exactly-once appends ([`crate::dedupe`]): an idempotency key's retry within the
//!   window is answered with the original offsets and writes nothing, another request
//!   under the key is refused, after the window (or an expiry pass) it is new; a
//!   producer session's duplicate sequence replays, a gap is refused, an older epoch is
//!   fenced; the state is written in the same write as its batch (a refused or fenced
//!   write leaves none), survives restarts, is rebuilt by followers from the batches they
//!   replicate (a follower turned leader answers the replay), forgets exactly the batches
//!   a truncation removes, and outlives retention and compaction of its batches;
//!   conditional appends (`expected_offset`) write only where the log ends, also within
//!   one group-commit run;
//! - a follower whose log ends below its leader's log start resets to it: empty,
//!   starting and ending there, durable across a restart, and takes the leader's batches
//!   from there; a reset is refused when it would skip nothing or the role moved on;
//! - a stored batch whose bytes were damaged under the log is never served: every read
//!   or timestamp look-up reaching it fails with `Damaged` at its offset (`corrupt_log`),
//!   and `truncate_to` its offset removes it and what follows;
//! - at the engine level: `scan`/`last_batch`/`get_meta` follow the [`Engine`] contract,
//!   stores are independent, `create_partition` is idempotent, `list_partitions` lists the
//!   stores, and `drop_partition` removes a store's batches and metadata.
//!
//! # The model
//! [`model`] runs random sequences of appends, HW advances, reads, retention, compaction,
//! timestamp look-ups and restarts against both engines and against a shadow model (the
//! batches with
//! their records, the log start, LEO, HW and epoch history), comparing offsets, epochs,
//! every read (batches, decoded records, out-of-range errors) and the committed records
//! after every step.

use crate::compaction::Compacted;
use crate::dedupe::{Dedupe, Replay};
use crate::engine::{Engine, MemEngine, WriteOp};
use crate::error::{Error, Result};
use crate::partition::{Append, Appended, LogOffsets, PartitionLog, Removed};
use crate::rocks::{RocksEngine, RocksOptions};
use bytes::Bytes;
use fjord_protocol::codec::MetaKey;
use fjord_protocol::codec::{Batch, BatchBuilder, Header, Idempotency, ProducerExt, Record, RecordView, Session};
use fjord_protocol::{ErrorCode, FjordError};
use std::fmt::Debug;
use std::sync::Arc;
use tempfile::TempDir;

/// `max_bytes` for "everything".
const ALL: usize = usize::MAX;

// ---------------------------------------------------------------------------------------
// Harnesses

/// Creates a fresh engine and simulates a process restart over its stored state.
trait Harness {
    fn engine(&self) -> Arc<dyn Engine>;
    /// Restarts the engine. Every [`PartitionLog`] and engine handle must be dropped first.
    fn restart(&mut self);
}

/// [`MemEngine`]: a restart keeps the same engine; logs re-open (recover) over it.
struct MemHarness {
    engine: Arc<MemEngine>,
}

impl MemHarness {
    fn new() -> Self {
        Self { engine: Arc::new(MemEngine::new()) }
    }
}

impl Harness for MemHarness {
    fn engine(&self) -> Arc<dyn Engine> {
        self.engine.clone()
    }

    fn restart(&mut self) {}
}

/// [`RocksEngine`] in a temporary directory: a restart closes RocksDB and opens the same
/// path again with default options.
struct RocksHarness {
    // Before `dir`, so the database closes before its directory is removed.
    engine: Option<Arc<RocksEngine>>,
    dir: TempDir,
}

impl RocksHarness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Self::open(&dir);
        Self { engine: Some(engine), dir }
    }

    fn open(dir: &TempDir) -> Arc<RocksEngine> {
        Arc::new(RocksEngine::open(dir.path(), &RocksOptions::default()).expect("open RocksDB"))
    }
}

impl Harness for RocksHarness {
    fn engine(&self) -> Arc<dyn Engine> {
        self.engine.clone().expect("engine is open")
    }

    fn restart(&mut self) {
        let engine = self.engine.take().expect("engine is open");
        assert_eq!(Arc::strong_count(&engine), 1, "a log or engine handle outlived the restart");
        drop(engine);
        self.engine = Some(Self::open(&self.dir));
    }
}

/// Runs every listed case against both engines: `mem::<case>` and `rocks::<case>`.
macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        mod mem {
            $(
                #[test]
                fn $case() {
                    super::$case(&mut super::MemHarness::new());
                }
            )+
        }

        mod rocks {
            $(
                #[test]
                fn $case() {
                    super::$case(&mut super::RocksHarness::new());
                }
            )+
        }
    };
}

conformance!(
    append_assigns_dense_offsets_and_reads_back_exactly,
    read_max_bytes_is_soft,
    read_bounds_and_upto,
    high_watermark_is_monotonic_clamped_and_notifies,
    concurrent_high_watermark_advances_publish_monotonically,
    restart_recovers_state,
    a_checkpointed_high_watermark_survives_restarts,
    epoch_history,
    retention_by_time,
    retention_by_bytes,
    retention_can_empty_the_log,
    offset_for_timestamp,
    compaction_round_trip,
    engine_scan_contract,
    create_and_list_partitions,
    drop_partition_removes_data,
    idempotency_keys_replay_refuse_and_expire,
    producer_state_is_written_with_its_batch,
    followers_keep_the_leaders_producer_state,
    truncation_forgets_truncated_producer_state,
    retention_and_compaction_keep_producer_state,
    producer_sessions_sequence_and_fence,
    conditional_appends,
    a_follower_behind_the_leaders_log_start_resets_there,
    a_damaged_stored_batch_is_never_served_and_can_be_cut,
);

// ---------------------------------------------------------------------------------------
// Helpers

fn open(h: &impl Harness, name: &str) -> PartitionLog {
    PartitionLog::open(h.engine(), name).expect("open log")
}

/// Drops `log`, restarts the engine and re-opens the log.
fn restart(h: &mut impl Harness, log: PartitionLog) -> PartitionLog {
    let name = log.name().to_owned();
    drop(log);
    h.restart();
    open(h, &name)
}

fn rec(timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Record {
    Record {
        timestamp,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: headers
            .iter()
            .map(|(name, value)| Header { name: (*name).to_owned(), value: Bytes::copy_from_slice(value) })
            .collect(),
    }
}

/// One record per timestamp, keyed `{tag}-{i}`.
fn timed(tag: &str, timestamps: &[i64]) -> Vec<Record> {
    timestamps
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            rec(*ts, Some(format!("{tag}-{i}").as_bytes()), Some(format!("value {tag} {i} at {ts}").as_bytes()), &[])
        })
        .collect()
}

fn encode(records: &[Record]) -> Bytes {
    let mut builder = BatchBuilder::default();
    for r in records {
        builder.push(r).expect("push record");
    }
    builder.finish().expect("finish batch")
}

/// Appends `records` as one batch and checks the stamped batch that comes back.
fn append(log: &PartitionLog, records: &[Record], epoch: u32) -> Batch {
    let leo = log.offsets().log_end;
    let batch = log.append(encode(records), epoch).expect("append");
    assert_eq!(batch.base_offset(), leo, "a batch is appended at the LEO");
    assert_eq!(batch.leader_epoch(), epoch, "the leader epoch is stamped");
    assert_eq!(batch.record_count() as usize, records.len());
    let back: Vec<Record> = batch.records().map(RecordView::into_record).collect();
    assert_eq!(back, records, "the stamped batch holds the appended records");
    assert_eq!(log.offsets().log_end, batch.next_offset());
    batch
}

/// A successful read, each batch parsed (so CRC and framing are checked).
fn read(log: &PartitionLog, offset: u64, max_bytes: usize, upto: u64) -> Vec<Batch> {
    log.read(offset, max_bytes, upto)
        .unwrap_or_else(|e| panic!("read({offset}, {max_bytes}, {upto}) failed: {e}"))
        .into_iter()
        .map(|b| Batch::parse(b).expect("read returns whole, valid batches"))
        .collect()
}

fn bases(batches: &[Batch]) -> Vec<u64> {
    batches.iter().map(Batch::base_offset).collect()
}

/// The records of `batches` at offsets `>= from`, with their offsets.
fn records_from(batches: &[Batch], from: u64) -> Vec<(u64, Record)> {
    batches.iter().flat_map(Batch::records).filter(|r| r.offset >= from).map(|r| (r.offset, r.into_record())).collect()
}

/// `records` numbered from `base`.
fn numbered(base: u64, records: &[Record]) -> Vec<(u64, Record)> {
    (base..).zip(records.iter().cloned()).collect()
}

/// What a consumer reading from the log start gets: the batches starting below the HW.
fn committed(log: &PartitionLog) -> Vec<(u64, Record)> {
    let o = log.offsets();
    records_from(&read(log, o.log_start, ALL, o.high_watermark), o.log_start)
}

fn assert_out_of_range<T: Debug>(result: Result<T>, offset: u64, log_start: u64, log_end: u64) {
    match result {
        Err(Error::OffsetOutOfRange { offset: o, log_start: s, log_end: e }) => {
            assert_eq!((o, s, e), (offset, log_start, log_end), "out-of-range error fields")
        }
        other => panic!("offset {offset}: expected OffsetOutOfRange [{log_start}, {log_end}], got {other:?}"),
    }
}

fn len(batch: &Batch) -> u64 {
    batch.len() as u64
}

fn sorted_partitions(engine: &dyn Engine) -> Vec<String> {
    let mut names = engine.list_partitions().expect("list partitions");
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------
// Cases

fn append_assigns_dense_offsets_and_reads_back_exactly<H: Harness>(h: &mut H) {
    let log = open(h, "p.t.0");
    assert_eq!(log.offsets(), LogOffsets::default());

    let all_bytes: Vec<u8> = (0..=255).collect();
    let reversed: Vec<u8> = (0..=255).rev().collect();
    let batches: Vec<Vec<Record>> = vec![
        vec![
            rec(1_000, Some(b"k0"), Some(b"v0"), &[]),
            rec(1_001, None, None, &[]),
            rec(1_002, Some(b""), Some(b""), &[("h", b"1"), ("h", b"2"), ("h", b"")]),
        ],
        vec![
            rec(999, Some(&all_bytes), Some(&reversed), &[("bin", &all_bytes), ("bin", &reversed)]),
            rec(-5, Some(b"tombstone"), None, &[("\u{fc}n\u{ef}", b"\0\xff"), ("", b"")]),
        ],
        vec![rec(2_000, None, Some(b"only a value"), &[])],
        (0..5u8)
            .map(|i| rec(3_000 + i64::from(i), Some(&[i, 0, 255]), Some(&vec![i; usize::from(i) * 7]), &[("n", &[i])]))
            .collect(),
    ];

    let mut expected = Vec::new();
    let mut stamped = Vec::new();
    let mut size = 0;
    for records in &batches {
        let batch = append(&log, records, 7);
        expected.extend(numbered(batch.base_offset(), records));
        size += len(&batch);
        stamped.push(batch);
    }
    let leo = expected.len() as u64;
    assert_eq!(bases(&stamped), [0, 3, 5, 6], "offsets are dense from 0");
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: leo, high_watermark: 0, size_bytes: size });

    // Nothing is committed yet: a consumer (upto = HW) sees nothing, a replica reading up
    // to the LEO sees everything.
    assert!(read(&log, 0, ALL, 0).is_empty());
    assert_eq!(records_from(&read(&log, 0, ALL, leo), 0), expected);

    log.advance_high_watermark(leo);
    assert_eq!(log.offsets().high_watermark, leo);
    assert_eq!(read(&log, 0, ALL, leo), stamped, "stored batches are the stamped batches, byte for byte");
    for offset in 0..=leo {
        let got = read(&log, offset, ALL, leo);
        match got.first() {
            Some(first) => assert!(
                first.base_offset() <= offset && offset < first.next_offset(),
                "read({offset}) starts with the batch holding it"
            ),
            None => assert_eq!(offset, leo, "only a read at the LEO is empty"),
        }
        assert_eq!(records_from(&got, offset), expected[offset as usize..], "read from offset {offset}");
    }
}

fn read_max_bytes_is_soft<H: Harness>(h: &mut H) {
    let log = open(h, "p.t.0");
    let mut lens = Vec::new();
    for i in 0..4u8 {
        let records: Vec<Record> =
            (0..3).map(|j| rec(j, None, Some(&vec![i; 10 * (usize::from(i) + 1)]), &[])).collect();
        lens.push(append(&log, &records, 1).len());
    }
    log.advance_high_watermark(12);
    let at = |offset: u64, max_bytes: usize| bases(&read(&log, offset, max_bytes, 12));

    assert_eq!(at(0, 0), [0], "at least one batch, even for max_bytes 0");
    assert_eq!(at(0, 1), [0]);
    assert_eq!(at(0, lens[0] - 1), [0]);
    assert_eq!(at(0, lens[0]), [0], "stops once the total reaches max_bytes");
    assert_eq!(at(0, lens[0] + 1), [0, 3]);
    assert_eq!(at(0, lens[0] + lens[1]), [0, 3]);
    assert_eq!(at(0, lens[0] + lens[1] + 1), [0, 3, 6]);
    assert_eq!(at(0, ALL), [0, 3, 6, 9]);
    // From mid-batch, the batch holding the offset comes first and counts.
    assert_eq!(at(4, 1), [3]);
    assert_eq!(at(4, lens[1]), [3]);
    assert_eq!(at(4, lens[1] + 1), [3, 6]);
    assert_eq!(at(11, 1), [9]);
    // A batch larger than max_bytes comes back whole.
    let whole = read(&log, 10, 1, 12);
    assert_eq!(whole.iter().map(Batch::len).collect::<Vec<_>>(), [lens[3]]);
}

fn read_bounds_and_upto<H: Harness>(h: &mut H) {
    let log = open(h, "p.t.0");
    assert!(read(&log, 0, ALL, 0).is_empty());
    assert!(read(&log, 0, ALL, u64::MAX).is_empty());
    assert_out_of_range(log.read(1, ALL, u64::MAX), 1, 0, 0);

    for i in 0..3 {
        append(&log, &timed("r", &[i, i]), 1);
    }
    log.advance_high_watermark(6);
    assert!(read(&log, 6, ALL, 6).is_empty(), "reading at the LEO is empty, not an error");
    assert!(read(&log, 6, ALL, u64::MAX).is_empty());
    assert_out_of_range(log.read(7, ALL, 6), 7, 0, 6);
    assert_out_of_range(log.read(7, ALL, u64::MAX), 7, 0, 6);
    assert_out_of_range(log.read(u64::MAX, ALL, 6), u64::MAX, 0, 6);

    // `upto` excludes batches starting at or after it, keeps one starting below it.
    assert_eq!(bases(&read(&log, 0, ALL, u64::MAX)), [0, 2, 4]);
    assert_eq!(bases(&read(&log, 0, ALL, 6)), [0, 2, 4]);
    assert_eq!(bases(&read(&log, 0, ALL, 5)), [0, 2, 4]);
    assert_eq!(bases(&read(&log, 0, ALL, 4)), [0, 2]);
    assert_eq!(bases(&read(&log, 0, ALL, 3)), [0, 2]);
    assert_eq!(bases(&read(&log, 0, ALL, 2)), [0]);
    assert!(read(&log, 0, ALL, 0).is_empty());
    assert_eq!(bases(&read(&log, 3, ALL, 4)), [2]);
    assert!(read(&log, 4, ALL, 4).is_empty());
    assert!(read(&log, 5, ALL, 4).is_empty());
}

fn high_watermark_is_monotonic_clamped_and_notifies<H: Harness>(h: &mut H) {
    let log = open(h, "p.t.0");
    let mut rx = log.subscribe_high_watermark();
    assert_eq!(*rx.borrow_and_update(), 0);
    log.advance_high_watermark(10);
    assert_eq!(log.offsets().high_watermark, 0, "clamped to the LEO of an empty log");
    assert!(!rx.has_changed().expect("sender alive"));

    append(&log, &timed("w", &[1, 2, 3, 4, 5]), 1);
    assert_eq!(log.offsets().high_watermark, 0, "appending does not commit");
    log.advance_high_watermark(2);
    assert_eq!(log.offsets().high_watermark, 2);
    assert!(rx.has_changed().expect("sender alive"));
    assert_eq!(*rx.borrow_and_update(), 2);

    log.advance_high_watermark(1);
    log.advance_high_watermark(2);
    assert_eq!(log.offsets().high_watermark, 2, "never lowered");
    assert!(!rx.has_changed().expect("sender alive"), "no change, no wake-up");

    log.advance_high_watermark(100);
    assert_eq!(log.offsets().high_watermark, 5, "clamped to the LEO");
    assert!(rx.has_changed().expect("sender alive"));
    assert_eq!(*rx.borrow_and_update(), 5);
    assert_eq!(*log.subscribe_high_watermark().borrow(), 5, "a new subscriber sees the current HW");

    append(&log, &timed("w", &[6]), 1);
    log.advance_high_watermark(5);
    assert!(!rx.has_changed().expect("sender alive"));
    log.advance_high_watermark(6);
    assert_eq!(*rx.borrow_and_update(), 6);
}

/// Producers advance the HW from many threads at once; its watch must never go backwards
/// and must end at the log's HW (an acks=all producer waits on it).
fn concurrent_high_watermark_advances_publish_monotonically<H: Harness>(h: &mut H) {
    use std::sync::atomic::{AtomicBool, Ordering};
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 5_000;
    // The race is timing-dependent: a few rounds make missing it unlikely.
    for round in 0..4 {
        let log = open(h, &format!("p.t.{round}"));
        let leo = THREADS * PER_THREAD;
        append(&log, &timed("c", &vec![0; leo as usize]), 1);
        let rx = log.subscribe_high_watermark();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let observer = s.spawn(|| {
                let mut last = 0;
                let mut backwards = None;
                while !done.load(Ordering::Acquire) {
                    let seen = *rx.borrow();
                    if seen < last && backwards.is_none() {
                        backwards = Some((last, seen));
                    }
                    last = last.max(seen);
                }
                backwards
            });
            let writers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let log = &log;
                    s.spawn(move || {
                        for i in 0..PER_THREAD {
                            log.advance_high_watermark(i * THREADS + t + 1);
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().expect("writer");
            }
            done.store(true, Ordering::Release);
            assert_eq!(observer.join().expect("observer"), None, "the published HW went backwards (from, to)");
        });
        assert_eq!(log.offsets().high_watermark, leo);
        assert_eq!(*rx.borrow(), leo, "the published HW is the log's HW");
    }
}

fn restart_recovers_state<H: Harness>(h: &mut H) {
    let mut log = open(h, "p.t.0");
    let mut expected = Vec::new();
    let mut sizes = Vec::new();
    for (epoch, ts) in [(2, 100), (2, 200), (4, 300)] {
        let records = timed("a", &[ts, ts + 1]);
        let batch = append(&log, &records, epoch);
        expected.extend(numbered(batch.base_offset(), &records));
        sizes.push(len(&batch));
    }
    log.advance_high_watermark(6);
    // Move the log start: only the first batch (max timestamp 101) is older than 150.
    assert_eq!(log.apply_retention(1_000, 850, -1).expect("retention"), Removed { batches: 1, bytes: sizes[0] });
    expected.drain(..2);
    // And leave an uncommitted tail.
    let tail = timed("b", &[400]);
    let batch = append(&log, &tail, 4);
    expected.extend(numbered(batch.base_offset(), &tail));
    sizes.push(len(&batch));

    let before = log.offsets();
    let size: u64 = sizes[1..].iter().sum();
    assert_eq!(before, LogOffsets { log_start: 2, log_end: 7, high_watermark: 6, size_bytes: size });
    let epochs = log.epochs();
    assert_eq!(epochs, [(2, 0), (4, 4)]);

    for _ in 0..2 {
        log = restart(h, log);
        assert_eq!(
            log.offsets(),
            LogOffsets { high_watermark: before.log_start, ..before },
            "log start, LEO and size are recovered; with no checkpoint the HW restarts at the log start"
        );
        assert_eq!(log.epochs(), epochs);
        assert!(read(&log, 2, ALL, log.offsets().high_watermark).is_empty(), "nothing is committed yet");
        assert_eq!(records_from(&read(&log, 2, ALL, 7), 2), expected, "a replica still reads everything");
        assert_out_of_range(log.read(1, ALL, 7), 1, 2, 7);
    }

    log.advance_high_watermark(u64::MAX);
    assert_eq!(log.offsets().high_watermark, 7);
    assert_eq!(committed(&log), expected);
    assert_eq!(append(&log, &timed("c", &[500]), 4).base_offset(), 7, "appends continue at the LEO");
}

fn a_checkpointed_high_watermark_survives_restarts<H: Harness>(h: &mut H) {
    let mut log = open(h, "p.t.0");
    let mut expected = Vec::new();
    for key in ["a", "b", "c"] {
        let records = timed(key, &[10, 11]);
        let batch = append(&log, &records, 1);
        expected.extend(numbered(batch.base_offset(), &records));
    }
    log.advance_high_watermark(4);
    assert!(log.checkpoint_high_watermark().expect("checkpoint"), "the HW moved: stored");
    assert!(!log.checkpoint_high_watermark().expect("checkpoint"), "unchanged: nothing written");
    log.advance_high_watermark(6);
    // Not checkpointed again: a restart comes back at 4, a lower bound of what was
    // committed, not at the log start.
    log = restart(h, log);
    assert_eq!(log.offsets().high_watermark, 4, "the checkpoint is served at once");
    assert_eq!(committed(&log), expected[..4].to_vec());

    // A follower cut back below the checkpoint: the checkpoint comes down with it, so
    // whatever is appended there next is not taken as committed after a restart.
    assert_eq!(log.truncate_to(2).expect("truncate"), 2);
    assert_eq!(log.offsets().high_watermark, 2);
    append(&log, &timed("d", &[20, 21, 22]), 2);
    log = restart(h, log);
    assert_eq!(
        log.offsets(),
        LogOffsets { log_start: 0, log_end: 5, high_watermark: 2, size_bytes: log.offsets().size_bytes }
    );
    assert_eq!(committed(&log), expected[..2].to_vec());
}

fn epoch_history<H: Harness>(h: &mut H) {
    let mut log = open(h, "p.t.0");
    assert!(log.epochs().is_empty());
    append(&log, &timed("e", &[1, 2]), 1);
    append(&log, &timed("e", &[3]), 1);
    let first_in_3 = append(&log, &timed("e", &[4, 5]), 3);
    assert_eq!(first_in_3.base_offset(), 3);
    assert_eq!(log.epochs(), [(1, 0), (3, 3)]);

    log = restart(h, log);
    assert_eq!(log.epochs(), [(1, 0), (3, 3)], "the epoch history survives a restart");
    append(&log, &timed("e", &[6]), 3);
    assert_eq!(log.epochs(), [(1, 0), (3, 3)], "the same epoch adds no entry");
    append(&log, &timed("e", &[7]), 5);
    assert_eq!(log.epochs(), [(1, 0), (3, 3), (5, 6)]);

    log = restart(h, log);
    assert_eq!(log.epochs(), [(1, 0), (3, 3), (5, 6)]);
    let stored: Vec<(u64, u32)> = read(&log, 0, ALL, 7).iter().map(|b| (b.base_offset(), b.leader_epoch())).collect();
    assert_eq!(stored, [(0, 1), (2, 1), (3, 3), (5, 3), (6, 5)], "stored batches carry their epoch");
}

fn retention_by_time<H: Harness>(h: &mut H) {
    let mut log = open(h, "p.t.0");
    let a = append(&log, &timed("a", &[900, 1_000]), 1); // 0..2, max 1000
    let b = append(&log, &timed("b", &[2_000, 1_500]), 1); // 2..4, max 2000
    let c_records = timed("c", &[100, 3_000]); // an old record, but the max is 3000
    let c = append(&log, &c_records, 1); // 4..6
    let d_records = timed("d", &[4_000, 4_001]);
    let d = append(&log, &d_records, 1); // 6..8
    let total = len(&a) + len(&b) + len(&c) + len(&d);
    let retain = |now_ms: i64, retention_ms: i64| log.apply_retention(now_ms, retention_ms, -1).expect("retention");

    assert_eq!(retain(i64::MAX, 0), Removed::default(), "nothing committed, nothing removed");
    log.advance_high_watermark(6);
    assert_eq!(log.apply_retention(i64::MAX, -1, -1).expect("retention"), Removed::default(), "both limits off");
    assert_eq!(retain(2_000, 1_000), Removed::default(), "a max timestamp equal to the cutoff is kept");
    assert_eq!(log.offsets(), LogOffsets { log_start: 0, log_end: 8, high_watermark: 6, size_bytes: total });

    assert_eq!(retain(2_001, 1_000), Removed { batches: 1, bytes: len(&a) });
    assert_eq!(log.offsets(), LogOffsets { log_start: 2, log_end: 8, high_watermark: 6, size_bytes: total - len(&a) });
    assert_eq!(retain(2_500, 0), Removed { batches: 1, bytes: len(&b) }, "batches go by their max timestamp");
    let size = total - len(&a) - len(&b);
    assert_eq!(log.offsets(), LogOffsets { log_start: 4, log_end: 8, high_watermark: 6, size_bytes: size });
    for offset in 0..4 {
        assert_out_of_range(log.read(offset, ALL, 6), offset, 4, 8);
    }
    assert_eq!(committed(&log), numbered(4, &c_records));

    // A batch at or above the HW is never removed, even one the HW falls inside.
    log.advance_high_watermark(7);
    assert_eq!(retain(i64::MAX, 0), Removed { batches: 1, bytes: len(&c) });
    assert_eq!(retain(i64::MAX, 0), Removed::default());
    assert_eq!(log.offsets(), LogOffsets { log_start: 6, log_end: 8, high_watermark: 7, size_bytes: len(&d) });

    log = restart(h, log);
    assert_eq!(log.offsets(), LogOffsets { log_start: 6, log_end: 8, high_watermark: 6, size_bytes: len(&d) });
    assert_eq!(log.apply_retention(i64::MAX, 0, 0).expect("retention"), Removed::default(), "HW at log start");
    log.advance_high_watermark(8);
    assert_eq!(committed(&log), numbered(6, &d_records));
}

fn retention_by_bytes<H: Harness>(h: &mut H) {
    let log = open(h, "p.t.0");
    let lens: Vec<u64> = (0..4u8)
        .map(|i| {
            let value = vec![i; 10 + 20 * usize::from(i)];
            len(&append(&log, &[rec(0, None, Some(&value), &[]), rec(1, Some(b"k"), Some(&value), &[])], 1))
        })
        .collect();
    let total: u64 = lens.iter().sum();
    log.advance_high_watermark(8);
    let retain = |bytes: u64| log.apply_retention(0, -1, bytes as i64).expect("retention");

    // Kafka's rule: delete the oldest batch while size - its length >= retention.bytes.
    assert_eq!(retain(total), Removed::default());
    assert_eq!(retain(total - lens[0] + 1), Removed::default());
    // Either limit deletes: a time limit that keeps everything does not stop the byte limit.
    let removed = log.apply_retention(0, 1_000_000, (total - lens[0]) as i64).expect("retention");
    assert_eq!(removed, Removed { batches: 1, bytes: lens[0] });
    assert_eq!(log.offsets(), LogOffsets { log_start: 2, log_end: 8, high_watermark: 8, size_bytes: total - lens[0] });
    assert_eq!(retain(lens[3]), Removed { batches: 2, bytes: lens[1] + lens[2] });
    assert_eq!(log.offsets(), LogOffsets { log_start: 6, log_end: 8, high_watermark: 8, size_bytes: lens[3] });
    assert_eq!(retain(lens[3]), Removed::default(), "the last batch alone is within the limit");
    assert_out_of_range(log.read(5, ALL, 8), 5, 6, 8);

    // Only committed batches go, however far over the limit the log is.
    let other = open(h, "p.t.1");
    let first = append(&other, &timed("x", &[1, 2]), 1);
    append(&other, &timed("x", &[3, 4]), 1);
    append(&other, &timed("x", &[5, 6]), 1);
    other.advance_high_watermark(3); // inside the second batch
    assert_eq!(other.apply_retention(0, -1, 0).expect("retention"), Removed { batches: 1, bytes: len(&first) });
    assert_eq!(other.offsets().log_start, 2);
    assert_eq!(log.offsets().log_start, 6, "logs are independent");
}

fn retention_can_empty_the_log<H: Harness>(h: &mut H) {
    let mut log = open(h, "p.t.0");
    let mut total = 0;
    for i in 0..3 {
        total += len(&append(&log, &timed("x", &[i, i]), 2));
    }
    log.advance_high_watermark(6);
    assert_eq!(log.apply_retention(0, -1, 0).expect("retention"), Removed { batches: 3, bytes: total });
    let empty = LogOffsets { log_start: 6, log_end: 6, high_watermark: 6, size_bytes: 0 };
    assert_eq!(log.offsets(), empty);
    assert!(read(&log, 6, ALL, 6).is_empty());
    assert_out_of_range(log.read(5, ALL, 6), 5, 6, 6);
    assert_out_of_range(log.read(0, ALL, 6), 0, 6, 6);
    assert_eq!(log.offset_for_timestamp(i64::MIN).expect("offset_for_timestamp"), None);

    log = restart(h, log);
    assert_eq!(log.offsets(), empty, "the log start survives a restart with no batch left");
    assert_eq!(log.epochs(), [(2, 0)]);
    let records = timed("y", &[10, 11, 12]);
    let batch = append(&log, &records, 2);
    assert_eq!(batch.base_offset(), 6, "appends continue at the LEO");
    log.advance_high_watermark(9);
    assert_eq!(committed(&log), numbered(6, &records));

    log = restart(h, log);
    assert_eq!(log.offsets(), LogOffsets { log_start: 6, log_end: 9, high_watermark: 6, size_bytes: len(&batch) });
    log.advance_high_watermark(9);
    assert_eq!(committed(&log), numbered(6, &records));
}

fn offset_for_timestamp<H: Harness>(h: &mut H) {
    let log = open(h, "p.t.0");
    let ots = |ts: i64| log.offset_for_timestamp(ts).expect("offset_for_timestamp");
    assert_eq!(ots(i64::MIN), None, "empty log");
    // Timestamps inside a batch need not be monotonic.
    append(&log, &timed("a", &[10, 30, 20]), 1); // offsets 0..3
    append(&log, &timed("b", &[25, 5, 40]), 1); // offsets 3..6
    append(&log, &timed("c", &[50]), 1); // offset 6
    assert_eq!(ots(i64::MIN), None, "nothing committed");

    log.advance_high_watermark(1); // inside the first batch
    assert_eq!(ots(0), Some((0, 10)));
    assert_eq!(ots(25), None, "offset 1 (timestamp 30) is in a committed batch but past the HW");
    log.advance_high_watermark(2);
    assert_eq!(ots(0), Some((0, 10)));
    assert_eq!(ots(15), Some((1, 30)));
    assert_eq!(ots(31), None, "offset 5 (timestamp 40) is not committed");

    log.advance_high_watermark(7);
    let cases = [
        (i64::MIN, Some((0, 10))),
        (10, Some((0, 10))),
        (11, Some((1, 30))),
        // Offset 2 (20) and 3 (25) also qualify, but offset 1 is earlier.
        (20, Some((1, 30))),
        (30, Some((1, 30))),
        (31, Some((5, 40))),
        (40, Some((5, 40))),
        (41, Some((6, 50))),
        (50, Some((6, 50))),
        (51, None),
        (i64::MAX, None),
    ];
    for (ts, want) in cases {
        assert_eq!(ots(ts), want, "offset_for_timestamp({ts})");
    }

    // After retention the search starts at the new log start.
    assert_eq!(log.apply_retention(31, 0, -1).expect("retention").batches, 1);
    assert_eq!(ots(0), Some((3, 25)), "offset 4 has a smaller timestamp but is later");
    assert_eq!(ots(6), Some((3, 25)));
    assert_eq!(ots(26), Some((5, 40)));
}

fn compaction_round_trip<H: Harness>(h: &mut H) {
    let mut log = open(h, "p.t.0");
    let kv = |k: &str, v: Option<&str>, ts: i64| rec(ts, Some(k.as_bytes()), v.map(str::as_bytes), &[("h", b"1")]);
    append(&log, &[kv("a", Some("a0"), 1), kv("b", Some("b0"), 2), kv("c", Some("c0"), 3)], 1); // 0..3
    append(&log, &[kv("a", Some("a1"), 4), kv("b", None, 5)], 1); // 3..5
    append(&log, &[kv("c", Some("c1"), 6), rec(7, None, Some(b"keyless"), &[]), kv("d", Some("d0"), 8)], 2); // 5..8
    append(&log, &[kv("a", Some("a2"), 9)], 2); // 8: the last batch
    log.advance_high_watermark(9);
    let before = log.offsets();

    let done = log.compact(100, 1_000, 0, 0).expect("compact").expect("not raced");
    assert_eq!((done.batches, done.records), (2, 4), "a0, b0, c0 and a1 go; the b tombstone stays");
    assert_eq!(done.due_ms, Some(1_006), "when the tombstone (ts 5) passes delete.retention.ms");
    assert_eq!(log.offsets().size_bytes, before.size_bytes - done.bytes);
    let want = vec![
        (4, kv("b", None, 5)),
        (5, kv("c", Some("c1"), 6)),
        (6, rec(7, None, Some(b"keyless"), &[])),
        (7, kv("d", Some("d0"), 8)),
        (8, kv("a", Some("a2"), 9)),
    ];
    assert_eq!(committed(&log), want);
    let stored = |log: &PartitionLog| {
        read(log, 0, ALL, u64::MAX)
            .iter()
            .map(|b| (b.base_offset(), b.next_offset(), b.leader_epoch()))
            .collect::<Vec<_>>()
    };
    assert_eq!(stored(&log), [(4, 5, 1), (5, 8, 2), (8, 9, 2)], "[0, 3) deleted; [3, 5) rewritten as [4, 5)");
    assert_eq!(bases(&read(&log, 1, 1, 9)), [4], "a read inside the gap starts at the next batch");

    let after = log.offsets();
    log = restart(h, log);
    assert_eq!(log.offsets(), LogOffsets { high_watermark: after.log_start, ..after }, "recovered as compacted");
    assert_eq!(log.offsets().size_bytes, read(&log, 0, ALL, u64::MAX).iter().map(len).sum::<u64>());
    assert_eq!(log.epochs(), [(1, 0), (2, 5)]);
    log.advance_high_watermark(9);
    assert_eq!(committed(&log), want);

    // After the restart: a new last batch, so [8, 9) becomes cleanable; the tombstone expires.
    append(&log, &[kv("d", Some("d1"), 10)], 2); // 9
    log.advance_high_watermark(10);
    let done = log.compact(1_006, 1_000, 0, 0).expect("compact").expect("not raced");
    assert_eq!((done.batches, done.records, done.due_ms), (2, 2, None), "the tombstone and d0 go");
    assert_eq!(stored(&log), [(5, 7, 2), (8, 9, 2), (9, 10, 2)]);
    log = restart(h, log);
    assert_eq!(log.offsets().log_end, 10);
    assert_eq!(append(&log, &[kv("e", Some("e0"), 11)], 2).base_offset(), 10, "appends continue at the LEO");
}

fn engine_scan_contract<H: Harness>(h: &mut H) {
    const P: &str = "p.raw.0";
    let scan = |engine: &dyn Engine, offset: u64| {
        let mut seen = Vec::new();
        engine
            .scan(P, offset, &mut |base, bytes| {
                seen.push((base, bytes.to_vec()));
                true
            })
            .expect("scan");
        seen
    };
    let based = |engine: &dyn Engine, offset: u64| scan(engine, offset).into_iter().map(|(b, _)| b).collect::<Vec<_>>();

    let engine = h.engine();
    engine.create_partition(P).expect("create");
    assert_eq!(engine.last_batch(P).expect("last batch"), None);
    assert!(scan(&*engine, 0).is_empty());
    let binary: Vec<u8> = (0..=255).collect();
    engine
        .write(
            P,
            &[
                WriteOp::PutBatch { base_offset: 10, bytes: b"ten" },
                WriteOp::PutBatch { base_offset: 20, bytes: &binary },
                WriteOp::PutBatch { base_offset: 300, bytes: b"" },
                WriteOp::PutMeta { key: MetaKey::Size, value: b"v" },
            ],
        )
        .expect("write");

    assert_eq!(
        scan(&*engine, 0),
        [(10, b"ten".to_vec()), (20, binary.clone()), (300, Vec::new())],
        "no batch at or below the offset: from the first"
    );
    assert_eq!(based(&*engine, 10), [10, 20, 300]);
    assert_eq!(based(&*engine, 25), [20, 300], "from the last batch at or below the offset");
    assert_eq!(based(&*engine, 299), [20, 300]);
    assert_eq!(based(&*engine, 300), [300]);
    assert_eq!(based(&*engine, u64::MAX), [300]);
    let mut calls = 0;
    engine
        .scan(P, 0, &mut |_, _| {
            calls += 1;
            false
        })
        .expect("scan");
    assert_eq!(calls, 1, "scan stops when f returns false");
    assert_eq!(engine.last_batch(P).expect("last batch"), Some(Vec::new()));
    assert_eq!(engine.get_meta(P, MetaKey::Size).expect("meta"), Some(b"v".to_vec()));
    assert_eq!(engine.get_meta(P, MetaKey::Epochs).expect("meta"), None);

    engine.write(P, &[WriteOp::DeleteBatches { from: 0, to: 20 }]).expect("delete");
    assert_eq!(based(&*engine, 0), [20, 300], "`to` is exclusive");
    engine.sync().expect("sync");
    drop(engine);
    h.restart();

    let engine = h.engine();
    assert_eq!(scan(&*engine, 0), [(20, binary), (300, Vec::new())]);
    assert_eq!(engine.get_meta(P, MetaKey::Size).expect("meta"), Some(b"v".to_vec()));
    // A point delete removes exactly one key; ops apply in order, so a put after a
    // delete of the same key wins (compaction rewrites a batch that way).
    engine
        .write(
            P,
            &[
                WriteOp::PutBatch { base_offset: 25, bytes: b"25" },
                WriteOp::DeleteBatch { base_offset: 21 },
                WriteOp::DeleteBatch { base_offset: 20 },
                WriteOp::DeleteBatch { base_offset: 300 },
                WriteOp::PutBatch { base_offset: 300, bytes: b"again" },
            ],
        )
        .expect("point deletes");
    assert_eq!(scan(&*engine, 0), [(25, b"25".to_vec()), (300, b"again".to_vec())]);
    engine.write(P, &[WriteOp::DeleteBatch { base_offset: 25 }]).expect("delete");
    assert_eq!(scan(&*engine, 0), [(300, b"again".to_vec())]);
    engine.write(P, &[WriteOp::DeleteBatches { from: 20, to: 301 }]).expect("delete");
    assert!(scan(&*engine, 0).is_empty());
    assert_eq!(engine.last_batch(P).expect("last batch"), None);

    let missing = |r: Result<()>| matches!(r, Err(Error::NoSuchStore(n)) if n == "p.none");
    assert!(missing(engine.write("p.none", &[WriteOp::PutMeta { key: MetaKey::Size, value: b"v" }])));
    assert!(missing(engine.get_meta("p.none", MetaKey::Size).map(drop)));
    assert!(missing(engine.last_batch("p.none").map(drop)));
    assert!(missing(engine.scan("p.none", 0, &mut |_, _| true)));
}

fn create_and_list_partitions<H: Harness>(h: &mut H) {
    let engine = h.engine();
    assert!(sorted_partitions(&*engine).is_empty());
    engine.create_partition("p.b.0").expect("create");
    engine.create_partition("p.a.0").expect("create");
    engine.create_partition("p.a.0").expect("create is idempotent");
    assert_eq!(sorted_partitions(&*engine), ["p.a.0", "p.b.0"]);

    let a = open(h, "p.a.0");
    let records = timed("a", &[1, 2]);
    append(&a, &records, 1);
    engine.create_partition("p.a.0").expect("create is idempotent");
    let again = open(h, "p.a.0");
    assert_eq!(again.offsets().log_end, 2, "creating an existing store keeps its data");
    drop(again);

    let b = open(h, "p.b.0");
    assert_eq!(b.offsets(), LogOffsets::default(), "stores are independent");
    append(&b, &timed("b", &[3]), 9);
    assert_eq!(a.offsets().log_end, 2);
    assert_eq!(a.epochs(), [(1, 0)]);

    drop((a, b, engine));
    h.restart();
    let engine = h.engine();
    assert_eq!(sorted_partitions(&*engine), ["p.a.0", "p.b.0"]);
    let a = open(h, "p.a.0");
    a.advance_high_watermark(2);
    assert_eq!(committed(&a), numbered(0, &records));
    assert_eq!(open(h, "p.b.0").epochs(), [(9, 0)]);
}

fn drop_partition_removes_data<H: Harness>(h: &mut H) {
    // "p.t.1" is a prefix of "p.t.10": dropping one must not touch the other's metadata.
    let engine = h.engine();
    let one = open(h, "p.t.1");
    let ten = open(h, "p.t.10");
    for log in [&one, &ten] {
        append(log, &timed("x", &[1]), 3);
        append(log, &timed("x", &[2]), 3);
        log.advance_high_watermark(2);
        assert_eq!(log.apply_retention(2, 0, -1).expect("retention").batches, 1);
        assert_eq!(log.offsets().log_start, 1);
    }
    let ten_before = ten.offsets();

    drop(one);
    engine.drop_partition("p.t.1").expect("drop");
    engine.drop_partition("p.t.1").expect("dropping twice is a no-op");
    engine.drop_partition("p.never").expect("dropping a missing store is a no-op");
    assert_eq!(sorted_partitions(&*engine), ["p.t.10"]);
    assert_eq!(ten.offsets(), ten_before);

    let one = open(h, "p.t.1");
    assert_eq!(one.offsets(), LogOffsets::default(), "a dropped store re-opens empty at offset 0");
    assert!(one.epochs().is_empty());
    assert!(read(&one, 0, ALL, u64::MAX).is_empty());
    append(&one, &timed("y", &[5]), 1);
    drop(one);
    engine.drop_partition("p.t.1").expect("drop");

    drop((ten, engine));
    h.restart();
    let engine = h.engine();
    assert_eq!(sorted_partitions(&*engine), ["p.t.10"], "a drop survives a restart");
    let one = open(h, "p.t.1");
    assert_eq!(one.offsets(), LogOffsets::default());
    assert!(one.epochs().is_empty());
    assert!(read(&one, 0, ALL, u64::MAX).is_empty());
    assert_eq!(append(&one, &timed("z", &[6]), 1).base_offset(), 0);

    let ten = open(h, "p.t.10");
    assert_eq!(ten.offsets(), LogOffsets { high_watermark: ten_before.log_start, ..ten_before });
    assert_eq!(ten.epochs(), [(3, 0)]);
    ten.advance_high_watermark(2);
    assert_eq!(committed(&ten), numbered(1, &timed("x", &[2])));
}

// ---------------------------------------------------------------------------------------
// Model-based property test

mod model {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    #[derive(Debug, Clone)]
    pub(super) enum Op {
        Append {
            records: Vec<Record>,
            epoch: u32,
        },
        AdvanceHwToLeo,
        /// Advances the HW to `pick % (LEO + 2)`: possibly inside a batch, or past the LEO.
        AdvanceHw {
            pick: u64,
        },
        /// Reads at an offset picked around the valid range (below the log start to past
        /// the LEO), up to the HW or, as a replica would, the LEO.
        Read {
            pick: u64,
            max_bytes: usize,
            upto_leo: bool,
        },
        /// `retention_bytes` is `bytes_percent`% of the log's size (`None`: off).
        Retain {
            now_ms: i64,
            retention_ms: i64,
            bytes_percent: Option<u64>,
        },
        OffsetForTimestamp(i64),
        Compact {
            now_ms: i64,
            delete_retention_ms: i64,
            min_compaction_lag_ms: i64,
        },
        /// Stores the HW ([`PartitionLog::checkpoint_high_watermark`]).
        CheckpointHw,
        Restart,
    }

    #[derive(Debug, Clone)]
    struct ModelBatch {
        base: u64,
        epoch: u32,
        records: Vec<Record>,
        len: u64,
    }

    impl ModelBatch {
        fn next(&self) -> u64 {
            self.base + self.records.len() as u64
        }

        fn max_timestamp(&self) -> i64 {
            self.records.iter().map(|r| r.timestamp).max().unwrap_or(i64::MIN)
        }
    }

    /// The shadow log: its batches (records with their offsets) and offsets.
    #[derive(Debug, Default)]
    struct Model {
        batches: Vec<ModelBatch>,
        log_start: u64,
        log_end: u64,
        hw: u64,
        /// The HW last checkpointed, if any.
        checkpoint: Option<u64>,
        epochs: Vec<(u32, u64)>,
    }

    impl Model {
        fn size(&self) -> u64 {
            self.batches.iter().map(|b| b.len).sum()
        }

        fn offsets(&self) -> LogOffsets {
            LogOffsets {
                log_start: self.log_start,
                log_end: self.log_end,
                high_watermark: self.hw,
                size_bytes: self.size(),
            }
        }

        fn append(&mut self, records: &[Record], epoch: u32) -> &ModelBatch {
            let base = self.log_end;
            let len = batch_len(records);
            if !matches!(self.epochs.last(), Some((e, _)) if epoch <= *e) {
                self.epochs.push((epoch, base));
            }
            self.batches.push(ModelBatch { base, epoch, records: records.to_vec(), len });
            self.log_end += records.len() as u64;
            &self.batches[self.batches.len() - 1]
        }

        fn read(&self, offset: u64, max_bytes: usize, upto: u64) -> Result<Vec<&ModelBatch>, (u64, u64, u64)> {
            if offset < self.log_start || offset > self.log_end {
                return Err((offset, self.log_start, self.log_end));
            }
            let mut out = Vec::new();
            let mut total = 0u64;
            for b in self.batches.iter().filter(|b| b.next() > offset) {
                if b.base >= upto {
                    break;
                }
                out.push(b);
                total += b.len;
                if total >= max_bytes as u64 {
                    break;
                }
            }
            Ok(out)
        }

        fn retain(&mut self, now_ms: i64, retention_ms: i64, retention_bytes: i64) -> Removed {
            let mut removed = Removed::default();
            if retention_ms < 0 && retention_bytes < 0 {
                return removed;
            }
            let mut size = self.size();
            while let Some(b) = self.batches.first() {
                let too_old = retention_ms >= 0 && b.max_timestamp() < now_ms - retention_ms;
                let too_big = retention_bytes >= 0 && size - b.len >= retention_bytes as u64;
                if b.next() > self.hw || !(too_old || too_big) {
                    break;
                }
                let b = self.batches.remove(0);
                size -= b.len;
                removed.batches += 1;
                removed.bytes += b.len;
                self.log_start = b.next();
            }
            removed
        }

        /// What a consumer reading from the log start gets: every batch starting below the
        /// HW (whole, even one the HW falls inside).
        fn committed(&self) -> Vec<(u64, Record)> {
            self.batches.iter().filter(|b| b.base < self.hw).flat_map(|b| numbered(b.base, &b.records)).collect()
        }

        fn offset_for_timestamp(&self, ts: i64) -> Option<(u64, i64)> {
            self.committed().into_iter().find(|(o, r)| *o < self.hw && r.timestamp >= ts).map(|(o, r)| (o, r.timestamp))
        }

        /// Kafka's compaction, spelled out: the latest committed offset per key wins; the
        /// cleanable batches are the committed ones from the start, short of the last
        /// batch and of the first one younger than the lag; expired tombstones go.
        fn compact(&mut self, now_ms: i64, delete_retention_ms: i64, lag_ms: i64) -> Compacted {
            let mut latest = std::collections::HashMap::new();
            for b in &self.batches {
                for (o, r) in numbered(b.base, &b.records) {
                    if let (true, Some(k)) = (o < self.hw, &r.key) {
                        latest.insert(k.clone(), o);
                    }
                }
            }
            let mut done = Compacted::default();
            let mut due = |t: i64| done.due_ms = Some(done.due_ms.map_or(t, |d| d.min(t)));
            let mut cleanable = 0;
            for (i, b) in self.batches.iter().enumerate() {
                if b.next() > self.hw || i + 1 == self.batches.len() {
                    break;
                }
                if lag_ms > 0 && b.max_timestamp() > now_ms - lag_ms {
                    due(b.max_timestamp() + lag_ms);
                    break;
                }
                cleanable = i + 1;
            }
            let mut out = Vec::new();
            let (mut batches, mut records, mut old_bytes, mut new_bytes) = (0, 0, 0, 0);
            for (i, b) in self.batches.drain(..).enumerate() {
                if i >= cleanable {
                    out.push(b);
                    continue;
                }
                let kept: Vec<(u64, Record)> = numbered(b.base, &b.records)
                    .into_iter()
                    .filter(|(o, r)| match &r.key {
                        None => true,
                        Some(k) if latest[k] != *o => false,
                        Some(_) if r.value.is_some() => true,
                        Some(_) if r.timestamp < now_ms - delete_retention_ms => false,
                        Some(_) => {
                            due(r.timestamp + delete_retention_ms + 1);
                            true
                        }
                    })
                    .collect();
                if kept.len() == b.records.len() {
                    out.push(b);
                    continue;
                }
                batches += 1;
                records += (b.records.len() - kept.len()) as u64;
                old_bytes += b.len;
                for (base, run) in runs(kept) {
                    let len = batch_len(&run);
                    new_bytes += len;
                    out.push(ModelBatch { base, epoch: b.epoch, records: run, len });
                }
            }
            self.batches = out;
            Compacted { batches, records, bytes: old_bytes.saturating_sub(new_bytes), ..done }
        }
    }

    fn batch_len(records: &[Record]) -> u64 {
        (fjord_protocol::codec::BATCH_HEADER_LEN + records.iter().map(Record::encoded_len).sum::<usize>()) as u64
    }

    /// Splits numbered records into runs of consecutive offsets.
    fn runs(records: Vec<(u64, Record)>) -> Vec<(u64, Vec<Record>)> {
        let mut out: Vec<(u64, Vec<Record>)> = Vec::new();
        for (o, r) in records {
            match out.last_mut() {
                Some((base, run)) if *base + run.len() as u64 == o => run.push(r),
                _ => out.push((o, vec![r])),
            }
        }
        out
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            -5i64..60,
            // Mostly a few short keys, so compaction finds keys written many times.
            proptest::option::of(prop_oneof![3 => (0u8..4).prop_map(|k| vec![k]), 1 => vec(any::<u8>(), 0..6)]),
            proptest::option::of(vec(any::<u8>(), 0..12)),
            vec((prop_oneof![Just("h"), Just("id"), Just("")], vec(any::<u8>(), 0..4)), 0..3),
        )
            .prop_map(|(timestamp, key, value, headers)| Record {
                timestamp,
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                headers: headers
                    .into_iter()
                    .map(|(name, value)| Header { name: name.to_owned(), value: Bytes::from(value) })
                    .collect(),
            })
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (vec(arb_record(), 1..5), 1u32..4).prop_map(|(records, epoch)| Op::Append { records, epoch }),
            3 => Just(Op::AdvanceHwToLeo),
            1 => any::<u64>().prop_map(|pick| Op::AdvanceHw { pick }),
            4 => (any::<u64>(), prop_oneof![Just(0usize), 1usize..400, Just(usize::MAX)], any::<bool>())
                .prop_map(|(pick, max_bytes, upto_leo)| Op::Read { pick, max_bytes, upto_leo }),
            2 => (0i64..80, prop_oneof![1 => Just(-1i64), 3 => 0i64..40], proptest::option::weighted(0.75, 0u64..=110))
                .prop_map(|(now_ms, retention_ms, bytes_percent)| Op::Retain { now_ms, retention_ms, bytes_percent }),
            1 => (-10i64..70).prop_map(Op::OffsetForTimestamp),
            2 => (0i64..80, prop_oneof![Just(0i64), 0i64..40, Just(86_400_000i64)], prop_oneof![Just(0i64), 1i64..40])
                .prop_map(|(now_ms, delete_retention_ms, min_compaction_lag_ms)| Op::Compact {
                    now_ms,
                    delete_retention_ms,
                    min_compaction_lag_ms
                }),
            1 => Just(Op::CheckpointHw),
            1 => Just(Op::Restart),
        ]
    }

    /// Applies `ops` to a log over `h` and to the model, comparing them after each step.
    pub(super) fn run(h: &mut impl Harness, ops: &[Op]) -> Result<(), TestCaseError> {
        let mut log = open(h, "p.model.0");
        let mut m = Model::default();
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Append { records, epoch } => {
                    let got = log.append(encode(records), *epoch).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let want = m.append(records, *epoch);
                    prop_assert_eq!(
                        (got.base_offset(), got.leader_epoch(), len(&got)),
                        (want.base, want.epoch, want.len),
                        "step {}: append",
                        step
                    );
                }
                Op::AdvanceHwToLeo => {
                    log.advance_high_watermark(log.offsets().log_end);
                    m.hw = m.log_end;
                }
                Op::AdvanceHw { pick } => {
                    let target = pick % (m.log_end + 2);
                    log.advance_high_watermark(target);
                    m.hw = m.hw.max(target.min(m.log_end));
                }
                Op::Read { pick, max_bytes, upto_leo } => {
                    let lo = m.log_start.saturating_sub(2);
                    let offset = lo + pick % (m.log_end + 3 - lo);
                    let upto = if *upto_leo { m.log_end } else { m.hw };
                    match (log.read(offset, *max_bytes, upto), m.read(offset, *max_bytes, upto)) {
                        (Ok(got), Ok(want)) => {
                            let got: Vec<Batch> =
                                got.into_iter().map(|b| Batch::parse(b).expect("valid batch")).collect();
                            prop_assert_eq!(
                                got.iter().map(|b| (b.base_offset(), b.leader_epoch(), len(b))).collect::<Vec<_>>(),
                                want.iter().map(|b| (b.base, b.epoch, b.len)).collect::<Vec<_>>(),
                                "step {}: batches of read({}, {}, {})",
                                step,
                                offset,
                                max_bytes,
                                upto
                            );
                            let want: Vec<(u64, Record)> = want
                                .iter()
                                .flat_map(|b| numbered(b.base, &b.records))
                                .filter(|(o, _)| *o >= offset)
                                .collect();
                            prop_assert_eq!(records_from(&got, offset), want, "step {}: records of read", step);
                        }
                        (Err(Error::OffsetOutOfRange { offset, log_start, log_end }), Err(want)) => {
                            prop_assert_eq!((offset, log_start, log_end), want, "step {}: read error", step);
                        }
                        (got, want) => {
                            return Err(TestCaseError::fail(format!(
                                "step {step}: read({offset}, {max_bytes}, {upto}): log gave {got:?}, model {want:?}"
                            )));
                        }
                    }
                }
                Op::Retain { now_ms, retention_ms, bytes_percent } => {
                    let retention_bytes = bytes_percent.map_or(-1, |p| (m.size() * p / 100) as i64);
                    let got = log
                        .apply_retention(*now_ms, *retention_ms, retention_bytes)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let want = m.retain(*now_ms, *retention_ms, retention_bytes);
                    prop_assert_eq!(got, want, "step {}: retention", step);
                }
                Op::Compact { now_ms, delete_retention_ms, min_compaction_lag_ms } => {
                    let got = log
                        .compact(*now_ms, *delete_retention_ms, *min_compaction_lag_ms, 0)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let want = m.compact(*now_ms, *delete_retention_ms, *min_compaction_lag_ms);
                    prop_assert_eq!(got, Some(want), "step {}: compaction", step);
                }
                Op::OffsetForTimestamp(ts) => {
                    let got = log.offset_for_timestamp(*ts).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(got, m.offset_for_timestamp(*ts), "step {}: offset_for_timestamp({})", step, ts);
                }
                Op::CheckpointHw => {
                    let wrote = log.checkpoint_high_watermark().map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(
                        wrote,
                        m.checkpoint != Some(m.hw),
                        "step {}: a checkpoint writes when the HW moved",
                        step
                    );
                    m.checkpoint = Some(m.hw);
                }
                Op::Restart => {
                    log = restart(h, log);
                    // The HW restarts at its checkpoint, within what the log still holds.
                    m.hw = m.checkpoint.unwrap_or(m.log_start).clamp(m.log_start, m.log_end);
                }
            }
            prop_assert_eq!(log.offsets(), m.offsets(), "step {}: offsets after {:?}", step, op);
            prop_assert_eq!(log.epochs(), m.epochs.clone(), "step {}: epochs", step);
            prop_assert_eq!(committed(&log), m.committed(), "step {}: committed records", step);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn rocks_log_matches_model(ops in vec(arb_op(), 1..40)) {
            run(&mut RocksHarness::new(), &ops)?;
        }

        #[test]
        fn mem_log_matches_model(ops in vec(arb_op(), 1..40)) {
            run(&mut MemHarness::new(), &ops)?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Exactly-once appends

/// `n` unkeyed records, `tag`ged, in a batch carrying `ext`.
fn ext_batch(tag: &str, n: usize, ext: &ProducerExt) -> Bytes {
    let mut builder = BatchBuilder::with_ext(64, ext).expect("ext");
    for i in 0..n {
        builder.push(&rec(ext.default_timestamp, None, Some(format!("{tag} {i}").as_bytes()), &[])).expect("push");
    }
    builder.finish().expect("finish")
}

fn keyed(key: &str, fingerprint: u8, written_ms: i64) -> ProducerExt {
    ProducerExt {
        idempotency: Some(Idempotency { key: key.as_bytes().to_vec(), fingerprint: [fingerprint; 16], routed_with: 3 }),
        session: None,
        default_timestamp: written_ms,
    }
}

fn sequenced(producer_id: u64, epoch: u32, first_sequence: u32, written_ms: i64) -> ProducerExt {
    ProducerExt {
        idempotency: None,
        session: Some(Session { producer_id, epoch, first_sequence }),
        default_timestamp: written_ms,
    }
}

/// One leader append checked against the producer state at `now_ms`, window 1 000 ms.
fn put(log: &PartitionLog, batch: Bytes, now_ms: i64) -> Result<Appended> {
    put_all(log, vec![batch.into()], now_ms).pop().expect("one answer")
}

fn put_all(log: &PartitionLog, appends: Vec<Append>, now_ms: i64) -> Vec<Result<Appended>> {
    let epoch = match log.role() {
        crate::Role::Leader { epoch, .. } => epoch,
        _ => 0,
    };
    log.append_all(appends, epoch, Some(Dedupe { now_ms, idempotency_window_ms: 1_000 })).expect("the write")
}

fn written(a: Result<Appended>) -> Batch {
    match a {
        Ok(Appended::Written(b)) => b,
        other => panic!("expected a write, got {other:?}"),
    }
}

fn replayed(a: Result<Appended>) -> Replay {
    match a {
        Ok(Appended::Replayed(r)) => r,
        other => panic!("expected a replay, got {other:?}"),
    }
}

fn idempotency_keys_replay_refuse_and_expire<H: Harness>(h: &mut H) {
    let mut log = open(h, "p.t.0");
    append(&log, &timed("plain", &[1]), 0); // 0
    let first = written(put(&log, ext_batch("a", 2, &keyed("k1", 1, 1_000)), 1_000)); // 1..3
    assert_eq!(first.base_offset(), 1);
    let want = Replay { base_offset: 1, record_count: 2, default_timestamp: 1_000, routed_with: Some(3) };
    assert_eq!(replayed(put(&log, ext_batch("a", 2, &keyed("k1", 1, 1_400)), 1_400)), want);
    assert_eq!(log.offsets().log_end, 3, "a replay writes nothing");
    assert_eq!(put(&log, ext_batch("b", 1, &keyed("k1", 2, 1_400)), 1_400), Err(Error::IdempotencyKeyReused));
    assert_eq!(log.offsets().log_end, 3, "a refused request writes nothing");

    // One group-commit run: a batch and its retry; a refused one between good ones.
    let run = put_all(
        &log,
        vec![
            ext_batch("c", 1, &keyed("k2", 1, 1_500)).into(),
            ext_batch("c", 1, &keyed("k2", 1, 1_500)).into(),
            ext_batch("d", 1, &keyed("k1", 9, 1_500)).into(),
            encode(&timed("plain", &[2])).into(),
        ],
        1_500,
    );
    let answers: Vec<_> =
        run.into_iter().map(|a| a.map(|a| (a.base_offset(), matches!(a, Appended::Replayed(_))))).collect();
    assert_eq!(answers, [Ok((3, false)), Ok((3, true)), Err(Error::IdempotencyKeyReused), Ok((4, false))]);
    assert_eq!(log.offsets().log_end, 5);
    assert_eq!(log.producer_state_count().expect("count"), (2, 0));

    log = restart(h, log);
    assert_eq!(replayed(put(&log, ext_batch("a", 2, &keyed("k1", 1, 1_900)), 1_900)), want, "the index is durable");
    assert_eq!(log.producer_state_count().expect("count"), (2, 0));

    // k1 (written at 1 000) is past the 1 000 ms window at 2 001: a new request.
    let again = written(put(&log, ext_batch("e", 1, &keyed("k1", 5, 2_001)), 2_001));
    assert_eq!(again.base_offset(), 5);
    assert_eq!(replayed(put(&log, ext_batch("e", 1, &keyed("k1", 5, 2_100)), 2_100)).base_offset, 5);

    // An expiry pass at 2 600 removes k2 (1 500) but not the new k1 (2 001).
    assert_eq!(log.expire_producer_state(2_600, 1_000, i64::MAX).expect("expire"), (1, 0));
    assert_eq!(log.producer_state_count().expect("count"), (1, 0));
    log = restart(h, log);
    assert_eq!(log.producer_state_count().expect("count"), (1, 0), "expiry is durable");
    assert_eq!(written(put(&log, ext_batch("c", 1, &keyed("k2", 1, 2_600)), 2_600)).base_offset(), 6, "k2 is new");
    assert_eq!(replayed(put(&log, ext_batch("e", 1, &keyed("k1", 5, 2_600)), 2_600)).base_offset, 5);
    // Without dedupe (a plain append) nothing is checked.
    assert_eq!(log.append(ext_batch("e", 1, &keyed("k1", 5, 2_600)), 0).expect("append").base_offset(), 7);
}

fn producer_state_is_written_with_its_batch<H: Harness>(h: &mut H) {
    let mut log = open(h, "p.t.0");
    log.become_leader(2);
    // Fenced (another epoch): neither the batch nor its key.
    let stale = log.append_all(
        vec![ext_batch("a", 1, &keyed("k", 1, 10)).into()],
        1,
        Some(Dedupe { now_ms: 10, idempotency_window_ms: 1_000 }),
    );
    assert!(matches!(stale, Err(Error::Fenced { .. })), "{stale:?}");
    assert_eq!((log.offsets().log_end, log.producer_state_count().expect("count")), (0, (0, 0)));
    // A batch that does not parse: its own error, no state.
    let bad = put(&log, Bytes::from_static(b"not a batch"), 10);
    assert!(matches!(bad, Err(Error::Corrupt(_))), "{bad:?}");
    assert_eq!(log.producer_state_count().expect("count"), (0, 0));
    written(put(&log, ext_batch("a", 1, &keyed("k", 1, 10)), 10));
    written(put(&log, ext_batch("b", 1, &sequenced(7, 0, 0, 10)), 10));
    log = restart(h, log);
    assert_eq!(
        (log.offsets().log_end, log.producer_state_count().expect("count")),
        (2, (1, 1)),
        "both, with their batches"
    );
}

/// A leader with three producer batches at 0, 2 and 3 (a key, a session, another key).
fn leader_with_producers(h: &impl Harness) -> (PartitionLog, Vec<Batch>) {
    let leader = open(h, "leader");
    let batches = vec![
        written(put(&leader, ext_batch("a", 2, &keyed("k1", 1, 100)), 100)),
        written(put(&leader, ext_batch("s", 1, &sequenced(7, 0, 0, 100)), 100)),
        written(put(&leader, ext_batch("b", 1, &keyed("k2", 1, 100)), 100)),
    ];
    (leader, batches)
}

fn replicate(follower: &PartitionLog, batches: &[Batch]) {
    for b in batches {
        let from = follower.offsets().log_end;
        assert!(follower.append_replicated(b.clone(), b.leader_epoch(), from).expect("replicate"));
    }
}

fn followers_keep_the_leaders_producer_state<H: Harness>(h: &mut H) {
    let (leader, batches) = leader_with_producers(h);
    let mut follower = open(h, "follower");
    replicate(&follower, &batches);
    assert_eq!(follower.producer_state_count().expect("count"), leader.producer_state_count().expect("count"));
    drop(leader);
    follower = restart(h, follower);
    // Failover: the follower leads and answers every retry from its own state.
    follower.become_leader(1);
    let on_new_leader =
        |b: Bytes| follower.append_all(vec![b.into()], 1, Some(Dedupe { now_ms: 500, idempotency_window_ms: 1_000 }));
    let k1 = on_new_leader(ext_batch("a", 2, &keyed("k1", 1, 500))).expect("write").pop().expect("answer");
    assert_eq!(replayed(k1).base_offset, 0);
    let s0 = on_new_leader(ext_batch("s", 1, &sequenced(7, 0, 0, 500))).expect("write").pop().expect("answer");
    assert_eq!(replayed(s0).base_offset, 2);
    let s1 = on_new_leader(ext_batch("s", 1, &sequenced(7, 0, 1, 500))).expect("write").pop().expect("answer");
    assert_eq!(written(s1).base_offset(), 4, "the session continues at the next sequence");
    assert_eq!(follower.offsets().log_end, 5);
}

fn truncation_forgets_truncated_producer_state<H: Harness>(h: &mut H) {
    let (leader, batches) = leader_with_producers(h);
    drop(leader);
    let mut follower = open(h, "follower");
    replicate(&follower, &batches);
    // The leader that wrote [2, 4) failed before they committed; the new one lacks them.
    assert_eq!(follower.truncate_to(2).expect("truncate"), 2);
    assert_eq!(follower.producer_state_count().expect("count"), (1, 1), "k2 went; the session's entry stays");
    follower = restart(h, follower);
    follower.become_leader(1);
    let d = Some(Dedupe { now_ms: 500, idempotency_window_ms: 1_000 });
    let answers = follower
        .append_all(
            vec![
                ext_batch("a", 2, &keyed("k1", 1, 500)).into(),
                ext_batch("b", 1, &keyed("k2", 1, 500)).into(),
                ext_batch("s", 1, &sequenced(7, 0, 0, 500)).into(),
            ],
            1,
            d,
        )
        .expect("write");
    let answers: Vec<_> =
        answers.into_iter().map(|a| a.map(|a| (a.base_offset(), matches!(a, Appended::Replayed(_))))).collect();
    assert_eq!(
        answers,
        [Ok((0, true)), Ok((2, false)), Ok((3, false))],
        "the truncated batches' retries are written again"
    );
}

fn retention_and_compaction_keep_producer_state<H: Harness>(h: &mut H) {
    let mut log = open(h, "p.t.0");
    let kv = |k: &str, v: &str| rec(100, Some(k.as_bytes()), Some(v.as_bytes()), &[]);
    let mut keyed_batch = BatchBuilder::with_ext(64, &keyed("k1", 1, 100)).expect("ext");
    keyed_batch.push(&kv("a", "old")).expect("push");
    keyed_batch.push(&kv("b", "old")).expect("push");
    written(put(&log, keyed_batch.finish().expect("finish"), 100)); // 0..2
    append(&log, &[kv("a", "new"), kv("b", "new")], 0); // 2..4
    append(&log, &[kv("c", "last")], 0); // 4
    log.advance_high_watermark(5);
    // Within the window the batch with the key stays whole: a follower copying it later
    // learns the key with the batch's offsets.
    let done = log.compact(600, 0, 0, 1_000).expect("compact").expect("not raced");
    assert_eq!((done.batches, done.due_ms), (0, Some(1_101)));
    assert_eq!(bases(&read(&log, 0, ALL, 5)), [0, 2, 4]);
    // Past it, compaction removes the batch; the partition still answers the key's retry.
    let done = log.compact(1_200, 0, 0, 1_000).expect("compact").expect("not raced");
    assert_eq!(done.batches, 1);
    assert_eq!(bases(&read(&log, 0, ALL, 5)), [2, 4]);
    assert_eq!(replayed(put(&log, ext_batch("a", 2, &keyed("k1", 1, 150)), 150)).base_offset, 0);
    // Retention removing batches does not touch the state either.
    written(put(&log, ext_batch("z", 1, &keyed("k2", 1, 150)), 150)); // 5
    log.advance_high_watermark(6);
    let removed = log.apply_retention(10_000, 1, -1).expect("retention");
    assert!(removed.batches >= 1, "{removed:?}");
    log = restart(h, log);
    assert_eq!(log.producer_state_count().expect("count"), (2, 0));
    assert_eq!(replayed(put(&log, ext_batch("z", 1, &keyed("k2", 1, 150)), 150)).base_offset, 5);
}

fn producer_sessions_sequence_and_fence<H: Harness>(h: &mut H) {
    let mut log = open(h, "p.t.0");
    assert_eq!(
        put(&log, ext_batch("s", 1, &sequenced(7, 0, 3, 10)), 10),
        Err(Error::OutOfOrderSequence { expected: 0, got: 3 })
    );
    written(put(&log, ext_batch("s", 2, &sequenced(7, 0, 0, 10)), 10)); // seq 0-1 at 0
    written(put(&log, ext_batch("s", 1, &sequenced(7, 0, 2, 10)), 10)); // seq 2 at 2
    written(put(&log, ext_batch("o", 1, &sequenced(8, 0, 0, 10)), 10)); // another producer at 3
    log = restart(h, log);
    assert_eq!(
        replayed(put(&log, ext_batch("s", 2, &sequenced(7, 0, 0, 20)), 20)).base_offset,
        0,
        "a duplicate sequence replays"
    );
    assert_eq!(
        put(&log, ext_batch("s", 1, &sequenced(7, 0, 5, 20)), 20),
        Err(Error::OutOfOrderSequence { expected: 3, got: 5 })
    );
    assert_eq!(log.offsets().log_end, 4);
    // Re-registered: epoch 1 starts over at sequence 0 and fences epoch 0.
    assert_eq!(written(put(&log, ext_batch("s", 1, &sequenced(7, 1, 0, 30)), 30)).base_offset(), 4);
    assert_eq!(
        put(&log, ext_batch("s", 1, &sequenced(7, 0, 3, 30)), 30),
        Err(Error::ProducerFenced { epoch: 0, current: 1 })
    );
    assert_eq!(log.offsets().log_end, 5);
    // Idle past producer.id.expiration.ms: producer 8 (last write 10) goes, 7 (30) stays.
    assert_eq!(log.expire_producer_state(100, 1_000, 80).expect("expire"), (0, 1));
    assert_eq!(log.producer_state_count().expect("count"), (0, 1));
    assert_eq!(written(put(&log, ext_batch("o", 1, &sequenced(8, 0, 0, 100)), 100)).base_offset(), 5, "8 is new again");
}

fn conditional_appends<H: Harness>(h: &mut H) {
    let log = open(h, "p.t.0");
    let at = |expected: u64, tag: &str| Append { batch: encode(&timed(tag, &[1, 2])), expected_offset: Some(expected) };
    assert_eq!(put_all(&log, vec![at(1, "x")], 0).pop(), Some(Err(Error::OffsetMismatch { expected: 1, log_end: 0 })));
    assert_eq!(log.offsets().log_end, 0, "a failed condition writes nothing");
    // Two writers who both read the end as 0, in one run: the first wins.
    let answers = put_all(&log, vec![at(0, "a"), at(0, "b"), at(2, "c")], 0);
    let answers: Vec<_> = answers.into_iter().map(|a| a.map(|a| a.base_offset())).collect();
    assert_eq!(answers, [Ok(0), Err(Error::OffsetMismatch { expected: 0, log_end: 2 }), Ok(2)]);
    assert_eq!(committed_len(&log), 4);
    // Without dedupe too (the condition is not a producer-state check).
    let plain = log.append_all(vec![at(3, "d")], 0, None).expect("write").pop();
    assert_eq!(plain, Some(Err(Error::OffsetMismatch { expected: 3, log_end: 4 })));
    // A replay is answered before the condition is looked at: the retry of a conditional
    // keyed append that was written is a replay, not a mismatch.
    let keyed_at =
        |expected: u64| Append { batch: ext_batch("k", 1, &keyed("k", 1, 0)), expected_offset: Some(expected) };
    assert_eq!(written(put_all(&log, vec![keyed_at(4)], 0).pop().expect("answer")).base_offset(), 4);
    assert_eq!(replayed(put_all(&log, vec![keyed_at(4)], 0).pop().expect("answer")).base_offset, 4);
}

fn committed_len(log: &PartitionLog) -> u64 {
    log.offsets().log_end
}

fn a_follower_behind_the_leaders_log_start_resets_there<H: Harness>(h: &mut H) {
    let leader = open(h, "leader");
    for i in 0..4 {
        append(&leader, &timed("x", &[i]), 3);
    }
    leader.advance_high_watermark(4);
    let follower = open(h, "follower");
    replicate(&follower, &read(&leader, 0, 1, 1)); // it has [0, 1) only
    assert!(leader.apply_retention(0, -1, 1).expect("retention").batches >= 2);
    let start = leader.offsets().log_start;
    assert!(start > follower.offsets().log_end, "the leader removed what the follower needs next");

    follower.become_follower(3);
    assert!(matches!(follower.reset_to(2, start), Err(Error::Fenced { .. })), "another epoch");
    follower.reset_to(3, start).expect("reset");
    let empty = LogOffsets { log_start: start, log_end: start, high_watermark: start, size_bytes: 0 };
    assert_eq!(follower.offsets(), empty);
    assert!(matches!(follower.reset_to(3, start), Err(Error::OffsetOutOfRange { .. })), "nothing to skip");
    let rest = read(&leader, start, ALL, u64::MAX);
    let leader_end = leader.offsets().log_end;
    drop(leader);
    let follower = restart(h, follower);
    assert_eq!(follower.offsets(), empty, "durable");
    replicate(&follower, &rest);
    assert_eq!(follower.offsets().log_end, leader_end);
    assert_eq!(read(&follower, start, ALL, u64::MAX).iter().map(Batch::base_offset).collect::<Vec<_>>(), bases(&rest));
    assert_eq!(follower.epochs(), [(3, start)]);
}

/// **A stored batch that fails its checksum is never served, and the log can be cut
/// there.** Bytes of a stored batch flipped under the log (bit rot that got past the
/// storage engine, a torn or misdirected write): every read that reaches it fails with
/// [`Error::Damaged`] naming its offset — the batches before it are not served from
/// that read either — a read that stops before it still works, `offset_for_timestamp`
/// over it fails the same way, and `truncate_to` its base offset removes it (and what
/// follows), after which the log reads, appends and survives a restart as if it had
/// ended there.
fn a_damaged_stored_batch_is_never_served_and_can_be_cut<H: Harness>(h: &mut H) {
    let log = open(h, "p.t.0");
    let first = append(&log, &timed("a", &[10, 11]), 1);
    let second = append(&log, &timed("b", &[20, 21]), 1);
    append(&log, &timed("c", &[30]), 1);
    log.advance_high_watermark(5);
    let mut damaged = second.as_bytes().to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    h.engine()
        .write("p.t.0", &[WriteOp::PutBatch { base_offset: second.base_offset(), bytes: &damaged }])
        .expect("overwrite");

    let is_damaged_at = |r: Result<Vec<Bytes>>| matches!(r, Err(Error::Damaged { offset: 2, .. }));
    assert!(is_damaged_at(log.read(0, ALL, u64::MAX)), "a read across it fails");
    assert!(is_damaged_at(log.read(2, ALL, u64::MAX)), "a read from it fails");
    assert!(is_damaged_at(log.read(3, 1, u64::MAX)), "a read of an offset inside it fails");
    let before = read(&log, 0, 1, u64::MAX);
    assert_eq!(before.len(), 1, "a read that ends before it is served");
    assert_eq!(before[0].as_bytes(), first.as_bytes());
    assert!(read(&log, 0, ALL, 2).len() == 1, "a read bounded below it is served");
    assert!(matches!(log.offset_for_timestamp(20), Err(Error::Damaged { offset: 2, .. })));
    assert_eq!(FjordError::from(log.read(0, ALL, u64::MAX).expect_err("damaged")).code, ErrorCode::CorruptLog);

    assert_eq!(log.truncate_to(2).expect("cut at the damaged batch"), 2, "the log ends before it");
    assert_eq!(log.offsets().log_end, 2);
    assert_eq!(log.offsets().high_watermark, 2, "the HW comes down with the cut");
    let kept = read(&log, 0, ALL, u64::MAX);
    assert_eq!(kept.iter().map(|b| b.as_bytes().clone()).collect::<Vec<_>>(), vec![first.as_bytes().clone()]);
    let again = append(&log, &timed("b2", &[40]), 1);
    assert_eq!(again.base_offset(), 2);
    let log = restart(h, log);
    assert_eq!(log.offsets().log_end, 3);
    assert_eq!(read(&log, 0, ALL, u64::MAX).len(), 2, "after a restart: the first batch and the new one");
}
