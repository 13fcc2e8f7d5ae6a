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
//! record never wedges its partition. The same goes for a dead letter the
//! broker refuses after accepting it into the producer's queue
//! ([`Fate::DeadLetter`]'s `refused`, set by the router's redelivery).
//!
//! Null stays null: the dead letter of a tombstone (null value) has a null
//! value, not an empty one, and a source header whose value was null is
//! null in every dead letter of that record (from [`Nulls`], kept beside
//! the record because plugins see those parts as empty). The limit: the
//! dead letter of an *output* ([`Payload::Output`]: routed to the dead
//! letter topic, or a row the table refused) carries the output's key and
//! value, which are whatever the plugin returned and so never null in WIT
//! `sluice:plugin@0.1.0`: an output of a tombstone is not a tombstone.
//! (Without plugins the output is the record as read, nulls included: see
//! [`Work::output_nulls`].)

use std::sync::Arc;

use rdkafka::message::{Header, OwnedHeaders};

use super::acks::Acks;
use super::kafka::Record;

use crate::plugin::{Input, Output};
use crate::record::{Failure, Fate, Nulls, Work};

/// Dead-letter header: the source record's topic.
pub const H_TOPIC: &str = "sluice.source.topic";
/// Dead-letter header: the source record's partition, in decimal.
pub const H_PARTITION: &str = "sluice.source.partition";
/// Dead-letter header: the source record's offset, in decimal.
pub const H_OFFSET: &str = "sluice.source.offset";
/// Dead-letter header: the plugin that rejected the record ("sluice" when
/// the host did).
pub const H_PLUGIN: &str = "sluice.plugin";
/// Dead-letter header: that plugin's SHA-256 content hash, hex (empty when
/// the host rejected the record).
pub const H_PLUGIN_HASH: &str = "sluice.plugin.sha256";
/// Dead-letter header: the [`FailureKind`](crate::record::FailureKind)'s
/// name.
pub const H_KIND: &str = "sluice.error.kind";
/// Dead-letter header: the error message, cut to [`MAX_MESSAGE`] bytes.
pub const H_MESSAGE: &str = "sluice.error.message";
/// Dead-letter header: when the record was dead-lettered, in milliseconds
/// since the Unix epoch.
pub const H_TIMESTAMP: &str = "sluice.dead_lettered_at";
/// Dead-letter header, only on a copy sent without its value: the value's
/// size in bytes and why the full copy was refused.
pub const H_OMITTED: &str = "sluice.value.omitted";

/// Headers sluice writes start with this. An upstream header that does too
/// (or that has the provenance header's name) is kept under
/// [`UPSTREAM_PREFIX`] + its name, so a dead letter's `sluice.*` headers
/// are always sluice's own and cannot be forged by a producer.
pub const SLUICE_PREFIX: &str = "sluice.";
/// Prefix under which an upstream header that looks like one of sluice's is
/// kept (see [`SLUICE_PREFIX`]).
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
/// their versions (see [`crate::record::Work::provenance`]).
pub type Provenance<'a> = Option<(&'a str, &'a str)>;

/// What a dead letter carries as its key and value.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// The source record's own key and value; a null value stays null.
    Source,
    /// An output of the record's plugins, null where
    /// [`Work::output_nulls`] says.
    Output {
        /// The output's key.
        key: Option<&'a [u8]>,
        /// The output's value.
        value: &'a [u8],
    },
}

impl<'a> Payload<'a> {
    /// The key and value of output `o`.
    pub fn output(o: &'a Output) -> Self {
        Payload::Output {
            key: o.key.as_deref(),
            value: &o.value,
        }
    }
}

/// Headers for the dead-letter copy of `record`, whose null parts `nulls`
/// names.
pub fn headers(
    record: &Input,
    nulls: &Nulls,
    failure: &Failure,
    provenance: Provenance<'_>,
) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(record.headers.len() + 9);
    let ours =
        |name: &str| name.starts_with(SLUICE_PREFIX) || provenance.is_some_and(|(p, _)| p == name);
    for (i, orig) in record.headers.iter().enumerate() {
        let renamed;
        let key = if ours(&orig.name) {
            renamed = format!("{UPSTREAM_PREFIX}{}", orig.name);
            &renamed
        } else {
            &orig.name
        };
        let value = (!nulls.header(i)).then_some(orig.value.as_slice());
        h = h.insert(Header { key, value });
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
        (H_KIND, failure.kind.as_str()),
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
    /// Writes to `topic` through `producer`, naming the plugin versions in the
    /// header `version_header`.
    pub fn new(producer: super::kafka::Producer, topic: &str, version_header: &str) -> Self {
        DeadLetterWriter {
            producer,
            topic: topic.into(),
            version_header: version_header.into(),
        }
    }

    /// Enqueue a dead letter for `work`'s source record carrying `payload`
    /// (and the plugin versions that processed it), waiting while the
    /// producer's queue is full. Its acknowledgement is counted in `acks`.
    pub async fn send(
        &self,
        work: &Work,
        payload: Payload<'_>,
        failure: &Failure,
        acks: &Arc<Acks>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let record = &work.record;
        let (key, value) = match payload {
            Payload::Source => (
                record.key.as_deref(),
                (!work.nulls.value).then_some(record.value.as_slice()),
            ),
            Payload::Output { key, value } => (key, (!work.output_nulls().value).then_some(value)),
        };
        let versions = work.provenance();
        let provenance = versions.as_deref().map(|v| (&*self.version_header, v));
        let mut rec = Record::with_opaque_to(&self.topic, acks.clone()).headers(headers(
            record,
            &work.nulls,
            failure,
            provenance,
        ));
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        if let Some(k) = key {
            rec = rec.key(k);
        }
        let refused = match &work.fate {
            Fate::DeadLetter { refused, .. } => refused.as_ref(),
            _ => None,
        };
        let sent = match refused {
            // The broker refused this dead letter already: go without the
            // value at once.
            Some(why) => Err(why.clone()),
            None => match super::kafka::enqueue(&self.producer, rec).await {
                Err(e) if super::kafka::refuses_record(&e) => Err(e.to_string()),
                other => Ok(other),
            },
        };
        match sent {
            Ok(other) => other,
            Err(e) => {
                let omitted = format!("{} bytes: {e}", value.map_or(0, <[u8]>::len));
                let h = headers(record, &work.nulls, failure, provenance).insert(Header {
                    key: H_OMITTED,
                    value: Some(&omitted),
                });
                let empty: &[u8] = &[];
                let mut rec = Record::with_opaque_to(&self.topic, acks.clone())
                    .payload(empty)
                    .headers(h);
                if let Some(k) = key {
                    rec = rec.key(k);
                }
                super::kafka::enqueue(&self.producer, rec).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FailureKind;
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

    /// A record with `headers`, each `(name, value)`.
    fn record(headers: &[(&str, &[u8])]) -> Input {
        Input {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            timestamp: None,
            key: None,
            value: Vec::new(),
            headers: headers
                .iter()
                .map(|(name, value)| crate::plugin::Header {
                    name: (*name).into(),
                    value: value.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn upstream_sluice_headers_are_renamed() {
        let record = record(&[
            ("sluice.error.kind", b"forged"),
            ("x-sluice-version", b"forged"),
            ("trace-id", b"abc"),
        ]);
        let failure = Failure::host(FailureKind::Route, "no such route".into());
        let h = headers(
            &record,
            &Nulls::default(),
            &failure,
            Some(("x-sluice-version", "p@123")),
        );
        let get = |k: &str| -> Vec<&[u8]> {
            h.iter()
                .filter(|x| x.key == k)
                .map(|x| x.value.unwrap_or_default())
                .collect()
        };
        assert_eq!(get(H_KIND), [b"route".as_slice()]);
        assert_eq!(get("x-upstream-sluice.error.kind"), [b"forged".as_slice()]);
        assert_eq!(get("x-sluice-version"), [b"p@123".as_slice()]);
        assert_eq!(get("x-upstream-x-sluice-version"), [b"forged".as_slice()]);
        assert_eq!(get("trace-id"), [b"abc".as_slice()]);
    }

    #[test]
    fn null_header_values_stay_null() {
        let record = record(&[("gone", b""), ("empty", b""), ("sluice.x", b"")]);
        let nulls = Nulls {
            value: true,
            headers: vec![0, 2],
        };
        let failure = Failure::host(FailureKind::Route, "no such route".into());
        let h = headers(&record, &nulls, &failure, None);
        let got: Vec<(&str, Option<&[u8]>)> =
            (0..3).map(|i| (h.get(i).key, h.get(i).value)).collect();
        assert_eq!(
            got,
            [
                ("gone", None),
                ("empty", Some(b"".as_slice())),
                ("x-upstream-sluice.x", None)
            ]
        );
    }
}
