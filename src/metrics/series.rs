//! What a scenario's series say, as plain values: what a run changes in them.
//!
//! All of a scenario's values sit in one [`ScenarioData`] under one lock, rather than ~35
//! series of their own in prometheus-client families: each of those was a hash-map entry (label
//! key and handle, in power-of-two tables) and an `Arc`, ~5 KB per persistent session with
//! eight steps (issue 12). Recording a run takes the lock once; the collector
//! (`super::collector`) reads the values under the same lock, series by series.

use std::sync::Arc;

use sonde_probes::{FailureReason, Phase};

use super::histogram::Counts;
use crate::engine::{RunReport, RunResult, StepReport};

/// The `result` label values, in `RunResult` order plus `skipped`.
pub(super) const RESULTS: [&str; 4] = [
    RunResult::Success.as_str(),
    RunResult::Failure.as_str(),
    RunResult::Timeout.as_str(),
    "skipped",
];

/// Index in [`RESULTS`] of runs skipped because the previous one was still going.
const SKIPPED: usize = 3;

/// One scenario's values.
#[derive(Debug, Default)]
pub(super) struct ScenarioData {
    /// Out of the table: a scrape that took the scenario before must not write it any more.
    pub(super) removed: bool,
    /// Set by the first run: before it, "did the last run pass" has no answer, and a 0 would
    /// read as a failure (and fire alerts) after every start or reload.
    pub(super) success: Option<bool>,
    pub(super) runs: [u64; 4],
    pub(super) duration: Counts,
    /// Persistent sessions only.
    pub(super) session: Option<Session>,
    pub(super) steps: Vec<StepData>,
}

/// A persistent session's connection state.
#[derive(Debug, Default)]
pub(super) struct Session {
    pub(super) connected: bool,
    pub(super) reconnects: u64,
    /// Seconds.
    pub(super) age: f64,
}

/// One step's values.
#[derive(Debug)]
pub(super) struct StepData {
    pub(super) name: Arc<String>,
    /// A step of `steps:` (not setup or teardown): when a run does not reach it, its success
    /// reads 0. Setup and teardown steps of a persistent session run only now and then: their
    /// series keep the last time they ran.
    main: bool,
    /// Not a step of the scenario (a persistent session's `session`): failures only.
    pub(super) pseudo: bool,
    /// Set by the first run, like the scenario's.
    pub(super) success: Option<bool>,
    /// Unix seconds; [`NO_CERT`] until a step saw a certificate (an `Option` took 8 bytes more).
    tls_not_after: i64,
    pub(super) duration: Counts,
    /// Seconds, in the order the phases first appeared: a step has one to five, fixed by its
    /// kind, so the slice is at its exact size and grows by one when a phase first appears.
    pub(super) phases: Box<[(Phase, f64)]>,
    /// Boxed twice: most steps never fail, and a vector inline took 16 bytes more.
    #[allow(clippy::box_collection)] // the point: 8 bytes inline, the vector only on failure
    failures: Option<Box<Vec<(FailureReason, u64)>>>,
}

/// `tls_not_after` of a step that saw no certificate.
const NO_CERT: i64 = i64::MIN;

impl StepData {
    pub(super) fn new(name: Arc<String>, main: bool) -> StepData {
        StepData {
            name,
            main,
            pseudo: false,
            success: None,
            tls_not_after: NO_CERT,
            duration: Counts::default(),
            phases: Box::default(),
            failures: None,
        }
    }

    /// Record this step's part of a run; `scheduled` as [`ScenarioData::record_steps`].
    fn record(&mut self, report: &RunReport, scheduled: bool) {
        let ran = report.steps.iter().find(|s| *s.name == *self.name);
        if self.pseudo || (ran.is_none() && (!self.main || !scheduled)) {
            return;
        }
        // Phases: the last run's; a phase this run did not reach (or a step it did not reach)
        // reads 0.
        self.phases.iter_mut().for_each(|(_, v)| *v = 0.0);
        match ran {
            Some(r) => self.ran(r),
            // An earlier step failed.
            None => self.success = Some(false),
        }
    }

    fn ran(&mut self, r: &StepReport) {
        self.success = Some(r.success);
        self.duration.observe(r.duration.as_secs_f64());
        for (phase, d) in r.timings.iter() {
            self.set_phase(phase, d.as_secs_f64());
        }
        if let Some(f) = &r.failure {
            self.count_failure(f.reason);
        }
        if let Some(na) = r.cert_not_after() {
            self.tls_not_after = na;
        }
    }

    /// Exact room: doubling left room for four after the first (eight steps a session, 10,000
    /// sessions).
    fn set_phase(&mut self, phase: Phase, secs: f64) {
        match self.phases.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, v)) => *v = secs,
            None => {
                let mut phases = std::mem::take(&mut self.phases).into_vec();
                phases.reserve_exact(1);
                phases.push((phase, secs));
                self.phases = phases.into_boxed_slice();
            }
        }
    }

    fn count_failure(&mut self, reason: FailureReason) {
        let failures = self.failures.get_or_insert_with(Box::default);
        match failures.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => failures.push((reason, 1)),
        }
    }

    /// Failures by reason, in the order the reasons first appeared.
    pub(super) fn failures(&self) -> &[(FailureReason, u64)] {
        self.failures.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The earliest `not_after` of the last certificate chain the step saw, in Unix seconds.
    pub(super) fn tls_not_after(&self) -> Option<i64> {
        (self.tls_not_after != NO_CERT).then_some(self.tls_not_after)
    }
}

impl ScenarioData {
    pub(super) fn new(steps: Vec<StepData>, persistent: bool) -> ScenarioData {
        ScenarioData {
            steps,
            session: persistent.then(Session::default),
            ..Default::default()
        }
    }

    /// Record a finished run.
    pub(super) fn record(&mut self, report: &RunReport) {
        self.success = Some(report.success());
        self.duration.observe(report.duration.as_secs_f64());
        let i = match report.result {
            RunResult::Success => 0,
            RunResult::Failure => 1,
            RunResult::Timeout => 2,
        };
        self.runs[i] += 1;
        self.record_steps(report, true);
    }

    /// Record the steps of a run, or (`scheduled`: false) of a persistent session's reconnect
    /// attempt, whose steps are measured like any others but which is not a scheduled run.
    pub(super) fn record_steps(&mut self, report: &RunReport, scheduled: bool) {
        self.count_session_failures(report);
        for s in &mut self.steps {
            s.record(report, scheduled);
        }
    }

    /// Failures of what is not a step of the scenario — a persistent session itself (a break
    /// between runs, a run due while reconnecting: step `session`) — are counted too, under
    /// that name; such a series has failures only (no success gauge or duration to mislead).
    fn count_session_failures(&mut self, report: &RunReport) {
        for r in &report.steps {
            let Some(f) = &r.failure else { continue };
            let step = match self.steps.iter().position(|s| *s.name == *r.name) {
                Some(i) if self.steps[i].pseudo => &mut self.steps[i],
                Some(_) => continue,
                None => self.add_pseudo(&r.name),
            };
            step.count_failure(f.reason);
        }
    }

    fn add_pseudo(&mut self, name: &str) -> &mut StepData {
        let mut step = StepData::new(super::step_name(name), false);
        step.pseudo = true;
        // The steps were allocated to size: one more, not twice as many.
        self.steps.reserve_exact(1);
        self.steps.push(step);
        self.steps.last_mut().expect("just pushed")
    }

    pub(super) fn skipped(&mut self, n: u64) {
        self.runs[SKIPPED] += n;
    }

    pub(super) fn session(&mut self) -> Option<&mut Session> {
        self.session.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paid per step of every scenario (80,000 times by 10,000 sessions of eight steps): eight
    /// of them fill one of mimalloc's 1,024-byte blocks, a few bytes more the next (1,280).
    #[test]
    fn a_step_stays_small() {
        assert!(size_of::<StepData>() <= 128, "{}", size_of::<StepData>());
    }
}
