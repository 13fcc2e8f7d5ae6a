//! Hot swap: replace a running plugin's code or configuration without a
//! restart, and without losing or repeating a record.
//!
//! Promises:
//! - A candidate version is compiled, checked against the sluice world,
//!   initialised with its params and run over its smoke records before it
//!   is published, all off the record path (on the watcher thread or a
//!   blocking task). Only a version that passes every check is published.
//! - Publishing is one atomic pointer swap in the plugin's [`PluginSlot`].
//!   Workers look at the slot between records, so every record is processed
//!   by exactly one version, and since a partition always runs on the same
//!   worker, it switches once, at an offset boundary, in offset order.
//! - A refused candidate leaves the running version in place. It is logged
//!   with the reason, counted in `sluice_plugin_reloads_total{result =
//!   "rejected"}` and shown on `GET /plugins`.
//! - Swaps never touch offsets: nothing is committed, skipped or re-read
//!   because of one.
//! - No lock is held while a candidate is admitted: its `init` and smoke
//!   records run under the plugin's own deadlines, and a slow or hanging
//!   candidate delays neither other reloads, nor rollbacks, nor records.
//!   Requests for one slot are ordered by ticket: the latest request to be
//!   made wins, whichever admission finishes first.

pub mod admin;
pub mod slot;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::config::pipeline::{self, File};
use crate::config::plugin::{PluginConfig, SmokeRecord};
use crate::plugin::{Input, Instance, Plugin, PluginError, Runtime};
pub use slot::{PluginSlot, Rejection, Version};

/// What a reload did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A new version runs now.
    Swapped {
        /// The version that ran before.
        from: Arc<Version>,
        /// The version that runs now.
        to: Arc<Version>,
    },
    /// The file and config are those of the running version.
    Unchanged(Arc<Version>),
    /// The candidate was refused; the running version stays.
    Rejected(String),
    /// A rollback was asked for, but no version ran before this one.
    NoPrevious,
    /// A later request for the same plugin landed while this one was being
    /// admitted; this one was dropped.
    Superseded,
}

/// Why a reload was attempted (for logs).
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// The plugin file changed.
    File,
    /// The plugin's section of the pipeline file changed.
    Config,
    /// `POST /plugins/.../reload`.
    Admin,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "plugin file changed",
            Trigger::Config => "pipeline file changed",
            Trigger::Admin => "admin request",
        }
    }
}

/// Load, initialise and smoke-test one version of a plugin. This is the
/// whole admission check, used at startup and for every candidate.
pub fn admit(
    runtime: &Runtime,
    bytes: &[u8],
    config: &PluginConfig,
) -> anyhow::Result<Arc<Plugin>> {
    let plugin = runtime.load_bytes(bytes, &config.path, &config.display_name())?;
    let mut instance = Instance::for_config(plugin.clone(), config)?;
    for (index, smoke) in config.smoke.iter().enumerate() {
        run_smoke(&mut instance, index, smoke).map_err(|reason| SmokeFailed { index, reason })?;
    }
    Ok(plugin)
}

/// A version failed one of its plugin's smoke records.
#[derive(Debug, thiserror::Error)]
#[error("smoke record {index} failed: {reason}")]
pub struct SmokeFailed {
    /// Which smoke record failed: its index in the plugin's `smoke` list,
    /// from 0.
    pub index: usize,
    /// What the plugin answered instead of what the record expects.
    pub reason: String,
}

/// Read and admit the plugin file `config.path` names.
pub fn admit_file(runtime: &Runtime, config: &PluginConfig) -> anyhow::Result<Arc<Plugin>> {
    let bytes = std::fs::read(&config.path).map_err(|source| crate::plugin::LoadError::Read {
        path: config.path.clone(),
        source,
    })?;
    admit(runtime, &bytes, config)
}

fn run_smoke(instance: &mut Instance, i: usize, smoke: &SmokeRecord) -> Result<(), String> {
    let input = Input {
        topic: "sluice.smoke".into(),
        partition: 0,
        offset: i as i64,
        timestamp: None,
        key: smoke.key.as_ref().map(|k| k.as_bytes().to_vec()),
        value: smoke.value.as_bytes().to_vec(),
        headers: Vec::new(),
    };
    let result = instance.process(&input);
    match (&smoke.expect, smoke.expect_error.as_deref(), result) {
        (Some(expect), _, Ok(outputs)) => {
            let got: Vec<&[u8]> = outputs.iter().map(|o| o.value.as_slice()).collect();
            let same = got.len() == expect.len()
                && got
                    .iter()
                    .zip(expect)
                    .all(|(g, e)| same_value(g, e.as_bytes()));
            if same {
                Ok(())
            } else {
                Err(format!(
                    "expected outputs {expect:?}, got {:?}",
                    got.iter()
                        .map(|g| String::from_utf8_lossy(g))
                        .collect::<Vec<_>>()
                ))
            }
        }
        (Some(_), _, Err(e)) => Err(format!("expected outputs, got {} error: {e}", e.kind())),
        (None, Some(kind), Err(e)) if e.kind() == kind => Ok(()),
        (None, Some(kind), Err(e)) => Err(format!("expected an error of kind {kind}, got {e}")),
        (None, Some(kind), Ok(outputs)) => Err(format!(
            "expected an error of kind {kind}, got {} output(s)",
            outputs.len()
        )),
        (None, None, r) => Err(format!(
            "no expectation given (got {:?})",
            r.map(|o| o.len()).map_err(|e: PluginError| e.kind())
        )),
    }
}

/// Equal as JSON when both sides are JSON, else byte for byte.
fn same_value(got: &[u8], want: &[u8]) -> bool {
    match (
        serde_json::from_slice::<serde_json::Value>(got),
        serde_json::from_slice::<serde_json::Value>(want),
    ) {
        (Ok(g), Ok(w)) => g == w,
        _ => got == want,
    }
}

/// Every plugin slot of a running process, and the one place new versions
/// are admitted and published.
pub struct Reloader {
    runtime: Runtime,
    /// The pipeline file, re-read for config changes (none in embedded use).
    file: Option<PathBuf>,
    slots: Vec<Arc<PluginSlot>>,
}

impl Reloader {
    /// A reloader of `slots` that admits candidates on `runtime`; `file` is
    /// the pipeline file to re-read for config changes (`None` in embedded
    /// use).
    pub fn new(runtime: Runtime, file: Option<PathBuf>, slots: Vec<Arc<PluginSlot>>) -> Self {
        Reloader {
            runtime,
            file,
            slots,
        }
    }

    /// Every plugin slot of the process.
    pub fn slots(&self) -> &[Arc<PluginSlot>] {
        &self.slots
    }

    /// The pipeline file re-read for config changes, if there is one.
    pub fn pipeline_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The slot of plugin `name` in pipeline `pipeline`.
    pub fn find(&self, pipeline: &str, name: &str) -> Option<&Arc<PluginSlot>> {
        self.slots
            .iter()
            .find(|s| s.pipeline == pipeline && s.name == name)
    }

    /// Load the slot's plugin file with the slot's current config and, if
    /// it differs from the running version and passes admission, publish it.
    pub fn reload(&self, slot: &PluginSlot, trigger: Trigger) -> Outcome {
        let ticket = slot.ticket();
        let started = Instant::now();
        let config = slot.state().config.clone();
        let current = slot.current();
        let bytes = match std::fs::read(&config.path) {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("cannot read {}: {e}", config.path.display());
                return self.reject(slot, None, msg, trigger);
            }
        };
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha == current.sha256() && config == current.config {
            tracing::debug!(pipeline = %slot.pipeline, plugin = %slot.name, "reload: unchanged");
            return Outcome::Unchanged(current);
        }
        let plugin = match admit(&self.runtime, &bytes, &config) {
            Ok(p) => p,
            Err(e) => return self.reject(slot, Some(sha), format!("{e:#}"), trigger),
        };
        let mut state = slot.state();
        let next = Arc::new(Version::new(plugin, config, state.next_generation));
        let Some(from) = slot.publish(&mut state, ticket, next.clone()) else {
            tracing::info!(pipeline = %slot.pipeline, plugin = %slot.name, "reload superseded by a later request");
            return Outcome::Superseded;
        };
        state.next_generation += 1;
        state.rejected = None;
        drop(state);
        crate::metrics::plugin_reloads(&slot.pipeline, &slot.name, "ok").increment(1);
        tracing::info!(
            pipeline = %slot.pipeline,
            plugin = %slot.name,
            from = %short(from.sha256()),
            to = %short(next.sha256()),
            generation = next.generation,
            reason = trigger.as_str(),
            elapsed = ?started.elapsed(),
            "plugin swapped; workers switch at their next record"
        );
        Outcome::Swapped { from, to: next }
    }

    /// Make the previous version the running one again (the running one
    /// becomes the previous: a second rollback rolls forward). The
    /// previous version is initialised once more before it is published.
    pub fn rollback(&self, slot: &PluginSlot) -> Outcome {
        let ticket = slot.ticket();
        let Some(previous) = slot.state().previous.clone() else {
            return Outcome::NoPrevious;
        };
        if let Err(e) = previous.instance() {
            return Outcome::Rejected(format!("the previous version no longer starts: {e}"));
        }
        let mut state = slot.state();
        let Some(from) = slot.publish(&mut state, ticket, previous.clone()) else {
            return Outcome::Superseded;
        };
        drop(state);
        crate::metrics::plugin_reloads(&slot.pipeline, &slot.name, "rollback").increment(1);
        tracing::info!(
            pipeline = %slot.pipeline,
            plugin = %slot.name,
            from = %short(from.sha256()),
            to = %short(previous.sha256()),
            "plugin rolled back; workers switch at their next record"
        );
        Outcome::Swapped { from, to: previous }
    }

    /// Re-read the pipeline file and reload every plugin whose section
    /// changed. Only plugin sections apply live; any other change is
    /// reported as needing a restart. Returns the slots it reloaded.
    pub fn pipeline_file_changed(&self) -> Vec<(String, Outcome)> {
        let Some(path) = &self.file else {
            return Vec::new();
        };
        let new = match pipeline::load(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(
                    file = %path.display(),
                    error = %format!("{e:#}"),
                    "pipeline file change ignored: the running plugins stay"
                );
                crate::metrics::pipeline_file_reloads("rejected").increment(1);
                return Vec::new();
            }
        };
        crate::metrics::pipeline_file_reloads("ok").increment(1);
        let mut out = Vec::new();
        for slot in self.changed_slots(&new) {
            let outcome = self.reload(&slot, Trigger::Config);
            out.push((format!("{}/{}", slot.pipeline, slot.name), outcome));
        }
        out
    }

    /// Update each slot's wanted config from `new`; return the slots whose
    /// plugin section differs from what they run.
    fn changed_slots(&self, new: &File) -> Vec<Arc<PluginSlot>> {
        let mut changed = Vec::new();
        for slot in &self.slots {
            let Some(p) = new.pipelines.iter().find(|p| p.name == slot.pipeline) else {
                tracing::warn!(pipeline = %slot.pipeline, "pipeline removed from the file; restart to apply");
                continue;
            };
            let Some(pc) = p.plugins.get(slot.index) else {
                tracing::warn!(pipeline = %slot.pipeline, plugin = %slot.name, "plugin removed from the chain; restart to apply");
                continue;
            };
            if pc.display_name() != slot.name {
                tracing::warn!(pipeline = %slot.pipeline, plugin = %slot.name, new = %pc.display_name(), "plugin chain changed; restart to apply");
                continue;
            }
            if pc.workers != slot.state().config.workers {
                tracing::warn!(pipeline = %slot.pipeline, plugin = %slot.name, "`workers` changed; restart to apply");
            }
            let mut state = slot.state();
            if state.config != *pc {
                state.config = pc.clone();
                changed.push(slot.clone());
            }
        }
        changed
    }

    /// Refresh every slot's wanted config from the pipeline file (if it
    /// parses), reload each slot whose section changed, and reload `slot`:
    /// what `POST /plugins/.../reload` does. Whoever takes in a section's
    /// change reloads it, or the watcher, seeing nothing new, never would.
    pub fn reload_requested(&self, slot: &PluginSlot) -> Outcome {
        let mut mine = None;
        if let Some(path) = &self.file {
            match pipeline::load(path) {
                Ok(new) => {
                    for changed in self.changed_slots(&new) {
                        let asked = std::ptr::eq(&*changed, slot);
                        let trigger = if asked {
                            Trigger::Admin
                        } else {
                            Trigger::Config
                        };
                        let outcome = self.reload(&changed, trigger);
                        if asked {
                            mine = Some(outcome);
                        }
                    }
                }
                Err(e) => return Outcome::Rejected(format!("{e:#}")),
            }
        }
        mine.unwrap_or_else(|| self.reload(slot, Trigger::Admin))
    }

    fn reject(
        &self,
        slot: &PluginSlot,
        sha256: Option<String>,
        error: String,
        trigger: Trigger,
    ) -> Outcome {
        // A plugin may quote a bad param (a secret) in its init error.
        let params = slot.state().config.init_params();
        let error = crate::config::secret::hide_params(&error, &params);
        crate::metrics::plugin_reloads(&slot.pipeline, &slot.name, "rejected").increment(1);
        tracing::error!(
            pipeline = %slot.pipeline,
            plugin = %slot.name,
            candidate = %sha256.as_deref().map(short).unwrap_or("-"),
            reason = trigger.as_str(),
            error = %error,
            "new plugin version rejected; the running version stays"
        );
        slot.state().rejected = Some(Rejection {
            at: std::time::SystemTime::now(),
            sha256,
            error: error.clone(),
        });
        Outcome::Rejected(error)
    }
}

/// The first 12 hex digits of a hash, for logs.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::same_value;

    #[test]
    fn json_compares_as_json_and_bytes_as_bytes() {
        assert!(same_value(br#"{"a":1, "b":2}"#, br#"{"b":2,"a":1}"#));
        assert!(!same_value(br#"{"a":1}"#, br#"{"a":2}"#));
        assert!(same_value(b"plain text", b"plain text"));
        assert!(!same_value(b"plain text", b"plain  text"));
    }
}
