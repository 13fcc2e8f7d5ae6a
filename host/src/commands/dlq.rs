//! `sluice dlq list` and `sluice dlq show`: what a pipeline's dead-letter
//! topic holds.
//!
//! Promises:
//! - The topic is the pipeline's `dead_letter.topic`, reached with the
//!   connection its dead letters are written with (`producer.brokers` and
//!   `producer.security`, else the source's).
//! - `list` reads every partition from its beginning to where the reader
//!   finds its end, and groups the records by error kind, rejecting plugin,
//!   that plugin's version (its SHA-256) and source partition: how many,
//!   which dead-letter offsets, the source offsets, and the latest message.
//!   Records written after the reader passed are not waited for.
//! - `show` prints one record, by dead-letter partition and offset, with its
//!   key, its value (a string when UTF-8, else base64) and every header.
//! - Neither joins a consumer group or commits anything: no one's offsets
//!   move. A pipeline name the file does not have, or a dead-letter topic
//!   the broker does not have, is a usage error (exit 2) naming it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Map, Value, json};

use super::{bytes_to_json, usage};
use crate::cli::{DlqArgs, DlqCommand};
use crate::config::kafka::PropertyBuilder;
use crate::config::pipeline::{self, Pipeline};
use crate::sink::dead_letter::{
    H_KIND, H_MESSAGE, H_OFFSET, H_PARTITION, H_PLUGIN, H_PLUGIN_HASH, H_TOPIC,
};

/// Runs `sluice dlq list` or `sluice dlq show`.
pub fn run(cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List(args) => list(&args),
        DlqCommand::Show {
            at,
            partition,
            offset,
        } => show(&at, partition, offset),
    }
}

/// One dead letter as read back.
#[derive(Debug, Clone)]
struct DeadLetter {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    /// A header's value as text (the last one of that name).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// The pipeline named `name` in the file, and its dead-letter reader.
fn open(args: &DlqArgs) -> anyhow::Result<(Pipeline, BaseConsumer)> {
    let file = pipeline::load(&args.file).map_err(usage)?;
    let names: Vec<String> = file.pipelines.iter().map(|p| p.name.clone()).collect();
    let p = file
        .pipelines
        .into_iter()
        .find(|p| p.name == args.pipeline)
        .ok_or_else(|| {
            usage(anyhow::anyhow!(
                "{} has no pipeline `{}` (it has: {})",
                args.file.display(),
                args.pipeline,
                names.join(", ")
            ))
        })?;
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
    let mut b = PropertyBuilder::new();
    b.set("bootstrap.servers", brokers, "producer.brokers");
    b.set(
        "group.id",
        format!("sluice-dlq-{}", std::process::id()),
        "sluice (never joined: partitions are assigned)",
    );
    b.set("enable.auto.commit", "false", "sluice (reads only)");
    b.set("enable.auto.offset.store", "false", "sluice (reads only)");
    b.set("enable.partition.eof", "true", "sluice (reads to the end)");
    b.set("fetch.queue.backoff.ms", "10", "sluice (reads to the end)");
    b.security(&security)
        .map_err(|e| usage(anyhow::anyhow!(e)))?;
    let consumer: BaseConsumer = b
        .build(&BTreeMap::new())
        .map_err(|e| usage(anyhow::anyhow!(e)))?
        .create()
        .map_err(usage)?;
    Ok((p, consumer))
}

/// Reads every partition of `topic` (or only partition `only.0`, stopping
/// at offset `only.1`) from its beginning to its end.
///
/// A partition's end is where the consumer reaches it (librdkafka's
/// partition EOF), not a watermark asked for up front: tansu's memory
/// storage answers "latest offset" queries wrongly (TOOLCHAIN.md).
fn read(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
    only: Option<(i32, i64)>,
) -> anyhow::Result<Vec<DeadLetter>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("cannot reach the broker for dead-letter topic `{topic}`"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "dead-letter topic `{topic}` does not exist on the broker"
        )));
    }
    let mut tpl = TopicPartitionList::new();
    let mut open: Vec<i32> = Vec::new();
    for p in partitions {
        if only.is_none_or(|(op, _)| op == p) {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            open.push(p);
        }
    }
    if let Some((p, _)) = only
        && open.is_empty()
    {
        return Err(usage(anyhow::anyhow!(
            "dead-letter topic `{topic}` has no partition {p}"
        )));
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut out = Vec::new();
    while !open.is_empty() {
        if started.elapsed() > timeout {
            anyhow::bail!(
                "timed out after {timeout:?} reading `{topic}`; {} partition(s) not read to their end",
                open.len()
            );
        }
        let msg = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.retain(|&o| o != p);
                continue;
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(msg)) => msg,
        };
        let headers = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        out.push(DeadLetter {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            value: msg.payload().map(<[u8]>::to_vec),
            headers,
        });
        if only.is_some_and(|(_, o)| o == msg.offset()) {
            break;
        }
    }
    out.sort_by_key(|d| (d.partition, d.offset));
    Ok(out)
}

/// What dead letters are grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct GroupKey {
    kind: String,
    plugin: String,
    version: String,
    source_partition: String,
}

/// Runs `sluice dlq list`.
fn list(args: &DlqArgs) -> anyhow::Result<()> {
    let (p, consumer) = open(args)?;
    let topic = p.dead_letter.topic.clone();
    let letters = read(&consumer, &topic, args.timeout, None)?;
    let mut groups: BTreeMap<GroupKey, Vec<&DeadLetter>> = BTreeMap::new();
    for d in &letters {
        let field = |name| d.header(name).unwrap_or("").to_owned();
        groups
            .entry(GroupKey {
                kind: field(H_KIND),
                plugin: field(H_PLUGIN),
                version: field(H_PLUGIN_HASH),
                source_partition: field(H_PARTITION),
            })
            .or_default()
            .push(d);
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        for (k, ds) in &groups {
            let offsets = |d: &DeadLetter, h| json!({"partition": d.partition, "offset": d.offset, "source_offset": d.header(h)});
            let (first, last) = (ds[0], ds[ds.len() - 1]);
            writeln!(
                stdout,
                "{}",
                json!({
                    "kind": k.kind,
                    "plugin": k.plugin,
                    "version": k.version,
                    "source_topic": last.header(H_TOPIC),
                    "source_partition": k.source_partition.parse::<i64>().ok(),
                    "count": ds.len(),
                    "first": offsets(first, H_OFFSET),
                    "last": offsets(last, H_OFFSET),
                    "latest_message": last.header(H_MESSAGE),
                })
            )?;
        }
        return Ok(());
    }
    writeln!(
        stdout,
        "dead-letter topic `{topic}` of pipeline `{}`: {} record(s) in {} group(s)",
        p.name,
        letters.len(),
        groups.len()
    )?;
    if groups.is_empty() {
        return Ok(());
    }
    writeln!(
        stdout,
        "\n{:>6}  {:<13} {:<20} {:<12} {:>6}  {:<18} latest message",
        "count", "kind", "plugin", "version", "source", "dead-letter offsets"
    )?;
    for (k, ds) in &groups {
        let (first, last) = (ds[0], ds[ds.len() - 1]);
        let range = if ds.len() == 1 {
            format!("{}/{}", first.partition, first.offset)
        } else {
            format!(
                "{}/{} .. {}/{}",
                first.partition, first.offset, last.partition, last.offset
            )
        };
        let message: String = last
            .header(H_MESSAGE)
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        writeln!(
            stdout,
            "{:>6}  {:<13} {:<20} {:<12} {:>6}  {:<18} {}",
            ds.len(),
            k.kind,
            k.plugin,
            k.version.get(..12).unwrap_or(&k.version),
            k.source_partition,
            range,
            message
        )?;
    }
    Ok(())
}

/// Runs `sluice dlq show`.
fn show(args: &DlqArgs, partition: i32, offset: i64) -> anyhow::Result<()> {
    let (p, consumer) = open(args)?;
    let topic = &p.dead_letter.topic;
    let letters = read(&consumer, topic, args.timeout, Some((partition, offset)))?;
    let Some(d) = letters.iter().find(|d| d.offset == offset) else {
        let held = match (letters.first(), letters.last()) {
            (Some(a), Some(z)) => format!("offsets {}..{}", a.offset, z.offset + 1),
            _ => "no records".to_owned(),
        };
        return Err(usage(anyhow::anyhow!(
            "`{topic}` partition {partition} has {held}; {offset} is not one of them"
        )));
    };
    let mut headers = Map::new();
    for (name, value) in &d.headers {
        let v = value.as_deref().map_or(Value::Null, |v| bytes_to_json(v).0);
        headers.insert(name.clone(), v);
    }
    let (value, base64) = d
        .value
        .as_deref()
        .map_or((Value::Null, false), bytes_to_json);
    let record = json!({
        "topic": topic,
        "partition": d.partition,
        "offset": d.offset,
        "key": d.key.as_deref().map_or(Value::Null, |k| bytes_to_json(k).0),
        "value": value,
        "value_base64": base64,
        "headers": headers,
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&record)?)?;
    Ok(())
}
