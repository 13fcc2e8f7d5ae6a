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
//! - `replay --dry-run` runs each selected dead letter (by `--kind`,
//!   `--plugin-version` prefix, `--since`) through the pipeline's current
//!   plugin chain, admitted as `sluice run` admits it, and prints one JSON
//!   line per dead letter: `fixed` with the outputs it would write (default
//!   route outputs feed the next plugin, named routes leave the chain),
//!   `failed again` with the new error, or `skipped` with the reason (a dead
//!   letter of an *output*, or one sent without its value, is not the source
//!   record and cannot be replayed). The input is the source record as it
//!   was: its topic, partition and offset from the `sluice.source.*`
//!   headers, and its own headers (`x-upstream-sluice.*` restored to
//!   `sluice.*`). Replay that writes is not implemented and is refused.
//! - None of them joins a consumer group or commits anything: no one's
//!   offsets move. A pipeline name the file does not have, or a dead-letter topic
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
use crate::cli::{DlqArgs, DlqCommand, DlqReplayArgs};
use crate::config::kafka::PropertyBuilder;
use crate::config::pipeline::{self, Pipeline};
use crate::plugin::{Header, Input, Instance, Output, Runtime};
use crate::sink::dead_letter::{
    H_KIND, H_MESSAGE, H_OFFSET, H_OMITTED, H_PARTITION, H_PLUGIN, H_PLUGIN_HASH, H_TIMESTAMP,
    H_TOPIC, UPSTREAM_PREFIX,
};

/// Runs `sluice dlq list`, `show` or `replay`.
pub fn run(runtime: &Runtime, cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::Replay(args) => replay(runtime, &args),
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
    let brokers = p.producer_brokers();
    let security = p.producer_security();
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

/// The error kinds whose dead letter carries an output rather than the
/// source record.
const OUTPUT_KINDS: &[&str] = &["produce", "routed", "sql", "route"];

/// The source record a dead letter holds, or why it holds none.
fn source_record(d: &DeadLetter) -> Result<Input, String> {
    let kind = d.header(H_KIND).unwrap_or("");
    if OUTPUT_KINDS.contains(&kind) {
        return Err(format!(
            "a `{kind}` dead letter holds an output, not the source record"
        ));
    }
    if d.header(H_OMITTED).is_some() {
        return Err("sent without its value (too large for the producer)".into());
    }
    let number = |h| d.header(h).and_then(|v| v.parse::<i64>().ok());
    let headers = d
        .headers
        .iter()
        .filter(|(n, _)| !n.starts_with("sluice."))
        .map(|(n, v)| Header {
            name: n
                .strip_prefix(UPSTREAM_PREFIX)
                .filter(|rest| rest.starts_with("sluice."))
                .map_or_else(|| n.clone(), str::to_owned),
            value: v.clone().unwrap_or_default(),
        })
        .collect();
    Ok(Input {
        topic: d.header(H_TOPIC).unwrap_or("").to_owned(),
        partition: number(H_PARTITION).unwrap_or(-1) as i32,
        offset: number(H_OFFSET).unwrap_or(-1),
        timestamp: None,
        key: d.key.clone(),
        value: d.value.clone().unwrap_or_default(),
        headers,
    })
}

/// What replaying one record through the chain gave.
enum Replayed {
    Fixed(Vec<Output>),
    FailedAgain {
        plugin: String,
        kind: &'static str,
        message: String,
    },
}

/// Runs `input` through `chain` as the pipeline's stages would.
fn run_chain(chain: &mut [(String, Instance)], input: Input) -> Replayed {
    let mut current = vec![input];
    let mut done: Vec<Output> = Vec::new();
    for (name, instance) in chain.iter_mut() {
        let mut next = Vec::new();
        for input in &current {
            match instance.process(input) {
                Ok(outputs) => {
                    for o in outputs {
                        if o.route.is_some() {
                            done.push(o);
                        } else {
                            next.push(Input {
                                key: o.key,
                                value: o.value,
                                headers: o.headers,
                                ..input.clone()
                            });
                        }
                    }
                }
                Err(e) => {
                    return Replayed::FailedAgain {
                        plugin: name.clone(),
                        kind: e.kind().as_str(),
                        message: e.message(),
                    };
                }
            }
        }
        current = next;
    }
    done.extend(current.into_iter().map(|i| Output {
        route: None,
        key: i.key,
        value: i.value,
        headers: i.headers,
    }));
    Replayed::Fixed(done)
}

/// Runs `sluice dlq replay`.
fn replay(runtime: &Runtime, args: &DlqReplayArgs) -> anyhow::Result<()> {
    if !args.dry_run {
        return Err(usage(anyhow::anyhow!(
            "`sluice dlq replay` can only show what it would do so far: pass --dry-run"
        )));
    }
    let (p, consumer) = open(&args.at)?;
    let mut chain = Vec::new();
    for (i, pc) in p.plugins.iter().enumerate() {
        let at = || format!("pipeline `{}`: plugin[{i}] ({})", p.name, pc.display_name());
        let plugin = crate::swap::admit_file(runtime, pc)
            .with_context(at)
            .map_err(usage)?;
        let instance = Instance::for_config(plugin, pc)
            .map_err(|e| usage(anyhow::anyhow!("{}: {e}", at())))?;
        chain.push((pc.display_name(), instance));
    }
    let letters = read(&consumer, &p.dead_letter.topic, args.at.timeout, None)?;
    let since_ms = args.since.map(|t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    });
    let selected = letters.iter().filter(|d| {
        args.kind
            .as_deref()
            .is_none_or(|k| d.header(H_KIND) == Some(k))
            && args
                .plugin_version
                .as_deref()
                .is_none_or(|v| d.header(H_PLUGIN_HASH).is_some_and(|h| h.starts_with(v)))
            && since_ms.is_none_or(|s| {
                d.header(H_TIMESTAMP)
                    .and_then(|t| t.parse::<i64>().ok())
                    .is_some_and(|t| t >= s)
            })
    });
    let (mut fixed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut stdout = std::io::stdout().lock();
    for d in selected {
        let id = json!({
            "dead_letter": {"partition": d.partition, "offset": d.offset},
            "source": format!(
                "{}/{}/{}",
                d.header(H_TOPIC).unwrap_or("?"),
                d.header(H_PARTITION).unwrap_or("?"),
                d.header(H_OFFSET).unwrap_or("?")
            ),
        });
        let mut line = id.as_object().cloned().unwrap_or_default();
        match source_record(d) {
            Err(why) => {
                skipped += 1;
                line.insert("result".into(), json!("skipped"));
                line.insert("reason".into(), json!(why));
            }
            Ok(input) => match run_chain(&mut chain, input) {
                Replayed::Fixed(outputs) => {
                    fixed += 1;
                    line.insert("result".into(), json!("fixed"));
                    let outputs: Vec<Value> = outputs
                        .into_iter()
                        .map(|o| super::plugin::output_json(&Value::Null, o))
                        .map(|mut o| {
                            if let Some(m) = o.as_object_mut() {
                                m.remove("input");
                            }
                            o
                        })
                        .collect();
                    line.insert("outputs".into(), Value::Array(outputs));
                }
                Replayed::FailedAgain {
                    plugin,
                    kind,
                    message,
                } => {
                    failed += 1;
                    line.insert("result".into(), json!("failed again"));
                    line.insert(
                        "error".into(),
                        json!({"plugin": plugin, "kind": kind, "message": message}),
                    );
                }
            },
        }
        writeln!(stdout, "{}", Value::Object(line))?;
    }
    eprintln!("dry run: {fixed} fixed, {failed} failed again, {skipped} skipped; nothing written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(kind: &str, extra: &[(&str, Option<&str>)]) -> DeadLetter {
        let mut headers: Vec<(String, Option<Vec<u8>>)> = vec![
            (H_TOPIC.into(), Some(b"raw".to_vec())),
            (H_PARTITION.into(), Some(b"2".to_vec())),
            (H_OFFSET.into(), Some(b"41".to_vec())),
            (H_KIND.into(), Some(kind.as_bytes().to_vec())),
        ];
        headers.extend(
            extra
                .iter()
                .map(|(n, v)| (n.to_string(), v.map(|v| v.as_bytes().to_vec()))),
        );
        DeadLetter {
            partition: 0,
            offset: 7,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers,
        }
    }

    #[test]
    fn the_source_record_comes_back_with_its_own_headers() {
        let d = letter(
            "invalid",
            &[
                ("url", Some("https://x.test")),
                ("x-upstream-sluice.trace", Some("t1")),
                ("x-upstream-other", Some("o")),
                ("sluice.plugin.version", Some("p@abc")),
                ("empty", None),
            ],
        );
        let input = source_record(&d).unwrap();
        assert_eq!(
            (input.topic.as_str(), input.partition, input.offset),
            ("raw", 2, 41)
        );
        assert_eq!(input.key.as_deref(), Some(b"k".as_slice()));
        assert_eq!(input.value, b"v");
        let names: Vec<&str> = input.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["url", "sluice.trace", "x-upstream-other", "empty"]);
    }

    #[test]
    fn outputs_and_cut_down_copies_are_not_source_records() {
        for kind in ["produce", "routed", "sql", "route"] {
            assert!(source_record(&letter(kind, &[])).is_err(), "{kind}");
        }
        let cut = letter("invalid", &[(H_OMITTED, Some("123456 bytes"))]);
        assert!(
            source_record(&cut)
                .unwrap_err()
                .contains("without its value")
        );
        assert!(source_record(&letter("trap", &[])).is_ok());
    }
}
