//! A small MQTT 3.1.1 / 5 broker for the mqtt steps' tests, on rumqttc's codec (the same kept
//! crate the probe uses, so no hand-written packet code on either side).
//!
//! It does what a round trip needs and what a probe must survive: CONNECT with optional
//! username/password, SUBSCRIBE with `+`/`#` filters, PUBLISH at QoS 0/1/2 both ways (the QoS 2
//! handshake included), retained messages, MQTT 5 publish properties passed through, PINGREQ;
//! listeners over TCP, TLS and WebSocket (`mqtt` subprotocol). [`MqttOptions`] adds hostile
//! behaviour: never answering CONNECT, garbage after CONNACK, a huge announced packet, refusing
//! a filter. [`MqttBroker::drop_all`] drops every connection like a crash.
//!
//! Listens on 127.0.0.1 on ports the OS picks; stops, with its connections, when dropped.
//!
//! `sonde demo` serves the same broker (plain MQTT only, [`MqttBroker::serve_on`]) as the target
//! of `scenarios/mqtt-round-trip.yaml`: `src/demo/mqtt.rs` includes this file, so it uses only
//! crates sonde itself depends on and nothing else of the testkit.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Stops a listener (and with it its connections) when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the broker does; `Default` is a well-behaved broker without authentication.
#[derive(Clone, Default)]
pub struct MqttOptions {
    /// Require this username and password (CONNACK "bad user name or password" otherwise).
    pub credentials: Option<(String, String)>,
    /// Serve TLS on the TCP listener (and `wss` on the WebSocket one).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Accept CONNECT and never answer it.
    pub silent: bool,
    /// After CONNACK, send these bytes (a hostile broker).
    pub after_connack: Option<Vec<u8>>,
    /// SUBSCRIBE filters starting with this are refused (SUBACK failure).
    pub deny_prefix: Option<String>,
    /// Leave PINGREQ and QoS 1/2 PUBLISHes unanswered (a half-dead broker).
    pub mute_acks: bool,
    /// Deliver QoS 2 messages but never send their PUBREL.
    pub never_release: bool,
}

/// A running broker.
pub struct MqttBroker {
    tcp: SocketAddr,
    ws: Option<SocketAddr>,
    tls: bool,
    state: Arc<Router>,
    drop_all: watch::Sender<u64>,
    _tasks: Vec<AbortOnDrop>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V4,
    V5,
}

/// A message on its way to a subscriber.
#[derive(Clone)]
struct Deliver {
    topic: String,
    payload: Bytes,
    qos: u8,
    retain: bool,
    props: Option<v5::PublishProperties>,
}

#[derive(Default)]
struct Router {
    clients: Mutex<Vec<Client>>,
    retained: Mutex<HashMap<String, Deliver>>,
    next_id: AtomicUsize,
    connections: AtomicUsize,
    connects: AtomicUsize,
    publishes: AtomicUsize,
    /// The last CONNECT (tests check what was sent).
    last_connect: Mutex<Option<SeenConnect>>,
    opts: MqttOptions,
}

/// A CONNECT as the broker saw it: client id, username, password, clean start.
pub type SeenConnect = (String, Option<String>, Option<String>, bool);

struct Client {
    id: usize,
    tx: mpsc::UnboundedSender<Deliver>,
    subs: Vec<(String, u8)>,
}

/// Does topic `t` match filter `f` (`+` one level, `#` the rest)?
pub fn topic_matches(f: &str, t: &str) -> bool {
    let mut fl = f.split('/');
    let mut tl = t.split('/');
    loop {
        match (fl.next(), tl.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Router {
    fn route(&self, d: &Deliver) {
        self.publishes.fetch_add(1, Ordering::SeqCst);
        if d.retain {
            let mut r = self.retained.lock().unwrap();
            if d.payload.is_empty() {
                r.remove(&d.topic);
            } else {
                r.insert(d.topic.clone(), d.clone());
            }
        }
        for c in self.clients.lock().unwrap().iter() {
            let granted = c
                .subs
                .iter()
                .filter(|(f, _)| topic_matches(f, &d.topic))
                .map(|(_, q)| *q)
                .max();
            if let Some(q) = granted {
                let _ = c.tx.send(Deliver {
                    qos: d.qos.min(q),
                    retain: false,
                    ..d.clone()
                });
            }
        }
    }
}

impl MqttBroker {
    /// Listeners for MQTT (TLS with `opts.tls`) and MQTT over WebSocket, on free ports.
    pub async fn start(opts: MqttOptions) -> MqttBroker {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the MQTT fixture on 127.0.0.1");
        let ws = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the MQTT fixture on 127.0.0.1");
        Self::serve(tcp, Some(ws), opts)
    }

    /// Plain MQTT only, on `listener` (the demo target).
    pub fn serve_on(listener: TcpListener, opts: MqttOptions) -> MqttBroker {
        Self::serve(listener, None, opts)
    }

    fn serve(tcp: TcpListener, ws: Option<TcpListener>, opts: MqttOptions) -> MqttBroker {
        let tls = opts.tls.clone();
        let state = Arc::new(Router {
            opts,
            ..Router::default()
        });
        let (drop_all, drop_rx) = watch::channel(0u64);
        let tcp_addr = tcp.local_addr().expect("local address");
        let mut tasks = vec![listen(
            tcp,
            tls.clone(),
            state.clone(),
            drop_rx.clone(),
            false,
        )];
        let ws_addr = ws.map(|ws| {
            let a = ws.local_addr().expect("local address");
            tasks.push(listen(ws, tls.clone(), state.clone(), drop_rx, true));
            a
        });
        MqttBroker {
            tcp: tcp_addr,
            ws: ws_addr,
            tls: tls.is_some(),
            state,
            drop_all,
            _tasks: tasks,
        }
    }

    /// `mqtt://127.0.0.1:PORT` (`mqtts://` with TLS).
    pub fn url(&self) -> String {
        let s = if self.tls { "mqtts" } else { "mqtt" };
        format!("{s}://{}", self.tcp)
    }

    /// `ws://127.0.0.1:PORT/mqtt` (`wss://` with TLS); only from [`MqttBroker::start`].
    pub fn ws_url(&self) -> String {
        let s = if self.tls { "wss" } else { "ws" };
        let ws = self
            .ws
            .expect("a broker from serve_on has no WebSocket listener");
        format!("{s}://{ws}/mqtt")
    }

    pub fn addr(&self) -> SocketAddr {
        self.tcp
    }

    /// Drop every open connection at once (a crash); new ones are accepted.
    pub fn drop_all(&self) {
        self.drop_all.send_modify(|g| *g += 1);
    }

    /// TCP connections accepted (both listeners).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// CONNECTs accepted.
    pub fn connects(&self) -> usize {
        self.state.connects.load(Ordering::SeqCst)
    }

    /// PUBLISHes received from clients.
    pub fn publishes(&self) -> usize {
        self.state.publishes.load(Ordering::SeqCst)
    }

    /// The last CONNECT: client id, username, password, clean start.
    pub fn last_connect(&self) -> Option<SeenConnect> {
        self.state.last_connect.lock().unwrap().clone()
    }
}

fn listen(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<Router>,
    drop_rx: watch::Receiver<u64>,
    websocket: bool,
) -> AbortOnDrop {
    let acceptor = tls.map(TlsAcceptor::from);
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            state.connections.fetch_add(1, Ordering::SeqCst);
            let (acceptor, state, mut drop_rx) = (acceptor.clone(), state.clone(), drop_rx.clone());
            drop_rx.mark_unchanged();
            conns.spawn(async move {
                let _ = tcp.set_nodelay(true);
                let io: Box<dyn Io> = match acceptor {
                    None => Box::new(tcp),
                    Some(a) => match a.accept(tcp).await {
                        Ok(t) => Box::new(t),
                        Err(_) => return,
                    },
                };
                let io = if websocket {
                    match ws_pipe(io).await {
                        Some(io) => io,
                        None => return,
                    }
                } else {
                    io
                };
                tokio::select! {
                    _ = serve(io, state) => {}
                    _ = drop_rx.changed() => {}
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    AbortOnDrop(task)
}

/// Accept the WebSocket upgrade (choosing `mqtt`) and turn its binary frames into a byte
/// stream, so the broker below sees the same pipe as over TCP.
async fn ws_pipe(io: Box<dyn Io>) -> Option<Box<dyn Io>> {
    #[allow(clippy::result_large_err)] // tungstenite's callback type, not ours to shrink
    let answer = |req: &Request, mut resp: Response| {
        if let Some(p) = req.headers().get("sec-websocket-protocol") {
            if p.to_str()
                .unwrap_or("")
                .split(',')
                .any(|s| s.trim() == "mqtt")
            {
                resp.headers_mut()
                    .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
            }
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async(io, answer).await.ok()?;
    let (near, far) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(far);
        let mut buf = vec![0u8; 8192];
        loop {
            tokio::select! {
                m = stream.next() => match m {
                    Some(Ok(WsMessage::Binary(b))) => {
                        if wr.write_all(&b).await.is_err() { return; }
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                    _ => return,
                },
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => {
                        let _ = sink.close().await;
                        return;
                    }
                    Ok(n) => {
                        let frame = WsMessage::Binary(Bytes::copy_from_slice(&buf[..n]));
                        if sink.send(frame).await.is_err() { return; }
                    }
                },
            }
        }
    });
    Some(Box::new(near))
}

const MAX: usize = 1024 * 1024;

/// One client connection.
async fn serve(mut io: Box<dyn Io>, state: Arc<Router>) {
    let mut buf = BytesMut::new();
    // The protocol level byte of CONNECT tells the version.
    let version = loop {
        // Fixed header (type byte, 1-4 length bytes), then "\0\x04MQTT", then the level.
        let len_bytes = buf.iter().skip(1).take(4).position(|b| b & 0x80 == 0);
        if let Some(level) = len_bytes.and_then(|i| buf.get(i + 2 + 6)) {
            break if *level == 5 {
                Version::V5
            } else {
                Version::V4
            };
        }
        if buf.len() > 64 || !matches!(io.read_buf(&mut buf).await, Ok(n) if n > 0) {
            return;
        }
    };
    let mut c = Conn {
        io,
        version,
        state,
        out: BytesMut::new(),
    };
    c.run(buf).await;
}

/// What a client sends, both versions.
enum ClientIn {
    Connect {
        id: String,
        login: Option<(String, String)>,
        clean: bool,
    },
    Publish(Deliver, u16),
    /// PUBACK or PUBCOMP: a delivery of ours is complete (nothing is kept to retry).
    Done,
    PubRec(u16),
    PubRel(u16),
    Subscribe(u16, Vec<(String, u8)>),
    Unsubscribe(Vec<String>),
    PingReq,
    Disconnect,
    Other,
}

/// What one connection carries from packet to packet.
#[derive(Default)]
struct Session {
    connected: bool,
    next_pkid: u16,
    /// QoS 2 PUBLISHes answered with PUBREC, awaiting PUBREL (a resend is not routed twice).
    qos2_in: HashSet<u16>,
}

impl Session {
    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        self.next_pkid
    }
}

/// A client's subscriptions, while the router's list is locked.
struct SubsGuard<'a> {
    clients: std::sync::MutexGuard<'a, Vec<Client>>,
    at: usize,
}

impl std::ops::Deref for SubsGuard<'_> {
    type Target = Vec<(String, u8)>;
    fn deref(&self) -> &Self::Target {
        &self.clients[self.at].subs
    }
}

impl std::ops::DerefMut for SubsGuard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.clients[self.at].subs
    }
}

struct Conn {
    io: Box<dyn Io>,
    version: Version,
    state: Arc<Router>,
    out: BytesMut,
}

fn q4(q: u8) -> rumqttc::QoS {
    rumqttc::mqttbytes::qos(q).unwrap_or(rumqttc::QoS::AtMostOnce)
}

fn q5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    rumqttc::v5::mqttbytes::qos(q).unwrap_or(rumqttc::v5::mqttbytes::QoS::AtMostOnce)
}

impl Conn {
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<ClientIn>, ()> {
        match self.version {
            Version::V4 => match v4::Packet::read(buf, MAX) {
                Ok(p) => Ok(Some(match p {
                    v4::Packet::Connect(c) => ClientIn::Connect {
                        id: c.client_id,
                        login: c.login.map(|l| (l.username, l.password)),
                        clean: c.clean_session,
                    },
                    v4::Packet::Publish(p) => ClientIn::Publish(
                        Deliver {
                            topic: p.topic,
                            payload: p.payload,
                            qos: p.qos as u8,
                            retain: p.retain,
                            props: None,
                        },
                        p.pkid,
                    ),
                    v4::Packet::PubAck(_) | v4::Packet::PubComp(_) => ClientIn::Done,
                    v4::Packet::PubRec(a) => ClientIn::PubRec(a.pkid),
                    v4::Packet::PubRel(a) => ClientIn::PubRel(a.pkid),
                    v4::Packet::Subscribe(s) => ClientIn::Subscribe(
                        s.pkid,
                        s.filters
                            .into_iter()
                            .map(|f| (f.path, f.qos as u8))
                            .collect(),
                    ),
                    v4::Packet::Unsubscribe(u) => ClientIn::Unsubscribe(u.topics),
                    v4::Packet::PingReq => ClientIn::PingReq,
                    v4::Packet::Disconnect => ClientIn::Disconnect,
                    _ => ClientIn::Other,
                })),
                Err(rumqttc::Error::InsufficientBytes(_)) => Ok(None),
                Err(_) => Err(()),
            },
            Version::V5 => match v5::Packet::read(buf, Some(MAX as u32)) {
                Ok(p) => Ok(Some(match p {
                    v5::Packet::Connect(c, _, login) => ClientIn::Connect {
                        id: c.client_id,
                        login: login.map(|l| (l.username, l.password)),
                        clean: c.clean_start,
                    },
                    v5::Packet::Publish(p) => ClientIn::Publish(
                        Deliver {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload,
                            qos: p.qos as u8,
                            retain: p.retain,
                            props: p.properties,
                        },
                        p.pkid,
                    ),
                    v5::Packet::PubAck(_) | v5::Packet::PubComp(_) => ClientIn::Done,
                    v5::Packet::PubRec(a) => ClientIn::PubRec(a.pkid),
                    v5::Packet::PubRel(a) => ClientIn::PubRel(a.pkid),
                    v5::Packet::Subscribe(s) => ClientIn::Subscribe(
                        s.pkid,
                        s.filters
                            .into_iter()
                            .map(|f| (f.path, f.qos as u8))
                            .collect(),
                    ),
                    v5::Packet::Unsubscribe(u) => ClientIn::Unsubscribe(u.filters),
                    v5::Packet::PingReq(_) => ClientIn::PingReq,
                    v5::Packet::Disconnect(_) => ClientIn::Disconnect,
                    _ => ClientIn::Other,
                })),
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
                Err(_) => Err(()),
            },
        }
    }

    async fn write(&mut self) -> bool {
        let ok = self.io.write_all(&self.out).await.is_ok() && self.io.flush().await.is_ok();
        self.out.clear();
        ok
    }

    fn connack(&mut self, ok: bool) {
        match self.version {
            Version::V4 => {
                let code = if ok {
                    v4::ConnectReturnCode::Success
                } else {
                    v4::ConnectReturnCode::BadUserNamePassword
                };
                let _ =
                    v4::Packet::ConnAck(v4::ConnAck::new(code, false)).write(&mut self.out, MAX);
            }
            Version::V5 => {
                let code = if ok {
                    v5::ConnectReturnCode::Success
                } else {
                    v5::ConnectReturnCode::BadUserNamePassword
                };
                let _ = v5::Packet::ConnAck(v5::ConnAck {
                    session_present: false,
                    code,
                    properties: None,
                })
                .write(&mut self.out, None);
            }
        }
    }

    fn ack(&mut self, kind: u8, pkid: u16) {
        match self.version {
            Version::V4 => {
                let p = match kind {
                    0 => v4::Packet::PubAck(v4::PubAck::new(pkid)),
                    1 => v4::Packet::PubRec(v4::PubRec::new(pkid)),
                    2 => v4::Packet::PubRel(v4::PubRel::new(pkid)),
                    3 => v4::Packet::PubComp(v4::PubComp::new(pkid)),
                    _ => v4::Packet::PingResp,
                };
                let _ = p.write(&mut self.out, MAX);
            }
            Version::V5 => {
                let p = match kind {
                    0 => v5::Packet::PubAck(v5::PubAck::new(pkid, None)),
                    1 => v5::Packet::PubRec(v5::PubRec::new(pkid, None)),
                    2 => v5::Packet::PubRel(v5::PubRel::new(pkid, None)),
                    3 => v5::Packet::PubComp(v5::PubComp::new(pkid, None)),
                    _ => v5::Packet::PingResp(v5::PingResp),
                };
                let _ = p.write(&mut self.out, None);
            }
        }
    }

    fn suback(&mut self, pkid: u16, granted: Vec<Option<u8>>) {
        match self.version {
            Version::V4 => {
                let codes = granted
                    .into_iter()
                    .map(|g| match g {
                        Some(q) => v4::SubscribeReasonCode::Success(q4(q)),
                        None => v4::SubscribeReasonCode::Failure,
                    })
                    .collect();
                let _ = v4::Packet::SubAck(v4::SubAck::new(pkid, codes)).write(&mut self.out, MAX);
            }
            Version::V5 => {
                let codes = granted
                    .into_iter()
                    .map(|g| match g {
                        Some(q) => v5::SubscribeReasonCode::Success(q5(q)),
                        None => v5::SubscribeReasonCode::NotAuthorized,
                    })
                    .collect();
                let _ = v5::Packet::SubAck(v5::SubAck {
                    pkid,
                    return_codes: codes,
                    properties: None,
                })
                .write(&mut self.out, None);
            }
        }
    }

    fn publish(&mut self, d: &Deliver, pkid: u16) {
        match self.version {
            Version::V4 => {
                let mut p = v4::Publish::new(d.topic.clone(), q4(d.qos), d.payload.to_vec());
                p.pkid = pkid;
                p.retain = d.retain;
                let _ = v4::Packet::Publish(p).write(&mut self.out, MAX);
            }
            Version::V5 => {
                let mut p = v5::Publish::new(
                    d.topic.clone(),
                    q5(d.qos),
                    d.payload.clone(),
                    d.props.clone(),
                );
                p.pkid = pkid;
                p.retain = d.retain;
                let _ = v5::Packet::Publish(p).write(&mut self.out, None);
            }
        }
    }

    async fn run(&mut self, mut buf: BytesMut) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut c = Client {
            id: self.state.next_id.fetch_add(1, Ordering::SeqCst),
            tx,
            subs: Vec::new(),
        };
        let mut session = Session::default();
        loop {
            loop {
                let p = match self.decode(&mut buf) {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(()) => return self.leave(c.id),
                };
                if !session.connected && !matches!(p, ClientIn::Connect { .. }) {
                    return self.leave(c.id);
                }
                if self.on_packet(p, &mut c, &mut session).await.is_break() {
                    return self.leave(c.id);
                }
            }
            if !self.out.is_empty() && !self.write().await {
                return self.leave(c.id);
            }
            tokio::select! {
                n = self.io.read_buf(&mut buf) => match n {
                    Ok(n) if n > 0 => {}
                    _ => return self.leave(c.id),
                },
                Some(d) = rx.recv() => {
                    let pkid = if d.qos > 0 { session.pkid() } else { 0 };
                    self.publish(&d, pkid);
                }
            }
        }
    }

    /// One packet of the client's; `Break` ends the connection.
    async fn on_packet(
        &mut self,
        p: ClientIn,
        c: &mut Client,
        session: &mut Session,
    ) -> ControlFlow<()> {
        match p {
            ClientIn::Connect { id, login, clean } => {
                return self.on_connect(id, login, clean, c, session).await
            }
            ClientIn::Publish(..) | ClientIn::PingReq if self.state.opts.mute_acks => {}
            ClientIn::Publish(d, pkid) => {
                let fresh = match d.qos {
                    1 => {
                        self.ack(0, pkid);
                        true
                    }
                    2 => {
                        self.ack(1, pkid);
                        session.qos2_in.insert(pkid)
                    }
                    _ => true,
                };
                if fresh {
                    self.state.route(&d);
                }
            }
            ClientIn::PubRel(pkid) => {
                session.qos2_in.remove(&pkid);
                self.ack(3, pkid);
            }
            ClientIn::PubRec(_) if self.state.opts.never_release => {}
            ClientIn::PubRec(pkid) => self.ack(2, pkid),
            ClientIn::Done | ClientIn::Other => {}
            ClientIn::Subscribe(pkid, filters) => self.on_subscribe(pkid, &filters, c.id, session),
            ClientIn::Unsubscribe(filters) => {
                if let Some(c) = self.registered(c.id).as_mut() {
                    c.retain(|(f, _)| !filters.contains(f));
                }
            }
            ClientIn::PingReq => self.ack(9, 0),
            ClientIn::Disconnect => {
                self.write().await;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    async fn on_connect(
        &mut self,
        id: String,
        login: Option<(String, String)>,
        clean: bool,
        c: &Client,
        session: &mut Session,
    ) -> ControlFlow<()> {
        let ok = match &self.state.opts.credentials {
            None => true,
            Some(want) => login.as_ref() == Some(want),
        };
        *self.state.last_connect.lock().unwrap() = Some((
            id,
            login.as_ref().map(|l| l.0.clone()),
            login.map(|l| l.1),
            clean,
        ));
        if self.state.opts.silent {
            std::future::pending::<()>().await;
        }
        self.connack(ok);
        if !ok {
            self.write().await;
            return ControlFlow::Break(());
        }
        self.state.connects.fetch_add(1, Ordering::SeqCst);
        if let Some(junk) = &self.state.opts.after_connack {
            self.out.extend_from_slice(junk);
        }
        session.connected = true;
        self.state.clients.lock().unwrap().push(Client {
            id: c.id,
            tx: c.tx.clone(),
            subs: Vec::new(),
        });
        ControlFlow::Continue(())
    }

    /// SUBACK (refusing `deny_prefix` filters), then the retained messages that match.
    fn on_subscribe(&mut self, pkid: u16, filters: &[(String, u8)], id: usize, s: &mut Session) {
        let deny = self.state.opts.deny_prefix.clone();
        let granted: Vec<Option<u8>> = filters
            .iter()
            .map(|(f, q)| (!deny.as_ref().is_some_and(|d| f.starts_with(d.as_str()))).then_some(*q))
            .collect();
        let accepted: Vec<(String, u8)> = filters
            .iter()
            .zip(&granted)
            .filter(|(_, g)| g.is_some())
            .map(|(f, _)| f.clone())
            .collect();
        self.suback(pkid, granted);
        let retained: Vec<Deliver> = self
            .state
            .retained
            .lock()
            .unwrap()
            .values()
            .filter_map(|d| {
                let q = accepted
                    .iter()
                    .filter(|(f, _)| topic_matches(f, &d.topic))
                    .map(|(_, q)| *q)
                    .max()?;
                Some(Deliver {
                    qos: d.qos.min(q),
                    ..d.clone()
                })
            })
            .collect();
        if let Some(subs) = self.registered(id).as_mut() {
            subs.extend(accepted);
        }
        for d in retained {
            let pkid = s.pkid();
            self.publish(&d, pkid);
        }
    }

    /// The router's subscription list of client `id`, locked.
    fn registered(&self, id: usize) -> Option<SubsGuard<'_>> {
        let clients = self.state.clients.lock().unwrap();
        let at = clients.iter().position(|c| c.id == id)?;
        Some(SubsGuard { clients, at })
    }

    fn leave(&self, id: usize) {
        self.state.clients.lock().unwrap().retain(|c| c.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn filters() {
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "x"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("a/b", "a/c"));
    }
}
