//! Slack incoming webhooks (and the many chat servers that accept the same payload: Mattermost,
//! Rocket.Chat, Discord's `/slack` endpoint): a `text` line for notifications and a coloured
//! attachment with the details.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{Attempt, Channel, Ctx};
use crate::alert::{Event, Outcome, Status};

super::register!("slack", parse);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    url: Option<String>,
    url_file: Option<String>,
    channel: Option<String>,
    username: Option<String>,
}

struct Slack {
    url: url::Url,
    channel: Option<String>,
    username: Option<String>,
}

fn parse(v: serde_norway::Value, dir: &Path) -> Result<Arc<dyn Channel>, String> {
    let k: Keys = super::keys(v, "slack")?;
    Ok(Arc::new(Slack {
        url: super::robot_url(
            k.url,
            k.url_file,
            dir,
            "https://hooks.slack.com/services/T000/B000/XXXX",
        )?,
        channel: k.channel,
        username: k.username,
    }))
}

impl Channel for Slack {
    fn send<'a>(&'a self, ctx: &'a Ctx, ev: &'a Event) -> Attempt<'a> {
        let req = ctx.http.post(self.url.clone());
        let body = body(ev, self.channel.as_deref(), self.username.as_deref());
        Box::pin(async move { super::post(req, &body, |_| Outcome::Delivered).await })
    }
}

pub fn title(ev: &Event) -> String {
    let tag = match (ev.status, ev.repeat) {
        (Status::Firing, false) => "FIRING",
        (Status::Firing, true) => "STILL FIRING",
        (Status::Resolved, _) => "RESOLVED",
    };
    format!("[{tag}] {}", ev.summary)
}

pub fn body(ev: &Event, channel: Option<&str>, username: Option<&str>) -> Value {
    let mut fields = vec![
        json!({"title": "scenario", "value": ev.scenario, "short": true}),
        json!({"title": "severity", "value": ev.severity, "short": true}),
    ];
    if let Some(r) = &ev.region {
        fields.push(json!({"title": "region", "value": r, "short": true}));
    }
    if let Some(s) = &ev.step {
        fields.push(json!({"title": "failing step", "value": s, "short": true}));
    }
    if let Some(r) = &ev.runbook_url {
        fields.push(json!({"title": "runbook", "value": r, "short": false}));
    }
    let mut v = json!({
        "text": title(ev),
        "attachments": [{
            "color": if ev.status == Status::Firing { "danger" } else { "good" },
            "title": ev.summary,
            "title_link": ev.generator_url,
            "text": ev.description,
            "fields": fields,
            "footer": "sonde",
        }],
    });
    if let Some(c) = channel {
        v["channel"] = c.into();
    }
    if let Some(u) = username {
        v["username"] = u.into();
    }
    v
}
