//! One entry of a pipeline's plugin chain, and the smoke records a new
//! version of it must pass before it runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::http::HttpConfig;
use crate::plugin::Limits;

/// A plugin in the chain. Outputs on its default route feed the next plugin;
/// outputs on a named route leave the chain for that route's sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name used in logs, metrics and dead-letter headers. Defaults to the
    /// file name without `.wasm`.
    #[serde(default)]
    pub name: Option<String>,
    /// Path to the component, relative to the pipeline file.
    pub path: PathBuf,
    /// Parameters passed to the plugin's `init`, as key/value strings.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// Memory cap and deadlines.
    #[serde(flatten)]
    pub limits: Limits,
    /// Worker threads running this plugin. Records of one partition always go
    /// to the same worker, so order within a partition is kept.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Outbound HTTP the plugin may make through the `http` import. Without
    /// this table every fetch is denied.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// Records every version of the plugin must handle as expected: at
    /// startup and before a new version is swapped in.
    #[serde(default)]
    pub smoke: Vec<SmokeRecord>,
}

/// A record with its expected result, run through a plugin version before
/// it may process real records.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeRecord {
    /// The record's key.
    #[serde(default)]
    pub key: Option<String>,
    /// The record's value.
    pub value: String,
    /// The values of the outputs, in order (`[]`: the record is filtered
    /// out). Values that are JSON are compared as JSON.
    #[serde(default)]
    pub expect: Option<Vec<String>>,
    /// The error kind expected instead of outputs: `invalid` or `transient`.
    #[serde(default)]
    pub expect_error: Option<String>,
}

impl SmokeRecord {
    /// Check that the record states exactly one expectation.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.expect, self.expect_error.as_deref()) {
            (Some(_), None) | (None, Some("invalid" | "transient")) => Ok(()),
            (None, Some(other)) => Err(format!(
                "`expect_error` must be \"invalid\" or \"transient\", got {other:?}"
            )),
            _ => Err("needs exactly one of `expect` and `expect_error`".into()),
        }
    }
}

fn default_workers() -> usize {
    1
}

/// A parameter value; numbers and booleans are passed to `init` as text.
/// Params are where plugins get their secrets, so `Debug` shows only a
/// fingerprint of the value.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A string, passed as-is.
    String(String),
    /// An integer, passed in decimal.
    Integer(i64),
    /// A float, passed as Rust's `Display` writes it (`1.5`, `2`).
    Float(f64),
    /// A boolean, passed as `true` or `false`.
    Bool(bool),
}

impl std::fmt::Debug for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}",
            crate::config::secret::fingerprint(&self.to_string())
        )
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::String(s) => f.write_str(s),
            ParamValue::Integer(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl PluginConfig {
    /// The plugin's display name.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".into())
        })
    }

    /// Parameters as `init` wants them.
    pub fn init_params(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_optional_and_checked() {
        let pc: PluginConfig = toml::from_str("path = \"p.wasm\"").unwrap();
        assert_eq!(pc.http, None);
        let pc: PluginConfig = toml::from_str(
            "path = \"p.wasm\"\ndeadline = \"20s\"\n[http]\nallow = [\"localhost\"]\ntimeout = \"5s\"",
        )
        .unwrap();
        let http = pc.http.unwrap();
        assert_eq!(http.allow, ["localhost"]);
        assert_eq!(http.timeout, std::time::Duration::from_secs(5));
        assert_eq!(pc.limits.deadline, std::time::Duration::from_secs(20));
        let err =
            toml::from_str::<PluginConfig>("path = \"p.wasm\"\n[http]\nalow = []").unwrap_err();
        assert!(err.to_string().contains("alow"), "{err}");
    }
}
