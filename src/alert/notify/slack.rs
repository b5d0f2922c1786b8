//! Slack incoming webhooks (and the many chat servers that accept the same payload: Mattermost,
//! Rocket.Chat, Discord's `/slack` endpoint): a `text` line for notifications and a coloured
//! attachment with the details.

use serde_json::{json, Value};

use crate::alert::{Event, Status};

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
