//! Dialing one hop and speaking HTTP over it.
//!
//! [`dial`] gets a byte stream to the origin: directly (resolve, connect, TLS), through a forward
//! proxy for `http://` targets (the request then goes to the proxy in absolute form), or through
//! a `CONNECT` tunnel for `https://` targets (TLS with the origin runs inside the tunnel).
//! [`handshake`] starts hyper's HTTP/1.1 or HTTP/2 client on that stream, as ALPN decided.
//!
//! Through a proxy, the `resolve` and `connect` phases are those of the proxy, and `connect` also
//! covers the `CONNECT` exchange: together they are "getting a pipe to the origin".

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use url::Url;

use super::close_whole::CloseWhole;
use super::h3::{H3Body, H3Sender};
use super::prepare::{self, clip, connect_authority, url_for_log};
use super::{HttpRequest, InFlight};
use crate::kts::seen::Seen;
use crate::kts::Marks;
use crate::policy;
use crate::resolve::connect_tcp;
use crate::tls::TlsFacts;
use crate::{Dur, Failure, FailureReason, Phase, Recorder};

/// Any byte stream the probe can speak HTTP over: TCP, TLS over TCP, TLS inside a tunnel.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// HTTP/2 response header blocks larger than this are refused: a hostile server must not make
/// the probe buffer megabytes of headers. (hyper's HTTP/1.1 parser has its own ~400 KiB cap.)
const MAX_H2_HEADER_LIST: u32 = 64 * 1024;

/// A spawned hyper connection driver, stopped when the hop is done with it (or the probe's
/// deadline drops the whole future): no connection outlives its probe.
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How the request target must be written on this connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// HTTP/1.1 to the origin (directly or through a tunnel): `GET /path`.
    Origin,
    /// HTTP/1.1 to a forward proxy: `GET http://host/path`.
    Absolute,
    /// HTTP/2: `:scheme`, `:authority`, `:path` from an absolute URI.
    H2,
    /// HTTP/3: the same pseudo-headers as HTTP/2.
    H3,
}

/// A stream to the origin, before HTTP starts.
pub(super) struct Dialed {
    io: Box<dyn Io>,
    pub tls: Option<TlsFacts>,
    /// Set when the requests go to a forward proxy in absolute form.
    forward_proxy_auth: Option<Option<HeaderValue>>,
    /// The kernel's timestamps of the request and response bytes, or why there are none.
    kernel: Marks,
}

/// Why a hop through a proxy is timed in user space: the socket's timestamps would be those of
/// the proxy's answers.
const PROXIED: &str = "through a proxy";
const QUIC: &str = "HTTP/3: QUIC packets are not timestamped";

/// Resolve, connect and (for https) handshake TLS for the hop to `url`.
pub(super) async fn dial(
    req: &HttpRequest,
    url: &Url,
    tls_name: &str,
    rec: &mut Recorder,
    in_flight: &mut InFlight,
) -> Result<Dialed, Failure> {
    let https = url.scheme() == "https";
    let Some(proxy) = &req.proxy else {
        let host = url.host_str().unwrap_or("");
        let port = url
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        let tcp = connect(req, host, port, true, rec, in_flight).await?;
        let (tcp, kernel) = crate::kts::timestamped(tcp);
        let tcp = CloseWhole(tcp);
        if !https {
            return Ok(Dialed {
                io: Box::new(tcp),
                tls: None,
                forward_proxy_auth: None,
                kernel,
            });
        }
        return finish_dial(req, Box::new(tcp), kernel, tls_name, rec, in_flight).await;
    };
    if proxy.scheme() != "http" {
        return Err(Failure::new(
            FailureReason::Connect,
            format!(
                "proxy {}: only http:// proxies are supported",
                url_for_log(proxy)
            ),
        ));
    }
    let proxy_auth = prepare::proxy_authorization(proxy);
    let phost = proxy.host_str().ok_or_else(|| {
        Failure::new(
            FailureReason::Connect,
            "the proxy URL has no host".to_string(),
        )
    })?;
    let pport = proxy.port_or_known_default().unwrap_or(80);
    check_through_proxy(req, url, rec).await?;
    let tcp = connect(req, phost, pport, false, rec, in_flight).await?;
    if !https {
        rec.event(format!(
            "sending the request through proxy {}",
            url_for_log(proxy)
        ));
        return Ok(Dialed {
            io: Box::new(CloseWhole(tcp)),
            tls: None,
            forward_proxy_auth: Some(proxy_auth),
            kernel: Marks::none(PROXIED),
        });
    }
    let started = in_flight.begin(Phase::Connect);
    let tunnel = tunnel(
        tcp,
        &connect_authority(url),
        proxy_auth,
        &req.proxy_connect_headers,
        rec,
    )
    .await;
    in_flight.end(rec, true);
    let tunnel = tunnel?;
    rec.event(format!(
        "tunnel to {} opened through proxy {} in {}",
        connect_authority(url),
        url_for_log(proxy),
        Dur(started.elapsed())
    ));
    finish_dial(req, tunnel, Marks::none(PROXIED), tls_name, rec, in_flight).await
}

/// Resolve and connect, keeping the phase in flight visible to a timeout. `checked`: the
/// request's policy is asked about every resolved address first (not for a proxy, which the
/// operator chose).
async fn connect(
    req: &HttpRequest,
    host: &str,
    port: u16,
    checked: bool,
    rec: &mut Recorder,
    in_flight: &mut InFlight,
) -> Result<tokio::net::TcpStream, Failure> {
    in_flight.begin(Phase::Resolve);
    let addrs = req.resolver.resolve(host, req.ip, rec).await;
    in_flight.end(rec, false); // the resolver recorded it
    let addrs = addrs?;
    if checked {
        policy::check(req.policy.as_ref(), host, &addrs, port, rec)?;
    }
    in_flight.begin(Phase::Connect);
    let tcp = connect_tcp(&addrs, port, rec).await;
    in_flight.end(rec, false);
    tcp
}

/// Through a proxy the probe never connects to the hop's host itself, but the proxy will: ask
/// the policy about the addresses the host resolves to here (its own lookup, not timed as the
/// probe's `resolve` phase, which is the proxy's).
async fn check_through_proxy(
    req: &HttpRequest,
    url: &Url,
    rec: &mut Recorder,
) -> Result<(), Failure> {
    let Some(p) = &req.policy else {
        return Ok(());
    };
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(80);
    let mut scratch = Recorder::new();
    let addrs = req.resolver.resolve(host, req.ip, &mut scratch).await?;
    policy::check(Some(p), host, &addrs, port, rec)
}

/// TLS for an https hop, over the stream `kernel` timestamps (or says why it does not).
async fn finish_dial(
    req: &HttpRequest,
    io: Box<dyn Io>,
    kernel: Marks,
    tls_name: &str,
    rec: &mut Recorder,
    in_flight: &mut InFlight,
) -> Result<Dialed, Failure> {
    in_flight.begin(Phase::Tls);
    let res = req.tls.handshake(io, tls_name, rec, &kernel).await;
    in_flight.end(rec, false);
    let (stream, facts) = res?;
    // Above TLS, the layer that reads plaintext tells the timestamped socket which read
    // carried the response (a session ticket or HTTP/2 SETTINGS may come first).
    let io: Box<dyn Io> = if facts.alpn.as_deref() == Some("h2") {
        Box::new(Seen::h2(stream, kernel.clone()))
    } else {
        Box::new(Seen::first_bytes(stream, kernel.clone()))
    };
    Ok(Dialed {
        io,
        tls: Some(facts),
        forward_proxy_auth: None,
        kernel,
    })
}

/// `CONNECT authority` over `tcp` to the proxy; on 2xx the connection is the tunnel. hyper does
/// the HTTP part, so bytes the proxy sends after its response head are not lost.
async fn tunnel(
    tcp: tokio::net::TcpStream,
    authority: &str,
    proxy_auth: Option<HeaderValue>,
    extra: &http::HeaderMap,
    rec: &mut Recorder,
) -> Result<Box<dyn Io>, Failure> {
    rec.doing("opening a tunnel through the proxy");
    let protocol = |what: &str, e: hyper::Error| {
        Failure::new(
            FailureReason::Protocol,
            format!("proxy {what}: {}", describe_hyper(&e)),
        )
    };
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .map_err(|e| protocol("handshake failed", e))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    }));
    let mut request = Request::new(Empty::new());
    *request.method_mut() = http::Method::CONNECT;
    *request.uri_mut() = authority.parse().map_err(|e| {
        Failure::new(
            FailureReason::Connect,
            format!("cannot CONNECT to {}: {e}", clip(authority)),
        )
    })?;
    let headers = request.headers_mut();
    if let Ok(v) = HeaderValue::from_str(authority) {
        headers.insert(http::header::HOST, v);
    }
    for (n, v) in extra {
        headers.append(n.clone(), v.clone());
    }
    // Credentials in the proxy URL win over a configured Proxy-Authorization, as in Go.
    if let Some(v) = proxy_auth {
        headers.insert(http::header::PROXY_AUTHORIZATION, v);
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| protocol("failed to answer CONNECT", e))?;
    if !response.status().is_success() {
        return Err(Failure::new(
            FailureReason::Connect,
            format!(
                "proxy refused CONNECT {authority}: {} {}",
                response.status().as_u16(),
                response.status().canonical_reason().unwrap_or("")
            ),
        ));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| protocol("tunnel could not be taken over", e))?;
    Ok(Box::new(TokioIo::new(upgraded)))
}

/// An HTTP client connection for one hop.
pub(super) struct Connection {
    sender: Sender,
    target: Target,
    proxy_auth: Option<HeaderValue>,
    kernel: Marks,
    _driver: AbortOnDrop,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
    H3(H3Sender),
}

/// A response body as the connection's protocol delivers it.
pub(super) enum ResponseBody {
    Hyper(Incoming),
    /// Boxed: an h3 request stream is ten times the size of hyper's body handle.
    H3(Box<H3Body>),
}

impl ResponseBody {
    /// The next chunk of data, `None` at the end; trailers are skipped. An error says how the
    /// body broke.
    pub(super) async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        match self {
            ResponseBody::Hyper(b) => loop {
                match b.frame().await? {
                    Err(e) => return Some(Err(describe_hyper(&e))),
                    Ok(f) => {
                        if let Ok(data) = f.into_data() {
                            return Some(Ok(data));
                        }
                    }
                }
            },
            ResponseBody::H3(b) => b.next_chunk().await,
        }
    }
}

/// Start HTTP on a dialed stream: HTTP/2 when ALPN chose `h2`, HTTP/1.1 otherwise (plain http is
/// always HTTP/1.1: no prior-knowledge h2c).
pub(super) async fn handshake(dialed: Dialed) -> Result<Connection, Failure> {
    let h2 = dialed
        .tls
        .as_ref()
        .and_then(|t| t.alpn.as_deref())
        .is_some_and(|a| a == "h2");
    let kernel = dialed.kernel;
    let io = TokioIo::new(dialed.io);
    let fail = |e: hyper::Error| {
        Failure::new(
            FailureReason::Protocol,
            format!("HTTP handshake failed: {}", describe_hyper(&e)),
        )
    };
    if h2 {
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(MAX_H2_HEADER_LIST)
            .handshake(io)
            .await
            .map_err(fail)?;
        let driver = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        return Ok(Connection {
            sender: Sender::H2(sender),
            target: Target::H2,
            proxy_auth: None,
            kernel,
            _driver: driver,
        });
    }
    let (sender, connection) = http1::Builder::new().handshake(io).await.map_err(fail)?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let (target, proxy_auth) = match dialed.forward_proxy_auth {
        Some(auth) => (Target::Absolute, auth),
        None => (Target::Origin, None),
    };
    Ok(Connection {
        sender: Sender::H1(sender),
        target,
        proxy_auth,
        kernel,
        _driver: driver,
    })
}

impl Connection {
    /// An HTTP/3 connection ([`super::h3::dial`]).
    pub(super) fn h3(sender: H3Sender, driver: AbortOnDrop) -> Connection {
        Connection {
            sender: Sender::H3(sender),
            target: H3Sender::target(),
            proxy_auth: None,
            kernel: Marks::none(QUIC),
            _driver: driver,
        }
    }

    /// The kernel's timestamps for request → first response byte, or why there are none.
    pub(super) fn kernel_ttfb(&self) -> &Marks {
        &self.kernel
    }

    /// The peer (or hyper) closed it: it cannot carry another request.
    pub(super) fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
            Sender::H3(s) => s.is_closed(),
        }
    }

    pub(super) fn target(&self) -> Target {
        self.target
    }

    pub(super) fn proxy_authorization(&self) -> Option<&HeaderValue> {
        self.proxy_auth.as_ref()
    }

    /// The protocol this connection speaks, for the event log.
    pub(super) fn version_str(&self) -> &'static str {
        match self.sender {
            Sender::H1(_) => "HTTP/1.1",
            Sender::H2(_) => "HTTP/2.0",
            Sender::H3(_) => "HTTP/3.0",
        }
    }

    /// Send the request; resolves when the response head has arrived. Every failure here is the
    /// peer breaking the protocol (garbage, a reset, EOF before a complete head).
    pub(super) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<ResponseBody>, Failure> {
        let res = match &mut self.sender {
            Sender::H3(s) => {
                let (parts, body) = request.into_parts();
                let body = body.into_inner().unwrap_or_default();
                let response = s.send(Request::from_parts(parts, body)).await?;
                return Ok(response.map(|b| ResponseBody::H3(Box::new(b))));
            }
            Sender::H1(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
            Sender::H2(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
        };
        res.map(|r| r.map(ResponseBody::Hyper)).map_err(|e| {
            Failure::new(
                FailureReason::Protocol,
                format!("no valid response head: {}", describe_hyper(&e)),
            )
        })
    }
}

/// "HTTP/1.1", "HTTP/2.0": blackbox's (Go's) spelling, which `valid_http_versions` uses.
pub(super) fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// hyper's top-level messages are generic ("error reading a body from connection"); the cause
/// chain says what actually happened ("unexpected EOF during chunk size line").
pub(super) fn describe_hyper(e: &hyper::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
        depth += 1;
        if depth > 4 {
            break;
        }
    }
    out
}
