//! SQL sink settings: the pipeline's database and the table routes that
//! write into it.
//!
//! Promise: table and column names are plain identifiers (checked here), so
//! they can be quoted safely into SQL; a key column must be a declared column.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::secret::DbUrl;

/// The pipeline's database (one per pipeline; every table route writes to it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// `postgres://user@host/db` or `sqlite://path/to/file.db` (created if
    /// missing; relative to the working directory). PostgreSQL honours
    /// `sslmode` (`disable`, `prefer` (the default), `require`,
    /// `verify-ca`, `verify-full`) and `sslrootcert`. Printed with its
    /// password hidden.
    pub url: DbUrl,
    /// Write the consumer's offsets into `offsets_table` in the same
    /// transaction as each batch, and resume from them: no duplicates and no
    /// loss in the database, even across crashes.
    #[serde(default)]
    pub exactly_once: bool,
    /// Flush a batch when it holds this many rows...
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// ...or when its oldest row is this old, whichever comes first.
    #[serde(default = "default_batch_age", with = "humantime_serde")]
    pub batch_age: Duration,
    /// Table that holds offsets in exactly-once mode (created if missing).
    #[serde(default = "default_offsets_table")]
    pub offsets_table: String,
    /// Most connections in the pool; with PostgreSQL also how many batches
    /// are written at once (one lane of source partitions per connection).
    #[serde(default = "default_connections")]
    pub max_connections: u32,
}

fn default_batch_rows() -> usize {
    1000
}
fn default_batch_age() -> Duration {
    Duration::from_millis(200)
}
fn default_offsets_table() -> String {
    "sluice_offsets".into()
}
fn default_connections() -> u32 {
    4
}

/// A route that writes outputs as rows of a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRoute {
    /// Table name (optionally `schema.table`).
    pub name: String,
    /// Column name → where its value comes from in the output's JSON value.
    pub columns: BTreeMap<String, Column>,
    /// Primary-key columns. With a key, writes are upserts, and duplicate
    /// keys within a batch are collapsed (last wins).
    #[serde(default)]
    pub key: Vec<String>,
    /// What an upsert does with an existing row.
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Create the table if it does not exist.
    #[serde(default)]
    pub create: bool,
}

/// One column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// The SQL type the value is converted to.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// A field name of the output's JSON object, a JSON pointer
    /// (`/nutrition/calories`), or `$version` for the plugin versions that
    /// made the row (a `text` column). Defaults to the column name.
    #[serde(default)]
    pub from: Option<String>,
    /// Whether a missing or null value is allowed (default: true, except
    /// for key columns).
    #[serde(default)]
    pub nullable: Option<bool>,
}

/// Declared column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// `text`: a string; a JSON number or boolean is stored as its text.
    Text,
    /// `integer`: a 64-bit integer, from a JSON integer or a string holding
    /// one.
    Integer,
    /// `float`: a double, from a JSON number or a string holding one.
    Float,
    /// `boolean`: from `true`/`false`, or the strings `"true"`/`"false"`.
    Boolean,
    /// `json`: any JSON value, stored whole (`JSONB` in PostgreSQL, `TEXT` in
    /// SQLite).
    Json,
}

/// Upsert behaviour for an existing key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Overwrite the existing row's other columns.
    #[default]
    Update,
    /// Keep the existing row.
    Ignore,
}

/// Whether `name` is a safe SQL identifier (optionally schema-qualified).
pub fn is_identifier(name: &str) -> bool {
    let part = |p: &str| {
        let mut c = p.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
    };
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|p| part(p))
}

impl TableRoute {
    /// Check names and keys; `at` prefixes every message.
    pub fn validate(&self, at: &str) -> Result<(), String> {
        if !is_identifier(&self.name) {
            return Err(format!(
                "{at}.name: {:?} is not a plain SQL identifier",
                self.name
            ));
        }
        if self.columns.is_empty() {
            return Err(format!("{at}.columns: at least one column is needed"));
        }
        for c in self.columns.keys() {
            if !is_identifier(c) || c.contains('.') {
                return Err(format!("{at}.columns: {c:?} is not a plain SQL identifier"));
            }
        }
        for (name, c) in &self.columns {
            if c.from.as_deref() == Some("$version") && c.ty != ColumnType::Text {
                return Err(format!(
                    "{at}.columns.{name}: `from = \"$version\"` needs `type = \"text\"`"
                ));
            }
        }
        for k in &self.key {
            if !self.columns.contains_key(k) {
                return Err(format!(
                    "{at}.key: {k:?} is not one of the declared columns"
                ));
            }
        }
        Ok(())
    }

    /// Whether `column` may be NULL: its `nullable` when set, else true
    /// unless it is a key column.
    pub fn nullable(&self, column: &str) -> bool {
        self.columns
            .get(column)
            .and_then(|c| c.nullable)
            .unwrap_or(!self.key.iter().any(|k| k == column))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_identifier("pages"));
        assert!(is_identifier("public.pages_2"));
        assert!(!is_identifier("pages; drop table x"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("a.b.c"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn key_must_be_a_column() {
        let t: TableRoute =
            toml::from_str("name = \"t\"\nkey = [\"id\"]\ncolumns = { url = { type = \"text\" } }")
                .unwrap();
        assert!(
            t.validate("routes.db.table")
                .unwrap_err()
                .contains("\"id\"")
        );
    }

    #[test]
    fn a_version_column_must_be_text() {
        let t: TableRoute = toml::from_str(
            "name = \"t\"\ncolumns = { v = { type = \"integer\", from = \"$version\" } }",
        )
        .unwrap();
        let e = t.validate("routes.db.table").unwrap_err();
        assert!(e.contains("columns.v") && e.contains("text"), "{e}");
        let t: TableRoute = toml::from_str(
            "name = \"t\"\ncolumns = { v = { type = \"text\", from = \"$version\" } }",
        )
        .unwrap();
        t.validate("routes.db.table").unwrap();
    }
}
