//! `sonde run`, end to end on the real binary: fixture scenarios (passing, failing, timing out,
//! flaky-then-passing, invalid) against an in-process HTTP server on loopback; exit codes, the
//! summary line, no escape codes off a terminal, the JUnit, JSON and TAP reports, `--var`,
//! `--env-file`, `--fail-fast`, and secrets redacted everywhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sonde_testkit::http::{HttpServer, Reply, Routes};

/// A secret that must never appear in any output: given through the environment.
const SECRET: &str = "s3cr3t-token-4711-do-not-print";

struct Fixture {
    _rt: tokio::runtime::Runtime,
    server: HttpServer,
    dir: tempfile::TempDir,
    flaky_hits: Arc<AtomicUsize>,
}

impl Fixture {
    fn new() -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let routes = Routes::new()
            .at("/ok", Reply::text(200, "{\"status\":\"ok\"}"))
            // Fails and shows the request target (with the secret in its query) in its body.
            .at_fn("/bad", |seen| {
                Reply::text(500, format!("internal error for {}", seen.uri))
            })
            .at(
                "/slow",
                Reply::text(200, "late").delay(Duration::from_secs(5)),
            )
            // Fails the first request, passes every later one.
            .at_fn("/flaky", move |_| {
                if h.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::text(503, "warming up")
                } else {
                    Reply::text(200, "ok")
                }
            });
        let server = rt.block_on(HttpServer::start(routes));
        Fixture {
            _rt: rt,
            server,
            dir: tempfile::tempdir().unwrap(),
            flaky_hits: hits,
        }
    }

    /// Write a scenario file; `{base}` becomes the fixture's base URL.
    fn file(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        let base = self.server.url("");
        std::fs::write(&p, yaml.replace("{base}", base.trim_end_matches('/'))).unwrap();
        p
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn pass(&self) -> PathBuf {
        self.file(
            "pass.yaml",
            "scenario: pass-ok\ntags: [smoke]\nhttp: {url: \"{base}/ok\"}\nexpect: {status: 200, body: {contains: ok}}\n",
        )
    }

    fn fail(&self) -> PathBuf {
        self.file(
            "fail.yaml",
            "scenario: fail-500\ntags: [smoke]\nvars: {token: \"{{ env.SONDE_RUN_TEST_TOKEN }}\"}\nsteps:\n  - name: fetch\n    http: {url: \"{base}/bad?token={{ token }}\"}\n    expect: {status: 200}\n",
        )
    }

    fn slow(&self) -> PathBuf {
        self.file(
            "slow.yaml",
            "scenario: slow-timeout\ntimeout: 1s\nhttp: {url: \"{base}/slow\"}\nexpect: {status: 200}\n",
        )
    }

    fn flaky(&self) -> PathBuf {
        self.file(
            "flaky.yaml",
            "scenario: flaky-then-ok\nhttp: {url: \"{base}/flaky\"}\nexpect: {status: 200}\n",
        )
    }
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn sonde(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sonde"));
    cmd.arg("run").args(args);
    cmd.env_remove("NO_COLOR").env_remove("CI");
    cmd.env("SONDE_RUN_TEST_TOKEN", SECRET);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run sonde");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The last non-empty line of `text`.
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

#[test]
fn all_passing_exits_0_with_the_summary_line() {
    let f = Fixture::new();
    let out = sonde(&[s(&f.pass())], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(last_line(&out.stdout), "1 passed, 0 failed");
    assert!(out.stdout.contains("PASS  pass-ok"), "{}", out.stdout);
    assert_eq!(
        f.server.requests().len(),
        1,
        "each scenario runs exactly once"
    );
}

#[test]
fn a_failure_exits_1_names_the_step_and_shows_the_response_without_escape_codes() {
    let f = Fixture::new();
    let out = sonde(&[s(&f.pass()), s(&f.fail())], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(last_line(&out.stdout), "1 passed, 1 failed");
    assert!(out.stdout.contains("FAIL  fail-500"), "{}", out.stdout);
    assert!(
        out.stdout.contains("step `fetch` failed (status)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("response: HTTP/1.1 500"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("body:     internal error for /bad?token=<redacted>"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains('\x1b'),
        "escape code in {:?}",
        out.stdout
    );
    assert!(
        !out.stderr.contains('\x1b'),
        "escape code in {:?}",
        out.stderr
    );
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
    assert!(
        f.server.requests()[0].uri.contains(SECRET) || f.server.requests()[1].uri.contains(SECRET),
        "the secret did reach the server (so its absence from the output means redaction)"
    );
}

#[test]
fn a_scenario_over_its_timeout_fails_with_reason_timeout() {
    let f = Fixture::new();
    let started = std::time::Instant::now();
    let out = sonde(&[s(&f.slow())], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("FAIL  slow-timeout") && out.stdout.contains("(timeout)"),
        "{}",
        out.stdout
    );
    assert_eq!(last_line(&out.stdout), "0 passed, 1 failed");
    // Hang guard only: the 1 s scenario timeout must cut the 5 s response short.
    assert!(started.elapsed() < Duration::from_secs(4), "hang guard");
}

#[test]
fn timeout_flag_caps_the_scenario_deadline() {
    let f = Fixture::new();
    let p = f.file(
        "slow10.yaml",
        "scenario: slow-own-10s\ntimeout: 10s\nhttp: {url: \"{base}/slow\"}\n",
    );
    let started = std::time::Instant::now();
    let out = sonde(&["--timeout", "500ms", s(&p)], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("(timeout)"), "{}", out.stdout);
    assert!(started.elapsed() < Duration::from_secs(4), "hang guard");
}

#[test]
fn a_flaky_scenario_passes_on_retry_and_is_reported_flaky() {
    let f = Fixture::new();
    let dir = f.dir.path();
    let junit = dir.join("junit.xml");
    let out = sonde(
        &[
            "--retries",
            "2",
            "--junit",
            s(&junit),
            "--tap",
            s(&f.flaky()),
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        f.flaky_hits.load(Ordering::SeqCst),
        2,
        "failed once, passed once"
    );
    assert!(
        out.stdout
            .contains("ok 1 - flaky-then-ok # flaky: passed on attempt 2"),
        "{}",
        out.stdout
    );
    assert_eq!(last_line(&out.stderr), "1 passed, 0 failed");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    let case = &report.test_suites[0].test_cases[0];
    match &case.status {
        quick_junit::TestCaseStatus::Success { flaky_runs } => {
            assert_eq!(flaky_runs.len(), 1, "{xml}");
            assert_eq!(flaky_runs[0].ty.as_deref(), Some("status"), "{xml}");
        }
        other => panic!("expected success with a flaky run, got {other:?}"),
    }
}

#[test]
fn without_retries_the_flaky_scenario_fails() {
    let f = Fixture::new();
    let out = sonde(&[s(&f.flaky())], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(f.flaky_hits.load(Ordering::SeqCst), 1);
}

#[test]
fn invalid_configuration_exits_2_and_runs_nothing() {
    let f = Fixture::new();
    let bad = f.file(
        "bad.yaml",
        "scenario: bad\nintervall: 5s\nhttp: {url: \"{base}/ok\"}\n",
    );
    let out = sonde(&[s(&f.pass()), s(&bad)], &[]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("did you mean `interval`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing ran"), "{}", out.stderr);
    assert!(f.server.requests().is_empty(), "nothing may run");

    let out = sonde(&["--parallel", "0", s(&f.pass())], &[]);
    assert_eq!(out.code, Some(2), "bad usage: {}", out.stderr);
    let out = sonde(&["--tag", "nope", s(&f.pass())], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("no scenario matches --tag nope"),
        "{}",
        out.stderr
    );
    assert!(f.server.requests().is_empty(), "nothing may run");
}

#[test]
fn junit_report_has_one_suite_per_file_and_the_failure_messages() {
    let f = Fixture::new();
    let junit = f.dir.path().join("out.xml");
    let out = sonde(
        &[
            "--junit",
            s(&junit),
            s(&f.pass()),
            s(&f.fail()),
            s(&f.slow()),
        ],
        &[],
    );
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(!xml.contains(SECRET), "secret in the JUnit report");
    let report = quick_junit::Report::deserialize_from_str(&xml).expect("JUnit parses");
    assert_eq!(report.tests, 3, "{xml}");
    assert_eq!(report.failures, 2, "{xml}");
    assert_eq!(report.test_suites.len(), 3, "one testsuite per file: {xml}");
    let fail = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str().ends_with("fail.yaml"))
        .unwrap();
    assert_eq!(fail.failures, 1);
    let case = &fail.test_cases[0];
    assert_eq!(case.name.as_str(), "fail-500");
    match &case.status {
        quick_junit::TestCaseStatus::NonSuccess { message, ty, .. } => {
            assert_eq!(ty.as_deref(), Some("status"));
            let m = message.as_deref().unwrap();
            assert!(m.starts_with("step `fetch` failed (status)"), "{m}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let trace = case.system_out.as_deref().expect("trace in system-out");
    assert!(trace.contains("\"failed_step\": \"fetch\""), "{trace}");
    assert!(trace.contains("token=<redacted>"), "{trace}");
    let slow = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str().ends_with("slow.yaml"))
        .unwrap();
    match &slow.test_cases[0].status {
        quick_junit::TestCaseStatus::NonSuccess { ty, .. } => {
            assert_eq!(ty.as_deref(), Some("timeout"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_report_holds_the_summary_and_full_redacted_traces() {
    let f = Fixture::new();
    let json = f.dir.path().join("out.json");
    let out = sonde(&["--json", s(&json), s(&f.pass()), s(&f.fail())], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let text = std::fs::read_to_string(&json).unwrap();
    assert!(!text.contains(SECRET), "secret in the JSON report");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["summary"]["passed"], 1);
    assert_eq!(v["summary"]["failed"], 1);
    assert_eq!(v["summary"]["skipped"], 0);
    let sc = v["scenarios"].as_array().unwrap();
    assert_eq!(sc.len(), 2);
    assert_eq!(sc[0]["scenario"], "pass-ok");
    assert_eq!(sc[0]["verdict"], "passed");
    assert_eq!(sc[1]["verdict"], "failed");
    let run = &sc[1]["runs"][0];
    assert_eq!(run["result"], "failure");
    assert_eq!(run["failed_step"], "fetch");
    assert_eq!(run["steps"][0]["facts"]["status"], 500);
    assert!(run["steps"][0]["facts"]["final_url"]
        .as_str()
        .unwrap()
        .ends_with("token=<redacted>"));
}

#[test]
fn tap_output_is_tap_13() {
    let f = Fixture::new();
    let out = sonde(&["--tap", s(&f.pass()), s(&f.fail())], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "TAP version 13");
    assert_eq!(lines[1], "1..2");
    assert_eq!(lines[2], "ok 1 - pass-ok");
    assert_eq!(lines[3], "not ok 2 - fail-500");
    assert_eq!(lines[4], "  ---");
    assert!(
        out.stdout.contains("  step: \"fetch\"\n  reason: status\n"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(SECRET));
    assert_eq!(last_line(&out.stderr), "1 passed, 1 failed");
}

#[test]
fn selection_by_tag_and_name_glob() {
    let f = Fixture::new();
    let (p, fl, sl) = (f.pass(), f.fail(), f.slow());
    let out = sonde(
        &["--tag", "smoke", "--name", "pass-*", s(&p), s(&fl), s(&sl)],
        &[],
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(last_line(&out.stdout), "1 passed, 0 failed");
    let out = sonde(&["--name", "slow-*", "--name", "pass-*", &f.path("")], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(last_line(&out.stdout), "1 passed, 1 failed");
}

#[test]
fn fail_fast_skips_what_has_not_started() {
    let f = Fixture::new();
    let fail = f.fail();
    let mut files = vec![fail];
    for i in 0..4 {
        files.push(f.file(
            &format!("p{i}.yaml"),
            &format!("scenario: later-{i}\nhttp: {{url: \"{{base}}/ok\"}}\n"),
        ));
    }
    let mut args = vec!["--fail-fast", "--parallel", "1"];
    args.extend(files.iter().map(|p| s(p)));
    let out = sonde(&args, &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(last_line(&out.stdout), "0 passed, 1 failed, 4 skipped");
    assert_eq!(
        f.server.requests().len(),
        1,
        "only the failing scenario ran"
    );
}

#[test]
fn fail_fast_cancels_scenarios_in_flight_and_runs_their_teardown() {
    let f = Fixture::new();
    let fail = f.fail();
    let long = f.file(
        "long.yaml",
        "scenario: long-with-teardown\ntimeout: 8s\nsteps:\n  - name: wait\n    http: {url: \"{base}/slow\"}\nteardown:\n  - name: cleanup\n    http: {url: \"{base}/ok?cleanup=1\"}\n",
    );
    let started = std::time::Instant::now();
    let out = sonde(&["--fail-fast", "--parallel", "2", s(&long), s(&fail)], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(last_line(&out.stdout), "0 passed, 1 failed, 1 skipped");
    assert!(
        f.server.requests().iter().any(|r| r.uri == "/ok?cleanup=1"),
        "the cancelled scenario's teardown ran: {:?}",
        f.server.requests()
    );
    // Hang guard only: cancelled, the scenario did not wait for the 5 s response.
    assert!(started.elapsed() < Duration::from_secs(4), "hang guard");
}

#[test]
fn var_overrides_vars_and_env_file_provides_env() {
    let f = Fixture::new();
    let p = f.file(
        "vars.yaml",
        "scenario: vars\nvars: {path: bad, key: \"{{ env.SONDE_RUN_TEST_FROM_FILE }}\"}\nhttp: {url: \"{base}/{{ path }}?k={{ key }}\"}\nexpect: {status: 200}\n",
    );
    let envf = f.dir.path().join("test.env");
    std::fs::write(&envf, "SONDE_RUN_TEST_FROM_FILE=from-the-file-0042\n").unwrap();
    // Without the env file: a missing variable is a configuration error; nothing runs.
    let out = sonde(&[s(&p)], &[]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("SONDE_RUN_TEST_FROM_FILE` is not set"),
        "{}",
        out.stderr
    );
    assert!(f.server.requests().is_empty());
    // With it, the file's var points at /bad: fails.
    let out = sonde(&["--env-file", s(&envf), s(&p)], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    // --var replaces it.
    let out = sonde(&["--env-file", s(&envf), "--var", "path=ok", s(&p)], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let reqs = f.server.requests();
    assert_eq!(reqs.last().unwrap().uri, "/ok?k=from-the-file-0042");
    // A missing env file is a usage error.
    let out = sonde(&["--env-file", &f.path("nope.env"), s(&p)], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("nope.env"), "{}", out.stderr);
}

#[test]
fn verbose_lists_steps_and_quiet_hides_passes() {
    let f = Fixture::new();
    let out = sonde(&["--verbose", s(&f.pass())], &[]);
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout.contains("    ok   steps     http "),
        "{}",
        out.stdout
    );
    let out = sonde(&["--quiet", s(&f.pass()), s(&f.fail())], &[]);
    assert!(!out.stdout.contains("pass-ok"), "{}", out.stdout);
    assert!(out.stdout.contains("FAIL  fail-500"), "{}", out.stdout);
    assert_eq!(last_line(&out.stdout), "1 passed, 1 failed");
}

#[test]
fn ci_and_no_color_mean_plain_output() {
    // Off a terminal output is plain anyway; CI=true and NO_COLOR must not change that (and
    // must not break anything). The terminal case itself needs a pty, which tests do not have.
    let f = Fixture::new();
    for env in [("CI", "true"), ("NO_COLOR", "1")] {
        let out = sonde(&[s(&f.pass()), s(&f.fail())], &[env]);
        assert_eq!(out.code, Some(1));
        assert!(!out.stdout.contains('\x1b') && !out.stderr.contains('\x1b'));
        assert_eq!(last_line(&out.stdout), "1 passed, 1 failed");
    }
}

#[test]
fn a_persistent_session_runs_setup_one_round_and_teardown_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ws = rt.block_on(sonde_testkit::ws::WsServer::echo());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("im.yaml");
    std::fs::write(
        &p,
        format!(
            "scenario: im-echo\ninterval: 1s\nsession: persistent\nsetup:\n  - ws.connect: {{as: a, url: \"{}\"}}\nsteps:\n  - name: send\n    ws.send: {{on: a, json: {{op: ping, n: 1}}}}\n  - name: echo\n    ws.expect: {{on: a, match: {{json: {{\"$.op\": ping}}}}, within: 2s}}\nteardown:\n  - ws.close: {{on: a}}\n",
            ws.url("/")
        ),
    )
    .unwrap();
    let json = dir.path().join("im.json");
    let out = sonde(&["--json", s(&json), s(&p)], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(last_line(&out.stdout), "1 passed, 0 failed");
    assert_eq!(ws.upgrades(), 1, "one connection: setup ran once");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let stages: Vec<(&str, &str)> = v["scenarios"][0]["runs"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stages,
        [
            ("setup", "ws.connect"),
            ("steps", "ws.send"),
            ("steps", "ws.expect"),
            ("teardown", "ws.close")
        ],
        "setup, one round of steps (interval ignored), teardown"
    );
}
