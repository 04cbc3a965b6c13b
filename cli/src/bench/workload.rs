//! What the bench sends: record values, produce bodies in each format, and the same
//! records as a storage batch for the engine baseline.
//!
//! Values are pseudo-random bytes (so RocksDB's LZ4 cannot shrink them), or with
//! `--payload json` order documents ([`json_values`]) that compress as real JSON does. In `e2e` mode
//! the first 8 bytes of every value carry the request's intended send time (µs since the
//! Unix epoch, big-endian); the body is built once and those bytes are patched in place
//! per request (for base64 bodies, the first 12 base64 characters of each value, which
//! encode exactly its first 9 bytes).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use fjord_protocol::BatchBuilder;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Produce body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BodyFormat {
    /// `{"records":[{"value_base64":…},…]}`
    Json,
    /// One `{"value_base64":…}` per line.
    Ndjson,
    /// One raw record per request (`application/octet-stream`).
    Octet,
    /// Length-prefixed binary records (`application/vnd.fjord.records`): no JSON, no base64.
    Binary,
}

impl BodyFormat {
    pub fn name(self) -> &'static str {
        match self {
            BodyFormat::Json => "json",
            BodyFormat::Ndjson => "ndjson",
            BodyFormat::Octet => "octet",
            BodyFormat::Binary => "binary",
        }
    }
}

/// What record values look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// Pseudo-random bytes: incompressible.
    Random,
    /// JSON order documents (ids, names, line items, a free-text note), as compressible
    /// as typical event JSON.
    Json,
}

impl Payload {
    pub fn name(self) -> &'static str {
        match self {
            Payload::Random => "random",
            Payload::Json => "json",
        }
    }

    /// The smallest value size the payload can fill exactly.
    pub const MIN_JSON_SIZE: usize = 256;
}

/// `count` JSON order documents of exactly `size` bytes each (at least
/// [`Payload::MIN_JSON_SIZE`]), different per `seed`: fields with ids, names from small
/// vocabularies, one line item and more while three quarters of the size hold them, and
/// a `note` of words filling the rest.
pub fn json_values(size: usize, count: usize, seed: u64) -> Vec<Vec<u8>> {
    const WORDS: [&str; 16] = [
        "please", "deliver", "to", "the", "back", "door", "after", "noon", "gift", "wrap", "fragile", "call", "before",
        "arrival", "leave", "parcel",
    ];
    const STATUS: [&str; 4] = ["created", "paid", "shipped", "delivered"];
    const REGION: [&str; 4] = ["eu-west-1", "eu-north-1", "us-east-1", "ap-south-1"];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|i| {
            let r = next();
            let mut doc = format!(
                "{{\"order_id\":{},\"customer\":\"customer-{:05}\",\"region\":\"{}\",\"status\":\"{}\",\"currency\":\"EUR\",\"items\":[",
                seed * 1_000_000 + i as u64,
                r % 100_000,
                REGION[(r >> 20) as usize % 4],
                STATUS[(r >> 24) as usize % 4],
            );
            // Room kept for `],"note":""}`.
            let tail = "],\"note\":\"\"}".len();
            let mut first = true;
            loop {
                let r = next();
                let item = format!(
                    "{}{{\"sku\":\"SKU-{:06}\",\"qty\":{},\"price\":{}.{:02}}}",
                    if first { "" } else { "," },
                    r % 1_000_000,
                    1 + (r >> 20) % 5,
                    1 + (r >> 24) % 200,
                    (r >> 32) % 100
                );
                // One item always; more while a quarter of the size is left for the note.
                if !first && doc.len() + item.len() + tail + size / 4 > size {
                    break;
                }
                doc.push_str(&item);
                first = false;
            }
            doc.push_str("],\"note\":\"");
            let room = size.saturating_sub(doc.len() + 2);
            let mut note = String::with_capacity(room + 8);
            while note.len() < room {
                if !note.is_empty() {
                    note.push(' ');
                }
                note.push_str(WORDS[(next() >> 40) as usize % WORDS.len()]);
            }
            note.truncate(room);
            doc.push_str(&note);
            doc.push_str("\"}");
            doc.into_bytes()
        })
        .collect()
}

/// `count` values of `size` bytes each, different per `seed`.
pub fn values(size: usize, count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            (0..size)
                .map(|_| {
                    // xorshift64
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect()
        })
        .collect()
}

/// A produce request body, ready to send many times.
pub struct Body {
    pub bytes: Bytes,
    pub content_type: &'static str,
    /// Where each value starts in `bytes` (its raw bytes for octet and binary, its base64
    /// text otherwise).
    value_starts: Vec<usize>,
    /// Byte 8 of each value (the 9th byte shares the 12th base64 character with the
    /// stamp); `None` for an 8-byte value.
    ninth: Vec<Option<u8>>,
    base64: bool,
}

impl Body {
    pub fn new(format: BodyFormat, values: &[Vec<u8>]) -> Self {
        let mut out = Vec::new();
        let mut value_starts = Vec::with_capacity(values.len());
        let (content_type, base64) = match format {
            BodyFormat::Json => {
                out.extend_from_slice(b"{\"records\":[");
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"value_base64\":\"");
                    value_starts.push(out.len());
                    out.extend_from_slice(B64.encode(v).as_bytes());
                    out.extend_from_slice(b"\"}");
                }
                out.extend_from_slice(b"]}");
                ("application/json", true)
            }
            BodyFormat::Ndjson => {
                for v in values {
                    out.extend_from_slice(b"{\"value_base64\":\"");
                    value_starts.push(out.len());
                    out.extend_from_slice(B64.encode(v).as_bytes());
                    out.extend_from_slice(b"\"}\n");
                }
                ("application/x-ndjson", true)
            }
            BodyFormat::Binary => {
                for v in values {
                    // No key (an i32 -1), then the value's i32 length: the value starts 8 bytes in.
                    value_starts.push(out.len() + 8);
                    // Cannot fail: values are far below 2 GiB (the body is capped at MAX_BODY_BYTES).
                    let _ = fjord_client::binary::write_record(&mut out, None, Some(v), &[]);
                }
                (fjord_gateway::body::BINARY_RECORDS, false)
            }
            BodyFormat::Octet => {
                for v in values.iter().take(1) {
                    value_starts.push(out.len());
                    out.extend_from_slice(v);
                }
                ("application/octet-stream", false)
            }
        };
        let ninth = values.iter().map(|v| v.get(8).copied()).collect();
        Self { bytes: Bytes::from(out), content_type, value_starts, ninth, base64 }
    }

    /// The body with `micros` written into the first 8 bytes of every value (values must
    /// be at least 8 bytes).
    pub fn stamped(&self, micros: u64) -> Bytes {
        let mut out = self.bytes.to_vec();
        let ts = micros.to_be_bytes();
        for (start, ninth) in self.value_starts.iter().zip(&self.ninth) {
            if self.base64 {
                let mut raw = [0u8; 9];
                raw[..8].copy_from_slice(&ts);
                // 8 or 9 bytes are 12 base64 characters (8 with one `=`): this cannot fail.
                let raw = match ninth {
                    Some(b) => {
                        raw[8] = *b;
                        &raw[..]
                    }
                    None => &raw[..8],
                };
                if let Some(dst) = out.get_mut(*start..*start + 12) {
                    let _ = B64.encode_slice(raw, dst);
                }
            } else if let Some(dst) = out.get_mut(*start..*start + 8) {
                dst.copy_from_slice(&ts);
            }
        }
        Bytes::from(out)
    }
}

/// The send time stamped into a consumed value given as base64, if it has one.
pub fn stamp_of_base64(value_base64: &str) -> Option<u64> {
    let prefix = value_base64.as_bytes().get(..12)?;
    let mut raw = [0u8; 9];
    B64.decode_slice(prefix, &mut raw).ok()?;
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&raw[..8]);
    Some(u64::from_be_bytes(ts))
}

/// Payload bytes of a base64 value (what it decodes to).
pub fn decoded_len(value_base64: &str) -> u64 {
    let b = value_base64.as_bytes();
    let pad = b.iter().rev().take(2).filter(|c| **c == b'=').count();
    ((b.len() / 4) * 3).saturating_sub(pad) as u64
}

/// The same records as one storage batch (what the gateway hands the storage node).
pub fn batch(values: &[Vec<u8>]) -> anyhow::Result<Bytes> {
    let size: usize = values.iter().map(|v| v.len() + fjord_protocol::codec::RECORD_OVERHEAD).sum();
    let mut b = BatchBuilder::with_capacity(size);
    let now = fjord_protocol::now_ms();
    for v in values {
        b.push_parts(now, None, Some(v), std::iter::empty::<(&str, &[u8])>())?;
    }
    Ok(b.finish()?)
}

/// Maps monotonic instants to wall-clock microseconds (for stamps other processes read).
#[derive(Clone, Copy)]
pub struct WallClock {
    base: Instant,
    base_us: u64,
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl WallClock {
    pub fn new() -> Self {
        let base = Instant::now();
        let base_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        Self { base, base_us }
    }

    pub fn micros(&self, at: Instant) -> u64 {
        let since = at.checked_duration_since(self.base).unwrap_or(Duration::ZERO);
        self.base_us + since.as_micros() as u64
    }

    pub fn now_micros(&self) -> u64 {
        self.micros(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_are_valid_documents_of_exactly_the_size_asked_and_differ() {
        for size in [Payload::MIN_JSON_SIZE, 1000, 1024, 4096, 65_536] {
            let docs = json_values(size, 20, 3);
            for d in &docs {
                assert_eq!(d.len(), size);
                let v: serde_json::Value = serde_json::from_slice(d).expect("valid JSON");
                assert!(v["items"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
            }
            assert_ne!(docs[0], docs[1]);
            assert_ne!(json_values(size, 1, 4)[0], docs[0], "seeds differ");
        }
    }

    #[test]
    fn stamps_round_trip_in_every_format() {
        let vals = values(20, 3, 7);
        for format in [BodyFormat::Json, BodyFormat::Ndjson] {
            let body = Body::new(format, &vals);
            let stamped = body.stamped(1_234_567_890_123);
            let text = String::from_utf8(stamped.to_vec()).expect("utf-8");
            let mut found = 0;
            for line in text.split("\"value_base64\":\"").skip(1) {
                let b64 = line.split('"').next().expect("closing quote");
                assert_eq!(stamp_of_base64(b64), Some(1_234_567_890_123));
                let raw = B64.decode(b64).expect("base64");
                assert_eq!(raw.len(), 20);
                assert_eq!(raw[8..], vals[found][8..], "only the first 8 bytes change");
                assert_eq!(decoded_len(b64), 20);
                found += 1;
            }
            assert_eq!(found, 3);
        }
        let eight = values(8, 2, 3);
        let body = Body::new(BodyFormat::Json, &eight);
        let text = String::from_utf8(body.stamped(99).to_vec()).expect("utf-8");
        for b64 in text.split("\"value_base64\":\"").skip(1).map(|s| s.split('"').next().expect("quote")) {
            assert_eq!(stamp_of_base64(b64), Some(99));
            assert_eq!(decoded_len(b64), 8);
        }
        let body = Body::new(BodyFormat::Octet, &vals[..1]);
        let stamped = body.stamped(42);
        assert_eq!(stamped[..8], 42u64.to_be_bytes());
        assert_eq!(stamped[8..], vals[0][8..]);
        // Binary: -1 (no key), length, value, 0 headers; each value's first 8 bytes stamped.
        let body = Body::new(BodyFormat::Binary, &vals);
        let stamped = body.stamped(42);
        let record = 4 + 4 + 20 + 2;
        assert_eq!(stamped.len(), 3 * record);
        for (i, v) in vals.iter().enumerate() {
            let r = &stamped[i * record..(i + 1) * record];
            assert_eq!(r[..8], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 20]);
            assert_eq!(r[8..16], 42u64.to_be_bytes());
            assert_eq!(r[16..28], v[8..]);
            assert_eq!(r[28..], [0, 0]);
        }
    }

    #[test]
    fn batch_holds_the_records() {
        let vals = values(10, 5, 1);
        let b = fjord_protocol::Batch::parse(batch(&vals).expect("batch")).expect("parse");
        assert_eq!(b.record_count(), 5);
    }
}
