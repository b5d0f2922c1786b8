//! The generic webhook: one JSON object per alert change, schema version 1 (documented in
//! `docs/scenario-format.md`, "Generic webhook"). Fields are only ever added within a version.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{Attempt, Channel, Ctx};
use crate::alert::{Event, Outcome};
use crate::time::rfc3339;

super::register!("webhook", parse);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    url: Option<String>,
    url_file: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
}

struct Webhook {
    url: url::Url,
    headers: Vec<(String, String)>,
    bearer_token: Option<String>,
}

fn parse(v: serde_norway::Value, dir: &Path) -> Result<Arc<dyn Channel>, String> {
    let k: Keys = super::keys(v, "webhook")?;
    Ok(Arc::new(Webhook {
        url: super::robot_url(k.url, k.url_file, dir, "https://hooks.example.com/sonde")?,
        headers: k.headers.into_iter().collect(),
        bearer_token: super::inline_or_file(
            "bearer_token",
            k.bearer_token,
            k.bearer_token_file,
            dir,
        )?,
    }))
}

impl Channel for Webhook {
    fn send<'a>(&'a self, ctx: &'a Ctx, ev: &'a Event) -> Attempt<'a> {
        let mut req = ctx.http.post(self.url.clone());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(t) = &self.bearer_token {
            req = req.bearer_auth(t);
        }
        let body = body(&ctx.name, ev);
        Box::pin(async move { super::post(req, &body, |_| Outcome::Delivered).await })
    }
}

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
