//! Results: one serializable [`Report`], printed as a table or as one JSON object.

use super::driver::{Plan, Stats};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// Throughput and latency of one measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub elapsed_s: f64,
    pub requests: u64,
    pub records: u64,
    /// Record payload bytes.
    pub bytes: u64,
    pub requests_per_s: f64,
    pub records_per_s: f64,
    /// 10^6 bytes of record payload per second.
    pub mb_per_s: f64,
    /// Request latency (from the intended send time in open loop).
    pub latency_ms: Latency,
    /// Failed requests by HTTP status (or `transport`, `timeout`, `connect`, …).
    pub errors: BTreeMap<String, u64>,
}

impl Throughput {
    pub fn of(stats: &Stats, plan: &Plan) -> Self {
        let secs = stats.elapsed(plan);
        Self {
            elapsed_s: secs,
            requests: stats.requests,
            records: stats.records,
            bytes: stats.bytes,
            requests_per_s: stats.requests as f64 / secs,
            records_per_s: stats.records as f64 / secs,
            mb_per_s: stats.bytes as f64 / secs / 1e6,
            latency_ms: Latency::of(&stats.latency),
            errors: stats.errors.clone(),
        }
    }
}

/// What e2e's consumers measured.
#[derive(Debug, Clone, Serialize)]
pub struct EndToEnd {
    /// Records consumed that were produced in the measured window.
    pub records: u64,
    pub bytes: u64,
    /// Produce (intended send time) → received by a long-polling consumer.
    pub latency_ms: Latency,
    pub errors: BTreeMap<String, u64>,
}

/// The baselines and the run's throughput as a fraction of each.
#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    /// `append` (produce-like modes) or `read` (consume).
    pub storage_kind: &'static str,
    pub storage: Throughput,
    pub http: Throughput,
    /// Run records/s ÷ storage baseline records/s.
    pub fraction_of_storage: f64,
    /// Run records/s ÷ HTTP baseline records/s.
    pub fraction_of_http: f64,
}

/// The knobs the run used, after defaults.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub mode: &'static str,
    pub url: String,
    pub topic: String,
    pub partitions: u32,
    pub record_size: usize,
    pub records_per_request: u32,
    pub concurrency: usize,
    pub acks: String,
    pub format: &'static str,
    /// `random` or `json` values.
    pub payload: &'static str,
    /// Target requests/s; 0 = closed loop.
    pub rate: f64,
    /// Each produce request carried its own `Idempotency-Key`.
    pub idempotent: bool,
    pub duration_s: Option<f64>,
    pub total_bytes: Option<u64>,
    pub warmup_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Settings,
    #[serde(flatten)]
    pub result: Throughput,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e: Option<EndToEnd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baselines: Option<Baselines>,
    /// With `--server-pid`: what the server wrote to disk for the run's payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskWrites>,
}

/// Bytes the server process wrote to storage (`write_bytes` of `/proc/PID/io`) from the
/// start of a produce run until its writes settled, against the payload bytes the run
/// got acknowledged (warm-up included: its writes are in the count too).
#[derive(Debug, Clone, Serialize)]
pub struct DiskWrites {
    pub pid: u32,
    pub write_bytes: u64,
    pub payload_bytes: u64,
    pub per_payload_byte: f64,
    /// Seconds waited after the run for the writes to settle (flushes and compactions
    /// of what it wrote).
    pub settle_s: f64,
}

fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".into();
    }
    errors.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
}

fn row(out: &mut String, name: &str, t: &Throughput) {
    let l = &t.latency_ms;
    let _ = writeln!(
        out,
        "{name:<10} {:>12.0} {:>10.1} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        t.records_per_s, t.mb_per_s, t.requests_per_s, l.p50, l.p90, l.p99, l.p99_9, l.max
    );
}

impl Report {
    pub fn table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let rate = if s.rate > 0.0 { format!("{} req/s (open loop)", s.rate) } else { "closed loop".into() };
        let _ = writeln!(
            out,
            "fjord bench {} → {} topic `{}`: {} partition(s), {} B {} × {} per request, {} connection(s), acks={}, {}, {}{}",
            s.mode,
            s.url,
            s.topic,
            s.partitions,
            s.record_size,
            s.payload,
            s.records_per_request,
            s.concurrency,
            s.acks,
            s.format,
            rate,
            if s.idempotent { ", idempotent" } else { "" }
        );
        let r = &self.result;
        let _ = writeln!(
            out,
            "measured {:.2} s after {:.1} s warm-up: {} requests, {} records, {:.1} MB",
            r.elapsed_s,
            s.warmup_s,
            r.requests,
            r.records,
            r.bytes as f64 / 1e6
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<10} {:>12} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "", "records/s", "MB/s", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        row(&mut out, "fjord", r);
        if let Some(b) = &self.baselines {
            row(&mut out, if b.storage_kind == "read" { "storage rd" } else { "storage" }, &b.storage);
            row(&mut out, "http no-op", &b.http);
        }
        if let Some(e) = &self.e2e {
            let l = &e.latency_ms;
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "end to end ({} records): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                e.records, l.p50, l.p90, l.p99, l.p99_9, l.max
            );
            if !e.errors.is_empty() {
                let _ = writeln!(out, "consumer errors: {}", errors_text(&e.errors));
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "errors: {}", errors_text(&r.errors));
        if let Some(d) = &self.disk {
            let _ = writeln!(
                out,
                "disk: the server (pid {}) wrote {:.1} MB for {:.1} MB of payload = {:.2} bytes per payload byte \
                 (settled {:.1} s after the run)",
                d.pid,
                d.write_bytes as f64 / 1e6,
                d.payload_bytes as f64 / 1e6,
                d.per_payload_byte,
                d.settle_s
            );
        }
        if let Some(b) = &self.baselines {
            let _ = writeln!(
                out,
                "throughput = {:.1}% of the storage engine alone ({}), {:.1}% of the HTTP stack alone",
                b.fraction_of_storage * 100.0,
                b.storage_kind,
                b.fraction_of_http * 100.0
            );
        }
        out
    }
}
