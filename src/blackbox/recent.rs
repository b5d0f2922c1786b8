//! blackbox_exporter's history of recent probes (`--history.limit`, default 100): the status
//! page lists them, `/logs?id=N` (or `/logs?target=T`, the latest for that target) shows one's
//! debug output — what `debug=true` would have answered, credentials redacted.
//!
//! As blackbox's: failures are kept in a list of their own, so a burst of successful scrapes
//! does not push out the failure someone is looking for; each list holds at most the limit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::config::blackbox::module::Module;

/// A debug output longer than this is cut (a body in the log could be large).
const MAX_DEBUG_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct Probe {
    pub id: u64,
    pub module: String,
    pub target: String,
    pub success: bool,
    debug: Arc<DebugOutput>,
}

/// A probe's debug output as it is kept. Rendering it (redacting every line, the module as YAML)
/// cost more CPU than a fast probe itself, and `/logs` reads one in thousands: a scrape keeps
/// the parts and `/logs` renders them.
pub enum DebugOutput {
    /// Already rendered, for a `debug=true` answer.
    Rendered(String),
    Parts {
        log: super::probe_log::ProbeLog,
        /// The `/probe` answer's own bytes (UTF-8: a rendered registry).
        metrics: bytes::Bytes,
        module: Arc<Module>,
    },
}

impl Probe {
    /// The text `/logs` shows, cut at [`MAX_DEBUG_BYTES`].
    pub fn debug_text(&self) -> String {
        match &*self.debug {
            // Cut when it was kept.
            DebugOutput::Rendered(text) => text.clone(),
            DebugOutput::Parts {
                log,
                metrics,
                module,
            } => cut(super::debug::render(
                log,
                &String::from_utf8_lossy(metrics),
                &module.shown,
            )),
        }
    }
}

fn cut(mut debug: String) -> String {
    if debug.len() > MAX_DEBUG_BYTES {
        let mut cut = MAX_DEBUG_BYTES;
        while !debug.is_char_boundary(cut) {
            cut -= 1;
        }
        debug.truncate(cut);
        debug.push_str("\n… (cut)\n");
    }
    debug
}

#[derive(Default)]
struct Lists {
    next_id: u64,
    all: VecDeque<Probe>,
    failed: VecDeque<Probe>,
}

pub struct Recent {
    limit: usize,
    lists: Mutex<Lists>,
}

impl Recent {
    pub fn new(limit: usize) -> Self {
        Recent {
            limit,
            lists: Mutex::new(Lists::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    pub fn add(&self, module: &str, target: &str, success: bool, debug: DebugOutput) {
        if self.limit == 0 {
            return;
        }
        let debug = Arc::new(match debug {
            DebugOutput::Rendered(text) => DebugOutput::Rendered(cut(text)),
            parts => parts,
        });
        let mut l = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        let p = Probe {
            id: l.next_id,
            module: module.to_string(),
            target: target.to_string(),
            success,
            debug,
        };
        l.next_id += 1;
        if !success {
            l.failed.push_back(p.clone());
            if l.failed.len() > self.limit {
                l.failed.pop_front();
            }
        }
        l.all.push_back(p);
        if l.all.len() > self.limit {
            l.all.pop_front();
        }
    }

    /// Every kept probe, oldest first.
    pub fn list(&self) -> Vec<Probe> {
        let l = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Probe> = l.all.iter().cloned().collect();
        out.extend(
            l.failed
                .iter()
                .filter(|f| l.all.front().is_none_or(|first| f.id < first.id))
                .cloned(),
        );
        out.sort_by_key(|p| p.id);
        out
    }

    pub fn by_id(&self, id: u64) -> Option<Probe> {
        self.list().into_iter().find(|p| p.id == id)
    }

    /// The latest probe of `target`.
    pub fn by_target(&self, target: &str) -> Option<Probe> {
        self.list().into_iter().rev().find(|p| p.target == target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> DebugOutput {
        DebugOutput::Rendered(s.to_string())
    }

    #[test]
    fn failures_outlive_a_burst_of_successes() {
        let r = Recent::new(2);
        r.add("m", "down", false, text("f"));
        for i in 0..5 {
            r.add("m", &format!("up{i}"), true, text("ok"));
        }
        let ids: Vec<u64> = r.list().iter().map(|p| p.id).collect();
        assert_eq!(ids, vec![0, 4, 5]);
        assert_eq!(r.by_id(0).unwrap().target, "down");
        assert!(r.by_id(1).is_none());
        assert_eq!(r.by_target("up4").unwrap().id, 5);
    }

    #[test]
    fn a_limit_of_zero_keeps_nothing() {
        let r = Recent::new(0);
        r.add("m", "t", false, text("x"));
        assert!(r.list().is_empty());
    }

    #[test]
    fn long_debug_output_is_cut_on_a_char_boundary() {
        let r = Recent::new(1);
        r.add("m", "t", true, text(&"é".repeat(MAX_DEBUG_BYTES)));
        assert!(r.by_id(0).unwrap().debug_text().ends_with("(cut)\n"));
    }
}
