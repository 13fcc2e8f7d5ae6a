//! The pipeline runtime: consume ([`intake`]) → plugin stages → sinks →
//! acknowledge → store offset, a batch at a time at every hand-off.
//!
//! When an offset may be committed: a record's offset is stored only after
//! the sink has acknowledged every output of that record and of every
//! earlier record of its partition (the rule is [`crate::source::offsets`]'s;
//! [`crate::source::kafka::finish`] applies it once per batch). On
//! shutdown the order is: stop polling, drain the stages, wait for every
//! delivery, store the offsets that finished, commit synchronously. A fatal
//! produce error stops the pipeline without storing the offset of the
//! record it hit, nor any later offset of that partition.

pub mod intake;
pub mod stage;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rdkafka::consumer::{CommitMode, Consumer as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::pipeline::{File, Pipeline};
use crate::metrics::PipelineMetrics;
use crate::plugin::Runtime;
use crate::record::Batch;
use crate::sink::router::{Router, Undelivered};
use crate::source::kafka::{SourceConsumer, SourceContext, Trackers};
use crate::swap::{PluginSlot, Reloader, Version};
use stage::{Next, Stage};

/// Capacity of each stage's input channel, in batches.
const STAGE_QUEUE: usize = 64;
/// How long shutdown waits for outstanding deliveries.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Load every plugin a file names, start one instance of each and run its
/// smoke records (so a bad plugin, a rejected config or a failed smoke
/// record fails here, before anything is consumed). Returns each
/// pipeline's plugin slots, in chain order.
pub fn load_plugins(runtime: &Runtime, file: &File) -> anyhow::Result<Vec<Vec<Arc<PluginSlot>>>> {
    let mut all = Vec::new();
    for p in &file.pipelines {
        let mut chain = Vec::new();
        for (i, pc) in p.plugins.iter().enumerate() {
            let at = || format!("pipeline `{}`: plugin[{i}] ({})", p.name, pc.display_name());
            let plugin = crate::swap::admit_file(runtime, pc).with_context(at)?;
            let version = Version::new(plugin, pc.clone(), 1);
            chain.push(Arc::new(PluginSlot::new(&p.name, i, version)));
        }
        all.push(chain);
    }
    Ok(all)
}

/// Run every pipeline of `file` until `shutdown` resolves or one fails.
/// `path` is where `file` came from: it is watched for plugin changes
/// (with `reload.watch`), and re-read on `POST /plugins/.../reload`.
pub async fn run(
    runtime: Runtime,
    file: File,
    path: Option<PathBuf>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let rt = runtime.clone();
    let file2 = file.clone();
    let plugins = tokio::task::spawn_blocking(move || load_plugins(&rt, &file2)).await??;
    let cancel = CancellationToken::new();
    let reloader = Arc::new(Reloader::new(
        runtime,
        path,
        plugins.iter().flatten().cloned().collect(),
    ));
    let handle = crate::metrics::install().ok();
    let tracker = tokio_util::task::TaskTracker::new();
    if let (Some(m), Some(handle)) = (&file.metrics, handle) {
        let (addr, c) = (m.listen, cancel.clone());
        tracker.spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, handle, c).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }
    match &file.admin {
        Some(admin) => {
            let listener = crate::swap::admin::bind(admin).await?;
            let (admin, r, c) = (admin.clone(), reloader.clone(), cancel.clone());
            tracker.spawn(async move {
                if let Err(e) = crate::swap::admin::serve(listener, &admin, r, c).await {
                    tracing::error!(error = %e, "admin API failed");
                }
            });
        }
        None => tracing::info!(
            "no admin API: add an [admin] section to list, reload and roll back plugins over HTTP"
        ),
    }
    let watcher = if file.reload.watch && !reloader.slots().is_empty() {
        Some(
            crate::swap::watch::spawn(reloader.clone(), file.reload.settle, cancel.clone())
                .context("cannot watch plugin files (set `reload.watch = false` to run without)")?,
        )
    } else {
        None
    };
    let shutdown_timeout = file.shutdown_timeout;
    // Each pipeline's partitions, to name what a timed-out shutdown abandons.
    let mut inventory: Vec<(String, Arc<Trackers>)> = Vec::new();
    let mut pipelines = tokio::task::JoinSet::new();
    for src in file.sql_sources.clone() {
        let c = cancel.clone();
        pipelines.spawn(async move { crate::source::sql::run(src, c).await });
    }
    for (p, chain) in file.pipelines.into_iter().zip(plugins) {
        let c = cancel.clone();
        let trackers = Arc::new(Trackers::default());
        inventory.push((p.name.clone(), trackers.clone()));
        pipelines.spawn(async move {
            let name = p.name.clone();
            run_pipeline(p, chain, trackers, c)
                .await
                .with_context(|| format!("pipeline `{name}`"))
        });
    }
    tokio::pin!(shutdown);
    let mut result = Ok(());
    let mut give_up: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown, if !cancel.is_cancelled() => {
                tracing::info!(timeout = ?shutdown_timeout, "shutting down: draining pipelines");
                cancel.cancel();
            }
            _ = async { match give_up { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                let mut abandoned = Vec::new();
                for (name, trackers) in &inventory {
                    for (topic, partition, n) in trackers.in_flight() {
                        abandoned.push(format!("{name}: {topic}/{partition} ({n} records)"));
                    }
                }
                tracing::error!(
                    timeout = ?shutdown_timeout, abandoned = %abandoned.join(", "),
                    "shutdown timed out: exiting without committing the records still in flight; they are read again"
                );
                result = Err(anyhow::anyhow!(
                    "shutdown did not finish within {shutdown_timeout:?}; abandoned records in flight: {}",
                    if abandoned.is_empty() { "none tracked".to_owned() } else { abandoned.join(", ") }
                ));
                break;
            }
            done = pipelines.join_next() => match done {
                None => break,
                Some(r) => {
                    let r = r.map_err(anyhow::Error::from).and_then(|r| r);
                    if let Err(e) = r {
                        tracing::error!(error = %format!("{e:#}"), "pipeline failed; stopping");
                        if result.is_ok() {
                            result = Err(e);
                        }
                        cancel.cancel();
                    }
                }
            }
        }
        if cancel.is_cancelled() && give_up.is_none() {
            give_up = Some(tokio::time::Instant::now() + shutdown_timeout);
        }
    }
    if give_up.is_some_and(|t| tokio::time::Instant::now() >= t) {
        // Whatever still runs holds nothing committed past an
        // unacknowledged record: leave it behind.
        return result;
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    if let Some(w) = watcher {
        let _ = tokio::task::spawn_blocking(move || w.join()).await;
    }
    result
}

/// Run one pipeline until `cancel` fires or a fatal error.
pub async fn run_pipeline(
    p: Pipeline,
    chain: Vec<Arc<PluginSlot>>,
    trackers: Arc<Trackers>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = PipelineMetrics::new(&p.name);
    let (sink, batcher) = Router::new(&p, metrics.clone(), cancel.clone()).await?;
    let exactly_once = sink.sql().filter(|s| s.exactly_once).cloned();
    let ctx = SourceContext::new(&p.name, trackers.clone(), metrics.clone());
    let consumer = Arc::new(
        crate::source::kafka::consumer(&p.source, ctx)
            .map_err(anyhow::Error::msg)
            .context("source")?,
    );

    // Stages are built back to front, each knowing where to send its work.
    let stopping = Arc::new(AtomicBool::new(false));
    let (sink_tx, sink_rx) = mpsc::channel::<Batch>(STAGE_QUEUE);
    let mut next = Next::Sink(sink_tx.clone());
    let mut threads = Vec::new();
    for (index, (pc, slot)) in p.plugins.iter().zip(&chain).enumerate().rev() {
        let mut txs = Vec::new();
        for w in 0..pc.workers {
            let (tx, rx) = mpsc::channel::<Batch>(STAGE_QUEUE);
            txs.push(tx);
            let version = slot.current();
            let instance = version.instance()?;
            let stage = Stage {
                index,
                last: index + 1 == chain.len(),
                slot: slot.clone(),
                version,
                instance,
                refused: None,
                retry: p.retry,
                metrics: metrics.plugin(&slot.name),
                pipeline: metrics.clone(),
                stopping: stopping.clone(),
                counts: (0, 0),
                slept: Duration::ZERO,
                batch_size: stage::MAX_CALL_BATCH,
            };
            let next = next.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{}-{}-{w}", p.name, slot.name))
                    .spawn(move || stage.run(rx, next))?,
            );
        }
        next = Next::Stage(txs);
    }
    drop(sink_tx);
    let first = next;

    let sink_cancel = cancel.clone();
    let sink_consumer = consumer.clone();
    let sink_task = tokio::spawn(sink_loop(
        sink,
        sink_rx,
        sink_consumer,
        metrics.clone(),
        sink_cancel,
    ));

    let consumed = intake::Intake {
        p: &p,
        consumer: &consumer,
        trackers: &trackers,
        first,
        metrics: &metrics,
        exactly_once: exactly_once.as_ref(),
        cancel: &cancel,
    }
    .run()
    .await;
    // The consumer's handle to the batcher must go, or it never stops.
    drop(exactly_once);
    // Stop polling: from here on nothing new enters the pipeline.
    stopping.store(cancel.is_cancelled(), Ordering::Relaxed);
    let sunk = sink_task.await.context("sink task panicked")?;
    let batched = match batcher {
        Some(b) => b.await.context("SQL batcher panicked")?,
        None => Ok(()),
    };
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    // Every finished offset is stored by now; commit them before leaving.
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing new was stored since the last commit.
        Ok(())
        | Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => {}
        Err(e) => tracing::warn!(pipeline = %p.name, error = %e, "final offset commit failed"),
    }
    trackers.revoke_all();
    tracing::info!(pipeline = %p.name, "pipeline stopped");
    sunk.and(batched).and(consumed)
}

/// Dispatch finished batches to the sink, and finish their records (which
/// stores their offsets) as their writes are acknowledged.
async fn sink_loop(
    sink: Router,
    mut rx: mpsc::Receiver<Batch>,
    consumer: Arc<SourceConsumer>,
    metrics: PipelineMetrics,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut sink = sink;
    let mut inflight = FuturesUnordered::new();
    let mut open = true;
    let result = loop {
        tokio::select! {
            b = rx.recv(), if open => match b {
                Some(mut batch) => {
                    crate::source::offsets::retain_writable(&mut batch);
                    if !batch.is_empty() {
                        let delivery = sink.dispatch(batch).await;
                        inflight.push(delivery);
                    }
                }
                None => {
                    open = false;
                    // Nothing more will arrive: the batcher may flush now
                    // instead of waiting for its batch to age.
                    sink.close_sql();
                }
            },
            Some(done) = inflight.next() => match done {
                Ok(batch) => crate::source::kafka::finish(&consumer, &batch, &metrics),
                Err(Undelivered::Refused { batch, error }) => {
                    tracing::warn!(%error, records = batch.len(), "the broker refused a write; sending the batch's records again one by one");
                    match sink.redeliver(batch).await {
                        Ok(batch) => crate::source::kafka::finish(&consumer, &batch, &metrics),
                        Err(e) => break Err(e),
                    }
                }
                Err(Undelivered::Fatal(e)) => break Err(e),
            },
            else => break Ok(()),
        }
    };
    if result.is_err() {
        cancel.cancel();
        // Do not finish anything else: the failed record holds its
        // partition's offset back, and the others may be re-read.
        return result;
    }
    if let Err(e) = sink.flush(DRAIN_TIMEOUT) {
        tracing::warn!(error = %e, "producer flush on shutdown");
    }
    result
}
