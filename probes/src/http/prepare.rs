//! Each hop's request: default headers (`Host`, `User-Agent`, `Content-Length`), credentials and
//! the rules for keeping them across redirects, the request target in the form the connection
//! needs, and the redacted copy reported in the facts.

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::Full;
use url::Url;

use super::conn::{Connection, Target};
use super::{Auth, HttpRequest, REDACTED, USER_AGENT};
use crate::{Failure, FailureReason};

/// One hop's headers and names, before the connection decides the request form.
pub(super) struct Prepared {
    headers: HeaderMap,
    /// `host[:port]` for `Host` (HTTP/1.1) or `:authority` (HTTP/2).
    authority: String,
    /// The name TLS sends as SNI and verifies, unless the TLS client overrides it.
    pub tls_name: String,
}

/// Build the headers of the hop to `url`.
///
/// Credentials (the request's [`Auth`], and `Authorization`/`Cookie` headers it sets) go only to
/// the original host and its subdomains, as Go's client does: following a redirect to another
/// site must not hand it the probe's token. A `Host` override applies only while the hop stays on
/// the original host and port. With a `Host` override, TLS uses that name (as blackbox does), so
/// probing a virtual host by IP works without `server_name`.
pub(super) fn prepare(
    req: &HttpRequest,
    url: &Url,
    method: &Method,
    body: &Bytes,
    body_dropped: bool,
) -> Result<Prepared, Failure> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::new(
            FailureReason::Protocol,
            format!(
                "unsupported URL scheme {:?}: only http and https",
                url.scheme()
            ),
        ));
    }
    let host = url.host_str().ok_or_else(|| {
        Failure::new(
            FailureReason::Protocol,
            format!("URL {} has no host", url_for_log(url)),
        )
    })?;
    let url_authority = authority_of(url);
    let creds_ok = credentials_may_follow(&req.url, url);
    let same_origin =
        same_host(&req.url, url) && req.url.port_or_known_default() == url.port_or_known_default();

    let mut headers = req.headers.clone();
    if !creds_ok {
        headers.remove(header::AUTHORIZATION);
        headers.remove(header::COOKIE);
    }
    let host_override = headers
        .remove(header::HOST)
        .filter(|_| same_origin)
        .and_then(|v| v.to_str().ok().map(str::to_string))
        .filter(|v| !v.is_empty());
    if body_dropped {
        for h in [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONTENT_ENCODING,
        ] {
            headers.remove(h);
        }
    }
    if let (Some(auth), true) = (&req.auth, creds_ok) {
        headers.insert(header::AUTHORIZATION, auth_value(auth)?);
    }
    if !headers.contains_key(header::AUTHORIZATION) && creds_ok {
        // `http://user:pass@host/`: Basic credentials from the URL, as Go and curl use them.
        if let Some(v) = userinfo_basic(url) {
            headers.insert(header::AUTHORIZATION, v);
        }
    }
    if !headers.contains_key(header::USER_AGENT) {
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    }
    if !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
    {
        if !body.is_empty() {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        } else if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            // A body-carrying method says so explicitly, as curl and Go do.
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        }
    }
    let tls_name = match &host_override {
        Some(h) => strip_port(h).to_string(),
        None => host.to_string(),
    };
    Ok(Prepared {
        headers,
        authority: host_override.unwrap_or(url_authority),
        tls_name,
    })
}

impl Prepared {
    /// The request in the form `conn` needs: origin-form for HTTP/1.1, absolute-form through a
    /// forward proxy, absolute URI (→ `:scheme`/`:authority`) for HTTP/2.
    pub(super) fn into_request(
        self,
        url: &Url,
        method: &Method,
        body: &Bytes,
        conn: &Connection,
        keep_alive: bool,
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let Prepared {
            mut headers,
            authority,
            ..
        } = self;
        let origin = origin_form(url);
        let (uri, version) = match conn.target() {
            Target::Origin => (origin, http::Version::HTTP_11),
            Target::Absolute => (
                format!("{}://{}{origin}", url.scheme(), authority_of(url)),
                http::Version::HTTP_11,
            ),
            Target::H2 => (
                format!("{}://{authority}{origin}", url.scheme()),
                http::Version::HTTP_2,
            ),
            Target::H3 => (
                format!("{}://{authority}{origin}", url.scheme()),
                http::Version::HTTP_3,
            ),
        };
        let uri: Uri = uri.parse().map_err(|e| {
            Failure::new(
                FailureReason::Protocol,
                format!("cannot send {}: {e}", url_for_log(url)),
            )
        })?;
        if !matches!(conn.target(), Target::H2 | Target::H3) {
            let v = HeaderValue::from_str(&authority).map_err(|_| {
                Failure::new(
                    FailureReason::Protocol,
                    format!("Host {} is not a valid header value", clip(&authority)),
                )
            })?;
            // Host first, where servers and people expect it.
            let mut with_host = HeaderMap::with_capacity(headers.len() + 2);
            with_host.insert(header::HOST, v);
            with_host.extend(headers);
            headers = with_host;
            // Each probe dials a fresh connection and never reuses it, so say so (as blackbox
            // does with Go's DisableKeepAlives): the server closes first, and the TIME_WAIT
            // state lands on its side instead of eating the prober's ephemeral ports at
            // thousands of probes a second. (Pooled requests of a multi-step run keep it.)
            if !keep_alive && !headers.contains_key(header::CONNECTION) {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
        if let Some(p) = conn.proxy_authorization() {
            headers.insert(header::PROXY_AUTHORIZATION, p.clone());
        }
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = headers;
        Ok(request)
    }
}

/// The request's headers as reported: credentials replaced by `<redacted>`; for HTTP/2 the
/// `:authority` pseudo-header stands where HTTP/1.1 has `Host`.
pub(super) fn redacted<B>(request: &Request<B>) -> super::HeaderList {
    let authority = (request.version() == http::Version::HTTP_2)
        .then(|| request.uri().authority())
        .flatten();
    let extra = authority.map_or(0, |a| ":authority".len() + a.as_str().len());
    let mut out = super::HeaderList::sized_for(request.headers(), extra);
    if let Some(a) = authority {
        out.push(":authority", a.as_str());
    }
    for (n, v) in request.headers() {
        if super::is_secret_header(n.as_str()) {
            out.push(n.as_str(), REDACTED);
        } else {
            out.push(n.as_str(), &String::from_utf8_lossy(v.as_bytes()));
        }
    }
    out
}

/// The `Authorization` value, marked sensitive so hyper's HPACK never indexes it.
fn auth_value(auth: &Auth) -> Result<HeaderValue, Failure> {
    let text = match auth {
        Auth::Basic { username, password } => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        ),
        Auth::Bearer(token) => format!("Bearer {token}"),
    };
    let mut v = HeaderValue::from_str(&text).map_err(|_| {
        Failure::new(
            FailureReason::Assertion,
            "the bearer token contains characters not allowed in a header",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// `Proxy-Authorization: Basic …` from the proxy URL's userinfo, if any.
pub(super) fn proxy_authorization(proxy: &Url) -> Option<HeaderValue> {
    userinfo_basic(proxy)
}

/// `Basic base64(user:password)` from a URL's userinfo (percent-decoded), if it has one.
fn userinfo_basic(url: &Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut creds = decode(url.username());
    creds.push(b':');
    creds.extend(decode(url.password().unwrap_or("")));
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    );
    let mut v = HeaderValue::from_str(&value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn same_host(a: &Url, b: &Url) -> bool {
    match (a.host_str(), b.host_str()) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => false,
    }
}

/// The original host itself or one of its subdomains (Go's rule for forwarding sensitive
/// headers on redirect).
fn credentials_may_follow(original: &Url, next: &Url) -> bool {
    if same_host(original, next) {
        return true;
    }
    match (original.host(), next.host()) {
        (Some(url::Host::Domain(o)), Some(url::Host::Domain(n))) => {
            let (o, n) = (o.to_ascii_lowercase(), n.to_ascii_lowercase());
            n.ends_with(&format!(".{o}"))
        }
        _ => false,
    }
}

/// `host[:port]` as it belongs in `Host`: the port only when it is not the scheme's default.
pub(super) fn authority_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// `host:port` for `CONNECT`: the port always.
pub(super) fn connect_authority(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

fn origin_form(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// The name part of a `Host` value: `example.com:8443` → `example.com`, `[::1]:443` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The path for the event log. Query strings often carry API keys, and events end up in logs and
/// traces, so only the fact that there was one is shown.
pub(super) fn path_for_log(url: &Url) -> String {
    match url.query() {
        Some(_) => format!("{}?…", url.path()),
        None => url.path().to_string(),
    }
}

/// A URL for the event log and messages: no userinfo, query elided (see [`path_for_log`]).
pub(super) fn url_for_log(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        authority_of(url),
        path_for_log(url)
    )
}

/// A URL for the facts (`final_url`, hops): complete, query included, but never a password.
pub(super) fn url_for_facts(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    let _ = u.set_password(None);
    u.to_string()
}

/// Peer-influenced text in an event: at most 200 characters.
pub(super) fn clip_plain(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

/// Peer-supplied text in a message: quoted, control characters escaped, at most 120 characters.
pub(super) fn clip(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn secret_headers_are_recognised_by_name() {
        use super::super::is_secret_header;
        for secret in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "Set-Cookie",
            "X-Api-Key",
            "X-Auth-Token",
            "x-amz-security-token",
            "X-Session-Id",
            "X-Hub-Signature-256",
            "X-SECRET-THING",
            "x-PassWord",
        ] {
            assert!(is_secret_header(secret), "{secret} should be secret");
        }
        for plain in [
            "Accept",
            "Content-Type",
            "WWW-Authenticate",
            "PROXY-AUTHENTICATE",
            "Location",
            "Keep-Alive",
        ] {
            assert!(!is_secret_header(plain), "{plain} should be shown");
        }
    }

    /// The one-pass scan says what the plain reading says: lowercase, then look for each word.
    #[test]
    fn secret_header_scan_agrees_with_the_plain_reading() {
        use super::super::is_secret_header;
        let plain = |n: &str| {
            let n = n.to_ascii_lowercase();
            !n.contains("authenticate")
                && [
                    "auth",
                    "cookie",
                    "token",
                    "key",
                    "secret",
                    "password",
                    "passwd",
                    "session",
                    "signature",
                    "credential",
                ]
                .iter()
                .any(|w| n.contains(w))
        };
        let parts = [
            "",
            "x-",
            "Auth",
            "authenticate",
            "AUTHENTICATE",
            "cookie",
            "Credential",
            "tok",
            "token",
            "KEY",
            "ke",
            "secret",
            "sess",
            "Session",
            "signature",
            "passwd",
            "PassWord",
            "-",
            "a",
            "s",
            "p",
            "c",
            "t",
            "k",
            "monkey",
            "Keep-Alive",
            "accept",
        ];
        for a in parts {
            for b in parts {
                for c in ["", "-id", "x", "k", "auth"] {
                    let name = format!("{a}{b}{c}");
                    assert_eq!(is_secret_header(&name), plain(&name), "{name:?}");
                }
            }
        }
    }

    #[test]
    fn ports_are_stripped_from_host_values() {
        assert_eq!(strip_port("example.com:8443"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn credentials_follow_only_the_same_site() {
        let o = u("https://example.com/login");
        assert!(credentials_may_follow(&o, &u("https://example.com:8443/x")));
        assert!(credentials_may_follow(&o, &u("https://api.example.com/x")));
        assert!(!credentials_may_follow(
            &o,
            &u("https://evil-example.com/x")
        ));
        assert!(!credentials_may_follow(&o, &u("https://example.org/x")));
        let ip = u("http://127.0.0.1:8080/");
        assert!(credentials_may_follow(&ip, &u("http://127.0.0.1:9090/")));
        assert!(!credentials_may_follow(&ip, &u("http://127.0.0.2:8080/")));
    }

    #[test]
    fn logs_hide_queries_and_userinfo() {
        let url = u("https://user:secret@example.com:8443/p?api_key=abc");
        let shown = url_for_log(&url);
        assert_eq!(shown, "https://example.com:8443/p?…");
        assert_eq!(path_for_log(&u("http://h/a/b")), "/a/b");
    }

    #[test]
    fn proxy_credentials_are_decoded() {
        let v = proxy_authorization(&u("http://us%40er:p%3Ass@127.0.0.1:3128")).unwrap();
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(v.to_str().unwrap(), format!("Basic {expected}"));
        assert!(proxy_authorization(&u("http://127.0.0.1:3128")).is_none());
    }

    #[test]
    fn facts_never_carry_a_password() {
        assert_eq!(
            url_for_facts(&u("http://user:pw@127.0.0.1:8080/a?b=c")),
            "http://user@127.0.0.1:8080/a?b=c"
        );
        assert_eq!(url_for_facts(&u("http://h/a")), "http://h/a");
    }

    #[test]
    fn clipping_bounds_and_escapes() {
        assert_eq!(clip("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(1000);
        assert!(clip(&long).chars().count() < 130);
    }
}
