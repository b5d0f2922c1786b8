//! Alertmanager API v2: `POST {url}/api/v2/alerts` with a JSON list of alerts, as Prometheus
//! sends them — `labels`, `annotations` (summary, description, runbook_url), `startsAt`,
//! `endsAt` and `generatorURL`. Every configured Alertmanager gets every alert (an Alertmanager
//! cluster deduplicates). While firing, `endsAt` is 4 resend intervals ahead and the alert is
//! re-sent every interval, so it stays active while sonde runs and expires if sonde stops; on
//! resolve `endsAt` is the resolve time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::{deliver, AlertMetrics, Event, Outcome, Status};
use crate::config::alert::AlertmanagerTarget;
use crate::time::rfc3339;

/// At most this many alerts per request.
const MAX_BATCH: usize = 64;

/// The API v2 form of one alert.
pub fn alert_json(ev: &Event, resend_interval: Duration, now: SystemTime) -> Value {
    let labels: Map<String, Value> = ev
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut annotations = Map::new();
    annotations.insert("summary".into(), ev.summary.clone().into());
    annotations.insert("description".into(), ev.description.clone().into());
    if let Some(r) = &ev.runbook_url {
        annotations.insert("runbook_url".into(), r.clone().into());
    }
    let ends_at = match (ev.status, ev.ends_at) {
        (Status::Resolved, Some(t)) => t,
        _ => now + resend_interval * 4,
    };
    json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(ev.starts_at),
        "endsAt": rfc3339(ends_at),
        "generatorURL": ev.generator_url,
    })
}

/// The endpoint under an Alertmanager's base URL (which may have a path prefix).
pub fn endpoint(base: &url::Url) -> String {
    format!("{}/api/v2/alerts", base.as_str().trim_end_matches('/'))
}

/// Deliver this Alertmanager's queue until the hub is gone.
pub async fn run(
    name: String,
    target: AlertmanagerTarget,
    resend_interval: Duration,
    mut rx: mpsc::Receiver<Arc<Event>>,
    metrics: AlertMetrics,
    pending: Arc<std::sync::atomic::AtomicUsize>,
) {
    let client = super::client(target.timeout);
    let url = endpoint(&target.url);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        deliver(&name, target.max_attempts, &metrics, || {
            let body = Value::Array(
                batch
                    .iter()
                    .map(|e| alert_json(e, resend_interval, SystemTime::now()))
                    .collect(),
            );
            let mut req = client.post(&url);
            if let Some(t) = &target.bearer_token {
                req = req.bearer_auth(t);
            }
            if let Some((u, p)) = &target.basic_auth {
                req = req.basic_auth(u, Some(p));
            }
            async move {
                match super::post_json(req, &body).await {
                    Ok((status, text)) => super::classify(status, &text),
                    Err(e) => Outcome::Retry(e),
                }
            }
        })
        .await;
        pending.fetch_sub(batch.len(), std::sync::atomic::Ordering::SeqCst);
    }
}
