//! Multi-step scenarios end to end, from YAML alone, against in-process fixtures: the IM pair in
//! a persistent session (chat server), an XMPP-over-WebSocket login, an HTTP login → token →
//! long-poll with retry, `not:` expectations, captures that find nothing, undefined variables,
//! and secrets in every output.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sonde::config::scenario::Scenario;
use sonde::config::{load_str, LoadOptions};
use sonde::engine::{self, Stage};
use sonde::metrics::{Format, Metrics, RunMetrics};
use sonde::runtime::scheduler::Scheduler;
use sonde::runtime::session::Session;
use sonde_testkit::http::{HttpServer, Reply, Routes};
use sonde_testkit::xmpp::{XmppOptions, XmppServer};
use tokio::time::Instant;

#[allow(dead_code)]
#[path = "../examples/chat_server.rs"]
mod chat_server;

use chat_server::{ChatHandle, ChatOptions};

const IM_YAML: &str = include_str!("../scenarios/im-login-send-receive.yaml");

async fn chat(noise: Option<Duration>) -> ChatHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    chat_server::start(
        listener,
        ChatOptions {
            noise_interval: noise,
            ..ChatOptions::default()
        },
    )
}

fn load_one(yaml: &str) -> Arc<Scenario> {
    let cfg = load_str("t.yaml", yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("invalid: {e:?}"));
    cfg.scenarios[0].clone()
}

/// The shipped IM scenario, pointed at the in-process server.
fn im_scenario(server: &ChatHandle, interval: &str) -> Arc<Scenario> {
    let yaml = IM_YAML
        .replace("ws://127.0.0.1:9300/chat", &server.url())
        .replace("interval: 10s", &format!("interval: {interval}"))
        .replace("timeout: 5s", "timeout: 1s");
    load_one(&yaml)
}

/// Hang guard: polls `f` every 20 ms, panics after 20 s.
async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let guard = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            Instant::now() < guard,
            "hang guard: still waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn im_pair_round_trip_in_a_persistent_session_skips_noise() {
    let server = chat(Some(Duration::from_millis(20))).await;
    let sc = im_scenario(&server, "10s");
    let mut session = Session::default();
    for run in 0..3 {
        let (_, r) = session.run(&sc).await;
        assert!(r.success(), "run {run}: {:#}", r.to_json(&sc));
        let setup_ran = r.steps.iter().any(|s| s.stage == Stage::Setup);
        // Setup once per connection life: only the first run logs in.
        assert_eq!(setup_ran, run == 0, "run {run}");
        let deliver = r.steps.iter().find(|s| s.name == "deliver").unwrap();
        let facts = serde_json::to_value(&deliver.facts).unwrap();
        // bob gets a typing frame before every message: at least that one was skipped.
        assert!(facts["skipped_count"].as_u64().unwrap() >= 1, "{facts}");
        assert!(facts["matched"]
            .as_str()
            .unwrap()
            .contains("\"op\":\"message\""));
        // expect.json on the matched frame, listed in the trace.
        assert_eq!(deliver.checks.len(), 1);
        assert!(deliver.checks[0].passed, "{:?}", deliver.checks);
        assert_eq!(deliver.checks[0].what, "$.text in the frame");
        assert_eq!(server.logged_in(), 2);
    }
    // The login tokens are HMACs of the chat secret: secrets themselves.
    let token = chat_server::token_for(chat_server::DEFAULT_SECRET, "alice");
    assert!(sc.secrets.contains(&token));
    assert_eq!(server.delivered(), 3);
    session.end(&sc).await;
    wait_until("teardown to close both connections", || {
        server.connections() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_fails_a_run_then_reconnects_and_counts_it() {
    let server = chat(None).await;
    let sc = im_scenario(&server, "1s");
    let cfg = sonde::config::scenario::Config {
        scenarios: vec![sc.clone()],
        sources: vec![],
        agent: Default::default(),
    };
    let metrics = Metrics::new();
    let sched = Scheduler::new(RunMetrics::alone(metrics.clone(), None), None, 16);
    sched.apply(&cfg);
    let st = sched.state(&sc.name).unwrap();
    let text = || String::from_utf8(metrics.encode(Format::PrometheusText).concat()).unwrap();
    wait_until("a first successful run", || {
        st.last_success_ms.load(Ordering::Relaxed) > 0
    })
    .await;
    assert!(text().contains("sonde_session_connected{scenario=\"im-login-send-receive\"} 1"));
    let failures_before = st.failures.load(Ordering::Relaxed);
    server.kick_all();
    wait_until("the break to fail a run", || {
        st.failures.load(Ordering::Relaxed) > failures_before
    })
    .await;
    let failed = st.last().unwrap();
    let msg = failed.failure().unwrap().message.clone();
    assert!(msg.contains("connection `"), "{msg}");
    wait_until("a reconnect", || {
        text().contains("sonde_session_reconnects_total{scenario=\"im-login-send-receive\"} 1")
    })
    .await;
    let ok_after = st.runs.load(Ordering::Relaxed);
    wait_until("a successful run after the reconnect", || {
        st.runs.load(Ordering::Relaxed) > ok_after && st.last().unwrap().success()
    })
    .await;
    assert!(text().contains("sonde_session_connected{scenario=\"im-login-send-receive\"} 1"));
    assert!(text().contains("sonde_session_connection_age_seconds{"));
    sched.shutdown().await;
    wait_until("shutdown to close the session", || {
        server.connections() == 0
    })
    .await;
}

#[tokio::test]
async fn xmpp_login_needs_a_subprotocol_a_base64_credential_and_several_rounds() {
    // As `sonde` does at start-up (exit::runtime): the kernel stamps packets before the first
    // probe, so the first message's receive is stamped even when the switch is slow to flip.
    sonde_probes::kts::warm_up();
    let xmpp = XmppServer::start(XmppOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "s3cret\n").unwrap();
    let open = r#"<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" to=\"sonde.test\" version=\"1.0\"/>"#;
    let yaml = format!(
        r#"scenario: xmpp
vars:
  password: "{{{{ file('password') }}}}"
steps:
  - ws.connect: {{as: x, url: "{url}", subprotocols: [xmpp]}}
  - ws.send: {{on: x, text: "{open}"}}
  - ws.expect: {{on: x, match: {{contains: "<mechanism>PLAIN</mechanism>"}}, within: 2s}}
  - ws.send: {{on: x, text: "<auth xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\" mechanism=\"PLAIN\">{{{{ base64('\u0000probe\u0000' ~ password) }}}}</auth>"}}
  - ws.expect: {{on: x, match: {{regex: "^<success"}}, within: 2s}}
  - ws.send: {{on: x, text: "{open}"}}
  - ws.expect: {{on: x, match: {{contains: "urn:ietf:params:xml:ns:xmpp-bind"}}, within: 2s}}
  - ws.send: {{on: x, text: "<iq type=\"set\" id=\"b1\"><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"><resource>probe</resource></bind></iq>"}}
  - ws.expect: {{on: x, match: {{regex: "<jid>(.+)</jid>"}}, within: 2s, capture: {{jid: {{regex: "<jid>(.+)</jid>"}}}}}}
  - ws.send: {{on: x, text: "<message to=\"echo@sonde.test\" id=\"m1\"><body>hi {{{{ jid }}}}</body></message>"}}
  - name: echo
    ws.expect: {{on: x, match: {{contains: "<body>hi probe@sonde.test/probe</body>"}}, within: 2s}}
  - ws.close: {{on: x}}
"#,
        url = xmpp.url()
    );
    let path = dir.path().join("xmpp.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cfg = sonde::config::load_paths(&[path], &LoadOptions::default()).unwrap();
    let sc = &cfg.scenarios[0];
    let r = engine::run(sc).await;
    let trace = r.to_json(sc).to_string();
    assert!(r.success(), "{trace}");
    assert_eq!(xmpp.logins(), 1);
    let echo = r.steps.iter().find(|s| s.name == "echo").unwrap();
    let facts = serde_json::to_value(&echo.facts).unwrap();
    assert!(
        facts["skipped_count"].as_u64().unwrap() >= 1,
        "presence noise skipped: {facts}"
    );
    // Send-to-match is the step's processing phase, timed by the kernel on Linux; the step's
    // duration is that figure, and the trace gives both.
    let processing = sonde_probes::Phase::Processing;
    if cfg!(target_os = "linux") {
        let kernel = echo.timings.kernel(processing);
        assert!(kernel.is_some(), "{trace}");
        assert_eq!(Some(echo.duration), kernel);
        assert!(trace.contains("send to match: kernel"), "{trace}");
    }
    assert!(echo.timings.user_space(processing) >= echo.duration);
    // The password read by file() is a secret, and so is the credential made of it.
    assert!(sc.secrets.contains(&"s3cret".to_string()));
    assert!(!trace.contains("s3cret"), "{trace}");
    assert!(
        !trace.contains("AHByb2JlAHMzY3JldA=="),
        "base64 credential leaked: {trace}"
    );
}

#[tokio::test]
async fn http_login_token_then_long_poll_retries_until_the_message_appears() {
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = polls.clone();
    let routes = Routes::new()
        .at(
            "/login",
            Reply::json(
                200,
                &serde_json::json!({"token": "tok-12345", "user": "probe"}),
            )
            .header("Set-Cookie", "sid=cookie-6789; Path=/"),
        )
        .at_fn("/poll", move |seen| {
            if seen.header("authorization") != Some("Bearer tok-12345")
                || !seen
                    .header("cookie")
                    .unwrap_or("")
                    .contains("sid=cookie-6789")
            {
                return Reply::text(401, "who are you");
            }
            let n = p.fetch_add(1, Ordering::SeqCst);
            let msgs = if n < 2 {
                serde_json::json!({"messages": []})
            } else {
                serde_json::json!({"messages": [{"text": "hello"}]})
            };
            Reply::json(200, &msgs)
        });
    let server = HttpServer::start(routes).await;
    let yaml = format!(
        r#"scenario: poll
steps:
  - name: login
    http: {{url: "{login}", method: POST, json: {{user: probe, password: pw}}}}
    expect: {{status: 200, json: {{"$.user": probe, "$.token": {{exists: true}}}}}}
    capture: {{token: {{json: "$.token"}}}}
  - name: poll
    http: {{url: "{poll}", headers: {{Authorization: "Bearer {{{{ token }}}}"}}}}
    expect: {{json: {{"$.messages[*].text": {{contains: hello}}}}}}
    retry: {{until_pass: true, every: 50ms, within: 5s}}
"#,
        login = server.url("/login"),
        poll = server.url("/poll")
    );
    let sc = load_one(&yaml);
    let r = engine::run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    let poll = &r.steps[1];
    assert_eq!(poll.attempts, 3);
    assert!(poll.checks.iter().all(|c| c.passed));
    let login = &server.requests()[0];
    assert_eq!(login.header("content-type"), Some("application/json"));
    // One kept-alive connection for the whole run: login and every poll.
    assert_eq!(server.connections(), 1, "connection reuse within a run");
    assert!(poll
        .events
        .iter()
        .any(|e| e.message.starts_with("reusing the connection")));
    // Opted out: a connection per request, and the flow works the same.
    polls.store(0, Ordering::SeqCst);
    let fresh = load_one(&yaml.replace(
        "scenario: poll\n",
        "scenario: poll\nreuse_connections: false\n",
    ));
    assert!(!fresh.reuse_connections);
    let before = server.connections();
    let r = engine::run(&fresh).await;
    assert!(r.success(), "{:#}", r.to_json(&fresh));
    assert_eq!(server.connections() - before, 4);
    // A capture named `token` is a secret: the trace shows it redacted.
    let trace = r.to_json(&sc).to_string();
    assert!(!trace.contains("tok-12345"), "{trace}");
    assert!(!trace.contains("cookie-6789"), "{trace}");
}

#[tokio::test]
async fn a_not_expectation_passes_on_silence_and_fails_when_a_frame_matches() {
    let server = chat(Some(Duration::from_millis(20))).await;
    let token = chat_server::token_for(chat_server::DEFAULT_SECRET, "alice");
    let yaml = |trigger: &str| {
        format!(
            r#"scenario: quiet
steps:
  - ws.connect: {{as: a, url: "{url}"}}
  - ws.send: {{on: a, json: {{op: login, user: alice, token: "{token}"}}}}
  - ws.expect: {{on: a, match: {{json: {{"$.op": login_ok}}}}, within: 2s}}
  - ws.send: {{on: a, json: {trigger}}}
  - name: no-error
    ws.expect: {{on: a, not: {{json: {{"$.op": error}}}}, within: 300ms}}
"#,
            url = server.url()
        )
    };
    let ok = load_one(&yaml("{op: ping}"));
    let r = engine::run(&ok).await;
    assert!(r.success(), "{:#}", r.to_json(&ok));
    let bad = load_one(&yaml("{op: send, to: nobody, id: x1, text: hi}"));
    let r = engine::run(&bad).await;
    assert_eq!(r.failed_step.as_deref(), Some("no-error"));
    let f = r.failure().unwrap();
    assert_eq!(f.reason, sonde_probes::FailureReason::Assertion);
    assert!(f.message.contains("recipient offline"), "{}", f.message);
}

#[tokio::test]
async fn undefined_variables_are_load_errors_and_empty_captures_fail_the_step() {
    let e = load_str(
        "u.yaml",
        "scenario: u\nsteps:\n  - http: {url: \"http://127.0.0.1:1/\"}\n    capture: {token: {json: \"$.t\"}}\n  - http: {url: \"http://127.0.0.1:1/?t={{ tokn }}\"}\n",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "u.yaml:5:17: undefined template variable `tokn` — defined: env, scenario; captures of earlier steps: token"
    );

    let server = HttpServer::start(
        Routes::new().at("/", Reply::json(200, &serde_json::json!({"other": 1}))),
    )
    .await;
    let sc = load_one(&format!(
        "scenario: c\nsteps:\n  - name: get\n    http: {{url: \"{}\"}}\n    capture: {{token: {{json: \"$.token\"}}}}\n  - http: {{url: \"{}?t={{{{ token }}}}\"}}\n",
        server.url("/"),
        server.url("/")
    ));
    let r = engine::run(&sc).await;
    assert_eq!(r.failed_step.as_deref(), Some("get"));
    let m = &r.failure().unwrap().message;
    assert!(
        m.contains("capture `token`: $.token found nothing in the body: \"{\\\"other\\\":1}\""),
        "{m}"
    );
}

#[tokio::test]
async fn secrets_from_env_and_files_never_reach_traces_config_or_logs() {
    std::env::set_var("SONDE_MULTISTEP_SECRET", "env-secret-4711");
    let server = HttpServer::start(Routes::new().at_fn("/", |seen| {
        // A hostile server echoes what it got in a harmless-looking header.
        Reply::text(500, "no").header("X-Echo", seen.header("x-key").unwrap_or(""))
    }))
    .await;
    let sc = load_one(&format!(
        "scenario: s\nvars:\n  key: \"{{{{ env.SONDE_MULTISTEP_SECRET }}}}\"\nsteps:\n  - http: {{url: \"{}\", headers: {{X-Key: \"{{{{ key }}}}-{{{{ uuid() }}}}\"}}}}\n",
        server.url("/")
    ));
    let r = engine::run(&sc).await;
    assert!(!r.success());
    let trace = r.to_json(&sc).to_string();
    assert!(trace.contains("<redacted>"), "{trace}");
    assert!(!trace.contains("env-secret-4711"), "trace: {trace}");
    let config = serde_json::to_string(&sc.redacted()).unwrap();
    assert!(!config.contains("env-secret-4711"), "/config: {config}");
    let log = r.redact_text(&sc, &format!("{:?}", r.steps));
    assert!(!log.contains("env-secret-4711"), "log: {log}");
}

#[tokio::test]
async fn a_session_whose_server_is_gone_backs_off_and_says_why() {
    let server = chat(None).await;
    let sc = im_scenario(&server, "10s");
    let mut session = Session::default();
    let (_, r) = session.run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    assert!(session.connected);
    drop(server); // drops every connection and stops listening
                  // The next run meets the broken connection, fails with it, and leaves the session
                  // disconnected with a reconnect due at once.
    let (_, r) = session.run(&sc).await;
    assert!(!r.success());
    assert!(!session.connected);
    assert!(
        r.session_events
            .iter()
            .any(|e| e.starts_with("session broken: connection `")),
        "{:?}",
        r.session_events
    );
    // Reconnecting fails (nobody listens): backoff starts at 1 s.
    let (reconnected, setup) = session.reconnect(&sc).await;
    assert!(!reconnected);
    assert_eq!(setup.failed_step.as_deref(), Some("login[alice] › connect"));
    assert_eq!(
        session.backoff.last(),
        sonde::runtime::session::BACKOFF_START
    );
    // A run due meanwhile fails saying so, with the last attempt's error.
    let (_, r) = session.run(&sc).await;
    let f = r.failure().unwrap();
    assert_eq!(r.failed_step.as_deref(), Some("session"));
    assert!(
        f.message.starts_with("not connected, reconnecting in "),
        "{}",
        f.message
    );
    assert!(
        f.message
            .contains("setup step `login[alice] › connect` failed"),
        "{}",
        f.message
    );
    // The next failure doubles the backoff.
    session.reconnect(&sc).await;
    assert_eq!(
        session.backoff.last(),
        2 * sonde::runtime::session::BACKOFF_START
    );
}

#[tokio::test]
async fn teardown_runs_after_a_failing_step_which_ends_the_run_and_is_named() {
    let server = HttpServer::start(
        Routes::new()
            .at("/ok", Reply::text(200, "fine"))
            .at("/bad", Reply::text(503, "down"))
            .at("/cleanup", Reply::text(200, "cleaned")),
    )
    .await;
    let sc = load_one(&format!(
        "scenario: t\nsetup:\n  - {{name: prepare, http: {{url: \"{ok}\"}}}}\nsteps:\n  - {{name: nap, sleep: 20ms}}\n  - {{name: broken, http: {{url: \"{bad}\"}}}}\n  - {{name: never, http: {{url: \"{ok}\"}}}}\nteardown:\n  - {{name: cleanup, http: {{url: \"{cleanup}\"}}}}\n",
        ok = server.url("/ok"),
        bad = server.url("/bad"),
        cleanup = server.url("/cleanup"),
    ));
    let r = engine::run(&sc).await;
    assert_eq!(r.failed_step.as_deref(), Some("broken"));
    let names: Vec<(&str, Stage)> = r.steps.iter().map(|s| (s.name.as_str(), s.stage)).collect();
    assert_eq!(
        names,
        vec![
            ("prepare", Stage::Setup),
            ("nap", Stage::Steps),
            ("broken", Stage::Steps),
            ("cleanup", Stage::Teardown)
        ]
    );
    assert!(r.steps[3].success);
    // Each step reports its own duration; the sleep lasted at least its 20 ms.
    assert!(r.steps[1].duration >= Duration::from_millis(20));
    let paths: Vec<String> = server.requests().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, vec!["/ok", "/bad", "/cleanup"]);
}
