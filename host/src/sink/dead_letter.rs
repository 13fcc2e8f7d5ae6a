//! Dead-letter records: the original record, unchanged, with headers that
//! say where it came from and why it was rejected.
//!
//! Promise: a dead-letter record carries the original key, value and
//! headers, plus `sluice.*` headers naming the source topic, partition and
//! offset, the plugin and its content hash, the error kind and message, and
//! the time it was dead-lettered, and the provenance header naming the
//! plugin versions that processed it. The error message is cut to
//! [`MAX_MESSAGE`] bytes. A copy the producer refuses as too large is sent
//! again without its value, with `sluice.value.omitted` giving the value's
//! size: the record is still at its source offset, and one oversized
//! record never wedges its partition.

use rdkafka::message::{Header, OwnedHeaders};

use crate::pipeline::work::Failure;
use crate::plugin::Input;

pub const H_TOPIC: &str = "sluice.source.topic";
pub const H_PARTITION: &str = "sluice.source.partition";
pub const H_OFFSET: &str = "sluice.source.offset";
pub const H_PLUGIN: &str = "sluice.plugin";
pub const H_PLUGIN_HASH: &str = "sluice.plugin.sha256";
pub const H_KIND: &str = "sluice.error.kind";
pub const H_MESSAGE: &str = "sluice.error.message";
pub const H_TIMESTAMP: &str = "sluice.dead_lettered_at";
pub const H_OMITTED: &str = "sluice.value.omitted";

/// Longest error message a dead letter carries, in bytes.
pub const MAX_MESSAGE: usize = 4096;

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The provenance header: its name and, when plugins processed the record,
/// their versions (see [`crate::pipeline::work::Work::provenance`]).
pub type Provenance<'a> = Option<(&'a str, &'a str)>;

/// Headers for the dead-letter copy of `record`.
pub fn headers(record: &Input, failure: &Failure, provenance: Provenance<'_>) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(record.headers.len() + 9);
    for orig in &record.headers {
        h = h.insert(Header {
            key: &orig.name,
            value: Some(&orig.value),
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string();
    let fields: [(&str, &str); 8] = [
        (H_TOPIC, &record.topic),
        (H_PARTITION, &record.partition.to_string()),
        (H_OFFSET, &record.offset.to_string()),
        (H_PLUGIN, &failure.plugin),
        (H_PLUGIN_HASH, &failure.hash),
        (H_KIND, failure.kind),
        (H_MESSAGE, cut(&failure.message, MAX_MESSAGE)),
        (H_TIMESTAMP, &now),
    ];
    for (key, value) in fields.into_iter().chain(provenance) {
        h = h.insert(Header {
            key,
            value: Some(value),
        });
    }
    h
}

/// Writes dead letters to the pipeline's dead-letter topic.
#[derive(Clone)]
pub struct DeadLetterWriter {
    producer: super::kafka::Producer,
    topic: std::sync::Arc<str>,
    version_header: std::sync::Arc<str>,
}

impl DeadLetterWriter {
    pub fn new(producer: super::kafka::Producer, topic: &str, version_header: &str) -> Self {
        DeadLetterWriter {
            producer,
            topic: topic.into(),
            version_header: version_header.into(),
        }
    }

    /// Enqueue a dead letter for `record` carrying `payload` (and the
    /// plugin `versions` that processed it), waiting while
    /// the producer's queue is full. The returned future resolves on the
    /// broker's acknowledgement.
    pub async fn send(
        &self,
        record: &Input,
        key: Option<&[u8]>,
        payload: &[u8],
        failure: &Failure,
        versions: Option<&str>,
    ) -> Result<rdkafka::producer::DeliveryFuture, rdkafka::error::KafkaError> {
        let provenance = versions.map(|v| (&*self.version_header, v));
        let mut rec = rdkafka::producer::FutureRecord::to(&self.topic)
            .payload(payload)
            .headers(headers(record, failure, provenance));
        if let Some(k) = key {
            rec = rec.key(k);
        }
        match super::kafka::enqueue(&self.producer, rec).await {
            Err(e) if super::kafka::refuses_record(&e) => {
                let omitted = format!("{} bytes: {e}", payload.len());
                let h = headers(record, failure, provenance).insert(Header {
                    key: H_OMITTED,
                    value: Some(&omitted),
                });
                let empty: &[u8] = &[];
                let mut rec = rdkafka::producer::FutureRecord::to(&self.topic)
                    .payload(empty)
                    .headers(h);
                if let Some(k) = key {
                    rec = rec.key(k);
                }
                super::kafka::enqueue(&self.producer, rec).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn messages_are_cut_on_a_character_boundary() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("abcdef", 3), "abc");
        // "é" is two bytes: never split it.
        assert_eq!(cut("aé", 2), "a");
    }
}
