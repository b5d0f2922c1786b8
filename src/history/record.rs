//! What the store keeps of one run, made on the run's task from its [`RunReport`]: already
//! redacted (the store holds what the API shows, never a raw secret), with the full trace only
//! when [`TracePolicy`] says so.

use std::sync::Arc;

use serde_json::Value;

use super::{RunRow, StepRow};
use crate::config::scenario::Scenario;
use crate::engine::{RunReport, Stage};

/// One run on its way to disk.
#[derive(Clone, Debug)]
pub struct Record {
    pub scenario: Arc<str>,
    pub region: Arc<str>,
    pub started_ms: i64,
    pub duration_s: f64,
    pub success: bool,
    pub failed_step: Option<String>,
    pub reason: Option<&'static str>,
    pub error: Option<String>,
    pub steps: Vec<StepRow>,
    /// The redacted trace as JSON text, when kept.
    pub trace: Option<String>,
}

/// Successes keep their trace at most this often per scenario (failures always keep theirs, as
/// do the first run after start and the first success after a failure).
pub const SUCCESS_TRACE_EVERY_MS: i64 = 10 * 60 * 1000;

/// Which runs of one scenario keep their full trace.
#[derive(Debug, Default)]
pub struct TracePolicy {
    last_success: Option<bool>,
    last_kept_success_ms: Option<i64>,
}

impl TracePolicy {
    /// Whether a run that started at `started_ms` keeps its trace; records the decision.
    pub fn keep(&mut self, success: bool, started_ms: i64) -> bool {
        let after_failure_or_first = self.last_success != Some(true);
        self.last_success = Some(success);
        if !success {
            return true;
        }
        let due = self
            .last_kept_success_ms
            .is_none_or(|t| started_ms - t >= SUCCESS_TRACE_EVERY_MS || started_ms < t);
        if after_failure_or_first || due {
            self.last_kept_success_ms = Some(started_ms);
            return true;
        }
        false
    }
}

/// When `report` started, in Unix milliseconds (now, if its start does not parse).
pub fn started_ms(report: &RunReport) -> i64 {
    humantime::parse_rfc3339_weak(&report.started_at)
        .map(|t| crate::time::unix_ms(t) as i64)
        .unwrap_or_else(|_| crate::time::now_ms())
}

impl Record {
    /// The record of `report`, every text redacted with the scenario's and the run's secrets.
    pub fn from_report(
        scenario: &Scenario,
        name: &Arc<str>,
        region: &Arc<str>,
        report: &RunReport,
        started_ms: i64,
        keep_trace: bool,
    ) -> Record {
        // One merge of the secret lists per run, not one per string.
        let secrets = crate::redact::merge(&[&scenario.secrets, &report.secrets]);
        let red = |s: &str| crate::redact::with_secrets(s, &secrets).into_owned();
        let failure = report.failure();
        let error = match (failure, &report.internal_error) {
            (Some(f), _) => Some(red(&f.message)),
            (None, Some(e)) => Some(red(e)),
            (None, None) => None,
        };
        // Setup runs once per connection only when it connects: while a session is down, the
        // failing runs (their `session` step) and setup attempts come every interval, and
        // their rows stay cached as any step's.
        let connected = scenario.persistent && report.success();
        let steps = report
            .steps
            .iter()
            .map(|s| StepRow {
                name: red(&s.name),
                kind: s.kind.to_string(),
                success: s.success,
                duration_s: s.duration.as_secs_f64(),
                phases: s
                    .timings
                    .iter()
                    .map(|(p, d)| (p.as_str().to_string(), d.as_secs_f64()))
                    .collect(),
                once: connected && s.stage != Stage::Steps && s.kind != "session",
            })
            .collect();
        let trace = keep_trace.then(|| report.to_json(scenario).to_string());
        Record {
            scenario: name.clone(),
            region: region.clone(),
            started_ms,
            duration_s: report.duration.as_secs_f64(),
            success: report.success(),
            failed_step: report.failed_step.as_deref().map(red),
            reason: failure.map(|f| f.reason.as_str()).or(
                // A run failed by sonde itself (a panic) has no step failure.
                (!report.success()).then_some("internal"),
            ),
            error,
            steps,
            trace,
        }
    }
}

/// Steps as stored: `[[name, kind, ok, seconds, [[phase, seconds]…]]…]`, compact JSON, written
/// straight from the rows (tuples serialize as arrays) without building a JSON tree per run.
pub fn encode_steps(steps: &[StepRow]) -> String {
    let rows: Vec<_> = steps
        .iter()
        .map(|s| {
            (
                &s.name,
                &s.kind,
                u8::from(s.success),
                s.duration_s,
                &s.phases,
            )
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_string())
}

/// Steps read back; what does not parse is left out.
pub fn decode_steps(text: &str) -> Vec<StepRow> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|s| {
            let a = s.as_array()?;
            Some(StepRow {
                name: a.first()?.as_str()?.to_string(),
                kind: a.get(1)?.as_str()?.to_string(),
                success: a.get(2)?.as_u64()? == 1,
                duration_s: a.get(3)?.as_f64()?,
                phases: a
                    .get(4)?
                    .as_array()?
                    .iter()
                    .filter_map(|p| {
                        let p = p.as_array()?;
                        Some((p.first()?.as_str()?.to_string(), p.get(1)?.as_f64()?))
                    })
                    .collect(),
                once: false,
            })
        })
        .collect()
}

impl From<&Record> for RunRow {
    fn from(r: &Record) -> RunRow {
        RunRow {
            id: 0,
            scenario: r.scenario.to_string(),
            region: r.region.to_string(),
            started_ms: r.started_ms,
            duration_s: r.duration_s,
            success: r.success,
            failed_step: r.failed_step.clone(),
            reason: r.reason.map(str::to_string),
            error: r.error.clone(),
            steps: r.steps.clone(),
            has_trace: r.trace.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip() {
        let steps = vec![StepRow {
            name: "get \"x\"".into(),
            kind: "http".into(),
            success: false,
            duration_s: 0.25,
            phases: vec![("connect".into(), 0.001), ("tls".into(), 0.01)],
            once: false,
        }];
        let text = encode_steps(&steps);
        // The stored form is unchanged (stores written before read the same).
        assert_eq!(
            text,
            r#"[["get \"x\"","http",0,0.25,[["connect",0.001],["tls",0.01]]]]"#
        );
        assert_eq!(decode_steps(&text), steps);
        assert!(decode_steps("not json").is_empty());
    }

    /// Only a run that connected says its setup steps ran once: while a session is down its
    /// failing runs and setup attempts come every interval, and their rows stay cached.
    #[test]
    fn setup_steps_run_once_only_in_a_run_that_connected() {
        use crate::engine::{StepFacts, StepReport};
        use sonde_probes::{Failure, FailureReason};
        let yaml = "scenario: s\nsession: persistent\nsetup:\n  - {name: login, sleep: 1ms}\n\
                    steps:\n  - {name: ping, sleep: 1ms}\n";
        let cfg = crate::config::load_str("t.yaml", yaml, &Default::default()).expect("loads");
        let sc = &cfg.scenarios[0];
        let name: Arc<str> = Arc::from("s");
        let once = |steps: Vec<StepReport>| -> Vec<bool> {
            let mut r = RunReport::new("s", std::time::SystemTime::now());
            for s in steps {
                r.push_step(s);
            }
            let rec = Record::from_report(sc, &name, &name, &r, 0, false);
            rec.steps.iter().map(|s| s.once).collect()
        };
        let step = |n: &str, stage| {
            StepReport::passed(
                n.into(),
                "sleep",
                stage,
                Default::default(),
                StepFacts::None {},
            )
        };
        let failed = |n: &str, kind| {
            let f = Failure::new(FailureReason::Connect, "down");
            StepReport::failed_as(n.into(), kind, Stage::Setup, f, StepFacts::None {})
        };
        let connected = once(vec![
            step("login", Stage::Setup),
            step("ping", Stage::Steps),
        ]);
        assert_eq!(connected, [true, false]);
        assert_eq!(
            once(vec![failed("login", "sleep")]),
            [false],
            "a failed attempt"
        );
        assert_eq!(
            once(vec![failed("session", "session")]),
            [false],
            "a run while down"
        );
    }

    #[test]
    fn traces_of_failures_recoveries_and_every_ten_minutes() {
        let mut p = TracePolicy::default();
        let min = 60_000;
        assert!(p.keep(true, 0), "first run");
        assert!(!p.keep(true, min));
        assert!(p.keep(false, 2 * min), "failure");
        assert!(p.keep(true, 3 * min), "recovery");
        assert!(!p.keep(true, 4 * min));
        assert!(!p.keep(true, 12 * min));
        assert!(
            p.keep(true, 13 * min),
            "ten minutes after the last kept success"
        );
    }
}
