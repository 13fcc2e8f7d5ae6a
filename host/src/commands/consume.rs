//! `sluice consume`: print records of a topic as JSON lines, for demos and
//! debugging. It reads without a consumer group commit (`enable.auto.commit`
//! is off), so it never moves anyone's offsets.

use std::io::Write as _;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers as _;
use rdkafka::{ClientConfig, Message};
use serde_json::{Map, Value, json};

use super::{bytes_to_json, usage};
use crate::cli::ConsumeArgs;

/// Runs `sluice consume`: prints the topic's records to stdout, one JSON
/// object per line, until `--max` records, `--timeout`, or an hour without a
/// record. A broker config the client refuses is a usage error.
pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The stream consumer spawns its wake-up task on the current runtime.
    let _guard = rt.enter();
    let group = format!("sluice-consume-{}", std::process::id());
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .map_err(usage)?;
    consumer.subscribe(&[&args.topic]).map_err(usage)?;
    rt.block_on(async move {
        let started = Instant::now();
        let mut seen = 0usize;
        let stdout = std::io::stdout();
        while args.max.is_none_or(|m| seen < m) {
            let left = args
                .timeout
                .map(|t| t.saturating_sub(started.elapsed()))
                .unwrap_or(Duration::from_secs(3600));
            if left.is_zero() {
                break;
            }
            let msg = match tokio::time::timeout(left, consumer.recv()).await {
                Err(_) => break,
                Ok(m) => m?,
            };
            let mut m = Map::new();
            m.insert("partition".into(), json!(msg.partition()));
            m.insert("offset".into(), json!(msg.offset()));
            m.insert(
                "key".into(),
                msg.key().map_or(Value::Null, |k| bytes_to_json(k).0),
            );
            m.insert(
                "value".into(),
                msg.payload().map_or(Value::Null, |v| bytes_to_json(v).0),
            );
            let mut h = Map::new();
            if let Some(hs) = msg.headers() {
                for x in hs.iter() {
                    h.insert(
                        x.key.into(),
                        x.value.map_or(Value::Null, |v| bytes_to_json(v).0),
                    );
                }
            }
            m.insert("headers".into(), Value::Object(h));
            let mut out = stdout.lock();
            serde_json::to_writer(&mut out, &Value::Object(m))?;
            out.write_all(b"\n")?;
            out.flush()?;
            seen += 1;
        }
        Ok(())
    })
}
