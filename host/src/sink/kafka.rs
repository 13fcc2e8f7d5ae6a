//! Kafka writes: idempotent producers (one per compression codec in use),
//! topic routes with their partitioning, key and header rules.
//!
//! When an offset may be committed: never decided here. `enqueue` only hands
//! a record to librdkafka, counted in its batch's [`Acks`]; the router waits
//! on those before it lets the batch's records finish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext};

use super::acks::Acks;
use crate::source::quiet::QuietLog;

/// Every producer sluice makes: librdkafka's repeats held back, and each
/// delivery counted down in the [`Acks`] of the batch that wrote it.
pub type Producer = rdkafka::producer::ThreadedProducer<SinkContext>;

/// A record on its way to a producer, acknowledged into an [`Acks`].
pub type Record<'a> = BaseRecord<'a, [u8], [u8], Arc<Acks>>;

/// The context of every producer: quiet logging, and delivery reports
/// counted per batch (no future or channel per record).
#[derive(Debug, Default)]
pub struct SinkContext {
    log: QuietLog,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(&error, reason);
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Arc<Acks>;

    fn delivery(&self, result: &DeliveryResult<'_>, acks: Arc<Acks>) {
        acks.delivered(result.as_ref().map(|_| ()).map_err(|(e, _)| e));
    }
}

use crate::config::kafka::{PropertyBuilder, Security};
use crate::config::pipeline::{Compression, Partitioning, Pipeline, Route};
use crate::plugin::Output;
use crate::record::Nulls;

/// A route that produces to a topic.
pub struct TopicRoute {
    topic: String,
    producer: usize,
    partitioning: Partitioning,
    partitions: i32,
    next: AtomicUsize,
    headers: Vec<(String, String)>,
    key: Option<String>,
}

/// The producers of one pipeline.
pub struct Producers {
    producers: Vec<Producer>,
    codecs: Vec<Option<Compression>>,
    /// Name of the provenance header every output carries.
    version_header: String,
}

impl Producers {
    /// One producer per compression codec the routes use (index 0 has the
    /// default codec and also carries dead letters).
    pub fn new(p: &Pipeline) -> anyhow::Result<Self> {
        let brokers = p.producer_brokers();
        let security = p.producer_security();
        let mut codecs: Vec<Option<Compression>> = vec![None];
        for r in p.routes.values() {
            if r.topic.is_some() && r.compression.is_some() && !codecs.contains(&r.compression) {
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
        Ok(Producers {
            producers,
            codecs,
            version_header: p.version_header.clone(),
        })
    }

    /// The producer that carries dead letters.
    pub fn primary(&self) -> &Producer {
        &self.producers[0]
    }

    /// Build a topic route (round-robin routes look up the partition count).
    pub async fn route(&self, name: &str, r: &Route, topic: &str) -> anyhow::Result<TopicRoute> {
        let producer = self
            .codecs
            .iter()
            .position(|c| *c == r.compression)
            .unwrap_or(0);
        let partitions = if r.partitioning == Partitioning::RoundRobin {
            partition_count(&self.producers[producer], topic)
                .await
                .with_context(|| {
                    format!("routes.{name}: round-robin needs topic {topic}'s partition count")
                })?
        } else {
            0
        };
        Ok(TopicRoute {
            topic: topic.to_owned(),
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
        })
    }

    /// Enqueue `o` on `route`, with the parts `nulls` names null and the
    /// provenance header when plugin `versions` made it, acknowledged into
    /// `acks`. Errors are permanent for this output (the broker would
    /// never take it, e.g. it is too large).
    pub async fn send(
        &self,
        route: &TopicRoute,
        o: &Output,
        nulls: &Nulls,
        source_partition: i32,
        versions: Option<&str>,
        acks: &Arc<Acks>,
    ) -> Result<(), KafkaError> {
        let mut h = OwnedHeaders::new_with_capacity(o.headers.len() + route.headers.len() + 1);
        for (i, hd) in o.headers.iter().enumerate() {
            h = h.insert(Header {
                key: &hd.name,
                value: (!nulls.header(i)).then_some(hd.value.as_slice()),
            });
        }
        for (k, v) in &route.headers {
            h = h.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        if let Some(v) = versions {
            h = h.insert(Header {
                key: &self.version_header,
                value: Some(v),
            });
        }
        let mut rec = Record::with_opaque_to(&route.topic, acks.clone()).headers(h);
        if !nulls.value {
            rec = rec.payload(o.value.as_slice());
        }
        if let Some(k) = &route.key {
            rec = rec.key(k.as_bytes());
        } else if let Some(k) = &o.key {
            rec = rec.key(k.as_slice());
        }
        match route.partitioning {
            Partitioning::Key => {}
            Partitioning::Partition(p) => rec = rec.partition(p),
            Partitioning::Source => rec = rec.partition(source_partition),
            Partitioning::RoundRobin => {
                let n = route.next.fetch_add(1, Ordering::Relaxed);
                rec = rec.partition((n % route.partitions.max(1) as usize) as i32);
            }
        }
        enqueue(&self.producers[route.producer], rec).await
    }

    /// Wait for every enqueued write (shutdown).
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        for p in &self.producers {
            p.flush(timeout).context("flushing producer")?;
        }
        Ok(())
    }
}

/// Hand `rec` to librdkafka, counted in the [`Acks`] it carries, waiting
/// while the local queue is full. An error is permanent for this record
/// (the broker would never take it), and the record is not counted.
pub async fn enqueue(producer: &Producer, mut rec: Record<'_>) -> Result<(), KafkaError> {
    let mut waited = 0u32;
    rec.delivery_opaque.expect();
    loop {
        match producer.send(rec) {
            Ok(()) => {
                if waited > 0 {
                    tracing::info!("topic known again; producing");
                }
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // The topic is being created or recreated, or metadata has not
            // settled: wait for it rather than dead-letter the record.
            Err((
                KafkaError::MessageProduction(
                    code @ (RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownPartition),
                ),
                r,
            )) => {
                if waited == 0 {
                    tracing::warn!(topic = r.topic, error = %code, "topic unknown to the broker; waiting for it");
                }
                waited += 1;
                rec = r;
                tokio::time::sleep(Duration::from_millis(100 * u64::from(waited.min(10)))).await;
            }
            Err((e, r)) => {
                r.delivery_opaque.cancel();
                return Err(e);
            }
        }
    }
}

/// Whether a produce error means the broker will never take this one
/// record (too large, invalid), so it belongs in the dead-letter topic.
/// Every other error is the producer's or the cluster's state, which
/// stops the pipeline without committing past the record.
pub fn refuses_record(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e,
        KafkaError::MessageProduction(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::MessageBatchTooLarge
                | C::InvalidRequiredAcks
                | C::PolicyViolation
        )
    )
}

/// The one recipe for every producer sluice makes (pipelines' outputs and
/// dead letters, the SQL source): idempotent, with the Java-compatible
/// murmur2 partitioner so keyed records land where other clients put the
/// same key.
pub fn producer(
    brokers: &str,
    security: &Security,
    codec: Option<Compression>,
    properties: &BTreeMap<String, String>,
) -> Result<Producer, String> {
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
    // A broker outage of any length is waited out, not turned into a
    // failed delivery that stops the pipeline: 0 means no timeout.
    props
        .entry("message.timeout.ms".into())
        .or_insert_with(|| "0".into());
    b.build(&props)?
        .create_with_context(SinkContext::default())
        .map_err(|e| format!("cannot create Kafka producer: {e}"))
}

async fn partition_count(producer: &Producer, topic: &str) -> anyhow::Result<i32> {
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
