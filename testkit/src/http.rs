//! HTTP fixtures: a routed HTTP/HTTPS server (HTTP/1.1 and HTTP/2), raw-TCP hostile servers, and
//! a minimal forward proxy (absolute-form requests and `CONNECT` tunnels).
//!
//! Every fixture listens on loopback on a port the OS picks and stops when its handle is dropped:
//! the accept loop and every connection it spawned are aborted together, so a test that ends
//! early leaves nothing running. Fixtures never dial anything but loopback addresses (the proxy
//! answers 403 to any other target), so a mistaken test cannot leak traffic off the machine.
//!
//! ```no_run
//! # async fn demo() {
//! use sonde_testkit::http::{HttpServer, Reply, Routes};
//! let server = HttpServer::start(
//!     Routes::new()
//!         .at("/", Reply::text(200, "hello"))
//!         .at("/old", Reply::redirect(301, "/"))
//!         .at("/echo", Reply::echo()),
//! )
//! .await;
//! let url = server.url("/old"); // "http://127.0.0.1:PORT/old"
//! # }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Request bodies the fixtures read are capped: a fixture must not be the thing that eats memory.
const MAX_REQUEST_BODY: usize = 1 << 20;

/// How many requests a fixture remembers for [`HttpServer::requests`]; older ones are dropped.
const MAX_REMEMBERED: usize = 1024;

/// Aborts the accept loop (and with it, through its `JoinSet`, every connection task) on drop.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accept connections on `listener` until dropped, running `serve` for each in a task owned by
/// the loop.
fn accept_loop<F, Fut>(listener: TcpListener, accepted: Arc<AtomicUsize>, serve: F) -> AbortOnDrop
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    AbortOnDrop(tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            accepted.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            conns.spawn(serve(stream, peer));
            while conns.try_join_next().is_some() {}
        }
    }))
}

fn url_for(scheme: &str, addr: SocketAddr, path: &str) -> String {
    // SocketAddr's Display brackets IPv6 addresses, which is what a URL needs.
    format!("{scheme}://{addr}{path}")
}

pub(crate) fn remember(list: &Mutex<Vec<Seen>>, seen: Seen) {
    let mut l = list.lock().unwrap_or_else(|e| e.into_inner());
    if l.len() >= MAX_REMEMBERED {
        l.remove(0);
    }
    l.push(seen);
}

fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// A request as a fixture received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// The request target as sent: origin-form (`/a?b`), absolute-form through a proxy, or
    /// `host:port` for `CONNECT`.
    pub uri: String,
    /// Only the path of `uri`.
    pub path: String,
    /// "HTTP/1.1", "HTTP/2.0".
    pub version: String,
    /// Names in lower case, in the order received. HTTP/2's `:authority` shows up as `host`.
    pub headers: Vec<(String, String)>,
    /// The request body (at most 1 MiB is read).
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl Seen {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request as JSON: what [`Reply::echo`] sends back. Header values with the same name are
    /// joined with ", ".
    pub fn to_json(&self) -> serde_json::Value {
        let mut headers = serde_json::Map::new();
        for (n, v) in &self.headers {
            match headers.get_mut(n) {
                Some(serde_json::Value::String(prev)) => {
                    prev.push_str(", ");
                    prev.push_str(v);
                }
                _ => {
                    headers.insert(n.clone(), serde_json::Value::String(v.clone()));
                }
            }
        }
        serde_json::json!({
            "method": self.method,
            "uri": self.uri,
            "path": self.path,
            "version": self.version,
            "headers": headers,
            "body": String::from_utf8_lossy(&self.body),
        })
    }

    async fn from_request(req: Request<Incoming>, peer: SocketAddr) -> Seen {
        let (parts, body) = req.into_parts();
        Self::from_parts(&parts, body, peer).await
    }

    async fn from_parts(parts: &http::request::Parts, body: Incoming, peer: SocketAddr) -> Seen {
        let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let mut headers = Vec::new();
        if parts.version == http::Version::HTTP_2 && !parts.headers.contains_key(http::header::HOST)
        {
            if let Some(a) = parts.uri.authority() {
                headers.push(("host".to_string(), a.to_string()));
            }
        }
        for (n, v) in &parts.headers {
            headers.push((
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
        Seen {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            path: parts.uri.path().to_string(),
            version: version_str(parts.version).to_string(),
            headers,
            body,
            peer,
        }
    }
}

#[derive(Clone, Debug)]
enum ReplyBody {
    Fixed(Bytes),
    Echo,
}

/// What a route answers. Build with a constructor, refine with [`Reply::header`] and
/// [`Reply::delay`].
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: ReplyBody,
    delay: Duration,
}

impl Reply {
    /// `code` with an empty body.
    pub fn status(code: u16) -> Reply {
        Reply {
            status: code,
            headers: Vec::new(),
            body: ReplyBody::Fixed(Bytes::new()),
            delay: Duration::ZERO,
        }
    }

    /// `code` with a `text/plain` body.
    pub fn text(code: u16, body: impl Into<String>) -> Reply {
        Reply::bytes(code, Bytes::from(body.into())).header("content-type", "text/plain")
    }

    /// `code` with these body bytes and no content type.
    pub fn bytes(code: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            body: ReplyBody::Fixed(body.into()),
            ..Reply::status(code)
        }
    }

    /// `code` with a JSON body.
    pub fn json(code: u16, value: &serde_json::Value) -> Reply {
        Reply::bytes(code, Bytes::from(value.to_string()))
            .header("content-type", "application/json")
    }

    /// A redirect (`code` is 301, 302, 303, 307 or 308) to `location`, relative or absolute.
    /// A route that redirects to itself is a redirect loop.
    pub fn redirect(code: u16, location: &str) -> Reply {
        Reply::status(code).header("location", location)
    }

    /// 200 with the request as JSON ([`Seen::to_json`]): method, uri, path, version, headers
    /// (lower-case names) and body.
    pub fn echo() -> Reply {
        Reply {
            body: ReplyBody::Echo,
            ..Reply::status(200)
        }
        .header("content-type", "application/json")
    }

    /// Add a response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Wait this long before sending the response head: a slow backend.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    pub(crate) fn into_response(self, seen: &Seen) -> Response<Full<Bytes>> {
        let body = match self.body {
            ReplyBody::Fixed(b) => b,
            ReplyBody::Echo => Bytes::from(seen.to_json().to_string()),
        };
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (n, v) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                resp.headers_mut().append(n, v);
            }
        }
        resp
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// Path → reply. Paths match exactly (the query is ignored); a path ending in `*` matches every
/// path with that prefix. Unknown paths get 404.
#[derive(Clone, Default)]
pub struct Routes {
    exact: HashMap<String, Handler>,
    prefix: Vec<(String, Handler)>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Answer `path` with `reply` every time.
    pub fn at(self, path: &str, reply: Reply) -> Routes {
        self.at_fn(path, move |_| reply.clone())
    }

    /// Answer `path` with whatever `f` makes of the request (e.g. a redirect chain that counts:
    /// `/hop/1` → `/hop/2` → …).
    pub fn at_fn(
        mut self,
        path: &str,
        f: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Routes {
        let h: Handler = Arc::new(f);
        match path.strip_suffix('*') {
            Some(p) => self.prefix.push((p.to_string(), h)),
            None => {
                self.exact.insert(path.to_string(), h);
            }
        }
        self
    }

    pub(crate) fn reply(&self, seen: &Seen) -> Reply {
        if let Some(h) = self.exact.get(&seen.path) {
            return h(seen);
        }
        self.prefix
            .iter()
            .filter(|(p, _)| seen.path.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, h)| h(seen))
            .unwrap_or_else(|| Reply::text(404, "no such route"))
    }
}

/// A routed HTTP server; over TLS it speaks HTTP/2 or HTTP/1.1 as ALPN decides, in plain text
/// HTTP/1.1 (or HTTP/2 with prior knowledge).
pub struct HttpServer {
    addr: SocketAddr,
    scheme: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<AtomicUsize>,
    _task: AbortOnDrop,
}

impl HttpServer {
    /// Plain HTTP on 127.0.0.1. Panics if loopback cannot be bound (the test cannot run at all).
    pub async fn start(routes: Routes) -> HttpServer {
        Self::start_on(([127, 0, 0, 1], 0).into(), routes)
            .await
            .expect("bind 127.0.0.1")
    }

    /// Plain HTTP on `addr` (e.g. `[::1]:0`); the error lets a test skip when IPv6 is off.
    pub async fn start_on(addr: SocketAddr, routes: Routes) -> io::Result<HttpServer> {
        Self::serve(addr, routes, None).await
    }

    /// HTTPS on 127.0.0.1 with `config` (see [`crate::pki::server_config`]; its ALPN list decides
    /// whether clients get HTTP/2).
    pub async fn start_tls(routes: Routes, config: Arc<rustls::ServerConfig>) -> HttpServer {
        Self::start_tls_on(([127, 0, 0, 1], 0).into(), routes, config)
            .await
            .expect("bind 127.0.0.1")
    }

    /// HTTPS on `addr`.
    pub async fn start_tls_on(
        addr: SocketAddr,
        routes: Routes,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<HttpServer> {
        Self::serve(addr, routes, Some(config)).await
    }

    async fn serve(
        addr: SocketAddr,
        routes: Routes,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<HttpServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let routes = Arc::new(routes);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let seen2 = seen.clone();
        let task = accept_loop(listener, accepted.clone(), move |stream, peer| {
            let routes = routes.clone();
            let seen = seen2.clone();
            let acceptor = acceptor.clone();
            async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let routes = routes.clone();
                    let seen = seen.clone();
                    async move {
                        let s = Seen::from_request(req, peer).await;
                        remember(&seen, s.clone());
                        let reply = routes.reply(&s);
                        if !reply.delay.is_zero() {
                            tokio::time::sleep(reply.delay).await;
                        }
                        Ok::<_, Infallible>(reply.into_response(&s))
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        // A client that fails the handshake (the point of some tests) just
                        // ends this connection.
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        });
        Ok(HttpServer {
            addr,
            scheme,
            seen,
            accepted,
            _task: task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://ADDR` + `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        url_for(self.scheme, self.addr, path)
    }

    /// Every request received so far (the last 1024), oldest first.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// What a [`RawServer`] does with each connection.
#[derive(Clone, Debug)]
enum Behaviour {
    NeverAnswer,
    Trickle(Bytes, Duration),
    EndlessBody,
    Reply(Bytes),
}

/// A raw-TCP server that misbehaves on purpose, for probes' hostile-peer tests. Each connection
/// first has its request head read (up to 64 KiB), then gets the behaviour.
pub struct RawServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _task: AbortOnDrop,
}

impl RawServer {
    /// Accepts, reads whatever comes, and never writes a byte.
    pub async fn never_answers() -> RawServer {
        Self::start(Behaviour::NeverAnswer).await
    }

    /// Writes `payload` one byte every `every`, then closes.
    pub async fn trickle(payload: impl Into<Bytes>, every: Duration) -> RawServer {
        Self::start(Behaviour::Trickle(payload.into(), every)).await
    }

    /// A valid HTTP/1.1 response, one byte per second: the head alone takes ~40 s.
    pub async fn trickle_response() -> RawServer {
        Self::trickle(
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"[..],
            Duration::from_secs(1),
        )
        .await
    }

    /// A 200 head at once, then a chunked body that never ends (16 KiB chunks, ~3 MB/s so a test
    /// does not burn a core).
    pub async fn endless_body() -> RawServer {
        Self::start(Behaviour::EndlessBody).await
    }

    /// Something that is not HTTP at all (an SSH banner and binary noise), then close.
    pub async fn garbage() -> RawServer {
        Self::reply(&b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage \x01\x02\r\n\r\n"[..]).await
    }

    /// Writes exactly `bytes`, then closes: for malformed or truncated responses.
    pub async fn reply(bytes: impl Into<Bytes>) -> RawServer {
        Self::start(Behaviour::Reply(bytes.into())).await
    }

    async fn start(behaviour: Behaviour) -> RawServer {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local_addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = accept_loop(listener, accepted.clone(), move |stream, _| {
            let b = behaviour.clone();
            async move {
                let _ = misbehave(stream, b).await;
            }
        });
        RawServer {
            addr,
            accepted,
            _task: task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        url_for("http", self.addr, path)
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Read until the end of a request head (or 64 KiB, or EOF).
async fn read_head(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(())
}

async fn misbehave(mut stream: TcpStream, b: Behaviour) -> io::Result<()> {
    match b {
        Behaviour::NeverAnswer => {
            let mut chunk = [0u8; 4096];
            while stream.read(&mut chunk).await? > 0 {}
            Ok(())
        }
        Behaviour::Trickle(payload, every) => {
            read_head(&mut stream).await?;
            for byte in payload.iter() {
                stream.write_all(&[*byte]).await?;
                stream.flush().await?;
                tokio::time::sleep(every).await;
            }
            Ok(())
        }
        Behaviour::EndlessBody => {
            read_head(&mut stream).await?;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await?;
            let mut chunk = b"4000\r\n".to_vec();
            chunk.extend(std::iter::repeat_n(b'x', 0x4000));
            chunk.extend_from_slice(b"\r\n");
            loop {
                stream.write_all(&chunk).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Behaviour::Reply(bytes) => {
            read_head(&mut stream).await?;
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        }
    }
}

/// A minimal HTTP/1.1 forward proxy: `CONNECT host:port` opens a tunnel, an absolute-form
/// request (`GET http://host:port/path`) is forwarded. Only loopback IP literals are allowed as
/// targets (anything else gets 403), so tests cannot reach off the machine through it.
pub struct Proxy {
    addr: SocketAddr,
    tunnels: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    _task: AbortOnDrop,
}

/// What a proxy connection's service hands back to the connection task when a CONNECT
/// succeeded: the upgrade future and the target to dial.
type PendingTunnel = Arc<Mutex<Option<(hyper::upgrade::OnUpgrade, TcpStream)>>>;

impl Proxy {
    /// A proxy that accepts anyone.
    pub async fn start() -> Proxy {
        Self::start_inner(None).await
    }

    /// A proxy that answers 407 unless `Proxy-Authorization: Basic base64(user:password)`.
    pub async fn start_with_auth(user: &str, password: &str) -> Proxy {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        Self::start_inner(Some(expected)).await
    }

    async fn start_inner(expected_auth: Option<String>) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local_addr");
        let tunnels = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new((
            tunnels.clone(),
            forwarded.clone(),
            seen.clone(),
            expected_auth,
        ));
        let task = accept_loop(
            listener,
            Arc::new(AtomicUsize::new(0)),
            move |stream, peer| {
                let shared = shared.clone();
                async move {
                    let pending: PendingTunnel = Arc::new(Mutex::new(None));
                    let pending2 = pending.clone();
                    let service = service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        let pending = pending2.clone();
                        async move {
                            Ok::<_, Infallible>(proxy_request(req, peer, &shared, &pending).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                    // The tunnel runs in this connection's task, so dropping the proxy ends it too.
                    let tunnel = pending.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some((on_upgrade, mut target)) = tunnel {
                        if let Ok(upgraded) = on_upgrade.await {
                            let mut client = TokioIo::new(upgraded);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut target).await;
                        }
                    }
                }
            },
        );
        Proxy {
            addr,
            tunnels,
            forwarded,
            seen,
            _task: task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, to use as a client's proxy URL.
    pub fn url(&self) -> String {
        url_for("http", self.addr, "")
    }

    /// Tunnels opened with a successful CONNECT.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::Relaxed)
    }

    /// Absolute-form requests forwarded.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// Every request the proxy itself received (CONNECT lines and absolute-form requests).
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

type ProxyShared = (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Arc<Mutex<Vec<Seen>>>,
    Option<String>,
);

fn plain(code: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(msg.to_string())));
    *r.status_mut() = code;
    r
}

/// Only loopback IP literals: the network rule holds even through the proxy.
fn loopback_target(host: &str, port: u16) -> Option<SocketAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = bare.parse().ok()?;
    ip.is_loopback().then_some(SocketAddr::new(ip, port))
}

async fn proxy_request(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    (tunnels, forwarded, seen, expected_auth): &ProxyShared,
    pending: &PendingTunnel,
) -> Response<Full<Bytes>> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let is_connect = req.method() == http::Method::CONNECT;
    let given_auth = req
        .headers()
        .get(http::header::PROXY_AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let authority = req.uri().authority().cloned();
    let (parts, body) = req.into_parts();
    let s = Seen::from_parts(&parts, body, peer).await;
    remember(seen, s.clone());
    if let Some(expected) = expected_auth {
        if given_auth.as_deref() != Some(expected.as_str()) {
            let mut r = plain(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "proxy authentication required",
            );
            r.headers_mut().insert(
                http::header::PROXY_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"sonde-test\""),
            );
            return r;
        }
    }
    let Some(authority) = authority else {
        return plain(StatusCode::BAD_REQUEST, "a proxy needs an absolute URI");
    };
    let port = authority.port_u16().unwrap_or(80);
    let Some(target) = loopback_target(authority.host(), port) else {
        return plain(StatusCode::FORBIDDEN, "only loopback targets");
    };
    let Ok(upstream) = TcpStream::connect(target).await else {
        return plain(StatusCode::BAD_GATEWAY, "cannot connect to the target");
    };
    if is_connect {
        tunnels.fetch_add(1, Ordering::Relaxed);
        *pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((on_upgrade, upstream));
        return plain(StatusCode::OK, "");
    }
    forwarded.fetch_add(1, Ordering::Relaxed);
    match forward(s, upstream).await {
        Ok(r) => r,
        Err(e) => plain(StatusCode::BAD_GATEWAY, &format!("forwarding failed: {e}")),
    }
}

/// Send `s` in origin form over `upstream`, return the (collected, ≤ 16 MiB) response.
async fn forward(s: Seen, upstream: TcpStream) -> Result<Response<Full<Bytes>>, String> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(upstream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let uri: http::Uri = s.uri.parse().map_err(|e| format!("{e}"))?;
    let origin = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut b = Request::builder().method(s.method.as_str()).uri(origin);
    for (n, v) in &s.headers {
        if n.eq_ignore_ascii_case("proxy-authorization")
            || n.eq_ignore_ascii_case("proxy-connection")
        {
            continue;
        }
        b = b.header(n.as_str(), v.as_str());
    }
    let req = b.body(Full::new(s.body)).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (mut parts, body) = resp.into_parts();
    // The body is re-framed by our own server: drop the upstream's framing headers.
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let body = Limited::new(body, 16 << 20)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    drop(driver);
    Ok(Response::from_parts(parts, Full::new(body)))
}
