//! Every metric sluice exports, defined once, and the HTTP endpoint that
//! serves them (`/metrics` in Prometheus text format), with `/healthz`
//! (liveness: the process is up and serving) and `/readyz` (readiness:
//! every pipeline has its partition assignment and reaches its brokers and
//! database; a 503 names what is missing).
//! Both are open, as Prometheus expects, so nothing else is on this
//! listener: the admin API has its own ([`crate::swap::admin`]).
//!
//! Promise: per-record paths touch only pre-registered handles, so recording
//! a metric never allocates or looks up a label set.

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram};

use crate::record::FailureKind;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter `{pipeline}`: records read from the source.
pub const RECORDS_IN: &str = "sluice_records_in_total";
/// Counter `{pipeline, route}`: outputs written, by route.
pub const RECORDS_OUT: &str = "sluice_records_out_total";
/// Counter `{pipeline}`: records a plugin answered with no output.
pub const RECORDS_FILTERED: &str = "sluice_records_filtered_total";
/// Counter `{pipeline, kind}`: records dead-lettered, by `sluice.error.kind`.
pub const RECORDS_DEAD_LETTERED: &str = "sluice_records_dead_lettered_total";
/// Counter `{pipeline}`: retries of transient plugin failures.
pub const RETRIES: &str = "sluice_retries_total";
/// Histogram `{pipeline, plugin}`: seconds per plugin call (`process` or
/// `process-batch`), each call of a batch recorded at the batch's mean.
pub const PLUGIN_CALL_SECONDS: &str = "sluice_plugin_call_seconds";
/// Counter `{pipeline, plugin, kind}`: calls that failed by `deadline`,
/// `memory` or `trap`.
pub const PLUGIN_TRAPS: &str = "sluice_plugin_traps_total";
/// Gauge `{pipeline, topic, partition}`: consumer lag in records, from
/// librdkafka's statistics.
pub const CONSUMER_LAG: &str = "sluice_consumer_lag";
/// Counter `{pipeline}`: partition offsets stored for the next commit.
pub const OFFSETS_STORED: &str = "sluice_offsets_stored_total";
/// Counter `{pipeline, plugin, result}`: reloads of a plugin (see
/// [`plugin_reloads`]).
pub const PLUGIN_RELOADS: &str = "sluice_plugin_reloads_total";
/// Counter `{result}`: re-reads of the pipeline file (see
/// [`pipeline_file_reloads`]).
pub const PIPELINE_FILE_RELOADS: &str = "sluice_pipeline_file_reloads_total";
/// Gauge `{pipeline}`: 1 while a broker is reachable, 0 while none is.
pub const BROKERS_UP: &str = "sluice_brokers_up";
/// Counter `{source}`: SQL-source rows skipped because their key was NULL.
pub const SQL_SOURCE_KEYLESS: &str = "sluice_sql_source_keyless_rows_total";
/// Counter `{pipeline, table}`: rows committed to a SQL table (refused rows
/// are not counted; an upsert's collapsed duplicates are).
pub const SQL_ROWS_WRITTEN: &str = "sluice_sql_rows_written_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are drained into their buckets.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Install the Prometheus recorder (once per process) and return its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(PLUGIN_CALL_SECONDS.into()),
            &[
                1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2,
                0.1, 0.5, 1.0,
            ],
        )?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        anyhow::bail!("a metrics recorder was already installed");
    }
    let _ = HANDLE.set(handle.clone());
    // Histogram samples pile up until upkeep drains them into buckets;
    // without a scrape (or with no `[metrics]` endpoint at all) nothing
    // else would, and memory would grow with every plugin call.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP);
                upkeep.run_upkeep();
            }
        })?;
    Ok(handle)
}

/// Counter of plugin reloads of one plugin, by result: `ok`, `rejected`
/// or `rollback`. Reloads are rare, so this looks the counter up.
pub fn plugin_reloads(pipeline: &str, plugin: &str, result: &'static str) -> Counter {
    metrics::counter!(PLUGIN_RELOADS, "pipeline" => pipeline.to_owned(), "plugin" => plugin.to_owned(), "result" => result)
}

/// Counter of pipeline-file re-reads by result: `ok` (it parsed; changed
/// plugin sections were then reloaded) or `rejected` (it did not parse).
pub fn pipeline_file_reloads(result: &'static str) -> Counter {
    metrics::counter!(PIPELINE_FILE_RELOADS, "result" => result)
}

/// What keeps sluice from being ready right now, by component (say,
/// "pipeline `p`: database"); `/readyz` answers 503 with these lines while
/// there are any.
static NOT_READY: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Mark `component` not ready, saying why.
pub fn not_ready(component: &str, why: impl std::fmt::Display) {
    let mut m = NOT_READY.lock().unwrap_or_else(|e| e.into_inner());
    m.insert(component.to_owned(), why.to_string());
}

/// The counter of rows committed to `table` by `pipeline`.
pub fn sql_rows_written(pipeline: &str, table: &str) -> metrics::Counter {
    metrics::counter!(SQL_ROWS_WRITTEN, "pipeline" => pipeline.to_owned(), "table" => table.to_owned())
}

/// Mark `component` ready again (no-op when it was).
pub fn ready(component: &str) {
    let mut m = NOT_READY.lock().unwrap_or_else(|e| e.into_inner());
    if !m.is_empty() {
        m.remove(component);
    }
}

/// `/readyz`: 200 "ready", or 503 naming each component not ready and why.
fn readiness() -> (axum::http::StatusCode, String) {
    let m = NOT_READY.lock().unwrap_or_else(|e| e.into_inner());
    if m.is_empty() {
        return (axum::http::StatusCode::OK, "ready\n".into());
    }
    let mut body = String::new();
    for (component, why) in m.iter() {
        body.push_str(&format!("{component}: {why}\n"));
    }
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, body)
}

/// Serve `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let h = handle.clone();
                async move { h.render() }
            }),
        )
        // Liveness: answering at all is the answer.
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { readiness() }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// Handles for one pipeline's record counters.
#[derive(Clone)]
pub struct PipelineMetrics {
    /// Records read from the source ([`RECORDS_IN`]).
    pub records_in: Counter,
    /// Records a plugin answered with no output ([`RECORDS_FILTERED`]).
    pub filtered: Counter,
    /// Retries of transient plugin failures ([`RETRIES`]).
    pub retries: Counter,
    /// Partition offsets stored for commit ([`OFFSETS_STORED`]).
    pub offsets_stored: Counter,
    /// 1 while a broker is reachable, 0 while none is.
    pub brokers_up: metrics::Gauge,
    pipeline: String,
}

impl PipelineMetrics {
    /// The handles of the pipeline named `pipeline`, labelled with its name.
    pub fn new(pipeline: &str) -> Self {
        let p = pipeline.to_owned();
        PipelineMetrics {
            records_in: metrics::counter!(RECORDS_IN, "pipeline" => p.clone()),
            filtered: metrics::counter!(RECORDS_FILTERED, "pipeline" => p.clone()),
            retries: metrics::counter!(RETRIES, "pipeline" => p.clone()),
            offsets_stored: metrics::counter!(OFFSETS_STORED, "pipeline" => p.clone()),
            brokers_up: metrics::gauge!(BROKERS_UP, "pipeline" => p.clone()),
            pipeline: p,
        }
    }

    /// Counter of outputs written to `route`.
    pub fn out(&self, route: &str) -> Counter {
        metrics::counter!(RECORDS_OUT, "pipeline" => self.pipeline.clone(), "route" => route.to_owned())
    }

    /// Counter of records dead-lettered for `kind`.
    pub fn dead_lettered(&self, kind: FailureKind) -> Counter {
        metrics::counter!(RECORDS_DEAD_LETTERED, "pipeline" => self.pipeline.clone(), "kind" => kind.as_str())
    }

    /// Per-plugin call latency and trap counters.
    pub fn plugin(&self, plugin: &str) -> PluginMetrics {
        let p = || self.pipeline.clone();
        let trap = |kind: &'static str| metrics::counter!(PLUGIN_TRAPS, "pipeline" => p(), "plugin" => plugin.to_owned(), "kind" => kind);
        PluginMetrics {
            call_seconds: metrics::histogram!(PLUGIN_CALL_SECONDS, "pipeline" => p(), "plugin" => plugin.to_owned()),
            deadline: trap("deadline"),
            memory: trap("memory"),
            trap: trap("trap"),
        }
    }

    /// Gauge of consumer lag for one partition.
    pub fn lag(&self, topic: &str, partition: i32) -> Gauge {
        metrics::gauge!(CONSUMER_LAG, "pipeline" => self.pipeline.clone(), "topic" => topic.to_owned(), "partition" => partition.to_string())
    }
}

/// Handles for one plugin in one pipeline.
#[derive(Clone)]
pub struct PluginMetrics {
    /// Time per plugin call ([`PLUGIN_CALL_SECONDS`]).
    pub call_seconds: Histogram,
    /// [`PLUGIN_TRAPS`] with `kind="deadline"`: calls cut off by their
    /// deadline.
    pub deadline: Counter,
    /// [`PLUGIN_TRAPS`] with `kind="memory"`: calls that hit the memory cap.
    pub memory: Counter,
    /// [`PLUGIN_TRAPS`] with `kind="trap"`: any other trap.
    pub trap: Counter,
}

impl PluginMetrics {
    /// Count a trap of the given kind; other kinds are not traps.
    pub fn trapped(&self, kind: FailureKind) {
        match kind {
            FailureKind::Deadline => self.deadline.increment(1),
            FailureKind::Memory => self.memory.increment(1),
            FailureKind::Trap => self.trap.increment(1),
            _ => {}
        }
    }
}
