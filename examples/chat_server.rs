//! A small WebSocket JSON chat: the reference IM server that sonde's IM scenario probes.
//!
//! ```text
//! cargo run --example chat_server -- --listen 127.0.0.1:9300 [--listen-tcp 127.0.0.1:9301] [--secret S] [--noise-interval 1s]
//! ```
//!
//! Protocol (every frame is JSON text, at `ws://HOST:PORT/chat`, subprotocol `chat.v1` echoed
//! when offered):
//!
//! ```text
//! C: {"op":"login","user":"alice","token":"<hex HMAC-SHA256(secret, user)>"}
//! S: {"op":"login_ok","user":"alice","session":"<id>"}
//!    or {"op":"login_failed","reason":"bad token"} and close code 4001
//! C: {"op":"send","to":"bob","id":"m1","text":"hi"}
//! S→alice: {"op":"ack","id":"m1","ts":<unix ms>}
//! S→bob (every connection): {"op":"typing","from":"alice"}
//!                           {"op":"message","from":"alice","id":"m1","text":"hi","ts":<unix ms>}
//!    recipient offline → S→alice: {"op":"error","id":"m1","reason":"recipient offline"}
//! C: {"op":"ping"}  S: {"op":"pong"}
//! S: {"op":"presence","user":"…","status":"online"|"away"}  every noise interval (noise to skip)
//! ```
//!
//! Any op before login gets `{"op":"error","reason":"not logged in"}`; bad JSON gets an error
//! frame and the connection stays open.
//!
//! With `--listen-tcp ADDR` the same chat is also served over raw TCP: every frame is a 4-byte
//! big-endian length and then a protobuf message (`examples/chat.proto`: `ClientFrame` in,
//! `ServerFrame` out), with the same ops, semantics and noise; users on either side reach each
//! other. A login with a bad token gets `login_failed` and the connection is closed.
//!
//! Tests use it in-process, without going through sonde's own library:
//!
//! ```ignore
//! #[allow(dead_code)]
//! #[path = "../examples/chat_server.rs"]
//! mod chat_server;
//! let handle = chat_server::start(listener, chat_server::ChatOptions::default());
//! ```
//!
//! Built to hold tens of thousands of idle connections on a small machine: each connection is
//! one task with small WebSocket buffers and an outbox that allocates only while it holds
//! frames, and one shared timer sends the presence noise (spread over the interval) instead of
//! a timer per connection.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// The secret tokens are derived from when neither `--secret` nor `CHAT_SECRET` is given.
pub const DEFAULT_SECRET: &str = "sonde-demo-secret";

/// Largest frame a client may send; chat frames are small.
const MAX_FRAME: usize = 16 * 1024;

/// A client that lets this many frames pile up unread is disconnected rather than buffered
/// without limit.
const MAX_OUTBOX: usize = 1024;

/// Noise is sent in slices this far apart, each slice covering part of the connections, so a
/// noise interval costs the same CPU every slice instead of one spike per interval.
const NOISE_SLICE: Duration = Duration::from_millis(100);

/// Names the presence noise talks about: they are never logged in, so no probe confuses them
/// with a real user.
const NOISE_USERS: [&str; 4] = ["carol", "dave", "erin", "frank"];

#[derive(Clone, Debug)]
pub struct ChatOptions {
    /// Tokens are lowercase hex HMAC-SHA256(secret, user).
    pub secret: String,
    /// How often every logged-in connection gets a presence frame; `None` or zero: never.
    pub noise_interval: Option<Duration>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            secret: DEFAULT_SECRET.to_string(),
            noise_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// The token a user logs in with: lowercase hex HMAC-SHA256(secret, user).
pub fn token_for(secret: &str, user: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, user.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A running server. Dropping it stops accepting and drops every connection.
pub struct ChatHandle {
    addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

impl ChatHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/chat`.
    pub fn url(&self) -> String {
        format!("ws://{}/chat", self.addr)
    }

    /// Open WebSocket connections (logged in or not).
    pub fn connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Connections that are logged in.
    pub fn logged_in(&self) -> usize {
        self.state.lock().by_id.len()
    }

    /// Messages delivered to at least one recipient connection.
    pub fn delivered(&self) -> u64 {
        self.state.delivered.load(Ordering::SeqCst)
    }

    /// Also serve the chat over raw TCP with protobuf frames on `listener` (same users, same
    /// registry: a TCP user and a WebSocket user reach each other).
    pub fn serve_tcp(&mut self, listener: TcpListener) {
        self.tcp_addr = listener.local_addr().ok();
        self.tasks
            .push(tokio::spawn(tcp_accept_loop(listener, self.state.clone())));
    }

    /// Where the raw TCP side listens, once [`ChatHandle::serve_tcp`] started it.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Drop every connection at once, without close frames (a crash, as the client sees it).
    /// New connections are still accepted.
    pub fn kick_all(&self) {
        self.state.kick_all();
    }
}

impl Drop for ChatHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.state.kick_all();
    }
}

/// Start serving on `listener` (call from inside a tokio runtime).
pub fn start(listener: TcpListener, opts: ChatOptions) -> ChatHandle {
    let addr = listener.local_addr().expect("listener address");
    let state = Arc::new(State {
        secret: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, opts.secret.as_bytes()),
        inner: Mutex::new(Registry::default()),
        open: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        delivered: AtomicU64::new(0),
    });
    let mut tasks = vec![tokio::spawn(accept_loop(listener, state.clone()))];
    if let Some(every) = opts.noise_interval.filter(|d| !d.is_zero()) {
        tasks.push(tokio::spawn(noise_loop(state.clone(), every)));
    }
    ChatHandle {
        addr,
        tcp_addr: None,
        state,
        tasks,
    }
}

/// Who is connected. One lock: the operations are tiny, and a chat server on two cores does not
/// need more.
struct State {
    secret: ring::hmac::Key,
    inner: Mutex<Registry>,
    open: AtomicUsize,
    next_id: AtomicU64,
    delivered: AtomicU64,
}

#[derive(Default)]
struct Registry {
    /// Logged-in connections by id (noise and kick_all walk this).
    by_id: HashMap<u64, Arc<Outbox>>,
    /// Logged-in connection ids by user (one user may be connected several times).
    by_user: HashMap<String, Vec<u64>>,
    /// Connections not logged in yet, so kick_all reaches them too.
    anonymous: HashMap<u64, Arc<Outbox>>,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kick_all(&self) {
        let reg = self.lock();
        for o in reg.by_id.values().chain(reg.anonymous.values()) {
            o.kick();
        }
    }
}

/// Frames waiting to be written to one connection. A `VecDeque` allocates only once something
/// is queued, which keeps an idle connection cheap (a channel would preallocate slots).
#[derive(Default)]
struct Outbox {
    queue: Mutex<VecDeque<Utf8Bytes>>,
    wake: Notify,
    kicked: AtomicBool,
}

impl Outbox {
    fn push(&self, frame: Utf8Bytes) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_OUTBOX {
            // The client does not read: cut it off rather than buffer without limit.
            self.kicked.store(true, Ordering::SeqCst);
        } else {
            q.push_back(frame);
        }
        drop(q);
        self.wake.notify_one();
    }

    fn take(&self) -> VecDeque<Utf8Bytes> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn kick(&self) {
        self.kicked.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(connection(tcp, state.clone()));
            }
            // Out of file descriptors and the like: wait a little instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(2048)
        .write_buffer_size(0)
        .max_frame_size(Some(MAX_FRAME))
        .max_message_size(Some(MAX_FRAME))
}

/// Upgrade at `/chat` only; echo `chat.v1` when the client offers it.
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn check_upgrade(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() != "/chat" {
        let mut e = ErrorResponse::new(Some("no WebSocket here; try /chat".into()));
        *e.status_mut() = StatusCode::NOT_FOUND;
        return Err(e);
    }
    let offers_v1 = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "chat.v1");
    if offers_v1 {
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("chat.v1"),
        );
    }
    Ok(resp)
}

/// Counts an open connection for as long as it lives.
struct OpenGuard<'a>(&'a AtomicUsize);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where one connection is in its life.
struct Session {
    id: u64,
    user: Option<String>,
    outbox: Arc<Outbox>,
}

async fn connection(tcp: TcpStream, state: Arc<State>) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, check_upgrade, Some(ws_config()))
            .await
    else {
        return;
    };
    state.open.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(&state.open);
    let mut session = Session {
        id: state.next_id.fetch_add(1, Ordering::Relaxed),
        user: None,
        outbox: Arc::new(Outbox::default()),
    };
    state
        .lock()
        .anonymous
        .insert(session.id, session.outbox.clone());

    let _ = serve(&mut ws, &state, &mut session).await;
    forget(&state, &session);
}

/// Take an ended connection out of the registry.
fn forget(state: &State, session: &Session) {
    let mut reg = state.lock();
    reg.anonymous.remove(&session.id);
    reg.by_id.remove(&session.id);
    if let Some(user) = &session.user {
        if let Some(ids) = reg.by_user.get_mut(user) {
            ids.retain(|i| *i != session.id);
            if ids.is_empty() {
                reg.by_user.remove(user);
            }
        }
    }
}

type Socket = WebSocketStream<TcpStream>;

/// Why a connection ends; either way the caller cleans up.
struct End;

async fn serve(ws: &mut Socket, state: &State, session: &mut Session) -> Result<(), End> {
    let outbox = session.outbox.clone();
    loop {
        tokio::select! {
            _ = outbox.wake.notified() => {
                if outbox.kicked.load(Ordering::SeqCst) {
                    return Err(End); // dropping the socket drops the TCP connection
                }
                for frame in outbox.take() {
                    ws.feed(Message::Text(frame)).await.map_err(|_| End)?;
                }
                ws.flush().await.map_err(|_| End)?;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    for reply in handle(text.as_str(), state, session) {
                        match reply {
                            Reply::Frame(v) => ws.send(Message::text(v.to_string())).await.map_err(|_| End)?,
                            Reply::Close(code, reason) => {
                                let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                                let _ = ws.close(Some(frame)).await;
                                // Give the client a moment to answer the close.
                                let _ = tokio::time::timeout(Duration::from_secs(1), ws.next()).await;
                                return Err(End);
                            }
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let e = json!({"op": "error", "reason": "frames must be JSON text"});
                    ws.send(Message::text(e.to_string())).await.map_err(|_| End)?;
                }
                // Pings are answered by tungstenite on the next read or write.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    let _ = ws.flush().await; // sends tungstenite's answering close
                    return Ok(());
                }
                Some(Err(_)) | None => return Err(End),
            },
        }
    }
}

/// What a client may send.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum ClientFrame {
    Login {
        user: String,
        token: String,
    },
    Send {
        to: String,
        id: String,
        text: String,
    },
    Ping,
}

enum Reply {
    Frame(serde_json::Value),
    Close(u16, &'static str),
}

/// One client frame in, the frames for this connection out (pushes to others go through their
/// outboxes).
fn handle(text: &str, state: &State, session: &mut Session) -> Vec<Reply> {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(f) => f,
        Err(e) => {
            return vec![Reply::Frame(
                json!({"op": "error", "reason": format!("bad frame: {e}")}),
            )]
        }
    };
    let error = |reason: &str| Reply::Frame(json!({"op": "error", "reason": reason}));
    match (frame, &session.user) {
        (ClientFrame::Login { user, token }, None) => {
            if !token_ok(state, &user, &token) {
                return vec![
                    Reply::Frame(json!({"op": "login_failed", "reason": "bad token"})),
                    Reply::Close(4001, "bad token"),
                ];
            }
            let mut reg = state.lock();
            reg.anonymous.remove(&session.id);
            reg.by_id.insert(session.id, session.outbox.clone());
            reg.by_user
                .entry(user.clone())
                .or_default()
                .push(session.id);
            drop(reg);
            let reply =
                json!({"op": "login_ok", "user": user, "session": format!("s{}", session.id)});
            session.user = Some(user);
            vec![Reply::Frame(reply)]
        }
        (ClientFrame::Login { .. }, Some(_)) => vec![error("already logged in")],
        (_, None) => vec![error("not logged in")],
        (ClientFrame::Ping, Some(_)) => vec![Reply::Frame(json!({"op": "pong"}))],
        (ClientFrame::Send { to, id, text }, Some(from)) => {
            let ts = unix_ms();
            let recipients: Vec<Arc<Outbox>> = {
                let reg = state.lock();
                reg.by_user
                    .get(&to)
                    .into_iter()
                    .flatten()
                    .filter_map(|i| reg.by_id.get(i).cloned())
                    .collect()
            };
            if recipients.is_empty() {
                return vec![Reply::Frame(
                    json!({"op": "error", "id": id, "reason": "recipient offline"}),
                )];
            }
            let typing = Utf8Bytes::from(json!({"op": "typing", "from": from}).to_string());
            let message = Utf8Bytes::from(
                json!({"op": "message", "from": from, "id": id, "text": text, "ts": ts})
                    .to_string(),
            );
            for r in &recipients {
                r.push(typing.clone());
                r.push(message.clone());
            }
            state.delivered.fetch_add(1, Ordering::Relaxed);
            vec![Reply::Frame(json!({"op": "ack", "id": id, "ts": ts}))]
        }
    }
}

/// Constant-time comparison of the token with the expected HMAC.
fn token_ok(state: &State, user: &str, token: &str) -> bool {
    let Some(tag) = decode_hex(token) else {
        return false;
    };
    ring::hmac::verify(&state.secret, user.as_bytes(), &tag).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Every `every`, each logged-in connection gets one presence frame. The work is cut into
/// slices of [`NOISE_SLICE`]: a connection belongs to slice `id % slices`.
async fn noise_loop(state: Arc<State>, every: Duration) {
    let slices = (every.as_millis() / NOISE_SLICE.as_millis()).max(1) as u64;
    let mut tick = tokio::time::interval(every / slices as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        let slice = n % slices;
        let status = if (n / slices) % 2 == 0 {
            "online"
        } else {
            "away"
        };
        let who = NOISE_USERS[(n as usize) % NOISE_USERS.len()];
        let frame =
            Utf8Bytes::from(json!({"op": "presence", "user": who, "status": status}).to_string());
        let targets: Vec<Arc<Outbox>> = state
            .lock()
            .by_id
            .iter()
            .filter(|(id, _)| *id % slices == slice)
            .map(|(_, o)| o.clone())
            .collect();
        for o in targets {
            o.push(frame.clone());
        }
        n += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// The raw TCP side: length-prefixed protobuf frames (examples/chat.proto), translated to and
// from the JSON frames `handle` speaks, so both sides share one implementation of the chat.

/// `ClientFrame` of examples/chat.proto.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbClientFrame {
    #[prost(oneof = "pb::ClientOp", tags = "1, 2, 3")]
    pub op: Option<pb::ClientOp>,
}

/// `ServerFrame` of examples/chat.proto.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbServerFrame {
    #[prost(oneof = "pb::ServerOp", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub op: Option<pb::ServerOp>,
}

/// The messages of examples/chat.proto, written by hand (no build script): a test compiles the
/// `.proto` and checks both agree.
pub mod pb {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum ClientOp {
        #[prost(message, tag = "1")]
        Login(Login),
        #[prost(message, tag = "2")]
        Send(Send),
        #[prost(message, tag = "3")]
        Ping(Empty),
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum ServerOp {
        #[prost(message, tag = "1")]
        LoginOk(LoginOk),
        #[prost(message, tag = "2")]
        LoginFailed(Reason),
        #[prost(message, tag = "3")]
        Ack(Ack),
        #[prost(message, tag = "4")]
        Typing(Typing),
        #[prost(message, tag = "5")]
        Message(Message),
        #[prost(message, tag = "6")]
        Error(Error),
        #[prost(message, tag = "7")]
        Pong(Empty),
        #[prost(message, tag = "8")]
        Presence(Presence),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Login {
        #[prost(string, tag = "1")]
        pub user: String,
        #[prost(string, tag = "2")]
        pub token: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Send {
        #[prost(string, tag = "1")]
        pub to: String,
        #[prost(string, tag = "2")]
        pub id: String,
        #[prost(string, tag = "3")]
        pub text: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LoginOk {
        #[prost(string, tag = "1")]
        pub user: String,
        #[prost(string, tag = "2")]
        pub session: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Reason {
        #[prost(string, tag = "1")]
        pub reason: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Ack {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(uint64, tag = "2")]
        pub ts: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Typing {
        #[prost(string, tag = "1")]
        pub from: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Message {
        #[prost(string, tag = "1")]
        pub from: String,
        #[prost(string, tag = "2")]
        pub id: String,
        #[prost(string, tag = "3")]
        pub text: String,
        #[prost(uint64, tag = "4")]
        pub ts: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Error {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub reason: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Presence {
        #[prost(string, tag = "1")]
        pub user: String,
        #[prost(string, tag = "2")]
        pub status: String,
    }
}

/// A client frame as the JSON text `handle` reads.
fn client_json(frame: PbClientFrame) -> String {
    match frame.op {
        Some(pb::ClientOp::Login(l)) => json!({"op": "login", "user": l.user, "token": l.token}),
        Some(pb::ClientOp::Send(s)) => {
            json!({"op": "send", "to": s.to, "id": s.id, "text": s.text})
        }
        Some(pb::ClientOp::Ping(_)) => json!({"op": "ping"}),
        None => json!({"op": "none"}),
    }
    .to_string()
}

/// A JSON server frame of `handle` (or the outbox) as a protobuf `ServerFrame`.
fn server_frame(v: &serde_json::Value) -> PbServerFrame {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let ts = v["ts"].as_u64().unwrap_or_default();
    let op = match v["op"].as_str().unwrap_or_default() {
        "login_ok" => pb::ServerOp::LoginOk(pb::LoginOk {
            user: s("user"),
            session: s("session"),
        }),
        "login_failed" => pb::ServerOp::LoginFailed(pb::Reason {
            reason: s("reason"),
        }),
        "ack" => pb::ServerOp::Ack(pb::Ack { id: s("id"), ts }),
        "typing" => pb::ServerOp::Typing(pb::Typing { from: s("from") }),
        "message" => pb::ServerOp::Message(pb::Message {
            from: s("from"),
            id: s("id"),
            text: s("text"),
            ts,
        }),
        "pong" => pb::ServerOp::Pong(pb::Empty {}),
        "presence" => pb::ServerOp::Presence(pb::Presence {
            user: s("user"),
            status: s("status"),
        }),
        _ => pb::ServerOp::Error(pb::Error {
            id: s("id"),
            reason: s("reason"),
        }),
    };
    PbServerFrame { op: Some(op) }
}

async fn tcp_accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(tcp_connection(tcp, state.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn tcp_connection(mut tcp: TcpStream, state: Arc<State>) {
    let _ = tcp.set_nodelay(true);
    state.open.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(&state.open);
    let mut session = Session {
        id: state.next_id.fetch_add(1, Ordering::Relaxed),
        user: None,
        outbox: Arc::new(Outbox::default()),
    };
    state
        .lock()
        .anonymous
        .insert(session.id, session.outbox.clone());
    let _ = serve_tcp(&mut tcp, &state, &mut session).await;
    forget(&state, &session);
}

/// Write one `ServerFrame`, length-prefixed.
async fn write_frame(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    v: &serde_json::Value,
) -> Result<(), End> {
    use tokio::io::AsyncWriteExt;
    let body = prost::Message::encode_to_vec(&server_frame(v));
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    w.write_all(&out).await.map_err(|_| End)
}

/// The next whole frame's body in `buf`, if any; `Err` for a length over [`MAX_FRAME`].
fn next_frame(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, End> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let n = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if n > MAX_FRAME {
        return Err(End);
    }
    if buf.len() < 4 + n {
        return Ok(None);
    }
    let body = buf[4..4 + n].to_vec();
    buf.drain(..4 + n);
    Ok(Some(body))
}

async fn serve_tcp(tcp: &mut TcpStream, state: &State, session: &mut Session) -> Result<(), End> {
    use tokio::io::AsyncReadExt;
    let outbox = session.outbox.clone();
    let (mut rd, mut wr) = tcp.split();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        tokio::select! {
            _ = outbox.wake.notified() => {
                if outbox.kicked.load(Ordering::SeqCst) {
                    return Err(End);
                }
                for frame in outbox.take() {
                    let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap_or_default();
                    write_frame(&mut wr, &v).await?;
                }
            }
            n = rd.read(&mut chunk) => {
                let n = n.map_err(|_| End)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(body) = next_frame(&mut buf)? {
                    let text = match <PbClientFrame as prost::Message>::decode(body.as_slice()) {
                        Ok(f) => client_json(f),
                        Err(e) => {
                            let v = json!({"op": "error", "reason": format!("bad frame: {e}")});
                            write_frame(&mut wr, &v).await?;
                            continue;
                        }
                    };
                    for reply in handle(&text, state, session) {
                        match reply {
                            Reply::Frame(v) => write_frame(&mut wr, &v).await?,
                            Reply::Close(..) => return Err(End),
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The command line.

/// `--listen ADDR`, `--secret S` (else env CHAT_SECRET, else the demo secret),
/// `--noise-interval DURATION` (humantime, `0` = off).
#[allow(dead_code)] // unused when the file is included in a test
fn parse_args(
    args: impl Iterator<Item = String>,
) -> Result<(SocketAddr, Option<SocketAddr>, ChatOptions), String> {
    let mut listen: SocketAddr = "127.0.0.1:9300".parse().unwrap();
    let mut listen_tcp: Option<SocketAddr> = None;
    let mut opts = ChatOptions {
        secret: std::env::var("CHAT_SECRET").unwrap_or_else(|_| DEFAULT_SECRET.into()),
        ..ChatOptions::default()
    };
    let mut args = args.skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--listen-tcp" => {
                let v = value()?;
                listen_tcp = Some(v.parse().map_err(|e| format!("--listen-tcp {v}: {e}"))?);
            }
            "--secret" => opts.secret = value()?,
            "--noise-interval" => {
                let v = value()?;
                let d = if v == "0" {
                    Duration::ZERO
                } else {
                    humantime::parse_duration(&v)
                        .map_err(|e| format!("--noise-interval {v}: {e}"))?
                };
                opts.noise_interval = Some(d);
            }
            "-h" | "--help" => {
                return Err("usage: chat_server [--listen 127.0.0.1:9300] \
                            [--listen-tcp 127.0.0.1:9301] [--secret S] [--noise-interval 1s]"
                    .into())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok((listen, listen_tcp, opts))
}

/// Holding many connections needs many file descriptors: raise the limit as far as allowed.
#[allow(dead_code)]
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        // Root may raise the hard limit too; anyone may raise the soft one up to the hard one.
        let wanted = lim.rlim_max.max(1 << 18);
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let (listen, listen_tcp, opts) = match parse_args(std::env::args()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    raise_fd_limit();
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let noise = match opts.noise_interval.filter(|d| !d.is_zero()) {
        Some(d) => format!("presence noise every {}", humantime::format_duration(d)),
        None => "no presence noise".to_string(),
    };
    let mut handle = start(listener, opts);
    if let Some(at) = listen_tcp {
        match TcpListener::bind(at).await {
            Ok(l) => handle.serve_tcp(l),
            Err(e) => {
                eprintln!("cannot listen on {at}: {e}");
                std::process::exit(1);
            }
        }
    }
    let tcp = handle
        .tcp_addr()
        .map(|a| format!(" and tcp://{a} (protobuf frames)"))
        .unwrap_or_default();
    eprintln!(
        "chat server on {}{tcp} ({noise}); Ctrl-C stops it",
        handle.url()
    );
    let _ = tokio::signal::ctrl_c().await;
}
