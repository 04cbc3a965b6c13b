//! A consumer group's state and the rules that change it — join, rebalance, hand-over
//! (KIP-848), commit fencing, auto-commit, session expiry — and its records in the
//! offsets topic. Pure: no I/O besides reading a shard's log in [`load`].
//!
//! Records of the offsets topic (values are JSON; keys are [`OffsetsKey`]s; the topic is
//! compacted, so the last record per key is the state):
//! - `["group", group]` → [`GroupRecord`]: generation, assignor, members with their
//!   target assignment, and which member owns which partition;
//! - `["offset", group, topic, partition]` → [`OffsetRecord`];
//! - a tombstone (no value) deletes either.
//!
//! Positions (how far each member has read, ahead of its commits) and session timers
//! live in memory only: after a failover members read on from their committed offsets
//! and their sessions restart.

use super::assign::{self, Assignor, MemberSpec};
use fjord_coordinator::ClusterMetadata;
use fjord_log::PartitionLog;
use fjord_protocol::codec::OffsetsKey;
use fjord_protocol::group::{
    CommitOffset, CommittedOffset, GroupDescription, GroupState, JoinGroup, MemberDescription, Membership, OffsetReset,
    MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS,
};
use fjord_protocol::{Batch, ErrorCode, FjordError, Result, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

#[derive(Debug, Clone, Default)]
pub(super) struct Group {
    pub(super) generation: u32,
    pub(super) assignor: Option<Assignor>,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) owners: BTreeMap<TopicPartition, String>,
    /// Partition counts of the subscribed topics the targets were computed for.
    pub(super) partition_counts: BTreeMap<String, u32>,
    pub(super) offsets: BTreeMap<TopicPartition, Committed>,
    /// When the last member left (ms since the epoch); `None` while it has members (and
    /// for groups recorded before this was kept: their latest commit counts instead).
    pub(super) empty_since_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) config: MemberConfig,
    pub(super) target: Vec<TopicPartition>,
    /// The generation of the member's last join or poll: its commits carry it.
    pub(super) polled_generation: u32,
    pub(super) last_seen: Instant,
    /// Next offset to read per owned partition, ahead of commits (memory only).
    pub(super) positions: HashMap<TopicPartition, u64>,
    /// Partitions a seek moved since the member's last `PollBegin`: the `PollEnd` of a
    /// poll in flight during the seek must not overwrite the sought position.
    pub(super) sought: BTreeSet<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MemberConfig {
    pub(super) client_id: Option<String>,
    pub(super) topics: BTreeSet<String>,
    pub(super) session_timeout_ms: u64,
    pub(super) auto_offset_reset: OffsetReset,
    pub(super) auto_commit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Committed {
    pub(super) offset: u64,
    pub(super) metadata: Option<String>,
    pub(super) commit_timestamp: i64,
}

/// The persisted form of a group (the value of its `["group", …]` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GroupRecord {
    pub(super) generation: u32,
    pub(super) assignor: Option<Assignor>,
    pub(super) members: Vec<MemberRecord>,
    pub(super) owners: Vec<(TopicPartition, String)>,
    pub(super) partition_counts: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) empty_since_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MemberRecord {
    pub(super) member_id: String,
    pub(super) config: MemberConfig,
    pub(super) target: Vec<TopicPartition>,
    pub(super) polled_generation: u32,
}

pub(super) type OffsetRecord = Committed;

/// One record to write to the offsets topic: key and value (`None`: tombstone).
pub(super) type Write = (Vec<u8>, Option<Vec<u8>>);

pub(super) fn group_key(group: &str) -> Vec<u8> {
    OffsetsKey::Group { group: group.to_owned() }.encode()
}

pub(super) fn offset_key(group: &str, tp: &TopicPartition) -> Vec<u8> {
    OffsetsKey::Offset { group: group.to_owned(), tp: tp.clone() }.encode()
}

impl Group {
    pub(super) fn record(&self) -> GroupRecord {
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
            empty_since_ms: self.empty_since_ms,
        }
    }

    pub(super) fn from_record(r: GroupRecord, now: Instant) -> Self {
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
            empty_since_ms: r.empty_since_ms,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.offsets.is_empty()
    }

    /// Whether this group's committed offsets have expired (Kafka's
    /// `offsets.retention.minutes`, KIP-211): it has no members, and `retention_ms` has
    /// passed since it became empty and since its latest commit (a consumer committing
    /// without joining keeps its offsets alive).
    pub(super) fn offsets_expired(&self, now_ms: i64, retention_ms: i64) -> bool {
        if !self.members.is_empty() {
            return false;
        }
        let last_activity = self.offsets.values().map(|c| c.commit_timestamp).chain(self.empty_since_ms).max();
        last_activity.is_some_and(|t| now_ms.saturating_sub(t) >= retention_ms)
    }

    pub(super) fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        }
    }

    pub(super) fn owned_by(&self, member: &str) -> Vec<TopicPartition> {
        self.owners.iter().filter(|(_, m)| *m == member).map(|(tp, _)| tp.clone()).collect()
    }

    pub(super) fn membership(&self, member_id: &str) -> Membership {
        let assignment = self.owned_by(member_id);
        let pending = self.members.get(member_id).map_or_else(Vec::new, |m| {
            m.target.iter().filter(|tp| self.owners.get(*tp).is_some_and(|o| o != member_id)).cloned().collect()
        });
        Membership { member_id: member_id.to_owned(), generation: self.generation, assignment, pending }
    }

    /// A new generation: targets recomputed for the current members and topics.
    pub(super) fn rebalance(&mut self, meta: &ClusterMetadata) {
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
    pub(super) fn remove_member(&mut self, member_id: &str, meta: &ClusterMetadata) {
        if self.members.remove(member_id).is_some() && self.members.is_empty() {
            self.empty_since_ms = Some(fjord_protocol::now_ms());
        }
        self.owners.retain(|_, owner| owner != member_id);
        self.rebalance(meta);
    }

    /// Releases what `member_id` owns but no longer targets, then takes what it
    /// targets and nobody owns. Released partitions' positions are forgotten.
    pub(super) fn hand_over(&mut self, member_id: &str) {
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
    pub(super) fn commit(
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
    pub(super) fn auto_commit(&mut self, group: &str, member_id: &str) -> Vec<Write> {
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
    pub(super) fn topics_changed(&self, meta: &ClusterMetadata) -> bool {
        let subscribed: BTreeSet<&str> =
            self.members.values().flat_map(|m| m.config.topics.iter().map(String::as_str)).collect();
        !self.members.is_empty() && partition_counts(meta, subscribed.into_iter()) != self.partition_counts
    }

    pub(super) fn expired(&self, now: Instant) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| {
                now.saturating_duration_since(m.last_seen) > Duration::from_millis(m.config.session_timeout_ms)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

pub(super) fn partition_counts<'a>(
    meta: &ClusterMetadata,
    topics: impl Iterator<Item = &'a str>,
) -> BTreeMap<String, u32> {
    topics.filter_map(|t| meta.topic(t).map(|m| (t.to_owned(), m.partitions.len() as u32))).collect()
}

pub(super) fn unknown_member(group: &str, member_id: &str) -> FjordError {
    FjordError::new(
        ErrorCode::UnknownMemberId,
        format!("member `{member_id}` is not in group `{group}` (it left or its session expired); join again"),
    )
}

pub(super) fn unknown_group(group: &str) -> FjordError {
    FjordError::new(ErrorCode::UnknownGroup, format!("group `{group}` does not exist"))
}

pub(super) fn sorted(mut v: Vec<TopicPartition>) -> Vec<TopicPartition> {
    v.sort();
    v
}

pub(super) fn join_member(g: &mut Group, join: &JoinGroup, meta: &ClusterMetadata, now: Instant) -> Result<String> {
    let assignor = join.assignor;
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
    g.empty_since_ms = None;
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
pub(super) fn check_commit(
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

pub(super) fn describe(name: &str, g: &Group, now: Instant) -> GroupDescription {
    GroupDescription {
        group: name.to_owned(),
        state: g.state(),
        generation: g.generation,
        assignor: g.assignor,
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

/// Rebuilds a shard's groups from its whole log, to its end.
pub(super) fn load(log: &PartitionLog) -> Result<BTreeMap<String, Group>> {
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

pub(super) fn apply_record(
    records: &mut BTreeMap<String, GroupRecord>,
    offsets: &mut BTreeMap<String, BTreeMap<TopicPartition, Committed>>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let Some(key) = key else { return };
    match OffsetsKey::decode(key) {
        Ok(OffsetsKey::Group { group }) => match value.map(serde_json::from_slice::<GroupRecord>) {
            None => {
                records.remove(&group);
            }
            Some(Ok(r)) => {
                records.insert(group, r);
            }
            Some(Err(e)) => warn!(%group, error = %e, "skipping an unreadable group record"),
        },
        Ok(OffsetsKey::Offset { group, tp }) => match value.map(serde_json::from_slice::<OffsetRecord>) {
            None => {
                if let Some(o) = offsets.get_mut(&group) {
                    o.remove(&tp);
                }
            }
            Some(Ok(c)) => {
                offsets.entry(group).or_default().insert(tp, c);
            }
            Some(Err(e)) => warn!(%group, error = %e, "skipping an unreadable offset record"),
        },
        Err(e) => warn!(error = %e, "skipping an offsets-topic record with an unreadable key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed_at(ts: i64) -> Committed {
        Committed { offset: 1, metadata: None, commit_timestamp: ts }
    }

    /// An empty group's offsets expire `retention` after the later of its emptying and
    /// its last commit; a group with members, or with nothing to date it by, never does.
    #[test]
    fn offsets_expire_from_the_later_of_emptying_and_the_last_commit() {
        let tp = TopicPartition::new("t", 0);
        let mut g = Group { empty_since_ms: Some(1_000), ..Group::default() };
        g.offsets.insert(tp.clone(), committed_at(500));
        assert!(!g.offsets_expired(1_099, 100), "emptied at 1000: kept until 1100");
        assert!(g.offsets_expired(1_100, 100));
        // A member-less commit after the group emptied keeps it alive.
        g.offsets.insert(tp.clone(), committed_at(2_000));
        assert!(!g.offsets_expired(2_099, 100));
        assert!(g.offsets_expired(2_100, 100));
        // Recorded before `empty_since_ms` existed: the last commit dates it.
        let mut old = Group::default();
        old.offsets.insert(tp, committed_at(3_000));
        assert!(!old.offsets_expired(3_099, 100) && old.offsets_expired(3_100, 100));
        // Nothing to date it by: kept.
        assert!(!Group::default().offsets_expired(i64::MAX, 100));
        // Members keep every offset, however old.
        let mut live = old.clone();
        let config = MemberConfig {
            client_id: None,
            topics: BTreeSet::new(),
            session_timeout_ms: 45_000,
            auto_offset_reset: OffsetReset::Latest,
            auto_commit: false,
        };
        let member = Member {
            config,
            target: Vec::new(),
            polled_generation: 0,
            last_seen: Instant::now(),
            positions: HashMap::new(),
            sought: BTreeSet::new(),
        };
        live.members.insert("m".into(), member);
        assert!(!live.offsets_expired(i64::MAX, 100));
    }

    /// The record carries when the group emptied, and older records without it decode.
    #[test]
    fn the_group_record_keeps_empty_since_and_reads_old_records() {
        let g = Group { generation: 3, empty_since_ms: Some(42), ..Group::default() };
        let json = serde_json::to_vec(&g.record()).expect("encode");
        let back: GroupRecord = serde_json::from_slice(&json).expect("decode");
        assert_eq!(back.empty_since_ms, Some(42));
        let old = br#"{"generation":3,"assignor":null,"members":[],"owners":[],"partition_counts":{}}"#;
        let back: GroupRecord = serde_json::from_slice(old).expect("an older record decodes");
        assert_eq!(back.empty_since_ms, None);
    }
}
