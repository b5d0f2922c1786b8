//! Builders for the multi-step parts of a step: `capture`, `retry`, JSONPath expectations,
//! frame matches, and the `ws.*` and `sleep` steps.

use std::time::Duration;

use serde_json_path::JsonPath;
use sonde_probes::ws::{Payload, WsConnectRequest};

use super::build::{ip_options, Alpn, Cx};
use super::locate::key_path;
use super::model::{
    CaptureModel, FrameMatchModel, RetryModel, WsCloseModel, WsConnectModel, WsExpectModel,
    WsSendModel,
};
use super::units::{Ordered, VarValue};
use crate::config::matcher::Matcher;
use crate::config::scenario::{
    Capture, FrameMatch, Group, JsonCheck, Retry, Source, WsClose, WsConnect, WsExpect, WsSend,
};

/// Frames a connection buffers between two `ws.expect` steps; beyond it the oldest is dropped
/// (and counted): a chatty server cannot grow a session's memory without bound.
pub const INBOX_LIMIT: usize = 64;
/// Default cap on one frame.
pub const MAX_FRAME: u64 = 1024 * 1024;
/// Default pause between `retry` attempts.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Shortest pause between attempts.
pub const MIN_RETRY_EVERY: Duration = Duration::from_millis(10);

const CAPTURE_SOURCES: [&str; 8] = [
    "json", "regex", "header", "status", "cookie", "body", "frame", "group",
];

/// Which capture sources each kind offers.
fn sources_for(kind: &str) -> &'static [&'static str] {
    match kind {
        "http" => &["json", "regex", "header", "status", "cookie", "body"],
        "ws.connect" => &["header", "status"],
        "ws.send" | "ws.expect" => &["json", "regex", "frame"],
        _ => &[],
    }
}

pub fn json_path(text: &str, path: &str, cx: &mut Cx) -> Option<JsonPath> {
    match JsonPath::parse(text) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.err_value(
                path,
                format!("invalid JSONPath {text:?}: {e} — expected an RFC 9535 path like $.token or $.items[0].id"),
            );
            None
        }
    }
}

/// The `capture:` mapping of a step of `kind` (at `path`).
pub fn captures(
    list: Option<&Ordered<CaptureModel>>,
    path: &str,
    kind: &str,
    cx: &mut Cx,
) -> Vec<Capture> {
    let mut out = Vec::new();
    let allowed = sources_for(kind);
    for (name, m) in list.map(|l| l.0.as_slice()).unwrap_or_default() {
        let at = key_path(path, name);
        if !valid_name(name) {
            cx.err_key(
                &at,
                format!("invalid capture name `{name}` — expected letters, digits and _, not starting with a digit (templates use it as {{{{ {name} }}}})"),
            );
            continue;
        }
        let given: Vec<&str> = [
            ("json", m.json.is_some()),
            ("regex", m.regex.is_some()),
            ("header", m.header.is_some()),
            ("status", m.status.is_some()),
            ("cookie", m.cookie.is_some()),
            ("body", m.body.is_some()),
            ("frame", m.frame.is_some()),
        ]
        .into_iter()
        .filter(|(_, s)| *s)
        .map(|(k, _)| k)
        .collect();
        let src = match given.as_slice() {
            [one] => *one,
            [] => {
                cx.err_value(
                    &at,
                    format!(
                        "a capture without a source — expected one of: {}",
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            [a, b, ..] => {
                cx.err_key(
                    &key_path(&at, b),
                    format!("a capture with both `{a}` and `{b}` — expected exactly one source"),
                );
                continue;
            }
        };
        if !allowed.contains(&src) {
            let kinds = if allowed.is_empty() {
                "nothing can be captured here".to_string()
            } else {
                format!("expected one of: {}", allowed.join(", "))
            };
            cx.err_key(
                &key_path(&at, src),
                format!("`{src}` cannot be captured from a {kind} step — {kinds}"),
            );
            continue;
        }
        if m.group.is_some() && src != "regex" {
            cx.err_key(
                &key_path(&at, "group"),
                "`group` without `regex` — expected it only beside regex",
            );
            continue;
        }
        let source = match src {
            "json" => {
                let t = m.json.as_deref().unwrap_or_default();
                match json_path(t, &key_path(&at, "json"), cx) {
                    Some(p) => Source::Json(t.to_string(), p),
                    None => continue,
                }
            }
            "regex" => {
                let Some(re) = cx.regex(
                    m.regex.as_deref().unwrap_or_default(),
                    &key_path(&at, "regex"),
                ) else {
                    continue;
                };
                let group = match &m.group {
                    None => Group::Index(usize::from(re.captures_len() > 1)),
                    Some(VarValue::Int(i)) if *i >= 0 && (*i as usize) < re.captures_len() => {
                        Group::Index(*i as usize)
                    }
                    Some(VarValue::Str(n)) if re.capture_names().flatten().any(|c| c == n) => {
                        Group::Name(n.clone())
                    }
                    Some(_) => {
                        cx.err_value(
                            &key_path(&at, "group"),
                            format!(
                                "the regex has no such group — expected 0 to {}{}",
                                re.captures_len() - 1,
                                {
                                    let names: Vec<&str> = re.capture_names().flatten().collect();
                                    if names.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" or one of: {}", names.join(", "))
                                    }
                                }
                            ),
                        );
                        continue;
                    }
                };
                Source::Regex(re, group)
            }
            "header" => Source::Header(m.header.clone().unwrap_or_default()),
            "cookie" => Source::Cookie(m.cookie.clone().unwrap_or_default()),
            "status" | "body" | "frame" => {
                let flag = m.status.or(m.body).or(m.frame).unwrap_or(false);
                if !flag {
                    cx.err_value(
                        &key_path(&at, src),
                        format!("`{src}: false` captures nothing — expected `{src}: true`"),
                    );
                    continue;
                }
                match src {
                    "status" => Source::Status,
                    "body" => Source::Body,
                    _ => Source::Frame,
                }
            }
            _ => continue,
        };
        out.push(Capture {
            name: name.clone(),
            source,
        });
    }
    let _ = CAPTURE_SOURCES;
    out
}

/// Capture names are template variables.
pub fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        && !matches!(n, "env" | "scenario" | "region")
}

pub fn retry(m: Option<&RetryModel>, path: &str, cx: &mut Cx) -> Option<Retry> {
    let m = m?;
    let until = m.until_pass.unwrap_or(false);
    let attempts = match (m.attempts, until) {
        (Some(_), true) => {
            cx.err_key(
                &key_path(path, "until_pass"),
                "both `attempts` and `until_pass` — expected one of them",
            );
            return None;
        }
        (Some(0), false) => {
            cx.err_value(
                &key_path(path, "attempts"),
                "attempts 0 — expected at least 1 (the first attempt counts)",
            );
            return None;
        }
        (Some(n), false) => Some(n),
        (None, true) => None,
        (None, false) => {
            cx.err_value(
                path,
                "a retry without `attempts` or `until_pass: true` — expected one of them",
            );
            return None;
        }
    };
    let every = m.every.map_or(RETRY_EVERY, |d| d.0);
    if every < MIN_RETRY_EVERY {
        cx.err_value(
            &key_path(path, "every"),
            format!(
                "retry every {} is too short — expected at least 10ms (a failing step would spin)",
                if every.is_zero() {
                    "0s".to_string()
                } else {
                    sonde_probes::fmt_duration(every)
                }
            ),
        );
        return None;
    }
    Some(Retry {
        attempts,
        every,
        within: m.within.map(|d| d.0),
    })
}

/// `path → matcher` checks (at `path`).
pub fn json_checks(
    m: Option<&Ordered<serde_json::Value>>,
    path: &str,
    cx: &mut Cx,
) -> Vec<JsonCheck> {
    let mut out = Vec::new();
    for (p, v) in m.map(|m| m.0.as_slice()).unwrap_or_default() {
        let at = key_path(path, p);
        let Some(jp) = json_path(p, &at, cx) else {
            continue;
        };
        match Matcher::compile(v) {
            Ok(matcher) => out.push(JsonCheck {
                path_text: p.clone(),
                path: jp,
                matcher,
            }),
            Err(e) => cx.err_value(&at, format!("matcher for `{p}`: {e}")),
        }
    }
    out
}

pub fn frame_match(m: &FrameMatchModel, path: &str, cx: &mut Cx) -> FrameMatch {
    let json = json_checks(m.json.as_ref(), &key_path(path, "json"), cx);
    let regex = m
        .regex
        .as_deref()
        .and_then(|r| cx.regex(r, &key_path(path, "regex")));
    if json.is_empty() && m.regex.is_none() && m.equals.is_none() && m.contains.is_none() {
        cx.err_value(
            path,
            "an empty frame match — expected at least one of: json, regex, equals, contains",
        );
    }
    FrameMatch {
        json,
        regex,
        equals: m.equals.clone(),
        contains: m.contains.clone(),
    }
}

pub fn ws_connect(
    m: &WsConnectModel,
    path: &str,
    servers: Option<&[std::net::SocketAddr]>,
    heartbeat: Option<Duration>,
    cx: &mut Cx,
) -> Option<WsConnect> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    if !valid_name(&m.as_) {
        cx.err_value(
            &p("as"),
            format!(
                "invalid connection name {:?} — expected letters, digits and _",
                m.as_
            ),
        );
    }
    let url = match url::Url::parse(&m.url) {
        Ok(u)
            if matches!(u.scheme(), "ws" | "wss")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Some(u)
        }
        Ok(_) => {
            cx.err_value(
                &p("url"),
                format!(
                    "unsupported WebSocket URL {:?} — expected an absolute ws:// or wss:// URL",
                    m.url
                ),
            );
            None
        }
        Err(e) => {
            cx.err_value(
                &p("url"),
                format!(
                    "invalid URL {:?}: {e} — expected an absolute ws:// or wss:// URL",
                    m.url
                ),
            );
            None
        }
    };
    let mut headers = Vec::new();
    for (k, v) in m
        .headers
        .as_ref()
        .map(|h| h.0.as_slice())
        .unwrap_or_default()
    {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(&v.0).is_err()
        {
            cx.err_key(
                &key_path(&p("headers"), k),
                format!(
                    "invalid header {k:?} — expected a token name and a value without line breaks"
                ),
            );
        } else {
            headers.push((k.clone(), v.0.clone()));
        }
    }
    let tls = cx.tls_client(m.tls_config.as_ref(), &p("tls_config"), Alpn::Http1);
    let host = url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let resolver = if url.is_some() {
        cx.resolver(servers, &host, &p("url"))
    } else {
        None
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(WsConnect {
        name: m.as_.clone(),
        request: WsConnectRequest {
            url: url?.to_string(),
            headers,
            subprotocols: m.subprotocols.clone().unwrap_or_default(),
            resolver: resolver?,
            ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
            tls_client: tls?,
            heartbeat,
            inbox_limit: INBOX_LIMIT,
            max_frame_size: m.max_frame_size.map_or(MAX_FRAME, |b| b.0) as usize,
        },
    })
}

pub fn ws_send(m: &WsSendModel, path: &str, cx: &mut Cx) -> Option<WsSend> {
    let p = |k: &str| key_path(path, k);
    let given: Vec<&str> = [
        ("text", m.text.is_some()),
        ("json", m.json.is_some()),
        ("base64", m.base64.is_some()),
        ("hex", m.hex.is_some()),
    ]
    .into_iter()
    .filter(|(_, s)| *s)
    .map(|(k, _)| k)
    .collect();
    let payload = match given.as_slice() {
        ["text"] => Payload::Text(m.text.clone().unwrap_or_default()),
        ["json"] => Payload::Text(serde_json::to_string(m.json.as_ref()?).ok()?),
        ["base64"] => {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD
                .decode(m.base64.as_deref().unwrap_or_default().trim())
            {
                Ok(b) => Payload::Binary(b.into()),
                Err(e) => {
                    cx.err_value(
                        &p("base64"),
                        format!("invalid base64: {e} — expected standard base64"),
                    );
                    return None;
                }
            }
        }
        [_hex] => {
            let h: String = m
                .hex
                .as_deref()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            // Pairs of bytes, not of chars: slicing by byte offsets inside a multi-byte
            // character ("aéb") would panic, so anything but ASCII hex digits is refused first.
            let bytes: Option<Vec<u8>> = (h.len() % 2 == 0
                && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| {
                h.as_bytes()
                    .chunks(2)
                    .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                    .collect()
            })
            .flatten();
            match bytes {
                Some(b) => Payload::Binary(b.into()),
                None => {
                    cx.err_value(
                        &p("hex"),
                        "invalid hex — expected pairs of hex digits like 0a1b",
                    );
                    return None;
                }
            }
        }
        [] => {
            cx.err_value(
                path,
                "ws.send without a payload — expected one of: text, json, base64, hex",
            );
            return None;
        }
        [a, b, ..] => {
            cx.err_key(
                &p(b),
                format!("ws.send with both `{a}` and `{b}` — expected exactly one payload"),
            );
            return None;
        }
    };
    Some(WsSend {
        on: m.on.clone(),
        payload,
    })
}

pub fn ws_expect(m: &WsExpectModel, path: &str, cx: &mut Cx) -> Option<WsExpect> {
    let before = cx.errors.len();
    let (frame, negate) = match (&m.match_, &m.not) {
        (Some(f), None) => (frame_match(f, &key_path(path, "match"), cx), false),
        (None, Some(f)) => (frame_match(f, &key_path(path, "not"), cx), true),
        (Some(_), Some(_)) => {
            cx.err_key(
                &key_path(path, "not"),
                "both `match` and `not` — expected one: match waits for a frame, not asserts none arrives",
            );
            return None;
        }
        (None, None) => {
            cx.err_value(
                path,
                "ws.expect without `match` or `not` — expected what the frame must look like",
            );
            return None;
        }
    };
    if negate && m.within.is_none() {
        cx.err_value(
            path,
            "ws.expect with `not` needs `within` — expected how long no such frame may arrive, like within: 2s",
        );
    }
    if negate && m.capture.is_some() {
        cx.err_key(
            &key_path(path, "capture"),
            "a capture on `not` — expected captures only beside `match` (no frame is kept)",
        );
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(WsExpect {
        on: m.on.clone(),
        frame,
        negate,
        within: m.within.map(|d| d.0),
    })
}

pub fn ws_close(m: &WsCloseModel, path: &str, cx: &mut Cx) -> Option<WsClose> {
    let code = m.code.unwrap_or(1000);
    if !(1000..=4999).contains(&code) || matches!(code, 1004..=1006 | 1015) {
        cx.err_value(
            &key_path(path, "code"),
            format!(
                "close code {code} cannot be sent — expected 1000-1003, 1007-1014 or 3000-4999"
            ),
        );
        return None;
    }
    let reason = m.reason.clone().unwrap_or_default();
    if reason.len() > 123 {
        cx.err_value(
            &key_path(path, "reason"),
            "close reason longer than 123 bytes — expected a short reason",
        );
        return None;
    }
    Some(WsClose {
        on: m.on.clone(),
        code,
        reason,
    })
}
