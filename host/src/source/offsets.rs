//! Per-partition offset tracking: the one place that says when an offset
//! may be committed, to Kafka (at-least-once) or to a database's offsets
//! table (exactly-once).
//!
//! At-least-once. Offset `o` of a partition may be stored
//! (and so committed) only when the record at `o`, and every earlier record
//! of that partition read in this assignment, is *finished*: every output
//! acknowledged by its sink, or the record dead-lettered with the
//! dead-letter write acknowledged, or the record filtered out. Records finish
//! out of order; the tracker only ever reports the end of the contiguous
//! finished prefix. After `revoke`, the tracker reports nothing, so a
//! partition that moved to another consumer is never committed from here.
//!
//! Exactly-once. A partition's row in the offsets table holds the next
//! offset to write and the generation of the member that last claimed it.
//! On assignment this member claims the row (the generation goes up by
//! one, see [`Claim`]) and reads from the table's offset, whatever Kafka
//! says. A transaction may then move the row from `claim.next` to `n` only
//! when (1) it writes the rows of every record of the partition in
//! `claim.next..n` that this member read, so the row only ever records the
//! contiguous finished prefix; (2) none of those records is at or past the
//! partition's halt point (a record abandoned at shutdown or whose dead
//! letter failed: see [`PartitionTracker::halt`]); and (3) the row still
//! holds this member's generation and `claim.next`, checked in the same
//! statement (compare-and-set), so a member that lost the partition
//! commits nothing for it and the stored offset never moves backward. The
//! SQL batcher (`sink::sql`) carries these checks out. A record at or
//! before the first one read, arriving after a seek forward to the table's
//! offset, means the table's offset is beyond the log's end
//! ([`PartitionTracker::went_back`]): the consume loop stops rather than
//! skip it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tokio::sync::Semaphore;

use crate::record::{Batch, Fate, Work, same_partition};

/// Keep the records of `batch` that may still be written, before the sink
/// writes them. An abandoned record is read again, so it halts its
/// partition: nothing after it is written or committed in this assignment.
/// A revoked partition's records are read again by its new owner.
pub fn retain_writable(batch: &mut Batch) {
    batch.retain(|work| {
        if matches!(work.fate, Fate::Abandoned) {
            work.tracker.halt(work.record.offset);
            return false;
        }
        !work.tracker.is_revoked() && !work.tracker.halts(work.record.offset)
    });
}

/// Finish a batch of records whose writes are all acknowledged, one
/// tracker lock per run of one partition's records. Every record finishes
/// except an abandoned one (its partition moved or halted), which is read
/// again. Returns each partition whose finished prefix moved, with the
/// last offset of that prefix: the offset that may now be stored.
pub fn finish(batch: &[Work]) -> Vec<(&PartitionTracker, i64)> {
    let mut moved: Vec<(&PartitionTracker, i64)> = Vec::new();
    for run in batch.chunk_by(same_partition) {
        let offsets = run
            .iter()
            .filter(|w| !matches!(w.fate, Fate::Abandoned))
            .map(|w| w.record.offset);
        let t: &PartitionTracker = &run[0].tracker;
        if let Some(last) = t.finish_all(offsets) {
            match moved.iter_mut().find(|(m, _)| std::ptr::eq(*m, t)) {
                Some((_, o)) => *o = last,
                None => moved.push((t, last)),
            }
        }
    }
    moved
}

/// How much of one partition may be in flight (read, not yet finished) at
/// once: at most `records` records holding at most about `bytes` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Most records in flight.
    pub records: usize,
    /// Most bytes (keys, values, headers) in flight; a record larger than
    /// this still goes, alone.
    pub bytes: u64,
}

/// Offsets in flight for one partition in one assignment.
#[derive(Debug)]
pub struct PartitionTracker {
    /// The partition's topic.
    pub topic: Arc<str>,
    /// The partition's number.
    pub partition: i32,
    state: Mutex<State>,
    /// Bounds what is in flight for this partition (backpressure): a
    /// record holds [`PartitionTracker::permits_for`] its size, out of
    /// `window.records`.
    pub permits: Arc<Semaphore>,
    /// Exactly-once mode: records below this offset are already in the
    /// database and are skipped.
    skip_below: AtomicI64,
    /// Set on revoke; checked per record without taking the lock.
    revoked: AtomicBool,
    /// The first offset that must not be written or committed in this
    /// assignment (`i64::MAX`: none).
    halted_at: AtomicI64,
    /// After a seek back: later records read before the seek took effect
    /// are dropped until one at or below this offset arrives.
    rewind_upto: AtomicI64,
    /// Exactly-once: after a seek forward to the database's offset, the
    /// offset Kafka gave first (`i64::MIN`: no such seek). A record at or
    /// below it afterwards means the log went back to its start: the
    /// database's offset is beyond the log's end.
    forward_from: AtomicI64,
    /// Exactly-once: this member's claim on the partition's offsets row.
    claim: Mutex<Option<Claim>>,
    /// Whether `claim` is set, readable per record without the lock.
    claimed: AtomicBool,
    window: Window,
}

/// Exactly-once: a member's hold on a partition's row in the offsets
/// table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The generation this member wrote when it claimed the row; any later
    /// claim by another member fences this one.
    pub generation: i64,
    /// The next offset to write, as the row holds it after this member's
    /// last commit.
    pub next: i64,
}

#[derive(Debug)]
struct State {
    /// Offsets read but not yet released, in read order, with a done flag.
    pending: VecDeque<(i64, bool)>,
    /// Whether `pending` is in increasing order, as it is unless the
    /// consumer went back within one assignment (an offset reset).
    sorted: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            pending: VecDeque::new(),
            sorted: true,
        }
    }
}

impl PartitionTracker {
    /// A tracker for a fresh assignment of `topic`/`partition`, nothing in
    /// flight, with `max_in_flight` permits.
    pub fn new(topic: Arc<str>, partition: i32, window: Window) -> Self {
        PartitionTracker {
            topic,
            partition,
            state: Mutex::default(),
            permits: Arc::new(Semaphore::new(window.records)),
            skip_below: AtomicI64::new(i64::MIN),
            revoked: AtomicBool::new(false),
            halted_at: AtomicI64::new(i64::MAX),
            rewind_upto: AtomicI64::new(i64::MIN),
            forward_from: AtomicI64::new(i64::MIN),
            claim: Mutex::new(None),
            claimed: AtomicBool::new(false),
            window,
        }
    }

    /// Nothing at or past `offset` may be written or committed in this
    /// assignment: the record there was abandoned (shutdown) or could not
    /// be dead-lettered, so it will be read again, and everything after it
    /// with it.
    pub fn halt(&self, offset: i64) {
        self.halted_at.fetch_min(offset, Ordering::AcqRel);
    }

    /// Whether the record at `offset` is at or past the halt point.
    pub fn halts(&self, offset: i64) -> bool {
        offset >= self.halted_at.load(Ordering::Acquire)
    }

    /// The consumer was sought back from the record at `upto`: records
    /// above `upto` may still arrive from before the seek, and are dropped
    /// until the first record at or below it.
    pub fn rewind(&self, upto: i64) {
        self.rewind_upto.store(upto, Ordering::Release);
    }

    /// Whether the record at `offset` is a stale read from before a seek
    /// back (and so is dropped). The first record at or below the seek
    /// point ends the rewind.
    pub fn stale(&self, offset: i64) -> bool {
        let upto = self.rewind_upto.load(Ordering::Acquire);
        if upto == i64::MIN {
            return false;
        }
        if offset > upto {
            return true;
        }
        self.rewind_upto.store(i64::MIN, Ordering::Release);
        false
    }

    /// Exactly-once: the consumer was sought forward from the record at
    /// `at` to the database's offset.
    pub fn forward(&self, at: i64) {
        self.forward_from.store(at, Ordering::Release);
    }

    /// Exactly-once: whether the record at `offset` shows that the log went
    /// back to its start after a seek forward (the broker found the
    /// database's offset beyond the log's end and reset the position): the
    /// records the database says are written are not in this log, so none
    /// may be skipped in silence. Records past the first one (fetched
    /// before the seek took effect) do not count.
    pub fn went_back(&self, offset: i64) -> bool {
        let from = self.forward_from.load(Ordering::Acquire);
        from != i64::MIN && offset <= from
    }

    /// Exactly-once: whether the partition is claimed (no lock taken).
    pub fn has_claim(&self) -> bool {
        self.claimed.load(Ordering::Acquire)
    }

    /// Exactly-once: this member's claim on the partition, once made.
    pub fn claim(&self) -> Option<Claim> {
        *self.claim.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Exactly-once: record the claim, or the row's new offset after a
    /// commit.
    pub fn set_claim(&self, claim: Claim) {
        *self.claim.lock().unwrap_or_else(|e| e.into_inner()) = Some(claim);
        self.claimed.store(true, Ordering::Release);
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

    /// Record that `offset` was read. Offsets normally increase; when the
    /// consumer goes back (an offset reset), the earlier offsets are simply
    /// read again and released in read order, so a stored offset may move
    /// back (duplicates), never past an unfinished record.
    pub fn begin(&self, offset: i64) {
        self.begin_all([offset]);
    }

    /// [`PartitionTracker::begin`] for several offsets, in read order,
    /// under one lock.
    pub fn begin_all(&self, offsets: impl IntoIterator<Item = i64>) {
        let mut s = self.lock();
        for offset in offsets {
            if s.pending.back().is_some_and(|&(o, _)| o >= offset) {
                s.sorted = false;
            }
            s.pending.push_back((offset, false));
        }
    }

    /// Mark `offset` finished. Returns the highest offset whose record and
    /// all predecessors are finished, if that moved; that offset may now be
    /// stored (the consumer then resumes at the one after it).
    pub fn finish(&self, offset: i64) -> Option<i64> {
        self.finish_all([offset])
    }

    /// [`PartitionTracker::finish`] for several offsets under one lock.
    pub fn finish_all(&self, offsets: impl IntoIterator<Item = i64>) -> Option<i64> {
        let mut s = self.lock();
        for offset in offsets {
            let found = if s.sorted {
                s.pending.binary_search_by_key(&offset, |&(o, _)| o).ok()
            } else {
                s.pending.iter().position(|&(o, done)| o == offset && !done)
            };
            if let Some(i) = found {
                s.pending[i].1 = true;
            }
        }
        let mut last = None;
        while let Some(&(o, true)) = s.pending.front() {
            last = Some(o);
            s.pending.pop_front();
        }
        if s.pending.is_empty() {
            s.sorted = true;
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

    /// Whether the partition was revoked: its records must be abandoned, since
    /// its next owner reads them again. Cheap enough to check per record.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Whether no record of this partition is still anywhere in the
    /// pipeline (every permit is back).
    pub fn drained(&self) -> bool {
        self.permits.available_permits() >= self.window.records
    }

    /// The permits a record of `bytes` bytes holds while in flight: its
    /// share of the window's bytes, in units of the window's records, so
    /// that the permits out bound both records and bytes. At least one;
    /// at most the whole window, so a record larger than the window's
    /// bytes still goes, alone.
    pub fn permits_for(&self, bytes: usize) -> u32 {
        let Window {
            records,
            bytes: max,
        } = self.window;
        // ceil(bytes × records / max), in u128 so nothing overflows.
        let share = (bytes as u128 * records as u128).div_ceil(u128::from(max.max(1)));
        share.clamp(1, records.min(u32::MAX as usize) as u128) as u32
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
        PartitionTracker::new(
            "t".into(),
            0,
            Window {
                records: 10,
                bytes: 1 << 20,
            },
        )
    }

    /// How many records of `bytes` bytes each get permits at once.
    fn admitted(t: &PartitionTracker, bytes: usize) -> usize {
        let mut held = Vec::new();
        while let Ok(p) = t
            .permits
            .clone()
            .try_acquire_many_owned(t.permits_for(bytes))
        {
            held.push(p);
        }
        held.len()
    }

    #[test]
    fn the_window_bounds_bytes_as_well_as_records() {
        let window = Window {
            records: 5000,
            bytes: 8 << 20,
        };
        let t = PartitionTracker::new("t".into(), 0, window);
        assert_eq!(admitted(&t, 100), 5000, "small records: bound by count");
        assert_eq!(admitted(&t, 1 << 20), 8, "1 MiB records: bound by 8 MiB");
        assert_eq!(admitted(&t, 3 << 20), 2, "3 MiB records: two fit in 8 MiB");
        assert_eq!(admitted(&t, 64 << 20), 1, "larger than the window: alone");
        assert_eq!(admitted(&t, 0), 5000, "empty records still count");
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
    fn a_batch_finishes_under_one_call_and_still_waits_for_a_gap() {
        let t = t();
        t.begin_all([1, 2, 3, 4]);
        assert_eq!(t.finish_all([2, 3]), None);
        assert_eq!(t.finish_all([1]), Some(3));
        assert_eq!(t.finish_all([4, 99]), Some(4));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn unknown_offset_is_ignored() {
        let t = t();
        t.begin(1);
        assert_eq!(t.finish(7), None);
        assert_eq!(t.in_flight(), 1);
    }

    #[test]
    fn an_offset_reset_within_an_assignment_never_skips_an_unfinished_record() {
        let t = t();
        for o in [10, 11, 12] {
            t.begin(o);
        }
        // The consumer went back to 5 (an offset reset) while 10..12 fly.
        for o in [5, 6] {
            t.begin(o);
        }
        assert_eq!(t.finish(6), None);
        assert_eq!(t.finish(10), Some(10));
        assert_eq!(t.finish(12), None);
        assert_eq!(t.finish(11), Some(12));
        // 5 is still unfinished: nothing after it in read order is released.
        assert_eq!(t.in_flight(), 2);
        assert_eq!(t.finish(5), Some(6));
        assert_eq!(t.in_flight(), 0);
        // Back in order: the fast path again.
        t.begin(7);
        assert_eq!(t.finish(7), Some(7));
    }

    #[test]
    fn halt_covers_the_offset_and_everything_after() {
        let t = t();
        assert!(!t.halts(i64::MAX - 1));
        t.halt(7);
        t.halt(9);
        assert!(!t.halts(6));
        assert!(t.halts(7));
        assert!(t.halts(100));
    }

    #[test]
    fn a_rewind_drops_reads_from_before_the_seek() {
        let t = t();
        assert!(!t.stale(50));
        t.rewind(40);
        assert!(t.stale(51));
        assert!(t.stale(41));
        assert!(!t.stale(30));
        // Over: later offsets flow again.
        assert!(!t.stale(41));
    }

    #[test]
    fn a_record_at_or_before_the_first_after_a_seek_forward_means_the_log_went_back() {
        let t = t();
        assert!(!t.went_back(0));
        t.forward(10);
        assert!(!t.went_back(11), "fetched before the seek took effect");
        assert!(t.went_back(10));
        assert!(t.went_back(0));
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
