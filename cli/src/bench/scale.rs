//! `fjord bench partitions`: how long a new topic of `--partitions` partitions takes to
//! become writable — the create call's answer, then one `acks=1` record per partition,
//! retried until every partition has taken one (or `--duration` passes). A Kafka user's
//! 1,000-partition topic should be writable in seconds, not minutes. A topic that exists
//! already (the same one, after a restart of the server) is not created: the time runs
//! from the first probe, and `create_ms` is absent.

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
    /// Time until `POST /v1/topics` answered (`None`: the topic existed).
    pub create_ms: Option<f64>,
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
            "topic {} with {} partitions: {}; first partition writable after {:.0} ms, all after {:.0} ms ({} probes)\n",
            self.topic,
            self.partitions,
            match self.create_ms {
                Some(ms) => format!("create answered in {ms:.0} ms"),
                None => "it existed".to_owned(),
            },
            self.first_writable_ms,
            self.writable_ms,
            self.probes
        )
    }
}

/// Creates `topic` (unless it exists with `partitions` partitions) and measures it
/// becoming writable.
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
    let existing = match api.describe_topic(topic).await {
        Ok(t) if t.partitions.len() == partitions as usize => true,
        Ok(t) => bail!("`{topic}` exists with {} partitions, not {partitions}", t.partitions.len()),
        Err(e) if e.code() == Some("unknown_topic") => false,
        Err(e) => return Err(e).with_context(|| format!("looking up `{topic}`")),
    };
    let t0 = Instant::now();
    let create_ms = if existing {
        None
    } else {
        api.create_topic(&spec).await.with_context(|| format!("creating `{topic}`"))?;
        Some(ms(t0.elapsed()))
    };
    let opts = ProduceOptions { acks: Acks::Leader, timeout_ms: Some(1000), ..Default::default() };
    let record = [Record::value(serde_json::json!("probe"))];
    let mut pending: Vec<u32> = (0..partitions).collect();
    let mut probes = 0u64;
    // When the first probe was answered as written (not when its round ended).
    let first = std::sync::OnceLock::new();
    loop {
        let answers: Vec<(u32, bool)> = stream::iter(pending.iter().copied())
            .map(|p| {
                let (api, opts, record, first) = (&api, &opts, &record, &first);
                async move {
                    let written = api.produce(topic, Some(p), record, opts).await;
                    let ok = written.is_ok_and(|r| r.offsets.iter().all(|o| o.error.is_none()));
                    if ok {
                        first.get_or_init(|| t0.elapsed());
                    }
                    (p, ok)
                }
            })
            .buffer_unordered(PROBES_IN_FLIGHT)
            .collect()
            .await;
        probes += answers.len() as u64;
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
        first_writable_ms: ms(first.get().copied().unwrap_or(writable)),
        probes,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
