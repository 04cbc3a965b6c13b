//! Consumer groups: the coordinator a storage node runs for the groups whose
//! `__consumer_offsets` partition it leads, and the server-side partition assignors.
//!
//! # Layout
//! - [`coordinator`] — [`GroupCoordinator`]: one handler per group call, the session
//!   sweeper, shards loaded from and written to the offsets topic.
//! - `state` — a group's state and its rules (join, hand-over, commit fencing,
//!   rebalance), and its records in the offsets topic.
//! - [`assign`] — the assignors (range, roundrobin, sticky), pure functions.
//! - [`host`] — [`GroupHost`], what the coordinator needs from its node.

pub mod assign;
pub mod coordinator;
pub mod host;
mod state;

pub use coordinator::{GroupCoordinator, GroupFigures};
pub use host::{GroupHost, LedLog};
