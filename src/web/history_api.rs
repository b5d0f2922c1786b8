//! The history's HTTP face: `/api/v1/scenarios/{name}/runs|runs/{id}|uptime|latency` (JSON) and
//! `/badge/{name}/status.svg|uptime.svg|latency.svg`. Scenario names may hold `/`, so these
//! arrive through the scenario wildcard: a path that names a scheduled scenario is that
//! scenario; otherwise a known suffix selects the history's answer.
//!
//! Everything shown was redacted before it was stored (see `history::record`). Store reads
//! block on disk, so they run on the blocking pool.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::history::{badge, HistoryRead, RunFilter, RunRow};
use crate::serve::App;

/// Runs a listing returns unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;
/// The longest window `uptime` and the badges accept.
const MAX_WINDOW: Duration = Duration::from_secs(90 * 86_400);

enum Ask {
    Runs,
    Run(i64),
    Uptime,
    Latency,
    Incidents,
}

/// The history's answer for `path` (the part after `/api/v1/scenarios/`), or `None` when the
/// path is no history question.
pub async fn dispatch(app: &Arc<App>, path: &str, query: Option<&str>) -> Option<Response> {
    let (name, ask) = split(path)?;
    let params = Params::parse(query.unwrap_or_default()).into_owned();
    let Some(history) = app.history.clone() else {
        return Some(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "history is off (see --storage.path and sonde_history_up)".into(),
            )
            .into_response(),
        );
    };
    let name = name.to_string();
    let known = app.scheduler.state(&name).is_some();
    let out = tokio::task::spawn_blocking(move || {
        if !known
            && history
                .runs(
                    &name,
                    &RunFilter {
                        limit: 1,
                        ..Default::default()
                    },
                )
                .is_empty()
        {
            return Err(error(
                StatusCode::NOT_FOUND,
                format!("no scenario named {name:?}, and no history of one"),
            ));
        }
        match ask {
            Ask::Runs => runs(&*history, &name, &params),
            Ask::Run(id) => run(&*history, &name, id),
            Ask::Uptime => uptime(&*history, &name, &params),
            Ask::Latency => latency(&*history, &name, &params),
            Ask::Incidents => incidents(&*history, &name, &params),
        }
    })
    .await;
    Some(match out {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    })
}

fn split(path: &str) -> Option<(&str, Ask)> {
    let path = path.strip_prefix('/').unwrap_or(path);
    if let Some(n) = path.strip_suffix("/runs") {
        return Some((n, Ask::Runs));
    }
    if let Some(n) = path.strip_suffix("/uptime") {
        return Some((n, Ask::Uptime));
    }
    if let Some(n) = path.strip_suffix("/latency") {
        return Some((n, Ask::Latency));
    }
    if let Some(n) = path.strip_suffix("/incidents") {
        return Some((n, Ask::Incidents));
    }
    let (rest, id) = path.rsplit_once('/')?;
    let n = rest.strip_suffix("/runs")?;
    Some((n, Ask::Run(id.parse().ok()?)))
}

/// The query string, decoded: `/probe`'s parser.
type Params<'a> = super::QueryParams<'a>;

/// A refused question: its status and why, as `{"error": …}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn error(code: StatusCode, msg: String) -> ApiError {
    ApiError(code, msg)
}

fn bad(msg: String) -> ApiError {
    error(StatusCode::BAD_REQUEST, msg)
}

/// A time: Unix milliseconds, RFC 3339, or a duration before now (`-1h`, `1h`).
fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(v) {
        return Ok(crate::time::unix_ms(t) as i64);
    }
    if let Ok(d) = humantime::parse_duration(v.trim_start_matches('-')) {
        return Ok(crate::time::now_ms() - d.as_millis() as i64);
    }
    Err(bad(format!(
        "{name}={v:?}: expected Unix milliseconds, RFC 3339 (2026-01-02T03:04:05Z) or a duration ago (-1h)"
    )))
}

fn parse_window(v: Option<&str>, default: &str) -> Result<Duration, ApiError> {
    let v = v.unwrap_or(default);
    match humantime::parse_duration(v) {
        Ok(d) if d >= Duration::from_secs(60) && d <= MAX_WINDOW => Ok(d),
        _ => Err(bad(format!(
            "window={v:?}: expected a duration from 1m to 90d, like 24h, 7d or 30d"
        ))),
    }
}

fn rfc3339_ms(ms: i64) -> String {
    crate::time::rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

fn run_json(r: &RunRow) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["started_at"] = json!(rfc3339_ms(r.started_ms));
    v
}

fn runs(h: &dyn HistoryRead, name: &str, p: &Params) -> Result<Value, ApiError> {
    let limit = match p.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad(format!("limit={l:?}: expected 1 to {MAX_LIMIT}"))),
        },
    };
    let success = match p.get("result") {
        None => None,
        Some("success") => Some(true),
        Some("failure") => Some(false),
        Some(r) => return Err(bad(format!("result={r:?}: expected success or failure"))),
    };
    let before_id = match p.get("before") {
        None => None,
        Some(b) => Some(
            b.parse::<i64>()
                .map_err(|_| bad(format!("before={b:?}: expected a run id")))?,
        ),
    };
    let filter = RunFilter {
        from_ms: p.get("from").map(|v| parse_time("from", v)).transpose()?,
        to_ms: p.get("to").map(|v| parse_time("to", v)).transpose()?,
        success,
        before_id,
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
    };
    let mut rows = h.runs(name, &filter);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = more.then(|| rows.last().map(|r| r.id)).flatten().map(|id| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &p.0 {
            if k != "before" {
                q.append_pair(k, v);
            }
        }
        q.append_pair("before", &id.to_string());
        q.finish()
    });
    Ok(json!({
        "scenario": name,
        "runs": rows.iter().map(run_json).collect::<Vec<_>>(),
        // The query of the next (older) page, when there is one.
        "next": next,
    }))
}

fn run(h: &dyn HistoryRead, name: &str, id: i64) -> Result<Value, ApiError> {
    match h.run(name, id) {
        Some((row, trace)) => Ok(json!({ "run": run_json(&row), "trace": trace })),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!("no run {id} of {name:?} in the history (it may have aged out)"),
        )),
    }
}

fn uptime(h: &dyn HistoryRead, name: &str, p: &Params) -> Result<Value, ApiError> {
    let window = parse_window(p.get("window"), "24h")?;
    let u = h.uptime(name, window);
    let mut v = serde_json::to_value(&u).unwrap_or(Value::Null);
    v["scenario"] = json!(name);
    v["window"] = json!(crate::time::fmt_long(window));
    Ok(v)
}

fn latency(h: &dyn HistoryRead, name: &str, p: &Params) -> Result<Value, ApiError> {
    let now = crate::time::now_ms();
    let from = match p.get("from") {
        Some(v) => parse_time("from", v)?,
        None => now - 86_400_000,
    };
    let span = Duration::from_millis((now - from).max(60_000) as u64);
    let bucket = match p.get("bucket") {
        Some(b) => humantime::parse_duration(b)
            .ok()
            .filter(|d| *d >= Duration::from_secs(60))
            .ok_or_else(|| bad(format!("bucket={b:?}: expected a duration of 1m or more")))?,
        // About 300 points, in whole minutes.
        None => Duration::from_secs((span.as_secs() / 300).max(60) / 60 * 60),
    };
    let step = p.get("step");
    let points = h.latency(name, step, from, bucket);
    Ok(json!({
        "scenario": name,
        "step": step,
        "from": rfc3339_ms(from),
        "bucket": crate::time::fmt_long(bucket),
        "points": points,
    }))
}

fn incidents(h: &dyn HistoryRead, name: &str, p: &Params) -> Result<Value, ApiError> {
    let from = match p.get("from") {
        Some(v) => parse_time("from", v)?,
        None => crate::time::now_ms() - 30 * 86_400_000,
    };
    let limit = match p.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad(format!("limit={l:?}: expected 1 to {MAX_LIMIT}"))),
        },
    };
    let list: Vec<Value> = h
        .incidents(name, from, limit)
        .into_iter()
        .map(|i| {
            let mut v = serde_json::to_value(&i).unwrap_or(Value::Null);
            v["from"] = json!(rfc3339_ms(i.from_ms));
            v["to"] = json!(i.to_ms.map(rfc3339_ms));
            v
        })
        .collect();
    Ok(json!({ "scenario": name, "incidents": list }))
}

/// `/badge/{name}/status.svg`, `/badge/{name}/uptime.svg?window=`,
/// `/badge/{name}/latency.svg?window=`; `label=` replaces the left text.
pub async fn badge(
    State(app): State<Arc<App>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let p = Params::parse(query.as_deref().unwrap_or_default());
    let Some((name, kind)) = path.rsplit_once('/') else {
        return svg(
            StatusCode::NOT_FOUND,
            badge::svg("badge", "not found", badge::GREY),
        );
    };
    let name = name.to_string();
    let label = |default: &str| p.get("label").unwrap_or(default).to_string();
    let state = app.scheduler.state(&name);
    match kind {
        "status.svg" => {
            let Some(st) = state else {
                return svg(
                    StatusCode::NOT_FOUND,
                    badge::svg(&label(&name), "unknown", badge::GREY),
                );
            };
            let (text, color) = match st.last() {
                None => ("pending", badge::GREY),
                Some(r) if r.success() => ("passing", badge::GREEN),
                Some(_) => ("failing", badge::RED),
            };
            svg(StatusCode::OK, badge::svg(&label(&name), text, color))
        }
        "uptime.svg" | "latency.svg" => {
            let Some(h) = app.history.clone() else {
                return svg(
                    StatusCode::SERVICE_UNAVAILABLE,
                    badge::svg(&label("history"), "off", badge::GREY),
                );
            };
            let window = match parse_window(p.get("window"), "24h") {
                Ok(w) => w,
                Err(_) => {
                    return svg(
                        StatusCode::BAD_REQUEST,
                        badge::svg("window", "invalid", badge::GREY),
                    )
                }
            };
            let wname = crate::time::fmt_long(window);
            let uptime = kind == "uptime.svg";
            let default_label = if uptime {
                format!("uptime {wname}")
            } else {
                format!("latency {wname}")
            };
            let lbl = label(&default_label);
            let answer = tokio::task::spawn_blocking(move || {
                if uptime {
                    let u = h.uptime(&name, window);
                    match u.ratio {
                        Some(r) => (badge::percent(r), badge::uptime_color(Some(r))),
                        None => ("no data".into(), badge::GREY),
                    }
                } else {
                    let slot = h.strip(&name, 1, window).pop();
                    match slot.and_then(|s| s.mean_duration_s) {
                        Some(m) => (badge::latency(m), badge::GREEN),
                        None => ("no data".into(), badge::GREY),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| ("error".into(), badge::GREY));
            svg(StatusCode::OK, badge::svg(&lbl, &answer.0, answer.1))
        }
        _ => svg(
            StatusCode::NOT_FOUND,
            badge::svg("badge", "not found", badge::GREY),
        ),
    }
}

fn svg(code: StatusCode, body: String) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=60"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_at_known_suffixes() {
        assert!(matches!(split("a/b/runs"), Some(("a/b", Ask::Runs))));
        assert!(matches!(split("a/runs/42"), Some(("a", Ask::Run(42)))));
        assert!(matches!(split("a/uptime"), Some(("a", Ask::Uptime))));
        assert!(matches!(split("a/latency"), Some(("a", Ask::Latency))));
        assert!(matches!(split("a/incidents"), Some(("a", Ask::Incidents))));
        assert!(split("a/runs/x").is_none() && split("a").is_none());
    }
}
