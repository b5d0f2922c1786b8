//! The operator's log of runs: one INFO line when a scenario starts failing, when it recovers,
//! and when a persistent session breaks or reconnects — state changes, never a line per run.
//! Every failed run is logged at DEBUG.

use std::sync::Arc;

use super::observer::{Observer, ScenarioObserver, SessionEvent};
use crate::config::scenario::Scenario;
use crate::engine::RunReport;

/// The log, as an observer of runs.
pub struct RunLog;

impl Observer for RunLog {
    fn watch(&self, scenario: &Arc<Scenario>) -> Box<dyn ScenarioObserver> {
        Box::new(ScenarioLog {
            scenario: scenario.clone(),
            failing_since: None,
            failed_runs: 0,
        })
    }
}

struct ScenarioLog {
    scenario: Arc<Scenario>,
    /// When the current run of failures started (RFC 3339), if failing.
    failing_since: Option<String>,
    failed_runs: u64,
}

impl ScenarioLog {
    fn why(&self, report: &RunReport) -> String {
        let text = match (report.failure(), &report.internal_error) {
            (Some(f), _) => f.to_string(),
            (None, Some(e)) => e.clone(),
            (None, None) => "failed".into(),
        };
        report.redact_text(&self.scenario, &text)
    }
}

impl ScenarioObserver for ScenarioLog {
    fn run(&mut self, report: &RunReport, current: bool) {
        let name = &self.scenario.name;
        let step = report.failed_step.as_deref().unwrap_or("");
        if report.success() {
            if let Some(since) = self.failing_since.take() {
                tracing::info!(
                    scenario = %name,
                    "scenario recovered after {} failed run(s) since {since}",
                    self.failed_runs
                );
            }
            self.failed_runs = 0;
            return;
        }
        let why = self.why(report);
        tracing::debug!(scenario = %name, step, "run failed: {why}");
        self.failed_runs += 1;
        if self.failing_since.is_none() && current {
            self.failing_since = Some(report.started_at.clone());
            tracing::info!(scenario = %name, step, "scenario failing: {why}");
        }
    }

    fn session(&mut self, event: &SessionEvent) {
        let name = &self.scenario.name;
        match event {
            SessionEvent::Broken(why) => tracing::info!(
                scenario = %name,
                "session broken: {}",
                self.scenario.redact_text(why)
            ),
            SessionEvent::Reconnected => tracing::info!(scenario = %name, "session reconnected"),
            // Not a change of state: the session was down and stays down; the first connection
            // is the start, not news.
            SessionEvent::ReconnectFailed(why) => tracing::debug!(
                scenario = %name,
                "session reconnect failed: {}",
                self.scenario.redact_text(why)
            ),
            SessionEvent::Connected => tracing::debug!(scenario = %name, "session connected"),
            SessionEvent::State { .. } => {}
        }
    }
}
