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

/// Headers sluice writes start with this. An upstream header that does too
/// (or that has the provenance header's name) is kept under
/// [`UPSTREAM_PREFIX`] + its name, so a dead letter's `sluice.*` headers
/// are always sluice's own and cannot be forged by a producer.
pub const SLUICE_PREFIX: &str = "sluice.";
pub const UPSTREAM_PREFIX: &str = "x-upstream-";

/// Longest error message a dead letter carries, in bytes.
pub const MAX_MESSAGE: usize = 4096;

/// Appended to a message that was cut.
pub const CUT_MARK: &str = "…[truncated]";

/// `s` cut to at most `max` bytes, on a character boundary, ending with
/// [`CUT_MARK`] when it was cut.
fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let end = s.floor_char_boundary(max.saturating_sub(CUT_MARK.len()));
    format!("{}{CUT_MARK}", &s[..end]).into()
}

/// The provenance header: its name and, when plugins processed the record,
/// their versions (see [`crate::pipeline::work::Work::provenance`]).
pub type Provenance<'a> = Option<(&'a str, &'a str)>;

/// Headers for the dead-letter copy of `record`.
pub fn headers(record: &Input, failure: &Failure, provenance: Provenance<'_>) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(record.headers.len() + 9);
    let ours =
        |name: &str| name.starts_with(SLUICE_PREFIX) || provenance.is_some_and(|(p, _)| p == name);
    for orig in &record.headers {
        let renamed;
        let key = if ours(&orig.name) {
            renamed = format!("{UPSTREAM_PREFIX}{}", orig.name);
            &renamed
        } else {
            &orig.name
        };
        h = h.insert(Header {
            key,
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
        (H_MESSAGE, &cut(&failure.message, MAX_MESSAGE)),
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
    use super::*;
    use rdkafka::message::Headers;

    #[test]
    fn messages_are_cut_on_a_character_boundary_and_marked() {
        assert_eq!(cut("short", 10), "short");
        let long = "é".repeat(MAX_MESSAGE);
        let got = cut(&long, MAX_MESSAGE);
        assert!(got.len() <= MAX_MESSAGE, "{}", got.len());
        assert!(got.ends_with(CUT_MARK));
        assert!(got.trim_end_matches(CUT_MARK).chars().all(|c| c == 'é'));
    }

    #[test]
    fn upstream_sluice_headers_are_renamed() {
        let record = Input {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            timestamp: None,
            key: None,
            value: b"v".to_vec(),
            headers: vec![
                crate::plugin::Header {
                    name: "sluice.error.kind".into(),
                    value: b"forged".to_vec(),
                },
                crate::plugin::Header {
                    name: "x-sluice-version".into(),
                    value: b"forged".to_vec(),
                },
                crate::plugin::Header {
                    name: "trace-id".into(),
                    value: b"abc".to_vec(),
                },
            ],
        };
        let failure = Failure::host("route", "no such route".into());
        let h = headers(&record, &failure, Some(("x-sluice-version", "p@123")));
        let all: Vec<(String, Vec<u8>)> = (0..h.count())
            .map(|i| {
                let x = h.get(i);
                (x.key.to_owned(), x.value.unwrap_or_default().to_vec())
            })
            .collect();
        let get = |k: &str| {
            all.iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_slice())
                .collect::<Vec<_>>()
        };
        assert_eq!(get(H_KIND), [b"route".as_slice()], "{all:?}");
        assert_eq!(get("x-upstream-sluice.error.kind"), [b"forged".as_slice()]);
        assert_eq!(get("x-sluice-version"), [b"p@123".as_slice()]);
        assert_eq!(get("x-upstream-x-sluice-version"), [b"forged".as_slice()]);
        assert_eq!(get("trace-id"), [b"abc".as_slice()]);
    }
}
