//! `sluice produce`: publish test data. One record per file (key = file
//! name), or JSONL from stdin with key, value, headers and partition.
//!
//! Promise: exits 0 only when every record was acknowledged by the broker.

use std::io::BufRead;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::Value;

use super::usage;
use crate::cli::ProduceArgs;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    key: Option<String>,
    value: Value,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    #[serde(default)]
    partition: Option<i32>,
}

struct Rec {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    partition: Option<i32>,
}

fn text(v: Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// Runs `sluice produce`: publishes one record per file, or per JSONL line of
/// stdin, and returns `Ok` only once the broker has acknowledged every one.
pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &args.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random");
    for (k, v) in &args.properties {
        cfg.set(k, v);
    }
    let producer: FutureProducer = cfg.create().map_err(usage)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut acks = Vec::new();
        let mut send = |r: Rec| -> anyhow::Result<()> {
            let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut rec = FutureRecord::to(&args.topic)
                .payload(r.value.as_slice())
                .headers(h);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(p) = r.partition {
                rec = rec.partition(p);
            }
            loop {
                match producer.send_result(rec) {
                    Ok(ack) => {
                        acks.push(ack);
                        return Ok(());
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        // librdkafka's own thread drains the queue meanwhile.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => anyhow::bail!("cannot produce: {e}"),
                }
            }
        };
        if args.files.is_empty() {
            let stdin = std::io::stdin();
            for (i, line) in stdin.lock().lines().enumerate() {
                let line = line.context("reading stdin")?;
                if line.trim().is_empty() {
                    continue;
                }
                let l: Line = serde_json::from_str(&line)
                    .map_err(|e| usage(anyhow::anyhow!("stdin line {}: {e}", i + 1)))?;
                send(Rec {
                    key: l.key.map(String::into_bytes),
                    value: text(l.value),
                    headers: l.headers.into_iter().map(|(k, v)| (k, text(v))).collect(),
                    partition: l.partition,
                })?;
            }
        } else {
            for f in &args.files {
                let value = std::fs::read(f)
                    .with_context(|| format!("cannot read {}", f.display()))
                    .map_err(usage)?;
                let key = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned().into_bytes());
                send(Rec {
                    key,
                    value,
                    headers: Vec::new(),
                    partition: None,
                })?;
            }
        }
        let n = acks.len();
        for (i, a) in futures::future::join_all(acks)
            .await
            .into_iter()
            .enumerate()
        {
            match a {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => anyhow::bail!("record {} was not delivered: {e}", i + 1),
                Err(_) => anyhow::bail!("record {} was not delivered: producer gone", i + 1),
            }
        }
        eprintln!("produced {n} record(s) to {}", args.topic);
        Ok(())
    })
}
