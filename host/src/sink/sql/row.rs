//! Mapping an output's JSON value to a table row, encoded as the database
//! will read it.
//!
//! A row is encoded once, straight from the output's JSON text, without a
//! `serde_json::Value` tree: the top-level object is split into raw field
//! texts, each column's field is converted to its declared type, and the
//! value is written in the table's [`Format`]:
//! - [`Format::Binary`] is one tuple of PostgreSQL's binary `COPY` format
//!   (a field count, then each field's length and bytes). SQLite binds its
//!   values from the same tuple.
//! - [`Format::Text`] is one line of `COPY`'s text format, for PostgreSQL
//!   tables with a column type the binary encoder does not write
//!   (`integer`, `numeric`, `timestamptz`, ...): the server parses each
//!   value as it would a literal.
//!
//! Promise: a value that cannot be converted to its column's declared type,
//! or a missing value for a non-nullable column, is an error naming the
//! column and where the value was looked for; nothing is silently coerced
//! to NULL.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::sql::{ColumnType, OnConflict, TableRoute};

/// The `from` that fills a column with the plugin versions that made the
/// row (the provenance header's value) instead of a field of the output.
pub const FROM_VERSION: &str = "$version";

/// The signature, flags and header extension that open a binary `COPY`.
pub const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The field count that ends a binary `COPY`.
pub const BINARY_TRAILER: &[u8] = &[0xff, 0xff];

/// How a table's rows are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PostgreSQL's binary `COPY` tuple (SQLite reads it too).
    Binary,
    /// A line of PostgreSQL's text `COPY` format.
    Text,
}

/// How one column's value is written in [`Format::Binary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `bigint`: 8 bytes, big-endian.
    Int8,
    /// `double precision`: 8 bytes, big-endian IEEE 754.
    Float8,
    /// `boolean`: one byte.
    Bool,
    /// `text`, `varchar`, `char`, and SQLite's JSON: UTF-8 bytes.
    Text,
    /// `jsonb`: a version byte (1), then the JSON text.
    Jsonb,
}

/// A column, resolved from config.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    /// The column's name in the table.
    pub name: String,
    /// The declared type the value is converted to.
    pub ty: ColumnType,
    /// JSON pointer into the output value, or [`FROM_VERSION`].
    pub pointer: String,
    /// The pointer's reference tokens, unescaped; empty for [`FROM_VERSION`].
    path: Vec<String>,
    /// Whether NULL is allowed (see [`TableRoute::nullable`]).
    pub nullable: bool,
    /// How the value is written in [`Format::Binary`].
    pub wire: Wire,
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
    /// How rows are encoded: binary until [`TableSpec::adopt`] learns that
    /// a PostgreSQL column needs text.
    pub format: Format,
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
                let path = if pointer == FROM_VERSION {
                    Vec::new()
                } else {
                    pointer
                        .split('/')
                        .skip(1)
                        .map(|t| t.replace("~1", "/").replace("~0", "~"))
                        .collect()
                };
                ColumnSpec {
                    name: name.clone(),
                    ty: c.ty,
                    pointer,
                    path,
                    nullable: t.nullable(name),
                    wire: match c.ty {
                        ColumnType::Integer => Wire::Int8,
                        ColumnType::Float => Wire::Float8,
                        ColumnType::Boolean => Wire::Bool,
                        ColumnType::Text | ColumnType::Json => Wire::Text,
                    },
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
            format: Format::Binary,
        }
    }

    /// Fit the encoding to a PostgreSQL table's column types (`typname`
    /// by column name): binary when every column's type is one the binary
    /// encoder writes for its declared type (`bigint`, `double precision`,
    /// `boolean`, `text`/`varchar`/`char`, `json`/`jsonb`), else text, which
    /// the server parses into any type.
    pub fn adopt(&mut self, types: &[(String, String)]) {
        let mut binary = true;
        for c in &mut self.columns {
            let ty = types
                .iter()
                .find(|(n, _)| *n == c.name)
                .map(|(_, t)| t.as_str());
            c.wire = match (c.ty, ty) {
                (ColumnType::Integer, Some("int8")) => Wire::Int8,
                (ColumnType::Float, Some("float8")) => Wire::Float8,
                (ColumnType::Boolean, Some("bool")) => Wire::Bool,
                (ColumnType::Text, Some("text" | "varchar" | "bpchar")) => Wire::Text,
                (ColumnType::Json, Some("json")) => Wire::Text,
                (ColumnType::Json, Some("jsonb")) => Wire::Jsonb,
                _ => {
                    binary = false;
                    c.wire
                }
            };
        }
        self.format = if binary { Format::Binary } else { Format::Text };
    }

    /// Convert an output value (a JSON object) into this table's row,
    /// encoded in its [`Format`]; `versions` fills `from = "$version"`
    /// columns.
    pub fn map(&self, value: &[u8], versions: Option<&str>) -> Result<Vec<u8>, String> {
        let doc: Object<'_> = serde_json::from_slice(value).map_err(|e| {
            if serde_json::from_slice::<IgnoredAny>(value).is_ok() {
                format!("table {}: output is not a JSON object", self.name)
            } else {
                format!("table {}: output is not JSON: {e}", self.name)
            }
        })?;
        let mut out = Vec::with_capacity(value.len() + 8 * self.columns.len());
        if self.format == Format::Binary {
            out.extend_from_slice(&(self.columns.len() as i16).to_be_bytes());
        }
        for (i, c) in self.columns.iter().enumerate() {
            if self.format == Format::Text && i > 0 {
                out.push(b'\t');
            }
            let v = if c.pointer == FROM_VERSION {
                versions.map_or(Typed::Null, |v| Typed::Str(Cow::Borrowed(v)))
            } else {
                doc.find(&c.path)
                    .and_then(|raw| raw.map_or(Ok(Typed::Null), |r| convert(r, c.ty)))
                    .map_err(|e| self.error(c, e))?
            };
            if v == Typed::Null && !c.nullable {
                return Err(self.error(c, "missing value for a NOT NULL column".into()));
            }
            match self.format {
                Format::Binary => put_binary(&mut out, &v, c.wire),
                Format::Text => put_text(&mut out, &v),
            }
        }
        if self.format == Format::Text {
            out.push(b'\n');
        }
        Ok(out)
    }

    fn error(&self, c: &ColumnSpec, e: String) -> String {
        format!(
            "table {}: column {} (from {}): {e}",
            self.name, c.name, c.pointer
        )
    }
}

/// A value converted to its column's declared type, borrowing from the
/// output where it can.
#[derive(Debug, PartialEq)]
enum Typed<'a> {
    Null,
    /// An integer, with the JSON text it came from.
    Int(i64, &'a str),
    /// A float, with the JSON text it came from.
    Float(f64, &'a str),
    Bool(bool),
    Str(Cow<'a, str>),
    /// A JSON value's text, whole.
    Json(&'a str),
}

/// Convert a field's raw JSON text to `ty`.
fn convert(raw: &RawValue, ty: ColumnType) -> Result<Typed<'_>, String> {
    let text = raw.get();
    if text == "null" {
        return Ok(Typed::Null);
    }
    let wrong = || format!("cannot convert {text} to {ty:?}");
    let quoted = text.starts_with('"');
    let string = || -> Result<Cow<'_, str>, String> {
        serde_json::from_str::<CowStr<'_>>(text)
            .map(|s| s.0)
            .map_err(|_| wrong())
    };
    let number = text.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    Ok(match ty {
        ColumnType::Json => Typed::Json(text),
        ColumnType::Text if quoted => Typed::Str(string()?),
        ColumnType::Text if number || text == "true" || text == "false" => {
            Typed::Str(Cow::Borrowed(text))
        }
        ColumnType::Integer if number => Typed::Int(text.parse().map_err(|_| wrong())?, text),
        ColumnType::Float if number => Typed::Float(text.parse().map_err(|_| wrong())?, text),
        ColumnType::Integer | ColumnType::Float if quoted => {
            // A string holding a number: the number's text must outlive
            // the string, so only an unescaped string is borrowed.
            let Cow::Borrowed(s) = string()? else {
                return Err(wrong());
            };
            let s = s.trim();
            if ty == ColumnType::Integer {
                Typed::Int(s.parse().map_err(|_| wrong())?, s)
            } else {
                Typed::Float(s.parse().map_err(|_| wrong())?, s)
            }
        }
        ColumnType::Boolean if text == "true" || text == "\"true\"" => Typed::Bool(true),
        ColumnType::Boolean if text == "false" || text == "\"false\"" => Typed::Bool(false),
        _ => return Err(wrong()),
    })
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_binary(out: &mut Vec<u8>, v: &Typed<'_>, wire: Wire) {
    match (v, wire) {
        (Typed::Null, _) => out.extend_from_slice(&(-1i32).to_be_bytes()),
        (Typed::Int(i, _), _) => put_field(out, &i.to_be_bytes()),
        (Typed::Float(f, _), _) => put_field(out, &f.to_bits().to_be_bytes()),
        (Typed::Bool(b), _) => put_field(out, &[u8::from(*b)]),
        (Typed::Str(s), _) => put_field(out, s.as_bytes()),
        (Typed::Json(j), Wire::Jsonb) => {
            out.extend_from_slice(&(j.len() as i32 + 1).to_be_bytes());
            out.push(1);
            out.extend_from_slice(j.as_bytes());
        }
        (Typed::Json(j), _) => put_field(out, j.as_bytes()),
    }
}

/// One field of a text `COPY` line: numbers as they were written (the
/// server parses them into the column's type, `numeric` included).
fn put_text(out: &mut Vec<u8>, v: &Typed<'_>) {
    match v {
        Typed::Null => out.extend_from_slice(b"\\N"),
        Typed::Int(_, t) | Typed::Float(_, t) => out.extend_from_slice(t.as_bytes()),
        Typed::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Typed::Str(s) => escape_text(out, s),
        Typed::Json(j) => escape_text(out, j),
    }
}

fn escape_text(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

/// A binary tuple's fields: `None` for NULL. Stops at a malformed tuple.
pub fn fields(tuple: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    let mut at = 2usize;
    std::iter::from_fn(move || {
        let len = i32::from_be_bytes(tuple.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if len < 0 {
            return Some(None);
        }
        let v = tuple.get(at..at + len as usize)?;
        at += len as usize;
        Some(Some(v))
    })
}

/// Append `tuple` (binary) to a `COPY` buffer with one more field, `ord`:
/// the row's position in its batch, for a staging table.
pub fn put_binary_with_ord(out: &mut Vec<u8>, tuple: &[u8], ord: i64) {
    let n = i16::from_be_bytes([tuple[0], tuple[1]]) + 1;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&tuple[2..]);
    put_field(out, &ord.to_be_bytes());
}

/// Append `line` (text) to a `COPY` buffer with one more field, `ord`.
pub fn put_text_with_ord(out: &mut Vec<u8>, line: &[u8], ord: i64) {
    out.extend_from_slice(&line[..line.len() - 1]);
    let _ = writeln!(out, "\t{ord}");
}

/// A JSON object's fields as raw texts, borrowed from the document.
struct Object<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Object<'a> {
    /// The value at `path` (a JSON pointer's tokens); `None` when it is
    /// missing.
    fn find(&self, path: &[String]) -> Result<Option<&'a RawValue>, String> {
        let Some((first, rest)) = path.split_first() else {
            return Ok(None);
        };
        let mut at = self.get(first);
        for token in rest {
            let Some(v) = at else { break };
            let text = v.get();
            at = if text.starts_with('{') {
                serde_json::from_str::<Object<'a>>(text)
                    .map_err(|e| e.to_string())?
                    .get(token)
            } else if text.starts_with('[') {
                let items: Vec<&'a RawValue> =
                    serde_json::from_str(text).map_err(|e| e.to_string())?;
                token
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i).copied())
            } else {
                None
            };
        }
        Ok(at)
    }

    /// A field by name; the last one when the name repeats.
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(CowStr(k)) = map.next_key()? {
                    fields.push((k, map.next_value()?));
                }
                Ok(Object(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON string, borrowed when it holds no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
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

    fn text(b: Option<&[u8]>) -> &str {
        std::str::from_utf8(b.unwrap()).unwrap()
    }

    #[test]
    fn maps_fields_and_pointers_into_a_binary_tuple() {
        let s = spec();
        let row = s
            .map(
                br#"{"url":"u\"x","stats":{"words":"12"},"score":1.5,"meta":{"a":[1]},"$version":"no"}"#,
                Some("parse@ab12"),
            )
            .unwrap();
        assert_eq!(&row[..2], &5i16.to_be_bytes());
        // Columns are in name order: made_by, meta, score, url, words.
        let f: Vec<Option<&[u8]>> = fields(&row).collect();
        assert_eq!(f.len(), 5);
        assert_eq!(text(f[0]), "parse@ab12");
        assert_eq!(text(f[1]), r#"{"a":[1]}"#);
        assert_eq!(f[2].unwrap(), 1.5f64.to_bits().to_be_bytes());
        assert_eq!(text(f[3]), "u\"x");
        assert_eq!(f[4].unwrap(), 12i64.to_be_bytes());
        // Without plugins there are no versions: the column is null.
        let row = s.map(br#"{"url":"u"}"#, None).unwrap();
        assert_eq!(fields(&row).next(), Some(None));
    }

    #[test]
    fn text_lines_escape_and_keep_numbers_as_written() {
        let mut s = spec();
        s.adopt(&[("score".into(), "numeric".into())]);
        assert_eq!(s.format, Format::Text);
        let row = s
            .map(
                br#"{"url":"a\tb\\c\nd","stats":{"words":-3},"score":"12.50","meta":[true]}"#,
                None,
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(row.clone()).unwrap(),
            "\\N\t[true]\t12.50\ta\\tb\\\\c\\nd\t-3\n"
        );
        let mut staged = Vec::new();
        put_text_with_ord(&mut staged, &row, 7);
        assert!(staged.ends_with(b"\t-3\t7\n"));
    }

    #[test]
    fn adopt_keeps_binary_for_the_types_it_writes() {
        let mut s = spec();
        s.adopt(&[
            ("made_by".into(), "varchar".into()),
            ("meta".into(), "jsonb".into()),
            ("score".into(), "float8".into()),
            ("url".into(), "text".into()),
            ("words".into(), "int8".into()),
        ]);
        assert_eq!(s.format, Format::Binary);
        let row = s.map(br#"{"url":"u","meta":{}}"#, None).unwrap();
        assert_eq!(fields(&row).nth(1), Some(Some(&b"\x01{}"[..])));
        s.adopt(&[("words".into(), "int4".into())]);
        assert_eq!(s.format, Format::Text);
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
        for bad in [r#"1.5"#, r#"true"#, r#"{}"#, r#"99999999999999999999"#] {
            let e = s
                .map(
                    format!(r#"{{"url":"u","stats":{{"words":{bad}}}}}"#).as_bytes(),
                    None,
                )
                .unwrap_err();
            assert!(e.contains("cannot convert"), "{bad}: {e}");
        }
        let e = s.map(br#"{"url":[1]}"#, None).unwrap_err();
        assert!(e.contains("column url"), "{e}");
        assert!(
            s.map(b"[1]", None)
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(s.map(b"nope", None).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn pointers_reach_into_arrays_and_escaped_names() {
        let t: TableRoute = toml::from_str(
            r#"
name = "t"
[columns]
a = { type = "integer", from = "/xs/1/v" }
b = { type = "text", from = "odd/name" }
"#,
        )
        .unwrap();
        let s = TableSpec::new(&t);
        let row = s
            .map(
                br#"{"xs":[{"v":1},{"v":2}],"odd/name":"y","odd/name":"z"}"#,
                None,
            )
            .unwrap();
        let f: Vec<_> = fields(&row).collect();
        assert_eq!(f[0].unwrap(), 2i64.to_be_bytes());
        assert_eq!(text(f[1]), "z", "the last of a repeated name wins");
    }
}
