//! One step's typed model → the probe request the engine calls, every value checked.
//!
//! Each compiler reports every problem it finds (it does not stop at the first) and returns
//! `None` if there was any.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sonde_probes::dns::{DnsRequest, DnsTransport, RecordType};
use sonde_probes::http::{Auth, HttpChecks, HttpRequest, StatusRange};
use sonde_probes::icmp::IcmpRequest;
use sonde_probes::tcp::{TcpRequest, TcpStep};
use sonde_probes::tls::TlsRequest;
use url::Url;

use super::build::{ip_options, Alpn, Cx};
use super::expect;
use super::locate::{index_path, key_path};
use super::model::{DnsModel, ExpectModel, HttpModel, IcmpModel, TcpModel, TlsProbeModel};
use super::probe_settings::dns::{dns_checks, query_class, DnsCheckModels};
use super::probe_settings::http::header_checks;
use super::probe_settings::Dialect;
use super::suggest;
use super::targets;
use super::units::Transport;

/// How many bytes of a response body an http step keeps for the trace (and, later, captures).
/// Small on purpose: 10,000 scenarios each keeping their last body must stay cheap.
pub const KEEP_BODY: usize = 4096;

/// How much of the body a step that captures from it or checks JSON paths in it keeps.
pub const KEEP_BODY_FOR_CAPTURES: usize = 256 * 1024;

const HTTP_VERSIONS: [&str; 3] = ["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"];

fn url_field(s: &str, path: &str, what: &str, schemes: &[&str], cx: &mut Cx) -> Option<Url> {
    let expected = if schemes.len() == 1 {
        format!("an absolute {}:// URL", schemes[0])
    } else {
        "an absolute http:// or https:// URL".to_string()
    };
    match Url::parse(s) {
        Ok(u) if !schemes.contains(&u.scheme()) => {
            cx.err_value(
                path,
                format!(
                    "unsupported {what} scheme `{}` in {s:?} — expected {expected}",
                    u.scheme()
                ),
            );
            None
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            cx.err_value(
                path,
                format!("{what} {s:?} has no host — expected {expected}"),
            );
            None
        }
        Ok(u) => Some(u),
        Err(e) => {
            cx.err_value(
                path,
                format!("invalid {what} {s:?}: {e} — expected {expected}"),
            );
            None
        }
    }
}

pub fn http(
    m: &HttpModel,
    expect: Option<&ExpectModel>,
    path: &str,
    expect_path: &str,
    servers: Option<&[SocketAddr]>,
    cx: &mut Cx,
) -> Option<HttpRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let url = url_field(&m.url, &p("url"), "URL", &["http", "https"], cx);

    let method_text = m
        .method
        .as_deref()
        .unwrap_or("GET")
        .trim()
        .to_ascii_uppercase();
    let method = match Method::from_bytes(method_text.as_bytes()) {
        Ok(me) => Some(me),
        Err(_) => {
            cx.err_value(
                &p("method"),
                format!(
                    "invalid HTTP method {:?} — expected a method like GET, POST or HEAD",
                    m.method.as_deref().unwrap_or_default()
                ),
            );
            None
        }
    };

    let mut headers = HeaderMap::new();
    if let Some(hs) = &m.headers {
        let hp = p("headers");
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
    }

    // One body at most: raw `body`, `json` (serialized, Content-Type application/json) or `form`
    // (urlencoded).
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
            &p(b),
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

    let auth = match (&m.basic_auth, &m.bearer_token) {
        (Some(_), Some(_)) => {
            cx.err_key(
                &p("bearer_token"),
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
    };

    let proxy = m
        .proxy_url
        .as_deref()
        .and_then(|s| url_field(s, &p("proxy_url"), "proxy_url", &["http"], cx));

    let mut checks = HttpChecks {
        fail_if_ssl: m.fail_if_ssl.unwrap_or(false),
        fail_if_not_ssl: m.fail_if_not_ssl.unwrap_or(false),
        ..Default::default()
    };
    if let Some(codes) = &m.valid_status_codes {
        let cp = p("valid_status_codes");
        for (i, c) in codes.iter().enumerate() {
            if (100..=599).contains(c) {
                checks
                    .valid_status_codes
                    .push(StatusRange { lo: *c, hi: *c });
            } else {
                cx.err_value(
                    &index_path(&cp, i),
                    format!("invalid status code {c} — expected 100 to 599"),
                );
            }
        }
        if expect.is_some_and(|e| e.status.is_some()) {
            cx.err_key(
                &key_path(expect_path, "status"),
                "both `expect.status` and `valid_status_codes` — expected only one of them",
            );
        }
    }
    if let Some(vs) = &m.valid_http_versions {
        let vp = p("valid_http_versions");
        for (i, v) in vs.iter().enumerate() {
            if HTTP_VERSIONS.contains(&v.as_str()) {
                checks.valid_http_versions.push(v.clone());
            } else {
                cx.err_value(
                    &index_path(&vp, i),
                    format!(
                        "unknown HTTP version `{v}`{}",
                        suggest::hint(v, &HTTP_VERSIONS)
                    ),
                );
            }
        }
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

    let alpn = Alpn::for_http(m.enable_http2);
    let tls = cx.tls_client(m.tls_config.as_ref(), &p("tls_config"), alpn);
    let host = url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let resolver = if url.is_some() {
        cx.resolver(servers, &host, &p("url"))
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
        checks,
        policy: None,
    })
}

pub fn tcp(
    m: &TcpModel,
    path: &str,
    servers: Option<&[SocketAddr]>,
    cx: &mut Cx,
) -> Option<TcpRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let target = cx.ok(&p("target"), targets::host_port(&m.target));
    let mut dialogue = Vec::new();
    let qp = p("query_response");
    for (i, item) in m.query_response.iter().flatten().enumerate() {
        let ip = index_path(&qp, i);
        let mut any = false;
        if let Some(e) = &item.expect {
            any = true;
            if let Some(r) = cx.bytes_regex(e, &key_path(&ip, "expect")) {
                dialogue.push(TcpStep::Expect(r));
            }
        }
        if let Some(b) = &item.expect_bytes {
            any = true;
            dialogue.push(TcpStep::ExpectBytes(b.as_bytes().to_vec()));
        }
        if let Some(s) = &item.send {
            any = true;
            dialogue.push(TcpStep::Send(s.clone()));
        }
        if let Some(st) = item.starttls {
            any = true;
            if st {
                dialogue.push(TcpStep::StartTls);
            }
        }
        if !any {
            cx.err_value(
                &ip,
                "empty `query_response` item — expected one of: expect, expect_bytes, send, starttls",
            );
        }
    }
    let tls_client = cx.tls_client(m.tls_config.as_ref(), &p("tls_config"), Alpn::None);
    let resolver = target
        .as_ref()
        .and_then(|(h, _)| cx.resolver(servers, h, &p("target")));
    if cx.errors.len() > before {
        return None;
    }
    let (host, port) = target?;
    Some(TcpRequest {
        host,
        port,
        resolver: resolver?,
        ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
        tls: m.tls.unwrap_or(false),
        tls_client: tls_client?,
        dialogue,
        policy: None,
    })
}

/// Record types offered in "did you mean" hints (any type hickory knows is accepted).
const DNS_TYPES: [&str; 22] = [
    "A",
    "AAAA",
    "ANY",
    "AXFR",
    "CAA",
    "CNAME",
    "DNSKEY",
    "DS",
    "HINFO",
    "HTTPS",
    "IXFR",
    "MX",
    "NAPTR",
    "NS",
    "NULL",
    "OPENPGPKEY",
    "PTR",
    "SOA",
    "SRV",
    "SSHFP",
    "SVCB",
    "TLSA",
];
pub fn dns(
    m: &DnsModel,
    path: &str,
    servers: Option<&[SocketAddr]>,
    cx: &mut Cx,
) -> Option<DnsRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let server = cx
        .ok(&p("server"), targets::host_opt_port(&m.server, Some(53)))
        .map(|(h, port)| (h, port.unwrap_or(53)));
    if m.query_name.trim().is_empty() {
        cx.err_value(
            &p("query_name"),
            "empty `query_name` — expected the name to look up, like example.com",
        );
    }
    let qtype_text = m
        .query_type
        .as_deref()
        .unwrap_or("A")
        .trim()
        .to_ascii_uppercase();
    let query_type = match RecordType::from_str(&qtype_text) {
        Ok(t) => Some(t),
        Err(_) => {
            cx.err_value(
                &p("query_type"),
                format!(
                    "unknown DNS query type `{}`{}",
                    m.query_type.as_deref().unwrap_or_default(),
                    suggest::hint(&qtype_text, &DNS_TYPES)
                ),
            );
            None
        }
    };
    let qclass_text = m
        .query_class
        .as_deref()
        .unwrap_or("IN")
        .trim()
        .to_ascii_uppercase();
    let query_class = query_class(
        &qclass_text,
        m.query_class.as_deref().unwrap_or_default(),
        &p("query_class"),
        cx,
    );
    let checks = dns_checks(
        DnsCheckModels {
            valid_rcodes: m.valid_rcodes.as_ref(),
            answer: m.validate_answer_rrs.as_ref(),
            authority: m.validate_authority_rrs.as_ref(),
            additional: m.validate_additional_rrs.as_ref(),
        },
        path,
        Dialect::Scenario,
        cx,
    );
    let resolver = server
        .as_ref()
        .and_then(|(h, _)| cx.resolver(servers, h, &p("server")));
    if cx.errors.len() > before {
        return None;
    }
    let (server, port) = server?;
    Some(DnsRequest {
        server,
        port,
        resolver: resolver?,
        ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
        query_name: m.query_name.trim().to_string(),
        query_type: query_type?,
        query_class: query_class?,
        transport: match m.transport_protocol.unwrap_or(Transport::Udp) {
            Transport::Udp => DnsTransport::Udp,
            Transport::Tcp => DnsTransport::Tcp,
        },
        recursion_desired: m.recursion_desired.unwrap_or(true),
        checks,
    })
}

pub fn icmp(
    m: &IcmpModel,
    path: &str,
    servers: Option<&[SocketAddr]>,
    cx: &mut Cx,
) -> Option<IcmpRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let host = cx.ok(&p("target"), targets::bare_host(&m.target));
    let ttl = match m.ttl {
        Some(t) if !(1..=255).contains(&t) => {
            cx.err_value(
                &p("ttl"),
                format!("ttl {t} is out of range — expected 1 to 255"),
            );
            None
        }
        t => t.map(|t| t as u32),
    };
    let source = match &m.source_ip_address {
        Some(s) => match s.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                cx.err_value(
                    &p("source_ip_address"),
                    format!("invalid source_ip_address {s:?} — expected an IP address"),
                );
                None
            }
        },
        None => None,
    };
    let resolver = host
        .as_ref()
        .and_then(|h| cx.resolver(servers, h, &p("target")));
    if cx.errors.len() > before {
        return None;
    }
    Some(IcmpRequest {
        host: host?,
        resolver: resolver?,
        ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
        payload_size: usize::from(m.payload_size.unwrap_or(56)),
        ttl,
        dont_fragment: m.dont_fragment.unwrap_or(false),
        source,
    })
}

pub fn tls(
    m: &TlsProbeModel,
    path: &str,
    servers: Option<&[SocketAddr]>,
    cx: &mut Cx,
) -> Option<TlsRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let target = cx.ok(&p("target"), targets::host_port(&m.target));
    let client = cx.tls_client(m.tls_config.as_ref(), &p("tls_config"), Alpn::None);
    let resolver = target
        .as_ref()
        .and_then(|(h, _)| cx.resolver(servers, h, &p("target")));
    if cx.errors.len() > before {
        return None;
    }
    let (host, port) = target?;
    Some(TlsRequest {
        host,
        port,
        resolver: resolver?,
        ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
        client: client?,
    })
}
