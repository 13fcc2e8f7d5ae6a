//! The admin API, on a listener of its own (`[admin]`): list plugin
//! versions, reload a plugin, roll one back.
//!
//! - `GET /plugins`: every plugin of every pipeline with its running
//!   version (content hash), when it was loaded, its calls and errors, the
//!   previous version and the last refused candidate. Params are shown by
//!   name with a fingerprint of each value (`sha256:` and 12 hex digits),
//!   never the value: params are where plugins get their secrets.
//! - `POST /plugins/{pipeline}/{plugin}/reload`: admit the plugin's file
//!   (with its section of the pipeline file as it is now) and swap it in.
//!   200 with the outcome, or 422 with the reason it was refused.
//! - `POST /plugins/{pipeline}/{plugin}/rollback`: swap the previous
//!   version back in (a second rollback rolls forward again). 409 when
//!   there is none.
//!
//! Promises:
//! - Every request passes [`guard`] first: a `Host` that is not a name of
//!   this listener gets 421; with a token configured, a request without
//!   `Authorization: Bearer <token>` (compared in constant time) gets 401;
//!   without one, reload and rollback get 403 and say how to enable them.
//! - These handlers never block the runtime: admission runs on a blocking
//!   thread, and goes through the same serialised path as the file
//!   watcher. At most [`MAX_ACTIONS`] reloads and rollbacks wait at once;
//!   more get 429.

mod guard;

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::{Outcome, PluginSlot, Reloader, Version};
use crate::config::admin::AdminConfig;
use crate::config::secret::{fingerprint, hide_params};

/// Reloads and rollbacks that may be running or waiting at once.
pub const MAX_ACTIONS: usize = 4;

#[derive(Clone)]
struct AdminState {
    reloader: Arc<Reloader>,
    actions: Arc<Semaphore>,
}

/// The admin routes, without the guard (see [`serve`]).
fn routes(reloader: Arc<Reloader>) -> axum::Router {
    let state = AdminState {
        reloader,
        actions: Arc::new(Semaphore::new(MAX_ACTIONS)),
    };
    axum::Router::new()
        .route("/plugins", get(list))
        .route("/plugins/{pipeline}/{plugin}/reload", post(reload))
        .route("/plugins/{pipeline}/{plugin}/rollback", post(rollback))
        .with_state(state)
}

/// Bind the `[admin]` listener (so a taken port fails startup, naming
/// `admin.listen`).
pub async fn bind(cfg: &AdminConfig) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("admin.listen: cannot listen on {}", cfg.listen))
}

/// Serve the admin API on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: &AdminConfig,
    reloader: Arc<Reloader>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let gate = Arc::new(guard::Guard::new(cfg, addr));
    if cfg.token().is_none() {
        tracing::warn!(
            %addr,
            "admin API: reload and rollback are refused (403) because no token is set; \
             to enable them add `token = \"${{SLUICE_ADMIN_TOKEN}}\"` to [admin] and set \
             SLUICE_ADMIN_TOKEN to a long random string"
        );
    }
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "admin API listens beyond loopback: its token crosses the network in clear");
    }
    let app = routes(reloader).layer(axum::middleware::from_fn_with_state(gate, guard::check));
    tracing::info!(%addr, "admin API listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// One version, as `/plugins` shows it.
#[derive(Debug, Serialize)]
pub struct VersionInfo {
    /// SHA-256 of the component file.
    pub version: String,
    /// 1 for the version loaded at startup, then +1 for each version a
    /// reload publishes (a rollback brings back the older one's).
    pub generation: u64,
    /// When it was loaded, RFC 3339 in UTC with milliseconds.
    pub loaded_at: String,
    /// The component file it was loaded from.
    pub path: String,
    /// Param name → fingerprint of its value (never the value).
    pub params: std::collections::BTreeMap<String, String>,
    /// Calls made to it (retries count).
    pub calls: u64,
    /// Calls that ended in an error or a trap.
    pub errors: u64,
}

impl VersionInfo {
    fn of(v: &Version) -> Self {
        VersionInfo {
            version: v.sha256().to_owned(),
            generation: v.generation,
            loaded_at: time(v.loaded_at),
            path: v.config.path.display().to_string(),
            params: v
                .config
                .init_params()
                .into_iter()
                .map(|(k, v)| (k, fingerprint(&v)))
                .collect(),
            calls: v.calls(),
            errors: v.errors(),
        }
    }
}

/// A refused candidate.
#[derive(Debug, Serialize)]
pub struct RejectionInfo {
    /// When it was refused, RFC 3339 in UTC with milliseconds.
    pub at: String,
    /// SHA-256 of the refused file, when it could be read.
    pub version: Option<String>,
    /// Why it was refused.
    pub error: String,
}

/// One plugin slot, as `/plugins` shows it.
#[derive(Debug, Serialize)]
pub struct PluginInfo {
    /// The pipeline's name.
    pub pipeline: String,
    /// The plugin's name.
    pub plugin: String,
    /// The running version's fields, flattened.
    #[serde(flatten)]
    pub current: VersionInfo,
    /// Versions published since startup (reloads and rollbacks).
    pub swaps: u64,
    /// The version before the running one: what a rollback goes back to.
    pub previous: Option<VersionInfo>,
    /// The last candidate refused since a reload last published one.
    pub last_rejected: Option<RejectionInfo>,
}

impl PluginInfo {
    /// A snapshot of `slot` now.
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

async fn list(State(state): State<AdminState>) -> Json<Vec<PluginInfo>> {
    Json(
        state
            .reloader
            .slots()
            .iter()
            .map(|s| PluginInfo::of(s))
            .collect(),
    )
}

async fn reload(
    State(state): State<AdminState>,
    Path((pipeline, plugin)): Path<(String, String)>,
) -> (StatusCode, Json<OutcomeBody>) {
    act(state, pipeline, plugin, |r, s| r.reload_requested(s)).await
}

async fn rollback(
    State(state): State<AdminState>,
    Path((pipeline, plugin)): Path<(String, String)>,
) -> (StatusCode, Json<OutcomeBody>) {
    act(state, pipeline, plugin, |r, s| r.rollback(s)).await
}

async fn act(
    state: AdminState,
    pipeline: String,
    plugin: String,
    f: impl FnOnce(&Reloader, &PluginSlot) -> Outcome + Send + 'static,
) -> (StatusCode, Json<OutcomeBody>) {
    // Each action holds a blocking thread while it waits for the swap
    // lock: bound how many may pile up.
    let Ok(permit) = state.actions.clone().try_acquire_owned() else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(OutcomeBody {
                status: "busy",
                from: None,
                version: None,
                error: Some(format!(
                    "{MAX_ACTIONS} reloads or rollbacks are already under way; try again"
                )),
            }),
        );
    };
    let reloader = state.reloader;
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
    let checked = slot.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f(&reloader, &slot)
    })
    .await;
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
                error: Some(hide_params(&error, &checked.state().config.init_params())),
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
