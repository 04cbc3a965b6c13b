//! Record bodies: [`fjord_protocol::body`], where they live so that they can be fuzzed
//! without the gateway's dependencies.

pub use fjord_protocol::body::*;

/// The binary body format against `fjord-client`'s encoder of it.
#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use fjord_protocol::{ErrorCode, Header};

    fn binary(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        fjord_client::binary::write_record(&mut out, key, value, headers).expect("fits");
        out
    }

    #[test]
    fn binary_records_parse_as_slices_of_the_body() {
        let mut raw = binary(Some(b"k1"), Some(&[0, 1, 2, 255]), &[("trace", b"abc"), ("empty", b"")]);
        raw.extend(binary(None, None, &[]));
        raw.extend(binary(Some(b""), Some(b""), &[]));
        let body = Bytes::from(raw);
        let records = parse_binary(&body, Some(3), Some(17)).expect("parse");
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(records[0].value.as_deref(), Some(&[0u8, 1, 2, 255][..]));
        assert_eq!(records[0].headers.len(), 2);
        assert_eq!(records[0].headers[0], Header { name: "trace".into(), value: Bytes::from_static(b"abc") });
        assert_eq!(records[0].headers[1].value.len(), 0);
        assert_eq!((records[0].partition, records[0].timestamp), (Some(3), Some(17)));
        assert_eq!((records[1].key.as_ref(), records[1].value.as_ref()), (None, None), "-1 is absent");
        assert_eq!(records[2].key.as_deref(), Some(&b""[..]), "0 is present and empty");
        // Zero copy: the value points into the body.
        let v = records[0].value.as_ref().expect("value");
        assert!(body.as_ptr() <= v.as_ptr() && v.as_ptr() < body[body.len()..].as_ptr());
        assert!(parse_binary(&Bytes::new(), None, None).expect("empty").is_empty());
    }

    #[test]
    fn binary_errors_name_the_record_and_the_field() {
        let good = binary(Some(b"k"), Some(b"v"), &[("h", b"x")]);
        // Every truncation of a record is refused, never read past the end.
        for cut in 1..good.len() {
            let mut raw = binary(None, Some(b"first"), &[]);
            raw.extend_from_slice(&good[..cut]);
            let err = parse_binary(&Bytes::from(raw), None, None).expect_err("truncated");
            assert_eq!(err.code, ErrorCode::InvalidRequest);
            assert!(err.message.starts_with("record 1: the body ends inside"), "{}", err.message);
        }
        let mut bad_len = (-2i32).to_be_bytes().to_vec();
        bad_len.extend_from_slice(&[0; 6]);
        let err = parse_binary(&Bytes::from(bad_len), None, None).expect_err("negative length");
        assert!(err.message.contains("key length is -2"), "{}", err.message);
        let huge = [0x7f, 0xff, 0xff, 0xff, 0, 0];
        let err = parse_binary(&Bytes::copy_from_slice(&huge), None, None).expect_err("length beyond the body");
        assert!(err.message.contains("ends inside the key"), "{}", err.message);
        let mut bad_name = binary(None, Some(b"v"), &[("h", b"x")]);
        let at = bad_name.len() - 1 - 4 - 1; // the header name's one byte
        bad_name[at] = 0xff;
        let err = parse_binary(&Bytes::from(bad_name), None, None).expect_err("bad UTF-8");
        assert!(err.message.contains("not valid UTF-8"), "{}", err.message);
        let mut null_header = binary(None, Some(b"v"), &[("h", b"")]);
        let n = null_header.len();
        null_header[n - 4..].copy_from_slice(&(-1i32).to_be_bytes());
        let err = parse_binary(&Bytes::from(null_header), None, None).expect_err("null header value");
        assert!(err.message.contains("header `h` has length -1"), "{}", err.message);

        // The encoder refuses what the format cannot say.
        let long = "n".repeat(70_000);
        assert!(fjord_client::binary::write_record(&mut Vec::new(), None, None, &[(long.as_str(), b"")]).is_err());
    }
}
