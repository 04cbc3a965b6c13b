//! `fjord consume TOPIC`: records as JSON lines, or through a kcat-style template
//! (`--format '%t %p %o %k %v\n'`), from partitions directly or as a consumer-group
//! member.
//!
//! Without `--follow` it stops at the end: each partition's high watermark when the
//! read began (a member: once a poll finds nothing more). With `--follow` it keeps
//! long-polling until Ctrl-C or `--count`. As a group member it commits exactly what it
//! printed, then leaves the group.

use super::output::write_stdout;
use super::{time, Conn, Exit, Failure, Outcome};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use fjord_client::{Client, Commit, CommitOffset, ConsumedRecord, Format, Join, ReadOptions, Start};
use std::collections::BTreeMap;
use tokio::sync::mpsc;

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Only these partitions (repeatable; default: all). Not with --group.
    #[arg(short, long)]
    pub partition: Vec<u32>,
    /// Where to start: `earliest`, `latest`, an offset, or a time (`@<ms>`, RFC 3339,
    /// `-10m`). A member starts at its group's committed offsets; `earliest` or `latest`
    /// say where when there are none.
    #[arg(long, default_value = "earliest", allow_hyphen_values = true)]
    pub from: String,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(short, long)]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Consume as a member of this consumer group (commits what it printed).
    #[arg(short, long)]
    pub group: Option<String>,
    /// kcat-style output: %t topic, %p partition, %o offset, %T timestamp, %k key, %v
    /// value (raw bytes), %K/%S key/value length (-1: none), %h headers (name=value,…),
    /// %% a percent sign; \n, \t, \\ escapes. Default: one JSON object per line.
    #[arg(short = 'F', long = "format", value_name = "TEMPLATE")]
    pub format: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// How records are printed.
enum Printer {
    Json,
    Template(Vec<Piece>),
}

enum Piece {
    Text(Vec<u8>),
    Field(char),
}

impl Printer {
    fn new(format: Option<&str>) -> Result<Self, Failure> {
        let Some(t) = format else { return Ok(Self::Json) };
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut chars = t.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => match chars.next() {
                    Some('%') => text.push(b'%'),
                    Some(f @ ('t' | 'p' | 'o' | 'T' | 'k' | 'v' | 'K' | 'S' | 'h')) => {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                        pieces.push(Piece::Field(f));
                    }
                    other => return Err(Failure::usage(format!("--format: unknown field %{}", other.unwrap_or(' ')))),
                },
                '\\' => match chars.next() {
                    Some('n') => text.push(b'\n'),
                    Some('t') => text.push(b'\t'),
                    Some('\\') => text.push(b'\\'),
                    other => {
                        return Err(Failure::usage(format!("--format: unknown escape \\{}", other.unwrap_or(' '))))
                    }
                },
                c => text.extend_from_slice(c.to_string().as_bytes()),
            }
        }
        pieces.push(Piece::Text(text));
        Ok(Self::Template(pieces))
    }

    /// The read format the printer needs: raw bytes (base64 on the wire) for templates.
    fn wire(&self) -> Format {
        match self {
            Self::Json => Format::Json,
            Self::Template(_) => Format::Base64,
        }
    }

    fn render(&self, r: &ConsumedRecord, out: &mut Vec<u8>) {
        let pieces = match self {
            Self::Json => {
                out.extend(serde_json::to_vec(r).unwrap_or_default());
                out.push(b'\n');
                return;
            }
            Self::Template(p) => p,
        };
        let decode = |b: &Option<String>| b.as_deref().and_then(|s| B64.decode(s).ok());
        let (key, value) = (decode(&r.key_base64), decode(&r.value_base64));
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Field('t') => out.extend_from_slice(r.topic.as_bytes()),
                Piece::Field('p') => out.extend_from_slice(r.partition.to_string().as_bytes()),
                Piece::Field('o') => out.extend_from_slice(r.offset.to_string().as_bytes()),
                Piece::Field('T') => out.extend_from_slice(r.timestamp.to_string().as_bytes()),
                Piece::Field('k') => out.extend_from_slice(key.as_deref().unwrap_or_default()),
                Piece::Field('v') => out.extend_from_slice(value.as_deref().unwrap_or_default()),
                Piece::Field('K') => {
                    out.extend_from_slice(key.as_ref().map_or(-1, |k| k.len() as i64).to_string().as_bytes())
                }
                Piece::Field('S') => {
                    out.extend_from_slice(value.as_ref().map_or(-1, |v| v.len() as i64).to_string().as_bytes())
                }
                Piece::Field(_) => {
                    let headers: Vec<String> = r
                        .headers
                        .iter()
                        .map(|h| {
                            let v = decode(&h.value_base64).unwrap_or_default();
                            format!("{}={}", h.name, String::from_utf8_lossy(&v))
                        })
                        .collect();
                    out.extend_from_slice(headers.join(",").as_bytes());
                }
            }
        }
    }
}

/// Where partition reads start.
fn start(from: &str) -> Result<Start, Failure> {
    Ok(match from {
        "earliest" => Start::Earliest,
        "latest" => Start::Latest,
        s if s.bytes().all(|b| b.is_ascii_digit()) => {
            Start::Offset(s.parse().map_err(|_| Failure::usage(format!("--from: `{s}` is not an offset")))?)
        }
        s => Start::Timestamp(
            time::parse(s, fjord_protocol::now_ms()).map_err(|e| Failure::usage(format!("--from: {e}")))?,
        ),
    })
}

/// Prints records and counts them against `--count`.
struct Sink {
    printer: Printer,
    left: Option<u64>,
}

impl Sink {
    /// Prints what `--count` still allows; returns how many were printed and whether
    /// the count is reached.
    fn print(&mut self, records: &[ConsumedRecord]) -> Result<(usize, bool), Failure> {
        let take = self.left.map_or(records.len(), |n| records.len().min(n as usize));
        let mut out = Vec::new();
        for r in &records[..take] {
            self.printer.render(r, &mut out);
        }
        write_stdout(&out)?;
        if let Some(n) = &mut self.left {
            *n -= take as u64;
        }
        Ok((take, self.left == Some(0)))
    }
}

pub async fn run(args: ConsumeArgs) -> Outcome {
    let api = args.conn.client()?;
    let printer = Printer::new(args.format.as_deref())?;
    let read = ReadOptions { format: printer.wire(), ..ReadOptions::default() };
    let mut sink = Sink { printer, left: args.count };
    if sink.left == Some(0) {
        return Ok(Exit::Ok);
    }
    match &args.group {
        Some(group) => {
            if !args.partition.is_empty() {
                return Err(Failure::usage("--partition and --group do not go together: the group assigns partitions"));
            }
            as_member(&api, &args, group, read, &mut sink).await
        }
        None => {
            let partitions = if args.partition.is_empty() {
                (0..api.describe_topic(&args.topic).await?.partitions.len() as u32).collect()
            } else {
                args.partition.clone()
            };
            let from = start(&args.from)?;
            if args.follow {
                follow(&api, &args.topic, partitions, from, read, &mut sink).await
            } else {
                to_end(&api, &args.topic, &partitions, from, read, &mut sink).await
            }
        }
    }
}

/// Each partition from `from` to its high watermark at the first read.
async fn to_end(
    api: &Client,
    topic: &str,
    partitions: &[u32],
    from: Start,
    read: ReadOptions,
    sink: &mut Sink,
) -> Outcome {
    for &p in partitions {
        let mut reply = api.consume(topic, p, from, &read).await?;
        let end = reply.high_watermark;
        loop {
            let records: Vec<ConsumedRecord> = reply.records.into_iter().filter(|r| r.offset < end).collect();
            if sink.print(&records)?.1 {
                return Ok(Exit::Ok);
            }
            if reply.next_offset >= end {
                break;
            }
            reply = api.consume(topic, p, Start::Offset(reply.next_offset), &read).await?;
        }
    }
    Ok(Exit::Ok)
}

/// Every partition long-polled at once, records printed as they come, until Ctrl-C.
async fn follow(
    api: &Client,
    topic: &str,
    partitions: Vec<u32>,
    from: Start,
    read: ReadOptions,
    sink: &mut Sink,
) -> Outcome {
    let (tx, mut rx) = mpsc::channel::<Result<Vec<ConsumedRecord>, Failure>>(64);
    let mut tasks = Vec::new();
    for p in partitions {
        let (api, topic, tx) = (api.clone(), topic.to_owned(), tx.clone());
        let read = ReadOptions { timeout_ms: Some(5_000), ..read.clone() };
        tasks.push(tokio::spawn(async move {
            let mut at = from;
            loop {
                let sent = match api.consume(&topic, p, at, &read).await {
                    Ok(reply) => {
                        at = Start::Offset(reply.next_offset);
                        tx.send(Ok(reply.records)).await
                    }
                    Err(e) => tx.send(Err(Failure::from(e))).await,
                };
                if sent.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let outcome = loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(Ok(records)) => if sink.print(&records)?.1 { break Ok(Exit::Ok) },
                Some(Err(e)) => break Err(e),
                None => break Ok(Exit::Ok),
            },
            _ = tokio::signal::ctrl_c() => break Ok(Exit::Ok),
        }
    };
    for t in tasks {
        t.abort();
    }
    outcome
}

/// As a member of `group`: poll, print, commit what was printed; leave at the end.
async fn as_member(api: &Client, args: &ConsumeArgs, group: &str, read: ReadOptions, sink: &mut Sink) -> Outcome {
    let reset = match args.from.as_str() {
        r @ ("earliest" | "latest") => r.to_owned(),
        other => {
            return Err(Failure::usage(format!(
                "--from `{other}`: a member starts at its group's committed offsets; use earliest or latest for where \
                 to start without one, or `fjord group seek` first"
            )))
        }
    };
    let join = Join {
        topics: vec![args.topic.clone()],
        auto_offset_reset: Some(reset),
        auto_commit: Some(false),
        client_id: Some("fjord-cli".into()),
        ..Join::default()
    };
    let m = api.join(group, &join).await?;
    let poll_opts = ReadOptions { timeout_ms: Some(if args.follow { 5_000 } else { 1_000 }), ..read };
    let outcome = member_loop(api, group, &m.member_id, &poll_opts, args.follow, sink).await;
    let left = api.leave(group, &m.member_id).await;
    match (outcome, left) {
        (Ok(exit), Ok(())) => Ok(exit),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

async fn member_loop(
    api: &Client,
    group: &str,
    member_id: &str,
    opts: &ReadOptions,
    follow: bool,
    sink: &mut Sink,
) -> Outcome {
    loop {
        let poll = tokio::select! {
            p = api.poll(group, member_id, opts) => p?,
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Ok),
        };
        let (printed, done) = sink.print(&poll.records)?;
        let mut next: BTreeMap<(String, u32), u64> = BTreeMap::new();
        for r in &poll.records[..printed] {
            next.insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        if !next.is_empty() {
            let offsets = next
                .into_iter()
                .map(|((topic, partition), offset)| CommitOffset { topic, partition, offset, metadata: None })
                .collect();
            let commit = Commit { member_id: Some(member_id.to_owned()), generation: Some(poll.generation), offsets };
            api.commit(group, &commit).await?;
        }
        let caught_up = poll.records.is_empty() && poll.pending.is_empty() && !poll.assignment.is_empty();
        if done || (!follow && caught_up) {
            return Ok(Exit::Ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ConsumedRecord {
        ConsumedRecord {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            timestamp: 99,
            key: None,
            key_base64: Some(B64.encode("k")),
            value: None,
            value_base64: Some(B64.encode([0xff, b'v'])),
            headers: vec![fjord_client::Header { name: "h".into(), value: None, value_base64: Some(B64.encode("x")) }],
        }
    }

    #[test]
    fn templates_render_kcat_fields_with_raw_bytes() {
        let p = Printer::new(Some(r"%t/%p@%o %T %k=%v %K %S [%h] 100%%\n")).expect("template");
        let mut out = Vec::new();
        p.render(&record(), &mut out);
        let mut want = b"t/2@7 99 k=".to_vec();
        want.extend([0xff, b'v']);
        want.extend(b" 1 2 [h=x] 100%\n");
        assert_eq!(out, want);
        assert!(Printer::new(Some("%z")).is_err());
        assert!(Printer::new(Some("\\q")).is_err());
    }

    #[test]
    fn starts() {
        assert_eq!(start("earliest").expect("ok"), Start::Earliest);
        assert_eq!(start("42").expect("ok"), Start::Offset(42));
        assert_eq!(start("@5").expect("ok"), Start::Timestamp(5));
        assert_eq!(start("soon").expect_err("bad").exit, Exit::Usage);
    }
}
