//! The `fjord` command's library: configuration loading and the processes it runs.
//!
//! # Layout
//! - [`config`] — layered configuration — defaults, then a TOML file, then `FJORD_*`
//!   environment variables (`__` between levels), then flags.
//! - [`cluster`] — `fjord storage-node` and `fjord gateway`, coordinated through ZooKeeper.
//! - [`standalone`] — storage node + gateway + embedded coordinator in one process.
//! - [`bench`] — `fjord bench`, the load generator and its baselines.
//! - [`client`] — `fjord topic|produce|consume|group|cluster`, a client of a running Fjord.

pub mod bench;
pub mod certs;
pub mod client;
pub mod cluster;
pub mod config;
pub mod standalone;
