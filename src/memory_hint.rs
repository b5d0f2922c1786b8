//! What the library tells the allocator about its workload. The allocator is the binary's choice
//! (mimalloc, `src/main.rs`), so the library only says when a setting pays off and the binary
//! registers what to do then; library tests and other embedders register nothing.
//!
//! Why it depends on the workload: returning freed pages to the OS at once (mimalloc's
//! `purge_delay` 0) saves ~3.5 KB of RSS per persistent session at 10,000 sessions, where each
//! run frees a little everywhere. But on a /probe-only exporter the same pages empty and refill
//! with every probe, and each refill is a page fault: ~1.2 faults and ~6 % more CPU per
//! `/probe` (bench/kts-results.md). So pages go back at once only where sessions are held.

use std::sync::OnceLock;

use crate::config::scenario::Config;

static ON_PERSISTENT_SESSIONS: OnceLock<fn()> = OnceLock::new();
static APPLIED: std::sync::Once = std::sync::Once::new();

/// Register what to do (once) when a configuration first holds persistent sessions.
pub fn on_persistent_sessions(hint: fn()) {
    let _ = ON_PERSISTENT_SESSIONS.set(hint);
}

/// Called with every configuration that becomes the running one (start, reload, reshard): the
/// first that holds a persistent session runs the registered hint. Never undone: a reload
/// that drops the sessions leaves the setting as it is.
pub fn running(config: &Config) -> bool {
    if !config.scenarios.iter().any(|s| s.persistent) {
        return false;
    }
    if let Some(hint) = ON_PERSISTENT_SESSIONS.get() {
        APPLIED.call_once(|| {
            tracing::debug!("persistent sessions held: freed memory goes back to the OS at once");
            hint();
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static HINTS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        HINTS.fetch_add(1, Ordering::SeqCst);
    }

    fn load(text: &str) -> Config {
        crate::config::load_str("t.yaml", text, &Default::default()).expect("valid")
    }

    /// A /probe-only or per-run configuration leaves the allocator alone; the first with a
    /// persistent session gives the hint, and only once however often it is re-applied.
    #[test]
    fn the_hint_is_given_once_and_only_for_persistent_sessions() {
        on_persistent_sessions(count);
        let per_run = load("scenario: p\nsteps:\n  - http: {url: \"http://127.0.0.1:1/\"}\n");
        assert!(!running(&per_run));
        assert_eq!(HINTS.load(Ordering::SeqCst), 0);
        let sessions = load(
            "scenario: s\nsession: persistent\nsetup:\n  - ws.connect: {url: \"ws://127.0.0.1:1/\", as: c}\nsteps:\n  - ws.send: {on: c, text: hi}\n",
        );
        assert!(running(&sessions));
        assert!(running(&sessions));
        assert!(!running(&per_run));
        assert_eq!(HINTS.load(Ordering::SeqCst), 1);
    }
}
