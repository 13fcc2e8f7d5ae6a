//! The plugin runtime: load a component once, run it many times, a batch
//! of records per call when the component exports `process-batch`
//! (`sluice:plugin@0.2.0`), one record per call for 0.1.0 components.
//!
//! A [`Plugin`] is a compiled, world-checked component, shared by every worker.
//! An [`Instance`] is one worker's live copy: one `Store`, one instance, reused
//! for every record. Promise: a record that traps (deadline, memory cap,
//! guest panic) costs only that record. The instance is thrown away and
//! rebuilt (with `init` called again) before the next record, which runs
//! normally; if that rebuild fails, the next record fails as `transient`
//! (so it is retried), never as a trap of its own.
//!
//! Capabilities: every instance gets the `log` import; the `http` import
//! reaches only the hosts of the plugin's `http` config
//! ([`Instance::with_http`]), and denies every fetch without one
//! ([`Instance::new`]).

pub mod bindings;
pub mod cache;
pub mod engine;
pub mod host;
pub mod http;
pub mod limits;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{Store, Trap};

pub use bindings::{ErrorKind, Header, Input, Output};
use bindings::{Transform, TransformPre, v0_1};
pub use engine::{Runtime, RuntimeOptions};
use host::HostState;
pub use http::{AllowList, HttpClient, HttpPolicy, PolicyError};
pub use limits::Limits;

use crate::config::http::HttpConfig;
use crate::record::FailureKind;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {}: {source}", path.display())]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not a WebAssembly component (a core module, say).
    #[error("{} is not a WebAssembly component: {reason}", path.display())]
    NotComponent {
        /// The plugin file.
        path: PathBuf,
        /// What the file is instead, with a hint for fixing the build.
        reason: String,
    },
    /// wasmtime could not compile the component.
    #[error("cannot compile plugin {}: {reason}", path.display())]
    Compile {
        /// The plugin file.
        path: PathBuf,
        /// wasmtime's error.
        reason: String,
    },
    /// The component exports neither version of the world, or needs an
    /// import the host does not provide.
    #[error("{} does not implement the sluice plugin world: {reason}", path.display())]
    World {
        /// The plugin file.
        path: PathBuf,
        /// Which export or import does not match.
        reason: String,
    },
}

/// Why a plugin instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Instantiating the component failed or trapped (its start function,
    /// say), before `init` was called.
    #[error("plugin `{plugin}` could not be instantiated: {reason}")]
    Instantiate {
        /// The plugin's name.
        plugin: String,
        /// What went wrong, classified like a call's trap.
        reason: String,
    },
    /// `init` returned an error: the plugin refuses its params.
    #[error("plugin `{plugin}` rejected its configuration: {message}")]
    Rejected {
        /// The plugin's name.
        plugin: String,
        /// The plugin's own message.
        message: String,
    },
    /// `init` trapped: a guest panic, the memory cap, or `init_deadline`.
    #[error("plugin `{plugin}` trapped during init: {reason}")]
    Trapped {
        /// The plugin's name.
        plugin: String,
        /// What went wrong, classified like a call's trap.
        reason: String,
    },
    /// The plugin's `http` config was refused.
    #[error("plugin `{plugin}` has an unusable http config: {source}")]
    Http {
        /// The plugin's name.
        plugin: String,
        /// What is wrong with the config.
        source: PolicyError,
    },
}

/// Why one record failed. The variant decides what the pipeline does with
/// it: `Transient` is retried, everything else is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The plugin says the record is bad.
    #[error("invalid record: {0}")]
    Invalid(String),
    /// The plugin says the failure may go away.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The call ran past its deadline and was interrupted.
    #[error("deadline of {deadline:?} exceeded")]
    Deadline {
        /// The deadline the call had.
        deadline: Duration,
    },
    /// The plugin tried to grow memory past its cap.
    #[error("memory limit of {limit} bytes exceeded: {detail}")]
    Memory {
        /// The memory cap, in bytes.
        limit: u64,
        /// The trap's message, with the guest function when known.
        detail: String,
    },
    /// The plugin returned more outputs, or more output bytes, than its caps
    /// allow for one record.
    #[error("output limit exceeded: {0}")]
    OutputLimit(String),
    /// Any other trap: a guest panic, `unreachable`, an out-of-bounds access.
    #[error("plugin trapped: {0}")]
    Trap(String),
}

impl PluginError {
    /// The kind's stable name, as used in dead-letter headers, metrics and
    /// `sluice plugin run` output.
    pub fn kind(&self) -> FailureKind {
        match self {
            PluginError::Invalid(_) => FailureKind::Invalid,
            PluginError::Transient(_) => FailureKind::Transient,
            PluginError::Deadline { .. } => FailureKind::Deadline,
            PluginError::Memory { .. } => FailureKind::Memory,
            PluginError::OutputLimit(_) => FailureKind::OutputLimit,
            PluginError::Trap(_) => FailureKind::Trap,
        }
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> String {
        match self {
            PluginError::Invalid(m)
            | PluginError::Transient(m)
            | PluginError::OutputLimit(m)
            | PluginError::Trap(m) => m.clone(),
            other => other.to_string(),
        }
    }

    /// Whether retrying the same record may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, PluginError::Transient(_))
    }
}

/// A compiled plugin that implements the sluice world.
pub struct Plugin {
    name: Arc<str>,
    path: PathBuf,
    hash: String,
    cached: bool,
    component: Component,
    pre: Pre,
    runtime: Runtime,
}

/// A plugin's exports, checked against the world it was built for.
pub(crate) enum Pre {
    /// `sluice:plugin@0.2.0`: `process-batch` beside `process`.
    Batch(TransformPre<HostState>),
    /// `sluice:plugin@0.1.0`: `process` only; the host loops per record.
    Single(v0_1::TransformPre<HostState>),
}

/// The result of one record's call.
pub type Outcome = Result<Vec<Output>, PluginError>;

/// What `process-batch` returns, as lifted.
type BatchReturn = (Vec<Result<Vec<Output>, bindings::sluice::plugin::types::ProcessError>>,);

impl Plugin {
    /// The name it was loaded under: the plugin section's `name`, by
    /// default (and for the `sluice plugin` commands) the file's stem.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The component file it was loaded from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// SHA-256 of the component bytes, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Whether the compiled code came from the on-disk cache.
    pub fn from_cache(&self) -> bool {
        self.cached
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// The runtime that compiled it; its instances run on this engine.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The version of the `sluice:plugin` world the component was built
    /// against: `0.2.0` (batches) or `0.1.0` (one record per call).
    pub fn wit_version(&self) -> &'static str {
        match self.pre {
            Pre::Batch(_) => "0.2.0",
            Pre::Single(_) => "0.1.0",
        }
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

struct Live {
    store: Store<HostState>,
    exports: Exports,
}

enum Exports {
    Batch {
        bindings: Transform,
        /// `process-batch`, called with borrowed records.
        batch: wasmtime::component::Func,
    },
    Single(v0_1::Transform),
}

/// One worker's instance of a plugin. Not shared between threads; each
/// worker owns its own.
pub struct Instance {
    plugin: Arc<Plugin>,
    params: Vec<(String, String)>,
    limits: Limits,
    deadline_ticks: u64,
    http: Arc<HttpClient>,
    live: Option<Live>,
}

impl Instance {
    /// Instantiate `plugin` and call its `init` with `params`. The plugin
    /// gets no HTTP access: every fetch is denied.
    pub fn new(
        plugin: Arc<Plugin>,
        params: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Self, InitError> {
        Self::with_http(plugin, params, limits, None)
    }

    /// As [`Instance::new`], granting the `http` import under `http` (none:
    /// every fetch is denied). The HTTP client is made once per instance,
    /// on its first fetch, and kept across rebuilds after traps.
    pub fn with_http(
        plugin: Arc<Plugin>,
        params: Vec<(String, String)>,
        limits: Limits,
        http: Option<&HttpConfig>,
    ) -> Result<Self, InitError> {
        let policy = match http {
            Some(config) => {
                let policy = HttpPolicy::from_config(config).map_err(|source| InitError::Http {
                    plugin: plugin.name.to_string(),
                    source,
                })?;
                // A fetch gets at most what is left of the call's deadline.
                if !policy.allow().is_empty() && limits.deadline <= policy.timeout() {
                    tracing::warn!(
                        plugin = %plugin.name,
                        deadline = ?limits.deadline,
                        http_timeout = ?policy.timeout(),
                        "the plugin's deadline is not larger than its HTTP timeout; \
                         a slow fetch will be cut off at the deadline"
                    );
                }
                policy
            }
            None => HttpPolicy::deny_all(),
        };
        let deadline_ticks = limits::ticks_for(limits.deadline, plugin.runtime.tick());
        let http = Arc::new(HttpClient::new(plugin.name.clone(), policy));
        let mut instance = Instance {
            plugin,
            params,
            limits,
            deadline_ticks,
            http,
            live: None,
        };
        instance.live = Some(instance.build()?);
        Ok(instance)
    }

    /// As [`Instance::with_http`], with the params, limits and HTTP access
    /// of a pipeline file's plugin section.
    pub fn for_config(
        plugin: Arc<Plugin>,
        config: &crate::config::plugin::PluginConfig,
    ) -> Result<Self, InitError> {
        Self::with_http(
            plugin,
            config.init_params(),
            config.limits,
            config.http.as_ref(),
        )
    }

    /// The plugin this is an instance of.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The limits its calls run under (and its `init`, with `init_deadline`).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn build(&self) -> Result<Live, InitError> {
        let plugin = &self.plugin;
        let name = || plugin.name.to_string();
        // Errors of this phase name the deadline that applies to it.
        let init_limits = Limits {
            deadline: self.limits.init_deadline,
            ..self.limits
        };
        let mut store = Store::new(
            plugin.runtime.engine(),
            HostState::new(plugin.name.clone(), &self.limits, self.http.clone()),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(limits::hostcall_fuel(&self.limits));
        store.epoch_deadline_trap();
        store.set_epoch_deadline(limits::ticks_for(
            self.limits.init_deadline,
            plugin.runtime.tick(),
        ));
        store
            .data_mut()
            .begin_call(Instant::now() + self.limits.init_deadline);
        let instantiated = match &plugin.pre {
            Pre::Batch(pre) => pre
                .instance_pre()
                .instantiate(&mut store)
                .and_then(|instance| {
                    let bindings = Transform::new(&mut store, &instance)?;
                    let batch = instance
                        .get_func(&mut store, "process-batch")
                        .ok_or_else(|| wasmtime::Error::msg("no `process-batch` export"))?;
                    Ok(Exports::Batch { bindings, batch })
                }),
            Pre::Single(pre) => pre.instantiate(&mut store).map(Exports::Single),
        };
        let exports = instantiated.map_err(|e| InitError::Instantiate {
            plugin: name(),
            reason: describe(&e, &store, &init_limits),
        })?;
        let init = match &exports {
            Exports::Batch { bindings, .. } => bindings.call_init(&mut store, &self.params),
            Exports::Single(bindings) => bindings.call_init(&mut store, &self.params),
        };
        match init {
            Ok(Ok(())) => Ok(Live { store, exports }),
            Ok(Err(message)) => Err(InitError::Rejected {
                plugin: name(),
                message,
            }),
            Err(e) => Err(InitError::Trapped {
                plugin: name(),
                reason: describe(&e, &store, &init_limits),
            }),
        }
    }

    /// Whether the plugin takes records in batches (`sluice:plugin@0.2.0`).
    pub fn batches(&self) -> bool {
        matches!(self.plugin.pre, Pre::Batch(_))
    }

    /// The live instance, rebuilt first if a trap threw the last one away.
    /// The record at hand did not break the instance: a rebuild that fails
    /// is a transient failure of this record (retried with backoff), not a
    /// trap that dead-letters it at once.
    fn live(&mut self) -> Result<&mut Live, PluginError> {
        if self.live.is_none() {
            let live = self.build().map_err(|e| {
                PluginError::Transient(format!("could not rebuild the instance after a trap: {e}"))
            })?;
            self.live = Some(live);
        }
        self.live
            .as_mut()
            .ok_or_else(|| PluginError::Transient("no live instance".into()))
    }

    /// Run one record through the plugin.
    pub fn process(&mut self, input: &Input) -> Outcome {
        let deadline = self.limits.deadline;
        let ticks = self.deadline_ticks;
        let live = self.live()?;
        live.store.data_mut().begin_call(Instant::now() + deadline);
        live.store.set_epoch_deadline(ticks);
        let result = match &live.exports {
            Exports::Batch { bindings, .. } => bindings.call_process(&mut live.store, input),
            Exports::Single(bindings) => bindings.call_process(&mut live.store, input),
        };
        match result {
            Ok(Ok(outputs)) => {
                self.limits
                    .check_outputs(outputs.len(), output_bytes(&outputs))?;
                Ok(outputs)
            }
            Ok(Err(e)) => Err(process_error(e)),
            Err(e) => Err(self.trapped(&e)),
        }
    }

    /// Run several records through the plugin in one `process-batch` call:
    /// one outcome per record, in order. The whole call gets one record's
    /// deadline. `Err` means the call itself failed (it trapped, ran out of
    /// time, or the plugin has no batch export); which record caused it is
    /// unknown, so the caller runs the records one by one with
    /// [`Instance::process`] instead, each on its own deadline.
    pub fn process_batch(&mut self, inputs: &[&Input]) -> Result<Vec<Outcome>, PluginError> {
        let deadline = self.limits.deadline;
        let ticks = self.deadline_ticks;
        let live = self.live()?;
        let Exports::Batch { batch, .. } = &live.exports else {
            return Err(PluginError::Trap("the plugin has no batch export".into()));
        };
        let batch = *batch;
        live.store.data_mut().begin_call(Instant::now() + deadline);
        live.store.set_epoch_deadline(ticks);
        let result = batch
            .typed::<(&[&Input],), BatchReturn>(&live.store)
            .and_then(|f| f.call(&mut live.store, (inputs,)));
        let results = match result {
            Ok((results,)) => results,
            Err(e) => return Err(self.trapped(&e)),
        };
        if results.len() != inputs.len() {
            // Not a trap, but the answers cannot be matched to records.
            return Err(PluginError::Trap(format!(
                "process-batch returned {} results for {} records",
                results.len(),
                inputs.len()
            )));
        }
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(outputs) => {
                    self.limits
                        .check_outputs(outputs.len(), output_bytes(&outputs))?;
                    Ok(outputs)
                }
                Err(e) => Err(process_error(e)),
            })
            .collect())
    }

    /// A call trapped: classify it and throw the instance away (a trapped
    /// instance may hold broken invariants); the next call rebuilds it.
    fn trapped(&mut self, e: &wasmtime::Error) -> PluginError {
        let err = match &self.live {
            Some(live) => classify(e, &live.store, &self.limits),
            None => PluginError::Trap(root_message(e)),
        };
        tracing::warn!(
            plugin = %self.plugin.name,
            kind = %err.kind(),
            error = %err,
            "plugin trapped; rebuilding its instance"
        );
        self.live = None;
        err
    }
}

fn process_error(e: bindings::sluice::plugin::types::ProcessError) -> PluginError {
    match e.kind {
        ErrorKind::Invalid => PluginError::Invalid(e.message),
        ErrorKind::Transient => PluginError::Transient(e.message),
    }
}

/// The bytes an output holds, as the output caps count them.
pub fn output_bytes(outputs: &[Output]) -> u64 {
    outputs
        .iter()
        .map(|o| {
            let n = o.value.len()
                + o.key.as_ref().map_or(0, Vec::len)
                + o.route.as_ref().map_or(0, String::len)
                + header_bytes(&o.headers);
            n as u64
        })
        .sum()
}

/// The bytes of a record's key, value and headers: what its partition's
/// in-flight window counts.
pub fn input_bytes(record: &Input) -> usize {
    record.key.as_ref().map_or(0, Vec::len) + record.value.len() + header_bytes(&record.headers)
}

fn header_bytes(headers: &[Header]) -> usize {
    headers.iter().map(|h| h.name.len() + h.value.len()).sum()
}

fn classify(err: &wasmtime::Error, store: &Store<HostState>, limits: &Limits) -> PluginError {
    if err
        .chain()
        .any(|e| e.to_string().contains(limits::HOSTCALL_FUEL_EXHAUSTED))
    {
        return PluginError::OutputLimit(format!(
            "the call tried to hand the host more than {} bytes",
            limits::hostcall_fuel(limits)
        ));
    }
    if store.data().limiter.memory_refused() {
        return PluginError::Memory {
            limit: limits.memory,
            detail: root_message(err),
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Deadline {
            deadline: limits.deadline,
        },
        _ => PluginError::Trap(root_message(err)),
    }
}

fn describe(err: &wasmtime::Error, store: &Store<HostState>, limits: &Limits) -> String {
    classify(err, store, limits).to_string()
}

/// The trap's own message, plus the first guest frame when there is one.
fn root_message(err: &wasmtime::Error) -> String {
    let trap = err
        .downcast_ref::<Trap>()
        .map(|t| t.to_string())
        .unwrap_or_else(|| err.root_cause().to_string());
    match err.downcast_ref::<wasmtime::WasmBacktrace>() {
        Some(bt) => match bt.frames().first().and_then(|f| f.func_name()) {
            Some(func) => format!("{trap} (in {func})"),
            None => trap,
        },
        None => trap,
    }
}
