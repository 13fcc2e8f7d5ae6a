//! The router: sends each finished record's outputs to the sinks their
//! routes name (Kafka topics, SQL tables, the dead-letter topic) and returns
//! one future per batch that resolves when every write for its records is
//! acknowledged (counted in one [`Acks`], not a future per write).
//!
//! When an offset may be committed: only after the future returned by
//! [`Router::dispatch`] resolves with the records. It resolves after every
//! Kafka acknowledgement and, for records with rows (or every record in
//! exactly-once mode), after the SQL transaction that holds them commits.
//! Any write that fails permanently resolves it with an error instead, and
//! the pipeline stops without finishing the records.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::acks::Acks;
use super::dead_letter::{DeadLetterWriter, Payload};
use super::kafka::{Producers, TopicRoute};
use super::sql::{JobRow, SqlJob, SqlSink};
use crate::config::pipeline::{DEFAULT_ROUTE, Pipeline};
use crate::metrics::PipelineMetrics;
use crate::record::{Batch, Failure, FailureKind, Fate, Work};

enum Target {
    /// A topic, and the index of its output counter in `Router::counters`.
    Topic(TopicRoute, usize),
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
    /// Acknowledged outputs per topic route (counted once acknowledged).
    counters: Vec<metrics::Counter>,
}

/// Resolves to a batch's records once every write for them is
/// acknowledged.
pub type Delivery = BoxFuture<'static, Result<Batch, Undelivered>>;

/// Why a batch did not finish.
pub enum Undelivered {
    /// The broker refused one of the batch's writes as a record-level
    /// error (too large for the topic, invalid for it, against its policy):
    /// see [`Router::redeliver`].
    Refused {
        /// The batch, none of its records finished, to redeliver record by
        /// record.
        batch: Batch,
        /// The broker's refusal.
        error: rdkafka::error::KafkaError,
    },
    /// Anything else stops the pipeline without finishing the batch.
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for Undelivered {
    fn from(e: anyhow::Error) -> Self {
        Undelivered::Fatal(e)
    }
}

impl Undelivered {
    fn into_error(self) -> anyhow::Error {
        match self {
            Undelivered::Fatal(e) => e,
            Undelivered::Refused { error, .. } => {
                anyhow::anyhow!("fatal produce error: the broker refused a write: {error}")
            }
        }
    }
}

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
        let mut counters = Vec::new();
        for (name, r) in &p.routes {
            let target = if let Some(topic) = &r.topic {
                counters.push(metrics.out(name));
                Target::Topic(producers.route(name, r, topic).await?, counters.len() - 1)
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
                counters,
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

    /// Start every write for a batch of records. The returned future
    /// resolves to the records once every write for them is acknowledged
    /// (filtered records at once), or to the first fatal error.
    pub async fn dispatch(&self, batch: Batch) -> Delivery {
        let acks = Acks::new();
        let exactly_once = self.sql.as_ref().is_some_and(|s| s.exactly_once);
        let mut done: Batch = Vec::with_capacity(batch.len());
        let mut in_sql: Vec<oneshot::Receiver<Work>> = Vec::new();
        let mut outs: Vec<(usize, u64)> = Vec::new();
        let mut filtered = 0u64;
        for mut work in batch {
            // In exactly-once mode each record's Kafka writes must land
            // before the transaction holding it commits, so it gets its
            // own count (the batcher must not wait on later records).
            let own = exactly_once.then(Acks::new);
            let acks = own.as_ref().unwrap_or(&acks);
            let rows = match self.write(&mut work, acks, &mut outs).await {
                Ok(rows) => rows,
                Err(e) => return Box::pin(async move { Err(e.into()) }),
            };
            if work.passes() && work.routed.is_empty() {
                filtered += 1;
            }
            match &self.sql {
                Some(sql) if !rows.is_empty() || sql.exactly_once => {
                    if let Some(own) = &own {
                        own.seal();
                    }
                    let (tx, rx) = oneshot::channel();
                    let job = SqlJob {
                        work,
                        rows,
                        // A record with no Kafka writes has nothing to wait for.
                        before_commit: own.filter(|a| !a.settled()),
                        done: tx,
                    };
                    if let Err(e) = sql.submit(job).await {
                        return Box::pin(async move { Err(e.into()) });
                    }
                    in_sql.push(rx);
                }
                _ => done.push(work),
            }
        }
        acks.seal();
        if filtered > 0 {
            self.metrics.filtered.increment(filtered);
        }
        let outs: Vec<(metrics::Counter, u64)> = outs
            .into_iter()
            .map(|(i, n)| (self.counters[i].clone(), n))
            .collect();
        Box::pin(async move {
            if let Err(error) = acks.wait().await {
                if super::kafka::refuses_record(&error) && in_sql.is_empty() {
                    return Err(Undelivered::Refused { batch: done, error });
                }
                return Err(anyhow::anyhow!("fatal produce error: {error}").into());
            }
            for (counter, n) in outs {
                counter.increment(n);
            }
            for rx in in_sql {
                done.push(
                    rx.await
                        .map_err(|_| anyhow::anyhow!("SQL batch for this record failed"))?,
                );
            }
            Ok(done)
        })
    }

    /// The broker refused a write of this batch, and which record's is
    /// unknown (one acknowledgement count serves the batch). Send each
    /// record again on its own; a record whose writes the broker refuses
    /// again goes to the dead-letter topic with kind `produce`, and the
    /// others are written (again: a write of the batch that did land is
    /// duplicated, never lost). Only then do the records finish. Their
    /// outputs may land after those of later records of their partition.
    pub async fn redeliver(&self, batch: Batch) -> anyhow::Result<Batch> {
        let mut done = Vec::with_capacity(batch.len());
        for mut work in batch {
            // Each refusal moves the record one step on: its outputs, then
            // its dead letter, then its dead letter without the value; a
            // refusal of that too is fatal.
            loop {
                let error = match self.dispatch(vec![work]).await.await {
                    Ok(one) => {
                        done.extend(one);
                        break;
                    }
                    Err(Undelivered::Refused { mut batch, error }) => match batch.pop() {
                        Some(w) => {
                            work = w;
                            error
                        }
                        None => break,
                    },
                    Err(e) => return Err(e.into_error()),
                };
                let at = (
                    &*work.record.topic,
                    work.record.partition,
                    work.record.offset,
                );
                match &mut work.fate {
                    Fate::Pass => {
                        tracing::warn!(topic = at.0, partition = at.1, offset = at.2, %error,
                            "the broker refused an output of this record; dead-lettering it");
                        work.dead_letter(Failure::host(
                            FailureKind::Produce,
                            format!("the broker refused an output: {error}"),
                        ));
                        work.routed.clear();
                    }
                    Fate::DeadLetter {
                        refused: refused @ None,
                        ..
                    } => {
                        tracing::warn!(topic = at.0, partition = at.1, offset = at.2, %error,
                            "the broker refused this record's dead letter; sending it without its value");
                        *refused = Some(error.to_string());
                    }
                    _ => anyhow::bail!(
                        "fatal produce error: the broker refused the dead letter of {}/{} offset {} even without its value: {error}",
                        at.0,
                        at.1,
                        at.2
                    ),
                }
            }
        }
        Ok(done)
    }

    /// Start every Kafka write of one record, counted in `acks`, and map
    /// its table rows. A record with a failure is dead-lettered. `Err` is
    /// fatal: the record's partition is halted at it.
    async fn write(
        &self,
        work: &mut Work,
        acks: &Arc<Acks>,
        outs: &mut Vec<(usize, u64)>,
    ) -> anyhow::Result<Vec<JobRow>> {
        // Resolve every route first, so a bad route dead-letters the whole
        // record rather than half of it.
        if work.passes()
            && let Some(bad) = work.routed.iter().find_map(|o| {
                let r = o.route.as_deref().unwrap_or(DEFAULT_ROUTE);
                (!self.routes.contains_key(r)).then(|| r.to_owned())
            })
        {
            work.dead_letter(Failure::host(
                FailureKind::Route,
                format!(
                    "plugin emitted an output on route `{bad}`, which the pipeline does not define"
                ),
            ));
        }
        let mut rows: Vec<JobRow> = Vec::new();
        if work.passes()
            && let Err(e) = self.write_outputs(work, acks, &mut rows, outs).await
        {
            if !super::kafka::refuses_record(&e) {
                // The producer itself failed: stop without committing this
                // record or anything after it in its partition.
                work.tracker.halt(work.record.offset);
                anyhow::bail!("fatal produce error: {e}");
            }
            // The broker would never take this output (too large, say):
            // dead-letter the source record instead. Writes already
            // enqueued for it stand; duplicates are allowed, loss is not.
            work.dead_letter(Failure::host(
                FailureKind::Produce,
                format!("cannot produce output: {e}"),
            ));
            rows.clear();
        }
        if let Fate::DeadLetter { failure: f, .. } = &work.fate {
            self.metrics.dead_lettered(f.kind).increment(1);
            tracing::debug!(
                topic = %work.record.topic, partition = work.record.partition, offset = work.record.offset,
                kind = %f.kind, error = %f.message, "dead-lettering record"
            );
            if let Err(e) = self.dead_letters.send(work, Payload::Source, f, acks).await {
                // Nothing after this record may be written or committed
                // in its partition: it is read again after a restart.
                work.tracker.halt(work.record.offset);
                anyhow::bail!("fatal produce error on dead letter: {e}");
            }
        }
        Ok(rows)
    }

    async fn write_outputs(
        &self,
        work: &mut Work,
        acks: &Arc<Acks>,
        rows: &mut Vec<JobRow>,
        outs: &mut Vec<(usize, u64)>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let provenance = work.provenance();
        let provenance = provenance.as_deref();
        for (i, o) in work.routed.iter().enumerate() {
            let route = o.route.as_deref().unwrap_or(DEFAULT_ROUTE);
            match &self.routes[route] {
                Target::Topic(t, counter) => {
                    self.producers
                        .send(
                            t,
                            o,
                            work.output_nulls(),
                            work.record.partition,
                            provenance,
                            acks,
                        )
                        .await?;
                    match outs.iter_mut().find(|(c, _)| *c == *counter) {
                        Some((_, n)) => *n += 1,
                        None => outs.push((*counter, 1)),
                    }
                }
                Target::DeadLetter => {
                    let f = Failure::host(
                        FailureKind::Routed,
                        format!("plugin routed output to `{route}`"),
                    );
                    self.metrics.dead_lettered(FailureKind::Routed).increment(1);
                    self.dead_letters
                        .send(work, Payload::output(o), &f, acks)
                        .await?;
                }
                Target::Table(t) => {
                    let Some(sql) = &self.sql else { continue };
                    match sql.tables[*t].map(&o.value, provenance) {
                        Ok(row) => rows.push(JobRow {
                            table: *t,
                            row,
                            output: i,
                        }),
                        Err(msg) => {
                            // A value that won't map is a bad row: it alone
                            // goes to the dead-letter topic.
                            let f = Failure::host(FailureKind::Sql, msg);
                            self.metrics.dead_lettered(FailureKind::Sql).increment(1);
                            self.dead_letters
                                .send(work, Payload::output(o), &f, acks)
                                .await?;
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
