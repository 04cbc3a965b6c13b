//! The periodic log cleanup of every replica, leader or follower (each replica cleans
//! its own log, as in Kafka): retention where `cleanup.policy` has `delete`, then
//! compaction where it has `compact`; on every topic, expiry of producer state
//! (idempotency keys past `idempotency.window.ms`, producer sessions idle past
//! `producer.id.expiration.ms`). Log work runs on blocking threads. Also the periodic
//! high-watermark checkpoint of every replica.

use crate::counters::NodeMetrics;
use crate::replica::{CompactionMark, Replica};
use crate::replicas::Replicas;
use tracing::{debug, info, warn};

/// Retention, then compaction, of every replica per its topic's `cleanup.policy`.
pub async fn clean_all(replicas: &Replicas) {
    for r in replicas.all() {
        let config = r.meta().config;
        if config.deletes() {
            apply_retention(&r, config.retention_ms, config.retention_bytes, replicas.metrics()).await;
        }
        if config.compacts() {
            compact(&r, false, replicas.metrics()).await;
        }
        expire_producer_state(&r, config.idempotency_window_ms, config.producer_id_expiration_ms).await;
    }
}

/// Stores the high watermark of every replica whose HW moved since its last checkpoint.
pub async fn checkpoint_high_watermarks(replicas: &Replicas) {
    let all = replicas.all();
    let result = tokio::task::spawn_blocking(move || {
        let mut failed = 0usize;
        for r in &all {
            if let Err(e) = r.log.checkpoint_high_watermark() {
                failed += 1;
                debug!(partition = %r.tp, error = %e, "high watermark checkpoint failed");
            }
        }
        failed
    })
    .await;
    match result {
        Ok(0) => {}
        Ok(failed) => warn!(failed, "high watermark checkpoints failed; retrying on the next pass"),
        Err(e) => warn!(error = %e, "high watermark checkpoint task failed"),
    }
}

async fn expire_producer_state(r: &Replica, window_ms: i64, expiration_ms: i64) {
    let log = r.log.clone();
    let result = tokio::task::spawn_blocking(move || {
        log.expire_producer_state(fjord_protocol::now_ms(), window_ms, expiration_ms)
    })
    .await;
    match result {
        Ok(Ok((keys, producers))) if keys + producers > 0 => {
            debug!(partition = %r.tp, keys, producers, "expired producer state")
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!(partition = %r.tp, error = %e, "producer state expiry failed"),
        Err(e) => warn!(partition = %r.tp, error = %e, "producer state expiry task failed"),
    }
}

/// A compaction pass over every replica of a compacted topic, even one whose log has
/// not changed since its last pass.
pub async fn compact_all(replicas: &Replicas) {
    for r in replicas.all() {
        if r.meta().config.compacts() {
            compact(&r, true, replicas.metrics()).await;
        }
    }
}

async fn apply_retention(r: &Replica, retention_ms: i64, retention_bytes: i64, metrics: &NodeMetrics) {
    let log = r.log.clone();
    let result = tokio::task::spawn_blocking(move || {
        log.apply_retention(fjord_protocol::now_ms(), retention_ms, retention_bytes)
    })
    .await;
    match result {
        Ok(Ok(removed)) if removed.batches > 0 => {
            metrics.cleaned("retention", removed.bytes);
            info!(partition = %r.tp, batches = removed.batches, bytes = removed.bytes, "retention removed batches")
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!(partition = %r.tp, error = %e, "retention failed"),
        Err(e) => warn!(partition = %r.tp, error = %e, "retention task failed"),
    }
}

/// One compaction pass over a replica's log; unless `force`, skipped when nothing it
/// depends on changed since the last completed pass.
async fn compact(r: &Replica, force: bool, metrics: &NodeMetrics) {
    let config = r.meta().config;
    let o = r.log.offsets();
    let now = fjord_protocol::now_ms();
    let mark = CompactionMark {
        high_watermark: o.high_watermark,
        log_start: o.log_start,
        delete_retention_ms: config.delete_retention_ms,
        min_compaction_lag_ms: config.min_compaction_lag_ms,
        due_ms: None,
    };
    let previous = r.state.lock().compacted;
    if !force && previous.is_some_and(|p| p.covers(&mark, now)) {
        return;
    }
    let log = r.log.clone();
    let result = tokio::task::spawn_blocking(move || {
        log.compact(now, config.delete_retention_ms, config.min_compaction_lag_ms, config.idempotency_window_ms)
    })
    .await;
    match result {
        Ok(Ok(Some(done))) => {
            r.state.lock().compacted = Some(CompactionMark { due_ms: done.due_ms, ..mark });
            if done.batches > 0 {
                metrics.cleaned("compaction", done.bytes);
                info!(
                    partition = %r.tp,
                    batches = done.batches,
                    records = done.records,
                    bytes = done.bytes,
                    "compaction rewrote batches"
                );
            }
        }
        // The log changed under the pass; the next tick tries again.
        Ok(Ok(None)) => debug!(partition = %r.tp, "compaction pass raced another change; retrying later"),
        Ok(Err(e)) => warn!(partition = %r.tp, error = %e, "compaction failed"),
        Err(e) => warn!(partition = %r.tp, error = %e, "compaction task failed"),
    }
}
