//! The storage node's internal API, as one typed contract and one client.
//!
//! Gateways call it to reach partition leaders (the [`NodeApi`](fjord_protocol::NodeApi)
//! over the network) and followers call it to replicate. The server side is
//! `fjord_storage_node::internal`, which registers exactly the [`Route`]s of
//! [`contract`]; nothing else spells an internal path.
//!
//! # Layout
//! - [`contract`] — every route with its method, query and body types, the response
//!   headers of a fetch, and the binary frame codec of fetch answers.
//! - [`client`] — [`NodeClient`], one storage node's internal API over HTTP.
//! - [`secret`] — [`ClusterSecret`], the credential every internal call carries.

pub mod client;
pub mod contract;
pub mod secret;

pub use client::NodeClient;
pub use contract::{
    EpochEndOffset, ReplicaFetchAnswer, ReplicaFetchPartition, ReplicaFetchRequest, ReplicaFetchResult, Route,
};
pub use secret::ClusterSecret;
