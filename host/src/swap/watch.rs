//! Watching plugin files and the pipeline file for new versions.
//!
//! Promise: a changed file is read only once it has stopped changing: its
//! size and modification time must stay the same for the settle interval
//! after the last change event. A file that is still being copied is never
//! loaded half-written; one whose writer pauses longer than that is refused
//! by admission (not a valid component), and picked up again when the
//! writer finishes. Directories are watched, not files, so editors and
//! build tools that replace files by rename are seen too.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use notify::RecursiveMode;
use tokio_util::sync::CancellationToken;

use super::{Reloader, Trigger};

/// How often pending changes are looked at.
const POLL: Duration = Duration::from_millis(25);

/// A file seen changing, waiting to settle.
struct Pending {
    last_change: Instant,
    stat: Option<(u64, SystemTime)>,
}

/// Start the watcher thread. It stops when `cancel` fires.
pub fn spawn(
    reloader: Arc<Reloader>,
    settle: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })?;
    let mut dirs = BTreeSet::new();
    watch_dirs(&mut watcher, &mut dirs, &reloader)?;
    let thread = std::thread::Builder::new()
        .name("sluice-watch".into())
        .spawn(move || {
            let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
            while !cancel.is_cancelled() {
                match rx.recv_timeout(POLL) {
                    Ok(path) => {
                        pending.insert(
                            path.clone(),
                            Pending {
                                last_change: Instant::now(),
                                stat: stat(&path),
                            },
                        );
                        // Take every queued event before looking at files.
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                let ready = settled(&mut pending, settle);
                if ready.is_empty() {
                    continue;
                }
                for path in ready {
                    fire(&reloader, &path);
                }
                // A config change may point a plugin at a new directory.
                if let Err(e) = watch_dirs(&mut watcher, &mut dirs, &reloader) {
                    tracing::warn!(error = %e, "cannot watch a plugin directory");
                }
            }
        })?;
    Ok(thread)
}

/// The files that have been still for `settle`; they leave `pending`.
fn settled(pending: &mut HashMap<PathBuf, Pending>, settle: Duration) -> Vec<PathBuf> {
    let mut ready = Vec::new();
    pending.retain(|path, p| {
        if p.last_change.elapsed() < settle {
            return true;
        }
        let now = stat(path);
        if now.is_none() {
            // Gone (renamed away, or deleted): nothing to load.
            return false;
        }
        if now == p.stat {
            ready.push(path.clone());
            false
        } else {
            // Still being written: wait for another quiet interval.
            p.stat = now;
            p.last_change = Instant::now();
            true
        }
    });
    ready
}

fn fire(reloader: &Reloader, path: &Path) {
    if reloader
        .pipeline_file()
        .and_then(canonical)
        .is_some_and(|f| f == path)
    {
        tracing::info!(file = %path.display(), "pipeline file changed; reloading plugin sections");
        reloader.pipeline_file_changed();
        return;
    }
    for slot in reloader.slots() {
        let wanted = slot.state().config.path.clone();
        if canonical(&wanted).is_some_and(|w| w == path) {
            reloader.reload(slot, Trigger::File);
        }
    }
}

/// Watch the directory of every plugin file and of the pipeline file.
fn watch_dirs(
    watcher: &mut impl notify::Watcher,
    dirs: &mut BTreeSet<PathBuf>,
    reloader: &Reloader,
) -> notify::Result<()> {
    let mut files: Vec<PathBuf> = reloader
        .slots()
        .iter()
        .map(|s| s.state().config.path.clone())
        .collect();
    files.extend(reloader.pipeline_file().map(Path::to_path_buf));
    for file in files {
        let Some(dir) = file.parent().and_then(canonical) else {
            continue;
        };
        if dirs.insert(dir.clone()) {
            watcher.watch(&dir, RecursiveMode::NonRecursive)?;
            tracing::debug!(dir = %dir.display(), "watching for new plugin versions");
        }
    }
    Ok(())
}

/// `path` with its directory resolved (the file itself may not exist).
fn canonical(path: &Path) -> Option<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = match dir {
        Some(d) => d.canonicalize().ok()?,
        None => std::env::current_dir().ok()?,
    };
    match path.file_name() {
        Some(name) => Some(dir.join(name)),
        None => Some(dir),
    }
}

fn stat(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_settles_only_after_it_stops_changing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, b"half").unwrap();
        let mut pending = HashMap::new();
        pending.insert(
            path.clone(),
            Pending {
                last_change: Instant::now(),
                stat: stat(&path),
            },
        );
        let settle = Duration::from_millis(50);
        assert!(settled(&mut pending, settle).is_empty(), "too early");
        std::thread::sleep(Duration::from_millis(60));
        // Written again without an event reaching us: not ready yet.
        std::fs::write(&path, b"half and the rest").unwrap();
        assert!(settled(&mut pending, settle).is_empty(), "changed size");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(settled(&mut pending, settle), vec![path.clone()]);
        assert!(pending.is_empty());
    }

    #[test]
    fn a_vanished_file_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.wasm");
        let mut pending = HashMap::new();
        pending.insert(
            path,
            Pending {
                last_change: Instant::now() - Duration::from_secs(1),
                stat: None,
            },
        );
        assert!(settled(&mut pending, Duration::from_millis(10)).is_empty());
        assert!(pending.is_empty());
    }
}
