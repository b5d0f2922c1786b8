//! The overview: a summary, the filter form, the scenarios of one page in their groups (each
//! with its uptime strip, uptime percentages, sparkline, state and last failure), and the
//! paging links. `/status/list` answers the same view without the page around it, for the
//! script's refresh.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::history::{HistoryRead, LatencyPoint, RunFilter, RunRow, Slot, Uptime};

use super::charts;
use super::html::{ago, esc, percent, secs, url_path};
use super::model::{self, Listed, Query, State};
use super::Status;

/// Slots of a strip.
pub const SLOTS: usize = 90;

/// The windows of the uptime percentages.
pub const WINDOWS: [(&str, Duration); 3] = [
    ("24h", Duration::from_secs(86_400)),
    ("7d", Duration::from_secs(7 * 86_400)),
    ("30d", Duration::from_secs(30 * 86_400)),
];

/// The spans a strip may cover (`?span=`); `auto` is 90 intervals, about one run a slot.
pub const SPANS: [(&str, u64); 5] = [
    ("1h", 3600),
    ("24h", 86_400),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
    ("90d", 90 * 86_400),
];

/// The span of a strip: the one asked for, else (`auto`) 90 intervals — about a run a slot —
/// but at least 90 minutes from the store, whose finest rollup is a minute.
pub fn span_of(query_span: &str, interval: Duration, memory_only: bool) -> Duration {
    let floor = if memory_only { 90 } else { 90 * 60 };
    SPANS
        .iter()
        .find(|(k, _)| *k == query_span)
        .map(|(_, s)| Duration::from_secs(*s))
        .unwrap_or_else(|| (interval * SLOTS as u32).max(Duration::from_secs(floor)))
}

/// What the history says about one listed scenario.
pub struct RowData {
    /// One per [`WINDOWS`]; a single one over everything kept for an in-memory history.
    pub uptime: Vec<Uptime>,
    /// The current or last failing interval's start.
    pub since_ms: Option<i64>,
    pub strip: Vec<Slot>,
    pub spark: Vec<LatencyPoint>,
    pub last_failure: Option<RunRow>,
}

/// The uptimes a row shows: 24h, 7d and 30d from the store; from an in-memory history, one over
/// the runs it keeps (a "30d" figure from 90 runs would mislead).
pub fn uptimes(h: &dyn HistoryRead, name: &str) -> Vec<Uptime> {
    if h.memory_only() {
        vec![h.uptime(name, WINDOWS[2].1)]
    } else {
        WINDOWS.iter().map(|(_, w)| h.uptime(name, *w)).collect()
    }
}

/// The labels of [`uptimes`]' figures.
pub fn uptime_labels(n: usize) -> Vec<&'static str> {
    if n == 1 {
        vec!["kept runs"]
    } else {
        WINDOWS.iter().map(|(l, _)| *l).collect()
    }
}

/// Read the history of the page's rows (blocking: call from `spawn_blocking`).
pub fn read_rows(h: &dyn HistoryRead, rows: &[Listed], span: &str) -> Vec<RowData> {
    let now = crate::time::now_ms();
    rows.iter()
        .map(|r| {
            let name = r.st.scenario.name.as_str();
            let span = span_of(span, r.st.scenario.interval, h.memory_only());
            // The last failure is looked for within the newest incident only: a scan of a
            // healthy scenario's 14 days of runs for a failure that is not there would cost
            // every row of the page.
            let incident = h
                .incidents(name, now - 30 * 86_400_000, 1)
                .into_iter()
                .next();
            let last_failure = incident.as_ref().and_then(|i| {
                let filter = RunFilter {
                    from_ms: Some(i.from_ms),
                    to_ms: i.to_ms,
                    success: Some(false),
                    limit: 1,
                    ..RunFilter::default()
                };
                h.runs(name, &filter).into_iter().next()
            });
            RowData {
                uptime: uptimes(h, name),
                since_ms: incident.map(|i| i.from_ms),
                strip: h.strip(name, SLOTS, span),
                spark: h.latency(name, None, now - span.as_millis() as i64, span / 30),
                last_failure,
            }
        })
        .collect()
}

/// [`read_rows`] in up to [`READERS`] blocking tasks at once (the store reads with a pool of
/// connections; WAL readers do not wait for each other), in the rows' order.
async fn read_parallel(h: Arc<dyn HistoryRead>, rows: Vec<Listed>, span: String) -> Vec<RowData> {
    let per = rows.len().div_ceil(READERS).max(1);
    let mut tasks = Vec::new();
    let mut rows = rows.into_iter();
    loop {
        let chunk: Vec<Listed> = rows.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        let (h, span) = (h.clone(), span.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            read_rows(h.as_ref(), &chunk, &span)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        match t.await {
            Ok(part) => out.extend(part),
            // A reader that panicked: the rows after it show without history, not the page.
            Err(_) => break,
        }
    }
    out
}

/// Blocking readers one overview request uses at most.
const READERS: usize = 4;

/// The list part of the overview (what `/status/list` answers).
pub async fn list(status: &Arc<Status>, raw: Option<&str>) -> String {
    let query = Query::parse(raw);
    let (rows, matched, counts) =
        model::select(status.app.scheduler.states(), status.public, &query);
    let data = match status.history() {
        Some(h) => {
            let span = query.span.clone();
            let names: Vec<Listed> = rows
                .iter()
                .map(|r| Listed {
                    st: r.st.clone(),
                    group: String::new(),
                    state: r.state,
                })
                .collect();
            read_parallel(h, names, span).await
        }
        None => Vec::new(),
    };
    let mut out = String::with_capacity(rows.len() * 4096 + 1024);
    summary(&mut out, &counts, status.history_note());
    let mut current_group: Option<&str> = None;
    for (i, r) in rows.iter().enumerate() {
        if current_group != Some(r.group.as_str()) {
            if current_group.is_some() {
                out.push_str("</section>");
            }
            let (n, failing) = counts
                .groups
                .iter()
                .find(|(g, _, _)| *g == r.group)
                .map(|(_, n, f)| (*n, *f))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<section class=\"group\"><h2>{} <small>{n} scenario{}{}</small></h2>",
                esc(&r.group),
                if n == 1 { "" } else { "s" },
                if failing > 0 {
                    format!(", <span class=\"bad\">{failing} failing</span>")
                } else {
                    String::new()
                }
            );
            current_group = Some(r.group.as_str());
        }
        row(&mut out, status, r, data.get(i));
    }
    if current_group.is_some() {
        out.push_str("</section>");
    } else {
        out.push_str("<p class=\"empty\">No scenario matches.</p>");
    }
    paging(&mut out, status, &query, matched);
    out
}

fn summary(out: &mut String, c: &model::Counts, note: &str) {
    let _ = write!(
        out,
        "<p class=\"summary\" role=\"status\"><strong class=\"{}\">{}</strong> · {} scenarios: <span class=\"good\">{} passing</span>, <span class=\"bad\">{} failing</span>, {} pending{}</p>",
        if c.failing > 0 { "bad" } else { "good" },
        if c.failing > 0 {
            "Some checks are failing"
        } else if c.total == 0 {
            "Nothing to show yet"
        } else {
            "All checks passing"
        },
        c.total,
        c.passing,
        c.failing,
        c.pending,
        note
    );
}

fn row(out: &mut String, status: &Status, r: &Listed, data: Option<&RowData>) {
    let sc = &r.st.scenario;
    let last = r.st.last();
    let href = format!(
        "{}/scenario/{}",
        esc(&status.base),
        esc(&url_path(&sc.name))
    );
    let _ = write!(
        out,
        "<article class=\"row st-{st}\" data-name=\"{name}\"><div class=\"head\"><span class=\"dot\" aria-hidden=\"true\"></span><a href=\"{href}\">{name}</a><span class=\"state\">{st}</span>",
        st = r.state.as_str(),
        name = esc(&sc.name),
    );
    for t in &sc.tags {
        let _ = write!(out, "<span class=\"tag\">{}</span>", esc(t));
    }
    out.push_str("</div>");
    match data {
        Some(d) => {
            out.push_str(&charts::strip(&d.strip, status.public));
            out.push_str("<div class=\"stats\">");
            for (label, u) in uptime_labels(d.uptime.len()).into_iter().zip(&d.uptime) {
                let _ = write!(
                    out,
                    "<span class=\"up\" data-window=\"{label}\"><small>{label}</small> {}</span>",
                    percent(u.ratio)
                );
            }
            out.push_str(&charts::sparkline(&d.spark, 96.0, 24.0));
        }
        None => out.push_str("<div class=\"stats\"><span class=\"muted\">history off</span>"),
    }
    if let Some(l) = &last {
        let _ = write!(
            out,
            "<span class=\"last\" title=\"last run\">{}</span>",
            secs(l.duration.as_secs_f64())
        );
    }
    out.push_str("</div>");
    last_failure(out, status, r, data);
    out.push_str("</article>");
}

/// The last failure stays visible after recovery: from the history, else the current run.
fn last_failure(out: &mut String, status: &Status, r: &Listed, data: Option<&RowData>) {
    let now = crate::time::now_ms();
    let failed = data.and_then(|d| d.last_failure.as_ref());
    let Some(f) = failed else {
        if r.state == State::Failing {
            out.push_str("<p class=\"lastfail now\">failing now</p>");
        }
        return;
    };
    let since = data.and_then(|d| d.since_ms);
    let _ = match (r.state == State::Failing, since) {
        (true, Some(t)) => write!(
            out,
            "<p class=\"lastfail now\">Failing since {}",
            esc(&ago(t, now))
        ),
        (true, None) => write!(out, "<p class=\"lastfail now\">Failing"),
        (false, _) => write!(
            out,
            "<p class=\"lastfail\">Last failure {}",
            esc(&ago(f.started_ms, now))
        ),
    };
    let _ = write!(out, ": {}", esc(f.reason.as_deref().unwrap_or("failure")));
    if let (Some(step), false) = (&f.failed_step, status.public) {
        let _ = write!(out, " in step <code>{}</code>", esc(step));
    }
    if let (Some(e), false) = (&f.error, status.public) {
        let short: String = e.chars().take(160).collect();
        let _ = write!(out, " — <span class=\"err\">{}</span>", esc(&short));
    }
    out.push_str("</p>");
}

fn paging(out: &mut String, status: &Status, query: &Query, matched: usize) {
    let pages = matched.div_ceil(model::PER_PAGE).max(1);
    let page = query.page + 1;
    if pages <= 1 {
        return;
    }
    let link = |p: usize| format!("{}/?{}", esc(&status.base), esc(&query.to_query(p)));
    let _ = write!(out, "<nav class=\"pages\" aria-label=\"pages\">");
    if page > 1 {
        let _ = write!(
            out,
            "<a rel=\"prev\" href=\"{}\">← previous</a>",
            link(page - 1)
        );
    }
    let _ = write!(
        out,
        "<span>page {page} of {pages} ({matched} scenarios)</span>"
    );
    if page < pages {
        let _ = write!(
            out,
            "<a rel=\"next\" href=\"{}\">next →</a>",
            link(page + 1)
        );
    }
    out.push_str("</nav>");
}

/// The whole overview page.
pub async fn page(status: &Arc<Status>, raw: Option<&str>) -> String {
    let query = Query::parse(raw);
    let list = list(status, raw).await;
    let mut body = String::new();
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"{base}/\" role=\"search\"><label>Search <input type=\"search\" name=\"q\" value=\"{q}\" placeholder=\"name, group or tag\" autocomplete=\"off\"></label><label>State <select name=\"state\">",
        base = esc(&status.base),
        q = esc(&query.q)
    );
    for (v, label) in [
        ("", "any"),
        ("failing", "failing"),
        ("passing", "passing"),
        ("pending", "pending"),
    ] {
        let sel = query.state.map(|s| s.as_str()).unwrap_or("") == v;
        let _ = write!(
            body,
            "<option value=\"{v}\"{}>{label}</option>",
            if sel { " selected" } else { "" }
        );
    }
    body.push_str("</select></label><label>Group by <select name=\"by\">");
    for (v, label) in [("group", "group"), ("tag", "tag"), ("region", "region")] {
        let sel = query.by().as_str() == v;
        let _ = write!(
            body,
            "<option value=\"{v}\"{}>{label}</option>",
            if sel { " selected" } else { "" }
        );
    }
    body.push_str("</select></label><label>Strip <select name=\"span\">");
    let spans = std::iter::once("auto").chain(SPANS.iter().map(|(k, _)| *k));
    for v in spans {
        let sel = query.span == v || (v == "auto" && !SPANS.iter().any(|(k, _)| *k == query.span));
        let _ = write!(
            body,
            "<option value=\"{v}\"{}>{}</option>",
            if sel { " selected" } else { "" },
            if v == "auto" { "auto" } else { v }
        );
    }
    if let Some(g) = &query.group {
        let _ = write!(
            body,
            "</select></label><input type=\"hidden\" name=\"group\" value=\"{}\">",
            esc(g)
        );
    } else {
        body.push_str("</select></label>");
    }
    let _ = write!(
        body,
        "<button type=\"submit\">Apply</button></form><div id=\"list\" data-refresh=\"{base}/status/list\" aria-live=\"polite\">{list}</div><div id=\"tip\" role=\"tooltip\" hidden></div>",
        base = esc(&status.base)
    );
    if !status.public {
        // What runs here, for the operator (the source's credentials redacted).
        let _ = write!(
            body,
            "<footer class=\"muted\">sonde {} · configuration: {}</footer>",
            env!("CARGO_PKG_VERSION"),
            esc(&crate::redact::text(&status.app.source.describe()))
        );
    }
    status.page(&status.site, &body)
}
