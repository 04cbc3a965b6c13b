//! `fjord bench idle`: many consumers waiting on a quiet topic — `--concurrency`
//! Server-Sent Events streams (`--consumer sse`, the default) or long polls
//! (`--consumer poll`) spread over `--partitions`. Reports how long they took to open,
//! with `--server-pid` the server's memory per connection and its CPU while they sit
//! idle for `--duration`, then the wake-up: one record is produced to every partition
//! and the time from each produce's send to each waiting consumer's receipt of it.
//!
//! A consumer counts as waiting when the server holds it: an SSE stream once its head
//! arrived and the gateway's `fjord_gateway_streams_open` counts it, a long poll once
//! `fjord_gateway_requests_in_flight` counts all of them (both read from `/metrics`).
//! A record produced before a consumer's read is parked still reaches it at once (its
//! read starts at the old end of the log), so the wake-up figures hold either way.

use super::driver::histogram;
use super::report::Latency;
use anyhow::{bail, Context};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How consumers wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Consumer {
    /// `Accept: text/event-stream` streams.
    Sse,
    /// Long polls (`timeout_ms` = the gateway's default maximum, 60 s), asked again when
    /// one ends empty.
    Poll,
}

impl Consumer {
    fn name(self) -> &'static str {
        match self {
            Consumer::Sse => "sse",
            Consumer::Poll => "poll",
        }
    }
}

/// How many consumers connect at once while opening.
const OPEN_IN_FLIGHT: usize = 256;
/// How long opening all of them and their wake-up may take.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);
const WAKE_DEADLINE: Duration = Duration::from_secs(60);
/// A long poll's wait (the gateway's default `max_timeout_ms`).
const POLL_WAIT_MS: u64 = 60_000;
/// The kernel's clock ticks per second of `/proc/PID/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub mode: &'static str,
    pub consumer: &'static str,
    pub topic: String,
    pub partitions: u32,
    pub connections: usize,
    /// From the first connect until every consumer was waiting.
    pub open_s: f64,
    /// With `--server-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerCost>,
    /// Consumers that got the record within the deadline.
    pub woken: usize,
    /// Produce send → receipt, per consumer.
    pub wake_latency_ms: Latency,
}

/// What the waiting consumers cost the server.
#[derive(Debug, Serialize)]
pub struct ServerCost {
    pub pid: u32,
    pub rss_before_bytes: u64,
    pub rss_open_bytes: u64,
    /// (open − before) ÷ connections.
    pub rss_per_connection_bytes: f64,
    /// CPU (user + system) over the idle window, as a share of one core.
    pub idle_cpu_share: f64,
    pub idle_window_s: f64,
}

impl IdleReport {
    pub fn table(&self) -> String {
        let l = &self.wake_latency_ms;
        let mut out = format!(
            "{} idle {} consumers on `{}` ({} partitions): all waiting after {:.2} s\n",
            self.connections, self.consumer, self.topic, self.partitions, self.open_s
        );
        if let Some(s) = &self.server {
            out.push_str(&format!(
                "server (pid {}): RSS {:.1} MB → {:.1} MB = {:.1} KB per connection; CPU while idle {:.2}% of a core over {:.0} s\n",
                s.pid,
                s.rss_before_bytes as f64 / 1e6,
                s.rss_open_bytes as f64 / 1e6,
                s.rss_per_connection_bytes / 1e3,
                s.idle_cpu_share * 100.0,
                s.idle_window_s
            ));
        }
        out.push_str(&format!(
            "wake-up of {} of {}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
            self.woken, self.connections, l.p50, l.p90, l.p99, l.max
        ));
        out
    }
}

/// The run's settings.
pub struct IdleRun {
    pub base: String,
    pub topic: String,
    pub partitions: u32,
    pub connections: usize,
    pub consumer: Consumer,
    pub idle: Duration,
    pub server_pid: Option<u32>,
}

/// `VmRSS` of `/proc/{pid}/status`, bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("--server-pid {pid}: reading {path}"))?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kb * 1024)
}

/// User + system CPU seconds of `/proc/{pid}/stat`.
fn cpu_s(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("--server-pid {pid}: reading {path}"))?;
    cpu_of_stat(&text).with_context(|| format!("{path} is not in the expected format"))
}

fn cpu_of_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The value of an unlabelled gauge in the gateway's `/metrics`.
async fn gauge(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("{base}/metrics")).send().await?.error_for_status()?.text().await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .with_context(|| format!("the gateway's /metrics has no `{name}`"))
}

/// Lets the soft limit on open files rise to the hard one: each consumer is a socket.
fn raise_fd_limit(connections: usize) -> anyhow::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        limit.current = Some(max);
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let have = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if have < connections as u64 + 64 {
        bail!("{connections} connections need more open files than this process may have ({have}); raise `ulimit -n`");
    }
    Ok(())
}

/// One waiting consumer of `partition` from `offset`: reports when it opened, then the
/// instant its first record arrived.
async fn consume_one(
    http: reqwest::Client,
    url: String,
    offset: u64,
    consumer: Consumer,
    opened: mpsc::UnboundedSender<()>,
) -> anyhow::Result<Instant> {
    match consumer {
        Consumer::Sse => {
            let mut resp = http
                .get(&url)
                .query(&[("offset", offset.to_string())])
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .timeout(Duration::from_secs(3600))
                .send()
                .await?
                .error_for_status()?;
            let _ = opened.send(());
            let mut seen = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                seen.extend_from_slice(&chunk);
                if seen.windows(13).any(|w| w == b"event: record") {
                    return Ok(Instant::now());
                }
                // Keep only a tail long enough to find the marker across chunks.
                if seen.len() > 64 {
                    seen.drain(..seen.len() - 16);
                }
            }
            bail!("the stream ended before a record")
        }
        Consumer::Poll => {
            let mut first = true;
            loop {
                let req = http
                    .get(&url)
                    .query(&[("offset", offset.to_string()), ("timeout_ms", POLL_WAIT_MS.to_string())])
                    .query(&[("max_records", "1")])
                    .timeout(Duration::from_millis(POLL_WAIT_MS + 30_000));
                if first {
                    let _ = opened.send(());
                    first = false;
                }
                let body = req.send().await?.error_for_status()?.bytes().await?;
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                if v["records"].as_array().is_some_and(|r| !r.is_empty()) {
                    return Ok(Instant::now());
                }
            }
        }
    }
}

pub async fn run(http: reqwest::Client, r: IdleRun) -> anyhow::Result<IdleReport> {
    if r.connections == 0 {
        bail!("--concurrency must be at least 1");
    }
    raise_fd_limit(r.connections)?;
    let api = fjord_client::Client::with_http(http.clone(), &r.base);
    let mut ends = Vec::new();
    for p in 0..r.partitions {
        ends.push(api.offsets(&r.topic, p, None).await.with_context(|| format!("offsets of partition {p}"))?);
    }
    let rss_before = r.server_pid.map(rss).transpose()?;

    // Open them, OPEN_IN_FLIGHT connects at a time.
    let started = Instant::now();
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Semaphore::new(OPEN_IN_FLIGHT));
    let mut consumers = Vec::with_capacity(r.connections);
    for i in 0..r.connections {
        let p = (i % r.partitions as usize) as u32;
        let url = format!("{}/v1/topics/{}/partitions/{p}/records", r.base, r.topic);
        let (tx, done) = mpsc::unbounded_channel();
        let permit = gate.clone().acquire_owned().await?;
        let task = tokio::spawn(consume_one(http.clone(), url, ends[p as usize].high_watermark, r.consumer, tx));
        let opened = opened_tx.clone();
        consumers.push((
            p,
            tokio::spawn(async move {
                // Hold the connect slot until this one reported it is open.
                let mut done = done;
                let got = done.recv().await;
                drop(permit);
                if got.is_some() {
                    let _ = opened.send(());
                }
                task.await
            }),
        ));
    }
    drop(opened_tx);
    let deadline = started + OPEN_DEADLINE;
    for n in 0..r.connections {
        match tokio::time::timeout_at(deadline.into(), opened_rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => bail!("only {n} of {} consumers opened (the others failed)", r.connections),
            Err(_) => bail!("only {n} of {} consumers opened within {OPEN_DEADLINE:?}", r.connections),
        }
    }
    // And until the gateway holds every one of them.
    let (metric, want) = match r.consumer {
        Consumer::Sse => ("fjord_gateway_streams_open", r.connections as f64),
        Consumer::Poll => ("fjord_gateway_requests_in_flight", r.connections as f64 + 1.0),
    };
    loop {
        let held = gauge(&http, &r.base, metric).await?;
        if held >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!("the gateway holds {held} of {} consumers after {OPEN_DEADLINE:?} ({metric})", r.connections);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_s = started.elapsed().as_secs_f64();

    // The idle window: a measurement interval, nothing is waited for.
    let server = match r.server_pid {
        Some(pid) => {
            let rss_open = rss(pid)?;
            let (cpu0, t0) = (cpu_s(pid)?, Instant::now());
            tokio::time::sleep(r.idle).await;
            let (cpu1, window) = (cpu_s(pid)?, t0.elapsed().as_secs_f64());
            let before = rss_before.unwrap_or(0);
            Some(ServerCost {
                pid,
                rss_before_bytes: before,
                rss_open_bytes: rss_open,
                rss_per_connection_bytes: rss_open.saturating_sub(before) as f64 / r.connections as f64,
                idle_cpu_share: (cpu1 - cpu0) / window,
                idle_window_s: window,
            })
        }
        None => None,
    };

    // Wake-up: one record per partition, timed from each produce's send.
    let mut sent = vec![Instant::now(); r.partitions as usize];
    let mut produces = Vec::new();
    for p in 0..r.partitions {
        let api = api.clone();
        let topic = r.topic.clone();
        sent[p as usize] = Instant::now();
        produces.push(tokio::spawn(async move {
            let rec = fjord_client::Record { value: Some(serde_json::json!("wake")), ..Default::default() };
            api.produce(&topic, Some(p), &[rec], &fjord_client::ProduceOptions::default()).await
        }));
    }
    for (p, h) in produces.into_iter().enumerate() {
        h.await?.with_context(|| format!("producing the wake-up record to partition {p}"))?;
    }
    let mut latency = histogram()?;
    let mut woken = 0;
    let wake_deadline = Instant::now() + WAKE_DEADLINE;
    for (p, h) in consumers {
        match tokio::time::timeout_at(wake_deadline.into(), h).await {
            Ok(Ok(Ok(Ok(at)))) => {
                woken += 1;
                let us = at.saturating_duration_since(sent[p as usize]).as_micros() as u64;
                latency.saturating_record(us.max(1));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(IdleReport {
        mode: "idle",
        consumer: r.consumer.name(),
        topic: r.topic,
        partitions: r.partitions,
        connections: r.connections,
        open_s,
        server,
        woken,
        wake_latency_ms: Latency::of(&latency),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces() {
        let stat = "4242 (fjord (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 123 4096 1000";
        assert_eq!(cpu_of_stat(stat), Some(3.0));
        assert_eq!(cpu_of_stat("garbage"), None);
        assert!(cpu_s(std::process::id()).is_ok_and(|s| s >= 0.0));
        assert!(rss(std::process::id()).is_ok_and(|b| b > 0));
    }
}
