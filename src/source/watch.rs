//! Watch `-c` files and folders (inotify through `notify`) and reload when they change, in
//! addition to SIGHUP and `POST /-/reload`.
//!
//! A file is watched through its folder: editors and config-management tools replace files by
//! renaming a new one over them, which a watch on the file itself would not survive. Bursts of
//! events (an editor writes, renames and chmods) are gathered for [`SETTLE`] into one reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};

/// Quiet time after the last change before reloading.
pub const SETTLE: Duration = Duration::from_millis(300);

/// What to watch for `paths`: folders recursively; a file through its parent folder, keeping
/// only events about that file.
struct Plan {
    /// (path to watch, recursive)
    watches: Vec<(PathBuf, bool)>,
    folders: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

fn plan(paths: &[PathBuf]) -> Plan {
    let mut p = Plan {
        watches: Vec::new(),
        folders: Vec::new(),
        files: Vec::new(),
    };
    for path in paths {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        if abs.is_dir() {
            p.watches.push((abs.clone(), true));
            p.folders.push(abs);
        } else {
            let parent = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
            if !p.watches.iter().any(|(w, _)| *w == parent) {
                p.watches.push((parent, false));
            }
            p.files.push(abs);
        }
    }
    p
}

impl Plan {
    fn concerns(&self, event_path: &Path) -> bool {
        self.folders.iter().any(|f| event_path.starts_with(f))
            || self.files.iter().any(|f| event_path == f)
    }
}

/// Watch `paths` until `stop`, calling `app.reload()` after changes settle. The watches are in
/// place when this returns (so an edit right after start is seen); the reloading runs in a task.
/// Without a way to watch it logs why and returns: SIGHUP and `/-/reload` still work.
pub fn watch(
    app: Arc<crate::serve::App>,
    paths: Vec<PathBuf>,
    stop: tokio_util::sync::CancellationToken,
) {
    if paths.is_empty() {
        return;
    }
    let plan = Arc::new(plan(&paths));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let filter = plan.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if matches!(ev.kind, EventKind::Access(_)) {
            return;
        }
        if ev.paths.iter().any(|p| filter.concerns(p)) {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(
                "cannot watch the configuration files ({e}); use SIGHUP or POST /-/reload"
            );
            return;
        }
    };
    for (p, recursive) in &plan.watches {
        let mode = if *recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        if let Err(e) = watcher.watch(p, mode) {
            tracing::warn!(path = %p.display(), "cannot watch ({e}); changes there need SIGHUP or POST /-/reload");
        }
    }
    tokio::spawn(async move {
        // Owned by the task: dropping the watcher ends the watches.
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = rx.recv() => if ev.is_none() { return },
            }
            // Let the burst settle: every further event restarts the wait.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(SETTLE) => break,
                    ev = rx.recv() => if ev.is_none() { return },
                }
            }
            tracing::info!("configuration files changed; reloading");
            let _ = app.reload().await;
        }
    });
}
