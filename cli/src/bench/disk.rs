//! The server's disk writes per payload byte (`--server-pid`): `write_bytes` of
//! `/proc/PID/io` — bytes the process caused to be sent to storage, the WAL, flushes
//! and compactions alike — before a produce run and once its writes have settled after
//! it. A memtable that is not full yet is not flushed by then; over a run of many
//! write buffers that share is small.

use super::report::DiskWrites;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

/// How often the counter is read while waiting for it to settle.
const POLL: Duration = Duration::from_millis(250);
/// Settled: no growth for this long.
const QUIET: Duration = Duration::from_secs(2);
/// Waiting stops here even if the server keeps writing (a compaction of older data).
const MAX_SETTLE: Duration = Duration::from_secs(30);

/// The `write_bytes` field of `/proc/{pid}/io`.
pub fn write_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/io");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("--server-pid {pid}: cannot read {path} (is it a process of this machine you may inspect?)")
    })?;
    parse_write_bytes(&text).with_context(|| format!("{path} has no write_bytes line"))
}

fn parse_write_bytes(io: &str) -> Option<u64> {
    io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok())
}

/// Waits until `pid`'s writes stop growing (at most [`MAX_SETTLE`]) and reports them
/// since `before` against `payload_bytes`.
pub async fn settled(pid: u32, before: u64, payload_bytes: u64) -> anyhow::Result<DiskWrites> {
    if payload_bytes == 0 {
        bail!("no payload was acknowledged; there is nothing to divide the disk writes by");
    }
    let start = Instant::now();
    let mut last = write_bytes(pid)?;
    let mut quiet_since = Instant::now();
    while start.elapsed() < MAX_SETTLE && quiet_since.elapsed() < QUIET {
        tokio::time::sleep(POLL).await;
        let now = write_bytes(pid)?;
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let written = last.saturating_sub(before);
    Ok(DiskWrites {
        pid,
        write_bytes: written,
        payload_bytes,
        per_payload_byte: written as f64 / payload_bytes as f64,
        settle_s: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_bytes_is_read_from_procfs_text_and_from_this_process() {
        let io = "rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 12288\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_write_bytes(io), Some(12288));
        assert_eq!(parse_write_bytes("rchar: 1\n"), None);
        write_bytes(std::process::id()).expect("a process can read its own /proc/PID/io");
        assert!(write_bytes(u32::MAX).is_err(), "no such process");
    }
}
