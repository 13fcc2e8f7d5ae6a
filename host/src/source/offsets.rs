//! Per-partition offset tracking for at-least-once delivery.
//!
//! When an offset may be committed: offset `o` of a partition may be stored
//! (and so committed) only when the record at `o`, and every earlier record
//! of that partition read in this assignment, is *finished*: every output
//! acknowledged by its sink, or the record dead-lettered with the
//! dead-letter write acknowledged, or the record filtered out. Records finish
//! out of order; the tracker only ever reports the end of the contiguous
//! finished prefix. After `revoke`, the tracker reports nothing, so a
//! partition that moved to another consumer is never committed from here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tokio::sync::Semaphore;

/// Offsets in flight for one partition in one assignment.
#[derive(Debug)]
pub struct PartitionTracker {
    pub topic: Arc<str>,
    pub partition: i32,
    state: Mutex<State>,
    /// Bounds records in flight for this partition (backpressure).
    pub permits: Arc<Semaphore>,
    /// Exactly-once mode: records below this offset are already in the
    /// database and are skipped.
    skip_below: AtomicI64,
    /// Set on revoke; checked per record without taking the lock.
    revoked: AtomicBool,
    max_in_flight: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Offsets read but not yet released, in read order, with a done flag.
    pending: VecDeque<(i64, bool)>,
}

impl PartitionTracker {
    pub fn new(topic: Arc<str>, partition: i32, max_in_flight: usize) -> Self {
        PartitionTracker {
            topic,
            partition,
            state: Mutex::default(),
            permits: Arc::new(Semaphore::new(max_in_flight)),
            skip_below: AtomicI64::new(i64::MIN),
            revoked: AtomicBool::new(false),
            max_in_flight,
        }
    }

    /// Skip records below `offset` (they are already written).
    pub fn set_skip_below(&self, offset: i64) {
        self.skip_below.store(offset, Ordering::Relaxed);
    }

    /// Whether the record at `offset` was already written.
    pub fn skips(&self, offset: i64) -> bool {
        offset < self.skip_below.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain data; the data is still consistent enough to keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record that `offset` was read. Offsets must be increasing.
    pub fn begin(&self, offset: i64) {
        let mut s = self.lock();
        debug_assert!(s.pending.back().is_none_or(|&(o, _)| o < offset));
        s.pending.push_back((offset, false));
    }

    /// Mark `offset` finished. Returns the highest offset whose record and
    /// all predecessors are finished, if that moved; that offset may now be
    /// stored (the consumer then resumes at the one after it).
    pub fn finish(&self, offset: i64) -> Option<i64> {
        let mut s = self.lock();
        let Ok(i) = s.pending.binary_search_by_key(&offset, |&(o, _)| o) else {
            return None;
        };
        s.pending[i].1 = true;
        let mut last = None;
        while let Some(&(o, true)) = s.pending.front() {
            last = Some(o);
            s.pending.pop_front();
        }
        if self.is_revoked() { None } else { last }
    }

    /// The partition was taken away: never report an offset again.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        let mut s = self.lock();
        s.pending.clear();
        self.permits.close();
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Whether no record of this partition is still anywhere in the
    /// pipeline (every permit is back).
    pub fn drained(&self) -> bool {
        self.permits.available_permits() >= self.max_in_flight
    }

    /// Records read but not finished.
    pub fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> PartitionTracker {
        PartitionTracker::new("t".into(), 0, 10)
    }

    #[test]
    fn in_order() {
        let t = t();
        t.begin(5);
        t.begin(6);
        assert_eq!(t.finish(5), Some(5));
        assert_eq!(t.finish(6), Some(6));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn out_of_order_waits_for_gap() {
        let t = t();
        for o in [10, 11, 12, 15] {
            t.begin(o);
        }
        assert_eq!(t.finish(12), None);
        assert_eq!(t.finish(11), None);
        assert_eq!(t.finish(15), None);
        assert_eq!(t.finish(10), Some(15));
    }

    #[test]
    fn unknown_offset_is_ignored() {
        let t = t();
        t.begin(1);
        assert_eq!(t.finish(7), None);
        assert_eq!(t.in_flight(), 1);
    }

    #[test]
    fn revoked_never_reports() {
        let t = t();
        t.begin(1);
        t.begin(2);
        t.revoke();
        assert_eq!(t.finish(1), None);
        assert_eq!(t.finish(2), None);
        assert!(t.permits.is_closed());
    }
}
