//! Record bodies: parsing what producers send (JSON, NDJSON, raw bytes) and rendering
//! what consumers read (JSON with `format=json|text|base64`).
//!
//! A JSON `value` is stored as the exact JSON text the producer sent (no re-encoding),
//! so it reads back byte for byte. A `key` string is stored as its UTF-8 bytes, as
//! Kafka's `StringSerializer` would, so keyed records land on the partition a Kafka
//! producer would choose.
//!
//! Here, not in the gateway, so that the parsers can be fuzzed (`fuzz/`) without
//! building what the gateway links (RocksDB, through the stream processors).

use crate::{ErrorCode, FjordError, Header, RecordView};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use utoipa::ToSchema;

type ApiError = FjordError;
type ApiResult<T> = Result<T, FjordError>;

/// A produce request body (`application/json`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"records": [
    {"key": "user-42", "value": {"action": "login"}},
    {"value_base64": "AAEC/w==", "headers": [{"name": "trace", "value": "abc"}]}
]}))]
pub struct ProduceBody<'a> {
    #[serde(borrow)]
    pub records: Vec<ProduceRecord<'a>>,
}

/// One record to produce. Give at most one of `key`/`key_base64` and of
/// `value`/`value_base64`; no value (or `"value": null`) is a tombstone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRecord<'a> {
    /// The key as text (stored as its UTF-8 bytes).
    #[serde(borrow, default)]
    #[schema(value_type = Option<String>)]
    pub key: Option<Cow<'a, str>>,
    /// The key as standard base64, for binary keys.
    #[serde(borrow, default)]
    #[schema(value_type = Option<String>)]
    pub key_base64: Option<Cow<'a, str>>,
    /// Any JSON value, stored as the JSON text sent.
    #[serde(borrow, default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<&'a RawValue>,
    /// The value as standard base64, for binary values.
    #[serde(borrow, default)]
    #[schema(value_type = Option<String>)]
    pub value_base64: Option<Cow<'a, str>>,
    /// At most 65535 (the binary layouts' limit).
    #[serde(borrow, default)]
    #[schema(max_items = 65535)]
    pub headers: Option<Vec<HeaderIn<'a>>>,
    /// Explicit partition; otherwise the key's murmur2 hash, or round robin for no key.
    pub partition: Option<u32>,
    /// Record timestamp in ms since the epoch; defaults to the time the gateway received it.
    #[schema(minimum = 0)]
    pub timestamp: Option<i64>,
}

/// A record header; names may repeat.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderIn<'a> {
    #[schema(value_type = String, max_length = 65535)]
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// The value as text.
    #[serde(borrow, default)]
    #[schema(value_type = Option<String>)]
    pub value: Option<Cow<'a, str>>,
    /// The value as standard base64.
    #[serde(borrow, default)]
    #[schema(value_type = Option<String>)]
    pub value_base64: Option<Cow<'a, str>>,
}

/// An `application/octet-stream` produce body: one record's value, any bytes
/// (documentation type for the OpenAPI spec).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct OctetBody(#[allow(dead_code)] Vec<u8>);

/// An `application/vnd.fjord.records` produce body: length-prefixed binary records
/// (documentation type for the OpenAPI spec; see [`parse_binary`] for the layout).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BinaryBody(#[allow(dead_code)] Vec<u8>);

/// An `application/vnd.fjord.records` consume answer: binary records with their offsets
/// and timestamps, in the layout the consume operation describes (documentation type
/// for the OpenAPI spec; written by `render_binary_record`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BinaryConsumeBody(#[allow(dead_code)] Vec<u8>);

/// The media type of [`parse_binary`]'s format.
pub const BINARY_RECORDS: &str = "application/vnd.fjord.records";

/// A validated record, its bytes shared with the request body where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub partition: Option<u32>,
    pub timestamp: Option<i64>,
}

impl InRecord {
    pub fn encoded_len(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self.headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>()
    }
}

fn invalid(index: usize, msg: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, format!("record {index}: {msg}"))
}

/// Bytes of `s`: a zero-copy slice of `body` when `s` points into it, else a copy.
fn share(body: &Bytes, s: &str) -> Bytes {
    let (start, end) = (body.as_ptr() as usize, body.as_ptr() as usize + body.len());
    let p = s.as_ptr() as usize;
    if p >= start && p + s.len() <= end && !s.is_empty() {
        body.slice_ref(s.as_bytes())
    } else {
        Bytes::copy_from_slice(s.as_bytes())
    }
}

/// Standard base64 with padding. The SIMD decoder does the work (the scalar one was 13%
/// of the server's CPU under produce load); when it refuses, the scalar decoder gives
/// the error its detail (which byte, where), and its answer stands.
fn decode_b64(index: usize, field: &str, s: &str) -> ApiResult<Bytes> {
    if let Ok(v) = base64_simd::STANDARD.decode_to_vec(s.as_bytes()) {
        return Ok(Bytes::from(v));
    }
    B64.decode(s.as_bytes()).map(Bytes::from).map_err(|e| {
        ApiError::new(ErrorCode::InvalidBase64, format!("record {index}: `{field}` is not valid base64: {e}"))
    })
}

fn convert(body: &Bytes, index: usize, r: ProduceRecord<'_>) -> ApiResult<InRecord> {
    let key = match (r.key, r.key_base64) {
        (Some(_), Some(_)) => return Err(invalid(index, "give `key` or `key_base64`, not both")),
        (Some(k), None) => Some(share(body, &k)),
        (None, Some(k)) => Some(decode_b64(index, "key_base64", &k)?),
        (None, None) => None,
    };
    let value = match (r.value, r.value_base64) {
        (Some(_), Some(_)) => return Err(invalid(index, "give `value` or `value_base64`, not both")),
        (Some(v), None) => Some(share(body, v.get())),
        (None, Some(v)) => Some(decode_b64(index, "value_base64", &v)?),
        (None, None) => None,
    };
    let headers_in = r.headers.unwrap_or_default();
    if headers_in.len() > usize::from(u16::MAX) {
        return Err(invalid(index, "a record has more than 65535 headers"));
    }
    let mut headers = Vec::with_capacity(headers_in.len());
    for h in headers_in {
        if h.name.len() > usize::from(u16::MAX) {
            return Err(invalid(index, "a header name is longer than 65535 bytes"));
        }
        let value = match (h.value, h.value_base64) {
            (Some(_), Some(_)) => {
                return Err(invalid(index, format!("header `{}`: give `value` or `value_base64`, not both", h.name)))
            }
            (Some(v), None) => share(body, &v),
            (None, Some(v)) => decode_b64(index, "headers[].value_base64", &v)?,
            (None, None) => Bytes::new(),
        };
        headers.push(Header { name: h.name.into_owned(), value });
    }
    if let Some(ts) = r.timestamp {
        if ts < 0 {
            return Err(invalid(index, format!("timestamp must be milliseconds since the epoch, got {ts}")));
        }
    }
    Ok(InRecord { key, value, headers, partition: r.partition, timestamp: r.timestamp })
}

/// Parses an `application/json` produce body.
pub fn parse_json(body: &Bytes) -> ApiResult<Vec<InRecord>> {
    let parsed: ProduceBody<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {e}")))?;
    parsed.records.into_iter().enumerate().map(|(i, r)| convert(body, i, r)).collect()
}

/// Parses an `application/x-ndjson` produce body: one record object per line.
pub fn parse_ndjson(body: &Bytes) -> ApiResult<Vec<InRecord>> {
    let mut out = Vec::new();
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: ProduceRecord<'_> = serde_json::from_slice(line)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("NDJSON line {}: {e}", n + 1)))?;
        let index = out.len();
        out.push(convert(body, index, record)?);
    }
    Ok(out)
}

/// Reads big-endian integers off the front of a body, naming what is missing.
struct Cursor<'a> {
    body: &'a Bytes,
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, index: usize, what: &str) -> ApiResult<Bytes> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.body.len()).ok_or_else(|| {
            invalid(index, format!("the body ends inside {what} ({n} bytes needed at byte {})", self.at))
        })?;
        let out = self.body.slice(self.at..end);
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self, index: usize, what: &str) -> ApiResult<u16> {
        let b = self.take(2, index, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, index: usize, what: &str) -> ApiResult<i32> {
        let b = self.take(4, index, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An `i32` length and that many bytes; `-1` is absent.
    fn optional(&mut self, index: usize, what: &str) -> ApiResult<Option<Bytes>> {
        match self.i32(index, &format!("the {what} length"))? {
            -1 => Ok(None),
            n if n < 0 => Err(invalid(index, format!("the {what} length is {n}; use -1 for none"))),
            n => self.take(n as usize, index, &format!("the {what}")).map(Some),
        }
    }
}

/// Parses an `application/vnd.fjord.records` produce body (`fjord_client::binary` writes
/// it): records back to back, each
///
/// ```text
/// key_length    i32   -1: no key
/// key           key_length bytes
/// value_length  i32   -1: no value (a tombstone)
/// value         value_length bytes
/// header_count  u16
/// then per header:
///   name_length u16, name (UTF-8), value_length i32 (>= 0), value
/// ```
///
/// all integers big-endian. Keys, values and header values are slices of the body (no
/// copy, no base64). Partition and timestamp come from the query, as for octet bodies.
pub fn parse_binary(body: &Bytes, partition: Option<u32>, timestamp: Option<i64>) -> ApiResult<Vec<InRecord>> {
    let mut c = Cursor { body, at: 0 };
    let mut out = Vec::new();
    while c.at < body.len() {
        let index = out.len();
        let key = c.optional(index, "key")?;
        let value = c.optional(index, "value")?;
        let count = c.u16(index, "the header count")?;
        let mut headers = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let len = c.u16(index, "a header name length")?;
            let name = c.take(usize::from(len), index, "a header name")?;
            let name =
                std::str::from_utf8(&name).map_err(|_| invalid(index, "a header name is not valid UTF-8"))?.to_owned();
            let value = c
                .optional(index, "header value")?
                .ok_or_else(|| invalid(index, format!("header `{name}` has length -1; headers always have a value")))?;
            headers.push(Header { name, value });
        }
        out.push(InRecord { key, value, headers, partition, timestamp });
    }
    Ok(out)
}

/// How a consume response shows keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Values that are valid JSON inline as JSON, other values as base64; keys as text when UTF-8.
    #[default]
    Json,
    /// Keys and values as text where valid UTF-8; other bytes as base64.
    Text,
    /// Keys and values always as base64.
    Base64,
}

/// A consumed record. With `format=json` a value that is JSON comes inline as `value`
/// and any other value as `value_base64`; keys (and header values) come as text when
/// they are UTF-8, else as `key_base64`. With `format=text` keys and values come as text
/// when UTF-8; with `format=base64` always as base64. A tombstone has `"value": null`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    #[schema(value_type = Option<String>)]
    pub key: Option<String>,
    pub key_base64: Option<String>,
    /// The value: JSON with `format=json`, a string with `format=text`; `null` for a tombstone.
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<serde_json::Value>,
    pub value_base64: Option<String>,
    pub headers: Vec<HeaderOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeaderOut {
    pub name: String,
    pub value: Option<String>,
    pub value_base64: Option<String>,
}

/// The consume response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"records": [{"topic": "orders", "partition": 0, "offset": 0, "timestamp": 1_700_000_000_000i64,
    "key": "user-42", "value": {"action": "login"}, "headers": []}], "next_offset": 1, "high_watermark": 1}))]
pub struct ConsumeResponse {
    pub records: Vec<ConsumedRecord>,
    /// The offset to ask for next.
    pub next_offset: u64,
    pub high_watermark: u64,
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_b64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    base64_simd::STANDARD.encode_append(bytes, out);
    out.push(b'"');
}

/// Writes `,"<field>":…` or `,"<field>_base64":…` for optional bytes.
/// Whether `bytes` is JSON that strict decoders take, as [`StrictJson`] checks it. RFC
/// 8259's grammar lets `"\ud800"` and `1e999` through (so the produce path stores them
/// as sent), but I-JSON (RFC 7493) and many decoders (`serde_json` among them) refuse
/// them, and inlined they would make a whole consume answer unreadable: such a value
/// comes as base64.
fn is_strict_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<StrictJson>(bytes).is_ok()
}

/// Any JSON value, read for its validity only: like [`serde::de::IgnoredAny`], but every
/// number is converted (one out of `f64`'s range fails) and every string decoded (an
/// unpaired surrogate escape fails). Nothing is kept; no string is copied unless it has
/// escapes.
struct StrictJson;

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictJsonVisitor)
    }
}

struct StrictJsonVisitor;

impl<'de> serde::de::Visitor<'de> for StrictJsonVisitor {
    type Value = StrictJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_i64<E>(self, _: i64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_u64<E>(self, _: u64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_f64<E>(self, _: f64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_str<E>(self, _: &str) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_unit<E>(self) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictJson, A::Error> {
        while seq.next_element::<StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StrictJson, A::Error> {
        while map.next_entry::<StrictJson, StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }
}

fn push_bytes(out: &mut Vec<u8>, field: &str, bytes: Option<&[u8]>, format: Format, is_value: bool) {
    out.push(b',');
    let Some(bytes) = bytes else {
        out.extend_from_slice(format!("\"{field}\":null").as_bytes());
        return;
    };
    if format == Format::Json && is_value {
        // Only JSON is shown inline: any other bytes come as base64, so that what a
        // client reads is exactly what was stored.
        if is_strict_json(bytes) {
            out.extend_from_slice(format!("\"{field}\":").as_bytes());
            out.extend_from_slice(bytes);
            return;
        }
    } else if format != Format::Base64 {
        if let Ok(text) = std::str::from_utf8(bytes) {
            out.extend_from_slice(format!("\"{field}\":").as_bytes());
            push_str(out, text);
            return;
        }
    }
    out.extend_from_slice(format!("\"{field}_base64\":").as_bytes());
    push_b64(out, bytes);
}

/// Renders one consumed record as a JSON object into `out`.
pub fn render_record(out: &mut Vec<u8>, topic_json: &[u8], partition: u32, r: &RecordView, format: Format) {
    out.extend_from_slice(b"{\"topic\":");
    out.extend_from_slice(topic_json);
    out.extend_from_slice(
        format!(",\"partition\":{partition},\"offset\":{},\"timestamp\":{}", r.offset, r.timestamp).as_bytes(),
    );
    push_bytes(out, "key", r.key.as_deref(), format, false);
    push_bytes(out, "value", r.value.as_deref(), format, true);
    out.extend_from_slice(b",\"headers\":[");
    for (i, h) in r.headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        push_str(out, &h.name);
        push_bytes(out, "value", Some(&h.value), if format == Format::Json { Format::Text } else { format }, false);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// Appends one consumed record in the binary consume layout
/// ([`BINARY_RECORDS`] as a consume answer): `offset` u64, `timestamp` i64, then the
/// record exactly as in a binary produce body ([`parse_binary`]) — `key_length` i32 (-1:
/// no key), key, `value_length` i32 (-1: tombstone), value, `header_count` u16, per
/// header `name_length` u16, name, `value_length` i32, value; big-endian. The stored
/// bytes are copied as they are: no JSON, no base64. A record the layout cannot hold
/// (more than 65535 headers, which only a JSON body written before that limit could
/// store) is an error and leaves `out` as it was.
pub fn render_binary_record(out: &mut Vec<u8>, r: &RecordView) -> Result<(), String> {
    let count = u16::try_from(r.headers.len()).map_err(|_| {
        format!("record {} has {} headers, more than the binary layout's 65535", r.offset, r.headers.len())
    })?;
    let fits = |n: usize| i32::try_from(n).is_ok();
    if ![&r.key, &r.value].iter().all(|f| f.as_ref().is_none_or(|b| fits(b.len())))
        || !r.headers.iter().all(|h| h.name.len() <= usize::from(u16::MAX) && fits(h.value.len()))
    {
        return Err(format!("record {} has a field longer than the binary layout allows", r.offset));
    }
    out.extend_from_slice(&r.offset.to_be_bytes());
    out.extend_from_slice(&r.timestamp.to_be_bytes());
    for field in [&r.key, &r.value] {
        match field {
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out.extend_from_slice(&count.to_be_bytes());
    for h in &r.headers {
        out.extend_from_slice(&(h.name.len() as u16).to_be_bytes());
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(&(h.value.len() as i32).to_be_bytes());
        out.extend_from_slice(&h.value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: &RecordView, format: Format) -> serde_json::Value {
        let mut out = Vec::new();
        render_record(&mut out, b"\"t\"", 0, r, format);
        serde_json::from_slice(&out).expect("rendered JSON parses")
    }

    fn view(key: Option<&[u8]>, value: Option<&[u8]>) -> RecordView {
        RecordView {
            offset: 3,
            timestamp: 9,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: vec![Header { name: "h".into(), value: Bytes::from_static(&[0xff]) }],
        }
    }

    #[test]
    fn json_values_keep_their_exact_text() {
        let body = Bytes::from_static(br#"{"records":[{"key":"k","value": {"b": 1.50, "a" : [1,2]}}]}"#);
        let records = parse_json(&body).expect("parse");
        assert_eq!(records[0].value.as_deref(), Some(&br#"{"b": 1.50, "a" : [1,2]}"#[..]));
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn renders_each_format() {
        let r = view(Some(b"k"), Some(br#"{"a":1}"#));
        let j = render(&r, Format::Json);
        assert_eq!(j["value"], serde_json::json!({"a": 1}));
        assert_eq!(j["key"], "k");
        assert_eq!(j["headers"][0]["value_base64"], "/w==");
        let t = render(&r, Format::Text);
        assert_eq!(t["value"], r#"{"a":1}"#);
        let b = render(&r, Format::Base64);
        assert_eq!(b["value_base64"], B64.encode(br#"{"a":1}"#));
        assert_eq!(b["key_base64"], "aw==");

        let binary = view(None, Some(&[0, 159, 146, 150]));
        let j = render(&binary, Format::Json);
        assert_eq!(j["value_base64"], B64.encode([0, 159, 146, 150]));
        assert!(j["key"].is_null());
        let tomb = render(&view(None, None), Format::Json);
        assert!(tomb["value"].is_null());
    }

    /// Found by `fuzz/` (`produce_bodies`): a value with an unpaired surrogate escape or a
    /// number out of `f64`'s range is stored as sent but must not be inlined, or strict
    /// JSON decoders refuse the whole answer.
    #[test]
    fn values_strict_decoders_refuse_come_as_base64() {
        let refused =
            [&br#""\udd83""#[..], br#"{"a":"x\uD800"}"#, br#"["\ude00\ud83d"]"#, b"70E02222022", br#"{"n":[-1e400]}"#];
        for lone in refused {
            let j = render(&view(None, Some(lone)), Format::Json);
            assert_eq!(j["value_base64"], B64.encode(lone), "{}", String::from_utf8_lossy(lone));
        }
        for fine in
            [&br#""\ud83d\ude00""#[..], br#""\\ud800""#, br#"{"u":"\u00e9","n":[1e300,-0.5,18446744073709551616]}"#]
        {
            let j = render(&view(None, Some(fine)), Format::Json);
            assert_eq!(j["value"], serde_json::from_slice::<serde_json::Value>(fine).expect("JSON"));
        }
    }

    #[test]
    fn simd_base64_agrees_with_the_scalar_decoder() {
        for len in 0..70usize {
            let raw: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let text = B64.encode(&raw);
            assert_eq!(decode_b64(0, "v", &text).expect("valid").as_ref(), &raw[..]);
            let mut out = Vec::new();
            push_b64(&mut out, &raw);
            assert_eq!(out, format!("\"{text}\"").into_bytes());
        }
        for bad in ["A", "AA=", "A===", "AA==AA==", "AAA*", "Zm9v YmFy"] {
            let err = decode_b64(2, "value_base64", bad).expect_err(bad);
            assert_eq!(err.code, ErrorCode::InvalidBase64, "{bad}");
            assert!(err.message.starts_with("record 2: `value_base64` is not valid base64: "), "{}", err.message);
        }
    }

    #[test]
    fn ndjson_reports_the_bad_line() {
        let body = Bytes::from_static(b"{\"value\":1}\n\n{\"value\":\n");
        let err = parse_ndjson(&body).expect_err("bad line");
        assert_eq!(err.code, ErrorCode::InvalidJson);
        assert!(err.message.contains("line 3"), "{}", err.message);
        let ok = parse_ndjson(&Bytes::from_static(b"{\"value\":1}\r\n{\"value_base64\":\"AA==\"}\n")).expect("ok");
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].value.as_deref(), Some(&[0u8][..]));
    }

    #[test]
    fn a_record_with_more_headers_than_the_binary_layout_holds_is_refused_both_ways() {
        let mut r = view(Some(b"k"), Some(b"v"));
        let mut out = b"kept".to_vec();
        render_binary_record(&mut out, &r).expect("fits");
        // offset, timestamp, key, value, header count, one header ("h" = [0xff]).
        assert_eq!(out.len(), 4 + 8 + 8 + (4 + 1) + (4 + 1) + 2 + (2 + 1 + 4 + 1));
        assert_eq!(&out[4..12], &3u64.to_be_bytes());
        r.headers = vec![Header { name: "h".into(), value: Bytes::new() }; 65_536];
        let mut out = b"kept".to_vec();
        let err = render_binary_record(&mut out, &r).expect_err("too many headers");
        assert!(err.contains("65536 headers"), "{err}");
        assert_eq!(out, b"kept", "a refused record writes nothing");

        let headers = vec![serde_json::json!({"name": "h"}); 65_536];
        let body = Bytes::from(serde_json::json!({"records": [{"value": 1, "headers": headers}]}).to_string());
        let err = parse_json(&body).expect_err("too many headers");
        assert!(err.message.contains("more than 65535 headers"), "{}", err.message);
    }
}
