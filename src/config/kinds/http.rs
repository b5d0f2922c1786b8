//! `http` steps: a request and the checks on its response, blackbox_exporter's http prober
//! settings plus `expect:`'s status, headers and body.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use schemars::JsonSchema;
use serde::Deserialize;
use sonde_probes::http::{Auth, HttpChecks, HttpRequest, StatusRange};

use super::{At, StepKind};
use crate::config::build::{ip_options, Alpn, Cx};
use crate::config::expect;
use crate::config::locate::{index_path, key_path};
use crate::config::model::{BasicAuthModel, ExpectModel, HeaderRegexModel, TlsConfigModel};
use crate::config::probe_settings::http::header_checks;
use crate::config::scenario::Action;
use crate::config::steps::url_field;
use crate::config::suggest;
use crate::config::units::{ByteSize, IpProto, Ordered, Text};

/// How many bytes of a response body an http step keeps for the trace (and, later, captures).
/// Small on purpose: 10,000 scenarios each keeping their last body must stay cheap.
pub const KEEP_BODY: usize = 4096;

/// How much of the body a step that captures from it or checks JSON paths in it keeps.
pub const KEEP_BODY_FOR_CAPTURES: usize = 256 * 1024;

const HTTP_VERSIONS: [&str; 4] = ["HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"];

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpModel {
    pub url: String,
    pub method: Option<String>,
    pub headers: Option<Ordered<Text>>,
    pub body: Option<String>,
    pub json: Option<serde_json::Value>,
    pub form: Option<Ordered<Text>>,
    pub basic_auth: Option<BasicAuthModel>,
    pub bearer_token: Option<String>,
    pub follow_redirects: Option<bool>,
    pub max_redirects: Option<u32>,
    pub body_size_limit: Option<ByteSize>,
    pub valid_status_codes: Option<Vec<u16>>,
    pub valid_http_versions: Option<Vec<String>>,
    pub fail_if_ssl: Option<bool>,
    pub fail_if_not_ssl: Option<bool>,
    pub fail_if_body_matches_regexp: Option<Vec<String>>,
    pub fail_if_body_not_matches_regexp: Option<Vec<String>>,
    pub fail_if_header_matches: Option<Vec<HeaderRegexModel>>,
    pub fail_if_header_not_matches: Option<Vec<HeaderRegexModel>>,
    pub preferred_ip_protocol: Option<IpProto>,
    pub ip_protocol_fallback: Option<bool>,
    pub tls_config: Option<TlsConfigModel>,
    pub proxy_url: Option<String>,
    pub enable_http2: Option<bool>,
    /// HTTP/3 over QUIC instead of HTTP/1.1 or HTTP/2 over TCP (https:// only, no proxy).
    pub enable_http3: Option<bool>,
}

impl StepKind for HttpModel {
    const ARTICLE: &'static str = "an";
    const CAPTURES: &'static [&'static str] =
        &["json", "regex", "header", "status", "cookie", "body"];
    const EXPECT: &'static [&'static str] = &[
        "status",
        "headers",
        "body",
        "json",
        "duration",
        "cert_expires_in",
    ];

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        let mut r = http(self, at, cx)?;
        if at.reads_body {
            r.keep_body = KEEP_BODY_FOR_CAPTURES;
        }
        Some(Action::Http(Box::new(r)))
    }
}

/// The request: every value checked, every problem reported.
pub fn http(m: &HttpModel, at: &At<'_>, cx: &mut Cx) -> Option<HttpRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(at.path, k);
    let url = url_field(&m.url, &p("url"), "URL", &["http", "https"], cx);
    let method = method(m, at.path, cx);
    let mut headers = headers(m, at.path, cx);
    let body = body(m, at.path, &mut headers, cx);
    let auth = auth(m, at.path, cx);
    let proxy = m
        .proxy_url
        .as_deref()
        .and_then(|s| url_field(s, &p("proxy_url"), "proxy_url", &["http"], cx));
    let checks = checks(m, at.path, at.expect, at.expect_path, cx);
    let http3 = http3(m, url.as_ref(), at.path, cx);
    let alpn = Alpn::for_http(m.enable_http2);
    let tls = cx.tls_client(m.tls_config.as_ref(), &p("tls_config"), alpn);
    let host = url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let resolver = if url.is_some() {
        cx.resolver(at.servers, &host, &p("url"))
    } else {
        None
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(HttpRequest {
        url: url?,
        method: method?,
        headers,
        body,
        auth,
        follow_redirects: m.follow_redirects.unwrap_or(true),
        max_redirects: m.max_redirects.unwrap_or(10),
        body_size_limit: m.body_size_limit.map(|b| b.0),
        keep_body: KEEP_BODY,
        resolver: resolver?,
        ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
        tls: tls?,
        proxy,
        proxy_connect_headers: HeaderMap::new(),
        checks,
        policy: None,
        http3,
    })
}

/// `enable_http3`: QUIC is always TLS and cannot go through an HTTP proxy; `HTTP/3.0` in
/// `valid_http_versions` needs it (nothing else can answer in HTTP/3).
fn http3(m: &HttpModel, url: Option<&url::Url>, path: &str, cx: &mut Cx) -> bool {
    let on = m.enable_http3.unwrap_or(false);
    let at = key_path(path, "enable_http3");
    let wants_h3 = m
        .valid_http_versions
        .iter()
        .flatten()
        .any(|v| v == "HTTP/3.0");
    if !on {
        if wants_h3 {
            cx.err_value(
                &key_path(path, "valid_http_versions"),
                "HTTP/3.0 is only spoken with enable_http3: true — expected that set, or \
                 HTTP/3.0 left out",
            );
        }
        return false;
    }
    if url.is_some_and(|u| u.scheme() != "https") {
        cx.err_value(
            &key_path(path, "url"),
            "HTTP/3 runs over QUIC, which is always TLS — expected an https:// URL",
        );
    }
    if m.proxy_url.is_some() {
        cx.err_value(
            &at,
            "HTTP/3 runs over QUIC (UDP), which cannot go through an HTTP proxy — expected \
             enable_http3 or proxy_url, not both",
        );
    }
    if m.enable_http2 == Some(true) {
        cx.err_value(
            &at,
            "enable_http3 and enable_http2 are both set — expected one protocol per step",
        );
    }
    true
}

fn method(m: &HttpModel, path: &str, cx: &mut Cx) -> Option<Method> {
    let text = m
        .method
        .as_deref()
        .unwrap_or("GET")
        .trim()
        .to_ascii_uppercase();
    match Method::from_bytes(text.as_bytes()) {
        Ok(me) => Some(me),
        Err(_) => {
            cx.err_value(
                &key_path(path, "method"),
                format!(
                    "invalid HTTP method {:?} — expected a method like GET, POST or HEAD",
                    m.method.as_deref().unwrap_or_default()
                ),
            );
            None
        }
    }
}

fn headers(m: &HttpModel, path: &str, cx: &mut Cx) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(hs) = &m.headers else {
        return headers;
    };
    let hp = key_path(path, "headers");
    for (k, v) in &hs.0 {
        let at = key_path(&hp, k);
        let name = HeaderName::from_bytes(k.as_bytes());
        let value = HeaderValue::from_bytes(v.0.as_bytes());
        match (name, value) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            (Err(_), _) => cx.err_key(
                &at,
                format!("invalid header name {k:?} — expected a token like X-Request-Id"),
            ),
            (_, Err(_)) => cx.err_value(
                &at,
                format!(
                    "invalid value for header `{k}` — expected text without control characters or line breaks"
                ),
            ),
        }
    }
    headers
}

/// One body at most: raw `body`, `json` (serialized, Content-Type application/json) or `form`
/// (urlencoded).
fn body(m: &HttpModel, path: &str, headers: &mut HeaderMap, cx: &mut Cx) -> Bytes {
    let bodies: Vec<&str> = [
        ("body", m.body.is_some()),
        ("json", m.json.is_some()),
        ("form", m.form.is_some()),
    ]
    .into_iter()
    .filter(|(_, s)| *s)
    .map(|(k, _)| k)
    .collect();
    let mut body = Bytes::from(m.body.clone().unwrap_or_default());
    if let [a, b, ..] = bodies.as_slice() {
        cx.err_key(
            &key_path(path, b),
            format!("both `{a}` and `{b}` — expected one request body"),
        );
    }
    let mut content_type = None;
    if let Some(j) = &m.json {
        body = Bytes::from(serde_json::to_vec(j).unwrap_or_default());
        content_type = Some("application/json");
    }
    if let Some(f) = &m.form {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &f.0 {
            ser.append_pair(k, &v.0);
        }
        body = Bytes::from(ser.finish());
        content_type = Some("application/x-www-form-urlencoded");
    }
    if let Some(ct) = content_type {
        if !headers.contains_key(http::header::CONTENT_TYPE) {
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
    }
    body
}

fn auth(m: &HttpModel, path: &str, cx: &mut Cx) -> Option<Auth> {
    match (&m.basic_auth, &m.bearer_token) {
        (Some(_), Some(_)) => {
            cx.err_key(
                &key_path(path, "bearer_token"),
                "both `basic_auth` and `bearer_token` — expected at most one of them",
            );
            None
        }
        (Some(b), None) => Some(Auth::Basic {
            username: b.username.0.clone(),
            password: b.password.0.clone(),
        }),
        (None, Some(t)) => Some(Auth::Bearer(t.clone())),
        (None, None) => None,
    }
}

/// The probe's checks: blackbox's settings, then `expect:`'s status, headers and body.
fn checks(
    m: &HttpModel,
    path: &str,
    expect: Option<&ExpectModel>,
    expect_path: &str,
    cx: &mut Cx,
) -> HttpChecks {
    let p = |k: &str| key_path(path, k);
    let mut checks = HttpChecks {
        fail_if_ssl: m.fail_if_ssl.unwrap_or(false),
        fail_if_not_ssl: m.fail_if_not_ssl.unwrap_or(false),
        ..Default::default()
    };
    if let Some(codes) = &m.valid_status_codes {
        checks.valid_status_codes = status_codes(codes, &p("valid_status_codes"), cx);
        if expect.is_some_and(|e| e.status.is_some()) {
            cx.err_key(
                &key_path(expect_path, "status"),
                "both `expect.status` and `valid_status_codes` — expected only one of them",
            );
        }
    }
    if let Some(vs) = &m.valid_http_versions {
        checks.valid_http_versions = http_versions(vs, &p("valid_http_versions"), cx);
    }
    checks.fail_if_body_matches = cx.regexes(
        m.fail_if_body_matches_regexp.as_ref(),
        &p("fail_if_body_matches_regexp"),
    );
    checks.fail_if_body_not_matches = cx.regexes(
        m.fail_if_body_not_matches_regexp.as_ref(),
        &p("fail_if_body_not_matches_regexp"),
    );
    header_checks(
        m.fail_if_header_matches.as_ref(),
        &p("fail_if_header_matches"),
        true,
        &mut checks.headers,
        cx,
    );
    header_checks(
        m.fail_if_header_not_matches.as_ref(),
        &p("fail_if_header_not_matches"),
        false,
        &mut checks.headers,
        cx,
    );
    if let Some(e) = expect {
        expect::http_checks(e, expect_path, &mut checks, cx);
    }
    checks
}

fn status_codes(codes: &[u16], path: &str, cx: &mut Cx) -> Vec<StatusRange> {
    let mut out = Vec::new();
    for (i, c) in codes.iter().enumerate() {
        if (100..=599).contains(c) {
            out.push(StatusRange { lo: *c, hi: *c });
        } else {
            cx.err_value(
                &index_path(path, i),
                format!("invalid status code {c} — expected 100 to 599"),
            );
        }
    }
    out
}

fn http_versions(vs: &[String], path: &str, cx: &mut Cx) -> Vec<String> {
    let mut out = Vec::new();
    for (i, v) in vs.iter().enumerate() {
        if HTTP_VERSIONS.contains(&v.as_str()) {
            out.push(v.clone());
        } else {
            cx.err_value(
                &index_path(path, i),
                format!(
                    "unknown HTTP version `{v}`{}",
                    suggest::hint(v, &HTTP_VERSIONS)
                ),
            );
        }
    }
    out
}
