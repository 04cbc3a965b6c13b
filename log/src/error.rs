//! The log crate's one error type.

use crate::role::Role;
use fjord_protocol::codec::CodecError;
use fjord_protocol::{ErrorCode, ErrorDetails, FjordError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("partition store `{0}` does not exist")]
    NoSuchStore(String),
    #[error("storage engine: {0}")]
    Engine(String),
    /// The data directory is (nearly) full; nothing was written.
    #[error("{0}")]
    NoSpace(String),
    #[error("corrupt batch: {0}")]
    Corrupt(#[from] CodecError),
    /// A batch read back from storage failed validation: it is not served.
    #[error("the stored batch at offset {offset} is damaged ({detail}); it is not served")]
    Damaged { offset: u64, detail: String },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: u64, log_start: u64, log_end: u64 },
    #[error("stored metadata `{0}` is malformed")]
    BadMeta(&'static str),
    #[error("replicated batch starts at {got}, the log ends at {expected}")]
    NotContiguous { expected: u64, got: u64 },
    #[error("this replica is {role:?}; it cannot take this write")]
    Fenced { role: Role },
    /// The task doing the work ended without an answer (it panicked).
    #[error("{0} ended without an answer")]
    Aborted(&'static str),
    #[error("the log ends at {log_end}, not at the expected offset {expected}; nothing was written")]
    OffsetMismatch { expected: u64, log_end: u64 },
    #[error("this Idempotency-Key was used for another request within the idempotency window; nothing was written")]
    IdempotencyKeyReused,
    #[error("sequence {got} is out of order: the next sequence expected is {expected}; nothing was written")]
    OutOfOrderSequence { expected: u32, got: u32 },
    #[error("producer epoch {epoch} is fenced: a newer registration has epoch {current}; nothing was written")]
    ProducerFenced { epoch: u32, current: u32 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for FjordError {
    fn from(e: Error) -> Self {
        let details = match &e {
            Error::OffsetMismatch { log_end, .. } => {
                Some(ErrorDetails { log_end_offset: Some(*log_end), ..Default::default() })
            }
            Error::OutOfOrderSequence { expected, .. } => {
                Some(ErrorDetails { expected_sequence: Some(*expected), ..Default::default() })
            }
            Error::ProducerFenced { current, .. } => {
                Some(ErrorDetails { producer_epoch: Some(*current), ..Default::default() })
            }
            _ => None,
        };
        let code = match &e {
            Error::NoSuchStore(_) | Error::Engine(_) | Error::BadMeta(_) | Error::NotContiguous { .. } => {
                ErrorCode::StorageError
            }
            Error::Corrupt(_) => ErrorCode::CorruptBatch,
            Error::Damaged { .. } => ErrorCode::CorruptLog,
            Error::NoSpace(_) => ErrorCode::InsufficientStorage,
            Error::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            Error::Fenced { .. } => ErrorCode::NotLeader,
            Error::Aborted(_) => ErrorCode::Internal,
            Error::OffsetMismatch { .. } => ErrorCode::OffsetMismatch,
            Error::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            Error::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
            Error::ProducerFenced { .. } => ErrorCode::ProducerFenced,
        };
        let out = FjordError::new(code, e.to_string());
        match details {
            Some(d) => out.with_details(d),
            None => out,
        }
    }
}
