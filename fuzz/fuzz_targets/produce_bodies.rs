//! The public produce bodies over arbitrary bytes: JSON (`{"records": [...]}`), NDJSON
//! and length-prefixed binary records (`application/vnd.fjord.records`).
//!
//! Properties: nothing panics; bad input is a 4xx error code; a body that parses yields
//! no more key, value and header bytes than it has (values are slices of the body or
//! decoded from base64 or JSON escapes, which only shrink); and every parsed record,
//! rendered as a consumer reads it in each `format`, is valid JSON.

#![no_main]

use bytes::Bytes;
use fjord_protocol::body::{parse_binary, parse_json, parse_ndjson, render_record, Format, InRecord};
use fjord_protocol::{FjordError, RecordView};
use libfuzzer_sys::fuzz_target;

fn check(body: &Bytes, parsed: Result<Vec<InRecord>, FjordError>) {
    let records = match parsed {
        Ok(records) => records,
        Err(e) => {
            assert_eq!(e.code.http_status() / 100, 4, "bad input is a client error: {e:?}");
            return;
        }
    };
    let total: usize = records.iter().map(InRecord::encoded_len).sum();
    assert!(total <= body.len(), "{total} bytes of records from a {}-byte body", body.len());
    for (r, offset) in records.into_iter().zip(0u64..) {
        let view =
            RecordView { offset, timestamp: r.timestamp.unwrap_or(0), key: r.key, value: r.value, headers: r.headers };
        for format in [Format::Json, Format::Text, Format::Base64] {
            let mut out = Vec::new();
            render_record(&mut out, b"\"t\"", 0, &view, format);
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&out) {
                panic!("{format:?} rendering is not JSON ({e}): {}", String::from_utf8_lossy(&out));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    check(&body, parse_json(&body));
    check(&body, parse_ndjson(&body));
    check(&body, parse_binary(&body, None, None));
    check(&body, parse_binary(&body, Some(3), Some(1_700_000_000_000)));
});
