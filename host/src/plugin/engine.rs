//! The one wasmtime `Engine`, its epoch ticker, and loading components with
//! an on-disk compilation cache.
//!
//! Promise: a component is compiled at most once per (content hash, wasmtime
//! version, engine settings); later loads deserialize the cached artefact. A
//! file that is not a component, or that does not implement the sluice world,
//! is refused with an error naming the file and the problem.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::Pre;
use super::bindings::{TransformPre, WORLD, WORLD_0_1, v0_1};
use super::cache::Cache;
use super::host::HostState;
use super::{LoadError, Plugin};

/// How often the epoch advances. A call overruns its deadline by at most
/// one tick.
pub const DEFAULT_TICK: Duration = Duration::from_millis(5);

/// Options for the plugin runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are cached. `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Epoch tick interval.
    pub tick: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: default_cache_dir(),
            tick: DEFAULT_TICK,
        }
    }
}

/// `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice/components`, else
/// `$HOME/.cache/sluice/components`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sluice").join("components"))
}

/// The shared plugin runtime: one engine, one linker, one ticker thread.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    tick: Duration,
    /// Engine settings fingerprint, part of every cache key.
    compat: String,
}

impl Runtime {
    /// Create the engine (component model, epoch interruption) and the linker
    /// with the host's imports, and start the epoch ticker thread. Fails if the
    /// thread cannot start: without it no deadline would fire.
    pub fn new(opts: RuntimeOptions) -> anyhow::Result<Self> {
        Self::with_spawn(opts, spawn_thread)
    }

    /// As [`Runtime::new`], starting the ticker thread with `spawn` (a test
    /// passes one that fails).
    fn with_spawn(opts: RuntimeOptions, spawn: Spawn) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Calls are synchronous: without this, every call sets up (and
        // tears down) the component model's task bookkeeping for
        // concurrent guests, which sluice never runs.
        config.concurrency_support(false);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::<HostState>::new(&engine);
        super::host::add_to_linker(&mut linker)?;

        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = format!("wasmtime-{}-{:016x}", wasmtime_version(), h.finish());

        // Without the ticker no deadline fires: refuse to run plugins at all.
        spawn_ticker(&engine, opts.tick, spawn)
            .map_err(|e| anyhow::anyhow!("cannot start the epoch ticker thread: {e}; refusing to run plugins without deadlines"))?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache_dir: opts.cache_dir,
                tick: opts.tick,
                compat,
            }),
        })
    }

    /// The wasmtime engine every plugin is compiled for and runs on.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// How often the epoch advances: the granularity of every deadline.
    pub fn tick(&self) -> Duration {
        self.inner.tick
    }

    /// Load and check a plugin from a `.wasm` file. CPU-heavy on a cache
    /// miss: call it from a blocking context.
    pub fn load(&self, path: &Path, name: &str) -> Result<Arc<Plugin>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load_bytes(&bytes, path, name)
    }

    /// As [`Runtime::load`], from bytes already in memory.
    pub fn load_bytes(
        &self,
        bytes: &[u8],
        path: &Path,
        name: &str,
    ) -> Result<Arc<Plugin>, LoadError> {
        check_component_header(bytes, path)?;
        let hash = hex::encode(Sha256::digest(bytes));
        let started = Instant::now();
        let (component, cached) = self.compile_cached(bytes, &hash, path)?;
        let instance_pre =
            self.inner
                .linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::World {
                    path: path.to_owned(),
                    reason: format!("it needs an import the host does not provide: {e:#}"),
                })?;
        // The newest world first; a component built against 0.1.0 lacks
        // only `process-batch`.
        let pre = match TransformPre::new(instance_pre.clone()) {
            Ok(pre) => Pre::Batch(pre),
            Err(newest) => match v0_1::TransformPre::new(instance_pre) {
                Ok(pre) => Pre::Single(pre),
                Err(_) => {
                    return Err(LoadError::World {
                        path: path.to_owned(),
                        reason: format!(
                            "it exports neither the {WORLD} world nor {WORLD_0_1}: {newest:#}"
                        ),
                    });
                }
            },
        };
        tracing::debug!(
            plugin = name,
            hash = &hash[..12],
            cached,
            elapsed = ?started.elapsed(),
            "plugin loaded"
        );
        Ok(Arc::new(Plugin {
            name: name.into(),
            path: path.to_owned(),
            hash,
            cached,
            component,
            pre,
            runtime: self.clone(),
        }))
    }

    fn compile_cached(
        &self,
        bytes: &[u8],
        hash: &str,
        path: &Path,
    ) -> Result<(Component, bool), LoadError> {
        let engine = &self.inner.engine;
        let compile = || {
            Component::new(engine, bytes).map_err(|e| LoadError::Compile {
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })
        };
        let Some(dir) = &self.inner.cache_dir else {
            return Ok((compile()?, false));
        };
        let cache = match Cache::open(dir) {
            Ok(cache) => cache,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "compile cache not used");
                return Ok((compile()?, false));
            }
        };
        let name = format!("{hash}-{}", self.inner.compat);
        match cache.get(&name) {
            // SAFETY: these bytes are what `Component::serialize` wrote for
            // this wasmtime version and engine settings (both in `name`):
            // their tag, keyed by the cache's private key, verified.
            Ok(Some(bytes)) => match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(plugin = %path.display(), error = %e, "ignoring bad cache entry")
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(
                plugin = %path.display(),
                dir = %dir.display(),
                error = %e,
                "cached compilation not loaded; compiling again"
            ),
        }
        let component = compile()?;
        if let Err(e) = component
            .serialize()
            .and_then(|data| Ok(cache.put(&name, &data)?))
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not cache compiled plugin");
        }
        Ok((component, false))
    }
}

/// Refuse anything that is not a WebAssembly component, with a hint.
fn check_component_header(bytes: &[u8], path: &Path) -> Result<(), LoadError> {
    let not = |reason: &str| LoadError::NotComponent {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not("it is not a WebAssembly file (bad magic number)"));
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(not(
            "it is a core WebAssembly module, not a component; build for wasm32-wasip2 \
             or wrap it with `wasm-tools component new`",
        )),
        _ => Err(not("it has an unsupported WebAssembly version or layer")),
    }
}

fn spawn_ticker(engine: &Engine, tick: Duration, spawn: Spawn) -> std::io::Result<()> {
    let weak = engine.weak();
    spawn(
        std::thread::Builder::new().name("sluice-epoch".into()),
        Box::new(move || {
            // Count ticks by the clock, not by sleeps: when this thread is
            // scheduled late (a busy machine), it catches up, so deadlines
            // stay close to wall-clock time.
            let mut next = Instant::now() + tick;
            while let Some(engine) = weak.upgrade() {
                let now = Instant::now();
                while next <= now {
                    engine.increment_epoch();
                    next += tick;
                }
                drop(engine);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }),
    )
}

/// Starts a named thread.
type Spawn = fn(std::thread::Builder, Box<dyn FnOnce() + Send>) -> std::io::Result<()>;

fn spawn_thread(builder: std::thread::Builder, f: Box<dyn FnOnce() + Send>) -> std::io::Result<()> {
    builder.spawn(f).map(drop)
}

/// The wasmtime version this host was built with.
pub fn wasmtime_version() -> &'static str {
    "48.0.8"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_ticker_no_plugins() {
        fn refuse(_: std::thread::Builder, _: Box<dyn FnOnce() + Send>) -> std::io::Result<()> {
            Err(std::io::Error::other("no threads left"))
        }
        let opts = || RuntimeOptions {
            cache_dir: None,
            tick: DEFAULT_TICK,
        };
        let err = Runtime::with_spawn(opts(), refuse)
            .err()
            .expect("a runtime without its ticker is refused");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("epoch ticker") && msg.contains("no threads left"),
            "{msg}"
        );
        assert!(Runtime::with_spawn(opts(), spawn_thread).is_ok());
    }
}
