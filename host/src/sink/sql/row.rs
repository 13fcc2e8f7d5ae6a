//! Mapping an output's JSON value to a table row.
//!
//! Promise: a value that cannot be converted to its column's declared type,
//! or a missing value for a non-nullable column, is an error naming the
//! column and where the value was looked for; nothing is silently coerced
//! to NULL.

use serde_json::Value as Json;

use crate::config::sql::{ColumnType, OnConflict, TableRoute};

/// A typed SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL: a missing or JSON `null` value.
    Null,
    /// A `text` column's value.
    Text(String),
    /// An `integer` column's value.
    Int(i64),
    /// A `float` column's value.
    Float(f64),
    /// A `boolean` column's value.
    Bool(bool),
    /// A `json` column's value, bound as JSON.
    Json(Json),
}

/// The `from` that fills a column with the plugin versions that made the
/// row (the provenance header's value) instead of a field of the output.
pub const FROM_VERSION: &str = "$version";

/// A column, resolved from config.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    /// The column's name in the table.
    pub name: String,
    /// The declared type the value is converted to.
    pub ty: ColumnType,
    /// JSON pointer into the output value, or [`FROM_VERSION`].
    pub pointer: String,
    /// Whether NULL is allowed (see [`TableRoute::nullable`]).
    pub nullable: bool,
}

/// A table route, resolved from config.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The table's name, optionally schema-qualified.
    pub name: String,
    /// The columns, in the order row values come in.
    pub columns: Vec<ColumnSpec>,
    /// Indexes into `columns` of the key columns.
    pub key: Vec<usize>,
    /// What writing a row whose key is already in the table does.
    pub on_conflict: OnConflict,
    /// Whether the table is created at startup when missing.
    pub create: bool,
}

impl TableSpec {
    /// Resolve a (validated) table route: each column's `from` becomes a JSON
    /// pointer (a plain field name `a/b` becomes `/a~1b`), and key columns
    /// become indexes.
    pub fn new(t: &TableRoute) -> Self {
        let columns: Vec<ColumnSpec> = t
            .columns
            .iter()
            .map(|(name, c)| {
                let from = c.from.clone().unwrap_or_else(|| name.clone());
                let pointer = if from.starts_with('/') || from == FROM_VERSION {
                    from
                } else {
                    format!("/{}", from.replace('~', "~0").replace('/', "~1"))
                };
                ColumnSpec {
                    name: name.clone(),
                    ty: c.ty,
                    pointer,
                    nullable: t.nullable(name),
                }
            })
            .collect();
        let key = t
            .key
            .iter()
            .filter_map(|k| columns.iter().position(|c| &c.name == k))
            .collect();
        TableSpec {
            name: t.name.clone(),
            columns,
            key,
            on_conflict: t.on_conflict,
            create: t.create,
        }
    }

    /// Convert an output value (a JSON object) into this table's row;
    /// `versions` fills `from = "$version"` columns.
    pub fn map(&self, value: &[u8], versions: Option<&str>) -> Result<Vec<Value>, String> {
        let doc: Json = serde_json::from_slice(value)
            .map_err(|e| format!("table {}: output is not JSON: {e}", self.name))?;
        if !doc.is_object() {
            return Err(format!("table {}: output is not a JSON object", self.name));
        }
        self.columns
            .iter()
            .map(|c| {
                let v = if c.pointer == FROM_VERSION {
                    Ok(versions.map_or(Value::Null, |v| Value::Text(v.to_owned())))
                } else {
                    convert(doc.pointer(&c.pointer).unwrap_or(&Json::Null), c.ty)
                };
                v.and_then(|v| {
                    if v == Value::Null && !c.nullable {
                        Err("missing value for a NOT NULL column".into())
                    } else {
                        Ok(v)
                    }
                })
                .map_err(|e| {
                    format!(
                        "table {}: column {} (from {}): {e}",
                        self.name, c.name, c.pointer
                    )
                })
            })
            .collect()
    }

    /// A string identifying the row's key, for de-duplication in a batch.
    pub fn key_of(&self, row: &[Value]) -> Option<String> {
        if self.key.is_empty() {
            return None;
        }
        let mut k = String::new();
        for &i in &self.key {
            k.push_str(&format!("{:?}\u{1f}", row[i]));
        }
        Some(k)
    }
}

fn convert(v: &Json, ty: ColumnType) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let wrong = || format!("cannot convert {v} to {ty:?}");
    Ok(match ty {
        ColumnType::Json => Value::Json(v.clone()),
        ColumnType::Text => match v {
            Json::String(s) => Value::Text(s.clone()),
            Json::Number(n) => Value::Text(n.to_string()),
            Json::Bool(b) => Value::Text(b.to_string()),
            _ => return Err(wrong()),
        },
        ColumnType::Integer => match v {
            Json::Number(n) => Value::Int(n.as_i64().ok_or_else(wrong)?),
            Json::String(s) => Value::Int(s.trim().parse().map_err(|_| wrong())?),
            _ => return Err(wrong()),
        },
        ColumnType::Float => match v {
            Json::Number(n) => Value::Float(n.as_f64().ok_or_else(wrong)?),
            Json::String(s) => Value::Float(s.trim().parse().map_err(|_| wrong())?),
            _ => return Err(wrong()),
        },
        ColumnType::Boolean => match v {
            Json::Bool(b) => Value::Bool(*b),
            Json::String(s) if s == "true" => Value::Bool(true),
            Json::String(s) if s == "false" => Value::Bool(false),
            _ => return Err(wrong()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TableSpec {
        let t: TableRoute = toml::from_str(
            r#"
name = "pages"
key = ["url"]
[columns]
url = { type = "text" }
words = { type = "integer", from = "/stats/words" }
score = { type = "float" }
meta = { type = "json" }
made_by = { type = "text", from = "$version" }
"#,
        )
        .unwrap();
        TableSpec::new(&t)
    }

    #[test]
    fn maps_fields_and_pointers() {
        let s = spec();
        let row = s
            .map(
                br#"{"url":"u","stats":{"words":"12"},"score":1.5,"meta":{"a":[1]},"$version":"no"}"#,
                Some("parse@ab12"),
            )
            .unwrap();
        // Columns are in name order: made_by, meta, score, url, words.
        assert_eq!(row[0], Value::Text("parse@ab12".into()));
        assert_eq!(row[1], Value::Json(serde_json::json!({"a":[1]})));
        assert_eq!(row[2], Value::Float(1.5));
        assert_eq!(row[3], Value::Text("u".into()));
        assert_eq!(row[4], Value::Int(12));
        // Without plugins there are no versions: the column is null.
        let row = s.map(br#"{"url":"u"}"#, None).unwrap();
        assert_eq!(row[0], Value::Null);
    }

    #[test]
    fn errors_name_the_column() {
        let s = spec();
        let e = s.map(br#"{"stats":{"words":1}}"#, None).unwrap_err();
        assert!(e.contains("column url") && e.contains("NOT NULL"), "{e}");
        let e = s
            .map(br#"{"url":"u","stats":{"words":"many"}}"#, None)
            .unwrap_err();
        assert!(
            e.contains("column words") && e.contains("/stats/words"),
            "{e}"
        );
        assert!(
            s.map(b"[1]", None)
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(s.map(b"nope", None).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn keys_identify_rows() {
        let s = spec();
        let a = s.map(br#"{"url":"u","score":1}"#, None).unwrap();
        let b = s.map(br#"{"url":"u","score":2}"#, None).unwrap();
        let c = s.map(br#"{"url":"v"}"#, None).unwrap();
        assert_eq!(s.key_of(&a), s.key_of(&b));
        assert_ne!(s.key_of(&a), s.key_of(&c));
    }
}
