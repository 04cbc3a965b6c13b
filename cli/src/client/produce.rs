//! `fjord produce TOPIC [FILE…]`: one record per line from stdin or files, batched with
//! a linger, sent as the binary record body (no JSON, no base64 on the wire).
//!
//! A batch is retried while the gateway answers that nothing was written and the
//! request may be sent again (no leader yet, not enough in-sync replicas); an answer
//! that says the write may have happened (a timeout, a leader change after the append)
//! is not retried, so nothing is written twice, and the command fails with exit 5.

use super::output::write_stdout;
use super::{Conn, Exit, Failure, Outcome};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use fjord_client::{Acks, ProduceOptions, ProduceReply};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How each line becomes a record value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Input {
    /// The line's bytes as they are.
    Raw,
    /// A JSON value, stored as its text (consumers see it inline as JSON).
    Json,
    /// Standard base64 of the value's bytes.
    Base64,
}

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Files to read records from, one per line (`-` or none: stdin).
    pub files: Vec<PathBuf>,
    /// Every record to this partition (default: by key, else round robin per batch).
    #[arg(short, long)]
    pub partition: Option<u32>,
    /// Split each line at the first SEP into key and value (the key is taken as it is).
    #[arg(short = 'K', long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// How a line (after the key) becomes the value.
    #[arg(long, value_enum, default_value_t = Input::Raw)]
    pub input: Input,
    /// `0`, `1` or `all`.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Most records per request.
    #[arg(long, default_value_t = 500)]
    pub batch_records: usize,
    /// How long the first record of a batch waits for more before the batch is sent.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// How long one request may take, retries included (ms).
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Show a progress bar on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// Most bytes of records in one request.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Codes that guarantee nothing was written, so a batch may be sent again.
const SAFE_TO_RETRY: [&str; 4] = ["not_enough_replicas", "leader_not_available", "not_leader", "shutting_down"];

/// One input line and how many bytes of input it took.
struct Line {
    bytes: Vec<u8>,
    consumed: u64,
}

fn acks(s: &str) -> Result<Acks, Failure> {
    match s {
        "0" => Ok(Acks::None),
        "1" => Ok(Acks::Leader),
        "all" | "-1" => Ok(Acks::All),
        other => Err(Failure::usage(format!("--acks must be 0, 1 or all, got `{other}`"))),
    }
}

/// Reads every input, line by line, on a blocking thread.
fn spawn_reader(files: Vec<PathBuf>, tx: mpsc::Sender<std::io::Result<Line>>) {
    std::thread::spawn(move || {
        let stdin = files.is_empty() || files.iter().all(|f| f.as_os_str() == "-");
        let sources: Vec<Option<PathBuf>> =
            if stdin { vec![None] } else { files.into_iter().map(|f| (f.as_os_str() != "-").then_some(f)).collect() };
        for source in sources {
            let reader: Box<dyn BufRead> = match &source {
                None => Box::new(std::io::stdin().lock()),
                Some(path) => match std::fs::File::open(path) {
                    Ok(f) => Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
                    Err(e) => {
                        let _ =
                            tx.blocking_send(Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))));
                        return;
                    }
                },
            };
            for line in reader.split(b'\n') {
                let sent = match line {
                    Ok(mut bytes) => {
                        let consumed = bytes.len() as u64 + 1;
                        if bytes.last() == Some(&b'\r') {
                            bytes.pop();
                        }
                        tx.blocking_send(Ok(Line { bytes, consumed }))
                    }
                    Err(e) => tx.blocking_send(Err(e)),
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    });
}

/// A line as a record: `(key, value)` per the key separator and the input format.
fn record(line: &[u8], sep: Option<&[u8]>, input: Input, n: u64) -> Result<(Option<Vec<u8>>, Vec<u8>), Failure> {
    let (key, value) = match sep {
        Some(sep) => match line.windows(sep.len()).position(|w| w == sep) {
            Some(at) => (Some(line[..at].to_vec()), &line[at + sep.len()..]),
            None => return Err(Failure::usage(format!("line {n}: no key separator"))),
        },
        None => (None, line),
    };
    let value = match input {
        Input::Raw => value.to_vec(),
        Input::Json => {
            serde_json::from_slice::<serde::de::IgnoredAny>(value)
                .map_err(|e| Failure::usage(format!("line {n}: not JSON: {e}")))?;
            value.to_vec()
        }
        Input::Base64 => B64.decode(value).map_err(|e| Failure::usage(format!("line {n}: not base64: {e}")))?,
    };
    Ok((key, value))
}

/// What was produced, for the summary.
#[derive(Default)]
struct Tally {
    records: u64,
    failed: u64,
    per_partition: BTreeMap<u32, u64>,
}

pub async fn run(args: ProduceArgs) -> Outcome {
    let api = args.conn.client()?;
    let opts = ProduceOptions { acks: acks(&args.acks)?, timeout_ms: Some(args.timeout_ms), ..Default::default() };
    if args.batch_records == 0 {
        return Err(Failure::usage("--batch-records must be at least 1"));
    }
    let total_bytes: u64 = args.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let show_progress = !args.files.is_empty() && (args.progress || std::io::stderr().is_terminal());
    let (tx, mut rx) = mpsc::channel(16_384);
    spawn_reader(args.files.clone(), tx);

    let started = Instant::now();
    let mut progress = Progress::new(show_progress, total_bytes);
    let mut tally = Tally::default();
    let mut line_no = 0u64;
    let mut done = false;
    while !done {
        let mut body = Vec::new();
        let mut count = 0usize;
        let mut consumed = 0u64;
        let mut linger: Option<tokio::time::Instant> = None;
        while count < args.batch_records && body.len() < MAX_BATCH_BYTES {
            let next = match linger {
                None => rx.recv().await,
                Some(deadline) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let Some(line) = next else {
                done = true;
                break;
            };
            let line = line?;
            line_no += 1;
            consumed += line.consumed;
            let (key, value) =
                record(&line.bytes, args.key_separator.as_deref().map(str::as_bytes), args.input, line_no)?;
            fjord_client::binary::write_record(&mut body, key.as_deref(), Some(&value), &[])
                .map_err(|e| Failure::usage(format!("line {line_no}: {e}")))?;
            count += 1;
            linger.get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_millis(args.linger_ms));
        }
        if count == 0 {
            continue;
        }
        let reply = send(&api, &args, Bytes::from(body), &opts).await?;
        record_reply(&reply, &mut tally, args.conn.json)?;
        progress.advance(consumed, tally.records);
    }
    progress.finish();
    summary(&args.topic, &tally, started.elapsed(), args.conn.json);
    Ok(if tally.failed > 0 && tally.records > tally.failed {
        Exit::Partial
    } else if tally.failed > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// Sends one batch, retrying while the answer guarantees nothing was written.
async fn send(
    api: &fjord_client::Client,
    args: &ProduceArgs,
    body: Bytes,
    opts: &ProduceOptions,
) -> Result<ProduceReply, Failure> {
    let extra: Vec<(&str, String)> = args.partition.map(|p| ("partition", p.to_string())).into_iter().collect();
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms);
    let mut backoff = Duration::from_millis(50);
    loop {
        let sent = api.produce_body(&args.topic, None, fjord_client::BINARY_RECORDS, body.clone(), opts, &extra).await;
        match sent {
            Err(e) if e.code().is_some_and(|c| SAFE_TO_RETRY.contains(&c)) && Instant::now() + backoff < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            other => return other.map_err(Failure::from),
        }
    }
}

fn record_reply(reply: &ProduceReply, tally: &mut Tally, json: bool) -> Result<(), Failure> {
    let mut lines = Vec::new();
    for o in &reply.offsets {
        tally.records += 1;
        match &o.error {
            Some(e) => {
                tally.failed += 1;
                eprintln!("fjord: partition {}: {}: {}", o.partition, e.code, e.message);
            }
            None => *tally.per_partition.entry(o.partition).or_default() += 1,
        }
        if json {
            lines.extend(serde_json::to_vec(o).unwrap_or_default());
            lines.push(b'\n');
        }
    }
    write_stdout(&lines)
}

fn summary(topic: &str, tally: &Tally, took: Duration, json: bool) {
    if json {
        return;
    }
    let parts: Vec<String> = tally.per_partition.iter().map(|(p, n)| format!("{p}:{n}")).collect();
    let failed = if tally.failed > 0 { format!(", {} failed", tally.failed) } else { String::new() };
    eprintln!(
        "produced {} record(s) to {topic} in {:.2} s (partition:records {}){failed}",
        tally.records - tally.failed,
        took.as_secs_f64(),
        parts.join(" ")
    );
}

/// A progress bar on stderr: bytes of input read, records sent, rate.
struct Progress {
    on: bool,
    total: u64,
    read: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(on: bool, total: u64) -> Self {
        Self { on, total, read: 0, started: Instant::now(), last: Instant::now() - Duration::from_secs(1) }
    }

    fn advance(&mut self, bytes: u64, records: u64) {
        self.read += bytes;
        if !self.on || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let frac = if self.total == 0 { 1.0 } else { (self.read as f64 / self.total as f64).min(1.0) };
        let filled = (frac * 30.0) as usize;
        let rate = records as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        eprint!(
            "\r[{}{}] {:>3.0}% {:.1}/{:.1} MB {records} records {rate:.0}/s ",
            "#".repeat(filled),
            ".".repeat(30 - filled),
            frac * 100.0,
            self.read as f64 / 1e6,
            self.total as f64 / 1e6
        );
    }

    fn finish(&mut self) {
        if self.on {
            self.last = Instant::now() - Duration::from_secs(1);
            self.read = self.read.max(self.total);
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_records() {
        assert_eq!(record(b"v", None, Input::Raw, 1).expect("raw"), (None, b"v".to_vec()));
        assert_eq!(record(b"k:v:w", Some(b":"), Input::Raw, 1).expect("keyed"), (Some(b"k".to_vec()), b"v:w".to_vec()));
        assert_eq!(record(b"k\t{\"a\":1}", Some(b"\t"), Input::Json, 1).expect("json").1, b"{\"a\":1}".to_vec());
        assert_eq!(record(b"AAE=", None, Input::Base64, 1).expect("base64").1, vec![0, 1]);
        for (line, sep, input) in
            [(&b"{"[..], None, Input::Json), (b"!!", None, Input::Base64), (b"nokey", Some(&b":"[..]), Input::Raw)]
        {
            assert_eq!(record(line, sep, input, 7).expect_err("bad").exit, Exit::Usage);
        }
        assert!(acks("2").is_err());
    }
}
