//! Aggregations: count, sum, min, max, avg, and a user fold. An aggregate's state is a
//! JSON value (the accumulator), so it can be written to a changelog as it is.

use std::sync::Arc;

use serde_json::{json, Number, Value};

use crate::record::Rec;

/// What a numeric aggregation reads from a record.
pub type Extract = Arc<dyn Fn(&Rec) -> Option<Value> + Send + Sync>;
/// A fold step: the accumulator and a record give the next accumulator.
pub type FoldFn = Arc<dyn Fn(&Value, &Rec) -> Value + Send + Sync>;
/// Merges two accumulators (sessions that grow together).
pub type MergeFn = Arc<dyn Fn(&Value, &Value) -> Value + Send + Sync>;

/// The value at a JSON pointer of the record's value.
pub fn field(pointer: &str) -> Extract {
    let pointer = pointer.to_owned();
    Arc::new(move |r: &Rec| r.value.pointer(&pointer).cloned())
}

#[derive(Clone)]
pub enum Agg {
    Count,
    Sum(Extract),
    Min(Extract),
    Max(Extract),
    Avg(Extract),
    Fold { init: Value, step: FoldFn, merge: Option<MergeFn> },
}

impl std::fmt::Debug for Agg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Agg::Count => "count",
            Agg::Sum(_) => "sum",
            Agg::Min(_) => "min",
            Agg::Max(_) => "max",
            Agg::Avg(_) => "avg",
            Agg::Fold { .. } => "fold",
        })
    }
}

/// A record an aggregation cannot take (a numeric one whose field is not a number): it
/// is skipped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip;

/// `a + b`, exact while both are integers that fit, floating point otherwise.
fn add(a: &Number, b: &Number) -> Number {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if let Some(s) = x.checked_add(y) {
            return s.into();
        }
    }
    let s = a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0);
    Number::from_f64(s).unwrap_or_else(|| 0.into())
}

fn less(a: &Number, b: &Number) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x < y,
        _ => a.as_f64().unwrap_or(0.0) < b.as_f64().unwrap_or(0.0),
    }
}

fn number(extract: &Extract, r: &Rec) -> Result<Number, Skip> {
    match extract(r) {
        Some(Value::Number(n)) => Ok(n),
        _ => Err(Skip),
    }
}

impl Agg {
    /// The accumulator before any record.
    pub fn init(&self) -> Value {
        match self {
            Agg::Count | Agg::Sum(_) => json!(0),
            Agg::Min(_) | Agg::Max(_) => Value::Null,
            Agg::Avg(_) => json!({"sum": 0, "count": 0}),
            Agg::Fold { init, .. } => init.clone(),
        }
    }

    /// The accumulator after `r`.
    pub fn add(&self, acc: &Value, r: &Rec) -> Result<Value, Skip> {
        let num = |v: &Value| v.as_number().cloned().unwrap_or_else(|| 0.into());
        Ok(match self {
            Agg::Count => json!(acc.as_u64().unwrap_or(0) + 1),
            Agg::Sum(x) => Value::Number(add(&num(acc), &number(x, r)?)),
            Agg::Min(x) | Agg::Max(x) => {
                let n = number(x, r)?;
                let keep_old = match acc.as_number() {
                    None => false,
                    Some(old) if matches!(self, Agg::Min(_)) => !less(&n, old),
                    Some(old) => !less(old, &n),
                };
                if keep_old {
                    acc.clone()
                } else {
                    Value::Number(n)
                }
            }
            Agg::Avg(x) => {
                let n = number(x, r)?;
                json!({
                    "sum": Value::Number(add(&num(&acc["sum"]), &n)),
                    "count": acc["count"].as_u64().unwrap_or(0) + 1,
                })
            }
            Agg::Fold { step, .. } => step(acc, r),
        })
    }

    /// Whether two accumulators can be merged (session windows need it).
    pub fn mergeable(&self) -> bool {
        !matches!(self, Agg::Fold { merge: None, .. })
    }

    /// Two accumulators as one.
    pub fn merge(&self, a: &Value, b: &Value) -> Value {
        let num = |v: &Value| v.as_number().cloned().unwrap_or_else(|| 0.into());
        match self {
            Agg::Count => json!(a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0)),
            Agg::Sum(_) => Value::Number(add(&num(a), &num(b))),
            Agg::Min(_) | Agg::Max(_) => match (a.as_number(), b.as_number()) {
                (None, _) => b.clone(),
                (_, None) => a.clone(),
                (Some(x), Some(y)) => {
                    let take_b = if matches!(self, Agg::Min(_)) { less(y, x) } else { less(x, y) };
                    if take_b {
                        b.clone()
                    } else {
                        a.clone()
                    }
                }
            },
            Agg::Avg(_) => json!({
                "sum": Value::Number(add(&num(&a["sum"]), &num(&b["sum"]))),
                "count": a["count"].as_u64().unwrap_or(0) + b["count"].as_u64().unwrap_or(0),
            }),
            Agg::Fold { merge: Some(m), .. } => m(a, b),
            Agg::Fold { merge: None, .. } => a.clone(),
        }
    }

    /// What the aggregate emits for an accumulator.
    pub fn finish(&self, acc: &Value) -> Value {
        match self {
            Agg::Avg(_) => {
                let count = acc["count"].as_u64().unwrap_or(0);
                if count == 0 {
                    Value::Null
                } else {
                    let sum = acc["sum"].as_f64().unwrap_or(0.0);
                    Number::from_f64(sum / count as f64).map(Value::Number).unwrap_or(Value::Null)
                }
            }
            _ => acc.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Rec {
        Rec::new(None, v, 0)
    }

    fn run(agg: &Agg, values: &[Value]) -> Value {
        let acc = values.iter().fold(agg.init(), |acc, v| agg.add(&acc, &rec(v.clone())).unwrap_or(acc));
        agg.finish(&acc)
    }

    #[test]
    fn built_ins() {
        let vals = [json!({"n": 3}), json!({"n": -1}), json!({"n": 10})];
        assert_eq!(run(&Agg::Count, &vals), json!(3));
        assert_eq!(run(&Agg::Sum(field("/n")), &vals), json!(12));
        assert_eq!(run(&Agg::Min(field("/n")), &vals), json!(-1));
        assert_eq!(run(&Agg::Max(field("/n")), &vals), json!(10));
        assert_eq!(run(&Agg::Avg(field("/n")), &vals), json!(4.0));
        assert_eq!(run(&Agg::Sum(field("/n")), &[json!({"n": 1.5}), json!({"n": 2})]), json!(3.5));
        assert_eq!(run(&Agg::Avg(field("/n")), &[]), Value::Null);
    }

    #[test]
    fn a_non_number_is_skipped() {
        let agg = Agg::Sum(field("/n"));
        assert_eq!(agg.add(&json!(1), &rec(json!({"n": "x"}))), Err(Skip));
        assert_eq!(agg.add(&json!(1), &rec(json!({}))), Err(Skip));
        assert_eq!(Agg::Count.add(&json!(1), &rec(json!({}))), Ok(json!(2)));
    }

    #[test]
    fn merging_equals_folding_all() {
        let a = [json!({"n": 3}), json!({"n": 7})];
        let b = [json!({"n": -2}), json!({"n": 5}), json!({"n": 1})];
        for agg in
            [Agg::Count, Agg::Sum(field("/n")), Agg::Min(field("/n")), Agg::Max(field("/n")), Agg::Avg(field("/n"))]
        {
            let fold = |vals: &[Value]| {
                vals.iter().fold(agg.init(), |acc, v| agg.add(&acc, &rec(v.clone())).expect("a number"))
            };
            let all: Vec<Value> = a.iter().chain(b.iter()).cloned().collect();
            assert_eq!(agg.finish(&agg.merge(&fold(&a), &fold(&b))), agg.finish(&fold(&all)), "{agg:?}");
        }
    }

    #[test]
    fn fold_without_merge_is_not_mergeable() {
        let step: FoldFn = Arc::new(|acc, r| json!(format!("{}{}", acc.as_str().unwrap_or(""), r.value)));
        let agg = Agg::Fold { init: json!(""), step, merge: None };
        assert!(!agg.mergeable());
        assert_eq!(run(&agg, &[json!(1), json!(2)]), json!("12"));
    }
}
