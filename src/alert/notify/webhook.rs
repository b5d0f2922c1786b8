//! The generic webhook: one JSON object per alert change, schema version 1 (documented in
//! `docs/scenario-format.md`, "Generic webhook"). Fields are only ever added within a version.

use serde_json::{json, Map, Value};

use crate::alert::Event;
use crate::time::rfc3339;

pub fn body(notifier: &str, ev: &Event) -> Value {
    let labels: Map<String, Value> = ev
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "version": "1",
        "notifier": notifier,
        "status": ev.status,
        "repeat": ev.repeat,
        "alertname": crate::alert::ALERTNAME,
        "scenario": ev.scenario,
        "region": ev.region,
        "severity": ev.severity,
        "labels": labels,
        "summary": ev.summary,
        "description": ev.description,
        "runbook_url": ev.runbook_url,
        "starts_at": rfc3339(ev.starts_at),
        "ends_at": ev.ends_at.map(rfc3339),
        "failing_step": ev.step,
        "reason": ev.reason,
        "error": ev.error,
        "latency_seconds": ev.latency.map(|d| d.as_secs_f64()),
        "generator_url": ev.generator_url,
    })
}
