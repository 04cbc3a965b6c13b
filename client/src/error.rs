//! What a call can fail with.

use crate::types::ErrorDetails;

/// What went wrong with a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The server answered with an error: its stable `code`, the HTTP status, and
    /// whether the same request may succeed later.
    #[error("{code} ({status}): {message}")]
    Api { status: u16, code: String, message: String, retriable: bool, details: Option<ErrorDetails> },
    /// No answer: the connection failed or timed out. Whether a write happened is unknown.
    #[error("cannot reach Fjord: {0}")]
    Transport(String),
    /// An answer that is not what the API documents.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl Error {
    /// The API's error code (`unknown_topic`, `not_enough_replicas`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The facts some errors carry (a partition's end offset, the expected sequence).
    pub fn details(&self) -> Option<&ErrorDetails> {
        match self {
            Error::Api { details, .. } => details.as_ref(),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the same request may succeed if sent again (transport failures count).
    pub fn retriable(&self) -> bool {
        match self {
            Error::Api { retriable, .. } => *retriable,
            Error::Transport(_) => true,
            Error::Decode(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
