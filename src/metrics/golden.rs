//! The scenario series of a fixed sequence of runs, against their exposition as recorded when
//! they were prometheus-client `Family`s (`testdata/`): the metric contract must not move
//! whatever holds the values. Lines are compared sorted (a family's series came out in hash
//! order then); the order of the families is compared as it is.
//!
//! `SONDE_BLESS_METRICS=1 cargo test --lib metrics::golden` rewrites the files.

use std::time::Duration;

use sonde_probes::{FailureReason, Phase, Timings};

use super::*;
use crate::config::{load_str, LoadOptions};
use crate::engine::{RunResult, Stage, StepFacts, StepReport};

/// Families held per scenario: the lines the golden files keep.
const OWN: [&str; 4] = [
    "sonde_scenario_",
    "sonde_step_",
    "sonde_tls_cert_not_after_",
    "sonde_session_",
];

pub(super) const WEB: &str = r#"scenario: web
labels: {team: "a\"b\\c\nd", tier: "1"}
steps:
  - {name: login, tcp: {target: "127.0.0.1:1"}}
  - {name: fetch, tcp: {target: "127.0.0.1:2"}}
  - {name: check, tcp: {target: "127.0.0.1:3"}}
"#;

const IM: &str = r#"scenario: im
session: persistent
setup:
  - name: connect
    tcp.connect: {as: c, target: "127.0.0.1:4"}
steps:
  - {name: send, tcp.send: {on: c, text: hi}}
teardown:
  - {name: bye, tcp.close: {on: c}}
"#;

const IDLE: &str = "scenario: idle\ntcp: {target: \"127.0.0.1:5\"}\n";

fn scenario(yaml: &str) -> Arc<Scenario> {
    let cfg = load_str("t.yaml", yaml, &LoadOptions::default()).expect("valid");
    cfg.scenarios[0].clone()
}

/// A step report: `phases` in milliseconds, a certificate expiring at `not_after`.
pub(super) fn step(
    name: &str,
    ms: f64,
    failure: Option<FailureReason>,
    phases: &[(Phase, f64)],
) -> StepReport {
    let mut timings = Timings::default();
    for (p, ms) in phases {
        timings.add(*p, Duration::from_secs_f64(ms / 1000.0));
    }
    StepReport {
        name: name.into(),
        kind: "tcp",
        stage: Stage::Steps,
        success: failure.is_none(),
        duration: Duration::from_secs_f64(ms / 1000.0),
        failure: failure.map(|r| Box::new(sonde_probes::Failure::new(r, "x"))),
        attempts: 1,
        timings,
        remote_addr: None,
        events: vec![],
        captures: vec![],
        checks: vec![],
        facts: StepFacts::Tcp(Default::default()),
    }
}

fn with_cert(mut s: StepReport, not_after: i64) -> StepReport {
    let cert = sonde_probes::tls::CertFacts {
        subject: String::new(),
        issuer: String::new(),
        serial: String::new(),
        not_before: 0,
        not_after,
        subject_alt_names: vec![],
        fingerprint_sha256: String::new(),
    };
    let tls = sonde_probes::tls::TlsFacts {
        version: "TLS 1.3".into(),
        cipher: String::new(),
        alpn: None,
        server_name: String::new(),
        verified: true,
        chain: vec![cert],
    };
    let tcp = sonde_probes::tcp::TcpFacts {
        tls: Some(tls),
        ..Default::default()
    };
    s.facts = StepFacts::Tcp(Box::new(tcp));
    s
}

fn report(ms: f64, result: RunResult, steps: Vec<StepReport>) -> RunReport {
    RunReport {
        scenario: String::new(),
        started_at: String::new(),
        duration: Duration::from_secs_f64(ms / 1000.0),
        result,
        failed_step: None,
        steps,
        internal_error: None,
        session_events: vec![],
        secrets: vec![],
    }
}

/// Runs of a per-run scenario: passes, fails halfway, times out, skips, retries.
pub(super) fn record_web(m: &Arc<Metrics>, yaml: &str) -> ScenarioMetrics {
    use Phase::*;
    let mut s = ScenarioMetrics::new(m.clone(), &scenario(yaml), Some("eu"));
    let fetch = step("fetch", 31.0, None, &[(Connect, 3.0), (Tls, 4.25)]);
    let steps = vec![
        step("login", 0.4, None, &[(Resolve, 1.0), (Connect, 2.0)]),
        with_cert(fetch, 1_900_000_000),
        step("check", 0.3, None, &[(Connect, 0.3)]),
    ];
    s.record(&report(12.3, RunResult::Success, steps));
    let steps = vec![
        step("login", 1.0, None, &[(Connect, 0.1)]),
        step(
            "fetch",
            2500.0,
            Some(FailureReason::Connect),
            &[(Connect, 2500.0)],
        ),
    ];
    s.record(&report(2501.0, RunResult::Failure, steps));
    let steps = vec![step("login", 5000.0, Some(FailureReason::Timeout), &[])];
    s.record(&report(5000.0, RunResult::Timeout, steps));
    s.skipped(3);
    let steps = vec![step("login", 7.0, Some(FailureReason::Connect), &[])];
    ScenarioObserver::attempt(&mut s, &report(7.0, RunResult::Failure, steps));
    let fetch = step("fetch", 45.5, None, &[(Connect, 0.75), (Tls, 4.25)]);
    let steps = vec![
        step("login", 0.2, None, &[(Connect, 0.125)]),
        with_cert(fetch, 1_800_000_000),
        step(
            "check",
            100.0,
            Some(FailureReason::Status),
            &[(Connect, 1.0 / 3.0)],
        ),
    ];
    s.record(&report(145.7, RunResult::Failure, steps));
    s
}

/// A persistent session: setup, breaks (the pseudo step `session`), reconnects, teardown.
pub(super) fn record_im(m: &Arc<Metrics>) -> ScenarioMetrics {
    use Phase::*;
    let agent = [("region", "us"), ("replica", "b")];
    let mut s = ScenarioMetrics::for_agent(m.clone(), &scenario(IM), &agent);
    let up = SessionEvent::State {
        connected: true,
        since: None,
    };
    s.session(&up);
    let steps = vec![
        step("connect", 1.5, None, &[(Connect, 1.5)]),
        step("send", 0.2, None, &[]),
    ];
    s.record(&report(1.7, RunResult::Success, steps));
    s.session_age(Some(Duration::from_millis(2_000)));
    s.session(&SessionEvent::Broken("closed".into()));
    let steps = vec![step("session", 0.0, Some(FailureReason::Protocol), &[])];
    s.record(&report(0.0, RunResult::Failure, steps));
    let steps = vec![step(
        "connect",
        3.0,
        Some(FailureReason::Connect),
        &[(Connect, 3.0)],
    )];
    ScenarioObserver::attempt(&mut s, &report(3.0, RunResult::Failure, steps));
    s.session(&SessionEvent::Reconnected);
    s.session(&up);
    let steps = vec![
        step("connect", 1.0, None, &[(Connect, 1.0), (Tls, 2.0)]),
        step("send", 0.1, None, &[(Request, 0.1)]),
        with_cert(step("bye", 0.05, None, &[]), 1_700_000_000),
    ];
    s.record(&report(3.15, RunResult::Success, steps));
    let steps = vec![step("session", 0.0, Some(FailureReason::Timeout), &[])];
    s.record(&report(0.0, RunResult::Failure, steps));
    let steps = vec![step("session", 0.0, Some(FailureReason::Timeout), &[])];
    s.record(&report(0.0, RunResult::Failure, steps));
    s.session_age(Some(Duration::from_millis(12_500)));
    s
}

/// The part of the exposition the golden files hold.
fn golden(m: &Metrics, format: Format) -> String {
    let text = String::from_utf8(m.encode(format).concat()).unwrap();
    let ours = |name: &str| OWN.iter().any(|p| name.starts_with(p));
    let mut out = String::from("# families, in order\n");
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str("# scenario series, sorted\n");
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            ours(
                l.trim_start_matches("# HELP ")
                    .trim_start_matches("# TYPE "),
            )
        })
        .collect();
    lines.sort_unstable();
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn check(format: Format, file: &str, expected: &str) {
    let m = Metrics::without_process();
    let _web = record_web(&m, WEB);
    let _im = record_im(&m);
    let _idle = ScenarioMetrics::new(m.clone(), &scenario(IDLE), None);
    let gone = record_web(&m, &WEB.replace("scenario: web", "scenario: gone"));
    gone.remove();
    let got = golden(&m, format);
    if std::env::var_os("SONDE_BLESS_METRICS").is_some() {
        let path = format!("{}/src/metrics/testdata/{file}", env!("CARGO_MANIFEST_DIR"));
        std::fs::write(path, &got).unwrap();
        return;
    }
    for (g, e) in got.lines().zip(expected.lines()) {
        assert_eq!(g, e, "{file}");
    }
    assert_eq!(got, expected, "{file}");
}

#[test]
fn prometheus_text_as_recorded_by_families() {
    let expected = include_str!("testdata/scenario_series.prom");
    check(Format::PrometheusText, "scenario_series.prom", expected);
}

#[test]
fn openmetrics_as_recorded_by_families() {
    let expected = include_str!("testdata/scenario_series.openmetrics");
    check(Format::OpenMetrics, "scenario_series.openmetrics", expected);
}

/// Every series a scenario ever had goes with it: its phases, failures, certificate and
/// session too, and with the last scenario the families' descriptions.
#[test]
fn removed_scenarios_leave_nothing() {
    let m = Metrics::without_process();
    let (web, im) = (record_web(&m, WEB), record_im(&m));
    let idle = ScenarioMetrics::new(m.clone(), &scenario(IDLE), None);
    let text = |m: &Metrics| String::from_utf8(m.encode(Format::OpenMetrics).concat()).unwrap();
    for s in [web, im] {
        s.remove();
    }
    let left = text(&m);
    assert!(!left.contains(r#"scenario="web""#), "{left}");
    assert!(!left.contains(r#"scenario="im""#), "{left}");
    for family in [
        "sonde_step_phase",
        "sonde_step_failures",
        "sonde_tls_",
        "sonde_session_",
    ] {
        assert!(!left.contains(family), "{family} in {left}");
    }
    idle.remove();
    let left = text(&m);
    assert!(!OWN.iter().any(|f| left.contains(f)), "{left}");
}
