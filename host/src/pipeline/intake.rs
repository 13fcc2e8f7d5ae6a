//! The consume loop: reads records from the source consumer, claims each
//! newly assigned partition in exactly-once mode, and hands records to the
//! first stage (or the sink) in batches.
//!
//! Batches: after each wake-up the loop takes every record that is already
//! fetched, up to [`MAX_BATCH`], and hands each lane of the first stage one
//! batch. It never waits for a batch to fill: a lone record goes on alone.
//!
//! Promise: backpressure never stops the poll for long. A partition whose
//! window (`max_in_flight` records, `max_in_flight_bytes`) stays full for [`BRIEF`] is paused
//! (`Consumer::pause`) and its records read meanwhile are held, in order,
//! until a permit frees; then they go on and the partition is resumed. A
//! stage queue that stays full for [`BRIEF`] pauses every partition while
//! the loop keeps polling, so rebalances are served and the member is never
//! evicted for missing `max.poll.interval.ms`, however slow a sink is.
//! Short waits do not pause: a pause costs a fetch round trip on resume.
//! Records are handed on in offset order per partition.
//!
//! The source turns each message into a record ([`kafka::record`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use rdkafka::Message as _;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::BorrowedMessage;
use tokio::sync::{OwnedSemaphorePermit, TryAcquireError, mpsc};
use tokio_util::sync::CancellationToken;

use super::stage::{Next, lane};
use crate::config::pipeline::Pipeline;
use crate::metrics::PipelineMetrics;
use crate::plugin::{Input, input_bytes};
use crate::record::{Batch, Nulls, Work, same_partition};
use crate::sink::sql::SqlSink;
use crate::source::kafka::{self, PartitionKey, SourceConsumer, Trackers};
use crate::source::offsets::{PartitionTracker, Window};

/// How long the loop waits for a permit or for room in a stage queue
/// before it pauses instead: far below `max.poll.interval.ms`, and long
/// enough that a busy but flowing pipeline never pauses.
const BRIEF: Duration = Duration::from_millis(200);

/// Most records taken per wake-up, across all partitions.
pub const MAX_BATCH: usize = 256;

/// A record as read: the plugin input and which of its parts were null.
type Read = (Input, Nulls);

/// A partition paused for want of a permit, and the records read for it
/// since, in offset order.
struct Held {
    tracker: Arc<PartitionTracker>,
    records: VecDeque<Read>,
}

/// What wakes a held partition: a permit, or `None` when it was revoked.
type Wake = (Arc<PartitionTracker>, Option<OwnedSemaphorePermit>);

/// The consume loop of one pipeline, and everything it borrows; run it with
/// [`Intake::run`].
pub struct Intake<'a> {
    /// The pipeline's config (its name, and the source's `max_in_flight`).
    pub p: &'a Pipeline,
    /// The source consumer the records are read from.
    pub consumer: &'a SourceConsumer,
    /// The trackers of the current assignment, shared with the consumer's
    /// rebalance callbacks.
    pub trackers: &'a Trackers,
    /// Where batches go: the first stage's lanes, or the sink when the
    /// pipeline has no plugins.
    pub first: Next,
    /// The pipeline's counters.
    pub metrics: &'a PipelineMetrics,
    /// In exactly-once mode, the SQL sink each newly assigned partition is
    /// claimed through, before its first record is taken.
    pub exactly_once: Option<&'a SqlSink>,
    /// Stops the loop when cancelled.
    pub cancel: &'a CancellationToken,
}

/// The loop's own state, passed by `&mut` (it never leaves the loop).
struct Loop {
    held: HashMap<PartitionKey, Held>,
    wake_tx: mpsc::UnboundedSender<Wake>,
    /// Records read while every partition was paused on a full stage
    /// queue, to hand on before reading more.
    backlog: VecDeque<(Read, Arc<PartitionTracker>)>,
    /// The batch being filled for each lane of the first stage.
    out: Vec<Batch>,
    /// Records in `out`.
    filled: usize,
    /// The trackers of partitions seen lately, looked up without the
    /// shared map's lock.
    seen: Vec<Arc<PartitionTracker>>,
}

impl Intake<'_> {
    /// Read records and hand them on until cancelled.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut last_error: Option<String> = None;
        let (wake_tx, mut wake_rx) = mpsc::unbounded_channel::<Wake>();
        let lanes = match &self.first {
            Next::Stage(txs) => txs.len(),
            Next::Sink(_) => 1,
        };
        let mut st = Loop {
            held: HashMap::new(),
            wake_tx,
            backlog: VecDeque::new(),
            out: (0..lanes).map(|_| Vec::new()).collect(),
            filled: 0,
            seen: Vec::new(),
        };
        loop {
            while let Some((record, tracker)) = st.backlog.pop_front() {
                self.admit(record, tracker, &mut st).await?;
                if st.filled >= MAX_BATCH {
                    self.flush(&mut st).await?;
                }
            }
            self.flush(&mut st).await?;
            if !st.backlog.is_empty() {
                continue;
            }
            let msg = tokio::select! {
                _ = self.cancel.cancelled() => return Ok(()),
                Some((tracker, permit)) = wake_rx.recv() => {
                    self.wake(tracker, permit, &mut st).await?;
                    continue;
                }
                m = self.consumer.recv() => m,
            };
            self.read_one(msg, &mut last_error, &mut st).await?;
            // Take what is already fetched, without waiting for more.
            while st.filled < MAX_BATCH && st.backlog.is_empty() {
                match self.consumer.recv().now_or_never() {
                    Some(msg) => self.read_one(msg, &mut last_error, &mut st).await?,
                    None => break,
                }
            }
        }
    }

    async fn read_one(
        &self,
        msg: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>,
        last_error: &mut Option<String>,
        st: &mut Loop,
    ) -> anyhow::Result<()> {
        let msg = match msg {
            Ok(m) => {
                if let Some(e) = last_error.take() {
                    tracing::info!(pipeline = %self.p.name, after = %e, "consuming again");
                }
                m
            }
            Err(e) => {
                // Once per distinct error until records flow again: an
                // unreachable broker repeats the same one many times a
                // second.
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(pipeline = %self.p.name, error = %text, "consumer error (logged once until it changes)");
                    *last_error = Some(text);
                }
                return Ok(());
            }
        };
        let Some((record, tracker)) = self.take(msg, &mut st.seen).await? else {
            return Ok(());
        };
        self.admit(record, tracker, st).await
    }

    /// Turn a message into a record for its partition's tracker, claiming
    /// the partition first in exactly-once mode. `None`: nothing to do with
    /// it (already written, read before a seek, or shutting down).
    async fn take(
        &self,
        msg: BorrowedMessage<'_>,
        seen: &mut Vec<Arc<PartitionTracker>>,
    ) -> anyhow::Result<Option<(Read, Arc<PartitionTracker>)>> {
        let (topic, partition) = (msg.topic(), msg.partition());
        let cached = seen
            .iter()
            .find(|t| t.partition == partition && &*t.topic == topic && !t.is_revoked())
            .cloned();
        let (tracker, fresh) = match cached {
            Some(t) => (t, false),
            None => {
                let window = Window {
                    records: self.p.source.max_in_flight,
                    bytes: self.p.source.max_in_flight_bytes,
                };
                let (t, fresh) = self.trackers.get(topic, partition, window);
                seen.retain(|s| {
                    !(s.is_revoked() || (s.partition == partition && &*s.topic == topic))
                });
                seen.push(t.clone());
                (t, fresh)
            }
        };
        if fresh && let Some(sql) = self.exactly_once {
            // A new assignment: claim the partition in the database, which,
            // not Kafka, knows how far it got.
            let Some(claim) = sql
                .claim(msg.topic(), msg.partition(), msg.offset(), self.cancel)
                .await
            else {
                return Ok(None);
            };
            tracker.set_claim(claim);
            if claim.next != msg.offset() {
                resume_at(self.p, self.consumer, &tracker, msg.offset(), claim.next)?;
                return Ok(None);
            }
        }
        if tracker.went_back(msg.offset()) {
            let next = tracker.claim().map_or(0, |c| c.next);
            anyhow::bail!(
                "{}/{}: the database's offset {next} is beyond the end of the log (after a seek to it \
                 the broker went back to offset {}): was the topic deleted and created again? \
                 Refusing to skip records in silence; check the partition's row in the offsets table",
                tracker.topic,
                tracker.partition,
                msg.offset()
            );
        }
        if tracker.skips(msg.offset()) || tracker.stale(msg.offset()) {
            return Ok(None);
        }
        Ok(Some((kafka::record(&msg), tracker)))
    }

    /// Put a record in its lane's batch if its partition has a permit
    /// free; otherwise hold it and pause the partition.
    async fn admit(
        &self,
        record: Read,
        tracker: Arc<PartitionTracker>,
        st: &mut Loop,
    ) -> anyhow::Result<()> {
        if !st.held.is_empty() {
            let key = (tracker.topic.clone(), tracker.partition);
            if let Some(h) = st.held.get_mut(&key) {
                if Arc::ptr_eq(&h.tracker, &tracker) {
                    // Behind held records of its partition: keep the order.
                    h.records.push_back(record);
                    return Ok(());
                }
                // Held for an assignment that is over: those records are
                // read again by whoever owns the partition now.
                st.held.remove(&key);
            }
        }
        let want = tracker.permits_for(input_bytes(&record.0));
        match tracker.permits.clone().try_acquire_many_owned(want) {
            Ok(permit) => {
                self.hand_on(record, tracker, permit, st);
                Ok(())
            }
            // Revoked: the record is read again by the partition's new owner.
            Err(TryAcquireError::Closed) => Ok(()),
            Err(TryAcquireError::NoPermits) => {
                // What is batched so far may be what holds the permits:
                // hand it on before waiting.
                self.flush(st).await?;
                // A permit usually frees within moments, and a pause costs a
                // fetch round trip on resume: wait a little first.
                let soon =
                    tokio::time::timeout(BRIEF, tracker.permits.clone().acquire_many_owned(want));
                match soon.await {
                    Ok(Ok(permit)) => {
                        self.hand_on(record, tracker, permit, st);
                        return Ok(());
                    }
                    Ok(Err(_)) => return Ok(()),
                    Err(_) => {}
                }
                self.pause(&tracker);
                let key = (tracker.topic.clone(), tracker.partition);
                st.held.insert(
                    key,
                    Held {
                        tracker: tracker.clone(),
                        records: VecDeque::from([record]),
                    },
                );
                wait_for_permit(tracker, want, st.wake_tx.clone());
                Ok(())
            }
        }
    }

    /// A held partition got a permit (or was revoked): hand on what it holds
    /// while permits last, and resume it once it holds nothing.
    async fn wake(
        &self,
        tracker: Arc<PartitionTracker>,
        permit: Option<OwnedSemaphorePermit>,
        st: &mut Loop,
    ) -> anyhow::Result<()> {
        let key = (tracker.topic.clone(), tracker.partition);
        if !st
            .held
            .get(&key)
            .is_some_and(|h| Arc::ptr_eq(&h.tracker, &tracker))
        {
            return Ok(());
        }
        let Some(mut permit) = permit else {
            // Revoked: what it held is read again by its new owner.
            st.held.remove(&key);
            return Ok(());
        };
        loop {
            let Some(h) = st.held.get_mut(&key) else {
                return Ok(());
            };
            let Some(record) = h.records.pop_front() else {
                st.held.remove(&key);
                self.resume(&tracker);
                return Ok(());
            };
            self.hand_on(record, tracker.clone(), permit, st);
            if st.filled >= MAX_BATCH {
                self.flush(st).await?;
            }
            let Some(next) = st.held.get(&key).and_then(|h| h.records.front()) else {
                st.held.remove(&key);
                self.resume(&tracker);
                return Ok(());
            };
            let want = tracker.permits_for(input_bytes(&next.0));
            match tracker.permits.clone().try_acquire_many_owned(want) {
                Ok(p) => permit = p,
                Err(TryAcquireError::Closed) => {
                    st.held.remove(&key);
                    return Ok(());
                }
                Err(TryAcquireError::NoPermits) => {
                    wait_for_permit(tracker, want, st.wake_tx.clone());
                    return Ok(());
                }
            }
        }
    }

    /// Add a record, with its permit, to its lane's batch. Consecutive
    /// records of one partition share the first one's permit.
    fn hand_on(
        &self,
        (record, nulls): Read,
        tracker: Arc<PartitionTracker>,
        permit: OwnedSemaphorePermit,
        st: &mut Loop,
    ) {
        let l = lane(record.partition, st.out.len());
        let batch = &mut st.out[l];
        let mut permit = Some(permit);
        for w in batch.iter_mut().rev() {
            if !Arc::ptr_eq(&w.tracker, &tracker) {
                break;
            }
            if let Some(held) = &mut w.permit {
                if let Some(p) = permit.take() {
                    held.merge(p);
                }
                break;
            }
        }
        let mut work = Work::new(record, nulls, tracker, permit);
        if let Next::Sink(_) = &self.first {
            // No plugins: the record itself is the one output.
            let output = crate::plugin::Output {
                route: None,
                key: work.record.key.clone(),
                value: work.record.value.clone(),
                headers: work.record.headers.clone(),
            };
            work.routed.push(output);
        }
        batch.push(work);
        st.filled += 1;
    }

    /// Send each lane its batch. When a stage's queue is full, pause every
    /// partition and keep polling until there is room; records that arrive
    /// meanwhile go to the backlog. Partitions in `held` stay paused
    /// afterwards.
    async fn flush(&self, st: &mut Loop) -> anyhow::Result<()> {
        if st.filled == 0 {
            return Ok(());
        }
        self.metrics.records_in.increment(st.filled as u64);
        st.filled = 0;
        for l in 0..st.out.len() {
            let batch = std::mem::take(&mut st.out[l]);
            if batch.is_empty() {
                continue;
            }
            begin(&batch);
            let tx = match &self.first {
                Next::Stage(txs) => &txs[l],
                Next::Sink(tx) => tx,
            };
            self.send(tx, batch, st).await?;
        }
        Ok(())
    }

    async fn send(
        &self,
        tx: &mpsc::Sender<Batch>,
        batch: Batch,
        st: &mut Loop,
    ) -> anyhow::Result<()> {
        let batch = match tx.try_send(batch) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                anyhow::bail!("pipeline stages stopped unexpectedly")
            }
            Err(mpsc::error::TrySendError::Full(batch)) => batch,
        };
        // The stage usually takes it within moments: wait a little before
        // pausing everything.
        match tokio::time::timeout(BRIEF, tx.reserve()).await {
            Ok(Ok(room)) => {
                room.send(batch);
                return Ok(());
            }
            Ok(Err(_)) => anyhow::bail!("pipeline stages stopped unexpectedly"),
            Err(_) => {}
        }
        let assignment = self.consumer.assignment().unwrap_or_default();
        let _ = self.consumer.pause(&assignment);
        let sent = loop {
            tokio::select! {
                room = tx.reserve() => break room.map(|r| r.send(batch)),
                _ = self.cancel.cancelled() => {
                    // Shutting down: the batch is abandoned, read again.
                    break Ok(());
                }
                m = self.consumer.recv() => {
                    // Fetched before the pause took hold, or a rebalance.
                    if let Ok(msg) = m
                        && let Some(taken) = self.take(msg, &mut st.seen).await?
                    {
                        st.backlog.push_back(taken);
                    }
                }
            }
        };
        let mut flowing = TopicPartitionList::new();
        for e in assignment.elements() {
            let key = (Arc::<str>::from(e.topic()), e.partition());
            if !st.held.contains_key(&key) {
                flowing.add_partition(e.topic(), e.partition());
            }
        }
        let _ = self.consumer.resume(&flowing);
        sent.map_err(|_| anyhow::anyhow!("pipeline stages stopped unexpectedly"))
    }

    fn pause(&self, tracker: &PartitionTracker) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tracker.topic, tracker.partition);
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::debug!(topic = %tracker.topic, partition = tracker.partition, error = %e, "pause");
        }
    }

    fn resume(&self, tracker: &PartitionTracker) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tracker.topic, tracker.partition);
        if let Err(e) = self.consumer.resume(&tpl) {
            tracing::debug!(topic = %tracker.topic, partition = tracker.partition, error = %e, "resume");
        }
    }
}

/// Register a batch's offsets with their trackers, one lock per run of
/// one partition's records.
fn begin(batch: &[Work]) {
    for run in batch.chunk_by(same_partition) {
        run[0]
            .tracker
            .begin_all(run.iter().map(|w| w.record.offset));
    }
}

/// Wake the loop once `tracker` has `want` permits free (or is revoked).
fn wait_for_permit(tracker: Arc<PartitionTracker>, want: u32, wake: mpsc::UnboundedSender<Wake>) {
    tokio::spawn(async move {
        let permit = tracker.permits.clone().acquire_many_owned(want).await.ok();
        let _ = wake.send((tracker, permit));
    });
}

/// Exactly-once: the database's offset for a partition differs from the
/// record Kafka gave first (`at`). Read from the database's offset instead:
/// forward past what is already written, or back to what is not.
fn resume_at(
    p: &Pipeline,
    consumer: &SourceConsumer,
    tracker: &PartitionTracker,
    at: i64,
    next: i64,
) -> anyhow::Result<()> {
    let (topic, partition) = (&*tracker.topic, tracker.partition);
    tracing::info!(
        pipeline = %p.name, topic, partition, kafka = at, database = next,
        "resuming from the database's offset"
    );
    // Records below the database's offset are written already.
    tracker.set_skip_below(next);
    if next > at {
        tracker.forward(at);
    }
    if next < at {
        // Kafka is ahead (a reset group, expired offsets, a restored
        // database): the records in between are not written, so go back.
        tracker.rewind(at);
    }
    let sought = consumer.seek(
        topic,
        partition,
        rdkafka::Offset::Offset(next),
        Duration::from_secs(10),
    );
    match sought {
        Ok(()) => Ok(()),
        // Forward, skipping what is written is enough.
        Err(e) if next > at => {
            tracing::debug!(topic, partition, error = %e, "seek forward failed; skipping instead");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "{topic}/{partition}: cannot seek back to the database's offset {next} \
             (Kafka's is {at}): {e}"
        )),
    }
}
