//! `fjord bench`: a load generator that drives a running Fjord over its public HTTP API
//! and reports throughput and latency — and, with `--baselines`, the same load against
//! the storage engine alone and against a no-op HTTP server, so every figure reads as a
//! fraction of what this machine can do at all.
//!
//! # Modes
//! - `produce`: POST batches of records (`--records-per-request`) to the partitions in
//!   turn (`/v1/topics/{t}/partitions/{p}/records`).
//! - `consume`: fills the topic up to `--prefill-bytes` if it holds less, then each
//!   consumer reads one partition from its start to its end, over and over
//!   (`format=base64`, or the binary layout with `--format binary`; `max_records` =
//!   records per request).
//! - `e2e`: producers and one long-polling consumer per partition at once; each value's
//!   first 8 bytes carry its request's intended send time, and the consumer reports
//!   *consume time − that time* per record.
//! - `requests`: single-record POSTs over many connections (defaults: 100-byte records,
//!   16 connections).
//! - `partitions`, `pipeline`, `idle`: see [`scale`], [`pipeline`] and [`idle`].
//!
//! # Method
//! One shared keep-alive [`reqwest::Client`]; `--concurrency` tasks, each with one
//! request in flight. Closed loop by default; `--rate` switches to an open loop whose
//! latency is measured from the intended send time (see [`driver`]). Requests intended
//! during `--warmup` are not counted. Latency percentiles come from HDR histograms (µs,
//! 3 significant digits) of successful requests; failures are counted by HTTP status.
//! MB/s is 10^6 bytes of record payload (values) per second.
//!
//! # Layout
//! - [`units`] — `10s`, `1KiB`-style flag values.
//! - [`workload`] — values, bodies in each format, storage batches, time stamps.
//! - [`driver`] — the worker loop, the schedule, and the counters.
//! - [`target`] — HTTP requests to Fjord: topic set-up, produce, consume, e2e consumers.
//! - [`baseline`] — the storage-engine and no-op-HTTP baselines.
//! - [`disk`] — the server's disk writes per payload byte (`--server-pid`).
//! - [`report`] — the result, as a table or JSON.

pub mod baseline;
pub mod disk;
pub mod driver;
pub mod idle;
pub mod pipeline;
pub mod report;
pub mod scale;
pub mod target;
pub mod units;
pub mod workload;

use anyhow::{bail, Context};
use bytes::Bytes;
use driver::{drive, Plan, Stats};
use report::{Baselines, EndToEnd, Latency, Report, Throughput};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use target::{ConsumeOp, ProduceOp};
use workload::{Body, BodyFormat, Payload, WallClock};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Batched produce requests.
    Produce,
    /// Reads of a pre-filled topic.
    Consume,
    /// Producers and long-polling consumers at once; end-to-end latency.
    E2e,
    /// Single-record produce requests over many connections.
    Requests,
    /// Creates --topic with --partitions (unless it exists: after a restart) and
    /// measures the time until every partition takes a write (--duration is the
    /// deadline, default 10 minutes).
    Partitions,
    /// Stream processing: a filter→map and a windowed-count pipeline over --records
    /// orders, as ratios to plain consume + produce of the same records.
    Pipeline,
    /// --concurrency idle consumers (SSE streams or long polls, --consumer) on a quiet
    /// topic: time to open, server RSS and CPU while idle (--server-pid, over
    /// --duration), and the wake-up latency of one record per partition.
    Idle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::E2e => "e2e",
            Mode::Requests => "requests",
            Mode::Partitions => "partitions",
            Mode::Pipeline => "pipeline",
            Mode::Idle => "idle",
        }
    }
}

/// Flags of `fjord bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: Mode,
    /// Base URL of the Fjord to drive.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A file holding the bearer token to send (a gateway with authentication on).
    #[arg(long, env = "FJORD_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// PEM CA certificate(s) to trust for an https:// URL.
    #[arg(long, env = "FJORD_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Topic to use; created with --partitions if missing.
    #[arg(long, default_value = "fjord-bench")]
    pub topic: String,
    /// Partitions to spread the load over (and to create the topic with).
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Replication factor if the topic is created (default: the server's).
    #[arg(long)]
    pub replication_factor: Option<u32>,
    /// Bytes per record value [default: 1KiB; 100 for `requests`].
    #[arg(long, value_parser = units::parse_bytes)]
    pub record_size: Option<u64>,
    /// Records per produce request (and `max_records` per fetch) [default: 1000; 1 for
    /// `requests` and `--format octet`].
    #[arg(long)]
    pub records_per_request: Option<u32>,
    /// Connections, i.e. tasks with one request in flight each [default: 4; 16 for `requests`].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Produce acknowledgement: 0, 1 or all.
    #[arg(long, default_value = "1", value_parser = ["0", "1", "all"])]
    pub acks: String,
    /// Produce body format; for `consume`, `binary` also reads in the binary layout
    /// (`Accept: application/vnd.fjord.records`) instead of JSON with base64 values.
    #[arg(long, value_enum, default_value_t = BodyFormat::Json)]
    pub format: BodyFormat,
    /// Record values: incompressible random bytes, or JSON order documents (to measure
    /// what compression buys).
    #[arg(long, value_enum, default_value_t = Payload::Random)]
    pub payload: Payload,
    /// Target requests per second over all connections, sent on a schedule (open loop);
    /// 0 = as fast as possible (closed loop).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// How long to measure, after the warm-up (e.g. 10s) [default: 10s unless
    /// --total-bytes is given].
    #[arg(long, value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this much record payload (e.g. 1GB) in the measured window.
    #[arg(long, value_parser = units::parse_bytes)]
    pub total_bytes: Option<u64>,
    /// Run this long before measuring (excluded from the results).
    #[arg(long, value_parser = units::parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// `consume`: make sure the topic holds at least this much payload first.
    #[arg(long, value_parser = units::parse_bytes, default_value = "64MiB")]
    pub prefill_bytes: u64,
    /// Also measure the storage-engine and no-op-HTTP baselines, one after the other.
    #[arg(long)]
    pub baselines: bool,
    /// With `produce` and `requests`: the pid of the server process (standalone or
    /// storage node, on this machine) whose disk writes to report per payload byte, from
    /// `/proc/PID/io` (`write_bytes`), counted from the start of the run until they settle.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// With `idle`: how the consumers wait.
    #[arg(long, value_enum, default_value_t = idle::Consumer::Sse)]
    pub consumer: idle::Consumer,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Send every produce request with its own `Idempotency-Key` (exactly-once produce),
    /// to measure what the dedupe index costs.
    #[arg(long)]
    pub idempotent: bool,
    /// `pipeline`: input records.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
}

/// Largest request body the bench builds (the gateway's default limit).
const MAX_BODY_BYTES: u64 = 64 << 20;

/// Flags checked and defaulted.
struct Run {
    mode: Mode,
    base: String,
    topic: String,
    partitions: u32,
    replication_factor: Option<u32>,
    record_size: usize,
    rpr: u32,
    concurrency: usize,
    acks: String,
    format: BodyFormat,
    payload: Payload,
    rate: f64,
    duration: Option<Duration>,
    total_bytes: Option<u64>,
    warmup: Duration,
    prefill_bytes: u64,
    idempotent: bool,
}

impl Run {
    fn from_args(a: &Args) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&a.url).with_context(|| format!("--url `{}` is not a URL", a.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("--url must be http:// or https://, got `{}`", a.url);
        }
        let base = a.url.trim_end_matches('/').to_owned();
        if a.topic.is_empty() || a.topic.contains(['/', '?', '#', '%', ' ']) {
            bail!("--topic `{}` is not a valid topic name", a.topic);
        }
        if a.partitions == 0 || a.partitions > 10_000 {
            bail!("--partitions must be between 1 and 10000, got {}", a.partitions);
        }
        let single = a.mode == Mode::Requests || a.format == BodyFormat::Octet;
        let rpr = a.records_per_request.unwrap_or(if single { 1 } else { 1000 });
        if rpr == 0 {
            bail!("--records-per-request must be at least 1");
        }
        if a.mode == Mode::Requests && rpr != 1 {
            bail!("`requests` sends single-record requests; drop --records-per-request or use `produce`");
        }
        if a.format == BodyFormat::Octet && rpr != 1 {
            bail!("--format octet carries one record per request; use --records-per-request 1");
        }
        let record_size = a.record_size.unwrap_or(if a.mode == Mode::Requests { 100 } else { 1024 });
        if record_size == 0 {
            bail!("--record-size must be at least 1 byte");
        }
        if a.payload == Payload::Json && (record_size as usize) < Payload::MIN_JSON_SIZE {
            bail!("--payload json needs --record-size of at least {} bytes", Payload::MIN_JSON_SIZE);
        }
        if a.mode == Mode::E2e && record_size < 8 {
            bail!("e2e writes the send time into each value's first 8 bytes: --record-size must be at least 8");
        }
        let body = u64::from(rpr) * (record_size * 4 / 3 + 24);
        if body > MAX_BODY_BYTES {
            bail!(
                "--record-size {record_size} × --records-per-request {rpr} makes a {body}-byte body, over the \
                 {MAX_BODY_BYTES}-byte request limit"
            );
        }
        let concurrency = a.concurrency.unwrap_or(if a.mode == Mode::Requests { 16 } else { 4 });
        if concurrency == 0 || concurrency > 10_000 {
            bail!("--concurrency must be between 1 and 10000, got {concurrency}");
        }
        if !a.rate.is_finite() || a.rate < 0.0 {
            bail!("--rate must be a number of requests per second, 0 for closed loop; got {}", a.rate);
        }
        if a.duration.is_some_and(|d| d.is_zero()) {
            bail!("--duration must be more than 0");
        }
        if a.total_bytes == Some(0) {
            bail!("--total-bytes must be more than 0");
        }
        let duration = match (a.duration, a.total_bytes) {
            (None, None) => Some(Duration::from_secs(10)),
            (d, _) => d,
        };
        Ok(Self {
            mode: a.mode,
            base,
            topic: a.topic.clone(),
            partitions: a.partitions,
            replication_factor: a.replication_factor,
            record_size: record_size as usize,
            rpr,
            concurrency,
            acks: a.acks.clone(),
            format: a.format,
            payload: a.payload,
            rate: a.rate,
            duration,
            total_bytes: a.total_bytes,
            warmup: a.warmup,
            prefill_bytes: a.prefill_bytes,
            idempotent: a.idempotent,
        })
    }

    fn plan(&self) -> Plan {
        Plan::new(self.warmup, self.duration, self.total_bytes, self.rate)
    }

    /// Baselines measure limits: closed loop, same window.
    fn baseline_plan(&self) -> Plan {
        Plan::new(self.warmup, self.duration, self.total_bytes, 0.0)
    }

    fn request_bytes(&self) -> u64 {
        u64::from(self.rpr) * self.record_size as u64
    }

    /// Parsed once: parsing a URL string per request cost the load generator ~5% of
    /// its CPU in `requests` mode.
    fn produce_urls(&self, base: &str) -> anyhow::Result<Arc<Vec<reqwest::Url>>> {
        let urls = (0..self.partitions)
            .map(|p| {
                let url = format!("{base}/v1/topics/{}/partitions/{p}/records?acks={}", self.topic, self.acks);
                reqwest::Url::parse(&url).with_context(|| format!("`{url}` is not a URL"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Arc::new(urls))
    }

    fn consume_url(&self, base: &str, partition: u32) -> String {
        format!("{base}/v1/topics/{}/partitions/{partition}/records", self.topic)
    }

    /// `max_bytes` of a fetch: about one request's worth of records.
    fn fetch_max_bytes(&self) -> u64 {
        self.request_bytes().clamp(1, MAX_BODY_BYTES)
    }

    /// The values each worker sends (different per worker).
    fn values(&self, worker: usize) -> Vec<Vec<u8>> {
        match self.payload {
            Payload::Random => workload::values(self.record_size, self.rpr as usize, worker as u64 + 1),
            Payload::Json => workload::json_values(self.record_size, self.rpr as usize, worker as u64 + 1),
        }
    }

    fn produce_ops(
        &self,
        client: &reqwest::Client,
        base: &str,
        stamp: Option<WallClock>,
    ) -> anyhow::Result<Vec<ProduceOp>> {
        let urls = self.produce_urls(base)?;
        Ok((0..self.concurrency)
            .map(|i| ProduceOp {
                client: client.clone(),
                urls: urls.clone(),
                next: i,
                body: Arc::new(Body::new(self.format, &self.values(i))),
                stamp,
                records: u64::from(self.rpr),
                bytes: self.request_bytes(),
                idempotency: self.idempotent.then(|| target::KeySeq::new(i)),
            })
            .collect())
    }

    fn settings(&self) -> report::Settings {
        report::Settings {
            mode: self.mode.name(),
            url: self.base.clone(),
            topic: self.topic.clone(),
            partitions: self.partitions,
            record_size: self.record_size,
            records_per_request: self.rpr,
            concurrency: self.concurrency,
            acks: self.acks.clone(),
            format: self.format.name(),
            payload: self.payload.name(),
            rate: self.rate,
            idempotent: self.idempotent,
            duration_s: self.duration.map(|d| d.as_secs_f64()),
            total_bytes: self.total_bytes,
            warmup_s: self.warmup.as_secs_f64(),
        }
    }
}

/// Runs `fjord bench` and prints the report.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let run = Run::from_args(&args).context("bad flags")?;
    if run.mode == Mode::Partitions {
        let deadline = args.duration.unwrap_or(Duration::from_secs(600));
        let http = target::client(scale::PROBES_IN_FLIGHT, args.token_file.as_deref(), args.ca_file.as_deref())?;
        let report =
            scale::partitions(http, &run.base, &run.topic, run.partitions, run.replication_factor, deadline).await?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.table());
        }
        return Ok(());
    }
    if run.mode == Mode::Pipeline {
        if args.records == 0 {
            bail!("--records must be at least 1");
        }
        let deadline = args.duration.unwrap_or(Duration::from_secs(600));
        let http =
            target::client(run.partitions as usize * 2 + 8, args.token_file.as_deref(), args.ca_file.as_deref())?;
        let api = fjord_client::Client::with_http(http, &run.base);
        let report =
            pipeline::run(api, &run.topic, run.partitions, run.replication_factor, args.records, deadline).await?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.table());
        }
        return Ok(());
    }
    if args.server_pid.is_some() && !matches!(run.mode, Mode::Produce | Mode::Requests | Mode::Idle) {
        bail!("--server-pid reports on `produce`, `requests` and `idle` runs only");
    }
    if run.mode == Mode::Idle {
        let connections = args.concurrency.unwrap_or(1000);
        let http = target::client(8, args.token_file.as_deref(), args.ca_file.as_deref())?;
        target::ensure_topic(&http, &run.base, &run.topic, run.partitions, run.replication_factor).await?;
        let report = idle::run(
            http,
            idle::IdleRun {
                base: run.base.clone(),
                topic: run.topic.clone(),
                partitions: run.partitions,
                connections,
                consumer: args.consumer,
                idle: args.duration.unwrap_or(Duration::from_secs(10)),
                server_pid: args.server_pid,
            },
        )
        .await?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.table());
        }
        return Ok(());
    }
    let client = target::client(
        run.concurrency + run.partitions as usize + 4,
        args.token_file.as_deref(),
        args.ca_file.as_deref(),
    )?;
    target::ensure_topic(&client, &run.base, &run.topic, run.partitions, run.replication_factor).await?;
    let report = match run.mode {
        Mode::Produce | Mode::Requests => produce(&run, &client, args.baselines, args.server_pid).await?,
        Mode::Consume => consume(&run, &client, args.baselines).await?,
        Mode::E2e => e2e(&run, &client, args.baselines).await?,
        Mode::Partitions | Mode::Pipeline | Mode::Idle => bail!("`{}` is measured above", run.mode.name()),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn fraction(run: &Throughput, baseline: &Throughput) -> f64 {
    if baseline.records_per_s > 0.0 {
        run.records_per_s / baseline.records_per_s
    } else {
        0.0
    }
}

/// The append and no-op POST baselines for the produce-like modes.
async fn produce_baselines(run: &Run, client: &reqwest::Client, result: &Throughput) -> anyhow::Result<Baselines> {
    let batches = (0..run.concurrency).map(|i| workload::batch(&run.values(i))).collect::<anyhow::Result<Vec<_>>>()?;
    let store = baseline::Store::open(run.partitions).await?;
    let ops = batches
        .into_iter()
        .enumerate()
        .map(|(i, batch)| baseline::AppendOp {
            logs: store.logs.clone(),
            next: i,
            batch,
            records: u64::from(run.rpr),
            bytes: run.request_bytes(),
        })
        .collect();
    let plan = run.baseline_plan();
    let storage = Throughput::of(&drive(plan, ops).await?, &plan);
    drop(store);

    let noop = baseline::NoopServer::start(Bytes::new()).await?;
    let ops = run.produce_ops(client, &noop.base(), None)?;
    let plan = run.baseline_plan();
    let http = Throughput::of(&drive(plan, ops).await?, &plan);
    Ok(Baselines {
        storage_kind: "append",
        fraction_of_storage: fraction(result, &storage),
        fraction_of_http: fraction(result, &http),
        storage,
        http,
    })
}

async fn produce(
    run: &Run,
    client: &reqwest::Client,
    baselines: bool,
    server_pid: Option<u32>,
) -> anyhow::Result<Report> {
    let before = server_pid.map(disk::write_bytes).transpose()?;
    let plan = run.plan();
    let stats = drive(plan, run.produce_ops(client, &run.base, None)?).await?;
    let disk = match (server_pid, before) {
        (Some(pid), Some(before)) => Some(disk::settled(pid, before, stats.bytes + stats.warmup_bytes).await?),
        _ => None,
    };
    let result = Throughput::of(&stats, &plan);
    let baselines = if baselines { Some(produce_baselines(run, client, &result).await?) } else { None };
    Ok(Report { settings: run.settings(), result, e2e: None, baselines, disk })
}

async fn consume(run: &Run, client: &reqwest::Client, baselines: bool) -> anyhow::Result<Report> {
    // Fill the topic up to --prefill-bytes (not measured).
    let mut present = 0u64;
    for p in 0..run.partitions {
        let (start, hw) = target::offsets(client, &run.base, &run.topic, p).await?;
        present += hw.saturating_sub(start);
    }
    let want = run.prefill_bytes / run.record_size as u64;
    if present < want {
        let missing = (want - present) * run.record_size as u64;
        let plan = Plan { stop_on_error: true, ..Plan::new(Duration::ZERO, None, Some(missing), 0.0) };
        let filled = drive(plan, run.produce_ops(client, &run.base, None)?).await?;
        if filled.bytes < missing {
            bail!("could not prefill topic `{}`: produce errors {:?}", run.topic, filled.errors);
        }
    }
    let mut ranges = Vec::new();
    for p in 0..run.partitions {
        ranges.push(target::offsets(client, &run.base, &run.topic, p).await?);
    }
    if let Some(p) = ranges.iter().position(|(start, hw)| hw <= start) {
        bail!("partition {p} of `{}` is empty; raise --prefill-bytes", run.topic);
    }

    let captured = Arc::new(Mutex::new(None));
    let ops = (0..run.concurrency)
        .map(|i| {
            let p = (i % run.partitions as usize) as u32;
            let (start, end) = ranges[p as usize];
            ConsumeOp {
                binary: run.format == BodyFormat::Binary,
                client: client.clone(),
                url: run.consume_url(&run.base, p),
                start,
                end,
                next: start,
                max_records: run.rpr,
                max_bytes: run.fetch_max_bytes(),
                capture: (i == 0).then(|| captured.clone()),
            }
        })
        .collect();
    let plan = run.plan();
    let result = Throughput::of(&drive(plan, ops).await?, &plan);

    let baselines = if baselines {
        let batch = workload::batch(&run.values(0))?;
        let read = (run.fetch_max_bytes() as usize, u64::from(run.rpr), run.record_size as u64);
        let (stats, plan) =
            baseline::storage_read(run.partitions, run.concurrency, batch, run.prefill_bytes, read, || {
                run.baseline_plan()
            })
            .await?;
        let storage = Throughput::of(&stats, &plan);

        let body = captured.lock().ok().and_then(|mut c| c.take()).context("no consume answer to replay")?;
        let noop = baseline::NoopServer::start(body).await?;
        let ops = (0..run.concurrency)
            .map(|i| ConsumeOp {
                binary: run.format == BodyFormat::Binary,
                client: client.clone(),
                url: run.consume_url(&noop.base(), (i % run.partitions as usize) as u32),
                start: 0,
                end: u64::MAX,
                next: 0,
                max_records: run.rpr,
                max_bytes: run.fetch_max_bytes(),
                capture: None,
            })
            .collect();
        let plan = run.baseline_plan();
        let http = Throughput::of(&drive(plan, ops).await?, &plan);
        Some(Baselines {
            storage_kind: "read",
            fraction_of_storage: fraction(&result, &storage),
            fraction_of_http: fraction(&result, &http),
            storage,
            http,
        })
    } else {
        None
    };
    Ok(Report { settings: run.settings(), result, e2e: None, baselines, disk: None })
}

async fn e2e(run: &Run, client: &reqwest::Client, baselines: bool) -> anyhow::Result<Report> {
    let clock = WallClock::new();
    let plan = run.plan();
    let measure_from_us = clock.micros(plan.measure_from);
    let give_up: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut stops = Vec::new();
    let mut consumers = Vec::new();
    for p in 0..run.partitions {
        let (_, hw) = target::offsets(client, &run.base, &run.topic, p).await?;
        let stop = Arc::new(AtomicU64::new(u64::MAX));
        stops.push(stop.clone());
        consumers.push(tokio::spawn(target::e2e_consumer(
            client.clone(),
            run.consume_url(&run.base, p),
            hw,
            clock,
            measure_from_us,
            stop,
            give_up.clone(),
            run.fetch_max_bytes().max(1 << 20),
        )));
    }

    let produced = drive(plan, run.produce_ops(client, &run.base, Some(clock))?).await;
    // Let the consumers catch up with what was produced, then stop them.
    for (p, stop) in stops.iter().enumerate() {
        let hw = match target::offsets(client, &run.base, &run.topic, p as u32).await {
            Ok((_, hw)) => hw,
            Err(_) => 0,
        };
        stop.store(hw, std::sync::atomic::Ordering::Release);
    }
    if let Ok(mut g) = give_up.lock() {
        *g = Some(Instant::now() + Duration::from_secs(10));
    }
    let mut latency = driver::histogram()?;
    let (mut records, mut bytes) = (0, 0);
    let mut errors = std::collections::BTreeMap::new();
    for c in consumers {
        let st = c.await??;
        latency.add(&st.latency)?;
        records += st.records;
        bytes += st.bytes;
        for (k, v) in st.errors {
            *errors.entry(k).or_insert(0) += v;
        }
    }
    let produced: Stats = produced?;
    let result = Throughput::of(&produced, &plan);
    let e2e = EndToEnd { records, bytes, latency_ms: Latency::of(&latency), errors };
    let baselines = if baselines { Some(produce_baselines(run, client, &result).await?) } else { None };
    Ok(Report { settings: run.settings(), result, e2e: Some(e2e), baselines, disk: None })
}
