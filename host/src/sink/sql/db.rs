//! The two databases a SQL route can write to, PostgreSQL and SQLite, behind
//! one small interface: create tables, write a batch in one transaction
//! (optionally with the consumer's offsets), isolate bad rows.
//!
//! How a batch is written:
//! - PostgreSQL, a table without a key: one `COPY … FROM STDIN` of the
//!   batch's encoded rows (binary, or text when a column's type needs it;
//!   see [`super::row`]).
//! - PostgreSQL, a keyed table: `COPY` into a temporary staging table (one
//!   per connection and table, emptied at commit), then
//!   `INSERT … SELECT DISTINCT ON (key) … ON CONFLICT`, keeping the last row
//!   of a key with `update` and the first with `ignore`: what writing the
//!   rows one at a time would store.
//! - SQLite: multi-row `INSERT`s of a fixed size, so one prepared statement
//!   serves the whole batch, then single-row ones for the rest, in order.
//!
//! Promise: a batch and its offsets commit together or not at all, and the
//! offsets are written only by compare-and-set against the writer's
//! [`Claim`] (generation and expected next offset), so a member that lost a
//! partition writes nothing for it. In isolation mode rows run under
//! savepoints (PostgreSQL bisects the batch, halving a refused `COPY` until
//! the refused rows stand alone; SQLite goes row by row), so a row the
//! database rejects is rolled back alone and reported with the database's
//! error, and the other rows still commit. [`is_row_error`] tells such a refusal from a database state
//! that passes (read-only, full, locked, a deadlock, a lost connection).

use std::hash::{Hash, Hasher};

use std::ops::Range;
use std::str::FromStr;

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions,
};
use sqlx::{Postgres, Sqlite, Transaction};

use super::row::{self, Format, TableSpec, Wire};
use crate::config::sql::{ColumnType, OnConflict};
use crate::source::offsets::Claim;

/// Most bind parameters in one SQLite statement (it accepts 32766).
const LITE_MAX_PARAMS: usize = 30_000;
/// Most rows in one SQLite statement.
const LITE_MAX_ROWS: usize = 500;

/// A connection pool to either database.
#[derive(Clone, Debug)]
pub enum Db {
    /// PostgreSQL, for `postgres://` and `postgresql://` URLs.
    Pg(PgPool),
    /// SQLite, for `sqlite:` URLs: one connection, since SQLite has one writer.
    Lite(SqlitePool),
}

/// An open write transaction.
pub enum Tx {
    /// A PostgreSQL transaction.
    Pg(Transaction<'static, Postgres>),
    /// A SQLite transaction.
    Lite(Transaction<'static, Sqlite>),
}

/// One table's rows in a batch. `rows[i].0` is an opaque id the caller uses
/// to find the row's record again.
pub struct TableRows<'a> {
    /// The table the rows go to.
    pub spec: &'a TableSpec,
    /// The rows, in the order they were read: the caller's id, and the row
    /// as [`TableSpec::map`] encoded it.
    pub rows: Vec<(usize, &'a [u8])>,
}

/// One partition's offsets row, moved with a batch from `claim.next` to
/// `next`, provided it still holds `claim`.
#[derive(Debug, Clone, Copy)]
pub struct OffsetWrite<'a> {
    /// The consumer group whose offsets these are.
    pub group: &'a str,
    /// The source topic.
    pub topic: &'a str,
    /// The source partition.
    pub partition: i32,
    /// The writer's claim, which the row must still hold for the write to
    /// happen.
    pub claim: Claim,
    /// The offset to consume next once the batch is committed.
    pub next: i64,
}

/// What writing a batch came to.
pub enum Written {
    /// Written and not yet committed, with the rows the database refused
    /// (isolation mode only), by id with its error.
    Ready(Tx, Vec<(usize, String)>),
    /// These offsets rows (indexes into the offsets given) no longer hold
    /// the writer's claim: another member claimed the partition since.
    /// Nothing was written.
    Fenced(Vec<usize>),
}

/// Whether a database error belongs to the row: a constraint, type or
/// value the database refuses, which the same row would meet again. Every
/// other error is the database's state (read-only, disk full, a deadlock
/// or serialization failure, a lock or statement timeout, SQLite busy or
/// locked, a lost connection), which passes, so the write is retried.
pub fn is_row_error(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    let Some(code) = d.code() else {
        return false;
    };
    if d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        // SQLSTATE classes 22 (data exception) and 23 (integrity
        // constraint violation), and 42804 (datatype mismatch).
        code.starts_with("22") || code.starts_with("23") || code == "42804"
    } else {
        // SQLite's primary result code is the low byte of the extended
        // one: 18 TOOBIG, 19 CONSTRAINT, 20 MISMATCH, 25 RANGE.
        code.parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
    }
}

impl Tx {
    /// Commit: the batch's rows and its offsets become durable together.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Pg(t) => t.commit().await,
            Tx::Lite(t) => t.commit().await,
        }
    }
}

fn quote(ident: &str) -> String {
    ident
        .split('.')
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(".")
}

fn insert_prefix(spec: &TableSpec) -> String {
    format!("INSERT INTO {} ({}) ", quote(&spec.name), column_list(spec))
}

/// The table's columns, quoted, comma-separated.
fn column_list(spec: &TableSpec) -> String {
    let cols: Vec<String> = spec.columns.iter().map(|c| quote(&c.name)).collect();
    cols.join(", ")
}

/// The table's key columns, quoted, comma-separated.
fn key_list(spec: &TableSpec) -> String {
    let keys: Vec<String> = spec
        .key
        .iter()
        .map(|&i| quote(&spec.columns[i].name))
        .collect();
    keys.join(", ")
}

fn conflict_suffix(spec: &TableSpec) -> String {
    if spec.key.is_empty() {
        return String::new();
    }
    let keys = key_list(spec);
    let others: Vec<String> = spec
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !spec.key.contains(i))
        .map(|(_, c)| format!("{0} = excluded.{0}", quote(&c.name)))
        .collect();
    match spec.on_conflict {
        OnConflict::Update if !others.is_empty() => {
            format!(" ON CONFLICT ({keys}) DO UPDATE SET {}", others.join(", "))
        }
        _ => format!(" ON CONFLICT ({keys}) DO NOTHING"),
    }
}

fn create_sql(spec: &TableSpec, pg: bool) -> String {
    let mut cols: Vec<String> = spec
        .columns
        .iter()
        .map(|c| {
            let ty = match (c.ty, pg) {
                (ColumnType::Text, _) => "TEXT",
                (ColumnType::Integer, true) => "BIGINT",
                (ColumnType::Integer, false) => "INTEGER",
                (ColumnType::Float, true) => "DOUBLE PRECISION",
                (ColumnType::Float, false) => "REAL",
                (ColumnType::Boolean, true) => "BOOLEAN",
                (ColumnType::Boolean, false) => "INTEGER",
                (ColumnType::Json, true) => "JSONB",
                (ColumnType::Json, false) => "TEXT",
            };
            let null = if c.nullable { "" } else { " NOT NULL" };
            format!("{} {ty}{null}", quote(&c.name))
        })
        .collect();
    if !spec.key.is_empty() {
        cols.push(format!("PRIMARY KEY ({})", key_list(spec)));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote(&spec.name),
        cols.join(", ")
    )
}

fn offsets_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (group_id TEXT NOT NULL, topic TEXT NOT NULL, \
         \"partition\" INTEGER NOT NULL, next_offset BIGINT NOT NULL, \
         generation BIGINT NOT NULL DEFAULT 0, \
         PRIMARY KEY (group_id, topic, \"partition\"))",
        quote(table)
    )
}

/// Claim a partition's row: create it at `$4` or bump its generation.
fn offsets_claim(table: &str) -> String {
    format!(
        "INSERT INTO {} AS o (group_id, topic, \"partition\", next_offset, generation) \
         VALUES ($1, $2, $3, $4, 1) \
         ON CONFLICT (group_id, topic, \"partition\") DO UPDATE SET generation = o.generation + 1 \
         RETURNING next_offset, generation",
        quote(table)
    )
}

/// Move a row to `$1`, only if it still holds generation `$5` and offset `$6`.
fn offsets_cas(table: &str) -> String {
    format!(
        "UPDATE {} SET next_offset = $1 WHERE group_id = $2 AND topic = $3 \
         AND \"partition\" = $4 AND generation = $5 AND next_offset = $6",
        quote(table)
    )
}

fn offsets_read(table: &str) -> String {
    format!(
        "SELECT next_offset, generation FROM {} WHERE group_id = $1 AND topic = $2 AND \"partition\" = $3",
        quote(table)
    )
}

/// The temporary staging table of a keyed table, per connection.
fn stage_name(spec: &TableSpec) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.name.hash(&mut h);
    format!("sluice_stage_{:016x}", h.finish())
}

/// `COPY` into the table, or for a keyed table into its staging table
/// with each row's position in `sluice_ord`.
fn copy_sql(spec: &TableSpec) -> String {
    let format = match spec.format {
        Format::Binary => "binary",
        Format::Text => "text",
    };
    if spec.key.is_empty() {
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT {format})",
            quote(&spec.name),
            column_list(spec)
        )
    } else {
        format!(
            "COPY pg_temp.{} ({}, sluice_ord) FROM STDIN (FORMAT {format})",
            quote(&stage_name(spec)),
            column_list(spec)
        )
    }
}

/// The statements that make a keyed table's staging table: its columns'
/// types without its constraints, plus `sluice_ord`.
fn stage_ddl(spec: &TableSpec) -> [String; 2] {
    let stage = quote(&stage_name(spec));
    [
        format!(
            "CREATE TEMP TABLE {stage} ON COMMIT DELETE ROWS AS SELECT {} FROM {} WITH NO DATA",
            column_list(spec),
            quote(&spec.name)
        ),
        format!("ALTER TABLE pg_temp.{stage} ADD COLUMN sluice_ord BIGINT"),
    ]
}

/// Move staged rows `$1 <= sluice_ord < $2` into a keyed table, one per key:
/// the last with `update`, the first with `ignore`.
fn upsert_sql(spec: &TableSpec) -> String {
    let order = match spec.on_conflict {
        OnConflict::Update => "DESC",
        OnConflict::Ignore => "ASC",
    };
    format!(
        "{}SELECT DISTINCT ON ({keys}) {} FROM pg_temp.{} \
         WHERE sluice_ord >= $1 AND sluice_ord < $2 ORDER BY {keys}, sluice_ord {order}{}",
        insert_prefix(spec),
        column_list(spec),
        quote(&stage_name(spec)),
        conflict_suffix(spec),
        keys = key_list(spec),
    )
}

/// A multi-row SQLite `INSERT` of `rows` rows.
fn lite_insert(spec: &TableSpec, rows: usize) -> String {
    let one = format!("({})", vec!["?"; spec.columns.len()].join(", "));
    format!(
        "{}VALUES {}{}",
        insert_prefix(spec),
        vec![one; rows].join(", "),
        conflict_suffix(spec)
    )
}

/// Bind a row's values, decoded from its binary tuple.
fn bind_row<'q>(
    mut q: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
    spec: &TableSpec,
    row: &'q [u8],
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
    for (c, f) in spec.columns.iter().zip(row::fields(row)) {
        let eight = |b: &[u8]| <[u8; 8]>::try_from(b).unwrap_or_default();
        q = match (f, c.wire) {
            (None, _) => q.bind(None::<i64>),
            (Some(b), Wire::Int8) => q.bind(i64::from_be_bytes(eight(b))),
            (Some(b), Wire::Float8) => q.bind(f64::from_bits(u64::from_be_bytes(eight(b)))),
            (Some(b), Wire::Bool) => q.bind(b == [1]),
            (Some(b), Wire::Text | Wire::Jsonb) => {
                q.bind(std::str::from_utf8(b).unwrap_or_default())
            }
        };
    }
    q
}

/// Move each partition's offsets row by compare-and-set; the indexes of
/// the rows that no longer hold the writer's claim.
macro_rules! move_offsets {
    ($conn:expr, $offsets:expr, $offsets_table:expr) => {{
        let mut fenced = Vec::new();
        if !$offsets.is_empty() {
            let sql = offsets_cas($offsets_table);
            for (i, o) in $offsets.iter().enumerate() {
                let done = sqlx::query(&sql)
                    .bind(o.next)
                    .bind(o.group)
                    .bind(o.topic)
                    .bind(o.partition)
                    .bind(o.claim.generation)
                    .bind(o.claim.next)
                    .execute(&mut *$conn)
                    .await?;
                if done.rows_affected() != 1 {
                    fenced.push(i);
                }
            }
        }
        fenced
    }};
}

/// Write each table's rows to PostgreSQL; in isolation mode, the rows it
/// refuses, by id with the database's error.
async fn write_pg(
    conn: &mut PgConnection,
    tables: &[TableRows<'_>],
    isolate: bool,
) -> Result<Vec<(usize, String)>, sqlx::Error> {
    let mut bad = Vec::new();
    for t in tables.iter().filter(|t| !t.rows.is_empty()) {
        if !t.spec.key.is_empty() {
            let missing: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NULL")
                .bind(format!("pg_temp.{}", quote(&stage_name(t.spec))))
                .fetch_one(&mut *conn)
                .await?;
            if missing {
                for ddl in stage_ddl(t.spec) {
                    sqlx::query(&ddl).execute(&mut *conn).await?;
                }
            }
        }
        if !isolate {
            copy_rows(conn, t, 0..t.rows.len()).await?;
            continue;
        }
        // Bisect: a refused range is rolled back and split, first half
        // first, so rows keep their order, until refused rows stand alone.
        let mut todo: Vec<Range<usize>> = Vec::new();
        todo.push(0..t.rows.len());
        while let Some(r) = todo.pop() {
            sqlx::query("SAVEPOINT sluice_rows")
                .execute(&mut *conn)
                .await?;
            match copy_rows(conn, t, r.clone()).await {
                Ok(()) => {}
                Err(e) if is_row_error(&e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT sluice_rows")
                        .execute(&mut *conn)
                        .await?;
                    if r.len() == 1 {
                        bad.push((t.rows[r.start].0, e.to_string()));
                    } else {
                        let mid = r.start + r.len() / 2;
                        todo.push(mid..r.end);
                        todo.push(r.start..mid);
                    }
                }
                Err(e) => return Err(e),
            }
            sqlx::query("RELEASE SAVEPOINT sluice_rows")
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(bad)
}

/// `COPY` rows `range` of a table (for a keyed table: into its staging
/// table, then on into the table).
async fn copy_rows(
    conn: &mut PgConnection,
    t: &TableRows<'_>,
    range: Range<usize>,
) -> Result<(), sqlx::Error> {
    let spec = t.spec;
    let keyed = !spec.key.is_empty();
    let rows = &t.rows[range.clone()];
    let size: usize = rows.iter().map(|(_, r)| r.len() + 16).sum();
    let mut buf = Vec::with_capacity(size + 32);
    if spec.format == Format::Binary {
        buf.extend_from_slice(row::BINARY_HEADER);
    }
    for (i, (_, r)) in rows.iter().enumerate() {
        let ord = (range.start + i) as i64;
        match (keyed, spec.format) {
            (false, _) => buf.extend_from_slice(r),
            (true, Format::Binary) => row::put_binary_with_ord(&mut buf, r, ord),
            (true, Format::Text) => row::put_text_with_ord(&mut buf, r, ord),
        }
    }
    if spec.format == Format::Binary {
        buf.extend_from_slice(row::BINARY_TRAILER);
    }
    let mut copy = conn.copy_in_raw(&copy_sql(spec)).await?;
    copy.send(buf).await?;
    copy.finish().await?;
    if keyed {
        sqlx::query(&upsert_sql(spec))
            .bind(range.start as i64)
            .bind(range.end as i64)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Write each table's rows to SQLite, in order; in isolation mode row by
/// row, each under a savepoint, returning the refused rows.
async fn write_lite(
    conn: &mut SqliteConnection,
    tables: &[TableRows<'_>],
    isolate: bool,
) -> Result<Vec<(usize, String)>, sqlx::Error> {
    let mut bad = Vec::new();
    for t in tables.iter().filter(|t| !t.rows.is_empty()) {
        let spec = t.spec;
        let one = lite_insert(spec, 1);
        if !isolate {
            let per = (LITE_MAX_PARAMS / spec.columns.len().max(1)).clamp(1, LITE_MAX_ROWS);
            let many = lite_insert(spec, per);
            let mut chunks = t.rows.chunks_exact(per);
            for chunk in &mut chunks {
                let mut q = sqlx::query(&many);
                for (_, r) in chunk {
                    q = bind_row(q, spec, r);
                }
                q.execute(&mut *conn).await?;
            }
            for (_, r) in chunks.remainder() {
                bind_row(sqlx::query(&one), spec, r)
                    .execute(&mut *conn)
                    .await?;
            }
            continue;
        }
        for (id, r) in &t.rows {
            sqlx::query("SAVEPOINT sluice_row")
                .execute(&mut *conn)
                .await?;
            match bind_row(sqlx::query(&one), spec, r)
                .execute(&mut *conn)
                .await
            {
                Ok(_) => {}
                Err(e) if is_row_error(&e) => {
                    bad.push((*id, e.to_string()));
                    sqlx::query("ROLLBACK TO SAVEPOINT sluice_row")
                        .execute(&mut *conn)
                        .await?;
                }
                Err(e) => return Err(e),
            }
            sqlx::query("RELEASE SAVEPOINT sluice_row")
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(bad)
}

impl Db {
    /// Connect, creating a SQLite file when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, sqlx::Error> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(std::time::Duration::from_secs(30));
            // SQLite has one writer; more connections only add lock waits.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await?;
            Ok(Db::Lite(pool))
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect(url)
                .await?;
            Ok(Db::Pg(pool))
        }
    }

    /// Create tables that ask for it, and the offsets table when given; on
    /// PostgreSQL, fit each table's row encoding to its column types.
    pub async fn prepare(
        &self,
        specs: &mut [TableSpec],
        offsets_table: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let mut stmts: Vec<String> = specs
            .iter()
            .filter(|s| s.create)
            .map(|s| create_sql(s, matches!(self, Db::Pg(_))))
            .collect();
        if let Some(t) = offsets_table {
            stmts.push(offsets_ddl(t));
        }
        for s in stmts {
            match self {
                Db::Pg(p) => sqlx::query(&s).execute(p).await.map(|_| ())?,
                Db::Lite(p) => sqlx::query(&s).execute(p).await.map(|_| ())?,
            }
        }
        // Offsets tables made before claims existed lack the generation.
        if let Some(t) = offsets_table {
            let add = format!(
                "ALTER TABLE {} ADD COLUMN generation BIGINT NOT NULL DEFAULT 0",
                quote(t)
            );
            match self {
                Db::Pg(p) => {
                    let add = add.replace("ADD COLUMN", "ADD COLUMN IF NOT EXISTS");
                    sqlx::query(&add).execute(p).await?;
                }
                Db::Lite(p) => {
                    let has: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM pragma_table_info($1) WHERE name = 'generation'",
                    )
                    .bind(t)
                    .fetch_one(p)
                    .await?;
                    if has == 0 {
                        sqlx::query(&add).execute(p).await?;
                    }
                }
            }
        }
        if let Db::Pg(p) = self {
            for spec in specs.iter_mut() {
                let types: Vec<(String, String)> = sqlx::query_as(
                    "SELECT a.attname::text, t.typname::text FROM pg_attribute a \
                     JOIN pg_type t ON t.oid = a.atttypid \
                     WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                )
                .bind(quote(&spec.name))
                .fetch_all(p)
                .await?;
                spec.adopt(&types);
            }
        }
        Ok(())
    }

    /// Claim a partition for this member: bump its row's generation (or
    /// create the row at `first`, the offset the consumer is at) and
    /// return the claim, whose `next` is where reading must resume.
    pub async fn claim(
        &self,
        offsets_table: &str,
        group: &str,
        topic: &str,
        partition: i32,
        first: i64,
    ) -> Result<Claim, sqlx::Error> {
        let sql = offsets_claim(offsets_table);
        let (next, generation): (i64, i64) = match self {
            Db::Pg(p) => {
                sqlx::query_as(&sql)
                    .bind(group)
                    .bind(topic)
                    .bind(partition)
                    .bind(first)
                    .fetch_one(p)
                    .await?
            }
            Db::Lite(p) => {
                sqlx::query_as(&sql)
                    .bind(group)
                    .bind(topic)
                    .bind(partition)
                    .bind(first)
                    .fetch_one(p)
                    .await?
            }
        };
        Ok(Claim { generation, next })
    }

    /// A partition's offsets row as it is now: (next offset, generation).
    pub async fn read_offsets(
        &self,
        offsets_table: &str,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, sqlx::Error> {
        let sql = offsets_read(offsets_table);
        match self {
            Db::Pg(p) => {
                sqlx::query_as(&sql)
                    .bind(group)
                    .bind(topic)
                    .bind(partition)
                    .fetch_optional(p)
                    .await
            }
            Db::Lite(p) => {
                sqlx::query_as(&sql)
                    .bind(group)
                    .bind(topic)
                    .bind(partition)
                    .fetch_optional(p)
                    .await
            }
        }
    }

    /// Write a batch in a new transaction, without committing it: the
    /// offsets rows by compare-and-set first, then the rows. Outside
    /// isolation mode a refused row fails the whole call with an error for
    /// which [`is_row_error`] holds.
    pub async fn write(
        &self,
        tables: &[TableRows<'_>],
        offsets: &[OffsetWrite<'_>],
        offsets_table: &str,
        isolate: bool,
    ) -> Result<Written, sqlx::Error> {
        match self {
            Db::Pg(p) => {
                let mut tx = p.begin().await?;
                let fenced = move_offsets!(tx, offsets, offsets_table);
                if !fenced.is_empty() {
                    return Ok(Written::Fenced(fenced));
                }
                let bad = write_pg(&mut tx, tables, isolate).await?;
                Ok(Written::Ready(Tx::Pg(tx), bad))
            }
            Db::Lite(p) => {
                let mut tx = p.begin().await?;
                let fenced = move_offsets!(tx, offsets, offsets_table);
                if !fenced.is_empty() {
                    return Ok(Written::Fenced(fenced));
                }
                let bad = write_lite(&mut tx, tables, isolate).await?;
                Ok(Written::Ready(Tx::Lite(tx), bad))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sql::TableRoute;

    fn spec(extra: &str) -> TableSpec {
        let t: TableRoute = toml::from_str(&format!(
            "name = \"pages\"\n{extra}\n[columns]\nurl = {{ type = \"text\" }}\nwords = {{ type = \"integer\" }}"
        ))
        .unwrap();
        TableSpec::new(&t)
    }

    #[test]
    fn sql_text() {
        let s = spec("key = [\"url\"]");
        assert_eq!(
            insert_prefix(&s),
            "INSERT INTO \"pages\" (\"url\", \"words\") "
        );
        assert_eq!(
            conflict_suffix(&s),
            " ON CONFLICT (\"url\") DO UPDATE SET \"words\" = excluded.\"words\""
        );
        let s = spec("key = [\"url\"]\non_conflict = \"ignore\"");
        assert_eq!(conflict_suffix(&s), " ON CONFLICT (\"url\") DO NOTHING");
        assert_eq!(conflict_suffix(&spec("")), "");
        assert!(create_sql(&spec("key = [\"url\"]"), true).contains("\"url\" TEXT NOT NULL"));
        assert!(create_sql(&spec(""), false).contains("\"words\" INTEGER"));
        let s = spec("key = [\"url\"]");
        let stage = stage_name(&s);
        assert_eq!(
            upsert_sql(&s),
            format!(
                "INSERT INTO \"pages\" (\"url\", \"words\") SELECT DISTINCT ON (\"url\") \"url\", \"words\" \
                 FROM pg_temp.\"{stage}\" WHERE sluice_ord >= $1 AND sluice_ord < $2 \
                 ORDER BY \"url\", sluice_ord DESC ON CONFLICT (\"url\") DO UPDATE SET \"words\" = excluded.\"words\""
            )
        );
        assert_eq!(
            copy_sql(&s),
            format!(
                "COPY pg_temp.\"{stage}\" (\"url\", \"words\", sluice_ord) FROM STDIN (FORMAT binary)"
            )
        );
        assert_eq!(
            copy_sql(&spec("")),
            "COPY \"pages\" (\"url\", \"words\") FROM STDIN (FORMAT binary)"
        );
        assert!(
            upsert_sql(&spec("key = [\"url\"]\non_conflict = \"ignore\""))
                .contains("sluice_ord ASC ON CONFLICT (\"url\") DO NOTHING")
        );
    }

    /// SQLite writes a batch in fixed-size statements and then single
    /// rows, in order: a key repeated within and across statements ends
    /// as written one at a time (the last row with `update`, the first
    /// with `ignore`).
    #[tokio::test]
    async fn sqlite_batches_keep_one_at_a_time_semantics() {
        for (extra, want) in [("", 1204 - 1), ("on_conflict = \"ignore\"", 0)] {
            let db = Db::connect("sqlite::memory:", 1).await.unwrap();
            let mut specs = [spec(&format!("key = [\"url\"]\ncreate = true\n{extra}"))];
            db.prepare(&mut specs, None).await.unwrap();
            // 1204 rows of 7 keys: two full statements of 500 and 204 singles.
            let encoded: Vec<Vec<u8>> = (0..1204)
                .map(|i| {
                    specs[0]
                        .map(
                            format!(r#"{{"url":"k{}","words":{i}}}"#, i % 7).as_bytes(),
                            None,
                        )
                        .unwrap()
                })
                .collect();
            let tables = [TableRows {
                spec: &specs[0],
                rows: encoded
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i, &r[..]))
                    .collect(),
            }];
            let Written::Ready(tx, bad) = db.write(&tables, &[], "", false).await.unwrap() else {
                panic!("fenced without offsets");
            };
            assert!(bad.is_empty());
            tx.commit().await.unwrap();
            let Db::Lite(p) = &db else { unreachable!() };
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pages")
                .fetch_one(p)
                .await
                .unwrap();
            assert_eq!(n, 7);
            // Key k0 holds rows 0, 7, ..., 1197; the last is 1197 = 1204 - 7.
            let w: i64 = sqlx::query_scalar("SELECT words FROM pages WHERE url = 'k0'")
                .fetch_one(p)
                .await
                .unwrap();
            assert_eq!(w, if want == 0 { 0 } else { 1197 }, "{extra}");
        }
    }
}
