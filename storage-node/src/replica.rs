//! One partition replica on this node: its log, what the metadata says about it, and
//! what its leader knows of its followers — all mutable state under one lock.
//!
//! The lock is never held across I/O or an `.await`, and never while taking the log's
//! writer lock (a role change waits for an append in flight, which must not wait for
//! this lock in turn): callers copy what they need, release, then act.

use fjord_coordinator::TopicConfig;
use fjord_log::{AppendQueue, CommitObserver, PartitionLog, Role};
use fjord_protocol::{NodeId, TopicPartition};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the metadata says about one replica.
#[derive(Debug, Clone)]
pub struct ReplicaMeta {
    pub leader: Option<NodeId>,
    pub leader_epoch: u32,
    pub isr: Vec<NodeId>,
    pub replicas: Vec<NodeId>,
    /// Version of the partition state this was read from (for conditional ISR writes).
    pub version: i32,
    pub config: TopicConfig,
}

/// What a leader knows of one follower.
#[derive(Debug, Clone, Copy)]
pub struct FollowerProgress {
    /// The follower has every record below this.
    pub fetch_offset: u64,
    /// Last time the follower had everything the leader had.
    pub last_caught_up: Instant,
    /// The leader's LEO and the time at the follower's previous fetch (Kafka's
    /// `lastFetchLeaderLogEndOffset`): reaching it counts as caught up as of then, so a
    /// follower keeping pace under steady writes stays in the ISR.
    pub last_fetch_leader_leo: u64,
    pub last_fetch_time: Instant,
}

/// The state a compaction pass ran over: another pass can only do more once the HW,
/// the log start or the settings change, or `due_ms` (a tombstone expiring, a batch
/// leaving `min.compaction.lag.ms`) passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionMark {
    pub high_watermark: u64,
    pub log_start: u64,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub due_ms: Option<i64>,
}

impl CompactionMark {
    /// Whether a pass now, over a log in state `now_mark` at `now_ms`, can be skipped.
    pub fn covers(&self, now_mark: &CompactionMark, now_ms: i64) -> bool {
        CompactionMark { due_ms: None, ..*self } == *now_mark && self.due_ms.is_none_or(|due| now_ms < due)
    }
}

/// A leader's ISR change being written to the metadata.
#[derive(Debug, Clone, Default)]
pub struct IsrChange {
    /// A write is in flight; one at a time per partition.
    pub in_flight: bool,
    /// The ISR being written and the state version it was based on, until the write is
    /// answered or, after an ambiguous failure (it may have been applied), until a
    /// snapshot newer than that version shows the truth. The HW counts its members too
    /// ("maximal ISR", KIP-497): once the metadata may hold an expanded ISR, a joining
    /// follower may be elected leader, so records it lacks must not be committed.
    pub pending: Option<(i32, Vec<NodeId>)>,
}

/// Everything about a replica that changes, under [`Replica::state`].
#[derive(Debug, Clone)]
pub struct ReplicaState {
    pub meta: ReplicaMeta,
    /// Leader side: progress of each follower, reset on every leadership change.
    pub followers: HashMap<NodeId, FollowerProgress>,
    /// When this node last became the leader (ISR shrink grace for silent followers).
    pub leader_since: Instant,
    pub isr_change: IsrChange,
    /// What the last completed compaction pass saw, so an unchanged log is not scanned
    /// again on every tick.
    pub compacted: Option<CompactionMark>,
}

pub struct Replica {
    pub tp: TopicPartition,
    /// The topic this replica belongs to: a re-created topic of the same name has another.
    pub topic_id: String,
    pub log: Arc<PartitionLog>,
    /// Produce appends waiting for the writer (group commit).
    pub appends: Arc<AppendQueue>,
    pub state: Mutex<ReplicaState>,
}

impl Replica {
    /// A replica over `log`; `observer` hears of every write of its append queue.
    pub fn new(
        tp: TopicPartition,
        topic_id: String,
        log: PartitionLog,
        meta: ReplicaMeta,
        observer: Option<CommitObserver>,
    ) -> Self {
        let log = Arc::new(log);
        let appends = match observer {
            Some(o) => AppendQueue::with_observer(log.clone(), o),
            None => AppendQueue::new(log.clone()),
        };
        Self {
            tp,
            topic_id,
            appends,
            log,
            state: Mutex::new(ReplicaState {
                meta,
                followers: HashMap::new(),
                leader_since: Instant::now(),
                isr_change: IsrChange::default(),
                compacted: None,
            }),
        }
    }

    pub fn meta(&self) -> ReplicaMeta {
        self.state.lock().meta.clone()
    }

    /// The leader epoch, if `me` leads this replica.
    pub fn led_by(&self, me: NodeId) -> Option<u32> {
        let s = self.state.lock();
        (s.meta.leader == Some(me)).then_some(s.meta.leader_epoch)
    }

    /// Applies newer metadata. A snapshot older than what this node already applied (its
    /// own ISR write, seen before the snapshot) only updates the config. Returns whether
    /// leadership changed; the caller then sets the log's role ([`set_role`]), outside
    /// this replica's lock.
    pub fn apply_meta(&self, rm: ReplicaMeta) -> bool {
        let mut s = self.state.lock();
        if rm.version < s.meta.version && rm.leader_epoch == s.meta.leader_epoch {
            s.meta.config = rm.config;
            return false;
        }
        if s.isr_change.pending.as_ref().is_some_and(|(base, _)| rm.version > *base) {
            s.isr_change.pending = None;
        }
        let changed = rm.leader != s.meta.leader || rm.leader_epoch != s.meta.leader_epoch;
        if changed {
            s.followers.clear();
            s.isr_change.pending = None;
            s.leader_since = Instant::now();
        }
        s.meta = rm;
        changed
    }

    /// The HW a leader may publish: the least LEO over the ISR (its own included) and
    /// over any member an ISR write in flight is adding; `None` when `me` does not lead
    /// or a member has not fetched since this node became leader (as in Kafka).
    pub fn leader_high_watermark(&self, me: NodeId) -> Option<u64> {
        let s = self.state.lock();
        if s.meta.leader != Some(me) {
            return None;
        }
        let mut hw = self.log.offsets().log_end;
        let pending = s.isr_change.pending.as_ref().map(|(_, isr)| isr.as_slice()).unwrap_or_default();
        let maximal = s.meta.isr.iter().chain(pending.iter().filter(|id| !s.meta.isr.contains(id)));
        for f in maximal.filter(|id| **id != me) {
            hw = hw.min(s.followers.get(f)?.fetch_offset);
        }
        Some(hw)
    }

    /// Raises the log's HW to [`leader_high_watermark`](Self::leader_high_watermark).
    pub fn advance_leader_high_watermark(&self, me: NodeId) {
        if let Some(hw) = self.leader_high_watermark(me) {
            self.log.advance_high_watermark(hw);
        }
    }

    /// Records a follower's fetch at `fetch_offset` while this leader's LEO is
    /// `leader_leo`; ignored for a node not among the replicas.
    pub fn record_follower(&self, follower: NodeId, fetch_offset: u64, leader_leo: u64) {
        let mut s = self.state.lock();
        if !s.meta.replicas.contains(&follower) {
            return;
        }
        let now = Instant::now();
        let p = s.followers.entry(follower).or_insert(FollowerProgress {
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

    /// ISR expansion: the ISR with `follower` added, if it is an assigned replica out of
    /// the ISR that has reached both the HW and the offset where this leader's epoch
    /// started (a new leader's HW lags: a follower behind the epoch start may lack
    /// committed records).
    pub fn expanded_isr(&self, follower: NodeId, fetch_offset: u64) -> Option<Vec<NodeId>> {
        let Role::Leader { start_offset: epoch_start, .. } = self.log.role() else { return None };
        let hw = self.log.offsets().high_watermark;
        let s = self.state.lock();
        let joins = s.meta.replicas.contains(&follower)
            && !s.meta.isr.contains(&follower)
            && fetch_offset >= hw.max(epoch_start);
        joins.then(|| {
            let mut isr = s.meta.isr.clone();
            isr.push(follower);
            isr
        })
    }

    /// ISR shrink: the ISR members other than `me` that have not caught up within
    /// `lag_time_max` (or, never seen, since this node became leader); empty when `me`
    /// does not lead.
    pub fn lagging_followers(&self, me: NodeId, lag_time_max: Duration, now: Instant) -> Vec<NodeId> {
        let s = self.state.lock();
        if s.meta.leader != Some(me) {
            return Vec::new();
        }
        s.meta
            .isr
            .iter()
            .copied()
            .filter(|f| *f != me)
            .filter(|f| match s.followers.get(f) {
                Some(p) => now.duration_since(p.last_caught_up) > lag_time_max,
                None => now.duration_since(s.leader_since) > lag_time_max,
            })
            .collect()
    }
}

/// The log's write fence for what the metadata says: leader, follower (to truncate for
/// the epoch first) or offline. Waits for an append in flight.
pub fn set_role(log: &PartitionLog, me: NodeId, leader: Option<NodeId>, epoch: u32) {
    match leader {
        Some(l) if l == me => log.become_leader(epoch),
        Some(_) => log.become_follower(epoch),
        None => log.go_offline(),
    }
    debug_assert!(!matches!(log.role(), Role::Unfenced));
}
