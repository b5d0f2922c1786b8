//! The scenario engine: run one scenario once, step after step, under its deadline, and say
//! exactly what happened in a [`RunReport`] — the step-by-step trace that `/api/v1/scenarios`
//! shows and from which the metrics are recorded.
//!
//! A step's probe does the protocol work and its own checks (status, body, records…); the engine
//! then applies the checks that are not the protocol's business (duration bounds, certificate
//! expiry). The first failing step ends the run and names itself.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sonde_probes::dns::DnsFacts;
use sonde_probes::http::HttpFacts;
use sonde_probes::icmp::IcmpFacts;
use sonde_probes::tcp::TcpFacts;
use sonde_probes::tls::{fmt_unix, TlsFacts, TlsProbeFacts};
use sonde_probes::{fmt_duration, Event, Failure, FailureReason, Outcome, Timings};
use tokio::time::Instant;

use crate::scenario::{Action, Bounds, PostChecks, Scenario, Step};

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

/// One run of one scenario.
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
    /// Steps that ran, in order; steps after a failure did not run and are not listed.
    pub steps: Vec<StepReport>,
    /// Set when the run failed because of a bug in sonde (a panic), not because of the target:
    /// what went wrong, for the trace and a bug report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_error: Option<String>,
}

impl RunReport {
    pub fn success(&self) -> bool {
        self.result == RunResult::Success
    }

    /// The failing step's failure, for one-line summaries.
    pub fn failure(&self) -> Option<&Failure> {
        self.steps.iter().find_map(|s| s.failure.as_ref())
    }
}

/// One step of a run.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub name: String,
    pub kind: &'static str,
    pub success: bool,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub failure: Option<Failure>,
    pub timings: Timings,
    pub remote_addr: Option<SocketAddr>,
    pub events: Vec<Event>,
    pub facts: StepFacts,
}

impl StepReport {
    /// The earliest `not_after` of the TLS chain the step saw, in Unix seconds.
    pub fn cert_not_after(&self) -> Option<i64> {
        self.facts.tls().and_then(TlsFacts::earliest_not_after)
    }
}

/// The protocol facts of a step, as the probe reported them.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum StepFacts {
    Http(HttpFacts),
    Tcp(TcpFacts),
    Dns(DnsFacts),
    Icmp(IcmpFacts),
    Tls(TlsProbeFacts),
}

impl StepFacts {
    pub fn tls(&self) -> Option<&TlsFacts> {
        match self {
            StepFacts::Http(f) => f.tls.as_ref(),
            StepFacts::Tcp(f) => f.tls.as_ref(),
            StepFacts::Tls(f) => f.session.as_ref(),
            StepFacts::Dns(_) | StepFacts::Icmp(_) => None,
        }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Run `scenario` once. Never panics, never outlives `scenario.timeout` by more than the time it
/// takes to notice the deadline.
pub async fn run(scenario: &Scenario) -> RunReport {
    let started_at = SystemTime::now();
    let start = Instant::now();
    let deadline = start + scenario.timeout;
    let mut steps = Vec::with_capacity(scenario.steps.len());
    let mut result = RunResult::Success;
    let mut failed_step = None;
    for step in &scenario.steps {
        let step_deadline = match step.timeout {
            Some(t) => (Instant::now() + t).min(deadline),
            None => deadline,
        };
        let report = run_step(step, step_deadline).await;
        let reason = report.failure.as_ref().map(|f| f.reason);
        steps.push(report);
        if let Some(reason) = reason {
            result = if reason == FailureReason::Timeout {
                RunResult::Timeout
            } else {
                RunResult::Failure
            };
            failed_step = Some(step.name.clone());
            break;
        }
    }
    RunReport {
        scenario: scenario.name.clone(),
        started_at: rfc3339(started_at),
        duration: start.elapsed(),
        result,
        failed_step,
        steps,
        internal_error: None,
    }
}

/// Run one step: its probe, then the engine's own checks.
pub async fn run_step(step: &Step, deadline: Instant) -> StepReport {
    use sonde_probes::{dns, http, icmp, tcp, tls};
    let mut report = match &step.action {
        Action::Http(r) => from_outcome(step, http::probe(r, deadline).await, StepFacts::Http),
        Action::Tcp(r) => from_outcome(step, tcp::probe(r, deadline).await, StepFacts::Tcp),
        Action::Dns(r) => from_outcome(step, dns::probe(r, deadline).await, StepFacts::Dns),
        Action::Icmp(r) => from_outcome(step, icmp::probe(r, deadline).await, StepFacts::Icmp),
        Action::Tls(r) => from_outcome(step, tls::probe(r, deadline).await, StepFacts::Tls),
    };
    if report.failure.is_none() {
        if let Some(f) = post_checks(&step.expect, &report, SystemTime::now()) {
            report.events.push(Event {
                at: report.duration,
                message: format!("expectation failed: {}", f.message),
            });
            report.failure = Some(f);
            report.success = false;
        }
    }
    report
}

fn from_outcome<F>(step: &Step, o: Outcome<F>, wrap: fn(F) -> StepFacts) -> StepReport {
    StepReport {
        name: step.name.clone(),
        kind: step.action.kind(),
        success: o.failure.is_none(),
        duration: o.duration,
        failure: o.failure,
        timings: o.timings,
        remote_addr: o.remote_addr,
        events: o.events,
        facts: wrap(o.facts),
    }
}

/// The `expect:` checks the engine owns. Returns the first that fails.
fn post_checks(expect: &PostChecks, report: &StepReport, now: SystemTime) -> Option<Failure> {
    if let Some(why) = check_bounds(&expect.duration, report.duration) {
        return Some(Failure::new(
            FailureReason::Assertion,
            format!(
                "duration {} — expected {why}",
                fmt_duration(report.duration)
            ),
        ));
    }
    if !expect.cert_expires_in.is_empty() {
        let Some(not_after) = report.cert_not_after() else {
            return Some(Failure::new(
                FailureReason::Assertion,
                "no TLS certificate was presented — expected one for cert_expires_in",
            ));
        };
        let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let left = not_after - now_s;
        let left_d = Duration::from_secs(left.max(0) as u64);
        let within = if left < 0 {
            None
        } else {
            check_bounds(&expect.cert_expires_in, left_d)
        };
        if left < 0 || within.is_some() {
            let expected = within
                .unwrap_or_else(|| describe_bounds(&expect.cert_expires_in).unwrap_or_default());
            let state = if left < 0 {
                format!(
                    "expired {} ago",
                    fmt_long(Duration::from_secs((-left) as u64))
                )
            } else {
                format!("expires in {}", fmt_long(left_d))
            };
            return Some(Failure::new(
                FailureReason::Assertion,
                format!(
                    "certificate chain {state} ({}) — expected expiry in {expected}",
                    fmt_unix(not_after)
                ),
            ));
        }
    }
    None
}

/// `None` when `v` satisfies every bound, else the description of the bounds.
fn check_bounds(b: &Bounds, v: Duration) -> Option<String> {
    let ok = b.lt.is_none_or(|x| v < x)
        && b.le.is_none_or(|x| v <= x)
        && b.gt.is_none_or(|x| v > x)
        && b.ge.is_none_or(|x| v >= x);
    if ok {
        None
    } else {
        describe_bounds(b)
    }
}

fn describe_bounds(b: &Bounds) -> Option<String> {
    let parts: Vec<String> = [("<", b.lt), ("≤", b.le), (">", b.gt), ("≥", b.ge)]
        .into_iter()
        .filter_map(|(op, d)| d.map(|d| format!("{op} {}", fmt_long(d))))
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(" and "))
    }
}

/// Durations from milliseconds to weeks, the way people write them in YAML: "500ms", "1.5s",
/// "14d", "3d 4h".
pub fn fmt_long(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        return fmt_duration(d);
    }
    let (days, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    let sec = s % 60;
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 && days == 0 {
        parts.push(format!("{m}m"));
    }
    if sec > 0 && days == 0 && h == 0 {
        parts.push(format!("{sec}s"));
    }
    parts.join(" ")
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let base = fmt_unix(d.as_secs() as i64);
    // "YYYY-MM-DDTHH:MM:SSZ" → insert milliseconds before the Z.
    format!("{}.{:03}Z", base.trim_end_matches('Z'), d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(lt: Option<u64>, gt: Option<u64>) -> Bounds {
        Bounds {
            lt: lt.map(Duration::from_millis),
            gt: gt.map(Duration::from_millis),
            ..Default::default()
        }
    }

    #[test]
    fn bounds_hold_or_say_why() {
        let b = bounds(Some(500), None);
        assert_eq!(check_bounds(&b, Duration::from_millis(499)), None);
        assert_eq!(
            check_bounds(&b, Duration::from_millis(500)).as_deref(),
            Some("< 500ms")
        );
        let b = bounds(Some(500), Some(100));
        assert_eq!(
            check_bounds(&b, Duration::from_millis(50)).as_deref(),
            Some("< 500ms and > 100ms")
        );
        assert_eq!(
            check_bounds(&Bounds::default(), Duration::from_secs(9)),
            None
        );
    }

    #[test]
    fn long_durations_read_like_yaml() {
        assert_eq!(fmt_long(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(
            fmt_long(Duration::from_secs(3 * 86_400 + 4 * 3600 + 5)),
            "3d 4h"
        );
        assert_eq!(fmt_long(Duration::from_secs(90)), "1m 30s");
        assert_eq!(fmt_long(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn rfc3339_has_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }

    fn report_with_cert(not_after: Option<i64>) -> StepReport {
        let tls = not_after.map(|na| TlsFacts {
            version: "TLS 1.3".into(),
            cipher: String::new(),
            alpn: None,
            server_name: "x".into(),
            verified: true,
            chain: vec![sonde_probes::tls::CertFacts {
                subject: String::new(),
                issuer: String::new(),
                serial: String::new(),
                not_before: 0,
                not_after: na,
                subject_alt_names: vec![],
                fingerprint_sha256: String::new(),
            }],
        });
        StepReport {
            name: "tls".into(),
            kind: "tls",
            success: true,
            duration: Duration::from_millis(3),
            failure: None,
            timings: Timings::default(),
            remote_addr: None,
            events: vec![],
            facts: StepFacts::Tls(TlsProbeFacts { session: tls }),
        }
    }

    #[test]
    fn cert_expiry_bound() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expect = PostChecks {
            cert_expires_in: Bounds {
                gt: Some(Duration::from_secs(14 * 86_400)),
                ..Default::default()
            },
            ..Default::default()
        };
        // 20 days left: fine.
        let ok = report_with_cert(Some(1_000_000 + 20 * 86_400));
        assert_eq!(post_checks(&expect, &ok, now), None);
        // 3 days left: fails, saying how long is left and what was expected.
        let soon = report_with_cert(Some(1_000_000 + 3 * 86_400));
        let f = post_checks(&expect, &soon, now).unwrap();
        assert_eq!(f.reason, FailureReason::Assertion);
        assert!(
            f.message.starts_with("certificate chain expires in 3d ("),
            "{}",
            f.message
        );
        assert!(
            f.message.ends_with("— expected expiry in > 14d"),
            "{}",
            f.message
        );
        // Already expired.
        let gone = report_with_cert(Some(1_000_000 - 86_400));
        let f = post_checks(&expect, &gone, now).unwrap();
        assert!(f.message.contains("expired 1d ago"), "{}", f.message);
        // No TLS at all.
        let none = report_with_cert(None);
        let f = post_checks(&expect, &none, now).unwrap();
        assert!(f.message.contains("no TLS certificate"), "{}", f.message);
    }

    #[test]
    fn duration_bound_fails_with_both_values() {
        let expect = PostChecks {
            duration: bounds(Some(1), None),
            ..Default::default()
        };
        let r = report_with_cert(None);
        let f = post_checks(&expect, &r, SystemTime::now()).unwrap();
        assert_eq!(f.message, "duration 3ms — expected < 1ms");
    }
}
