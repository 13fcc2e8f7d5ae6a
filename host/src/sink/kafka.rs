//! The Kafka sink: idempotent producers, route resolution, partitioning,
//! and turning delivery reports into finished records.
//!
//! When an offset may be committed: [`KafkaSink::dispatch`] enqueues every
//! write of a record and returns a future that resolves only when all of
//! them are acknowledged. Only then does the pipeline finish the record in
//! its partition tracker. A delivery that fails after librdkafka's own
//! retries is fatal: the record is never finished, so its offset, and every
//! later one of its partition, is never committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::dead_letter;
use crate::config::kafka::{PropertyBuilder, Security};
use crate::config::pipeline::{Compression, DEFAULT_ROUTE, Partitioning, Pipeline};
use crate::metrics::PipelineMetrics;
use crate::pipeline::work::{Failure, Work};

enum Target {
    Topic {
        topic: String,
        producer: usize,
        partitioning: Partitioning,
        partitions: i32,
        next: AtomicUsize,
        headers: Vec<(String, String)>,
        key: Option<String>,
        out: metrics::Counter,
    },
    DeadLetter,
}

/// All Kafka writes of one pipeline.
pub struct KafkaSink {
    producers: Vec<FutureProducer>,
    routes: BTreeMap<String, Target>,
    dead_letter_topic: String,
    metrics: PipelineMetrics,
}

/// What a dispatched record resolves to.
pub type Delivery = BoxFuture<'static, Result<Work, KafkaError>>;

impl KafkaSink {
    /// Create producers (one per compression codec in use) and look up the
    /// partition counts that round-robin routes need.
    pub async fn new(p: &Pipeline, metrics: PipelineMetrics) -> anyhow::Result<Self> {
        let brokers = p
            .producer
            .brokers
            .clone()
            .unwrap_or_else(|| p.source.brokers.clone());
        let security = p
            .producer
            .security
            .clone()
            .unwrap_or_else(|| p.source.security.clone());
        let mut codecs: Vec<Option<Compression>> = vec![None];
        for r in p.routes.values() {
            if r.compression.is_some() && !codecs.contains(&r.compression) {
                codecs.push(r.compression);
            }
        }
        let mut producers = Vec::new();
        for codec in &codecs {
            producers.push(
                producer(&brokers, &security, *codec, &p.producer.properties)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("pipeline `{}`: producer", p.name))?,
            );
        }
        let mut routes = BTreeMap::new();
        for (name, r) in &p.routes {
            let target = match &r.topic {
                None => Target::DeadLetter,
                Some(topic) => {
                    let producer = codecs.iter().position(|c| *c == r.compression).unwrap_or(0);
                    let partitions = if r.partitioning == Partitioning::RoundRobin {
                        partition_count(&producers[producer], topic).await.with_context(|| {
                            format!("pipeline `{}`: routes.{name}: round-robin needs topic {topic}'s partition count", p.name)
                        })?
                    } else {
                        0
                    };
                    Target::Topic {
                        topic: topic.clone(),
                        producer,
                        partitioning: r.partitioning,
                        partitions,
                        next: AtomicUsize::new(0),
                        headers: r
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        key: r.key.clone(),
                        out: metrics.out(name),
                    }
                }
            };
            routes.insert(name.clone(), target);
        }
        Ok(KafkaSink {
            producers,
            routes,
            dead_letter_topic: p.dead_letter.topic.clone(),
            metrics,
        })
    }

    /// Enqueue every write for `work` and return a future that resolves
    /// when all are acknowledged. `None` means nothing to write (filtered).
    pub async fn dispatch(&self, mut work: Work) -> Option<Delivery> {
        if work.failure.is_none() && work.routed.is_empty() {
            self.metrics.filtered.increment(1);
            return None;
        }
        // Resolve every route before writing anything, so a bad route sends
        // the whole record to the dead-letter topic rather than half of it.
        if work.failure.is_none()
            && let Some(bad) = work.routed.iter().find_map(|o| {
                let r = o.route.as_deref().unwrap_or(DEFAULT_ROUTE);
                (!self.routes.contains_key(r)).then(|| r.to_owned())
            })
        {
            work.failure = Some(Failure::host(
                "route",
                format!(
                    "plugin emitted an output on route `{bad}`, which the pipeline does not define"
                ),
            ));
        }
        let mut acks = Vec::with_capacity(work.routed.len().max(1));
        if work.failure.is_none() {
            for o in &work.routed {
                let route = o.route.as_deref().unwrap_or(DEFAULT_ROUTE);
                let result = match &self.routes[route] {
                    Target::DeadLetter => {
                        let f =
                            Failure::host("routed", format!("plugin routed output to `{route}`"));
                        let mut h = dead_letter::headers(&work.record, &f);
                        for hd in &o.headers {
                            h = h.insert(Header {
                                key: &hd.name,
                                value: Some(&hd.value),
                            });
                        }
                        let mut rec = FutureRecord::to(&self.dead_letter_topic)
                            .payload(o.value.as_slice())
                            .headers(h);
                        if let Some(k) = &o.key {
                            rec = rec.key(k.as_slice());
                        }
                        self.metrics.dead_lettered("routed").increment(1);
                        self.enqueue(0, rec).await
                    }
                    Target::Topic {
                        topic,
                        producer,
                        partitioning,
                        partitions,
                        next,
                        headers,
                        key,
                        out,
                    } => {
                        let mut h =
                            OwnedHeaders::new_with_capacity(o.headers.len() + headers.len());
                        for hd in &o.headers {
                            h = h.insert(Header {
                                key: &hd.name,
                                value: Some(&hd.value),
                            });
                        }
                        for (k, v) in headers {
                            h = h.insert(Header {
                                key: k,
                                value: Some(v),
                            });
                        }
                        let mut rec = FutureRecord::to(topic)
                            .payload(o.value.as_slice())
                            .headers(h);
                        if let Some(k) = key {
                            rec = rec.key(k.as_bytes());
                        } else if let Some(k) = &o.key {
                            rec = rec.key(k.as_slice());
                        }
                        match partitioning {
                            Partitioning::Key => {}
                            Partitioning::Partition(p) => rec = rec.partition(*p),
                            Partitioning::RoundRobin => {
                                let n = next.fetch_add(1, Ordering::Relaxed);
                                rec = rec.partition((n % (*partitions).max(1) as usize) as i32);
                            }
                        }
                        out.increment(1);
                        self.enqueue(*producer, rec).await
                    }
                };
                match result {
                    Ok(ack) => acks.push(ack),
                    Err(e) => {
                        // The broker would never take this record (too large,
                        // say): dead-letter the source record instead. Writes
                        // already enqueued for it stand; duplicates are
                        // allowed, loss is not.
                        work.failure = Some(Failure::host(
                            "produce",
                            format!("cannot produce output: {e}"),
                        ));
                        break;
                    }
                }
            }
        }
        if let Some(f) = &work.failure {
            self.metrics.dead_lettered(f.kind).increment(1);
            tracing::debug!(
                topic = %work.record.topic, partition = work.record.partition, offset = work.record.offset,
                kind = f.kind, error = %f.message, "dead-lettering record"
            );
            let h = dead_letter::headers(&work.record, f);
            let mut rec = FutureRecord::to(&self.dead_letter_topic)
                .payload(work.record.value.as_slice())
                .headers(h);
            if let Some(k) = &work.record.key {
                rec = rec.key(k.as_slice());
            }
            match self.enqueue(0, rec).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    let err = e;
                    return Some(Box::pin(async move { Err(err) }));
                }
            }
        }
        Some(Box::pin(async move {
            for ack in acks {
                match ack.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(e),
                    Err(_) => return Err(KafkaError::Canceled),
                }
            }
            Ok(work)
        }))
    }

    /// Enqueue one record, waiting while the local queue is full. Errors are
    /// permanent for this record.
    async fn enqueue(
        &self,
        producer: usize,
        mut rec: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
        loop {
            match self.producers[producer].send_result(rec) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Wait for every enqueued write (shutdown).
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        for p in &self.producers {
            p.flush(timeout).context("flushing producer")?;
        }
        Ok(())
    }
}

fn producer(
    brokers: &str,
    security: &Security,
    codec: Option<Compression>,
    properties: &BTreeMap<String, String>,
) -> Result<FutureProducer, String> {
    let mut b = PropertyBuilder::new();
    b.set("bootstrap.servers", brokers, "producer.brokers");
    b.set("enable.idempotence", "true", "sluice (idempotent producer)");
    if let Some(c) = codec {
        b.set("compression.type", c.as_str(), "routes.*.compression");
    }
    b.security(security)?;
    let mut props = properties.clone();
    // Java-compatible key hashing, so keyed records land where other clients
    // put the same key.
    props
        .entry("partitioner".into())
        .or_insert_with(|| "murmur2_random".into());
    props
        .entry("linger.ms".into())
        .or_insert_with(|| "5".into());
    b.build(&props)?
        .create()
        .map_err(|e| format!("cannot create Kafka producer: {e}"))
}

async fn partition_count(producer: &FutureProducer, topic: &str) -> anyhow::Result<i32> {
    let producer = producer.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let md = producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len() as i32)
            .unwrap_or(0);
        anyhow::ensure!(n > 0, "topic {topic} has no partitions (does it exist?)");
        Ok(n)
    })
    .await?
}
