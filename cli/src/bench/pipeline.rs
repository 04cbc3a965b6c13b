//! `fjord bench pipeline`: what stream processing costs. An input topic is filled with
//! `--records` JSON orders; then, one after the other, in the same run:
//! 1. **copy** — the baseline: plain consume + produce of the same records (one task
//!    per partition reading it to its end and producing each batch to a copy topic,
//!    `acks=all`);
//! 2. **filter-map** — a pipeline `filter` → `map` (jq) to a sink;
//! 3. **windowed-count** — a pipeline `key_by` (a repartition) → count per key in
//!    tumbling windows, every update emitted, with a grace period that makes no input
//!    late.
//!
//! Each pipeline runs in this process as one [`Processor`] (the library `fjord
//! processor` uses) and is timed from its start until its sink holds one output per
//! input; figures are input records per second and their ratio to the copy's. The
//! topics it made are deleted afterwards.

use anyhow::{bail, Context};
use fjord_client::{Acks, Client, NewTopic, ProduceOptions, ReadOptions, Record, Start};
use fjord_streams::pipeline::PipelineDef;
use fjord_streams::{Processor, ProcessorConfig};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct Shape {
    pub name: &'static str,
    pub seconds: f64,
    pub records_per_s: f64,
    /// Of the copy baseline's records per second.
    pub ratio_to_copy: f64,
}

#[derive(Debug, Serialize)]
pub struct PipelineReport {
    pub mode: &'static str,
    pub records: u64,
    pub partitions: u32,
    pub shapes: Vec<Shape>,
}

impl PipelineReport {
    pub fn table(&self) -> String {
        let mut out = format!("{} input records over {} partitions\n", self.records, self.partitions);
        out += &format!("{:<16} {:>9} {:>12} {:>9}\n", "shape", "seconds", "records/s", "÷ copy");
        for s in &self.shapes {
            out += &format!("{:<16} {:>9.2} {:>12.0} {:>9.3}\n", s.name, s.seconds, s.records_per_s, s.ratio_to_copy);
        }
        out
    }
}

/// Sum of the high watermarks of `topic`.
async fn total(api: &Client, topic: &str, partitions: u32) -> anyhow::Result<u64> {
    let mut n = 0;
    for p in 0..partitions {
        n += api.offsets(topic, p, None).await.with_context(|| format!("offsets of {topic}"))?.high_watermark;
    }
    Ok(n)
}

async fn create(api: &Client, name: &str, partitions: u32, rf: Option<u32>) -> anyhow::Result<()> {
    let spec = NewTopic { replication_factor: rf, ..NewTopic::new(name, partitions) };
    api.create_topic(&spec).await.with_context(|| format!("creating {name}"))?;
    Ok(())
}

/// Fills `topic` with `records` orders, 1,000 per request, partitions in turn; event
/// times one per ms from an hour ago (recent enough for any retention).
async fn fill(api: &Client, topic: &str, partitions: u32, records: u64) -> anyhow::Result<()> {
    let opts = ProduceOptions { acks: Acks::Leader, ..ProduceOptions::default() };
    let base = fjord_protocol::now_ms() - 3_600_000;
    let mut i = 0u64;
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let n = records / u64::from(partitions) + u64::from(u64::from(p) < records % u64::from(partitions));
        let (api, topic, opts) = (api.clone(), topic.to_owned(), opts.clone());
        let start = i;
        i += n;
        tasks.push(tokio::spawn(async move {
            let mut at = start;
            while at < start + n {
                let batch: Vec<Record> = (at..(at + 1_000).min(start + n))
                    .map(|k| Record {
                        key: Some(format!("order-{k}")),
                        value: Some(json!({"region": format!("r{}", k % 16), "amount": k % 1000, "id": k})),
                        timestamp: Some(base + k as i64),
                        ..Record::default()
                    })
                    .collect();
                let reply = api.produce(&topic, Some(p), &batch, &opts).await?;
                if !reply.all_written() {
                    bail!("filling {topic}: {reply:?}");
                }
                at += batch.len() as u64;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The baseline: each partition read to its end and produced again, batch by batch.
async fn copy(api: &Client, from: &str, to: &str, partitions: u32) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let (api, from, to) = (api.clone(), from.to_owned(), to.to_owned());
        tasks.push(tokio::spawn(async move {
            let opts = ProduceOptions { acks: Acks::All, ..ProduceOptions::default() };
            let read = ReadOptions { max_records: Some(1_000), ..ReadOptions::default() };
            let mut next = 0;
            loop {
                let reply = api.consume(&from, p, Start::Offset(next), &read).await?;
                if reply.records.is_empty() {
                    return Ok::<_, anyhow::Error>(());
                }
                let batch: Vec<Record> = reply
                    .records
                    .iter()
                    .map(|r| Record {
                        key: r.key.clone(),
                        value: r.value.clone(),
                        timestamp: Some(r.timestamp),
                        ..Record::default()
                    })
                    .collect();
                let written = api.produce(&to, Some(p), &batch, &opts).await?;
                if !written.all_written() {
                    bail!("copying to {to}: {written:?}");
                }
                next = reply.next_offset;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Runs `def` in this process until its sink holds `want` records; the seconds it took.
async fn run_pipeline(
    api: &Client,
    def: Value,
    sink_partitions: u32,
    want: u64,
    deadline: Duration,
) -> anyhow::Result<f64> {
    let def: PipelineDef = serde_json::from_value(def)?;
    let compiled = def.compile().map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let mut cfg = ProcessorConfig::new(def.name.clone());
    cfg.instance = "bench".into();
    // As `fjord processor` runs by default: task state in a local RocksDB.
    let state = tempfile::tempdir()?;
    cfg.state_dir = Some(state.path().to_owned());
    let processor = Processor::new(api.clone(), compiled.topology, cfg)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let t0 = Instant::now();
    let task = tokio::spawn(async move { processor.run(async { stopped.await.unwrap_or(()) }).await });
    loop {
        if total(api, &def.sink, sink_partitions).await? >= want {
            break;
        }
        if task.is_finished() || t0.elapsed() > deadline {
            let _ = stop.send(());
            let r = task.await?;
            bail!("pipeline {} did not finish within {deadline:?}: {r:?}", def.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let _ = stop.send(());
    task.await?.context("the pipeline")?;
    Ok(seconds)
}

pub async fn run(
    api: Client,
    prefix: &str,
    partitions: u32,
    rf: Option<u32>,
    records: u64,
    deadline: Duration,
) -> anyhow::Result<PipelineReport> {
    let run_id = fjord_protocol::now_ms();
    let name = |what: &str| format!("{prefix}-{what}-{run_id}");
    let input = name("in");
    create(&api, &input, partitions, rf).await?;
    fill(&api, &input, partitions, records).await?;
    let mut made = vec![input.clone()];
    let mut shapes = Vec::new();

    let copy_topic = name("copy");
    create(&api, &copy_topic, partitions, rf).await?;
    made.push(copy_topic.clone());
    let t0 = Instant::now();
    copy(&api, &input, &copy_topic, partitions).await?;
    let copy_s = t0.elapsed().as_secs_f64();
    shapes.push(("copy", copy_s));

    let filtered = name("filtered");
    create(&api, &filtered, partitions, rf).await?;
    made.push(filtered.clone());
    let def = json!({
        "name": name("filter-map"), "source": [input], "sink": filtered,
        "steps": [{"filter": ".amount >= 0"}, {"map": "{region, amount, doubled: (.amount * 2)}"}]
    });
    shapes.push(("filter-map", run_pipeline(&api, def, partitions, records, deadline).await?));

    let counts = name("counts");
    create(&api, &counts, partitions, rf).await?;
    made.push(counts.clone());
    // The repartition topic interleaves what the input partitions' tasks write, so a
    // region's records reach its task out of event-time order, by up to the whole span
    // of event times (`records` ms). A grace period of that span drops none of them,
    // so the sink gets one update per input and the run knows when it is done.
    let grace_ms = i64::try_from(records).unwrap_or(i64::MAX);
    let def = json!({
        "name": name("windowed-count"), "source": [input], "sink": counts,
        "steps": [{"key_by": ".region"},
                  {"aggregate": {"op": "count", "window": {"tumbling": {"size_ms": 1000}}, "grace_ms": grace_ms}}]
    });
    shapes.push(("windowed-count", run_pipeline(&api, def, partitions, records, deadline).await?));

    // Clean up: what it made, and what its pipelines made.
    let all = api.list_topics().await?;
    for t in
        all.iter().map(|t| &t.name).filter(|t| t.ends_with(&run_id.to_string()) || t.contains(&format!("-{run_id}-")))
    {
        made.push(t.clone());
    }
    made.sort();
    made.dedup();
    for t in made {
        let _ = api.delete_topic(&t).await;
    }
    for g in [name("filter-map"), name("windowed-count")] {
        let _ = api.delete_group(&g).await;
    }
    let per_s = |s: f64| if s > 0.0 { records as f64 / s } else { 0.0 };
    let base = per_s(copy_s);
    Ok(PipelineReport {
        mode: "pipeline",
        records,
        partitions,
        shapes: shapes
            .into_iter()
            .map(|(name, seconds)| Shape {
                name,
                seconds,
                records_per_s: per_s(seconds),
                ratio_to_copy: if base > 0.0 { per_s(seconds) / base } else { 0.0 },
            })
            .collect(),
    })
}
