//! The consumer-group coordinator of a storage node.
//!
//! This node coordinates the groups whose partition of [`OFFSETS_TOPIC`] it leads. Each
//! such partition is a *shard*: the state of its groups in memory, rebuilt from the
//! partition's log whenever this node starts leading it in a new leader epoch, so
//! committed offsets and memberships survive a coordinator failover. Every change of
//! persistent state is written to that partition with `acks=all` before it is answered;
//! a write that fails leaves the shard to be re-read from the log.
//!
//! Hand-over follows KIP-848: a rebalance changes members' *targets*; a partition whose
//! target moved stays owned by its old member until that member's next poll releases it
//! (after committing, with auto-commit), and the new member takes it at its own next
//! poll. Commits are fenced by ownership and by the generation the member last polled in.
//! The rules are in [`super::state`]; this module serves one call per request kind.

use super::host::GroupHost;
use super::state::{self, check_commit, describe, group_key, join_member, offset_key, Group, GroupRecord, Write};
use fjord_protocol::group::{
    CommitOffset, GroupRequest, GroupResponse, GroupSummary, JoinGroup, PartitionOffset, PollPlan, OFFSETS_TOPIC,
};
use fjord_protocol::{Acks, BatchBuilder, ErrorCode, FjordError, ProduceRequest, Result, TopicPartition};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;
use tracing::{info, warn};

/// How long a state write may wait for replication.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct GroupCoordinator {
    shards: parking_lot::Mutex<HashMap<u32, Arc<AsyncMutex<Shard>>>>,
    /// Each shard's groups' figures as of its last call, for metrics: read without
    /// waiting for a shard, and never missing a group because its shard is busy.
    figures: parking_lot::Mutex<HashMap<u32, BTreeMap<String, GroupFigures>>>,
    /// How long an empty group's offsets are kept (Kafka's `offsets.retention.minutes`).
    offsets_retention_ms: i64,
}

/// One coordinated group's figures (see [`GroupCoordinator::figures`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFigures {
    pub group: String,
    pub members: usize,
    pub generation: u32,
    /// Committed offsets.
    pub offsets: Vec<(TopicPartition, u64)>,
}

/// Kafka's default `offsets.retention.minutes`: 7 days.
pub const DEFAULT_OFFSETS_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for GroupCoordinator {
    fn default() -> Self {
        Self::new(DEFAULT_OFFSETS_RETENTION)
    }
}

#[derive(Default)]
struct Shard {
    /// The topic id and leader epoch the state was loaded in; `None`: (re)load first.
    loaded: Option<(String, u32)>,
    groups: BTreeMap<String, Group>,
}

/// One call being served: the host, the shard's partition and the shard, locked.
struct Call<'a> {
    host: &'a dyn GroupHost,
    partition: u32,
    shard: OwnedMutexGuard<Shard>,
    now: Instant,
}

fn internal(what: &str, e: impl std::fmt::Display) -> FjordError {
    FjordError::new(ErrorCode::Internal, format!("{what}: {e}"))
}

impl GroupCoordinator {
    pub fn new(offsets_retention: Duration) -> Self {
        let offsets_retention_ms = i64::try_from(offsets_retention.as_millis()).unwrap_or(i64::MAX);
        Self { shards: parking_lot::Mutex::default(), figures: parking_lot::Mutex::default(), offsets_retention_ms }
    }

    /// The groups this node coordinates, for metrics: as each was after the last call
    /// that touched it (a call in progress is not waited for).
    pub fn figures(&self) -> Vec<GroupFigures> {
        let mut out: Vec<GroupFigures> = self.figures.lock().values().flat_map(|g| g.values().cloned()).collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }

    /// After a call on `partition`'s shard: the figures of `group` (or, with `None`,
    /// of all its groups) as they are now.
    fn note_figures(&self, partition: u32, shard: &Shard, group: Option<&str>) {
        let figures = |name: &str, g: &Group| GroupFigures {
            group: name.to_owned(),
            members: g.members.len(),
            generation: g.generation,
            offsets: g.offsets.iter().map(|(tp, c)| (tp.clone(), c.offset)).collect(),
        };
        let mut all = self.figures.lock();
        let known = all.entry(partition).or_default();
        match group {
            Some(name) => match shard.groups.get(name) {
                Some(g) => {
                    known.insert(name.to_owned(), figures(name, g));
                }
                None => {
                    known.remove(name);
                }
            },
            None => *known = shard.groups.iter().map(|(name, g)| (name.clone(), figures(name, g))).collect(),
        }
    }

    /// Serves one group call on this node, if it coordinates the group.
    pub async fn handle(&self, host: &dyn GroupHost, req: GroupRequest) -> Result<GroupResponse> {
        let partition = shard_of(host, &req)?;
        let shard = self.lock_shard(host, partition).await?;
        let mut call = Call { host, partition, shard, now: Instant::now() };
        // Calls that can change a group: its figures are noted after them.
        let changes = match &req {
            GroupRequest::List { .. } | GroupRequest::Describe { .. } => None,
            other => other.group().map(str::to_owned),
        };
        let answer = call.serve(req).await;
        if let Some(group) = changes {
            self.note_figures(partition, &call.shard, Some(&group));
        }
        answer
    }

    /// Evicts members whose session expired and rebalances groups whose subscribed
    /// topics changed partition count, in every shard this node leads; forgets the
    /// shards it no longer leads.
    pub async fn sweep(&self, host: &dyn GroupHost) {
        let meta = host.metadata();
        let Some(topic) = meta.topic(OFFSETS_TOPIC) else { return };
        let me = host.node_id();
        let led: Vec<u32> = topic.partitions.iter().filter(|p| p.leader == Some(me)).map(|p| p.partition).collect();
        // Shards this node no longer leads free their memory; leading one again reloads it.
        self.shards.lock().retain(|p, _| led.contains(p));
        self.figures.lock().retain(|p, _| led.contains(p));
        for partition in led {
            let Ok(shard) = self.lock_shard(host, partition).await else { continue };
            let mut call = Call { host, partition, shard, now: Instant::now() };
            call.sweep(self.offsets_retention_ms).await;
            self.note_figures(partition, &call.shard, None);
        }
    }
}

impl Call<'_> {
    /// Serves one request on the locked shard.
    async fn serve(&mut self, req: GroupRequest) -> Result<GroupResponse> {
        let call = self;
        match req {
            GroupRequest::List { .. } => Ok(call.list()),
            GroupRequest::Describe { group } => call.describe(&group),
            GroupRequest::Join(join) => call.join(join).await,
            GroupRequest::Leave { group, member_id } => call.leave(&group, &member_id).await,
            GroupRequest::PollBegin { group, member_id } => call.poll_begin(&group, &member_id).await,
            GroupRequest::PollEnd { group, member_id, generation: _, positions } => {
                call.poll_end(&group, &member_id, positions)
            }
            GroupRequest::Commit { group, member_id, generation, offsets } => {
                call.commit(&group, member_id.as_deref(), generation, offsets).await
            }
            GroupRequest::Seek { group, offsets } => call.seek(&group, offsets).await,
            GroupRequest::Delete { group } => call.delete(&group).await,
        }
    }
}

impl GroupCoordinator {
    /// The shard of `partition`, locked and loaded for the current leader epoch; an
    /// error when this node does not lead the partition.
    async fn lock_shard(&self, host: &dyn GroupHost, partition: u32) -> Result<OwnedMutexGuard<Shard>> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
        let led = host.led_log(&tp)?;
        let cell = self.shards.lock().entry(partition).or_default().clone();
        let mut shard = cell.lock_owned().await;
        let current = (led.topic_id, led.leader_epoch);
        if shard.loaded.as_ref() != Some(&current) {
            let log = led.log;
            let started = std::time::Instant::now();
            let groups = tokio::task::spawn_blocking(move || state::load(&log))
                .await
                .map_err(|e| internal("loading groups", e))??;
            info!(
                partition = %tp,
                epoch = current.1,
                groups = groups.len(),
                ms = started.elapsed().as_millis() as u64,
                "loaded consumer groups"
            );
            shard.groups = groups;
            shard.loaded = Some(current);
            self.note_figures(partition, &shard, None);
        }
        Ok(shard)
    }
}

/// The partition of the offsets topic that serves `req`, checked against the metadata.
fn shard_of(host: &dyn GroupHost, req: &GroupRequest) -> Result<u32> {
    let meta = host.metadata();
    let Some(topic) = meta.topic(OFFSETS_TOPIC) else {
        return Err(FjordError::new(
            ErrorCode::LeaderNotAvailable,
            format!("`{OFFSETS_TOPIC}` does not exist on this node yet; retry shortly"),
        ));
    };
    let count = topic.partitions.len() as u32;
    let partition = req.partition(count);
    if partition >= count {
        return Err(FjordError::new(
            ErrorCode::UnknownPartition,
            format!("`{OFFSETS_TOPIC}` has {count} partitions; there is no partition {partition}"),
        ));
    }
    Ok(partition)
}

impl Call<'_> {
    fn list(&self) -> GroupResponse {
        GroupResponse::Listed {
            groups: self
                .shard
                .groups
                .iter()
                .map(|(name, g)| GroupSummary {
                    group: name.clone(),
                    state: g.state(),
                    members: g.members.len() as u32,
                })
                .collect(),
        }
    }

    fn describe(&self, group: &str) -> Result<GroupResponse> {
        let g = self.shard.groups.get(group).ok_or_else(|| state::unknown_group(group))?;
        Ok(GroupResponse::Described(describe(group, g, self.now)))
    }

    /// A copy of a group that has `member_id` as a member, to change and [`store`](Self::store).
    fn member_group(&self, group: &str, member_id: &str) -> Result<Group> {
        self.shard
            .groups
            .get(group)
            .filter(|g| g.members.contains_key(member_id))
            .cloned()
            .ok_or_else(|| state::unknown_member(group, member_id))
    }

    async fn join(&mut self, join: JoinGroup) -> Result<GroupResponse> {
        let mut g = self.shard.groups.get(&join.group).cloned().unwrap_or_default();
        let before = g.record();
        let member_id = join_member(&mut g, &join, &self.host.metadata(), self.now)?;
        g.hand_over(&member_id);
        let membership = g.membership(&member_id);
        info!(group = %join.group, member = %member_id, generation = g.generation, "member joined");
        self.store(&join.group, g, &before, Vec::new()).await?;
        Ok(GroupResponse::Joined(membership))
    }

    async fn leave(&mut self, group: &str, member_id: &str) -> Result<GroupResponse> {
        let mut g = self.member_group(group, member_id)?;
        let before = g.record();
        let writes = g.auto_commit(group, member_id);
        g.remove_member(member_id, &self.host.metadata());
        info!(group = %group, member = %member_id, generation = g.generation, "member left");
        self.store(group, g, &before, writes).await?;
        Ok(GroupResponse::Done)
    }

    /// The first half of a poll: heartbeat, auto-commit, hand-over, where to read.
    async fn poll_begin(&mut self, group: &str, member_id: &str) -> Result<GroupResponse> {
        let mut g = self.member_group(group, member_id)?;
        let before = g.record();
        let writes = g.auto_commit(group, member_id);
        g.hand_over(member_id);
        let generation = g.generation;
        let m = g.members.get(member_id).ok_or_else(|| state::unknown_member(group, member_id))?;
        let positions = g
            .owned_by(member_id)
            .into_iter()
            .map(|tp| {
                let at = m.positions.get(&tp).copied().or_else(|| g.offsets.get(&tp).map(|c| c.offset));
                (tp, at)
            })
            .collect();
        let plan = PollPlan {
            session_timeout_ms: m.config.session_timeout_ms,
            auto_offset_reset: m.config.auto_offset_reset,
            positions,
            membership: g.membership(member_id),
        };
        if let Some(m) = g.members.get_mut(member_id) {
            m.last_seen = self.now;
            m.polled_generation = generation;
            m.sought.clear();
        }
        self.store(group, g, &before, writes).await?;
        Ok(GroupResponse::Poll(plan))
    }

    /// The second half of a poll: where the member is now (memory only). A partition
    /// sought since the poll began keeps the sought position.
    fn poll_end(&mut self, group: &str, member_id: &str, positions: Vec<PartitionOffset>) -> Result<GroupResponse> {
        let now = self.now;
        let g = self.shard.groups.get_mut(group).ok_or_else(|| state::unknown_member(group, member_id))?;
        let owned: BTreeSet<TopicPartition> = g.owned_by(member_id).into_iter().collect();
        let m = g.members.get_mut(member_id).ok_or_else(|| state::unknown_member(group, member_id))?;
        m.last_seen = now;
        for p in positions {
            let tp = TopicPartition::new(p.topic, p.partition);
            if owned.contains(&tp) && !m.sought.contains(&tp) {
                m.positions.insert(tp, p.offset);
            }
        }
        Ok(GroupResponse::Done)
    }

    async fn commit(
        &mut self,
        group: &str,
        member_id: Option<&str>,
        generation: Option<u32>,
        offsets: Vec<CommitOffset>,
    ) -> Result<GroupResponse> {
        let mut g = self.shard.groups.get(group).cloned().unwrap_or_default();
        check_commit(&g, group, member_id, generation, &offsets)?;
        let before = g.record();
        let writes = g.commit(
            group,
            offsets.into_iter().map(|o| (TopicPartition::new(o.topic, o.partition), o.offset, o.metadata)),
        );
        self.store(group, g, &before, writes).await?;
        Ok(GroupResponse::Done)
    }

    /// Sets committed offsets, and the positions of the members owning the partitions.
    async fn seek(&mut self, group: &str, offsets: Vec<PartitionOffset>) -> Result<GroupResponse> {
        let mut g = self.shard.groups.get(group).cloned().unwrap_or_default();
        let before = g.record();
        for p in &offsets {
            let tp = TopicPartition::new(p.topic.clone(), p.partition);
            if let Some(owner) = g.owners.get(&tp).cloned() {
                if let Some(m) = g.members.get_mut(&owner) {
                    m.positions.insert(tp.clone(), p.offset);
                    m.sought.insert(tp);
                }
            }
        }
        let writes =
            g.commit(group, offsets.into_iter().map(|o| (TopicPartition::new(o.topic, o.partition), o.offset, None)));
        self.store(group, g, &before, writes).await?;
        Ok(GroupResponse::Done)
    }

    async fn delete(&mut self, group: &str) -> Result<GroupResponse> {
        let g = self.shard.groups.get(group).ok_or_else(|| state::unknown_group(group))?;
        if !g.members.is_empty() {
            return Err(FjordError::new(
                ErrorCode::GroupNotEmpty,
                format!("group `{group}` has {} member(s); it can be deleted once it has none", g.members.len()),
            ));
        }
        let mut writes: Vec<Write> = vec![(group_key(group), None)];
        writes.extend(g.offsets.keys().map(|tp| (offset_key(group, tp), None)));
        self.write(writes).await?;
        self.shard.groups.remove(group);
        info!(group = %group, "group deleted");
        Ok(GroupResponse::Done)
    }

    /// Evictions and rebalances due in this shard; only groups with something to do
    /// are copied and written.
    async fn sweep(&mut self, offsets_retention_ms: i64) {
        self.expire_offsets(offsets_retention_ms).await;
        let meta = self.host.metadata();
        let now = self.now;
        let due: Vec<String> = self
            .shard
            .groups
            .iter()
            .filter(|(_, g)| !g.expired(now).is_empty() || g.topics_changed(&meta))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(mut g) = self.shard.groups.get(&name).cloned() else { continue };
            let before = g.record();
            for member_id in g.expired(now) {
                info!(group = %name, member = %member_id, "session expired; evicting member");
                g.remove_member(&member_id, &meta);
            }
            if g.topics_changed(&meta) {
                info!(group = %name, "subscribed topics changed; rebalancing");
                g.rebalance(&meta);
            }
            if let Err(e) = self.store(&name, g, &before, Vec::new()).await {
                warn!(group = %name, error = %e, "cannot write group state; reloading it");
                break;
            }
        }
    }

    /// Removes the empty groups whose offsets expired: tombstones for the group record
    /// and every committed offset, as a delete writes them.
    async fn expire_offsets(&mut self, retention_ms: i64) {
        let now_ms = fjord_protocol::now_ms();
        let expired: Vec<String> = self
            .shard
            .groups
            .iter()
            .filter(|(_, g)| g.offsets_expired(now_ms, retention_ms))
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            let Some(g) = self.shard.groups.get(&name) else { continue };
            let offsets = g.offsets.len();
            let mut writes: Vec<Write> = vec![(group_key(&name), None)];
            writes.extend(g.offsets.keys().map(|tp| (offset_key(&name, tp), None)));
            if let Err(e) = self.write(writes).await {
                warn!(group = %name, error = %e, "cannot expire the group's offsets; retrying on the next sweep");
                return;
            }
            self.shard.groups.remove(&name);
            info!(group = %name, offsets, "empty group's offsets expired (offsets_retention_ms)");
        }
    }

    /// Writes `writes` plus the group's record when it differs from `before`, then
    /// installs `g`. On a failed write the shard is re-read from the log next time.
    async fn store(&mut self, group: &str, g: Group, before: &GroupRecord, mut writes: Vec<Write>) -> Result<()> {
        let record = g.record();
        if record != *before {
            writes
                .push((group_key(group), Some(serde_json::to_vec(&record).map_err(|e| internal("group record", e))?)));
        }
        if !writes.is_empty() {
            self.write(writes).await?;
        }
        self.shard.groups.insert(group.to_owned(), g);
        Ok(())
    }

    /// Appends `writes` as one batch to the shard's partition and waits for the ISR; on
    /// a failure the shard is re-read from the log next time.
    async fn write(&mut self, writes: Vec<Write>) -> Result<()> {
        let written = append(self.host, self.partition, &writes).await;
        if written.is_err() {
            self.shard.loaded = None;
        }
        written
    }
}

async fn append(host: &dyn GroupHost, partition: u32, writes: &[Write]) -> Result<()> {
    let now = fjord_protocol::now_ms();
    let mut b = BatchBuilder::default();
    for (key, value) in writes {
        b.push_parts(now, Some(key), value.as_deref(), std::iter::empty()).map_err(|e| internal("group batch", e))?;
    }
    let batch = b.finish().map_err(|e| internal("group batch", e))?;
    let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
    host.append(ProduceRequest { tp, batch, acks: Acks::All, timeout: WRITE_TIMEOUT, expected_offset: None }).await?;
    Ok(())
}
