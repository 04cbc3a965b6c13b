//! Error codes shared by every part. A code's string is part of the public API: it is
//! never renamed or reused for another meaning.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed in a way no more specific code covers.
    InvalidRequest,
    /// The body is not valid JSON / NDJSON, or has the wrong shape or field types.
    InvalidJson,
    /// A `*_base64` field is not valid standard base64.
    InvalidBase64,
    /// A topic name breaks `[a-zA-Z0-9._-]{1,249}`.
    InvalidTopicName,
    UnknownTopic,
    UnknownPartition,
    TopicAlreadyExists,
    /// A partition count that is zero, too large, or a decrease.
    InvalidPartitions,
    InvalidReplicationFactor,
    /// An unknown config key or a bad value for a known one.
    InvalidConfig,
    /// An offset that is not a non-negative integer, `earliest` or `latest`.
    InvalidOffset,
    /// An offset below the log start offset or above the log end offset.
    OffsetOutOfRange,
    /// One record is larger than the topic's `max.message.bytes`.
    RecordTooLarge,
    /// A record the topic cannot take as it is, e.g. one without a key on a compacted
    /// topic (Kafka's `InvalidRecordException`).
    InvalidRecord,
    /// The request body is larger than the server's limit.
    RequestTooLarge,
    UnsupportedMediaType,
    /// No such route.
    NotFound,
    MethodNotAllowed,
    /// `acks=all` with fewer in-sync replicas than `min.insync.replicas`; nothing appended.
    NotEnoughReplicas,
    /// Appended, but the ISR shrank below `min.insync.replicas` before it was replicated.
    NotEnoughReplicasAfterAppend,
    /// The node asked is not the partition's leader (any more).
    NotLeader,
    /// The partition has no leader right now, or its log is not open yet.
    LeaderNotAvailable,
    /// The request's deadline passed before it completed.
    RequestTimeout,
    /// The connection to the storage node broke before it answered (it crashed or was
    /// cut off mid-call): a write may or may not have happened. Retriable; safe to
    /// retry with the same `Idempotency-Key`.
    NodeDisconnected,
    /// A stored or received record batch failed validation.
    CorruptBatch,
    /// The storage engine failed.
    StorageError,
    /// A stored batch of the partition failed its checksum on the node that leads it
    /// (bit rot, a torn or misdirected write): nothing of it is served, and the node
    /// gives the partition up — another in-sync replica is elected, and the damaged one
    /// cuts its log at the batch and fetches it again from the new leader. Retriable: a
    /// retry reaches the new leader; with no other in-sync replica the partition stays
    /// offline (`leader_not_available`), loudly, until an operator acts.
    CorruptLog,
    /// The node's data directory is (nearly) full: below `storage.min_free_bytes` free,
    /// it takes no more data; nothing was written. Retriable: it writes again once space
    /// returns (retention, deleted topics, an operator).
    InsufficientStorage,
    /// The server is shutting down.
    ShuttingDown,
    /// The server is at a limit (the gateway's budget of `acks=0` bytes not yet handed to
    /// a storage node); nothing was written. Retry after a pause.
    Throttled,
    /// A conditional metadata write lost a race; re-read and retry.
    StaleVersion,
    /// Appended, but leadership moved before the write was replicated: it may or may
    /// not be kept. A retry may duplicate it (gateways never retry this one).
    LeaderChangedAfterAppend,
    /// A group id that is empty, too long, or has characters outside `[a-zA-Z0-9._-]`.
    InvalidGroupId,
    /// The group has no members and no committed offsets (or was deleted).
    UnknownGroup,
    /// The member is not in the group (never joined, left, or was evicted after its
    /// session timeout): join again.
    UnknownMemberId,
    /// A commit from a generation the member is no longer in, or for a partition it
    /// does not own: poll to learn the current assignment.
    StaleGeneration,
    /// The member asks for an assignor other than the one the group uses.
    InconsistentGroupProtocol,
    /// Deleting a group that still has members.
    GroupNotEmpty,
    /// No committed offset for a partition and `auto_offset_reset` is `none`.
    NoCommittedOffset,
    /// A conditional append (`expected_offset`) found the log ending elsewhere; nothing
    /// was written. `details.log_end_offset` says where it ends.
    OffsetMismatch,
    /// An `Idempotency-Key` already used, within the window, for another request;
    /// nothing was written.
    IdempotencyKeyReused,
    /// A producer session's sequence skips ahead or goes back beyond what can be
    /// answered as a replay; nothing was written. `details.expected_sequence` says which.
    OutOfOrderSequence,
    /// A producer session whose epoch another registration of the same name has
    /// superseded; nothing was written.
    ProducerFenced,
    /// A producer id no registration gave out (or one that expired): register again.
    UnknownProducerId,
    /// No credential, or one that is unknown, expired or revoked (`401`, with
    /// `WWW-Authenticate`). Nothing was done.
    Unauthenticated,
    /// The credential is valid but its principal (or the token's scopes) may not do
    /// this. Nothing was done.
    Forbidden,
    /// The principal is over one of its quotas (bytes/s or requests/s); nothing was
    /// done. Retry after `Retry-After`.
    QuotaExceeded,
    /// A pipeline definition that does not parse or compile; `message` says where.
    InvalidPipeline,
    UnknownPipeline,
    PipelineAlreadyExists,
    /// A preferred-leader election asked for earlier is still pending; nothing was
    /// done. Retriable once it is done (seconds).
    ElectionInProgress,
    /// A bug or an unexpected failure; details are in the server log.
    Internal,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidJson => "invalid_json",
            Self::InvalidBase64 => "invalid_base64",
            Self::InvalidTopicName => "invalid_topic_name",
            Self::UnknownTopic => "unknown_topic",
            Self::UnknownPartition => "unknown_partition",
            Self::TopicAlreadyExists => "topic_already_exists",
            Self::InvalidPartitions => "invalid_partitions",
            Self::InvalidReplicationFactor => "invalid_replication_factor",
            Self::InvalidConfig => "invalid_config",
            Self::InvalidOffset => "invalid_offset",
            Self::OffsetOutOfRange => "offset_out_of_range",
            Self::RecordTooLarge => "record_too_large",
            Self::InvalidRecord => "invalid_record",
            Self::RequestTooLarge => "request_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotEnoughReplicas => "not_enough_replicas",
            Self::NotEnoughReplicasAfterAppend => "not_enough_replicas_after_append",
            Self::NotLeader => "not_leader",
            Self::LeaderNotAvailable => "leader_not_available",
            Self::RequestTimeout => "request_timeout",
            Self::NodeDisconnected => "node_disconnected",
            Self::CorruptBatch => "corrupt_batch",
            Self::StorageError => "storage_error",
            Self::CorruptLog => "corrupt_log",
            Self::InsufficientStorage => "insufficient_storage",
            Self::ShuttingDown => "shutting_down",
            Self::Throttled => "throttled",
            Self::StaleVersion => "stale_version",
            Self::LeaderChangedAfterAppend => "leader_changed_after_append",
            Self::InvalidGroupId => "invalid_group_id",
            Self::UnknownGroup => "unknown_group",
            Self::UnknownMemberId => "unknown_member_id",
            Self::StaleGeneration => "stale_generation",
            Self::InconsistentGroupProtocol => "inconsistent_group_protocol",
            Self::GroupNotEmpty => "group_not_empty",
            Self::NoCommittedOffset => "no_committed_offset",
            Self::OffsetMismatch => "offset_mismatch",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::OutOfOrderSequence => "out_of_order_sequence",
            Self::ProducerFenced => "producer_fenced",
            Self::UnknownProducerId => "unknown_producer_id",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::QuotaExceeded => "quota_exceeded",
            Self::InvalidPipeline => "invalid_pipeline",
            Self::UnknownPipeline => "unknown_pipeline",
            Self::PipelineAlreadyExists => "pipeline_already_exists",
            Self::ElectionInProgress => "election_in_progress",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status this code is answered with.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest
            | Self::InvalidJson
            | Self::InvalidBase64
            | Self::InvalidTopicName
            | Self::InvalidPartitions
            | Self::InvalidReplicationFactor
            | Self::InvalidConfig
            | Self::InvalidOffset
            | Self::InvalidGroupId
            | Self::InvalidRecord
            | Self::InvalidPipeline
            | Self::CorruptBatch => 400,
            Self::UnknownTopic
            | Self::UnknownPartition
            | Self::NotFound
            | Self::UnknownGroup
            | Self::UnknownMemberId
            | Self::UnknownPipeline
            | Self::UnknownProducerId => 404,
            Self::MethodNotAllowed => 405,
            Self::TopicAlreadyExists
            | Self::PipelineAlreadyExists
            | Self::ElectionInProgress
            | Self::StaleVersion
            | Self::StaleGeneration
            | Self::InconsistentGroupProtocol
            | Self::GroupNotEmpty
            | Self::NoCommittedOffset
            | Self::OutOfOrderSequence
            | Self::ProducerFenced => 409,
            Self::OffsetMismatch => 412,
            Self::IdempotencyKeyReused => 422,
            Self::RecordTooLarge | Self::RequestTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::OffsetOutOfRange => 416,
            Self::Throttled | Self::QuotaExceeded => 429,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::NotEnoughReplicas
            | Self::NotEnoughReplicasAfterAppend
            | Self::NotLeader
            | Self::LeaderNotAvailable
            | Self::LeaderChangedAfterAppend
            | Self::NodeDisconnected
            | Self::CorruptLog
            | Self::ShuttingDown => 503,
            Self::RequestTimeout => 504,
            Self::StorageError | Self::Internal => 500,
            Self::InsufficientStorage => 507,
        }
    }

    /// Whether the same request may succeed if sent again later.
    pub const fn retriable(self) -> bool {
        matches!(
            self,
            Self::NotEnoughReplicas
                | Self::NotEnoughReplicasAfterAppend
                | Self::NotLeader
                | Self::LeaderNotAvailable
                | Self::RequestTimeout
                | Self::NodeDisconnected
                | Self::ShuttingDown
                | Self::Throttled
                | Self::QuotaExceeded
                | Self::StaleVersion
                | Self::LeaderChangedAfterAppend
                | Self::InsufficientStorage
                | Self::CorruptLog
                | Self::ElectionInProgress
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an error says beyond its code, for a client to act on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetails {
    /// `offset_out_of_range`: where the partition's log starts now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<u64>,
    /// `offset_mismatch`, `offset_out_of_range`: where the partition's log ends now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_end_offset: Option<u64>,
    /// `out_of_order_sequence`: the sequence the partition expects next from the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sequence: Option<u32>,
    /// `producer_fenced`: the producer's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_epoch: Option<u32>,
    /// `quota_exceeded`: how long until the principal is back within its quota (also in
    /// `Retry-After`, in whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// An error with a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct FjordError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetails>,
}

impl FjordError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: None }
    }

    pub fn with_details(mut self, details: ErrorDetails) -> Self {
        self.details = Some(details);
        self
    }

    pub fn retriable(&self) -> bool {
        self.code.retriable()
    }
}

pub type Result<T, E = FjordError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_stable_strings() {
        for code in [
            ErrorCode::NotEnoughReplicas,
            ErrorCode::InvalidBase64,
            ErrorCode::OffsetOutOfRange,
            ErrorCode::InvalidRecord,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::NodeDisconnected,
            ErrorCode::OutOfOrderSequence,
        ] {
            let json = serde_json::to_string(&code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn only_transient_conditions_are_retriable() {
        assert!(ErrorCode::NotLeader.retriable());
        assert!(!ErrorCode::InvalidJson.retriable());
        assert!(!ErrorCode::StorageError.retriable());
        assert_eq!(ErrorCode::NotEnoughReplicas.http_status(), 503);
        assert!(!ErrorCode::InvalidRecord.retriable());
        assert_eq!(ErrorCode::InvalidRecord.http_status(), 400);
        // Exactly-once: refusals are final and say nothing was written; a broken
        // connection is worth a retry (with the same Idempotency-Key).
        let final_refusals = [
            (ErrorCode::OffsetMismatch, 412),
            (ErrorCode::IdempotencyKeyReused, 422),
            (ErrorCode::OutOfOrderSequence, 409),
            (ErrorCode::ProducerFenced, 409),
            (ErrorCode::UnknownProducerId, 404),
        ];
        for (code, status) in final_refusals {
            assert_eq!((code.http_status(), code.retriable()), (status, false), "{code}");
        }
        assert_eq!((ErrorCode::NodeDisconnected.http_status(), ErrorCode::NodeDisconnected.retriable()), (503, true));
    }
}
