//! Raw TCP (or TLS) connections that stay open across steps, cut into frames by their framing
//! ([`crate::framing`]).
//!
//! The shape follows [`crate::ws`]: [`connect`] returns an [`Outcome`] timed like every probe
//! (`resolve`, `connect`, `tls`) *and* a [`TcpConn`] handle that later steps use by name. Each
//! connection lives in one task that owns the socket: it reads frames into a bounded inbox (the
//! oldest frame is dropped and counted when nobody reads them), sends a heartbeat payload when
//! nothing was sent for a while, and writes, upgrades (STARTTLS) or closes when a handle asks.
//!
//! Bounds: one frame is at most `max_frame_size` (a bigger announced length or a missing
//! delimiter fails the connection before anything that large is buffered), the inbox holds at
//! most `inbox_limit` frames.
//!
//! Frame delivery is timed by the kernel where it can be ([`crate::kts`]): the socket is
//! timestamped from the connect, every read is noted, a frame carries the receive timestamp of
//! the read that completed it and a send the key of its last byte, so a send → matching frame
//! figure ([`TcpConn::kernel_latency`]) leaves out the time sonde's tasks took to wake up.
//!
//! STARTTLS refuses to upgrade while bytes received in clear are still unread (in the read
//! buffer or the inbox): they would otherwise be taken as if they came over TLS (the STARTTLS
//! command-injection class of bugs, CVE-2011-0411), as the one-shot `tcp` probe does.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::framing::FrameState;
pub use crate::framing::{Endian, Framing, LengthPrefix};
use crate::resolve::connect_tcp;
use crate::tls::{TlsClient, TlsFacts};
use crate::{
    fmt_duration, with_deadline, Failure, FailureReason, Outcome, Recorder, ResolveOptions,
    Resolver,
};

/// Wait for a goodbye when the last handle is dropped.
const DROP_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What to connect to and how.
#[derive(Clone, Debug)]
pub struct TcpConnectRequest {
    pub host: String,
    pub port: u16,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    /// Handshake TLS right after connecting.
    pub tls: bool,
    /// For `tls` and for a later STARTTLS.
    pub tls_client: TlsClient,
    pub framing: Framing,
    /// A frame whose announced or accumulated size is larger fails the connection.
    pub max_frame_size: usize,
    /// Frames buffered between expects; beyond it the oldest is dropped and counted.
    pub inbox_limit: usize,
    /// Sent (framed) whenever nothing was sent for `every`.
    pub heartbeat: Option<Heartbeat>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Heartbeat {
    pub every: Duration,
    pub body: Bytes,
}

impl TcpConnectRequest {
    /// Whether `other` connects the same way: equal settings, and the very same resolver and
    /// TLS configuration (not merely alike: those are built from files read at load). Lets the
    /// identical connects of many scenarios share one request.
    pub fn same_as(&self, other: &TcpConnectRequest) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.resolver.same(&other.resolver)
            && self.ip == other.ip
            && self.tls == other.tls
            && self.tls_client.same(&other.tls_client)
            && self.framing == other.framing
            && self.max_frame_size == other.max_frame_size
            && self.inbox_limit == other.inbox_limit
            && self.heartbeat == other.heartbeat
    }

    /// A hash of what [`Self::same_as`] compares.
    pub fn sharing_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.host, self.port, self.ip, self.tls).hash(&mut h);
        self.resolver.identity().hash(&mut h);
        self.tls_client.identity().hash(&mut h);
        (&self.framing, self.max_frame_size, self.inbox_limit).hash(&mut h);
        self.heartbeat.hash(&mut h);
        h.finish()
    }
}

/// What the connect saw.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TcpConnectFacts {
    pub tls: Option<TlsFacts>,
}

/// A frame received from the peer (its body, framing removed).
#[derive(Clone, Debug)]
pub struct Frame {
    pub body: Bytes,
    pub received_at: Instant,
    /// The kernel's receive timestamp of the segment that completed it (Linux; see
    /// [`TcpConn::kernel_latency`]).
    pub kernel_rx: Option<crate::kts::RealTime>,
}

/// A frame handed to the socket: when (user space), and the key of its last byte for the
/// kernel's send timestamp (the same as a WebSocket send's).
pub use crate::ws::Sent;

/// Why a connection is no longer usable.
#[derive(Clone, Debug, PartialEq)]
pub enum Closed {
    /// The peer closed its side; `unread` bytes of an unfinished frame were left.
    ByPeer { unread: usize },
    /// Reset, a read or write error, a frame over the limit, bytes that cannot be framed.
    Error(String),
    /// We closed it.
    ByUs,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::ByPeer { unread: 0 } => f.write_str("the server closed the connection"),
            Closed::ByPeer { unread } => write!(
                f,
                "the server closed the connection in the middle of a frame ({unread} bytes of it unread)"
            ),
            Closed::Error(e) => write!(f, "connection failed: {e}"),
            Closed::ByUs => f.write_str("connection was closed by this scenario"),
        }
    }
}

/// Result of [`TcpConn::expect`].
#[derive(Debug)]
pub struct ExpectResult {
    pub matched: Option<Frame>,
    /// The first `max_recorded` frames that did not match.
    pub skipped: Vec<Frame>,
    pub skipped_count: usize,
    /// `None` when matched: [`FailureReason::Timeout`] when nothing matched by the deadline,
    /// [`FailureReason::Protocol`] when the connection ended while waiting.
    pub failure: Option<Failure>,
}

/// Cheap clonable handle; dropping the last one closes the connection.
#[derive(Clone)]
pub struct TcpConn {
    commands: crate::mailbox::Sender<Box<Command>>,
    shared: Arc<Shared>,
    /// The kernel's timestamps of the connection's bytes.
    marks: crate::kts::Marks,
}

impl fmt::Debug for TcpConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpConn")
            .field("closed", &self.closed())
            .finish()
    }
}

struct Shared {
    inbox: crate::frame_inbox::FrameInbox,
    arrived: Notify,
    closed: Mutex<Option<Closed>>,
    ended: Notify,
    connected_at: Instant,
    /// Bytes read but not yet a whole frame.
    partial: AtomicUsize,
}

impl Shared {
    /// Queue a received frame; `body` is a copy of its own (the decoded body shares the read
    /// buffer's allocation).
    fn push(&self, body: &[u8], kernel_rx: Option<crate::kts::RealTime>) {
        self.inbox.push(crate::frame_inbox::Stored {
            tag: 0,
            body: body.to_vec(),
            received: crate::inbox::Arrival::new(self.connected_at, Instant::now()),
            kernel_rx,
        });
        self.arrived.notify_waiters();
    }

    fn pop(&self) -> Option<Frame> {
        let q = self.inbox.pop()?;
        Some(Frame {
            body: Bytes::from(q.body),
            received_at: q.received.instant(self.connected_at),
            kernel_rx: q.kernel_rx,
        })
    }

    fn queued(&self) -> usize {
        self.inbox.len()
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

enum Command {
    Send {
        body: Bytes,
        /// Written as is, without the framing (streaming protocols such as XMPP).
        raw: bool,
        deadline: Instant,
        done: oneshot::Sender<Result<Sent, Failure>>,
    },
    StartTls {
        deadline: Instant,
        done: oneshot::Sender<Outcome<TcpConnectFacts>>,
    },
    Close {
        deadline: Instant,
        done: oneshot::Sender<Result<(), Failure>>,
    },
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Resolve, connect and (with `tls`) handshake under `deadline`. On success the handle is
/// `Some` and the connection is running.
///
/// The request is shared with the connection's task, which reads the host, TLS client and
/// heartbeat from it for its whole life instead of keeping copies (and identical connects of
/// many scenarios share one request).
pub async fn connect(
    req: &Arc<TcpConnectRequest>,
    deadline: Instant,
) -> (Outcome<TcpConnectFacts>, Option<TcpConn>) {
    let mut rec = Recorder::new();
    let mut facts = TcpConnectFacts::default();
    let res = with_deadline(&mut rec, deadline, async |rec: &mut Recorder| {
        let addrs = req.resolver.resolve(&req.host, req.ip, rec).await?;
        // Kernel timestamps under TLS: the handshake's rounds get the kernel's figure.
        let (tcp, marks) = crate::kts::timestamped(connect_tcp(&addrs, req.port, rec).await?);
        let io = if req.tls {
            let (s, f) = req
                .tls_client
                .handshake(tcp, &req.host, rec, &marks)
                .await?;
            facts.tls = Some(f);
            Box::new(s) as Box<dyn Io>
        } else {
            Box::new(tcp) as Box<dyn Io>
        };
        // From here on every read is noted: frames carry the kernel's receive timestamp.
        marks.listen();
        Ok((io, marks))
    })
    .await;
    match res {
        Ok((io, marks)) => {
            rec.event(format!("connected; framing: {}", req.framing));
            (rec.finish(None, facts), Some(spawn(io, marks, req)))
        }
        Err(f) => (rec.finish(Some(f), facts), None),
    }
}

fn spawn(io: Box<dyn Io>, marks: crate::kts::Marks, req: &Arc<TcpConnectRequest>) -> TcpConn {
    let shared = Arc::new(Shared {
        inbox: crate::frame_inbox::FrameInbox::new(req.inbox_limit),
        arrived: Notify::new(),
        closed: Mutex::new(None),
        ended: Notify::new(),
        connected_at: Instant::now(),
        partial: AtomicUsize::new(0),
    });
    let (commands, rx) = crate::mailbox::mailbox();
    let task = Task {
        frames: FrameState::new(&req.framing, req.max_frame_size),
        buf: BytesMut::new(),
        shared: shared.clone(),
        req: req.clone(),
        last_sent: Instant::now(),
        is_tls: req.tls,
        marks: marks.clone(),
    };
    tokio::spawn(task.run(io, rx));
    TcpConn {
        commands,
        shared,
        marks,
    }
}

/// What woke the connection's task.
enum Event {
    Command(Option<Box<Command>>),
    Read(std::io::Result<usize>),
    Tick,
}

/// The connection's own task: sole owner of the socket. Its future lives as long as the
/// connection and is as large as its largest await, so the rare, large ones (STARTTLS's
/// handshake, a send, the heartbeat, the goodbye) are boxed while they run: 2.4 KB → 1 KB
/// per connection in a debug build.
struct Task {
    /// Cutting the stream by the request's framing.
    frames: FrameState,
    buf: BytesMut,
    shared: Arc<Shared>,
    /// The framing, the host and TLS client for a STARTTLS, the heartbeat.
    req: Arc<TcpConnectRequest>,
    last_sent: Instant,
    /// Already TLS (`tls` at connect, or a STARTTLS done): another upgrade is refused.
    is_tls: bool,
    marks: crate::kts::Marks,
}

impl Task {
    /// An `async fn` would keep `self` twice in its future (the argument and the body's copy
    /// of it, rust-lang/rust#62958): 1008 bytes a connection instead of ~690.
    #[allow(clippy::manual_async_fn)] // the point: see above
    fn run(
        mut self,
        mut io: Box<dyn Io>,
        mut commands: crate::mailbox::Receiver<Box<Command>>,
    ) -> impl std::future::Future<Output = ()> + Send {
        async move {
            loop {
                if self.drain_frames().is_break() {
                    return;
                }
                let tick = self.heartbeat().map(|h| self.last_sent + h.every);
                let event = tokio::select! {
                    cmd = commands.recv() => Event::Command(cmd),
                    r = crate::lazy_read::read_into(&mut io, &mut self.buf) => Event::Read(r),
                    _ = sleep_until_opt(tick) => Event::Tick,
                };
                let flow = match event {
                    Event::Command(Some(cmd)) => match *cmd {
                        Command::StartTls { deadline, done } => {
                            let (upgraded, outcome) = Box::pin(self.start_tls(io, deadline)).await;
                            let _ = done.send(outcome);
                            match upgraded {
                                Some(u) => io = u,
                                None => return,
                            }
                            ControlFlow::Continue(())
                        }
                        other => Box::pin(self.on_command(&mut io, other)).await,
                    },
                    Event::Command(None) => {
                        // Every handle is gone: close our side, but do not linger.
                        let _ =
                            Box::pin(tokio::time::timeout(DROP_CLOSE_WAIT, io.shutdown())).await;
                        self.shared.finish(Closed::ByUs);
                        ControlFlow::Break(())
                    }
                    Event::Read(r) => self.on_read(r),
                    Event::Tick => Box::pin(self.on_tick(&mut io)).await,
                };
                if flow.is_break() {
                    return;
                }
            }
        }
    }

    /// The heartbeat, unless none was asked for (or every 0 s).
    fn heartbeat(&self) -> Option<&Heartbeat> {
        self.req.heartbeat.as_ref().filter(|h| !h.every.is_zero())
    }

    /// Queue every whole frame the buffer holds; bytes that cannot be framed end the connection.
    fn drain_frames(&mut self) -> ControlFlow<()> {
        // Frames are completed only by reads, and the buffer is drained after each one: the
        // socket's last read completed every frame decoded here.
        let kernel_rx = self.marks.last_rx();
        loop {
            match self.frames.decode(&self.req.framing, &mut self.buf) {
                // Copied into the inbox: the decoded body shares the read buffer's allocation,
                // which a frame left in the inbox for hours would otherwise keep alive.
                Ok(Some(body)) => self.shared.push(&body, kernel_rx),
                Ok(None) => break,
                Err(e) => {
                    self.shared.finish(Closed::Error(e));
                    return ControlFlow::Break(());
                }
            }
        }
        self.shared.partial.store(self.buf.len(), Ordering::Relaxed);
        // Nothing left unframed: give the room back, so an idle connection holds no read buffer
        // (and a big frame's room is not kept either). Reads append to it again on demand.
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
        ControlFlow::Continue(())
    }

    fn on_read(&mut self, r: std::io::Result<usize>) -> ControlFlow<()> {
        match r {
            Ok(0) => {
                self.shared.finish(Closed::ByPeer {
                    unread: self.buf.len(),
                });
                ControlFlow::Break(())
            }
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => {
                self.shared.finish(Closed::Error(describe_io(&e)));
                ControlFlow::Break(())
            }
        }
    }

    async fn write(
        &mut self,
        io: &mut Box<dyn Io>,
        body: &[u8],
        raw: bool,
        deadline: Instant,
    ) -> Result<Sent, Failure> {
        let wire = if raw {
            Bytes::copy_from_slice(body)
        } else {
            crate::framing::encode(&self.req.framing, body)
                .map_err(|e| Failure::new(FailureReason::Protocol, format!("cannot send: {e}")))?
        };
        let res = tokio::time::timeout_at(deadline, async {
            io.write_all(&wire).await?;
            io.flush().await
        })
        .await;
        self.last_sent = Instant::now();
        let why = match res {
            // Flushed: the frame's last byte is the last one written.
            Ok(Ok(())) => {
                return Ok(Sent {
                    at: self.last_sent,
                    kernel_key: self.marks.sent_key(),
                })
            }
            Ok(Err(e)) => describe_io(&e),
            Err(_) => {
                "sending did not finish before the deadline (the server is not reading)".into()
            }
        };
        // A half-written frame leaves the stream unusable.
        self.shared.finish(Closed::Error(why.clone()));
        Err(Failure::new(
            FailureReason::Protocol,
            format!("cannot send: {why}"),
        ))
    }

    async fn on_command(&mut self, io: &mut Box<dyn Io>, cmd: Command) -> ControlFlow<()> {
        match cmd {
            Command::Send {
                body,
                raw,
                deadline,
                done,
            } => {
                let res = self.write(io, &body, raw, deadline).await;
                // Only a frame the framing refuses leaves the connection usable.
                let broken = res.is_err() && self.shared.closed().is_some();
                let _ = done.send(res);
                if broken {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
            Command::Close { deadline, done } => {
                let res = tokio::time::timeout_at(deadline, io.shutdown()).await;
                self.shared.finish(Closed::ByUs);
                let _ = done.send(match res {
                    Err(_) => Err(Failure::new(
                        FailureReason::Timeout,
                        "closing did not finish before the deadline",
                    )),
                    // The peer may already be gone: closing what is closed is done.
                    Ok(_) => Ok(()),
                });
                ControlFlow::Break(())
            }
            Command::StartTls { .. } => ControlFlow::Continue(()),
        }
    }

    /// Upgrade to TLS in place. `None` (with the failure in the outcome) leaves no connection.
    async fn start_tls(
        &mut self,
        io: Box<dyn Io>,
        deadline: Instant,
    ) -> (Option<Box<dyn Io>>, Outcome<TcpConnectFacts>) {
        let mut rec = Recorder::new();
        if self.is_tls {
            let f = Failure::new(
                FailureReason::Protocol,
                "refusing STARTTLS: the connection is already TLS",
            );
            return (Some(io), rec.finish(Some(f), TcpConnectFacts::default()));
        }
        let unread = self.buf.len() + self.shared.queued();
        if unread > 0 {
            let f = Failure::new(
                FailureReason::Protocol,
                format!(
                    "refusing STARTTLS: {} bytes and {} frame(s) received in clear are unread — they would be taken as if they came over TLS (STARTTLS injection); expect them before upgrading",
                    self.buf.len(),
                    self.shared.queued()
                ),
            );
            // The connection itself is still fine; hand the stream back.
            return (Some(io), rec.finish(Some(f), TcpConnectFacts::default()));
        }
        let mut facts = TcpConnectFacts::default();
        let req = self.req.clone();
        let res = tokio::time::timeout_at(
            deadline,
            // On the connection's own timestamped socket: the rounds get the kernel's figure.
            req.tls_client
                .handshake(io, &req.host, &mut rec, &self.marks),
        )
        .await;
        match res {
            Ok(Ok((s, f))) => {
                facts.tls = Some(f);
                self.last_sent = Instant::now();
                self.is_tls = true;
                (Some(Box::new(s)), rec.finish(None, facts))
            }
            Ok(Err(f)) => {
                self.shared
                    .finish(Closed::Error(format!("STARTTLS failed: {}", f.message)));
                (None, rec.finish(Some(f), facts))
            }
            Err(_) => {
                let f = rec.timeout_failure();
                self.shared.finish(Closed::Error(
                    "STARTTLS did not finish before the deadline".into(),
                ));
                (None, rec.finish(Some(f), facts))
            }
        }
    }

    async fn on_tick(&mut self, io: &mut Box<dyn Io>) -> ControlFlow<()> {
        let Some(hb) = self.heartbeat().cloned() else {
            return ControlFlow::Continue(());
        };
        match self
            .write(io, &hb.body, false, Instant::now() + hb.every)
            .await
        {
            Ok(_) => ControlFlow::Continue(()),
            Err(f) if self.shared.closed().is_none() => {
                // The framing refuses the heartbeat: a configuration problem, said once.
                self.shared
                    .finish(Closed::Error(format!("heartbeat: {}", f.message)));
                ControlFlow::Break(())
            }
            Err(_) => ControlFlow::Break(()),
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset => "the connection was reset by the server".into(),
        std::io::ErrorKind::BrokenPipe => "the server closed the connection (broken pipe)".into(),
        std::io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
        _ => format!("I/O error: {e}"),
    }
}

impl TcpConn {
    /// Send one frame (framed by the connection's framing). Returns when it was written, for
    /// send-to-match latency.
    pub async fn send(&self, body: Bytes, deadline: Instant) -> Result<Instant, Failure> {
        self.send_timed(body, false, deadline).await.map(|s| s.at)
    }

    /// Write `body` as is, outside the framing: for streaming protocols (XMPP's XML stream)
    /// whose frames are cut for reading only.
    pub async fn send_unframed(&self, body: Bytes, deadline: Instant) -> Result<Instant, Failure> {
        self.send_timed(body, true, deadline).await.map(|s| s.at)
    }

    /// The send-to-match latency by the kernel's timestamps: the send timestamp of `sent`'s last
    /// byte → the receive timestamp of the segment that completed `frame`; or why there is none.
    pub fn kernel_latency(&self, sent: &Sent, frame: &Frame) -> Result<Duration, String> {
        self.marks.between(sent.kernel_key, frame.kernel_rx)
    }

    /// [`TcpConn::send`] (or, `raw`, [`TcpConn::send_unframed`]), with what the kernel needs to
    /// time the answer ([`TcpConn::kernel_latency`]).
    pub async fn send_timed(
        &self,
        body: Bytes,
        raw: bool,
        deadline: Instant,
    ) -> Result<Sent, Failure> {
        if let Some(c) = self.closed() {
            return Err(closed_failure(&c, "cannot send"));
        }
        let (done, answer) = oneshot::channel();
        let cmd = Box::new(Command::Send {
            body,
            raw,
            deadline,
            done,
        });
        self.ask(cmd, answer, deadline, "cannot send").await?
    }

    /// Upgrade the connection to TLS (STARTTLS) with the connect's TLS client; the outcome has
    /// the `tls` phase and the session's facts.
    pub async fn start_tls(&self, deadline: Instant) -> Outcome<TcpConnectFacts> {
        let rec = Recorder::new();
        if let Some(c) = self.closed() {
            return rec.finish(
                Some(closed_failure(&c, "cannot start TLS")),
                Default::default(),
            );
        }
        let (done, answer) = oneshot::channel();
        let cmd = Box::new(Command::StartTls { deadline, done });
        match self
            .ask(
                cmd,
                answer,
                deadline + Duration::from_secs(1),
                "cannot start TLS",
            )
            .await
        {
            Ok(o) => o,
            Err(f) => rec.finish(Some(f), Default::default()),
        }
    }

    /// Close our side. Closing a connection the peer already closed passes.
    pub async fn close(&self, deadline: Instant) -> Result<(), Failure> {
        if self.closed().is_some() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        let cmd = Box::new(Command::Close { deadline, done });
        match self.ask(cmd, answer, deadline, "cannot close").await {
            Ok(r) => r,
            // The task ended meanwhile: the connection is closed either way.
            Err(_) if self.closed().is_some() => Ok(()),
            Err(f) => Err(f),
        }
    }

    /// Hand `cmd` to the task and wait for its answer until `deadline`.
    async fn ask<T>(
        &self,
        cmd: Box<Command>,
        answer: oneshot::Receiver<T>,
        deadline: Instant,
        doing: &str,
    ) -> Result<T, Failure> {
        let timeout = || {
            Failure::new(
                FailureReason::Timeout,
                format!("{doing}: not done before the deadline"),
            )
        };
        if self.commands.send(cmd).is_err() {
            return Err(self.gone_failure(doing).await);
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Err(_) => Err(timeout()),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(self.gone_failure(doing).await),
        }
    }

    /// Consume inbox frames (including those that arrived before this call) in arrival order
    /// until `matches` returns true or `deadline`.
    pub async fn expect(
        &self,
        matches: &mut (dyn FnMut(&Bytes) -> bool + Send),
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
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            while let Some(frame) = self.shared.pop() {
                if matches(&frame.body) {
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
                    let partial = self.partial_bytes();
                    result.failure = Some(Failure::new(
                        FailureReason::Timeout,
                        format!(
                            "no matching frame within {}{}{}",
                            fmt_duration(started.elapsed()),
                            skipped_note(result.skipped_count),
                            if partial > 0 {
                                format!("; {partial} bytes of an unfinished frame are waiting for the rest")
                            } else {
                                String::new()
                            }
                        ),
                    ));
                    return result;
                }
            }
        }
    }

    pub fn closed(&self) -> Option<Closed> {
        self.shared.closed()
    }

    /// Resolves when the connection ends.
    pub async fn wait_closed(&self) -> Closed {
        loop {
            let ended = self.shared.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if let Some(c) = self.shared.closed() {
                return c;
            }
            ended.await;
        }
    }

    pub fn connected_at(&self) -> Instant {
        self.shared.connected_at
    }

    /// Frames dropped because the inbox was full (oldest first).
    pub fn dropped_frames(&self) -> u64 {
        self.shared.inbox.dropped()
    }

    /// Bytes received that do not make a whole frame yet.
    pub fn partial_bytes(&self) -> usize {
        self.shared.partial.load(Ordering::Relaxed)
    }

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

#[cfg(test)]
mod inbox_tests {
    use super::*;

    #[test]
    fn a_queued_frame_comes_back_as_it_arrived() {
        let s = Shared {
            inbox: crate::frame_inbox::FrameInbox::new(4),
            arrived: Notify::new(),
            closed: Mutex::new(None),
            ended: Notify::new(),
            connected_at: Instant::now(),
            partial: AtomicUsize::new(0),
        };
        let rx = crate::kts::RealTime::from_timespec(1_700_000_000, 5);
        let before = Instant::now();
        s.push(b"\x00\x01", rx);
        let after = Instant::now();
        let f = s.pop().unwrap();
        assert_eq!(f.body, Bytes::from_static(b"\x00\x01"));
        assert!(before <= f.received_at && f.received_at <= after);
        assert_eq!(f.kernel_rx, rx);
        assert!(s.pop().is_none());
    }
}

#[cfg(test)]
mod tests {
    /// Every connection's task holds this for its life, inside a future tokio keeps in a cell
    /// of 128-byte steps: at 176 bytes the future was 520 bytes and the cell 640; with a copy of
    /// the framing (216) they were 560 and 768.
    #[test]
    fn a_connections_task_stays_small() {
        let size = std::mem::size_of::<super::Task>();
        assert!(size <= 176, "{size}");
    }
}
