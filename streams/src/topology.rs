//! The DSL: a pipeline from source topics through steps to a sink, and what it compiles
//! to — *stages*, each read by one task per input partition.
//!
//! ```text
//! source(orders) → filter → key_by(region) ┆ repartition ┆ → window(1 min) → count → sink(counts)
//! └──────────────── stage 0 ───────────────┘             └──────────── stage 1 ─────────────┘
//! ```
//!
//! A step that changes the key (`key_by`) ends a stage: its records go through an
//! internal repartition topic, partitioned by the new key, which the next stage reads —
//! so every record of a key meets the same task and its state. `map` and `flat_map`
//! change values and timestamps but keep the key (Kafka's `mapValues`): only `key_by`
//! moves records between partitions.

use std::sync::Arc;

use serde_json::Value;

use crate::aggregate::{Agg, Extract, FoldFn, MergeFn};
use crate::record::Rec;
use crate::window::{WindowError, WindowSpec};

pub type Pred = Arc<dyn Fn(&Rec) -> bool + Send + Sync>;
pub type MapFn = Arc<dyn Fn(Rec) -> Rec + Send + Sync>;
pub type FlatMapFn = Arc<dyn Fn(Rec) -> Vec<Rec> + Send + Sync>;
pub type KeyFn = Arc<dyn Fn(&Rec) -> Option<String> + Send + Sync>;
/// A stream record and the table's value for its key (`None`: no row; left joins only).
pub type TableJoiner = Arc<dyn Fn(&Rec, Option<&Value>) -> Value + Send + Sync>;
/// The left and the right record of a stream–stream join.
pub type StreamJoiner = Arc<dyn Fn(&Rec, &Rec) -> Value + Send + Sync>;

/// When a windowed aggregate emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Emit {
    /// Every update of a window's aggregate (Kafka Streams' default).
    #[default]
    Updates,
    /// Once per window, when it closes (Kafka's `suppress(untilWindowCloses)` /
    /// `EmitStrategy.onWindowClose`).
    Final,
}

/// How far apart two records of a stream–stream join may be: the right record's time
/// within `[left - before, left + after]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindow {
    pub before_ms: i64,
    pub after_ms: i64,
    pub grace_ms: i64,
}

impl JoinWindow {
    pub fn within(ms: i64) -> Self {
        Self { before_ms: ms, after_ms: ms, grace_ms: 0 }
    }

    pub fn grace(mut self, grace_ms: i64) -> Self {
        self.grace_ms = grace_ms;
        self
    }
}

#[derive(Clone)]
pub enum Op {
    Filter(Pred),
    Map(MapFn),
    FlatMap(FlatMapFn),
    /// Sets each record's key (`None`: dropped, counted as skipped).
    KeyBy(KeyFn),
    Aggregate {
        windows: Option<WindowSpec>,
        agg: Agg,
        emit: Emit,
    },
    JoinTable {
        table: String,
        joiner: TableJoiner,
        left: bool,
    },
    JoinStream {
        other: String,
        window: JoinWindow,
        joiner: StreamJoiner,
    },
    To(Dest),
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Filter(_) => f.write_str("filter"),
            Op::Map(_) => f.write_str("map"),
            Op::FlatMap(_) => f.write_str("flat_map"),
            Op::KeyBy(_) => f.write_str("key_by"),
            Op::Aggregate { windows, agg, emit } => write!(f, "aggregate({agg:?}, {windows:?}, {emit:?})"),
            Op::JoinTable { table, left, .. } => write!(f, "join_table({table}, left: {left})"),
            Op::JoinStream { other, window, .. } => write!(f, "join_stream({other}, {window:?})"),
            Op::To(d) => write!(f, "to({d:?})"),
        }
    }
}

/// Where a stage's records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Topic(String),
    /// The repartition topic read by stage `n`.
    Repartition(usize),
}

/// What a stage reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Topic(String),
    /// The repartition topic written for stage `n` (itself).
    Repartition(usize),
}

/// One input of a stage: its records enter at step `entry`; `right` marks the other
/// side of a stream–stream join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub source: Source,
    pub entry: usize,
    pub right: bool,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub inputs: Vec<Input>,
    pub ops: Vec<Op>,
}

impl Stage {
    /// Whether the stage keeps state (besides its batches' intents, which every stage's
    /// changelog holds).
    pub fn stateful(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, Op::Aggregate { .. } | Op::JoinStream { .. }))
    }

    /// The compacted topics it joins against as tables.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().filter_map(|op| match op {
            Op::JoinTable { table, .. } => Some(table.as_str()),
            _ => None,
        })
    }
}

/// A compiled pipeline.
#[derive(Debug, Clone)]
pub struct Topology {
    pub stages: Vec<Stage>,
}

/// Why a pipeline is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("a pipeline needs at least one source topic")]
    NoSource,
    #[error("step {step}: {source}")]
    Window { step: usize, source: WindowError },
    #[error("step {step}: session windows need an aggregation that can merge (a fold needs a merge function)")]
    SessionNeedsMerge { step: usize },
    #[error("step {step}: join window bounds must not be negative")]
    JoinWindow { step: usize },
}

impl Topology {
    /// A pipeline reading `topics` (one stage-0 task per partition; the topics must
    /// have the same partition count when there are several).
    pub fn source<I, S>(topics: I) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let inputs: Vec<Input> =
            topics.into_iter().map(|t| Input { source: Source::Topic(t.into()), entry: 0, right: false }).collect();
        let error = inputs.is_empty().then_some(BuildError::NoSource);
        Builder { done: Vec::new(), current: Stage { inputs, ops: Vec::new() }, step: 0, error }
    }

    /// Every topic read from outside the pipeline (sources, joined streams, tables).
    pub fn external_inputs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for stage in &self.stages {
            for input in &stage.inputs {
                if let Source::Topic(t) = &input.source {
                    out.push(t);
                }
            }
            out.extend(stage.tables());
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The topics the pipeline writes to (not its internal ones).
    pub fn sinks(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .stages
            .iter()
            .flat_map(|s| &s.ops)
            .filter_map(|op| match op {
                Op::To(Dest::Topic(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Builds a [`Topology`] one step at a time; the first invalid step is reported by
/// [`Builder::sink`].
pub struct Builder {
    done: Vec<Stage>,
    current: Stage,
    /// Steps so far, over all stages (an error's position).
    step: usize,
    error: Option<BuildError>,
}

impl Builder {
    fn push(mut self, op: Op) -> Self {
        self.current.ops.push(op);
        self.step += 1;
        self
    }

    fn fail(mut self, e: BuildError) -> Self {
        self.error.get_or_insert(e);
        self.step += 1;
        self
    }

    /// Keeps the records `pred` holds for.
    pub fn filter(self, pred: impl Fn(&Rec) -> bool + Send + Sync + 'static) -> Self {
        self.push(Op::Filter(Arc::new(pred)))
    }

    /// Replaces each record's value (and, if it sets one, its timestamp); the key stays.
    pub fn map(self, f: impl Fn(Rec) -> Rec + Send + Sync + 'static) -> Self {
        self.push(Op::Map(Arc::new(f)))
    }

    /// Zero or more records for each record; each keeps the input's key.
    pub fn flat_map(self, f: impl Fn(Rec) -> Vec<Rec> + Send + Sync + 'static) -> Self {
        self.push(Op::FlatMap(Arc::new(f)))
    }

    /// A new key for every record, and a repartition by it: the steps after run in a new
    /// stage whose tasks each see every record of their keys, in the order they were
    /// written. A record whose key is `None` is dropped (and counted as skipped).
    pub fn key_by(mut self, f: impl Fn(&Rec) -> Option<String> + Send + Sync + 'static) -> Self {
        let next = self.done.len() + 1;
        self.current.ops.push(Op::KeyBy(Arc::new(f)));
        self.current.ops.push(Op::To(Dest::Repartition(next)));
        let stage = std::mem::replace(
            &mut self.current,
            Stage {
                inputs: vec![Input { source: Source::Repartition(next), entry: 0, right: false }],
                ops: Vec::new(),
            },
        );
        self.done.push(stage);
        self.step += 1;
        self
    }

    /// Groups the records by key into windows; an aggregation follows.
    pub fn window(self, spec: WindowSpec) -> Windowed {
        Windowed { builder: self, spec: Some(spec), emit: Emit::Updates }
    }

    /// Groups the records by key, with no window (a running aggregate per key).
    pub fn group_by_key(self) -> Windowed {
        Windowed { builder: self, spec: None, emit: Emit::Updates }
    }

    /// Joins each record with the value of its key in a compacted topic read as a table
    /// (every instance reads all of it and follows it). Inner: records whose key has no
    /// row are dropped.
    pub fn join_table(
        self,
        table: impl Into<String>,
        joiner: impl Fn(&Rec, Option<&Value>) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.push(Op::JoinTable { table: table.into(), joiner: Arc::new(joiner), left: false })
    }

    /// As [`Builder::join_table`], keeping records whose key has no row (`None`).
    pub fn left_join_table(
        self,
        table: impl Into<String>,
        joiner: impl Fn(&Rec, Option<&Value>) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.push(Op::JoinTable { table: table.into(), joiner: Arc::new(joiner), left: true })
    }

    /// An inner join with another stream (a topic co-partitioned with this stage's
    /// input: same partition count, keyed the same) within a time window.
    pub fn join_stream(
        mut self,
        other: impl Into<String>,
        window: JoinWindow,
        joiner: impl Fn(&Rec, &Rec) -> Value + Send + Sync + 'static,
    ) -> Self {
        let step = self.step;
        if window.before_ms < 0 || window.after_ms < 0 || window.grace_ms < 0 {
            return self.fail(BuildError::JoinWindow { step });
        }
        let other = other.into();
        let entry = self.current.ops.len();
        self.current.inputs.push(Input { source: Source::Topic(other.clone()), entry, right: true });
        self.push(Op::JoinStream { other, window, joiner: Arc::new(joiner) })
    }

    /// Writes the records to `topic` and ends the pipeline.
    pub fn sink(mut self, topic: impl Into<String>) -> Result<Topology, BuildError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.current.ops.push(Op::To(Dest::Topic(topic.into())));
        let mut stages = self.done;
        stages.push(self.current);
        Ok(Topology { stages })
    }
}

/// A grouped stream waiting for its aggregation.
pub struct Windowed {
    builder: Builder,
    spec: Option<WindowSpec>,
    emit: Emit,
}

impl Windowed {
    /// Emit each window once, when it closes, instead of on every update.
    pub fn emit_final(mut self) -> Self {
        self.emit = Emit::Final;
        self
    }

    pub fn aggregate(self, agg: Agg) -> Builder {
        let step = self.builder.step;
        if let Some(spec) = self.spec {
            if let Err(source) = spec.validate() {
                return self.builder.fail(BuildError::Window { step, source });
            }
            if matches!(spec.windows, crate::window::Windows::Session { .. }) && !agg.mergeable() {
                return self.builder.fail(BuildError::SessionNeedsMerge { step });
            }
        }
        let emit = if self.spec.is_some() { self.emit } else { Emit::Updates };
        self.builder.push(Op::Aggregate { windows: self.spec, agg, emit })
    }

    pub fn count(self) -> Builder {
        self.aggregate(Agg::Count)
    }

    pub fn sum(self, of: Extract) -> Builder {
        self.aggregate(Agg::Sum(of))
    }

    pub fn min(self, of: Extract) -> Builder {
        self.aggregate(Agg::Min(of))
    }

    pub fn max(self, of: Extract) -> Builder {
        self.aggregate(Agg::Max(of))
    }

    pub fn avg(self, of: Extract) -> Builder {
        self.aggregate(Agg::Avg(of))
    }

    /// A user fold from `init`; sessions also need `merge`.
    pub fn fold(self, init: Value, step: FoldFn, merge: Option<MergeFn>) -> Builder {
        self.aggregate(Agg::Fold { init, step, merge })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::field;

    #[test]
    fn key_by_splits_stages_through_a_repartition_topic() {
        let t = Topology::source(["orders"])
            .filter(|r| r.value["amount"].is_number())
            .key_by(|r| crate::record::as_key(r.value.get("region")))
            .window(WindowSpec::tumbling(60_000))
            .count()
            .sink("counts")
            .expect("valid");
        assert_eq!(t.stages.len(), 2);
        assert!(matches!(t.stages[0].ops.last(), Some(Op::To(Dest::Repartition(1)))));
        assert_eq!(t.stages[1].inputs, vec![Input { source: Source::Repartition(1), entry: 0, right: false }]);
        assert!(!t.stages[0].stateful());
        assert!(t.stages[1].stateful());
        assert_eq!(t.external_inputs(), vec!["orders"]);
        assert_eq!(t.sinks(), vec!["counts"]);
    }

    #[test]
    fn bad_steps_are_refused_with_their_position() {
        let e = Topology::source(["a"]).filter(|_| true).window(WindowSpec::tumbling(0)).count().sink("b");
        assert_eq!(e.err(), Some(BuildError::Window { step: 1, source: WindowError::Size }));
        let fold: FoldFn = Arc::new(|a, _| a.clone());
        let e = Topology::source(["a"]).window(WindowSpec::session(10)).fold(Value::Null, fold, None).sink("b");
        assert_eq!(e.err(), Some(BuildError::SessionNeedsMerge { step: 0 }));
        let e = Topology::source(Vec::<String>::new()).sink("b");
        assert_eq!(e.err(), Some(BuildError::NoSource));
        let e = Topology::source(["a"])
            .map(|r| r)
            .join_stream("b", JoinWindow { before_ms: -1, after_ms: 0, grace_ms: 0 }, |l, _| l.value.clone())
            .sink("c");
        assert_eq!(e.err(), Some(BuildError::JoinWindow { step: 1 }));
        assert!(Topology::source(["a"]).group_by_key().sum(field("/n")).sink("b").is_ok());
    }

    #[test]
    fn a_stream_join_adds_its_other_side_as_an_input_at_the_join() {
        let t = Topology::source(["orders"])
            .filter(|_| true)
            .join_stream("payments", JoinWindow::within(1000), |l, r| serde_json::json!([l.value, r.value]))
            .sink("paid")
            .expect("valid");
        assert_eq!(
            t.stages[0].inputs,
            vec![
                Input { source: Source::Topic("orders".into()), entry: 0, right: false },
                Input { source: Source::Topic("payments".into()), entry: 1, right: true },
            ]
        );
        assert_eq!(t.external_inputs(), vec!["orders", "payments"]);
    }
}
