//! A scriptable WebSocket server for the ws probe and the scenario engine's ws steps.
//!
//! By default it echoes every data frame (text as text, binary as binary). Text frames that start
//! with `!` are commands, so a test (or a scenario YAML) drives hostile behaviour from the client
//! side, at the exact point of the dialogue it wants:
//!
//! ```text
//! !close CODE [REASON]   send a close frame with CODE and REASON, then end the connection
//! !drop                  drop the TCP connection at once, without a close frame
//! !noise N               send N text frames "noise 1" … "noise N"
//! !big N                 send one text frame of N 'x' bytes
//! !ping                  send a WebSocket ping to the client (its pong is counted)
//! !silence               stop reading: pings go unanswered, nothing is echoed any more
//! ```
//!
//! [`WsOptions`] sets what cannot be asked for from inside a connection: the subprotocol choice,
//! refusing the upgrade with a status, noise before every echo, a greeting, dropping after N
//! frames, TLS. The handle counts what clients did (connections, pings, pongs, frames) and can
//! drop every connection on demand ([`WsServer::drop_all`]), like a crashing server.
//!
//! Listens on 127.0.0.1 on a port the OS picks; stops, with its connections, when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How the server answers the subprotocols a client offers.
#[derive(Clone, Debug, Default)]
pub enum Subprotocol {
    /// Choose the first one offered (none when none is offered).
    #[default]
    FirstOffered,
    /// Choose the first offered one that is in this list; none when there is no overlap.
    Prefer(Vec<String>),
    /// Answer with this one whatever was offered (even when it was not).
    Always(String),
    /// Never choose one.
    Never,
    /// Choose this one; refuse the upgrade with HTTP 400 when the client did not offer it.
    Require(String),
}

/// What a [`WsServer`] does; `Default` is a plain echo server.
#[derive(Clone, Default)]
pub struct WsOptions {
    pub subprotocol: Subprotocol,
    /// Answer the upgrade request with this status (and a short body) instead of 101.
    pub refuse_status: Option<u16>,
    /// Before every echo, send this many noise frames (`{"noise":1}`, `{"noise":2}`, …).
    pub noise_before_echo: usize,
    /// Sent to every client right after the upgrade.
    pub greeting: Option<String>,
    /// Drop the TCP connection (no close frame) after receiving this many data frames.
    pub drop_after_frames: Option<usize>,
    /// wss: TLS with this configuration (see [`crate::pki::server_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Hostile: right after the upgrade, write these raw bytes to the stream (bypassing the
    /// framing: invalid UTF-8, masked server frames, absurd lengths…), then go on as usual.
    pub raw_after_upgrade: Option<Vec<u8>>,
}

/// What the fixture saw clients do.
#[derive(Default)]
pub(crate) struct Seen {
    pub connections: AtomicUsize,
    pub upgrades: AtomicUsize,
    pub pings: AtomicUsize,
    pub pongs: AtomicUsize,
    pub frames: AtomicUsize,
    pub closes: AtomicUsize,
    pub request_headers: Mutex<Vec<(String, String)>>,
    pub offered: Mutex<Vec<String>>,
}

/// A running WebSocket fixture; stops when dropped.
pub struct WsServer {
    addr: SocketAddr,
    tls: bool,
    seen: Arc<Seen>,
    drop_all: watch::Sender<u64>,
    _task: AbortOnDrop,
}

pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Small buffers: tests open many connections, and this mirrors what a lean server does.
pub(crate) fn server_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Any byte stream a connection runs over: TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

pub(crate) type Socket = WebSocketStream<Box<dyn Io>>;

/// Accept TCP connections on 127.0.0.1, do TLS when configured, and hand each stream to `serve`.
/// The connections run in a JoinSet owned by the accept task, so aborting it ends them all.
pub(crate) async fn listen<F, Fut>(
    tls: Option<Arc<rustls::ServerConfig>>,
    seen: Arc<Seen>,
    serve: F,
) -> (SocketAddr, AbortOnDrop)
where
    F: Fn(Box<dyn Io>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind the WebSocket fixture on 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    let acceptor = tls.map(TlsAcceptor::from);
    let task = tokio::spawn(async move {
        let serve = Arc::new(serve);
        let mut conns = JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let (acceptor, serve) = (acceptor.clone(), serve.clone());
            conns.spawn(async move {
                let _ = tcp.set_nodelay(true);
                let io: Box<dyn Io> = match acceptor {
                    None => Box::new(tcp),
                    Some(a) => match a.accept(tcp).await {
                        Ok(t) => Box::new(t),
                        Err(_) => return,
                    },
                };
                serve(io).await;
            });
            while conns.try_join_next().is_some() {}
        }
    });
    (addr, AbortOnDrop(task))
}

fn offered_subprotocols(req: &Request) -> Vec<String> {
    req.headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// An HTTP error response for a refused upgrade.
pub(crate) fn refusal(status: u16, body: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r
}

impl WsServer {
    /// A plain echo server (see the module docs for the `!` commands).
    pub async fn echo() -> WsServer {
        Self::start(WsOptions::default()).await
    }

    pub async fn start(opts: WsOptions) -> WsServer {
        let seen = Arc::new(Seen::default());
        let (drop_all, drop_rx) = watch::channel(0u64);
        let tls = opts.tls.is_some();
        let opts = Arc::new(opts);
        let (addr, task) = {
            let seen2 = seen.clone();
            listen(opts.tls.clone(), seen.clone(), move |io| {
                serve(io, opts.clone(), seen2.clone(), drop_rx.clone())
            })
            .await
        };
        WsServer {
            addr,
            tls,
            seen,
            drop_all,
            _task: task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/PATH` (`wss://` with TLS: issue the leaf for `127.0.0.1`, or set
    /// the client's server name). A leading slash of `path` is ignored.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Drop every open connection at once, without close frames (a crash, a load balancer
    /// restart). New connections are still accepted.
    pub fn drop_all(&self) {
        self.drop_all.send_modify(|g| *g += 1);
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// Upgrades completed (status 101 sent).
    pub fn upgrades(&self) -> usize {
        self.seen.upgrades.load(Ordering::SeqCst)
    }

    /// WebSocket pings received from clients.
    pub fn pings(&self) -> usize {
        self.seen.pings.load(Ordering::SeqCst)
    }

    /// WebSocket pongs received from clients (answers to `!ping`).
    pub fn pongs(&self) -> usize {
        self.seen.pongs.load(Ordering::SeqCst)
    }

    /// Data frames received from clients.
    pub fn frames(&self) -> usize {
        self.seen.frames.load(Ordering::SeqCst)
    }

    /// Close frames received from clients.
    pub fn closes(&self) -> usize {
        self.seen.closes.load(Ordering::SeqCst)
    }

    /// Headers of the most recent upgrade request (names lower case).
    pub fn last_request_headers(&self) -> Vec<(String, String)> {
        self.seen.request_headers.lock().unwrap().clone()
    }

    /// Subprotocols offered in the most recent upgrade request.
    pub fn last_offered_subprotocols(&self) -> Vec<String> {
        self.seen.offered.lock().unwrap().clone()
    }

    /// Wait until `count()` reaches `n` and return it; gives up after 5 s (a hang guard, not a
    /// timing assertion: the caller asserts on the value).
    pub async fn wait_for(&self, n: usize, count: impl Fn(&WsServer) -> usize) -> usize {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let c = count(self);
            if c >= n || tokio::time::Instant::now() >= give_up {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Upgrade with the subprotocol choice / refusal of `opts`, recording what the client sent.
pub(crate) async fn upgrade(
    io: Box<dyn Io>,
    subprotocol: &Subprotocol,
    refuse_status: Option<u16>,
    seen: &Seen,
) -> Option<Socket> {
    // The signature is tungstenite's; its error type is what it is.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offered = offered_subprotocols(req);
        *seen.request_headers.lock().unwrap() = req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        *seen.offered.lock().unwrap() = offered.clone();
        if let Some(status) = refuse_status {
            return Err(refusal(status, "upgrade refused by the test fixture"));
        }
        if let Subprotocol::Require(p) = subprotocol {
            if !offered.contains(p) {
                return Err(refusal(400, &format!("subprotocol {p} required")));
            }
        }
        let chosen = match subprotocol {
            Subprotocol::FirstOffered => offered.first().cloned(),
            Subprotocol::Prefer(list) => offered.iter().find(|o| list.contains(o)).cloned(),
            Subprotocol::Always(p) | Subprotocol::Require(p) => Some(p.clone()),
            Subprotocol::Never => None,
        };
        if let Some(p) = chosen.and_then(|p| HeaderValue::from_str(&p).ok()) {
            resp.headers_mut().insert("sec-websocket-protocol", p);
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(server_config()))
        .await
        .ok()?;
    seen.upgrades.fetch_add(1, Ordering::SeqCst);
    Some(ws)
}

async fn serve(
    io: Box<dyn Io>,
    opts: Arc<WsOptions>,
    seen: Arc<Seen>,
    mut drop_all: watch::Receiver<u64>,
) {
    drop_all.mark_unchanged();
    let Some(mut ws) = upgrade(io, &opts.subprotocol, opts.refuse_status, &seen).await else {
        return;
    };
    if let Some(raw) = &opts.raw_after_upgrade {
        use tokio::io::AsyncWriteExt;
        let io = ws.get_mut();
        if io.write_all(raw).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
    if let Some(g) = &opts.greeting {
        if ws.send(Message::text(g.clone())).await.is_err() {
            return;
        }
    }
    let mut received = 0usize;
    loop {
        let msg = tokio::select! {
            _ = drop_all.changed() => return,
            m = ws.next() => m,
        };
        let Some(Ok(msg)) = msg else { return };
        let reply = match msg {
            Message::Ping(_) => {
                seen.pings.fetch_add(1, Ordering::SeqCst);
                continue; // tungstenite queues the pong; the next read flushes it
            }
            Message::Pong(_) => {
                seen.pongs.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Message::Close(_) => {
                seen.closes.fetch_add(1, Ordering::SeqCst);
                // tungstenite answers the close; drive it out, then end.
                let _ = ws.flush().await;
                let _ = ws.next().await;
                return;
            }
            Message::Frame(_) => continue,
            Message::Text(t) => {
                seen.frames.fetch_add(1, Ordering::SeqCst);
                received += 1;
                if let Some(cmd) = t.as_str().strip_prefix('!') {
                    match run_command(&mut ws, cmd).await {
                        Flow::Continue => continue,
                        Flow::End => return,
                        Flow::Silence => {
                            // Keep the connection open but never read again.
                            let _ = drop_all.changed().await;
                            return;
                        }
                    }
                }
                Message::Text(t)
            }
            Message::Binary(b) => {
                seen.frames.fetch_add(1, Ordering::SeqCst);
                received += 1;
                Message::Binary(b)
            }
        };
        if opts.drop_after_frames.is_some_and(|n| received >= n) {
            return; // dropping `ws` drops the TCP connection without a close frame
        }
        for i in 1..=opts.noise_before_echo {
            if ws
                .send(Message::text(format!("{{\"noise\":{i}}}")))
                .await
                .is_err()
            {
                return;
            }
        }
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}

enum Flow {
    Continue,
    End,
    Silence,
}

async fn run_command(ws: &mut Socket, cmd: &str) -> Flow {
    let mut words = cmd.splitn(3, ' ');
    let verb = words.next().unwrap_or("");
    let arg = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("");
    let n = || arg.parse::<usize>().unwrap_or(1);
    match verb {
        "close" => {
            let code = arg.parse::<u16>().unwrap_or(1000);
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: rest.to_string().into(),
            };
            let _ = ws.close(Some(frame)).await;
            // Wait (briefly) for the client's answering close.
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
            Flow::End
        }
        "drop" => Flow::End,
        "noise" => {
            for i in 1..=n() {
                if ws.send(Message::text(format!("noise {i}"))).await.is_err() {
                    return Flow::End;
                }
            }
            Flow::Continue
        }
        "big" => {
            let size = n().min(64 << 20);
            match ws.send(Message::text("x".repeat(size))).await {
                Ok(()) => Flow::Continue,
                Err(_) => Flow::End,
            }
        }
        "ping" => match ws.send(Message::Ping(Default::default())).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::End,
        },
        "silence" => Flow::Silence,
        _ => {
            let _ = ws
                .send(Message::text(format!("unknown command !{verb}")))
                .await;
            Flow::Continue
        }
    }
}
