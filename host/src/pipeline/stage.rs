//! Plugin stages: each plugin in a chain runs on its own worker threads,
//! each owning one plugin instance (one Store, reused for every record).
//! Work arrives and leaves in batches ([`Batch`]): one channel hand-off,
//! one wake-up and one metrics update per batch, not per record.
//!
//! Promise: all records of one partition go through the same worker of each
//! stage, in order, so order within a partition is kept end to end. A
//! transient failure is retried with exponential backoff up to the retry
//! limit, unless shutdown or a revoke of its partition interrupts the
//! backoff (the record is then abandoned: read again, never committed
//! here); any other failure marks the record for the dead-letter topic and
//! skips the remaining stages.
//!
//! Batches: a plugin built against `sluice:plugin@0.2.0` gets a stage's
//! batch in `process-batch` calls; a 0.1.0 plugin one record per call.
//! Either way each record's outcome is handled as if it ran alone: a
//! failed batch call (a trap, a deadline) is replayed record by record on
//! a fresh instance, so only the record that fails is dead-lettered, and
//! order within each partition holds.
//!
//! Hot swap: a worker looks at its plugin slot before each batch, never
//! during one, and switches to a newly published version there. A record,
//! retries included, is processed by one version only, and each partition
//! switches once, between two of its offsets. A worker that cannot start
//! the published version stays on the one it runs and tries again at a
//! record at least [`RETRY_REFUSED`] later.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::pipeline::RetryConfig;
use crate::metrics::{PipelineMetrics, PluginMetrics};
use crate::plugin::{Input, Instance, Outcome, Output, PluginError, output_bytes};
use crate::record::{Batch, Failure, Fate, Work};
use crate::source::offsets::PartitionTracker;
use crate::swap::{PluginSlot, Version};

/// Where a stage sends finished work.
#[derive(Clone)]
pub enum Next {
    /// The next stage's workers; the partition picks one.
    Stage(Vec<mpsc::Sender<Batch>>),
    /// The sink.
    Sink(mpsc::Sender<Batch>),
}

impl Next {
    /// Hand a batch on, split by lane when the next stage has several
    /// workers (each partition's records stay together and in order).
    fn send(&self, batch: Batch) -> Result<(), ()> {
        let txs = match self {
            Next::Stage(txs) if txs.len() > 1 => txs,
            Next::Stage(txs) => return txs[0].blocking_send(batch).map_err(|_| ()),
            Next::Sink(tx) => return tx.blocking_send(batch).map_err(|_| ()),
        };
        let mut lanes: Vec<Batch> = (0..txs.len()).map(|_| Vec::new()).collect();
        for work in batch {
            lanes[lane(work.record.partition, txs.len())].push(work);
        }
        for (tx, batch) in txs.iter().zip(lanes) {
            if !batch.is_empty() {
                tx.blocking_send(batch).map_err(|_| ())?;
            }
        }
        Ok(())
    }
}

/// How long a worker waits before it tries again to start a published
/// version it could not start.
pub const RETRY_REFUSED: Duration = Duration::from_secs(1);

/// Which of `n` workers handles `partition`.
pub fn lane(partition: i32, n: usize) -> usize {
    (partition.unsigned_abs() as usize) % n.max(1)
}

/// One worker of one plugin stage: it owns an instance of the plugin's
/// running version and processes the batches of its lane ([`Stage::run`]).
pub struct Stage {
    /// The stage's position in the plugin chain; 0 reads the source records.
    pub index: usize,
    /// Whether this is the chain's last stage, whose default-route outputs go
    /// to the sink rather than to a next stage.
    pub last: bool,
    /// The plugin's slot, followed between batches when a new version lands.
    pub slot: Arc<PluginSlot>,
    /// The version `instance` runs.
    pub version: Arc<Version>,
    /// This worker's instance of `version`.
    pub instance: Instance,
    /// A published version this worker could not start, and when it last
    /// tried; tried again at a record at least [`RETRY_REFUSED`] later.
    pub refused: Option<(Arc<Version>, Instant)>,
    /// How transient failures are retried.
    pub retry: RetryConfig,
    /// The plugin's call latency and trap counters.
    pub metrics: PluginMetrics,
    /// The pipeline's counters (retries).
    pub pipeline: PipelineMetrics,
    /// Set when the pipeline shuts down: cuts retry backoffs short.
    pub stopping: Arc<AtomicBool>,
    /// Calls and failed calls of `version` not yet added to its counters
    /// (they are added once per batch).
    pub counts: (u64, u64),
    /// Time spent in retry backoffs during the current batch (not call
    /// time).
    pub slept: Duration,
    /// Most records per `process-batch` call, adapted to the plugin's
    /// speed (see [`Stage::call_batch`]).
    pub batch_size: usize,
}

/// Most records in one `process-batch` call.
pub const MAX_CALL_BATCH: usize = 256;

impl Stage {
    /// The worker loop; returns when the input channel closes.
    pub fn run(mut self, mut rx: mpsc::Receiver<Batch>, next: Next) {
        while let Some(mut batch) = rx.blocking_recv() {
            let started = Instant::now();
            let calls_before = self.counts.0;
            for work in &mut batch {
                // The partition moved to another member: its new owner
                // reads this record again, so it must not be processed
                // here too.
                if work.tracker.is_revoked() {
                    work.fate = Fate::Abandoned;
                }
            }
            if batch.iter().any(Work::passes) {
                self.follow_slot();
                batch = self.process(batch, &next);
            }
            let calls = self.counts.0 - calls_before;
            if calls > 0 {
                // The batch's mean call time, once per call: one histogram
                // update per batch.
                let busy = started
                    .elapsed()
                    .saturating_sub(std::mem::take(&mut self.slept));
                let mean = busy.as_secs_f64() / calls as f64;
                self.metrics.call_seconds.record_many(mean, calls as usize);
            }
            self.add_counts();
            if next.send(batch).is_err() {
                // The downstream side is gone: the pipeline is stopping and
                // unsent work is simply not committed.
                return;
            }
        }
    }

    /// Add the calls counted since the last time to the running version.
    fn add_counts(&mut self) {
        let (calls, errors) = std::mem::take(&mut self.counts);
        if calls > 0 {
            self.version.calls.fetch_add(calls, Ordering::Relaxed);
        }
        if errors > 0 {
            self.version.errors.fetch_add(errors, Ordering::Relaxed);
        }
    }

    /// Switch to the slot's running version if it changed. Called between
    /// records only.
    fn follow_slot(&mut self) {
        let current = self.slot.load();
        if Arc::ptr_eq(&current, &self.version)
            || self
                .refused
                .as_ref()
                .is_some_and(|(r, at)| Arc::ptr_eq(r, &current) && at.elapsed() < RETRY_REFUSED)
        {
            return;
        }
        let next = Arc::clone(&current);
        drop(current);
        match next.instance() {
            Ok(instance) => {
                // What ran so far counts for the version it ran on.
                self.add_counts();
                tracing::debug!(
                    plugin = %self.slot.name,
                    from = %crate::swap::short(self.version.sha256()),
                    to = %crate::swap::short(next.sha256()),
                    "worker switched version"
                );
                self.instance = instance;
                self.version = next;
                self.refused = None;
            }
            Err(e) => {
                // Admission started this version once already; if it will
                // not start here, keep going on the one that works, and try
                // again later (its init may depend on something passing).
                tracing::error!(
                    plugin = %self.slot.name,
                    version = %crate::swap::short(next.sha256()),
                    error = %e,
                    retry_in = ?RETRY_REFUSED,
                    "worker could not start the new version; staying on the old one for now"
                );
                self.refused = Some((next, Instant::now()));
            }
        }
    }

    /// Run the batch's live records through the plugin (in `process-batch`
    /// calls when it takes them), then file each record's outputs, or its
    /// failure. Returns what is left to hand on: before a record waits out
    /// a retry backoff, the records before it are handed on (`next`), so
    /// a record in backoff never holds back those that were read before
    /// it.
    fn process(&mut self, mut batch: Batch, next: &Next) -> Batch {
        let live: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].passes()).collect();
        for &i in &live {
            batch[i].versions.push(self.version.tag.clone());
        }
        // The first stage borrows the source records (no copy); later
        // stages take the previous stage's default-route outputs.
        let chained: Vec<Vec<Input>> = if self.index == 0 {
            Vec::new()
        } else {
            live.iter()
                .map(|&i| std::mem::take(&mut batch[i].pending))
                .collect()
        };
        let answers = {
            let inputs: Vec<&Input> = if self.index == 0 {
                live.iter().map(|&i| &batch[i].record).collect()
            } else {
                chained.iter().flatten().collect()
            };
            self.call_batch(&inputs)
        };
        let mut answers = answers.into_iter();
        let mut done: Batch = Vec::with_capacity(batch.len());
        let mut live = live.into_iter().enumerate().peekable();
        for (i, mut work) in batch.into_iter().enumerate() {
            let Some((k, _)) = live.next_if(|&(_, l)| l == i) else {
                done.push(work);
                continue;
            };
            let inputs = match chained.get(k) {
                Some(inputs) => inputs.as_slice(),
                None => std::slice::from_ref(&work.record),
            };
            // This record's answers, one per input; whatever `answer`
            // leaves unread (it stops at a failure) is skipped below.
            let mut mine = answers.by_ref().take(inputs.len());
            let mut hand_on_earlier = || {
                if !done.is_empty() {
                    // A send error means the pipeline is stopping: what
                    // is not handed on is not committed.
                    let _ = next.send(std::mem::take(&mut done));
                }
            };
            let answer = self.answer(
                inputs,
                &mut mine,
                &work.tracker,
                &work.routed,
                &mut hand_on_earlier,
            );
            mine.for_each(drop);
            match answer {
                Ok(outputs) => {
                    for o in outputs {
                        if o.route.is_some() || self.last {
                            work.routed.push(o);
                        } else {
                            let next = work.chained_input(o);
                            work.pending.push(next);
                        }
                    }
                }
                Err(f) => self.fail(&mut work, f),
            }
            done.push(work);
        }
        done
    }

    /// One `process-batch` call per chunk of `inputs` when the plugin takes
    /// batches: an answer per input, in order. `None` for an input means
    /// it has no answer yet and is called alone: the plugin takes no
    /// batches, the batch is of one, or the batch call failed as a whole
    /// (a trap or deadline in a batch cannot be pinned on one record, so
    /// each record of it runs alone on a fresh instance, and only the one
    /// that fails is dead-lettered). A batch that runs out of time halves
    /// the batch size for the next ones; batches that finish grow it back.
    fn call_batch(&mut self, inputs: &[&Input]) -> Vec<Option<Outcome>> {
        let mut answers: Vec<Option<Outcome>> = Vec::with_capacity(inputs.len());
        if !self.instance.batches() {
            answers.resize_with(inputs.len(), || None);
            return answers;
        }
        for chunk in inputs.chunks(self.batch_size.max(1)) {
            if chunk.len() == 1 {
                answers.push(None);
                continue;
            }
            match self.instance.process_batch(chunk) {
                Ok(outcomes) => {
                    self.counts.0 += chunk.len() as u64;
                    self.counts.1 += outcomes.iter().filter(|o| o.is_err()).count() as u64;
                    answers.extend(outcomes.into_iter().map(Some));
                    self.batch_size = (self.batch_size * 2).min(MAX_CALL_BATCH);
                }
                Err(e) => {
                    self.counts.0 += 1;
                    self.counts.1 += 1;
                    tracing::debug!(
                        plugin = self.instance.plugin().name(), records = chunk.len(), error = %e,
                        "batch call failed; running its records one at a time"
                    );
                    if matches!(e, PluginError::Deadline { .. }) {
                        self.batch_size = (self.batch_size / 2).max(1);
                    }
                    answers.extend(chunk.iter().map(|_| None));
                }
            }
        }
        answers
    }

    /// The outputs of one source record's `inputs` at this stage, given the
    /// batch call's answers for them: a transient answer is retried alone,
    /// an input with no answer is called alone. What accumulates for one
    /// source record along the chain (`routed` so far) is bounded by this
    /// stage's output caps too.
    fn answer(
        &mut self,
        inputs: &[Input],
        answers: &mut dyn Iterator<Item = Option<Outcome>>,
        tracker: &PartitionTracker,
        routed: &[Output],
        before_backoff: &mut dyn FnMut(),
    ) -> Result<Vec<Output>, Option<Failure>> {
        let mut outputs = Vec::new();
        let mut bytes = output_bytes(routed);
        for input in inputs {
            let before = outputs.len();
            match answers.next().flatten() {
                Some(Ok(mut o)) => outputs.append(&mut o),
                Some(Err(e)) if !e.is_transient() => {
                    self.metrics.trapped(e.kind());
                    return Err(Some(self.failure(&e, 1)));
                }
                first => self.call(input, tracker, &mut outputs, first, before_backoff)?,
            }
            if self.index > 0 {
                bytes += output_bytes(&outputs[before..]);
                let count = outputs.len() + routed.len();
                if let Err(e) = self.instance.limits().check_outputs(count, bytes) {
                    self.metrics.trapped(e.kind());
                    return Err(Some(self.failure(&e, 1)));
                }
            }
        }
        Ok(outputs)
    }

    fn fail(&self, work: &mut Work, f: Option<Failure>) {
        match f {
            Some(f) => work.dead_letter(f),
            None => work.fate = Fate::Abandoned,
        }
        work.pending.clear();
        work.routed.clear();
    }

    /// Call the plugin with retries, `first` being the first attempt's
    /// outcome when a batch call already made it; `before_backoff` runs
    /// before the first backoff. `Err(None)` means shutdown, or the
    /// partition moving to another member, interrupted the retries.
    fn call(
        &mut self,
        input: &Input,
        tracker: &PartitionTracker,
        out: &mut Vec<Output>,
        first: Option<Outcome>,
        before_backoff: &mut dyn FnMut(),
    ) -> Result<(), Option<Failure>> {
        let mut attempt = 1;
        let mut first = first;
        loop {
            let result = match first.take() {
                Some(result) => result,
                None => {
                    let result = self.instance.process(input);
                    self.counts.0 += 1;
                    if result.is_err() {
                        self.counts.1 += 1;
                    }
                    result
                }
            };
            match result {
                Ok(mut outputs) => {
                    out.append(&mut outputs);
                    return Ok(());
                }
                Err(e) if e.is_transient() && attempt < self.retry.max_attempts => {
                    if attempt == 1 {
                        before_backoff();
                    }
                    self.pipeline.retries.increment(1);
                    let delay = self.retry.backoff(attempt);
                    tracing::debug!(
                        plugin = self.instance.plugin().name(),
                        topic = %input.topic, partition = input.partition, offset = input.offset,
                        attempt, ?delay, error = %e, "transient failure; retrying"
                    );
                    if tracker.is_revoked() || !self.sleep(delay, tracker) {
                        if tracker.is_revoked() {
                            // Its new owner reads it again: retrying here
                            // too would repeat its side effects.
                            tracing::info!(
                                plugin = self.instance.plugin().name(),
                                topic = %input.topic, partition = input.partition, offset = input.offset,
                                attempt, "partition revoked: stopped retrying this record"
                            );
                            return Err(None);
                        }
                        tracing::warn!(
                            plugin = self.instance.plugin().name(),
                            topic = %input.topic, partition = input.partition, offset = input.offset,
                            attempt, "shutdown interrupted the retries of this record: it is not \
                             committed, nor anything after it in its partition, and is read again"
                        );
                        return Err(None);
                    }
                    attempt += 1;
                }
                Err(e) => {
                    self.metrics.trapped(e.kind());
                    return Err(Some(self.failure(&e, attempt)));
                }
            }
        }
    }

    fn failure(&self, e: &PluginError, attempts: u32) -> Failure {
        let plugin = self.instance.plugin();
        let mut f = Failure::from_plugin(plugin.name().into(), plugin.hash().into(), e);
        if attempts > 1 {
            f.message = format!("{} (after {attempts} attempts)", f.message);
        }
        f
    }

    /// Sleep in small steps so neither shutdown nor a revoke is held up by
    /// a long backoff; `false` when one of them came first.
    fn sleep(&mut self, total: Duration, tracker: &PartitionTracker) -> bool {
        let from = Instant::now();
        let until = from + total;
        let woke = self.sleep_until(until, tracker);
        self.slept += from.elapsed();
        woke
    }

    fn sleep_until(&self, until: Instant, tracker: &PartitionTracker) -> bool {
        let interrupted = || self.stopping.load(Ordering::Relaxed) || tracker.is_revoked();
        while Instant::now() < until {
            if interrupted() {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
        !interrupted()
    }
}

#[cfg(test)]
mod tests {
    use super::lane;

    #[test]
    fn lanes_are_stable() {
        assert_eq!(lane(0, 3), 0);
        assert_eq!(lane(4, 3), 1);
        assert_eq!(lane(5, 1), 0);
        assert_eq!(lane(-1, 2), 1);
    }
}
