//! Replication, Kafka's way (DESIGN.md §5).
//!
//! **Leader side.** Followers pull. Each replica fetch says how far the follower has
//! got (its fetch offset = its LEO); the leader records that, raises the HW to the least
//! LEO over the ISR, adds a follower that has caught up to the HW back into the ISR, and
//! — on a timer — drops ISR members that have not caught up for `replica.lag.time.max.ms`.
//! ISR changes are conditional writes of the partition state (on its version), so a
//! deposed leader's write loses.
//!
//! **Follower side.** One fetcher task per leader node serves every partition this
//! node follows there. Before fetching in a new leader epoch a follower truncates its
//! log by epoch (KIP-101/279: it asks the leader where its last epoch ends), never by
//! its own HW.

use crate::log::Role;
use crate::node::{internal, FollowerProgress, Replica, StorageNode};
use bytes::Bytes;
use fjord_coordinator::PartitionState;
use fjord_protocol::codec::{decode_frames, encode_frames};
use fjord_protocol::{
    Batch, EpochEndOffset, ErrorCode, FjordError, NodeId, ReplicaFetchPartition, ReplicaFetchRequest,
    ReplicaFetchResult, Result, TopicPartition,
};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// A replica fetch answer: per-partition headers and, in the same order, their batches.
pub struct ReplicaFetchAnswer {
    pub results: Vec<ReplicaFetchResult>,
    pub batches: Vec<Bytes>,
}

impl ReplicaFetchAnswer {
    /// `[u32 header length][header JSON][frames]`.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let header = serde_json::to_vec(&self.results).map_err(|e| internal("encoding fetch header", e))?;
        let mut out = Vec::with_capacity(4 + header.len() + self.batches.iter().map(|b| b.len() + 4).sum::<usize>());
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        encode_frames(self.batches.iter().map(|b| &b[..]), &mut out).map_err(|e| internal("encoding batches", e))?;
        Ok(out)
    }

    pub fn decode(mut body: Bytes) -> Result<Self> {
        let bad = |what: &str| FjordError::new(ErrorCode::CorruptBatch, format!("bad replica fetch answer: {what}"));
        if body.len() < 4 {
            return Err(bad("too short"));
        }
        let len = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
        if body.len() - 4 < len {
            return Err(bad("truncated header"));
        }
        let _ = body.split_to(4);
        let header = body.split_to(len);
        let results: Vec<ReplicaFetchResult> =
            serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
        let batches = decode_frames(body).map_err(|_| bad("truncated frames"))?;
        if batches.len() != results.iter().map(|r| r.batches as usize).sum::<usize>() {
            return Err(bad("batch count does not match the header"));
        }
        Ok(Self { results, batches })
    }
}

impl StorageNode {
    // ----- leader side -------------------------------------------------------------

    /// Serves a follower's fetch: records its progress for every partition, then
    /// answers with whatever is new (up to each LEO), waiting up to `max_wait_ms` when
    /// nothing is.
    pub async fn replica_fetch(self: &Arc<Self>, req: ReplicaFetchRequest) -> ReplicaFetchAnswer {
        let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.min(30_000));
        let mut appended = self.appended.subscribe();
        loop {
            appended.borrow_and_update();
            let mut ready = Vec::with_capacity(req.partitions.len());
            let mut any_data = false;
            for p in &req.partitions {
                let checked = self.check_follower_fetch(req.follower, p);
                if let Ok((_, has_data)) = &checked {
                    any_data |= *has_data;
                }
                ready.push(checked);
            }
            let timed_out = Instant::now() >= deadline;
            if any_data || timed_out {
                return self.answer_replica_fetch(&req, ready).await;
            }
            if !matches!(tokio::time::timeout_at(deadline, appended.changed()).await, Ok(Ok(()))) {
                return self.answer_replica_fetch(&req, ready).await;
            }
        }
    }

    /// Validates one partition of a replica fetch and records the follower's progress.
    /// Returns the replica and whether it has records for the follower.
    fn check_follower_fetch(&self, follower: NodeId, p: &ReplicaFetchPartition) -> Result<(Arc<Replica>, bool)> {
        let tp = TopicPartition::new(&p.topic, p.partition);
        let r = self.leader_replica(&tp)?;
        let epoch = r.meta.read().leader_epoch;
        if p.leader_epoch != epoch {
            // Fencing: a follower of another epoch must refresh its metadata first.
            let code = if p.leader_epoch < epoch { ErrorCode::NotLeader } else { ErrorCode::LeaderNotAvailable };
            return Err(FjordError::new(
                code,
                format!("{tp}: fetch in leader epoch {} but the current epoch is {epoch}", p.leader_epoch),
            ));
        }
        let o = r.log.offsets();
        if p.fetch_offset > o.log_end || p.fetch_offset < o.log_start {
            return Err(FjordError::new(
                ErrorCode::OffsetOutOfRange,
                format!("{tp}: follower fetch offset {} outside [{}, {}]", p.fetch_offset, o.log_start, o.log_end),
            ));
        }
        self.record_follower(&r, follower, p.fetch_offset, o.log_end);
        Ok((r, p.fetch_offset < o.log_end))
    }

    async fn answer_replica_fetch(
        &self,
        req: &ReplicaFetchRequest,
        ready: Vec<Result<(Arc<Replica>, bool)>>,
    ) -> ReplicaFetchAnswer {
        let mut results = Vec::with_capacity(ready.len());
        let mut batches = Vec::new();
        for (p, checked) in req.partitions.iter().zip(ready) {
            let mut result = ReplicaFetchResult {
                topic: p.topic.clone(),
                partition: p.partition,
                error: None,
                high_watermark: 0,
                log_start_offset: 0,
                batches: 0,
            };
            match checked {
                Err(e) => result.error = Some(e),
                Ok((r, has_data)) => {
                    let o = r.log.offsets();
                    result.high_watermark = o.high_watermark;
                    result.log_start_offset = o.log_start;
                    if has_data {
                        let log = r.log.clone();
                        let (offset, max) = (p.fetch_offset, req.max_bytes.max(1));
                        match tokio::task::spawn_blocking(move || log.read(offset, max, u64::MAX)).await {
                            Ok(Ok(read)) => {
                                result.batches = read.len() as u32;
                                batches.extend(read);
                            }
                            Ok(Err(e)) => result.error = Some(e.into()),
                            Err(e) => result.error = Some(internal("read task", e)),
                        }
                    }
                }
            }
            results.push(result);
        }
        ReplicaFetchAnswer { results, batches }
    }

    fn record_follower(&self, r: &Arc<Replica>, follower: NodeId, fetch_offset: u64, leader_leo: u64) {
        if !r.meta.read().replicas.contains(&follower) {
            return;
        }
        {
            let mut followers = r.followers.lock();
            let now = Instant::now();
            let p = followers.entry(follower).or_insert(FollowerProgress {
                fetch_offset,
                last_caught_up: now,
                last_fetch_leader_leo: 0,
                last_fetch_time: now,
            });
            p.fetch_offset = fetch_offset;
            if fetch_offset >= leader_leo {
                p.last_caught_up = now;
            } else if fetch_offset >= p.last_fetch_leader_leo {
                p.last_caught_up = p.last_caught_up.max(p.last_fetch_time);
            }
            p.last_fetch_leader_leo = leader_leo;
            p.last_fetch_time = now;
        }
        self.maybe_advance_high_watermark(r);
        // ISR expansion: an assigned follower is in sync again once it has reached both
        // the HW and the offset where this leader's epoch started (a new leader's HW
        // lags: a follower behind the epoch start may lack committed records).
        let meta = r.meta.read().clone();
        let Role::Leader { start_offset: epoch_start, .. } = r.log.role() else { return };
        if !meta.isr.contains(&follower) && fetch_offset >= r.log.offsets().high_watermark.max(epoch_start) {
            let mut isr = meta.isr.clone();
            isr.push(follower);
            if self.write_isr(r, isr) {
                info!(partition = %r.tp, follower, "follower caught up; adding it to the ISR");
            }
        }
    }

    /// Drops from the ISR of every partition this node leads the followers that have
    /// not caught up within `replica.lag.time.max.ms`.
    pub(crate) fn shrink_isrs(self: &Arc<Self>) {
        let replicas: Vec<Arc<Replica>> = self.replicas.read().values().cloned().collect();
        let now = Instant::now();
        let max = self.replication.lag_time_max;
        for r in replicas {
            let meta = r.meta.read().clone();
            if meta.leader != Some(self.id) {
                continue;
            }
            let leader_since = *r.leader_since.lock();
            let followers = r.followers.lock().clone();
            let lagging: Vec<NodeId> = meta
                .isr
                .iter()
                .copied()
                .filter(|f| *f != self.id)
                .filter(|f| match followers.get(f) {
                    Some(p) => now.duration_since(p.last_caught_up) > max,
                    None => now.duration_since(leader_since) > max,
                })
                .collect();
            if !lagging.is_empty() {
                let isr: Vec<NodeId> = meta.isr.iter().copied().filter(|id| !lagging.contains(id)).collect();
                if self.write_isr(&r, isr) {
                    warn!(partition = %r.tp, ?lagging, "followers fell behind; shrinking the ISR");
                }
            }
        }
    }

    /// Writes a new ISR for a partition this node leads, conditional on the state
    /// version it knows; applies it locally once written. One write at a time per
    /// partition (returns whether this call started one); a lost race is retried by
    /// whoever notices the condition again. Until the write is answered the HW also
    /// counts the members being added (see `Replica::pending_isr`).
    fn write_isr(&self, r: &Arc<Replica>, isr: Vec<NodeId>) -> bool {
        if r.isr_write_pending.swap(true, Ordering::AcqRel) {
            return false;
        }
        let base_version = r.meta.read().version;
        *r.pending_isr.lock() = Some((base_version, isr.clone()));
        let meta = r.meta.read().clone();
        let state = PartitionState {
            partition: r.tp.partition,
            replicas: meta.replicas.clone(),
            leader: meta.leader,
            leader_epoch: meta.leader_epoch,
            isr: isr.clone(),
            version: meta.version,
        };
        let coordinator = self.coordinator.clone();
        let r = r.clone();
        let Some(node) = self.self_ref() else {
            *r.pending_isr.lock() = None;
            r.isr_write_pending.store(false, Ordering::Release);
            return false;
        };
        tokio::spawn(async move {
            match coordinator.update_partition_state(&r.tp.topic, state).await {
                Ok(version) => {
                    {
                        let mut m = r.meta.write();
                        if m.leader_epoch == meta.leader_epoch && m.version <= meta.version {
                            m.isr = isr;
                            m.version = version;
                        }
                    }
                    *r.pending_isr.lock() = None;
                    node.maybe_advance_high_watermark(&r);
                }
                // Lost the race: nothing was written.
                Err(e) if e.code == fjord_protocol::ErrorCode::StaleVersion => {
                    *r.pending_isr.lock() = None;
                    debug!(partition = %r.tp, error = %e, "ISR change lost a race");
                }
                // Maybe written: keep counting the pending members until a newer snapshot.
                Err(e) => debug!(partition = %r.tp, error = %e, "ISR change not confirmed"),
            }
            r.isr_write_pending.store(false, Ordering::Release);
        });
        true
    }

    /// KIP-279's OffsetsForLeaderEpoch, answered by a leader.
    pub fn epoch_end_offset(&self, tp: &TopicPartition, epoch: u32) -> Result<EpochEndOffset> {
        let r = self.leader_replica(tp)?;
        Ok(match r.log.epoch_end_offset(epoch) {
            Some((e, end)) => EpochEndOffset { epoch: Some(e), end_offset: end },
            None => EpochEndOffset { epoch: None, end_offset: r.log.offsets().log_start },
        })
    }

    // ----- follower side -----------------------------------------------------------

    /// Starts a fetcher for every leader node this node follows partitions of.
    pub(crate) fn ensure_fetchers(self: &Arc<Self>) {
        let leaders: std::collections::HashSet<NodeId> =
            self.replicas.read().values().filter_map(|r| r.meta.read().leader).filter(|l| *l != self.id).collect();
        let mut fetchers = self.fetchers.lock();
        fetchers.retain(|_, task| !task.is_finished());
        for leader in leaders {
            fetchers.entry(leader).or_insert_with(|| tokio::spawn(run_fetcher(Arc::downgrade(self), leader)));
        }
    }

    fn followed_on(&self, leader: NodeId) -> Vec<Arc<Replica>> {
        self.replicas.read().values().filter(|r| r.meta.read().leader == Some(leader)).cloned().collect()
    }

    fn self_ref(&self) -> Option<Arc<StorageNode>> {
        self.weak_self.upgrade()
    }
}

/// Fetches from `leader` for every partition this node follows there, until there are
/// none left or the node is gone.
async fn run_fetcher(node: Weak<StorageNode>, leader: NodeId) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(n) = node.upgrade() else { return };
        let replicas = n.followed_on(leader);
        if replicas.is_empty() {
            return;
        }
        let Some(endpoint) = n.metadata.borrow().nodes.get(&leader).map(|i| i.endpoint.clone()) else {
            drop(n);
            tokio::time::sleep(backoff).await;
            continue;
        };
        let base = format!("http://{endpoint}");
        // (replica, the epoch its log is fenced and truncated for): fetches ask in
        // exactly that epoch, so a leader re-elected since refuses them.
        let mut fetchable = Vec::new();
        for r in replicas {
            let epoch = r.meta.read().leader_epoch;
            match r.log.role() {
                Role::Follower { epoch: e, truncated: true } if e == epoch => fetchable.push((r, epoch)),
                Role::Follower { epoch: e, truncated: false } if e == epoch => {
                    match truncate_for_epoch(&n, &base, &r, epoch).await {
                        Ok(()) => fetchable.push((r, epoch)),
                        Err(e) => debug!(partition = %r.tp, error = %e, "truncation by epoch not done yet"),
                    }
                }
                // The metadata moved on and the role has not caught up yet.
                _ => {}
            }
        }
        if fetchable.is_empty() {
            drop(n);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        }
        match fetch_once(&n, &base, &fetchable).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => {
                debug!(leader, error = %e, "replica fetch failed");
                drop(n);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// KIP-101/279: ask the leader where our latest epoch ends on its log and cut ours
/// there, then take replicated appends of `epoch`.
async fn truncate_for_epoch(n: &StorageNode, base: &str, r: &Arc<Replica>, epoch: u32) -> Result<()> {
    let history = r.log.epochs();
    let leo = r.log.offsets().log_end;
    let mut target = leo;
    if let Some(&(last_epoch, _)) = history.last() {
        let answer: EpochEndOffset = n
            .http
            .get(format!("{base}/internal/v1/epoch_end"))
            .query(&[("topic", r.tp.topic.as_str())])
            .query(&[("partition", r.tp.partition as u64), ("epoch", u64::from(last_epoch))])
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| FjordError::new(ErrorCode::LeaderNotAvailable, e.to_string()))?
            .error_for_status()
            .map_err(|e| FjordError::new(ErrorCode::LeaderNotAvailable, e.to_string()))?
            .json()
            .await
            .map_err(|e| internal("epoch end answer", e))?;
        target = answer.end_offset.min(leo);
        if let Some(leader_epoch) = answer.epoch {
            // Our records of epochs the leader never had diverge too.
            if let Some(&(_, start)) = history.iter().find(|(e, _)| *e > leader_epoch) {
                target = target.min(start);
            }
        }
    }
    let log = r.log.clone();
    let new_leo = tokio::task::spawn_blocking(move || log.truncate_for_epoch(epoch, target))
        .await
        .map_err(|e| internal("truncate task", e))?
        .map_err(FjordError::from)?;
    if new_leo < leo {
        info!(partition = %r.tp, from = leo, to = new_leo, "truncated a divergent suffix by leader epoch");
    }
    Ok(())
}

async fn fetch_once(n: &Arc<StorageNode>, base: &str, replicas: &[(Arc<Replica>, u32)]) -> Result<()> {
    let fetched_at: Vec<u64> = replicas.iter().map(|(r, _)| r.log.offsets().log_end).collect();
    let req = ReplicaFetchRequest {
        follower: n.id,
        max_wait_ms: n.replication.fetch_wait_max.as_millis() as u64,
        max_bytes: n.replication.fetch_max_bytes,
        partitions: replicas
            .iter()
            .zip(&fetched_at)
            .map(|((r, epoch), fetch_offset)| ReplicaFetchPartition {
                topic: r.tp.topic.clone(),
                partition: r.tp.partition,
                fetch_offset: *fetch_offset,
                leader_epoch: *epoch,
            })
            .collect(),
    };
    let body = n
        .http
        .post(format!("{base}/internal/v1/replica_fetch"))
        .json(&req)
        .timeout(n.replication.fetch_wait_max + Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| FjordError::new(ErrorCode::LeaderNotAvailable, e.to_string()))?
        .error_for_status()
        .map_err(|e| FjordError::new(ErrorCode::LeaderNotAvailable, e.to_string()))?
        .bytes()
        .await
        .map_err(|e| FjordError::new(ErrorCode::LeaderNotAvailable, e.to_string()))?;
    let answer = ReplicaFetchAnswer::decode(body)?;
    let mut frames = answer.batches.into_iter();
    for ((result, (r, epoch)), fetched_at) in answer.results.iter().zip(replicas).zip(fetched_at) {
        let epoch = *epoch;
        let mine: Vec<Bytes> = frames.by_ref().take(result.batches as usize).collect();
        if let Some(e) = &result.error {
            if e.code == ErrorCode::OffsetOutOfRange {
                // Our log is ahead of the leader's: truncate by epoch again.
                r.log.require_truncation(epoch);
            }
            debug!(partition = %r.tp, error = %e, "leader refused the fetch");
            continue;
        }
        if !mine.is_empty() {
            let log = r.log.clone();
            let mut from = fetched_at;
            tokio::task::spawn_blocking(move || -> Result<()> {
                for bytes in mine {
                    let batch =
                        Batch::parse(bytes).map_err(|e| FjordError::new(ErrorCode::CorruptBatch, e.to_string()))?;
                    // The leader has nothing in [from, base): a gap its compaction left.
                    let next = batch.next_offset();
                    // Fenced: refused if this replica's role moved on since it asked.
                    log.append_replicated(batch, epoch, from).map_err(FjordError::from)?;
                    from = next;
                }
                Ok(())
            })
            .await
            .map_err(|e| internal("append task", e))??;
        }
        // A follower's HW: the leader's, as far as its own log reaches.
        if matches!(r.log.role(), Role::Follower { epoch: e, truncated: true } if e == epoch) {
            let leo = r.log.offsets().log_end;
            r.log.advance_high_watermark(result.high_watermark.min(leo));
        }
    }
    Ok(())
}
