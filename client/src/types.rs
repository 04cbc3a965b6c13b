//! The API's request and answer bodies, as the client sends and reads them (the
//! server's are in `fjord-gateway`; `openapi.yaml` is the contract between them).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `GET /v1/topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
}

/// A topic to create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
    /// Kafka config keys (`retention.ms`, `cleanup.policy`, …).
    #[serde(skip_serializing_if = "Map::is_empty", default)]
    pub config: Map<String, Value>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self { name: name.into(), partitions: Some(partitions), ..Self::default() }
    }
}

/// A change to a topic: a larger partition count and/or config keys (`null` resets one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopicChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Map<String, Value>>,
}

/// `GET /v1/topics/{topic}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: String,
    pub replication_factor: u32,
    pub partitions: Vec<PartitionDescription>,
    pub config: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDescription {
    pub partition: u32,
    pub leader: Option<u32>,
    pub leader_epoch: u32,
    pub replicas: Vec<u32>,
    pub isr: Vec<u32>,
    pub log_start_offset: Option<u64>,
    pub high_watermark: Option<u64>,
}

/// A record to produce. At most one of `key`/`key_base64` and of `value`/`value_base64`;
/// no value is a tombstone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// Any JSON value, stored as its JSON text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub headers: Vec<Header>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record with a JSON value and no key.
    pub fn value(value: Value) -> Self {
        Self { value: Some(value), ..Self::default() }
    }

    /// A keyed record with a JSON value.
    pub fn keyed(key: impl Into<String>, value: Value) -> Self {
        Self { key: Some(key.into()), value: Some(value), ..Self::default() }
    }
}

/// A header of a record to produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

/// Where each produced record went, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProduceReply {
    pub offsets: Vec<ProducedOffset>,
    /// The `Idempotent-Replayed` header: `true` when the request was a retry of one
    /// already written (these are its original offsets), `partial` when part of it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<String>,
}

impl ProduceReply {
    /// Whether every record was written.
    pub fn all_written(&self) -> bool {
        self.offsets.iter().all(|o| o.error.is_none())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProducedOffset {
    pub partition: u32,
    /// Absent with `acks=0` and on error.
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// The `error` object of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    pub retriable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetails>,
}

/// What `offset_mismatch`, `out_of_order_sequence` and `producer_fenced` say besides
/// their message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetails {
    /// `offset_out_of_range`: where the partition's log starts now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<u64>,
    /// `offset_mismatch`, `offset_out_of_range`: where the partition's log ends now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_end_offset: Option<u64>,
    /// `out_of_order_sequence`: the sequence the partition expects next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sequence: Option<u32>,
    /// `producer_fenced`: the producer's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_epoch: Option<u32>,
    /// `quota_exceeded`: how long until the principal is back within its quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A registered producer session (`POST /v1/producers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSession {
    pub name: String,
    pub producer_id: u64,
    pub producer_epoch: u32,
}

/// A consumed record. Keys and values come as text/JSON or, when they are not, as
/// base64 (see the API's `format` parameter); a tombstone has no value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    #[serde(default)]
    pub headers: Vec<Header>,
}

/// A partition read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumeReply {
    pub records: Vec<ConsumedRecord>,
    pub next_offset: u64,
    pub high_watermark: u64,
}

/// `GET /v1/topics/{topic}/partitions/{p}/offsets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffsets {
    pub partition: u32,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub log_end_offset: u64,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// A topic-partition in group answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

/// How a member joins a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    pub topics: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_timeout_ms: Option<u64>,
    /// `earliest`, `latest` or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_offset_reset: Option<String>,
    /// `range`, `roundrobin` or `sticky`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_commit: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// A member's identity and assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub member_id: String,
    pub generation: u32,
    pub assignment: Vec<TopicPartition>,
    pub pending: Vec<TopicPartition>,
}

/// A member's poll answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollReply {
    pub member_id: String,
    pub generation: u32,
    pub assignment: Vec<TopicPartition>,
    pub pending: Vec<TopicPartition>,
    pub records: Vec<ConsumedRecord>,
}

/// An offset to commit (the next offset to read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// A commit: by a member in the generation of its last poll, or (no member) to a
/// group without members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    pub offsets: Vec<CommitOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group: String,
    /// `empty` or `stable`.
    pub state: String,
    pub members: u32,
}

/// `GET /v1/groups/{group}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub generation: u32,
    pub assignor: Option<String>,
    pub members: Vec<MemberDescription>,
    pub offsets: Vec<CommittedOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: Option<String>,
    pub topics: Vec<String>,
    pub session_timeout_ms: u64,
    pub auto_offset_reset: String,
    pub auto_commit: bool,
    pub assignment: Vec<TopicPartition>,
    pub pending: Vec<TopicPartition>,
    pub last_seen_ms_ago: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

/// `GET /v1/groups/{group}/offsets`: committed offsets and lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffsets {
    pub group: String,
    pub offsets: Vec<GroupPartitionOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPartitionOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: Option<u64>,
    pub metadata: Option<String>,
    pub member_id: Option<String>,
    pub high_watermark: Option<u64>,
    pub lag: Option<u64>,
}

/// Where a seek moves a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeekTo {
    Earliest,
    Latest,
    Offset(u64),
    Timestamp(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seek {
    pub topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<u32>>,
    pub to: SeekTo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeekReply {
    pub offsets: Vec<SoughtOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoughtOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub cluster_id: String,
    pub controller: Option<u32>,
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: u32,
    pub endpoint: String,
    pub rack: Option<String>,
}

/// One partition, as `POST /v1/elections` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRef {
    pub topic: String,
    pub partition: u32,
}

/// What became of one partition's preferred-leader election (`POST /v1/elections`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionResult {
    pub topic: String,
    pub partition: u32,
    /// `elected`, `already_preferred`, `preferred_not_available` or `pending`.
    pub outcome: String,
    pub preferred: Option<u32>,
    pub leader: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionResults {
    pub results: Vec<ElectionResult>,
}

/// A token's scope: operations on the resources of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// `topic`, `group`, `producer` or `cluster`.
    pub resource_type: String,
    /// `literal` (`*`: every name) or `prefixed`.
    pub pattern_type: String,
    pub name: String,
    /// `all`, `produce`, `consume`, `describe`, `create`, `alter`, `delete`, `admin`.
    pub operations: Vec<String>,
}

/// A token to mint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewToken {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A token without its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub principal: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub scopes: Vec<Scope>,
    pub issued_by: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// A minted token: the secret, shown once, and what it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI {
    pub principal: String,
    pub authentication: bool,
    pub super_user: bool,
    pub token: Option<TokenInfo>,
}

/// One ACL binding (Kafka's model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclBinding {
    /// A principal, or `*` for every principal.
    pub principal: String,
    pub resource_type: String,
    pub pattern_type: String,
    pub name: String,
    pub operation: String,
    /// `allow` or `deny`.
    pub permission: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AclList {
    pub acls: Vec<AclBinding>,
}

/// A stored pipeline (`GET /v1/pipelines`); the definition as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineInfo {
    pub name: String,
    pub definition: Value,
    pub created_ms: i64,
    pub principal: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineInfo>,
}
