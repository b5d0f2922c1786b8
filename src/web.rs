//! The HTTP endpoints of `sonde serve` (axum): metrics, health, reload, the loaded configuration
//! and the scenarios' last runs.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::engine::fmt_long;
use crate::metrics::Format;
use crate::scheduler::ScenarioState;
use crate::serve::{App, Reload};

/// The router for `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .route("/config", get(config))
        .route("/api/v1/scenarios", get(scenarios))
        .route("/api/v1/scenarios/{*name}", get(scenario))
        .with_state(app)
}

/// OpenMetrics for clients that ask for it (Prometheus does), the classic text format for the
/// rest — the negotiation of Go's client_golang and so of blackbox_exporter, so that
/// `curl …/metrics | promtool check metrics` works.
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let openmetrics = headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.contains("application/openmetrics-text"))
    });
    let format = if openmetrics {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    };
    // Encoding 10k scenarios' series is tens of milliseconds of CPU: keep it off the runtime's
    // worker threads so probe timings are not disturbed.
    let Ok(slot) = app.scrape_slots.clone().acquire_owned().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable\n").into_response();
    };
    let m = app.metrics.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    tokio::task::spawn_blocking(move || {
        m.encode_streaming(format, tx);
        drop(slot);
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    }));
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn healthy() -> &'static str {
    "Healthy\n"
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.is_ready() {
        (StatusCode::OK, "Ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready\n").into_response()
    }
}

async fn reload(State(app): State<Arc<App>>) -> Response {
    match app.reload().await {
        Reload::Applied { scenarios } => (
            StatusCode::OK,
            format!("configuration reloaded: {scenarios} scenarios\n"),
        )
            .into_response(),
        Reload::Rejected(errors) => {
            let mut body =
                String::from("configuration rejected; the previous configuration keeps running\n");
            for e in errors {
                body.push_str(&e.to_string());
                body.push('\n');
            }
            (StatusCode::BAD_REQUEST, body).into_response()
        }
    }
}

async fn config(State(app): State<Arc<App>>) -> Response {
    let cfg = app.config();
    let doc = json!({
        "sources": cfg.sources,
        "scenarios": cfg.scenarios.iter().map(|s| s.redacted.clone()).collect::<Vec<_>>(),
    });
    match serde_norway::to_string(&doc) {
        Ok(yaml) => ([(header::CONTENT_TYPE, "text/yaml; charset=utf-8")], yaml).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A scenario's summary: definition, counters, and its last run in brief.
fn summary(st: &ScenarioState) -> Value {
    let sc = &st.scenario;
    let last = st.last();
    let status = match &last {
        None => "pending",
        Some(r) if r.success() => "passing",
        Some(_) => "failing",
    };
    let ms = |v: u64| {
        (v > 0).then(|| {
            crate::engine::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(v))
        })
    };
    let mut v = json!({
        "name": sc.name,
        "defined_at": sc.defined_at,
        "interval": fmt_long(sc.interval),
        "timeout": fmt_long(sc.timeout),
        "regions": sc.regions,
        "tags": sc.tags,
        "labels": sc.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "steps": sc.steps.iter().map(|s| json!({"name": s.name, "kind": s.action.kind()})).collect::<Vec<_>>(),
        "status": status,
        "runs": st.runs.load(Ordering::Relaxed),
        "failures": st.failures.load(Ordering::Relaxed),
        "skipped": st.skipped.load(Ordering::Relaxed),
        "next_run_at": ms(st.next_run_ms.load(Ordering::Relaxed)),
        "last_success_at": ms(st.last_success_ms.load(Ordering::Relaxed)),
        "last_run": last.as_ref().map(|r| json!({
            "started_at": r.started_at,
            "duration": r.duration.as_secs_f64(),
            "result": r.result,
            "failed_step": r.failed_step,
            "failure": r.failure(),
            "internal_error": r.internal_error,
        })),
    });
    sc.redact_json(&mut v);
    v
}

async fn scenarios(State(app): State<Arc<App>>) -> Json<Value> {
    let list: Vec<Value> = app.scheduler.states().iter().map(|s| summary(s)).collect();
    Json(json!({
        "region": app.scheduler.region(),
        "shard": app.scheduler.shard().map(|s| s.to_string()),
        "scenarios": list,
        "not_owned": app.scheduler.not_owned(),
    }))
}

async fn scenario(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let Some(st) = app.scheduler.state(&name) else {
        let why = app
            .scheduler
            .not_owned()
            .into_iter()
            .find(|n| n.scenario == name)
            .map(|n| format!("scenario {name:?} is not run by this agent: {}", n.reason))
            .unwrap_or_else(|| format!("no scenario named {name:?}"));
        return (StatusCode::NOT_FOUND, Json(json!({ "error": why }))).into_response();
    };
    let mut v = summary(&st);
    if let Some(firing) = app.scheduler.alerts().firing(&name) {
        v["alert"] = json!({ "firing": firing });
    }
    v["last_run"] = serde_json::to_value(st.last().as_deref()).unwrap_or(Value::Null);
    st.scenario.redact_json(&mut v);
    Json(v).into_response()
}

async fn index(State(app): State<Arc<App>>) -> Html<String> {
    let mut rows = String::new();
    for st in app.scheduler.states() {
        let s = summary(&st);
        let name = html_escape(s["name"].as_str().unwrap_or_default());
        let failure = s["last_run"]["failure"]["message"]
            .as_str()
            .map(html_escape)
            .unwrap_or_default();
        rows.push_str(&format!(
            "<tr><td><a href=\"/api/v1/scenarios/{url}\">{name}</a></td><td class=\"{st}\">{st}</td><td>{iv}</td><td>{runs}</td><td>{fail}</td><td>{failure}</td></tr>\n",
            url = urlencode_path(s["name"].as_str().unwrap_or_default()),
            st = s["status"].as_str().unwrap_or_default(),
            iv = s["interval"].as_str().unwrap_or_default(),
            runs = s["runs"],
            fail = s["failures"],
        ));
    }
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>sonde</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}.passing{{color:#070}}.failing{{color:#b00}}.pending{{color:#777}}</style></head>
<body><h1>sonde</h1>
<p>Version {version}. Configuration: {source}. Links: <a href="/metrics">metrics</a> · <a href="/config">configuration</a> · <a href="/api/v1/scenarios">scenarios (JSON)</a> · <a href="/-/healthy">healthy</a> · <a href="/-/ready">ready</a></p>
<table><tr><th>scenario</th><th>status</th><th>interval</th><th>runs</th><th>failures</th><th>last failure</th></tr>
{rows}</table></body></html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        source = html_escape(&app.source.describe()),
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn urlencode_path(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
