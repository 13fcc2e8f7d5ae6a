//! The SQL sink: batches rows from table routes and writes them to the
//! pipeline's database, one transaction per batch.
//!
//! When an offset may be committed: a record that has rows in a batch is
//! handed back (and may then be finished by its partition tracker) only
//! after the batch's transaction commits. In exactly-once mode every record
//! passes through the batcher in order, the transaction also moves each
//! partition's row in the offsets table, under the rule that
//! [`crate::source::offsets`] states, and the record's other
//! acknowledgements (Kafka outputs, dead letters) must land before that
//! transaction commits. Records of a revoked, halted or fenced partition
//! are handed back abandoned: never written, never finished.
//!
//! Records are batched per lane, a lane being a fixed share of the source
//! partitions, with one lane per pooled connection (one for SQLite). A
//! lane's batch flushes at `batch_rows` rows or when its oldest job is
//! `batch_age` old; while it is written the lane's next batch fills, and
//! the lanes write side by side. A lane writes one batch at a time, so a
//! partition's batches commit in order, which exactly-once's offsets and
//! last-write-wins upserts both rely on.
//!
//! A batch the database refuses because of a row is retried in isolation
//! (see [`db`]): rows it still refuses go to the dead-letter topic with the
//! database's error, and the rest commit. Every
//! other failure (the database unreachable, read-only, full, locked) is
//! retried with backoff until it passes or sluice shuts down, because
//! dropping the batch would lose it. When a commit's outcome is unknown
//! (the connection dropped), exactly-once mode reads the offsets table to
//! learn it before writing anything again.

pub mod db;
pub mod row;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use db::{Db, OffsetWrite, TableRows, Written};
use row::TableSpec;

use super::acks::Acks;
use super::dead_letter::{DeadLetterWriter, Payload};
use crate::config::pipeline::Pipeline;
use crate::config::sql::SqlConfig;
use crate::record::{Failure, FailureKind, Fate, Work};
use crate::source::offsets::{Claim, PartitionTracker};

/// One row of a job: which table, its encoded values, which output it came
/// from.
pub struct JobRow {
    /// Index of the table into [`SqlSink::tables`].
    pub table: usize,
    /// The row, as [`TableSpec::map`] encoded it.
    pub row: Vec<u8>,
    /// Index into the record's `routed` outputs of the output the row came
    /// from, to dead-letter it if the database refuses the row.
    pub output: usize,
}

/// A record's share of a batch.
pub struct SqlJob {
    /// The record, handed back through `done` once its batch committed.
    pub work: Work,
    /// The record's rows; may be empty in exactly-once mode, where every record
    /// passes through the batcher to have its offset written.
    pub rows: Vec<JobRow>,
    /// Acknowledgements that must land before the batch commits
    /// (exactly-once mode).
    pub before_commit: Option<Arc<Acks>>,
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
    /// Whether offsets are committed to the database's offsets table, in the
    /// batch's transaction, instead of to Kafka.
    pub exactly_once: bool,
    group: Arc<str>,
    offsets_table: Arc<str>,
    /// How `/readyz` names this pipeline's database.
    component: Arc<str>,
}

impl SqlSink {
    /// Connect, create tables, and start the batcher task.
    pub async fn start(
        p: &Pipeline,
        cfg: &SqlConfig,
        dead_letters: DeadLetterWriter,
        cancel: CancellationToken,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<anyhow::Result<()>>)> {
        let mut tables = Vec::new();
        let mut routes = BTreeMap::new();
        for (name, r) in &p.routes {
            if let Some(t) = &r.table {
                routes.insert(name.clone(), tables.len());
                tables.push(TableSpec::new(t));
            }
        }
        let db = connect(p, cfg, &mut tables, &cancel).await?;
        let lanes = match db {
            Db::Pg(_) => cfg.max_connections.max(1) as usize,
            Db::Lite(_) => 1,
        };
        let (tx, rx) = mpsc::channel(cfg.batch_rows.max(64));
        let sink = SqlSink {
            tx,
            db: db.clone(),
            tables: Arc::new(tables),
            routes: Arc::new(routes),
            exactly_once: cfg.exactly_once,
            group: p.source.group_id.as_str().into(),
            offsets_table: cfg.offsets_table.as_str().into(),
            component: format!("pipeline `{}`: database", p.name).into(),
        };
        let batcher = Batcher {
            pipeline: p.name.clone(),
            lanes,
            component: sink.component.to_string(),
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
        let task = tokio::spawn(Arc::new(batcher).run(rx));
        Ok((sink, task))
    }

    /// Queue a job (waits when the batcher is behind: backpressure).
    pub async fn submit(&self, job: SqlJob) -> anyhow::Result<()> {
        self.tx
            .send(job)
            .await
            .map_err(|_| anyhow::anyhow!("SQL batcher stopped"))
    }

    /// Exactly-once mode: claim a partition that was just assigned, with
    /// `first` the offset the consumer is at. Retried with backoff while
    /// the database is unavailable; `None` means sluice is shutting down.
    pub async fn claim(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
        cancel: &CancellationToken,
    ) -> Option<Claim> {
        let mut attempt = 0u32;
        loop {
            match self
                .db
                .claim(&self.offsets_table, &self.group, topic, partition, first)
                .await
            {
                Ok(c) => {
                    if attempt > 0 {
                        tracing::info!(
                            topic,
                            partition,
                            "database available again; partition claimed"
                        );
                    }
                    return Some(c);
                }
                Err(e) => {
                    attempt += 1;
                    if attempt == 1 {
                        tracing::warn!(topic, partition, error = %e, "database unavailable: cannot claim the partition; retrying");
                    }
                    if !pause(attempt, cancel).await {
                        return None;
                    }
                }
            }
        }
    }
}

/// Connect and create the tables, waiting while the database is
/// unavailable. Only a URL that cannot work, or shutdown, ends the wait.
async fn connect(
    p: &Pipeline,
    cfg: &SqlConfig,
    tables: &mut [TableSpec],
    cancel: &CancellationToken,
) -> anyhow::Result<Db> {
    let mut attempt = 0u32;
    loop {
        let tried = async {
            let db = Db::connect(cfg.url.as_str(), cfg.max_connections).await?;
            db.prepare(
                tables,
                cfg.exactly_once.then_some(cfg.offsets_table.as_str()),
            )
            .await?;
            Ok::<_, sqlx::Error>(db)
        }
        .await;
        let e = match tried {
            Ok(db) => {
                if attempt > 0 {
                    crate::metrics::ready(&format!("pipeline `{}`: database", p.name));
                    tracing::info!(pipeline = %p.name, "database available again");
                }
                return Ok(db);
            }
            Err(e @ sqlx::Error::Configuration(_)) => {
                return Err(anyhow::Error::from(e))
                    .with_context(|| format!("sql.url: cannot use {}", cfg.url));
            }
            // The server answered but TLS could not be had as `sslmode`
            // asks: waiting will not change that, and falling back to
            // plaintext is exactly what `sslmode=require` forbids.
            Err(e @ sqlx::Error::Tls(_)) => {
                return Err(anyhow::Error::from(e)).with_context(|| {
                    format!(
                        "sql.url: no TLS connection to {} as its sslmode requires",
                        cfg.url
                    )
                });
            }
            Err(e) => e,
        };
        attempt += 1;
        crate::metrics::not_ready(
            &format!("pipeline `{}`: database", p.name),
            format!("unavailable: {e}"),
        );
        if attempt == 1 {
            tracing::warn!(pipeline = %p.name, url = %cfg.url, error = %e, "database unavailable; waiting for it");
        }
        if !pause(attempt, cancel).await {
            anyhow::bail!(
                "shut down while waiting for the database at {}: {e}",
                cfg.url
            );
        }
    }
}

/// Back off before retry number `attempt` (100 ms doubling to 10 s);
/// `false` when sluice shuts down first.
async fn pause(attempt: u32, cancel: &CancellationToken) -> bool {
    let delay = Duration::from_millis(100)
        .saturating_mul(2u32.saturating_pow(attempt.min(7)))
        .min(Duration::from_secs(10));
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = cancel.cancelled() => false,
    }
}

struct Batcher {
    pipeline: String,
    /// How many batches may be written at once, each on its own connection.
    lanes: usize,
    /// How `/readyz` names this pipeline's database.
    component: String,
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

/// Most jobs the batcher takes from its channel at once.
const INTAKE: usize = 256;

/// A lane's batch being filled, and whether its previous batch is still
/// being written.
#[derive(Default)]
struct Lane {
    filling: Vec<SqlJob>,
    rows: usize,
    /// When the filling batch must flush by.
    deadline: Option<Instant>,
    writing: bool,
}

impl Batcher {
    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<SqlJob>) -> anyhow::Result<()> {
        let mut lanes: Vec<Lane> = (0..self.lanes).map(|_| Lane::default()).collect();
        // Dropping the set (on a fatal error) aborts the other writes: their
        // transactions roll back and their records stay unfinished.
        let mut writing = tokio::task::JoinSet::new();
        let mut incoming = Vec::with_capacity(INTAKE);
        let mut open = true;
        loop {
            let now = Instant::now();
            for (i, lane) in lanes.iter_mut().enumerate() {
                let due = lane.rows >= self.batch_rows
                    || lane.deadline.is_some_and(|d| now >= d)
                    || !open;
                if !lane.writing && !lane.filling.is_empty() && due {
                    lane.writing = true;
                    lane.rows = 0;
                    lane.deadline = None;
                    let batch = std::mem::take(&mut lane.filling);
                    let this = Arc::clone(&self);
                    writing.spawn(async move { (i, this.flush(batch).await) });
                }
            }
            if !open && writing.is_empty() {
                return Ok(());
            }
            // A full batch waiting behind its lane's write stops intake:
            // the channel, then the pipeline, back up.
            let fullest = lanes.iter().map(|l| l.rows).max().unwrap_or(0);
            let full = fullest >= self.batch_rows;
            // No more than the fullest lane has room for, so a batch
            // flushes at `batch_rows` and not past it.
            let room = (self.batch_rows - fullest.min(self.batch_rows)).clamp(1, INTAKE);
            let deadline = lanes
                .iter()
                .filter(|l| !l.writing)
                .filter_map(|l| l.deadline)
                .min();
            tokio::select! {
                // Jobs are taken in bulk: the loop's clock read, lane checks
                // and timer are paid per handful of records, not per record.
                n = rx.recv_many(&mut incoming, room), if open && !full => {
                    if n == 0 {
                        open = false;
                    }
                    for job in incoming.drain(..) {
                        let lane = &mut lanes[self.lane_of(&job)];
                        if lane.filling.is_empty() {
                            lane.deadline = Some(Instant::now() + self.batch_age);
                            lane.filling.reserve(self.batch_rows.min(4096));
                        }
                        lane.rows += job.rows.len().max(1);
                        lane.filling.push(job);
                    }
                }
                Some(done) = writing.join_next(), if !writing.is_empty() => {
                    let (i, done) = done.context("SQL batch writer panicked")?;
                    done?;
                    lanes[i].writing = false;
                }
                _ = sleep_until(deadline) => {}
            }
        }
    }

    /// The lane of a job's partition: always the same one, so a
    /// partition's batches are written one after another; a topic's
    /// partitions take the lanes in turn.
    fn lane_of(&self, job: &SqlJob) -> usize {
        let r = &job.work.record;
        // FNV-1a of the topic: any fixed spread will do, and this one is
        // cheap enough to run per record.
        let topic = r.topic.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (topic.wrapping_add(r.partition as u64) % self.lanes as u64) as usize
    }

    /// Write one batch and hand its records back. Only a fatal problem (a
    /// dead-letter write that failed) is an error.
    async fn flush(&self, mut jobs: Vec<SqlJob>) -> anyhow::Result<()> {
        for job in &mut jobs {
            if let Some(acks) = job.before_commit.take() {
                acks.wait()
                    .await
                    .map_err(|e| anyhow::anyhow!("fatal produce error: {e}"))?;
            }
        }
        let mut attempt = 0u32;
        let mut isolate = false;
        loop {
            // Records this member may no longer write go back unwritten.
            // (Jobs are moved only when some must go: they are large.)
            if !jobs.iter().all(|j| self.may_write(&j.work)) {
                let (keep, gone): (Vec<SqlJob>, Vec<SqlJob>) =
                    jobs.into_iter().partition(|j| self.may_write(&j.work));
                jobs = keep;
                abandon(gone);
            }
            if jobs.is_empty() {
                return Ok(());
            }
            let (per_table, ids) = self.rows(&jobs);
            let (offsets, trackers) = self.offsets(&jobs);
            let written = self
                .db
                .write(&per_table, &offsets, &self.offsets_table, isolate)
                .await;
            let (tx, bad) = match written {
                Ok(Written::Ready(tx, bad)) => (tx, bad),
                Ok(Written::Fenced(lost)) => {
                    for &i in &lost {
                        fenced(trackers[i], &offsets[i]);
                    }
                    continue;
                }
                Err(e) if !isolate && db::is_row_error(&e) => {
                    tracing::warn!(error = %e, rows = ids.len(), "batch refused; finding the refused rows");
                    isolate = true;
                    continue;
                }
                Err(e) => {
                    self.backoff(&mut attempt, &e).await?;
                    continue;
                }
            };
            // Dead letters for refused rows are acknowledged before the
            // commit, so a crash in between duplicates them rather than
            // losing them.
            self.dead_letter_rows(&jobs, &ids, &bad).await?;
            let committed = match tx.commit().await {
                Ok(()) => true,
                Err(e) if self.exactly_once => {
                    // The commit may have happened: the offsets table says.
                    tracing::warn!(error = %e, "commit outcome unknown; reading the offsets table");
                    self.committed(&offsets).await?
                }
                Err(e) => {
                    self.backoff(&mut attempt, &e).await?;
                    false
                }
            };
            if committed {
                if attempt > 0 {
                    crate::metrics::ready(&self.component);
                }
                for t in &per_table {
                    let refused = bad
                        .iter()
                        .filter(|(id, _)| t.rows.iter().any(|(r, _)| r == id))
                        .count();
                    crate::metrics::sql_rows_written(&self.pipeline, &t.spec.name)
                        .increment((t.rows.len() - refused) as u64);
                }
                for (o, t) in offsets.iter().zip(&trackers) {
                    t.set_claim(Claim {
                        generation: o.claim.generation,
                        next: o.next,
                    });
                }
                break;
            }
        }
        for job in jobs {
            let _ = job.done.send(job.work);
        }
        Ok(())
    }

    /// Whether this member may still write `work`: its partition is not
    /// revoked or halted at or before it and, in exactly-once mode, it holds
    /// a claim on the partition.
    fn may_write(&self, work: &Work) -> bool {
        let t = &work.tracker;
        !t.is_revoked() && !t.halts(work.record.offset) && (!self.exactly_once || t.has_claim())
    }

    /// Rows per table, in the order they were read, and for each row id
    /// its (job, row) position.
    fn rows<'a>(&'a self, jobs: &'a [SqlJob]) -> (Vec<TableRows<'a>>, Vec<(usize, usize)>) {
        let mut per_table: Vec<TableRows<'_>> = self
            .tables
            .iter()
            .map(|spec| TableRows {
                spec,
                rows: Vec::new(),
            })
            .collect();
        let mut ids: Vec<(usize, usize)> = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            for (r, row) in job.rows.iter().enumerate() {
                per_table[row.table].rows.push((ids.len(), &row.row));
                ids.push((j, r));
            }
        }
        (per_table, ids)
    }

    /// Exactly-once: each partition's offsets row moves from its claim to
    /// one past the batch's last record of it. Records reach the batcher
    /// in partition order and a halt drops every later one, so that is the
    /// end of the contiguous finished prefix.
    /// With each write, the tracker of its partition.
    fn offsets<'a>(
        &'a self,
        jobs: &'a [SqlJob],
    ) -> (Vec<OffsetWrite<'a>>, Vec<&'a PartitionTracker>) {
        let mut next: BTreeMap<(&str, i32), (OffsetWrite<'a>, &'a PartitionTracker)> =
            BTreeMap::new();
        if self.exactly_once {
            for job in jobs {
                let r = &job.work.record;
                // The claim is read once per partition per batch.
                let (w, _) = match next.entry((r.topic.as_str(), r.partition)) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        let Some(claim) = job.work.tracker.claim() else {
                            continue;
                        };
                        v.insert((
                            OffsetWrite {
                                group: &self.group,
                                topic: r.topic.as_str(),
                                partition: r.partition,
                                claim,
                                next: claim.next,
                            },
                            &job.work.tracker,
                        ))
                    }
                };
                w.next = w.next.max(r.offset + 1);
            }
        }
        next.into_values().unzip()
    }

    /// Exactly-once, after a commit that failed with an unknown outcome:
    /// whether it happened, from the offsets rows it would have moved. An
    /// unreachable database is waited for.
    async fn committed(&self, offsets: &[OffsetWrite<'_>]) -> anyhow::Result<bool> {
        let mut attempt = 0u32;
        'read: loop {
            let mut all = true;
            for o in offsets {
                match self
                    .db
                    .read_offsets(&self.offsets_table, o.group, o.topic, o.partition)
                    .await
                {
                    Ok(Some((next, generation)))
                        if next == o.next && generation == o.claim.generation => {}
                    Ok(_) => all = false,
                    Err(e) => {
                        self.backoff(&mut attempt, &e).await?;
                        continue 'read;
                    }
                }
            }
            tracing::info!(committed = all, "commit outcome read back");
            return Ok(all);
        }
    }

    async fn dead_letter_rows(
        &self,
        jobs: &[SqlJob],
        ids: &[(usize, usize)],
        bad: &[(usize, String)],
    ) -> anyhow::Result<()> {
        let acks = Acks::new();
        for (id, error) in bad {
            let (j, r) = ids[*id];
            let job = &jobs[j];
            let output = &job.work.routed[job.rows[r].output];
            let table = &self.tables[job.rows[r].table].name;
            let f = Failure::host(FailureKind::Sql, format!("table {table}: {error}"));
            tracing::warn!(
                topic = %job.work.record.topic, partition = job.work.record.partition,
                offset = job.work.record.offset, table = %table, error = %error, "row refused; dead-lettering it"
            );
            self.dead_letters
                .send(&job.work, Payload::output(output), &f, &acks)
                .await?;
        }
        acks.seal();
        acks.wait()
            .await
            .map_err(|e| anyhow::anyhow!("fatal produce error on dead letter: {e}"))?;
        Ok(())
    }

    /// Wait before retrying a failed write; gives up only on shutdown.
    async fn backoff(&self, attempt: &mut u32, e: &sqlx::Error) -> anyhow::Result<()> {
        *attempt += 1;
        crate::metrics::not_ready(&self.component, format!("writes failing, retrying: {e}"));
        tracing::warn!(error = %e, attempt = *attempt, "database write failed; retrying");
        if pause(*attempt, &self.cancel).await {
            Ok(())
        } else {
            anyhow::bail!("shutting down with an unwritten batch (it will be read again): {e}")
        }
    }
}

/// Another member claimed the partition: halt it here, so its records go
/// back unwritten; its new owner reads them again.
fn fenced(t: &PartitionTracker, o: &OffsetWrite<'_>) {
    tracing::warn!(
        topic = %o.topic, partition = o.partition, generation = o.claim.generation,
        "another member claimed the partition; dropping its unwritten records"
    );
    t.halt(o.claim.next);
}

/// Hand records back unwritten: they are neither written nor finished.
fn abandon(jobs: Vec<SqlJob>) {
    for mut job in jobs {
        job.work.fate = Fate::Abandoned;
        let _ = job.done.send(job.work);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
