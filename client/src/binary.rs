//! The binary produce body, [`BINARY_RECORDS`]: length-prefixed records back to back,
//! integers big-endian — `key_length` i32 (-1: no key), key, `value_length` i32 (-1: a
//! tombstone), value, `header_count` u16, then per header `name_length` u16, UTF-8 name,
//! `value_length` i32, value. No JSON and no base64 on the wire. A binary consume answer
//! ([`read_consumed`]) is the same layout with each record's offset (u64) and timestamp
//! (i64) in front.

/// Its media type.
pub const BINARY_RECORDS: &str = "application/vnd.fjord.records";

/// Appends one record in the binary layout to `out`. Lengths beyond the format's
/// integers (keys and values over 2 GiB, names over 64 KiB, over 65535 headers) are
/// refused.
pub fn write_record(
    out: &mut Vec<u8>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, &[u8])],
) -> Result<(), String> {
    let len_i32 = |n: usize| i32::try_from(n).map_err(|_| format!("{n} bytes do not fit the format's i32 length"));
    let len_u16 = |n: usize| u16::try_from(n).map_err(|_| format!("{n} does not fit the format's u16 length"));
    for field in [key, value] {
        match field {
            Some(b) => {
                out.extend_from_slice(&len_i32(b.len())?.to_be_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out.extend_from_slice(&len_u16(headers.len())?.to_be_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&len_u16(name.len())?.to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&len_i32(value.len())?.to_be_bytes());
        out.extend_from_slice(value);
    }
    Ok(())
}

/// One record of a binary consume answer ([`read_consumed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryRecord {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<bytes::Bytes>,
    /// `None`: a tombstone.
    pub value: Option<bytes::Bytes>,
    pub headers: Vec<(String, bytes::Bytes)>,
}

/// Reads a binary consume answer (`Accept: application/vnd.fjord.records`): records back
/// to back, each `offset` u64 and `timestamp` i64, then the produce layout of
/// [`write_record`]; big-endian. Keys and values share `body`'s buffer.
pub fn read_consumed(body: &bytes::Bytes) -> Result<Vec<BinaryRecord>, String> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize, what: &str| -> Result<bytes::Bytes, String> {
        let end = at.checked_add(n).filter(|&e| e <= body.len()).ok_or_else(|| format!("body ends inside {what}"))?;
        let b = body.slice(*at..end);
        *at = end;
        Ok(b)
    };
    let int = |at: &mut usize, n: usize, what: &str| -> Result<u64, String> {
        Ok(take(at, n, what)?.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
    };
    let optional = |at: &mut usize, what: &str| -> Result<Option<bytes::Bytes>, String> {
        let len = int(at, 4, what)? as u32 as i32;
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(format!("negative length {n} of {what}")),
            n => take(at, n as usize, what).map(Some),
        }
    };
    let mut out = Vec::new();
    while at < body.len() {
        let offset = int(&mut at, 8, "an offset")?;
        let timestamp = int(&mut at, 8, "a timestamp")? as i64;
        let key = optional(&mut at, "a key")?;
        let value = optional(&mut at, "a value")?;
        let count = int(&mut at, 2, "a header count")?;
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let len = int(&mut at, 2, "a header name length")? as usize;
            let name = take(&mut at, len, "a header name")?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| "a header name is not UTF-8".to_owned())?;
            let value = optional(&mut at, "a header value")?.ok_or("a header without a value")?;
            headers.push((name, value));
        }
        out.push(BinaryRecord { offset, timestamp, key, value, headers });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumed_record_reads_back_field_by_field_and_a_cut_body_is_an_error() {
        let mut body = Vec::new();
        let mut ends = Vec::new();
        for (offset, key, value) in [(7u64, Some(&b"k"[..]), Some(&b"v\x00\xff"[..])), (8, None, None)] {
            body.extend_from_slice(&offset.to_be_bytes());
            body.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
            write_record(&mut body, key, value, &[("h", b"x")]).expect("fits");
            ends.push(body.len());
        }
        let body = bytes::Bytes::from(body);
        let records = read_consumed(&body).expect("well formed");
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].offset, records[0].timestamp), (7, 1_700_000_000_000));
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(records[0].value.as_deref(), Some(&b"v\x00\xff"[..]));
        assert_eq!(records[0].headers, vec![("h".to_owned(), bytes::Bytes::from_static(b"x"))]);
        assert_eq!((records[1].offset, records[1].key.is_none(), records[1].value.is_none()), (8, true, true));
        assert_eq!(read_consumed(&body.slice(..ends[0])).expect("one whole record").len(), 1);
        for cut in (1..body.len()).filter(|c| *c != ends[0]) {
            assert!(read_consumed(&body.slice(..cut)).is_err(), "a body cut inside a record at {cut} was read");
        }
    }
}
