//! DingTalk custom robots (钉钉自定义机器人): a `markdown` message. A robot has one of three
//! security settings, all supported: custom keywords (the message must contain one: `keyword`
//! is put in the title and the text when they lack it), signing (`secret`: the URL gets
//! `timestamp` (ms) and `sign` = URL-encoded base64(HMAC-SHA256(secret, timestamp + "\n" +
//! secret)), as DingTalk's documentation specifies), or an IP allowlist (nothing to do here).
//! DingTalk answers 200 with `{"errcode": 0}` on success; any other errcode is a refusal, except
//! 130101 (sending too fast), which is retried.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::{Attempt, Channel, Ctx};
use crate::alert::{Event, Outcome, Status};
use crate::time::rfc3339;

super::register!("dingtalk", parse);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    url: Option<String>,
    url_file: Option<String>,
    secret: Option<String>,
    secret_file: Option<String>,
    keyword: Option<String>,
    #[serde(default)]
    at_mobiles: Vec<String>,
    #[serde(default)]
    at_all: bool,
}

/// A configured robot. `keyword` is put in every message (robots with the keyword security
/// setting drop messages without it); `secret` signs the request.
struct DingTalk {
    url: url::Url,
    secret: Option<String>,
    keyword: Option<String>,
    at_mobiles: Vec<String>,
    at_all: bool,
}

fn parse(v: serde_norway::Value, dir: &Path) -> Result<Arc<dyn Channel>, String> {
    let k: Keys = super::keys(v, "dingtalk")?;
    Ok(Arc::new(DingTalk {
        url: super::robot_url(
            k.url,
            k.url_file,
            dir,
            "https://oapi.dingtalk.com/robot/send?access_token=TOKEN",
        )?,
        secret: super::inline_or_file("secret", k.secret, k.secret_file, dir)?,
        keyword: k.keyword,
        at_mobiles: k.at_mobiles,
        at_all: k.at_all,
    }))
}

impl Channel for DingTalk {
    fn send<'a>(&'a self, ctx: &'a Ctx, ev: &'a Event) -> Attempt<'a> {
        let url = signed_url(&self.url, self.secret.as_deref(), crate::time::now_ms());
        let req = ctx.http.post(url);
        let body = body(ev, self.keyword.as_deref(), &self.at_mobiles, self.at_all);
        Box::pin(async move { super::post(req, &body, outcome).await })
    }
}

/// `sign` for `timestamp_ms` (before URL encoding).
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// The robot URL with `timestamp` and `sign` added when there is a secret.
pub fn signed_url(base: &url::Url, secret: Option<&str>, timestamp_ms: i64) -> url::Url {
    let mut url = base.clone();
    if let Some(secret) = secret {
        url.query_pairs_mut()
            .append_pair("timestamp", &timestamp_ms.to_string())
            .append_pair("sign", &sign(secret, timestamp_ms));
    }
    url
}

pub fn body(ev: &Event, keyword: Option<&str>, at_mobiles: &[String], at_all: bool) -> Value {
    let (mark, tag) = match (ev.status, ev.repeat) {
        (Status::Firing, false) => ("🔴", "FIRING"),
        (Status::Firing, true) => ("🔴", "STILL FIRING"),
        (Status::Resolved, _) => ("✅", "RESOLVED"),
    };
    let mut title = format!("[{tag}] {}", ev.summary);
    let mut text = format!("### {mark} {tag}: {}\n\n{}\n\n", ev.summary, ev.description);
    text.push_str(&format!("- **scenario**: {}\n", ev.scenario));
    if let Some(r) = &ev.region {
        text.push_str(&format!("- **region**: {r}\n"));
    }
    text.push_str(&format!("- **severity**: {}\n", ev.severity));
    if let Some(s) = &ev.step {
        text.push_str(&format!(
            "- **failing step**: {s}{}\n",
            ev.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    text.push_str(&format!("- **since**: {}\n", rfc3339(ev.starts_at)));
    if let Some(end) = ev.ends_at {
        text.push_str(&format!("- **resolved at**: {}\n", rfc3339(end)));
    }
    text.push_str(&format!("\n[details]({})", ev.generator_url));
    if let Some(r) = &ev.runbook_url {
        text.push_str(&format!(" · [runbook]({r})"));
    }
    if !at_mobiles.is_empty() && ev.status == Status::Firing {
        text.push_str("\n\n");
        text.push_str(
            &at_mobiles
                .iter()
                .map(|m| format!("@{m}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    if let Some(k) = keyword {
        if !title.contains(k) {
            title = format!("{k} {title}");
        }
        if !text.contains(k) {
            text.push_str(&format!("\n\n{k}"));
        }
    }
    json!({
        "msgtype": "markdown",
        "markdown": {"title": title, "text": text},
        "at": {"atMobiles": at_mobiles, "isAtAll": at_all && ev.status == Status::Firing},
    })
}

/// DingTalk's verdict in a 200 answer.
pub fn outcome(body: &str) -> Outcome {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match v["errcode"].as_i64() {
        Some(0) => Outcome::Delivered,
        Some(130101) => Outcome::Retry(format!("DingTalk: sending too fast: {body}")),
        Some(code) => Outcome::Rejected(format!(
            "DingTalk refused the message (errcode {code}: {}) — check the robot's keyword, secret or access_token",
            v["errmsg"].as_str().unwrap_or("")
        )),
        None => Outcome::Rejected(format!("DingTalk answered something else than {{\"errcode\":…}}: {}", body.chars().take(200).collect::<String>())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference value computed outside sonde:
    /// `printf '1700000000000\nSECabc' | openssl dgst -sha256 -hmac SECabc -binary | base64`
    #[test]
    fn the_signature_matches_a_reference_value() {
        assert_eq!(sign("SECabc", 1_700_000_000_000), REFERENCE);
        let u = signed_url(
            &url::Url::parse("https://oapi.dingtalk.com/robot/send?access_token=T").unwrap(),
            Some("SECabc"),
            1_700_000_000_000,
        );
        let q: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        assert_eq!(q[0], ("access_token".into(), "T".into()));
        assert_eq!(q[1], ("timestamp".into(), "1700000000000".into()));
        assert_eq!(q[2], ("sign".into(), REFERENCE.into()));
        // Base64's + / = are percent-encoded in the URL itself.
        let raw = u.query().unwrap();
        let sign_raw = raw.split("sign=").nth(1).unwrap();
        assert!(
            !sign_raw.contains('+') && !sign_raw.contains('/') && !sign_raw.contains('='),
            "{raw}"
        );
    }

    const REFERENCE: &str = "jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM=";

    #[test]
    fn errcodes_decide_the_outcome() {
        assert_eq!(
            outcome(r#"{"errcode":0,"errmsg":"ok"}"#),
            Outcome::Delivered
        );
        assert!(matches!(
            outcome(r#"{"errcode":130101,"errmsg":"send too fast"}"#),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            outcome(r#"{"errcode":310000,"errmsg":"keywords not in content"}"#),
            Outcome::Rejected(_)
        ));
        assert!(matches!(outcome("<html>"), Outcome::Rejected(_)));
    }
}
