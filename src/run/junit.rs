//! The JUnit XML report (`--junit F`), written with quick-junit, in the shape Jenkins, GitLab
//! and GitHub test reporters read: one `<testsuite>` per scenario file, one `<testcase>` per
//! scenario (classname = the file), `<failure type=REASON message=…>` naming the failing step,
//! `<skipped>` for scenarios `--fail-fast` cancelled, flaky runs as `<flakyFailure>`, durations
//! in seconds, and the redacted JSON trace of the deciding run in `<system-out>`.

use std::collections::BTreeMap;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::execute::{Outcome, Verdict};

pub fn render(outcomes: &[Outcome]) -> String {
    let mut report = Report::new("sonde run");
    let mut suites: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    let mut order = Vec::new();
    for o in outcomes {
        if !suites.contains_key(o.file()) {
            order.push(o.file());
        }
        suites.entry(o.file()).or_default().push(o);
    }
    let mut total = std::time::Duration::ZERO;
    for file in order {
        let mut suite = TestSuite::new(file);
        let mut took = std::time::Duration::ZERO;
        for o in &suites[file] {
            took += o.duration();
            suite.add_test_case(case(o));
        }
        suite.set_time(took);
        total += took;
        report.add_test_suite(suite);
    }
    report.set_time(total);
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- sonde: cannot write the JUnit report: {e} -->\n"))
}

fn case(o: &Outcome) -> TestCase {
    let trace = o
        .last()
        .map(|r| serde_json::to_string_pretty(&r.to_json(&o.scenario)).unwrap_or_default());
    let status = match o.verdict {
        Verdict::Passed => TestCaseStatus::success(),
        Verdict::Flaky => {
            let mut flaky = Vec::new();
            for r in &o.runs[..o.runs.len().saturating_sub(1)] {
                let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                rerun.set_time(r.duration);
                if let Some(f) = r.failure() {
                    rerun.set_type(f.reason.to_string());
                }
                rerun.set_message(message_of(o, r));
                rerun.set_system_out(
                    serde_json::to_string_pretty(&r.to_json(&o.scenario)).unwrap_or_default(),
                );
                flaky.push(rerun);
            }
            TestCaseStatus::Success { flaky_runs: flaky }
        }
        Verdict::Failed => {
            let kind = match o.last().and_then(|r| r.internal_error.as_ref()) {
                Some(_) => NonSuccessKind::Error,
                None => NonSuccessKind::Failure,
            };
            let mut st = TestCaseStatus::non_success(kind);
            let ty = o
                .last()
                .and_then(|r| r.failure())
                .map(|f| f.reason.to_string())
                .unwrap_or_else(|| "error".into());
            st.set_type(ty);
            st.set_message(o.failure_line().unwrap_or_else(|| "failed".into()));
            if o.runs.len() > 1 {
                st.set_description(format!("failed all {} attempts", o.runs.len()));
            }
            st
        }
        Verdict::Skipped => {
            let mut st = TestCaseStatus::skipped();
            st.set_message(o.note.clone().unwrap_or_else(|| "skipped".into()));
            st
        }
    };
    let mut tc = TestCase::new(o.scenario.name.as_str(), status);
    tc.set_classname(o.file());
    tc.set_time(o.duration());
    if let Some(t) = trace {
        tc.set_system_out(t);
    }
    tc
}

fn message_of(o: &Outcome, r: &crate::engine::RunReport) -> String {
    let step = r.failed_step.as_deref().unwrap_or("?");
    let line = match r.failure() {
        Some(f) => format!("step `{step}` failed ({}): {}", f.reason, f.message),
        None => format!("step `{step}` failed"),
    };
    r.redact_text(&o.scenario, &line)
}
