//! The log crate's one error type.

use crate::role::Role;
use fjord_protocol::codec::CodecError;
use fjord_protocol::{ErrorCode, FjordError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("partition store `{0}` does not exist")]
    NoSuchStore(String),
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("corrupt batch: {0}")]
    Corrupt(#[from] CodecError),
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for FjordError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::NoSuchStore(_) | Error::Engine(_) | Error::BadMeta(_) | Error::NotContiguous { .. } => {
                ErrorCode::StorageError
            }
            Error::Corrupt(_) => ErrorCode::CorruptBatch,
            Error::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            Error::Fenced { .. } => ErrorCode::NotLeader,
            Error::Aborted(_) => ErrorCode::Internal,
        };
        FjordError::new(code, e.to_string())
    }
}
