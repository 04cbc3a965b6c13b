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
//! - [`auth`] — [`auth::Caller`]: bearer tokens (minted, hashed, checked) and the
//!   decision of scopes and ACLs; the routes' rules are `http::auth`.
//! - [`quota`] — client quotas per principal (token buckets).
//! - [`tls`] — HTTPS on the public listener: certificates reloaded live, client
//!   certificates as principals.

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod quota;
pub mod remote;
pub mod state;
pub mod tls;

pub use config::GatewayConfig;
pub use error::{ApiError, ApiResult};
pub use http::{app, openapi, serve};
pub use state::{AppState, NodeDirectory, SingleNode};
