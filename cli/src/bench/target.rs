//! Talking to a Fjord (or the no-op baseline server) over HTTP: topic set-up, the
//! produce and consume requests, and e2e's long-polling consumers.

use super::driver::{histogram, Op, Outcome};
use super::workload::{decoded_len, stamp_of_base64, Body, WallClock};
use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One keep-alive pool shared by every task; with `token_file`, every request carries
/// its token as `Authorization: Bearer`.
pub fn client(
    connections: usize,
    token_file: Option<&std::path::Path>,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(path) = token_file {
        let token = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {}", token.trim()))
            .context("the token file does not hold a token")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut builder = Client::builder();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).context("the CA file")? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .default_headers(headers)
        .pool_max_idle_per_host(connections)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")
}

fn error_key(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

/// Makes sure `topic` exists with at least `partitions` partitions.
/// Creates the bench topic with `partitions` unless it exists with at least that many.
pub async fn ensure_topic(
    client: &Client,
    base: &str,
    topic: &str,
    partitions: u32,
    replication_factor: Option<u32>,
) -> anyhow::Result<()> {
    let api = fjord_client::Client::with_http(client.clone(), base);
    let spec = fjord_client::NewTopic { replication_factor, ..fjord_client::NewTopic::new(topic, partitions) };
    let t = api.ensure_topic(&spec).await.with_context(|| format!("creating topic `{topic}` at {base}"))?;
    let have = t.partitions.len();
    if have < partitions as usize {
        bail!(
            "topic `{topic}` exists with {have} partition(s), fewer than --partitions {partitions}; \
             pick another --topic or --partitions {have}"
        );
    }
    Ok(())
}

/// A partition's `(log start, high watermark)`.
pub async fn offsets(client: &Client, base: &str, topic: &str, partition: u32) -> anyhow::Result<(u64, u64)> {
    let api = fjord_client::Client::with_http(client.clone(), base);
    let o = api.offsets(topic, partition, None).await.with_context(|| format!("offsets of {topic}/{partition}"))?;
    Ok((o.log_start_offset, o.high_watermark))
}

pub struct ProduceOp {
    pub client: Client,
    /// One URL per partition, query included.
    pub urls: Arc<Vec<reqwest::Url>>,
    pub next: usize,
    pub body: Arc<Body>,
    pub stamp: Option<WallClock>,
    pub records: u64,
    pub bytes: u64,
    /// `--idempotent`: each request's own `Idempotency-Key`.
    pub idempotency: Option<KeySeq>,
}

/// Idempotency keys unique per run, worker and request.
pub struct KeySeq {
    prefix: String,
    next: u64,
}

impl KeySeq {
    pub fn new(worker: usize) -> Self {
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self { prefix: format!("bench-{run:x}-{worker}-"), next: 0 }
    }

    fn next(&mut self) -> String {
        self.next += 1;
        format!("{}{}", self.prefix, self.next)
    }
}

impl Op for ProduceOp {
    async fn call(&mut self, intended: Instant) -> Outcome {
        let url = self.urls[self.next % self.urls.len()].clone();
        self.next = self.next.wrapping_add(1);
        let body = match &self.stamp {
            Some(clock) => self.body.stamped(clock.micros(intended)),
            None => self.body.bytes.clone(),
        };
        let mut req = self.client.post(url).header(CONTENT_TYPE, self.body.content_type);
        if let Some(keys) = &mut self.idempotency {
            req = req.header("idempotency-key", keys.next());
        }
        let sent = req.body(body).send().await;
        let r = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::err(error_key(&e)),
        };
        let status = r.status();
        // Read the answer to the end so the connection goes back to the pool.
        if let Err(e) = r.bytes().await {
            return Outcome::err(error_key(&e));
        }
        if status == StatusCode::OK {
            Outcome::ok(self.records, self.bytes)
        } else {
            Outcome::err(status.as_u16().to_string())
        }
    }
}

#[derive(Deserialize)]
struct FetchBody<'a> {
    #[serde(borrow)]
    records: Vec<FetchRecord<'a>>,
    next_offset: u64,
}

#[derive(Deserialize)]
struct FetchRecord<'a> {
    #[serde(borrow, default)]
    value_base64: Option<Cow<'a, str>>,
}

/// Reads one partition from `start` to `end`, again and again: with `format=base64`,
/// or in the binary layout (`Accept: application/vnd.fjord.records`) when `binary`.
pub struct ConsumeOp {
    pub binary: bool,
    pub client: Client,
    /// The partition's records URL, without query.
    pub url: String,
    pub start: u64,
    pub end: u64,
    pub next: u64,
    pub max_records: u32,
    pub max_bytes: u64,
    /// The first answer is left here (the HTTP baseline serves it back).
    pub capture: Option<Arc<Mutex<Option<Bytes>>>>,
}

impl Op for ConsumeOp {
    async fn call(&mut self, _intended: Instant) -> Outcome {
        let query = [
            ("offset", self.next.to_string()),
            ("max_records", self.max_records.to_string()),
            ("max_bytes", self.max_bytes.to_string()),
            ("format", "base64".to_owned()),
        ];
        let mut req = self.client.get(&self.url).query(&query);
        if self.binary {
            req = req.header(reqwest::header::ACCEPT, fjord_client::BINARY_RECORDS);
        }
        let r = match req.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::err(error_key(&e)),
        };
        let status = r.status();
        let body = match r.bytes().await {
            Ok(b) => b,
            Err(e) => return Outcome::err(error_key(&e)),
        };
        if status != StatusCode::OK {
            return Outcome::err(status.as_u16().to_string());
        }
        let (records, bytes, next) = if self.binary {
            // The next offset is the last record's + 1 (not the header), so that the
            // no-op baseline can replay the body alone.
            let Ok(parsed) = fjord_client::binary::read_consumed(&body) else { return Outcome::err("bad_body") };
            let bytes = parsed.iter().filter_map(|r| r.value.as_ref()).map(|v| v.len() as u64).sum();
            (parsed.len() as u64, bytes, parsed.last().map_or(self.next, |r| r.offset + 1))
        } else {
            let parsed: FetchBody<'_> = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(_) => return Outcome::err("bad_body"),
            };
            let bytes = parsed.records.iter().filter_map(|r| r.value_base64.as_deref()).map(decoded_len).sum();
            (parsed.records.len() as u64, bytes, parsed.next_offset)
        };
        self.next = next;
        if self.next >= self.end || records == 0 {
            self.next = self.start;
        }
        if let Some(slot) = self.capture.take() {
            if let Ok(mut s) = slot.lock() {
                *s = Some(body);
            }
        }
        Outcome::ok(records, bytes)
    }
}

/// What e2e's consumers saw.
pub struct E2eStats {
    /// Record stamp → consume time, µs, for records sent in the measured window.
    pub latency: Histogram<u64>,
    pub records: u64,
    pub bytes: u64,
    pub errors: BTreeMap<String, u64>,
}

/// Long-polls `partition` from `from` until it reaches `stop_at` (set once the
/// producers are done; `u64::MAX` until then) or `give_up` passes.
#[allow(clippy::too_many_arguments)]
pub async fn e2e_consumer(
    client: Client,
    url: String,
    from: u64,
    clock: WallClock,
    measure_from_us: u64,
    stop_at: Arc<AtomicU64>,
    give_up: Arc<Mutex<Option<Instant>>>,
    max_bytes: u64,
) -> anyhow::Result<E2eStats> {
    let mut st = E2eStats { latency: histogram()?, records: 0, bytes: 0, errors: BTreeMap::new() };
    let mut next = from;
    loop {
        if next >= stop_at.load(Ordering::Acquire) {
            break;
        }
        if give_up.lock().ok().and_then(|g| *g).is_some_and(|g| Instant::now() >= g) {
            break;
        }
        let query = [
            ("offset", next.to_string()),
            ("max_records", "100000".to_owned()),
            ("max_bytes", max_bytes.to_string()),
            ("format", "base64".to_owned()),
            ("timeout_ms", "500".to_owned()),
        ];
        let r = match client.get(&url).query(&query).send().await {
            Ok(r) => r,
            Err(e) => {
                *st.errors.entry(error_key(&e)).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let status = r.status();
        let body = match r.bytes().await {
            Ok(b) => b,
            Err(e) => {
                *st.errors.entry(error_key(&e)).or_default() += 1;
                continue;
            }
        };
        let now_us = clock.now_micros();
        if status != StatusCode::OK {
            *st.errors.entry(status.as_u16().to_string()).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let parsed: FetchBody<'_> = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(_) => {
                *st.errors.entry("bad_body".into()).or_default() += 1;
                continue;
            }
        };
        for rec in &parsed.records {
            let Some(v) = rec.value_base64.as_deref() else { continue };
            let Some(sent_us) = stamp_of_base64(v) else { continue };
            if sent_us < measure_from_us {
                continue;
            }
            st.latency.saturating_record(now_us.saturating_sub(sent_us).max(1));
            st.records += 1;
            st.bytes += decoded_len(v);
        }
        next = parsed.next_offset.max(next);
    }
    Ok(st)
}
