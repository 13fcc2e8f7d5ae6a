//! What a plugin instance can reach: the per-store host state, and the WASI
//! surface it is linked against. Each imported interface that sluice
//! implements itself has its own file: [`clocks`] (the monotonic clock,
//! bounded by the call's deadline), [`log`] (the `log` import and guest
//! stdout/stderr) and `http` (the `http` import, a thin door to
//! [`super::http`]).
//!
//! Promise, the sandbox exactly as it is (checked by tests/sandbox.rs):
//! - **Denied**, explicitly rather than by a wasmtime default: sockets (TCP,
//!   UDP and name lookup; every address is refused), the filesystem (no
//!   preopened directories), environment variables and arguments (empty),
//!   stdin (closed). The interfaces stay linked so that toolchains which
//!   import them (wasi-libc, componentize-py, jco) can instantiate; every
//!   call into them fails.
//! - **Granted**: the wall clock and the monotonic clock, at the host's
//!   resolution; `wasi:random` (the host CSPRNG, at most 1 MiB per call);
//!   stdout and stderr, which go to the host log; the `log` import; the
//!   `http` import, to the hosts the plugin's config allows.
//! - **Bounded**: every clock wait ends at the call's deadline; at most
//!   [`MAX_RESOURCES`] live WASI resources (pollables, streams) per instance.

pub mod clocks;
mod http;
pub mod log;

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings;
use super::http::HttpClient;
use super::limits::{Limiter, Limits};
use clocks::BudgetedClock;
use log::{GuestLog, LogBudget};

/// Most WASI resources (pollables, streams, ...) one instance may hold at
/// once. Plugins need a handful; the cap keeps a plugin from parking host
/// memory in a million pollables across calls.
pub const MAX_RESOURCES: usize = 1024;

/// Most bytes one `wasi:random` call may return.
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// The data of one plugin `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    plugin: Arc<str>,
    /// Shared with the owning `Instance`, so the HTTP client and its
    /// connections outlive a rebuild of the store after a trap.
    http: Arc<HttpClient>,
    /// When the running call must end; `None` between calls.
    deadline: Option<Instant>,
    log: Arc<LogBudget>,
}

impl HostState {
    /// The state of a fresh store for the plugin named `plugin`: WASI with
    /// stdout and stderr logged and no sockets, a memory budget of
    /// `limits.memory`, and `http` for its fetches. No call is running.
    pub fn new(plugin: Arc<str>, limits: &Limits, http: Arc<HttpClient>) -> Self {
        let log = Arc::new(LogBudget::new(plugin.clone()));
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestLog::new(log.clone(), "stdout"))
            .stderr(GuestLog::new(log.clone(), "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        HostState {
            wasi,
            table,
            limiter: Limiter::new(limits),
            plugin,
            http,
            deadline: None,
            log,
        }
    }

    /// The plugin's name, for logs.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The `http` capability granted to this plugin.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// When the running call must end, if one is running.
    pub fn call_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Start a guest call that must end by `deadline`: its clock waits and
    /// fetches are cut off there, and its log budget starts afresh.
    pub(crate) fn begin_call(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        self.limiter.reset();
        self.log.begin_call();
    }

    /// The clocks import's view, bounded by the running call's deadline.
    fn budgeted_clock(&mut self) -> BudgetedClock<'_> {
        let deadline = self.deadline;
        BudgetedClock {
            clocks: self.clocks(),
            deadline,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::sluice::plugin::types::Host for HostState {}

/// Link the plugin world's imports: all of WASI p2 (see the module doc for
/// what each grants), the monotonic clock replaced by [`clocks`], and
/// sluice's own `log` and `http` imports.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<_, clocks::Budgeted>(
        linker,
        HostState::budgeted_clock,
    )?;
    linker.allow_shadowing(false);
    bindings::Transform::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
        linker,
        |state| state,
    )?;
    add_0_1_to_linker(linker)
}

/// The same `log` and `http` imports under their `sluice:plugin@0.1.0`
/// names, for components built against 0.1.0 (the interfaces did not
/// change between the versions, so the 0.2.0 types check against them).
fn add_0_1_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> anyhow::Result<()> {
    use bindings::sluice::plugin::{http, log};
    use wasmtime::StoreContextMut;
    type LogArgs = (log::Level, String, Vec<(String, String)>);
    linker.instance("sluice:plugin/types@0.1.0")?;
    linker.instance("sluice:plugin/log@0.1.0")?.func_wrap(
        "log",
        |mut cx: StoreContextMut<'_, HostState>, (level, message, fields): LogArgs| {
            log::Host::log(cx.data_mut(), level, message, fields);
            Ok(())
        },
    )?;
    linker.instance("sluice:plugin/http@0.1.0")?.func_wrap(
        "fetch",
        |mut cx: StoreContextMut<'_, HostState>, (req,): (http::Request,)| {
            Ok((http::Host::fetch(cx.data_mut(), req)?,))
        },
    )?;
    Ok(())
}
