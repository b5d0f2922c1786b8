//! Chat robots that check a request the way the real services do, and answer as they do
//! (HTTP 200 with an error code in the body). Each is an [`HttpServer`]: `requests()` shows what
//! arrived.
//!
//! - [`wecom`]: WeCom group robot (`/cgi-bin/webhook/send?key=KEY`): the key, JSON, a known
//!   `msgtype`, and for `markdown` a non-empty `markdown.content` of at most 4096 bytes.
//! - [`feishu`]: Feishu/Lark custom bot (`/open-apis/bot/v2/hook/TOKEN`): the token, JSON, a
//!   known `msg_type` with its payload, and the bot's security settings — the signature
//!   (`timestamp` in seconds within an hour of now, `sign` = base64(HMAC-SHA256(key = timestamp
//!   + "\n" + secret, message = empty))) and the keyword (in some text of the message).

use base64::Engine;
use serde_json::{json, Value};

use crate::http::{HttpServer, Reply, Routes, Seen};

/// The WeCom robot webhook path.
pub const WECOM_PATH: &str = "/cgi-bin/webhook/send";

/// A WeCom group robot whose webhook key is `key`.
pub async fn wecom(key: &str) -> HttpServer {
    let key = key.to_string();
    HttpServer::start(Routes::new().at_fn(WECOM_PATH, move |seen| {
        Reply::json(200, &wecom_verdict(seen, &key))
    }))
    .await
}

fn err(code: i64, msg: &str) -> Value {
    json!({"errcode": code, "errmsg": msg})
}

fn wecom_verdict(seen: &Seen, key: &str) -> Value {
    if seen.method != "POST" {
        return err(40035, "invalid parameter");
    }
    if query(seen, "key").as_deref() != Some(key) {
        return err(93000, "invalid webhook url, hint: [key is invalid]");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&seen.body) else {
        return err(40035, "invalid parameter, hint: [body is not json]");
    };
    match body["msgtype"].as_str() {
        Some("markdown") => match body["markdown"]["content"].as_str() {
            None | Some("") => err(41009, "missing markdown content"),
            Some(c) if c.len() > 4096 => err(40058, "markdown.content exceed max length 4096"),
            Some(_) => err(0, "ok"),
        },
        Some("text") => match body["text"]["content"].as_str() {
            None | Some("") => err(41009, "missing text content"),
            Some(_) => err(0, "ok"),
        },
        Some("markdown_v2" | "image" | "news" | "file" | "voice" | "template_card") => err(0, "ok"),
        _ => err(40008, "invalid message type"),
    }
}

/// The Feishu bot webhook path for `token`.
pub fn feishu_path(token: &str) -> String {
    format!("/open-apis/bot/v2/hook/{token}")
}

/// A Feishu custom bot with webhook token `token`, and optionally signature verification
/// (`secret`) and a required keyword.
pub async fn feishu(token: &str, secret: Option<&str>, keyword: Option<&str>) -> HttpServer {
    let (secret, keyword) = (secret.map(String::from), keyword.map(String::from));
    let path = feishu_path(token);
    HttpServer::start(
        Routes::new().at_fn("/open-apis/bot/v2/hook/*", move |seen| {
            let v = if seen.path != path {
                code(
                    19001,
                    "param invalid: incoming webhook access token invalid",
                )
            } else {
                feishu_verdict(seen, secret.as_deref(), keyword.as_deref())
            };
            Reply::json(200, &v)
        }),
    )
    .await
}

fn code(c: i64, msg: &str) -> Value {
    json!({"code": c, "msg": msg, "data": {}})
}

/// Feishu's `sign`, computed independently of sonde.
pub fn feishu_sign(secret: &str, timestamp: &str) -> String {
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        format!("{timestamp}\n{secret}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, b"").as_ref())
}

fn feishu_verdict(seen: &Seen, secret: Option<&str>, keyword: Option<&str>) -> Value {
    let Ok(body) = serde_json::from_slice::<Value>(&seen.body) else {
        return code(9499, "Bad Request");
    };
    if let Some(secret) = secret {
        let ts = body["timestamp"].as_str().unwrap_or("");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let fresh = ts.parse::<i64>().is_ok_and(|t| (now - t).abs() <= 3600);
        if !fresh || body["sign"].as_str() != Some(feishu_sign(secret, ts).as_str()) {
            return code(
                19021,
                "sign match fail or timestamp is not within one hour from current time",
            );
        }
    }
    let payload = match body["msg_type"].as_str() {
        Some("text") | Some("post") | Some("share_chat") | Some("image") => &body["content"],
        Some("interactive") => &body["card"],
        _ => return code(19002, "params error, msg_type need"),
    };
    if !payload.is_object() {
        return code(9499, "Bad Request");
    }
    if let Some(k) = keyword {
        let mut texts = Vec::new();
        strings(payload, &mut texts);
        if !texts.iter().any(|t| t.contains(k)) {
            return code(19024, "Key Words Not Found");
        }
    }
    code(0, "success")
}

/// Every string value under `v` (not the keys).
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn query(seen: &Seen, name: &str) -> Option<String> {
    let q = seen.uri.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| v.to_string())
    })
}
