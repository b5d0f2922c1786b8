//! Feishu / Lark custom bots (飞书自定义机器人): an `interactive` card (red header when firing,
//! green when resolved) POSTed to the bot's webhook
//! (`https://open.feishu.cn/open-apis/bot/v2/hook/TOKEN`, or `open.larksuite.com` for Lark).
//! A bot has up to three security settings, all supported: custom keywords (the message must
//! contain one: `keyword` is put in the title and the text when they lack it), signature
//! verification (`secret`: the body gets `timestamp`, in seconds, and `sign` =
//! base64(HMAC-SHA256(key = timestamp + "\n" + secret, message = empty)) — Feishu's documented
//! algorithm uses the string as the *key*, unlike DingTalk), or an IP allowlist. Feishu refuses
//! a timestamp more than an hour off. It answers 200 with `{"code": 0}` (older deployments:
//! `{"StatusCode": 0}`); 11232 (rate limited) is retried, any other code is a refusal.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::{Attempt, Channel, Ctx};
use crate::alert::{Event, Outcome, Status};

super::register!("feishu", parse);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    url: Option<String>,
    url_file: Option<String>,
    secret: Option<String>,
    secret_file: Option<String>,
    keyword: Option<String>,
}

struct Feishu {
    url: url::Url,
    secret: Option<String>,
    keyword: Option<String>,
}

fn parse(v: serde_norway::Value, dir: &Path) -> Result<Arc<dyn Channel>, String> {
    let k: Keys = super::keys(v, "feishu")?;
    let keyword = k.keyword.filter(|k| !k.is_empty());
    Ok(Arc::new(Feishu {
        url: super::robot_url(
            k.url,
            k.url_file,
            dir,
            "https://open.feishu.cn/open-apis/bot/v2/hook/TOKEN",
        )?,
        secret: super::inline_or_file("secret", k.secret, k.secret_file, dir)?,
        keyword,
    }))
}

impl Channel for Feishu {
    fn send<'a>(&'a self, ctx: &'a Ctx, ev: &'a Event) -> Attempt<'a> {
        let req = ctx.http.post(self.url.clone());
        let mut body = body(ev, self.keyword.as_deref());
        if let Some(secret) = &self.secret {
            let ts = crate::time::now_ms() / 1000;
            body["timestamp"] = ts.to_string().into();
            body["sign"] = sign(secret, ts).into();
        }
        Box::pin(async move { super::post(req, &body, outcome).await })
    }
}

/// `sign` for `timestamp` (seconds), as Feishu documents it.
pub fn sign(secret: &str, timestamp: i64) -> String {
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        format!("{timestamp}\n{secret}").as_bytes(),
    );
    let tag = ring::hmac::sign(&key, b"");
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

pub fn body(ev: &Event, keyword: Option<&str>) -> Value {
    let (_, tag) = super::tag(ev);
    let mut title = format!("[{tag}] {}", ev.summary);
    let mut text = format!("{}\n\n", ev.description);
    for (label, value) in super::facts(ev) {
        text.push_str(&format!("**{label}**: {value}\n"));
    }
    text.push_str(&format!("\n[details]({})", ev.generator_url));
    if let Some(r) = &ev.runbook_url {
        text.push_str(&format!(" · [runbook]({r})"));
    }
    if let Some(k) = keyword {
        if !title.contains(k) {
            title = format!("{k} {title}");
        }
        if !text.contains(k) {
            text.push_str(&format!("\n{k}"));
        }
    }
    json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {
                "title": {"tag": "plain_text", "content": title},
                "template": if ev.status == Status::Firing { "red" } else { "green" },
            },
            "elements": [{"tag": "markdown", "content": text}],
        },
    })
}

/// Feishu's verdict in a 200 answer.
pub fn outcome(body: &str) -> Outcome {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = v["code"].as_i64().or_else(|| v["StatusCode"].as_i64());
    let msg = v["msg"]
        .as_str()
        .or_else(|| v["StatusMessage"].as_str())
        .unwrap_or("");
    match code {
        Some(0) => Outcome::Delivered,
        Some(11232) => Outcome::Retry(format!("Feishu: rate limited: {body}")),
        Some(code) => Outcome::Rejected(format!(
            "Feishu refused the message (code {code}: {msg}) — check the bot's keyword, secret or webhook token"
        )),
        None => Outcome::Rejected(format!(
            "Feishu answered something else than {{\"code\":…}}: {}",
            body.chars().take(200).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference value computed outside sonde, with Feishu's algorithm (the string is the key,
    /// the message empty):
    /// `printf '' | openssl dgst -sha256 -hmac "$(printf '1700000000\nSECabc')" -binary | base64`
    #[test]
    fn the_signature_matches_a_reference_value() {
        assert_eq!(sign("SECabc", 1_700_000_000), REFERENCE);
    }

    const REFERENCE: &str = "XprR1de+0SSBnwWyU/4k6x2TL+Q2SJlM5NNEdAv7MWg=";

    #[test]
    fn codes_decide_the_outcome() {
        assert_eq!(
            outcome(r#"{"code":0,"msg":"success","data":{}}"#),
            Outcome::Delivered
        );
        assert_eq!(
            outcome(r#"{"StatusCode":0,"StatusMessage":"success"}"#),
            Outcome::Delivered
        );
        assert!(matches!(
            outcome(r#"{"code":11232,"msg":"frequency limited"}"#),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            outcome(
                r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#
            ),
            Outcome::Rejected(_)
        ));
        assert!(matches!(outcome("<html>"), Outcome::Rejected(_)));
    }
}
