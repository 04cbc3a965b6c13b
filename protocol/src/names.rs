//! Identifiers: node ids, topic-partitions, and the one character rule that every
//! user-chosen name (topic, consumer group, client id) follows.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifier of a storage node (a Kafka broker id).
pub type NodeId = u32;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The characters of every user-chosen name, as a regular expression (Kafka's legal
/// characters for topic names, which Fjord also asks of group and client ids). OpenAPI
/// schemas carry it so generated clients and validators know the rule.
pub const NAME_PATTERN: &str = "^[a-zA-Z0-9._-]+$";

/// Longest topic name or group id (Kafka's 249).
pub const MAX_NAME_LEN: usize = 249;

/// Longest client id.
pub const MAX_CLIENT_ID_LEN: usize = 100;

/// Whether `s` has 1 to `max_len` characters, all from `[a-zA-Z0-9._-]`.
pub fn is_valid_name(s: &str, max_len: usize) -> bool {
    !s.is_empty()
        && s.len() <= max_len
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_rule() {
        for ok in ["a", "orders.v1", "A_b-9", &"x".repeat(249)] {
            assert!(is_valid_name(ok, MAX_NAME_LEN), "{ok}");
        }
        for bad in ["", "has space", "slash/es", "ünï", "tab\t", &"x".repeat(250)] {
            assert!(!is_valid_name(bad, MAX_NAME_LEN), "{bad:?}");
        }
        assert!(!is_valid_name("abc", 2));
        assert_eq!(TopicPartition::new("t", 3).to_string(), "t-3");
    }
}
