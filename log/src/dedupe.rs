//! Exactly-once appends: whether a producer's batch is new, a replay of one already
//! written (answered with the original offsets, nothing written), or refused. Pure
//! decisions over the partition's producer state; [`PartitionLog`](crate::PartitionLog)
//! reads and writes that state in the same engine write as the batch, on every replica.
//!
//! - An **idempotency key** is good for the topic's `idempotency.window.ms` from the
//!   time the gateway received the request (the batch's `default_timestamp`): the same
//!   key with the same request fingerprint is a replay, with another fingerprint it is
//!   refused; after the window it is new.
//! - A **producer session** (KIP-98): per partition the producer's epoch, the sequence of
//!   its last record, and its last [`ProducerEntry::RECENT`] batches. A batch of an older
//!   epoch is fenced; a newer epoch starts at sequence 0; in the same epoch the next
//!   sequence is the last + 1, a batch already written (one of the recent ones) is a
//!   replay, anything else is out of order.

use crate::error::Error;
use fjord_protocol::codec::{Idempotency, IdempotencyEntry, ProducerEntry, Session, SessionBatch};

/// The clock and window a leader's append is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dedupe {
    pub now_ms: i64,
    pub idempotency_window_ms: i64,
}

/// What a replayed batch was written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub base_offset: u64,
    pub record_count: u32,
    /// The time stamped on records that came without one.
    pub default_timestamp: i64,
    /// The partition count the original request was routed with (idempotency keys).
    pub routed_with: Option<u32>,
}

/// The decision about one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    New,
    Replay(Replay),
    Refuse(Error),
}

/// An idempotency key's batch against what the partition remembers of the key.
pub fn idempotency(found: Option<&IdempotencyEntry>, idem: &Idempotency, d: &Dedupe) -> Check {
    match found {
        Some(e) if e.written_ms >= d.now_ms.saturating_sub(d.idempotency_window_ms) => {
            if e.fingerprint == idem.fingerprint {
                Check::Replay(Replay {
                    base_offset: e.base_offset,
                    record_count: e.record_count,
                    default_timestamp: e.default_timestamp,
                    routed_with: Some(e.routed_with),
                })
            } else {
                Check::Refuse(Error::IdempotencyKeyReused)
            }
        }
        _ => Check::New,
    }
}

/// A producer session's batch of `count` records against its state on the partition.
pub fn session(state: Option<&ProducerEntry>, s: &Session, count: u32) -> Check {
    let Some(state) = state else {
        return if s.first_sequence == 0 {
            Check::New
        } else {
            Check::Refuse(Error::OutOfOrderSequence { expected: 0, got: s.first_sequence })
        };
    };
    if s.epoch < state.epoch {
        return Check::Refuse(Error::ProducerFenced { epoch: s.epoch, current: state.epoch });
    }
    if s.epoch > state.epoch {
        return if s.first_sequence == 0 {
            Check::New
        } else {
            Check::Refuse(Error::OutOfOrderSequence { expected: 0, got: s.first_sequence })
        };
    }
    let expected = state.last_sequence.map_or(0, |last| last.wrapping_add(1));
    if s.first_sequence == expected {
        return Check::New;
    }
    let recent = state.recent.iter().find(|b| b.first_sequence == s.first_sequence && b.record_count == count);
    match recent {
        Some(b) => Check::Replay(Replay {
            base_offset: b.base_offset,
            record_count: b.record_count,
            default_timestamp: b.default_timestamp,
            routed_with: None,
        }),
        None => Check::Refuse(Error::OutOfOrderSequence { expected, got: s.first_sequence }),
    }
}

/// The producer's state after its batch `written` (base offset, records) was appended.
pub fn after_session_batch(
    state: Option<ProducerEntry>,
    s: &Session,
    base_offset: u64,
    record_count: u32,
    default_timestamp: i64,
) -> ProducerEntry {
    let mut next = match state {
        Some(st) if st.epoch == s.epoch => st,
        _ => ProducerEntry { epoch: s.epoch, last_sequence: None, last_write_ms: 0, recent: Vec::new() },
    };
    next.last_sequence = Some(s.first_sequence.wrapping_add(record_count.saturating_sub(1)));
    next.last_write_ms = default_timestamp;
    next.recent.push(SessionBatch { first_sequence: s.first_sequence, record_count, base_offset, default_timestamp });
    if next.recent.len() > ProducerEntry::RECENT {
        next.recent.remove(0);
    }
    next
}

/// The producer's state once its batches at or after `log_end` were truncated away:
/// they are forgotten, and the sequence goes back to before the first of them.
pub fn after_truncation(mut state: ProducerEntry, log_end: u64) -> ProducerEntry {
    let first_cut = state.recent.iter().position(|b| b.base_offset >= log_end);
    if let Some(i) = first_cut {
        let first_seq = state.recent[i].first_sequence;
        state.recent.truncate(i);
        state.last_sequence = first_seq.checked_sub(1);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Dedupe = Dedupe { now_ms: 10_000, idempotency_window_ms: 1_000 };

    fn idem(fp: u8) -> Idempotency {
        Idempotency { key: b"k".to_vec(), fingerprint: [fp; 16], routed_with: 3 }
    }

    fn entry(fp: u8, written_ms: i64) -> IdempotencyEntry {
        IdempotencyEntry {
            fingerprint: [fp; 16],
            base_offset: 5,
            record_count: 2,
            default_timestamp: written_ms,
            routed_with: 3,
            written_ms,
        }
    }

    #[test]
    fn idempotency_keys_replay_refuse_or_expire() {
        assert_eq!(idempotency(None, &idem(1), &D), Check::New);
        let replay = Replay { base_offset: 5, record_count: 2, default_timestamp: 9_500, routed_with: Some(3) };
        assert_eq!(idempotency(Some(&entry(1, 9_500)), &idem(1), &D), Check::Replay(replay));
        assert_eq!(idempotency(Some(&entry(2, 9_500)), &idem(1), &D), Check::Refuse(Error::IdempotencyKeyReused));
        assert_eq!(
            idempotency(Some(&entry(1, 9_000)), &idem(1), &D),
            Check::Replay(Replay { default_timestamp: 9_000, ..replay })
        );
        assert_eq!(idempotency(Some(&entry(2, 8_999)), &idem(1), &D), Check::New, "expired: a new request");
    }

    fn sess(epoch: u32, first_sequence: u32) -> Session {
        Session { producer_id: 7, epoch, first_sequence }
    }

    #[test]
    fn sessions_follow_kafkas_sequence_rules() {
        assert_eq!(session(None, &sess(1, 0), 3), Check::New);
        assert!(matches!(
            session(None, &sess(1, 4), 3),
            Check::Refuse(Error::OutOfOrderSequence { expected: 0, got: 4 })
        ));
        let mut st = None;
        for (i, (seq, n)) in [(0u32, 3u32), (3, 1), (4, 2)].into_iter().enumerate() {
            assert_eq!(session(st.as_ref(), &sess(1, seq), n), Check::New, "batch {i}");
            st = Some(after_session_batch(st, &sess(1, seq), 100 + u64::from(seq), n, 50));
        }
        let st = st.expect("state");
        assert_eq!(st.last_sequence, Some(5));
        assert_eq!(
            session(Some(&st), &sess(1, 3), 1),
            Check::Replay(Replay { base_offset: 103, record_count: 1, default_timestamp: 50, routed_with: None })
        );
        assert!(matches!(
            session(Some(&st), &sess(1, 8), 1),
            Check::Refuse(Error::OutOfOrderSequence { expected: 6, got: 8 })
        ));
        assert!(
            matches!(session(Some(&st), &sess(1, 1), 1), Check::Refuse(Error::OutOfOrderSequence { .. })),
            "not a batch it wrote"
        );
        assert!(matches!(
            session(Some(&st), &sess(0, 6), 1),
            Check::Refuse(Error::ProducerFenced { epoch: 0, current: 1 })
        ));
        assert_eq!(session(Some(&st), &sess(2, 0), 1), Check::New, "a new epoch starts over");
        assert!(matches!(
            session(Some(&st), &sess(2, 3), 1),
            Check::Refuse(Error::OutOfOrderSequence { expected: 0, got: 3 })
        ));
        let next = after_session_batch(Some(st.clone()), &sess(2, 0), 200, 1, 60);
        assert_eq!((next.epoch, next.last_sequence, next.recent.len()), (2, Some(0), 1));

        let mut many = st.clone();
        for k in 0..10u32 {
            many = after_session_batch(Some(many), &sess(1, 6 + k), 300 + u64::from(k), 1, 70);
        }
        assert_eq!(many.recent.len(), ProducerEntry::RECENT, "only the last few are kept");

        let cut = after_truncation(st, 104);
        assert_eq!((cut.last_sequence, cut.recent.len()), (Some(3), 2), "the batch at 104 (seqs 4-5) is forgotten");
        assert_eq!(session(Some(&cut), &sess(1, 4), 2), Check::New, "so its retry is written again");
    }
}
