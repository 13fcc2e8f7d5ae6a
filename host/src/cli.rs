//! The command line, as clap derive types. Parsing only; the work happens in
//! `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// sluice: a stream processor that runs WebAssembly plugins over Kafka records.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter, e.g. `info` or `sluice=debug` (also `RUST_LOG`).
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "info")]
    pub log: String,

    /// Where compiled plugins are cached (default `~/.cache/sluice/components`).
    #[arg(long, global = true, env = "SLUICE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The `sluice` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with a single plugin, without Kafka.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run the pipelines defined in a pipeline file until SIGINT/SIGTERM.
    Run {
        /// The pipeline file (TOML).
        file: PathBuf,
    },
    /// Validate a pipeline file and load every plugin it names; exit 0 or 2.
    Check {
        /// The pipeline file (TOML).
        file: PathBuf,
    },
    /// Publish records to a topic: one per file, or JSONL from stdin.
    Produce(ProduceArgs),
    /// Print a topic's records as JSON lines (from the beginning).
    Consume(ConsumeArgs),
    /// Read a pipeline's dead-letter topic.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

/// The `sluice dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Group the dead letters by error kind, plugin version and source
    /// partition, with counts, offsets and the latest message.
    List(DlqArgs),
    /// Print one dead letter (key, value, every header) as JSON.
    Show {
        /// Which file and pipeline.
        #[command(flatten)]
        at: DlqArgs,
        /// The dead letter's partition in the dead-letter topic.
        #[arg(long, default_value_t = 0)]
        partition: i32,
        /// The dead letter's offset in the dead-letter topic.
        #[arg(long)]
        offset: i64,
    },
    /// Run the selected dead letters through the pipeline's current plugin
    /// chain: write what it makes of them (to topics), or with `--dry-run`
    /// say per record fixed / failed again / skipped.
    Replay(DlqReplayArgs),
}

/// Arguments of `sluice dlq replay`.
#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    /// Which file and pipeline.
    #[command(flatten)]
    pub at: DlqArgs,
    /// Only dead letters of this error kind (`invalid`, `trap`, ...).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only dead letters rejected by this plugin version (a SHA-256 or a
    /// prefix of one).
    #[arg(long)]
    pub plugin_version: Option<String>,
    /// Only dead letters written at or after this time (RFC 3339, e.g.
    /// 2026-12-03T18:00:00Z).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub since: Option<std::time::SystemTime>,
    /// Print what would happen, one JSON line per dead letter; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The replay group: each dead letter is replayed at most once per
    /// group, and a rerun after a crash goes on where it stopped (default
    /// `sluice-replay-PIPELINE`).
    #[arg(long)]
    pub group: Option<String>,
}

/// Which dead-letter topic `sluice dlq` reads.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// The pipeline file (TOML).
    pub file: PathBuf,
    /// The pipeline whose dead-letter topic to read.
    #[arg(long)]
    pub pipeline: String,
    /// Print one JSON object per group instead of a table (`list`).
    #[arg(long)]
    pub json: bool,
    /// Give up reading after this long, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

/// The `sluice plugin` subcommands: one plugin component, no Kafka.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plugin over records read from files or stdin; one JSON line per
    /// output or error on stdout.
    Run(PluginRunArgs),
    /// Print the world a plugin implements, its imports and its content hash.
    Inspect {
        /// The plugin component (`.wasm`).
        plugin: PathBuf,
    },
    /// Create a new plugin project (source, WIT, build.sh) in NAME/.
    New(PluginNewArgs),
}

/// Arguments of `sluice plugin new`.
#[derive(Debug, Args)]
pub struct PluginNewArgs {
    /// The plugin's name: lowercase letters, digits and `-`.
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    pub lang: PluginLang,
    /// Create NAME/ under this directory instead of the current one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The languages `sluice plugin new` can create a plugin project in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PluginLang {
    /// Rust with wit-bindgen, built by cargo for wasm32-wasip2.
    Rust,
    /// Python, built by componentize-py.
    Python,
    /// JavaScript, built by componentize-js.
    Js,
    /// C, built by clang for wasm32-wasi with wit-bindgen's C bindings.
    C,
    /// Zig, built by zig on wit-bindgen's C bindings.
    Zig,
}

/// Arguments of `sluice plugin run`.
#[derive(Debug, Args)]
pub struct PluginRunArgs {
    /// The plugin component (`.wasm`).
    pub plugin: PathBuf,
    /// A plugin parameter passed to `init`, as key=value. Repeatable.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// How input is split into records.
    #[arg(long, value_enum, default_value_t = InputFormat::Raw)]
    pub format: InputFormat,
    /// Read records from this file (`-` for stdin) in addition to FILES.
    #[arg(long, value_name = "FILE|-")]
    pub input: Option<PathBuf>,
    /// Memory cap per instance, e.g. 64MiB.
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Deadline per call, e.g. 100ms. When HTTP is allowed it defaults to
    /// the HTTP timeout plus 100ms, since the deadline runs during fetches.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub deadline: Option<std::time::Duration>,
    /// Deadline for instantiation plus `init`, e.g. 2s (default 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub init_deadline: Option<std::time::Duration>,
    /// Let the plugin fetch from HOST through the `http` import: an exact
    /// host name, or `*.example.com` for its subdomains, with an optional
    /// `:PORT` (without one, ports 80 and 443 only). Repeatable; without it
    /// every fetch is denied.
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    pub allow_host: Vec<String>,
    /// Let allowed hosts resolve to loopback, private and link-local
    /// addresses (the config's `allow_private = true`), e.g. to fetch from
    /// a server on localhost.
    #[arg(long)]
    pub allow_private: bool,
    /// Total timeout of one HTTP fetch, retries included, e.g. 5s (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub http_timeout: Option<std::time::Duration>,
    /// Input files.
    pub files: Vec<PathBuf>,
}

/// How `sluice plugin run` splits its input into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// Each file is one record; the value is the file's bytes.
    Raw,
    /// One `{"key":…, "value":…, "headers":{…}}` object per line.
    Jsonl,
    /// Each line is one record.
    Lines,
}

/// Arguments of `sluice produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic to publish to.
    pub topic: String,
    /// Bootstrap brokers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Files to publish, one record each (key = file name). Without files,
    /// JSONL is read from stdin: `{"key":…, "value":…, "headers":{…}, "partition":N}`.
    pub files: Vec<PathBuf>,
    /// Extra librdkafka producer properties, as key=value. Repeatable.
    #[arg(long = "property", short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub properties: Vec<(String, String)>,
}

/// Arguments of `sluice consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    pub topic: String,
    /// Bootstrap brokers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<usize>,
    /// Stop after this long, e.g. 30s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    crate::config::bytes::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn key_value() {
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
    }
}
