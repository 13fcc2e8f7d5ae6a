//! The router: sends each finished record's outputs to the sinks their
//! routes name (Kafka topics, SQL tables, the dead-letter topic) and returns
//! a future that resolves when every write for the record is acknowledged.
//!
//! When an offset may be committed: only after the future returned by
//! [`Router::dispatch`] resolves with the record. It resolves after every
//! Kafka acknowledgement and, for records with rows (or every record in
//! exactly-once mode), after the SQL transaction that holds them commits.
//! Any write that fails permanently resolves it with an error instead, and
//! the pipeline stops without finishing the record.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::producer::DeliveryFuture;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::dead_letter::{DeadLetterWriter, Payload};
use super::kafka::{Producers, TopicRoute};
use super::sql::{JobRow, SqlJob, SqlSink};
use crate::config::pipeline::{DEFAULT_ROUTE, Pipeline};
use crate::metrics::PipelineMetrics;
use crate::pipeline::work::{Failure, Work};

enum Target {
    Topic(TopicRoute),
    Table(usize),
    DeadLetter,
}

/// All sinks of one pipeline.
pub struct Router {
    producers: Producers,
    routes: BTreeMap<String, Target>,
    dead_letters: DeadLetterWriter,
    sql: Option<SqlSink>,
    metrics: PipelineMetrics,
}

/// Resolves to the record once every write for it is acknowledged.
pub type Delivery = BoxFuture<'static, anyhow::Result<Work>>;

impl Router {
    /// Build producers, routes and (if configured) the SQL batcher, whose
    /// task handle is returned too.
    pub async fn new(
        p: &Pipeline,
        metrics: PipelineMetrics,
        cancel: CancellationToken,
    ) -> anyhow::Result<(Self, Option<tokio::task::JoinHandle<anyhow::Result<()>>>)> {
        let producers = Producers::new(p)?;
        let dead_letters = DeadLetterWriter::new(
            producers.primary().clone(),
            &p.dead_letter.topic,
            &p.version_header,
        );
        let (sql, task) = match &p.sql {
            Some(cfg) => {
                let (s, t) = SqlSink::start(p, cfg, dead_letters.clone(), cancel).await?;
                (Some(s), Some(t))
            }
            None => (None, None),
        };
        let mut routes = BTreeMap::new();
        for (name, r) in &p.routes {
            let target = if let Some(topic) = &r.topic {
                Target::Topic(producers.route(name, r, topic, metrics.out(name)).await?)
            } else if r.table.is_some() {
                let idx = sql.as_ref().and_then(|s| s.routes.get(name).copied());
                Target::Table(idx.ok_or_else(|| anyhow::anyhow!("routes.{name}: no SQL sink"))?)
            } else {
                Target::DeadLetter
            };
            routes.insert(name.clone(), target);
        }
        Ok((
            Router {
                producers,
                routes,
                dead_letters,
                sql,
                metrics,
            },
            task,
        ))
    }

    /// No more records will come: let the SQL batcher flush what it holds
    /// and stop (it stops once every handle to it is dropped).
    pub fn close_sql(&mut self) {
        self.sql = None;
    }

    /// The SQL sink, when the pipeline has one.
    pub fn sql(&self) -> Option<&SqlSink> {
        self.sql.as_ref()
    }

    /// Start every write for `work`. `None` means there was nothing to wait
    /// for (the record was filtered out).
    pub async fn dispatch(&self, mut work: Work) -> Option<Delivery> {
        // Resolve every route first, so a bad route dead-letters the whole
        // record rather than half of it.
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
        let mut acks: Vec<DeliveryFuture> = Vec::new();
        let mut rows: Vec<JobRow> = Vec::new();
        if work.failure.is_none()
            && let Err(e) = self.write_outputs(&mut work, &mut acks, &mut rows).await
        {
            if !super::kafka::refuses_record(&e) {
                // The producer itself failed: stop without committing this
                // record or anything after it in its partition.
                work.tracker.halt(work.record.offset);
                return Some(Box::pin(async move {
                    Err(anyhow::anyhow!("fatal produce error: {e}"))
                }));
            }
            // The broker would never take this output (too large, say):
            // dead-letter the source record instead. Writes already
            // enqueued for it stand; duplicates are allowed, loss is not.
            work.failure = Some(Failure::host(
                "produce",
                format!("cannot produce output: {e}"),
            ));
            rows.clear();
        }
        if let Some(f) = &work.failure {
            self.metrics.dead_lettered(f.kind).increment(1);
            tracing::debug!(
                topic = %work.record.topic, partition = work.record.partition, offset = work.record.offset,
                kind = f.kind, error = %f.message, "dead-lettering record"
            );
            match self.dead_letters.send(&work, Payload::Source, f).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    // Nothing after this record may be written or committed
                    // in its partition: it is read again after a restart.
                    work.tracker.halt(work.record.offset);
                    return Some(Box::pin(async move {
                        Err(anyhow::anyhow!("fatal produce error on dead letter: {e}"))
                    }));
                }
            }
        }
        let filtered = work.failure.is_none() && work.routed.is_empty();
        if filtered {
            self.metrics.filtered.increment(1);
        }
        if let Some(sql) = &self.sql
            && (!rows.is_empty() || sql.exactly_once)
        {
            let (done, back) = oneshot::channel();
            // In exactly-once mode the batch's commit moves the offset, so
            // the record's other writes must land first.
            let before_commit = if sql.exactly_once {
                std::mem::take(&mut acks)
            } else {
                Vec::new()
            };
            let job = SqlJob {
                work,
                rows,
                before_commit,
                done,
            };
            if let Err(e) = sql.submit(job).await {
                return Some(Box::pin(async move { Err(e) }));
            }
            return Some(Box::pin(async move {
                wait(acks).await?;
                back.await
                    .map_err(|_| anyhow::anyhow!("SQL batch for this record failed"))
            }));
        }
        if acks.is_empty() {
            return None;
        }
        Some(Box::pin(async move {
            wait(acks).await?;
            Ok(work)
        }))
    }

    async fn write_outputs(
        &self,
        work: &mut Work,
        acks: &mut Vec<DeliveryFuture>,
        rows: &mut Vec<JobRow>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let provenance = work.provenance();
        let provenance = provenance.as_deref();
        for (i, o) in work.routed.iter().enumerate() {
            let route = o.route.as_deref().unwrap_or(DEFAULT_ROUTE);
            match &self.routes[route] {
                Target::Topic(t) => acks.push(
                    self.producers
                        .send(t, o, work.output_nulls(), work.record.partition, provenance)
                        .await?,
                ),
                Target::DeadLetter => {
                    let f = Failure::host("routed", format!("plugin routed output to `{route}`"));
                    self.metrics.dead_lettered("routed").increment(1);
                    acks.push(self.dead_letters.send(work, Payload::output(o), &f).await?);
                }
                Target::Table(t) => {
                    let Some(sql) = &self.sql else { continue };
                    match sql.tables[*t].map(&o.value, provenance) {
                        Ok(values) => rows.push(JobRow {
                            table: *t,
                            values,
                            output: i,
                        }),
                        Err(msg) => {
                            // A value that won't map is a bad row: it alone
                            // goes to the dead-letter topic.
                            let f = Failure::host("sql", msg);
                            self.metrics.dead_lettered("sql").increment(1);
                            acks.push(self.dead_letters.send(work, Payload::output(o), &f).await?);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Wait for every enqueued Kafka write (shutdown).
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.producers.flush(timeout)
    }
}

async fn wait(acks: Vec<DeliveryFuture>) -> anyhow::Result<()> {
    for ack in acks {
        match ack.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => anyhow::bail!("fatal produce error: {e}"),
            Err(_) => anyhow::bail!("fatal produce error: producer gone"),
        }
    }
    Ok(())
}
