//! The admin API on the metrics listener: list plugin versions, reload a
//! plugin, roll one back.
//!
//! - `GET /plugins`: every plugin of every pipeline with its running
//!   version (content hash), when it was loaded, its calls and errors, the
//!   previous version and the last refused candidate.
//! - `POST /plugins/{pipeline}/{plugin}/reload`: admit the plugin's file
//!   (with its section of the pipeline file as it is now) and swap it in.
//!   200 with the outcome, or 422 with the reason it was refused.
//! - `POST /plugins/{pipeline}/{plugin}/rollback`: swap the previous
//!   version back in (a second rollback rolls forward again). 409 when
//!   there is none.
//!
//! Promise: these handlers never block the runtime: admission runs on a
//! blocking thread, and goes through the same serialised path as the file
//! watcher.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Serialize;

use super::{Outcome, PluginSlot, Reloader, Version};

/// The `/plugins` routes, to merge into the metrics router.
pub fn routes(reloader: Arc<Reloader>) -> axum::Router {
    axum::Router::new()
        .route("/plugins", get(list))
        .route("/plugins/{pipeline}/{plugin}/reload", post(reload))
        .route("/plugins/{pipeline}/{plugin}/rollback", post(rollback))
        .with_state(reloader)
}

/// One version, as `/plugins` shows it.
#[derive(Debug, Serialize)]
pub struct VersionInfo {
    /// SHA-256 of the component file.
    pub version: String,
    pub generation: u64,
    pub loaded_at: String,
    pub path: String,
    pub params: std::collections::BTreeMap<String, String>,
    pub calls: u64,
    pub errors: u64,
}

impl VersionInfo {
    fn of(v: &Version) -> Self {
        VersionInfo {
            version: v.sha256().to_owned(),
            generation: v.generation,
            loaded_at: time(v.loaded_at),
            path: v.config.path.display().to_string(),
            params: v.config.init_params().into_iter().collect(),
            calls: v.calls(),
            errors: v.errors(),
        }
    }
}

/// A refused candidate.
#[derive(Debug, Serialize)]
pub struct RejectionInfo {
    pub at: String,
    pub version: Option<String>,
    pub error: String,
}

/// One plugin slot, as `/plugins` shows it.
#[derive(Debug, Serialize)]
pub struct PluginInfo {
    pub pipeline: String,
    pub plugin: String,
    /// The running version's fields, flattened.
    #[serde(flatten)]
    pub current: VersionInfo,
    pub swaps: u64,
    pub previous: Option<VersionInfo>,
    pub last_rejected: Option<RejectionInfo>,
}

impl PluginInfo {
    pub fn of(slot: &PluginSlot) -> Self {
        let current = slot.current();
        let state = slot.state();
        PluginInfo {
            pipeline: slot.pipeline.clone(),
            plugin: slot.name.clone(),
            current: VersionInfo::of(&current),
            swaps: state.swaps,
            previous: state.previous.as_deref().map(VersionInfo::of),
            last_rejected: state.rejected.as_ref().map(|r| RejectionInfo {
                at: time(r.at),
                version: r.sha256.clone(),
                error: r.error.clone(),
            }),
        }
    }
}

#[derive(Debug, Serialize)]
struct OutcomeBody {
    /// swapped, unchanged or rejected.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn list(State(reloader): State<Arc<Reloader>>) -> Json<Vec<PluginInfo>> {
    Json(reloader.slots().iter().map(|s| PluginInfo::of(s)).collect())
}

async fn reload(
    State(reloader): State<Arc<Reloader>>,
    Path((pipeline, plugin)): Path<(String, String)>,
) -> (StatusCode, Json<OutcomeBody>) {
    act(reloader, pipeline, plugin, |r, s| r.reload_requested(s)).await
}

async fn rollback(
    State(reloader): State<Arc<Reloader>>,
    Path((pipeline, plugin)): Path<(String, String)>,
) -> (StatusCode, Json<OutcomeBody>) {
    act(reloader, pipeline, plugin, |r, s| r.rollback(s)).await
}

async fn act(
    reloader: Arc<Reloader>,
    pipeline: String,
    plugin: String,
    f: impl FnOnce(&Reloader, &PluginSlot) -> Outcome + Send + 'static,
) -> (StatusCode, Json<OutcomeBody>) {
    let Some(slot) = reloader.find(&pipeline, &plugin).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Json(OutcomeBody {
                status: "not-found",
                from: None,
                version: None,
                error: Some(format!("no plugin `{plugin}` in pipeline `{pipeline}`")),
            }),
        );
    };
    let outcome = tokio::task::spawn_blocking(move || f(&reloader, &slot)).await;
    match outcome {
        Ok(Outcome::Swapped { from, to }) => (
            StatusCode::OK,
            Json(OutcomeBody {
                status: "swapped",
                from: Some(from.sha256().to_owned()),
                version: Some(to.sha256().to_owned()),
                error: None,
            }),
        ),
        Ok(Outcome::Unchanged(v)) => (
            StatusCode::OK,
            Json(OutcomeBody {
                status: "unchanged",
                from: None,
                version: Some(v.sha256().to_owned()),
                error: None,
            }),
        ),
        Ok(Outcome::NoPrevious) => (
            StatusCode::CONFLICT,
            Json(OutcomeBody {
                status: "rejected",
                from: None,
                version: None,
                error: Some("there is no previous version to roll back to".into()),
            }),
        ),
        Ok(Outcome::Superseded) => (
            StatusCode::CONFLICT,
            Json(OutcomeBody {
                status: "superseded",
                from: None,
                version: None,
                error: Some("a later request for this plugin landed first".into()),
            }),
        ),
        Ok(Outcome::Rejected(error)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(OutcomeBody {
                status: "rejected",
                from: None,
                version: None,
                error: Some(error),
            }),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(OutcomeBody {
                status: "failed",
                from: None,
                version: None,
                error: Some(format!("reload task failed: {e}")),
            }),
        ),
    }
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
