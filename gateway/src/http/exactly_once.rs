//! Exactly-once produce, the gateway's part: reading a request's `Idempotency-Key` and
//! producer-session headers, fingerprinting the request, and the [`ProducerExt`] each of
//! its partition batches carries. The storage nodes decide (`fjord_log::dedupe`): a
//! retry of a batch already written is answered with its original offsets.
//!
//! - **`Idempotency-Key`** (the IETF httpapi draft's header, bare or as a quoted
//!   structured-field string): 1 to 255 printable ASCII characters. The fingerprint is
//!   XXH3-128 over what decides the records (fast enough to hash every body: SHA-256 cost
//!   ~30% of produce throughput; the fingerprint guards against a client's own mistakes,
//!   not against an adversary, who could only collide its own keys): the topic, the path's
//!   partition, the media type, the `key`, `partition`, `timestamp` and
//!   `expected_offset` parameters and the body — not `acks` or `timeout_ms`, which a
//!   retry may change. Unkeyed records without a partition go to `hash(key) % count`,
//!   so a retry lands where its first attempt did.
//! - **Producer sessions** (KIP-98): `Producer-Id`, `Producer-Epoch` and
//!   `Producer-Sequence` (the first record's sequence; a request of n records uses n
//!   numbers), on the partition route only — sequences are per partition.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::http::HeaderMap;
use fjord_coordinator::ProducerInfo;
use fjord_protocol::codec::{Idempotency, ProducerExt, Session, MAX_IDEMPOTENCY_KEY_LEN};
use fjord_protocol::ErrorCode;
use std::time::Duration;
use tokio::time::Instant;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const PRODUCER_ID: &str = "producer-id";
pub const PRODUCER_EPOCH: &str = "producer-epoch";
pub const PRODUCER_SEQUENCE: &str = "producer-sequence";
/// Response header: `true` when every partition's batch was a replay (nothing written),
/// `partial` when some were.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// How long a gateway waits for a producer registration made through another gateway to
/// reach its metadata before it calls the producer unknown.
const REGISTRATION_VISIBLE_WITHIN: Duration = Duration::from_secs(2);

/// What a request carries for exactly-once produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerHeaders {
    pub idempotency_key: Option<Vec<u8>>,
    pub session: Option<Session>,
}

impl ProducerHeaders {
    /// Reads the headers; `partition_route` says whether the request names one
    /// partition (producer sessions need that).
    pub fn parse(headers: &HeaderMap, partition_route: bool) -> ApiResult<Self> {
        let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
            None => None,
            Some(v) => Some(idempotency_key(v.as_bytes())?),
        };
        let id = header_number::<u64>(headers, PRODUCER_ID)?;
        let epoch = header_number::<u32>(headers, PRODUCER_EPOCH)?;
        let sequence = header_number::<u32>(headers, PRODUCER_SEQUENCE)?;
        let session = match (id, epoch, sequence) {
            (None, None, None) => None,
            (Some(producer_id), Some(epoch), Some(first_sequence)) => {
                if !partition_route {
                    return Err(ApiError::bad_request(
                        "producer sessions (Producer-Id, Producer-Epoch, Producer-Sequence) need the partition \
                         route, /v1/topics/{topic}/partitions/{partition}/records: sequences are per partition",
                    ));
                }
                Some(Session { producer_id, epoch, first_sequence })
            }
            _ => {
                return Err(ApiError::bad_request(
                    "a producer session needs all three headers: Producer-Id, Producer-Epoch and Producer-Sequence",
                ))
            }
        };
        Ok(Self { idempotency_key, session })
    }

    pub fn is_empty(&self) -> bool {
        self.idempotency_key.is_none() && self.session.is_none()
    }

    /// The extension of a partition batch of this request, routed with `count`
    /// partitions and stamped `now` where records have no timestamp.
    pub fn ext(&self, fingerprint: [u8; 16], count: u32, now: i64) -> Option<ProducerExt> {
        if self.is_empty() {
            return None;
        }
        Some(ProducerExt {
            idempotency: self.idempotency_key.as_ref().map(|key| Idempotency {
                key: key.clone(),
                fingerprint,
                routed_with: count,
            }),
            session: self.session,
            default_timestamp: now,
        })
    }

    /// Where this request's unkeyed records without a partition go: derived from the
    /// idempotency key, so that a retry goes to the same partition.
    pub fn routing_seed(&self) -> Option<u64> {
        self.idempotency_key.as_ref().map(|key| xxh3_64(key))
    }
}

/// The key of an `Idempotency-Key` value: bare, or a quoted structured-field string
/// (`"..."` with `\"` and `\\` escapes), 1 to 255 printable ASCII characters.
fn idempotency_key(raw: &[u8]) -> ApiResult<Vec<u8>> {
    let bad = |why: &str| {
        ApiError::bad_request(format!(
            "Idempotency-Key {why}: it must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters, bare or \
             as a quoted string"
        ))
    };
    let key = match raw {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                match (escaped, b) {
                    (false, b'\\') => escaped = true,
                    (false, b'"') => return Err(bad("has an unescaped quote")),
                    (true, b'"' | b'\\') | (false, _) => {
                        out.push(b);
                        escaped = false;
                    }
                    (true, _) => return Err(bad("has an invalid escape")),
                }
            }
            if escaped {
                return Err(bad("ends inside an escape"));
            }
            out
        }
        [b'"', ..] => return Err(bad("has an unterminated quote")),
        _ => raw.to_vec(),
    };
    if key.is_empty() {
        return Err(bad("is empty"));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(bad("is too long"));
    }
    if !key.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(bad("has a character that is not printable ASCII"));
    }
    Ok(key)
}

fn header_number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> ApiResult<Option<T>> {
    let Some(v) = headers.get(name) else { return Ok(None) };
    let parsed = v.to_str().ok().and_then(|s| s.trim().parse::<T>().ok());
    match parsed {
        Some(n) => Ok(Some(n)),
        None => Err(ApiError::bad_request(format!(
            "header {name} must be a non-negative integer, got {:?}",
            String::from_utf8_lossy(v.as_bytes())
        ))),
    }
}

/// What decides a produce request's records, hashed: a retry with the same key must
/// carry the same request.
#[derive(Debug, Clone, Copy)]
pub struct RequestShape<'a> {
    pub topic: &'a str,
    pub path_partition: Option<u32>,
    pub media: &'a str,
    pub key: Option<&'a str>,
    pub partition: Option<u32>,
    pub timestamp: Option<i64>,
    pub expected_offset: Option<u64>,
    pub body: &'a [u8],
}

impl RequestShape<'_> {
    pub fn fingerprint(&self) -> [u8; 16] {
        let mut h = Xxh3::new();
        let mut field = |tag: u8, bytes: &[u8]| {
            h.update(&[tag]);
            h.update(&(bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(b't', self.topic.as_bytes());
        if let Some(p) = self.path_partition {
            field(b'P', &p.to_be_bytes());
        }
        field(b'm', self.media.as_bytes());
        if let Some(k) = self.key {
            field(b'k', k.as_bytes());
        }
        if let Some(p) = self.partition {
            field(b'p', &p.to_be_bytes());
        }
        if let Some(ts) = self.timestamp {
            field(b's', &ts.to_be_bytes());
        }
        if let Some(o) = self.expected_offset {
            field(b'o', &o.to_be_bytes());
        }
        field(b'b', self.body);
        h.digest128().to_be_bytes()
    }
}

/// Checks a session's producer against the registry: unknown ids are `404
/// unknown_producer_id`, an epoch older than the latest registration `409
/// producer_fenced` (the partitions fence it too, once the newer epoch writes there).
/// A registration through another gateway may take a moment to reach this one.
pub async fn check_registered(state: &AppState, session: &Session) -> ApiResult<()> {
    let deadline = Instant::now() + REGISTRATION_VISIBLE_WITHIN;
    let mut rx = state.coordinator.metadata();
    let known = loop {
        let found: Option<ProducerInfo> = rx.borrow_and_update().producers.get(&session.producer_id).cloned();
        let settled = found.as_ref().is_some_and(|p| p.epoch >= session.epoch);
        if settled || !matches!(tokio::time::timeout_at(deadline, rx.changed()).await, Ok(Ok(()))) {
            break found;
        }
    };
    match known {
        None => Err(ApiError::new(
            ErrorCode::UnknownProducerId,
            format!("producer id {} is not registered; register with POST /v1/producers", session.producer_id),
        )),
        Some(p) if session.epoch < p.epoch => Err(ApiError(
            fjord_protocol::FjordError::new(
                ErrorCode::ProducerFenced,
                format!(
                    "producer `{}` epoch {} is fenced: it was registered again with epoch {}; nothing was written",
                    p.name, session.epoch, p.epoch
                ),
            )
            .with_details(fjord_protocol::ErrorDetails { producer_epoch: Some(p.epoch), ..Default::default() }),
        )),
        Some(p) if session.epoch > p.epoch => Err(ApiError::bad_request(format!(
            "producer `{}` has epoch {}; epoch {} was never registered",
            p.name, p.epoch, session.epoch
        ))),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    #[test]
    fn idempotency_keys_bare_or_quoted_and_bounded() {
        let key = |v: &str| ProducerHeaders::parse(&headers(&[(IDEMPOTENCY_KEY, v)]), false).map(|p| p.idempotency_key);
        assert_eq!(key("order-17").expect("bare"), Some(b"order-17".to_vec()));
        assert_eq!(key("\"8e03 97\"").expect("quoted"), Some(b"8e03 97".to_vec()));
        assert_eq!(key(r#""a\"b\\c""#).expect("escapes"), Some(br#"a"b\c"#.to_vec()));
        assert_eq!(key(&"k".repeat(255)).expect("255").map(|k| k.len()), Some(255));
        for bad in ["", "\"\"", "\"open", &"k".repeat(256), r#""a"b""#, r#""a\x""#, "tab\there"] {
            assert_eq!(key(bad).expect_err(bad).code(), ErrorCode::InvalidRequest, "{bad:?}");
        }
        assert_eq!(ProducerHeaders::parse(&HeaderMap::new(), false).expect("none"), ProducerHeaders::default());
    }

    #[test]
    fn sessions_need_all_three_headers_and_the_partition_route() {
        let all = headers(&[(PRODUCER_ID, "7"), (PRODUCER_EPOCH, "2"), (PRODUCER_SEQUENCE, "40")]);
        let s = ProducerHeaders::parse(&all, true).expect("session").session;
        assert_eq!(s, Some(Session { producer_id: 7, epoch: 2, first_sequence: 40 }));
        assert!(ProducerHeaders::parse(&all, false).is_err(), "topic route");
        let two = headers(&[(PRODUCER_ID, "7"), (PRODUCER_EPOCH, "2")]);
        assert!(ProducerHeaders::parse(&two, true).is_err());
        let bad = headers(&[(PRODUCER_ID, "-1"), (PRODUCER_EPOCH, "2"), (PRODUCER_SEQUENCE, "0")]);
        assert!(ProducerHeaders::parse(&bad, true).is_err());
    }

    #[test]
    fn the_fingerprint_covers_what_decides_the_records() {
        let base = RequestShape {
            topic: "t",
            path_partition: None,
            media: "application/json",
            key: None,
            partition: None,
            timestamp: None,
            expected_offset: None,
            body: b"{}",
        };
        let fp = base.fingerprint();
        assert_eq!(fp, RequestShape { ..base }.fingerprint(), "deterministic");
        let variants = [
            RequestShape { topic: "u", ..base },
            RequestShape { path_partition: Some(0), ..base },
            RequestShape { media: "application/x-ndjson", ..base },
            RequestShape { key: Some(""), ..base },
            RequestShape { partition: Some(0), ..base },
            RequestShape { timestamp: Some(0), ..base },
            RequestShape { expected_offset: Some(0), ..base },
            RequestShape { body: b"{ }", ..base },
        ];
        for v in variants {
            assert_ne!(v.fingerprint(), fp, "{v:?}");
        }
    }
}
