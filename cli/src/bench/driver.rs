//! The load loop shared by every mode and baseline: `workers` tasks, each with its own
//! [`Op`], issuing one request at a time either as fast as possible (closed loop) or on a
//! fixed schedule (open loop, `--rate`).
//!
//! In open loop each worker sends at `start + k · workers / rate` (workers staggered), and
//! latency is measured from that *intended* send time, not from when the request actually
//! went out: a stalled server delays every later request, and that delay shows up in the
//! percentiles instead of being hidden (coordinated omission).
//!
//! Requests whose intended send time falls in the warm-up are not counted.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest latency the histograms track (larger values are clamped).
const MAX_LATENCY_US: u64 = 3_600_000_000;

pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?)
}

/// When to run and when to stop.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub start: Instant,
    /// End of the warm-up: requests intended from here on are measured.
    pub measure_from: Instant,
    /// No request is sent at or after this.
    pub end: Instant,
    /// Stop once this many payload bytes were acknowledged in the measured window.
    pub total_bytes: Option<u64>,
    /// Target requests per second over all workers; 0 = closed loop.
    pub rate: f64,
    /// A worker stops at its first failed request (for set-up work such as prefilling).
    pub stop_on_error: bool,
}

impl Plan {
    /// A plan starting now. Without a duration, the run ends at `total_bytes` (with an
    /// hour as a safety net).
    pub fn new(warmup: Duration, duration: Option<Duration>, total_bytes: Option<u64>, rate: f64) -> Self {
        let start = Instant::now();
        let measure_from = start + warmup;
        let end = measure_from + duration.unwrap_or(Duration::from_secs(3600));
        Self { start, measure_from, end, total_bytes, rate, stop_on_error: false }
    }
}

/// What one request achieved.
pub struct Outcome {
    pub records: u64,
    /// Record payload bytes.
    pub bytes: u64,
    /// `Err(key)`: the error class counted in the report (an HTTP status or `transport`…).
    pub result: Result<(), String>,
}

impl Outcome {
    pub fn ok(records: u64, bytes: u64) -> Self {
        Self { records, bytes, result: Ok(()) }
    }

    pub fn err(key: impl Into<String>) -> Self {
        Self { records: 0, bytes: 0, result: Err(key.into()) }
    }
}

/// One worker's request.
pub trait Op: Send + 'static {
    /// Sends one request; `intended` is when it was scheduled.
    fn call(&mut self, intended: Instant) -> impl Future<Output = Outcome> + Send;
}

/// Counters and latencies of the measured window.
pub struct Stats {
    /// Latency of successful requests, µs.
    pub latency: Histogram<u64>,
    pub requests: u64,
    pub records: u64,
    pub bytes: u64,
    /// Payload bytes of successful requests sent during the warm-up (not in `bytes`).
    pub warmup_bytes: u64,
    pub errors: BTreeMap<String, u64>,
    /// When the last measured request completed.
    pub last_done: Option<Instant>,
}

impl Stats {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency: histogram()?,
            requests: 0,
            records: 0,
            bytes: 0,
            warmup_bytes: 0,
            errors: BTreeMap::new(),
            last_done: None,
        })
    }

    pub fn merge(&mut self, other: Stats) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        self.requests += other.requests;
        self.records += other.records;
        self.bytes += other.bytes;
        self.warmup_bytes += other.warmup_bytes;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.last_done = self.last_done.max(other.last_done);
        Ok(())
    }

    /// Seconds from the end of warm-up to the last completion (the planned window if
    /// nothing completed).
    pub fn elapsed(&self, plan: &Plan) -> f64 {
        let end = self.last_done.unwrap_or(plan.end);
        end.saturating_duration_since(plan.measure_from).as_secs_f64().max(1e-9)
    }
}

/// Runs one worker per op under `plan` and merges their stats.
pub async fn drive<O: Op>(plan: Plan, ops: Vec<O>) -> anyhow::Result<Stats> {
    let workers = ops.len().max(1);
    let acked = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> =
        ops.into_iter().enumerate().map(|(i, op)| tokio::spawn(worker(i, workers, plan, op, acked.clone()))).collect();
    let mut total = Stats::new()?;
    for h in handles {
        total.merge(h.await??)?;
    }
    Ok(total)
}

async fn worker<O: Op>(
    i: usize,
    workers: usize,
    plan: Plan,
    mut op: O,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<Stats> {
    let mut stats = Stats::new()?;
    let interval = (plan.rate > 0.0).then(|| Duration::from_secs_f64(workers as f64 / plan.rate));
    let mut next = plan.start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(i as f64 / workers as f64));
    loop {
        let intended = match interval {
            Some(iv) => {
                let t = next;
                next += iv;
                t
            }
            None => Instant::now(),
        };
        if intended >= plan.end {
            break;
        }
        if plan.total_bytes.is_some_and(|total| acked.load(Ordering::Relaxed) >= total) {
            break;
        }
        // Only sleep when the send time is ahead: tokio's timer rounds a deadline up to
        // its next 1 ms tick, so sleeping "until now" cost every closed-loop request up
        // to a millisecond (it capped the 16-connection `requests` runs near 10k/s with
        // the CPU half idle).
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let out = op.call(intended).await;
        let done = Instant::now();
        if intended < plan.measure_from {
            if out.result.is_ok() {
                stats.warmup_bytes += out.bytes;
            }
            continue;
        }
        match out.result {
            Ok(()) => {
                let us = done.saturating_duration_since(intended).as_micros() as u64;
                stats.latency.saturating_record(us.clamp(1, MAX_LATENCY_US));
                stats.requests += 1;
                stats.records += out.records;
                stats.bytes += out.bytes;
                acked.fetch_add(out.bytes, Ordering::Relaxed);
            }
            Err(key) => {
                *stats.errors.entry(key).or_default() += 1;
                if plan.stop_on_error {
                    break;
                }
            }
        }
        stats.last_done = Some(done);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy;

    impl Op for Sleepy {
        async fn call(&mut self, _intended: Instant) -> Outcome {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Outcome::ok(2, 20)
        }
    }

    #[tokio::test]
    async fn open_loop_keeps_to_the_rate() {
        let plan = Plan::new(Duration::ZERO, Some(Duration::from_millis(500)), None, 200.0);
        let stats = drive(plan, vec![Sleepy, Sleepy]).await.expect("drive");
        // 200 requests/s for 0.5 s.
        assert!((90..=110).contains(&stats.requests), "{} requests", stats.requests);
        assert_eq!(stats.records, stats.requests * 2);
    }

    #[tokio::test]
    async fn total_bytes_stops_the_run() {
        let plan = Plan::new(Duration::ZERO, None, Some(200), 0.0);
        let stats = drive(plan, vec![Sleepy]).await.expect("drive");
        assert_eq!(stats.bytes, 200);
    }
}
