//! MQTT 3.1.1 and 5 connections that stay open across steps (`mqtt.connect`, `mqtt.subscribe`,
//! `mqtt.publish`, `mqtt.expect`, `mqtt.close`).
//!
//! rumqttc provides the packets ([`codec`]); we dial (the shared [`Resolver`],
//! [`connect_tcp`]), do TLS ([`TlsClient`]) and the WebSocket upgrade ourselves, so every phase
//! is timed like the other probes' and the same resolver overrides and TLS options apply. The
//! MQTT exchanges are phases too: `connack` (CONNECT written until CONNACK), `suback`, `puback`,
//! `pubrec` and `pubcomp`.

pub mod codec;
mod conn;
mod transport;

use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use url::Url;

pub use codec::{ConnectOpts, Properties, Publish, Version};
pub use conn::{Acked, Closed, ExpectResult, Message, MqttConn};
use transport::{Io, Transport};

use crate::resolve::connect_tcp;
use crate::tls::{TlsClient, TlsFacts};
use crate::{
    fmt_duration, with_deadline, Failure, FailureReason, Outcome, Phase, Recorder, ResolveOptions,
    Resolver,
};

/// What to connect to and how.
#[derive(Clone, Debug)]
pub struct MqttConnectRequest {
    /// `mqtt://host[:1883]`, `mqtts://host[:8883]`, `ws://host[:80]/path`, `wss://host[:443]/path`.
    pub url: String,
    pub version: Version,
    pub connect: ConnectOpts,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    /// Used for `mqtts://` and `wss://`.
    pub tls_client: TlsClient,
    /// Messages kept between expects; beyond it the oldest is dropped and counted.
    pub inbox_limit: usize,
    /// A packet announcing more fails the connection before any of it is buffered.
    pub max_packet_size: usize,
}

/// What the connect learnt; filled as far as it got.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MqttConnectFacts {
    pub protocol: Option<Version>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_present: Option<bool>,
    /// MQTT 5: the client id the broker chose (when ours was empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_client_id: Option<String>,
    /// MQTT 5: the keep-alive the broker imposed (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_keep_alive: Option<u16>,
    /// HTTP status of the WebSocket upgrade (MQTT over WebSocket).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFacts>,
}

/// The transport a URL asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme {
    pub tls: bool,
    pub websocket: bool,
    pub default_port: u16,
}

/// The scheme of an MQTT URL, or why it is not one.
pub fn scheme(url: &Url) -> Result<Scheme, String> {
    let (tls, websocket, default_port) = match url.scheme() {
        "mqtt" | "tcp" => (false, false, 1883),
        "mqtts" | "ssl" => (true, false, 8883),
        "ws" => (false, true, 80),
        "wss" => (true, true, 443),
        other => return Err(format!("unsupported scheme {other:?}")),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(Scheme {
        tls,
        websocket,
        default_port,
    })
}

/// Remove the userinfo of `url` and return it percent-decoded (`mqtt://user:pass@host`, as
/// mosquitto_pub takes it): the username (if not empty) and the password.
pub fn take_userinfo(url: &mut Url) -> (Option<String>, Option<String>) {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = Some(decode(url.username())).filter(|u| !u.is_empty());
    let password = url.password().map(decode);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    (user, password)
}

/// Resolve, connect, TLS, WebSocket upgrade, CONNECT/CONNACK under `deadline`. On success the
/// handle is `Some` and the connection is running.
pub async fn connect(
    req: &MqttConnectRequest,
    deadline: Instant,
) -> (Outcome<MqttConnectFacts>, Option<MqttConn>) {
    let mut rec = Recorder::new();
    let mut facts = MqttConnectFacts {
        protocol: Some(req.version),
        ..Default::default()
    };
    let res = with_deadline(&mut rec, deadline, async |rec: &mut Recorder| {
        dial_and_connect(req, rec, &mut facts).await
    })
    .await;
    match res {
        Ok((transport, buf, keep_alive, marks)) => {
            // From here on every read is noted (messages carry the kernel's receive timestamp)
            // and each publish's send timestamp is fetched when it is flushed: its receiver may
            // be another connection, whose reads cannot fetch it.
            marks.listen();
            marks.eager();
            let task = conn::Task {
                transport,
                buf,
                version: req.version,
                keep_alive,
                max_packet_size: req.max_packet_size,
                marks,
            };
            let conn = conn::spawn(task, req.inbox_limit);
            (rec.finish(None, facts), Some(conn))
        }
        Err(f) => (rec.finish(Some(f), facts), None),
    }
}

type Connected = (Transport, BytesMut, Option<Duration>, crate::kts::Marks);

async fn dial_and_connect(
    req: &MqttConnectRequest,
    rec: &mut Recorder,
    facts: &mut MqttConnectFacts,
) -> Result<Connected, Failure> {
    let bad = |why: String| Failure::new(FailureReason::Connect, why);
    let url = Url::parse(&req.url).map_err(|e| bad(format!("invalid MQTT URL: {e}")))?;
    let sch = scheme(&url).map_err(bad)?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port().unwrap_or(sch.default_port);

    let addrs = req.resolver.resolve(host, req.ip, rec).await?;
    let tcp = connect_tcp(&addrs, port, rec).await?;
    rec.remote_addr = tcp.peer_addr().ok();
    // Kernel timestamps under TLS: the handshake's rounds get the kernel's figure.
    let (tcp, marks) = crate::kts::timestamped(tcp);
    let stream: Box<dyn Io> = if sch.tls {
        let (stream, tls_facts) = req.tls_client.handshake(tcp, host, rec, &marks).await?;
        facts.tls = Some(tls_facts);
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let mut transport = if sch.websocket {
        upgrade(&url, stream, rec, facts, req.max_packet_size).await?
    } else {
        Transport::Stream(stream)
    };

    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    codec::encode(
        req.version,
        &codec::Out::Connect(&req.connect),
        &mut out,
        req.max_packet_size,
    )
    .map_err(|e| bad(format!("cannot encode CONNECT: {e}")))?;
    rec.doing("waiting for CONNACK");
    let started = Instant::now();
    transport
        .write(out.freeze())
        .await
        .map_err(|e| Failure::new(FailureReason::Protocol, format!("sending CONNECT: {e}")))?;
    let ack = read_connack(&mut transport, &mut buf, req).await;
    rec.timings.add_since(Phase::Connack, started);
    let codec::In::ConnAck {
        session_present,
        refusal,
        assigned_client_id,
        server_keep_alive,
        reason_string,
    } = ack?
    else {
        unreachable!("read_connack returns only a CONNACK");
    };
    facts.session_present = Some(session_present);
    facts.assigned_client_id = assigned_client_id;
    facts.server_keep_alive = server_keep_alive;
    if let Some(r) = refusal {
        return Err(Failure::new(
            FailureReason::Status,
            format!("the broker refused the connection: {r}"),
        ));
    }
    rec.event(format!(
        "CONNACK after {} (MQTT {}, session present: {session_present}{})",
        fmt_duration(started.elapsed()),
        req.version.as_str(),
        reason_string
            .map(|r| format!(", reason {r:?}"))
            .unwrap_or_default()
    ));
    let ka = server_keep_alive.unwrap_or(req.connect.keep_alive);
    let keep_alive = (ka > 0).then(|| Duration::from_secs(ka.into()));
    Ok((transport, buf, keep_alive, marks))
}

/// Read until the first packet, which must be CONNACK.
async fn read_connack(
    t: &mut Transport,
    buf: &mut BytesMut,
    req: &MqttConnectRequest,
) -> Result<codec::In, Failure> {
    let proto = |m: String| Failure::new(FailureReason::Protocol, m);
    loop {
        match codec::decode(req.version, buf, req.max_packet_size) {
            Ok(Some(p @ codec::In::ConnAck { .. })) => return Ok(p),
            Ok(Some(other)) => {
                return Err(proto(format!(
                    "expected CONNACK, the broker sent {}",
                    packet_name(&other)
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(proto(e.0)),
        }
        match t.read(buf).await {
            Ok(0) => {
                return Err(proto(
                    "the broker closed the connection before CONNACK (wrong protocol version, or it refused us)"
                        .into(),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(proto(format!("waiting for CONNACK: {e}"))),
        }
    }
}

fn packet_name(p: &codec::In) -> &'static str {
    match p {
        codec::In::ConnAck { .. } => "CONNACK",
        codec::In::Publish(_) => "PUBLISH",
        codec::In::PubAck { .. } => "PUBACK",
        codec::In::PubRec { .. } => "PUBREC",
        codec::In::PubRel { .. } => "PUBREL",
        codec::In::PubComp { .. } => "PUBCOMP",
        codec::In::SubAck { .. } => "SUBACK",
        codec::In::UnsubAck { .. } => "UNSUBACK",
        codec::In::PingResp => "PINGRESP",
        codec::In::Disconnect { .. } => "DISCONNECT",
        codec::In::Unexpected(n) => n,
    }
}

/// The WebSocket upgrade, offering subprotocol `mqtt` (phase `processing`).
async fn upgrade(
    url: &Url,
    stream: Box<dyn Io>,
    rec: &mut Recorder,
    facts: &mut MqttConnectFacts,
    max_packet_size: usize,
) -> Result<Transport, Failure> {
    let proto = |m: String| Failure::new(FailureReason::Protocol, m);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| proto(format!("cannot build the upgrade request: {e}")))?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    let max = max_packet_size.max(1);
    let limits = crate::ws_socket::Limits {
        frame: max,
        message: max,
    };
    rec.doing("waiting for the WebSocket upgrade response");
    let started = Instant::now();
    let res = crate::ws_upgrade::client_upgrade(request, stream, limits).await;
    rec.timings.add_since(Phase::Processing, started);
    match res {
        Ok((ws, response)) => {
            facts.ws_status = Some(response.status().as_u16());
            rec.event(format!(
                "WebSocket upgrade done in {}",
                fmt_duration(started.elapsed())
            ));
            Ok(Transport::Ws(Box::new(ws)))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            facts.ws_status = Some(r.status().as_u16());
            Err(Failure::new(
                FailureReason::Status,
                format!("WebSocket upgrade refused: HTTP {}", r.status()),
            ))
        }
        Err(e) => Err(proto(format!("WebSocket upgrade failed: {e}"))),
    }
}
