//! Plugin stages: each plugin in a chain runs on its own worker threads,
//! each owning one plugin instance (one Store, reused for every record).
//!
//! Promise: all records of one partition go through the same worker of each
//! stage, in order, so order within a partition is kept end to end. A
//! transient failure is retried with exponential backoff up to the retry
//! limit; any other failure marks the record for the dead-letter topic and
//! skips the remaining stages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::work::{Failure, Work};
use crate::config::pipeline::RetryConfig;
use crate::metrics::{PipelineMetrics, PluginMetrics};
use crate::plugin::{Input, Instance, Output, PluginError};

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

/// Which of `n` workers handles `partition`.
pub fn lane(partition: i32, n: usize) -> usize {
    (partition.unsigned_abs() as usize) % n.max(1)
}

pub struct Stage {
    pub index: usize,
    pub last: bool,
    pub instance: Instance,
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
                self.process(&mut work);
            }
            if next.send(work).is_err() {
                // The downstream side is gone: the pipeline is stopping and
                // unsent work is simply not committed.
                return;
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
                if let Err(f) = self.call(&work.record, &mut outputs) {
                    return self.fail(work, f);
                }
            }
            Some(inputs) => {
                for input in &inputs {
                    if let Err(f) = self.call(input, &mut outputs) {
                        return self.fail(work, f);
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

    /// Call the plugin with retries. `Err(None)` means shutdown interrupted
    /// the retries.
    fn call(&mut self, input: &Input, out: &mut Vec<Output>) -> Result<(), Option<Failure>> {
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = self.instance.process(input);
            self.metrics
                .call_seconds
                .record(started.elapsed().as_secs_f64());
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
                    if !self.sleep(delay) {
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

    /// Sleep in small steps so shutdown is not held up by a long backoff.
    fn sleep(&self, total: Duration) -> bool {
        let until = Instant::now() + total;
        while Instant::now() < until {
            if self.stopping.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
        !self.stopping.load(Ordering::Relaxed)
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
