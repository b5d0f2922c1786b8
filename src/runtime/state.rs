//! What the API shows about one scheduled scenario, kept by its task after every run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::observer::SessionEvent;
use super::recent::Recent;
use crate::config::scenario::Scenario;
use crate::engine::RunReport;

pub struct ScenarioState {
    pub scenario: Arc<Scenario>,
    last: Mutex<Option<Arc<RunReport>>>,
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub skipped: AtomicU64,
    /// Unix milliseconds of the next planned run.
    pub next_run_ms: AtomicU64,
    /// Unix milliseconds of the last successful run (0: never).
    pub last_success_ms: AtomicU64,
    /// The last runs in brief, the last failure and break, the session's events.
    recent: Mutex<Recent>,
}

impl ScenarioState {
    pub fn new(scenario: Arc<Scenario>) -> Self {
        ScenarioState {
            scenario,
            last: Mutex::new(None),
            runs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            next_run_ms: AtomicU64::new(0),
            last_success_ms: AtomicU64::new(0),
            recent: Mutex::new(Recent::default()),
        }
    }

    pub fn last(&self) -> Option<Arc<RunReport>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_last(&self, r: Arc<RunReport>) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }

    /// The recent past, read under its lock.
    pub fn recent<T>(&self, f: impl FnOnce(&Recent) -> T) -> T {
        f(&self.recent.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn recent_mut(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A persistent session's reconnect attempt ended: kept among the recent runs, and as the
    /// last run when it failed (it says why the session is down), but not counted as a run.
    pub(crate) fn record_attempt(&self, report: Arc<RunReport>) {
        self.recent_mut().run(&self.scenario, &report, true);
        if !report.success() {
            self.set_last(report);
        }
    }

    pub(crate) fn session_event(&self, e: &SessionEvent) {
        self.recent_mut().session_event(&self.scenario, e);
    }

    /// A scheduled run ended: count it and keep it as the last one.
    pub(crate) fn record(&self, report: Arc<RunReport>) {
        self.recent_mut().run(&self.scenario, &report, false);
        self.runs.fetch_add(1, Ordering::Relaxed);
        if report.success() {
            self.last_success_ms
                .store(crate::time::unix_ms(SystemTime::now()), Ordering::Relaxed);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.set_last(report);
    }
}
