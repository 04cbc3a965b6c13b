//! The record a pipeline's steps see: a key, a JSON value and an event time.

use serde_json::Value;

/// A record flowing through a pipeline. Its `timestamp` (ms) is its event time: the
/// input record's timestamp, or what a step set.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub key: Option<String>,
    pub value: Value,
    pub timestamp: i64,
}

impl Rec {
    pub fn new(key: Option<&str>, value: Value, timestamp: i64) -> Self {
        Self { key: key.map(str::to_owned), value, timestamp }
    }

    /// A pipeline's view of a consumed record: a tombstone's value is `null`; a value
    /// that is not JSON text arrives as its base64 in a JSON string.
    pub fn from_consumed(r: fjord_client::ConsumedRecord) -> Self {
        let value = match (r.value, r.value_base64) {
            (Some(v), _) => v,
            (None, Some(b)) => Value::String(b),
            (None, None) => Value::Null,
        };
        let key = r.key.or(r.key_base64);
        Self { key, value, timestamp: r.timestamp }
    }

    /// The record to produce: its key, value and timestamp.
    pub fn into_produce(self) -> fjord_client::Record {
        fjord_client::Record {
            key: self.key,
            value: Some(self.value),
            timestamp: Some(self.timestamp),
            ..fjord_client::Record::default()
        }
    }
}

/// A JSON value as a key: a string as it is, anything else as its JSON text; `null`
/// and a missing value are no key.
pub fn as_key(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_from_values() {
        let v = json!({"region": "eu", "n": 3, "none": null});
        assert_eq!(as_key(v.pointer("/region")), Some("eu".into()));
        assert_eq!(as_key(v.pointer("/n")), Some("3".into()));
        assert_eq!(as_key(v.pointer("/none")), None);
        assert_eq!(as_key(v.pointer("/missing")), None);
    }
}
