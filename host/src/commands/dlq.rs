//! `sluice dlq list`, `show` and `replay`: what a pipeline's dead-letter
//! topic holds, and bringing its records back once their plugin is fixed.
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
//! - `replay` runs each selected dead letter (by `--kind`,
//!   `--plugin-version` prefix, `--since`) through the pipeline's current
//!   plugin chain, admitted as `sluice run` admits it. The input is the
//!   source record as it was: its topic, partition and offset from the
//!   `sluice.source.*` headers, and its own headers (`x-upstream-sluice.*`
//!   restored to `sluice.*`). A dead letter of an *output*, or one sent
//!   without its value, is skipped: it is not the source record.
//!   - `--dry-run` prints one JSON line per dead letter: `fixed` with the
//!     outputs it would write, `failed again` with the new error, or
//!     `skipped` with the reason, and writes nothing.
//!   - Otherwise outputs go to their routes' topics, failures back to the
//!     dead-letter topic with `sluice.replay.of` and `sluice.replay.group`;
//!     once all of a dead letter's writes are acknowledged, the replay
//!     group's offset is committed past it. So each dead letter is
//!     replayed at most once per group, and a rerun after a crash goes on
//!     where it stopped, writing at most the one in flight twice. Dead
//!     letters written after the run began wait for the next run; a group
//!     passes over its own. Pipelines with table routes are refused.
//! - `list`, `show` and `replay --dry-run` join no consumer group and
//!   commit nothing: no one's offsets move.
//! - A pipeline name the file does not have, or a dead-letter topic the
//!   broker does not have, is a usage error (exit 2) naming it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Map, Value, json};

use super::{bytes_to_json, usage};
use crate::cli::{DlqArgs, DlqCommand, DlqReplayArgs};
use crate::config::kafka::PropertyBuilder;
use crate::config::pipeline::{self, Pipeline};
use crate::plugin::{Input, Instance, Output, Runtime};
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
    /// The dead letter a consumer read, copied out of its buffer.
    fn from_message(msg: &impl Message) -> Self {
        DeadLetter {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            value: msg.payload().map(<[u8]>::to_vec),
            headers: msg
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

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
    open_as(args, None)
}

/// As [`open`]; with `group`, the reader's offsets are that consumer
/// group's (read from its committed position, committed by the caller).
fn open_as(args: &DlqArgs, group: Option<&str>) -> anyhow::Result<(Pipeline, BaseConsumer)> {
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
        group.map_or_else(
            || format!("sluice-dlq-{}", std::process::id()),
            str::to_owned,
        ),
        "sluice (never joined: partitions are assigned)",
    );
    b.set(
        "auto.offset.reset",
        "earliest",
        "sluice (reads from the start)",
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
        out.push(DeadLetter::from_message(&msg));
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
        .map(|(n, v)| crate::plugin::Header {
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
        version: String,
        kind: &'static str,
        message: String,
    },
}

/// Whether the replay's filters select `d`.
fn selects(args: &DlqReplayArgs, since_ms: Option<i64>, d: &DeadLetter) -> bool {
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
}

/// One plugin of the chain: its name, its version (SHA-256) and an instance.
type Link = (String, String, Instance);

/// The pipeline's current chain, admitted as `sluice run` admits it.
fn chain_of(runtime: &Runtime, p: &Pipeline) -> anyhow::Result<Vec<Link>> {
    let mut chain = Vec::new();
    for (i, pc) in p.plugins.iter().enumerate() {
        let at = || format!("pipeline `{}`: plugin[{i}] ({})", p.name, pc.display_name());
        let plugin = crate::swap::admit_file(runtime, pc)
            .with_context(at)
            .map_err(usage)?;
        let hash = plugin.hash().to_owned();
        let instance = Instance::for_config(plugin, pc)
            .map_err(|e| usage(anyhow::anyhow!("{}: {e}", at())))?;
        chain.push((pc.display_name(), hash, instance));
    }
    Ok(chain)
}

/// Runs `input` through `chain` as the pipeline's stages would.
fn run_chain(chain: &mut [Link], input: Input) -> Replayed {
    let mut current = vec![input];
    let mut done: Vec<Output> = Vec::new();
    for (name, hash, instance) in chain.iter_mut() {
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
                        version: hash.clone(),
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
        return replay_writing(runtime, args);
    }
    let (p, consumer) = open(&args.at)?;
    let mut chain = chain_of(runtime, &p)?;
    let letters = read(&consumer, &p.dead_letter.topic, args.at.timeout, None)?;
    let since_ms = args.since.map(|t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    });
    let selected = letters.iter().filter(|d| selects(args, since_ms, d));
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
                    ..
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

/// Header on a dead letter written by a replay: the dead letter it replays,
/// as `topic/partition/offset`.
pub const H_REPLAY_OF: &str = "sluice.replay.of";
/// Header on a dead letter written by a replay: the replay group, so that
/// group passes over the dead letters it wrote itself.
pub const H_REPLAY_GROUP: &str = "sluice.replay.group";

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs `sluice dlq replay` without `--dry-run`: writes what the chain makes
/// of each selected dead letter, then commits the replay group's position
/// past it. See the module's promises.
fn replay_writing(runtime: &Runtime, args: &DlqReplayArgs) -> anyhow::Result<()> {
    let (p, _) = open(&args.at)?;
    if let Some((name, _)) = p.routes.iter().find(|(_, r)| r.table.is_some()) {
        return Err(usage(anyhow::anyhow!(
            "pipeline `{}` routes `{name}` to a table; replay writes only to topics so far (--dry-run shows what it would do)",
            p.name
        )));
    }
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("sluice-replay-{}", p.name));
    let (_, consumer) = open_as(&args.at, Some(&group))?;
    let mut chain = chain_of(runtime, &p)?;
    let topic = p.dead_letter.topic.clone();
    let provenance: String = chain
        .iter()
        .map(|(name, hash, _)| format!("{name}@{hash}"))
        .collect::<Vec<_>>()
        .join(",");

    let mut b = PropertyBuilder::new();
    b.set(
        "bootstrap.servers",
        p.producer_brokers(),
        "producer.brokers",
    );
    b.set("enable.idempotence", "true", "sluice (idempotent producer)");
    b.set("linger.ms", "0", "sluice (one dead letter at a time)");
    b.security(&p.producer_security())
        .map_err(|e| usage(anyhow::anyhow!(e)))?;
    let producer: FutureProducer = b
        .build(&BTreeMap::new())
        .map_err(|e| usage(anyhow::anyhow!(e)))?
        .create()
        .map_err(usage)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // Read every partition from the group's committed position.
    let metadata = consumer.fetch_metadata(Some(&topic), args.at.timeout)?;
    let mut tpl = TopicPartitionList::new();
    let mut open_partitions = Vec::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for part in t.partitions() {
            tpl.add_partition_offset(&topic, part.id(), Offset::Stored)?;
            open_partitions.push(part.id());
        }
    }
    if open_partitions.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "dead-letter topic `{topic}` does not exist on the broker"
        )));
    }
    consumer.assign(&tpl)?;
    let started = now_ms();
    let since_ms = args.since.map(|t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    });
    let (mut fixed, mut failed, mut skipped, mut passed) = (0usize, 0usize, 0usize, 0usize);
    let deadline = Instant::now() + args.at.timeout;
    while !open_partitions.is_empty() {
        let msg = match consumer.poll(Duration::from_millis(100)) {
            None if Instant::now() > deadline => {
                anyhow::bail!("timed out after {:?} reading `{topic}`", args.at.timeout)
            }
            None => continue,
            Some(Err(KafkaError::PartitionEOF(part))) => {
                open_partitions.retain(|&o| o != part);
                continue;
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(msg)) => msg,
        };
        let d = DeadLetter::from_message(&msg);
        // Dead letters written after this replay began are not its work
        // (among them, the ones it writes itself): stop that partition.
        if d.header(H_TIMESTAMP)
            .and_then(|t| t.parse::<i64>().ok())
            .is_some_and(|t| t >= started)
        {
            open_partitions.retain(|&o| o != d.partition);
            continue;
        }
        let ours = d.header(H_REPLAY_GROUP) == Some(group.as_str());
        if ours || !selects(args, since_ms, &d) {
            passed += 1;
        } else {
            match source_record(&d) {
                Err(_) => skipped += 1,
                Ok(input) => {
                    let sends = match run_chain(&mut chain, input) {
                        Replayed::Fixed(outputs) => {
                            fixed += 1;
                            outputs
                                .into_iter()
                                .map(|o| route_output(&p, &provenance, &group, &d, o))
                                .collect::<Vec<_>>()
                        }
                        Replayed::FailedAgain {
                            plugin,
                            version,
                            kind,
                            message,
                        } => {
                            failed += 1;
                            vec![dead_letter_again(
                                &p,
                                &provenance,
                                &group,
                                &d,
                                &plugin,
                                &version,
                                kind,
                                &message,
                            )]
                        }
                    };
                    rt.block_on(async {
                        for (to, key, value, headers) in sends {
                            let mut rec = FutureRecord::<[u8], [u8]>::to(&to)
                                .payload(&value[..])
                                .headers(headers);
                            if let Some(k) = &key {
                                rec = rec.key(&k[..]);
                            }
                            producer
                                .send(rec, Duration::from_secs(30))
                                .await
                                .map_err(|(e, _)| anyhow::anyhow!("cannot write to `{to}`: {e}"))?;
                        }
                        anyhow::Ok(())
                    })?;
                }
            }
        }
        // Written and acknowledged (or nothing to write): this dead letter
        // is done for the group.
        let mut done = TopicPartitionList::new();
        done.add_partition_offset(&topic, d.partition, Offset::Offset(d.offset + 1))?;
        consumer.commit(&done, rdkafka::consumer::CommitMode::Sync)?;
    }
    eprintln!(
        "replay group `{group}`: {fixed} fixed, {failed} failed again, {skipped} skipped, {passed} passed over"
    );
    Ok(())
}

/// A record to write: topic, key, value, headers.
type Outgoing = (String, Option<Vec<u8>>, Vec<u8>, OwnedHeaders);

/// Where one output of a fixed dead letter goes, as the pipeline routes it:
/// its route's topic, or back to the dead-letter topic (a `dead_letter`
/// route, or a route the pipeline does not have).
fn route_output(
    p: &Pipeline,
    provenance: &str,
    group: &str,
    d: &DeadLetter,
    o: Output,
) -> Outgoing {
    let name = o.route.clone().unwrap_or_else(|| "default".to_owned());
    match p.routes.get(&name).and_then(|r| r.topic.clone()) {
        Some(topic) => {
            let mut headers = OwnedHeaders::new();
            for h in &o.headers {
                headers = headers.insert(Header {
                    key: &h.name,
                    value: Some(&h.value),
                });
            }
            headers = headers.insert(Header {
                key: &p.version_header,
                value: Some(provenance),
            });
            (topic, o.key, o.value, headers)
        }
        None => {
            let routed = p.routes.get(&name).is_some_and(|r| r.dead_letter);
            let (kind, message) = if routed {
                (
                    "routed",
                    format!("the plugin routed the output to `{name}`"),
                )
            } else {
                ("route", format!("the pipeline has no route `{name}`"))
            };
            let mut again =
                dead_letter_again(p, provenance, group, d, "sluice", "", kind, &message);
            again.1 = o.key;
            again.2 = o.value;
            again
        }
    }
}

/// The dead letter of a replay that failed again: the record as it came,
/// with new `sluice.*` headers saying why, and which dead letter it replays.
#[allow(clippy::too_many_arguments)]
fn dead_letter_again(
    p: &Pipeline,
    provenance: &str,
    group: &str,
    d: &DeadLetter,
    plugin: &str,
    version: &str,
    kind: &str,
    message: &str,
) -> Outgoing {
    let mut headers = OwnedHeaders::new();
    for (name, value) in d.headers.iter().filter(|(n, _)| !n.starts_with("sluice.")) {
        headers = headers.insert(Header {
            key: name,
            value: value.as_deref(),
        });
    }
    let message: String = message
        .chars()
        .take(crate::sink::dead_letter::MAX_MESSAGE)
        .collect();
    let replay_of = format!("{}/{}/{}", p.dead_letter.topic, d.partition, d.offset);
    let now = now_ms().to_string();
    let mut put = |k: &str, v: &str| {
        headers = std::mem::replace(&mut headers, OwnedHeaders::new()).insert(Header {
            key: k,
            value: Some(v),
        });
    };
    for h in [H_TOPIC, H_PARTITION, H_OFFSET] {
        put(h, d.header(h).unwrap_or(""));
    }
    put(H_PLUGIN, plugin);
    put(H_PLUGIN_HASH, version);
    put(H_KIND, kind);
    put(H_MESSAGE, &message);
    put(H_TIMESTAMP, &now);
    put(&p.version_header, provenance);
    put(H_REPLAY_OF, &replay_of);
    put(H_REPLAY_GROUP, group);
    (
        p.dead_letter.topic.clone(),
        d.key.clone(),
        d.value.clone().unwrap_or_default(),
        headers,
    )
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
