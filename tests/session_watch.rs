//! Sessions you can watch (issue 12, defects 1–7): what a persistent session's breaks and
//! reconnects leave in `/metrics`, in the API's recent past and in the log; `ws.close` on a
//! connection the peer closed; connection names checked at load; captures across `retry`
//! attempts. Each test names the defect it pins.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sonde::config::scenario::{Config, Scenario};
use sonde::config::{load_str, LoadOptions};
use sonde::engine;
use sonde::metrics::{Format, Metrics, RunMetrics};
use sonde::runtime::observer::Observer;
use sonde::runtime::scheduler::{ScenarioState, Scheduler};
use sonde_testkit::http::{HttpServer, Reply, Routes};
use sonde_testkit::ws::{WsOptions, WsServer};
use tokio::time::Instant;

fn load_one(yaml: &str) -> Arc<Scenario> {
    let cfg = load_str("t.yaml", yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("invalid: {e:?}"));
    cfg.scenarios[0].clone()
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

/// A persistent echo session on `url`; `steps` are the main steps.
fn echo_session(name: &str, url: &str, steps: &str) -> Arc<Scenario> {
    load_one(&format!(
        r#"scenario: {name}
interval: 300ms
timeout: 250ms
session: persistent
setup:
  - name: connect
    ws.connect: {{as: c, url: "{url}"}}
steps:
{steps}"#
    ))
}

const ECHO_STEPS: &str = r#"  - name: say
    ws.send: {on: c, text: hi}
  - name: hear
    ws.expect: {on: c, match: {equals: hi}, within: 200ms}
"#;

/// A scheduler running `sc` alone, with the metrics (and `more` observers).
fn schedule(sc: &Arc<Scenario>, more: Vec<Arc<dyn Observer>>) -> (Arc<Metrics>, Scheduler) {
    let metrics = Metrics::new();
    let mut observers: Vec<Arc<dyn Observer>> = vec![RunMetrics::new(metrics.clone(), None)];
    observers.extend(more);
    let sched = Scheduler::new(observers.into(), None, 16);
    sched.apply(&Config {
        scenarios: vec![sc.clone()],
        sources: vec![],
        agent: Default::default(),
    });
    (metrics, sched)
}

fn exposition(m: &Metrics) -> String {
    String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap()
}

/// The value of the series `series` (the whole line up to the value), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn events(st: &ScenarioState) -> Vec<String> {
    st.recent(|r| {
        r.events()
            .into_iter()
            .map(|e| e.event.to_string())
            .collect()
    })
}

/// Defects 1, 2 and 3: a break between runs, a reconnect, then a server that is gone.
/// Before: the break's run (step `session`) and the failed reconnect attempts never reached
/// `sonde_step_failures_total`; the setup step's histogram stayed at its first connection; the
/// API kept only the last run (a reconnect attempt), and no event list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaks_reconnects_and_failed_attempts_are_counted_measured_and_kept() {
    let server = WsServer::start(WsOptions::default()).await;
    let sc = echo_session("watch", &server.url("/"), ECHO_STEPS);
    let (metrics, sched) = schedule(&sc, vec![]);
    let st = sched.state("watch").unwrap();
    wait_until("a first successful run", || {
        st.last_success_ms.load(Ordering::Relaxed) > 0
    })
    .await;
    let connect_count = "sonde_step_duration_seconds_count{scenario=\"watch\",step=\"connect\"}";
    assert_eq!(value(&exposition(&metrics), connect_count), Some(1.0));

    server.drop_all();
    let session_failures =
        "sonde_step_failures_total{scenario=\"watch\",step=\"session\",reason=\"protocol\"}";
    wait_until("the break counted under step `session`", || {
        value(&exposition(&metrics), session_failures) == Some(1.0)
    })
    .await;
    // Defect 2: the reconnect's setup is measured like the first connection's.
    wait_until("the reconnect's setup measured", || {
        value(&exposition(&metrics), connect_count) == Some(2.0)
    })
    .await;
    let text = exposition(&metrics);
    assert!(
        !text.contains("sonde_step_success{scenario=\"watch\",step=\"session\"}"),
        "the session pseudo-step has failures only: {text}"
    );

    // The server is gone: every reconnect attempt fails and is counted under its setup step.
    drop(server);
    let connect_failures =
        "sonde_step_failures_total{scenario=\"watch\",step=\"connect\",reason=\"connect\"}";
    wait_until("a failed reconnect attempt counted", || {
        value(&exposition(&metrics), connect_failures).is_some_and(|v| v >= 1.0)
    })
    .await;
    // Defect 2: during the outage the setup step reads as failing, not as its first success.
    assert_eq!(
        value(
            &exposition(&metrics),
            "sonde_step_success{scenario=\"watch\",step=\"connect\"}"
        ),
        Some(0.0)
    );

    // Defect 3: the recent past survives the attempts that follow the break.
    wait_until("a failed attempt among the recent runs", || {
        st.recent(|r| r.runs().iter().any(|b| b.kind == "reconnect_attempt"))
    })
    .await;
    let (brk, failure, runs) = st.recent(|r| (r.last_break(), r.last_failure(), r.runs()));
    let brk = brk.expect("the last break is kept");
    assert!(brk.why.contains("connection `c`"), "{}", brk.why);
    let run = brk.run.expect("with the run that reported it");
    assert!(!run.success());
    assert!(failure.is_some());
    assert!(runs.len() >= 3 && runs.len() <= sonde::runtime::recent::RECENT_RUNS);
    assert!(runs.iter().any(|b| b.result == engine::RunResult::Success));
    let ev = events(&st);
    for want in ["connected", "broken", "reconnected", "reconnect_failed"] {
        assert!(ev.iter().any(|e| e == want), "{want} missing from {ev:?}");
    }
    assert_eq!(ev[0], "connected");
    sched.shutdown().await;
}

/// Defect 3: a peer's close code and reason are kept with the last break, and its run.
/// Before: the failing run was replaced by the next reconnect attempt within a millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_break_keeps_its_close_code_and_reason() {
    let server = WsServer::start(WsOptions::default()).await;
    let steps = r#"  - name: kick-me
    ws.send: {on: c, text: "!close 4001 kicked"}
  - name: wait
    ws.expect: {on: c, match: {equals: never}, within: 200ms}
"#;
    let sc = echo_session("kicked", &server.url("/"), steps);
    let (_metrics, sched) = schedule(&sc, vec![]);
    let st = sched.state("kicked").unwrap();
    wait_until("a break with its run", || {
        st.recent(|r| r.last_break().is_some_and(|b| b.run.is_some()))
    })
    .await;
    let b = st.recent(|r| r.last_break()).unwrap();
    assert!(b.why.contains("4001"), "{}", b.why);
    assert!(b.why.contains("kicked"), "{}", b.why);
    let msg = b.run.unwrap().failure().unwrap().message.clone();
    assert!(msg.contains("4001"), "{msg}");
    wait_until("the reconnect after the break", || {
        events(&st).iter().any(|e| e == "reconnected")
    })
    .await;
    sched.shutdown().await;
}

/// A log sink for the INFO lines of one test (current-thread runtime: the scheduler's tasks run
/// on the thread whose default subscriber this is).
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Defect 4: one INFO line per state change — failing, broken, reconnected, recovered — and
/// none per run. Before: a break met during a run was never logged.
#[tokio::test]
async fn state_changes_are_logged_once_each_never_per_run() {
    let sink = Sink::default();
    let out = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = WsServer::start(WsOptions::default()).await;
    // Every run kicks itself out: the session breaks during each run and reconnects after it.
    let steps = r#"  - name: kick-me
    ws.send: {on: c, text: "!close 4001 kicked"}
  - name: wait
    ws.expect: {on: c, match: {equals: never}, within: 100ms}
"#;
    let sc = echo_session("logged", &server.url("/"), steps);
    let log: Arc<dyn Observer> = Arc::new(sonde::runtime::log::RunLog);
    let (_metrics, sched) = schedule(&sc, vec![log]);
    let st = sched.state("logged").unwrap();
    wait_until("three failed runs", || {
        st.failures.load(Ordering::Relaxed) >= 3
    })
    .await;
    sched.shutdown().await;
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.matches("scenario failing").count(), 1, "{text}");
    assert!(text.matches("session broken").count() >= 3, "{text}");
    assert!(text.contains("4001"), "{text}");
    assert!(text.matches("session reconnected").count() >= 2, "{text}");
    assert_eq!(
        text.matches("run failed").count(),
        0,
        "per-run lines are DEBUG: {text}"
    );
}

/// Defect 5: `ws.close` on a connection the peer already closed normally passes, and says so.
#[tokio::test]
async fn closing_a_connection_the_peer_closed_normally_passes_and_reports_it() {
    let server = WsServer::start(WsOptions::default()).await;
    // The sleep lets the peer's close frame land before `ws.close` runs.
    let sc = load_one(&format!(
        r#"scenario: bye
steps:
  - ws.connect: {{as: c, url: "{}"}}
  - ws.send: {{on: c, text: "!close 1000 done"}}
  - sleep: 300ms
  - name: close
    ws.close: {{on: c}}
"#,
        server.url("/")
    ));
    let r = engine::run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    let t = serde_json::to_value(&r.steps[3]).unwrap().to_string();
    assert!(t.contains("already closed by the server"), "{t}");
    assert!(t.contains("1000 normal closure"), "{t}");
    // A peer that closed with an error code is still a failure.
    let bad = load_one(&format!(
        r#"scenario: kicked-close
steps:
  - ws.connect: {{as: c, url: "{}"}}
  - ws.send: {{on: c, text: "!close 4001 kicked"}}
  - sleep: 300ms
  - name: close
    ws.close: {{on: c}}
"#,
        server.url("/")
    ));
    let r = engine::run(&bad).await;
    assert_eq!(r.failed_step.as_deref(), Some("close"));
    assert!(r.failure().unwrap().message.contains("4001"));
}

/// Defect 6: `on:` a connection no step opens is a located load error with a did-you-mean.
#[test]
fn a_connection_no_step_opens_is_a_located_load_error() {
    let yaml = r#"scenario: typo
steps:
  - ws.connect: {as: bob, url: "ws://127.0.0.1:1/"}
  - ws.send: {on: bobby, text: hi}
  - ws.expect: {on: carol, match: {equals: hi}, within: 1s}
"#;
    let Err(e) = load_str("typo.yaml", yaml, &LoadOptions::default()) else {
        panic!("expected a load error");
    };
    let text = e
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("typo.yaml:4:")
            && text.contains("connection `bobby`, which no step opens — did you mean `bob`?"),
        "{text}"
    );
    assert!(
        text.contains("typo.yaml:5:")
            && text.contains("connection `carol`")
            && text.contains("opened connections: bob"),
        "{text}"
    );
    // Templated names are checked per run, not at load.
    let ok = "scenario: t\nvars: {who: bob}\nsteps:\n  - ws.connect: {as: bob, url: \"ws://127.0.0.1:1/\"}\n  - ws.send: {on: \"{{ who }}\", text: hi}\n";
    load_str("ok.yaml", ok, &LoadOptions::default()).expect("valid");
}

/// Defect 7: a `retry` attempt sees what earlier attempts captured: a long-poll advances its
/// cursor between attempts. Before: every attempt re-sent `since=0`.
#[tokio::test]
async fn a_retry_attempt_sees_the_captures_of_earlier_attempts() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let polls = Arc::new(AtomicUsize::new(0));
    let (s, p) = (seen.clone(), polls.clone());
    let routes = Routes::new()
        .at(
            "/start",
            Reply::json(200, &serde_json::json!({"cursor": "0"})),
        )
        .at_fn("/poll", move |req| {
            s.lock().unwrap().push(req.uri.clone());
            let n = p.fetch_add(1, Ordering::SeqCst) + 1;
            // Each answer moves the cursor; the message is there only after cursor 2.
            let expected = format!("/poll?since={}", n - 1);
            let msgs = if req.uri == expected && n >= 3 {
                serde_json::json!([{"text": "hello"}])
            } else {
                serde_json::json!([])
            };
            Reply::json(
                200,
                &serde_json::json!({"cursor": n.to_string(), "messages": msgs}),
            )
        });
    let server = HttpServer::start(routes).await;
    let sc = load_one(&format!(
        r#"scenario: poll
steps:
  - http: {{url: "{start}"}}
    capture: {{cursor: {{json: "$.cursor"}}}}
  - name: poll
    http: {{url: "{poll}?since={{{{ cursor }}}}"}}
    capture: {{cursor: {{json: "$.cursor"}}}}
    expect: {{json: {{"$.messages[*].text": {{contains: hello}}}}}}
    retry: {{until_pass: true, every: 10ms, within: 3s}}
"#,
        start = server.url("/start"),
        poll = server.url("/poll")
    ));
    let r = engine::run(&sc).await;
    assert!(r.success(), "{:#}", r.to_json(&sc));
    assert_eq!(
        *seen.lock().unwrap(),
        ["/poll?since=0", "/poll?since=1", "/poll?since=2"]
    );
    assert_eq!(r.steps[1].attempts, 3);
}
