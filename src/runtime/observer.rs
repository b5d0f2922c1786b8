//! How finished runs leave the runtime: every output that cares about runs (metrics, alerts, the
//! operator's log, a history store…) is an [`Observer`] handed to the scheduler at start. The
//! runtime knows the trait, not the outputs, so adding one is a new implementation and one line
//! where `serve` lists them — not a new wire through the scheduler.
//!
//! An observer is told about each scheduled scenario once, when its task starts, and answers with
//! a [`ScenarioObserver`] that follows that task alone: per-scenario state (metric series
//! handles, an alert's threshold) lives there, with no lookup by name on the hot path.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::scenario::Scenario;
use crate::engine::RunReport;

/// One output fed by the runtime.
pub trait Observer: Send + Sync {
    /// A scenario's task starts (at start, or when a reload adds or changes it).
    fn watch(&self, scenario: &Arc<Scenario>) -> Box<dyn ScenarioObserver>;

    /// The scenarios scheduled after a (re)load, for outputs that act on the whole set.
    fn scheduled(&self, _scenarios: &[Arc<Scenario>]) {}

    /// A run is about to start, `lag` after it was planned.
    fn run_starting(&self, _lag: Duration) {}

    /// A run (started with [`Observer::run_starting`]) is over.
    fn run_ended(&self) {}
}

/// Follows one scenario's task.
pub trait ScenarioObserver: Send {
    /// A run ended. `current` is false once a reload has replaced or removed this version of
    /// the scenario: its last run is still recorded, but it no longer speaks for the scenario.
    fn run(&mut self, report: &RunReport, current: bool);

    /// A persistent session's reconnect attempt between runs (setup only): not a scheduled
    /// run, but its setup steps ran (or failed) and are measured like any other step.
    fn attempt(&mut self, _report: &RunReport) {}

    /// Ticks that fell due while a run was still going, and were not run.
    fn skipped(&mut self, _n: u64) {}

    /// Something happened to a persistent session's connections.
    fn session(&mut self, _event: &SessionEvent) {}

    /// The task ends: forget what was kept for this scenario.
    fn end(self: Box<Self>) {}
}

/// What a persistent session reports between and after runs.
#[derive(Clone, Debug)]
pub enum SessionEvent {
    /// The connections' state after a run or a reconnect attempt; `since`: when the oldest
    /// open connection was opened.
    State {
        connected: bool,
        since: Option<Instant>,
    },
    /// Setup ran for the first time and the connections are up.
    Connected,
    /// A connection closed, between runs or during one (why: close code and reason).
    Broken(String),
    /// A setup attempt after a break (or before the first connection) failed: why.
    ReconnectFailed(String),
    /// Setup ran again and the connections are back.
    Reconnected,
}

impl SessionEvent {
    /// The event's name in the API's session event list (`None`: not listed).
    pub fn label(&self) -> Option<&'static str> {
        match self {
            SessionEvent::State { .. } => None,
            SessionEvent::Connected => Some("connected"),
            SessionEvent::Broken(_) => Some("broken"),
            SessionEvent::ReconnectFailed(_) => Some("reconnect_failed"),
            SessionEvent::Reconnected => Some("reconnected"),
        }
    }
}

/// The observers of one scheduler, in the order they are told.
pub type Observers = Arc<[Arc<dyn Observer>]>;

/// The per-scenario observers of one task, told together.
pub struct Watchers(Vec<Box<dyn ScenarioObserver>>);

impl Watchers {
    pub fn new(observers: &Observers, scenario: &Arc<Scenario>) -> Self {
        Watchers(observers.iter().map(|o| o.watch(scenario)).collect())
    }

    pub fn run(&mut self, report: &RunReport, current: bool) {
        self.0.iter_mut().for_each(|w| w.run(report, current));
    }

    pub fn attempt(&mut self, report: &RunReport) {
        self.0.iter_mut().for_each(|w| w.attempt(report));
    }

    pub fn skipped(&mut self, n: u64) {
        self.0.iter_mut().for_each(|w| w.skipped(n));
    }

    pub fn session(&mut self, event: &SessionEvent) {
        self.0.iter_mut().for_each(|w| w.session(event));
    }

    pub fn end(self) {
        self.0.into_iter().for_each(|w| w.end());
    }
}
