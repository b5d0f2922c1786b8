//! The region × scenario grid: when agents in many regions are scraped by (or push to)
//! Prometheus, Thanos, Mimir or VictoriaMetrics, the cross-region view is read from there with
//! PromQL — the distributed store already exists; sonde does not build a cluster of its own.
//!
//! Per (scenario, region): the state now (`sonde_scenario_success`), the uptime over the window
//! (`avg_over_time` of the same series: the share of scrapes that saw the scenario passing) and
//! the p95 of whole runs (`sonde_scenario_duration_seconds`), and in the cell's tooltip the p95 of
//! each step (`sonde_step_duration_seconds`), which says which step a slow region spends its
//! time in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use serde_json::Value;

use super::html::{esc, percent, secs, url_path};
use super::Status;

/// Scenarios (rows) per page of the grid.
const ROWS_PER_PAGE: usize = 100;

/// A Prometheus-compatible query API.
pub struct Prometheus {
    base: url::Url,
    client: reqwest::Client,
}

/// The windows the grid offers (`?window=`).
const WINDOWS: [&str; 3] = ["1h", "24h", "7d"];

/// The PromQL the grid shows, for a window like `24h`: (what, query).
pub fn queries(window: &str) -> [(&'static str, String); 3] {
    [
        ("up", "min by (scenario, region) (sonde_scenario_success)".to_string()),
        (
            "uptime",
            format!("avg by (scenario, region) (avg_over_time(sonde_scenario_success[{window}]))"),
        ),
        (
            "p95",
            format!("histogram_quantile(0.95, sum by (le, scenario, region) (rate(sonde_scenario_duration_seconds_bucket[{window}])))"),
        ),
    ]
}

/// The per-step p95 the grid's tooltips show, for a window like `24h`.
pub fn step_query(window: &str) -> String {
    format!("histogram_quantile(0.95, sum by (le, scenario, region, step) (rate(sonde_step_duration_seconds_bucket[{window}])))")
}

/// Per (scenario, region): one query's value.
type CellMap = BTreeMap<(String, String), f64>;

/// Per (scenario, region): each step's p95, in step order by name.
type StepMap = BTreeMap<(String, String), Vec<(String, f64)>>;

impl Prometheus {
    pub fn new(base: url::Url) -> Prometheus {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Prometheus { base, client }
    }

    /// An instant vector as (scenario, region) → value.
    /// `at`: Unix seconds to evaluate at (default: now).
    pub async fn query(&self, promql: &str, at: Option<f64>) -> Result<CellMap, String> {
        let rows = self.vector(promql, at).await?;
        Ok(rows
            .into_iter()
            .map(|(label, v)| ((label("scenario"), label("region")), v))
            .collect())
    }

    /// An instant vector by (scenario, region), then by `step`.
    pub async fn query_steps(&self, promql: &str, at: Option<f64>) -> Result<StepMap, String> {
        let mut out = StepMap::new();
        for (label, v) in self.vector(promql, at).await? {
            out.entry((label("scenario"), label("region")))
                .or_default()
                .push((label("step"), v));
        }
        Ok(out)
    }

    /// The samples of an instant query, each with a lookup of its labels.
    async fn vector(
        &self,
        promql: &str,
        at: Option<f64>,
    ) -> Result<Vec<(impl Fn(&str) -> String, f64)>, String> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| "the Prometheus URL cannot be a base".to_string())?
            .pop_if_empty()
            .extend(["api", "v1", "query"]);
        url.query_pairs_mut().append_pair("query", promql);
        if let Some(t) = at {
            url.query_pairs_mut()
                .append_pair("time", &format!("{t:.3}"));
        }
        let answer = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("query failed: {}", crate::error_chain::error_chain(&e)))?;
        let code = answer.status();
        let bytes = answer
            .bytes()
            .await
            .map_err(|e| format!("reading the answer ({code}): {e}"))?;
        let mut body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("answer is not JSON ({code}): {e}"))?;
        if body["status"] != "success" {
            return Err(format!(
                "Prometheus answered {code}: {}",
                body["error"].as_str().unwrap_or("no error text")
            ));
        }
        let Value::Array(results) = body["data"]["result"].take() else {
            return Ok(Vec::new());
        };
        Ok(results
            .into_iter()
            .filter_map(|r| {
                let v = r["value"][1].as_str()?.parse::<f64>().ok()?;
                let label = move |k: &str| r["metric"][k].as_str().unwrap_or("").to_string();
                Some((label, v))
            })
            .collect())
    }
}

/// The grid page's body.
pub async fn page(status: &Status, raw: Option<&str>) -> String {
    let Some(prom) = &status.prometheus else {
        return "<p class=\"muted\">No query API configured: start sonde with <code>--status.prometheus-url</code>.</p>".into();
    };
    let mut window = "24h".to_string();
    let mut q = String::new();
    let mut page = 0usize;
    // `at`: the grid as it was at this Unix time (a link to a moment, and what tests compare).
    let mut at: Option<f64> = None;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "window" if WINDOWS.contains(&v.as_ref()) => window = v.into_owned(),
            "q" => q = v.chars().take(200).collect(),
            "page" => page = v.parse::<usize>().unwrap_or(1).clamp(1, 100_000) - 1,
            "at" => at = v.parse::<f64>().ok().filter(|t| t.is_finite() && *t > 0.0),
            _ => {}
        }
    }
    let qs = queries(&window);
    let steps_promql = step_query(&window);
    let (results, steps) = futures_util::future::join(
        futures_util::future::join_all(qs.iter().map(|(_, p)| prom.query(p, at))),
        prom.query_steps(&steps_promql, at),
    )
    .await;
    let mut out = String::new();
    let _ = write!(
        out,
        "<h1>Regions</h1><form class=\"filters\" method=\"get\" role=\"search\"><label>Search <input type=\"search\" name=\"q\" value=\"{}\"></label><label>Window <select name=\"window\">",
        esc(&q)
    );
    for w in WINDOWS {
        let _ = write!(
            out,
            "<option{}>{w}</option>",
            if w == window { " selected" } else { "" }
        );
    }
    out.push_str("</select></label><button type=\"submit\">Apply</button></form>");
    let mut maps = Vec::new();
    for ((what, promql), r) in qs.iter().zip(results) {
        match r {
            Ok(m) => maps.push(m),
            Err(e) => {
                let _ = write!(
                    out,
                    "<p class=\"lastfail now\">{what}: <code>{}</code>: {}</p>",
                    esc(promql),
                    esc(&e)
                );
                maps.push(BTreeMap::new());
            }
        }
    }
    let steps = steps.unwrap_or_else(|e| {
        let _ = write!(
            out,
            "<p class=\"lastfail now\">step p95: <code>{}</code>: {}</p>",
            esc(&steps_promql),
            esc(&e)
        );
        StepMap::new()
    });
    grid(&mut out, status, (&maps, &steps), &q, page, &window);
    let _ = write!(out, "<details><summary>PromQL</summary><pre>");
    for (what, promql) in &qs {
        let _ = writeln!(out, "{what}: {}", esc(promql));
    }
    let _ = writeln!(out, "step p95: {}", esc(&steps_promql));
    out.push_str("</pre></details>");
    out
}

fn grid(
    out: &mut String,
    status: &Status,
    (maps, steps): (&[CellMap], &StepMap),
    q: &str,
    page: usize,
    window: &str,
) {
    let keys = maps.iter().flat_map(|m| m.keys());
    let regions: BTreeSet<&str> = keys.clone().map(|(_, r)| r.as_str()).collect();
    let lower = q.to_lowercase();
    let scenarios: BTreeSet<&str> = keys
        .map(|(s, _)| s.as_str())
        .filter(|s| s.to_lowercase().contains(&lower))
        .collect();
    if scenarios.is_empty() {
        out.push_str("<p class=\"empty\">No series: is Prometheus scraping sonde's agents?</p>");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"grid\"><thead><tr><th scope=\"col\">scenario</th>",
    );
    for r in &regions {
        let _ = write!(
            out,
            "<th scope=\"col\">{}</th>",
            esc(if r.is_empty() { "(none)" } else { r })
        );
    }
    out.push_str("</tr></thead><tbody>");
    let get = |i: usize, s: &str, r: &str| {
        maps.get(i)
            .and_then(|m| m.get(&(s.to_string(), r.to_string())))
            .copied()
    };
    for s in scenarios
        .iter()
        .skip(page * ROWS_PER_PAGE)
        .take(ROWS_PER_PAGE)
    {
        let local = status.app.scheduler.state(s).is_some();
        let name = if local {
            format!(
                "<a href=\"{}/scenario/{}\">{}</a>",
                esc(&status.base),
                esc(&url_path(s)),
                esc(s)
            )
        } else {
            esc(s)
        };
        let _ = write!(out, "<tr><th scope=\"row\">{name}</th>");
        for r in &regions {
            let (up, uptime, p95) = (get(0, s, r), get(1, s, r), get(2, s, r));
            let class = match up {
                None => "n",
                Some(v) if v >= 1.0 => "u",
                Some(_) => "d",
            };
            let attr = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
            let (data_steps, title) = step_attrs(steps.get(&(s.to_string(), r.to_string())));
            let _ = write!(
                out,
                "<td class=\"cell {class}\" data-scenario=\"{}\" data-region=\"{}\" data-uptime=\"{}\" data-p95=\"{}\" data-steps=\"{}\" title=\"{}\"><span>{}</span><small>{}</small></td>",
                esc(s),
                esc(r),
                attr(uptime),
                attr(p95.filter(|v| v.is_finite())),
                esc(&data_steps),
                esc(&title),
                percent(uptime),
                p95.filter(|v| v.is_finite()).map(secs).unwrap_or_else(|| "–".into())
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    let pages = scenarios.len().div_ceil(ROWS_PER_PAGE);
    if pages > 1 {
        let link = |p: usize| {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            s.append_pair("window", window)
                .append_pair("q", q)
                .append_pair("page", &p.to_string());
            esc(&format!("?{}", s.finish()))
        };
        out.push_str("<nav class=\"pages\">");
        if page > 0 {
            let _ = write!(out, "<a href=\"{}\">← previous</a>", link(page));
        }
        let _ = write!(out, "<span>page {} of {pages}</span>", page + 1);
        if page + 1 < pages {
            let _ = write!(out, "<a href=\"{}\">next →</a>", link(page + 2));
        }
        out.push_str("</nav>");
    }
}

/// A cell's per-step p95s: as data (JSON, for scripts and the browser test) and as a tooltip.
fn step_attrs(steps: Option<&Vec<(String, f64)>>) -> (String, String) {
    let finite: Vec<&(String, f64)> = steps
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.is_finite())
        .collect();
    if finite.is_empty() {
        return (String::new(), String::new());
    }
    let data = serde_json::Value::Object(
        finite
            .iter()
            .map(|(step, v)| (step.clone(), serde_json::json!(v)))
            .collect(),
    )
    .to_string();
    let tip: Vec<String> = finite
        .iter()
        .map(|(step, v)| format!("{step} {}", secs(*v)))
        .collect();
    (data, format!("p95 per step: {}", tip.join(" · ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_p95s_become_data_and_a_tooltip_without_nan() {
        let steps = vec![
            ("login".to_string(), 0.012),
            ("send".to_string(), f64::NAN),
            ("<b>x</b>".to_string(), 0.5),
        ];
        let (data, title) = step_attrs(Some(&steps));
        let parsed: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(parsed["login"], 0.012);
        assert_eq!(parsed["<b>x</b>"], 0.5);
        assert!(parsed.get("send").is_none(), "{data}");
        assert!(title.starts_with("p95 per step: "), "{title}");
        assert!(
            title.contains("login") && !title.contains("send"),
            "{title}"
        );
        assert_eq!(step_attrs(None), (String::new(), String::new()));
    }
}
