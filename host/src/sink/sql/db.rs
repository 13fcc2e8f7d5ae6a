//! The two databases a SQL route can write to, PostgreSQL and SQLite, behind
//! one small interface: create tables, write a batch in one transaction
//! (optionally with the consumer's offsets), isolate bad rows.
//!
//! Promise: a batch and its offsets commit together or not at all, and the
//! offsets are written only by compare-and-set against the writer's
//! [`Claim`] (generation and expected next offset), so a member that lost a
//! partition writes nothing for it. In isolation mode every row runs under
//! its own savepoint, so a row the database rejects is rolled back alone
//! and reported with the database's error, and the other rows still
//! commit. [`is_row_error`] tells such a refusal from a database state
//! that passes (read-only, full, locked, a deadlock, a lost connection).

use std::str::FromStr;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Sqlite, Transaction};

use super::row::{TableSpec, Value};
use crate::config::sql::{ColumnType, OnConflict};
use crate::source::offsets::Claim;

/// Most bind parameters in one statement (both databases accept more).
const MAX_PARAMS: usize = 30_000;

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
    /// The rows: the caller's id, and one value per column of `spec`, in order.
    pub rows: Vec<(usize, &'a [Value])>,
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
    let cols: Vec<String> = spec.columns.iter().map(|c| quote(&c.name)).collect();
    format!("INSERT INTO {} ({}) ", quote(&spec.name), cols.join(", "))
}

fn conflict_suffix(spec: &TableSpec) -> String {
    if spec.key.is_empty() {
        return String::new();
    }
    let keys: Vec<String> = spec
        .key
        .iter()
        .map(|&i| quote(&spec.columns[i].name))
        .collect();
    let others: Vec<String> = spec
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !spec.key.contains(i))
        .map(|(_, c)| format!("{0} = excluded.{0}", quote(&c.name)))
        .collect();
    match spec.on_conflict {
        OnConflict::Update if !others.is_empty() => {
            format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                keys.join(", "),
                others.join(", ")
            )
        }
        _ => format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")),
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
        let keys: Vec<String> = spec
            .key
            .iter()
            .map(|&i| quote(&spec.columns[i].name))
            .collect();
        cols.push(format!("PRIMARY KEY ({})", keys.join(", ")));
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

/// Bind one value with its column's type (NULLs need the type on Postgres).
macro_rules! bind {
    ($b:expr, $ty:expr, $v:expr) => {
        match ($v, $ty) {
            (Value::Null, ColumnType::Text) => $b.push_bind(None::<&str>),
            (Value::Null, ColumnType::Integer) => $b.push_bind(None::<i64>),
            (Value::Null, ColumnType::Float) => $b.push_bind(None::<f64>),
            (Value::Null, ColumnType::Boolean) => $b.push_bind(None::<bool>),
            (Value::Null, ColumnType::Json) => $b.push_bind(None::<Json<&serde_json::Value>>),
            (Value::Text(s), _) => $b.push_bind(s.as_str()),
            (Value::Int(i), _) => $b.push_bind(*i),
            (Value::Float(f), _) => $b.push_bind(*f),
            (Value::Bool(x), _) => $b.push_bind(*x),
            (Value::Json(j), _) => $b.push_bind(Json(j)),
        }
    };
}

/// The body of `write`, for one database type.
macro_rules! write_batch {
    ($DB:ty, $tx:expr, $tables:expr, $offsets:expr, $offsets_table:expr, $isolate:expr) => {{
        let tx = $tx;
        let mut bad: Vec<(usize, String)> = Vec::new();
        // The offsets first: a fenced batch writes nothing else.
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
                    .execute(&mut **tx)
                    .await?;
                if done.rows_affected() != 1 {
                    fenced.push(i);
                }
            }
        }
        if !fenced.is_empty() {
            return Ok(Written::Fenced(fenced));
        }
        for t in $tables {
            let spec = t.spec;
            if !$isolate {
                let per_stmt = (MAX_PARAMS / spec.columns.len().max(1)).max(1);
                for chunk in t.rows.chunks(per_stmt) {
                    let mut qb = QueryBuilder::<$DB>::new(insert_prefix(spec));
                    qb.push_values(chunk, |mut b, (_, row)| {
                        for (c, v) in spec.columns.iter().zip(row.iter()) {
                            bind!(b, c.ty, v);
                        }
                    });
                    qb.push(conflict_suffix(spec));
                    qb.build().execute(&mut **tx).await?;
                }
            } else {
                for (id, row) in &t.rows {
                    sqlx::query("SAVEPOINT sluice_row")
                        .execute(&mut **tx)
                        .await?;
                    let mut qb = QueryBuilder::<$DB>::new(insert_prefix(spec));
                    qb.push_values(std::iter::once(row), |mut b, row| {
                        for (c, v) in spec.columns.iter().zip(row.iter()) {
                            bind!(b, c.ty, v);
                        }
                    });
                    qb.push(conflict_suffix(spec));
                    match qb.build().execute(&mut **tx).await {
                        Ok(_) => {
                            sqlx::query("RELEASE SAVEPOINT sluice_row")
                                .execute(&mut **tx)
                                .await?;
                        }
                        Err(e) if is_row_error(&e) => {
                            bad.push((*id, e.to_string()));
                            sqlx::query("ROLLBACK TO SAVEPOINT sluice_row")
                                .execute(&mut **tx)
                                .await?;
                            sqlx::query("RELEASE SAVEPOINT sluice_row")
                                .execute(&mut **tx)
                                .await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(bad)
    }};
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

    /// Create tables that ask for it, and the offsets table when given.
    pub async fn prepare(
        &self,
        specs: &[TableSpec],
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
                let bad: Result<Vec<(usize, String)>, sqlx::Error> =
                    write_batch!(Postgres, &mut tx, tables, offsets, offsets_table, isolate);
                Ok(Written::Ready(Tx::Pg(tx), bad?))
            }
            Db::Lite(p) => {
                let mut tx = p.begin().await?;
                let bad: Result<Vec<(usize, String)>, sqlx::Error> =
                    write_batch!(Sqlite, &mut tx, tables, offsets, offsets_table, isolate);
                Ok(Written::Ready(Tx::Lite(tx), bad?))
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
    }
}
