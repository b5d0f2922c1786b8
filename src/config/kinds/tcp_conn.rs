//! The `tcp.*` steps: long-lived raw TCP/TLS connections with framing, in the shape of the
//! `ws.*` steps. `tcp.connect` opens a named connection (its framing and how received frames are
//! shown to matchers: text, hex, base64, JSON or a protobuf message), `tcp.send` writes one
//! frame, `tcp.expect` waits for a frame matching (or, `not`, for none), `tcp.starttls`
//! upgrades the connection to TLS in place, `tcp.close` closes it.
//!
//! The one-shot `tcp` kind (blackbox's `query_response`) is [`super::tcp`].

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use prost_reflect::MessageDescriptor;
use schemars::JsonSchema;
use serde::Deserialize;
use sonde_probes::tcp_conn::{Endian, Framing, Heartbeat, LengthPrefix, TcpConnectRequest};
use sonde_probes::ws::Payload;

use super::ws::{frame_match, FrameMatchModel, INBOX_LIMIT};
use super::{At, StepKind};
use crate::config::build::{ip_options, Alpn, Cx};
use crate::config::flow::valid_name;
use crate::config::locate::key_path;
use crate::config::model::{CaptureModel, TlsConfigModel};
use crate::config::probe_settings::protobuf;
use crate::config::scenario::{Action, WsExpect};
use crate::config::targets;
use crate::config::units::{ByteSize, Dur, IpProto, Ordered};

/// How received frames are shown to matchers and captures.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PayloadWord {
    Text,
    Hex,
    Base64,
    Json,
    Protobuf,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LineEnding {
    Lf,
    Crlf,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndianWord {
    Big,
    Little,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LengthModel {
    /// Width of the length field: 1, 2, 4 or 8 bytes.
    pub bytes: u8,
    /// Byte order (default big).
    pub endian: Option<EndianWord>,
    /// The length counts the header and the length field too (default false: the body only).
    pub includes_header: Option<bool>,
    /// A fixed header of this many bytes before the length field (zeros when sent, unless
    /// `header_hex` says what they are).
    pub offset: Option<u32>,
    pub header_hex: Option<String>,
}

/// Exactly one way to cut the stream into frames.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FramingModel {
    pub lines: Option<LineEnding>,
    pub delimiter: Option<String>,
    pub delimiter_hex: Option<String>,
    pub length: Option<LengthModel>,
    pub fixed: Option<ByteSize>,
}

/// A payload written once in one of the formats (sends and heartbeats).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatModel {
    /// How often (default: the scenario's `heartbeat`).
    pub every: Option<Dur>,
    pub text: Option<String>,
    pub hex: Option<String>,
    pub base64: Option<String>,
    pub json: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpConnectModel {
    #[serde(rename = "as")]
    pub as_: String,
    /// host:port.
    pub target: String,
    pub tls: Option<bool>,
    pub tls_config: Option<TlsConfigModel>,
    pub preferred_ip_protocol: Option<IpProto>,
    pub ip_protocol_fallback: Option<bool>,
    /// Default: lines (LF).
    pub framing: Option<FramingModel>,
    /// How received frames are matched: text (default), hex, base64, json, or protobuf
    /// (decoded to JSON with `proto_file` and `message`).
    pub payload: Option<PayloadWord>,
    /// The `.proto` file (relative to the scenario file) of received frames.
    pub proto_file: Option<String>,
    /// The message type of received frames (`package.Message`).
    pub message: Option<String>,
    pub max_frame_size: Option<ByteSize>,
    pub heartbeat: Option<HeartbeatModel>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpSendModel {
    pub on: String,
    pub text: Option<String>,
    pub json: Option<serde_json::Value>,
    pub base64: Option<String>,
    pub hex: Option<String>,
    /// A protobuf message written as JSON-shaped YAML (needs `proto_file` and `message`).
    pub protobuf: Option<serde_json::Value>,
    pub proto_file: Option<String>,
    pub message: Option<String>,
    /// Write the body as is, outside the connection's framing (a streaming protocol such as
    /// XMPP, whose frames are only how replies are cut for matching).
    pub raw: Option<bool>,
    /// `json`, `regex`, `frame` over the frame sent (a protobuf one as JSON).
    pub capture: Option<Ordered<CaptureModel>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpExpectModel {
    pub on: String,
    #[serde(rename = "match")]
    pub match_: Option<FrameMatchModel>,
    pub not: Option<FrameMatchModel>,
    pub within: Option<Dur>,
    pub capture: Option<Ordered<CaptureModel>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpStartTlsModel {
    pub on: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpCloseModel {
    pub on: String,
}

/// How a connection shows received frames to matchers.
#[derive(Clone, Debug)]
pub enum Decode {
    Text,
    Hex,
    Base64,
    Json,
    Protobuf(MessageDescriptor),
}

/// The `tcp.*` steps, on a named connection of the run.
#[derive(Debug)]
pub enum TcpConnAction {
    Connect(Box<TcpConnect>),
    Send(Box<TcpSend>),
    Expect(Box<WsExpect>),
    StartTls(String),
    Close(String),
}

#[derive(Debug)]
pub struct TcpConnect {
    pub name: String,
    /// Shared with the connection's task while it lives.
    pub request: Arc<TcpConnectRequest>,
    pub decode: Decode,
}

#[derive(Debug)]
pub struct TcpSend {
    pub on: String,
    pub body: Bytes,
    /// Outside the framing (`raw: true`).
    pub raw: bool,
    /// How the trace shows what was sent.
    pub shown: String,
    /// What captures read: the text or JSON written (a protobuf message as JSON), or the bytes.
    pub frame: Payload,
}

const FRAME_CAPTURES: &[&str] = &["json", "regex", "frame"];

impl StepKind for TcpConnectModel {
    const EXPECT: &'static [&'static str] = &["duration", "cert_expires_in"];

    fn opens_connection(&self) -> Option<&str> {
        Some(&self.as_)
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let c = tcp_connect(self, at, cx)?;
        Some(Action::TcpConn(TcpConnAction::Connect(Box::new(c))))
    }
}

impl StepKind for TcpSendModel {
    const CAPTURES: &'static [&'static str] = FRAME_CAPTURES;

    /// A protobuf message's field names are checked at load even when its values are templates.
    fn check_unrendered(&self, path: &str, cx: &mut Cx) {
        let (Some(v), Some(file), Some(message)) =
            (&self.protobuf, &self.proto_file, &self.message)
        else {
            return;
        };
        if file.contains("{{") || message.contains("{{") {
            return;
        }
        let Some(desc) = proto_message(Some(file), Some(message), path, cx) else {
            return;
        };
        if let Err((field, why)) = protobuf::check_field_names(&desc, v) {
            cx.err_value(&field_path(path, &field), why);
        }
    }

    fn inner_captures(&self) -> Option<&Ordered<CaptureModel>> {
        self.capture.as_ref()
    }

    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let s = tcp_send(self, at.path, cx)?;
        Some(Action::TcpConn(TcpConnAction::Send(Box::new(s))))
    }
}

impl StepKind for TcpExpectModel {
    const CAPTURES: &'static [&'static str] = FRAME_CAPTURES;
    const EXPECT: &'static [&'static str] = &["json", "duration"];

    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn inner_captures(&self) -> Option<&Ordered<CaptureModel>> {
        self.capture.as_ref()
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let e = tcp_expect(self, at.path, cx)?;
        Some(Action::TcpConn(TcpConnAction::Expect(Box::new(e))))
    }
}

impl StepKind for TcpStartTlsModel {
    const EXPECT: &'static [&'static str] = &["duration", "cert_expires_in"];

    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn build(&self, _at: &At<'_>, _cx: &mut Cx) -> Option<Action> {
        Some(Action::TcpConn(TcpConnAction::StartTls(self.on.clone())))
    }
}

impl StepKind for TcpCloseModel {
    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn build(&self, _at: &At<'_>, _cx: &mut Cx) -> Option<Action> {
        Some(Action::TcpConn(TcpConnAction::Close(self.on.clone())))
    }
}

pub fn tcp_connect(m: &TcpConnectModel, at: &At<'_>, cx: &mut Cx) -> Option<TcpConnect> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(at.path, k);
    if !valid_name(&m.as_) {
        cx.err_value(
            &p("as"),
            format!(
                "invalid connection name {:?} — expected letters, digits and _",
                m.as_
            ),
        );
    }
    let target = cx.ok(&p("target"), targets::host_port(&m.target));
    if let Some((_, 0)) = target {
        cx.err_value(
            &p("target"),
            format!("no port in {:?} — expected host:port", m.target),
        );
    }
    let max = super::ws::max_frame_size(m.max_frame_size, &p("max_frame_size"), cx);
    let framing = framing(m.framing.as_ref(), max, &p("framing"), cx);
    let decode = decode(m, at.path, cx);
    let heartbeat = heartbeat(m.heartbeat.as_ref(), at.heartbeat, &p("heartbeat"), cx);
    let tls_client = cx.tls_client(m.tls_config.as_ref(), &p("tls_config"), Alpn::None);
    let resolver = target
        .as_ref()
        .and_then(|(h, _)| cx.resolver(at.servers, h, &p("target")));
    if let (Some(f), Some(Some(hb))) = (&framing, &heartbeat) {
        let codec = sonde_probes::framing::Codec::new(f.clone(), usize::MAX);
        if let Err(e) = codec.encode(&hb.body) {
            cx.err_value(
                &p("heartbeat"),
                format!("the heartbeat cannot be sent with {f}: {e}"),
            );
        }
    }
    if cx.errors.len() > before {
        return None;
    }
    let (host, port) = target?;
    Some(TcpConnect {
        name: m.as_.clone(),
        request: shared_request(TcpConnectRequest {
            host,
            port,
            resolver: resolver?,
            ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
            tls: m.tls.unwrap_or(false),
            tls_client: tls_client?,
            framing: framing?,
            max_frame_size: usize::try_from(max).unwrap_or(usize::MAX),
            inbox_limit: INBOX_LIMIT,
            heartbeat: heartbeat?,
        }),
        decode: decode?,
    })
}

/// Requests alive, by [`TcpConnectRequest::sharing_hash`]; dead entries are swept as the table
/// grows.
struct RequestPool {
    by_hash: HashMap<u64, Vec<Weak<TcpConnectRequest>>>,
    sweep_at: usize,
}

static REQUESTS: LazyLock<Mutex<RequestPool>> = LazyLock::new(|| {
    Mutex::new(RequestPool {
        by_hash: HashMap::new(),
        sweep_at: 1024,
    })
});

/// The one request for connects that are the same ([`TcpConnectRequest::same_as`]): 10,000
/// sessions' `tcp.connect` to one server hold one request (~300 bytes with its heap) instead of
/// one each, and so do their connections' tasks, which keep it for their life.
fn shared_request(req: TcpConnectRequest) -> Arc<TcpConnectRequest> {
    let mut pool = REQUESTS.lock().unwrap_or_else(|e| e.into_inner());
    let list = pool.by_hash.entry(req.sharing_hash()).or_default();
    list.retain(|w| w.strong_count() > 0);
    if let Some(found) = list
        .iter()
        .filter_map(Weak::upgrade)
        .find(|r| r.same_as(&req))
    {
        return found;
    }
    let req = Arc::new(req);
    list.push(Arc::downgrade(&req));
    // Per-run builds (a templated target) add a request per run: sweep the dead ones, at
    // twice the size of what was alive at the last sweep.
    if pool.by_hash.len() >= pool.sweep_at {
        pool.by_hash.retain(|_, l| {
            l.retain(|w| w.strong_count() > 0);
            !l.is_empty()
        });
        pool.sweep_at = (2 * pool.by_hash.len()).max(1024);
    }
    req
}

/// The framing written, checked; lines (LF) when none is.
fn framing(m: Option<&FramingModel>, max: u64, path: &str, cx: &mut Cx) -> Option<Framing> {
    let Some(m) = m else {
        return Some(Framing::Lines { crlf: false });
    };
    let given: Vec<&str> = [
        ("lines", m.lines.is_some()),
        ("delimiter", m.delimiter.is_some()),
        ("delimiter_hex", m.delimiter_hex.is_some()),
        ("length", m.length.is_some()),
        ("fixed", m.fixed.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.then_some(k))
    .collect();
    let p = |k: &str| key_path(path, k);
    match given.as_slice() {
        [] => {
            cx.err_value(
                path,
                "no framing — expected one of: lines, delimiter, delimiter_hex, length, fixed",
            );
            None
        }
        [a, b, ..] => {
            cx.err_key(
                &p(b),
                format!("both `{a}` and `{b}` — expected exactly one framing"),
            );
            None
        }
        ["lines"] => Some(Framing::Lines {
            crlf: matches!(m.lines, Some(LineEnding::Crlf)),
        }),
        ["delimiter"] => {
            let d = m.delimiter.clone().unwrap_or_default().into_bytes();
            non_empty_delimiter(d, &p("delimiter"), cx)
        }
        ["delimiter_hex"] => {
            let d = hex(
                m.delimiter_hex.as_deref().unwrap_or_default(),
                &p("delimiter_hex"),
                cx,
            )?;
            non_empty_delimiter(d, &p("delimiter_hex"), cx)
        }
        ["fixed"] => {
            let n = m.fixed.map_or(0, |b| b.0);
            if n == 0 || n > max {
                cx.err_value(
                    &p("fixed"),
                    format!("fixed frames of {n} bytes — expected 1 to max_frame_size ({max})"),
                );
                return None;
            }
            Some(Framing::Fixed(n as usize))
        }
        _ => length(m.length.as_ref()?, &p("length"), cx),
    }
}

fn non_empty_delimiter(d: Vec<u8>, path: &str, cx: &mut Cx) -> Option<Framing> {
    if d.is_empty() {
        cx.err_value(path, "an empty delimiter — expected at least one byte");
        return None;
    }
    Some(Framing::Delimiter(d))
}

fn length(m: &LengthModel, path: &str, cx: &mut Cx) -> Option<Framing> {
    let p = |k: &str| key_path(path, k);
    if !matches!(m.bytes, 1 | 2 | 4 | 8) {
        cx.err_value(
            &p("bytes"),
            format!("a {}-byte length — expected 1, 2, 4 or 8", m.bytes),
        );
        return None;
    }
    let header = match (&m.header_hex, m.offset) {
        (Some(h), off) => {
            let h = hex(h, &p("header_hex"), cx)?;
            if off.is_some_and(|o| o as usize != h.len()) {
                cx.err_value(
                    &p("offset"),
                    format!(
                        "offset {} but header_hex has {} bytes — expected them equal (or only one of them)",
                        off.unwrap_or(0),
                        h.len()
                    ),
                );
                return None;
            }
            h
        }
        (None, off) => vec![0; off.unwrap_or(0).min(1024) as usize],
    };
    if m.offset.is_some_and(|o| o > 1024) {
        cx.err_value(
            &p("offset"),
            "an offset over 1024 bytes — expected a small fixed header",
        );
        return None;
    }
    Some(Framing::LengthPrefix(LengthPrefix {
        width: m.bytes as usize,
        endian: match m.endian {
            Some(EndianWord::Little) => Endian::Little,
            _ => Endian::Big,
        },
        includes_header: m.includes_header.unwrap_or(false),
        header,
    }))
}

/// How received frames are decoded; `protobuf` needs `proto_file` and `message`.
fn decode(m: &TcpConnectModel, path: &str, cx: &mut Cx) -> Option<Decode> {
    let p = |k: &str| key_path(path, k);
    let word = m.payload.unwrap_or(if m.proto_file.is_some() {
        PayloadWord::Protobuf
    } else {
        PayloadWord::Text
    });
    if word != PayloadWord::Protobuf {
        for (k, given) in [
            ("proto_file", m.proto_file.is_some()),
            ("message", m.message.is_some()),
        ] {
            if given {
                cx.err_key(
                    &p(k),
                    format!("`{k}` without payload: protobuf — expected it only to decode protobuf frames"),
                );
                return None;
            }
        }
    }
    Some(match word {
        PayloadWord::Text => Decode::Text,
        PayloadWord::Hex => Decode::Hex,
        PayloadWord::Base64 => Decode::Base64,
        PayloadWord::Json => Decode::Json,
        PayloadWord::Protobuf => Decode::Protobuf(proto_message(
            m.proto_file.as_deref(),
            m.message.as_deref(),
            path,
            cx,
        )?),
    })
}

/// The message type `message` of `proto_file` (both written beside each other at `path`).
fn proto_message(
    file: Option<&str>,
    message: Option<&str>,
    path: &str,
    cx: &mut Cx,
) -> Option<MessageDescriptor> {
    let (Some(file), Some(message)) = (file, message) else {
        cx.err_value(
            path,
            "protobuf without `proto_file` and `message` — expected the .proto file (relative to the scenario) and the message type, like message: chat.Frame",
        );
        return None;
    };
    let root = cx
        .shared
        .file_root
        .clone()
        .unwrap_or_else(|| cx.dir.to_path_buf());
    let pool = protobuf::compile(&mut cx.shared.protos, cx.dir, &root, file);
    let pool = cx.ok(&key_path(path, "proto_file"), pool)?;
    cx.ok(
        &key_path(path, "message"),
        protobuf::message(&pool, message),
    )
}

fn heartbeat(
    m: Option<&HeartbeatModel>,
    scenario: Option<Duration>,
    path: &str,
    cx: &mut Cx,
) -> Option<Option<Heartbeat>> {
    let Some(m) = m else {
        return Some(None);
    };
    let every = m.every.map(|d| d.0).or(scenario);
    let Some(every) = every else {
        cx.err_value(
            path,
            "a heartbeat without `every` — expected every: 30s here or the scenario's `heartbeat`",
        );
        return None;
    };
    if every < Duration::from_millis(100) {
        cx.err_value(
            &key_path(path, "every"),
            "a heartbeat under 100ms — expected at least 100ms",
        );
        return None;
    }
    let (body, _) = payload(
        &Payloads {
            text: m.text.as_ref(),
            json: m.json.as_ref(),
            base64: m.base64.as_ref(),
            hex: m.hex.as_ref(),
            protobuf: None,
        },
        path,
        "heartbeat",
        cx,
    )?;
    Some(Some(Heartbeat { every, body }))
}

/// The payload keys of a send or heartbeat.
struct Payloads<'a> {
    text: Option<&'a String>,
    json: Option<&'a serde_json::Value>,
    base64: Option<&'a String>,
    hex: Option<&'a String>,
    protobuf: Option<&'a serde_json::Value>,
}

/// The bytes of the one payload written, and how the trace shows them.
fn payload(m: &Payloads<'_>, path: &str, what: &str, cx: &mut Cx) -> Option<(Bytes, String)> {
    let given: Vec<&str> = [
        ("text", m.text.is_some()),
        ("json", m.json.is_some()),
        ("base64", m.base64.is_some()),
        ("hex", m.hex.is_some()),
        ("protobuf", m.protobuf.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.then_some(k))
    .collect();
    let p = |k: &str| key_path(path, k);
    match given.as_slice() {
        [] => {
            cx.err_value(
                path,
                format!(
                    "{what} without a payload — expected one of: text, json, base64, hex{}",
                    if what == "tcp.send" { ", protobuf" } else { "" }
                ),
            );
            None
        }
        [a, b, ..] => {
            cx.err_key(
                &p(b),
                format!("{what} with both `{a}` and `{b}` — expected exactly one payload"),
            );
            None
        }
        ["text"] => {
            let t = m.text?.clone();
            Some((Bytes::from(t.clone()), t))
        }
        ["json"] => {
            let t = serde_json::to_string(m.json?).ok()?;
            Some((Bytes::from(t.clone()), t))
        }
        ["base64"] => {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(m.base64?.trim()) {
                Ok(b) => {
                    let shown = format!("binary: {} bytes", b.len());
                    Some((Bytes::from(b), shown))
                }
                Err(e) => {
                    cx.err_value(
                        &p("base64"),
                        format!("invalid base64: {e} — expected standard base64"),
                    );
                    None
                }
            }
        }
        ["hex"] => {
            let b = hex(m.hex?, &p("hex"), cx)?;
            let shown = format!("binary: {} bytes", b.len());
            Some((Bytes::from(b), shown))
        }
        _ => None,
    }
}

pub fn tcp_send(m: &TcpSendModel, path: &str, cx: &mut Cx) -> Option<TcpSend> {
    let p = |k: &str| key_path(path, k);
    let payloads = Payloads {
        text: m.text.as_ref(),
        json: m.json.as_ref(),
        base64: m.base64.as_ref(),
        hex: m.hex.as_ref(),
        protobuf: m.protobuf.as_ref(),
    };
    if m.protobuf.is_none() && (m.proto_file.is_some() || m.message.is_some()) {
        let k = if m.proto_file.is_some() {
            "proto_file"
        } else {
            "message"
        };
        cx.err_key(
            &p(k),
            format!("`{k}` without `protobuf` — expected the message to send under protobuf:"),
        );
        return None;
    }
    let (body, shown, frame) = match m.protobuf.as_ref().filter(|_| only_protobuf(&payloads)) {
        None => {
            let (body, shown) = payload(&payloads, path, "tcp.send", cx)?;
            let frame = match (m.text.as_ref(), m.json.as_ref()) {
                (Some(t), _) => Payload::Text(t.clone()),
                (_, Some(j)) => Payload::Text(j.to_string()),
                _ => Payload::Binary(body.clone()),
            };
            (body, shown, frame)
        }
        Some(v) => {
            let desc = proto_message(m.proto_file.as_deref(), m.message.as_deref(), path, cx)?;
            match protobuf::encode(&desc, v) {
                Ok(b) => {
                    let shown = format!("{} {}", desc.full_name(), clip(&v.to_string()));
                    (Bytes::from(b), shown, Payload::Text(v.to_string()))
                }
                Err((field, why)) => {
                    cx.err_value(&field_path(path, &field), why);
                    return None;
                }
            }
        }
    };
    Some(TcpSend {
        on: m.on.clone(),
        body,
        raw: m.raw.unwrap_or(false),
        shown: exact(shown),
        frame: match frame {
            Payload::Text(t) => Payload::Text(exact(t)),
            binary => binary,
        },
    })
}

/// `s` without the spare room its writing left (JSON and `format!` grow by doubling): a send
/// built at load keeps both texts for the scenario's life, in every scenario.
fn exact(mut s: String) -> String {
    s.shrink_to_fit();
    s
}

/// Where field `login.user` of a send's `protobuf:` sits in the YAML.
fn field_path(path: &str, field: &str) -> String {
    field
        .split('.')
        .filter(|s| !s.is_empty())
        .fold(key_path(path, "protobuf"), |acc, k| key_path(&acc, k))
}

fn only_protobuf(p: &Payloads<'_>) -> bool {
    p.protobuf.is_some()
        && p.text.is_none()
        && p.json.is_none()
        && p.base64.is_none()
        && p.hex.is_none()
}

fn clip(s: &str) -> String {
    if s.chars().count() <= 160 {
        return s.to_string();
    }
    let cut: String = s.chars().take(160).collect();
    format!("{cut}…")
}

pub fn tcp_expect(m: &TcpExpectModel, path: &str, cx: &mut Cx) -> Option<WsExpect> {
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
                "tcp.expect without `match` or `not` — expected what the frame must look like",
            );
            return None;
        }
    };
    if negate && m.within.is_none() {
        cx.err_value(
            path,
            "tcp.expect with `not` needs `within` — expected how long no such frame may arrive, like within: 2s",
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

/// Pairs of hex digits (whitespace ignored).
fn hex(text: &str, path: &str, cx: &mut Cx) -> Option<Vec<u8>> {
    let h: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes: Option<Vec<u8>> = (h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| {
            h.as_bytes()
                .chunks(2)
                .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                .collect()
        })
        .flatten();
    if bytes.is_none() {
        cx.err_value(path, "invalid hex — expected pairs of hex digits like 0a1b");
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::scenario::Scenario;
    use crate::config::{load_str, LoadOptions};

    fn request(sc: &Scenario) -> Arc<TcpConnectRequest> {
        match sc.steps[0].built().map(|b| &b.action) {
            Some(Action::TcpConn(TcpConnAction::Connect(c))) => c.request.clone(),
            other => panic!("not a built tcp.connect: {other:?}"),
        }
    }

    /// 10,000 sessions to one server hold one request; any difference keeps its own.
    #[test]
    fn identical_connects_share_one_request_and_others_keep_theirs() {
        let connect = |name: &str, extra: &str| {
            format!(
                "  - scenario: {name}\n    steps:\n      - tcp.connect: {{as: c, target: \
                 \"127.0.0.1:9\", heartbeat: {{text: hi, every: 30s}}{extra}}}\n"
            )
        };
        let yaml = format!(
            "scenarios:\n{}{}{}{}{}",
            connect("a", ""),
            connect("b", ""),
            connect("c", ", max_frame_size: 1KiB"),
            connect("d", ", tls: true"),
            connect("e", ", tls: true"),
        );
        let cfg = load_str("t.yaml", &yaml, &LoadOptions::default()).expect("loads");
        let r: Vec<_> = cfg.scenarios.iter().map(|s| request(s)).collect();
        assert!(Arc::ptr_eq(&r[0], &r[1]), "identical connects share");
        assert!(
            !Arc::ptr_eq(&r[0], &r[2]),
            "another frame size keeps its own"
        );
        assert!(!Arc::ptr_eq(&r[0], &r[3]), "TLS keeps its own");
        assert!(Arc::ptr_eq(&r[3], &r[4]), "the same TLS client is shared");
        assert_eq!(r[2].max_frame_size, 1024);
    }
}
