//! The two databases a SQL route can write to, PostgreSQL and SQLite, behind
//! one small interface: create tables, write a batch in one transaction
//! (optionally with the consumer's offsets), isolate bad rows.
//!
//! Promise: a batch and its offsets commit together or not at all. In
//! isolation mode every row runs under its own savepoint, so a row the
//! database rejects is rolled back alone and reported with the database's
//! error, and the other rows still commit.

use std::str::FromStr;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Sqlite, Transaction};

use super::row::{TableSpec, Value};
use crate::config::sql::{ColumnType, OnConflict};

/// Most bind parameters in one statement (both databases accept more).
const MAX_PARAMS: usize = 30_000;

/// A connection pool to either database.
#[derive(Clone, Debug)]
pub enum Db {
    Pg(PgPool),
    Lite(SqlitePool),
}

/// An open write transaction.
pub enum Tx {
    Pg(Transaction<'static, Postgres>),
    Lite(Transaction<'static, Sqlite>),
}

/// One table's rows in a batch. `rows[i].0` is an opaque id the caller uses
/// to find the row's record again.
pub struct TableRows<'a> {
    pub spec: &'a TableSpec,
    pub rows: Vec<(usize, &'a [Value])>,
}

/// Offsets written with a batch: (group, topic, partition, next offset).
pub type OffsetRow<'a> = (&'a str, &'a str, i32, i64);

impl Tx {
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
         PRIMARY KEY (group_id, topic, \"partition\"))",
        quote(table)
    )
}

fn offsets_upsert(table: &str) -> String {
    format!(
        "INSERT INTO {} (group_id, topic, \"partition\", next_offset) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (group_id, topic, \"partition\") DO UPDATE SET next_offset = excluded.next_offset",
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
                        Err(sqlx::Error::Database(e)) => {
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
        if !$offsets.is_empty() {
            let sql = offsets_upsert($offsets_table);
            for (group, topic, partition, next) in $offsets {
                sqlx::query(&sql)
                    .bind(*group)
                    .bind(*topic)
                    .bind(*partition)
                    .bind(*next)
                    .execute(&mut **tx)
                    .await?;
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
        Ok(())
    }

    /// The next offset to read for a partition, from the offsets table.
    pub async fn next_offset(
        &self,
        offsets_table: &str,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, sqlx::Error> {
        let sql = format!(
            "SELECT next_offset FROM {} WHERE group_id = $1 AND topic = $2 AND \"partition\" = $3",
            quote(offsets_table)
        );
        match self {
            Db::Pg(p) => {
                sqlx::query_scalar::<_, i64>(&sql)
                    .bind(group)
                    .bind(topic)
                    .bind(partition)
                    .fetch_optional(p)
                    .await
            }
            Db::Lite(p) => {
                sqlx::query_scalar::<_, i64>(&sql)
                    .bind(group)
                    .bind(topic)
                    .bind(partition)
                    .fetch_optional(p)
                    .await
            }
        }
    }

    /// Write a batch in a new transaction, without committing it. Returns
    /// the transaction and, in isolation mode, the rows the database refused
    /// (by id, with its error). Outside isolation mode a refused row fails
    /// the whole call with a `sqlx::Error::Database`.
    pub async fn write(
        &self,
        tables: &[TableRows<'_>],
        offsets: &[OffsetRow<'_>],
        offsets_table: &str,
        isolate: bool,
    ) -> Result<(Tx, Vec<(usize, String)>), sqlx::Error> {
        match self {
            Db::Pg(p) => {
                let mut tx = p.begin().await?;
                let bad: Result<Vec<(usize, String)>, sqlx::Error> =
                    write_batch!(Postgres, &mut tx, tables, offsets, offsets_table, isolate);
                Ok((Tx::Pg(tx), bad?))
            }
            Db::Lite(p) => {
                let mut tx = p.begin().await?;
                let bad: Result<Vec<(usize, String)>, sqlx::Error> =
                    write_batch!(Sqlite, &mut tx, tables, offsets, offsets_table, isolate);
                Ok((Tx::Lite(tx), bad?))
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
