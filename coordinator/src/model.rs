//! The cluster metadata model: nodes, topics, partition states, topic config.

use fjord_protocol::auth::{AclBinding, TokenRecord};
use fjord_protocol::{ErrorCode, FjordError, NodeId, Result, TopicPartition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A storage node as other parts see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// Where its internal API listens (`host:port`), or `in-process` in standalone.
    pub endpoint: String,
    pub rack: Option<String>,
    /// Set by a node on SIGTERM (controlled shutdown): the controller moves its
    /// leaderships away and takes it out of every ISR.
    #[serde(default)]
    pub shutting_down: bool,
    /// Replicas on this node that found a stored batch damaged (Kafka's offline
    /// replicas, KIP-112): for these partitions the node counts as down — the controller
    /// elects another leader and takes it out of the ISR — until it has cut its log at
    /// the damage and takes the partition back as a follower.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub offline_replicas: BTreeSet<TopicPartition>,
}

impl NodeInfo {
    /// Whether this node serves `partition` of `topic` (it is not an offline replica
    /// there); says nothing of `shutting_down`.
    pub fn serves(&self, topic: &str, partition: u32) -> bool {
        !self.offline_replicas.iter().any(|tp| tp.topic == topic && tp.partition == partition)
    }
}

/// A live gateway (`/gateways/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    pub id: String,
    pub endpoint: String,
}

/// A registered producer session: a stable name, the id the registry gave it, and its
/// epoch, bumped by every registration (the newest registration fences older ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerInfo {
    pub name: String,
    pub id: u64,
    pub epoch: u32,
}

/// Leadership and replicas of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub partition: u32,
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    pub leader: Option<NodeId>,
    /// Bumped on every leader change.
    pub leader_epoch: u32,
    pub isr: Vec<NodeId>,
    /// Version of the stored state (the znode version in ZooKeeper): every change is
    /// conditional on it, so two writers cannot both win.
    #[serde(default)]
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    /// Distinguishes a topic from an earlier one of the same name.
    pub topic_id: String,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionState>,
}

impl TopicMetadata {
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

/// A stored pipeline: its definition (JSON, as `fjord-streams` reads it; the coordinator
/// does not interpret it) and who created it when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRecord {
    pub name: String,
    pub definition: Value,
    pub created_ms: i64,
    pub principal: String,
}

/// A preferred-leader election an operator asked for (Kafka's
/// `/admin/preferred_replica_election`): the controller moves the leadership of each
/// listed partition to its preferred replica where it can, then removes the request
/// (`crate::controller`). At most one is pending at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionRequest {
    /// Tells this request from a later one, so that removing it never removes another.
    pub id: String,
    pub partitions: BTreeSet<TopicPartition>,
}

impl ElectionRequest {
    pub fn includes(&self, topic: &str, partition: u32) -> bool {
        self.partitions.contains(&TopicPartition::new(topic, partition))
    }
}

/// A consistent picture of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub cluster_id: String,
    pub controller: Option<NodeId>,
    /// Bumped every time a new controller is elected.
    #[serde(default)]
    pub controller_epoch: u32,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    #[serde(default)]
    pub gateways: BTreeMap<String, GatewayInfo>,
    /// Shared, so a caller holds a topic (thousands of partitions, say) without copying it,
    /// and the embedded store's next snapshot shares every topic a change did not touch.
    pub topics: BTreeMap<String, std::sync::Arc<TopicMetadata>>,
    /// Registered producer sessions by producer id (exactly-once produce, KIP-98).
    #[serde(default)]
    pub producers: BTreeMap<u64, ProducerInfo>,
    /// Bearer tokens by id (hashes only, never a secret); shared, so a request's caller
    /// holds its record without copying it.
    #[serde(default)]
    pub tokens: BTreeMap<String, std::sync::Arc<TokenRecord>>,
    /// Every ACL binding of the cluster.
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
    /// Stream-processing pipelines by name (their definitions; processors run them).
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineRecord>,
    /// The preferred-leader election asked for and not yet run, if any.
    #[serde(default)]
    pub preferred_election: Option<ElectionRequest>,
    /// Some ACL binding could not be read: authorization allows only super users until
    /// it can (a missing deny must not widen access).
    #[serde(default)]
    pub acls_unreadable: bool,
    /// Ids of topics that exist but are left out of `topics` because they could not be
    /// read whole (being created or deleted, or a znode that does not decode): storage
    /// nodes keep their data. Only a topic that is gone is deleted.
    #[serde(default)]
    pub held_topic_ids: BTreeSet<String>,
    /// Topics (name → id, also in `held_topic_ids`) whose stored parts all decode but
    /// whose config or some partition state is missing, and none of whose partitions
    /// ever had a leader (so no node has data of it): a creation or deletion in
    /// progress, or one whose writer failed half-way. The controller removes one that
    /// stays so ([`crate::controller::INCOMPLETE_TOPIC_GRACE`]), which frees the name.
    #[serde(default)]
    pub incomplete_topics: BTreeMap<String, String>,
    /// Some topic could not be read at all (its id unknown): storage nodes drop no data
    /// until it can.
    #[serde(default)]
    pub unreadable_topics: bool,
}

impl ClusterMetadata {
    pub fn topic(&self, name: &str) -> Option<&std::sync::Arc<TopicMetadata>> {
        self.topics.get(name)
    }

    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionState> {
        self.topics.get(topic)?.partitions.get(partition as usize)
    }
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
    pub config: TopicConfig,
}

/// A change to an existing topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicChange {
    /// The new (larger) partition count.
    pub partitions: Option<u32>,
    /// The full new config.
    pub config: Option<TopicConfig>,
}

/// Longest `idempotency.window.ms` and `producer.id.expiration.ms`: 7 days.
pub const MAX_PRODUCER_STATE_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Most partitions one topic may have; bounds the column families a request can create.
pub const MAX_PARTITIONS: u32 = 10_000;

/// Topic config, serialized with Kafka's key names. Keys added later carry a serde
/// default, so configs stored before them still decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Delete batches older than this; `-1` keeps them forever.
    #[serde(rename = "retention.ms")]
    pub retention_ms: i64,
    /// Delete the oldest batches while the partition is larger than this; `-1`: no limit.
    #[serde(rename = "retention.bytes")]
    pub retention_bytes: i64,
    #[serde(rename = "cleanup.policy")]
    pub cleanup_policy: CleanupPolicy,
    /// How long a tombstone stays on a compacted topic (by its record timestamp), so
    /// consumers reading from the start see the delete.
    #[serde(rename = "delete.retention.ms", default = "default_delete_retention_ms")]
    pub delete_retention_ms: i64,
    /// Records younger than this are not compacted yet (at batch granularity).
    #[serde(rename = "min.compaction.lag.ms", default)]
    pub min_compaction_lag_ms: i64,
    #[serde(rename = "min.insync.replicas")]
    pub min_insync_replicas: u32,
    /// Largest record (key + value + headers) accepted.
    #[serde(rename = "max.message.bytes")]
    pub max_message_bytes: u32,
    #[serde(rename = "unclean.leader.election.enable")]
    pub unclean_leader_election_enable: bool,
    /// How long a produce request's `Idempotency-Key` is remembered (ms): a retry within
    /// it is answered with the original offsets.
    #[serde(rename = "idempotency.window.ms", default = "default_idempotency_window_ms")]
    pub idempotency_window_ms: i64,
    /// A producer session idle for longer than this (ms) is forgotten by the partition:
    /// its next request must start over at sequence 0 (Kafka's `producer.id.expiration.ms`).
    #[serde(rename = "producer.id.expiration.ms", default = "default_producer_id_expiration_ms")]
    pub producer_id_expiration_ms: i64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: default_delete_retention_ms(),
            min_compaction_lag_ms: 0,
            min_insync_replicas: 1,
            max_message_bytes: 1_048_588,
            unclean_leader_election_enable: false,
            idempotency_window_ms: default_idempotency_window_ms(),
            producer_id_expiration_ms: default_producer_id_expiration_ms(),
        }
    }
}

impl TopicConfig {
    /// The config of the internal `__consumer_offsets` topic: compacted, kept forever
    /// (the last record per key is a group's state).
    pub fn offsets_topic() -> Self {
        Self { cleanup_policy: CleanupPolicy::Compact, retention_ms: -1, ..Self::default() }
    }
}

/// Kafka's `cleanup.policy`: what happens to old records of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CleanupPolicy {
    /// Retention by time and size (`retention.ms`, `retention.bytes`).
    #[default]
    #[serde(rename = "delete")]
    Delete,
    /// Keep at least the latest record of every key.
    #[serde(rename = "compact")]
    Compact,
    /// Both: compaction, and retention by time and size.
    #[serde(rename = "compact,delete", alias = "delete,compact")]
    CompactDelete,
}

impl CleanupPolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
            Self::CompactDelete => "compact,delete",
        }
    }

    pub const fn compacts(self) -> bool {
        matches!(self, Self::Compact | Self::CompactDelete)
    }

    pub const fn deletes(self) -> bool {
        matches!(self, Self::Delete | Self::CompactDelete)
    }

    /// A comma-separated list of `delete` and `compact`, in any order, spaces allowed.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let (mut compact, mut delete) = (false, false);
        for part in text.trim().split(',').map(str::trim) {
            match part {
                "compact" => compact = true,
                "delete" => delete = true,
                other => return Err(format!("unknown policy `{other}`; use `delete`, `compact` or `compact,delete`")),
            }
        }
        Ok(match (compact, delete) {
            (true, true) => Self::CompactDelete,
            (true, false) => Self::Compact,
            _ => Self::Delete,
        })
    }
}

/// Five minutes: longer than any client's retry loop, short enough to keep the index small.
fn default_idempotency_window_ms() -> i64 {
    5 * 60 * 1000
}

/// Kafka's default `producer.id.expiration.ms`: one day.
fn default_producer_id_expiration_ms() -> i64 {
    24 * 60 * 60 * 1000
}

/// Kafka's default `delete.retention.ms`: one day.
fn default_delete_retention_ms() -> i64 {
    24 * 60 * 60 * 1000
}

fn bad_config(key: &str, why: impl std::fmt::Display) -> FjordError {
    FjordError::new(ErrorCode::InvalidConfig, format!("config `{key}`: {why}"))
}

/// Reads an integer given as a JSON number or a decimal string (Kafka tools send strings).
fn int_value(key: &str, v: &Value) -> Result<i64> {
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| bad_config(key, format!("expected an integer, got {v}")))
}

fn bool_value(key: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(bad_config(key, format!("expected true or false, got {v}"))),
    }
}

impl TopicConfig {
    pub const KEYS: [&'static str; 10] = [
        "retention.ms",
        "retention.bytes",
        "cleanup.policy",
        "delete.retention.ms",
        "min.compaction.lag.ms",
        "min.insync.replicas",
        "max.message.bytes",
        "unclean.leader.election.enable",
        "idempotency.window.ms",
        "producer.id.expiration.ms",
    ];

    /// Whether `cleanup.policy` has `compact`: keep the latest record per key.
    pub fn compacts(&self) -> bool {
        self.cleanup_policy.compacts()
    }

    /// Whether `cleanup.policy` has `delete`: retention by time and size.
    pub fn deletes(&self) -> bool {
        self.cleanup_policy.deletes()
    }

    /// Applies `changes` (Kafka key → JSON value; `null` resets a key to its default)
    /// to a copy of `self`. Unknown keys and bad values are refused, naming the key.
    pub fn with_changes(&self, changes: &serde_json::Map<String, Value>) -> Result<Self> {
        let mut c = self.clone();
        let defaults = Self::default();
        for (key, v) in changes {
            let reset = v.is_null();
            match key.as_str() {
                "retention.ms" | "retention.bytes" => {
                    let n = if reset {
                        if key == "retention.ms" {
                            defaults.retention_ms
                        } else {
                            defaults.retention_bytes
                        }
                    } else {
                        int_value(key, v)?
                    };
                    if n < -1 {
                        return Err(bad_config(key, "must be -1 (unlimited) or a non-negative integer"));
                    }
                    if key == "retention.ms" {
                        c.retention_ms = n;
                    } else {
                        c.retention_bytes = n;
                    }
                }
                "cleanup.policy" => {
                    c.cleanup_policy = if reset {
                        defaults.cleanup_policy
                    } else {
                        let text = v.as_str().ok_or_else(|| bad_config(key, "expected a string"))?;
                        CleanupPolicy::parse(text).map_err(|why| bad_config(key, why))?
                    };
                }
                "delete.retention.ms" | "min.compaction.lag.ms" => {
                    let n = if reset {
                        if key == "delete.retention.ms" {
                            defaults.delete_retention_ms
                        } else {
                            defaults.min_compaction_lag_ms
                        }
                    } else {
                        int_value(key, v)?
                    };
                    if n < 0 {
                        return Err(bad_config(key, "must be a non-negative integer (ms)"));
                    }
                    if key == "delete.retention.ms" {
                        c.delete_retention_ms = n;
                    } else {
                        c.min_compaction_lag_ms = n;
                    }
                }
                "min.insync.replicas" => {
                    let n = if reset { i64::from(defaults.min_insync_replicas) } else { int_value(key, v)? };
                    c.min_insync_replicas = u32::try_from(n)
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad_config(key, "must be at least 1"))?;
                }
                "max.message.bytes" => {
                    let n = if reset { i64::from(defaults.max_message_bytes) } else { int_value(key, v)? };
                    c.max_message_bytes = u32::try_from(n)
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad_config(key, "must be between 1 and 4294967295"))?;
                }
                "unclean.leader.election.enable" => {
                    c.unclean_leader_election_enable =
                        if reset { defaults.unclean_leader_election_enable } else { bool_value(key, v)? };
                }
                "idempotency.window.ms" | "producer.id.expiration.ms" => {
                    let idem = key == "idempotency.window.ms";
                    let n = match (reset, idem) {
                        (true, true) => defaults.idempotency_window_ms,
                        (true, false) => defaults.producer_id_expiration_ms,
                        (false, _) => int_value(key, v)?,
                    };
                    if !(1_000..=MAX_PRODUCER_STATE_MS).contains(&n) {
                        return Err(bad_config(key, format!("must be between 1000 and {MAX_PRODUCER_STATE_MS} (ms)")));
                    }
                    if idem {
                        c.idempotency_window_ms = n;
                    } else {
                        c.producer_id_expiration_ms = n;
                    }
                }
                other => return Err(bad_config(other, format!("unknown key; known keys: {}", Self::KEYS.join(", ")))),
            }
        }
        Ok(c)
    }
}

/// Kafka's topic-name rule: `[a-zA-Z0-9._-]{1,249}`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |why: &str| FjordError::new(ErrorCode::InvalidTopicName, format!("invalid topic name {name:?}: {why}"));
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 249 {
        return Err(bad("it is longer than 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(bad("`.` and `..` are reserved"));
    }
    if !fjord_protocol::names::is_valid_name(name, fjord_protocol::names::MAX_NAME_LEN) {
        return Err(bad("only ASCII letters, digits, `.`, `_` and `-` are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "orders.v1", "A_b-9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "has space", "slash/es", "ünï", &"x".repeat(250)] {
            let err = validate_topic_name(bad).expect_err(bad);
            assert_eq!(err.code, ErrorCode::InvalidTopicName);
        }
    }

    #[test]
    fn config_accepts_numbers_strings_and_null_resets() {
        let c = TopicConfig::default()
            .with_changes(&changes(json!({"retention.ms": "1000", "retention.bytes": 5, "min.insync.replicas": 2})))
            .expect("valid");
        assert_eq!((c.retention_ms, c.retention_bytes, c.min_insync_replicas), (1000, 5, 2));
        let reset = c.with_changes(&changes(json!({"retention.ms": null}))).expect("reset");
        assert_eq!(reset.retention_ms, TopicConfig::default().retention_ms);
        assert_eq!(reset.retention_bytes, 5);
    }

    #[test]
    fn config_refuses_unknown_keys_and_bad_values_naming_the_key() {
        for (change, key) in [
            (json!({"retention.mss": 1}), "retention.mss"),
            (json!({"retention.ms": -2}), "retention.ms"),
            (json!({"retention.ms": "soon"}), "retention.ms"),
            (json!({"min.insync.replicas": 0}), "min.insync.replicas"),
            (json!({"cleanup.policy": "shred"}), "cleanup.policy"),
            (json!({"cleanup.policy": "compact,shred"}), "cleanup.policy"),
            (json!({"cleanup.policy": ""}), "cleanup.policy"),
            (json!({"cleanup.policy": 1}), "cleanup.policy"),
            (json!({"delete.retention.ms": -1}), "delete.retention.ms"),
            (json!({"min.compaction.lag.ms": "later"}), "min.compaction.lag.ms"),
            (json!({"min.compaction.lag.ms": -5}), "min.compaction.lag.ms"),
            (json!({"unclean.leader.election.enable": 3}), "unclean.leader.election.enable"),
        ] {
            let err = TopicConfig::default().with_changes(&changes(change)).expect_err(key);
            assert_eq!(err.code, ErrorCode::InvalidConfig);
            assert!(err.message.contains(key), "{}", err.message);
        }
    }

    #[test]
    fn cleanup_policies_are_normalized_with_their_helpers() {
        for (given, stored, compacts, deletes) in [
            ("delete", "delete", false, true),
            ("compact", "compact", true, false),
            ("compact,delete", "compact,delete", true, true),
            ("delete,compact", "compact,delete", true, true),
            (" delete , compact ", "compact,delete", true, true),
        ] {
            let c = TopicConfig::default().with_changes(&changes(json!({"cleanup.policy": given}))).expect(given);
            assert_eq!((c.cleanup_policy.as_str(), c.compacts(), c.deletes()), (stored, compacts, deletes), "{given}");
            let json = serde_json::to_value(c.cleanup_policy).expect("encode");
            assert_eq!(json, stored, "stored under its Kafka spelling");
            assert_eq!(serde_json::from_value::<CleanupPolicy>(json).expect("decode"), c.cleanup_policy);
        }
        let d = TopicConfig::default();
        assert!(d.deletes() && !d.compacts());
        assert_eq!((d.delete_retention_ms, d.min_compaction_lag_ms), (86_400_000, 0), "Kafka's defaults");

        let c = d
            .with_changes(&changes(
                json!({"cleanup.policy": "compact", "delete.retention.ms": "0", "min.compaction.lag.ms": 500}),
            ))
            .expect("valid");
        assert_eq!((c.delete_retention_ms, c.min_compaction_lag_ms), (0, 500));
        let reset = c
            .with_changes(&changes(
                json!({"cleanup.policy": null, "delete.retention.ms": null, "min.compaction.lag.ms": null}),
            ))
            .expect("reset");
        assert_eq!(reset, d);
    }

    /// `delete,compact` as stored by an earlier version still decodes.
    #[test]
    fn the_other_order_decodes() {
        let p: CleanupPolicy = serde_json::from_value(json!("delete,compact")).expect("decode");
        assert_eq!(p, CleanupPolicy::CompactDelete);
    }

    /// A config stored before the compaction keys existed still decodes, with their
    /// defaults; a stored config round-trips under Kafka's key names.
    #[test]
    fn stored_configs_decode_with_defaults_for_later_keys() {
        let old = json!({"retention.ms": 1000, "retention.bytes": -1, "cleanup.policy": "delete",
            "min.insync.replicas": 1, "max.message.bytes": 100, "unclean.leader.election.enable": false});
        let c: TopicConfig = serde_json::from_value(old).expect("decode");
        assert_eq!((c.retention_ms, c.delete_retention_ms, c.min_compaction_lag_ms), (1000, 86_400_000, 0));
        let stored = serde_json::to_value(&c).expect("encode");
        assert_eq!(stored["delete.retention.ms"], 86_400_000);
        assert_eq!(stored["min.compaction.lag.ms"], 0);
        assert_eq!(stored.as_object().map(|o| o.len()), Some(TopicConfig::KEYS.len()), "every key is stored");
        assert_eq!(serde_json::from_value::<TopicConfig>(stored).expect("decode"), c);
    }
}
