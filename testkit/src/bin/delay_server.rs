//! An HTTP/1.1 server that answers every request with `200 ok` after a fixed delay: the target of
//! the benchmark's measurement-truth run (bench/probe_vs_blackbox.sh), where what an exporter
//! reports as `probe_duration_seconds` minus the known delay is its measurement error.
//!
//!   delay_server [--listen 127.0.0.1:0] [--delay-ms 20] [--tls]
//!
//! Prints `listening on ADDR` once bound. Loopback only: a non-loopback address is refused.
//!
//! `--tls` serves HTTPS (HTTP/1.1 by ALPN) with a certificate made at start for `localhost`
//! (clients skip verification). It sends no TLS 1.3 session tickets: on the wire a
//! ticket is indistinguishable from the response (both are encrypted application records), and
//! bench/truth.sh must find the response's first segment in a capture.
//!
//! The delay is slept on a blocking thread, not with tokio's timer: tokio's timer wheel has 1 ms
//! granularity and rounds up, which would add up to a millisecond of error to the very thing
//! measured here. The blocking pool has a thread per request in flight (200 in the benchmark).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn usage(why: &str) -> ! {
    eprintln!("delay_server: {why}\nusage: delay_server [--listen 127.0.0.1:PORT] [--delay-ms N]");
    std::process::exit(2);
}

fn main() {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut delay = Duration::from_millis(20);
    let mut tls = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--listen" => {
                listen = value()
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--listen: {e}")))
            }
            "--delay-ms" => {
                let ms: u64 = value()
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--delay-ms: {e}")));
                delay = Duration::from_millis(ms);
            }
            "--tls" => tls = true,
            _ => usage(&format!("unknown argument {a:?}")),
        }
    }
    if !listen.ip().is_loopback() {
        usage("only loopback addresses are allowed");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1024)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tls = tls.then(tls_config);
    rt.block_on(serve(listen, delay, tls));
}

/// A self-made certificate, HTTP/1.1 by ALPN, no session tickets (see the module docs).
fn tls_config() -> tokio_rustls::TlsAcceptor {
    use sonde_testkit::pki::{server_config, Ca};
    let ca = Ca::new("delay_server CA");
    let leaf = ca.leaf(&["localhost"], time::Duration::days(1), &[]);
    let mut config = (*server_config(&leaf, &[b"http/1.1"], None)).clone();
    config.send_tls13_tickets = 0;
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

async fn serve(listen: SocketAddr, delay: Duration, tls: Option<tokio_rustls::TlsAcceptor>) {
    let listener = TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| usage(&format!("cannot bind {listen}: {e}")));
    println!(
        "listening on {}",
        listener.local_addr().expect("local address")
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| async move {
                let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
        });
    }
}
