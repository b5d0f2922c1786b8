//! WebSocket connections that stay open across steps.
//!
//! Unlike the other probes, a WebSocket step does not end with its connection: `ws.connect` opens
//! a connection that later steps (`ws.send`, `ws.expect`, `ws.close`) use by name, possibly for
//! hours in a persistent session. So [`connect`] returns an [`Outcome`] (timed like every other
//! probe: `resolve`, `connect`, `tls`, and `processing` for the HTTP upgrade) *and* a [`WsConn`]
//! handle.
//!
//! We dial ourselves (the shared [`Resolver`], [`connect_tcp`], [`TlsClient`]) and upgrade
//! ourselves too (`ws_upgrade`, with tungstenite's request writer and response parser), and frame
//! ourselves with tungstenite's frame types (`ws_socket`), so the phases are measured exactly as
//! for HTTP probes and the same resolver overrides and TLS options apply.
//!
//! Each connection lives in one task of its own that owns the socket: it reads frames into a
//! bounded inbox (the oldest frame is dropped and counted when a slow reader lets it overflow),
//! answers pings (the socket queues the pong, the task's next read or write flushes it), sends
//! heartbeat pings when the connection has been idle, and writes what the handles ask it to via
//! a small command mailbox. Why one task and not a lock around the socket: reading must go on
//! while nobody is waiting in `expect` (to answer pings and notice a close at once), and a single
//! owner needs no lock on the hot path.
//!
//! Memory matters: the IM benchmark holds 20,000 of these. An idle connection holds no read or
//! write buffer (`ws_socket`). The task's future lives as long as the connection and is as
//! large as its largest await, so the rare, large ones (a command, the heartbeat, the goodbye)
//! are boxed while they run.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use url::Url;

use crate::resolve::connect_tcp;
use crate::tls::{TlsClient, TlsFacts};
use crate::{
    fmt_duration, with_deadline, Failure, FailureReason, Outcome, Phase, Recorder, ResolveOptions,
    Resolver,
};

/// What to connect to and how.
#[derive(Clone, Debug)]
pub struct WsConnectRequest {
    /// `ws://` or `wss://`, absolute; the host may be a name, resolved with `resolver`.
    pub url: String,
    /// Extra request headers of the upgrade (Origin, Authorization, cookies…).
    pub headers: Vec<(String, String)>,
    /// Offered in `Sec-WebSocket-Protocol`. When non-empty, a server that chooses none of them
    /// (or one that was not offered) fails the connect with reason `protocol`.
    pub subprotocols: Vec<String>,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    /// Used for `wss://` (build it with ALPN `http/1.1`: the upgrade is an HTTP/1.1 request).
    pub tls_client: TlsClient,
    /// Send a WebSocket ping when nothing was sent or received for this long. A server that then
    /// stays silent for another whole period is declared gone (the connection fails), so a
    /// half-dead TCP connection is noticed instead of hanging a persistent session.
    pub heartbeat: Option<Duration>,
    /// Frames buffered between expects; beyond it the oldest is dropped and counted
    /// ([`WsConn::dropped_frames`]). At least 1 is used.
    pub inbox_limit: usize,
    /// A frame (or message) whose payload is larger fails the connection: a hostile server must
    /// not make the prober buffer unbounded data.
    pub max_frame_size: usize,
}

/// What the upgrade told us; filled as far as the connect got.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WsConnectFacts {
    /// HTTP status of the upgrade response (101 on success).
    pub status: Option<u16>,
    /// The subprotocol the server chose.
    pub subprotocol: Option<String>,
    /// Headers of the upgrade response, in order.
    pub response_headers: Vec<(String, String)>,
    pub tls: Option<TlsFacts>,
}

/// The content of a data frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Text(String),
    Binary(Bytes),
}

impl Payload {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A data frame received from the peer (a whole message: fragments are joined).
#[derive(Clone, Debug)]
pub struct Frame {
    pub payload: Payload,
    pub received_at: Instant,
    /// The kernel's receive timestamp of the segment that completed it (Linux; see
    /// [`WsConn::kernel_latency`]).
    pub kernel_rx: Option<crate::kts::RealTime>,
}

/// A frame handed to the socket: when (user space), and the key of its last byte for the
/// kernel's send timestamp.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub at: Instant,
    pub kernel_key: Option<u32>,
}

/// Why a connection is no longer usable.
#[derive(Clone, Debug, PartialEq)]
pub enum Closed {
    /// The peer sent a close frame (code absent when its frame had no status).
    ByPeer { code: Option<u16>, reason: String },
    /// The connection failed: reset, dropped without a close frame, protocol violation, a frame
    /// over the size limit, no answer to heartbeats.
    Error(String),
    /// We closed it ([`WsConn::close`] or the last handle was dropped).
    ByUs,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::ByPeer { code: None, reason } if reason.is_empty() => {
                f.write_str("server closed the connection (no close code)")
            }
            Closed::ByPeer { code, reason } => {
                f.write_str("server closed the connection")?;
                if let Some(c) = code {
                    write!(f, ": {}", describe_close_code(*c))?;
                }
                if !reason.is_empty() {
                    write!(f, " (reason {:?})", clip(reason, 200))?;
                }
                Ok(())
            }
            Closed::Error(e) => write!(f, "connection failed: {e}"),
            Closed::ByUs => f.write_str("connection was closed by this scenario"),
        }
    }
}

/// "1008 policy violation", "4001 (application-defined)": the number people grep for, and what
/// RFC 6455 / the IANA registry call it.
pub fn describe_close_code(code: u16) -> String {
    let name = match code {
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1005 => "no status received",
        1006 => "abnormal closure",
        1007 => "invalid frame payload data",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "mandatory extension",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        1014 => "bad gateway",
        1015 => "TLS handshake failure",
        3000..=3999 => "registered by a library or framework",
        4000..=4999 => "application-defined",
        _ => "non-standard code",
    };
    format!("{code} {name}")
}

/// Result of [`WsConn::expect`].
#[derive(Debug)]
pub struct ExpectResult {
    pub matched: Option<Frame>,
    /// The first `max_recorded` frames that did not match, for the trace.
    pub skipped: Vec<Frame>,
    /// All frames that did not match.
    pub skipped_count: usize,
    /// `None` when matched. Nothing matched by the deadline → [`FailureReason::Timeout`];
    /// the connection closed or failed while waiting → [`FailureReason::Protocol`] with the close
    /// code and reason.
    pub failure: Option<Failure>,
}

/// Cheap clonable handle to an open connection. The connection lives in its own task until it
/// is closed; dropping the last handle closes it (close code 1001 going away, without waiting
/// for the peer's answer).
#[derive(Clone)]
pub struct WsConn {
    commands: crate::mailbox::Sender<Box<Command>>,
    shared: Arc<Shared>,
    /// The kernel's timestamps of the connection's bytes.
    marks: crate::kts::Marks,
}

impl fmt::Debug for WsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConn")
            .field("closed", &self.closed())
            .field("dropped_frames", &self.dropped_frames())
            .finish()
    }
}

/// State the connection task and the handles share.
struct Shared {
    inbox: crate::frame_inbox::FrameInbox,
    /// Woken on every new frame and when the connection ends.
    arrived: Notify,
    /// Why the connection ended, once it has. A mutex and a [`Notify`] rather than a `watch`
    /// channel: a watch keeps eight notifiers (~400 bytes) per connection, for one waiter.
    closed: Mutex<Option<Closed>>,
    /// Woken when the connection ends (not on every frame: the session watcher waits here).
    ended: Notify,
    connected_at: Instant,
}

/// How the inbox tags a message's kind.
const TEXT: u8 = 1;
const BINARY: u8 = 2;

impl Shared {
    /// Queue a received message (copied into the inbox: tungstenite's payload shares its read
    /// buffer's allocation, which a frame left in the inbox for hours would otherwise keep
    /// alive).
    fn push(
        &self,
        tag: u8,
        payload: &[u8],
        received_at: Instant,
        kernel_rx: Option<crate::kts::RealTime>,
    ) {
        self.inbox.push(crate::frame_inbox::Stored {
            tag,
            body: payload.to_vec(),
            received: crate::inbox::Arrival::new(self.connected_at, received_at),
            kernel_rx,
        });
        self.arrived.notify_waiters();
    }

    fn pop(&self) -> Option<Frame> {
        let q = self.inbox.pop()?;
        let payload = match q.tag {
            // Queued from a `&str`: always UTF-8, the lossy path never taken.
            TEXT => Payload::Text(
                String::from_utf8(q.body)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
            _ => Payload::Binary(Bytes::from(q.body)),
        };
        Some(Frame {
            payload,
            received_at: q.received.instant(self.connected_at),
            kernel_rx: q.kernel_rx,
        })
    }

    fn closed(&self) -> Option<Closed> {
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Record the end of the connection, once: the first reason wins.
    fn finish(&self, why: Closed) {
        {
            let mut c = self.closed.lock().unwrap_or_else(|e| e.into_inner());
            if c.is_none() {
                *c = Some(why);
            }
        }
        self.ended.notify_waiters();
        self.arrived.notify_waiters();
    }
}

/// What a handle asks the connection task to do (boxed: the mailbox's slots stay pointer-sized).
enum Command {
    Send {
        message: Message,
        deadline: Instant,
        done: oneshot::Sender<Result<Sent, String>>,
    },
    Close {
        frame: CloseFrame,
        deadline: Instant,
        done: CloseReply,
    },
}

/// Where the outcome of our close goes.
type CloseReply = oneshot::Sender<CloseAnswer>;

/// How the closing handshake we started ended.
enum CloseAnswer {
    /// The peer answered with its close frame (code and reason, if it had any).
    Peer(Option<(u16, String)>),
    /// The connection ended without the peer's close frame.
    Dropped,
    /// The deadline passed first.
    TimedOut,
}

/// Any byte stream the WebSocket can run over: TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

type Socket = crate::ws_socket::WsSocket<Box<dyn Io>>;

/// Resolve, connect, TLS (for `wss://`) and upgrade under `deadline`. Phases `resolve`,
/// `connect`, `tls` and `processing` (upgrade request sent until the 101 response) are in the
/// outcome's timings. On success the handle is `Some` and the connection is running.
pub async fn connect(
    req: &WsConnectRequest,
    deadline: Instant,
) -> (Outcome<WsConnectFacts>, Option<WsConn>) {
    let mut rec = Recorder::new();
    let mut facts = WsConnectFacts::default();
    let res = with_deadline(&mut rec, deadline, async |rec: &mut Recorder| {
        dial_and_upgrade(req, rec, &mut facts).await
    })
    .await;
    match res {
        Ok((socket, marks)) => {
            let conn = spawn(socket, marks, req);
            (rec.finish(None, facts), Some(conn))
        }
        Err(f) => (rec.finish(Some(f), facts), None),
    }
}

async fn dial_and_upgrade(
    req: &WsConnectRequest,
    rec: &mut Recorder,
    facts: &mut WsConnectFacts,
) -> Result<(Socket, crate::kts::Marks), Failure> {
    let url = parse_url(&req.url)?;
    let tls = url.scheme() == "wss";
    let host = url.host_str().unwrap_or_default();
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let request = build_request(&url, req)?;

    let addrs = req.resolver.resolve(host, req.ip, rec).await?;
    let tcp = connect_tcp(&addrs, port, rec).await?;
    let (tcp, marks) = crate::kts::timestamped(tcp);
    let stream: Box<dyn Io> = if tls {
        let (stream, tls_facts) = req.tls_client.handshake(tcp, host, rec, &marks).await?;
        facts.tls = Some(tls_facts);
        Box::new(crate::kts::seen::Seen::first_bytes(stream, marks.clone()))
    } else {
        Box::new(tcp)
    };

    rec.doing("waiting for the WebSocket upgrade response");
    let started = Instant::now();
    marks.arm();
    let res = crate::ws_upgrade::client_upgrade(request, stream, limits(req)).await;
    let user = started.elapsed();
    let kernel = marks.take();
    rec.timings
        .add_measured(Phase::Processing, user, kernel.as_ref().ok().copied());
    rec.event(format!(
        "upgrade response: processing {}",
        crate::kts::describe(user, &kernel)
    ));
    // From here on every read is noted: frames carry the kernel's receive timestamp.
    marks.listen();
    let (socket, response) = match res {
        Ok(ok) => ok,
        Err(WsError::Http(response)) => {
            let status = response.status();
            facts.status = Some(status.as_u16());
            facts.response_headers = header_pairs(response.headers());
            let mut message = format!(
                "upgrade refused: HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_string();
            // Whatever of the body came with the head often says why ("invalid token").
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let body = body.trim();
            if !body.is_empty() {
                message.push_str(&format!(" ({:?})", clip(body, 200)));
            }
            return Err(Failure::new(FailureReason::Status, message));
        }
        Err(e) => return Err(upgrade_failure(&e, &req.subprotocols)),
    };
    let socket = (socket, marks);
    facts.status = Some(response.status().as_u16());
    facts.response_headers = header_pairs(response.headers());
    facts.subprotocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    rec.event(format!(
        "WebSocket upgrade done in {}{}",
        fmt_duration(started.elapsed()),
        facts
            .subprotocol
            .as_deref()
            .map(|p| format!(", subprotocol {p}"))
            .unwrap_or_default()
    ));
    Ok(socket)
}

fn parse_url(raw: &str) -> Result<Url, Failure> {
    let bad = |why: String| Failure::new(FailureReason::Connect, why);
    let url = Url::parse(raw).map_err(|e| bad(format!("invalid WebSocket URL {raw:?}: {e}")))?;
    if url.scheme() != "ws" && url.scheme() != "wss" {
        return Err(bad(format!(
            "WebSocket URL {raw:?} must start with ws:// or wss://"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!("WebSocket URL {raw:?} has no host")));
    }
    Ok(url)
}

fn build_request(url: &Url, req: &WsConnectRequest) -> Result<Request, Failure> {
    let bad = |why: String| Failure::new(FailureReason::Connect, why);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| bad(format!("cannot build the upgrade request: {e}")))?;
    let headers = request.headers_mut();
    for (name, value) in &req.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("invalid header name {name:?}")))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| bad(format!("invalid value for header {name:?}")))?;
        headers.insert(n, v);
    }
    if !req.subprotocols.is_empty() {
        let v = HeaderValue::from_str(&req.subprotocols.join(", "))
            .map_err(|_| bad(format!("invalid subprotocol list {:?}", req.subprotocols)))?;
        headers.insert("sec-websocket-protocol", v);
    }
    Ok(request)
}

fn limits(req: &WsConnectRequest) -> crate::ws_socket::Limits {
    let max = req.max_frame_size.max(1);
    crate::ws_socket::Limits {
        frame: max,
        message: max,
    }
}

fn header_pairs(h: &tokio_tungstenite::tungstenite::http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A failed upgrade (other than a non-101 status) in words.
fn upgrade_failure(e: &WsError, offered: &[String]) -> Failure {
    let protocol = |m: String| Failure::new(FailureReason::Protocol, m);
    match e {
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(s)) => protocol(match s {
            SubProtocolError::NoSubProtocol => format!(
                "the server accepted the upgrade but chose none of the offered subprotocols ({})",
                offered.join(", ")
            ),
            SubProtocolError::InvalidSubProtocol => format!(
                "the server chose a subprotocol that was not offered (offered: {})",
                offered.join(", ")
            ),
            SubProtocolError::ServerSentSubProtocolNoneRequested => {
                "the server chose a subprotocol although none was offered".to_string()
            }
        }),
        WsError::Protocol(p) => protocol(format!("invalid upgrade response: {p}")),
        WsError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            protocol("the server closed the connection before answering the upgrade".into())
        }
        WsError::Io(io) => protocol(format!("connection lost during the upgrade: {io}")),
        WsError::Capacity(c) => protocol(format!("upgrade response too large: {c}")),
        other => protocol(format!("WebSocket upgrade failed: {other}")),
    }
}

/// A failure of an open connection in words.
fn describe_error(e: &WsError, max_frame_size: usize) -> String {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { size, .. }) => format!(
            "the server sent a {size}-byte message, more than max_frame_size ({max_frame_size} bytes)"
        ),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "the server dropped the connection without a close frame".into()
        }
        WsError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionReset => "the connection was reset by the server".into(),
            std::io::ErrorKind::UnexpectedEof => {
                "the server dropped the connection without a close frame".into()
            }
            std::io::ErrorKind::BrokenPipe => "the server closed the connection (broken pipe)".into(),
            _ => format!("I/O error: {io}"),
        },
        WsError::Protocol(p) => format!("the server broke the WebSocket protocol: {p}"),
        WsError::Utf8(_) => "the server sent a text frame that is not valid UTF-8".into(),
        WsError::ConnectionClosed | WsError::AlreadyClosed => "the connection is closed".into(),
        other => other.to_string(),
    }
}

fn spawn(socket: Socket, marks: crate::kts::Marks, req: &WsConnectRequest) -> WsConn {
    let shared = Arc::new(Shared {
        inbox: crate::frame_inbox::FrameInbox::new(req.inbox_limit),
        arrived: Notify::new(),
        closed: Mutex::new(None),
        ended: Notify::new(),
        connected_at: Instant::now(),
    });
    let (commands, rx) = crate::mailbox::mailbox();
    let task = Task {
        socket,
        shared: shared.clone(),
        heartbeat: req.heartbeat.filter(|d| !d.is_zero()),
        max_frame_size: req.max_frame_size,
        marks: marks.clone(),
    };
    tokio::spawn(task.run(rx));
    WsConn {
        commands,
        shared,
        marks,
    }
}

/// The connection's own task: sole owner of the socket.
struct Task {
    socket: Socket,
    shared: Arc<Shared>,
    heartbeat: Option<Duration>,
    max_frame_size: usize,
    marks: crate::kts::Marks,
}

/// After our close frame, how long to wait for the peer's when nobody gave a deadline (the last
/// handle was dropped).
const DROP_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What the connection task carries from one event to the next.
struct TaskState {
    last_activity: Instant,
    /// Set after a heartbeat ping until anything arrives from the peer.
    ping_unanswered: bool,
    /// After we sent a close frame: until when we wait for the peer's, and who wants it.
    /// (The connection's end is always recorded before anyone is answered, so a caller that
    /// gets its answer sees `closed()` set.)
    closing: Option<(Instant, CloseReply)>,
}

impl Task {
    /// An `async fn` would keep `self` twice in its future (the argument and the body's copy
    /// of it, rust-lang/rust#62958).
    #[allow(clippy::manual_async_fn)] // the point: see above
    fn run(
        mut self,
        mut commands: crate::mailbox::Receiver<Box<Command>>,
    ) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let mut st = TaskState {
                last_activity: Instant::now(),
                ping_unanswered: false,
                closing: None,
            };
            loop {
                let tick = match (self.heartbeat, &st.closing) {
                    (_, Some((until, _))) => Some(*until),
                    (Some(hb), None) => Some(st.last_activity + hb),
                    (None, None) => None,
                };
                let flow = tokio::select! {
                    cmd = commands.recv(), if st.closing.is_none() => Box::pin(self.on_command(cmd, &mut st)).await,
                    msg = self.socket.next() => self.on_message(msg, &mut st).await,
                    _ = sleep_until_opt(tick) => Box::pin(self.on_tick(&mut st)).await,
                };
                if flow.is_break() {
                    return;
                }
            }
        }
    }

    /// A handle's command, or `None` when every handle is gone. Breaks when the connection is
    /// over (a failed send leaves the stream unusable).
    async fn on_command(
        &mut self,
        cmd: Option<Box<Command>>,
        st: &mut TaskState,
    ) -> ControlFlow<()> {
        let Some(cmd) = cmd else {
            // Every handle is gone: say goodbye, but do not linger for long.
            let frame = CloseFrame {
                code: CloseCode::Away,
                reason: "".into(),
            };
            let _ = tokio::time::timeout(DROP_CLOSE_WAIT, self.socket.close(Some(frame))).await;
            self.shared.finish(Closed::ByUs);
            return ControlFlow::Break(());
        };
        match *cmd {
            Command::Send {
                message,
                deadline,
                done,
            } => {
                let res = tokio::time::timeout_at(deadline, self.socket.send(message)).await;
                st.last_activity = Instant::now();
                let why = match res {
                    Ok(Ok(())) => {
                        // `send` flushed: the frame's last byte is the last one written.
                        let _ = done.send(Ok(Sent {
                            at: st.last_activity,
                            kernel_key: self.marks.sent_key(),
                        }));
                        return ControlFlow::Continue(());
                    }
                    Ok(Err(e)) => describe_error(&e, self.max_frame_size),
                    // A half-written frame leaves the stream unusable.
                    Err(_) => "sending a frame did not finish before the deadline (the server is not reading)".to_string(),
                };
                self.shared.finish(Closed::Error(why.clone()));
                let _ = done.send(Err(why));
                ControlFlow::Break(())
            }
            Command::Close {
                frame,
                deadline,
                done,
            } => match tokio::time::timeout_at(deadline, self.socket.close(Some(frame))).await {
                Ok(Ok(())) => {
                    st.closing = Some((deadline, done));
                    ControlFlow::Continue(())
                }
                res => {
                    self.shared.finish(Closed::ByUs);
                    let _ = done.send(match res {
                        Err(_) => CloseAnswer::TimedOut,
                        _ => CloseAnswer::Dropped,
                    });
                    ControlFlow::Break(())
                }
            },
        }
    }

    /// Whatever the peer sent (or the stream's end). Data frames are queued for the handles;
    /// a close, an error or EOF ends the connection.
    async fn on_message(
        &mut self,
        msg: Option<Result<Message, WsError>>,
        st: &mut TaskState,
    ) -> ControlFlow<()> {
        st.last_activity = Instant::now();
        st.ping_unanswered = false;
        let received_at = st.last_activity;
        // The read that completed this message was the socket's last one.
        let kernel_rx = self.marks.last_rx();
        match msg {
            Some(Ok(Message::Text(t))) => {
                self.shared.push(TEXT, t.as_bytes(), received_at, kernel_rx)
            }
            Some(Ok(Message::Binary(b))) => self.shared.push(BINARY, &b, received_at, kernel_rx),
            // The socket (`ws_socket`) has queued the pong; the next poll flushes it.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(frame))) => {
                let peer = frame.map(|f| (u16::from(f.code), f.reason.as_str().to_string()));
                match st.closing.take() {
                    Some((_, done)) => {
                        // The answer to our close.
                        self.shared.finish(Closed::ByUs);
                        let _ = done.send(CloseAnswer::Peer(peer));
                    }
                    None => {
                        let (code, reason) = match peer {
                            Some((c, r)) => (Some(c), r),
                            None => (None, String::new()),
                        };
                        self.shared.finish(Closed::ByPeer { code, reason });
                    }
                }
                // tungstenite answers the close; let it flush (briefly).
                let _ = Box::pin(tokio::time::timeout(DROP_CLOSE_WAIT, self.socket.flush())).await;
                return ControlFlow::Break(());
            }
            Some(Err(e)) => {
                self.broken(st, || describe_error(&e, self.max_frame_size));
                return ControlFlow::Break(());
            }
            None => {
                self.broken(st, || {
                    "the server dropped the connection without a close frame".into()
                });
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// The stream broke: if we were closing, our close is answered as dropped (we asked for the
    /// end, and got it); otherwise the connection ends in error.
    fn broken(&self, st: &mut TaskState, why: impl FnOnce() -> String) {
        if let Some((_, done)) = st.closing.take() {
            self.shared.finish(Closed::ByUs);
            let _ = done.send(CloseAnswer::Dropped);
        } else {
            self.shared.finish(Closed::Error(why()));
        }
    }

    /// The timer: the peer never answered our close, or the connection has been quiet for a
    /// heartbeat — ping it, and give up if the previous ping went unanswered.
    async fn on_tick(&mut self, st: &mut TaskState) -> ControlFlow<()> {
        if let Some((_, done)) = st.closing.take() {
            // The peer never answered our close.
            self.shared.finish(Closed::ByUs);
            let _ = done.send(CloseAnswer::TimedOut);
            return ControlFlow::Break(());
        }
        let hb = self.heartbeat.unwrap_or_default();
        if st.ping_unanswered {
            self.shared.finish(Closed::Error(format!(
                "the server did not answer a heartbeat ping within {}",
                fmt_duration(hb)
            )));
            return ControlFlow::Break(());
        }
        let res = tokio::time::timeout(hb, self.socket.send(Message::Ping(Bytes::new()))).await;
        if !matches!(res, Ok(Ok(()))) {
            self.shared
                .finish(Closed::Error("sending a heartbeat ping failed".into()));
            return ControlFlow::Break(());
        }
        st.ping_unanswered = true;
        st.last_activity = Instant::now();
        ControlFlow::Continue(())
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl WsConn {
    /// Send one data frame. Returns the instant it was handed to the socket (for send-to-match
    /// latency).
    pub async fn send(&self, payload: Payload, deadline: Instant) -> Result<Instant, Failure> {
        self.send_timed(payload, deadline).await.map(|s| s.at)
    }

    /// The send-to-match latency by the kernel's timestamps: the send timestamp of `sent`'s last
    /// byte → the receive timestamp of the segment that completed `frame`; or why there is none.
    pub fn kernel_latency(&self, sent: &Sent, frame: &Frame) -> Result<Duration, String> {
        self.marks.between(sent.kernel_key, frame.kernel_rx)
    }

    /// [`WsConn::send`], with what the kernel needs to time the answer
    /// ([`WsConn::kernel_latency`]).
    pub async fn send_timed(&self, payload: Payload, deadline: Instant) -> Result<Sent, Failure> {
        if let Some(c) = self.closed() {
            return Err(closed_failure(&c, "cannot send"));
        }
        let message = match payload {
            Payload::Text(t) => Message::text(t),
            Payload::Binary(b) => Message::Binary(b),
        };
        let (done, answer) = oneshot::channel();
        let cmd = Box::new(Command::Send {
            message,
            deadline,
            done,
        });
        let timeout = || {
            Failure::new(
                FailureReason::Timeout,
                "sending the frame did not finish before the deadline",
            )
        };
        if self.commands.send(cmd).is_err() {
            return Err(self.gone_failure("cannot send").await);
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Err(_) => Err(timeout()),
            Ok(Ok(Ok(at))) => Ok(at),
            Ok(Ok(Err(why))) => Err(Failure::new(
                FailureReason::Protocol,
                format!("cannot send: {why}"),
            )),
            Ok(Err(_)) => Err(self.gone_failure("cannot send").await),
        }
    }

    /// Consume inbox frames (including those that arrived before this call) in arrival order
    /// until `matches` returns true or `deadline`. Non-matching frames are consumed and reported.
    pub async fn expect(
        &self,
        matches: &mut (dyn FnMut(&Payload) -> bool + Send),
        deadline: Instant,
        max_recorded: usize,
    ) -> ExpectResult {
        let started = Instant::now();
        let mut result = ExpectResult {
            matched: None,
            skipped: Vec::new(),
            skipped_count: 0,
            failure: None,
        };
        loop {
            // Register for wake-ups before looking, so a frame that lands in between is not missed.
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            while let Some(frame) = self.shared.pop() {
                if matches(&frame.payload) {
                    result.matched = Some(frame);
                    return result;
                }
                result.skipped_count += 1;
                if result.skipped.len() < max_recorded {
                    result.skipped.push(frame);
                }
            }
            if let Some(c) = self.closed() {
                result.failure = Some(closed_failure(
                    &c,
                    &format!("no matching frame{}", skipped_note(result.skipped_count)),
                ));
                return result;
            }
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(deadline) => {
                    result.failure = Some(Failure::new(
                        FailureReason::Timeout,
                        format!(
                            "no matching frame within {}{}",
                            fmt_duration(started.elapsed()),
                            skipped_note(result.skipped_count)
                        ),
                    ));
                    return result;
                }
            }
        }
    }

    /// `Some` once the peer closed or the connection failed (or we closed it).
    pub fn closed(&self) -> Option<Closed> {
        self.shared.closed()
    }

    /// Resolves when the connection ends: a session watcher marks itself disconnected at once.
    pub async fn wait_closed(&self) -> Closed {
        loop {
            // Register before looking, so an end recorded in between is not missed.
            let ended = self.shared.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if let Some(c) = self.shared.closed() {
                return c;
            }
            ended.await;
        }
    }

    /// Send a close frame and wait (until `deadline`) for the peer's; returns the peer's close
    /// code and reason (`None` when its close frame had none, or it never answered before the
    /// deadline or dropped the connection instead).
    pub async fn close(
        &self,
        code: u16,
        reason: &str,
        deadline: Instant,
    ) -> Result<Option<(u16, String)>, Failure> {
        if let Some(c) = self.closed() {
            return Err(closed_failure(&c, "cannot close"));
        }
        if !(code == 1000 || (3000..=4999).contains(&code) || (1001..=1014).contains(&code))
            || matches!(code, 1004..=1006)
        {
            return Err(Failure::new(
                FailureReason::Protocol,
                format!(
                    "close code {code} may not be sent (use 1000, 1001–1003, 1007–1014 or 3000–4999)"
                ),
            ));
        }
        if reason.len() > 123 {
            return Err(Failure::new(
                FailureReason::Protocol,
                "a close reason is limited to 123 bytes",
            ));
        }
        let (done, answer) = oneshot::channel();
        let cmd = Box::new(Command::Close {
            frame: CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_string().into(),
            },
            deadline,
            done,
        });
        if self.commands.send(cmd).is_err() {
            return Err(self.gone_failure("cannot close").await);
        }
        // The task itself answers by the deadline (so "no answer" is told apart from "dropped"
        // deterministically); the extra second is only a guard against a stuck task.
        match tokio::time::timeout_at(deadline + Duration::from_secs(1), answer).await {
            Ok(Ok(CloseAnswer::Peer(peer))) => Ok(peer),
            Ok(Ok(CloseAnswer::Dropped) | Err(_)) => Ok(None),
            Ok(Ok(CloseAnswer::TimedOut)) | Err(_) => Err(Failure::new(
                FailureReason::Timeout,
                "the server did not answer our close frame before the deadline",
            )),
        }
    }

    pub fn connected_at(&self) -> Instant {
        self.shared.connected_at
    }

    /// Frames dropped because the inbox was full (oldest first).
    pub fn dropped_frames(&self) -> u64 {
        self.shared.inbox.dropped()
    }

    /// The task has ended (its receiver is gone); its reason is set or about to be.
    async fn gone_failure(&self, doing: &str) -> Failure {
        let c = tokio::time::timeout(Duration::from_millis(100), self.wait_closed())
            .await
            .unwrap_or_else(|_| Closed::Error("the connection task ended".into()));
        closed_failure(&c, doing)
    }
}

fn skipped_note(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => " (1 other frame skipped)".into(),
        n => format!(" ({n} other frames skipped)"),
    }
}

fn closed_failure(c: &Closed, doing: &str) -> Failure {
    Failure::new(FailureReason::Protocol, format!("{doing}: {c}"))
}

fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_in_words() {
        assert_eq!(describe_close_code(1008), "1008 policy violation");
        assert_eq!(describe_close_code(4001), "4001 application-defined");
        let c = Closed::ByPeer {
            code: Some(1008),
            reason: "bad token".into(),
        };
        assert_eq!(
            c.to_string(),
            "server closed the connection: 1008 policy violation (reason \"bad token\")"
        );
    }

    #[test]
    fn urls_must_be_websocket_urls() {
        assert!(parse_url("http://127.0.0.1/")
            .unwrap_err()
            .message
            .contains("ws://"));
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("ws://[::1]:9/chat").is_ok());
    }

    #[test]
    fn inbox_drops_oldest_and_counts() {
        let s = Shared {
            inbox: crate::frame_inbox::FrameInbox::new(2),
            arrived: Notify::new(),
            closed: Mutex::new(None),
            ended: Notify::new(),
            connected_at: Instant::now(),
        };
        for i in 0..5 {
            s.push(TEXT, i.to_string().as_bytes(), Instant::now(), None);
        }
        assert_eq!(s.inbox.dropped(), 3);
        assert_eq!(s.pop().unwrap().payload, Payload::Text("3".into()));
        assert_eq!(s.pop().unwrap().payload, Payload::Text("4".into()));
        assert!(s.pop().is_none());
    }

    #[test]
    fn a_queued_frame_comes_back_as_it_arrived() {
        let s = Shared {
            inbox: crate::frame_inbox::FrameInbox::new(4),
            arrived: Notify::new(),
            closed: Mutex::new(None),
            ended: Notify::new(),
            connected_at: Instant::now(),
        };
        let at = Instant::now() + Duration::from_nanos(1_234_567);
        let rx = crate::kts::RealTime::from_timespec(1_700_000_000, 5);
        s.push(BINARY, b"\x00\x01", at, rx);
        let f = s.pop().unwrap();
        assert_eq!(f.payload, Payload::Binary(Bytes::from_static(b"\x00\x01")));
        assert_eq!(f.received_at, at);
        assert_eq!(f.kernel_rx, rx);
    }
}
