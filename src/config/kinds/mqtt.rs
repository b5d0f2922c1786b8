//! The `mqtt.*` steps: `mqtt.connect` opens a named MQTT 3.1.1 or 5 connection of the run (over
//! TCP, TLS or WebSocket), `mqtt.subscribe` subscribes it, `mqtt.publish` publishes on it at
//! QoS 0/1/2, `mqtt.expect` waits for a delivered message (topic filter and payload matchers,
//! like `ws.expect`), and `mqtt.close` disconnects it.

use std::time::Duration;

use bytes::Bytes;
use schemars::JsonSchema;
use serde::Deserialize;
use sonde_probes::mqtt::{self as probe, ConnectOpts, MqttConnectRequest, Properties, Version};
use sonde_probes::ws::Payload;

use super::ws::{base64_payload, frame_match, hex_payload, FrameMatchModel};
use super::{At, StepKind};
use crate::config::build::{ip_options, Alpn, Cx};
use crate::config::flow::valid_name;
use crate::config::locate::key_path;
use crate::config::model::{CaptureModel, TlsConfigModel};
use crate::config::scenario::{Action, FrameMatch};
use crate::config::units::{ByteSize, Dur, IpProto, Ordered, Text};

/// Messages a connection keeps between two `mqtt.expect` steps; beyond it the oldest is
/// dropped (and counted): a busy topic cannot grow a session's memory without bound.
pub const INBOX_LIMIT: usize = 64;
/// Default cap on one packet from the broker.
pub const MAX_PACKET: u64 = 1024 * 1024;
/// Default keep-alive (MQTT's own PINGREQ/PINGRESP).
const KEEP_ALIVE: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttConnectModel {
    #[serde(rename = "as")]
    pub as_: String,
    /// mqtt://, mqtts://, ws:// or wss://
    pub url: String,
    /// "3.1.1" (default) or "5".
    pub protocol: Option<Text>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Start a new session (default true); false resumes the broker's session for client_id.
    pub clean_start: Option<bool>,
    pub keep_alive: Option<Dur>,
    /// MQTT 5: how long the broker keeps the session after the connection ends.
    pub session_expiry: Option<Dur>,
    /// MQTT 5 user properties of the CONNECT.
    pub user_properties: Option<Ordered<Text>>,
    pub tls_config: Option<TlsConfigModel>,
    pub preferred_ip_protocol: Option<IpProto>,
    pub ip_protocol_fallback: Option<bool>,
    pub max_packet_size: Option<ByteSize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttSubscribeModel {
    pub on: String,
    /// One topic filter (`+` and `#` wildcards), or `topics` for several.
    pub topic: Option<String>,
    pub topics: Option<Vec<String>>,
    /// Maximum QoS asked for (default 0).
    pub qos: Option<u8>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttPropertiesModel {
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<String>,
    pub message_expiry: Option<Dur>,
    /// The payload is UTF-8 text (payload format indicator 1).
    pub payload_utf8: Option<bool>,
    pub user_properties: Option<Ordered<Text>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttPublishModel {
    pub on: String,
    pub topic: String,
    pub text: Option<String>,
    pub json: Option<serde_json::Value>,
    pub base64: Option<String>,
    pub hex: Option<String>,
    /// 0 (default), 1 or 2.
    pub qos: Option<u8>,
    pub retain: Option<bool>,
    /// MQTT 5 publish properties.
    pub properties: Option<MqttPropertiesModel>,
    pub capture: Option<Ordered<CaptureModel>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttExpectModel {
    pub on: String,
    /// The message's topic must match this filter (`+`, `#`).
    pub topic: Option<String>,
    #[serde(rename = "match")]
    pub match_: Option<FrameMatchModel>,
    pub not: Option<FrameMatchModel>,
    /// MQTT 5 properties the message must carry (each one given must be equal).
    pub properties: Option<MqttPropertiesModel>,
    pub retain: Option<bool>,
    pub within: Option<Dur>,
    pub capture: Option<Ordered<CaptureModel>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttCloseModel {
    pub on: String,
}

/// The `mqtt.*` steps, on a named connection of the run.
#[derive(Debug)]
pub enum MqttAction {
    Connect(Box<MqttConnect>),
    Subscribe(Box<MqttSubscribe>),
    Publish(Box<MqttPublish>),
    Expect(Box<MqttExpect>),
    Close(Box<MqttClose>),
}

#[derive(Debug)]
pub struct MqttConnect {
    pub name: String,
    pub request: MqttConnectRequest,
}

#[derive(Debug)]
pub struct MqttSubscribe {
    pub on: String,
    pub filters: Vec<(String, u8)>,
}

#[derive(Debug)]
pub struct MqttPublish {
    pub on: String,
    pub topic: String,
    pub payload: Payload,
    pub qos: u8,
    pub retain: bool,
    pub properties: Properties,
}

/// What a delivered message must look like; every part given must hold.
#[derive(Debug)]
pub struct MqttExpect {
    pub on: String,
    pub topic: Option<String>,
    /// `None`: any payload (with `topic` or `properties` given).
    pub payload: Option<FrameMatch>,
    pub negate: bool,
    pub properties: Properties,
    pub retain: Option<bool>,
    pub within: Option<Duration>,
}

#[derive(Debug)]
pub struct MqttClose {
    pub on: String,
}

const MESSAGE_CAPTURES: &[&str] = &["json", "regex", "frame"];

impl StepKind for MqttConnectModel {
    const EXPECT: &'static [&'static str] = &["duration", "cert_expires_in"];

    fn opens_connection(&self) -> Option<&str> {
        Some(&self.as_)
    }

    /// Without a `client_id`, the build picks a random one: a session keeps the one picked at
    /// load across reconnects (as it always did), so such a step stays built.
    fn rebuilds_the_same(&self) -> bool {
        self.client_id.is_some()
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let c = connect(self, at.path, at.servers, cx)?;
        Some(Action::Mqtt(MqttAction::Connect(Box::new(c))))
    }
}

impl StepKind for MqttSubscribeModel {
    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let s = subscribe(self, at.path, cx)?;
        Some(Action::Mqtt(MqttAction::Subscribe(Box::new(s))))
    }
}

impl StepKind for MqttPublishModel {
    const CAPTURES: &'static [&'static str] = MESSAGE_CAPTURES;

    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn inner_captures(&self) -> Option<&Ordered<CaptureModel>> {
        self.capture.as_ref()
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let p = publish(self, at.path, cx)?;
        Some(Action::Mqtt(MqttAction::Publish(Box::new(p))))
    }
}

impl StepKind for MqttExpectModel {
    const CAPTURES: &'static [&'static str] = MESSAGE_CAPTURES;
    const EXPECT: &'static [&'static str] = &["json", "duration"];

    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn inner_captures(&self) -> Option<&Ordered<CaptureModel>> {
        self.capture.as_ref()
    }

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let e = expect(self, at.path, cx)?;
        Some(Action::Mqtt(MqttAction::Expect(Box::new(e))))
    }
}

impl StepKind for MqttCloseModel {
    fn uses_connection(&self) -> Option<&str> {
        Some(&self.on)
    }

    fn build(&self, _at: &At<'_>, _cx: &mut Cx) -> Option<Action> {
        Some(Action::Mqtt(MqttAction::Close(Box::new(MqttClose {
            on: self.on.clone(),
        }))))
    }
}

fn connect(
    m: &MqttConnectModel,
    path: &str,
    servers: Option<&[std::net::SocketAddr]>,
    cx: &mut Cx,
) -> Option<MqttConnect> {
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
    let url = mqtt_url(&m.url, &p("url"), cx);
    let version = match m.protocol.as_ref().map(|t| t.0.as_str()) {
        None | Some("3.1.1" | "4" | "v3.1.1") => Version::V311,
        Some("5" | "5.0" | "v5") => Version::V5,
        Some(other) => {
            cx.err_value(
                &p("protocol"),
                format!("unknown MQTT protocol {other:?} — expected \"3.1.1\" or \"5\""),
            );
            Version::V311
        }
    };
    let keep_alive = m.keep_alive.map_or(KEEP_ALIVE, |d| d.0);
    if keep_alive.as_secs() > u64::from(u16::MAX)
        || (keep_alive.as_secs() == 0 && !keep_alive.is_zero())
    {
        cx.err_value(
            &p("keep_alive"),
            "keep_alive must be whole seconds up to 65535s (0 turns it off)",
        );
    }
    let clean_start = m.clean_start.unwrap_or(true);
    let client_id = m.client_id.clone().unwrap_or_else(|| {
        // A random id: two runs (or two connections) never take each other's session over.
        format!("sonde-{:016x}", fastrand::u64(..))
    });
    if client_id.is_empty() && !clean_start && version == Version::V311 {
        cx.err_value(
            &p("client_id"),
            "an empty client_id needs clean_start: true in MQTT 3.1.1 — expected a client_id to resume a session",
        );
    }
    let v5_only = [
        ("session_expiry", m.session_expiry.is_some()),
        ("user_properties", m.user_properties.is_some()),
    ];
    for (key, given) in v5_only {
        if given && version != Version::V5 {
            cx.err_key(
                &p(key),
                format!("`{key}` is an MQTT 5 feature — expected protocol: \"5\" with it"),
            );
        }
    }
    let session_expiry = m
        .session_expiry
        .map(|d| d.0.as_secs().min(u64::from(u32::MAX)) as u32);
    let alpn = if url.as_ref().is_some_and(|u| u.scheme() == "wss") {
        Alpn::Http1
    } else {
        Alpn::None
    };
    let tls = cx.tls_client(m.tls_config.as_ref(), &p("tls_config"), alpn);
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
    // `mqtt://user:pass@host` works as it does for mosquitto_pub and most clients; explicit
    // keys win. The URL sent on (WebSocket upgrade) carries no userinfo.
    let mut url = url?;
    let (url_user, url_password) = probe::take_userinfo(&mut url);
    let username = m.username.clone().or(url_user);
    let password = m.password.clone().or(url_password);
    Some(MqttConnect {
        name: m.as_.clone(),
        request: MqttConnectRequest {
            url: url.to_string(),
            version,
            connect: ConnectOpts {
                client_id,
                // Empty is absent: a template like `{{ env.MQTT_USER | default('') }}` turns
                // authentication off rather than sending an empty name.
                username: username.filter(|u| !u.is_empty()),
                password: password.filter(|p| !p.is_empty()),
                clean_start,
                keep_alive: keep_alive.as_secs() as u16,
                session_expiry,
                user_properties: pairs(m.user_properties.as_ref()),
            },
            resolver: resolver?,
            ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
            tls_client: tls?,
            inbox_limit: INBOX_LIMIT,
            max_packet_size: m.max_packet_size.map_or(MAX_PACKET, |b| b.0) as usize,
        },
    })
}

fn pairs(o: Option<&Ordered<Text>>) -> Vec<(String, String)> {
    o.map(|o| o.0.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

/// An absolute mqtt://, mqtts://, ws:// or wss:// URL.
fn mqtt_url(text: &str, path: &str, cx: &mut Cx) -> Option<url::Url> {
    let expected = "expected an absolute mqtt://, mqtts://, ws:// or wss:// URL";
    match url::Url::parse(text) {
        Ok(u) => match probe::scheme(&u) {
            Ok(_) => Some(u),
            Err(why) => {
                cx.err_value(
                    path,
                    format!("unsupported MQTT URL {text:?}: {why} — {expected}"),
                );
                None
            }
        },
        Err(e) => {
            cx.err_value(path, format!("invalid URL {text:?}: {e} — {expected}"));
            None
        }
    }
}

fn check_qos(q: Option<u8>, path: &str, cx: &mut Cx) -> u8 {
    match q {
        None => 0,
        Some(q @ 0..=2) => q,
        Some(q) => {
            cx.err_value(path, format!("QoS {q} does not exist — expected 0, 1 or 2"));
            0
        }
    }
}

/// A topic filter: non-empty, `#` only last and alone in its level, `+` alone in its level.
pub fn valid_filter(f: &str) -> bool {
    let levels: Vec<&str> = f.split('/').collect();
    !f.is_empty()
        && !f.contains('\0')
        && levels.iter().enumerate().all(|(i, l)| {
            (*l == "#" && i == levels.len() - 1)
                || *l == "+"
                || (!l.contains('#') && !l.contains('+'))
        })
}

fn subscribe(m: &MqttSubscribeModel, path: &str, cx: &mut Cx) -> Option<MqttSubscribe> {
    let before = cx.errors.len();
    let qos = check_qos(m.qos, &key_path(path, "qos"), cx);
    let filters: Vec<String> = match (&m.topic, &m.topics) {
        (Some(t), None) => vec![t.clone()],
        (None, Some(ts)) if !ts.is_empty() => ts.clone(),
        (Some(_), Some(_)) => {
            cx.err_key(
                &key_path(path, "topics"),
                "both `topic` and `topics` — expected one of them",
            );
            return None;
        }
        _ => {
            cx.err_value(
                path,
                "mqtt.subscribe without a topic — expected topic: a/filter/# or topics: [...]",
            );
            return None;
        }
    };
    for f in &filters {
        if !valid_filter(f) {
            cx.err_value(
                &key_path(path, if m.topic.is_some() { "topic" } else { "topics" }),
                format!("invalid topic filter {f:?} — expected levels split by /, with + alone in a level and # only last"),
            );
        }
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(MqttSubscribe {
        on: m.on.clone(),
        filters: filters.into_iter().map(|f| (f, qos)).collect(),
    })
}

fn properties(m: Option<&MqttPropertiesModel>) -> Properties {
    let Some(m) = m else {
        return Properties::default();
    };
    Properties {
        content_type: m.content_type.clone(),
        response_topic: m.response_topic.clone(),
        correlation_data: m
            .correlation_data
            .as_ref()
            .map(|c| Bytes::copy_from_slice(c.as_bytes())),
        message_expiry: m
            .message_expiry
            .map(|d| d.0.as_secs().min(u64::from(u32::MAX)) as u32),
        payload_utf8: m.payload_utf8,
        user_properties: pairs(m.user_properties.as_ref()),
    }
}

fn publish(m: &MqttPublishModel, path: &str, cx: &mut Cx) -> Option<MqttPublish> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let qos = check_qos(m.qos, &p("qos"), cx);
    if m.topic.is_empty() || m.topic.contains(['+', '#', '\0']) {
        cx.err_value(
            &p("topic"),
            format!(
                "invalid topic {:?} to publish on — expected a non-empty topic without + or #",
                m.topic
            ),
        );
    }
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
        // An empty message is legal (and clears a retained one).
        [] => Some(Payload::Binary(Bytes::new())),
        ["text"] => Some(Payload::Text(m.text.clone().unwrap_or_default())),
        ["json"] => serde_json::to_string(m.json.as_ref()?)
            .ok()
            .map(Payload::Text),
        ["base64"] => base64_payload(m.base64.as_deref().unwrap_or_default(), &p("base64"), cx),
        [_hex] => hex_payload(m.hex.as_deref().unwrap_or_default(), &p("hex"), cx),
        [a, b, ..] => {
            cx.err_key(
                &p(b),
                format!("mqtt.publish with both `{a}` and `{b}` — expected at most one payload"),
            );
            None
        }
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(MqttPublish {
        on: m.on.clone(),
        topic: m.topic.clone(),
        payload: payload?,
        qos,
        retain: m.retain.unwrap_or(false),
        properties: properties(m.properties.as_ref()),
    })
}

fn expect(m: &MqttExpectModel, path: &str, cx: &mut Cx) -> Option<MqttExpect> {
    let before = cx.errors.len();
    let (payload, negate) = match (&m.match_, &m.not) {
        (Some(f), None) => (Some(frame_match(f, &key_path(path, "match"), cx)), false),
        (None, Some(f)) => (Some(frame_match(f, &key_path(path, "not"), cx)), true),
        (Some(_), Some(_)) => {
            cx.err_key(
                &key_path(path, "not"),
                "both `match` and `not` — expected one: match waits for a message, not asserts none arrives",
            );
            return None;
        }
        (None, None) => (None, false),
    };
    if payload.is_none() && m.topic.is_none() && m.properties.is_none() {
        cx.err_value(
            path,
            "mqtt.expect without `topic`, `match` or `not` — expected what the message must look like",
        );
    }
    if let Some(t) = m.topic.as_deref().filter(|t| !valid_filter(t)) {
        cx.err_value(
            &key_path(path, "topic"),
            format!("invalid topic filter {t:?} — expected levels split by /, with + alone in a level and # only last"),
        );
    }
    if negate && m.within.is_none() {
        cx.err_value(
            path,
            "mqtt.expect with `not` needs `within` — expected how long no such message may arrive, like within: 2s",
        );
    }
    if negate && m.capture.is_some() {
        cx.err_key(
            &key_path(path, "capture"),
            "a capture on `not` — expected captures only beside `match` (no message is kept)",
        );
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(MqttExpect {
        on: m.on.clone(),
        topic: m.topic.clone(),
        payload,
        negate,
        properties: properties(m.properties.as_ref()),
        retain: m.retain,
        within: m.within.map(|d| d.0),
    })
}

#[cfg(test)]
mod tests {
    use super::valid_filter;

    #[test]
    fn topic_filters() {
        for ok in ["a", "a/b", "a/+/c", "#", "a/#", "+", "+/+"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/b", "a/b#", "a+/b", "a/#x"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }
}
