//! The `ws.*` steps: `ws.connect` opens a named connection of the run, `ws.send` writes a
//! frame on it, `ws.expect` waits for a frame matching (or, `not`, for none to arrive), and
//! `ws.close` closes it.

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_probes::ws::{Payload, WsConnectRequest};

use super::{At, StepKind};
use crate::config::build::{ip_options, Alpn, Cx};
use crate::config::flow::{json_checks, valid_name};
use crate::config::locate::key_path;
use crate::config::model::{CaptureModel, TlsConfigModel};
use crate::config::scenario::{Action, FrameMatch, WsAction, WsClose, WsConnect, WsExpect, WsSend};
use crate::config::units::{ByteSize, Dur, IpProto, Ordered, Text};

/// Frames a connection buffers between two `ws.expect` steps; beyond it the oldest is dropped
/// (and counted): a chatty server cannot grow a session's memory without bound.
pub const INBOX_LIMIT: usize = 64;
/// Default cap on one frame.
pub const MAX_FRAME: u64 = 1024 * 1024;
/// The largest `max_frame_size` taken: a connection keeps up to [`INBOX_LIMIT`] frames, and
/// its inbox records a frame's length in 32 bits.
pub const MAX_FRAME_CEILING: u64 = 1 << 30;

/// `max_frame_size` as given (or the default), checked against [`MAX_FRAME_CEILING`].
pub fn max_frame_size(given: Option<ByteSize>, path: &str, cx: &mut Cx) -> u64 {
    let max = given.map_or(MAX_FRAME, |b| b.0);
    if max > MAX_FRAME_CEILING {
        cx.err_value(
            path,
            format!("max_frame_size of {max} bytes — expected at most 1GiB"),
        );
    }
    max
}
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsConnectModel {
    #[serde(rename = "as")]
    pub as_: String,
    pub url: String,
    pub headers: Option<Ordered<Text>>,
    pub subprotocols: Option<Vec<String>>,
    pub tls_config: Option<TlsConfigModel>,
    pub preferred_ip_protocol: Option<IpProto>,
    pub ip_protocol_fallback: Option<bool>,
    pub max_frame_size: Option<ByteSize>,
    pub capture: Option<Ordered<CaptureModel>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsSendModel {
    pub on: String,
    pub text: Option<String>,
    pub json: Option<serde_json::Value>,
    pub base64: Option<String>,
    pub hex: Option<String>,
    pub capture: Option<Ordered<CaptureModel>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrameMatchModel {
    pub json: Option<Ordered<serde_json::Value>>,
    pub regex: Option<String>,
    pub equals: Option<String>,
    pub contains: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsExpectModel {
    pub on: String,
    #[serde(rename = "match")]
    pub match_: Option<FrameMatchModel>,
    pub not: Option<FrameMatchModel>,
    pub within: Option<Dur>,
    pub capture: Option<Ordered<CaptureModel>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsCloseModel {
    pub on: String,
    pub code: Option<u16>,
    pub reason: Option<String>,
}

const FRAME_CAPTURES: &[&str] = &["json", "regex", "frame"];

impl StepKind for WsConnectModel {
    const CAPTURES: &'static [&'static str] = &["header", "status"];
    const EXPECT: &'static [&'static str] = &["duration", "cert_expires_in"];

    fn opens_connection(&self) -> Option<&str> {
        Some(&self.as_)
    }

    fn inner_captures(&self) -> Option<&Ordered<CaptureModel>> {
        self.capture.as_ref()
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let c = ws_connect(self, at.path, at.servers, at.heartbeat, cx)?;
        Some(Action::Ws(WsAction::Connect(Box::new(c))))
    }
}

impl StepKind for WsSendModel {
    const CAPTURES: &'static [&'static str] = FRAME_CAPTURES;

    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn inner_captures(&self) -> Option<&Ordered<CaptureModel>> {
        self.capture.as_ref()
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let s = ws_send(self, at.path, cx)?;
        Some(Action::Ws(WsAction::Send(Box::new(s))))
    }
}

impl StepKind for WsExpectModel {
    const CAPTURES: &'static [&'static str] = FRAME_CAPTURES;
    const EXPECT: &'static [&'static str] = &["json", "duration"];

    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn inner_captures(&self) -> Option<&Ordered<CaptureModel>> {
        self.capture.as_ref()
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let e = ws_expect(self, at.path, cx)?;
        Some(Action::Ws(WsAction::Expect(Box::new(e))))
    }
}

impl StepKind for WsCloseModel {
    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let c = ws_close(self, at.path, cx)?;
        Some(Action::Ws(WsAction::Close(Box::new(c))))
    }
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
    heartbeat: Option<std::time::Duration>,
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
    let url = ws_url(&m.url, &p("url"), cx);
    let headers = ws_headers(m.headers.as_ref(), &p("headers"), cx);
    let tls = cx.tls_client(m.tls_config.as_ref(), &p("tls_config"), Alpn::Http1);
    let max_frame = max_frame_size(m.max_frame_size, &p("max_frame_size"), cx);
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
            max_frame_size: usize::try_from(max_frame).unwrap_or(usize::MAX),
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
        ["base64"] => base64_payload(m.base64.as_deref().unwrap_or_default(), &p("base64"), cx)?,
        [_hex] => hex_payload(m.hex.as_deref().unwrap_or_default(), &p("hex"), cx)?,
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

pub fn base64_payload(text: &str, path: &str, cx: &mut Cx) -> Option<Payload> {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
        Ok(b) => Some(Payload::Binary(b.into())),
        Err(e) => {
            cx.err_value(
                path,
                format!("invalid base64: {e} — expected standard base64"),
            );
            None
        }
    }
}

pub fn hex_payload(text: &str, path: &str, cx: &mut Cx) -> Option<Payload> {
    let h: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    // Pairs of bytes, not of chars: slicing by byte offsets inside a multi-byte character
    // ("aéb") would panic, so anything but ASCII hex digits is refused first.
    let bytes: Option<Vec<u8>> = (h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| {
            h.as_bytes()
                .chunks(2)
                .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                .collect()
        })
        .flatten();
    match bytes {
        Some(b) => Some(Payload::Binary(b.into())),
        None => {
            cx.err_value(path, "invalid hex — expected pairs of hex digits like 0a1b");
            None
        }
    }
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

/// An absolute ws:// or wss:// URL.
fn ws_url(text: &str, path: &str, cx: &mut Cx) -> Option<url::Url> {
    match url::Url::parse(text) {
        Ok(u)
            if matches!(u.scheme(), "ws" | "wss")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Some(u)
        }
        Ok(_) => {
            cx.err_value(
                path,
                format!(
                    "unsupported WebSocket URL {text:?} — expected an absolute ws:// or wss:// URL"
                ),
            );
            None
        }
        Err(e) => {
            cx.err_value(
                path,
                format!("invalid URL {text:?}: {e} — expected an absolute ws:// or wss:// URL"),
            );
            None
        }
    }
}

/// The handshake's extra headers, each name and value checked.
fn ws_headers(h: Option<&Ordered<Text>>, path: &str, cx: &mut Cx) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    for (k, v) in h.map(|h| h.0.as_slice()).unwrap_or_default() {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(&v.0).is_err()
        {
            cx.err_key(
                &key_path(path, k),
                format!(
                    "invalid header {k:?} — expected a token name and a value without line breaks"
                ),
            );
        } else {
            headers.push((k.clone(), v.0.clone()));
        }
    }
    headers
}
