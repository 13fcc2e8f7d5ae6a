//! `${VAR}` and `${VAR:-default}` substitution in config values, so secrets
//! and per-environment values come from the environment, never from a
//! committed file.
//!
//! Substitution happens in the string values of the *parsed* document, never
//! in its text: a value arrives byte for byte whatever it holds (quotes,
//! backslashes, newlines), it cannot change the structure of the file, and a
//! syntax error quotes the file as written (`${VAR}`), not the secret.
//!
//! Promises:
//! - An unset variable without a default is an error that names the
//!   variable, its line and the key where it is used; `$$` writes a literal
//!   `$`.
//! - Every value taken from the environment is remembered in
//!   [`Substituted`], which hides it again in any message built afterwards
//!   (an error quoting a bad value says `${VAR}` instead).

use toml_edit::{Formatted, Item, Table, Value};

use super::secret::hide;

/// The values interpolation took from the environment (defaults written in
/// the file are not secret and are not listed).
#[derive(Debug, Clone, Default)]
pub struct Substituted {
    /// `(variable, value)`, non-empty values only.
    values: Vec<(String, String)>,
}

impl Substituted {
    fn add(&mut self, var: &str, value: &str) {
        if !value.is_empty() && !self.values.iter().any(|(_, v)| v == value) {
            self.values.push((var.to_owned(), value.to_owned()));
        }
    }

    /// `text` with every substituted value replaced by `${VAR}` (see
    /// [`hide`] for short values).
    pub fn redact(&self, text: &str) -> String {
        hide(
            text,
            self.values
                .iter()
                .map(|(var, v)| (format!("${{{var}}}"), v.as_str())),
        )
    }

    /// Whether no value was taken from the environment, so
    /// [`redact`](Self::redact) has nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Substitute variables in one string value; `line` is the line the value
/// starts on (for errors). Values taken from the environment are added to
/// `subs`.
pub fn interpolate(
    text: &str,
    line: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    subs: &mut Substituted,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let line_at = |rest: &str, pos: usize| {
        let offset = text.len() - rest.len() + pos;
        line + text[..offset].matches('\n').count()
    };
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("line {}: unterminated ${{", line_at(rest, pos)))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "line {}: invalid variable name {name:?} in ${{{expr}}}",
                    line_at(rest, pos)
                ));
            }
            // An empty variable counts as unset when there is a default.
            let value = lookup(name).filter(|v| !v.is_empty() || default.is_none());
            match (value, default) {
                (Some(v), _) => {
                    subs.add(name, &v);
                    out.push_str(&v);
                }
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "line {}: environment variable {name} is not set (use ${{{name}:-default}} for a default)",
                        line_at(rest, pos)
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Interpolate every string value of a parsed document in place. `raw` is
/// the text it was parsed from (for line numbers). Errors name the line and
/// the key path (`pipeline[0].source.brokers`).
pub fn interpolate_document(
    root: &mut Table,
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted, String> {
    let mut walk = Walk {
        raw,
        lookup,
        path: String::new(),
        subs: Substituted::default(),
    };
    walk.table(root, 1)?;
    Ok(walk.subs)
}

struct Walk<'a> {
    raw: &'a str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    path: String,
    subs: Substituted,
}

impl Walk<'_> {
    /// The line `span` starts on, or `fallback` when it has none.
    fn line(&self, span: Option<std::ops::Range<usize>>, fallback: usize) -> usize {
        span.map_or(fallback, |s| line_of(self.raw, s.start))
    }

    /// Run `f` with `segment` appended to the key path.
    fn at<T>(&mut self, segment: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.path.len();
        if !self.path.is_empty() && !segment.starts_with('[') {
            self.path.push('.');
        }
        self.path.push_str(segment);
        let r = f(self);
        self.path.truncate(len);
        r
    }

    fn table(&mut self, t: &mut Table, line: usize) -> Result<(), String> {
        let line = self.line(t.span(), line);
        for (k, item) in t.iter_mut() {
            let key = k.get().to_owned();
            self.at(&key, |w| w.item(item, line))?;
        }
        Ok(())
    }

    fn item(&mut self, item: &mut Item, line: usize) -> Result<(), String> {
        match item {
            Item::None => Ok(()),
            Item::Value(v) => self.value(v, line),
            Item::Table(t) => self.table(t, line),
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter_mut().enumerate() {
                    self.at(&format!("[{i}]"), |w| w.table(t, line))?;
                }
                Ok(())
            }
        }
    }

    fn value(&mut self, v: &mut Value, line: usize) -> Result<(), String> {
        let line = self.line(v.span(), line);
        match v {
            Value::String(s) if s.value().contains('$') => {
                let new = interpolate(s.value(), line, self.lookup, &mut self.subs)
                    .map_err(|e| format!("{e}, in `{}`", self.path))?;
                *s = Formatted::new(new);
                Ok(())
            }
            Value::Array(a) => {
                for (i, v) in a.iter_mut().enumerate() {
                    self.at(&format!("[{i}]"), |w| w.value(v, line))?;
                }
                Ok(())
            }
            Value::InlineTable(t) => {
                for (k, v) in t.iter_mut() {
                    let key = k.get().to_owned();
                    self.at(&key, |w| w.value(v, line))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("kafka:9092".into()),
            "EMPTY" => Some(String::new()),
            "NASTY" => Some("a\"b\\c\nd'e ${HOST} $$".into()),
            _ => None,
        }
    }

    fn one(text: &str) -> Result<String, String> {
        interpolate(text, 1, &env, &mut Substituted::default())
    }

    #[test]
    fn substitutes() {
        assert_eq!(one("a=${HOST}").unwrap(), "a=kafka:9092");
        assert_eq!(one("${NOPE:-x:1}").unwrap(), "x:1");
        assert_eq!(one("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(one("${EMPTY}").unwrap(), "");
        assert_eq!(one("cost $$5 and $x").unwrap(), "cost $5 and $x");
    }

    #[test]
    fn errors_name_variable_and_line() {
        let err = interpolate("a\n${MISSING}", 7, &env, &mut Substituted::default()).unwrap_err();
        assert!(err.contains("MISSING") && err.contains("line 8"), "{err}");
        assert!(one("${OPEN").unwrap_err().contains("unterminated"));
        assert!(one("${a b}").unwrap_err().contains("invalid variable"));
    }

    /// The value of a variable is taken as it is: never re-interpolated,
    /// never unescaped, never able to end the string it is in.
    #[test]
    fn values_arrive_byte_for_byte() {
        let text = "[s]\np = \"${NASTY}\"\nq = ['x${NASTY}']\nr = { t = \"${NASTY}\" }\n";
        let mut root = toml_edit::ImDocument::parse(text).unwrap().into_table();
        interpolate_document(&mut root, text, &env).unwrap();
        let nasty = env("NASTY").unwrap();
        let s = &root["s"];
        assert_eq!(s["p"].as_str(), Some(nasty.as_str()));
        assert_eq!(s["q"][0].as_str(), Some(format!("x{nasty}").as_str()));
        assert_eq!(s["r"]["t"].as_str(), Some(nasty.as_str()));
    }

    #[test]
    fn document_errors_name_line_and_key() {
        let text = "[a]\nb = 1\n[[c]]\nd = { e = [\"${MISSING}\"] }\n";
        let mut root = toml_edit::ImDocument::parse(text).unwrap().into_table();
        let err = interpolate_document(&mut root, text, &env).unwrap_err();
        assert!(
            err.contains("MISSING") && err.contains("line 4") && err.contains("`c[0].d.e[0]`"),
            "{err}"
        );
    }

    #[test]
    fn substituted_values_are_hidden_again() {
        let mut subs = Substituted::default();
        let lookup = |n: &str| match n {
            "PASSWORD" => Some("hunter2\"x".to_owned()),
            "N" => Some("3".to_owned()),
            _ => None,
        };
        interpolate("${PASSWORD} ${N}", 1, &lookup, &mut subs).unwrap();
        let msg =
            "line 3: invalid value: string \"hunter2\\\"x\", expected 3 of `3`; raw hunter2\"x";
        let shown = subs.redact(msg);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("line 3") && shown.contains("expected 3 of `${N}`"),
            "{shown}"
        );
        assert!(shown.contains("\"${PASSWORD}\""), "{shown}");
    }
}
