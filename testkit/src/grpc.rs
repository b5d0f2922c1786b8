//! A gRPC health server (`grpc.health.v1.Health/Check`) for the gRPC probe's tests and the
//! interop suite, behaving as grpc-go's `health.Server` does: the empty service ("the server as
//! a whole") is `SERVING` from the start, each service's status can be set, and a service nobody
//! set is answered with gRPC status `NOT_FOUND` (5) and no message. Any other method gets
//! `UNIMPLEMENTED` (12).
//!
//! It speaks HTTP/2 only — with prior knowledge in clear text (h2c), or over TLS with ALPN `h2`
//! — written over hyper directly, like the probe, and reads the request message itself so a
//! probe that encodes it wrongly is caught here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// `HealthCheckResponse.ServingStatus`.
pub const UNKNOWN: i32 = 0;
pub const SERVING: i32 = 1;
pub const NOT_SERVING: i32 = 2;
pub const SERVICE_UNKNOWN: i32 = 3;

/// gRPC status codes the server sends.
pub const NOT_FOUND: u32 = 5;
pub const UNIMPLEMENTED: u32 = 12;
pub const INTERNAL: u32 = 13;

type Statuses = Arc<Mutex<HashMap<String, i32>>>;

/// The server; it stops when dropped.
pub struct GrpcHealthServer {
    addr: SocketAddr,
    statuses: Statuses,
    asked: Arc<Mutex<Vec<String>>>,
    _task: AbortOnDrop,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl GrpcHealthServer {
    /// h2c on 127.0.0.1, an OS-chosen port.
    pub async fn start() -> GrpcHealthServer {
        Self::start_on(([127, 0, 0, 1], 0).into(), None)
            .await
            .expect("bind 127.0.0.1")
    }

    /// TLS on 127.0.0.1 with `config` (see [`crate::pki::server_config`]; give it ALPN `h2`).
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> GrpcHealthServer {
        Self::start_on(([127, 0, 0, 1], 0).into(), Some(config))
            .await
            .expect("bind 127.0.0.1")
    }

    /// On `addr` (a fixed port for a process other tools probe), TLS when `tls` is given.
    pub async fn start_on(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<GrpcHealthServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let statuses: Statuses = Arc::new(Mutex::new(HashMap::from([(String::new(), SERVING)])));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let (st, ak) = (statuses.clone(), asked.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, ak, acceptor) = (st.clone(), ak.clone(), acceptor.clone());
                conns.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (st, ak) = (st.clone(), ak.clone());
                        async move { Ok::<_, Infallible>(answer(req, &st, &ak).await) }
                    });
                    let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(GrpcHealthServer {
            addr,
            statuses,
            asked,
            _task: AbortOnDrop(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Set a service's serving status (grpc-go's `SetServingStatus`).
    pub fn set(&self, service: &str, status: i32) {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service.to_string(), status);
    }

    /// Forget a service: asking about it becomes `NOT_FOUND` again.
    pub fn remove(&self, service: &str) {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(service);
    }

    /// The services asked about so far, in order (as the server decoded them).
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn answer(
    req: Request<Incoming>,
    statuses: &Statuses,
    asked: &Mutex<Vec<String>>,
) -> Response<Reply> {
    if req.uri().path() != "/grpc.health.v1.Health/Check" {
        return trailers_only(UNIMPLEMENTED, "unknown method");
    }
    let is_grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        let mut r = Response::new(Reply::empty());
        *r.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return r;
    }
    let body = match Limited::new(req.into_body(), 1 << 16).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return trailers_only(INTERNAL, "cannot read the request"),
    };
    let service = match decode_request(&body) {
        Ok(s) => s,
        Err(e) => {
            return trailers_only(INTERNAL, &format!("grpc: error unmarshalling request: {e}"))
        }
    };
    asked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(service.clone());
    let status = statuses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&service)
        .copied();
    match status {
        None => trailers_only(NOT_FOUND, "unknown service"),
        Some(s) => {
            let mut msg = Vec::new();
            if s != 0 {
                msg.push(0x08);
                put_varint(&mut msg, s as i64 as u64);
            }
            let mut framed = BytesMut::new();
            framed.put_u8(0);
            framed.put_u32(msg.len() as u32);
            framed.put_slice(&msg);
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let mut r = Response::new(Reply {
                data: Some(framed.freeze()),
                trailers: Some(trailers),
            });
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            r
        }
    }
}

/// An error answer: status and message in the response head, no body (gRPC's "Trailers-Only").
fn trailers_only(code: u32, message: &str) -> Response<Reply> {
    let mut r = Response::new(Reply::empty());
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    let encoded: String = message
        .bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        h.insert("grpc-message", v);
    }
    r
}

/// `HealthCheckRequest.service` out of a framed request.
fn decode_request(b: &[u8]) -> Result<String, String> {
    if b.len() < 5 || b[0] != 0 {
        return Err("not one uncompressed gRPC message".into());
    }
    let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
    let mut m = b.get(5..).unwrap_or_default();
    if m.len() != len {
        return Err(format!("message length {len}, {} bytes follow", m.len()));
    }
    let mut service = String::new();
    while !m.is_empty() {
        let key = get_varint(&mut m)?;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let n = get_varint(&mut m)? as usize;
                if m.len() < n {
                    return Err("the service name runs past the message".into());
                }
                service = String::from_utf8(m[..n].to_vec()).map_err(|e| e.to_string())?;
                m = &m[n..];
            }
            (f, w) => return Err(format!("unexpected field {f} (wire type {w})")),
        }
    }
    Ok(service)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(m: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = m.split_first() else {
            return Err("truncated varint".into());
        };
        *m = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// A response body: at most one DATA frame, then trailers.
pub struct Reply {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Reply {
    fn empty() -> Reply {
        Reply {
            data: None,
            trailers: None,
        }
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}
