//! What the library tells the allocator about its workload. The allocator is the binary's choice
//! (mimalloc, `src/main.rs`), so the library only says when a setting pays off and the binary
//! registers what to do then; library tests and other embedders register nothing.
//!
//! Why it depends on the workload: returning freed pages to the OS at once (mimalloc's
//! `purge_delay` 0) saves ~3.5 KB of RSS per persistent session at 10,000 sessions, where each
//! run frees a little everywhere. But on a /probe-only exporter the same pages empty and refill
//! with every probe, and each refill is a page fault: ~1 fault and ~5 % more CPU per `/probe`
//! (bench/kts-results.md). So pages go back at once only while sessions are held.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

static HINT: OnceLock<fn(bool)> = OnceLock::new();
/// What the hint was last told: 0 nothing yet, 1 no sessions, 2 sessions held.
static TOLD: AtomicU8 = AtomicU8::new(0);

/// Register what to do when the running configuration starts or stops holding persistent
/// sessions (`true`: it holds some).
pub fn on_sessions_held(hint: fn(bool)) {
    let _ = HINT.set(hint);
}

/// Called for every configuration that becomes the running one (start, reload), with whether
/// it holds persistent sessions: the hint hears it the first time and whenever it changes.
pub fn running(held: bool) {
    let now = if held { 2 } else { 1 };
    if TOLD.swap(now, Ordering::SeqCst) != now {
        if let Some(hint) = HINT.get() {
            let when = match held {
                true => "at once (persistent sessions are held)",
                false => "after the allocator's delay",
            };
            tracing::debug!("freed memory goes back to the OS {when}");
            hint(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static TOLD_HELD: AtomicUsize = AtomicUsize::new(0);
    static TOLD_NOT: AtomicUsize = AtomicUsize::new(0);

    fn count(held: bool) {
        if held { &TOLD_HELD } else { &TOLD_NOT }.fetch_add(1, Ordering::SeqCst);
    }

    /// The hint hears of each change (a /probe-only or per-run configuration, then one with
    /// persistent sessions, then without again), not of every re-applied configuration.
    #[test]
    fn the_hint_hears_each_change_of_whether_sessions_are_held() {
        on_sessions_held(count);
        running(false);
        running(false);
        assert_eq!(TOLD_NOT.load(Ordering::SeqCst), 1);
        assert_eq!(TOLD_HELD.load(Ordering::SeqCst), 0);
        running(true);
        running(true);
        assert_eq!(TOLD_HELD.load(Ordering::SeqCst), 1);
        running(false);
        assert_eq!(TOLD_NOT.load(Ordering::SeqCst), 2);
        assert_eq!(TOLD_HELD.load(Ordering::SeqCst), 1);
    }
}
