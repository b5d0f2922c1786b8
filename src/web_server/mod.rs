//! The web server under sonde's endpoints: axum's router on hyper's HTTP/1.1, with the limits a
//! server exposed to untrusted clients needs and `axum::serve` does not have.
//!
//! - `--web.read-header-timeout`: a request head (and, on a kept-alive connection, the wait for
//!   the next one: hyper times both) must arrive within it; slowloris clients are closed.
//! - `--web.idle-timeout`: a connection with no byte either way for this long, while none of its
//!   requests is being handled, is closed.
//! - `--web.write-timeout`: a response write that makes no progress for this long (a client
//!   that asked and never reads) closes the connection.
//! - `--web.max-connections`: connections beyond it get a bare 503 and are closed at once,
//!   counted in `sonde_http_connections_rejected_total`; open ones are `sonde_http_connections`.
//!
//! With `--web.config.file` ([`secure`]) every connection of every listener is TLS (when the
//! file says so: the handshake must end within the read-header timeout; a plain-HTTP request
//! gets Go's 400 "Client sent an HTTP request to an HTTPS server."), and every request passes
//! the rate limit and basic auth before it reaches a route.
//!
//! [`exposition`] renders `/metrics` once for every client that asks at the same time.

pub mod exposition;
pub mod front;
pub mod secure;
mod timed_io;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use hyper::body::Incoming;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use timed_io::TimedIo;

/// The web server's limits, as `serve` flags.
#[derive(Args, Clone, Debug)]
pub struct WebFlags {
    /// A request's headers must arrive within this (also the longest wait for the next request
    /// on a kept-alive connection); slower clients are disconnected.
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_name = "DURATION", value_parser = positive_duration)]
    pub read_header_timeout: Duration,

    /// A connection that sends and receives nothing for this long while no request of it is
    /// being handled is closed.
    #[arg(long = "web.idle-timeout", default_value = "60s", value_name = "DURATION", value_parser = positive_duration)]
    pub idle_timeout: Duration,

    /// A response write that makes no progress for this long (the client stopped reading)
    /// closes the connection.
    #[arg(long = "web.write-timeout", default_value = "30s", value_name = "DURATION", value_parser = positive_duration)]
    pub write_timeout: Duration,

    /// Connections open at once; beyond, new ones get 503 and are closed.
    #[arg(long = "web.max-connections", default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

impl Default for WebFlags {
    fn default() -> Self {
        WebFlags {
            read_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than 0 — e.g. 10s".into()),
        Err(e) => Err(format!("{e} — expected a duration like 10s or 1m")),
    }
}

/// `sonde_http_connections` and `sonde_http_connections_rejected_total`.
#[derive(Clone, Default)]
pub struct WebMetrics {
    pub connections: Gauge,
    pub rejected: Counter,
}

impl WebMetrics {
    pub fn register(r: &mut Registry) -> WebMetrics {
        let m = WebMetrics::default();
        r.register(
            "sonde_http_connections",
            "Connections to the web endpoints open now",
            m.connections.clone(),
        );
        r.register(
            "sonde_http_connections_rejected",
            "Connections to the web endpoints closed at once because --web.max-connections were open",
            m.rejected.clone(),
        );
        m
    }
}

/// What a connection over the cap is told before it is closed.
const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Serve `router` on `listener` until `shutdown`, then stop accepting, let each connection
/// finish its request in flight, and return once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: WebFlags,
    metrics: WebMetrics,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_behind(listener, router, limits, metrics, shutdown, Arc::default()).await
}

/// [`serve`], behind `front`: the web configuration (TLS, basic auth, headers, rate limit) and
/// the route prefix.
pub async fn serve_behind(
    listener: TcpListener,
    router: axum::Router,
    limits: WebFlags,
    metrics: WebMetrics,
    shutdown: CancellationToken,
    front: Arc<front::Front>,
) -> io::Result<()> {
    let max = limits.max_connections as usize;
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin; the connections
                // already open keep being served.
                tracing::debug!("web server cannot accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.rejected.inc();
            let _ = stream.try_write(OVER_CAPACITY);
            continue;
        };
        let (router, limits, metrics, shutdown, front) = (
            router.clone(),
            limits.clone(),
            metrics.clone(),
            shutdown.clone(),
            front.clone(),
        );
        metrics.connections.inc();
        tokio::spawn(async move {
            connection(stream, router, &limits, shutdown, front).await;
            metrics.connections.dec();
            drop(slot);
        });
    }
    // Every connection holds a slot: all of them back means all are closed.
    let _all = slots.acquire_many(max as u32).await;
    Ok(())
}

/// What a plain-HTTP request to a TLS listener is told (Go's words, as exporter-toolkit's).
const PLAIN_TO_TLS: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// One connection, HTTP/1.1 with keep-alive (or HTTP/2 over TLS when offered), under the
/// limits.
async fn connection(
    stream: TcpStream,
    router: axum::Router,
    limits: &WebFlags,
    shutdown: CancellationToken,
    front: Arc<front::Front>,
) {
    let tls = front
        .security
        .as_ref()
        .and_then(|s| s.current().tls.clone().map(|t| (s.clone(), t)));
    let busy = Arc::new(AtomicUsize::new(0));
    let Some((security, tls)) = tls else {
        let io = TimedIo::new(
            stream,
            limits.write_timeout,
            limits.idle_timeout,
            busy.clone(),
        );
        let service = service(router, busy, front);
        return http(TokioIo::new(io), false, service, limits, shutdown).await;
    };
    // A request line rather than a ClientHello: answer it as Go does rather than with bytes of
    // a TLS alert the client cannot read.
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.read_header_timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] != 0x16 => return answer_plain_http(stream, limits).await,
        Ok(Ok(1)) => {}
        _ => return,
    }
    let io = TimedIo::new(
        stream,
        limits.write_timeout,
        limits.idle_timeout,
        busy.clone(),
    );
    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(io);
    let stream = match tokio::time::timeout(limits.read_header_timeout, accept).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("web server: TLS handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let (_, conn) = stream.get_ref();
    let config = security.current();
    if let Some(allowed) = &config.allowed_sans {
        let ok = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .is_some_and(|c| secure::san_allowed(c, allowed));
        if !ok {
            tracing::debug!("web server: client certificate has none of client_allowed_sans");
            return;
        }
    }
    let h2 = conn.alpn_protocol() == Some(b"h2");
    let service = service(router, busy, front);
    http(TokioIo::new(stream), h2, service, limits, shutdown).await;
}

/// Read the plain request's head (bounded), answer [`PLAIN_TO_TLS`], close. Reading first:
/// closing a socket with unread bytes resets it, and the client would lose the answer.
async fn answer_plain_http(mut stream: TcpStream, limits: &WebFlags) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let _ = tokio::time::timeout(limits.read_header_timeout, async {
        let mut buf = [0u8; 1024];
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(PLAIN_TO_TLS).await?;
        stream.shutdown().await
    })
    .await;
}

type Answer = Result<hyper::Response<axum::body::Body>, std::convert::Infallible>;

/// The router behind the front (gate, prefix), counting requests in flight for the idle
/// timeout.
fn service(
    router: axum::Router,
    busy: Arc<AtomicUsize>,
    front: Arc<front::Front>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<axum::body::Body>,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<Output = Answer> + Send,
> + Clone {
    let tower = TowerToHyperService::new(router);
    service_fn(move |req: hyper::Request<Incoming>| {
        let handled = Busy::enter(&busy);
        let (tower, front) = (tower.clone(), front.clone());
        async move {
            let config = front.security.as_ref().map(|s| (s, s.current()));
            let mut r = match &config {
                Some((security, config)) => match security.admit(config, req.headers()).await {
                    Ok(()) => routed(&tower, &front, req).await?,
                    Err(refused) => refused,
                },
                None => routed(&tower, &front, req).await?,
            };
            if let Some((_, config)) = &config {
                secure::decorate(config, &mut r);
            }
            drop(handled);
            Ok(r)
        }
    })
}

/// `req` through the route prefix to the routes.
async fn routed(
    tower: &TowerToHyperService<axum::Router>,
    front: &front::Front,
    mut req: hyper::Request<Incoming>,
) -> Answer {
    use axum::response::IntoResponse;
    match front.route(req.uri()) {
        front::Route::Same => tower.call(req).await,
        front::Route::Inner(uri) => {
            *req.uri_mut() = uri;
            tower.call(req).await
        }
        // 302, as Go's http.Redirect in blackbox.
        front::Route::Redirect(to) => {
            Ok((http::StatusCode::FOUND, [(http::header::LOCATION, to)]).into_response())
        }
        front::Route::NotFound => {
            Ok((http::StatusCode::NOT_FOUND, "404 page not found\n").into_response())
        }
    }
}

/// Serve HTTP on `io` until it closes, or gracefully from `shutdown` on.
async fn http<I, S>(io: I, h2: bool, service: S, limits: &WebFlags, shutdown: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if h2 {
        let builder =
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(TokioTimer::new())
                .clone();
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
        return;
    }
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A request being handled on a connection, for the idle timeout.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(n: &Arc<AtomicUsize>) -> Busy {
        n.fetch_add(1, Ordering::AcqRel);
        Busy(n.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
