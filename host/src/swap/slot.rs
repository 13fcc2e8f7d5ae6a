//! A plugin slot: the version of one plugin of one pipeline that workers
//! run now, the one before it, and the last candidate that was refused.
//!
//! Promise: [`PluginSlot::load`] is a lock-free pointer read, cheap enough
//! to do before every record. A published version is complete (compiled,
//! initialised once, smoke-tested); workers never see a half-made one.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::config::plugin::PluginConfig;
use crate::plugin::Plugin;

/// One loaded version of a plugin, with the configuration it runs under.
pub struct Version {
    /// The compiled plugin.
    pub plugin: Arc<Plugin>,
    /// The plugin section it was admitted with: its params, limits and HTTP
    /// access.
    pub config: PluginConfig,
    /// 1 for the version loaded at startup, then +1 per swap in this slot.
    pub generation: u64,
    /// When this version was made.
    pub loaded_at: SystemTime,
    /// `name@sha256`: the value of the provenance header.
    pub tag: Arc<str>,
    /// Calls made to this version (retries count).
    pub calls: AtomicU64,
    /// Calls that ended in an error or a trap.
    pub errors: AtomicU64,
}

impl Version {
    /// A version of `plugin` running under `config`, loaded now, with no calls
    /// counted yet.
    pub fn new(plugin: Arc<Plugin>, config: PluginConfig, generation: u64) -> Self {
        let tag = format!("{}@{}", plugin.name(), plugin.hash()).into();
        Version {
            plugin,
            config,
            generation,
            loaded_at: SystemTime::now(),
            tag,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// A new instance of this version, `init` called with its params.
    pub fn instance(&self) -> Result<crate::plugin::Instance, crate::plugin::InitError> {
        crate::plugin::Instance::for_config(self.plugin.clone(), &self.config)
    }

    /// The content hash of the component: the version's identity.
    pub fn sha256(&self) -> &str {
        self.plugin.hash()
    }

    /// Calls made to this version so far (retries count).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls to this version so far that ended in an error or a trap.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("tag", &self.tag)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A candidate version that was refused.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// When it was refused.
    pub at: SystemTime,
    /// Content hash of the refused file, when it could be read.
    pub sha256: Option<String>,
    /// Why it was refused, with the plugin's param values hidden.
    pub error: String,
}

/// What a slot remembers besides the running version.
#[derive(Debug)]
pub struct SlotState {
    /// The configuration the pipeline file gives now; the next candidate
    /// is loaded with it.
    pub config: PluginConfig,
    /// The version before the running one, for rollback.
    pub previous: Option<Arc<Version>>,
    /// The last candidate refused; cleared when a reload publishes a version.
    pub rejected: Option<Rejection>,
    /// Generation of the next version.
    pub next_generation: u64,
    /// Versions published in this slot since startup (reloads and rollbacks).
    pub swaps: u64,
    /// Tickets of swap requests (reloads and rollbacks): the last one given
    /// out, and the one whose version runs. A request that finishes its
    /// admission after a later one has landed is dropped, so the latest
    /// request wins however long each admission takes.
    pub tickets: u64,
    /// The ticket of the request whose version runs (0: the version loaded at
    /// startup).
    pub landed: u64,
}

/// The running version of one plugin of one pipeline.
pub struct PluginSlot {
    /// The name of the pipeline the plugin is in.
    pub pipeline: String,
    /// Position in the pipeline's chain.
    pub index: usize,
    /// The plugin's name: its `name` in the pipeline file, else its file's
    /// stem.
    pub name: String,
    current: ArcSwap<Version>,
    pub(crate) state: Mutex<SlotState>,
}

impl PluginSlot {
    /// The slot of the plugin at `index` of pipeline `pipeline`'s chain,
    /// running `first` (and named after its plugin).
    pub fn new(pipeline: &str, index: usize, first: Version) -> Self {
        let name = first.plugin.name().to_owned();
        let state = SlotState {
            config: first.config.clone(),
            previous: None,
            rejected: None,
            next_generation: first.generation + 1,
            swaps: 0,
            tickets: 0,
            landed: 0,
        };
        PluginSlot {
            pipeline: pipeline.to_owned(),
            index,
            name,
            current: ArcSwap::from_pointee(first),
            state: Mutex::new(state),
        }
    }

    /// The running version (a cheap guard; do not hold it across records).
    pub fn load(&self) -> arc_swap::Guard<Arc<Version>> {
        self.current.load()
    }

    /// The running version, owned.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// A ticket for a swap request, taken before its admission starts.
    pub(crate) fn ticket(&self) -> u64 {
        let mut state = self.state();
        state.tickets += 1;
        state.tickets
    }

    /// Make `next` the running version; the old one becomes `previous`.
    /// `None` (nothing changes) when a request later than `ticket` landed
    /// first.
    pub(crate) fn publish(
        &self,
        state: &mut SlotState,
        ticket: u64,
        next: Arc<Version>,
    ) -> Option<Arc<Version>> {
        if state.landed > ticket {
            return None;
        }
        state.landed = ticket;
        let old = self.current.swap(next);
        state.previous = Some(old.clone());
        state.swaps += 1;
        Some(old)
    }

    /// A snapshot of the slot's state, for the admin API.
    pub fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for PluginSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSlot")
            .field("pipeline", &self.pipeline)
            .field("name", &self.name)
            .field("current", &self.current.load().tag)
            .finish_non_exhaustive()
    }
}
