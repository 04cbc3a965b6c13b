//! Fjord's public HTTP API.
//!
//! The gateway is stateless: it validates requests, turns records into batches, and
//! routes each partition's batch to the partition's leader through a [`NodeDirectory`],
//! retrying while leadership moves. Its metadata comes from the coordinator's snapshot.
//! It never links RocksDB.
//!
//! # Layout
//! - [`http`] — the axum router ([`http::app`]) and the OpenAPI spec ([`http::openapi`]),
//!   one module per resource: `topics`, `produce`, `records`, `groups`, `cluster`.
//! - [`body`] — record bodies in (JSON, NDJSON, raw) and out (`format=json|text|base64`).
//! - [`remote`] — [`remote::RemoteNodes`]: storage nodes over their internal API
//!   (`fjord-rpc`'s client).
//! - [`state`] — [`AppState`], [`NodeDirectory`] and leader routing with retries.
//! - [`error`] — [`ApiError`], the one error shape of the API.
//! - [`config`] — [`GatewayConfig`].

pub mod body;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod remote;
pub mod state;

pub use config::GatewayConfig;
pub use error::{ApiError, ApiResult};
pub use http::{app, openapi, serve};
pub use state::{AppState, NodeDirectory, SingleNode};
