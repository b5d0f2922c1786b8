//! One scenario's page: state, alert and uptime; the strip; a p50/p95 latency chart for the
//! whole run and for each step; the waterfall of the last run's phases; the last runs (paged);
//! the incidents; and, on the admin page, the trace of any kept run (`?run=ID`).

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::report::StepFacts;
use crate::engine::RunReport;
use crate::history::{HistoryRead, Incident, LatencyPoint, RunFilter, RunRow, Slot, Uptime};
use crate::runtime::scheduler::ScenarioState;

use super::charts::{self, Bar};
use super::html::{ago, esc, percent, secs, time, url_path};
use super::model::{group_of, GroupBy, State};
use super::overview::{span_of, SLOTS};
use super::Status;

/// Runs listed per page of the runs table.
const RUNS_PER_PAGE: usize = 25;

struct Params {
    span: String,
    run: Option<i64>,
    before: Option<i64>,
}

fn params(raw: Option<&str>) -> Params {
    let mut p = Params {
        span: String::new(),
        run: None,
        before: None,
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "span" => p.span = v.chars().take(8).collect(),
            "run" => p.run = v.parse().ok(),
            "before" => p.before = v.parse().ok(),
            _ => {}
        }
    }
    p
}

/// What the history says about the scenario.
struct Data {
    uptime: Vec<Uptime>,
    strip: Vec<Slot>,
    /// (title, points): the whole run first, then each step.
    charts: Vec<(String, Vec<LatencyPoint>)>,
    /// The period the charts cover.
    from_ms: i64,
    to_ms: i64,
    runs: Vec<RunRow>,
    incidents: Vec<Incident>,
    kept: Option<(RunRow, Option<serde_json::Value>)>,
}

fn read(h: &dyn HistoryRead, st: &ScenarioState, p: &Params, public: bool) -> Data {
    let sc = &st.scenario;
    let name = sc.name.as_str();
    let now = crate::time::now_ms();
    let span = span_of(&p.span, sc.interval, h.memory_only());
    let from = now - span.as_millis() as i64;
    let bucket = (span / 60).max(Duration::from_secs(1));
    let mut charts = vec![("Whole run".to_string(), h.latency(name, None, from, bucket))];
    for s in sc.setup.iter().chain(&sc.steps).chain(&sc.teardown) {
        let title = format!("Step {} ({})", s.name, s.kind);
        charts.push((title, h.latency(name, Some(&s.name), from, bucket)));
    }
    Data {
        uptime: super::overview::uptimes(h, name),
        strip: h.strip(name, SLOTS, span),
        charts,
        from_ms: from,
        to_ms: now,
        runs: h.runs(
            name,
            &RunFilter {
                before_id: p.before,
                limit: RUNS_PER_PAGE,
                ..RunFilter::default()
            },
        ),
        incidents: h.incidents(name, now - 30 * 86_400_000, 20),
        kept: p.run.filter(|_| !public).and_then(|id| h.run(name, id)),
    }
}

/// The page, or None when there is no such scenario (or it is not public on the public page).
pub async fn page(status: &Arc<Status>, name: &str, raw: Option<&str>) -> Option<String> {
    let st = status
        .app
        .scheduler
        .state(name)
        .filter(|st| !status.public || st.scenario.public)?;
    let p = params(raw);
    let data = match status.history() {
        Some(h) => {
            let (st, public) = (st.clone(), status.public);
            let p2 = Params {
                span: p.span.clone(),
                run: p.run,
                before: p.before,
            };
            tokio::task::spawn_blocking(move || read(h.as_ref(), &st, &p2, public))
                .await
                .ok()
        }
        None => None,
    };
    let mut body = String::with_capacity(32 * 1024);
    head(&mut body, status, &st, data.as_ref());
    match &data {
        Some(d) => {
            body.push_str("<section><h2>Uptime</h2>");
            body.push_str(&charts::strip(&d.strip, status.public));
            spans(&mut body, status, name, &p.span);
            body.push_str("</section><section><h2>Latency</h2><div class=\"charts\">");
            for (title, points) in &d.charts {
                body.push_str(&charts::latency_chart(points, title, d.from_ms, d.to_ms));
            }
            body.push_str("</div></section>");
        }
        None => body.push_str("<p class=\"muted\">History is off: only the last run is known.</p>"),
    }
    let last = st.last();
    if let (Some(r), false) = (&last, status.public) {
        let _ = write!(
            body,
            "<section><h2>Last run <small>{}</small></h2>{}</section>",
            esc(&r.started_at),
            charts::waterfall(&bars(r))
        );
    }
    if let Some(d) = &data {
        runs(&mut body, status, name, &d.runs, &p.span);
        incidents(&mut body, &d.incidents);
        if let Some(k) = &d.kept {
            kept(&mut body, k);
        }
    }
    if let (Some(r), false) = (&last, status.public) {
        let trace = serde_json::to_string_pretty(&r.to_json(&st.scenario)).unwrap_or_default();
        let _ = write!(
            body,
            "<section><details><summary>Trace of the last run</summary><pre class=\"trace\">{}</pre></details></section>",
            esc(&trace)
        );
    }
    Some(status.page(name, &body))
}

fn head(out: &mut String, status: &Status, st: &ScenarioState, data: Option<&Data>) {
    let sc = &st.scenario;
    let state = State::of(st);
    let _ = write!(
        out,
        "<p class=\"crumbs\"><a href=\"{}/\">Overview</a> › {}</p><h1 class=\"st-{s}\"><span class=\"dot\" aria-hidden=\"true\"></span>{} <span class=\"state\">{s}</span></h1><dl class=\"facts\">",
        esc(&status.base),
        esc(&group_of(st, GroupBy::Group)),
        esc(&sc.name),
        s = state.as_str()
    );
    let mut fact = |k: &str, v: String| {
        let _ = write!(out, "<div><dt>{k}</dt><dd>{v}</dd></div>");
    };
    fact("every", esc(&crate::time::fmt_long(sc.interval)));
    if !sc.tags.is_empty() {
        fact("tags", esc(&sc.tags.join(", ")));
    }
    if let Some(d) = data {
        for (label, u) in super::overview::uptime_labels(d.uptime.len())
            .into_iter()
            .zip(&d.uptime)
        {
            fact(
                &format!("uptime {label}"),
                format!(
                    "<span class=\"up\" data-window=\"{label}\">{}</span>",
                    percent(u.ratio)
                ),
            );
        }
    }
    if let Some(r) = st.last() {
        fact(
            "last run",
            format!(
                "{} · {}",
                esc(&r.started_at),
                secs(r.duration.as_secs_f64())
            ),
        );
    }
    if !status.public {
        let alert = match status.app.alerts.firing(&sc.name) {
            None => "no alert configured".to_string(),
            Some(true) => "<span class=\"bad\">firing</span>".to_string(),
            Some(false) => "<span class=\"good\">not firing</span>".to_string(),
        };
        fact("alert", alert);
        if let Some(f) = st.last().as_ref().and_then(|r| r.failure().map(|f| (r, f))) {
            let msg = f.0.redact_text(sc, &f.1.message);
            fact(
                "failing with",
                format!("{}: {}", esc(f.1.reason.as_str()), esc(&msg)),
            );
        }
    }
    out.push_str("</dl>");
    if !status.public {
        let _ = write!(
            out,
            "<p class=\"muted\">As JSON: <a href=\"{b}/api/v1/scenarios/{n}\">state and last run</a> · <a href=\"{b}/api/v1/scenarios/{n}/runs\">runs</a> · <a href=\"{b}/config\">configuration</a></p>",
            b = esc(&status.base),
            n = esc(&url_path(&sc.name))
        );
    }
}

fn spans(out: &mut String, status: &Status, name: &str, current: &str) {
    out.push_str("<p class=\"spans\">Span: ");
    let base = format!("{}/scenario/{}", esc(&status.base), esc(&url_path(name)));
    let all = std::iter::once(("auto", "auto"))
        .chain(super::overview::SPANS.iter().map(|(k, _)| (*k, *k)));
    for (k, label) in all {
        let on = current == k || (k == "auto" && current.is_empty());
        let _ = write!(
            out,
            "<a href=\"{base}?span={k}\"{}>{label}</a> ",
            if on { " aria-current=\"true\"" } else { "" }
        );
    }
    out.push_str("</p>");
}

/// The waterfall of a run: each step on the run's time axis, then its phases in order inside it.
fn bars(r: &RunReport) -> Vec<Bar> {
    let mut out = Vec::new();
    let mut at = 0.0;
    for s in &r.steps {
        let len = s.duration.as_secs_f64();
        out.push(Bar {
            label: format!("{} ({}){}", s.name, s.kind, frames(&s.facts)),
            start_s: at,
            len_s: len,
            class: if s.success { "step" } else { "step fail" },
        });
        let mut p_at = at;
        for (phase, d) in s.timings.iter() {
            let d = d.as_secs_f64();
            out.push(Bar {
                label: format!("  {}", phase.as_str()),
                start_s: p_at,
                len_s: d,
                class: "phase",
            });
            p_at += d;
        }
        at += len;
    }
    out
}

/// What a WebSocket step did with frames, in words (counts only: frame texts stay in the trace).
fn frames(facts: &StepFacts) -> String {
    let StepFacts::Ws(f) = facts else {
        return String::new();
    };
    match (&f.sent, &f.matched) {
        (Some(_), _) => " · frame sent".into(),
        (_, Some(_)) if f.skipped_count > 0 => {
            format!(" · frame matched after {} skipped", f.skipped_count)
        }
        (_, Some(_)) => " · frame matched".into(),
        _ if f.handshake.is_some() => " · handshake".into(),
        _ => String::new(),
    }
}

fn runs(out: &mut String, status: &Status, name: &str, rows: &[RunRow], span: &str) {
    let now = crate::time::now_ms();
    out.push_str("<section><h2>Runs</h2>");
    if rows.is_empty() {
        out.push_str("<p class=\"muted\">No run kept yet.</p></section>");
        return;
    }
    out.push_str("<div class=\"scroll\"><table class=\"runs\"><thead><tr><th scope=\"col\">started</th><th scope=\"col\">result</th><th scope=\"col\">duration</th><th scope=\"col\">reason</th>");
    if !status.public {
        out.push_str("<th scope=\"col\">failed step</th><th scope=\"col\">error</th><th scope=\"col\">trace</th>");
    }
    out.push_str("</tr></thead><tbody>");
    let base = format!("{}/scenario/{}", esc(&status.base), esc(&url_path(name)));
    for r in rows {
        let _ = write!(
            out,
            "<tr class=\"{}\" data-ms=\"{}\"><td title=\"{}\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>",
            if r.success { "ok" } else { "ko" },
            r.started_ms,
            esc(&time(r.started_ms)),
            esc(&ago(r.started_ms, now)),
            if r.success { "passed" } else { "failed" },
            secs(r.duration_s),
            esc(r.reason.as_deref().unwrap_or("")),
        );
        if !status.public {
            let link = if r.has_trace {
                format!("<a href=\"{base}?run={}#kept\">trace</a>", r.id)
            } else {
                "<span class=\"muted\">not kept</span>".into()
            };
            let err: String = r.error.as_deref().unwrap_or("").chars().take(200).collect();
            let _ = write!(
                out,
                "<td>{}</td><td class=\"err\">{}</td><td>{link}</td>",
                esc(r.failed_step.as_deref().unwrap_or("")),
                esc(&err)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    if rows.len() == RUNS_PER_PAGE {
        if let Some(last) = rows.last() {
            let span = if span.is_empty() {
                String::new()
            } else {
                format!("&amp;span={}", esc(span))
            };
            let _ = write!(
                out,
                "<p><a rel=\"next\" href=\"{base}?before={}{span}#runs\">Older runs →</a></p>",
                last.id
            );
        }
    }
    out.push_str("</section>");
}

fn incidents(out: &mut String, list: &[Incident]) {
    out.push_str("<section><h2>Incidents <small>30 days</small></h2>");
    if list.is_empty() {
        out.push_str("<p class=\"muted\">None.</p></section>");
        return;
    }
    out.push_str("<ul class=\"incidents\">");
    for i in list {
        let until = match i.to_ms {
            Some(t) => format!(
                "to {} ({})",
                esc(&time(t)),
                esc(&crate::time::fmt_long(Duration::from_millis(
                    (t - i.from_ms).max(0) as u64
                )))
            ),
            None => "<strong class=\"bad\">ongoing</strong>".into(),
        };
        let _ = write!(
            out,
            "<li><span class=\"bad\">●</span> from {} {until} · {} failed run{} · {}</li>",
            esc(&time(i.from_ms)),
            i.failed_runs,
            if i.failed_runs == 1 { "" } else { "s" },
            esc(i.first_reason.as_deref().unwrap_or("failure"))
        );
    }
    out.push_str("</ul></section>");
}

fn kept(out: &mut String, (row, trace): &(RunRow, Option<serde_json::Value>)) {
    let _ = write!(
        out,
        "<section id=\"kept\"><h2>Run {} <small>{}</small></h2>",
        row.id,
        esc(&time(row.started_ms))
    );
    match trace {
        Some(t) => {
            let text = serde_json::to_string_pretty(t).unwrap_or_default();
            let _ = write!(out, "<pre class=\"trace\">{}</pre>", esc(&text));
        }
        None => out.push_str("<p class=\"muted\">This run's trace was not kept.</p>"),
    }
    out.push_str("</section>");
}
