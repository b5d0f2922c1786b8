//! Notifiers (`agent: {alerting: {notifiers:}}`), each with its own queue and task. Every
//! `type:` is one file here — its own keys, its message, its service's verdict — that registers
//! itself with [`register!`] (and its `mod` line below): [`webhook`] (generic JSON), [`slack`]
//! (incoming webhooks), [`dingtalk`] (custom robot), [`wecom`] (企业微信 group robot), [`feishu`]
//! (Feishu/Lark custom bot), [`email`] (SMTP).
//!
//! The keys every type shares (`type`, `send_resolved`, `repeat_interval`, `timeout`,
//! `max_attempts`) are read by `config::alert`; the rest of the notifier's mapping goes to its
//! type's `parse`, which refuses keys it does not know. Configuration sits below this room, so
//! it finds the types through the registry (`config::alert::NotifierType`) and keeps the built
//! channel opaque; [`channel`] turns it back into a [`Channel`] here.

/// Register a notifier type from its file: `super::register!("wecom", parse);`, where `parse`
/// is a [`Parse`]. The only way a type should register: it wraps the channel so that
/// [`channel`] finds it again.
macro_rules! register {
    ($name:literal, $parse:path) => {
        inventory::submit! {
            crate::config::alert::NotifierType {
                name: $name,
                parse: |keys, dir| $parse(keys, dir).map(crate::alert::notify::opaque),
            }
        }
    };
}
pub(crate) use register;

pub mod dingtalk;
pub mod email;
pub mod feishu;
pub mod slack;
pub mod webhook;
pub mod wecom;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::{deliver, AlertMetrics, Event, Outcome, Status};
use crate::config::alert::{ChannelBox, Notifier};

/// Build a notifier of one type from its keys (see `config::alert::NotifierType::parse`).
pub type Parse = fn(serde_norway::Value, &Path) -> Result<Arc<dyn Channel>, String>;

/// What [`register!`] hands to configuration in place of the channel.
struct Opaque(Arc<dyn Channel>);

/// Wrap a type's channel for configuration (used by [`register!`]).
pub fn opaque(c: Arc<dyn Channel>) -> ChannelBox {
    Arc::new(Opaque(c))
}

/// The notifier's channel; `Err` (a sentence) if its type registered without [`register!`].
pub fn channel(n: &Notifier) -> Result<Arc<dyn Channel>, String> {
    n.channel
        .downcast_ref::<Opaque>()
        .map(|o| o.0.clone())
        .ok_or_else(|| {
            format!(
                "notifier type `{}` did not register with notify::register! — a bug in sonde",
                n.kind
            )
        })
}

/// One delivery attempt in flight.
pub type Attempt<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A configured destination. Deliberately not `Debug`: it holds tokens and passwords.
pub trait Channel: Send + Sync {
    fn send<'a>(&'a self, ctx: &'a Ctx, ev: &'a Event) -> Attempt<'a>;
}

/// What every attempt of one notifier shares.
pub struct Ctx {
    pub name: String,
    /// The notifier's HTTP client (its `timeout`, no proxy from the environment).
    pub http: reqwest::Client,
    pub timeout: Duration,
}

/// Deliver this notifier's queue, one message per event, until the hub is gone.
pub async fn run(
    n: Notifier,
    mut rx: mpsc::Receiver<Arc<Event>>,
    metrics: AlertMetrics,
    pending: Arc<std::sync::atomic::AtomicUsize>,
) {
    let ctx = Ctx {
        name: n.name.clone(),
        http: super::client(n.timeout),
        timeout: n.timeout,
    };
    let channel = channel(&n);
    while let Some(ev) = rx.recv().await {
        deliver(&n.name, n.max_attempts, &metrics, || {
            let (ctx, channel, ev) = (&ctx, channel.clone(), ev.clone());
            async move {
                match channel {
                    Ok(c) => c.send(ctx, &ev).await,
                    Err(e) => Outcome::Rejected(e),
                }
            }
        })
        .await;
        pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One attempt of notifier `n` (for tests and tools).
pub async fn send(n: &Notifier, ev: &Event) -> Outcome {
    let ctx = Ctx {
        name: n.name.clone(),
        http: super::client(n.timeout),
        timeout: n.timeout,
    };
    match channel(n) {
        Ok(c) => c.send(&ctx, ev).await,
        Err(e) => Outcome::Rejected(e),
    }
}

/// POST `body` as JSON; a 2xx answer's body goes to the service's `verdict` (chat robots answer
/// 200 with an error code in the body).
pub async fn post(
    req: reqwest::RequestBuilder,
    body: &serde_json::Value,
    verdict: fn(&str) -> Outcome,
) -> Outcome {
    match super::post_json(req, body).await {
        Err(e) => Outcome::Retry(e),
        Ok((status, text)) => match super::classify(status, &text) {
            Outcome::Delivered => verdict(&text),
            o => o,
        },
    }
}

/// Read a type's keys; `what` names the type in errors ("expected the keys of a wecom notifier").
pub fn keys<T: DeserializeOwned>(v: serde_norway::Value, what: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            String::new()
        } else {
            format!("`{at}`: ")
        };
        format!("{at}{} — expected the keys of a {what} notifier", e.inner())
    })
}

/// A value given inline or in a file (`secret` / `secret_file`), trimmed.
pub fn inline_or_file(
    what: &str,
    value: Option<String>,
    file: Option<String>,
    dir: &Path,
) -> Result<Option<String>, String> {
    match (value, file) {
        (Some(v), None) => Ok(Some(v)),
        (None, Some(f)) => {
            let path = dir.join(&f);
            std::fs::read_to_string(&path)
                .map(|s| Some(s.trim().to_string()))
                .map_err(|e| {
                    format!(
                        "cannot read `{what}_file` {}: {} — expected a readable text file",
                        path.display(),
                        crate::config::io_reason(&e)
                    )
                })
        }
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(format!(
            "both `{what}` and `{what}_file` — expected one of them"
        )),
    }
}

/// A robot's webhook URL (`url` or `url_file`), required. The URL holds the robot's token, so
/// the error shows only its scheme and host.
pub fn robot_url(
    url: Option<String>,
    url_file: Option<String>,
    dir: &Path,
    example: &str,
) -> Result<url::Url, String> {
    let u = inline_or_file("url", url, url_file, dir)?.ok_or_else(|| {
        format!("no `url` — expected the webhook URL, such as {example} (or `url_file`)")
    })?;
    url::Url::parse(&u)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            format!("invalid `url` — expected http:// or https:// with a host, such as {example}")
        })
}

/// `[FIRING]`, `[STILL FIRING]` (a reminder) or `[RESOLVED]`, and a mark for chat titles.
pub fn tag(ev: &Event) -> (&'static str, &'static str) {
    match (ev.status, ev.repeat) {
        (Status::Firing, false) => ("🔴", "FIRING"),
        (Status::Firing, true) => ("🔴", "STILL FIRING"),
        (Status::Resolved, _) => ("✅", "RESOLVED"),
    }
}

/// The facts every message lists, as (label, value) in reading order.
pub fn facts(ev: &Event) -> Vec<(&'static str, String)> {
    let mut out = vec![("scenario", ev.scenario.clone())];
    if let Some(r) = &ev.region {
        out.push(("region", r.clone()));
    }
    out.push(("severity", ev.severity.clone()));
    if let Some(s) = &ev.step {
        let why = ev
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        out.push(("failing step", format!("{s}{why}")));
    }
    out.push(("since", crate::time::rfc3339(ev.starts_at)));
    if let Some(end) = ev.ends_at {
        out.push(("resolved at", crate::time::rfc3339(end)));
    }
    out
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut (robots refuse
/// longer messages outright, which would lose the alert).
pub fn truncate(mut text: String, max: usize) -> String {
    const MARK: &str = "\n…";
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_characters_whole_and_marks_the_cut() {
        let t = truncate("告警".repeat(2000), 4096);
        assert!(t.len() <= 4096, "{}", t.len());
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short".into(), 4096), "short");
    }

    #[test]
    fn every_type_registers_under_a_unique_name() {
        let names = crate::config::alert::notifier_type_names();
        for t in ["dingtalk", "email", "feishu", "slack", "webhook", "wecom"] {
            assert!(names.contains(&t), "{t} not registered: {names:?}");
        }
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(unique, names, "a name registered twice");
    }

    #[test]
    fn a_registered_channel_is_found_again_and_a_foreign_one_is_refused() {
        let dir = Path::new(".");
        let keys = serde_norway::from_str("{url: 'http://127.0.0.1:1/h'}").unwrap();
        let t = crate::config::alert::notifier_type("webhook").unwrap();
        let mut n = Notifier {
            name: "hook".into(),
            kind: t.name,
            channel: (t.parse)(keys, dir).unwrap(),
            spec: serde_norway::Value::Null,
            send_resolved: true,
            repeat_interval: None,
            timeout: Duration::from_secs(1),
            max_attempts: 1,
        };
        assert!(channel(&n).is_ok());
        n.channel = Arc::new(0u8);
        assert!(channel(&n).err().unwrap().contains("a bug in sonde"));
    }
}
