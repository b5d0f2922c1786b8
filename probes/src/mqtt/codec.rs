//! MQTT 3.1.1 and 5 packets through rumqttc's codec, behind one protocol-neutral shape.
//!
//! rumqttc has a separate packet model per version (`mqttbytes::v4`, `v5::mqttbytes::v5`); the
//! connection task speaks only [`In`] and [`Out`], so the session logic (acks, QoS 2 flow,
//! keep-alive) is written once. Decoding is bounded: rumqttc checks the announced remaining
//! length against the maximum packet size before it takes any of it.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

/// The protocol version of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Version {
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5")]
    V5,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V311 => "3.1.1",
            Version::V5 => "5",
        }
    }
}

/// What CONNECT carries.
#[derive(Clone, Default)]
pub struct ConnectOpts {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub clean_start: bool,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    /// MQTT 5: how long the broker keeps the session after the connection ends.
    pub session_expiry: Option<u32>,
    /// MQTT 5 user properties of the CONNECT.
    pub user_properties: Vec<(String, String)>,
}

impl std::fmt::Debug for ConnectOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: requests end up in debug logs and panics.
        f.debug_struct("ConnectOpts")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// MQTT 5 properties of a PUBLISH that a probe writes or matches (3.1.1 has none).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Properties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_lossy")]
    pub correlation_data: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_expiry: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_utf8: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<(String, String)>,
}

impl Properties {
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

mod opt_lossy {
    pub fn serialize<S: serde::Serializer>(
        b: &Option<bytes::Bytes>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_str(&String::from_utf8_lossy(b)),
            None => s.serialize_none(),
        }
    }
}

/// A PUBLISH, either way.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub pkid: u16,
    pub properties: Properties,
}

/// An acknowledgement's verdict: `None` when it says success, else the broker's reason.
pub type Refusal = Option<String>;

/// A packet from the broker.
#[derive(Clone, Debug, PartialEq)]
pub enum In {
    ConnAck {
        session_present: bool,
        refusal: Refusal,
        assigned_client_id: Option<String>,
        server_keep_alive: Option<u16>,
        reason_string: Option<String>,
    },
    Publish(Publish),
    PubAck {
        pkid: u16,
        refusal: Refusal,
        note: Option<String>,
    },
    PubRec {
        pkid: u16,
        refusal: Refusal,
        note: Option<String>,
    },
    PubRel {
        pkid: u16,
    },
    PubComp {
        pkid: u16,
        refusal: Refusal,
    },
    /// One entry per filter: the granted QoS, or the broker's refusal.
    SubAck {
        pkid: u16,
        granted: Vec<Result<u8, String>>,
    },
    UnsubAck {
        pkid: u16,
    },
    PingResp,
    Disconnect {
        reason: String,
    },
    /// A packet a client never receives (CONNECT, SUBSCRIBE, AUTH…).
    Unexpected(&'static str),
}

/// A packet to the broker.
pub enum Out<'a> {
    Connect(&'a ConnectOpts),
    Publish(&'a Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        pkid: u16,
        filters: &'a [(String, u8)],
    },
    PingReq,
    Disconnect,
}

/// Why a packet could not be read (the connection cannot go on after it).
#[derive(Debug)]
pub struct DecodeError(pub String);

/// "BadUserNamePassword" → "bad user name password": rumqttc's reason names in words.
pub fn words(debug_name: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug_name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn qos4(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS;
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Take one whole packet off the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn decode(v: Version, buf: &mut BytesMut, max: usize) -> Result<Option<In>, DecodeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    match v {
        Version::V311 => match v4::Packet::read(buf, max) {
            Ok(p) => Ok(Some(from_v4(p))),
            Err(rumqttc::Error::InsufficientBytes(_)) => Ok(None),
            Err(e @ rumqttc::Error::PayloadSizeLimitExceeded(_)) => Err(too_large(&e, max)),
            Err(e) => Err(malformed(&e)),
        },
        Version::V5 => match v5::Packet::read(buf, Some(max as u32)) {
            Ok(p) => Ok(Some(from_v5(p))),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e @ rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { .. }) => {
                Err(too_large(&e, max))
            }
            Err(e) => Err(malformed(&e)),
        },
    }
}

fn too_large(e: &dyn std::fmt::Display, max: usize) -> DecodeError {
    DecodeError(format!(
        "the broker announced a packet larger than max_packet_size ({max} bytes): {e}"
    ))
}

fn malformed(e: &dyn std::fmt::Display) -> DecodeError {
    DecodeError(format!("the broker sent a malformed packet: {e}"))
}

fn from_v4(p: v4::Packet) -> In {
    use v4::Packet as P;
    match p {
        P::ConnAck(a) => In::ConnAck {
            session_present: a.session_present,
            refusal: (a.code != v4::ConnectReturnCode::Success)
                .then(|| words(&format!("{:?}", a.code))),
            assigned_client_id: None,
            server_keep_alive: None,
            reason_string: None,
        },
        P::Publish(p) => In::Publish(Publish {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos as u8,
            retain: p.retain,
            dup: p.dup,
            pkid: p.pkid,
            properties: Properties::default(),
        }),
        P::PubAck(a) => In::PubAck {
            pkid: a.pkid,
            refusal: None,
            note: None,
        },
        P::PubRec(a) => In::PubRec {
            pkid: a.pkid,
            refusal: None,
            note: None,
        },
        P::PubRel(a) => In::PubRel { pkid: a.pkid },
        P::PubComp(a) => In::PubComp {
            pkid: a.pkid,
            refusal: None,
        },
        P::SubAck(a) => In::SubAck {
            pkid: a.pkid,
            granted: a
                .return_codes
                .iter()
                .map(|c| match c {
                    v4::SubscribeReasonCode::Success(q) => Ok(*q as u8),
                    v4::SubscribeReasonCode::Failure => Err("failure (0x80)".to_string()),
                })
                .collect(),
        },
        P::UnsubAck(a) => In::UnsubAck { pkid: a.pkid },
        P::PingResp => In::PingResp,
        P::Disconnect => In::Disconnect {
            reason: "DISCONNECT".into(),
        },
        P::Connect(_) => In::Unexpected("CONNECT"),
        P::Subscribe(_) => In::Unexpected("SUBSCRIBE"),
        P::Unsubscribe(_) => In::Unexpected("UNSUBSCRIBE"),
        P::PingReq => In::Unexpected("PINGREQ"),
    }
}

fn props_from_v5(p: Option<v5::PublishProperties>) -> Properties {
    let Some(p) = p else {
        return Properties::default();
    };
    Properties {
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        message_expiry: p.message_expiry_interval,
        payload_utf8: p.payload_format_indicator.map(|b| b == 1),
        user_properties: p.user_properties,
    }
}

fn from_v5(p: v5::Packet) -> In {
    use v5::Packet as P;
    let refused = |ok: bool, name: String, why: Option<String>| {
        (!ok).then(|| match why {
            Some(w) => format!("{name} ({w:?})"),
            None => name,
        })
    };
    match p {
        P::ConnAck(a) => {
            let props = a.properties;
            let reason_string = props.as_ref().and_then(|p| p.reason_string.clone());
            In::ConnAck {
                session_present: a.session_present,
                refusal: refused(
                    a.code == v5::ConnectReturnCode::Success,
                    words(&format!("{:?}", a.code)),
                    reason_string.clone(),
                ),
                assigned_client_id: props
                    .as_ref()
                    .and_then(|p| p.assigned_client_identifier.clone()),
                server_keep_alive: props.as_ref().and_then(|p| p.server_keep_alive),
                reason_string,
            }
        }
        P::Publish(p) => In::Publish(Publish {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload,
            qos: p.qos as u8,
            retain: p.retain,
            dup: p.dup,
            pkid: p.pkid,
            properties: props_from_v5(p.properties),
        }),
        P::PubAck(a) => {
            use v5::PubAckReason as R;
            let why = a.properties.and_then(|p| p.reason_string);
            let ok = matches!(a.reason, R::Success | R::NoMatchingSubscribers);
            In::PubAck {
                pkid: a.pkid,
                note: (a.reason == R::NoMatchingSubscribers)
                    .then(|| "no matching subscribers".into()),
                refusal: refused(ok, words(&format!("{:?}", a.reason)), why),
            }
        }
        P::PubRec(a) => {
            use v5::PubRecReason as R;
            let why = a.properties.and_then(|p| p.reason_string);
            let ok = matches!(a.reason, R::Success | R::NoMatchingSubscribers);
            In::PubRec {
                pkid: a.pkid,
                note: (a.reason == R::NoMatchingSubscribers)
                    .then(|| "no matching subscribers".into()),
                refusal: refused(ok, words(&format!("{:?}", a.reason)), why),
            }
        }
        P::PubRel(a) => In::PubRel { pkid: a.pkid },
        P::PubComp(a) => In::PubComp {
            pkid: a.pkid,
            refusal: refused(
                a.reason == v5::PubCompReason::Success,
                words(&format!("{:?}", a.reason)),
                a.properties.and_then(|p| p.reason_string),
            ),
        },
        P::SubAck(a) => In::SubAck {
            pkid: a.pkid,
            granted: a
                .return_codes
                .iter()
                .map(|c| match c {
                    v5::SubscribeReasonCode::Success(q) => Ok(*q as u8),
                    other => Err(words(&format!("{other:?}"))),
                })
                .collect(),
        },
        P::UnsubAck(a) => In::UnsubAck { pkid: a.pkid },
        P::PingResp(_) => In::PingResp,
        P::Disconnect(d) => {
            let why = d.properties.and_then(|p| p.reason_string);
            let mut reason = format!(
                "DISCONNECT {:#04x} {}",
                d.reason_code as u8,
                words(&format!("{:?}", d.reason_code))
            );
            if let Some(w) = why {
                reason.push_str(&format!(" ({w:?})"));
            }
            In::Disconnect { reason }
        }
        P::Connect(..) => In::Unexpected("CONNECT"),
        P::Subscribe(_) => In::Unexpected("SUBSCRIBE"),
        P::Unsubscribe(_) => In::Unexpected("UNSUBSCRIBE"),
        P::PingReq(_) => In::Unexpected("PINGREQ"),
        P::Auth(_) => In::Unexpected("AUTH"),
    }
}

/// Append `out`'s bytes to `buf`; an error when it is larger than `max`.
pub fn encode(v: Version, out: &Out<'_>, buf: &mut BytesMut, max: usize) -> Result<(), String> {
    let res = match v {
        Version::V311 => to_v4(out).write(buf, max).map_err(|e| e.to_string()),
        Version::V5 => to_v5(out)
            .write(buf, Some(max as u32))
            .map_err(|e| e.to_string()),
    };
    res.map(|_| ())
}

fn to_v4(out: &Out<'_>) -> v4::Packet {
    use v4::Packet as P;
    match out {
        Out::Connect(c) => P::Connect(v4::Connect {
            protocol: rumqttc::Protocol::V4,
            keep_alive: c.keep_alive,
            client_id: c.client_id.clone(),
            clean_session: c.clean_start,
            last_will: None,
            login: login(c).map(|(username, password)| v4::Login { username, password }),
        }),
        Out::Publish(p) => P::Publish(v4::Publish {
            dup: p.dup,
            qos: qos4(p.qos),
            retain: p.retain,
            topic: p.topic.clone(),
            pkid: p.pkid,
            payload: p.payload.clone(),
        }),
        Out::PubAck(id) => P::PubAck(v4::PubAck::new(*id)),
        Out::PubRec(id) => P::PubRec(v4::PubRec::new(*id)),
        Out::PubRel(id) => P::PubRel(v4::PubRel::new(*id)),
        Out::PubComp(id) => P::PubComp(v4::PubComp::new(*id)),
        Out::Subscribe { pkid, filters } => P::Subscribe(v4::Subscribe {
            pkid: *pkid,
            filters: filters
                .iter()
                .map(|(f, q)| v4::SubscribeFilter::new(f.clone(), qos4(*q)))
                .collect(),
        }),
        Out::PingReq => P::PingReq,
        Out::Disconnect => P::Disconnect,
    }
}

/// Username and password as CONNECT sends them (3.1.1 has no password without a username:
/// an empty one is sent then).
fn login(c: &ConnectOpts) -> Option<(String, String)> {
    match (&c.username, &c.password) {
        (None, None) => None,
        (u, p) => Some((u.clone().unwrap_or_default(), p.clone().unwrap_or_default())),
    }
}

fn to_v5(out: &Out<'_>) -> v5::Packet {
    use v5::Packet as P;
    match out {
        Out::Connect(c) => {
            let properties =
                (c.session_expiry.is_some() || !c.user_properties.is_empty()).then(|| {
                    v5::ConnectProperties {
                        session_expiry_interval: c.session_expiry,
                        user_properties: c.user_properties.clone(),
                        ..v5::ConnectProperties::new()
                    }
                });
            P::Connect(
                v5::Connect {
                    keep_alive: c.keep_alive,
                    client_id: c.client_id.clone(),
                    clean_start: c.clean_start,
                    properties,
                },
                None,
                login(c).map(|(username, password)| v5::Login { username, password }),
            )
        }
        Out::Publish(p) => P::Publish(v5::Publish {
            dup: p.dup,
            qos: qos5(p.qos),
            retain: p.retain,
            topic: Bytes::copy_from_slice(p.topic.as_bytes()),
            pkid: p.pkid,
            payload: p.payload.clone(),
            properties: (!p.properties.is_empty()).then(|| v5::PublishProperties {
                payload_format_indicator: p.properties.payload_utf8.map(u8::from),
                message_expiry_interval: p.properties.message_expiry,
                topic_alias: None,
                response_topic: p.properties.response_topic.clone(),
                correlation_data: p.properties.correlation_data.clone(),
                user_properties: p.properties.user_properties.clone(),
                subscription_identifiers: Vec::new(),
                content_type: p.properties.content_type.clone(),
            }),
        }),
        Out::PubAck(id) => P::PubAck(v5::PubAck::new(*id, None)),
        Out::PubRec(id) => P::PubRec(v5::PubRec::new(*id, None)),
        Out::PubRel(id) => P::PubRel(v5::PubRel::new(*id, None)),
        Out::PubComp(id) => P::PubComp(v5::PubComp::new(*id, None)),
        Out::Subscribe { pkid, filters } => {
            let mut s = v5::Subscribe::new_many(
                filters
                    .iter()
                    .map(|(f, q)| v5::Filter::new(f.clone(), qos5(*q))),
                None,
            );
            s.pkid = *pkid;
            P::Subscribe(s)
        }
        Out::PingReq => P::PingReq(v5::PingReq),
        Out::Disconnect => P::Disconnect(v5::Disconnect::new(
            v5::DisconnectReasonCode::NormalDisconnection,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_in_words() {
        assert_eq!(words("BadUserNamePassword"), "bad user name password");
    }

    #[test]
    fn publish_round_trips_both_versions() {
        for v in [Version::V311, Version::V5] {
            let p = Publish {
                topic: "a/b".into(),
                payload: Bytes::from_static(b"hi"),
                qos: 1,
                retain: true,
                dup: false,
                pkid: 7,
                properties: Properties::default(),
            };
            let mut buf = BytesMut::new();
            encode(v, &Out::Publish(&p), &mut buf, 1024).unwrap();
            let whole = buf.clone();
            // Half a packet is "need more", not an error.
            let mut half = BytesMut::from(&whole[..whole.len() - 1]);
            assert!(decode(v, &mut half, 1024).unwrap().is_none());
            assert_eq!(decode(v, &mut buf, 1024).unwrap(), Some(In::Publish(p)));
        }
    }

    #[test]
    fn an_oversized_announced_length_is_refused_before_it_arrives() {
        // PUBLISH announcing 200 MB (remaining length 0xFF 0xFF 0xFF 0x5F), none of it sent.
        let mut buf = BytesMut::from(&[0x30u8, 0xFF, 0xFF, 0xFF, 0x5F][..]);
        for v in [Version::V311, Version::V5] {
            let e = decode(v, &mut buf.clone(), 64 * 1024).unwrap_err();
            assert!(e.0.contains("max_packet_size"), "{}", e.0);
        }
        buf.clear();
    }
}
