//! Consumer groups: the coordinator a storage node runs for the groups it hosts, and
//! the server-side partition assignors.

pub mod assign;
pub mod coordinator;
