//! What a run did: the [`RunReport`] trace of one run and the [`StepReport`] of each step, and
//! the constructors every producer of reports (the engine, the scheduler after a panic, a broken
//! persistent session, a cancelled CI run) builds them with.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sonde_probes::dns::DnsFacts;
use sonde_probes::http::HttpFacts;
use sonde_probes::icmp::IcmpFacts;
use sonde_probes::tcp::TcpFacts;
use sonde_probes::tls::{TlsFacts, TlsProbeFacts};
use sonde_probes::{Event, Failure, FailureReason, Outcome, Timings};

use crate::config::scenario::{Scenario, Step};
use crate::engine::steps::ws::WsFacts;
use crate::time::rfc3339;

/// How a run ended; the `result` label of `sonde_scenario_runs_total` (with `skipped`, which the
/// scheduler counts for runs that never started).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    Success,
    Failure,
    Timeout,
}

impl RunResult {
    pub const fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
            RunResult::Timeout => "timeout",
        }
    }
}

/// One run of one scenario: the trace. The CI runner serializes it as it is (after
/// [`RunReport::to_json`] redacts it).
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub scenario: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub result: RunResult,
    /// The step that failed, if any.
    pub failed_step: Option<String>,
    /// Steps that ran, in order (setup, steps, teardown); steps after a failure did not run and
    /// are not listed.
    pub steps: Vec<StepReport>,
    /// Set when the run failed because of a bug in sonde (a panic), not because of the target:
    /// what went wrong, for the trace and a bug report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_error: Option<String>,
    /// Persistent sessions: what happened to the connections before this run (reconnects).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub session_events: Vec<String>,
    /// Secret values met during the run (captures with secret names, files read per run), on
    /// top of the scenario's own: redacted by [`RunReport::to_json`].
    #[serde(skip)]
    pub secrets: Vec<String>,
}

impl RunReport {
    /// A run of `scenario` that started at `started_at` and has done nothing yet: a success
    /// until a step fails.
    pub fn new(scenario: &str, started_at: SystemTime) -> Self {
        RunReport {
            scenario: scenario.to_string(),
            started_at: rfc3339(started_at),
            duration: Duration::ZERO,
            result: RunResult::Success,
            failed_step: None,
            steps: Vec::new(),
            internal_error: None,
            session_events: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// A run that failed because of a bug in sonde (`what`), not because of the target.
    pub fn internal_error(
        scenario: &str,
        started_at: SystemTime,
        duration: Duration,
        what: String,
    ) -> Self {
        RunReport {
            duration,
            result: RunResult::Failure,
            internal_error: Some(what),
            ..RunReport::new(scenario, started_at)
        }
    }

    /// Append a step's report; true when it failed (and so ends the run). The first failing
    /// step names the run's result.
    pub fn push_step(&mut self, r: StepReport) -> bool {
        let Some(reason) = r.failure.as_ref().map(|f| f.reason) else {
            self.steps.push(r);
            return false;
        };
        if self.failed_step.is_none() {
            self.result = if reason == FailureReason::Timeout {
                RunResult::Timeout
            } else {
                RunResult::Failure
            };
            self.failed_step = Some(r.name.clone());
        }
        self.steps.push(r);
        true
    }

    pub fn success(&self) -> bool {
        self.result == RunResult::Success
    }

    /// The failing step's failure, for one-line summaries.
    pub fn failure(&self) -> Option<&Failure> {
        self.steps.iter().find_map(|s| s.failure.as_deref())
    }

    /// `text` with the scenario's and this run's secrets replaced, then URL shapes
    /// ([`crate::redact::with_secrets`]).
    pub fn redact_text(&self, scenario: &Scenario, text: &str) -> String {
        let secrets = crate::redact::merge(&[&scenario.secrets, &self.secrets]);
        crate::redact::with_secrets(text, &secrets).into_owned()
    }

    /// Every string (and key) of `v` redacted as by [`Self::redact_text`].
    pub fn redact_json(&self, scenario: &Scenario, v: &mut serde_json::Value) {
        let secrets = crate::redact::merge(&[&scenario.secrets, &self.secrets]);
        crate::redact::json_with_secrets(v, &secrets);
    }

    /// The trace as JSON with every secret replaced: what every output (API, CI reports) shows.
    pub fn to_json(&self, scenario: &Scenario) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        self.redact_json(scenario, &mut v);
        v
    }
}

/// Which part of the scenario a step belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Setup,
    Steps,
    Teardown,
}

/// One step of a run.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub name: String,
    pub kind: &'static str,
    pub stage: Stage,
    pub success: bool,
    /// The step's own duration: for `ws.expect`, from the run's last `ws.send` to the match;
    /// with `retry`, from the first attempt's start to the last one's end.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Boxed, like `remote_addr`: most steps pass, and the steps on a long connection have no
    /// address of their own; inline the two took 48 of a report's 240 bytes, and the last
    /// report of every session is kept.
    pub failure: Option<Box<Failure>>,
    /// Attempts made (more than 1 only with `retry`).
    pub attempts: u32,
    pub timings: Timings,
    pub remote_addr: Option<Box<SocketAddr>>,
    pub events: Vec<Event>,
    /// Values captured for later steps (secret ones redacted in outputs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<CaptureReport>,
    /// Structured expectations evaluated (JSONPath checks), passed or not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckReport>,
    pub facts: StepFacts,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaptureReport {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub what: String,
    pub expected: String,
    pub actual: String,
    pub passed: bool,
}

impl StepReport {
    /// The earliest `not_after` of the TLS chain the step saw, in Unix seconds.
    pub fn cert_not_after(&self) -> Option<i64> {
        self.facts.tls().and_then(TlsFacts::earliest_not_after)
    }

    /// A report for a step that failed before doing anything (a template that does not render,
    /// a connection name that does not exist).
    pub fn failed(step: &Step, stage: Stage, failure: Failure, facts: StepFacts) -> Self {
        Self::failed_as(step.name.clone(), step.kind, stage, failure, facts)
    }

    /// [`StepReport::failed`] for something that is not a step of the scenario (a persistent
    /// session's connection).
    pub fn failed_as(
        name: String,
        kind: &'static str,
        stage: Stage,
        failure: Failure,
        facts: StepFacts,
    ) -> Self {
        let mut r = Self::passed(name, kind, stage, Duration::ZERO, facts);
        r.fail(failure);
        r
    }

    /// A step that passed after `duration`, with nothing recorded yet.
    pub fn passed(
        name: String,
        kind: &'static str,
        stage: Stage,
        duration: Duration,
        facts: StepFacts,
    ) -> Self {
        StepReport {
            name,
            kind,
            stage,
            success: true,
            duration,
            failure: None,
            attempts: 1,
            timings: Timings::default(),
            remote_addr: None,
            events: Vec::new(),
            captures: Vec::new(),
            checks: Vec::new(),
            facts,
        }
    }

    /// The report of a probe's outcome, its facts wrapped by `wrap`.
    pub fn from_outcome<F>(
        step: &Step,
        stage: Stage,
        o: Outcome<F>,
        wrap: fn(F) -> StepFacts,
    ) -> Self {
        StepReport {
            name: step.name.clone(),
            kind: step.kind,
            stage,
            success: o.failure.is_none(),
            duration: o.duration,
            failure: o.failure.map(Box::new),
            attempts: 1,
            timings: o.timings,
            remote_addr: o.remote_addr.map(Box::new),
            events: o.events,
            captures: Vec::new(),
            checks: Vec::new(),
            facts: wrap(o.facts),
        }
    }

    /// Record an event at the step's current duration.
    pub fn event(&mut self, message: String) {
        self.events.push(Event {
            at: self.duration,
            message,
        });
    }

    /// Fail the step with `f`, saying so in its events.
    pub fn fail(&mut self, f: Failure) {
        self.events.push(Event {
            at: self.duration,
            message: format!("failed ({}): {}", f.reason, f.message),
        });
        self.failure = Some(Box::new(f));
        self.success = false;
    }
}

/// The protocol facts of a step, as the probe reported them.
///
/// Every variant boxed: inline, the largest (360 bytes) set the size of every step report, and
/// each scenario keeps its last run's reports (a persistent session's WebSocket or TCP steps
/// have small facts of their own).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum StepFacts {
    Http(Box<HttpFacts>),
    Tcp(Box<TcpFacts>),
    Dns(Box<DnsFacts>),
    Icmp(Box<IcmpFacts>),
    Tls(Box<TlsProbeFacts>),
    Ws(Box<WsFacts>),
    Mqtt(Box<crate::engine::steps::mqtt::MqttFacts>),
    None {},
}

impl StepFacts {
    pub fn tls(&self) -> Option<&TlsFacts> {
        match self {
            StepFacts::Http(f) => f.tls.as_ref(),
            StepFacts::Tcp(f) => f.tls.as_ref(),
            StepFacts::Tls(f) => f.session.as_ref(),
            StepFacts::Ws(f) => f.handshake.as_ref().and_then(|h| h.tls.as_ref()),
            StepFacts::Mqtt(f) => f.connect.as_ref().and_then(|c| c.tls.as_ref()),
            StepFacts::Dns(_) | StepFacts::Icmp(_) | StepFacts::None {} => None,
        }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    /// The last report of every session is kept, its steps in one block: two steps of 192 bytes
    /// fill one of mimalloc's 384-byte blocks, where 240 each took 512.
    #[test]
    fn a_step_report_stays_small() {
        let size = std::mem::size_of::<super::StepReport>();
        assert!(size <= 192, "{size}");
    }
}
