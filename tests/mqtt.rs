//! The mqtt.* steps end to end against the in-process fixture broker (testkit::mqtt): the
//! shipped round-trip scenario in a persistent session (with a broker crash in the middle),
//! every QoS and its phases, WebSocket, load errors, and the password kept out of everything.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as J;
use sonde::config::scenario::Scenario;
use sonde::config::{load_str, LoadOptions};
use sonde::engine::{self, Stage};
use sonde::runtime::session::Session;
use sonde_testkit::mqtt::{MqttBroker, MqttOptions};
use tokio::time::Instant;

const ROUND_TRIP: &str = include_str!("../scenarios/mqtt-round-trip.yaml");

fn load_one(yaml: &str) -> Arc<Scenario> {
    let cfg = load_str("t.yaml", yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("invalid: {e:?}"));
    cfg.scenarios[0].clone()
}

fn load_errors(yaml: &str) -> String {
    match load_str("t.yaml", yaml, &LoadOptions::default()) {
        Ok(_) => panic!("loaded:\n{yaml}"),
        Err(e) => format!("{e:?}"),
    }
}

/// The shipped scenario, pointed at `url`.
fn shipped(url: &str) -> Arc<Scenario> {
    load_one(&ROUND_TRIP.replace("mqtt://127.0.0.1:9883", url))
}

fn step<'a>(r: &'a J, name: &str) -> &'a J {
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {r:#}"))
}

fn phase(s: &J, p: &str) -> f64 {
    s["timings"][p]
        .as_f64()
        .or_else(|| s["timings"][p]["seconds"].as_f64())
        .unwrap_or_else(|| panic!("no phase {p} in {s:#}"))
}

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
async fn the_shipped_round_trip_passes_in_a_persistent_session_and_survives_a_broker_crash() {
    let broker = MqttBroker::start(MqttOptions::default()).await;
    let sc = shipped(&broker.url());
    let mut session = Session::default();
    for run in 0..2 {
        let (_, r) = session.run(&sc).await;
        let j = r.to_json(&sc);
        assert!(r.success(), "run {run}: {j:#}");
        assert_eq!(
            r.steps.iter().any(|s| s.stage == Stage::Setup),
            run == 0,
            "setup once per connection life"
        );
        if run == 0 {
            assert!(phase(step(&j, "sensor-connect"), "connack") >= 0.0);
            assert!(phase(step(&j, "dashboard-subscribe"), "suback") >= 0.0);
        }
        let p = step(&j, "publish");
        assert!(phase(p, "puback") >= 0.0);
        let d = step(&j, "deliver");
        assert_eq!(d["facts"]["topic"], "sonde/probe/mqtt-round-trip/reading");
        assert!(d["facts"]["matched"].as_str().unwrap().contains("celsius"));
        assert_eq!(d["checks"][0]["passed"], true, "{d:#}");
    }
    assert_eq!(broker.connects(), 2);
    // A crash: the next run fails with the break, the one after reconnects and passes.
    broker.drop_all();
    let mut passed_again = false;
    for _ in 0..5 {
        let (_, r) = session.run(&sc).await;
        if r.success() {
            assert!(r.steps.iter().any(|s| s.stage == Stage::Setup));
            passed_again = true;
            break;
        }
        let m = r.failure().unwrap().message.clone();
        assert!(m.contains("connection `") || m.contains("broker"), "{m}");
    }
    assert!(passed_again, "no successful run after the broker came back");
    assert_eq!(broker.connects(), 4);
    session.end(&sc).await;
}

#[tokio::test]
async fn every_qos_over_tcp_and_websocket_with_its_phases() {
    // As `sonde` does at start-up (exit::runtime): the kernel stamps packets before the first
    // probe, so the first message's receive is stamped even when the switch is slow to flip.
    sonde_probes::kts::warm_up();
    let broker = MqttBroker::start(MqttOptions::default()).await;
    for (url, protocol) in [
        (broker.url(), "3.1.1"),
        (broker.url(), "5"),
        (broker.ws_url(), "3.1.1"),
        (broker.ws_url(), "5"),
    ] {
        let yaml = format!(
            r#"
scenario: qos
steps:
  - mqtt.connect: {{as: a, url: "{url}", protocol: "{protocol}"}}
  - mqtt.connect: {{as: b, url: "{url}", protocol: "{protocol}", client_id: bob}}
  - mqtt.subscribe: {{on: b, topics: [q/0, q/1, q/2], qos: 2}}
  - {{name: p0, mqtt.publish: {{on: a, topic: q/0, text: zero}}}}
  - {{name: e0, mqtt.expect: {{on: b, topic: q/0, match: {{equals: zero}}, within: 2s}}}}
  - {{name: p1, mqtt.publish: {{on: a, topic: q/1, text: one, qos: 1}}}}
  - {{name: e1, mqtt.expect: {{on: b, topic: q/1, match: {{equals: one}}, within: 2s}}}}
  - {{name: p2, mqtt.publish: {{on: a, topic: q/2, hex: "00ff", qos: 2, retain: true}}}}
  - {{name: e2, mqtt.expect: {{on: b, topic: "q/+", within: 2s}}}}
  - mqtt.close: {{on: a}}
  - mqtt.close: {{on: b}}
"#
        );
        let sc = load_one(&yaml);
        let r = engine::run(&sc).await;
        let j = r.to_json(&sc);
        assert!(r.success(), "{url} {protocol}: {j:#}");
        assert!(step(&j, "p0")["timings"].get("puback").is_none());
        phase(step(&j, "p1"), "puback");
        phase(step(&j, "p2"), "pubrec");
        phase(step(&j, "p2"), "pubcomp");
        assert_eq!(step(&j, "e1")["facts"]["qos"], 1);
        assert_eq!(step(&j, "e2")["facts"]["qos"], 2);
        assert_eq!(step(&j, "e2")["facts"]["matched"], "binary: 2 bytes");
        // Publish → receive is the expect's processing phase, timed by the kernel on Linux (the
        // step's duration is then that figure); the trace gives both.
        for name in ["e0", "e1", "e2"] {
            let s = r.steps.iter().find(|s| s.name == name).unwrap();
            let processing = sonde_probes::Phase::Processing;
            let events = serde_json::to_string(&step(&j, name)["events"]).unwrap();
            if cfg!(target_os = "linux") {
                let kernel = s.timings.kernel(processing);
                assert_eq!(kernel, Some(s.duration), "{url} {protocol} {name}: {j:#}");
                assert!(
                    events.contains("publish to receive: kernel"),
                    "{url} {protocol} {name}: {events}"
                );
            }
            assert!(s.timings.user_space(processing) >= s.duration);
        }
    }
}

#[tokio::test]
async fn the_password_reaches_the_broker_and_nothing_else() {
    std::env::set_var("SONDE_MQTT_TEST_PASSWORD", "env-mqtt-pass-4711");
    let broker = MqttBroker::start(MqttOptions {
        credentials: Some(("probe".into(), "env-mqtt-pass-4711".into())),
        ..Default::default()
    })
    .await;
    let ok = load_one(&format!(
        "scenario: s\nsteps:\n  - mqtt.connect: {{as: a, url: \"{}\", username: probe, password: \"{{{{ env.SONDE_MQTT_TEST_PASSWORD }}}}\"}}\n",
        broker.url()
    ));
    let r = engine::run(&ok).await;
    assert!(r.success(), "{:#}", r.to_json(&ok));
    assert_eq!(
        broker.last_connect().unwrap().2.as_deref(),
        Some("env-mqtt-pass-4711")
    );
    // In the URL, as mosquitto_pub takes it (percent-encoded).
    let in_url = load_one(&format!(
        "scenario: s\nsteps:\n  - mqtt.connect: {{as: a, url: \"{}\"}}\n",
        broker
            .url()
            .replace("mqtt://", "mqtt://probe:env-mqtt-pass%2D4711@")
    ));
    let r = engine::run(&in_url).await;
    assert!(r.success(), "{:#}", r.to_json(&in_url));
    assert!(!r.to_json(&in_url).to_string().contains("pass%2D4711"));
    // A literal password, refused: the failure says why and shows no password.
    let bad = load_one(&format!(
        "scenario: s\nsteps:\n  - mqtt.connect: {{as: a, url: \"{}\", protocol: \"5\", username: probe, password: literal-wrong-pass}}\n",
        broker.url()
    ));
    let r = engine::run(&bad).await;
    assert!(!r.success());
    let f = r.failure().unwrap();
    assert_eq!(f.reason.as_str(), "status");
    assert!(f.message.contains("bad user name password"), "{f}");
    for (sc, secret) in [(&ok, "env-mqtt-pass-4711"), (&bad, "literal-wrong-pass")] {
        let r = engine::run(sc).await;
        let trace = r.to_json(sc).to_string();
        assert!(!trace.contains(secret), "trace: {trace}");
        let config = serde_json::to_string(&sc.redacted()).unwrap();
        assert!(!config.contains(secret), "/config: {config}");
        let log = r.redact_text(sc, &format!("{:?} {:?}", r.steps, sc));
        assert!(!log.contains(secret), "log: {log}");
        // Not even before redaction: the built request's Debug hides it.
        let raw = format!("{:?}", r.steps);
        assert!(!raw.contains(secret), "steps: {raw}");
    }
}

#[tokio::test]
async fn a_refused_subscription_and_a_missing_connection_fail_with_their_reason() {
    let broker = MqttBroker::start(MqttOptions {
        deny_prefix: Some("private/".into()),
        ..Default::default()
    })
    .await;
    let sc = load_one(&format!(
        "scenario: s\nsteps:\n  - mqtt.connect: {{as: a, url: \"{}\"}}\n  - mqtt.subscribe: {{on: a, topics: [public/x, private/y], qos: 1}}\n",
        broker.url()
    ));
    let r = engine::run(&sc).await;
    let f = r.failure().unwrap();
    assert_eq!(f.reason.as_str(), "status");
    assert!(f.message.contains("private/y"), "{f}");
    assert!(!f.message.contains("public/x ("), "{f}");

    // A name no step opens is a load error (issue 12, defect 6), not a run-time failure.
    let e = load_errors("scenario: s\nsteps:\n  - mqtt.publish: {on: ghost, topic: t, text: x}\n");
    assert!(
        e.contains("line: 3") && e.contains("`ghost`, which no step opens"),
        "{e}"
    );
}

#[tokio::test]
async fn not_passes_on_silence_and_close_after_a_broker_drop_passes() {
    let broker = MqttBroker::start(MqttOptions::default()).await;
    let sc = load_one(&format!(
        r#"
scenario: s
steps:
  - mqtt.connect: {{as: a, url: "{url}"}}
  - mqtt.subscribe: {{on: a, topic: "alarm/#"}}
  - {{name: quiet, mqtt.expect: {{on: a, not: {{contains: fire}}, within: 200ms}}}}
  - mqtt.publish: {{on: a, topic: alarm/1, text: fire}}
  - {{name: loud, mqtt.expect: {{on: a, topic: alarm/1, not: {{contains: fire}}, within: 2s}}}}
"#,
        url = broker.url()
    ));
    let r = engine::run(&sc).await;
    let j = r.to_json(&sc);
    assert_eq!(step(&j, "quiet")["success"], true, "{j:#}");
    assert_eq!(step(&j, "loud")["success"], false, "{j:#}");
    assert!(r.failure().unwrap().message.contains("alarm/1: fire"));

    // Close after the broker dropped us: reported, and the step passes.
    let sc = load_one(&format!(
        "scenario: s\nsteps:\n  - mqtt.connect: {{as: a, url: \"{}\"}}\n  - sleep: 300ms\n  - {{name: bye, mqtt.close: {{on: a}}}}\n",
        broker.url()
    ));
    let run = tokio::spawn({
        let sc = sc.clone();
        async move { engine::run(&sc).await }
    });
    wait_until("the connection", || broker.connects() >= 2).await;
    broker.drop_all();
    let r = run.await.unwrap();
    let j = r.to_json(&sc);
    assert!(r.success(), "{j:#}");
    assert!(j.to_string().contains("was already closed"), "{j:#}");
}

#[test]
fn mistakes_are_located_load_errors() {
    let cases = [
        (
            "  - mqtt.connect: {as: a, url: \"http://x\"}\n",
            "unsupported MQTT URL",
        ),
        (
            "  - mqtt.connect: {as: a, url: \"mqtt://x\", protocol: \"4.0\"}\n",
            "unknown MQTT protocol",
        ),
        (
            "  - mqtt.connect: {as: a, url: \"mqtt://x\", session_expiry: 1h}\n",
            "MQTT 5 feature",
        ),
        (
            "  - mqtt.connect: {as: a, url: \"mqtt://x\", keep_alive: 100000s}\n",
            "keep_alive",
        ),
        (
            "  - mqtt.subscribe: {on: a, topic: \"a/#/b\"}\n",
            "invalid topic filter",
        ),
        ("  - mqtt.subscribe: {on: a, topic: t, qos: 3}\n", "QoS 3"),
        (
            "  - mqtt.publish: {on: a, topic: \"a/+\", text: x}\n",
            "without + or #",
        ),
        (
            "  - mqtt.publish: {on: a, topic: t, text: x, hex: \"00\"}\n",
            "at most one payload",
        ),
        ("  - mqtt.expect: {on: a, within: 1s}\n", "what the message"),
        (
            "  - mqtt.expect: {on: a, not: {contains: x}}\n",
            "needs `within`",
        ),
    ];
    for (step, want) in cases {
        let e = load_errors(&format!("scenario: s\nsteps:\n{step}"));
        assert!(e.contains(want), "{step}: {e}");
        assert!(e.contains("line: 3"), "not located: {e}");
    }
}

#[tokio::test]
async fn the_documented_example_runs() {
    let doc = include_str!("../docs/scenario-format.md");
    let start = doc
        .find("scenario: mqtt-qos")
        .expect("the example in the docs");
    let yaml = &doc[start..start + doc[start..].find("```").unwrap()];
    let broker = MqttBroker::start(MqttOptions::default()).await;
    let sc = load_one(&yaml.replace("mqtt://127.0.0.1:9883", &broker.url()));
    let r = engine::run(&sc).await;
    let j = r.to_json(&sc);
    assert!(r.success(), "{j:#}");
    phase(step(&j, "publish"), "pubcomp");
    assert_eq!(
        step(&j, "deliver")["facts"]["properties"]["user_properties"][0],
        serde_json::json!(["site", "lab"])
    );
}

/// Through the scheduler, as `serve` runs it: the phases are series, a broker crash fails a
/// run, the session reconnects (counted) and passes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_session_exports_phases_and_reconnects_after_a_crash() {
    use sonde::metrics::{Format, Metrics, RunMetrics};
    use sonde::runtime::scheduler::Scheduler;
    use std::sync::atomic::Ordering;

    let broker = MqttBroker::start(MqttOptions::default()).await;
    let yaml = ROUND_TRIP
        .replace("mqtt://127.0.0.1:9883", &broker.url())
        .replace("interval: 30s", "interval: 1s")
        .replace("timeout: 5s", "timeout: 1s");
    let sc = load_one(&yaml);
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
    let t = text();
    for (step, phase) in [
        ("sensor-connect", "connack"),
        ("dashboard-subscribe", "suback"),
        ("publish", "puback"),
    ] {
        assert!(
            t.lines().any(|l| l.starts_with("sonde_step_phase_seconds{")
                && l.contains(&format!("step=\"{step}\""))
                && l.contains(&format!("phase=\"{phase}\""))),
            "no {phase} phase for {step}:\n{t}"
        );
    }
    let failures_before = st.failures.load(Ordering::Relaxed);
    broker.drop_all();
    wait_until("the break to fail a run", || {
        st.failures.load(Ordering::Relaxed) > failures_before
    })
    .await;
    wait_until("a reconnect", || {
        text().contains("sonde_session_reconnects_total{scenario=\"mqtt-round-trip\"} 1")
    })
    .await;
    let runs = st.runs.load(Ordering::Relaxed);
    wait_until("a successful run after the reconnect", || {
        st.runs.load(Ordering::Relaxed) > runs && st.last().unwrap().success()
    })
    .await;
    assert!(text().contains("sonde_session_connected{scenario=\"mqtt-round-trip\"} 1"));
    sched.shutdown().await;
}
