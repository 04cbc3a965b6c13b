//! Replication, leader side (Kafka's way; ARCHITECTURE.md, "Replication").
//!
//! Followers pull. Each replica fetch says how far the follower has got (its fetch
//! offset = its LEO); the leader records that, raises the HW to the least LEO over the
//! ISR, adds a follower that has caught up back into the ISR, and — on a timer — drops
//! ISR members that have not caught up for `replica.lag.time.max.ms`. ISR changes are
//! conditional writes of the partition state (on its version), so a deposed leader's
//! write loses.

use crate::counters::NodeMetrics;
use crate::replica::Replica;
use crate::replicas::Replicas;
use fjord_coordinator::{Coordinator, PartitionState};
use fjord_protocol::{ErrorCode, ErrorDetails, FjordError, NodeId, Result, TopicPartition};
use fjord_rpc::{EpochEndOffset, ReplicaFetchAnswer, ReplicaFetchPartition, ReplicaFetchRequest, ReplicaFetchResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Longest a replica fetch may wait, whatever the follower asks.
const MAX_REPLICA_FETCH_WAIT: Duration = Duration::from_secs(30);

pub struct LeaderSide {
    replicas: Arc<Replicas>,
    coordinator: Arc<dyn Coordinator>,
    /// Bumped on every leader append: wakes long-polling replica fetches.
    appended: watch::Sender<u64>,
    lag_time_max: Duration,
}

impl LeaderSide {
    pub fn new(replicas: Arc<Replicas>, coordinator: Arc<dyn Coordinator>, lag_time_max: Duration) -> Self {
        Self { replicas, coordinator, appended: watch::channel(0).0, lag_time_max }
    }

    /// Kafka's `replica.lag.time.max.ms`.
    pub fn lag_time_max(&self) -> Duration {
        self.lag_time_max
    }

    /// After an append as leader: wakes the replica fetches waiting for data and raises
    /// the HW (a leader alone in its ISR commits at once).
    pub fn appended(&self, r: &Replica) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
        r.advance_leader_high_watermark(self.replicas.me());
    }

    /// Serves a follower's fetch: records its progress for every partition, then
    /// answers with whatever is new (up to each LEO), waiting up to `max_wait_ms` when
    /// nothing is.
    pub async fn replica_fetch(&self, req: ReplicaFetchRequest) -> ReplicaFetchAnswer {
        let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms).min(MAX_REPLICA_FETCH_WAIT);
        let mut appended = self.appended.subscribe();
        loop {
            appended.borrow_and_update();
            let ready: Vec<_> = req.partitions.iter().map(|p| self.check_follower_fetch(req.follower, p)).collect();
            let any_data = ready.iter().any(|c| matches!(c, Ok((_, true))));
            if any_data
                || Instant::now() >= deadline
                || !matches!(tokio::time::timeout_at(deadline, appended.changed()).await, Ok(Ok(())))
            {
                return self.answer_replica_fetch(&req, ready).await;
            }
        }
    }

    /// Validates one partition of a replica fetch and records the follower's progress.
    /// Returns the replica and whether it has records for the follower.
    fn check_follower_fetch(&self, follower: NodeId, p: &ReplicaFetchPartition) -> Result<(Arc<Replica>, bool)> {
        let tp = TopicPartition::new(&p.topic, p.partition);
        let r = self.replicas.leader(&tp)?;
        let epoch = r.state.lock().meta.leader_epoch;
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
            let where_ = ErrorDetails {
                log_start_offset: Some(o.log_start),
                log_end_offset: Some(o.log_end),
                ..Default::default()
            };
            return Err(FjordError::new(
                ErrorCode::OffsetOutOfRange,
                format!("{tp}: follower fetch offset {} outside [{}, {}]", p.fetch_offset, o.log_start, o.log_end),
            )
            .with_details(where_));
        }
        self.record_follower(&r, follower, p.fetch_offset, o.log_end);
        Ok((r, p.fetch_offset < o.log_end))
    }

    async fn answer_replica_fetch(
        &self,
        req: &ReplicaFetchRequest,
        ready: Vec<Result<(Arc<Replica>, bool)>>,
    ) -> ReplicaFetchAnswer {
        let mut answer = ReplicaFetchAnswer::default();
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
                        let took = self.replicas.metrics().fetch_follower.clone();
                        let read = tokio::task::spawn_blocking(move || {
                            NodeMetrics::time(&took, || log.read(offset, max, u64::MAX))
                        })
                        .await;
                        match read.map(|read| self.replicas.checked(&r.tp, read)) {
                            Ok(Ok(read)) => {
                                result.batches = read.len() as u32;
                                answer.batches.extend(read);
                            }
                            Ok(Err(e)) => result.error = Some(e.into()),
                            Err(e) => {
                                result.error = Some(FjordError::new(ErrorCode::Internal, format!("read task: {e}")))
                            }
                        }
                    }
                }
            }
            answer.results.push(result);
        }
        answer
    }

    fn record_follower(&self, r: &Arc<Replica>, follower: NodeId, fetch_offset: u64, leader_leo: u64) {
        r.record_follower(follower, fetch_offset, leader_leo);
        r.advance_leader_high_watermark(self.replicas.me());
        let Some(isr) = r.expanded_isr(follower, fetch_offset) else { return };
        // Only a live node joins (Kafka's KIP-841): a restarted follower fetches before
        // its registration is seen, and the controller would take an unregistered node
        // straight out of the ISR again — after a client may have counted on it. Nor
        // does one whose replica of this partition is offline (damaged, not yet cut).
        let live = (self.replicas.metadata().nodes.get(&follower))
            .is_some_and(|n| !n.shutting_down && n.serves(&r.tp.topic, r.tp.partition));
        if live && self.write_isr(r, isr) {
            info!(partition = %r.tp, follower, "follower caught up; adding it to the ISR");
        }
    }

    /// Drops from the ISR of every partition this node leads the followers that have
    /// not caught up within `replica.lag.time.max.ms`.
    pub fn shrink_isrs(&self) {
        let now = Instant::now();
        for r in self.replicas.all() {
            let lagging = r.lagging_followers(self.replicas.me(), self.lag_time_max, now);
            if lagging.is_empty() {
                continue;
            }
            let isr: Vec<NodeId> = r.meta().isr.into_iter().filter(|id| !lagging.contains(id)).collect();
            if self.write_isr(&r, isr) {
                warn!(partition = %r.tp, ?lagging, "followers fell behind; shrinking the ISR");
            }
        }
    }

    /// Writes a new ISR for a partition this node leads, conditional on the state
    /// version it knows; applies it locally once written. One write at a time per
    /// partition (returns whether this call started one); a lost race is retried by
    /// whoever notices the condition again. Until the write is answered the HW also
    /// counts the members being added (see [`IsrChange`](crate::replica::IsrChange)).
    fn write_isr(&self, r: &Arc<Replica>, isr: Vec<NodeId>) -> bool {
        let meta = {
            let mut s = r.state.lock();
            if s.isr_change.in_flight {
                return false;
            }
            s.isr_change.in_flight = true;
            s.isr_change.pending = Some((s.meta.version, isr.clone()));
            s.meta.clone()
        };
        let state = PartitionState {
            partition: r.tp.partition,
            replicas: meta.replicas.clone(),
            leader: meta.leader,
            leader_epoch: meta.leader_epoch,
            isr: isr.clone(),
            version: meta.version,
        };
        let coordinator = self.coordinator.clone();
        let (r, me) = (r.clone(), self.replicas.me());
        let metrics = self.replicas.metrics().clone();
        let grows = isr.len() > meta.isr.len();
        tokio::spawn(async move {
            let written = coordinator.update_partition_state(&r.tp.topic, state).await;
            if written.is_ok() {
                if grows {
                    metrics.isr_expands.inc();
                } else {
                    metrics.isr_shrinks.inc();
                }
            }
            {
                let mut s = r.state.lock();
                match &written {
                    Ok(version) => {
                        if s.meta.leader_epoch == meta.leader_epoch && s.meta.version <= meta.version {
                            s.meta.isr = isr;
                            s.meta.version = *version;
                        }
                        s.isr_change.pending = None;
                    }
                    // Lost the race: nothing was written.
                    Err(e) if e.code == ErrorCode::StaleVersion => s.isr_change.pending = None,
                    // Maybe written: keep counting the pending members until a newer snapshot.
                    Err(_) => {}
                }
                s.isr_change.in_flight = false;
            }
            match written {
                Ok(_) => r.advance_leader_high_watermark(me),
                Err(e) if e.code == ErrorCode::StaleVersion => {
                    debug!(partition = %r.tp, error = %e, "ISR change lost a race")
                }
                Err(e) => debug!(partition = %r.tp, error = %e, "ISR change not confirmed"),
            }
        });
        true
    }

    /// KIP-279's OffsetsForLeaderEpoch, answered by a leader.
    pub fn epoch_end_offset(&self, tp: &TopicPartition, epoch: u32) -> Result<EpochEndOffset> {
        let r = self.replicas.leader(tp)?;
        Ok(match r.log.epoch_end_offset(epoch) {
            Some((e, end)) => EpochEndOffset { epoch: Some(e), end_offset: end },
            None => EpochEndOffset { epoch: None, end_offset: r.log.offsets().log_start },
        })
    }
}
