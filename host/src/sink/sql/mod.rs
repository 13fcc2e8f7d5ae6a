//! The SQL sink: batches rows from table routes and writes them to the
//! pipeline's database, one transaction per batch.
//!
//! When an offset may be committed: a record that has rows in a batch is
//! handed back (and may then be finished by its partition tracker) only
//! after the batch's transaction commits. In exactly-once mode every record
//! passes through the batcher in order, the transaction also writes each
//! partition's next offset to the offsets table, and writes the record's
//! other acknowledgements (Kafka outputs, dead letters) must be acknowledged
//! before that transaction commits; on assignment the consumer skips what
//! the offsets table says is already written.
//!
//! A batch flushes at `batch_rows` rows or when its oldest job is
//! `batch_age` old. A batch the database refuses is retried with one
//! savepoint per row: rows it still refuses go to the dead-letter topic with
//! the database's error, and the rest commit. Connection failures are
//! retried with backoff, forever, because dropping the batch would lose it.

pub mod db;
pub mod row;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use db::{Db, OffsetRow, TableRows};
use row::{TableSpec, Value};

use super::dead_letter::DeadLetterWriter;
use crate::config::pipeline::Pipeline;
use crate::config::sql::SqlConfig;
use crate::pipeline::work::{Failure, Work};

/// One row of a job: which table, its values, which output it came from.
pub struct JobRow {
    pub table: usize,
    pub values: Vec<Value>,
    pub output: usize,
}

/// A record's share of a batch.
pub struct SqlJob {
    pub work: Work,
    pub rows: Vec<JobRow>,
    /// Acknowledgements that must land before the batch commits
    /// (exactly-once mode).
    pub before_commit: Vec<rdkafka::producer::DeliveryFuture>,
    /// Receives the record back once its batch committed.
    pub done: oneshot::Sender<Work>,
}

/// Handle to a pipeline's SQL batcher.
#[derive(Clone)]
pub struct SqlSink {
    tx: mpsc::Sender<SqlJob>,
    db: Db,
    /// Table specs, indexed by `JobRow::table`.
    pub tables: Arc<Vec<TableSpec>>,
    /// Route name → index into `tables`.
    pub routes: Arc<BTreeMap<String, usize>>,
    pub exactly_once: bool,
    group: Arc<str>,
    offsets_table: Arc<str>,
}

impl SqlSink {
    /// Connect, create tables, and start the batcher task.
    pub async fn start(
        p: &Pipeline,
        cfg: &SqlConfig,
        dead_letters: DeadLetterWriter,
        cancel: CancellationToken,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<anyhow::Result<()>>)> {
        let db = Db::connect(&cfg.url, cfg.max_connections)
            .await
            .with_context(|| format!("cannot connect to {}", redact(&cfg.url)))?;
        let mut tables = Vec::new();
        let mut routes = BTreeMap::new();
        for (name, r) in &p.routes {
            if let Some(t) = &r.table {
                routes.insert(name.clone(), tables.len());
                tables.push(TableSpec::new(t));
            }
        }
        db.prepare(
            &tables,
            cfg.exactly_once.then_some(cfg.offsets_table.as_str()),
        )
        .await
        .context("creating tables")?;
        let (tx, rx) = mpsc::channel(cfg.batch_rows.max(64));
        let sink = SqlSink {
            tx,
            db: db.clone(),
            tables: Arc::new(tables),
            routes: Arc::new(routes),
            exactly_once: cfg.exactly_once,
            group: p.source.group_id.as_str().into(),
            offsets_table: cfg.offsets_table.as_str().into(),
        };
        let batcher = Batcher {
            db,
            tables: sink.tables.clone(),
            group: sink.group.clone(),
            offsets_table: sink.offsets_table.clone(),
            exactly_once: cfg.exactly_once,
            batch_rows: cfg.batch_rows,
            batch_age: cfg.batch_age,
            dead_letters,
            cancel,
        };
        let task = tokio::spawn(batcher.run(rx));
        Ok((sink, task))
    }

    /// Queue a job (waits when the batcher is behind: backpressure).
    pub async fn submit(&self, job: SqlJob) -> anyhow::Result<()> {
        self.tx
            .send(job)
            .await
            .map_err(|_| anyhow::anyhow!("SQL batcher stopped"))
    }

    /// Exactly-once mode: the next offset the database has for a partition.
    pub async fn next_offset(&self, topic: &str, partition: i32) -> anyhow::Result<Option<i64>> {
        Ok(self
            .db
            .next_offset(&self.offsets_table, &self.group, topic, partition)
            .await?)
    }
}

/// Hide a password in a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

struct Batcher {
    db: Db,
    tables: Arc<Vec<TableSpec>>,
    group: Arc<str>,
    offsets_table: Arc<str>,
    exactly_once: bool,
    batch_rows: usize,
    batch_age: Duration,
    dead_letters: DeadLetterWriter,
    cancel: CancellationToken,
}

impl Batcher {
    async fn run(self, mut rx: mpsc::Receiver<SqlJob>) -> anyhow::Result<()> {
        let mut batch: Vec<SqlJob> = Vec::new();
        let mut rows = 0usize;
        let mut deadline: Option<Instant> = None;
        loop {
            let full = rows >= self.batch_rows;
            let due = deadline.is_some_and(|d| Instant::now() >= d);
            if !batch.is_empty() && (full || due) {
                self.flush(std::mem::take(&mut batch)).await?;
                rows = 0;
                deadline = None;
                continue;
            }
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => {
                        if batch.is_empty() {
                            deadline = Some(Instant::now() + self.batch_age);
                        }
                        rows += job.rows.len();
                        batch.push(job);
                    }
                    None => {
                        if !batch.is_empty() {
                            self.flush(batch).await?;
                        }
                        return Ok(());
                    }
                },
                _ = sleep_until(deadline) => {}
            }
        }
    }

    /// Write one batch and hand its records back. Only a fatal problem (a
    /// dead-letter write that failed) is an error.
    async fn flush(&self, batch: Vec<SqlJob>) -> anyhow::Result<()> {
        let mut jobs = Vec::with_capacity(batch.len());
        for mut job in batch {
            for ack in job.before_commit.drain(..) {
                match ack.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => anyhow::bail!("fatal produce error: {e}"),
                    Err(_) => anyhow::bail!("fatal produce error: producer gone"),
                }
            }
            jobs.push(job);
        }
        // Rows per table; duplicate keys collapse to the last one.
        let mut per_table: Vec<TableRows<'_>> = self
            .tables
            .iter()
            .map(|spec| TableRows {
                spec,
                rows: Vec::new(),
            })
            .collect();
        let mut ids: Vec<(usize, usize)> = Vec::new();
        let mut seen: Vec<HashMap<String, usize>> = vec![HashMap::new(); self.tables.len()];
        for (j, job) in jobs.iter().enumerate() {
            for (r, row) in job.rows.iter().enumerate() {
                let t = &mut per_table[row.table];
                let id = ids.len();
                ids.push((j, r));
                match self.tables[row.table].key_of(&row.values) {
                    Some(k) => match seen[row.table].get(&k) {
                        Some(&at) => t.rows[at] = (id, &row.values),
                        None => {
                            seen[row.table].insert(k, t.rows.len());
                            t.rows.push((id, &row.values));
                        }
                    },
                    None => t.rows.push((id, &row.values)),
                }
            }
        }
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        if self.exactly_once {
            for job in &jobs {
                let r = &job.work.record;
                let e = next.entry((r.topic.as_str(), r.partition)).or_insert(0);
                *e = (*e).max(r.offset + 1);
            }
        }
        let offsets: Vec<OffsetRow<'_>> = next
            .iter()
            .map(|((topic, partition), n)| (&*self.group, *topic, *partition, *n))
            .collect();

        let mut attempt = 0u32;
        let mut isolate = false;
        loop {
            match self
                .db
                .write(&per_table, &offsets, &self.offsets_table, isolate)
                .await
            {
                Ok((tx, bad)) => {
                    // Dead letters for refused rows are acknowledged before
                    // the commit, so a crash in between duplicates them
                    // rather than losing them.
                    self.dead_letter_rows(&jobs, &ids, &bad).await?;
                    match tx.commit().await {
                        Ok(()) => break,
                        Err(e) => self.backoff(&mut attempt, &e).await?,
                    }
                }
                Err(sqlx::Error::Database(e)) if !isolate => {
                    tracing::warn!(error = %e, rows = ids.len(), "batch refused; retrying row by row");
                    isolate = true;
                }
                Err(e) => self.backoff(&mut attempt, &e).await?,
            }
        }
        for job in jobs {
            let _ = job.done.send(job.work);
        }
        Ok(())
    }

    async fn dead_letter_rows(
        &self,
        jobs: &[SqlJob],
        ids: &[(usize, usize)],
        bad: &[(usize, String)],
    ) -> anyhow::Result<()> {
        let mut acks = Vec::new();
        for (id, error) in bad {
            let (j, r) = ids[*id];
            let job = &jobs[j];
            let output = &job.work.routed[job.rows[r].output];
            let table = &self.tables[job.rows[r].table].name;
            let f = Failure::host("sql", format!("table {table}: {error}"));
            tracing::warn!(
                topic = %job.work.record.topic, partition = job.work.record.partition,
                offset = job.work.record.offset, table = %table, error = %error, "row refused; dead-lettering it"
            );
            acks.push(
                self.dead_letters
                    .send(
                        &job.work.record,
                        output.key.as_deref(),
                        &output.value,
                        &f,
                        job.work.provenance().as_deref(),
                    )
                    .await?,
            );
        }
        for ack in acks {
            match ack.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => anyhow::bail!("fatal produce error on dead letter: {e}"),
                Err(_) => anyhow::bail!("fatal produce error on dead letter: producer gone"),
            }
        }
        Ok(())
    }

    /// Wait before retrying a failed write; gives up only on shutdown.
    async fn backoff(&self, attempt: &mut u32, e: &sqlx::Error) -> anyhow::Result<()> {
        *attempt += 1;
        let delay = Duration::from_millis(100)
            .saturating_mul(2u32.saturating_pow((*attempt).min(7)))
            .min(Duration::from_secs(10));
        tracing::warn!(error = %e, attempt = *attempt, ?delay, "database write failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.cancel.cancelled() => {
                anyhow::bail!("shutting down with an unwritten batch (it will be read again): {e}")
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
