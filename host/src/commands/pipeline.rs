//! `sluice run` and `sluice check`.

use std::path::Path;

use super::usage;
use crate::config::pipeline;
use crate::plugin::Runtime;

/// Validate a pipeline file and load every plugin (init included).
pub fn check(runtime: &Runtime, path: &Path) -> anyhow::Result<()> {
    let file = pipeline::load(path).map_err(usage)?;
    crate::pipeline::load_plugins(runtime, &file).map_err(usage)?;
    // The stream consumer spawns its wake-up task on the current runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    for p in &file.pipelines {
        // Creating (not connecting) the clients validates every librdkafka
        // property, so a misspelt pass-through key fails here.
        let ctx = crate::source::kafka::SourceContext::new(
            &p.name,
            Default::default(),
            crate::metrics::PipelineMetrics::new(&p.name),
        );
        let _consumer = crate::source::kafka::consumer(&p.source, ctx)
            .map_err(|e| usage(anyhow::anyhow!("pipeline `{}`: source: {e}", p.name)))?;
        println!(
            "pipeline `{}`: ok ({} plugin(s), {} route(s))",
            p.name,
            p.plugins.len(),
            p.routes.len()
        );
    }
    Ok(())
}

/// Run until SIGINT/SIGTERM.
pub fn run(runtime: Runtime, path: &Path) -> anyhow::Result<()> {
    let file = pipeline::load(path).map_err(usage)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let shutdown = shutdown_signal();
        crate::pipeline::run(runtime, file, Some(path.to_owned()), shutdown)
            .await
            .map_err(|e| {
                if e.chain().any(|c| {
                    c.is::<crate::plugin::LoadError>()
                        || c.is::<crate::plugin::InitError>()
                        || c.is::<crate::swap::SmokeFailed>()
                }) {
                    usage(e)
                } else {
                    e
                }
            })
    });
    // After a shutdown that timed out, work may still be running (a stalled
    // database write, say): it holds nothing committed, so do not wait.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled, so a signal
/// that comes while plugins are still loading is not lost (it would
/// otherwise kill the process). Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
