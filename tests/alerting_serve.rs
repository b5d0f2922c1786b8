//! `sonde serve` raising alerts end to end: the real binary, an agent settings document with a
//! webhook notifier and an Alertmanager (both in-process receivers on loopback), a scenario
//! whose target the test breaks and repairs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sonde_testkit::http::{HttpServer, Reply, Routes};
use sonde_testkit::process::Serve;

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");

/// Hang guard: polls `f` every 50 ms, panics after 20 s with sonde's log.
fn wait_for<T>(what: &str, serve: &Serve, mut f: impl FnMut() -> Option<T>) -> T {
    let guard = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < guard,
            "hang guard: still waiting for {what}\nsonde's log:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bodies(s: &HttpServer) -> Vec<Value> {
    s.requests()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

#[test]
fn a_failing_target_fires_and_its_recovery_resolves() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let h = healthy.clone();
    let (target, hook, am) = rt.block_on(async {
        (
            HttpServer::start(Routes::new().at_fn("/health", move |_| {
                if h.load(Ordering::SeqCst) {
                    Reply::text(200, "ok")
                } else {
                    Reply::text(500, "broken")
                }
            }))
            .await,
            HttpServer::start(Routes::new().at("/hook", Reply::text(200, "ok"))).await,
            HttpServer::start(Routes::new().at("/api/v2/alerts", Reply::status(200))).await,
        )
    });
    let agent = format!(
        "agent:\n  region: eu-west\n  alerting:\n    alertmanagers: [{{url: \"{}\"}}]\n    notifiers:\n      ops: {{type: webhook, url: \"{}\"}}\n",
        am.url("/"),
        hook.url("/hook")
    );
    let scenario = format!(
        "scenario: shop\ninterval: 200ms\ntimeout: 150ms\nhttp: {{url: \"{}\"}}\nalert: {{after: 2, resolve_after: 2, severity: page, notify: [ops]}}\n",
        target.url("/health")
    );
    let serve = Serve::command(SONDE)
        .config_yaml("agent.yaml", &agent)
        .config_yaml("shop.yaml", &scenario)
        .start();
    // Passing: runs go by, nothing is sent.
    let v = serve.wait_runs("shop", 3);
    assert_eq!(v["alert"]["firing"], false, "{v}");
    assert!(hook.requests().is_empty());

    healthy.store(false, Ordering::SeqCst);
    let fired = wait_for("the firing webhook", &serve, || {
        bodies(&hook).into_iter().next()
    });
    assert_eq!(fired["status"], "firing");
    assert_eq!(fired["scenario"], "shop");
    assert_eq!(fired["region"], "eu-west");
    assert_eq!(fired["reason"], "status");
    let addr = serve.addr();
    assert_eq!(
        fired["generator_url"],
        format!("http://{addr}/api/v1/scenarios/shop")
    );
    assert_eq!(serve.scenario("shop")["alert"]["firing"], true);
    let am_fired = wait_for("the Alertmanager post", &serve, || {
        bodies(&am).into_iter().next()
    });
    assert_eq!(am_fired[0]["labels"]["alertname"], "SondeScenarioFailing");
    assert_eq!(am_fired[0]["labels"]["severity"], "page");
    let metrics = serve.get("/metrics").body;
    assert!(metrics.contains("sonde_alerts_firing 1"), "{metrics}");

    // A reload with the scenario unchanged keeps the alert firing, without a new message.
    let r = sonde_testkit::client::post(addr, "/-/reload", "").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let runs = serve.scenario("shop")["runs"].as_u64().unwrap();
    serve.wait_runs("shop", runs + 2);
    assert_eq!(serve.scenario("shop")["alert"]["firing"], true);
    assert_eq!(bodies(&hook).len(), 1, "{:?}", bodies(&hook));

    healthy.store(true, Ordering::SeqCst);
    let resolved = wait_for("the resolved webhook", &serve, || {
        bodies(&hook)
            .into_iter()
            .find(|b| b["status"] == "resolved")
    });
    assert_eq!(resolved["starts_at"], fired["starts_at"]);
    assert_eq!(serve.scenario("shop")["alert"]["firing"], false);
    let metrics = serve.get("/metrics").body;
    assert!(metrics.contains("sonde_alerts_firing 0"), "{metrics}");
    assert!(
        metrics.contains(r#"sonde_alert_deliveries_total{notifier="ops"} 2"#),
        "{metrics}"
    );
    drop(rt);
}

#[test]
fn rules_prints_a_rule_file_and_refuses_without_alert_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s.yaml");
    std::fs::write(
        &f,
        "scenario: api\ninterval: 10s\nhttp: {url: \"http://127.0.0.1:1/\"}\nalert: {after: 3}\n",
    )
    .unwrap();
    let out = std::process::Command::new(SONDE)
        .args(["rules", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("alert: SondeScenarioFailing"), "{text}");
    assert!(text.contains("for: 30s"), "{text}");
    std::fs::write(&f, "scenario: api\nhttp: {url: \"http://127.0.0.1:1/\"}\n").unwrap();
    let out = std::process::Command::new(SONDE)
        .args(["rules", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scenario has an `alert:` block"));
}
