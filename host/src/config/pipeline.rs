//! The pipeline file: one or more pipelines, each a Kafka source, a chain of
//! plugins and named routes to sinks.
//!
//! Promise: [`load`] either returns a fully validated [`File`] or an error
//! that names the file, the pipeline and the field at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use super::admin::AdminConfig;
use super::interpolate::{Substituted, interpolate_document, line_of};
use super::kafka::{KafkaSource, ProducerConfig};
use super::plugin::PluginConfig;
use super::sql::{SqlConfig, TableRoute};

/// The name of the route that outputs without a route take.
pub const DEFAULT_ROUTE: &str = "default";

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Prometheus `/metrics`, `/healthz` and `/readyz` endpoint (open, as Prometheus
    /// expects; the admin API is not on it).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// The admin API (`/plugins`, reload, rollback) on a listener of its
    /// own, behind a bearer token. Without this section there is none.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The pipelines; each runs independently.
    #[serde(rename = "pipeline", default)]
    pub pipelines: Vec<Pipeline>,
    /// Queries whose rows are published to topics (the crawler example's producer).
    #[serde(rename = "sql_source", default)]
    pub sql_sources: Vec<crate::source::sql::SqlSourceConfig>,
    /// Hot swap: whether plugin files and this file are watched.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// How long SIGINT/SIGTERM may take to drain and commit. Past it,
    /// sluice exits non-zero, committing nothing past a record that is not
    /// acknowledged, and names what it abandoned.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

/// How `sluice run` notices new plugin versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Watch every plugin file and the pipeline file, and swap in new
    /// versions as they appear. Without it, only `POST /plugins/.../reload`
    /// swaps.
    pub watch: bool,
    /// How long a changed file must stay unchanged (size and modification
    /// time) before it is read, so a half-written file is never loaded.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch: true,
            settle: Duration::from_millis(200),
        }
    }
}

/// The observability endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to listen on, e.g. "127.0.0.1:9464".
    pub listen: SocketAddr,
}

/// One pipeline: source → plugins → routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Unique name, used in logs and metric labels.
    pub name: String,
    /// The Kafka source.
    pub source: KafkaSource,
    /// The plugin chain, run in order.
    #[serde(rename = "plugin", default)]
    pub plugins: Vec<PluginConfig>,
    /// Route name → sink. The `default` route is required.
    pub routes: BTreeMap<String, Route>,
    /// Where rejected records go.
    pub dead_letter: DeadLetter,
    /// Retries of transient plugin failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Producer settings for Kafka routes and the dead-letter topic.
    #[serde(default)]
    pub producer: ProducerConfig,
    /// The database that table routes write to.
    #[serde(default)]
    pub sql: Option<SqlConfig>,
    /// Header naming the plugin versions that made each output and
    /// dead-letter record: `name@sha256`, comma-separated along the chain.
    #[serde(default = "default_version_header")]
    pub version_header: String,
}

/// The default name of the provenance header.
pub const DEFAULT_VERSION_HEADER: &str = "sluice.plugin.version";

fn default_version_header() -> String {
    DEFAULT_VERSION_HEADER.to_owned()
}

/// Where one route's outputs go: exactly one of `topic`, `table` or
/// `dead_letter`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Produce outputs to this Kafka topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// Send outputs to the pipeline's dead-letter topic.
    #[serde(default)]
    pub dead_letter: bool,
    /// Write outputs (JSON objects) as rows of this table in the
    /// pipeline's `[sql]` database.
    #[serde(default)]
    pub table: Option<TableRoute>,
    /// How to choose the partition.
    #[serde(default)]
    pub partitioning: Partitioning,
    /// Compression codec for this topic.
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Headers added to every record on this route.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Replace the output's key with this fixed key.
    #[serde(default)]
    pub key: Option<String>,
}

/// Partition choice for a Kafka route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Partitioning {
    /// Hash of the key (librdkafka's consistent_random; keyless records are
    /// spread at random).
    #[default]
    Key,
    /// Spread records evenly over partitions, ignoring the key.
    RoundRobin,
    /// The partition number the source record came from (the output topic
    /// needs at least as many partitions).
    Source,
    /// Always this partition.
    Partition(i32),
}

/// Compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `none`: batches are sent uncompressed.
    None,
    /// `gzip`: a good ratio, for the most CPU.
    Gzip,
    /// `snappy`: fast, compresses less.
    Snappy,
    /// `lz4`: fast, compresses less.
    Lz4,
    /// `zstd`: a ratio like gzip's, for less CPU.
    Zstd,
}

impl Compression {
    /// The codec's librdkafka name, for `compression.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// The dead-letter topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    /// Topic that receives rejected records, with headers explaining why.
    pub topic: String,
}

/// Exponential backoff for transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, including the first; then the record is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Upper bound on one delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Pipeline {
    /// The brokers outputs and dead letters are written to:
    /// `producer.brokers`, else the source's.
    pub fn producer_brokers(&self) -> String {
        self.producer
            .brokers
            .clone()
            .unwrap_or_else(|| self.source.brokers.clone())
    }

    /// The security outputs and dead letters are written with:
    /// `producer.security`, else the source's.
    pub fn producer_security(&self) -> super::kafka::Security {
        self.producer
            .security
            .clone()
            .unwrap_or_else(|| self.source.security.clone())
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryConfig {
    /// Delay before retry number `attempt` (1 = first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Read, interpolate, parse and validate a pipeline file. Plugin paths are
/// made relative to the file's directory.
pub fn load(path: &Path) -> anyhow::Result<File> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read pipeline file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base, |k| std::env::var(k).ok())
        .with_context(|| format!("invalid pipeline file {}", path.display()))
}

/// Parse pipeline text; `base` resolves relative plugin paths.
///
/// The text is parsed first and `${VAR}`s are substituted in its string
/// values afterwards (see [`super::interpolate`]); every error is built from
/// the text as written, and any value that came from the environment is
/// hidden in it, so no error shows a secret.
pub fn parse(
    text: &str,
    base: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<File> {
    let doc = toml_edit::ImDocument::parse(text).map_err(|e| syntax_error(&e, text))?;
    let mut root = doc.into_table();
    let subs = interpolate_document(&mut root, text, &env).map_err(anyhow::Error::msg)?;
    let mut file = deserialize(root, text).map_err(|e| anyhow::Error::msg(subs.redact(&e)))?;
    for p in &mut file.pipelines {
        for plugin in &mut p.plugins {
            if plugin.path.is_relative() {
                plugin.path = base.join(&plugin.path);
            }
        }
    }
    validate(&file).map_err(|e| redacted(&subs, e))?;
    Ok(file)
}

/// `e` with every value that came from the environment hidden.
fn redacted(subs: &Substituted, e: anyhow::Error) -> anyhow::Error {
    if subs.is_empty() {
        e
    } else {
        anyhow::Error::msg(subs.redact(&format!("{e:#}")))
    }
}

/// A TOML syntax error, as toml renders it (quoting the line as written,
/// so with `${VAR}`, never its value).
fn syntax_error(e: &toml_edit::TomlError, text: &str) -> anyhow::Error {
    let mut msg = e.to_string();
    // The parser stops at the `$` of a `${VAR}` written outside quotes.
    let at_variable = e
        .span()
        .and_then(|s| text.get(s.start..))
        .is_some_and(|t| t.starts_with("${"));
    if at_variable {
        msg.push_str(
            "note: `${VAR}` is replaced only inside quoted strings: write \"${VAR}\", also for numbers\n",
        );
    }
    anyhow::Error::msg(msg.trim_end().to_owned())
}

/// Deserialize the interpolated document into a [`File`]. An error names
/// the line and column (of the text as written), the key path and the
/// fault, and quotes that line.
fn deserialize(root: toml_edit::Table, raw: &str) -> Result<File, String> {
    let de = toml_edit::de::Deserializer::from(toml_edit::DocumentMut::from(root));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let mut at = Vec::new();
        let mut quote = String::new();
        if let Some(span) = inner.span() {
            let pos = span.start.min(raw.len());
            let line = line_of(raw, pos);
            let before = raw.get(..pos).unwrap_or_default();
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before.get(start..).map_or(0, |s| s.chars().count()) + 1;
            at.push(format!("line {line}, column {column}"));
            if let Some(content) = raw.split('\n').nth(line - 1) {
                quote = format!("\n{line:>4} | {}", content.trim_end());
            }
        }
        if path != "." {
            at.push(format!("`{path}`"));
        }
        let at = if at.is_empty() {
            String::new()
        } else {
            format!("{}: ", at.join(", "))
        };
        format!("{at}{}{quote}", inner.message())
    })
}

fn validate(file: &File) -> anyhow::Result<()> {
    anyhow::ensure!(
        !file.pipelines.is_empty() || !file.sql_sources.is_empty(),
        "no [[pipeline]] or [[sql_source]] defined"
    );
    if let Some(admin) = &file.admin {
        admin.validate("admin").map_err(anyhow::Error::msg)?;
    }
    let mut names = std::collections::HashSet::new();
    let mut groups = std::collections::HashMap::new();
    for p in &file.pipelines {
        // Two consumers in one group split the partitions between them, so
        // each pipeline would silently see only part of its stream.
        if let Some(other) = groups.insert(&p.source.group_id, &p.name) {
            anyhow::bail!(
                "pipeline `{}`: source.group_id `{}` is also the group of pipeline `{other}`; \
                 each pipeline needs a group of its own",
                p.name,
                p.source.group_id
            );
        }
    }
    let mut sources = std::collections::HashSet::new();
    for (i, s) in file.sql_sources.iter().enumerate() {
        let at = |field: &str| format!("sql_source `{}`: {field}", s.name);
        anyhow::ensure!(
            !s.name.trim().is_empty(),
            "sql_source[{i}]: `name` is empty"
        );
        anyhow::ensure!(
            sources.insert(&s.name),
            "sql_source name `{}` is used twice",
            s.name
        );
        anyhow::ensure!(
            s.url.starts_with("postgres://") || s.url.starts_with("postgresql://"),
            "{} must be a postgres:// URL (got `{}`)",
            at("url"),
            s.url
        );
        s.url
            .as_str()
            .parse::<sqlx::postgres::PgConnectOptions>()
            .map_err(|e| anyhow::anyhow!("{}: {e}", at("url")))?;
        for (field, v) in [
            ("query", &s.query),
            ("key", &s.key),
            ("topic", &s.topic),
            ("brokers", &s.brokers),
        ] {
            anyhow::ensure!(!v.trim().is_empty(), "{} is empty", at(field));
        }
        anyhow::ensure!(!s.interval.is_zero(), "{} must be above 0", at("interval"));
    }
    for p in &file.pipelines {
        let at = |field: &str| format!("pipeline `{}`: {field}", p.name);
        anyhow::ensure!(
            names.insert(&p.name),
            "pipeline name `{}` is used twice",
            p.name
        );
        let s = &p.source;
        anyhow::ensure!(
            !s.brokers.trim().is_empty(),
            "{} is empty",
            at("source.brokers")
        );
        anyhow::ensure!(!s.group_id.is_empty(), "{} is empty", at("source.group_id"));
        match (s.topics.is_empty(), s.assign.is_empty()) {
            (true, true) => anyhow::bail!("{} give `topics` or `assign`", at("source:")),
            (false, false) => {
                anyhow::bail!("{} give `topics` or `assign`, not both", at("source:"))
            }
            _ => {}
        }
        anyhow::ensure!(
            s.max_in_flight > 0,
            "{} must be at least 1",
            at("source.max_in_flight")
        );
        anyhow::ensure!(
            s.max_in_flight_bytes > 0,
            "{} must be at least 1",
            at("source.max_in_flight_bytes")
        );
        let mut plugin_names = std::collections::HashSet::new();
        for (i, plugin) in p.plugins.iter().enumerate() {
            anyhow::ensure!(
                plugin.workers > 0,
                "{} must be at least 1",
                at(&format!("plugin[{i}].workers"))
            );
            anyhow::ensure!(
                plugin_names.insert(plugin.display_name()),
                "{}: the name `{}` is used by an earlier plugin of this pipeline; \
                 give one of them `name = \"...\"`",
                at(&format!("plugin[{i}]")),
                plugin.display_name()
            );
            for (j, smoke) in plugin.smoke.iter().enumerate() {
                smoke.validate().map_err(|e| {
                    anyhow::anyhow!("{} {e}", at(&format!("plugin[{i}].smoke[{j}]")))
                })?;
            }
        }
        anyhow::ensure!(
            !p.version_header.is_empty(),
            "{} is empty",
            at("version_header")
        );
        anyhow::ensure!(
            p.routes.contains_key(DEFAULT_ROUTE),
            "{} is missing; every pipeline needs a `default` route",
            at("routes.default")
        );
        for (name, r) in &p.routes {
            let field = format!("routes.{name}");
            let sinks = usize::from(r.topic.is_some())
                + usize::from(r.dead_letter)
                + usize::from(r.table.is_some());
            if sinks > 1 {
                anyhow::bail!(
                    "{} sets more than one of `topic`, `table` and `dead_letter` (both)",
                    at(&field)
                );
            }
            if sinks == 0 {
                anyhow::bail!(
                    "{} needs `topic = \"...\"`, `table = {{...}}` or `dead_letter = true`",
                    at(&field)
                );
            }
            if let Some(t) = &r.table {
                anyhow::ensure!(
                    p.sql.is_some(),
                    "{} writes to a table, but the pipeline has no [pipeline.sql] database",
                    at(&field)
                );
                t.validate(&at(&format!("{field}.table")))
                    .map_err(anyhow::Error::msg)?;
            }
            if let Some(t) = &r.topic {
                anyhow::ensure!(!t.is_empty(), "{} is empty", at(&format!("{field}.topic")));
            }
        }
        anyhow::ensure!(
            !p.dead_letter.topic.is_empty(),
            "{} is empty",
            at("dead_letter.topic")
        );
        if let Some(sql) = &p.sql {
            anyhow::ensure!(
                sql.url.starts_with("postgres://")
                    || sql.url.starts_with("postgresql://")
                    || sql.url.starts_with("sqlite:"),
                "{} must start with postgres:// or sqlite:",
                at("sql.url")
            );
            anyhow::ensure!(
                sql.batch_rows > 0,
                "{} must be at least 1",
                at("sql.batch_rows")
            );
            anyhow::ensure!(
                crate::config::sql::is_identifier(&sql.offsets_table),
                "{} is not a plain SQL identifier",
                at("sql.offsets_table")
            );
            anyhow::ensure!(
                p.routes.values().any(|r| r.table.is_some()),
                "{} is set but no route writes to a table",
                at("sql")
            );
        }
        anyhow::ensure!(
            p.retry.max_attempts >= 1,
            "{} must be at least 1",
            at("retry.max_attempts")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[pipeline]]
name = "p"
source = { brokers = "${KAFKA_BROKERS:-127.0.0.1:9092}", topics = ["in"], group_id = "g" }
routes.default = { topic = "out" }
dead_letter = { topic = "dlq" }
[[pipeline.plugin]]
path = "x.wasm"
params = { threshold = 500, mode = "fast" }
deadline = "50ms"
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_minimal() {
        let f = parse(MINIMAL, Path::new("/etc/sluice"), no_env).unwrap();
        let p = &f.pipelines[0];
        assert_eq!(p.source.brokers, "127.0.0.1:9092");
        assert_eq!(p.plugins[0].path, Path::new("/etc/sluice/x.wasm"));
        assert_eq!(p.plugins[0].limits.deadline, Duration::from_millis(50));
        let params = p.plugins[0].init_params();
        assert!(params.contains(&("threshold".into(), "500".into())));
        assert_eq!(p.retry, RetryConfig::default());
    }

    /// A file using most of the format, for the fuzz test to mutate.
    const RICH: &str = r#"
shutdown_timeout = "5s"
[metrics]
listen = "127.0.0.1:9464"
[[pipeline]]
name = "p"
source = { brokers = "${KAFKA_BROKERS:-127.0.0.1:9092}", topics = ["in"], group_id = "g", max_in_flight = 10 }
routes.default = { topic = "out" }
routes.rows = { table = { name = "t", key = ["id"], columns = { id = { type = "text" }, v = { type = "integer", from = "/a/b" } } } }
dead_letter = { topic = "dlq" }
retry = { max_attempts = 3, initial_backoff = "10ms" }
sql = { url = "sqlite://x.db", exactly_once = true, batch_rows = 10 }
[[pipeline.plugin]]
path = "x.wasm"
params = { threshold = 500, mode = "fast" }
deadline = "50ms"
[[sql_source]]
name = "s"
url = "postgres://u@h/db"
query = "SELECT 1 AS k"
key = "k"
topic = "t"
brokers = "b:9092"
"#;

    /// Whether an error names where it is: a line, or a field or name in
    /// backquotes.
    fn is_located(err: &str) -> bool {
        err.contains("line ") || err.contains('`') || err.contains("no [[pipeline]]")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Random edits of a valid file never panic the parser, and every
        /// error says where the fault is.
        #[test]
        fn mutated_files_never_panic_and_errors_are_located(
            edits in proptest::collection::vec(
                (0usize..2000, 0usize..12, proptest::sample::select(vec![
                    "", "\"", "{", "}", "[", "]", "=", ",", "\n", "${", "${X}", "$$", "#",
                    "-1", "0", "\"\"", "[[pipeline]]", "true", "1e99", "\u{e9}", "'",
                ])),
                1..6,
            )
        ) {
            let mut text = RICH.to_string();
            for (at, cut, insert) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + cut).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.replace_range(at..end.max(at), insert);
            }
            if let Err(e) = parse(&text, Path::new("."), |_| None) {
                let err = format!("{e:#}");
                proptest::prop_assert!(is_located(&err), "unlocated error {err:?} for\n{text}");
            }
        }

        /// Interpolation of any text never panics; its errors name a line.
        #[test]
        fn interpolation_never_panics(text in "[a-z$:{}\\-_\n]{0,64}") {
            let lookup = |name: &str| (name == "SET").then(|| "v".to_string());
            let mut subs = crate::config::interpolate::Substituted::default();
            if let Err(e) = crate::config::interpolate::interpolate(&text, 1, &lookup, &mut subs) {
                proptest::prop_assert!(e.contains("line "), "{e}");
            }
        }
    }

    #[test]
    fn the_fuzzed_file_is_valid_to_begin_with() {
        parse(RICH, Path::new("."), no_env).unwrap();
    }

    #[test]
    fn two_pipelines_in_one_group_are_refused() {
        let second = MINIMAL.replace("name = \"p\"", "name = \"q\"");
        let text = format!("{MINIMAL}\n{}", second.trim_start());
        let err = format!("{:#}", parse(&text, Path::new("."), no_env).unwrap_err());
        assert!(
            err.contains("`g`") && err.contains("`p`") && err.contains("`q`"),
            "{err}"
        );
        let ok = second.replace("group_id = \"g\"", "group_id = \"g2\"");
        parse(
            &format!("{MINIMAL}\n{}", ok.trim_start()),
            Path::new("."),
            no_env,
        )
        .unwrap();
    }

    #[test]
    fn a_sql_source_is_validated() {
        let source = |url: &str| {
            format!(
                "[[sql_source]]\nname = \"s\"\nurl = \"{url}\"\nquery = \"SELECT 1 AS k\"\n\
                 key = \"k\"\ntopic = \"t\"\nbrokers = \"b:9092\"\n"
            )
        };
        let err = format!(
            "{:#}",
            parse(&source("not-a-url"), Path::new("."), no_env).unwrap_err()
        );
        assert!(err.contains("sql_source `s`: url"), "{err}");
        parse(&source("postgres://u@h/db"), Path::new("."), no_env).unwrap();
        let empty_key = source("postgres://u@h/db").replace("key = \"k\"", "key = \"\"");
        let err = format!(
            "{:#}",
            parse(&empty_key, Path::new("."), no_env).unwrap_err()
        );
        assert!(err.contains("sql_source `s`: key is empty"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("deadline = \"50ms\"", "dedline = \"50ms\"");
        let err = format!("{:#}", parse(&text, Path::new("."), no_env).unwrap_err());
        assert!(err.contains("dedline"), "{err}");
    }

    #[test]
    fn missing_default_route_is_named() {
        let text = MINIMAL.replace("routes.default", "routes.other");
        let err = format!("{:#}", parse(&text, Path::new("."), no_env).unwrap_err());
        assert!(err.contains("routes.default"), "{err}");
    }

    #[test]
    fn route_needs_one_sink() {
        let text = MINIMAL.replace(
            "routes.default = { topic = \"out\" }",
            "routes.default = { topic = \"out\", dead_letter = true }",
        );
        let err = format!("{:#}", parse(&text, Path::new("."), no_env).unwrap_err());
        assert!(
            err.contains("routes.default") && err.contains("both"),
            "{err}"
        );
    }

    #[test]
    fn hot_swap_settings_parse_and_default() {
        let f = parse(MINIMAL, Path::new("."), no_env).unwrap();
        assert_eq!(f.reload, ReloadConfig::default());
        assert!(f.reload.watch);
        assert_eq!(f.pipelines[0].version_header, DEFAULT_VERSION_HEADER);
        let text = format!(
            "reload = {{ watch = false, settle = \"1s\" }}\n{}",
            MINIMAL.replace(
                "deadline = \"50ms\"",
                "deadline = \"50ms\"\nsmoke = [{ value = \"x\", expect = [] }, { value = \"y\", expect_error = \"invalid\" }]",
            )
        );
        let f = parse(&text, Path::new("."), no_env).unwrap();
        assert!(!f.reload.watch);
        assert_eq!(f.reload.settle, Duration::from_secs(1));
        assert_eq!(f.pipelines[0].plugins[0].smoke.len(), 2);
    }

    #[test]
    fn a_smoke_record_needs_one_expectation() {
        for (smoke, want) in [
            ("{ value = \"x\" }", "exactly one of"),
            (
                "{ value = \"x\", expect = [], expect_error = \"invalid\" }",
                "exactly one of",
            ),
            ("{ value = \"x\", expect_error = \"boom\" }", "\"boom\""),
        ] {
            let text = MINIMAL.replace(
                "deadline = \"50ms\"",
                &format!("deadline = \"50ms\"\nsmoke = [{smoke}]"),
            );
            let err = format!("{:#}", parse(&text, Path::new("."), no_env).unwrap_err());
            assert!(
                err.contains("plugin[0].smoke[0]") && err.contains(want),
                "{err}"
            );
        }
    }

    #[test]
    fn plugin_names_are_unique_in_a_pipeline() {
        let text = format!("{MINIMAL}\n[[pipeline.plugin]]\npath = \"x.wasm\"\n");
        let err = format!("{:#}", parse(&text, Path::new("."), no_env).unwrap_err());
        assert!(err.contains("plugin[1]") && err.contains("`x`"), "{err}");
    }

    /// Every place a secret can sit in a pipeline file.
    const SECRETS: &str = r#"
[admin]
token = "${ADMIN_TOKEN}"
[[pipeline]]
name = "p"
producer = { security = { protocol = "sasl_plaintext", mechanism = "PLAIN", username = "u", password = "${KAFKA_PASSWORD}" } }
routes.default = { table = { name = "t", columns = { id = { type = "text" } } } }
dead_letter = { topic = "dlq" }
sql = { url = "postgres://u:${DB_PASSWORD}@h/db?sslmode=require" }
[pipeline.source]
brokers = "b:9092"
topics = ["in"]
group_id = "g"
properties = { "ssl.key.password" = "${KEY_PASSWORD}" }
security = { protocol = "sasl_ssl", mechanism = "PLAIN", username = "u", password = "${KAFKA_PASSWORD}" }
[[pipeline.plugin]]
path = "x.wasm"
params = { api_key = "${API_KEY}" }
[[sql_source]]
name = "s"
url = "postgres://u:${DB_PASSWORD}@h/db"
query = "SELECT 1 AS k"
key = "k"
topic = "t"
brokers = "b:9092"
"#;

    /// Each variable's value: a sentinel with a quote, a backslash and a
    /// newline (but URL-safe in a database URL).
    fn secret_env(name: &str) -> Option<String> {
        Some(match name {
            "DB_PASSWORD" => format!("{name}-s3ntinel"),
            _ => format!("{name}-s3ntinel\"q\\b\nnl"),
        })
    }

    #[test]
    fn secrets_arrive_byte_for_byte_and_never_print() {
        let f = parse(SECRETS, Path::new("."), secret_env).unwrap();
        let p = &f.pipelines[0];
        let pass =
            |s: &crate::config::kafka::Security| s.password.as_ref().unwrap().expose().clone();
        assert_eq!(
            pass(&p.source.security),
            secret_env("KAFKA_PASSWORD").unwrap()
        );
        assert_eq!(
            pass(p.producer.security.as_ref().unwrap()),
            secret_env("KAFKA_PASSWORD").unwrap()
        );
        assert_eq!(
            f.admin.as_ref().unwrap().token(),
            secret_env("ADMIN_TOKEN").as_deref()
        );
        assert_eq!(
            p.sql.as_ref().unwrap().url.as_str(),
            format!(
                "postgres://u:{}@h/db?sslmode=require",
                secret_env("DB_PASSWORD").unwrap()
            )
        );
        assert_eq!(
            p.plugins[0].init_params(),
            [("api_key".to_owned(), secret_env("API_KEY").unwrap())]
        );
        let shown = format!("{f:?} {f:#?}");
        assert_eq!(shown.matches("s3ntinel").count(), 0, "{shown}");
        assert!(
            shown.contains("postgres://u:***@h/db?sslmode=require"),
            "{shown}"
        );
    }

    #[test]
    fn an_interpolated_value_cannot_add_keys() {
        let text = MINIMAL.replace("mode = \"fast\"", "mode = \"${MODE}\"");
        let env = |_: &str| Some("x\", injected = \"y".to_owned());
        let f = parse(&text, Path::new("."), env).unwrap();
        let params = f.pipelines[0].plugins[0].init_params();
        assert_eq!(params.len(), 2, "{params:?}");
        assert!(params.contains(&("mode".into(), "x\", injected = \"y".into())));
    }

    #[test]
    fn errors_never_show_a_value_from_the_environment() {
        let env = |_: &str| Some("hunter2-sentinel".to_owned());
        for (from, to) in [
            // A syntax error on the line that holds the secret.
            ("mode = \"fast\" }", "mode = \"${SECRET}\" oops }"),
            // A typo on that line.
            ("mode = \"fast\" }", "mode = \"${SECRET}\" }, dedline = 1"),
            // The secret where a number or an enum belongs.
            ("deadline = \"50ms\"", "deadline = \"${SECRET}\""),
            (
                "group_id = \"g\" }",
                "group_id = \"g\", auto_offset_reset = \"${SECRET}\" }",
            ),
            (
                "routes.default = { topic = \"out\" }",
                "routes.default = { topic = \"out\", partitioning = \"${SECRET}\" }",
            ),
        ] {
            let text = MINIMAL.replace(from, to);
            assert_ne!(text, MINIMAL, "{from}");
            let err = format!("{:#}", parse(&text, Path::new("."), env).unwrap_err());
            assert!(!err.contains("hunter2"), "{to}: {err}");
            assert!(is_located(&err), "{to}: {err}");
        }
    }

    #[test]
    fn an_unquoted_variable_gets_a_hint() {
        let text = MINIMAL.replace("threshold = 500", "threshold = ${N}");
        let err = format!("{:#}", parse(&text, Path::new("."), no_env).unwrap_err());
        assert!(err.contains("only inside quoted strings"), "{err}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryConfig {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        assert_eq!(r.backoff(1), Duration::from_millis(100));
        assert_eq!(r.backoff(2), Duration::from_millis(200));
        assert_eq!(r.backoff(3), Duration::from_millis(400));
        assert_eq!(r.backoff(4), Duration::from_millis(500));
    }

    #[test]
    fn examples_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&root).unwrap() {
            let file = entry.unwrap().path().join("pipeline.toml");
            if file.exists() {
                let text = std::fs::read_to_string(&file).unwrap();
                parse(&text, file.parent().unwrap(), no_env)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
                seen += 1;
            }
        }
        assert!(seen > 0, "no examples/*/pipeline.toml found");
    }
}
