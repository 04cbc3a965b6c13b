//! Pipelines defined as JSON, with jq expressions (the `jaq` implementation) for
//! filters, maps and keys — what `POST /v1/pipelines` and `fjord processor --pipeline`
//! take. A definition compiles to the same [`Topology`] the Rust DSL builds.
//!
//! ```json
//! {
//!   "name": "orders-per-region",
//!   "source": ["orders"],
//!   "steps": [
//!     {"filter": ".amount > 0"},
//!     {"key_by": ".region"},
//!     {"aggregate": {"op": "count", "window": {"tumbling": {"size_ms": 60000}}, "grace_ms": 5000, "emit": "final"}}
//!   ],
//!   "sink": "orders-per-region"
//! }
//! ```
//!
//! Every record expression sees the record's value as `.`, and `$key` and `$timestamp`.
//! A filter keeps a record when its expression's first output is neither `false` nor
//! `null`; `map` takes the first output as the new value (none: the record is dropped);
//! `flat_map` takes every output; `key_by` the first output as the key (a string as it
//! is, anything else as its JSON text; `null` drops the record); `timestamp` the first
//! output as the event time in ms. An expression that fails on a record (`.a + 1` on a
//! string, say) drops that record and is counted in the pipeline's `expression_errors`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jaq_core::{load, Compiler, Ctx, Native, RcIter};
use jaq_json::Val;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::aggregate::{Agg, Extract, FoldFn, MergeFn};
use crate::record::{as_key, Rec};
use crate::topology::{BuildError, JoinWindow, Topology};
use crate::window::WindowSpec;

/// A pipeline definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineDef {
    /// 1–100 characters of `[a-zA-Z0-9._-]`: the consumer group and the internal topics'
    /// prefix.
    #[schema(min_length = 1, max_length = 100, pattern = "^[a-zA-Z0-9._-]+$")]
    pub name: String,
    /// Source topics (co-partitioned when several).
    #[schema(min_items = 1)]
    pub source: Vec<String>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// The topic the results go to (it must exist).
    #[schema(min_length = 1, max_length = 249, pattern = "^[a-zA-Z0-9._-]+$")]
    pub sink: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Keep records for which the jq expression's first output is neither false nor null.
    Filter(String),
    /// The expression's first output is the new value (the key stays).
    Map(String),
    /// Each output of the expression is a record (the key stays).
    FlatMap(String),
    /// The expression's first output is the new key; records are repartitioned by it.
    KeyBy(String),
    /// The expression's first output (a number, ms) is the record's event time.
    Timestamp(String),
    /// Group by key (optionally in windows) and aggregate.
    Aggregate(AggregateDef),
    /// Join with a compacted topic read as a table.
    JoinTable(JoinTableDef),
    /// Join with another, co-partitioned stream within a time window.
    JoinStream(JoinStreamDef),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggOp {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Fold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmitDef {
    #[default]
    Updates,
    Final,
}

/// A window: `{"tumbling": {...}}`, `{"hopping": {...}}` or `{"session": {...}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowDef {
    Tumbling(TumblingWindow),
    Hopping(HoppingWindow),
    Session(SessionWindow),
}

/// Fixed windows of `size_ms`, aligned to the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TumblingWindow {
    #[schema(minimum = 1)]
    pub size_ms: i64,
}

/// Windows of `size_ms` starting every `advance_ms` (at most `size_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoppingWindow {
    #[schema(minimum = 1)]
    pub size_ms: i64,
    #[schema(minimum = 1)]
    pub advance_ms: i64,
}

/// Per key, records less than `gap_ms` apart form one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionWindow {
    #[schema(minimum = 1)]
    pub gap_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateDef {
    pub op: AggOp,
    /// The number to aggregate (`sum`, `min`, `max`, `avg`), e.g. `.amount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    /// `fold`: the first accumulator, a step over `{acc, value, key}` and, for
    /// sessions, a merge over `{a, b}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<String>,
    /// No window: a running aggregate per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowDef>,
    /// How long after a window's end its late records are still taken.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub grace_ms: i64,
    #[serde(default)]
    pub emit: EmitDef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTableDef {
    /// A compacted topic, read as a table of its keys' latest values.
    #[schema(min_length = 1, max_length = 249, pattern = "^[a-zA-Z0-9._-]+$")]
    pub table: String,
    /// Keep records whose key has no row (`row` is `null`).
    #[serde(default)]
    pub left: bool,
    /// The joined value, from `{value, row, key}` (default: that object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinStreamDef {
    /// The other stream (co-partitioned with this stage's input).
    #[schema(min_length = 1, max_length = 249, pattern = "^[a-zA-Z0-9._-]+$")]
    pub topic: String,
    /// Records join when their times are at most this far apart.
    #[schema(minimum = 0)]
    pub within_ms: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub grace_ms: i64,
    /// The joined value, from `{left, right, key}` (default: that object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// What is wrong with a definition, and where: `path` names the field
/// (`steps[2].filter`), `offset` the character in its expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DefinitionError {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{} (at character {o}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> DefinitionError {
    DefinitionError { path: path.into(), offset: None, message: message.into() }
}

/// A compiled jq expression.
#[derive(Clone)]
pub struct Expr {
    filter: Arc<jaq_core::Filter<Native<Val>>>,
    errors: Arc<AtomicU64>,
}

/// The variables record expressions see, in this order.
const RECORD_VARS: [&str; 2] = ["$key", "$timestamp"];

/// jq's functions that reach outside the record — end the process (`halt`), read its
/// environment (`env`), the clock (`now`, local time) or write to its log — are not
/// available: an expression must be a pure function of its input, or a batch done again
/// would not be the same batch, and a pipeline's author could stop or read the processor.
const DENIED: [&str; 8] = ["halt", "halt_error", "env", "now", "localtime", "strflocaltime", "debug", "stderr"];

/// At most this many outputs of a `flat_map` expression per record (`repeat` would
/// never end).
pub const MAX_OUTPUTS: usize = 10_000;

fn funs() -> impl Iterator<Item = jaq_std::Filter<Native<Val>>> {
    jaq_std::funs().chain(jaq_json::funs()).filter(|(name, _, _)| !DENIED.contains(name))
}

impl Expr {
    /// Compiles `code` with the given global variables (`$name`), or says what is wrong
    /// and at which character.
    pub fn compile(code: &str, vars: &[&str], errors: Arc<AtomicU64>) -> Result<Self, (Option<usize>, String)> {
        let offset_in = |s: &str| {
            let (base, p) = (code.as_ptr() as usize, s.as_ptr() as usize);
            (base..=base + code.len()).contains(&p).then(|| code[..p - base].chars().count())
        };
        let defs = jaq_std::defs().chain(jaq_json::defs()).filter(|d| !DENIED.contains(&d.name));
        let loader = load::Loader::new(defs);
        let arena = load::Arena::default();
        let modules = loader.load(&arena, load::File { code, path: () }).map_err(|errs| {
            let mut out = (None, "the expression does not parse".to_owned());
            if let Some((_, e)) = errs.into_iter().next() {
                out = match e {
                    load::Error::Io(v) => (None, format!("cannot load {v:?}")),
                    load::Error::Lex(v) => match v.into_iter().next() {
                        Some((expect, at)) => (offset_in(at), format!("expected {}", expect.as_str())),
                        None => out,
                    },
                    load::Error::Parse(v) => match v.into_iter().next() {
                        Some((expect, at)) => (
                            offset_in(at),
                            format!("expected {} at {:?}", expect.as_str(), at.chars().take(20).collect::<String>()),
                        ),
                        None => out,
                    },
                };
            }
            out
        })?;
        let filter =
            Compiler::default().with_funs(funs()).with_global_vars(vars.iter().copied()).compile(modules).map_err(
                |errs| {
                    let first = errs.into_iter().flat_map(|(_, es)| es).next();
                    match first {
                        Some((name, _)) => (offset_in(name), format!("{name} is not defined")),
                        None => (None, "the expression does not compile".to_owned()),
                    }
                },
            )?;
        Ok(Self { filter: Arc::new(filter), errors })
    }

    /// The first `limit` outputs for `input` with `vars` (taken lazily: the rest are
    /// never computed); an error stops it (counted, and `Err`).
    pub fn run_n(&self, input: Value, vars: Vec<Value>, limit: usize) -> Result<Vec<Value>, String> {
        let inputs = RcIter::new(core::iter::empty());
        let ctx = Ctx::new(vars.into_iter().map(Val::from), &inputs);
        let mut out = Vec::new();
        for v in self.filter.run((ctx, Val::from(input))).take(limit) {
            match v {
                Ok(v) => out.push(Value::from(v)),
                Err(e) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(e.to_string());
                }
            }
        }
        Ok(out)
    }

    /// The first output, if any.
    pub fn run(&self, input: Value, vars: Vec<Value>) -> Option<Value> {
        self.run_n(input, vars, 1).ok().and_then(|v| v.into_iter().next())
    }

    fn record_vars(r: &Rec) -> Vec<Value> {
        vec![r.key.clone().map_or(Value::Null, Value::String), json!(r.timestamp)]
    }

    fn on_record(&self, r: &Rec) -> Vec<Value> {
        self.run_n(r.value.clone(), Self::record_vars(r), MAX_OUTPUTS).unwrap_or_default()
    }

    fn first(&self, r: &Rec) -> Option<Value> {
        self.run(r.value.clone(), Self::record_vars(r))
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// A compiled definition: its topology, and the count of records an expression failed on.
pub struct Compiled {
    pub topology: Topology,
    pub expression_errors: Arc<AtomicU64>,
}

pub fn valid_topic(s: &str) -> bool {
    crate::runtime::valid_name(s, 249)
}

impl PipelineDef {
    /// Compiles the definition, or every problem found with where it is.
    pub fn compile(&self) -> Result<Compiled, Vec<DefinitionError>> {
        let errors = Arc::new(AtomicU64::new(0));
        let mut problems = Vec::new();
        if !crate::runtime::valid_app_id(&self.name) {
            problems.push(err("name", "1–100 characters of [a-zA-Z0-9._-]"));
        }
        if self.source.is_empty() {
            problems.push(err("source", "at least one topic"));
        }
        for (i, t) in self.source.iter().enumerate() {
            if !valid_topic(t) {
                problems.push(err(format!("source[{i}]"), "a topic name: 1–249 characters of [a-zA-Z0-9._-]"));
            }
        }
        if !valid_topic(&self.sink) {
            problems.push(err("sink", "a topic name: 1–249 characters of [a-zA-Z0-9._-]"));
        }
        // Every topic is read once: a topic twice among the inputs would share one
        // partition's records and commits between two inputs, and a sink that is also an
        // input would feed the pipeline its own output.
        let mut inputs: Vec<(String, &str)> =
            self.source.iter().enumerate().map(|(i, t)| (format!("source[{i}]"), t.as_str())).collect();
        for (i, step) in self.steps.iter().enumerate() {
            if let Step::JoinStream(j) = step {
                inputs.push((format!("steps[{i}].join_stream.topic"), j.topic.as_str()));
            }
        }
        for (n, (path, topic)) in inputs.iter().enumerate() {
            if inputs[..n].iter().any(|(_, t)| t == topic) {
                problems.push(err(path.clone(), format!("topic `{topic}` is already an input of this pipeline")));
            }
            if *topic == self.sink {
                problems
                    .push(err("sink", format!("`{topic}` is also an input: the pipeline would read its own output")));
            }
        }
        let mut b = Topology::source(self.source.clone());
        let expr = |problems: &mut Vec<DefinitionError>, path: String, code: &str, vars: &[&str]| match Expr::compile(
            code,
            vars,
            errors.clone(),
        ) {
            Ok(e) => Some(e),
            Err((offset, message)) => {
                problems.push(DefinitionError { path, offset, message });
                None
            }
        };
        for (i, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("steps[{i}].{field}");
            b = match step {
                Step::Filter(code) => match expr(&mut problems, at("filter"), code, &RECORD_VARS) {
                    Some(e) => b.filter(move |r| e.first(r).is_some_and(|v| truthy(&v))),
                    None => b,
                },
                Step::Map(code) => match expr(&mut problems, at("map"), code, &RECORD_VARS) {
                    Some(e) => b.flat_map(move |r| match e.first(&r) {
                        Some(value) => vec![Rec { value, ..r }],
                        None => Vec::new(),
                    }),
                    None => b,
                },
                Step::FlatMap(code) => match expr(&mut problems, at("flat_map"), code, &RECORD_VARS) {
                    Some(e) => b.flat_map(move |r| {
                        e.on_record(&r)
                            .into_iter()
                            .map(|value| Rec { value, key: r.key.clone(), timestamp: r.timestamp })
                            .collect()
                    }),
                    None => b,
                },
                Step::KeyBy(code) => match expr(&mut problems, at("key_by"), code, &RECORD_VARS) {
                    Some(e) => b.key_by(move |r| as_key(e.first(r).as_ref())),
                    None => b,
                },
                Step::Timestamp(code) => match expr(&mut problems, at("timestamp"), code, &RECORD_VARS) {
                    Some(e) => b.flat_map(move |r| match e.first(&r).and_then(|v| v.as_f64()) {
                        Some(t) if t.is_finite() => vec![Rec { timestamp: t as i64, ..r }],
                        _ => Vec::new(),
                    }),
                    None => b,
                },
                Step::Aggregate(a) => match aggregate(a, i, &errors) {
                    Ok((agg, spec)) => {
                        let w = match spec {
                            Some(spec) => b.window(spec),
                            None => b.group_by_key(),
                        };
                        let w = if a.emit == EmitDef::Final { w.emit_final() } else { w };
                        w.aggregate(agg)
                    }
                    Err(mut e) => {
                        problems.append(&mut e);
                        b
                    }
                },
                Step::JoinTable(j) => {
                    if !valid_topic(&j.table) {
                        problems.push(err(at("join_table.table"), "a topic name"));
                    }
                    let code = j.value.as_deref().unwrap_or(".");
                    match expr(&mut problems, at("join_table.value"), code, &[]) {
                        Some(e) => {
                            let joiner = move |r: &Rec, row: Option<&Value>| {
                                let input = json!({"value": r.value, "row": row, "key": r.key});
                                e.run(input, Vec::new()).unwrap_or(Value::Null)
                            };
                            if j.left {
                                b.left_join_table(j.table.clone(), joiner)
                            } else {
                                b.join_table(j.table.clone(), joiner)
                            }
                        }
                        None => b,
                    }
                }
                Step::JoinStream(j) => {
                    if !valid_topic(&j.topic) {
                        problems.push(err(at("join_stream.topic"), "a topic name"));
                    }
                    let code = j.value.as_deref().unwrap_or(".");
                    match expr(&mut problems, at("join_stream.value"), code, &[]) {
                        Some(e) => {
                            let window =
                                JoinWindow { before_ms: j.within_ms, after_ms: j.within_ms, grace_ms: j.grace_ms };
                            b.join_stream(j.topic.clone(), window, move |l: &Rec, r: &Rec| {
                                let input = json!({"left": l.value, "right": r.value, "key": l.key});
                                e.run(input, Vec::new()).unwrap_or(Value::Null)
                            })
                        }
                        None => b,
                    }
                }
            };
        }
        let built = b.sink(self.sink.clone());
        if !problems.is_empty() {
            return Err(problems);
        }
        built.map(|topology| Compiled { topology, expression_errors: errors }).map_err(|e| vec![build_error(e)])
    }
}

fn build_error(e: BuildError) -> DefinitionError {
    let path = match &e {
        BuildError::NoSource => "source".to_owned(),
        BuildError::Window { step, .. } | BuildError::SessionNeedsMerge { step } | BuildError::JoinWindow { step } => {
            format!("steps[{step}]")
        }
    };
    let message = match e {
        BuildError::Window { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    err(path, message)
}

fn aggregate(
    a: &AggregateDef,
    i: usize,
    errors: &Arc<AtomicU64>,
) -> Result<(Agg, Option<WindowSpec>), Vec<DefinitionError>> {
    let at = |field: &str| format!("steps[{i}].aggregate.{field}");
    let mut problems = Vec::new();
    let compile = |problems: &mut Vec<DefinitionError>, field: &str, code: &str, vars: &[&str]| {
        Expr::compile(code, vars, errors.clone())
            .map_err(|(offset, message)| problems.push(DefinitionError { path: at(field), offset, message }))
            .ok()
    };
    let number = |problems: &mut Vec<DefinitionError>| -> Option<Extract> {
        match &a.of {
            None => {
                problems.push(err(
                    at("of"),
                    format!("{:?} needs `of`: the number to aggregate, e.g. \".amount\"", a.op).to_lowercase(),
                ));
                None
            }
            Some(code) => {
                let e = compile(problems, "of", code, &RECORD_VARS)?;
                Some(Arc::new(move |r: &Rec| e.first(r)))
            }
        }
    };
    let agg = match a.op {
        AggOp::Count => {
            if a.of.is_some() {
                problems.push(err(at("of"), "count takes no `of`"));
            }
            Some(Agg::Count)
        }
        AggOp::Sum => number(&mut problems).map(Agg::Sum),
        AggOp::Min => number(&mut problems).map(Agg::Min),
        AggOp::Max => number(&mut problems).map(Agg::Max),
        AggOp::Avg => number(&mut problems).map(Agg::Avg),
        AggOp::Fold => {
            let (Some(init), Some(step)) = (&a.init, &a.step) else {
                problems.push(err(at("step"), "fold needs `init` and `step` (an expression over {acc, value, key})"));
                return Err(problems);
            };
            let step = compile(&mut problems, "step", step, &[]);
            let merge = a.merge.as_deref().and_then(|m| compile(&mut problems, "merge", m, &[]));
            step.map(|s| {
                let step: FoldFn = Arc::new(move |acc: &Value, r: &Rec| {
                    let input = json!({"acc": acc, "value": r.value, "key": r.key});
                    s.run(input, Vec::new()).unwrap_or_else(|| acc.clone())
                });
                let merge: Option<MergeFn> = merge.map(|m| -> MergeFn {
                    Arc::new(move |x: &Value, y: &Value| {
                        m.run(json!({"a": x, "b": y}), Vec::new()).unwrap_or(Value::Null)
                    })
                });
                Agg::Fold { init: init.clone(), step, merge }
            })
        }
    };
    let spec = a.window.map(|w| {
        let spec = match w {
            WindowDef::Tumbling(w) => WindowSpec::tumbling(w.size_ms),
            WindowDef::Hopping(w) => WindowSpec::hopping(w.size_ms, w.advance_ms),
            WindowDef::Session(w) => WindowSpec::session(w.gap_ms),
        };
        spec.grace(a.grace_ms)
    });
    if let Some(Err(e)) = spec.map(|s| s.validate()) {
        problems.push(err(at("window"), e.to_string()));
    }
    if a.window.is_none() && (a.grace_ms != 0 || a.emit == EmitDef::Final) {
        problems.push(err(at("window"), "grace_ms and emit: final need a window"));
    }
    match agg {
        Some(agg) if problems.is_empty() => Ok((agg, spec)),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests;
