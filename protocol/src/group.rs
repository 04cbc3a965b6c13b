//! Consumer groups: the calls a gateway makes to a group's coordinator, and how a
//! group finds its coordinator.
//!
//! A group's coordinator is the leader of partition [`coordinator_partition`] of the
//! internal compacted topic [`OFFSETS_TOPIC`]; it keeps the group's state (members,
//! assignment, committed offsets) in memory and in that partition, so a new leader
//! rebuilds it. Gateways hold no group state: every call carries the group and member.
//!
//! Assignment is computed by the coordinator and handed over as in Kafka's KIP-848: a
//! partition moving from member A to member B is first revoked from A (A's next poll
//! drops it, after A's auto-commit) and only then given to B, so a member that commits
//! before polling again hands over without duplicates.

use crate::names::TopicPartition;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The partition of [`OFFSETS_TOPIC`] whose leader coordinates `group`: Kafka's
/// `abs(groupId.hashCode()) % partitions`, so a group lands where Kafka would put it.
pub fn coordinator_partition(group: &str, partitions: u32) -> u32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs: Integer.MIN_VALUE maps to 0.
    let abs = if h == i32::MIN { 0 } else { h.unsigned_abs() };
    abs % partitions.max(1)
}

/// Session timeouts a member may ask for (Kafka's `group.{min,max}.session.timeout.ms`,
/// with a lower minimum so tests and interactive clients can use short ones).
pub const MIN_SESSION_TIMEOUT_MS: u64 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: u64 = 1_800_000;

/// Where a member starts in a partition the group has no committed offset for
/// (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    Earliest,
    #[default]
    Latest,
    /// Fail the poll with `no_committed_offset`.
    None,
}

/// A partition assignment strategy, named as Kafka's `partition.assignment.strategy`
/// names them. The group's coordinator computes the assignment; every member of a group
/// must ask for the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Assignor {
    /// Per topic, contiguous ranges of partitions to the members in member-id order; the
    /// first `partitions % members` get one extra (Kafka's `RangeAssignor`, its default).
    #[default]
    Range,
    /// All subscribed partitions, sorted by (topic, partition), dealt to the members in
    /// turn (Kafka's `RoundRobinAssignor`).
    RoundRobin,
    /// Balanced, moving as few partitions as possible on a rebalance (Kafka's
    /// `StickyAssignor`).
    Sticky,
}

impl Assignor {
    pub const ALL: [Assignor; 3] = [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky];

    pub const fn as_str(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::Sticky => "sticky",
        }
    }

    /// The assignor named `s` (exactly as [`Assignor::as_str`] spells it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Assignor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupState {
    /// No members (committed offsets may remain).
    Empty,
    /// Members, each with its assignment (partitions may be waiting for a hand-over).
    Stable,
}

/// A partition and an offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinGroup {
    pub group: String,
    pub topics: Vec<String>,
    pub session_timeout_ms: u64,
    pub auto_offset_reset: OffsetReset,
    /// Every member of a group must use the same one.
    pub assignor: Assignor,
    /// The next poll commits what the previous poll returned.
    pub auto_commit: bool,
    #[serde(default)]
    pub client_id: Option<String>,
}

/// An offset to commit, with optional client metadata (Kafka's `OffsetAndMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOffset {
    pub topic: String,
    pub partition: u32,
    /// The next offset to read.
    pub offset: u64,
    #[serde(default)]
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum GroupRequest {
    Join(JoinGroup),
    /// Leave at once (with auto-commit, the member's positions are committed first).
    Leave {
        group: String,
        member_id: String,
    },
    /// The first half of a member's poll: a heartbeat, the auto-commit of the previous
    /// poll, the hand-over of revoked and freed partitions, and where to read.
    PollBegin {
        group: String,
        member_id: String,
    },
    /// The second half: where the member is now (next offsets to read).
    PollEnd {
        group: String,
        member_id: String,
        generation: u32,
        positions: Vec<PartitionOffset>,
    },
    /// A member's commit (fenced by generation and ownership) or, with no `member_id`,
    /// a commit to a group without members.
    Commit {
        group: String,
        member_id: Option<String>,
        generation: Option<u32>,
        offsets: Vec<CommitOffset>,
    },
    /// Sets committed offsets (and the owning members' positions) to resolved offsets.
    Seek {
        group: String,
        offsets: Vec<PartitionOffset>,
    },
    Describe {
        group: String,
    },
    /// The groups coordinated in one partition of [`OFFSETS_TOPIC`].
    List {
        partition: u32,
    },
    /// Deletes a group without members and its committed offsets.
    Delete {
        group: String,
    },
}

impl GroupRequest {
    /// The group the call is about (`None` for [`GroupRequest::List`]).
    pub fn group(&self) -> Option<&str> {
        match self {
            Self::Join(j) => Some(&j.group),
            Self::Leave { group, .. }
            | Self::PollBegin { group, .. }
            | Self::PollEnd { group, .. }
            | Self::Commit { group, .. }
            | Self::Seek { group, .. }
            | Self::Describe { group }
            | Self::Delete { group } => Some(group),
            Self::List { .. } => None,
        }
    }

    /// The partition of [`OFFSETS_TOPIC`] (of `partitions`) whose leader serves this call.
    pub fn partition(&self, partitions: u32) -> u32 {
        match self {
            Self::List { partition } => *partition,
            other => coordinator_partition(other.group().unwrap_or_default(), partitions),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum GroupResponse {
    Joined(Membership),
    Poll(PollPlan),
    Done,
    Described(GroupDescription),
    Listed { groups: Vec<GroupSummary> },
}

/// A member's view of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub member_id: String,
    pub generation: u32,
    /// The partitions the member owns now.
    pub assignment: Vec<TopicPartition>,
    /// Partitions assigned to the member that another member has not released yet.
    pub pending: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollPlan {
    pub membership: Membership,
    pub session_timeout_ms: u64,
    pub auto_offset_reset: OffsetReset,
    /// Where to read in each owned partition; `None` when there is neither a position
    /// nor a committed offset (apply `auto_offset_reset`).
    pub positions: Vec<(TopicPartition, Option<u64>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupSummary {
    pub group: String,
    pub state: GroupState,
    pub members: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: Option<String>,
    pub topics: Vec<String>,
    pub session_timeout_ms: u64,
    pub auto_offset_reset: OffsetReset,
    pub auto_commit: bool,
    pub assignment: Vec<TopicPartition>,
    pub pending: Vec<TopicPartition>,
    /// Milliseconds since the member's last poll (or join).
    pub last_seen_ms_ago: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"group": "billing", "state": "stable", "generation": 3, "assignor": "range",
    "members": [{"member_id": "worker-1-8d3f…", "client_id": "worker-1", "topics": ["orders"],
    "session_timeout_ms": 45000, "auto_offset_reset": "earliest", "auto_commit": true,
    "assignment": [{"topic": "orders", "partition": 0}], "pending": [], "last_seen_ms_ago": 120}],
    "offsets": [{"topic": "orders", "partition": 0, "offset": 42, "metadata": null, "commit_timestamp": 1_700_000_000_000i64}]}))]
pub struct GroupDescription {
    pub group: String,
    pub state: GroupState,
    pub generation: u32,
    /// `null` until a member has joined.
    pub assignor: Option<Assignor>,
    pub members: Vec<MemberDescription>,
    pub offsets: Vec<CommittedOffset>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_partition_matches_java_string_hash_code() {
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(coordinator_partition("hello", 1 << 30), 99_162_322);
        assert_eq!(coordinator_partition("hello", 50), 99_162_322 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Kafka's abs maps it to 0.
        assert_eq!(coordinator_partition("polygenelubricants", 7), 0);
        // Whatever the hash (negative ones included), a group lands in range.
        for g in ["a", "zzzzzzzzzzzzzzzz", "groupé", ""] {
            assert!(coordinator_partition(g, 3) < 3);
        }
        assert_eq!(coordinator_partition("x", 0), 0);
    }

    #[test]
    fn requests_round_trip_as_tagged_json() {
        let req = GroupRequest::Commit {
            group: "g".into(),
            member_id: Some("m".into()),
            generation: Some(3),
            offsets: vec![CommitOffset { topic: "t".into(), partition: 1, offset: 5, metadata: None }],
        };
        let json = serde_json::to_string(&req).expect("serializes");
        assert!(json.contains("\"op\":\"commit\""), "{json}");
        assert_eq!(serde_json::from_str::<GroupRequest>(&json).expect("parses"), req);
        assert_eq!(req.group(), Some("g"));
        assert_eq!(GroupRequest::Describe { group: "hello".into() }.partition(50), 99_162_322 % 50);
        assert_eq!(GroupRequest::List { partition: 3 }.partition(16), 3);
    }
}
