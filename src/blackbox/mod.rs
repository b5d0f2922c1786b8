//! blackbox_exporter compatibility: its configuration file (`modules:`), its `/probe` endpoint
//! with the same metric names, help texts and labels, its `debug=true` trace, and its own
//! `blackbox_*` series — so a Prometheus set up for blackbox_exporter scrapes sonde unchanged.
//!
//! - [`crate::config::blackbox`] loads `modules:` files (every option of blackbox 0.23–0.28 for
//!   http, tcp, icmp, dns and grpc; what sonde cannot honour yet is refused by name) and reads a
//!   target the way each prober does;
//! - [`handler`] runs one probe under blackbox's timeout rules, through [`probers`] (one file
//!   per prober, as blackbox keeps them);
//! - [`metrics`] renders blackbox's families; [`debug`] the trace;
//! - [`safety`] is what sonde adds, off by default: an allow-list of targets and a cap on
//!   concurrent probes; [`guard`] applies the allow-list to every hop and keeps sonde from
//!   probing itself.

pub mod debug;
pub mod guard;
pub mod handler;
pub mod metrics;
pub mod probe_log;
pub mod probers;
pub mod recent;
pub mod safety;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::blackbox::{builtin_modules, module::Modules};

/// blackbox_exporter's `--history.limit` default.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// `/probe`'s state inside `sonde serve`: the modules in use, blackbox's own counters, and the
/// safety options.
pub struct Blackbox {
    modules: Mutex<Arc<Modules>>,
    /// Whether the modules come from a file (false: the built-in ones).
    pub from_file: Mutex<bool>,
    pub timeout_offset: f64,
    pub safety: safety::Safety,
    module_unknown: AtomicU64,
    reload_ok: AtomicU64,
    /// Unix seconds as f64 bits.
    reload_ts: AtomicU64,
    /// `--history.limit`: the recent probes of the status page and `/logs`.
    pub recent: recent::Recent,
    /// `--log.prober`: the level each probe's log lines are logged at.
    pub prober_log_level: tracing::Level,
}

impl Blackbox {
    pub fn new(timeout_offset: f64, safety: safety::Safety) -> Self {
        Blackbox {
            modules: Mutex::new(Arc::new(Modules::new())),
            from_file: Mutex::new(false),
            timeout_offset,
            safety,
            module_unknown: AtomicU64::new(0),
            reload_ok: AtomicU64::new(0),
            reload_ts: AtomicU64::new(0),
            recent: recent::Recent::new(DEFAULT_HISTORY_LIMIT),
            prober_log_level: tracing::Level::DEBUG,
        }
    }

    pub fn with_prober_log_level(mut self, level: tracing::Level) -> Self {
        self.prober_log_level = level;
        self
    }

    /// Whether a probe's log lines would reach sonde's log.
    pub fn logs_probes(&self) -> bool {
        use tracing::Level;
        match self.prober_log_level {
            Level::ERROR => tracing::enabled!(Level::ERROR),
            Level::WARN => tracing::enabled!(Level::WARN),
            Level::INFO => tracing::enabled!(Level::INFO),
            _ => tracing::enabled!(Level::DEBUG),
        }
    }

    /// A probe's log lines into sonde's log at `--log.prober`'s level (redacted by the
    /// log writer).
    pub fn log_probe(&self, module: &str, target: &str, log: &probe_log::ProbeLog) {
        use tracing::Level;
        if log.is_empty() || !self.logs_probes() {
            return;
        }
        for line in log.rendered() {
            match self.prober_log_level {
                Level::ERROR => tracing::error!(module, target, "{line}"),
                Level::WARN => tracing::warn!(module, target, "{line}"),
                Level::INFO => tracing::info!(module, target, "{line}"),
                _ => tracing::debug!(module, target, "{line}"),
            }
        }
    }

    /// Keep the last `limit` probes (and as many failures) for `/logs`; 0 keeps none.
    pub fn with_history_limit(mut self, limit: usize) -> Self {
        self.recent = recent::Recent::new(limit);
        self
    }

    pub fn modules(&self) -> Arc<Modules> {
        self.modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Install modules from a (re)load; `None` means no blackbox file was given: the built-in
    /// modules serve `/probe`.
    pub fn install(&self, modules: Option<Modules>) {
        let from_file = modules.is_some();
        let m = modules.unwrap_or_else(builtin_modules);
        *self.modules.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(m);
        *self.from_file.lock().unwrap_or_else(|e| e.into_inner()) = from_file;
        self.reload_ok.store(1, Ordering::SeqCst);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.reload_ts.store(now.to_bits(), Ordering::SeqCst);
    }

    pub fn reload_failed(&self) {
        self.reload_ok.store(0, Ordering::SeqCst);
    }

    pub fn count_unknown_module(&self) {
        self.module_unknown.fetch_add(1, Ordering::Relaxed);
    }

    /// blackbox_exporter's own series, for `/metrics`.
    pub fn self_metrics(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let f = metrics::go_float;
        let _ = writeln!(
            out,
            "# HELP blackbox_exporter_config_last_reload_success_timestamp_seconds Timestamp of the last successful configuration reload.\n\
             # TYPE blackbox_exporter_config_last_reload_success_timestamp_seconds gauge\n\
             blackbox_exporter_config_last_reload_success_timestamp_seconds {}\n\
             # HELP blackbox_exporter_config_last_reload_successful Blackbox exporter config loaded successfully.\n\
             # TYPE blackbox_exporter_config_last_reload_successful gauge\n\
             blackbox_exporter_config_last_reload_successful {}",
            f(f64::from_bits(self.reload_ts.load(Ordering::SeqCst))),
            self.reload_ok.load(Ordering::SeqCst)
        );
        let n = self.module_unknown.load(Ordering::Relaxed);
        if openmetrics {
            let _ = writeln!(
                out,
                "# HELP blackbox_module_unknown Count of unknown modules requested by probes\n\
                 # TYPE blackbox_module_unknown counter\n\
                 blackbox_module_unknown_total {n}"
            );
        } else {
            let _ = writeln!(
                out,
                "# HELP blackbox_module_unknown_total Count of unknown modules requested by probes\n\
                 # TYPE blackbox_module_unknown_total counter\n\
                 blackbox_module_unknown_total {n}"
            );
        }
        out
    }
}
