//! HTTP probe: one request (plus redirects) over hyper, on a connection we dial ourselves so each
//! phase — resolve, connect, tls, processing (request sent → first response byte), transfer
//! (first byte → end of body) — is timed separately, and the whole presented TLS chain is seen.
//!
//! Why not a pooled client: a pool hides the dial (a warm connection has no resolve, connect or
//! TLS phase) and hides the chain. Every hop of a redirect chain therefore gets a fresh
//! connection, as a first-time visitor would, and its phases are added to the totals (as
//! blackbox_exporter does).
//!
//! The pieces: [`conn`] dials (direct, through a forward proxy, or through a `CONNECT` tunnel)
//! and speaks HTTP/1.1 or HTTP/2 as ALPN decides; [`prepare`] builds each hop's headers
//! (defaults, credentials, redirect rules, redaction); [`body`] reads the body under the size
//! limits; [`checks`] evaluates blackbox's success criteria.

mod body;
mod checks;
mod close_whole;
mod conn;
mod h3;
mod h3_suite;
mod header_list;
mod prepare;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, StatusCode};
use regex::Regex;
use tokio::time::Instant;
use url::Url;

use crate::policy::Policy;
use crate::resolve::{ResolveOptions, Resolver};
use crate::tls::{TlsClient, TlsFacts};
use crate::{with_deadline, Dur, Failure, FailureReason, Outcome, Phase, Recorder};
pub use header_list::{HeaderList, SecretHeaders};

pub use body::REGEX_BODY_CAP;
pub use h3::ALPN_H3;

/// The `User-Agent` sent when the request does not set one.
pub const USER_AGENT: &str = concat!("sonde/", env!("CARGO_PKG_VERSION"));

/// What a reported secret header value reads as.
pub const REDACTED: &str = "<redacted>";

/// Whether a header's value is a credential and must never be reported (in facts, events,
/// traces or `/config`): `Authorization`, `Cookie`, `Set-Cookie`, and any name that speaks of a
/// token, key, secret, password, session, signature or credential (`X-Api-Key`,
/// `X-Auth-Token`…). `WWW-Authenticate`-style challenges stay visible: they help explain a 401.
pub fn is_secret_header(name: &str) -> bool {
    // Every header of every probe passes here (twice for a response's): one pass over the name,
    // looking for a word only where its first letter is, compared in place without case.
    let b = name.as_bytes();
    let at = |i: usize, word: &[u8]| {
        b.get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    let mut secret = false;
    for (i, c) in b.iter().enumerate() {
        let words: &[&[u8]] = match c.to_ascii_lowercase() {
            b'a' if at(i, b"authenticate") => return false,
            b'a' => &[b"auth"],
            b'c' => &[b"cookie", b"credential"],
            b't' => &[b"token"],
            b'k' => &[b"key"],
            b's' => &[b"secret", b"session", b"signature"],
            b'p' => &[b"password", b"passwd"],
            _ => continue,
        };
        secret |= words.iter().any(|w| at(i, w));
    }
    secret
}

/// The ALPN list to build an HTTP [`TlsClient`] with: HTTP/2 when the server offers it.
pub const ALPN_H2_HTTP11: &[&[u8]] = &[b"h2", b"http/1.1"];

/// ALPN for a client that must stay on HTTP/1.1.
pub const ALPN_HTTP11: &[&[u8]] = &[b"http/1.1"];

/// Credentials sent in the `Authorization` header. Never shown in events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    Basic { username: String, password: String },
    Bearer(String),
}

/// An inclusive range of accepted status codes; `200` is `200..=200`, `2xx` is `200..=299`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatusRange {
    pub lo: u16,
    pub hi: u16,
}

/// A regex over one response header's values (blackbox `fail_if_header_(not_)matches`).
#[derive(Clone, Debug)]
pub struct HeaderCheck {
    pub name: HeaderName,
    pub regex: Regex,
    /// true: fail when a value matches; false: fail when no value matches.
    pub fail_if_matches: bool,
    /// A missing header passes (true) or fails (false).
    pub allow_missing: bool,
}

/// A judgement of the whole response body that the probe does not know the language of
/// (blackbox's CEL matchers over the body as JSON live in the caller's configuration).
pub trait BodyCheck: Send + Sync + std::fmt::Debug {
    /// `Ok` passes; `Err` is why the body fails (said in full: what was expected, what came).
    fn check(&self, body: &[u8]) -> Result<(), String>;
}

/// blackbox's success criteria for an HTTP probe.
#[derive(Clone, Debug, Default)]
pub struct HttpChecks {
    /// Empty means 2xx.
    pub valid_status_codes: Vec<StatusRange>,
    /// Empty means any. Values as "HTTP/1.1", "HTTP/2.0".
    pub valid_http_versions: Vec<String>,
    pub fail_if_ssl: bool,
    pub fail_if_not_ssl: bool,
    pub fail_if_body_matches: Vec<Regex>,
    pub fail_if_body_not_matches: Vec<Regex>,
    pub headers: Vec<HeaderCheck>,
    /// Run after the body regexes on the whole (decoded) body, up to [`REGEX_BODY_CAP`]; a
    /// failure sets [`HttpFacts::failed_due_to_body_check`].
    pub body_checks: Vec<std::sync::Arc<dyn BodyCheck>>,
    /// blackbox's `compression`: the body is expected in this content coding and is decoded
    /// before the body regexes, `body_size_limit` and the decoded length
    /// ([`HttpFacts::decoded_bytes`]) see it; a body that does not decode fails (reason `body`).
    /// The caller sends the matching `Accept-Encoding`.
    pub decompress: Option<ContentCoding>,
}

/// A content coding the probe can decode (blackbox's `compression` values).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ContentCoding {
    Gzip,
    /// Raw DEFLATE (RFC 1951), as Go's `compress/flate` that blackbox uses reads it.
    Deflate,
    Br,
}

impl ContentCoding {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentCoding::Gzip => "gzip",
            ContentCoding::Deflate => "deflate",
            ContentCoding::Br => "br",
        }
    }
}

/// Everything the HTTP probe needs; built once at configuration load.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub url: Url,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub auth: Option<Auth>,
    pub follow_redirects: bool,
    /// Redirects followed at most (Go's default, and blackbox's, is 10).
    pub max_redirects: u32,
    /// Fail with reason `body` once the body exceeds this many bytes.
    pub body_size_limit: Option<u64>,
    /// How many bytes of the final body to keep in [`HttpFacts::body`] for the caller.
    pub keep_body: usize,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    /// Used for https:// URLs (including redirect targets). Its ALPN list decides HTTP/2.
    pub tls: TlsClient,
    /// `http://` proxy: plain requests go to it in absolute form, `https://` ones through CONNECT.
    pub proxy: Option<Url>,
    /// Sent with the `CONNECT` that opens a tunnel through [`HttpRequest::proxy`] (https
    /// targets only); mark secret values sensitive.
    pub proxy_connect_headers: HeaderMap,
    pub checks: HttpChecks,
    /// Asked before every connection of every hop, redirects included (see [`crate::policy`]).
    /// Through a proxy it is asked about the addresses the hop's host resolves to here, before
    /// the request goes to the proxy.
    pub policy: Option<Policy>,
    /// Speak HTTP/3 over QUIC to every hop (each must be https://; no proxy). Otherwise
    /// HTTP/1.1 or HTTP/2 over TCP, as ALPN decides.
    pub http3: bool,
}

/// One request/response exchange of a redirect chain.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Hop {
    pub url: String,
    pub remote_addr: Option<std::net::SocketAddr>,
    pub status: Option<u16>,
}

/// What the HTTP probe learnt.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HttpFacts {
    pub status: Option<u16>,
    /// "HTTP/1.1", "HTTP/2.0".
    pub version: Option<String>,
    /// Request headers as sent on the last hop, credentials redacted.
    pub request_headers: HeaderList,
    /// Response headers of the last hop.
    pub headers: HeaderList,
    /// The real values of the response headers shown as redacted in `headers` (`Set-Cookie`,
    /// tokens…), for a scenario's cookie jar and captures; never serialized.
    #[serde(skip)]
    pub secret_headers: SecretHeaders,
    /// The declared Content-Length of the last response, if any.
    pub content_length: Option<u64>,
    /// Body bytes received on the last hop.
    pub body_bytes: u64,
    /// With [`HttpChecks::decompress`]: the body's length once decoded.
    pub decoded_bytes: Option<u64>,
    /// The first `keep_body` bytes of the last body.
    #[serde(skip)]
    pub body: Bytes,
    pub redirects: u32,
    pub final_url: String,
    /// Whether the last hop was over TLS.
    pub is_tls: bool,
    pub tls: Option<TlsFacts>,
    /// Failed because of a body or header regex (blackbox `probe_failed_due_to_regex`).
    pub failed_due_to_regex: bool,
    /// Failed because of a [`BodyCheck`] (blackbox `probe_failed_due_to_cel`).
    pub failed_due_to_body_check: bool,
    pub hops: Vec<Hop>,
}

impl StatusRange {
    /// One status code.
    pub fn single(code: u16) -> Self {
        StatusRange { lo: code, hi: code }
    }

    /// A whole class: `class(2)` is 2xx.
    pub fn class(first_digit: u16) -> Self {
        StatusRange {
            lo: first_digit * 100,
            hi: first_digit * 100 + 99,
        }
    }

    pub fn contains(&self, code: u16) -> bool {
        (self.lo..=self.hi).contains(&code)
    }
}

/// "200", "2xx", "200-204": how ranges read in failure messages.
impl std::fmt::Display for StatusRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else if self.lo % 100 == 0 && self.hi == self.lo + 99 {
            write!(f, "{}xx", self.lo / 100)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl HttpRequest {
    /// A GET of `url` with blackbox's defaults: redirects followed (at most 10), no body limit,
    /// no checks beyond 2xx, nothing of the body kept.
    pub fn get(url: Url, resolver: Resolver, tls: TlsClient) -> Self {
        HttpRequest {
            url,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            auth: None,
            follow_redirects: true,
            max_redirects: 10,
            body_size_limit: None,
            keep_body: 0,
            resolver,
            ip: ResolveOptions::default(),
            tls,
            proxy: None,
            proxy_connect_headers: HeaderMap::new(),
            checks: HttpChecks::default(),
            policy: None,
            http3: false,
        }
    }
}

pub type HttpOutcome = Outcome<HttpFacts>;

/// The phase in flight, so a timeout still reports how long it had been running (a server that
/// never answers shows a `processing` phase as long as the deadline allowed, not zero).
#[derive(Default)]
struct InFlight(Option<(Phase, Instant)>);

impl InFlight {
    fn begin(&mut self, phase: Phase) -> Instant {
        let now = Instant::now();
        self.0 = Some((phase, now));
        now
    }

    /// The phase ended: either its owner recorded it, or it is recorded now from `since`.
    fn end(&mut self, rec: &mut Recorder, record: bool) {
        if let (Some((phase, since)), true) = (self.0.take(), record) {
            rec.timings.add_since(phase, since);
        }
    }
}

/// Connections kept between the http steps of one scenario run, so a multi-step flow talks to
/// its API the way a client does (one connection, not one per step). A reused connection has
/// no resolve, connect or tls phase; its remote address and TLS facts are the first dial's.
/// Redirect hops and proxied requests always dial anew. At most [`ConnPool::MAX`] origins.
#[derive(Default)]
pub struct ConnPool {
    kept: Vec<Kept>,
}

struct Kept {
    origin: String,
    conn: conn::Connection,
    tls: Option<TlsFacts>,
    remote_addr: Option<std::net::SocketAddr>,
}

impl ConnPool {
    pub const MAX: usize = 4;

    /// Connections kept now.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    fn take(&mut self, origin: &str) -> Option<Kept> {
        let i = self.kept.iter().position(|k| k.origin == origin)?;
        let k = self.kept.swap_remove(i);
        (!k.conn.is_closed()).then_some(k)
    }

    fn put(&mut self, k: Kept) {
        self.kept.retain(|o| o.origin != k.origin);
        if self.kept.len() >= Self::MAX {
            self.kept.remove(0);
        }
        self.kept.push(k);
    }
}

fn origin_key(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// Run the probe under `deadline`.
pub async fn probe(req: &HttpRequest, deadline: Instant) -> HttpOutcome {
    probe_inner(req, deadline, None).await
}

/// Like [`probe`], reusing (and leaving) a kept-alive connection in `pool`.
pub async fn probe_pooled(
    req: &HttpRequest,
    deadline: Instant,
    pool: &mut ConnPool,
) -> HttpOutcome {
    probe_inner(req, deadline, Some(pool)).await
}

async fn probe_inner(
    req: &HttpRequest,
    deadline: Instant,
    mut pool: Option<&mut ConnPool>,
) -> HttpOutcome {
    let mut rec = Recorder::new();
    let mut facts = HttpFacts {
        final_url: prepare::url_for_facts(&req.url),
        ..HttpFacts::default()
    };
    let mut in_flight = InFlight::default();
    let res = with_deadline(&mut rec, deadline, async |rec: &mut Recorder| {
        run(req, rec, &mut facts, &mut in_flight, pool.as_deref_mut()).await
    })
    .await;
    if res.is_err() {
        // Only a timeout leaves a phase in flight: every other path ends its phase first.
        in_flight.end(&mut rec, true);
    }
    rec.finish(res.err(), facts)
}

/// Where the redirect loop stands: the next hop's target and what it carries.
struct NextHop {
    url: Url,
    method: Method,
    body: Bytes,
    /// A 301/302/303 dropped the body: the next hop also drops its `Content-Type`.
    body_dropped: bool,
    /// Reuse only for the first hop of a direct request; a kept connection that fails before
    /// answering is dropped and the hop dialed anew (the server may have closed it idle).
    may_reuse: bool,
}

/// The redirect loop: one hop per iteration until a final response.
async fn run(
    req: &HttpRequest,
    rec: &mut Recorder,
    facts: &mut HttpFacts,
    in_flight: &mut InFlight,
    mut pool: Option<&mut ConnPool>,
) -> Result<(), Failure> {
    let mut hop = NextHop {
        url: req.url.clone(),
        may_reuse: req.proxy.is_none() && pool.is_some(),
        method: req.method.clone(),
        body: req.body.clone(),
        body_dropped: false,
    };
    loop {
        start_hop(facts, &hop.url);
        let prepared = prepare::prepare(req, &hop.url, &hop.method, &hop.body, hop.body_dropped)?;
        let origin = origin_key(&hop.url);
        let kept = if hop.may_reuse {
            pool.as_deref_mut().and_then(|p| p.take(&origin))
        } else {
            None
        };
        let reused = kept.is_some();
        let (mut connection, started) = match kept {
            Some(k) => reuse(k, &origin, rec, facts, in_flight),
            None => dial_hop(req, &hop.url, &prepared.tls_name, rec, facts, in_flight).await?,
        };
        let keep_alive = pool.is_some() && req.proxy.is_none();
        let request =
            prepared.into_request(&hop.url, &hop.method, &hop.body, &connection, keep_alive)?;
        facts.request_headers = prepare::redacted(&request);
        rec.event(format!(
            "{} {} {} sent",
            hop.method,
            prepare::path_for_log(&hop.url),
            connection.version_str()
        ));
        let response = match await_head(&mut connection, request, started, rec, in_flight).await {
            Err(f) if reused => {
                rec.event(format!(
                    "the kept connection failed ({}); dialing anew",
                    f.message
                ));
                hop.may_reuse = false;
                continue;
            }
            r => r?,
        };
        hop.may_reuse = false;
        record_head(&response, started, rec, facts);
        if req.follow_redirects && hop.follow(req, &response, rec, facts)? {
            // Dropping the response and the connection closes it: the next hop dials anew.
            continue;
        }
        let kept = Kept {
            origin,
            conn: connection,
            tls: None,
            remote_addr: None,
        };
        return finish(
            req,
            response,
            kept,
            pool.as_deref_mut(),
            rec,
            facts,
            in_flight,
        )
        .await;
    }
}

/// Facts describe the last hop: a hop that fails must not show its predecessor's status, so
/// each hop starts from blank facts that keep only the chain so far.
fn start_hop(facts: &mut HttpFacts, url: &Url) {
    *facts = HttpFacts {
        redirects: facts.redirects,
        hops: std::mem::take(&mut facts.hops),
        final_url: prepare::url_for_facts(url),
        ..HttpFacts::default()
    };
    facts.hops.push(Hop {
        url: facts.final_url.clone(),
        remote_addr: None,
        status: None,
    });
}

/// Take over a kept-alive connection: its TLS facts and peer are those of the original dial,
/// and there is no resolve, connect or TLS phase — processing starts at once.
fn reuse(
    k: Kept,
    origin: &str,
    rec: &mut Recorder,
    facts: &mut HttpFacts,
    in_flight: &mut InFlight,
) -> (conn::Connection, Instant) {
    rec.remote_addr = k.remote_addr;
    if let Some(hop) = facts.hops.last_mut() {
        hop.remote_addr = k.remote_addr;
    }
    facts.is_tls = k.tls.is_some();
    facts.tls = k.tls;
    rec.event(format!("reusing the connection to {origin}"));
    let started = in_flight.begin(Phase::Processing);
    rec.doing("sending the request");
    (k.conn, started)
}

/// Dial the hop's origin and speak HTTP over it. The hop records its peer even when the dial
/// fails after connecting (a TLS failure names the address it happened on).
async fn dial_hop(
    req: &HttpRequest,
    url: &Url,
    tls_name: &str,
    rec: &mut Recorder,
    facts: &mut HttpFacts,
    in_flight: &mut InFlight,
) -> Result<(conn::Connection, Instant), Failure> {
    if req.http3 {
        let dialed = h3::dial(req, url, tls_name, rec, in_flight).await;
        if let Some(hop) = facts.hops.last_mut() {
            hop.remote_addr = rec.remote_addr;
        }
        let (sender, driver, tls) = dialed?;
        facts.is_tls = true;
        facts.tls = Some(tls);
        let started = in_flight.begin(Phase::Processing);
        rec.doing("sending the request");
        return Ok((conn::Connection::h3(sender, driver), started));
    }
    let dialed = conn::dial(req, url, tls_name, rec, in_flight).await;
    if let Some(hop) = facts.hops.last_mut() {
        hop.remote_addr = rec.remote_addr;
    }
    let dialed = dialed?;
    facts.is_tls = dialed.tls.is_some();
    facts.tls = dialed.tls.clone();
    // processing: from here (HTTP/2 preface included) to the response head.
    let started = in_flight.begin(Phase::Processing);
    rec.doing("sending the request");
    Ok((conn::handshake(dialed).await?, started))
}

/// Send and wait for the response head, timing processing both in user space and (where the
/// kernel timestamps bytes) on the wire. The phase is recorded even when no head comes, and
/// the failure is returned unjudged: the caller decides whether a kept connection is retried.
async fn await_head(
    connection: &mut conn::Connection,
    request: http::Request<http_body_util::Full<Bytes>>,
    started: Instant,
    rec: &mut Recorder,
    in_flight: &mut InFlight,
) -> Result<http::Response<conn::ResponseBody>, Failure> {
    rec.doing("waiting for the response head");
    connection.kernel_ttfb().arm();
    let response = connection.send(request).await;
    in_flight.end(rec, false);
    let user = started.elapsed();
    let kernel = connection.kernel_ttfb().take();
    rec.timings
        .add_measured(Phase::Processing, user, kernel.as_ref().ok().copied());
    rec.event(format!(
        "response head: processing {}",
        crate::kts::describe(user, &kernel)
    ));
    response
}

/// Record the response head in the facts (secret header values kept apart, redacted in the
/// reported headers) and in the event log.
fn record_head<B>(
    response: &http::Response<B>,
    started: Instant,
    rec: &mut Recorder,
    facts: &mut HttpFacts,
) {
    let status = response.status();
    let version = conn::version_str(response.version());
    facts.status = Some(status.as_u16());
    facts.version = Some(version.to_string());
    // One pass: each header is either kept apart (secret, its value redacted in the report) or
    // reported as it came.
    let mut secret = HeaderList::default();
    let mut headers = HeaderList::sized_for(response.headers(), 0);
    for (n, v) in response.headers() {
        let value = String::from_utf8_lossy(v.as_bytes());
        if is_secret_header(n.as_str()) {
            headers.push(n.as_str(), REDACTED);
            secret.push(n.as_str(), &value);
        } else {
            headers.push(n.as_str(), &value);
        }
    }
    facts.secret_headers = SecretHeaders(secret);
    facts.headers = headers;
    facts.content_length = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    if let Some(hop) = facts.hops.last_mut() {
        hop.status = Some(status.as_u16());
    }
    rec.event(format!(
        "{} received ({version}) after {}",
        status_text(status),
        Dur(started.elapsed())
    ));
}

impl NextHop {
    /// If `response` is a redirect to follow, aim at its target and say so (`true`); a
    /// redirect past `max_redirects` fails the probe.
    fn follow<B>(
        &mut self,
        req: &HttpRequest,
        response: &http::Response<B>,
        rec: &mut Recorder,
        facts: &mut HttpFacts,
    ) -> Result<bool, Failure> {
        let status = response.status();
        let Some(location) = redirect_location(status, response.headers()) else {
            return Ok(false);
        };
        if facts.redirects >= req.max_redirects {
            return Err(Failure::new(
                FailureReason::Protocol,
                format!("stopped after {} redirects", facts.redirects),
            ));
        }
        let next = next_url(&self.url, location)?;
        facts.redirects += 1;
        if matches!(status.as_u16(), 301..=303) {
            // What browsers (and Go, and so blackbox) do: 301/302/303 turn a POST (or any
            // method but HEAD) into a GET without body — and, unlike Go, without the
            // body's Content-Type; 307/308 keep method and body.
            if self.method != Method::HEAD {
                self.method = Method::GET;
            }
            self.body = Bytes::new();
            self.body_dropped = true;
        }
        rec.event(format!(
            "following {} redirect to {}",
            status.as_u16(),
            prepare::clip_plain(&prepare::url_for_log(&next))
        ));
        self.url = next;
        Ok(true)
    }
}

/// The final response: read the body, then judge. `conn` (its `tls` and `remote_addr` are
/// filled here) is kept, with its driver, until the body is read; then, pooled, for the run's
/// next request to this origin.
async fn finish(
    req: &HttpRequest,
    response: http::Response<conn::ResponseBody>,
    mut conn: Kept,
    pool: Option<&mut ConnPool>,
    rec: &mut Recorder,
    facts: &mut HttpFacts,
    in_flight: &mut InFlight,
) -> Result<(), Failure> {
    let started = in_flight.begin(Phase::Transfer);
    rec.doing("reading the response body");
    let plan = body::Plan::for_request(req);
    let read = body::read(
        response.into_body(),
        &plan,
        &mut facts.body_bytes,
        &mut facts.decoded_bytes,
    )
    .await;
    in_flight.end(rec, true);
    rec.event(format!(
        "{} body byte(s) read in {}",
        facts.body_bytes,
        Dur(started.elapsed())
    ));
    match pool {
        Some(p) if read.is_ok() && req.proxy.is_none() && !conn.conn.is_closed() => {
            conn.tls = facts.tls.clone();
            conn.remote_addr = rec.remote_addr;
            p.put(conn);
        }
        _ => drop(conn),
    }
    let read = match read {
        Ok(r) => {
            facts.body = r.kept(req.keep_body);
            Ok(r)
        }
        Err(f) => Err(f),
    };
    checks::evaluate(&req.checks, facts, read)
}

/// "200 OK", or just "599" for codes without a standard reason.
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// A 3xx that should be followed: 301, 302, 303, 307, 308 with a non-empty Location. Other 3xx
/// (and a redirect without Location, which happens in the wild) are final responses, as in Go.
fn redirect_location(status: StatusCode, headers: &HeaderMap) -> Option<&http::HeaderValue> {
    if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    headers
        .get(http::header::LOCATION)
        .filter(|v| !v.as_bytes().iter().all(|b| b.is_ascii_whitespace()))
}

/// Resolve a Location against the current URL; only http(s) targets are followed.
fn next_url(current: &Url, location: &http::HeaderValue) -> Result<Url, Failure> {
    // Location should be ASCII, but raw UTF-8 is common; `Url::join` percent-encodes it.
    let text = std::str::from_utf8(location.as_bytes()).map_err(|_| {
        Failure::new(
            FailureReason::Protocol,
            format!(
                "bad Location header {}: not UTF-8",
                prepare::clip(&String::from_utf8_lossy(location.as_bytes()))
            ),
        )
    })?;
    let next = current.join(text.trim()).map_err(|e| {
        Failure::new(
            FailureReason::Protocol,
            format!("bad Location header {}: {e}", prepare::clip(text)),
        )
    })?;
    if !matches!(next.scheme(), "http" | "https") || next.host_str().is_none() {
        return Err(Failure::new(
            FailureReason::Protocol,
            format!(
                "redirect to {} cannot be followed: only http and https URLs with a host",
                prepare::clip_plain(&prepare::url_for_log(&next))
            ),
        ));
    }
    Ok(next)
}
