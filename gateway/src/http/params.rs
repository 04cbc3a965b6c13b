//! Parameters several routes share, defaulted and checked in one place.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use fjord_protocol::Acks;
use std::time::Duration;

pub const DEFAULT_MAX_RECORDS: u32 = 500;
pub const MAX_MAX_RECORDS: u32 = 100_000;
pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;
pub const MAX_MAX_BYTES: u64 = 64 << 20;
/// Heartbeat comments of a Server-Sent Events stream while idle.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
pub const MIN_HEARTBEAT_MS: u64 = 100;
pub const MAX_HEARTBEAT_MS: u64 = 60_000;

/// A read's `max_records` and `max_bytes`, defaulted and checked.
pub fn read_limits(max_records: Option<u32>, max_bytes: Option<u64>) -> ApiResult<(u32, u64)> {
    let max_records = max_records.unwrap_or(DEFAULT_MAX_RECORDS);
    if max_records == 0 || max_records > MAX_MAX_RECORDS {
        return Err(ApiError::bad_request(format!("max_records must be between 1 and {MAX_MAX_RECORDS}")));
    }
    let max_bytes = max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    if max_bytes == 0 || max_bytes > MAX_MAX_BYTES {
        return Err(ApiError::bad_request(format!("max_bytes must be between 1 and {MAX_MAX_BYTES}")));
    }
    Ok((max_records, max_bytes))
}

/// A request's `timeout_ms`, at most the gateway's `max_timeout_ms`; when it is not
/// given, `default` capped at that maximum.
pub fn timeout(state: &AppState, ms: Option<u64>, default: u64) -> ApiResult<Duration> {
    let Some(ms) = ms else { return Ok(Duration::from_millis(default.min(state.config.max_timeout_ms))) };
    if ms > state.config.max_timeout_ms {
        return Err(ApiError::bad_request(format!(
            "timeout_ms must be at most {}, got {ms}",
            state.config.max_timeout_ms
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// `heartbeat_ms` of a Server-Sent Events stream.
pub fn heartbeat(ms: Option<u64>) -> ApiResult<Duration> {
    match ms {
        None => Ok(DEFAULT_HEARTBEAT),
        Some(ms) if (MIN_HEARTBEAT_MS..=MAX_HEARTBEAT_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
        Some(ms) => Err(ApiError::bad_request(format!(
            "heartbeat_ms must be between {MIN_HEARTBEAT_MS} and {MAX_HEARTBEAT_MS}, got {ms}"
        ))),
    }
}

/// A timestamp parameter: milliseconds since the epoch, not negative.
pub fn timestamp(ts: i64) -> ApiResult<i64> {
    if ts < 0 {
        return Err(ApiError::bad_request(format!("timestamp must be milliseconds since the epoch, got {ts}")));
    }
    Ok(ts)
}

/// `acks`: `0`, `1` (the default) or `all` (`-1` too).
pub fn acks(s: Option<&str>) -> ApiResult<Acks> {
    match s {
        None => Ok(Acks::Leader),
        Some(s) => Acks::parse(s).ok_or_else(|| ApiError::bad_request(format!("acks must be 0, 1 or all, got `{s}`"))),
    }
}
