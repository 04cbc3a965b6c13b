//! `fjord bench partitions`: how long a new topic of `--partitions` partitions takes to
//! become writable — the create call's answer, then one `acks=1` record per partition,
//! retried until every partition has taken one (or `--duration` passes). A Kafka user's
//! 1,000-partition topic should be writable in seconds, not minutes.

use anyhow::{bail, Context};
use fjord_client::{Acks, Client, ProduceOptions, Record};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Probes in flight at once.
pub const PROBES_IN_FLIGHT: usize = 64;
/// Pause before probing the partitions that refused again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize)]
pub struct ScaleReport {
    pub mode: &'static str,
    pub topic: String,
    pub partitions: u32,
    /// Time until `POST /v1/topics` answered.
    pub create_ms: f64,
    /// Time from the create call until the last partition took its record.
    pub writable_ms: f64,
    /// Time from the create call until the first partition took its record.
    pub first_writable_ms: f64,
    /// Probe requests sent (one per partition when all were writable at once).
    pub probes: u64,
}

impl ScaleReport {
    pub fn table(&self) -> String {
        format!(
            "topic {} with {} partitions: create answered in {:.0} ms; first partition writable after {:.0} ms, \
             all after {:.0} ms ({} probes)\n",
            self.topic, self.partitions, self.create_ms, self.first_writable_ms, self.writable_ms, self.probes
        )
    }
}

/// Creates `topic` (which must not exist) and measures it becoming writable.
pub async fn partitions(
    http: reqwest::Client,
    base: &str,
    topic: &str,
    partitions: u32,
    replication_factor: Option<u32>,
    deadline: Duration,
) -> anyhow::Result<ScaleReport> {
    let api = Client::with_http(http, base);
    let spec = fjord_client::NewTopic { replication_factor, ..fjord_client::NewTopic::new(topic, partitions) };
    let t0 = Instant::now();
    api.create_topic(&spec).await.with_context(|| format!("creating `{topic}` (it must not exist yet)"))?;
    let create_ms = ms(t0.elapsed());
    let opts = ProduceOptions { acks: Acks::Leader, timeout_ms: Some(1000), ..Default::default() };
    let record = [Record::value(serde_json::json!("probe"))];
    let mut pending: Vec<u32> = (0..partitions).collect();
    let (mut probes, mut first) = (0u64, None);
    loop {
        let answers: Vec<(u32, bool)> = stream::iter(pending.iter().copied())
            .map(|p| {
                let (api, opts, record) = (&api, &opts, &record);
                async move {
                    let written = api.produce(topic, Some(p), record, opts).await;
                    (p, written.is_ok_and(|r| r.offsets.iter().all(|o| o.error.is_none())))
                }
            })
            .buffer_unordered(PROBES_IN_FLIGHT)
            .collect()
            .await;
        probes += answers.len() as u64;
        if first.is_none() && answers.iter().any(|(_, ok)| *ok) {
            first = Some(t0.elapsed());
        }
        pending = answers.into_iter().filter(|(_, ok)| !ok).map(|(p, _)| p).collect();
        if pending.is_empty() {
            break;
        }
        if t0.elapsed() > deadline {
            bail!("{} of {partitions} partitions still not writable after {deadline:?}", pending.len());
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    let writable = t0.elapsed();
    Ok(ScaleReport {
        mode: "partitions",
        topic: topic.to_owned(),
        partitions,
        create_ms,
        writable_ms: ms(writable),
        first_writable_ms: ms(first.unwrap_or(writable)),
        probes,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
