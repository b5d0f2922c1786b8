//! gRPC health probe: one `grpc.health.v1.Health/Check` call, as blackbox_exporter's `grpc`
//! prober makes it, over hyper's HTTP/2 client on a connection we dial ourselves — so resolve,
//! connect and TLS are timed separately and the whole presented chain is seen, as in the HTTP
//! probe. No tonic: the two messages have one field each, and hand-encoding them keeps a code
//! generator and a second HTTP/2 stack out of the build.
//!
//! Success is blackbox's rule: the call returns gRPC status OK *and* the response's serving
//! status is `SERVING`. Anything else fails:
//! - a gRPC status other than OK (an unknown service is `NOT_FOUND`, code 5, from grpc-go's
//!   health server): reason `status`;
//! - status OK with `NOT_SERVING`, `UNKNOWN` or `SERVICE_UNKNOWN`: reason `status`;
//! - an answer that is not gRPC (HTTP status other than 200, wrong content type, a truncated or
//!   malformed message, no `grpc-status`): reason `protocol`.
//!
//! [`GrpcFacts::grpc_status`] is the code a grpc-go client would hand to its caller, which is
//! what blackbox puts in `probe_grpc_status_code`: the server's `grpc-status` when there is one,
//! otherwise the code the client library makes up — `UNAVAILABLE` (14) when the connection or
//! the TLS handshake fails, `DEADLINE_EXCEEDED` (4) on timeout, the gRPC-over-HTTP mapping for a
//! non-200 HTTP status, `INTERNAL` (13) for a malformed answer. It stays `None` when the probe
//! never got as far as dialing (name resolution failed), where blackbox leaves the gauge at 0.

use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, TE, USER_AGENT};
use http::{Request, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::resolve::{connect_tcp, ResolveOptions, Resolver};
use crate::tls::{TlsClient, TlsFacts};
use crate::{fmt_duration, with_deadline, Failure, FailureReason, Outcome, Phase, Recorder};

/// The ALPN list to build a gRPC [`TlsClient`] with: gRPC is HTTP/2 only.
pub const ALPN_H2: &[&[u8]] = &[b"h2"];

/// The method every probe calls.
pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// A health answer is a few bytes; anything beyond this is a hostile or confused server, and the
/// probe stops reading instead of buffering it.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// HTTP/2 header blocks larger than this are refused (see the HTTP probe).
const MAX_H2_HEADER_LIST: u32 = 64 * 1024;

/// `grpc-message` is shown in events and failures; it is clipped to this many characters.
const MAX_MESSAGE_CHARS: usize = 256;

/// gRPC status codes the probe itself reports (see the module docs).
pub mod code {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const NOT_FOUND: u32 = 5;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// `HealthCheckResponse.ServingStatus` values.
pub mod serving {
    pub const UNKNOWN: i32 = 0;
    pub const SERVING: i32 = 1;
    pub const NOT_SERVING: i32 = 2;
    pub const SERVICE_UNKNOWN: i32 = 3;
}

/// Everything the gRPC probe needs; built once at configuration load.
#[derive(Clone, Debug)]
pub struct GrpcRequest {
    pub host: String,
    pub port: u16,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    /// Handshake TLS (with `tls_client`, which should offer [`ALPN_H2`]); otherwise HTTP/2 with
    /// prior knowledge in clear text (h2c), as grpc-go's insecure credentials do.
    pub tls: bool,
    pub tls_client: TlsClient,
    /// `HealthCheckRequest.service`; empty asks about the server as a whole.
    pub service: String,
    /// Asked about every resolved address before connecting (see [`crate::policy`]).
    pub policy: Option<crate::policy::Policy>,
}

/// What the gRPC probe learnt.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GrpcFacts {
    pub tls: Option<TlsFacts>,
    /// The call's gRPC status code, as a grpc-go client reports it (see the module docs).
    pub grpc_status: Option<u32>,
    /// `HealthCheckResponse.status`: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN. Only
    /// set when the call returned OK with a response message.
    pub serving_status: Option<i32>,
    /// `grpc-message` as the server sent it (percent-decoded, clipped).
    pub grpc_message: Option<String>,
    /// The HTTP status of the response, when one arrived.
    pub http_status: Option<u16>,
}

pub type GrpcOutcome = Outcome<GrpcFacts>;

/// The name of a serving status, as grpc's generated code prints it (blackbox's
/// `serving_status` label values).
pub fn serving_status_name(status: i32) -> &'static str {
    match status {
        serving::UNKNOWN => "UNKNOWN",
        serving::SERVING => "SERVING",
        serving::NOT_SERVING => "NOT_SERVING",
        serving::SERVICE_UNKNOWN => "SERVICE_UNKNOWN",
        _ => "UNRECOGNIZED",
    }
}

/// The name of a gRPC status code ("NOT_FOUND"), for messages.
pub fn status_code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "unrecognised code",
    }
}

/// The phase started but not yet recorded, so a timeout still reports the time spent in it.
#[derive(Default)]
struct InFlight(Option<(Phase, Instant)>);

impl InFlight {
    fn begin(&mut self, phase: Phase) {
        self.0 = Some((phase, Instant::now()));
    }

    /// The phase ended: either its owner recorded it, or it is recorded now.
    fn end(&mut self, rec: &mut Recorder, record: bool) {
        if let (Some((phase, since)), true) = (self.0.take(), record) {
            rec.timings.add_since(phase, since);
        }
    }
}

/// A spawned HTTP/2 connection driver, stopped when the probe is done (or its deadline drops the
/// future): no connection outlives its probe.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run the probe under `deadline`.
pub async fn probe(req: &GrpcRequest, deadline: Instant) -> GrpcOutcome {
    let mut rec = Recorder::new();
    let mut facts = GrpcFacts::default();
    let mut in_flight = InFlight::default();
    let mut dialing = false;
    let res = with_deadline(&mut rec, deadline, async |rec: &mut Recorder| {
        run(req, deadline, rec, &mut facts, &mut in_flight, &mut dialing).await
    })
    .await;
    if let Err(f) = &res {
        if f.reason == FailureReason::Timeout {
            // Only a timeout leaves a phase in flight: every other path ends its phase first.
            in_flight.end(&mut rec, true);
            if dialing || facts.grpc_status.is_none() {
                facts.grpc_status = Some(code::DEADLINE_EXCEEDED);
            }
        }
    }
    rec.finish(res.err(), facts)
}

async fn run(
    req: &GrpcRequest,
    deadline: Instant,
    rec: &mut Recorder,
    facts: &mut GrpcFacts,
    in_flight: &mut InFlight,
    dialing: &mut bool,
) -> Result<(), Failure> {
    in_flight.begin(Phase::Resolve);
    let addrs = req.resolver.resolve(&req.host, req.ip, rec).await;
    in_flight.end(rec, false); // the resolver recorded it
    let addrs = addrs?;
    *dialing = true;

    // From here on a failure is one grpc-go reports as a status code.
    let unavailable = |facts: &mut GrpcFacts, f: Failure| {
        facts.grpc_status = Some(code::UNAVAILABLE);
        f
    };
    crate::policy::check(req.policy.as_ref(), &req.host, &addrs, req.port, rec)
        .map_err(|f| unavailable(facts, f))?;
    in_flight.begin(Phase::Connect);
    let tcp = connect_tcp(&addrs, req.port, rec).await;
    in_flight.end(rec, false);
    let tcp = tcp.map_err(|f| unavailable(facts, f))?;

    let io: Box<dyn Io> = if req.tls {
        in_flight.begin(Phase::Tls);
        let (tcp, marks) = crate::kts::timestamped(tcp);
        let res = req.tls_client.handshake(tcp, &req.host, rec, &marks).await;
        in_flight.end(rec, false);
        let (stream, tls) = res.map_err(|f| unavailable(facts, f))?;
        if tls.alpn.as_deref() != Some("h2") {
            // grpc-go of blackbox's era speaks HTTP/2 regardless; so do we, and say so.
            rec.event(format!(
                "the server did not choose h2 by ALPN ({}); speaking HTTP/2 anyway",
                tls.alpn.as_deref().unwrap_or("no ALPN")
            ));
        }
        facts.tls = Some(tls);
        Box::new(stream)
    } else {
        Box::new(tcp)
    };

    in_flight.begin(Phase::Processing);
    let res = call(req, deadline, io, rec, facts).await;
    in_flight.end(rec, true);
    res
}

/// Any byte stream HTTP/2 can run over: TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The HTTP/2 exchange: one unary call, the response read to its trailers.
async fn call(
    req: &GrpcRequest,
    deadline: Instant,
    io: Box<dyn Io>,
    rec: &mut Recorder,
    facts: &mut GrpcFacts,
) -> Result<(), Failure> {
    let (mut sender, _driver) = start_h2(io, rec, facts).await?;
    let request = health_check_request(req, deadline, rec)?;
    let response = await_head(&mut sender, request, rec, facts).await?;
    let (parts, body) = response.into_parts();
    // A trailers-only answer (an error without a message) carries grpc-status in the head.
    let head_status = grpc_status_in(&parts.headers);
    check_head(parts.status.as_u16(), head_status, &parts.headers, facts)?;
    let (data, trailers) = if head_status.is_some() {
        (Bytes::new(), parts.headers)
    } else {
        rec.doing("reading the response message");
        read_body(body)
            .await
            .map_err(|m| protocol(facts, code::INTERNAL, m))?
    };
    check_grpc_status(req, &trailers, facts)?;
    check_serving(req, &data, rec, facts)
}

/// A failure grpc-go reports as status `code`: recorded in the facts, as blackbox's
/// `probe_grpc_status_code` shows it.
fn protocol(facts: &mut GrpcFacts, code: u32, msg: String) -> Failure {
    facts.grpc_status = Some(code);
    Failure::new(FailureReason::Protocol, msg)
}

/// Speak HTTP/2 over `io`. The returned driver guard keeps the connection alive for the call
/// and stops it with the probe.
async fn start_h2(
    io: Box<dyn Io>,
    rec: &mut Recorder,
    facts: &mut GrpcFacts,
) -> Result<(http2::SendRequest<Message>, AbortOnDrop), Failure> {
    rec.doing("starting HTTP/2");
    let (sender, connection) = match http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(MAX_H2_HEADER_LIST)
        .handshake::<_, Message>(TokioIo::new(io))
        .await
    {
        Ok(x) => x,
        Err(e) => {
            return Err(protocol(
                facts,
                code::UNAVAILABLE,
                format!("HTTP/2 handshake failed: {}", describe(&e)),
            ))
        }
    };
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    Ok((sender, driver))
}

/// The `Health/Check` request, with a `grpc-timeout` so the server may give up when we will.
fn health_check_request(
    req: &GrpcRequest,
    deadline: Instant,
    rec: &mut Recorder,
) -> Result<Request<Message>, Failure> {
    let scheme = if req.tls { "https" } else { "http" };
    let uri = format!("{scheme}://{}{HEALTH_CHECK_PATH}", authority(req));
    let mut request = Request::new(Message(Some(encode_request(&req.service))));
    *request.method_mut() = http::Method::POST;
    *request.version_mut() = Version::HTTP_2;
    *request.uri_mut() = uri.parse().map_err(|e| {
        Failure::new(
            FailureReason::Connect,
            format!("cannot build a request for {uri:?}: {e}"),
        )
    })?;
    let h = request.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(TE, HeaderValue::from_static("trailers"));
    h.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("sonde/", env!("CARGO_PKG_VERSION"), " grpc")),
    );
    // The server may give up when we will: grpc-timeout in milliseconds, at most 8 digits.
    let left = deadline
        .saturating_duration_since(Instant::now())
        .as_millis();
    if let Ok(v) = HeaderValue::from_str(&format!("{}m", left.clamp(1, 99_999_999))) {
        h.insert("grpc-timeout", v);
    }
    rec.event(format!(
        "calling {HEALTH_CHECK_PATH} (service {:?}) over HTTP/2{}",
        req.service,
        if req.tls { "" } else { " in clear text (h2c)" }
    ));
    Ok(request)
}

/// Send the call and wait for the response head; its HTTP status goes into the facts.
async fn await_head(
    sender: &mut http2::SendRequest<Message>,
    request: Request<Message>,
    rec: &mut Recorder,
    facts: &mut GrpcFacts,
) -> Result<http::Response<hyper::body::Incoming>, Failure> {
    rec.doing("waiting for the response head");
    let sent = Instant::now();
    let ready = sender.ready().await;
    let response = match ready {
        Ok(()) => sender.send_request(request).await,
        Err(e) => Err(e),
    };
    let response = response.map_err(|e| {
        protocol(
            facts,
            code::UNAVAILABLE,
            format!("no response head: {}", describe(&e)),
        )
    })?;
    let status = response.status().as_u16();
    facts.http_status = Some(status);
    rec.event(format!(
        "response head after {}: HTTP/2 {status}",
        fmt_duration(sent.elapsed())
    ));
    Ok(response)
}

/// Is the head a gRPC answer at all: HTTP 200 with an `application/grpc` content type. A
/// non-200 maps to a gRPC status as grpc-go does, unless the head names one.
fn check_head(
    status: u16,
    head_status: Option<u32>,
    headers: &HeaderMap,
    facts: &mut GrpcFacts,
) -> Result<(), Failure> {
    if status != 200 {
        let code = head_status.unwrap_or_else(|| http_status_to_code(status));
        return Err(protocol(
            facts,
            code,
            format!(
                "HTTP status {status}: not a gRPC answer (gRPC status {code} {})",
                status_code_name(code)
            ),
        ));
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/grpc") {
        return Err(protocol(
            facts,
            code::UNKNOWN,
            format!(
                "content-type {:?}: not a gRPC answer (expected application/grpc)",
                clip(content_type)
            ),
        ));
    }
    Ok(())
}

/// The call's own verdict, from the trailers (or a trailers-only head): anything but OK fails,
/// with the server's `grpc-message` quoted.
fn check_grpc_status(
    req: &GrpcRequest,
    trailers: &HeaderMap,
    facts: &mut GrpcFacts,
) -> Result<(), Failure> {
    let Some(grpc_status) = grpc_status_in(trailers) else {
        return Err(protocol(
            facts,
            code::INTERNAL,
            "the server ended the call without a grpc-status".into(),
        ));
    };
    facts.grpc_status = Some(grpc_status);
    facts.grpc_message = trailers
        .get("grpc-message")
        .map(|v| clip(&percent_decode(v.as_bytes())));
    if grpc_status != code::OK {
        let mut msg = format!(
            "gRPC status {grpc_status} {}",
            status_code_name(grpc_status)
        );
        if let Some(m) = facts.grpc_message.as_deref().filter(|m| !m.is_empty()) {
            let _ = write!(msg, ": {m}");
        }
        let _ = write!(msg, " — expected OK (service {:?})", req.service);
        return Err(Failure::new(FailureReason::Status, msg));
    }
    Ok(())
}

/// The health service's verdict: the `HealthCheckResponse` must say SERVING.
fn check_serving(
    req: &GrpcRequest,
    data: &[u8],
    rec: &mut Recorder,
    facts: &mut GrpcFacts,
) -> Result<(), Failure> {
    let message = unframe(data).map_err(|m| protocol(facts, code::INTERNAL, m))?;
    let serving_status = decode_response(message).map_err(|m| {
        protocol(
            facts,
            code::INTERNAL,
            format!("malformed HealthCheckResponse: {m}"),
        )
    })?;
    facts.serving_status = Some(serving_status);
    rec.event(format!(
        "gRPC status 0 OK, serving status {} ({serving_status})",
        serving_status_name(serving_status)
    ));
    if serving_status != serving::SERVING {
        return Err(Failure::new(
            FailureReason::Status,
            format!(
                "serving status {} ({serving_status}) — expected SERVING (service {:?})",
                serving_status_name(serving_status),
                req.service
            ),
        ));
    }
    Ok(())
}

/// `host:port` for `:authority`, IPv6 literals bracketed.
fn authority(req: &GrpcRequest) -> String {
    let host = req.host.as_str();
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", req.port)
    } else {
        format!("{host}:{}", req.port)
    }
}

/// The response's DATA up to [`MAX_RESPONSE_BYTES`], then its trailers.
async fn read_body(mut body: hyper::body::Incoming) -> Result<(Bytes, HeaderMap), String> {
    let mut data = BytesMut::new();
    let mut trailers = HeaderMap::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the response broke off: {}", describe(&e)))?;
        match frame.into_data() {
            Ok(d) => {
                if data.len() + d.len() > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "the response is larger than {MAX_RESPONSE_BYTES} bytes: not a health answer"
                    ));
                }
                data.extend_from_slice(&d);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = t;
                }
            }
        }
    }
    Ok((data.freeze(), trailers))
}

fn grpc_status_in(h: &HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()
}

/// The gRPC code a client derives from a non-200 HTTP status (gRPC's
/// `http-grpc-status-mapping.md`).
fn http_status_to_code(status: u16) -> u32 {
    match status {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// A length-prefixed gRPC message: flag byte, 4-byte big-endian length, protobuf bytes.
fn frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(0);
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.freeze()
}

/// `HealthCheckRequest { string service = 1; }`, framed. An empty service is the empty message,
/// as proto3 leaves default values out.
pub fn encode_request(service: &str) -> Bytes {
    let mut m = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        m.push(0x0a); // field 1, wire type 2 (length-delimited)
        put_varint(&mut m, service.len() as u64);
        m.extend_from_slice(service.as_bytes());
    }
    frame(&m)
}

/// The one message of a unary response, unframed.
fn unframe(data: &[u8]) -> Result<&[u8], String> {
    if data.is_empty() {
        return Err("the server returned OK without a response message".into());
    }
    if data.len() < 5 {
        return Err(format!(
            "truncated gRPC message: {} byte(s) where the 5-byte prefix should be",
            data.len()
        ));
    }
    if data[0] != 0 {
        return Err(format!(
            "compressed response (flag {}) although no compression was offered",
            data[0]
        ));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let rest = &data[5..];
    if rest.len() < len {
        return Err(format!(
            "truncated gRPC message: {} of {len} byte(s)",
            rest.len()
        ));
    }
    if rest.len() > len {
        return Err(format!(
            "{} byte(s) after the response message of a unary call",
            rest.len() - len
        ));
    }
    Ok(rest)
}

/// `HealthCheckResponse { ServingStatus status = 1; }`: the status, 0 when absent; unknown
/// fields are skipped as protobuf requires.
pub fn decode_response(mut m: &[u8]) -> Result<i32, String> {
    let mut status = 0i32;
    while m.has_remaining() {
        let key = get_varint(&mut m)?;
        let (field, wire) = (key >> 3, key & 7);
        match (field, wire) {
            (1, 0) => status = get_varint(&mut m)? as i32,
            (_, 0) => {
                get_varint(&mut m)?;
            }
            (_, 1) => skip(&mut m, 8)?,
            (_, 2) => {
                let len = get_varint(&mut m)?;
                let len = usize::try_from(len).map_err(|_| "length too large".to_string())?;
                skip(&mut m, len)?;
            }
            (_, 5) => skip(&mut m, 4)?,
            _ => {
                return Err(format!(
                    "field {field} has wire type {wire}, not valid here"
                ))
            }
        }
    }
    Ok(status)
}

fn skip(m: &mut &[u8], n: usize) -> Result<(), String> {
    if m.len() < n {
        return Err("a field runs past the end of the message".into());
    }
    m.advance(n);
    Ok(())
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
            return Err("a varint runs past the end of the message".into());
        };
        *m = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("a varint longer than 10 bytes".into())
}

/// `grpc-message` is percent-encoded (gRPC's PROTOCOL-HTTP2.md); undecodable bytes stay as they
/// are.
fn percent_decode(v: &[u8]) -> String {
    percent_encoding::percent_decode(v)
        .decode_utf8_lossy()
        .into_owned()
}

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_MESSAGE_CHARS).collect();
    out.push('…');
    out
}

fn describe(e: &hyper::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    let mut depth = 0;
    while let (Some(s), true) = (source, depth < 4) {
        let text = s.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = s.source();
        depth += 1;
    }
    out
}

/// The request body: one framed message, then the end of the stream.
struct Message(Option<Bytes>);

impl Body for Message {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding() {
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &encode_request("ab")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']
        );
        let long = "x".repeat(200);
        let e = encode_request(&long);
        assert_eq!(&e[..8], &[0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
    }

    #[test]
    fn response_decoding() {
        assert_eq!(decode_response(&[]), Ok(0));
        assert_eq!(decode_response(&[0x08, 1]), Ok(1));
        // An unknown string field before the status is skipped.
        assert_eq!(decode_response(&[0x12, 2, b'h', b'i', 0x08, 2]), Ok(2));
        assert!(decode_response(&[0x08]).is_err());
        assert!(decode_response(&[0x12, 9, b'h']).is_err());
        assert!(decode_response(&[0x0b]).is_err()); // wire type 3 (group) is not accepted
        assert!(decode_response(&[0xff; 11]).is_err());
    }

    #[test]
    fn unframing() {
        assert_eq!(unframe(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(&[0x08, 1][..]));
        assert!(unframe(&[]).is_err());
        assert!(unframe(&[0, 0, 0]).is_err());
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err());
        assert!(unframe(&[0, 0, 0, 0, 3, 0x08, 1]).is_err());
        assert!(unframe(&[0, 0, 0, 0, 1, 0x08, 1]).is_err());
    }

    #[test]
    fn http_status_mapping() {
        assert_eq!(http_status_to_code(404), code::UNIMPLEMENTED);
        assert_eq!(http_status_to_code(503), code::UNAVAILABLE);
        assert_eq!(http_status_to_code(500), code::UNKNOWN);
    }

    #[test]
    fn message_decoding() {
        assert_eq!(percent_decode(b"unknown%20service"), "unknown service");
        assert_eq!(percent_decode(b"%zz"), "%zz");
    }
}
