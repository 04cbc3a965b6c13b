//! The binary produce body, [`BINARY_RECORDS`]: length-prefixed records back to back,
//! integers big-endian — `key_length` i32 (-1: no key), key, `value_length` i32 (-1: a
//! tombstone), value, `header_count` u16, then per header `name_length` u16, UTF-8 name,
//! `value_length` i32, value. No JSON and no base64 on the wire.

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
