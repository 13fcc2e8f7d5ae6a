//! The Kafka source: a `StreamConsumer` in a consumer group (or with an
//! explicit assignment), plus the context that reacts to rebalances and
//! statistics. It owns a record's way in ([`record`]: a message becomes a
//! plugin [`Input`]) and its offset's way out ([`finish`]).
//!
//! A null value or null header value reaches plugins as empty (the WIT
//! cannot say null); which parts were null travels beside the record in
//! [`Nulls`], for its dead letter.
//!
//! When an offset may be committed: only offsets that a [`PartitionTracker`]
//! released are stored (`enable.auto.offset.store=false`), by [`finish`],
//! once per acknowledged batch; librdkafka
//! commits stored offsets every `commit_interval`, on revoke, and sluice
//! commits synchronously on shutdown. On revoke, the partition's tracker is
//! revoked first, so nothing past an unacknowledged record is stored for it
//! afterwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::{ClientContext, Message as _, Offset, Statistics, TopicPartitionList};

use super::offsets::{self, PartitionTracker, Window};
use crate::config::kafka::{KafkaSource, OffsetReset, PropertyBuilder};
use crate::metrics::PipelineMetrics;
use crate::plugin::{Header, Input};
use crate::record::{Nulls, Work};

/// Key of a partition.
pub type PartitionKey = (Arc<str>, i32);

/// The live trackers of a consumer's current assignment.
#[derive(Debug, Default)]
pub struct Trackers {
    map: Mutex<HashMap<PartitionKey, Arc<PartitionTracker>>>,
}

impl Trackers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartitionKey, Arc<PartitionTracker>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tracker for a partition, created on its first record after an
    /// assignment; the flag says whether it was just created.
    pub fn get(
        &self,
        topic: &str,
        partition: i32,
        window: Window,
    ) -> (Arc<PartitionTracker>, bool) {
        let mut map = self.lock();
        // Look up without allocating the key on the hot path.
        if let Some(t) = map
            .iter()
            .find(|((t, p), _)| *p == partition && &**t == topic)
            .map(|(_, t)| t.clone())
        {
            return (t, false);
        }
        let topic: Arc<str> = topic.into();
        let t = Arc::new(PartitionTracker::new(topic.clone(), partition, window));
        map.insert((topic, partition), t.clone());
        (t, true)
    }

    /// Forget and revoke a partition's tracker; returns it.
    pub fn revoke(&self, topic: &str, partition: i32) -> Option<Arc<PartitionTracker>> {
        let mut map = self.lock();
        let key = map
            .keys()
            .find(|(t, p)| *p == partition && &**t == topic)
            .cloned()?;
        let tracker = map.remove(&key)?;
        tracker.revoke();
        Some(tracker)
    }

    /// Each partition with records still in flight: (topic, partition,
    /// records in flight).
    pub fn in_flight(&self) -> Vec<(Arc<str>, i32, usize)> {
        let mut v: Vec<_> = self
            .lock()
            .values()
            .map(|t| (t.topic.clone(), t.partition, t.in_flight()))
            .filter(|(_, _, n)| *n > 0)
            .collect();
        v.sort();
        v
    }

    /// Revoke everything (shutdown).
    pub fn revoke_all(&self) {
        for (_, t) in self.lock().drain() {
            t.revoke();
        }
    }
}

/// Longest a revoke waits for the revoked partitions' records to leave the
/// pipeline.
const REVOKE_DRAIN: std::time::Duration = std::time::Duration::from_secs(20);

/// Consumer context: revokes trackers before partitions go, exports lag
/// and whether the brokers are reachable.
pub struct SourceContext {
    /// The pipeline's name, for logs and `/readyz`.
    pub pipeline: String,
    /// The trackers of the current assignment, revoked (and drained) before
    /// their partitions go.
    pub trackers: Arc<Trackers>,
    /// Where consumer lag and broker reachability are reported.
    pub metrics: PipelineMetrics,
    /// Whether a broker was up at the last statistics report (1), down
    /// (0), or not known yet (-1); a change is logged once.
    pub brokers_up: std::sync::atomic::AtomicI8,
    /// librdkafka's lines, at most once a minute per kind.
    quiet: super::quiet::QuietLog,
    /// The last offset-commit error, logged once until a commit succeeds.
    commit_error: Mutex<Option<String>>,
}

impl SourceContext {
    /// The context of the consumer of the pipeline named `pipeline`; broker
    /// reachability starts unknown.
    pub fn new(pipeline: &str, trackers: Arc<Trackers>, metrics: PipelineMetrics) -> Self {
        SourceContext {
            pipeline: pipeline.to_owned(),
            trackers,
            metrics,
            brokers_up: std::sync::atomic::AtomicI8::new(-1),
            quiet: Default::default(),
            commit_error: Mutex::new(None),
        }
    }
}

impl ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.quiet.log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.quiet.error(&error, reason);
    }

    fn stats(&self, stats: Statistics) {
        // Real brokers have a node id; bootstrap entries do not.
        let up = stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        self.metrics.brokers_up.set(if up { 1.0 } else { 0.0 });
        let was = self
            .brokers_up
            .swap(i8::from(up), std::sync::atomic::Ordering::Relaxed);
        let component = format!("pipeline `{}`: brokers", self.pipeline);
        match (was, up) {
            (1 | -1, false) => {
                crate::metrics::not_ready(&component, "no broker reachable");
                tracing::warn!(pipeline = %self.pipeline, "no broker reachable; sluice keeps retrying and resumes by itself")
            }
            (0, true) => {
                crate::metrics::ready(&component);
                tracing::info!(pipeline = %self.pipeline, "broker reachable again")
            }
            _ => {}
        }
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .lag(topic, *partition)
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let mut revoked = Vec::new();
                for e in tpl.elements() {
                    tracing::info!(pipeline = %self.pipeline, topic = e.topic(), partition = e.partition(), "partition revoked");
                    revoked.extend(self.trackers.revoke(e.topic(), e.partition()));
                }
                // Before the partitions go, wait until none of their records
                // is still being processed or produced here (queued ones are
                // dropped, not processed), so no partition is ever processed
                // by two members at once. Offsets stored so far are committed
                // by librdkafka as part of the revoke.
                let wait = || {
                    let started = std::time::Instant::now();
                    while !revoked.iter().all(|t| t.drained()) {
                        if started.elapsed() > REVOKE_DRAIN {
                            tracing::warn!(pipeline = %self.pipeline, "revoked partitions did not drain in time");
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                };
                // This callback runs inside the consumer's poll on a runtime
                // worker; hand that worker's other tasks (the sink among
                // them) to another thread while we block.
                let multi = tokio::runtime::Handle::try_current().is_ok_and(|h| {
                    h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                });
                if multi {
                    tokio::task::block_in_place(wait);
                } else {
                    wait();
                }
            }
            Rebalance::Assign(tpl) => {
                for e in tpl.elements() {
                    tracing::info!(pipeline = %self.pipeline, topic = e.topic(), partition = e.partition(), "partition assigned");
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(pipeline = %self.pipeline, error = %e, "rebalance error")
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // The group has answered (an empty assignment is an answer too:
            // more members than partitions).
            crate::metrics::ready(&assignment_component(&self.pipeline));
            // A partition paused for backpressure in an earlier assignment
            // starts this one flowing (the pipeline's intake holds nothing
            // for it any more).
            if let Err(e) = consumer.resume(tpl) {
                tracing::debug!(pipeline = %self.pipeline, error = %e, "resume on assignment");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let mut last = self.commit_error.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                if last.take().is_some() {
                    tracing::info!(pipeline = %self.pipeline, "offsets committed again");
                }
                tracing::debug!(pipeline = %self.pipeline, count = offsets.count(), "offsets committed")
            }
            // Nothing was stored since the last commit: nothing to do.
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(e) => {
                let text = e.to_string();
                if last.as_deref() != Some(text.as_str()) {
                    tracing::warn!(pipeline = %self.pipeline, error = %text, "offset commit failed (logged once until it changes)");
                    *last = Some(text);
                }
            }
        }
    }
}

/// The consumer type every pipeline uses.
pub type SourceConsumer = StreamConsumer<SourceContext>;

/// `msg` as a plugin input, null parts as empty, and which parts were null.
pub fn record(msg: &BorrowedMessage<'_>) -> (Input, Nulls) {
    let mut nulls = Nulls {
        value: msg.payload().is_none(),
        headers: Vec::new(),
    };
    let headers = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .enumerate()
                .map(|(i, h)| {
                    if h.value.is_none() {
                        nulls.headers.push(i);
                    }
                    Header {
                        name: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let record = Input {
        topic: msg.topic().to_owned(),
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp: msg.timestamp().to_millis(),
        key: msg.key().map(<[u8]>::to_vec),
        value: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    };
    (record, nulls)
}

/// Finish a batch of records whose writes are all acknowledged
/// ([`offsets::finish`] says which offsets that lets through) and store,
/// in one call, each offset that moved.
pub fn finish(consumer: &SourceConsumer, batch: &[Work], metrics: &PipelineMetrics) {
    let moved = offsets::finish(batch);
    if moved.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(moved.len());
    for (t, last) in &moved {
        // The committed offset is the next one to read.
        if let Err(e) = tpl.add_partition_offset(&t.topic, t.partition, Offset::Offset(last + 1)) {
            tracing::debug!(topic = %t.topic, partition = t.partition, error = %e, "offset not stored");
        }
    }
    match consumer.store_offsets(&tpl) {
        Ok(()) => metrics.offsets_stored.increment(moved.len() as u64),
        // A partition was revoked in between: its new owner re-reads.
        Err(e) => tracing::debug!(error = %e, "offsets not stored"),
    }
}

/// How `/readyz` names a pipeline's wait for its partitions.
fn assignment_component(pipeline: &str) -> String {
    format!("pipeline `{pipeline}`: source")
}

/// Build the consumer and subscribe (or assign).
pub fn consumer(cfg: &KafkaSource, ctx: SourceContext) -> Result<SourceConsumer, String> {
    const MANAGED: &str = "sluice's at-least-once offset handling";
    let mut b = PropertyBuilder::new();
    b.set("bootstrap.servers", &cfg.brokers, "source.brokers");
    b.set("group.id", &cfg.group_id, "source.group_id");
    b.set(
        "auto.offset.reset",
        match cfg.auto_offset_reset {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        },
        "source.auto_offset_reset",
    );
    b.set(
        "session.timeout.ms",
        cfg.session_timeout.as_millis().to_string(),
        "source.session_timeout",
    );
    b.set(
        "auto.commit.interval.ms",
        cfg.commit_interval.as_millis().max(1).to_string(),
        "source.commit_interval",
    );
    b.set("enable.auto.commit", "true", MANAGED);
    b.set("enable.auto.offset.store", "false", MANAGED);
    b.security(&cfg.security)?;

    let mut props = cfg.properties.clone();
    // Defaults a user may override. librdkafka's 1 s fetch backoff stalls
    // a busy consumer; statistics feed the lag gauge.
    for (k, v) in [
        ("fetch.queue.backoff.ms", "10"),
        ("statistics.interval.ms", "5000"),
        ("heartbeat.interval.ms", "1000"),
    ] {
        props.entry(k.into()).or_insert_with(|| v.into());
    }
    let client = b.build(&props)?;
    let consumer: SourceConsumer = client
        .create_with_context(ctx)
        .map_err(|e| format!("cannot create Kafka consumer: {e}"))?;
    if cfg.assign.is_empty() {
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        crate::metrics::not_ready(
            &assignment_component(&consumer.context().pipeline),
            "waiting for its partition assignment",
        );
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
    } else {
        let mut tpl = TopicPartitionList::new();
        for a in &cfg.assign {
            tpl.add_partition_offset(&a.topic, a.partition, Offset::Stored)
                .map_err(|e| format!("bad assignment {}/{}: {e}", a.topic, a.partition))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| format!("cannot assign partitions: {e}"))?;
    }
    Ok(consumer)
}
