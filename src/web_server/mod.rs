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
//! [`exposition`] renders `/metrics` once for every client that asks at the same time.

pub mod exposition;
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
        let (router, limits, metrics, shutdown) = (
            router.clone(),
            limits.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        metrics.connections.inc();
        tokio::spawn(async move {
            connection(stream, router, &limits, shutdown).await;
            metrics.connections.dec();
            drop(slot);
        });
    }
    // Every connection holds a slot: all of them back means all are closed.
    let _all = slots.acquire_many(max as u32).await;
    Ok(())
}

/// One connection, HTTP/1.1 with keep-alive, under the limits.
async fn connection(
    stream: TcpStream,
    router: axum::Router,
    limits: &WebFlags,
    shutdown: CancellationToken,
) {
    let busy = Arc::new(AtomicUsize::new(0));
    let io = TimedIo::new(
        stream,
        limits.write_timeout,
        limits.idle_timeout,
        busy.clone(),
    );
    let tower = TowerToHyperService::new(router);
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let handled = Busy::enter(&busy);
        let response = tower.call(req);
        async move {
            let r = response.await;
            drop(handled);
            r
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
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
