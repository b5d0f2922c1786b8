//! `sonde serve` and `sonde check` as a user runs them: the real binary, real files, real
//! signals, endpoints read over HTTP. Fixture targets are in-process servers on loopback.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sonde_testkit::client;
use sonde_testkit::http::{HttpServer, Reply, Routes};
use sonde_testkit::process::{free_addr, Serve};

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");

use sonde_testkit::runtime;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn sonde(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(SONDE).args(args).output().expect("run sonde");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_every_error_of_every_file_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("a.yaml"),
        "scenario: a\nintervall: 10s\nhttp: {url: \"http://127.0.0.1:1/\"}\n",
    );
    write(
        &dir.path().join("b.yaml"),
        "scenario: b\ntimeout: 5 parsecs\ntcp: {target: \"127.0.0.1:1\"}\n",
    );
    let (code, stdout, stderr) = sonde(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(2), "stdout: {stdout}\nstderr: {stderr}");
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    assert!(
        stderr.contains(&format!(
            "{}:2:1: unknown key `intervall` — did you mean `interval`?",
            a.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:2:10: invalid duration", b.display())),
        "{stderr}"
    );
    assert!(
        stderr.trim_end().ends_with("2 errors in 2 files"),
        "{stderr}"
    );

    // The same files, fixed, pass.
    write(
        &dir.path().join("a.yaml"),
        "scenario: a\ninterval: 10s\nhttp: {url: \"http://127.0.0.1:1/\"}\n",
    );
    write(
        &dir.path().join("b.yaml"),
        "scenario: b\ntimeout: 5s\ntcp: {target: \"127.0.0.1:1\"}\n",
    );
    let (code, stdout, stderr) = sonde(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "ok: 2 scenarios in 2 files");
}

#[test]
fn serve_refuses_to_start_on_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    write(&f, "scenario: x\nsteps: []\n");
    let (code, _, stderr) = sonde(&[
        "serve",
        "-c",
        f.to_str().unwrap(),
        "--listen",
        &free_addr().to_string(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2:8: ", f.display())),
        "{stderr}"
    );
    assert!(stderr.contains("refusing to start"), "{stderr}");
}

#[test]
fn version_names_the_program() {
    let (code, stdout, _) = sonde(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("sonde "), "{stdout}");
}

#[test]
fn serve_probes_and_exposes_metrics_api_and_redacted_config() {
    let rt = runtime();
    let web = rt.block_on(HttpServer::start(
        Routes::new()
            .at("/ok", Reply::text(200, "all good"))
            .at("/down", Reply::text(503, "nope")),
    ));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sonde.yaml");
    write(
        &f,
        &format!(
            r#"scenarios:
  - scenario: web
    interval: 1s
    labels: {{team: payments}}
    http:
      url: "{ok}"
      basic_auth: {{username: probe, password: hunter2}}
    expect:
      status: 200
      body: {{contains: good}}
  - scenario: down
    interval: 1s
    http: {{url: "{down}"}}
  - scenario: keyed
    interval: 1s
    http:
      url: "{ok}?key={{{{ env.SONDE_TEST_API_KEY }}}}"
      headers: {{X-Api-Key: "{{{{ env.SONDE_TEST_API_KEY }}}}"}}
"#,
            ok = web.url("/ok"),
            down = web.url("/down"),
        ),
    );
    let s = Serve::command(SONDE)
        .config(&f)
        .region("eu-west")
        .env("SONDE_TEST_API_KEY", "k3y-from-env-7781")
        .start();
    let web_doc = s.wait_runs("web", 0);
    let down_doc = s.wait_runs("down", 0);

    assert_eq!(web_doc["status"], "passing", "{web_doc:#}");
    let step = &web_doc["last_run"]["steps"][0];
    assert_eq!(step["name"], "http");
    assert_eq!(step["facts"]["status"], 200);
    assert!(
        step["timings"]["connect"].as_f64().unwrap() > 0.0,
        "{step:#}"
    );
    assert_eq!(down_doc["status"], "failing");
    assert_eq!(down_doc["last_run"]["failed_step"], "http");
    assert_eq!(
        down_doc["last_run"]["steps"][0]["failure"]["reason"],
        "status"
    );
    assert_eq!(
        down_doc["last_run"]["steps"][0]["failure"]["message"],
        "status 503 — expected 2xx"
    );
    // The recent past beside the last run (issue 12): runs in brief, newest first, and the
    // last failure in full; a per-run scenario has no session fields.
    let brief = &down_doc["recent_runs"][0];
    assert_eq!(brief["result"], "failure", "{down_doc:#}");
    assert_eq!(brief["kind"], "run");
    assert_eq!(brief["failed_step"], "http");
    assert_eq!(brief["reason"], "status");
    assert_eq!(brief["message"], "status 503 — expected 2xx");
    assert_eq!(down_doc["last_failure"]["failed_step"], "http");
    assert!(down_doc.get("session_events").is_none(), "{down_doc:#}");
    assert_eq!(web_doc["recent_runs"][0]["result"], "success");
    assert!(web_doc["recent_runs"][0].get("message").is_none());
    assert!(web_doc["last_failure"].is_null());

    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    // No Accept header: the classic text format (OpenMetrics only when asked for, as
    // client_golang does); the interop suite checks both with promtool.
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        r#"sonde_scenario_success{scenario="web",region="eu-west",team="payments"} 1"#,
        r#"sonde_scenario_success{scenario="down",region="eu-west"} 0"#,
        r#"sonde_step_failures_total{scenario="down",region="eu-west",step="http",reason="status"} "#,
        r#"sonde_config_last_reload_successful 1"#,
        r#"sonde_build_info{version=""#,
        // client_golang's process family, which stock exporter dashboards and alerts read.
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ",
        "\nprocess_open_fds ",
        "\nprocess_max_fds ",
        "\nprocess_resident_memory_bytes ",
        "\nprocess_virtual_memory_bytes ",
        "\nprocess_start_time_seconds ",
    ] {
        assert!(m.body.contains(line), "missing {line:?} in:\n{}", m.body);
    }
    let build = m
        .body
        .lines()
        .find(|l| l.starts_with("sonde_build_info{"))
        .unwrap();
    for label in ["revision=\"", "rustc_version=\"1."] {
        assert!(build.contains(label), "{label} missing: {build}");
    }

    let list = s.get("/api/v1/scenarios").json();
    assert_eq!(list["region"], "eu-west");
    assert_eq!(list["scenarios"].as_array().unwrap().len(), 3);

    // A secret from the environment reached the target (it is what the probe must send) but
    // no output of sonde: not the trace's URL, headers or events, not /config.
    let keyed = s.wait_runs("keyed", 0);
    assert_eq!(keyed["status"], "passing", "{keyed:#}");
    let seen = web.requests();
    assert!(seen
        .iter()
        .any(|r| r.header("x-api-key") == Some("k3y-from-env-7781")));
    let trace = s.get("/api/v1/scenarios/keyed").body;
    assert!(
        !trace.contains("k3y-from-env-7781"),
        "secret in the trace:\n{trace}"
    );
    assert!(trace.contains("<redacted>"), "{trace}");
    assert_eq!(s.get("/api/v1/scenarios/nope").status, 404);

    let cfg = s.get("/config");
    assert_eq!(cfg.status, 200);
    assert!(cfg.body.contains("scenario: web"), "{}", cfg.body);
    assert!(
        !cfg.body.contains("hunter2"),
        "secret leaked:\n{}",
        cfg.body
    );
    assert!(cfg.body.contains("<redacted>"), "{}", cfg.body);
    // Nor in the trace.
    assert!(!s.get("/api/v1/scenarios/web").body.contains("hunter2"));

    assert_eq!(s.get("/-/healthy").status, 200);
    let index = s.get("/");
    assert!(index.body.contains("/scenario/web"), "{}", index.body);
    assert!(!index.body.contains("hunter2"), "secret on the status page");
    let page = s.get("/scenario/web");
    assert!(page.body.contains("/api/v1/scenarios/web"), "{}", page.body);
    assert!(
        !page.body.contains("hunter2"),
        "secret on the scenario page"
    );
}

#[test]
fn a_broken_reload_keeps_the_running_config_and_a_good_one_keeps_unchanged_state() {
    let rt = runtime();
    let web = rt.block_on(HttpServer::start(
        Routes::new().at("/ok", Reply::text(200, "ok")),
    ));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sonde.yaml");
    let scenario = |name: &str| {
        format!(
            "  - scenario: {name}\n    interval: 1s\n    http: {{url: \"{}\"}}\n",
            web.url("/ok")
        )
    };
    write(
        &f,
        &format!("scenarios:\n{}{}", scenario("a"), scenario("b")),
    );
    let s = Serve::command(SONDE).config(&f).start();
    s.wait_runs("a", 0);
    s.wait_runs("b", 0);

    // Break the file: the reload is refused, with the error located, and nothing changes.
    write(&f, &format!("scenarios:\n{}    bogus: 1\n", scenario("a")));
    let r = client::post(s.addr(), "/-/reload", "").unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("{}:5:5: unknown key `bogus`", f.display())),
        "{}",
        r.body
    );
    assert!(s
        .get("/metrics")
        .body
        .contains("sonde_config_last_reload_successful 0"));
    let a_runs = s.scenario("a")["runs"].as_u64().unwrap();
    s.wait_runs("a", a_runs); // still running
    s.wait_runs("b", s.scenario("b")["runs"].as_u64().unwrap()); // b too: old config intact

    // A good file (a unchanged, b gone, c new) through SIGHUP. Once the swap is visible (b
    // gone), a's run counter must carry on: a fresh state would read 0.
    write(
        &f,
        &format!("scenarios:\n{}{}", scenario("a"), scenario("c")),
    );
    s.wait_runs("a", 3);
    let a_before = s.scenario("a")["runs"].as_u64().unwrap();
    s.signal(libc::SIGHUP);
    let guard = Instant::now() + Duration::from_secs(20);
    while s.get("/api/v1/scenarios/b").status != 404 {
        assert!(
            Instant::now() < guard,
            "hang guard: SIGHUP reload never applied"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let a_after = s.scenario("a")["runs"].as_u64().unwrap();
    assert!(
        a_after >= a_before,
        "a's state was reset by the reload ({a_before} runs before, {a_after} after)"
    );
    s.wait_runs("c", 0);
    let m = s.get("/metrics").body;
    assert!(m.contains("sonde_config_last_reload_successful 1"), "{m}");
    assert!(
        !m.contains(r#"scenario="b""#),
        "removed scenario still exported:\n{m}"
    );
}

#[test]
fn sigterm_lets_the_run_in_flight_finish_then_exits_0() {
    let rt = runtime();
    // Answers after 1.5 s with a status the scenario does not accept, so the run's end is
    // logged as a failure — the log line proves the run finished before sonde exited.
    let web = rt.block_on(HttpServer::start(Routes::new().at(
        "/slow",
        Reply::text(200, "late").delay(Duration::from_millis(1500)),
    )));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sonde.yaml");
    write(
        &f,
        &format!(
            "scenario: slow\ninterval: 3s\ntimeout: 3s\nhttp: {{url: \"{}\"}}\nexpect: {{status: 201}}\n",
            web.url("/slow")
        ),
    );
    let s = Serve::command(SONDE).config(&f).log_level("debug").start();
    let guard = Instant::now() + Duration::from_secs(20);
    while web.requests().is_empty() {
        assert!(Instant::now() < guard, "hang guard: the scenario never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.signal(libc::SIGTERM);
    let (code, stderr) = s.wait_exit();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("waiting for runs in flight"), "{stderr}");
    assert!(
        stderr.contains("run failed") && stderr.contains("status 200 — expected 201"),
        "the in-flight run did not finish before exit:\n{stderr}"
    );
}

#[test]
fn sigterm_stops_scheduling_at_once_even_while_a_client_holds_a_connection() {
    let rt = runtime();
    let target = rt.block_on(HttpServer::start(Routes::new()));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sonde.yaml");
    write(
        &f,
        &format!(
            "scenario: tick\ninterval: 200ms\ntimeout: 200ms\ntcp: {{target: \"{}\"}}\n",
            target.addr()
        ),
    );
    let s = Serve::command(SONDE).config(&f).start();
    s.wait_runs("tick", 1);
    // A client that never finishes its request keeps its connection open through the web
    // server's graceful shutdown.
    let mut stuck = std::net::TcpStream::connect(s.addr()).unwrap();
    std::io::Write::write_all(&mut stuck, b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let at_signal = target.connections();
    s.signal(libc::SIGTERM);
    let (code, stderr) = s.wait_exit();
    assert_eq!(code, Some(0), "{stderr}");
    // At most the run in flight at the signal (and one more, if the signal arrived just after
    // a tick on a loaded machine) reached the target afterwards, not one every 200 ms.
    let after = target.connections();
    assert!(
        after <= at_signal + 2,
        "{} runs started after SIGTERM:\n{stderr}",
        after - at_signal
    );
    drop(stuck);
}

#[test]
fn builtin_config_probes_the_port_actually_bound() {
    // No -c and no ./sonde.yaml: the built-in self-check. With `--listen 127.0.0.1:0` the OS
    // picks the port, and the self-check must probe that port, not port 0.
    let empty = tempfile::tempdir().unwrap();
    let s = Serve::command(SONDE)
        .current_dir(empty.path())
        .listen("127.0.0.1:0".parse().unwrap())
        .start();
    let port = s.addr().port();
    assert_ne!(port, 0);

    let cfg = s.get("/config").body;
    assert!(
        cfg.contains(&format!("http://127.0.0.1:{port}/-/healthy")),
        "the built-in config does not probe the bound port {port}:\n{cfg}"
    );
    let mut expected = vec!["sonde-self-http", "sonde-self-tcp"];
    match sonde_probes::icmp::permission_check() {
        Ok(()) => expected.push("sonde-self-icmp"),
        Err(why) => eprintln!(
            "SKIPPED: builtin_config_probes_the_port_actually_bound — sonde-self-icmp not \
             checked, no permission to send ICMP echo here: {why}"
        ),
    }
    let list = s.get("/api/v1/scenarios").json();
    let mut names: Vec<&str> = list["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sc| sc["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected, "{list:#}");

    for name in expected {
        let doc = s.wait_runs(name, 0);
        assert_eq!(
            doc["status"],
            "passing",
            "{name}: {doc:#}\nlog:\n{}",
            s.log()
        );
    }
}

#[test]
fn scenario_names_with_a_slash_have_an_api_page_and_a_working_link() {
    let rt = runtime();
    let web = rt.block_on(HttpServer::start(
        Routes::new().at("/ok", Reply::text(200, "ok")),
    ));
    let s = Serve::command(SONDE)
        .config_yaml(
            "sonde.yaml",
            &format!(
                "scenario: team/checkout\ninterval: 1s\nhttp: {{url: \"{}\"}}\n",
                web.url("/ok")
            ),
        )
        .start();
    let doc = s.wait_runs("team/checkout", 0);
    assert_eq!(doc["name"], "team/checkout");
    assert_eq!(doc["status"], "passing");
    // The status page links to the scenario's page, which links to the same JSON.
    let index = s.get("/").body;
    assert!(
        index.contains("href=\"/scenario/team/checkout\""),
        "{index}"
    );
    let page = s.get("/scenario/team/checkout").body;
    assert!(
        page.contains("href=\"/api/v1/scenarios/team/checkout\""),
        "{page}"
    );
}

/// A persistent session that the server kicks (close 4001 "kicked") during every run: the
/// API keeps the last break with its close code and the run that reported it, and the session's
/// events; the log says so at INFO, the failing once (issue 12, defects 3 and 4).
#[test]
fn a_kicked_session_shows_its_break_and_events_in_the_api_and_the_log() {
    let rt = runtime();
    let ws = rt.block_on(sonde_testkit::ws::WsServer::start(Default::default()));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kicked.yaml");
    write(
        &f,
        &format!(
            r#"scenario: kicked
interval: 500ms
timeout: 400ms
session: persistent
setup:
  - name: connect
    ws.connect: {{as: c, url: "{}"}}
steps:
  - name: kick-me
    ws.send: {{on: c, text: "!close 4001 kicked"}}
  - name: wait
    ws.expect: {{on: c, match: {{equals: never}}, within: 300ms}}
"#,
            ws.url("/")
        ),
    );
    let s = Serve::command(SONDE).config(&f).log_level("info").start();
    let doc = s.wait_runs("kicked", 2);
    let brk = &doc["last_break"];
    let reason = brk["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("4001") && reason.contains("kicked"),
        "{doc:#}"
    );
    assert_eq!(brk["run"]["failed_step"], "wait", "{doc:#}");
    let events: Vec<&str> = doc["session_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for want in ["connected", "broken", "reconnected"] {
        assert!(events.contains(&want), "{want} missing: {events:?}");
    }
    let log = s.log();
    assert_eq!(log.matches("scenario failing").count(), 1, "{log}");
    assert!(log.contains("session broken"), "{log}");
    assert!(log.contains("session reconnected"), "{log}");
}
