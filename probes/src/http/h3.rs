//! HTTP/3: one hop over QUIC (quinn) with h3 framing.
//!
//! Phases: `resolve` as for TCP; then the QUIC handshake, which *is* the TLS 1.3 handshake (QUIC
//! carries TLS in its own frames, there is no separate transport connect), is recorded as the
//! `tls` phase — an HTTP/3 hop has no `connect` phase; `processing` from the request sent to
//! the response head; `transfer` for the body, as over TCP.
//!
//! The resolved addresses are tried in the order `preferred_ip_protocol` gives, Happy-Eyeballs
//! style as for TCP: the next attempt starts when the previous one has not finished its
//! handshake within [`CONNECTION_ATTEMPT_DELAY`] (a UDP port nobody serves does not refuse, it
//! stays silent), and the first handshake done wins. The TLS facts are those of any https hop;
//! the cipher suite, which quinn does not expose, is read off the handshake ([`super::h3_suite`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::error::{Code, StreamError};
use http::{Request, Response};
use url::Url;

use super::conn::{AbortOnDrop, Target};
use super::h3_suite::{SecretLength, SuiteSeen, Watched};
use super::{HttpRequest, InFlight};
use crate::policy;
use crate::resolve::CONNECTION_ATTEMPT_DELAY;
use crate::tls::{fmt_unix, TlsFacts};
use crate::{fmt_duration, Failure, FailureReason, Phase, Recorder};

/// The ALPN token of HTTP/3 (RFC 9114).
pub const ALPN_H3: &[u8] = b"h3";

/// Response header sections larger than this are refused (as [`super::conn`] does for HTTP/2):
/// a hostile server must not make the probe buffer megabytes of headers.
const MAX_FIELD_SECTION: u64 = 64 * 1024;

/// A QUIC connection idle this long is given up (the probe's deadline usually ends it first).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type OpenStreams = h3_quinn::OpenStreams;
type Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// An HTTP/3 client connection: the request sender, and the QUIC connection (to tell whether it
/// is closed). The h3 driver task owns the endpoint (its UDP socket); aborting it on drop closes
/// everything.
pub(super) struct H3Sender {
    send: h3::client::SendRequest<OpenStreams, Bytes>,
    quic: quinn::Connection,
}

/// The response body of an HTTP/3 request: the request stream, read chunk by chunk.
pub(super) struct H3Body(Stream);

impl H3Body {
    /// The next chunk of the body, `None` at its end. Trailers are not read.
    pub(super) async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        match self.0.recv_data().await {
            Ok(Some(mut b)) => Some(Ok(b.copy_to_bytes(b.remaining()))),
            Ok(None) => None,
            Err(e) => Some(Err(e.to_string())),
        }
    }
}

/// Resolve, check the policy, and open QUIC + TLS to the hop's origin; then start h3 on it.
pub(super) async fn dial(
    req: &HttpRequest,
    url: &Url,
    tls_name: &str,
    rec: &mut Recorder,
    in_flight: &mut InFlight,
) -> Result<(H3Sender, AbortOnDrop, TlsFacts), Failure> {
    if url.scheme() != "https" {
        return Err(Failure::new(
            FailureReason::Connect,
            format!(
                "HTTP/3 needs an https:// URL, not {}://",
                url.scheme().chars().take(16).collect::<String>()
            ),
        ));
    }
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(443);
    in_flight.begin(Phase::Resolve);
    let addrs = req.resolver.resolve(host, req.ip, rec).await;
    in_flight.end(rec, false); // the resolver recorded it
    let addrs = addrs?;
    policy::check(req.policy.as_ref(), host, &addrs, port, rec)?;
    if addrs.is_empty() {
        return Err(Failure::new(
            FailureReason::Dns,
            format!("{host} resolved to no address"),
        ));
    }
    let targets: Vec<SocketAddr> = addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    let (config, suite) = client_config(req)?;
    let started = in_flight.begin(Phase::Tls);
    rec.doing("in the QUIC handshake");
    rec.remote_addr = targets.first().copied();
    let res = handshake_any(config, &targets, tls_name, rec).await;
    in_flight.end(rec, true);
    let (endpoint, quic) = res?;
    let addr = quic.remote_address();
    rec.remote_addr = Some(addr);
    let facts = facts(&quic, &suite, tls_name, !req.tls.is_insecure());
    rec.event(format!(
        "QUIC handshake with {addr} done in {}: {}, ALPN {}, {} certificate(s), earliest expiry \
         {}, rtt {}",
        fmt_duration(started.elapsed()),
        facts.version,
        facts.alpn.as_deref().unwrap_or("none"),
        facts.chain.len(),
        facts
            .earliest_not_after()
            .map(fmt_unix)
            .unwrap_or_else(|| "unknown".into()),
        fmt_duration(quic.rtt())
    ));
    let (mut driver, send) = h3::client::builder()
        .max_field_section_size(MAX_FIELD_SECTION)
        .build::<_, _, Bytes>(h3_quinn::Connection::new(quic.clone()))
        .await
        .map_err(|e| {
            Failure::new(
                FailureReason::Protocol,
                format!("HTTP/3 connection setup failed: {e}"),
            )
        })?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        // The endpoint (the UDP socket) lives as long as the connection is driven.
        drop(endpoint);
    }));
    Ok((H3Sender { send, quic }, driver, facts))
}

/// RFC 9114 §4.1.1: a server whose answer needs no more of the request may stop reading it
/// with `H3_NO_ERROR` and answer; the client must still read that answer. caddy does so when its
/// answer is out before the request's end came in (a race on a loaded machine, even for a GET).
fn stopped_with_no_error(e: &StreamError) -> bool {
    matches!(e, StreamError::RemoteTerminate { code, .. } if *code == Code::H3_NO_ERROR)
}

/// The probe's TLS client, made QUIC's: TLS 1.3 only (QUIC has no other), ALPN `h3`; and what
/// its handshake shows of the cipher suite (one config per dial, so per connection).
fn client_config(req: &HttpRequest) -> Result<(quinn::ClientConfig, Arc<SuiteSeen>), Failure> {
    let cannot = |e: String| Failure::new(FailureReason::Tls, format!("cannot speak HTTP/3: {e}"));
    let mut tls = Arc::unwrap_or_clone(req.tls.quic_config(&[ALPN_H3]).map_err(cannot)?);
    let seen = Arc::new(SuiteSeen::default());
    tls.key_log = Arc::new(SecretLength(seen.clone()));
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))
        .map_err(|e| cannot(e.to_string()))?;
    let watched = Watched {
        inner: Arc::new(crypto),
        seen: seen.clone(),
    };
    let mut config = quinn::ClientConfig::new(Arc::new(watched));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        IDLE_TIMEOUT
            .try_into()
            .expect("30 s is a valid idle timeout"),
    ));
    config.transport_config(Arc::new(transport));
    Ok((config, seen))
}

/// Handshake with the first of `targets` that completes, starting the next attempt when the
/// previous one has not finished within [`CONNECTION_ATTEMPT_DELAY`] or has failed.
async fn handshake_any(
    config: quinn::ClientConfig,
    targets: &[SocketAddr],
    tls_name: &str,
    rec: &mut Recorder,
) -> Result<(quinn::Endpoint, quinn::Connection), Failure> {
    let mut attempts = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let mut last_failure: Option<Failure> = None;
    loop {
        if next < targets.len() {
            let (config, addr, name) = (config.clone(), targets[next], tls_name.to_string());
            next += 1;
            attempts.spawn(async move { handshake(config, addr, &name).await });
        }
        let res = if next < targets.len() {
            match tokio::time::timeout(CONNECTION_ATTEMPT_DELAY, attempts.join_next()).await {
                Ok(r) => r,
                Err(_) => continue, // start the next attempt beside this one
            }
        } else {
            attempts.join_next().await
        };
        match res {
            Some(Ok(Ok(done))) => {
                attempts.abort_all();
                return Ok(done);
            }
            Some(Ok(Err(f))) => {
                rec.event(f.message.clone());
                // A TLS failure says more than a transport one: keep it as the verdict.
                if last_failure
                    .as_ref()
                    .is_none_or(|l| l.reason != FailureReason::Tls)
                {
                    last_failure = Some(f);
                }
            }
            Some(Err(join)) => {
                last_failure.get_or_insert(Failure::new(
                    FailureReason::Connect,
                    format!("QUIC handshake task failed: {join}"),
                ));
            }
            None => {
                return Err(last_failure.unwrap_or_else(|| {
                    Failure::new(FailureReason::Connect, "no address to try".to_string())
                }))
            }
        }
    }
}

/// A fresh UDP endpoint of the target's address family, and the QUIC handshake over it.
async fn handshake(
    config: quinn::ClientConfig,
    addr: SocketAddr,
    tls_name: &str,
) -> Result<(quinn::Endpoint, quinn::Connection), Failure> {
    let local = match addr.ip() {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    };
    let endpoint = quinn::Endpoint::client(local).map_err(|e| {
        Failure::new(
            FailureReason::Connect,
            format!("cannot open a UDP socket for QUIC: {e}"),
        )
    })?;
    let name = tls_name.trim_start_matches('[').trim_end_matches(']');
    let connecting = endpoint.connect_with(config, addr, name).map_err(|e| {
        Failure::new(
            FailureReason::Connect,
            format!("cannot start QUIC to {addr}: {e}"),
        )
    })?;
    let quic = connecting.await.map_err(|e| handshake_failure(addr, &e))?;
    Ok((endpoint, quic))
}

/// TLS alerts travel as QUIC CRYPTO_ERROR codes (0x100–0x1ff): those are TLS failures (an
/// untrusted certificate, no common ALPN), the rest are transport failures.
fn handshake_failure(addr: SocketAddr, e: &quinn::ConnectionError) -> Failure {
    let reason = match e {
        quinn::ConnectionError::TransportError(t)
            if (0x100..0x200).contains(&u64::from(t.code)) =>
        {
            FailureReason::Tls
        }
        quinn::ConnectionError::ConnectionClosed(c)
            if (0x100..0x200).contains(&u64::from(c.error_code)) =>
        {
            FailureReason::Tls
        }
        _ => FailureReason::Connect,
    };
    Failure::new(reason, format!("QUIC handshake with {addr} failed: {e}"))
}

/// TLS facts of a QUIC connection: always TLS 1.3; the chain as presented, leaf first.
fn facts(
    quic: &quinn::Connection,
    suite: &SuiteSeen,
    server_name: &str,
    verified: bool,
) -> TlsFacts {
    let chain = quic
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
        .unwrap_or_default();
    let alpn = quic
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .map(|p| String::from_utf8_lossy(&p).into_owned());
    let mut facts =
        TlsFacts::from_quic(chain, alpn, server_name.trim_matches(['[', ']']), verified);
    facts.cipher = suite.suite().map(|s| format!("{s:?}")).unwrap_or_default();
    facts
}

impl H3Sender {
    pub(super) fn is_closed(&self) -> bool {
        self.quic.close_reason().is_some()
    }

    pub(super) fn target() -> Target {
        Target::H3
    }

    /// Send the request (head, then body, then end of stream) and wait for the response head.
    pub(super) async fn send(
        &mut self,
        request: Request<Bytes>,
    ) -> Result<Response<H3Body>, Failure> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Failure::new(FailureReason::Protocol, format!("HTTP/3 {what}: {e}"))
        };
        let (parts, body) = request.into_parts();
        let head = Request::from_parts(parts, ());
        let mut stream = self
            .send
            .send_request(head)
            .await
            .map_err(|e| fail("request not sent", &e))?;
        // Ok(true): the server stopped reading the request and answers anyway.
        let sent = |r: Result<(), StreamError>, what: &str| match r {
            Ok(()) => Ok(false),
            Err(e) if stopped_with_no_error(&e) => Ok(true),
            Err(e) => Err(fail(what, &e)),
        };
        let mut stopped = false;
        if !body.is_empty() {
            stopped = sent(stream.send_data(body).await, "request body not sent")?;
        }
        if !stopped {
            stopped = sent(stream.finish().await, "request not finished")?;
        }
        if stopped {
            // RFC 9000 §3.5: a stopped sender resets its side with the code it was given, so
            // quinn sends nothing more of what it holds while the answer is read.
            stream.stop_stream(Code::H3_NO_ERROR);
        }
        let response = stream
            .recv_response()
            .await
            .map_err(|e| fail("no valid response head", &e))?;
        let (parts, ()) = response.into_parts();
        Ok(Response::from_parts(parts, H3Body(stream)))
    }
}
