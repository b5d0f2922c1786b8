//! An `http` module: request, headers, body, content coding, proxies and blackbox's checks.
//! Credentials are read in [`super::http_auth`].

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use sonde_probes::http::{
    BodyCheck, ContentCoding, HeaderCheck, HttpChecks, HttpRequest, StatusRange,
};
use url::Url;

use super::http_auth;
use super::model::HttpModel;
use super::module::{system_resolver, EnvProxy, HttpSpec};
use super::{ip_options, read_file, read_secret, tls_spec};
use crate::config::build::{Alpn, Cx};
use crate::config::locate::{index_path, key_path};
use crate::config::probe_settings::cel::CelCheck;
use crate::config::probe_settings::http::{header_check, HeaderMatcher};
use crate::config::suggest;

pub(super) fn http(m: &HttpModel, path: &str, cx: &mut Cx) -> Option<HttpSpec> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let http3 = http3(m, path, cx);
    let proxy_connect = proxy_connect_headers(m, path, cx);
    let ip = ip_options(
        m.preferred_ip_protocol.as_deref(),
        m.ip_protocol_fallback,
        &p("preferred_ip_protocol"),
        cx,
    );
    let method = method(m.method.as_deref(), &p("method"), cx);
    let mut headers = plain_headers(m, &p("headers"), cx);
    http_headers(m, &p("http_headers"), &mut headers, cx);
    let body = body(m, path, cx);
    let decompress = compression(
        m.compression.as_deref(),
        &p("compression"),
        &mut headers,
        cx,
    );
    let auth = http_auth::credentials(m, path, &mut headers, cx);
    let proxy = match m.proxy_url.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => proxy_url(s, &p("proxy_url"), cx),
    };
    let checks = checks(m, path, decompress, cx);
    let follow_redirects = match m.no_follow_redirects {
        Some(no) => !no,
        None => m.follow_redirects.unwrap_or(true),
    };
    let alpn = Alpn::for_http(m.enable_http2);
    let tls = tls_spec(m.tls_config.as_ref(), &p("tls_config"), alpn, cx);
    if cx.errors.len() > before {
        return None;
    }
    let tls = tls?;
    let placeholder = Url::parse("http://127.0.0.1/").expect("static URL");
    let mut req = HttpRequest::get(placeholder, system_resolver(), tls.client.clone());
    req.method = method?;
    req.headers = headers;
    req.body = body?;
    req.auth = auth;
    req.follow_redirects = follow_redirects;
    req.body_size_limit = m.body_size_limit.map(|b| b.0).filter(|b| *b > 0);
    req.ip = ip;
    req.proxy = proxy;
    req.checks = checks;
    req.http3 = http3;
    req.proxy_connect_headers = proxy_connect;
    let env_proxy = (m.proxy_from_environment == Some(true)).then(|| env_proxy(m, path, cx));
    if cx.errors.len() > before {
        return None;
    }
    let oauth2 = http_auth::oauth2(m, path, cx)?;
    Some(HttpSpec {
        req,
        tls,
        no_proxy: no_proxy_list(m.no_proxy.as_deref().unwrap_or("")),
        env_proxy,
        oauth2,
    })
}

/// `enable_http3` as blackbox 0.28 checks it: HTTP/3 only with `enable_http2: false` (whose
/// default is true) and without HTTP/1.1 or HTTP/2.0 in `valid_http_versions`; `HTTP/3.0` in
/// `valid_http_versions` only with `enable_http3`. sonde also refuses a proxy with HTTP/3
/// (QUIC cannot go through an HTTP proxy; blackbox would silently go direct).
fn http3(m: &HttpModel, path: &str, cx: &mut Cx) -> bool {
    let on = m.enable_http3.unwrap_or(false);
    let versions = m.valid_http_versions.iter().flatten();
    let at = key_path(path, "enable_http3");
    if !on {
        if versions.clone().any(|v| v == "HTTP/3.0") {
            cx.err_value(
                &key_path(path, "valid_http_versions"),
                "HTTP/3 cannot be used as a valid HTTP version when enable_http3 is false — \
                 expected enable_http3: true (with enable_http2: false)",
            );
        }
        return false;
    }
    if versions.clone().any(|v| v == "HTTP/2.0" || v == "HTTP/1.1") {
        cx.err_value(
            &key_path(path, "valid_http_versions"),
            "HTTP/3 and HTTP/2.0/1.1 cannot be used together - only HTTP/3.0 is allowed when \
             enable_http3 is true",
        );
    }
    if m.enable_http2.unwrap_or(true) {
        cx.err_value(
            &at,
            "when enable_http3 is true, enable_http2 must be set to false",
        );
    }
    if m.proxy_url.as_deref().is_some_and(|u| !u.is_empty())
        || m.proxy_from_environment == Some(true)
    {
        cx.err_value(
            &at,
            "HTTP/3 runs over QUIC (UDP), which cannot go through an HTTP proxy — expected \
             enable_http3 or a proxy, not both",
        );
    }
    true
}

/// `proxy_connect_header`: sent with the `CONNECT` of an https target through the proxy. Like
/// prometheus/common, it needs a proxy to go to.
fn proxy_connect_headers(m: &HttpModel, path: &str, cx: &mut Cx) -> HeaderMap {
    let mut out = HeaderMap::new();
    let Some(h) = &m.proxy_connect_header else {
        return out;
    };
    let at = key_path(path, "proxy_connect_header");
    if !h.0.is_empty()
        && m.proxy_url.as_deref().is_none_or(str::is_empty)
        && m.proxy_from_environment != Some(true)
    {
        cx.err_key(
            &at,
            "if proxy_connect_header is configured, proxy_url or proxy_from_environment must \
             also be configured",
        );
    }
    for (name, values) in h.0.iter() {
        let hp = key_path(&at, name);
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            invalid_header_name(name, &hp, cx);
            continue;
        };
        for (i, v) in values.iter().enumerate() {
            match HeaderValue::from_str(&v.0) {
                Ok(mut hv) => {
                    // prometheus/common types these as secrets: never shown.
                    hv.set_sensitive(true);
                    out.append(n.clone(), hv);
                }
                Err(_) => cx.err_value(
                    &index_path(&hp, i),
                    "invalid header value — expected visible ASCII text",
                ),
            }
        }
    }
    out
}

/// The CEL body matchers, compiled (blackbox refuses a module whose expression does not).
fn cel_checks(m: &HttpModel, path: &str, cx: &mut Cx) -> Vec<Arc<dyn BodyCheck>> {
    let mut out = Vec::new();
    for (expr, fail_if_matches, key) in [
        (
            &m.fail_if_body_json_matches_cel,
            true,
            "fail_if_body_json_matches_cel",
        ),
        (
            &m.fail_if_body_json_not_matches_cel,
            false,
            "fail_if_body_json_not_matches_cel",
        ),
    ] {
        let Some(expr) = expr else { continue };
        match CelCheck::compile(expr, fail_if_matches) {
            Ok(c) => out.push(c),
            Err(e) => cx.err_value(&key_path(path, key), e),
        }
    }
    out
}

fn method(m: Option<&str>, at: &str, cx: &mut Cx) -> Option<Method> {
    match m.map(str::trim) {
        None | Some("") => Some(Method::GET),
        Some(s) => match Method::from_bytes(s.as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => {
                cx.err_value(
                    at,
                    format!("invalid HTTP method {s:?} — expected a method like GET or POST"),
                );
                None
            }
        },
    }
}

fn invalid_header_name(name: &str, at: &str, cx: &mut Cx) {
    cx.err_key(
        at,
        format!("invalid header name {name:?} — expected a token like X-Request-Id"),
    );
}

/// `headers`: one value per name, secret-looking headers marked sensitive.
fn plain_headers(m: &HttpModel, hp: &str, cx: &mut Cx) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in m.headers.iter().flat_map(|h| h.0.iter()) {
        let at = key_path(hp, name);
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value.0),
        ) {
            (Ok(n), Ok(mut v)) => {
                if sonde_probes::http::is_secret_header(n.as_str()) {
                    v.set_sensitive(true);
                }
                headers.insert(n, v);
            }
            (Err(_), _) => invalid_header_name(name, &at, cx),
            (_, Err(_)) => cx.err_value(&at, "invalid header value — expected visible ASCII text"),
        }
    }
    headers
}

/// `http_headers`: every value is sent (appended to what `headers` set); secrets and file
/// contents are marked sensitive, so traces show them redacted.
fn http_headers(m: &HttpModel, hhp: &str, headers: &mut HeaderMap, cx: &mut Cx) {
    for (name, h) in m.http_headers.iter().flat_map(|h| h.0.iter()) {
        let at = key_path(hhp, name);
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            invalid_header_name(name, &at, cx);
            continue;
        };
        let mut values: Vec<(String, bool)> = Vec::new();
        values.extend(h.values.iter().flatten().map(|v| (v.clone(), false)));
        values.extend(h.secrets.iter().flatten().map(|v| (v.clone(), true)));
        for (i, f) in h.files.iter().flatten().enumerate() {
            if let Some(v) = read_secret(cx, f, &index_path(&key_path(&at, "files"), i)) {
                values.push((v, true));
            }
        }
        for (v, secret) in values {
            match HeaderValue::from_str(&v) {
                Ok(mut hv) => {
                    if secret || sonde_probes::http::is_secret_header(n.as_str()) {
                        hv.set_sensitive(true);
                    }
                    headers.append(n.clone(), hv);
                }
                Err(_) => cx.err_value(&at, "invalid header value — expected visible ASCII text"),
            }
        }
    }
}

fn body(m: &HttpModel, path: &str, cx: &mut Cx) -> Option<Bytes> {
    let at = key_path(path, "body_file");
    match (&m.body, &m.body_file) {
        (Some(_), Some(_)) => {
            cx.err_key(
                &at,
                "setting body and body_file both are not allowed — expected one of them",
            );
            None
        }
        (Some(b), None) => Some(Bytes::from(b.clone())),
        (None, Some(f)) => read_file(cx, f, &at).map(Bytes::from),
        (None, None) => Some(Bytes::new()),
    }
}

/// blackbox's `compression`: ask for that coding (in `headers`), and expect (and decode) it.
fn compression(
    c: Option<&str>,
    at: &str,
    headers: &mut HeaderMap,
    cx: &mut Cx,
) -> Option<ContentCoding> {
    let (c, coding) = match c.map(str::trim) {
        None | Some("") => return None,
        Some("identity") => ("identity", None),
        Some("gzip") => ("gzip", Some(ContentCoding::Gzip)),
        Some("br") => ("br", Some(ContentCoding::Br)),
        Some("deflate") => ("deflate", Some(ContentCoding::Deflate)),
        Some(other) => {
            cx.err_value(
                at,
                format!(
                    "invalid compression algorithm `{other}`{}",
                    suggest::hint(other, &["gzip", "br", "deflate", "identity"])
                ),
            );
            return None;
        }
    };
    let accept = headers
        .iter()
        .find(|(n, _)| *n == http::header::ACCEPT_ENCODING)
        .map(|(_, v)| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match accept {
        Some(a) if !a.eq_ignore_ascii_case(c) => cx.err_value(
            at,
            format!(
                "invalid configuration \"Accept-Encoding: {a}\", \"compression: {c}\" — \
                 expected the Accept-Encoding header to match the compression"
            ),
        ),
        _ => {
            headers.insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static(c));
        }
    }
    coding
}

fn proxy_url(s: &str, at: &str, cx: &mut Cx) -> Option<Url> {
    match Url::parse(s) {
        Ok(u) if u.scheme() == "http" && u.host_str().is_some() => Some(u),
        Ok(_) => {
            cx.err_value(
                at,
                "unsupported proxy — expected an http:// proxy URL with a host",
            );
            None
        }
        Err(e) => {
            cx.err_value(
                at,
                format!("invalid proxy_url: {e} — expected a URL like http://proxy:3128"),
            );
            None
        }
    }
}

fn checks(m: &HttpModel, path: &str, decompress: Option<ContentCoding>, cx: &mut Cx) -> HttpChecks {
    let p = |k: &str| key_path(path, k);
    let mut valid_status_codes = Vec::new();
    let sp = p("valid_status_codes");
    for (i, c) in m.valid_status_codes.iter().flatten().enumerate() {
        match u16::try_from(*c) {
            Ok(c) if (100..=999).contains(&c) => valid_status_codes.push(StatusRange::single(c)),
            _ => cx.err_value(
                &index_path(&sp, i),
                format!("invalid status code {c} — expected a number from 100 to 999"),
            ),
        }
    }
    let headers = header_checks(m, path, cx);
    HttpChecks {
        valid_status_codes,
        valid_http_versions: m.valid_http_versions.clone().unwrap_or_default(),
        fail_if_ssl: m.fail_if_ssl.unwrap_or(false),
        fail_if_not_ssl: m.fail_if_not_ssl.unwrap_or(false),
        fail_if_body_matches: cx.regexes(
            m.fail_if_body_matches_regexp.as_ref(),
            &p("fail_if_body_matches_regexp"),
        ),
        fail_if_body_not_matches: cx.regexes(
            m.fail_if_body_not_matches_regexp.as_ref(),
            &p("fail_if_body_not_matches_regexp"),
        ),
        headers,
        body_checks: cel_checks(m, path, cx),
        decompress,
    }
}

/// `fail_if_header_(not_)matches`: blackbox requires both `header` and `regexp` in each item.
fn header_checks(m: &HttpModel, path: &str, cx: &mut Cx) -> Vec<HeaderCheck> {
    let mut out = Vec::new();
    for (list, fail_if_matches, key) in [
        (&m.fail_if_header_matches, true, "fail_if_header_matches"),
        (
            &m.fail_if_header_not_matches,
            false,
            "fail_if_header_not_matches",
        ),
    ] {
        let lp = key_path(path, key);
        for (i, h) in list.iter().flatten().enumerate() {
            let ip = index_path(&lp, i);
            let Some(header) = h.header.as_deref().filter(|s| !s.is_empty()) else {
                cx.err_value(
                    &ip,
                    "header name must be set for HTTP header matchers — expected `header:`",
                );
                continue;
            };
            let Some(regexp) = h.regexp.as_deref().filter(|s| !s.is_empty()) else {
                cx.err_value(
                    &ip,
                    "regexp must be set for HTTP header matchers — expected `regexp:`",
                );
                continue;
            };
            let matcher = HeaderMatcher {
                header,
                regexp,
                allow_missing: h.allow_missing,
            };
            out.extend(header_check(matcher, &ip, fail_if_matches, cx));
        }
    }
    out
}

/// `proxy_from_environment`: Go's httpproxy reads these once; so does a load.
fn env_proxy(m: &HttpModel, path: &str, cx: &mut Cx) -> EnvProxy {
    let at = key_path(path, "proxy_from_environment");
    if m.proxy_url.as_deref().is_some_and(|u| !u.is_empty()) {
        cx.err_key(
            &at,
            "if proxy_from_environment is configured, proxy_url must not be configured",
        );
    }
    let env = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    };
    let parse = |v: Option<String>, cx: &mut Cx| -> Option<Url> {
        let v = v?;
        let full = if v.contains("://") {
            v.clone()
        } else {
            format!("http://{v}")
        };
        match Url::parse(&full) {
            Ok(u) if u.scheme() == "http" && u.host_str().is_some() => Some(u),
            _ => {
                cx.err_key(
                    &at,
                    format!(
                        "the environment's proxy {v:?} is not an http:// proxy URL — expected \
                         one like http://proxy:3128 (sonde speaks to http proxies only)"
                    ),
                );
                None
            }
        }
    };
    EnvProxy {
        http: parse(env(["HTTP_PROXY", "http_proxy"]), cx),
        https: parse(env(["HTTPS_PROXY", "https_proxy"]), cx),
        no_proxy: no_proxy_list(&env(["NO_PROXY", "no_proxy"]).unwrap_or_default()),
    }
}

/// A `no_proxy` list as Go reads it: comma-separated, trimmed, lower case.
fn no_proxy_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}
