//! Chat and webhook notifiers (`agent: {alerting: {notifiers:}}`), each with its own queue and
//! task: [`webhook`] (generic JSON), [`slack`] (incoming webhooks), [`dingtalk`] (custom robot).

pub mod dingtalk;
pub mod slack;
pub mod webhook;

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{deliver, AlertMetrics, Event, Outcome};
use crate::config::alert::{Notifier, NotifierKind};

/// Deliver this notifier's queue, one message per event, until the hub is gone.
pub async fn run(
    n: Notifier,
    mut rx: mpsc::Receiver<Arc<Event>>,
    metrics: AlertMetrics,
    pending: Arc<std::sync::atomic::AtomicUsize>,
) {
    let client = super::client(n.timeout);
    while let Some(ev) = rx.recv().await {
        deliver(&n.name, n.max_attempts, &metrics, || {
            let client = client.clone();
            let (n, ev) = (&n, ev.clone());
            async move { send(&client, n, &ev).await }
        })
        .await;
        pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One attempt.
pub async fn send(client: &reqwest::Client, n: &Notifier, ev: &Event) -> Outcome {
    let (req, body) = match &n.kind {
        NotifierKind::Webhook {
            headers,
            bearer_token,
        } => {
            let mut req = client.post(n.url.clone());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            if let Some(t) = bearer_token {
                req = req.bearer_auth(t);
            }
            (req, webhook::body(&n.name, ev))
        }
        NotifierKind::Slack { channel, username } => (
            client.post(n.url.clone()),
            slack::body(ev, channel.as_deref(), username.as_deref()),
        ),
        NotifierKind::DingTalk {
            secret,
            keyword,
            at_mobiles,
            at_all,
        } => {
            let url = dingtalk::signed_url(&n.url, secret.as_deref(), crate::time::now_ms());
            (
                client.post(url),
                dingtalk::body(ev, keyword.as_deref(), at_mobiles, *at_all),
            )
        }
    };
    match super::post_json(req, &body).await {
        Err(e) => Outcome::Retry(e),
        Ok((status, text)) => match (&n.kind, super::classify(status, &text)) {
            (NotifierKind::DingTalk { .. }, Outcome::Delivered) => dingtalk::outcome(&text),
            (_, o) => o,
        },
    }
}
