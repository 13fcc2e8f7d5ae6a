//! Byte sizes in config: either a plain integer or a string with a unit
//! ("64MiB", "512 KB", "1g").
//!
//! Promise: a bad size is rejected with a message that shows the value.

use serde::{Deserialize, Deserializer};

/// Parse "64MiB", "64 MB", "1024", "1g". Binary and decimal units are both
/// accepted; single letters are binary.
pub fn parse(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number with an optional unit"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        other => return Err(format!("invalid size {s:?}: unknown unit {other:?}")),
    };
    let bytes = num * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("invalid size {s:?}: out of range"));
    }
    Ok(bytes as u64)
}

/// Serde adapter for `#[serde(deserialize_with = ...)]`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Int(u64),
        Str(String),
    }
    match Size::deserialize(d)? {
        Size::Int(n) => Ok(n),
        Size::Str(s) => parse(&s).map_err(serde::de::Error::custom),
    }
}

/// As [`deserialize`], for an optional size (a field that is present).
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn units() {
        assert_eq!(parse("1024").unwrap(), 1024);
        assert_eq!(parse("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse("64 mb").unwrap(), 64_000_000);
        assert_eq!(parse("1g").unwrap(), 1 << 30);
        assert_eq!(parse("1.5KiB").unwrap(), 1536);
        assert!(parse("ten").unwrap_err().contains("ten"));
        assert!(parse("5 parsecs").unwrap_err().contains("parsecs"));
    }
}
