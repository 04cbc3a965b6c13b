//! Windows over event time, as in Kafka Streams: tumbling, hopping and session windows,
//! each with a grace period for records that arrive out of order.
//!
//! A task's *stream time* is the largest event time it has seen. A time window
//! `[start, end)` accepts records while `end + grace > stream time` and is closed after
//! (Kafka's `KStreamWindowAggregate`); a session `[start, end]` closes once
//! `end + gap + grace < stream time` (`KStreamSessionWindowAggregate`). A record for a
//! closed window is late: it is dropped and counted, never folded in.

/// How records are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Fixed, non-overlapping windows of `size_ms`, aligned to the epoch.
    Tumbling { size_ms: i64 },
    /// Windows of `size_ms` starting every `advance_ms` (a record is in
    /// `size_ms / advance_ms` of them), aligned to the epoch.
    Hopping { size_ms: i64, advance_ms: i64 },
    /// Per key, records closer than `gap_ms` to each other form one session.
    Session { gap_ms: i64 },
}

/// Windows with their grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub windows: Windows,
    pub grace_ms: i64,
}

/// Why a window definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("the window size must be at least 1 ms")]
    Size,
    #[error("the advance must be at least 1 ms and at most the window size")]
    Advance,
    #[error("the session gap must be at least 1 ms")]
    Gap,
    #[error("the grace period must not be negative")]
    Grace,
    #[error("a record would be in more than {MAX_HOPS} windows (size ÷ advance)")]
    TooManyWindows,
}

/// At most this many hopping windows per record (`size_ms / advance_ms`).
pub const MAX_HOPS: i64 = 1_000;

impl WindowSpec {
    pub fn tumbling(size_ms: i64) -> Self {
        Self { windows: Windows::Tumbling { size_ms }, grace_ms: 0 }
    }

    pub fn hopping(size_ms: i64, advance_ms: i64) -> Self {
        Self { windows: Windows::Hopping { size_ms, advance_ms }, grace_ms: 0 }
    }

    pub fn session(gap_ms: i64) -> Self {
        Self { windows: Windows::Session { gap_ms }, grace_ms: 0 }
    }

    /// How long after a window's end records for it are still taken.
    pub fn grace(mut self, grace_ms: i64) -> Self {
        self.grace_ms = grace_ms;
        self
    }

    pub fn validate(&self) -> Result<(), WindowError> {
        if self.grace_ms < 0 {
            return Err(WindowError::Grace);
        }
        match self.windows {
            Windows::Tumbling { size_ms } if size_ms < 1 => Err(WindowError::Size),
            Windows::Hopping { size_ms, .. } if size_ms < 1 => Err(WindowError::Size),
            Windows::Hopping { size_ms, advance_ms } if advance_ms < 1 || advance_ms > size_ms => {
                Err(WindowError::Advance)
            }
            Windows::Hopping { size_ms, advance_ms } if size_ms / advance_ms > MAX_HOPS => {
                Err(WindowError::TooManyWindows)
            }
            Windows::Session { gap_ms } if gap_ms < 1 => Err(WindowError::Gap),
            _ => Ok(()),
        }
    }

    /// The time windows `[start, end)` holding `ts`, earliest first (empty for
    /// sessions, which are found per key).
    pub fn windows_for(&self, ts: i64) -> Vec<(i64, i64)> {
        match self.windows {
            // Times so far out that a window bound overflows fall in no window.
            Windows::Tumbling { size_ms } => match ts.div_euclid(size_ms).checked_mul(size_ms) {
                Some(start) => vec![(start, start.saturating_add(size_ms))],
                None => Vec::new(),
            },
            Windows::Hopping { size_ms, advance_ms } => {
                // Every start k·advance with start ≤ ts < start + size.
                let last = ts.div_euclid(advance_ms);
                let first = ts.saturating_sub(size_ms).div_euclid(advance_ms) + 1;
                (first..=last)
                    .filter_map(|k| k.checked_mul(advance_ms).map(|s| (s, s.saturating_add(size_ms))))
                    .collect()
            }
            Windows::Session { .. } => Vec::new(),
        }
    }

    /// Whether a time window ending at `end` is closed at `stream_time`.
    pub fn time_window_closed(&self, end: i64, stream_time: i64) -> bool {
        end.saturating_add(self.grace_ms) <= stream_time
    }

    /// Whether a session ending at `end` is closed at `stream_time`.
    pub fn session_closed(&self, end: i64, stream_time: i64) -> bool {
        let Windows::Session { gap_ms } = self.windows else { return false };
        end.saturating_add(gap_ms).saturating_add(self.grace_ms) < stream_time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows_are_aligned_and_half_open() {
        let w = WindowSpec::tumbling(60_000);
        assert_eq!(w.windows_for(0), vec![(0, 60_000)]);
        assert_eq!(w.windows_for(59_999), vec![(0, 60_000)]);
        assert_eq!(w.windows_for(60_000), vec![(60_000, 120_000)]);
        assert_eq!(w.windows_for(-1), vec![(-60_000, 0)]);
    }

    #[test]
    fn hopping_windows_hold_each_time_size_over_advance_times() {
        let w = WindowSpec::hopping(10, 5);
        assert_eq!(w.windows_for(7), vec![(0, 10), (5, 15)]);
        assert_eq!(w.windows_for(10), vec![(5, 15), (10, 20)]);
        assert_eq!(w.windows_for(0), vec![(-5, 5), (0, 10)]);
        let w = WindowSpec::hopping(10, 3);
        for ts in -20..40 {
            let ws = w.windows_for(ts);
            assert!(ws.iter().all(|&(s, e)| s <= ts && ts < e && s % 3 == 0 && e - s == 10), "{ts}: {ws:?}");
            // Every multiple of 3 in (ts - 10, ts] starts one.
            let expected = (ts - 9..=ts).filter(|s| s.rem_euclid(3) == 0).count();
            assert_eq!(ws.len(), expected, "{ts}");
        }
    }

    #[test]
    fn closing_follows_kafka() {
        let w = WindowSpec::tumbling(10).grace(5);
        assert!(!w.time_window_closed(10, 14));
        assert!(w.time_window_closed(10, 15));
        let s = WindowSpec::session(10).grace(5);
        assert!(!s.session_closed(100, 115));
        assert!(s.session_closed(100, 116));
    }

    #[test]
    fn bad_windows_are_refused() {
        assert_eq!(WindowSpec::tumbling(0).validate(), Err(WindowError::Size));
        assert_eq!(WindowSpec::hopping(10, 0).validate(), Err(WindowError::Advance));
        assert_eq!(WindowSpec::hopping(10, 11).validate(), Err(WindowError::Advance));
        assert_eq!(WindowSpec::session(0).validate(), Err(WindowError::Gap));
        assert_eq!(WindowSpec::tumbling(10).grace(-1).validate(), Err(WindowError::Grace));
        assert_eq!(WindowSpec::hopping(10, 10).validate(), Ok(()));
        assert_eq!(WindowSpec::hopping(86_400_000, 1).validate(), Err(WindowError::TooManyWindows));
        // Extreme times fall in no window rather than overflowing.
        assert!(WindowSpec::tumbling(7).windows_for(i64::MIN).is_empty());
        assert!(WindowSpec::hopping(10, 3).windows_for(i64::MIN).len() <= 4);
    }
}
