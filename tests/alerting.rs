//! sonde as an alert source, against in-process receivers on loopback: each notifier format
//! (generic webhook, Slack, DingTalk with its signature, WeCom, Feishu with its signature, e-mail
//! over STARTTLS to the testkit SMTP server), Alertmanager API v2, retries on 500,
//! re-sending, reloads, and a receiver that never answers. Scenario runs are real engine runs
//! against a testkit target whose health the test switches.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use sonde::alert::Alerts;
use sonde::config::scenario::{Config, Scenario};
use sonde::config::{load_inputs, Input, LoadOptions};
use sonde::engine::{RunReport, RunResult};
use sonde::metrics::{Format, Metrics};
use sonde_testkit::http::{HttpServer, Reply, Routes, Seen};

/// Hang guard: polls `f` every 20 ms, panics after 15 s.
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let guard = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < guard,
            "hang guard: still waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A target whose `/health` answers 200 or 503 as the test says.
struct Target {
    server: HttpServer,
    healthy: Arc<AtomicBool>,
}

async fn target() -> Target {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let server = HttpServer::start(Routes::new().at_fn("/health", move |_| {
        if h.load(Ordering::SeqCst) {
            Reply::text(200, "ok")
        } else {
            Reply::text(503, "down for maintenance")
        }
    }))
    .await;
    Target { server, healthy }
}

/// A receiver at `path` answering `reply` (JSON), recording what it gets.
async fn receiver(path: &str, reply: Reply) -> HttpServer {
    HttpServer::start(Routes::new().at(path, reply)).await
}

fn load(agent: &str, scenario: &str) -> Config {
    load_inputs(
        &[
            Input::Text {
                origin: "agent.yaml".into(),
                text: agent.into(),
            },
            Input::Text {
                origin: "s.yaml".into(),
                text: scenario.into(),
            },
        ],
        &LoadOptions {
            region: Some("eu-west".into()),
            ..Default::default()
        },
    )
    .map(|loaded| loaded.config)
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn scenario_yaml(t: &Target, alert: &str) -> String {
    format!(
        "scenario: checkout\ninterval: 1s\nlabels: {{team: payments}}\nsteps:\n  - name: health\n    http: {{url: \"{}\"}}\nalert: {alert}\n",
        t.server.url("/health")
    )
}

async fn run(sc: &Arc<Scenario>, alerts: &Alerts) -> RunReport {
    let r = sonde::engine::run(sc).await;
    alerts.observe(sc, &r);
    r
}

fn bodies(s: &HttpServer) -> Vec<Value> {
    s.requests()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

fn metrics_text(m: &Metrics) -> String {
    String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap()
}

fn start(m: &Metrics, cfg: &Config) -> Alerts {
    Alerts::start(
        m.alerts.clone(),
        cfg.agent.alerting.clone(),
        Some("eu-west".into()),
        "http://127.0.0.1:9115",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gets_fire_then_resolve_at_the_exact_runs_in_the_documented_schema() {
    let t = target().await;
    let hook = receiver("/hook", Reply::text(200, "thanks")).await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      ops: {{type: webhook, url: \"{}\", headers: {{X-Team: pay}}, bearer_token: tok}}\n",
        hook.url("/hook")
    );
    let cfg = load(
        &agent,
        &scenario_yaml(&t, "{after: 2, resolve_after: 2, severity: page, notify: [ops], labels: {owner: sre}, runbook_url: \"https://runbooks.example/{{ scenario }}\"}"),
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    let sc = &cfg.scenarios[0];

    let r = run(sc, &alerts).await;
    assert_eq!(r.result, RunResult::Failure);
    // One failure of two: nothing yet. (The queue is handed over synchronously, so an event
    // would already be queued; give the sender a moment to prove it sends nothing.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hook.requests().is_empty(), "{:?}", bodies(&hook));
    assert_eq!(alerts.firing("checkout"), Some(false));

    run(sc, &alerts).await;
    assert_eq!(alerts.firing("checkout"), Some(true));
    let fired = wait_for("the firing notification", || {
        bodies(&hook).into_iter().next()
    })
    .await;
    assert_eq!(fired["version"], "1");
    assert_eq!(fired["status"], "firing");
    assert_eq!(fired["repeat"], false);
    assert_eq!(fired["notifier"], "ops");
    assert_eq!(fired["alertname"], "SondeScenarioFailing");
    assert_eq!(fired["scenario"], "checkout");
    assert_eq!(fired["region"], "eu-west");
    assert_eq!(fired["severity"], "page");
    assert_eq!(
        fired["labels"],
        serde_json::json!({"alertname": "SondeScenarioFailing", "owner": "sre", "region": "eu-west",
                           "scenario": "checkout", "severity": "page", "team": "payments"})
    );
    assert_eq!(fired["summary"], "checkout fails in eu-west");
    assert_eq!(fired["failing_step"], "health");
    assert_eq!(fired["reason"], "status");
    assert!(
        fired["description"]
            .as_str()
            .unwrap()
            .starts_with("Step health failed (status) after "),
        "{fired}"
    );
    assert!(fired["error"].as_str().unwrap().contains("503"), "{fired}");
    assert!(fired["latency_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(fired["runbook_url"], "https://runbooks.example/checkout");
    assert_eq!(
        fired["generator_url"],
        "http://127.0.0.1:9115/api/v1/scenarios/checkout"
    );
    assert!(fired["ends_at"].is_null());
    let seen = &hook.requests()[0];
    assert_eq!(seen.header("x-team"), Some("pay"));
    assert_eq!(seen.header("authorization"), Some("Bearer tok"));
    assert_eq!(seen.header("content-type"), Some("application/json"));

    // Recovery: the first success does not resolve (resolve_after 2), the second does.
    t.healthy.store(true, Ordering::SeqCst);
    run(sc, &alerts).await;
    assert_eq!(alerts.firing("checkout"), Some(true));
    run(sc, &alerts).await;
    assert_eq!(alerts.firing("checkout"), Some(false));
    let resolved = wait_for("the resolved notification", || {
        bodies(&hook).get(1).cloned()
    })
    .await;
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["starts_at"], fired["starts_at"]);
    assert!(resolved["ends_at"].is_string());
    // The resolve names what had failed.
    assert_eq!(resolved["failing_step"], "health");
    let text = metrics_text(&m);
    assert!(
        text.contains(r#"sonde_alert_deliveries_total{notifier="ops"} 2"#),
        "{text}"
    );
    assert!(text.contains("sonde_alerts_firing 0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_a_coloured_attachment_and_no_resolve_when_opted_out() {
    let t = target().await;
    let slack = receiver("/services/T/B/X", Reply::text(200, "ok")).await;
    let agent = format!(
        "agent:\n  alerting:\n    defaults: {{notify: [chat], after: 1, resolve_after: 1}}\n    notifiers:\n      chat: {{type: slack, url: \"{}\", channel: \"#ops\", send_resolved: false}}\n",
        slack.url("/services/T/B/X")
    );
    let cfg = load(
        &agent,
        &scenario_yaml(&t, "{summary: \"{{ scenario }} is down ({{ reason }})\"}"),
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    let sc = &cfg.scenarios[0];
    run(sc, &alerts).await;
    let msg = wait_for("the Slack message", || bodies(&slack).into_iter().next()).await;
    assert_eq!(msg["text"], "[FIRING] checkout is down (status)");
    assert_eq!(msg["channel"], "#ops");
    let a = &msg["attachments"][0];
    assert_eq!(a["color"], "danger");
    assert_eq!(
        a["title_link"],
        "http://127.0.0.1:9115/api/v1/scenarios/checkout"
    );
    assert!(a["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["title"] == "region" && f["value"] == "eu-west"));
    t.healthy.store(true, Ordering::SeqCst);
    run(sc, &alerts).await;
    assert_eq!(alerts.firing("checkout"), Some(false));
    // Fire again, then look: had a resolve been sent, it would be queued before this firing.
    t.healthy.store(false, Ordering::SeqCst);
    run(sc, &alerts).await;
    wait_for("the second firing", || {
        (slack.requests().len() >= 2).then_some(())
    })
    .await;
    let all = bodies(&slack);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all.iter().all(|b| b["attachments"][0]["color"] == "danger"),
        "{all:?}"
    );
}

/// The sign DingTalk expects, computed here independently: base64(HMAC-SHA256(secret,
/// timestamp + "\n" + secret)).
fn dingtalk_sign(secret: &str, timestamp: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

fn query(seen: &Seen) -> Vec<(String, String)> {
    let u = url::Url::parse(&format!("http://x{}", seen.uri)).unwrap();
    u.query_pairs().into_owned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalk_gets_a_signed_markdown_message_with_the_keyword() {
    let t = target().await;
    // A robot that checks the signature itself, as DingTalk does, and refuses a bad one.
    let secret = "SEC0123456789abcdef+/=";
    let robot = HttpServer::start(Routes::new().at_fn("/robot/send", move |seen| {
        let q = query(seen);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match (get("access_token"), get("timestamp"), get("sign")) {
            (Some(tok), Some(ts), Some(sign))
                if tok == "abc" && sign == dingtalk_sign(secret, &ts) =>
            {
                Reply::json(200, &serde_json::json!({"errcode": 0, "errmsg": "ok"}))
            }
            _ => Reply::json(
                200,
                &serde_json::json!({"errcode": 310000, "errmsg": "sign not match"}),
            ),
        }
    }))
    .await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      team-ding: {{type: dingtalk, url: \"{}?access_token=abc\", secret: \"{secret}\", keyword: 告警, at_mobiles: [\"13800000000\"]}}\n",
        robot.url("/robot/send")
    );
    let cfg = load(
        &agent,
        &scenario_yaml(&t, "{after: 1, resolve_after: 1, notify: [team-ding]}"),
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    let sc = &cfg.scenarios[0];
    run(sc, &alerts).await;
    t.healthy.store(true, Ordering::SeqCst);
    run(sc, &alerts).await;
    wait_for("both DingTalk messages delivered", || {
        metrics_text(&m)
            .contains(r#"sonde_alert_deliveries_total{notifier="team-ding"} 2"#)
            .then_some(())
    })
    .await;
    let seen = robot.requests();
    assert_eq!(seen.len(), 2);
    let ts: i64 = query(&seen[0])
        .iter()
        .find(|(k, _)| k == "timestamp")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // DingTalk refuses timestamps more than an hour off; ours is the sending time, in ms.
    assert!(
        (now_ms - ts).abs() < 3_600_000,
        "timestamp {ts} is not in milliseconds of now"
    );
    let b = bodies(&robot);
    assert_eq!(b[0]["msgtype"], "markdown");
    let title = b[0]["markdown"]["title"].as_str().unwrap();
    let text = b[0]["markdown"]["text"].as_str().unwrap();
    assert!(
        title.contains("告警") && title.contains("[FIRING] checkout fails in eu-west"),
        "{title}"
    );
    assert!(text.contains("告警"), "{text}");
    assert!(text.contains("- **region**: eu-west"), "{text}");
    assert!(text.contains("@13800000000"), "{text}");
    assert_eq!(b[0]["at"]["atMobiles"][0], "13800000000");
    assert!(b[1]["markdown"]["title"]
        .as_str()
        .unwrap()
        .contains("[RESOLVED]"));
    assert!(!metrics_text(&m)
        .contains(r#"sonde_alert_delivery_failures_total{notifier="team-ding"} 1"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_with_backoff_until_delivered() {
    let t = target().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let hook = HttpServer::start(Routes::new().at_fn("/hook", move |_| {
        if c.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::text(500, "busy")
        } else {
            Reply::text(200, "ok")
        }
    }))
    .await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      ops: {{type: webhook, url: \"{}\"}}\n",
        hook.url("/hook")
    );
    let cfg = load(&agent, &scenario_yaml(&t, "{after: 1, notify: [ops]}"));
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    run(&cfg.scenarios[0], &alerts).await;
    wait_for("the delivery after two 500s", || {
        metrics_text(&m)
            .contains(r#"sonde_alert_deliveries_total{notifier="ops"} 1"#)
            .then_some(())
    })
    .await;
    let text = metrics_text(&m);
    assert!(
        text.contains(r#"sonde_alert_delivery_retries_total{notifier="ops"} 2"#),
        "{text}"
    );
    let b = bodies(&hook);
    assert_eq!(b.len(), 3);
    assert!(
        b.iter().all(|x| x == &b[0]),
        "every attempt sends the same message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_not_retried_and_counts_as_a_failure() {
    let t = target().await;
    let hook = receiver("/hook", Reply::text(400, "bad payload")).await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      ops: {{type: webhook, url: \"{}\"}}\n",
        hook.url("/hook")
    );
    let cfg = load(&agent, &scenario_yaml(&t, "{after: 1, notify: [ops]}"));
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    run(&cfg.scenarios[0], &alerts).await;
    wait_for("the failure to be counted", || {
        metrics_text(&m)
            .contains(r#"sonde_alert_delivery_failures_total{notifier="ops"} 1"#)
            .then_some(())
    })
    .await;
    assert_eq!(hook.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_gets_api_v2_alerts_resent_while_firing_and_resolved() {
    let t = target().await;
    let am = receiver("/prefix/api/v2/alerts", Reply::status(200)).await;
    let agent = format!(
        "agent:\n  alerting:\n    external_url: http://sonde.example:9115/\n    resend_interval: 1s\n    alertmanagers:\n      - url: \"{}\"\n",
        am.url("/prefix")
    );
    let cfg = load(
        &agent,
        &scenario_yaml(
            &t,
            "{after: 1, resolve_after: 1, severity: page, description: \"{{ error }}\"}",
        ),
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    let sc = &cfg.scenarios[0];
    run(sc, &alerts).await;
    // The first send, then at least one re-send a resend_interval later.
    let sent = wait_for("a re-send", || {
        let b = bodies(&am);
        (b.len() >= 2).then_some(b)
    })
    .await;
    for batch in &sent {
        let a = &batch[0];
        assert_eq!(
            a["labels"],
            serde_json::json!({"alertname": "SondeScenarioFailing", "region": "eu-west",
                               "scenario": "checkout", "severity": "page", "team": "payments"})
        );
        assert_eq!(a["annotations"]["summary"], "checkout fails in eu-west");
        assert!(a["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("503"));
        assert_eq!(
            a["generatorURL"],
            "http://sonde.example:9115/api/v1/scenarios/checkout"
        );
        assert_eq!(
            a["startsAt"], sent[0][0]["startsAt"],
            "startsAt is the firing time"
        );
        // While firing, endsAt is ahead of now (4 resend intervals), so it stays active.
        assert!(a["endsAt"].as_str().unwrap() > a["startsAt"].as_str().unwrap());
    }
    t.healthy.store(true, Ordering::SeqCst);
    let before = am.requests().len();
    run(sc, &alerts).await;
    // The resolve is the request whose endsAt is not in the future (a re-send's is 4 s ahead).
    let resolved = wait_for("the resolve", || {
        let now = sonde::time::rfc3339(std::time::SystemTime::now());
        bodies(&am)
            .into_iter()
            .skip(before)
            .find(|b| b[0]["endsAt"].as_str().unwrap() <= now.as_str())
    })
    .await;
    assert_eq!(resolved[0]["labels"]["scenario"], "checkout");
    let n = am.requests().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(am.requests().len(), n, "a resolved alert is not re-sent");
    assert_eq!(
        am.requests()[0].header("content-type"),
        Some("application/json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_an_unchanged_scenarios_alert_and_resolves_a_removed_ones() {
    let t = target().await;
    let hook = receiver("/hook", Reply::text(200, "ok")).await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      ops: {{type: webhook, url: \"{}\"}}\n",
        hook.url("/hook")
    );
    let yaml = scenario_yaml(&t, "{after: 1, notify: [ops]}");
    let cfg = load(&agent, &yaml);
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    run(&cfg.scenarios[0], &alerts).await;
    assert_eq!(alerts.firing("checkout"), Some(true));
    // The same definition loaded again: same fingerprint, the alert keeps firing, no message.
    let again = load(&agent, &yaml);
    alerts.apply(&again.scenarios);
    run(&again.scenarios[0], &alerts).await;
    assert_eq!(alerts.firing("checkout"), Some(true));
    wait_for("the firing message", || {
        (!hook.requests().is_empty()).then_some(())
    })
    .await;
    // Removed: its alert resolves.
    alerts.apply(&[]);
    assert_eq!(alerts.firing("checkout"), None);
    let b = wait_for("the resolve", || bodies(&hook).get(1).cloned()).await;
    assert_eq!(b["status"], "resolved");
    assert!(
        b["description"]
            .as_str()
            .unwrap()
            .contains("changed or removed"),
        "{b}"
    );
    assert_eq!(bodies(&hook).len(), 2);
}

fn failed_report(name: &str) -> RunReport {
    RunReport {
        scenario: name.into(),
        started_at: String::new(),
        duration: Duration::from_millis(1),
        result: RunResult::Failure,
        failed_step: None,
        steps: vec![],
        internal_error: Some("synthetic".into()),
        session_events: vec![],
        secrets: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_blocks_nothing_and_the_overflow_is_counted() {
    let never = sonde_testkit::http::RawServer::never_answers().await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      slow: {{type: webhook, url: \"{}\", timeout: 30s}}\n",
        never.url("/hook")
    );
    let cfg = load(
        &agent,
        "scenario: flappy\nhttp: {url: \"http://127.0.0.1:1/\"}\nalert: {after: 1, resolve_after: 1, notify: [slow]}\n",
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    let sc = &cfg.scenarios[0];
    let mut ok = failed_report("flappy");
    ok.result = RunResult::Success;
    ok.internal_error = None;
    // 1000 alternating runs: 1000 events for a receiver stuck on the first. Every observe
    // returns at once (hang guard: the whole loop, generously).
    let guard = Instant::now();
    for i in 0..1000 {
        let r = if i % 2 == 0 {
            failed_report("flappy")
        } else {
            ok.clone()
        };
        alerts.observe(sc, &r);
    }
    assert!(
        guard.elapsed() < Duration::from_secs(10),
        "hang guard: observe blocked on a stuck receiver"
    );
    let text = metrics_text(&m);
    let dropped: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"sonde_alert_notifications_dropped_total{notifier="slow"} "#)
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The sender holds one event, the queue holds QUEUE_CAPACITY, the rest is dropped.
    assert!(
        dropped >= 1000 - 1 - sonde::alert::QUEUE_CAPACITY as u64,
        "dropped {dropped}:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_waits_for_queued_notifications_at_shutdown() {
    let t = target().await;
    let hook = receiver(
        "/hook",
        Reply::text(200, "ok").delay(Duration::from_millis(300)),
    )
    .await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      ops: {{type: webhook, url: \"{}\"}}\n",
        hook.url("/hook")
    );
    let cfg = load(
        &agent,
        &scenario_yaml(&t, "{after: 1, resolve_after: 1, notify: [ops]}"),
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    let sc = &cfg.scenarios[0];
    run(sc, &alerts).await;
    t.healthy.store(true, Ordering::SeqCst);
    run(sc, &alerts).await;
    alerts.finish(Duration::from_secs(10)).await;
    // Both were delivered (each took 300 ms) before finish returned.
    let text = metrics_text(&m);
    assert!(
        text.contains(r#"sonde_alert_deliveries_total{notifier="ops"} 2"#),
        "{text}"
    );
}

/// The README's "Alerting" examples (a scenario, the DingTalk agent document) and the format
/// reference's `alerting:` example load as written.
#[test]
fn the_documented_examples_load() {
    fn yaml_blocks(text: &str, from: &str, to: Option<&str>) -> Vec<String> {
        let start = text.find(from).unwrap_or_else(|| panic!("no {from:?}"));
        let rest = &text[start..];
        let rest = to
            .and_then(|t| rest.find(t))
            .map_or(rest, |end| &rest[..end]);
        rest.split("```yaml\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap().to_string())
            .collect()
    }
    let readme = std::fs::read_to_string("README.md").unwrap();
    let blocks = yaml_blocks(&readme, "## Alerting", Some("## Command line"));
    assert_eq!(
        blocks.len(),
        2,
        "the README's Alerting section changed shape"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.yaml"), &blocks[0]).unwrap();
    std::fs::write(
        dir.path().join("agent.yaml"),
        blocks[1].replace(
            "auth_password_file: /etc/sonde/smtp-password",
            "auth_password: x",
        ),
    )
    .unwrap();
    let cfg = sonde::config::load_paths(&[dir.path().to_path_buf()], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let alerting = cfg.agent.alerting.as_ref().expect("alerting settings");
    let ding = &alerting.notifiers[0];
    assert_eq!(ding.name, "team-ding");
    let kinds: Vec<&str> = alerting.notifiers.iter().map(|n| n.kind).collect();
    assert_eq!(kinds, ["dingtalk", "wecom", "feishu", "email"]);
    assert_eq!(ding.kind, "dingtalk");
    assert!(ding.spec.get("secret").is_some() && ding.spec.get("keyword").is_some());
    let spec = cfg.scenarios[0].alert.as_ref().expect("alert block");
    assert_eq!(spec.notify.as_deref(), Some(&["team-ding".to_string()][..]));

    let reference = std::fs::read_to_string("docs/scenario-format.md").unwrap();
    let blocks = yaml_blocks(&reference, "### `agent: {alerting:}`", None);
    let agent = blocks[0]
        .replace("secret_file: /etc/sonde/dingtalk-secret", "secret: x")
        .replace("secret_file: /etc/sonde/feishu-secret", "secret: y")
        .replace(
            "url_file: /etc/sonde/wecom-url",
            "url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K",
        )
        .replace(
            "auth_password_file: /etc/sonde/smtp-password",
            "auth_password: z",
        );
    let cfg = load(
        &agent,
        "scenario: s\nhttp: {url: \"http://127.0.0.1:1/\"}\nalert: {}\n",
    );
    let a = cfg.agent.alerting.as_ref().unwrap();
    assert_eq!(a.alertmanagers.len(), 2);
    let kinds: Vec<&str> = a.notifiers.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        ["dingtalk", "slack", "webhook", "wecom", "feishu", "email"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_is_reminded_every_repeat_interval_while_firing() {
    let t = target().await;
    let hook = receiver("/hook", Reply::text(200, "ok")).await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      ops: {{type: webhook, url: \"{}\", repeat_interval: 1s}}\n      once: {{type: webhook, url: \"{}\", repeat_interval: 0s}}\n",
        hook.url("/hook"),
        hook.url("/hook")
    );
    let cfg = load(
        &agent,
        &scenario_yaml(&t, "{after: 1, notify: [ops, once]}"),
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    run(&cfg.scenarios[0], &alerts).await;
    let reminders = wait_for("two reminders to ops", || {
        let b: Vec<Value> = bodies(&hook)
            .into_iter()
            .filter(|b| b["notifier"] == "ops" && b["repeat"] == true)
            .collect();
        (b.len() >= 2).then_some(b)
    })
    .await;
    assert!(reminders.iter().all(|b| b["status"] == "firing"));
    let all = bodies(&hook);
    let once: Vec<&Value> = all.iter().filter(|b| b["notifier"] == "once").collect();
    assert_eq!(once.len(), 1, "repeat_interval 0s sends once: {once:?}");
    assert_eq!(once[0]["repeat"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolve_reports_the_latest_failure() {
    let hook = receiver("/hook", Reply::text(200, "ok")).await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      ops: {{type: webhook, url: \"{}\"}}\n",
        hook.url("/hook")
    );
    let cfg = load(
        &agent,
        "scenario: s\nhttp: {url: \"http://127.0.0.1:1/\"}\nalert: {after: 1, resolve_after: 1, notify: [ops]}\n",
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    let sc = &cfg.scenarios[0];
    let mut first = failed_report("s");
    first.internal_error = Some("first problem".into());
    let mut second = failed_report("s");
    second.internal_error = Some("second problem".into());
    let mut ok = failed_report("s");
    ok.result = RunResult::Success;
    ok.internal_error = None;
    alerts.observe(sc, &first);
    alerts.observe(sc, &second);
    alerts.observe(sc, &ok);
    let b = wait_for("fire and resolve", || {
        let b = bodies(&hook);
        (b.len() == 2).then_some(b)
    })
    .await;
    assert_eq!(b[0]["error"], "first problem");
    assert_eq!(b[1]["status"], "resolved");
    assert_eq!(b[1]["error"], "second problem");
}

/// Counter `family` of `notifier` in the exposition (0 when absent).
fn count(m: &Metrics, family: &str, notifier: &str) -> u64 {
    let want = format!("sonde_{family}_total{{notifier=\"{notifier}\"}} ");
    metrics_text(m)
        .lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_gets_markdown_fire_reminder_and_resolve_within_its_size_limit() {
    use sonde_testkit::robots;
    let t = target().await;
    let robot = robots::wecom("k3y-0123").await;
    let base = robot.url(robots::WECOM_PATH);
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      wx: {{type: wecom, url: \"{base}?key=k3y-0123\", repeat_interval: 1s, mentioned_list: [zhangsan]}}\n      wx-wrong-key: {{type: wecom, url: \"{base}?key=nope\"}}\n"
    );
    // A description longer than WeCom's 4096-byte limit: it must be cut, not refused.
    let long = "服务不可用".repeat(400);
    let cfg = load(
        &agent,
        &scenario_yaml(
            &t,
            &format!("{{after: 1, resolve_after: 1, description: \"{long}\", notify: [wx, wx-wrong-key]}}"),
        ),
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    let sc = &cfg.scenarios[0];
    run(sc, &alerts).await;
    wait_for("the firing message and a reminder", || {
        (count(&m, "alert_deliveries", "wx") >= 2).then_some(())
    })
    .await;
    t.healthy.store(true, Ordering::SeqCst);
    run(sc, &alerts).await;
    wait_for("the resolve", || {
        bodies(&robot)
            .iter()
            .any(|b| {
                b["markdown"]["content"]
                    .as_str()
                    .unwrap_or("")
                    .contains("[RESOLVED]")
            })
            .then_some(())
    })
    .await;
    wait_for("the wrong key's fire and resolve to be refused", || {
        (count(&m, "alert_delivery_failures", "wx-wrong-key") == 2).then_some(())
    })
    .await;
    assert_eq!(
        count(&m, "alert_delivery_failures", "wx"),
        0,
        "{}",
        metrics_text(&m)
    );
    assert_eq!(count(&m, "alert_delivery_retries", "wx-wrong-key"), 0);
    // Only `wx`'s messages: the wrong key's reach the same robot, in any order.
    let sent: Vec<Value> = robot
        .requests()
        .iter()
        .filter(|r| r.uri.ends_with("key=k3y-0123"))
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect();
    let ok: Vec<&Value> = sent
        .iter()
        .filter(|b| b["markdown"]["content"].as_str().is_some())
        .collect();
    let content = |b: &Value| b["markdown"]["content"].as_str().unwrap().to_string();
    let first = content(ok[0]);
    assert_eq!(ok[0]["msgtype"], "markdown");
    assert!(
        first.contains("[FIRING]</font> checkout fails in eu-west"),
        "{first}"
    );
    assert!(first.contains("> **region**: eu-west"), "{first}");
    assert!(
        first.len() <= 4096 && first.ends_with("<@zhangsan>"),
        "{} bytes: {first}",
        first.len()
    );
    assert!(
        ok.iter().any(|b| content(b).contains("[STILL FIRING]")),
        "no reminder: {sent:?}"
    );
    let resolved = ok
        .iter()
        .map(|b| content(b))
        .find(|c| c.contains("[RESOLVED]"))
        .unwrap();
    assert!(
        !resolved.contains("<@zhangsan>"),
        "a resolve mentions nobody"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feishu_gets_a_signed_card_with_the_keyword_and_a_wrong_secret_is_refused() {
    use sonde_testkit::robots;
    let t = target().await;
    let secret = "fs-SEC/0123+abc=";
    let robot = robots::feishu("tok-1", Some(secret), Some("告警")).await;
    let url = robot.url(&robots::feishu_path("tok-1"));
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      lark: {{type: feishu, url: \"{url}\", secret: \"{secret}\", keyword: 告警}}\n      lark-bad-secret: {{type: feishu, url: \"{url}\", secret: wrong, keyword: 告警}}\n      lark-no-keyword: {{type: feishu, url: \"{url}\", secret: \"{secret}\"}}\n"
    );
    let cfg = load(
        &agent,
        &scenario_yaml(
            &t,
            "{after: 1, resolve_after: 1, notify: [lark, lark-bad-secret, lark-no-keyword]}",
        ),
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    let sc = &cfg.scenarios[0];
    run(sc, &alerts).await;
    t.healthy.store(true, Ordering::SeqCst);
    run(sc, &alerts).await;
    wait_for("fire and resolve delivered, the others refused", || {
        (count(&m, "alert_deliveries", "lark") == 2
            && count(&m, "alert_delivery_failures", "lark-bad-secret") == 2
            && count(&m, "alert_delivery_failures", "lark-no-keyword") == 2)
            .then_some(())
    })
    .await;
    assert_eq!(count(&m, "alert_delivery_failures", "lark"), 0);
    let good: Vec<Value> = bodies(&robot)
        .into_iter()
        .filter(|b| b["sign"] == robots::feishu_sign(secret, b["timestamp"].as_str().unwrap_or("")))
        .filter(|b| {
            b["card"]["header"]["title"]["content"]
                .as_str()
                .unwrap_or("")
                .contains("告警")
        })
        .collect();
    assert_eq!(good.len(), 2, "{:?}", bodies(&robot));
    let ts: i64 = good[0]["timestamp"].as_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - ts).abs() < 3600,
        "timestamp {ts} is not in seconds of now"
    );
    assert_eq!(good[0]["msg_type"], "interactive");
    let card = &good[0]["card"];
    assert_eq!(card["header"]["template"], "red");
    assert!(card["header"]["title"]["content"]
        .as_str()
        .unwrap()
        .contains("[FIRING] checkout fails in eu-west"));
    assert!(card["elements"][0]["content"]
        .as_str()
        .unwrap()
        .contains("**region**: eu-west"));
    assert_eq!(good[1]["card"]["header"]["template"], "green");
}

/// An SMTP server with STARTTLS and AUTH, its CA file, and agent settings for it.
struct Smtp {
    server: sonde_testkit::smtp::SmtpServer,
    _ca: sonde_testkit::pki::Ca,
    ca_file: String,
    dir: tempfile::TempDir,
}

async fn smtp(
    opts: impl FnOnce(Arc<rustls::ServerConfig>) -> sonde_testkit::smtp::SmtpOptions,
) -> Smtp {
    use sonde_testkit::pki;
    let ca = pki::Ca::new("smtp test CA");
    let leaf = ca.leaf(&["localhost"], time::Duration::days(30), &[]);
    let cfg = pki::server_config(&leaf, &[], None);
    let server = sonde_testkit::smtp::SmtpServer::start(opts(cfg)).await;
    let dir = tempfile::tempdir().unwrap();
    // A password file as an editor writes it: with a final newline, which is not part of it.
    std::fs::write(dir.path().join("smtp-password"), "s3cr3t-pw\n").unwrap();
    Smtp {
        server,
        ca_file: ca.ca_file.display().to_string(),
        _ca: ca,
        dir,
    }
}

fn load_in(dir: &std::path::Path, agent: &str, scenario: &str) -> Config {
    std::fs::write(dir.join("agent.yaml"), agent).unwrap();
    std::fs::write(dir.join("s.yaml"), scenario).unwrap();
    sonde::config::load_paths(
        &[dir.to_path_buf()],
        &LoadOptions {
            region: Some("eu-west".into()),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_over_starttls_with_auth_on_fire_reminder_and_resolve() {
    use sonde_testkit::smtp::SmtpOptions;
    let t = target().await;
    let s = smtp(|tls| SmtpOptions {
        starttls: Some(tls),
        users: vec![("alice".into(), "s3cr3t-pw".into())],
        ..Default::default()
    })
    .await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      mail:\n        type: email\n        smarthost: localhost:{}\n        from: \"sonde <sonde@example.com>\"\n        to: [ops@example.com, oncall@example.com]\n        auth_username: alice\n        auth_password_file: smtp-password\n        tls_config: {{ca_file: \"{}\"}}\n        repeat_interval: 1s\n",
        s.server.addr().port(),
        s.ca_file
    );
    let cfg = load_in(
        s.dir.path(),
        &agent,
        &scenario_yaml(&t, "{after: 1, resolve_after: 1, notify: [mail]}"),
    );
    let shown = format!("{:?}", cfg.agent.alerting);
    assert!(
        !shown.contains("s3cr3t"),
        "a secret in Debug output: {shown}"
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    let sc = &cfg.scenarios[0];
    run(sc, &alerts).await;
    wait_for("the firing mail and a reminder", || {
        (s.server.mails().len() >= 2).then_some(())
    })
    .await;
    t.healthy.store(true, Ordering::SeqCst);
    run(sc, &alerts).await;
    let mails = wait_for("the resolve mail", || {
        let m = s.server.mails();
        m.iter()
            .any(|x| {
                x.data
                    .contains("Subject: [RESOLVED] checkout fails in eu-west")
            })
            .then_some(m)
    })
    .await;
    assert_eq!(count(&m, "alert_delivery_failures", "mail"), 0);
    let first = &mails[0];
    assert!(first.tls, "the mail went in clear");
    assert_eq!(first.auth.as_ref().map(|a| a.1.as_str()), Some("alice"));
    assert_eq!(first.from, "sonde@example.com");
    assert_eq!(first.to, ["ops@example.com", "oncall@example.com"]);
    assert!(
        first
            .data
            .contains("Subject: [FIRING] checkout fails in eu-west"),
        "{}",
        first.data
    );
    assert!(
        first.data.contains("From: sonde <sonde@example.com>"),
        "{}",
        first.data
    );
    assert!(
        first.data.contains("failing step: health (status)"),
        "{}",
        first.data
    );
    assert!(
        mails
            .iter()
            .any(|x| x.data.contains("Subject: [STILL FIRING]")),
        "no reminder"
    );
}

/// A server that offers only AUTH LOGIN (the two-step, base64 dialogue) gets that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_authenticates_with_login_when_that_is_all_the_server_offers() {
    use sonde_testkit::smtp::SmtpOptions;
    let t = target().await;
    let s = smtp(|tls| SmtpOptions {
        starttls: Some(tls),
        users: vec![("alice".into(), "s3cr3t-pw".into())],
        mechanisms: vec!["LOGIN"],
        ..Default::default()
    })
    .await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      mail: {{type: email, smarthost: \"localhost:{}\", from: a@example.com, to: b@example.com, auth_username: alice, auth_password_file: smtp-password, tls_config: {{ca_file: \"{}\"}}}}\n",
        s.server.addr().port(),
        s.ca_file
    );
    let cfg = load_in(
        s.dir.path(),
        &agent,
        &scenario_yaml(&t, "{after: 1, notify: [mail]}"),
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    run(&cfg.scenarios[0], &alerts).await;
    let mail = wait_for("the mail", || s.server.mails().into_iter().next()).await;
    assert_eq!(mail.auth, Some(("LOGIN".into(), "alice".into())));
    assert!(mail.tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_never_falls_back_to_plaintext_and_a_wrong_password_is_not_retried() {
    use sonde_testkit::smtp::SmtpOptions;
    let t = target().await;
    // A server that offers no STARTTLS (as when a man in the middle strips it).
    let plain = smtp(|_| SmtpOptions::default()).await;
    let good = smtp(|tls| SmtpOptions {
        starttls: Some(tls),
        users: vec![("alice".into(), "right".into())],
        ..Default::default()
    })
    .await;
    let agent = format!(
        "agent:\n  alerting:\n    notifiers:\n      stripped: {{type: email, smarthost: \"localhost:{}\", from: a@example.com, to: b@example.com, max_attempts: 1, tls_config: {{ca_file: \"{}\"}}}}\n      badpw: {{type: email, smarthost: \"localhost:{}\", from: a@example.com, to: b@example.com, auth_username: alice, auth_password_file: smtp-password, tls_config: {{ca_file: \"{}\"}}}}\n",
        plain.server.addr().port(),
        plain.ca_file,
        good.server.addr().port(),
        good.ca_file,
    );
    let cfg = load_in(
        plain.dir.path(),
        &agent,
        &scenario_yaml(&t, "{after: 1, notify: [stripped, badpw]}"),
    );
    let m = Metrics::new();
    let alerts = start(&m, &cfg);
    run(&cfg.scenarios[0], &alerts).await;
    wait_for("both to fail", || {
        (count(&m, "alert_delivery_failures", "stripped") == 1
            && count(&m, "alert_delivery_failures", "badpw") == 1)
            .then_some(())
    })
    .await;
    assert!(plain.server.mails().is_empty(), "a mail went in clear");
    assert!(good.server.mails().is_empty());
    assert_eq!(good.server.auth_attempts().len(), 1, "a 535 is not retried");
    assert!(!good.server.auth_attempts()[0].2);
    assert_eq!(count(&m, "alert_delivery_retries", "badpw"), 0);
}

#[test]
fn notifier_settings_are_checked_per_type() {
    let dir = tempfile::tempdir().unwrap();
    for (notifier, want) in [
        ("{type: wecom, url: 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K', keyword: x}", "unknown field `keyword`"),
        ("{type: feishu}", "no `url`"),
        ("{type: email, smarthost: 'smtp.example.com', from: a@example.com}", "missing field `to`"),
        ("{type: email, smarthost: 'smtp.example.com', from: a@example.com, to: 'not an address'}", "invalid `to`"),
        ("{type: email, smarthost: 'smtp.example.com:25', tls: none, from: a@example.com, to: b@example.com, auth_username: u, auth_password: PW-LEAK}", "in clear"),
        ("{type: email, smarthost: 'smtp.example.com', from: a@example.com, to: b@example.com, auth_password: PW-LEAK}", "expected both"),
        ("{type: teams, url: 'https://x/'}", "expected one of: dingtalk, email, feishu, slack, webhook, wecom"),
        ("{type: wecom, url: 'ftp://SECRET-KEY@x/'}", "invalid `url`"),
    ] {
        std::fs::write(
            dir.path().join("agent.yaml"),
            format!("agent:\n  alerting:\n    notifiers:\n      n: {notifier}\n"),
        )
        .unwrap();
        let e = sonde::config::load_paths(&[dir.path().to_path_buf()], &LoadOptions::default())
            .map(|_| ())
            .unwrap_err();
        let text = format!("{e:?}");
        assert!(text.contains(want), "{notifier}: {text}");
        assert!(!text.contains("PW-LEAK") && !text.contains("SECRET-KEY"), "a secret in the error: {text}");
    }
}
