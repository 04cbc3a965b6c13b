//! A typed client for Fjord's public HTTP API, used by the `fjord` CLI, the benchmark's
//! set-up and the integration tests.
//!
//! Every call answers with the API's own types or an [`Error`] that keeps the API's
//! stable error code, its HTTP status and whether a retry may succeed.
//!
//! # Layout
//! - [`client`] — [`Client`] and the options of each call.
//! - [`types`] — request and answer bodies.
//! - [`sse`] — reading a Server-Sent Events stream ([`EventStream`]).
//! - [`binary`] — writing the binary produce body, reading a binary consume answer.
//! - [`error`] — [`Error`].

pub mod binary;
pub mod client;
pub mod error;
pub mod sse;
pub mod types;

pub use binary::BINARY_RECORDS;
pub use client::{Acks, BinaryConsumeReply, Client, Format, ProduceOptions, ReadOptions, SessionHeaders, Start};
pub use error::{Error, Result};
pub use sse::{Event, EventStream};
pub use types::*;
