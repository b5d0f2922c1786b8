//! An in-process HTTP/3 server: QUIC (quinn) on a loopback UDP port, h3 framing, the same
//! [`Routes`] and [`Reply`] as the TCP fixtures, and the requests it saw as [`Seen`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::task::JoinSet;

use crate::http::{remember, AbortOnDrop, Routes, Seen};

/// Request bodies beyond this are not kept (as the TCP fixtures).
const MAX_REQUEST_BODY: usize = 1 << 20;

/// The ALPN token of HTTP/3.
pub const ALPN: &[u8] = b"h3";

/// A routed HTTP/3 server on 127.0.0.1 (UDP). Its certificate comes from `config`, which must
/// offer TLS 1.3 and ALPN `h3` (e.g. `pki::server_config(&leaf, &[h3::ALPN], None)`).
pub struct H3Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<AtomicUsize>,
    _task: AbortOnDrop,
}

impl H3Server {
    pub async fn start(routes: Routes, config: Arc<rustls::ServerConfig>) -> H3Server {
        H3Server::start_on(
            "127.0.0.1:0".parse().expect("static address"),
            routes,
            config,
        )
        .expect("bind a loopback UDP port")
    }

    /// A server that answers as soon as a request's head is in and stops reading the rest with
    /// `H3_NO_ERROR`, before answering (RFC 9114 §4.1.1 allows it; caddy does so, after
    /// answering, when its answer is out before the request's end came in). Its [`Seen`]
    /// requests have no body.
    pub async fn start_answering_early(
        routes: Routes,
        config: Arc<rustls::ServerConfig>,
    ) -> H3Server {
        let addr = "127.0.0.1:0".parse().expect("static address");
        H3Server::bind(addr, routes, config, true).expect("bind a loopback UDP port")
    }

    pub fn start_on(
        addr: SocketAddr,
        routes: Routes,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<H3Server> {
        H3Server::bind(addr, routes, config, false)
    }

    fn bind(
        addr: SocketAddr,
        routes: Routes,
        config: Arc<rustls::ServerConfig>,
        early: bool,
    ) -> std::io::Result<H3Server> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(server, addr)?;
        let addr = endpoint.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (seen.clone(), accepted.clone());
        let task = AbortOnDrop(tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Some(incoming) = endpoint.accept().await {
                a.fetch_add(1, Ordering::Relaxed);
                conns.spawn(serve(incoming, routes.clone(), s.clone(), early));
                while conns.try_join_next().is_some() {}
            }
        }));
        Ok(H3Server {
            addr,
            seen,
            accepted,
            _task: task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:port/path`: the same port number is not open for TCP.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// QUIC connections attempted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// One QUIC connection: its requests, each in its own task. `early`: see
/// [`H3Server::start_answering_early`].
async fn serve(
    incoming: quinn::Incoming,
    routes: Routes,
    seen: Arc<Mutex<Vec<Seen>>>,
    early: bool,
) {
    let Ok(conn) = incoming.await else {
        return;
    };
    let peer = conn.remote_address();
    let Ok(mut h3) = h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn)).await
    else {
        return;
    };
    let mut requests = JoinSet::new();
    while let Ok(Some(resolver)) = h3.accept().await {
        let (routes, seen) = (routes.clone(), seen.clone());
        requests.spawn(async move {
            let Ok((req, mut stream)) = resolver.resolve_request().await else {
                return;
            };
            let body = match early {
                true => {
                    stream.stop_sending(h3::error::Code::H3_NO_ERROR);
                    Bytes::new()
                }
                false => read_body(&mut stream).await,
            };
            let s = seen_of(&req, body, peer);
            remember(&seen, s.clone());
            let reply = routes.reply(&s);
            let response = reply.into_response(&s);
            let (parts, full) = response.into_parts();
            let data = full
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            if stream
                .send_response(http::Response::from_parts(parts, ()))
                .await
                .is_err()
            {
                return;
            }
            if !data.is_empty() && stream.send_data(data).await.is_err() {
                return;
            }
            let _ = stream.finish().await;
        });
        while requests.try_join_next().is_some() {}
    }
    // Let the last responses drain before the connection is dropped.
    while requests.join_next().await.is_some() {}
}

/// The request's body, up to [`MAX_REQUEST_BODY`] kept.
async fn read_body<S: h3::quic::RecvStream>(
    stream: &mut h3::server::RequestStream<S, Bytes>,
) -> Bytes {
    let mut body = BytesMut::new();
    while let Ok(Some(mut chunk)) = stream.recv_data().await {
        let n = chunk
            .remaining()
            .min(MAX_REQUEST_BODY.saturating_sub(body.len()));
        body.extend_from_slice(&chunk.copy_to_bytes(n));
    }
    body.freeze()
}

fn seen_of(req: &http::Request<()>, body: Bytes, peer: SocketAddr) -> Seen {
    let mut headers = Vec::new();
    if let Some(a) = req.uri().authority() {
        headers.push(("host".to_string(), a.to_string()));
    }
    for (n, v) in req.headers() {
        headers.push((
            n.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        ));
    }
    Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        path: req.uri().path().to_string(),
        version: "HTTP/3.0".to_string(),
        headers,
        body,
        peer,
    }
}
