//! The consumer-group coordinator of a storage node.
//!
//! This node coordinates the groups whose partition of [`OFFSETS_TOPIC`] it leads. Each
//! such partition is a *shard*: the state of its groups in memory, rebuilt from the
//! partition's log whenever this node starts leading it in a new leader epoch, so
//! committed offsets and memberships survive a coordinator failover. Every change of
//! persistent state is written to that partition with `acks=all` before it is
//! answered; a write that fails leaves the shard to be re-read from the log.
//!
//! Records of the offsets topic (keys and values are JSON; the topic is compacted, so
//! the last record per key is the state):
//! - `["group", group]` → [`GroupRecord`]: generation, assignor, members with their
//!   target assignment, and which member owns which partition;
//! - `["offset", group, topic, partition]` → [`OffsetRecord`];
//! - a tombstone (no value) deletes either.
//!
//! Positions (how far each member has read, ahead of its commits) and session timers
//! live in memory only: after a failover members read on from their committed offsets
//! and their sessions restart.
//!
//! Hand-over follows KIP-848: a rebalance changes members' *targets*; a partition whose
//! target moved stays owned by its old member until that member's next poll releases it
//! (after committing, with auto-commit), and the new member takes it at its own next
//! poll. Commits are fenced by ownership and by the generation the member last polled in.

use super::assign::{self, Assignor, MemberSpec};
use crate::node::{internal, Replica, StorageNode};
use fjord_coordinator::ClusterMetadata;
use fjord_protocol::group::{
    CommitOffset, CommittedOffset, GroupDescription, GroupRequest, GroupResponse, GroupSummary, JoinGroup,
    MemberDescription, Membership, OffsetReset, PollPlan, OFFSETS_TOPIC,
};
use fjord_protocol::{
    Acks, Batch, BatchBuilder, ErrorCode, FjordError, NodeApi, ProduceRequest, Result, TopicPartition,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;
use tracing::{info, warn};

/// How long a state write may wait for replication.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Session timeouts a member may ask for (Kafka's `group.{min,max}.session.timeout.ms`,
/// with a lower minimum so tests and interactive clients can use short ones).
pub const MIN_SESSION_TIMEOUT_MS: u64 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: u64 = 1_800_000;

#[derive(Default)]
pub(crate) struct GroupCoordinator {
    shards: parking_lot::Mutex<HashMap<u32, Arc<AsyncMutex<Shard>>>>,
}

#[derive(Default)]
struct Shard {
    /// The topic id and leader epoch the state was loaded in; `None`: (re)load first.
    loaded: Option<(String, u32)>,
    groups: BTreeMap<String, Group>,
}

#[derive(Debug, Clone, Default)]
struct Group {
    generation: u32,
    assignor: Option<Assignor>,
    members: BTreeMap<String, Member>,
    owners: BTreeMap<TopicPartition, String>,
    /// Partition counts of the subscribed topics the targets were computed for.
    partition_counts: BTreeMap<String, u32>,
    offsets: BTreeMap<TopicPartition, Committed>,
}

#[derive(Debug, Clone)]
struct Member {
    config: MemberConfig,
    target: Vec<TopicPartition>,
    /// The generation of the member's last join or poll: its commits carry it.
    polled_generation: u32,
    last_seen: Instant,
    /// Next offset to read per owned partition, ahead of commits (memory only).
    positions: HashMap<TopicPartition, u64>,
    /// Partitions a seek moved since the member's last `PollBegin`: the `PollEnd` of a
    /// poll in flight during the seek must not overwrite the sought position.
    sought: BTreeSet<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MemberConfig {
    client_id: Option<String>,
    topics: BTreeSet<String>,
    session_timeout_ms: u64,
    auto_offset_reset: OffsetReset,
    auto_commit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Committed {
    offset: u64,
    metadata: Option<String>,
    commit_timestamp: i64,
}

/// The persisted form of a group (the value of its `["group", …]` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GroupRecord {
    generation: u32,
    assignor: Option<Assignor>,
    members: Vec<MemberRecord>,
    owners: Vec<(TopicPartition, String)>,
    partition_counts: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MemberRecord {
    member_id: String,
    config: MemberConfig,
    target: Vec<TopicPartition>,
    polled_generation: u32,
}

type OffsetRecord = Committed;

/// One record to write to the offsets topic: key and value (`None`: tombstone).
type Write = (Vec<u8>, Option<Vec<u8>>);

fn group_key(group: &str) -> Vec<u8> {
    serde_json::to_vec(&("group", group)).unwrap_or_default()
}

fn offset_key(group: &str, tp: &TopicPartition) -> Vec<u8> {
    serde_json::to_vec(&("offset", group, &tp.topic, tp.partition)).unwrap_or_default()
}

impl Group {
    fn record(&self) -> GroupRecord {
        GroupRecord {
            generation: self.generation,
            assignor: self.assignor,
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberRecord {
                    member_id: id.clone(),
                    config: m.config.clone(),
                    target: m.target.clone(),
                    polled_generation: m.polled_generation,
                })
                .collect(),
            owners: self.owners.iter().map(|(tp, m)| (tp.clone(), m.clone())).collect(),
            partition_counts: self.partition_counts.clone(),
        }
    }

    fn from_record(r: GroupRecord, now: Instant) -> Self {
        Self {
            generation: r.generation,
            assignor: r.assignor,
            members: r
                .members
                .into_iter()
                .map(|m| {
                    let member = Member {
                        config: m.config,
                        target: m.target,
                        polled_generation: m.polled_generation,
                        // Sessions restart on a new coordinator.
                        last_seen: now,
                        positions: HashMap::new(),
                        sought: BTreeSet::new(),
                    };
                    (m.member_id, member)
                })
                .collect(),
            owners: r.owners.into_iter().collect(),
            partition_counts: r.partition_counts,
            offsets: BTreeMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.offsets.is_empty()
    }

    fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "empty"
        } else {
            "stable"
        }
    }

    fn owned_by(&self, member: &str) -> Vec<TopicPartition> {
        self.owners.iter().filter(|(_, m)| *m == member).map(|(tp, _)| tp.clone()).collect()
    }

    fn membership(&self, member_id: &str) -> Membership {
        let assignment = self.owned_by(member_id);
        let pending = self.members.get(member_id).map_or_else(Vec::new, |m| {
            m.target.iter().filter(|tp| self.owners.get(*tp).is_some_and(|o| o != member_id)).cloned().collect()
        });
        Membership { member_id: member_id.to_owned(), generation: self.generation, assignment, pending }
    }

    /// A new generation: targets recomputed for the current members and topics.
    fn rebalance(&mut self, meta: &ClusterMetadata) {
        self.generation += 1;
        let subscribed: BTreeSet<&String> = self.members.values().flat_map(|m| m.config.topics.iter()).collect();
        self.partition_counts = partition_counts(meta, subscribed.iter().map(|t| t.as_str()));
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), MemberSpec { topics: m.config.topics.clone(), current: m.target.clone() }))
            .collect();
        let mut targets = assign::assign(self.assignor.unwrap_or_default(), &specs, &self.partition_counts);
        for (id, m) in &mut self.members {
            m.target = targets.remove(id).unwrap_or_default();
        }
        let counts = &self.partition_counts;
        let members = &self.members;
        // Ownership of partitions that no longer exist, or of members gone, ends now;
        // the rest is released by its owner's next poll.
        self.owners.retain(|tp, owner| {
            members.contains_key(owner) && counts.get(&tp.topic).is_some_and(|n| tp.partition < *n)
        });
    }

    /// Removes a member; its partitions are free at once.
    fn remove_member(&mut self, member_id: &str, meta: &ClusterMetadata) {
        self.members.remove(member_id);
        self.owners.retain(|_, owner| owner != member_id);
        self.rebalance(meta);
    }

    /// Releases what `member_id` owns but no longer targets, then takes what it
    /// targets and nobody owns. Released partitions' positions are forgotten.
    fn hand_over(&mut self, member_id: &str) {
        let Some(m) = self.members.get_mut(member_id) else { return };
        let target: BTreeSet<&TopicPartition> = m.target.iter().collect();
        let released: Vec<TopicPartition> = self
            .owners
            .iter()
            .filter(|(tp, o)| *o == member_id && !target.contains(tp))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in &released {
            self.owners.remove(tp);
            m.positions.remove(tp);
        }
        for tp in &m.target {
            self.owners.entry(tp.clone()).or_insert_with(|| member_id.to_owned());
        }
    }

    /// Commits records for `offsets` into this group's state.
    fn commit(
        &mut self,
        group: &str,
        offsets: impl IntoIterator<Item = (TopicPartition, u64, Option<String>)>,
    ) -> Vec<Write> {
        let now = fjord_protocol::now_ms();
        let mut writes = Vec::new();
        for (tp, offset, metadata) in offsets {
            let c = Committed { offset, metadata, commit_timestamp: now };
            writes.push((offset_key(group, &tp), Some(serde_json::to_vec(&c).unwrap_or_default())));
            self.offsets.insert(tp, c);
        }
        writes
    }

    /// With auto-commit, the member's positions that are ahead of (or differ from) the
    /// committed offsets.
    fn auto_commit(&mut self, group: &str, member_id: &str) -> Vec<Write> {
        let Some(m) = self.members.get(member_id) else { return Vec::new() };
        if !m.config.auto_commit {
            return Vec::new();
        }
        let due: Vec<(TopicPartition, u64, Option<String>)> = m
            .positions
            .iter()
            .filter(|(tp, pos)| {
                self.owners.get(*tp).is_some_and(|o| o == member_id)
                    && self.offsets.get(*tp).is_none_or(|c| c.offset != **pos)
            })
            .map(|(tp, pos)| (tp.clone(), *pos, None))
            .collect();
        self.commit(group, due)
    }

    /// Whether a subscribed topic appeared, went, or changed partition count since the
    /// targets were computed.
    fn topics_changed(&self, meta: &ClusterMetadata) -> bool {
        let subscribed: BTreeSet<&str> =
            self.members.values().flat_map(|m| m.config.topics.iter().map(String::as_str)).collect();
        !self.members.is_empty() && partition_counts(meta, subscribed.into_iter()) != self.partition_counts
    }

    fn expired(&self, now: Instant) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| {
                now.saturating_duration_since(m.last_seen) > Duration::from_millis(m.config.session_timeout_ms)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn partition_counts<'a>(meta: &ClusterMetadata, topics: impl Iterator<Item = &'a str>) -> BTreeMap<String, u32> {
    topics.filter_map(|t| meta.topic(t).map(|m| (t.to_owned(), m.partitions.len() as u32))).collect()
}

fn unknown_member(group: &str, member_id: &str) -> FjordError {
    FjordError::new(
        ErrorCode::UnknownMemberId,
        format!("member `{member_id}` is not in group `{group}` (it left or its session expired); join again"),
    )
}

fn unknown_group(group: &str) -> FjordError {
    FjordError::new(ErrorCode::UnknownGroup, format!("group `{group}` does not exist"))
}

fn sorted(mut v: Vec<TopicPartition>) -> Vec<TopicPartition> {
    v.sort();
    v
}

impl GroupCoordinator {
    /// Serves one group call on this node, if it coordinates the group.
    pub(crate) async fn handle(&self, node: &StorageNode, req: GroupRequest) -> Result<GroupResponse> {
        let meta = node.metadata.borrow().clone();
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
        let (mut shard, _) = self.lock_shard(node, partition).await?;
        let now = Instant::now();
        match req {
            GroupRequest::List { .. } => Ok(GroupResponse::Listed {
                groups: shard
                    .groups
                    .iter()
                    .map(|(name, g)| GroupSummary {
                        group: name.clone(),
                        state: g.state().to_owned(),
                        members: g.members.len() as u32,
                    })
                    .collect(),
            }),
            GroupRequest::Describe { group } => {
                let g = shard.groups.get(&group).ok_or_else(|| unknown_group(&group))?;
                Ok(GroupResponse::Described(describe(&group, g, now)))
            }
            GroupRequest::Join(join) => {
                let mut g = shard.groups.get(&join.group).cloned().unwrap_or_default();
                let before = g.record();
                let member_id = join_member(&mut g, &join, &meta, now)?;
                g.hand_over(&member_id);
                let membership = g.membership(&member_id);
                info!(group = %join.group, member = %member_id, generation = g.generation, "member joined");
                self.store(node, partition, &mut shard, &join.group, g, &before, Vec::new()).await?;
                Ok(GroupResponse::Joined(membership))
            }
            GroupRequest::Leave { group, member_id } => {
                let mut g = shard.groups.get(&group).cloned().ok_or_else(|| unknown_member(&group, &member_id))?;
                if !g.members.contains_key(&member_id) {
                    return Err(unknown_member(&group, &member_id));
                }
                let before = g.record();
                let writes = g.auto_commit(&group, &member_id);
                g.remove_member(&member_id, &meta);
                info!(group = %group, member = %member_id, generation = g.generation, "member left");
                self.store(node, partition, &mut shard, &group, g, &before, writes).await?;
                Ok(GroupResponse::Done)
            }
            GroupRequest::PollBegin { group, member_id } => {
                let mut g = shard.groups.get(&group).cloned().ok_or_else(|| unknown_member(&group, &member_id))?;
                if !g.members.contains_key(&member_id) {
                    return Err(unknown_member(&group, &member_id));
                }
                let before = g.record();
                let writes = g.auto_commit(&group, &member_id);
                g.hand_over(&member_id);
                let generation = g.generation;
                let Some(m) = g.members.get(&member_id) else { return Err(unknown_member(&group, &member_id)) };
                let positions = g
                    .owned_by(&member_id)
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
                    membership: g.membership(&member_id),
                };
                if let Some(m) = g.members.get_mut(&member_id) {
                    m.last_seen = now;
                    m.polled_generation = generation;
                    m.sought.clear();
                }
                self.store(node, partition, &mut shard, &group, g, &before, writes).await?;
                Ok(GroupResponse::Poll(plan))
            }
            GroupRequest::PollEnd { group, member_id, generation: _, positions } => {
                let g = shard.groups.get_mut(&group).ok_or_else(|| unknown_member(&group, &member_id))?;
                let owned: BTreeSet<TopicPartition> = g.owned_by(&member_id).into_iter().collect();
                let m = g.members.get_mut(&member_id).ok_or_else(|| unknown_member(&group, &member_id))?;
                m.last_seen = now;
                for p in positions {
                    let tp = TopicPartition::new(p.topic, p.partition);
                    if owned.contains(&tp) && !m.sought.contains(&tp) {
                        m.positions.insert(tp, p.offset);
                    }
                }
                Ok(GroupResponse::Done)
            }
            GroupRequest::Commit { group, member_id, generation, offsets } => {
                let mut g = shard.groups.get(&group).cloned().unwrap_or_default();
                check_commit(&g, &group, member_id.as_deref(), generation, &offsets)?;
                let before = g.record();
                let writes = g.commit(
                    &group,
                    offsets.into_iter().map(|o| (TopicPartition::new(o.topic, o.partition), o.offset, o.metadata)),
                );
                self.store(node, partition, &mut shard, &group, g, &before, writes).await?;
                Ok(GroupResponse::Done)
            }
            GroupRequest::Seek { group, offsets } => {
                let mut g = shard.groups.get(&group).cloned().unwrap_or_default();
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
                let writes = g.commit(
                    &group,
                    offsets.into_iter().map(|o| (TopicPartition::new(o.topic, o.partition), o.offset, None)),
                );
                self.store(node, partition, &mut shard, &group, g, &before, writes).await?;
                Ok(GroupResponse::Done)
            }
            GroupRequest::Delete { group } => {
                let g = shard.groups.get(&group).ok_or_else(|| unknown_group(&group))?;
                if !g.members.is_empty() {
                    return Err(FjordError::new(
                        ErrorCode::GroupNotEmpty,
                        format!(
                            "group `{group}` has {} member(s); it can be deleted once it has none",
                            g.members.len()
                        ),
                    ));
                }
                let mut writes: Vec<Write> = vec![(group_key(&group), None)];
                writes.extend(g.offsets.keys().map(|tp| (offset_key(&group, tp), None)));
                if let Err(e) = write(node, partition, writes).await {
                    shard.loaded = None;
                    return Err(e);
                }
                shard.groups.remove(&group);
                info!(group = %group, "group deleted");
                Ok(GroupResponse::Done)
            }
        }
    }

    /// Evicts members whose session expired and rebalances groups whose subscribed
    /// topics changed partition count, in every shard this node leads; forgets the
    /// shards it no longer leads.
    pub(crate) async fn sweep(&self, node: &StorageNode) {
        let meta = node.metadata.borrow().clone();
        let Some(topic) = meta.topic(OFFSETS_TOPIC) else { return };
        let led: Vec<u32> =
            topic.partitions.iter().filter(|p| p.leader == Some(node.id)).map(|p| p.partition).collect();
        // Shards this node no longer leads free their memory; leading one again reloads it.
        self.shards.lock().retain(|p, _| led.contains(p));
        for partition in led {
            let Ok((mut shard, _)) = self.lock_shard(node, partition).await else { continue };
            let now = Instant::now();
            // Only groups with something to do are copied and written.
            let due: Vec<String> = shard
                .groups
                .iter()
                .filter(|(_, g)| !g.expired(now).is_empty() || g.topics_changed(&meta))
                .map(|(name, _)| name.clone())
                .collect();
            for name in due {
                let Some(mut g) = shard.groups.get(&name).cloned() else { continue };
                let before = g.record();
                for member_id in g.expired(now) {
                    info!(group = %name, member = %member_id, "session expired; evicting member");
                    g.remove_member(&member_id, &meta);
                }
                if g.topics_changed(&meta) {
                    info!(group = %name, "subscribed topics changed; rebalancing");
                    g.rebalance(&meta);
                }
                if let Err(e) = self.store(node, partition, &mut shard, &name, g, &before, Vec::new()).await {
                    warn!(group = %name, error = %e, "cannot write group state; reloading it");
                    break;
                }
            }
        }
    }

    /// Writes `writes` plus the group's record when it differs from `before`, then
    /// installs `g`. On a failed write the shard is re-read from the log next time.
    #[allow(clippy::too_many_arguments)]
    async fn store(
        &self,
        node: &StorageNode,
        partition: u32,
        shard: &mut Shard,
        group: &str,
        g: Group,
        before: &GroupRecord,
        mut writes: Vec<Write>,
    ) -> Result<()> {
        let record = g.record();
        if record != *before {
            writes
                .push((group_key(group), Some(serde_json::to_vec(&record).map_err(|e| internal("group record", e))?)));
        }
        if !writes.is_empty() {
            if let Err(e) = write(node, partition, writes).await {
                shard.loaded = None;
                return Err(e);
            }
        }
        shard.groups.insert(group.to_owned(), g);
        Ok(())
    }

    /// The shard of `partition`, locked and loaded for the current leader epoch; an
    /// error when this node does not lead the partition.
    async fn lock_shard(&self, node: &StorageNode, partition: u32) -> Result<(OwnedMutexGuard<Shard>, Arc<Replica>)> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
        let replica = node.leader_replica(&tp)?;
        let epoch = replica.meta.read().leader_epoch;
        let cell = self.shards.lock().entry(partition).or_default().clone();
        let mut shard = cell.lock_owned().await;
        let current = (replica.topic_id.clone(), epoch);
        if shard.loaded.as_ref() != Some(&current) {
            let log = replica.log.clone();
            let started = std::time::Instant::now();
            let groups =
                tokio::task::spawn_blocking(move || load(&log)).await.map_err(|e| internal("loading groups", e))??;
            info!(
                partition = %tp,
                epoch,
                groups = groups.len(),
                ms = started.elapsed().as_millis() as u64,
                "loaded consumer groups"
            );
            shard.groups = groups;
            shard.loaded = Some(current);
        }
        Ok((shard, replica))
    }
}

fn join_member(g: &mut Group, join: &JoinGroup, meta: &ClusterMetadata, now: Instant) -> Result<String> {
    let assignor = Assignor::parse(&join.assignor).ok_or_else(|| {
        FjordError::new(
            ErrorCode::InvalidRequest,
            format!("unknown assignor `{}`; use range, roundrobin or sticky", join.assignor),
        )
    })?;
    match g.assignor {
        Some(a) if a != assignor && !g.members.is_empty() => {
            return Err(FjordError::new(
                ErrorCode::InconsistentGroupProtocol,
                format!(
                    "group `{}` uses the `{}` assignor; this member asked for `{}`",
                    join.group,
                    a.as_str(),
                    assignor.as_str()
                ),
            ))
        }
        _ => g.assignor = Some(assignor),
    }
    if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&join.session_timeout_ms) {
        return Err(FjordError::new(
            ErrorCode::InvalidRequest,
            format!(
                "session_timeout_ms must be between {MIN_SESSION_TIMEOUT_MS} and {MAX_SESSION_TIMEOUT_MS}, got {}",
                join.session_timeout_ms
            ),
        ));
    }
    let member_id = format!("{}-{}", join.client_id.as_deref().unwrap_or("member"), uuid::Uuid::new_v4());
    let config = MemberConfig {
        client_id: join.client_id.clone(),
        topics: join.topics.iter().cloned().collect(),
        session_timeout_ms: join.session_timeout_ms,
        auto_offset_reset: join.auto_offset_reset,
        auto_commit: join.auto_commit,
    };
    g.members.insert(
        member_id.clone(),
        Member {
            config,
            target: Vec::new(),
            polled_generation: 0,
            last_seen: now,
            positions: HashMap::new(),
            sought: BTreeSet::new(),
        },
    );
    g.rebalance(meta);
    if let Some(m) = g.members.get_mut(&member_id) {
        m.polled_generation = g.generation;
    }
    Ok(member_id)
}

/// Kafka's commit fencing: a member commits in the generation it last polled in, and
/// only partitions it owns; without a member, only to a group that has none.
fn check_commit(
    g: &Group,
    group: &str,
    member_id: Option<&str>,
    generation: Option<u32>,
    offsets: &[CommitOffset],
) -> Result<()> {
    let Some(member_id) = member_id else {
        if g.members.is_empty() {
            return Ok(());
        }
        return Err(FjordError::new(
            ErrorCode::StaleGeneration,
            format!(
                "group `{group}` has {} member(s): commits must name a member_id and its generation",
                g.members.len()
            ),
        ));
    };
    let m = g.members.get(member_id).ok_or_else(|| unknown_member(group, member_id))?;
    match generation {
        Some(gen) if gen == m.polled_generation => {}
        Some(gen) => {
            return Err(FjordError::new(
                ErrorCode::StaleGeneration,
                format!(
                    "generation {gen} is not the generation of member `{member_id}`'s last poll ({}) in group \
                     `{group}` (now in generation {}); poll to learn the current assignment",
                    m.polled_generation, g.generation
                ),
            ))
        }
        None => return Err(FjordError::new(ErrorCode::InvalidRequest, "a member's commit must carry its generation")),
    }
    for o in offsets {
        let tp = TopicPartition::new(o.topic.clone(), o.partition);
        if g.owners.get(&tp).is_none_or(|owner| owner != member_id) {
            return Err(FjordError::new(
                ErrorCode::StaleGeneration,
                format!(
                    "{tp} is not assigned to member `{member_id}` in generation {}; nothing was committed",
                    g.generation
                ),
            ));
        }
    }
    Ok(())
}

fn describe(name: &str, g: &Group, now: Instant) -> GroupDescription {
    GroupDescription {
        group: name.to_owned(),
        state: g.state().to_owned(),
        generation: g.generation,
        assignor: g.assignor.map(|a| a.as_str().to_owned()),
        members: g
            .members
            .iter()
            .map(|(id, m)| {
                let membership = g.membership(id);
                MemberDescription {
                    member_id: id.clone(),
                    client_id: m.config.client_id.clone(),
                    topics: m.config.topics.iter().cloned().collect(),
                    session_timeout_ms: m.config.session_timeout_ms,
                    auto_offset_reset: m.config.auto_offset_reset,
                    auto_commit: m.config.auto_commit,
                    assignment: sorted(membership.assignment),
                    pending: sorted(membership.pending),
                    last_seen_ms_ago: now.saturating_duration_since(m.last_seen).as_millis() as u64,
                }
            })
            .collect(),
        offsets: g
            .offsets
            .iter()
            .map(|(tp, c)| CommittedOffset {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: c.offset,
                metadata: c.metadata.clone(),
                commit_timestamp: c.commit_timestamp,
            })
            .collect(),
    }
}

/// Appends `writes` as one batch to the shard's partition and waits for the ISR.
async fn write(node: &StorageNode, partition: u32, writes: Vec<Write>) -> Result<()> {
    let now = fjord_protocol::now_ms();
    let mut b = BatchBuilder::default();
    for (key, value) in &writes {
        b.push_parts(now, Some(key), value.as_deref(), std::iter::empty()).map_err(|e| internal("group batch", e))?;
    }
    let batch = b.finish().map_err(|e| internal("group batch", e))?;
    let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
    node.produce(ProduceRequest { tp, batch, acks: Acks::All, timeout: WRITE_TIMEOUT }).await?;
    Ok(())
}

/// Rebuilds a shard's groups from its whole log, to its end.
fn load(log: &crate::log::PartitionLog) -> Result<BTreeMap<String, Group>> {
    let now = Instant::now();
    let mut records: BTreeMap<String, GroupRecord> = BTreeMap::new();
    let mut offsets: BTreeMap<String, BTreeMap<TopicPartition, Committed>> = BTreeMap::new();
    let o = log.offsets();
    let mut next = o.log_start;
    while next < o.log_end {
        let batches = log.read(next, 4 << 20, o.log_end).map_err(FjordError::from)?;
        if batches.is_empty() {
            break;
        }
        for bytes in batches {
            let batch = Batch::parse(bytes).map_err(|e| FjordError::new(ErrorCode::CorruptBatch, e.to_string()))?;
            for r in batch.records().filter(|r| r.offset >= next) {
                apply_record(&mut records, &mut offsets, r.key.as_deref(), r.value.as_deref());
            }
            next = next.max(batch.next_offset());
        }
    }
    let mut groups: BTreeMap<String, Group> =
        records.into_iter().map(|(name, r)| (name, Group::from_record(r, now))).collect();
    for (name, offs) in offsets {
        groups.entry(name).or_default().offsets = offs;
    }
    groups.retain(|_, g| !g.is_empty() || g.generation > 0);
    Ok(groups)
}

fn apply_record(
    records: &mut BTreeMap<String, GroupRecord>,
    offsets: &mut BTreeMap<String, BTreeMap<TopicPartition, Committed>>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let Some(key) = key else { return };
    let Ok(key) = serde_json::from_slice::<Vec<serde_json::Value>>(key) else {
        warn!("skipping an offsets-topic record with an unreadable key");
        return;
    };
    match key.as_slice() {
        [kind, group] if kind == "group" => {
            let Some(group) = group.as_str() else { return };
            match value.map(serde_json::from_slice::<GroupRecord>) {
                None => {
                    records.remove(group);
                }
                Some(Ok(r)) => {
                    records.insert(group.to_owned(), r);
                }
                Some(Err(e)) => warn!(group, error = %e, "skipping an unreadable group record"),
            }
        }
        [kind, group, topic, partition] if kind == "offset" => {
            let (Some(group), Some(topic), Some(partition)) =
                (group.as_str(), topic.as_str(), partition.as_u64().and_then(|p| u32::try_from(p).ok()))
            else {
                return;
            };
            let tp = TopicPartition::new(topic, partition);
            match value.map(serde_json::from_slice::<OffsetRecord>) {
                None => {
                    if let Some(o) = offsets.get_mut(group) {
                        o.remove(&tp);
                    }
                }
                Some(Ok(c)) => {
                    offsets.entry(group.to_owned()).or_default().insert(tp, c);
                }
                Some(Err(e)) => warn!(group, error = %e, "skipping an unreadable offset record"),
            }
        }
        _ => warn!("skipping an offsets-topic record with an unknown key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeConfig;
    use fjord_coordinator::{Coordinator, EmbeddedCoordinator, NewTopic, TopicConfig};
    use fjord_protocol::FetchRequest;

    async fn start(dir: &std::path::Path, coordinator: Arc<dyn Coordinator>) -> Arc<StorageNode> {
        let config = NodeConfig {
            data_dir: dir.to_owned(),
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 8 << 20,
            ..Default::default()
        };
        StorageNode::start(&config, coordinator, "in-process".into()).await.expect("node starts")
    }

    async fn records_in(node: &StorageNode, tp: &TopicPartition) -> usize {
        let mut n = 0;
        let mut offset = 0;
        loop {
            let r = node
                .fetch(FetchRequest { tp: tp.clone(), offset, max_bytes: 1 << 20, max_wait: Duration::ZERO })
                .await
                .expect("fetch");
            let mut next = offset;
            for b in r.batches {
                let batch = Batch::parse(b).expect("batch");
                n += batch.records().filter(|rec| rec.offset >= offset && rec.offset < r.high_watermark).count();
                next = next.max(batch.next_offset());
            }
            if next >= r.high_watermark || next == offset {
                return n;
            }
            offset = next;
        }
    }

    /// A group's state survives compaction of its offsets-topic partition and a restart
    /// of its coordinator: after many commits, compaction leaves one record per key (so
    /// the partition stops growing with commits), and a new coordinator rebuilt from
    /// the compacted log knows the member, its generation and assignment, and the last
    /// committed offset of every partition.
    #[tokio::test]
    async fn group_state_survives_compaction_and_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator: Arc<dyn Coordinator> = Arc::new(EmbeddedCoordinator::in_memory());
        let node = start(dir.path(), coordinator.clone()).await;
        for (name, config) in [("t", TopicConfig::default()), (OFFSETS_TOPIC, TopicConfig::offsets_topic())] {
            let spec = NewTopic {
                name: name.into(),
                partitions: if name == "t" { 2 } else { 1 },
                replication_factor: 1,
                config,
            };
            coordinator.create_topic(spec).await.expect("create topic");
        }
        node.sync_with_metadata().await.expect("sync");

        let join = JoinGroup {
            group: "g".into(),
            topics: vec!["t".into()],
            session_timeout_ms: 60_000,
            auto_offset_reset: OffsetReset::Earliest,
            assignor: "range".into(),
            auto_commit: false,
            client_id: Some("w".into()),
        };
        let GroupResponse::Joined(m) = node.group(GroupRequest::Join(join)).await.expect("join") else {
            panic!("join answer")
        };
        assert_eq!(m.assignment.len(), 2, "a lone member owns both partitions: {m:?}");
        for i in 1..=50u64 {
            let offsets = (0..2)
                .map(|p| CommitOffset {
                    topic: "t".into(),
                    partition: p,
                    offset: i * 10 + u64::from(p),
                    metadata: None,
                })
                .collect();
            let commit = GroupRequest::Commit {
                group: "g".into(),
                member_id: Some(m.member_id.clone()),
                generation: Some(m.generation),
                offsets,
            };
            node.group(commit).await.expect("commit");
        }
        let tp = TopicPartition::new(OFFSETS_TOPIC, 0);
        let before = records_in(&node, &tp).await;
        assert!(before >= 101, "one record per commit and partition plus the group record: {before}");
        node.compact_now().await;
        let after = records_in(&node, &tp).await;
        // One group record and two offset records survive, plus the newest batch, which
        // compaction leaves alone.
        assert!(after <= 5, "compaction left {after} of {before} records");

        node.shutdown().await;
        drop(node);
        let node = start(dir.path(), coordinator.clone()).await;
        let GroupResponse::Described(d) =
            node.group(GroupRequest::Describe { group: "g".into() }).await.expect("describe")
        else {
            panic!("describe answer")
        };
        assert_eq!(d.generation, m.generation);
        assert_eq!(d.members.len(), 1);
        assert_eq!(d.members[0].member_id, m.member_id);
        assert_eq!(d.members[0].assignment, m.assignment);
        let committed: Vec<(u32, u64)> = d.offsets.iter().map(|o| (o.partition, o.offset)).collect();
        assert_eq!(committed, [(0, 500), (1, 501)]);
        node.shutdown().await;
    }
}
