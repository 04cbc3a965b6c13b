//! Who may write a partition log: the write fence.

/// Who may write this log. Checked and changed under the writer lock, so a role change
/// waits for an append in flight and no append of an ended role lands after it (Kafka
/// guards the same with its partition's leader-ISR lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// No fencing: any append is taken (a log used on its own, as in unit tests).
    #[default]
    Unfenced,
    /// No writes at all (the partition has no leader).
    Offline,
    /// Leader in `epoch`; `start_offset` is the LEO it had when it became leader (where
    /// its epoch starts: a follower joins the ISR only once it has reached it).
    Leader { epoch: u32, start_offset: u64 },
    /// Follower in `epoch`; replicated appends only once truncated for it (KIP-101).
    Follower { epoch: u32, truncated: bool },
}
