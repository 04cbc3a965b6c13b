use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::task::{process, InputRecord, Tables, TaskState};

fn def(v: Value) -> PipelineDef {
    serde_json::from_value(v).expect("a definition")
}

fn problems(v: Value) -> Vec<DefinitionError> {
    match def(v).compile() {
        Ok(_) => panic!("compiled"),
        Err(e) => e,
    }
}

fn input(offset: u64, key: Option<&str>, value: Value, ts: i64) -> InputRecord {
    InputRecord { input: 0, offset, rec: Rec::new(key, value, ts) }
}

#[test]
fn a_definition_runs_like_the_dsl() {
    let c = def(json!({
        "name": "per-region",
        "source": ["orders"],
        "steps": [
            {"filter": ".amount > 0"},
            {"timestamp": ".at"},
            {"key_by": ".region"},
            {"aggregate": {"op": "sum", "of": ".amount", "window": {"tumbling": {"size_ms": 1000}}, "emit": "final"}}
        ],
        "sink": "out"
    }))
    .compile()
    .expect("compiles");
    assert_eq!(c.topology.stages.len(), 2);
    let recs = [
        input(0, None, json!({"region": "eu", "amount": 5, "at": 100}), 9),
        input(1, None, json!({"region": "us", "amount": 0, "at": 200}), 9),
        input(2, None, json!({"region": "eu", "amount": 2, "at": 900}), 9),
        input(3, None, json!({"region": "us", "amount": 4, "at": 1500}), 9),
        input(4, None, json!({"region": "eu", "amount": 1, "at": 5000}), 9),
    ];
    let mut s0 = TaskState::default();
    let out0 = process(&c.topology.stages[0], &Tables::new(), &mut s0, &recs);
    // Stage 0: filtered, timestamped from the value, keyed by region, to the repartition topic.
    let keyed: Vec<(Option<String>, i64)> = out0.outputs.iter().map(|o| (o.rec.key.clone(), o.rec.timestamp)).collect();
    assert_eq!(
        keyed,
        vec![(Some("eu".into()), 100), (Some("eu".into()), 900), (Some("us".into()), 1500), (Some("eu".into()), 5000)]
    );
    let moved: Vec<InputRecord> = out0
        .outputs
        .into_iter()
        .enumerate()
        .map(|(i, o)| InputRecord { input: 0, offset: i as u64, rec: o.rec })
        .collect();
    let mut s1 = TaskState::default();
    let out1 = process(&c.topology.stages[1], &Tables::new(), &mut s1, &moved);
    let sums: BTreeMap<(String, i64), Value> = out1
        .outputs
        .iter()
        .map(|o| {
            (
                (
                    o.rec.value["key"].as_str().unwrap_or_default().to_owned(),
                    o.rec.value["window_start"].as_i64().unwrap_or(0),
                ),
                o.rec.value["value"].clone(),
            )
        })
        .collect();
    assert_eq!(sums, BTreeMap::from([(("eu".into(), 0), json!(7)), (("us".into(), 1000), json!(4))]));
}

#[test]
fn expressions_see_key_and_timestamp_and_failures_are_counted() {
    let c = def(json!({
        "name": "p", "source": ["a"],
        "steps": [{"map": "{k: $key, t: $timestamp, next: (.n + 1)}"}],
        "sink": "b"
    }))
    .compile()
    .expect("compiles");
    let mut s = TaskState::default();
    let out = process(
        &c.topology.stages[0],
        &Tables::new(),
        &mut s,
        &[input(0, Some("x"), json!({"n": 2}), 7), input(1, Some("y"), json!({"n": "text"}), 8)],
    );
    let values: Vec<Value> = out.outputs.into_iter().map(|o| o.rec.value).collect();
    assert_eq!(values, vec![json!({"k": "x", "t": 7, "next": 3})]);
    assert_eq!(c.expression_errors.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// Expressions are evaluated lazily: a map takes one output of an endless stream, a
/// flat_map at most MAX_OUTPUTS.
#[test]
fn endless_outputs_are_cut_short() {
    let c = def(json!({"name": "p", "source": ["a"], "steps": [{"map": "repeat(1)"}], "sink": "b"}))
        .compile()
        .expect("compiles");
    let mut s = TaskState::default();
    let out = process(&c.topology.stages[0], &Tables::new(), &mut s, &[input(0, Some("k"), json!(1), 1)]);
    assert_eq!(out.outputs.len(), 1);
    let c = def(json!({"name": "p", "source": ["a"], "steps": [{"flat_map": "repeat(1)"}], "sink": "b"}))
        .compile()
        .expect("compiles");
    let out = process(&c.topology.stages[0], &Tables::new(), &mut s, &[input(1, Some("k"), json!(1), 1)]);
    assert_eq!(out.outputs.len(), MAX_OUTPUTS);
}

#[test]
fn a_table_join_definition() {
    let c = def(json!({
        "name": "enrich", "source": ["payments"],
        "steps": [{"join_table": {"table": "customers", "value": "{amount: .value.amount, name: .row.name}"}}],
        "sink": "enriched"
    }))
    .compile()
    .expect("compiles");
    let mut tables = Tables::new();
    tables.insert("customers".into(), BTreeMap::from([("c1".to_owned(), json!({"name": "Ada"}))]));
    let mut s = TaskState::default();
    let out = process(
        &c.topology.stages[0],
        &tables,
        &mut s,
        &[input(0, Some("c1"), json!({"amount": 3}), 1), input(1, Some("c9"), json!({"amount": 4}), 2)],
    );
    let values: Vec<Value> = out.outputs.into_iter().map(|o| o.rec.value).collect();
    assert_eq!(values, vec![json!({"amount": 3, "name": "Ada"})]);
}

#[test]
fn each_kind_of_bad_definition_is_refused_with_where_it_is() {
    let base = |steps: Value| json!({"name": "p", "source": ["a"], "steps": steps, "sink": "b"});
    // A jq syntax error: its step, field and character.
    let p = problems(base(json!([{"filter": ".amount >"}])));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "steps[0].filter");
    assert!(p[0].offset.is_some(), "{p:?}");
    let p = problems(base(json!([{"map": "."}, {"key_by": ".a +* 2"}])));
    assert_eq!((p[0].path.as_str(), p[0].offset), ("steps[1].key_by", Some(3)), "{p:?}");
    // An undefined function.
    let p = problems(base(json!([{"map": "nosuch(1)"}])));
    assert_eq!((p[0].path.as_str(), p[0].offset), ("steps[0].map", Some(0)));
    assert!(p[0].message.contains("nosuch"), "{p:?}");
    // Invalid windows.
    let p = problems(base(json!([{"aggregate": {"op": "count", "window": {"tumbling": {"size_ms": 0}}}}])));
    assert_eq!(p[0].path, "steps[0].aggregate.window");
    let p = problems(base(
        json!([{"aggregate": {"op": "count", "window": {"hopping": {"size_ms": 10, "advance_ms": 20}}}}]),
    ));
    assert_eq!(p[0].path, "steps[0].aggregate.window");
    let p = problems(base(
        json!([{"aggregate": {"op": "count", "window": {"tumbling": {"size_ms": 10}}, "grace_ms": -1}}]),
    ));
    assert_eq!(p[0].path, "steps[0].aggregate.window");
    let p = problems(base(json!([{"aggregate": {"op": "count", "emit": "final"}}])));
    assert_eq!(p[0].path, "steps[0].aggregate.window");
    // Aggregations missing what they need.
    let p = problems(base(json!([{"aggregate": {"op": "sum"}}])));
    assert_eq!(p[0].path, "steps[0].aggregate.of");
    let p = problems(base(json!([{"aggregate": {"op": "fold", "init": 0}}])));
    assert_eq!(p[0].path, "steps[0].aggregate.step");
    let p = problems(base(
        json!([{"aggregate": {"op": "fold", "init": 0, "step": ".acc + 1", "window": {"session": {"gap_ms": 10}}}}]),
    ));
    assert_eq!(p[0].path, "steps[0]");
    // Names.
    let p = problems(json!({"name": "bad name", "source": [], "sink": "b/c"}));
    let paths: Vec<&str> = p.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["name", "source", "sink"]);
    // Functions that reach outside the record do not exist here.
    for f in ["halt", "env", "now", "debug"] {
        let p = problems(base(json!([{"map": f}])));
        assert!(p[0].message.contains("is not defined"), "{f}: {p:?}");
    }
    // A topic read twice, or written and read.
    let p = problems(json!({"name": "p", "source": ["a", "a"], "sink": "b"}));
    assert_eq!(p[0].path, "source[1]");
    let p = problems(
        json!({"name": "p", "source": ["a"], "steps": [{"join_stream": {"topic": "a", "within_ms": 5}}], "sink": "b"}),
    );
    assert_eq!(p[0].path, "steps[0].join_stream.topic");
    let p = problems(json!({"name": "p", "source": ["a"], "sink": "a"}));
    assert_eq!(p[0].path, "sink");
    // Several problems are all reported.
    let p = problems(base(json!([{"filter": "("}, {"map": ")"}])));
    assert_eq!(p.len(), 2);
    // Unknown fields and steps do not parse at all.
    assert!(serde_json::from_value::<PipelineDef>(base(json!([{"filtr": "."}]))).is_err());
    assert!(
        serde_json::from_value::<PipelineDef>(json!({"name": "p", "source": ["a"], "sink": "b", "extra": 1})).is_err()
    );
}

/// Windows go by the time a `timestamp` step sets: records whose event time is an hour
/// behind their append time are not late.
#[test]
fn the_timestamp_step_sets_the_clock_windows_go_by() {
    let c = def(json!({
        "name": "p", "source": ["a"], "sink": "b",
        "steps": [{"timestamp": ".at"}, {"aggregate": {"op": "count", "window": {"tumbling": {"size_ms": 1000}}}}]
    }))
    .compile()
    .expect("compiles");
    let mut s = TaskState::default();
    let recs: Vec<InputRecord> =
        (0..5).map(|i| input(i, Some("k"), json!({"at": 1_000 + i as i64 * 10}), 3_600_000 + i as i64)).collect();
    let out = process(&c.topology.stages[0], &Tables::new(), &mut s, &recs);
    assert_eq!(s.counters.late, 0);
    assert_eq!(out.outputs.last().map(|o| o.rec.value["value"].clone()), Some(json!(5)));
}
