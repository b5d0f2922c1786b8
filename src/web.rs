//! The HTTP endpoints of `sonde serve` (axum): metrics, health, reload, the loaded configuration
//! and the scenarios' last runs. The status page (`/`, `/scenario/…`) is [`crate::status`].

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::blackbox::recent::DebugOutput;
use crate::metrics::Format;
use crate::runtime::scheduler::ScenarioState;
use crate::serve::{App, Reload};
use crate::time::fmt_long;
use crate::web_server::exposition::Exposition;

mod history_api;

/// The router for `app`.
pub fn router(app: Arc<App>) -> Router {
    let exposition = Arc::new(Exposition::default());
    Router::new()
        .route(
            "/metrics",
            get(move |State(app): State<Arc<App>>, headers: HeaderMap| {
                let exposition = exposition.clone();
                async move { metrics(app, headers, &exposition).await }
            }),
        )
        // GET and POST: blackbox answers any method and reads only the query string.
        .route("/probe", get(probe).post(probe))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .route("/config", get(config))
        .route("/logs", get(logs))
        .route("/probes", get(probes_page))
        .route("/api/v1/scenarios", get(scenarios))
        .route("/api/v1/scenarios/{*name}", get(scenario))
        .route("/badge/{*path}", get(history_api::badge))
        .with_state(app)
}

/// OpenMetrics for clients that ask for it (Prometheus does), the classic text format for the
/// rest — the negotiation of Go's client_golang and so of blackbox_exporter, so that
/// `curl …/metrics | promtool check metrics` works.
async fn metrics(app: Arc<App>, headers: HeaderMap, exposition: &Exposition) -> Response {
    let openmetrics = headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.contains("application/openmetrics-text"))
    });
    let format = if openmetrics {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    };
    // blackbox_exporter's own series come first: they are few, and in OpenMetrics everything
    // must precede sonde's closing `# EOF`.
    let rendered = exposition
        .get(&app.metrics, format, || {
            app.blackbox.self_metrics(format == Format::OpenMetrics)
        })
        .await;
    let Some(rendered) = rendered else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response();
    };
    // The chunks are shared with every client served from the same rendering: a client that
    // never reads holds a reference, not a copy, until the write timeout drops it.
    let chunks: Vec<bytes::Bytes> = rendered.iter().cloned().collect();
    let body = Body::from_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// Plain text with its charset said: a probe's log holds sonde's own words (`6µs`), which a
/// browser shown bare `text/plain` decodes as Latin-1 and garbles. blackbox sends bare
/// `text/plain`; the media type is the same.
const TEXT_UTF8: &str = "text/plain; charset=utf-8";

/// A query's parameters, borrowed where nothing was percent-encoded: a copy only for what had
/// to be decoded (every `/probe` parses one).
struct QueryParams<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> QueryParams<'a> {
    fn parse(query: &'a str) -> Self {
        QueryParams(url::form_urlencoded::parse(query.as_bytes()).collect())
    }

    /// The same parameters, owning their text (for work moved to another thread).
    fn into_owned(self) -> QueryParams<'static> {
        QueryParams(
            self.0
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        )
    }

    /// The first value of `key`, as Go's `Query().Get`; an empty one is none.
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == key)
            .map(|(_, v)| v.as_ref())
            .filter(|v| !v.is_empty())
    }
}

/// blackbox_exporter's `/probe`: `module` (default `http_2xx`), `target`, `hostname`,
/// `debug=true`. Errors answer as blackbox's do (Go's `http.Error`: text/plain, message and a
/// newline): an unknown module or a missing target is 400, a scrape-timeout header that is not
/// a number 500. A target that cannot be probed is not an error: the probe fails
/// (`probe_success 0`) and the answer is 200. sonde's safety options add 403 (target not
/// allowed), 503 (too many probes at once) and 508 (the request loops back to this sonde).
async fn probe(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    use crate::blackbox::handler;
    let query = query.unwrap_or_default();
    let params = QueryParams::parse(&query);
    let get = |k: &str| params.get(k);
    let text_error = |code: StatusCode, msg: String| {
        (
            code,
            [
                (header::CONTENT_TYPE, TEXT_UTF8),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            format!("{msg}\n"),
        )
            .into_response()
    };
    let marker = match app.blackbox.safety.guard.admit(&headers) {
        Ok(m) => m,
        Err(e) => return text_error(StatusCode::LOOP_DETECTED, e),
    };
    let name = get("module").unwrap_or("http_2xx");
    let modules = app.blackbox.modules();
    let Some(module) = modules.get(name).cloned() else {
        app.blackbox.count_unknown_module();
        tracing::debug!(module = name, "Unknown module");
        return text_error(StatusCode::BAD_REQUEST, format!("Unknown module {name:?}"));
    };
    let scrape_timeout = headers
        .get("X-Prometheus-Scrape-Timeout-Seconds")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let timeout = match handler::timeout_seconds(
        scrape_timeout.as_deref(),
        module.timeout,
        app.blackbox.timeout_offset,
    ) {
        Ok(t) => t,
        Err(e) => {
            return text_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Failed to parse timeout from Prometheus header: {e}"),
            )
        }
    };
    let Some(target) = get("target") else {
        return text_error(
            StatusCode::BAD_REQUEST,
            "Target parameter is missing".to_string(),
        );
    };
    let Some(_slot) = app.blackbox.safety.slot() else {
        return text_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent probes (--probe.max-concurrent); try again later".to_string(),
        );
    };
    use crate::config::blackbox::module as bb;
    let url = match module.prober {
        bb::Prober::Http | bb::Prober::Grpc => bb::http_url(target).ok(),
        _ => None,
    };
    let safety = &app.blackbox.safety;
    if let Some(e) = safety.self_target_parsed(module.prober, target, url.as_ref()) {
        return text_error(StatusCode::LOOP_DETECTED, e);
    }
    if let Err(e) = app.blackbox.safety.check(module.prober, target).await {
        return text_error(StatusCode::FORBIDDEN, e);
    }
    let guard = handler::Guarded {
        policy: app.blackbox.safety.guard.clone(),
        marker,
        url,
    };
    let debug = get("debug") == Some("true");
    let recent = &app.blackbox.recent;
    let probe = handler::run_guarded(
        &module,
        target,
        get("hostname"),
        handler::duration_from_secs(timeout),
        debug || recent.enabled() || app.blackbox.logs_probes(),
        Some(guard),
    );
    // The local port matches a trace to a packet capture: named in the debug output asked for.
    let report = match debug {
        true => probe.await,
        false => sonde_probes::resolve::without_local_ports(probe).await,
    };
    let report = match report {
        Ok(r) => r,
        Err(handler::BadRequest(msg)) => return text_error(StatusCode::BAD_REQUEST, msg),
    };
    let metrics = report.registry.render();
    // The target as the log and the history show it: redacted like everything else they hold.
    let shown_target = crate::redact::text(target);
    app.blackbox.log_probe(name, &shown_target, &report.log);
    let keep = |d| recent.add(name, &shown_target, report.success, d);
    if debug {
        let text = crate::blackbox::debug::render(&report.log, &metrics, &module.shown);
        keep(DebugOutput::Rendered(text.clone()));
        return ([(header::CONTENT_TYPE, TEXT_UTF8)], text).into_response();
    }
    // Shared by the answer and the kept probe, not copied.
    let metrics = bytes::Bytes::from(metrics);
    if recent.enabled() {
        keep(DebugOutput::Parts {
            log: report.log,
            metrics: metrics.clone(),
            module: module.clone(),
        });
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics,
    )
        .into_response()
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
    let modules = app.blackbox.modules();
    let mut doc = json!({
        "sources": cfg.sources,
        "scenarios": cfg.scenarios.iter().map(|s| s.redacted()).collect::<Vec<_>>(),
        // The blackbox modules /probe serves (blackbox's examples when no file gave any),
        // secrets redacted.
        "blackbox_modules": modules
            .iter()
            .map(|(name, m)| (name.clone(), m.shown.clone()))
            .collect::<serde_json::Map<_, _>>(),
    });
    // Each part is redacted where it is built; this is the net under them.
    crate::redact::json(&mut doc);
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
            crate::time::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(v))
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
        "steps": sc.steps.iter().map(|s| json!({"name": s.name, "kind": s.kind})).collect::<Vec<_>>(),
        "setup": sc.setup.iter().map(|s| json!({"name": s.name, "kind": s.kind})).collect::<Vec<_>>(),
        "teardown": sc.teardown.iter().map(|s| json!({"name": s.name, "kind": s.kind})).collect::<Vec<_>>(),
        "session": if sc.persistent { "persistent" } else { "per_run" },
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
    match &last {
        Some(r) => r.redact_json(sc, &mut v),
        None => sc.redact_json(&mut v),
    }
    v
}

async fn scenarios(State(app): State<Arc<App>>) -> Json<Value> {
    let list: Vec<Value> = app.scheduler.states().iter().map(|s| summary(s)).collect();
    Json(json!({
        "region": app.scheduler.region(),
        "replica": app.scheduler.replica(),
        "shard": app.scheduler.shard().map(|s| s.to_string()),
        "scenarios": list,
        "not_owned": app.scheduler.not_owned(),
    }))
}

async fn scenario(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if app.scheduler.state(&name).is_none() {
        if let Some(r) = history_api::dispatch(&app, &name, query.as_deref()).await {
            return r;
        }
    }
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
    if let Some(firing) = app.alerts.firing(&name) {
        v["alert"] = json!({ "firing": firing });
    }
    v["last_run"] = st
        .last()
        .map(|r| r.to_json(&st.scenario))
        .unwrap_or(Value::Null);
    recent_json(&st, &mut v);
    Json(v).into_response()
}

/// The recent past beside the last run: the last runs in brief (newest first), the last failing
/// run and the last session break in full, and the session's events (persistent only).
fn recent_json(st: &ScenarioState, v: &mut Value) {
    let sc = &st.scenario;
    let (runs, failure, brk, events) =
        st.recent(|r| (r.runs(), r.last_failure(), r.last_break(), r.events()));
    let mut briefs = json!(runs);
    sc.redact_json(&mut briefs);
    v["recent_runs"] = briefs;
    v["last_failure"] = failure.map_or(Value::Null, |r| r.to_json(sc));
    if sc.persistent {
        let mut b = brk.map_or(Value::Null, |b| {
            json!({
                "at": b.at,
                "reason": b.why,
                "run": b.run.map_or(Value::Null, |r| r.to_json(sc)),
            })
        });
        sc.redact_json(&mut b);
        v["last_break"] = b;
        let mut e = json!(events);
        sc.redact_json(&mut e);
        v["session_events"] = e;
    }
}

/// blackbox_exporter's `/logs?id=N` or `/logs?target=T`: a recent probe's debug output, with
/// blackbox's answers (400 for neither or both, 404 for one that is not kept).
async fn logs(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let params = QueryParams::parse(&query);
    let get = |k: &str| params.get(k);
    let id = get("id").and_then(|v| v.parse::<u64>().ok());
    let target = get("target");
    let text = |code: StatusCode, msg: &str| {
        (
            code,
            [(header::CONTENT_TYPE, TEXT_UTF8)],
            format!("{msg}\n"),
        )
            .into_response()
    };
    let recent = &app.blackbox.recent;
    let found = match (id, target) {
        (Some(_), Some(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "Probe id and target can't be defined at the same time",
            )
        }
        (None, None) => {
            return text(
                StatusCode::BAD_REQUEST,
                "Probe id or target must be defined as http query parameters",
            )
        }
        (Some(id), None) => recent.by_id(id).ok_or("Probe id not found"),
        (None, Some(t)) => recent
            .by_target(&crate::redact::text(t))
            .ok_or("Probe target not found"),
    };
    match found {
        Ok(p) => ([(header::CONTENT_TYPE, TEXT_UTF8)], p.debug_text()).into_response(),
        Err(msg) => text(StatusCode::NOT_FOUND, msg),
    }
}

/// The recent `/probe`s as the status page's table (newest first), blackbox's columns.
fn recent_probes(app: &App) -> String {
    if !app.blackbox.recent.enabled() {
        return String::new();
    }
    let mut rows = String::new();
    for p in app.blackbox.recent.list().iter().rev() {
        let result = if p.success {
            "Success"
        } else {
            "<strong>Failure</strong>"
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{result}</td><td><a href=\"logs?id={}\">Logs</a></td></tr>\n",
            crate::status::html::esc(&p.module),
            crate::status::html::esc(&p.target),
            p.id
        ));
    }
    format!("<h2>Recent probes</h2>\n<table><tr><th>module</th><th>target</th><th>result</th><th>debug</th></tr>\n{rows}</table>\n")
}

/// `/probes`: the recent `/probe`s (`--history.limit`), as blackbox's landing page lists them;
/// each links its debug output at `/logs?id=`.
async fn probes_page(State(app): State<Arc<App>>) -> axum::response::Html<String> {
    let table = recent_probes(&app);
    let body = if table.is_empty() {
        "<p>No probe is kept: <code>--history.limit 0</code>.</p>".to_string()
    } else {
        table
    };
    axum::response::Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>sonde: recent probes</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}</style></head>
<body><h1>Recent probes</h1><p><a href="./">status page</a></p>
{body}</body></html>
"#
    ))
}
