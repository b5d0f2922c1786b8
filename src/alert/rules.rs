//! `sonde rules`: a Prometheus rule file from the scenarios' `alert:` blocks, for teams that
//! alert through Prometheus rather than through sonde itself.
//!
//! - per scenario: `max by (scenario, region) (sonde_scenario_success{scenario="…"}) == 0` for
//!   `interval × after` (one alert per failing region; the `for:` leaves one interval of slack
//!   for scrape and evaluation delays), alertname `SondeScenarioFailing` as sonde's own alerts;
//! - with `alert.regions: {min_failing: M}`: the M-of-K form of
//!   `examples/prometheus/sonde-rules.yml`, alertname `SondeScenarioFailingInManyRegions`.
//!
//! Both count a region once: the replicas of an HA pair (`--replica`), an agent both scraped
//! and pushing, or scraped by two Prometheus servers, are one region, failing when every series
//! reporting for it fails (`max`), so one broken replica does not page and one alert fires however
//! many replicas report. The scenario's labels, aggregated away, come back as rule labels.
//!
//! Annotations are the block's templates rendered with Prometheus template references:
//! `{{ region }}` becomes `{{ $labels.region }}` (M-of-K: `{{ $value }} regions`). `step`,
//! `reason`, `error` and `latency` are not known to Prometheus: a template that uses them is
//! replaced by the default one (rendered the same way), rather than leaving holes in the text.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map};

use super::template::{render, Context};
use crate::config::alert::{DEFAULT_DESCRIPTION, DEFAULT_SUMMARY};
use crate::config::scenario::Config;

pub const MANY_REGIONS_ALERTNAME: &str = "SondeScenarioFailingInManyRegions";

/// Variables only a run can fill.
const RUN_VARIABLES: [&str; 4] = ["step", "reason", "error", "latency"];

/// `src`, or `fallback` when `src` uses a variable Prometheus cannot fill.
fn for_prometheus<'a>(src: &'a str, fallback: &'a str) -> &'a str {
    let env = minijinja::Environment::new();
    let uses_run = env.template_from_str(src).is_ok_and(|t| {
        t.undeclared_variables(false)
            .iter()
            .any(|v| RUN_VARIABLES.contains(&v.as_str()))
    });
    if uses_run {
        fallback
    } else {
        src
    }
}

/// A Prometheus duration (`90s`, `1500ms`).
pub fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        let s = ms / 1000;
        if s % 3600 == 0 && s > 0 {
            format!("{}h", s / 3600)
        } else if s % 60 == 0 && s > 0 {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    } else {
        format!("{ms}ms")
    }
}

fn quote(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', r#"\""#)
}

/// The rule file, as YAML. `None` when no scenario has an `alert:` block.
pub fn generate(config: &Config) -> Option<String> {
    let defaults = config
        .agent
        .alerting
        .as_ref()
        .map(|a| a.defaults.clone())
        .unwrap_or_default();
    let mut scenarios: Vec<_> = config
        .scenarios
        .iter()
        .filter(|s| s.alert.is_some())
        .collect();
    if scenarios.is_empty() {
        return None;
    }
    scenarios.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rules = Vec::new();
    for sc in scenarios {
        let rule = sc.alert.as_ref().expect("filtered").resolve(&defaults);
        let selector = format!("sonde_scenario_success{{scenario=\"{}\"}}", quote(&sc.name));
        let many = rule.min_failing_regions;
        let (alertname, expr, region) = match many {
            Some(m) => (
                MANY_REGIONS_ALERTNAME,
                format!("count by (scenario) (max by (scenario, region) ({selector}) == 0) >= {m}"),
                "{{ $value }} regions",
            ),
            None => (
                super::ALERTNAME,
                format!("max by (scenario, region) ({selector}) == 0"),
                "{{ $labels.region }}",
            ),
        };
        let mut labels: BTreeMap<String, String> = sc.labels.iter().cloned().collect();
        labels.extend(rule.labels.iter().cloned());
        labels.insert("severity".into(), rule.severity.clone());
        let ctx = Context {
            scenario: sc.name.clone(),
            region: region.into(),
            severity: rule.severity.clone(),
            status: "firing".into(),
            labels: labels.clone(),
            ..Default::default()
        };
        let mut annotations = Map::new();
        let summary = for_prometheus(&rule.summary, DEFAULT_SUMMARY);
        let description = for_prometheus(&rule.description, DEFAULT_DESCRIPTION);
        annotations.insert("summary".into(), render(summary, &ctx).into());
        annotations.insert("description".into(), render(description, &ctx).into());
        if let Some(r) = &rule.runbook_url {
            annotations.insert("runbook_url".into(), render(r, &ctx).into());
        }
        rules.push(json!({
            "alert": alertname,
            "expr": expr,
            "for": prom_duration(sc.interval * rule.after),
            "labels": labels,
            "annotations": annotations,
        }));
    }
    let doc = json!({"groups": [{"name": "sonde-scenario-alerts", "rules": rules}]});
    let yaml = serde_norway::to_string(&doc).ok()?;
    Some(format!(
        "# Generated by `sonde rules` from the scenarios' alert: blocks; regenerate, do not edit.\n{yaml}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadOptions};

    #[test]
    fn durations_read_as_prometheus_writes_them() {
        assert_eq!(prom_duration(Duration::from_secs(90)), "90s");
        assert_eq!(prom_duration(Duration::from_secs(120)), "2m");
        assert_eq!(prom_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn per_region_and_m_of_k_rules() {
        let yaml = r#"scenarios:
  - scenario: api
    interval: 30s
    labels: {team: web}
    http: {url: "http://127.0.0.1:1/"}
    alert: {after: 3, severity: page, labels: {owner: me}}
  - scenario: shop
    interval: 1m
    labels: {team: shop}
    http: {url: "http://127.0.0.1:1/"}
    alert: {after: 2, regions: {min_failing: 2}, summary: "{{ scenario }} down in {{ region }}", description: "{{ step }}: {{ error }}"}
  - scenario: quiet
    http: {url: "http://127.0.0.1:1/"}
"#;
        let cfg = load_str("t.yaml", yaml, &LoadOptions::default()).unwrap();
        let out = generate(&cfg).unwrap();
        let v: serde_json::Value = serde_norway::from_str(&out).unwrap();
        let rules = v["groups"][0]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2, "{out}");
        assert_eq!(rules[0]["alert"], "SondeScenarioFailing");
        assert_eq!(
            rules[0]["expr"],
            "max by (scenario, region) (sonde_scenario_success{scenario=\"api\"}) == 0"
        );
        assert_eq!(rules[0]["for"], "90s");
        assert_eq!(
            rules[0]["labels"],
            json!({"owner": "me", "severity": "page", "team": "web"})
        );
        assert_eq!(
            rules[0]["annotations"]["summary"],
            "api fails in {{ $labels.region }}"
        );
        assert_eq!(rules[1]["alert"], MANY_REGIONS_ALERTNAME);
        assert_eq!(
            rules[1]["expr"],
            "count by (scenario) (max by (scenario, region) (sonde_scenario_success{scenario=\"shop\"}) == 0) >= 2"
        );
        assert_eq!(rules[1]["for"], "2m");
        assert_eq!(
            rules[1]["labels"],
            json!({"severity": "warning", "team": "shop"})
        );
        assert_eq!(
            rules[1]["annotations"]["summary"],
            "shop down in {{ $value }} regions"
        );
    }
}
