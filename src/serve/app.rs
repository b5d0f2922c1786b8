//! What the web endpoints, the signal handler and the agent's background work share: the running
//! configuration, the scheduler and outputs, and the reload that swaps configurations.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::blackbox::Blackbox;
use crate::config::scenario::Config;
use crate::config::{self, ConfigError, LoadOptions, Loaded};
use crate::metrics::Metrics;
use crate::runtime::scheduler::Scheduler;

/// Where the configuration comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// Files and folders given with `-c` (or `./sonde.yaml`).
    Paths(Vec<PathBuf>),
    /// The built-in self-check, as YAML text.
    BuiltIn(String),
    /// `-c` with at least one URL (see [`crate::source`]).
    Remote(Arc<crate::source::Sources>),
}

impl ConfigSource {
    /// Scenarios, and blackbox modules when a blackbox_exporter configuration file is among the
    /// paths.
    pub fn load(&self, opts: &LoadOptions) -> Result<Loaded, Vec<ConfigError>> {
        match self {
            ConfigSource::Paths(p) => config::load_all(p, opts),
            ConfigSource::BuiltIn(text) => {
                config::load_str("<built-in>", text, opts).map(|config| Loaded {
                    config,
                    modules: None,
                })
            }
            ConfigSource::Remote(s) => s.load(opts),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ConfigSource::Paths(p) => p
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            ConfigSource::BuiltIn(_) => "<built-in>".into(),
            ConfigSource::Remote(s) => s.describe(),
        }
    }
}

/// Everything the web endpoints and signal handlers share.
pub struct App {
    pub metrics: Arc<Metrics>,
    pub scheduler: Scheduler,
    /// Fed by the scheduler (an observer); reconfigured by reloads.
    pub alerts: crate::alert::Alerts,
    pub source: ConfigSource,
    pub load_options: LoadOptions,
    /// The configuration now running.
    current: Mutex<Arc<Config>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    ready: AtomicBool,
    /// `/probe`: the blackbox modules in use, blackbox's own counters, the safety options.
    pub blackbox: Blackbox,
    /// The history of runs (`None`: history off).
    pub history: Option<Arc<dyn crate::history::HistoryRead>>,
    /// The history's writer, flushed at shutdown.
    pub history_writer: Option<Arc<crate::history::HistoryObserver>>,
    /// The last runs kept in memory, which the status page reads when `history` is off (the
    /// API does not: for it, history is off).
    recent: std::sync::OnceLock<Arc<dyn crate::history::HistoryRead>>,
}

/// The outcome of a reload, for the endpoint and the log.
pub enum Reload {
    Applied { scenarios: usize },
    Rejected(Vec<ConfigError>),
}

/// What an [`App`] is made of, built by `serve` (or a test).
pub struct AppParts {
    pub metrics: Arc<Metrics>,
    pub scheduler: Scheduler,
    pub alerts: crate::alert::Alerts,
    pub source: ConfigSource,
    pub load_options: LoadOptions,
    pub blackbox: Blackbox,
    pub history: Option<Arc<dyn crate::history::HistoryRead>>,
    pub history_writer: Option<Arc<crate::history::HistoryObserver>>,
}

impl App {
    /// The app, running `initial`.
    pub fn new(parts: AppParts, initial: Loaded) -> Arc<App> {
        let AppParts {
            metrics,
            scheduler,
            alerts,
            source,
            load_options,
            blackbox,
            history,
            history_writer,
        } = parts;
        let app = Arc::new(App {
            metrics,
            scheduler,
            alerts,
            source,
            load_options,
            current: Mutex::new(Arc::new(Config::default())),
            reloading: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
            blackbox,
            history,
            history_writer,
            recent: std::sync::OnceLock::new(),
        });
        app.install(initial);
        app.ready.store(true, Ordering::SeqCst);
        app
    }

    fn install(&self, loaded: Loaded) {
        let config = loaded.config;
        self.blackbox.install(loaded.modules);
        self.alerts.reconfigure(config.agent.alerting.clone());
        self.scheduler.apply(&config);
        crate::memory_hint::running(config.scenarios.iter().any(|s| s.persistent));
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.metrics.config_last_reload_successful.set(1);
        self.metrics.config_last_reload_success_timestamp.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
    }

    /// Give the status page the in-memory last runs (once, at start).
    pub fn set_recent(&self, recent: Arc<dyn crate::history::HistoryRead>) {
        let _ = self.recent.set(recent);
    }

    /// What the status page reads: the store, else the last runs in memory.
    pub fn page_history(&self) -> Option<Arc<dyn crate::history::HistoryRead>> {
        self.history.clone().or_else(|| self.recent.get().cloned())
    }

    pub fn config(&self) -> Arc<Config> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// From the shutdown signal on, `/-/ready` answers 503 so load balancers and supervisors see
    /// the agent going away.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Run another share of the region's scenarios (a scaled StatefulSet): scenarios this agent
    /// keeps go on undisturbed, the others stop, the new ones start — as a reload would.
    pub async fn reshard(&self, shard: crate::shard::Shard) {
        let _one_at_a_time = self.reloading.lock().await;
        self.scheduler.set_shard(Some(shard));
        self.scheduler.apply(&self.config());
    }

    /// Load the configuration again and swap it in atomically. An invalid configuration changes
    /// nothing that runs: the old one keeps going and the failure is visible in
    /// `sonde_config_last_reload_successful`.
    pub async fn reload(self: &Arc<Self>) -> Reload {
        let _one_at_a_time = self.reloading.lock().await;
        let source = self.source.clone();
        let opts = self.load_options.clone();
        let loaded = tokio::task::spawn_blocking(move || source.load(&opts))
            .await
            .unwrap_or_else(|e| {
                Err(vec![ConfigError {
                    file: self.source.describe(),
                    line: 0,
                    column: 0,
                    message: format!("the configuration loader crashed: {e}"),
                }])
            });
        match loaded {
            Ok(loaded) => {
                crate::agent::warn_on_agent_change(&self.config(), &loaded.config);
                let n = loaded.config.scenarios.len();
                let modules = loaded.modules.as_ref().map(|m| m.len());
                self.install(loaded);
                tracing::info!(scenarios = n, ?modules, "configuration reloaded");
                Reload::Applied { scenarios: n }
            }
            Err(errors) => {
                self.metrics.config_last_reload_successful.set(0);
                self.blackbox.reload_failed();
                for e in &errors {
                    tracing::error!("reload rejected: {e}");
                }
                tracing::error!(
                    errors = errors.len(),
                    "configuration reload failed; the previous configuration keeps running"
                );
                Reload::Rejected(errors)
            }
        }
    }
}
