//! Producer session registration rules shared by every backend (exactly-once produce,
//! KIP-98's producer id and epoch): a backend stores the sessions, these functions say
//! what is a valid name and when an epoch cannot grow.

use fjord_protocol::names::{is_valid_name, MAX_NAME_LEN};
use fjord_protocol::{ErrorCode, FjordError, Result};

/// A producer's name follows the topic-name rules (it is a ZooKeeper path segment).
pub fn check_producer_name(name: &str) -> Result<()> {
    if name == "." || name == ".." || !is_valid_name(name, MAX_NAME_LEN) {
        return Err(FjordError::new(
            ErrorCode::InvalidRequest,
            format!(
                "invalid producer name {name:?}: 1 to {MAX_NAME_LEN} ASCII letters, digits, `.`, `_` and `-` \
                 (not `.` or `..`)"
            ),
        ));
    }
    Ok(())
}

/// The epoch of `name` is at its maximum: it cannot be registered again.
pub fn producer_epoch_exhausted(name: &str) -> FjordError {
    FjordError::new(
        ErrorCode::InvalidRequest,
        format!("producer {name:?} has been registered {} times; register it under a new name", u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_topic_name_rules() {
        for good in ["orders-writer", "svc.a_1", "x"] {
            assert!(check_producer_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in ["", ".", "..", "a/b", "a b", "é", long.as_str()] {
            assert_eq!(check_producer_name(bad).expect_err(bad).code, ErrorCode::InvalidRequest, "{bad}");
        }
    }
}
