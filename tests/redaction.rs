//! Secrets stay secret in every output (issue 17, finding 7): URL userinfo and credential-looking
//! query parameters wherever a URL is shown, and values a template derives from a secret
//! (`urlencode`, `upper`, `sha256` of a concatenation) in traces. The real binary, real
//! outputs: `/`, `/config`, `/api/v1/scenarios`, `/probe?debug=true`, the log, and every
//! `sonde run` report. Every target is an in-process server on loopback.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sonde_testkit::http::{HttpServer, Reply, Routes};
use sonde_testkit::process::Serve;

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");

const CFG_PASS: &str = "cfgpass-7731";
const CFG_TOK: &str = "cfgtok-5512";
const TARGET_KEY: &str = "tgtkey-8820";
const REDIR_SIG: &str = "redirsig-4410";
const ENV_NAME: &str = "SONDE_REDACT_TEST_SECRET";
const ENV_SECRET: &str = "p@ss/w0rd+env";
const RW_PASS: &str = "rwpass-6601";
const RW_TOK: &str = "rwtok-9934";
const BB_PASS: &str = "bbpass-2207";
const BB_TOK: &str = "bbtok-3318";
const HOOK_PASS: &str = "hookpass-1190";
const HOOK_TOK: &str = "hooktok-4471";
const LINK_TOK: &str = "linktok-5058";

use sonde_testkit::runtime;

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every secret of these tests, and every form a template derives from the env one.
fn secrets() -> Vec<String> {
    let mut v: Vec<String> = [
        CFG_PASS, CFG_TOK, TARGET_KEY, REDIR_SIG, ENV_SECRET, RW_PASS, RW_TOK, BB_PASS, BB_TOK,
        HOOK_PASS, HOOK_TOK, LINK_TOK,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(urlencode(ENV_SECRET));
    v.push(urlencode(&ENV_SECRET.to_uppercase()));
    v.push(ENV_SECRET.to_uppercase());
    v.push(sha256_hex(&format!("{ENV_SECRET}salt")));
    v
}

#[track_caller]
fn assert_hidden(what: &str, text: &str) {
    for s in secrets() {
        assert!(!text.contains(&s), "{what} shows the secret {s:?}:\n{text}");
    }
}

/// A target: `/start` redirects to `/final?sig=…`, which answers 200.
async fn target() -> HttpServer {
    HttpServer::start(
        Routes::new()
            .at(
                "/start",
                Reply::redirect(302, &format!("/final?sig={REDIR_SIG}&n=1")),
            )
            .at(
                "/final",
                Reply::text(200, "ok").header("Link", &format!("</next?token={LINK_TOK}>")),
            ),
    )
    .await
}

/// The scenario: a literal `api_key` in the URL, an env secret through `urlencode` and
/// `upper | urlencode` in parameters with harmless names, a digest of a concatenation and an
/// `upper` in headers. `expect` decides whether it passes.
fn scenario(target: &HttpServer, expect: &str) -> String {
    format!(
        "scenario: redact\ninterval: 1s\ntimeout: 900ms\nhttp:\n  url: \"{base}?api_key={TARGET_KEY}&q={{{{ env.{ENV_NAME} | urlencode }}}}&u={{{{ env.{ENV_NAME} | upper | urlencode }}}}\"\n  headers: {{X-Digest: \"{{{{ (env.{ENV_NAME} ~ 'salt') | sha256 }}}}\", X-Upper: \"{{{{ env.{ENV_NAME} | upper }}}}\"}}\nexpect: {expect}\n",
        // `/./` is normalised away before sending: the trace's URL is not the rendered string.
        base = target.url("/./start"),
    )
}

fn wait_for(what: &str, s: &Serve, mut f: impl FnMut() -> bool) {
    // Hang guard only.
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} did not happen; log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `sonde serve` whose scenario comes from a `-c` URL with userinfo and an
/// `access_token`, whose agent settings push remote_write to a closed port through a URL with a
/// password and a `?token=`. Each test of a page starts its own.
struct Served {
    s: Serve,
    target: HttpServer,
    _cfg: HttpServer,
    _rt: tokio::runtime::Runtime,
}

fn served() -> Served {
    let rt = runtime();
    let target = rt.block_on(target());
    let body = scenario(&target, "{status: 200}");
    let cfg = rt.block_on(HttpServer::start(
        Routes::new().at("/sonde.yaml", Reply::text(200, body)),
    ));
    let cfg_url = format!(
        "http://cfguser:{CFG_PASS}@{}/sonde.yaml?access_token={CFG_TOK}",
        cfg.addr()
    );
    // remote_write to a closed port: its URL at INFO, and a failed push logged per retry.
    let agent = format!(
        "agent:\n  remote_write:\n    url: \"http://rwuser:{RW_PASS}@127.0.0.1:1/write?token={RW_TOK}\"\n    send_interval: 100ms\n"
    );
    let s = Serve::command(SONDE)
        .config_yaml("agent.yaml", &agent)
        .arg("-c")
        .arg(&cfg_url)
        // A configuration from a URL sees only the environment variables allowed to it.
        .arg("--config.remote-env")
        .arg(ENV_NAME)
        .env(ENV_NAME, ENV_SECRET)
        .start();
    s.wait_runs("redact", 0);
    Served {
        s,
        target,
        _cfg: cfg,
        _rt: rt,
    }
}

#[test]
fn the_index_page_hides_the_config_url_credentials() {
    let t = served();
    let index = t.s.get("/").body;
    assert!(index.contains("sonde.yaml"), "{index}");
    assert_hidden("/", &index);
}

#[test]
fn the_config_page_hides_url_credentials_and_credential_parameters() {
    let t = served();
    let config = t.s.get("/config").body;
    assert!(config.contains("access_token=<redacted>"), "{config}");
    assert!(config.contains("api_key=<redacted>"), "{config}");
    assert_hidden("/config", &config);
}

#[test]
fn the_api_trace_hides_credential_parameters_in_final_url_and_hops() {
    let t = served();
    let list = t.s.get("/api/v1/scenarios").body;
    assert_hidden("/api/v1/scenarios", &list);
    let one = t.s.scenario("redact");
    let trace = one.to_string();
    assert_eq!(one["last_run"]["result"], "success", "{trace}");
    let http = &one["last_run"]["steps"][0]["facts"];
    let final_url = http["final_url"].as_str().unwrap();
    assert!(
        final_url.ends_with("/final?sig=<redacted>&n=1"),
        "{final_url}"
    );
    assert_hidden("/api/v1/scenarios/redact", &trace);
}

#[test]
fn the_api_trace_hides_values_a_template_derived_from_a_secret() {
    let t = served();
    let trace = t.s.scenario("redact").to_string();
    for derived in [
        ENV_SECRET.to_uppercase(),
        urlencode(ENV_SECRET),
        urlencode(&ENV_SECRET.to_uppercase()),
        sha256_hex(&format!("{ENV_SECRET}salt")),
    ] {
        assert!(
            !trace.contains(&derived),
            "the trace shows {derived}:\n{trace}"
        );
    }
    // The URL's host and path stay readable; the derived values do not (two secrets in one
    // string: from the first to the last, `&u=` included).
    assert!(
        trace.contains(&format!(
            "{}?api_key=<redacted>&q=<redacted>\"",
            t.target.url("/start")
        )),
        "{trace}"
    );
}

#[test]
fn probe_debug_hides_target_credentials_and_a_signed_redirect() {
    let t = served();
    // A target with userinfo and a token, redirected to a signed URL.
    let probe_target = format!(
        "http://bbuser:{BB_PASS}@{}/start?token={BB_TOK}",
        t.target.addr()
    );
    let debug =
        t.s.get(&format!(
            "/probe?module=http_2xx&target={}&debug=true",
            urlencode(&probe_target)
        ))
        .body;
    assert!(debug.contains("Logs for the probe:"), "{debug}");
    assert!(debug.contains("token=<redacted>"), "{debug}");
    assert_hidden("/probe?debug=true", &debug);
}

#[test]
fn the_log_hides_config_and_remote_write_url_credentials() {
    let t = served();
    wait_for("a failed remote_write push", &t.s, || {
        t.s.log()
            .contains("remote_write: the receiver does not take pushes")
    });
    let log = t.s.log();
    assert!(log.contains("remote_write: pushing"), "{log}");
    assert_hidden("the log", &log);
}

fn sonde_run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(SONDE)
        .arg("run")
        .args(args)
        .env(ENV_NAME, ENV_SECRET)
        .env_remove("NO_COLOR")
        .env_remove("CI")
        .output()
        .expect("run sonde");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// `sonde run` of the scenario, failing (on `expect`) so every report shows the step in
/// detail: (stdout of the human report, JSON, JUnit).
fn run_reports(expect: &str, extra: &[&str]) -> (String, String, String) {
    let rt = runtime();
    let target = rt.block_on(target());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redact.yaml");
    std::fs::write(&file, scenario(&target, expect)).unwrap();
    let (json, junit) = (dir.path().join("r.json"), dir.path().join("r.xml"));
    let mut args = vec![
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ];
    args.extend(extra);
    args.push(file.to_str().unwrap());
    let (code, stdout, stderr) = sonde_run(&args);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_hidden("sonde run's stderr", &stderr);
    (stdout, read(&json), read(&junit))
}

#[test]
fn the_human_report_shows_no_secret() {
    let (human, _, _) = run_reports("{status: 201}", &[]);
    assert!(human.contains("redact"), "{human}");
    assert_hidden("the human report", &human);
}

#[test]
fn the_json_report_shows_no_secret() {
    let (_, json, _) = run_reports("{status: 201}", &[]);
    assert!(json.contains("final?sig=<redacted>"), "{json}");
    assert_hidden("the JSON report", &json);
}

#[test]
fn the_junit_report_shows_no_secret() {
    let (_, _, junit) = run_reports("{status: 201}", &[]);
    assert!(junit.contains("<testcase"), "{junit}");
    assert_hidden("the JUnit report", &junit);
}

#[test]
fn the_tap_report_shows_no_secret() {
    // The failure message itself quotes a header whose value holds a token.
    let (tap, _, _) = run_reports("{headers: {Link: {matches: '^nope$'}}}", &["--tap"]);
    assert!(tap.contains("token=<redacted>"), "{tap}");
    assert!(tap.contains("not ok 1"), "{tap}");
    assert_hidden("the TAP report", &tap);
}

#[test]
fn config_errors_do_not_echo_the_credentials_of_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let rw = dir.path().join("rw.yaml");
    std::fs::write(
        &rw,
        format!("agent:\n  remote_write:\n    url: \"ftp://rwuser:{RW_PASS}@127.0.0.1/w?token={RW_TOK}\"\n"),
    )
    .unwrap();
    let hook = dir.path().join("hook.yaml");
    std::fs::write(
        &hook,
        format!("agent:\n  alerting:\n    notifiers:\n      ops: {{type: webhook, url: \"ftp://hook:{BB_PASS}@127.0.0.1/h?token={BB_TOK}\"}}\n"),
    )
    .unwrap();
    for f in [&rw, &hook] {
        let out = Command::new(SONDE)
            .args(["check", f.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        // remote_write's error shows the URL redacted; a notifier's does not quote it at all.
        assert!(
            stderr.contains("<redacted>") || stderr.contains("notifier `ops`: invalid `url`"),
            "{stderr}"
        );
        assert_hidden("sonde check", &stderr);
    }
}

#[test]
fn a_bad_config_url_is_refused_without_its_password() {
    let out = Command::new(SONDE)
        .args([
            "serve",
            "-c",
            &format!("http://u:{CFG_PASS}@127.0.0.1:1/x.yaml#token={CFG_TOK}"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("fragment"), "{stderr}");
    assert_hidden("serve's usage error", &stderr);
}

#[test]
fn a_notifier_error_shows_neither_its_url_credentials_nor_an_echoed_token() {
    let rt = runtime();
    let (target, hook) = rt.block_on(async {
        (
            HttpServer::start(Routes::new().at("/health", Reply::text(500, "broken"))).await,
            // A receiver that quotes the URL it was called with in its refusal.
            HttpServer::start(Routes::new().at(
                "/hook",
                Reply::text(400, format!("bad request to /hook?token={HOOK_TOK}")),
            ))
            .await,
        )
    });
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      ops: {{type: webhook, url: \"http://hook:{HOOK_PASS}@{}/hook?token={HOOK_TOK}\"}}\n",
        hook.addr()
    );
    let scenario = format!(
        "scenario: shop\ninterval: 200ms\ntimeout: 150ms\nhttp: {{url: \"{}\"}}\nalert: {{after: 1, severity: page, notify: [ops]}}\n",
        target.url("/health")
    );
    let s = Serve::command(SONDE)
        .config_yaml("agent.yaml", &agent)
        .config_yaml("shop.yaml", &scenario)
        .start();
    wait_for("the refused notification", &s, || {
        s.log().contains("alert notification refused")
    });
    assert!(!hook.requests().is_empty());
    let log = s.log();
    assert!(log.contains("token=<redacted>"), "{log}");
    assert_hidden("the log", &log);
    assert_hidden("/config", &s.get("/config").body);
}
