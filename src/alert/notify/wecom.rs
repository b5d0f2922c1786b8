//! WeCom group robots (企业微信群机器人): a `markdown` message POSTed to the robot's webhook
//! (`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY`; the key is the only credential,
//! so the URL is a secret). WeCom refuses markdown content over 4096 bytes (UTF-8), so longer
//! text is cut. `mentioned_list` (user ids) become `<@userid>` mentions in the text, the form
//! WeCom's markdown understands. WeCom answers 200 with `{"errcode": 0}` on success; 45009 (API
//! frequency limit) is retried, any other errcode is a refusal.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{Attempt, Channel, Ctx};
use crate::alert::{Event, Outcome, Status};

super::register!("wecom", parse);

/// WeCom's limit on `markdown.content`, in bytes.
pub const MAX_CONTENT_BYTES: usize = 4096;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    url: Option<String>,
    url_file: Option<String>,
    #[serde(default)]
    mentioned_list: Vec<String>,
}

struct WeCom {
    url: url::Url,
    mentioned_list: Vec<String>,
}

fn parse(v: serde_norway::Value, dir: &Path) -> Result<Arc<dyn Channel>, String> {
    let k: Keys = super::keys(v, "wecom")?;
    Ok(Arc::new(WeCom {
        url: super::robot_url(
            k.url,
            k.url_file,
            dir,
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY",
        )?,
        mentioned_list: k.mentioned_list,
    }))
}

impl Channel for WeCom {
    fn send<'a>(&'a self, ctx: &'a Ctx, ev: &'a Event) -> Attempt<'a> {
        let req = ctx.http.post(self.url.clone());
        let body = body(ev, &self.mentioned_list);
        Box::pin(async move { super::post(req, &body, outcome).await })
    }
}

pub fn body(ev: &Event, mentioned: &[String]) -> Value {
    let (_, tag) = super::tag(ev);
    // WeCom's markdown colours: warning (orange), info (green), comment (grey).
    let colour = if ev.status == Status::Firing {
        "warning"
    } else {
        "info"
    };
    let head = format!(
        "## <font color=\"{colour}\">[{tag}]</font> {}\n",
        ev.summary
    );
    let mut tail = String::new();
    for (label, value) in super::facts(ev) {
        tail.push_str(&format!("> **{label}**: {value}\n"));
    }
    tail.push_str(&format!("\n[details]({})", ev.generator_url));
    if let Some(r) = &ev.runbook_url {
        tail.push_str(&format!(" · [runbook]({r})"));
    }
    if ev.status == Status::Firing && !mentioned.is_empty() {
        tail.push('\n');
        tail.extend(mentioned.iter().map(|m| format!("<@{m}>")));
    }
    // The description is what gets cut when the whole would pass the limit: the facts, the
    // links and the mentions always arrive.
    let room = MAX_CONTENT_BYTES.saturating_sub(head.len() + tail.len() + 1);
    let description = super::truncate(ev.description.clone(), room);
    let content = super::truncate(format!("{head}{description}\n{tail}"), MAX_CONTENT_BYTES);
    json!({"msgtype": "markdown", "markdown": {"content": content}})
}

/// WeCom's verdict in a 200 answer.
pub fn outcome(body: &str) -> Outcome {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match v["errcode"].as_i64() {
        Some(0) => Outcome::Delivered,
        Some(45009) => Outcome::Retry(format!("WeCom: API frequency limit: {body}")),
        Some(code) => Outcome::Rejected(format!(
            "WeCom refused the message (errcode {code}: {}) — check the robot's webhook key",
            v["errmsg"].as_str().unwrap_or("")
        )),
        None => Outcome::Rejected(format!(
            "WeCom answered something else than {{\"errcode\":…}}: {}",
            body.chars().take(200).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_decide_the_outcome() {
        assert_eq!(
            outcome(r#"{"errcode":0,"errmsg":"ok"}"#),
            Outcome::Delivered
        );
        assert!(matches!(
            outcome(r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            outcome(r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#),
            Outcome::Rejected(_)
        ));
        assert!(matches!(outcome("<html>"), Outcome::Rejected(_)));
    }
}
