//! Plugin stages: each plugin in a chain runs on its own worker threads,
//! each owning one plugin instance (one Store, reused for every record).
//!
//! Promise: all records of one partition go through the same worker of each
//! stage, in order, so order within a partition is kept end to end. A
//! transient failure is retried with exponential backoff up to the retry
//! limit, unless shutdown or a revoke of its partition interrupts the
//! backoff (the record is then abandoned: read again, never committed
//! here); any other failure marks the record for the dead-letter topic and
//! skips the remaining stages.
//!
//! Hot swap: a worker looks at its plugin slot before each record, never
//! during one, and switches to a newly published version there. A record,
//! retries included, is processed by one version only, and each partition
//! switches once, between two of its offsets. A worker that cannot start
//! the published version stays on the one it runs and tries again at a
//! record at least [`RETRY_REFUSED`] later.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::work::{Failure, Work};
use crate::config::pipeline::RetryConfig;
use crate::metrics::{PipelineMetrics, PluginMetrics};
use crate::plugin::{Input, Instance, Output, PluginError, output_bytes};
use crate::source::offsets::PartitionTracker;
use crate::swap::{PluginSlot, Version};

/// Where a stage sends finished work.
pub enum Next {
    /// The next stage's workers; the partition picks one.
    Stage(Vec<mpsc::Sender<Work>>),
    /// The sink.
    Sink(mpsc::Sender<Work>),
}

impl Next {
    fn send(&self, work: Work) -> Result<(), ()> {
        let tx = match self {
            Next::Stage(txs) => &txs[lane(work.record.partition, txs.len())],
            Next::Sink(tx) => tx,
        };
        tx.blocking_send(work).map_err(|_| ())
    }
}

/// How long a worker waits before it tries again to start a published
/// version it could not start.
pub const RETRY_REFUSED: Duration = Duration::from_secs(1);

/// Which of `n` workers handles `partition`.
pub fn lane(partition: i32, n: usize) -> usize {
    (partition.unsigned_abs() as usize) % n.max(1)
}

pub struct Stage {
    pub index: usize,
    pub last: bool,
    pub slot: Arc<PluginSlot>,
    /// The version `instance` runs.
    pub version: Arc<Version>,
    pub instance: Instance,
    /// A published version this worker could not start, and when it last
    /// tried; tried again at a record at least [`RETRY_REFUSED`] later.
    pub refused: Option<(Arc<Version>, Instant)>,
    pub retry: RetryConfig,
    pub metrics: PluginMetrics,
    pub pipeline: PipelineMetrics,
    pub stopping: Arc<AtomicBool>,
}

impl Stage {
    /// The worker loop; returns when the input channel closes.
    pub fn run(mut self, mut rx: mpsc::Receiver<Work>, next: Next) {
        while let Some(mut work) = rx.blocking_recv() {
            // The partition moved to another member: its new owner reads
            // this record again, so it must not be processed here too.
            if work.tracker.is_revoked() {
                work.abandoned = true;
            }
            if work.failure.is_none() && !work.abandoned {
                self.follow_slot();
                work.versions.push(self.version.tag.clone());
                self.process(&mut work);
            }
            if next.send(work).is_err() {
                // The downstream side is gone: the pipeline is stopping and
                // unsent work is simply not committed.
                return;
            }
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

    fn process(&mut self, work: &mut Work) {
        let inputs = if self.index == 0 {
            None
        } else {
            Some(std::mem::take(&mut work.pending))
        };
        let mut outputs = Vec::new();
        match inputs {
            None => {
                // The first stage borrows the source record: no copy.
                if let Err(f) = self.call(&work.record, &work.tracker, &mut outputs) {
                    return self.fail(work, f);
                }
            }
            Some(inputs) => {
                // What accumulates for one source record along the chain is
                // bounded by this stage's output caps too.
                let mut bytes = output_bytes(&work.routed);
                for input in &inputs {
                    let before = outputs.len();
                    if let Err(f) = self.call(input, &work.tracker, &mut outputs) {
                        return self.fail(work, f);
                    }
                    bytes += output_bytes(&outputs[before..]);
                    let count = outputs.len() + work.routed.len();
                    if let Err(e) = self.instance.limits().check_outputs(count, bytes) {
                        self.metrics.trapped(e.kind());
                        return self.fail(work, Some(self.failure(&e, 1)));
                    }
                }
            }
        }
        for o in outputs {
            if o.route.is_some() || self.last {
                work.routed.push(o);
            } else {
                let next = work.chained_input(o);
                work.pending.push(next);
            }
        }
    }

    fn fail(&self, work: &mut Work, f: Option<Failure>) {
        match f {
            Some(f) => work.failure = Some(f),
            None => work.abandoned = true,
        }
        work.pending.clear();
        work.routed.clear();
    }

    /// Call the plugin with retries. `Err(None)` means shutdown, or the
    /// partition moving to another member, interrupted the retries.
    fn call(
        &mut self,
        input: &Input,
        tracker: &PartitionTracker,
        out: &mut Vec<Output>,
    ) -> Result<(), Option<Failure>> {
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = self.instance.process(input);
            self.metrics
                .call_seconds
                .record(started.elapsed().as_secs_f64());
            self.version.calls.fetch_add(1, Ordering::Relaxed);
            if result.is_err() {
                self.version.errors.fetch_add(1, Ordering::Relaxed);
            }
            match result {
                Ok(mut outputs) => {
                    out.append(&mut outputs);
                    return Ok(());
                }
                Err(e) if e.is_transient() && attempt < self.retry.max_attempts => {
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
    fn sleep(&self, total: Duration, tracker: &PartitionTracker) -> bool {
        let until = Instant::now() + total;
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
