//! The engine against references computed here, by simpler means, from the same input.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::*;
use crate::aggregate::field;
use crate::changelog;
use crate::topology::{JoinWindow, Topology};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn input(offset: u64, key: &str, value: Value, ts: i64) -> InputRecord {
    InputRecord { input: 0, offset, rec: Rec::new(Some(key), value, ts) }
}

/// Orders with keys a–d, times mostly rising with jitter of up to `jitter` ms back, and
/// now and then one far back (late beyond any grace).
fn orders(seed: u64, n: u64, jitter: u64) -> Vec<InputRecord> {
    let mut g = Gen(seed);
    let mut now = 1_000_000i64;
    (0..n)
        .map(|o| {
            now += g.below(400) as i64;
            let back = if g.below(20) == 0 { 50_000 } else { g.below(jitter + 1) as i64 };
            let key = ["a", "b", "c", "d"][g.below(4) as usize];
            input(o, key, json!({"amount": g.below(100)}), now - back)
        })
        .collect()
}

fn run_all(stage: &Stage, batches: &[&[InputRecord]]) -> (Vec<Output>, TaskState) {
    let mut state = TaskState::default();
    let mut outs = Vec::new();
    for b in batches {
        outs.extend(process(stage, &Tables::new(), &mut state, b).outputs);
    }
    (outs, state)
}

/// `(key, window_start) → value` of windowed outputs (the last one wins).
fn by_window(outs: &[Output]) -> BTreeMap<(String, i64), Value> {
    outs.iter()
        .map(|o| {
            let v = &o.rec.value;
            (
                (v["key"].as_str().unwrap_or_default().to_owned(), v["window_start"].as_i64().unwrap_or(0)),
                v["value"].clone(),
            )
        })
        .collect()
}

/// Kafka's rule, applied record by record: stream time first, then a record is taken by
/// each of its windows whose end + grace is still ahead of it.
fn reference_windows(
    recs: &[InputRecord],
    windows: impl Fn(i64) -> Vec<(i64, i64)>,
    grace: i64,
    mut fold: impl FnMut(Option<&Value>, &Value) -> Value,
) -> (BTreeMap<(String, i64), Value>, u64) {
    let mut st = i64::MIN;
    let mut acc: BTreeMap<(String, i64), Value> = BTreeMap::new();
    let mut late = 0;
    for r in recs {
        st = st.max(r.rec.timestamp);
        let mut dropped = false;
        for (s, e) in windows(r.rec.timestamp) {
            if e + grace <= st {
                dropped = true;
                continue;
            }
            let k = (r.rec.key.clone().unwrap_or_default(), s);
            let next = fold(acc.get(&k), &r.rec.value);
            acc.insert(k, next);
        }
        late += u64::from(dropped);
    }
    (acc, late)
}

#[test]
fn tumbling_final_counts_equal_the_reference_with_late_records_dropped_and_counted() {
    let t = Topology::source(["orders"])
        .window(WindowSpec::tumbling(5_000).grace(2_000))
        .emit_final()
        .count()
        .sink("out")
        .expect("valid");
    let stage = &t.stages[0];
    let recs = orders(7, 3_000, 3_000);
    // Close every window at the end: a record far ahead on a key of its own.
    let mut all = recs.clone();
    all.push(input(10_000, "zz", json!({}), i64::MAX / 4));
    let (outs, state) = run_all(stage, &[&all]);
    let mut got = by_window(&outs);
    got.retain(|(k, _), _| k != "zz");
    let (expected, late) = reference_windows(
        &recs,
        |ts| {
            let s = ts.div_euclid(5_000) * 5_000;
            vec![(s, s + 5_000)]
        },
        2_000,
        |acc, _| json!(acc.and_then(Value::as_u64).unwrap_or(0) + 1),
    );
    assert!(late > 50, "the input has late records: {late}");
    assert!(recs.windows(2).filter(|w| w[1].rec.timestamp < w[0].rec.timestamp).count() > 500, "out of order");
    assert_eq!(got, expected);
    assert_eq!(state.counters.late, late);
    // Every window was emitted once, and then dropped from the state (the far-ahead
    // record's own window is still open).
    assert_eq!(outs.len(), expected.len());
    assert!(state.store.0.keys().all(|k| k.ends_with("/zz")), "{:?}", state.store.0.keys().take(3).collect::<Vec<_>>());
}

#[test]
fn hopping_sums_as_updates_end_at_the_reference() {
    let t = Topology::source(["orders"])
        .window(WindowSpec::hopping(10_000, 2_500).grace(1_000))
        .sum(field("/amount"))
        .sink("out")
        .expect("valid");
    let recs = orders(11, 2_000, 2_000);
    let (outs, _) = run_all(&t.stages[0], &[&recs]);
    let (expected, _) = reference_windows(
        &recs,
        |ts| WindowSpec::hopping(10_000, 2_500).windows_for(ts),
        1_000,
        |acc, v| json!(acc.and_then(Value::as_u64).unwrap_or(0) + v["amount"].as_u64().unwrap_or(0)),
    );
    assert_eq!(by_window(&outs), expected);
}

#[test]
fn batch_boundaries_do_not_change_the_result() {
    let t = Topology::source(["orders"])
        .window(WindowSpec::tumbling(3_000).grace(500))
        .emit_final()
        .avg(field("/amount"))
        .sink("out")
        .expect("valid");
    let recs = orders(3, 1_500, 1_000);
    let (whole, _) = run_all(&t.stages[0], &[&recs]);
    let mut g = Gen(99);
    let mut batches = Vec::new();
    let mut rest: &[InputRecord] = &recs;
    while !rest.is_empty() {
        let n = (1 + g.below(40) as usize).min(rest.len());
        let (b, r) = rest.split_at(n);
        batches.push(b);
        rest = r;
    }
    let (split, _) = run_all(&t.stages[0], &batches);
    // The same windows with the same values; a window closes in the batch where stream
    // time passes it, so only the grouping into batches differs.
    assert_eq!(by_window(&whole), by_window(&split));
    let (mut a, mut b) = (whole.clone(), split.clone());
    a.sort_by_key(|o| o.rec.value.to_string());
    b.sort_by_key(|o| o.rec.value.to_string());
    assert_eq!(a, b);
}

#[test]
fn sessions_equal_gap_separated_runs_of_each_key() {
    let t = Topology::source(["clicks"])
        .window(WindowSpec::session(1_000).grace(1_000_000))
        .emit_final()
        .count()
        .sink("out")
        .expect("valid");
    let mut g = Gen(5);
    let mut recs = Vec::new();
    for o in 0..800 {
        let key = ["u1", "u2", "u3"][g.below(3) as usize];
        // Bursts: times in a few clusters, shuffled (so sessions bridge and merge).
        let cluster = g.below(12) as i64 * 10_000;
        recs.push(input(o, key, json!({}), 1_000_000 + cluster + g.below(3_000) as i64));
    }
    let mut all = recs.clone();
    all.push(input(9_999, "zz", json!({}), i64::MAX / 4));
    let (outs, state) = run_all(&t.stages[0], &[&all]);
    assert_eq!(state.counters.late, 0);
    // Reference: each key's sorted times, split where the next is more than the gap on.
    let mut expected = BTreeMap::new();
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &recs {
        times.entry(r.rec.key.clone().unwrap_or_default()).or_default().push(r.rec.timestamp);
    }
    for (k, mut ts) in times {
        ts.sort_unstable();
        let mut start = ts[0];
        let mut count = 0u64;
        let mut last = ts[0];
        for t in ts {
            if t - last > 1_000 {
                expected.insert((k.clone(), start), json!(count));
                start = t;
                count = 0;
            }
            count += 1;
            last = t;
        }
        expected.insert((k.clone(), start), json!(count));
    }
    let mut got = by_window(&outs);
    got.retain(|(k, _), _| k != "zz");
    assert_eq!(got, expected);
}

#[test]
fn a_late_session_record_is_dropped() {
    let t = Topology::source(["c"]).window(WindowSpec::session(10).grace(5)).count().sink("o").expect("valid");
    let recs = [input(0, "k", json!({}), 100), input(1, "k", json!({}), 200), input(2, "k", json!({}), 110)];
    let (outs, state) = run_all(&t.stages[0], &[&recs]);
    // 110 would join the session [100, 100], which closed when stream time passed 115.
    assert_eq!(state.counters.late, 1);
    assert_eq!(outs.len(), 2);
}

#[test]
fn running_aggregates_and_skips() {
    let t = Topology::source(["o"]).group_by_key().max(field("/n")).sink("out").expect("valid");
    let recs = [
        input(0, "a", json!({"n": 3}), 1),
        input(1, "a", json!({"n": "x"}), 2),
        input(2, "a", json!({"n": 9}), 3),
        InputRecord { input: 0, offset: 3, rec: Rec::new(None, json!({"n": 1}), 4) },
        input(4, "a", json!({"n": 4}), 5),
    ];
    let (outs, state) = run_all(&t.stages[0], &[&recs]);
    let values: Vec<Value> = outs.iter().map(|o| o.rec.value["value"].clone()).collect();
    assert_eq!(values, vec![json!(3), json!(9), json!(9)]);
    assert_eq!(state.counters.skipped, 2);
}

#[test]
fn table_joins_inner_and_left() {
    let mut tables = Tables::new();
    tables.insert("customers".into(), BTreeMap::from([("c1".to_owned(), json!({"name": "Ada"}))]));
    let joiner =
        |r: &Rec, row: Option<&Value>| json!({"amount": r.value["amount"], "name": row.map(|c| c["name"].clone())});
    let inner = Topology::source(["payments"]).join_table("customers", joiner).sink("out").expect("valid");
    let left = Topology::source(["payments"]).left_join_table("customers", joiner).sink("out").expect("valid");
    let recs = [input(0, "c1", json!({"amount": 5}), 1), input(1, "c2", json!({"amount": 7}), 2)];
    let mut state = TaskState::default();
    let got: Vec<Value> =
        process(&inner.stages[0], &tables, &mut state, &recs).outputs.into_iter().map(|o| o.rec.value).collect();
    assert_eq!(got, vec![json!({"amount": 5, "name": "Ada"})]);
    let got: Vec<Value> =
        process(&left.stages[0], &tables, &mut state, &recs).outputs.into_iter().map(|o| o.rec.value).collect();
    assert_eq!(got, vec![json!({"amount": 5, "name": "Ada"}), json!({"amount": 7, "name": null})]);
}

#[test]
fn stream_joins_equal_the_pairs_within_the_window() {
    let t = Topology::source(["orders"])
        .join_stream("payments", JoinWindow::within(500).grace(100_000), |l, r| json!([l.value["id"], r.value["id"]]))
        .sink("out")
        .expect("valid");
    let mut g = Gen(21);
    let mut recs = Vec::new();
    let mut lefts = Vec::new();
    let mut rights = Vec::new();
    for o in 0..600u64 {
        let right = g.below(2) == 1;
        let key = ["k1", "k2"][g.below(2) as usize];
        let ts = 10_000 + g.below(20_000) as i64;
        let id = o;
        recs.push(InputRecord {
            input: usize::from(right),
            offset: o,
            rec: Rec::new(Some(key), json!({"id": id}), ts),
        });
        if right {
            rights.push((key, ts, id))
        } else {
            lefts.push((key, ts, id))
        }
    }
    let (outs, state) = run_all(&t.stages[0], &[&recs]);
    assert_eq!(state.counters.late, 0);
    let got: BTreeSet<(u64, u64)> =
        outs.iter().map(|o| (o.rec.value[0].as_u64().unwrap_or(0), o.rec.value[1].as_u64().unwrap_or(0))).collect();
    let expected: BTreeSet<(u64, u64)> = lefts
        .iter()
        .flat_map(|l| rights.iter().filter(move |r| r.0 == l.0 && (r.1 - l.1).abs() <= 500).map(move |r| (l.2, r.2)))
        .collect();
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(got, expected);
    assert_eq!(outs.len(), expected.len(), "each pair once");
}

/// A crash after a batch's changelog write and before its commit: the task restored from
/// the changelog (its committed offset still the batch's start) processes the batch
/// again and produces the same changelog records and the same outputs — so the server
/// replays both from their idempotency records — and ends in the same state.
#[test]
fn a_batch_replayed_from_the_changelog_is_the_same_batch() {
    let t = Topology::source(["orders"])
        .window(WindowSpec::tumbling(2_000).grace(500))
        .sum(field("/amount"))
        .sink("out")
        .expect("valid");
    let stage = &t.stages[0];
    let recs = orders(17, 1_200, 800);
    let mut changelog_log: Vec<(String, Option<Value>)> = Vec::new();
    let mut state = TaskState::default();
    let mut committed = 0u64;
    let mut g = Gen(8);
    let mut at = 0usize;
    let mut replays = 0;
    while at < recs.len() {
        let n = (1 + g.below(60) as usize).min(recs.len() - at);
        let batch = &recs[at..at + n];
        let (start, end) = (batch[0].offset, batch[n - 1].offset);
        let mut work = state.clone();
        let outcome = process(stage, &Tables::new(), &mut work, batch);
        let seq = at as u64;
        let intent = changelog::Intent {
            seq,
            starts: vec![start],
            ends: vec![end + 1],
            before: outcome.before,
            after: outcome.after,
        };
        let written = changelog::records(&intent, &outcome.changes);
        changelog_log.extend(written.iter().map(|(k, v)| (k.clone(), Some(v.clone()))));
        if g.below(4) == 0 {
            // Crash before the commit: restore and do the batch again.
            replays += 1;
            let restored = changelog::restore(changelog_log.clone(), &[Some(committed)]);
            assert!(restored.pending);
            assert_eq!(restored.intent.as_ref(), Some(&intent));
            assert_eq!(restored.state, state, "restored to the state before the batch");
            let mut again = restored.state;
            let redo = process(stage, &Tables::new(), &mut again, batch);
            assert_eq!(changelog::records(&intent, &redo.changes), written);
            assert_eq!(redo.outputs, outcome.outputs);
            assert_eq!(again, work);
        }
        committed = end + 1;
        state = work;
        // After the commit, a restore gives the state after the batch.
        if g.below(5) == 0 {
            let restored = changelog::restore(changelog_log.clone(), &[Some(committed)]);
            assert!(!restored.pending);
            assert_eq!(restored.state, state);
        }
        at += n;
    }
    assert!(replays > 5);
}

/// A stream-join record is late once its time plus grace is behind the stream time (it
/// is dropped and counted, never silently unmatched), and buffers live exactly as long
/// as a record that is not late can still match them.
#[test]
fn stream_join_lateness_and_buffer_expiry_agree() {
    let t = Topology::source(["l"])
        .join_stream("r", JoinWindow::within(10), |l, r| json!([l.value, r.value]))
        .sink("out")
        .expect("valid");
    let stage = &t.stages[0];
    let rec = |input: usize, offset: u64, key: &str, v: i64, ts: i64| InputRecord {
        input,
        offset,
        rec: Rec::new(Some(key), json!(v), ts),
    };
    let mut state = TaskState::default();
    // Left k at 0; another key moves stream time to 25; right k at 5 is late.
    let out = process(
        stage,
        &Tables::new(),
        &mut state,
        &[rec(0, 0, "k", 1, 0), rec(0, 1, "k2", 2, 25), rec(1, 0, "k", 3, 5)],
    );
    assert!(out.outputs.is_empty());
    assert_eq!(state.counters.late, 1);
    // With no grace, a record behind the stream time is late; at or ahead of it, it joins.
    let out = process(stage, &Tables::new(), &mut state, &[rec(0, 2, "k", 4, 26), rec(1, 1, "k", 5, 30)]);
    assert_eq!(out.outputs.len(), 1, "{:?}", out.outputs);
    let buffered = |s: &TaskState| s.store.0.keys().filter(|k| k.contains("/L/")).count();
    assert!(buffered(&state) >= 1);
    process(stage, &Tables::new(), &mut state, &[rec(0, 3, "k3", 6, 100)]);
    // Stream time 100: the records at 26 and 30 can match nothing that is not late.
    assert_eq!(
        buffered(&state),
        1,
        "only the newest left record is kept: {:?}",
        state.store.0.keys().collect::<Vec<_>>()
    );
    assert_eq!(state.store.0.keys().filter(|k| k.contains("/R/")).count(), 0);
}
