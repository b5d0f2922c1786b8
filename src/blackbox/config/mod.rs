//! Loading a blackbox_exporter configuration file (`modules:`) into ready-to-probe [`Module`]s.
//!
//! Errors use the scenario loader's machinery, so they read the same way:
//! `blackbox.yml:7:7: unknown key `valid_status_code` — did you mean `valid_status_codes`?`.
//! Every module is typed on its own, so one broken module does not hide the others' errors.
//! Expensive things (TLS clients, files named by the module) are built here, once per load; a
//! probe only fills in its target.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use serde_norway::Value;
use sonde_probes::dns::{DNSClass, DnsChecks, DnsRequest, DnsTransport, RecordType, RrChecks};
use sonde_probes::http::{Auth, ContentCoding, HeaderCheck, HttpChecks, HttpRequest, StatusRange};
use sonde_probes::icmp::{IcmpRequest, MAX_PAYLOAD};
use sonde_probes::resolve::{IpProtocol, ResolveOptions};
use sonde_probes::tcp::{TcpRequest, TcpStep};
use sonde_probes::tls::{TlsClient, TlsOptions, TlsVersion};
use url::Url;

use super::model::*;
use super::module::{
    system_resolver, EnvProxy, ExpectLabels, GrpcSpec, HttpSpec, Module, Modules, Prober, Spec,
    TcpSpec, TlsSpec,
};
use crate::config::build::{Alpn, Cx, Shared};
use crate::config::deser::deserialize_recovering;
use crate::config::error::FileErrors;
use crate::config::locate::{index_path, key_path, PosIndex};
use crate::config::redact::Fnv;
use crate::config::suggest;

/// The probers sonde runs, as blackbox names them.
pub const PROBERS: [&str; 5] = ["http", "tcp", "icmp", "dns", "grpc"];

/// "`x` is not supported yet …": an option sonde knows but cannot honour. Refusing it beats
/// probing differently from what the user configured.
fn not_yet(cx: &mut Cx, path: &str, what: &str) {
    let key = path.rsplit('.').next().unwrap_or(path);
    cx.err_key(
        path,
        format!(
            "`{key}` is not supported yet by sonde's blackbox_exporter compatibility{what} — \
             expected it left out (or the module kept on blackbox_exporter for now)"
        ),
    );
}

/// Whether the top level of a parsed file is a blackbox configuration.
pub fn is_blackbox(top: &serde_norway::Mapping) -> bool {
    top.contains_key("modules")
}

/// Compile the modules of one file (already parsed into `top`) into `out`. `dir` is the file's
/// folder: relative file names in modules are relative to it.
pub fn load_file(
    top: Value,
    dir: &Path,
    index: &PosIndex,
    errors: &mut FileErrors,
    out: &mut Modules,
) {
    let rec =
        deserialize_recovering::<FileModel>(top, "", "a blackbox configuration", index, errors);
    let Some(file) = rec.value else { return };
    let Some(modules) = file.modules else {
        errors.push(
            index.key("modules"),
            "`modules` is empty — expected a mapping of module names to modules",
        );
        return;
    };
    let mut shared = Shared::default();
    let mut hash = Fnv::default();
    for (name, raw) in modules.0 {
        let path = key_path("modules", &name);
        if let Some(prev) = out.get(&name) {
            errors.push(
                index.key(&path),
                format!(
                    "duplicate module name `{name}` — already defined in {}",
                    prev.defined_in
                ),
            );
            continue;
        }
        let mut shown = serde_json::to_value(&raw).unwrap_or_default();
        super::debug::redact_module(&mut shown);
        let m = deserialize_recovering::<ModuleModel>(raw, &path, "a module", index, errors);
        let Some(m) = m.value else { continue };
        let mut cx = Cx {
            index,
            errors,
            shared: &mut shared,
            dir,
            hash: &mut hash,
        };
        if let Some(module) = compile_module(&name, &path, m, &mut cx) {
            let module = Module {
                shown,
                defined_in: cx.errors.file.clone(),
                ..module
            };
            out.insert(name, Arc::new(module));
        }
    }
}

fn compile_module(name: &str, path: &str, m: ModuleModel, cx: &mut Cx) -> Option<Module> {
    let p = |k: &str| key_path(path, k);
    let before = cx.errors.len();
    let prober = match m.prober.as_str() {
        "http" => Some(Prober::Http),
        "tcp" => Some(Prober::Tcp),
        "icmp" => Some(Prober::Icmp),
        "dns" => Some(Prober::Dns),
        "grpc" => Some(Prober::Grpc),
        other => {
            cx.err_value(
                &p("prober"),
                format!("unknown prober `{other}`{}", suggest::hint(other, &PROBERS)),
            );
            None
        }
    };
    // blackbox treats 0 as "no module timeout"; so do we.
    let timeout = m.timeout.map(|d| d.0);
    let spec = match prober? {
        Prober::Http => {
            http(&m.http.unwrap_or_default(), &p("http"), cx).map(|h| Spec::Http(Box::new(h)))
        }
        Prober::Tcp => tcp(&m.tcp.unwrap_or_default(), &p("tcp"), cx).map(Spec::Tcp),
        Prober::Icmp => icmp(&m.icmp.unwrap_or_default(), &p("icmp"), cx).map(Spec::Icmp),
        Prober::Dns => match m.dns {
            Some(d) => dns(&d, &p("dns"), cx).map(Spec::Dns),
            None => {
                cx.err_key(
                    path,
                    "query name must be set for DNS module — expected `dns: {query_name: …}`",
                );
                None
            }
        },
        Prober::Grpc => grpc(&m.grpc.unwrap_or_default(), &p("grpc"), cx).map(Spec::Grpc),
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(Module {
        name: name.to_string(),
        prober: prober?,
        timeout: timeout.filter(|t| !t.is_zero()),
        spec: spec?,
        shown: serde_json::Value::Null,
        defined_in: String::new(),
    })
}

/// blackbox's `preferred_ip_protocol` (default `ip6`) and `ip_protocol_fallback` (default true).
fn ip_options(
    pref: Option<&str>,
    fallback: Option<bool>,
    path: &str,
    cx: &mut Cx,
) -> ResolveOptions {
    let preferred = match pref.map(str::trim) {
        None | Some("") | Some("ip6") => IpProtocol::Ip6,
        Some("ip4") => IpProtocol::Ip4,
        Some(other) => {
            cx.err_value(
                path,
                format!(
                    "unknown value `{other}` for `preferred_ip_protocol`{}",
                    suggest::hint(other, &["ip4", "ip6"])
                ),
            );
            IpProtocol::Ip6
        }
    };
    ResolveOptions {
        preferred,
        fallback: fallback.unwrap_or(true),
    }
}

/// Read a file named by a module (relative to the configuration file's folder).
fn read_file(cx: &mut Cx, file: &str, path: &str) -> Option<Vec<u8>> {
    let full = cx.dir.join(file);
    match std::fs::read(&full) {
        Ok(b) => Some(b),
        Err(e) => {
            let mut reason = e.to_string();
            if let Some(cut) = reason.find(" (os error") {
                reason.truncate(cut);
            }
            cx.err_value(
                path,
                format!(
                    "cannot read {:?}: {reason} — expected a readable file",
                    full.display().to_string()
                ),
            );
            None
        }
    }
}

fn read_secret(cx: &mut Cx, file: &str, path: &str) -> Option<String> {
    let b = read_file(cx, file, path)?;
    Some(String::from_utf8_lossy(&b).trim().to_string())
}

/// prometheus/common's `tls_config` → what sonde's TLS client needs, files resolved.
fn tls_options(m: Option<&TlsConfigModel>, path: &str, cx: &mut Cx) -> Option<TlsOptions> {
    let Some(m) = m else {
        return Some(TlsOptions::default());
    };
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    for (k, v) in [
        ("ca", m.ca.is_some()),
        ("cert", m.cert.is_some()),
        ("key", m.key.is_some()),
        ("ca_ref", m.ca_ref.is_some()),
        ("cert_ref", m.cert_ref.is_some()),
        ("key_ref", m.key_ref.is_some()),
    ] {
        if v {
            not_yet(cx, &p(k), " (use ca_file, cert_file and key_file)");
        }
    }
    let file = |k: &str, v: &Option<String>, cx: &mut Cx| -> Option<PathBuf> {
        let f = v.as_ref()?;
        read_file(cx, f, &p(k))?;
        Some(cx.dir.join(f))
    };
    let ca_file = file("ca_file", &m.ca_file, cx);
    let cert_file = file("cert_file", &m.cert_file, cx);
    let key_file = file("key_file", &m.key_file, cx);
    let version = |k: &str, v: &Option<String>, cx: &mut Cx| match v.as_deref() {
        None | Some("") => None,
        Some("TLS12") => Some(TlsVersion::Tls12),
        Some("TLS13") => Some(TlsVersion::Tls13),
        Some(w @ ("TLS10" | "TLS11")) => {
            cx.err_value(
                &p(k),
                format!(
                    "`{w}` is not supported — sonde speaks TLS 1.2 and 1.3 only; expected TLS12 or TLS13"
                ),
            );
            None
        }
        Some(w) => {
            cx.err_value(
                &p(k),
                format!(
                    "unknown TLS version `{w}`{}",
                    suggest::hint(w, &["TLS10", "TLS11", "TLS12", "TLS13"])
                ),
            );
            None
        }
    };
    let min_version = version("min_version", &m.min_version, cx);
    let max_version = version("max_version", &m.max_version, cx);
    if m.cert_file.is_some() != m.key_file.is_some() {
        cx.err_key(
            path,
            "exactly one of cert_file and key_file is set — expected both, for a client certificate",
        );
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(TlsOptions {
        ca_file,
        cert_file,
        key_file,
        server_name: m.server_name.clone().filter(|s| !s.is_empty()),
        insecure_skip_verify: m.insecure_skip_verify.unwrap_or(false),
        min_version,
        max_version,
    })
}

/// A TLS client and the options it was built from (a `hostname` parameter may need another
/// client with a different server name).
fn tls_spec(m: Option<&TlsConfigModel>, path: &str, alpn: Alpn, cx: &mut Cx) -> Option<TlsSpec> {
    let opts = tls_options(m, path, cx)?;
    let protocols = alpn_protocols(alpn);
    match TlsClient::new(&opts, protocols) {
        Ok(client) => Some(TlsSpec {
            opts,
            alpn: protocols,
            client,
        }),
        Err(e) => {
            cx.err_value(
                path,
                format!("unusable tls_config: {e} — expected PEM certificate and key files"),
            );
            None
        }
    }
}

fn alpn_protocols(alpn: Alpn) -> &'static [&'static [u8]] {
    match alpn {
        Alpn::None => &[],
        Alpn::Http1 => sonde_probes::http::ALPN_HTTP11,
        Alpn::Http2 => sonde_probes::http::ALPN_H2_HTTP11,
    }
}

fn http(m: &HttpModel, path: &str, cx: &mut Cx) -> Option<HttpSpec> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    for (k, v) in [
        ("oauth2", m.oauth2.is_some()),
        ("proxy_connect_header", m.proxy_connect_header.is_some()),
        (
            "fail_if_body_json_matches_cel",
            m.fail_if_body_json_matches_cel.is_some(),
        ),
        (
            "fail_if_body_json_not_matches_cel",
            m.fail_if_body_json_not_matches_cel.is_some(),
        ),
    ] {
        if v {
            not_yet(cx, &p(k), "");
        }
    }
    let ip = ip_options(
        m.preferred_ip_protocol.as_deref(),
        m.ip_protocol_fallback,
        &p("preferred_ip_protocol"),
        cx,
    );
    let method = match m.method.as_deref().map(str::trim) {
        None | Some("") => Some(Method::GET),
        Some(s) => match Method::from_bytes(s.as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => {
                cx.err_value(
                    &p("method"),
                    format!("invalid HTTP method {s:?} — expected a method like GET or POST"),
                );
                None
            }
        },
    };
    let mut headers = HeaderMap::new();
    let hp = p("headers");
    for (name, value) in m.headers.iter().flat_map(|h| h.0.iter()) {
        let at = key_path(&hp, name);
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
            (Err(_), _) => cx.err_key(
                &at,
                format!("invalid header name {name:?} — expected a token like X-Request-Id"),
            ),
            (_, Err(_)) => cx.err_value(&at, "invalid header value — expected visible ASCII text"),
        }
    }
    // `http_headers`: every value is sent (appended to what `headers` set); secrets and file
    // contents are marked sensitive, so traces show them redacted.
    let hhp = p("http_headers");
    for (name, h) in m.http_headers.iter().flat_map(|h| h.0.iter()) {
        let at = key_path(&hhp, name);
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            cx.err_key(
                &at,
                format!("invalid header name {name:?} — expected a token like X-Request-Id"),
            );
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
    let body = match (&m.body, &m.body_file) {
        (Some(_), Some(_)) => {
            cx.err_key(
                &p("body_file"),
                "setting body and body_file both are not allowed — expected one of them",
            );
            None
        }
        (Some(b), None) => Some(Bytes::from(b.clone())),
        (None, Some(f)) => read_file(cx, f, &p("body_file")).map(Bytes::from),
        (None, None) => Some(Bytes::new()),
    };
    // blackbox's `compression`: ask for that coding, and expect (and decode) it.
    let decompress = match m.compression.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(c @ ("identity" | "gzip" | "br" | "deflate")) => {
            let accept = headers
                .iter()
                .find(|(n, _)| *n == http::header::ACCEPT_ENCODING)
                .map(|(_, v)| String::from_utf8_lossy(v.as_bytes()).into_owned());
            match accept {
                Some(a) if !a.eq_ignore_ascii_case(c) => cx.err_value(
                    &p("compression"),
                    format!(
                        "invalid configuration \"Accept-Encoding: {a}\", \"compression: {c}\" — \
                         expected the Accept-Encoding header to match the compression"
                    ),
                ),
                _ => {
                    headers.insert(
                        http::header::ACCEPT_ENCODING,
                        HeaderValue::from_static(match c {
                            "gzip" => "gzip",
                            "br" => "br",
                            "deflate" => "deflate",
                            _ => "identity",
                        }),
                    );
                }
            }
            match c {
                "gzip" => Some(ContentCoding::Gzip),
                "br" => Some(ContentCoding::Br),
                "deflate" => Some(ContentCoding::Deflate),
                _ => None,
            }
        }
        Some(other) => {
            cx.err_value(
                &p("compression"),
                format!(
                    "invalid compression algorithm `{other}`{}",
                    suggest::hint(other, &["gzip", "br", "deflate", "identity"])
                ),
            );
            None
        }
    };
    let mut auth = None;
    if let Some(b) = &m.basic_auth {
        let bp = p("basic_auth");
        if b.username_ref.is_some() {
            not_yet(cx, &key_path(&bp, "username_ref"), "");
        }
        if b.password_ref.is_some() {
            not_yet(cx, &key_path(&bp, "password_ref"), "");
        }
        let username = match (&b.username, &b.username_file) {
            (Some(_), Some(_)) => {
                cx.err_key(
                    &key_path(&bp, "username_file"),
                    "at most one of basic_auth username & username_file must be configured",
                );
                None
            }
            (Some(u), None) => Some(u.0.clone()),
            (None, Some(f)) => read_secret(cx, f, &key_path(&bp, "username_file")),
            (None, None) => Some(String::new()),
        };
        let password = match (&b.password, &b.password_file) {
            (Some(_), Some(_)) => {
                cx.err_key(
                    &key_path(&bp, "password_file"),
                    "at most one of basic_auth password & password_file must be configured",
                );
                None
            }
            (Some(pw), None) => Some(pw.0.clone()),
            (None, Some(f)) => read_secret(cx, f, &key_path(&bp, "password_file")),
            (None, None) => Some(String::new()),
        };
        if let (Some(username), Some(password)) = (username, password) {
            auth = Some(Auth::Basic { username, password });
        }
    }
    let mut bearer = match (&m.bearer_token, &m.bearer_token_file) {
        (Some(_), Some(_)) => {
            cx.err_key(
                &p("bearer_token_file"),
                "at most one of bearer_token & bearer_token_file must be configured",
            );
            None
        }
        (Some(t), None) => Some(t.clone()),
        (None, Some(f)) => read_secret(cx, f, &p("bearer_token_file")),
        (None, None) => None,
    };
    if let Some(a) = &m.authorization {
        let ap = p("authorization");
        if a.credentials_ref.is_some() {
            not_yet(cx, &key_path(&ap, "credentials_ref"), "");
        }
        let kind = a
            .kind
            .clone()
            .filter(|k| !k.trim().is_empty())
            .unwrap_or_else(|| "Bearer".into());
        if kind.eq_ignore_ascii_case("basic") {
            cx.err_value(
                &key_path(&ap, "type"),
                "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
            );
        }
        let creds = match (&a.credentials, &a.credentials_file) {
            (Some(_), Some(_)) => {
                cx.err_key(
                    &key_path(&ap, "credentials_file"),
                    "at most one of authorization credentials & credentials_file must be configured",
                );
                None
            }
            (Some(c), None) => Some(c.clone()),
            (None, Some(f)) => read_secret(cx, f, &key_path(&ap, "credentials_file")),
            (None, None) => Some(String::new()),
        };
        if let Some(c) = creds {
            if kind == "Bearer" {
                bearer = Some(c);
            } else {
                match HeaderValue::from_str(&format!("{kind} {c}")) {
                    Ok(mut v) => {
                        v.set_sensitive(true);
                        headers.insert(http::header::AUTHORIZATION, v);
                    }
                    Err(_) => {
                        cx.err_value(&ap, "invalid authorization — expected visible ASCII text")
                    }
                }
            }
        }
    }
    let configured_auths = [
        m.basic_auth.is_some(),
        m.authorization.is_some(),
        m.bearer_token.is_some() || m.bearer_token_file.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if configured_auths > 1 {
        cx.err_key(
            path,
            "at most one of basic_auth, bearer_token & bearer_token_file, authorization must be configured",
        );
    }
    if let Some(t) = bearer {
        auth = Some(Auth::Bearer(t));
    }
    let proxy = match &m.proxy_url {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => match Url::parse(s) {
            Ok(u) if u.scheme() == "http" && u.host_str().is_some() => Some(u),
            Ok(_) => {
                cx.err_value(
                    &p("proxy_url"),
                    "unsupported proxy — expected an http:// proxy URL with a host",
                );
                None
            }
            Err(e) => {
                cx.err_value(
                    &p("proxy_url"),
                    format!("invalid proxy_url: {e} — expected a URL like http://proxy:3128"),
                );
                None
            }
        },
    };
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
    let mut header_checks = Vec::new();
    for (list, fail_if_matches, key) in [
        (&m.fail_if_header_matches, true, "fail_if_header_matches"),
        (
            &m.fail_if_header_not_matches,
            false,
            "fail_if_header_not_matches",
        ),
    ] {
        let lp = p(key);
        for (i, h) in list.iter().flatten().enumerate() {
            let ip = index_path(&lp, i);
            let Some(name) = h.header.as_deref().filter(|s| !s.is_empty()) else {
                cx.err_value(
                    &ip,
                    "header name must be set for HTTP header matchers — expected `header:`",
                );
                continue;
            };
            let Some(re) = h.regexp.as_deref().filter(|s| !s.is_empty()) else {
                cx.err_value(
                    &ip,
                    "regexp must be set for HTTP header matchers — expected `regexp:`",
                );
                continue;
            };
            let name = match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    cx.err_value(
                        &key_path(&ip, "header"),
                        format!("invalid header name {name:?}"),
                    );
                    continue;
                }
            };
            if let Some(regex) = cx.regex(re, &key_path(&ip, "regexp")) {
                header_checks.push(HeaderCheck {
                    name,
                    regex,
                    fail_if_matches,
                    allow_missing: h.allow_missing.unwrap_or(false),
                });
            }
        }
    }
    let checks = HttpChecks {
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
        headers: header_checks,
        decompress,
    };
    let follow_redirects = match m.no_follow_redirects {
        Some(no) => !no,
        None => m.follow_redirects.unwrap_or(true),
    };
    let alpn = if m.enable_http2.unwrap_or(true) {
        Alpn::Http2
    } else {
        Alpn::Http1
    };
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
    // `proxy_from_environment`: Go's httpproxy reads these once; so does a load.
    let env_proxy = if m.proxy_from_environment == Some(true) {
        if m.proxy_url.as_deref().is_some_and(|u| !u.is_empty()) {
            cx.err_key(
                &p("proxy_from_environment"),
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
                        &p("proxy_from_environment"),
                        format!(
                            "the environment's proxy {v:?} is not an http:// proxy URL — expected \
                             one like http://proxy:3128 (sonde speaks to http proxies only)"
                        ),
                    );
                    None
                }
            }
        };
        let http = parse(env(["HTTP_PROXY", "http_proxy"]), cx);
        let https = parse(env(["HTTPS_PROXY", "https_proxy"]), cx);
        let no_proxy = env(["NO_PROXY", "no_proxy"])
            .unwrap_or_default()
            .split(',')
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        Some(EnvProxy {
            http,
            https,
            no_proxy,
        })
    } else {
        None
    };
    if cx.errors.len() > before {
        return None;
    }
    let no_proxy = m
        .no_proxy
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect();
    Some(HttpSpec {
        req,
        tls,
        no_proxy,
        env_proxy,
    })
}

fn tcp(m: &TcpModel, path: &str, cx: &mut Cx) -> Option<TcpSpec> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    if m.source_ip_address.is_some() {
        not_yet(cx, &p("source_ip_address"), " for tcp");
    }
    let ip = ip_options(
        m.preferred_ip_protocol.as_deref(),
        m.ip_protocol_fallback,
        &p("preferred_ip_protocol"),
        cx,
    );
    let mut dialogue = Vec::new();
    let mut expect_labels: Vec<ExpectLabels> = Vec::new();
    let qp = p("query_response");
    for (i, item) in m.query_response.iter().flatten().enumerate() {
        let ip = index_path(&qp, i);
        // blackbox's order within one item: expect, expect_bytes, send, starttls.
        let mut expect = None;
        if let Some(e) = item.expect.as_deref().filter(|e| !e.is_empty()) {
            if let Some(r) = cx.bytes_regex(e, &key_path(&ip, "expect")) {
                expect = Some((dialogue.len(), r.clone()));
                dialogue.push(TcpStep::Expect(r));
            }
        }
        if let Some(labels) = item.labels.as_ref().filter(|l| !l.is_empty()) {
            let lp = key_path(&ip, "labels");
            let mut out = Vec::new();
            for (j, l) in labels.iter().enumerate() {
                let valid = l
                    .name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && l.name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    cx.err_value(
                        &key_path(&index_path(&lp, j), "name"),
                        format!("invalid label name {:?} — expected letters, digits and _, not starting with a digit", l.name),
                    );
                }
                out.push((l.name.clone(), l.value.clone()));
            }
            // One `probe_expect_info` family: every item's label names must agree.
            if let Some(first) = expect_labels.first() {
                let names =
                    |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
                if names(&first.labels) != names(&out) {
                    cx.err_key(
                        &lp,
                        "labels with other names than an earlier item's — expected the same label names in every item (they share the probe_expect_info family)",
                    );
                }
            }
            match expect {
                Some((step, regex)) => expect_labels.push(ExpectLabels {
                    step,
                    regex,
                    labels: out,
                }),
                None => cx.err_key(&lp, "`labels` without `expect` — expected an `expect` regex whose match the labels expand"),
            }
        }
        if let Some(b) = item.expect_bytes.as_deref().filter(|b| !b.is_empty()) {
            dialogue.push(TcpStep::ExpectBytes(b.as_bytes().to_vec()));
        }
        if let Some(s) = item.send.as_deref().filter(|s| !s.is_empty()) {
            dialogue.push(TcpStep::Send(s.to_string()));
        }
        if item.starttls == Some(true) {
            dialogue.push(TcpStep::StartTls);
        }
    }
    let tls = tls_spec(m.tls_config.as_ref(), &p("tls_config"), Alpn::None, cx);
    if cx.errors.len() > before {
        return None;
    }
    let tls = tls?;
    Some(TcpSpec {
        req: TcpRequest {
            host: String::new(),
            port: 0,
            resolver: system_resolver(),
            ip,
            tls: m.tls.unwrap_or(false),
            tls_client: tls.client.clone(),
            dialogue,
        },
        tls,
        expect_labels,
    })
}

fn icmp(m: &IcmpModel, path: &str, cx: &mut Cx) -> Option<IcmpRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let ip = ip_options(
        m.preferred_ip_protocol.as_deref(),
        m.ip_protocol_fallback,
        &p("preferred_ip_protocol"),
        cx,
    );
    let ttl = match m.ttl {
        None | Some(0) => None,
        Some(t) if t < 0 => {
            cx.err_value(&p("ttl"), "\"ttl\" cannot be negative — expected 0 to 255");
            None
        }
        Some(t) if t > 255 => {
            cx.err_value(&p("ttl"), "\"ttl\" cannot exceed 255 — expected 0 to 255");
            None
        }
        Some(t) => Some(t as u32),
    };
    let payload_size = match m.payload_size {
        None => 0,
        Some(n) if n < 0 || n as usize > MAX_PAYLOAD => {
            cx.err_value(
                &p("payload_size"),
                format!("payload_size {n} — expected 0 to {MAX_PAYLOAD}"),
            );
            0
        }
        Some(n) => n as usize,
    };
    let source = match m.source_ip_address.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                cx.err_value(
                    &p("source_ip_address"),
                    format!("{s:?} is not an IP address — expected a local address like 192.0.2.1"),
                );
                None
            }
        },
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(IcmpRequest {
        host: String::new(),
        resolver: system_resolver(),
        ip,
        payload_size,
        ttl,
        dont_fragment: m.dont_fragment.unwrap_or(false),
        source,
    })
}

const RCODES: [&str; 12] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "BADVERS",
];

fn rr_checks(m: Option<&RrValidatorModel>, path: &str, cx: &mut Cx) -> RrChecks {
    let Some(m) = m else {
        return RrChecks::default();
    };
    let p = |k: &str| key_path(path, k);
    RrChecks {
        fail_if_matches: cx.regexes(
            m.fail_if_matches_regexp.as_ref(),
            &p("fail_if_matches_regexp"),
        ),
        fail_if_all_match: cx.regexes(
            m.fail_if_all_match_regexp.as_ref(),
            &p("fail_if_all_match_regexp"),
        ),
        fail_if_not_matches: cx.regexes(
            m.fail_if_not_matches_regexp.as_ref(),
            &p("fail_if_not_matches_regexp"),
        ),
        fail_if_none_matches: cx.regexes(
            m.fail_if_none_matches_regexp.as_ref(),
            &p("fail_if_none_matches_regexp"),
        ),
    }
}

fn dns(m: &DnsModel, path: &str, cx: &mut Cx) -> Option<DnsRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    if m.dns_over_tls == Some(true) {
        not_yet(cx, &p("dns_over_tls"), "");
    }
    if m.source_ip_address.is_some() {
        not_yet(cx, &p("source_ip_address"), " for dns");
    }
    let ip = ip_options(
        m.preferred_ip_protocol.as_deref(),
        m.ip_protocol_fallback,
        &p("preferred_ip_protocol"),
        cx,
    );
    let query_name = m.query_name.clone().unwrap_or_default();
    if query_name.trim().is_empty() {
        cx.err_key(
            path,
            "query name must be set for DNS module — expected `query_name:`",
        );
    } else if let Err(e) = sonde_probes::dns::parse_query_name(&query_name) {
        cx.err_value(&p("query_name"), format!("{e} — expected a DNS name"));
    }
    let qtype = m
        .query_type
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("ANY")
        .to_ascii_uppercase();
    let query_type = match RecordType::from_str(&qtype) {
        Ok(t) => Some(t),
        Err(_) => {
            cx.err_value(
                &p("query_type"),
                format!(
                    "unknown DNS query type `{qtype}` — expected a type like A, AAAA, MX or SOA"
                ),
            );
            None
        }
    };
    let qclass = m
        .query_class
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("IN")
        .to_ascii_uppercase();
    let query_class = match DNSClass::from_str(&qclass) {
        Ok(c) => Some(c),
        Err(_) => {
            cx.err_value(
                &p("query_class"),
                format!(
                    "unknown DNS class `{qclass}`{}",
                    suggest::hint(&qclass, &["IN", "CH", "HS", "NONE", "ANY"])
                ),
            );
            None
        }
    };
    let transport = match m.transport_protocol.as_deref().map(str::trim) {
        None | Some("") | Some("udp") => DnsTransport::Udp,
        Some("tcp") => DnsTransport::Tcp,
        Some(other) => {
            cx.err_value(
                &p("transport_protocol"),
                format!(
                    "unknown value `{other}` for `transport_protocol`{}",
                    suggest::hint(other, &["udp", "tcp"])
                ),
            );
            DnsTransport::Udp
        }
    };
    let mut valid_rcodes = Vec::new();
    let rp = p("valid_rcodes");
    for (i, r) in m.valid_rcodes.iter().flatten().enumerate() {
        match sonde_probes::dns::rcode_from_name(r) {
            Some(c) => valid_rcodes.push(c),
            None => cx.err_value(
                &index_path(&rp, i),
                format!(
                    "invalid rcode `{r}`{}",
                    suggest::hint(&r.to_ascii_uppercase(), &RCODES)
                ),
            ),
        }
    }
    let checks = DnsChecks {
        valid_rcodes,
        answer: rr_checks(
            m.validate_answer_rrs.as_ref(),
            &p("validate_answer_rrs"),
            cx,
        ),
        authority: rr_checks(
            m.validate_authority_rrs.as_ref(),
            &p("validate_authority_rrs"),
            cx,
        ),
        additional: rr_checks(
            m.validate_additional_rrs.as_ref(),
            &p("validate_additional_rrs"),
            cx,
        ),
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(DnsRequest {
        server: String::new(),
        port: 53,
        resolver: system_resolver(),
        ip,
        query_name: query_name.trim().to_string(),
        query_type: query_type?,
        query_class: query_class?,
        transport,
        recursion_desired: m.recursion_desired.unwrap_or(true),
        checks,
    })
}

fn grpc(m: &GrpcModel, path: &str, cx: &mut Cx) -> Option<GrpcSpec> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let ip = ip_options(
        m.preferred_ip_protocol.as_deref(),
        m.ip_protocol_fallback,
        &p("preferred_ip_protocol"),
        cx,
    );
    let opts = tls_options(m.tls_config.as_ref(), &p("tls_config"), cx);
    if cx.errors.len() > before {
        return None;
    }
    let opts = opts?;
    let alpn = sonde_probes::grpc::ALPN_H2;
    let client = match TlsClient::new(&opts, alpn) {
        Ok(c) => c,
        Err(e) => {
            cx.err_value(
                &p("tls_config"),
                format!("unusable tls_config: {e} — expected PEM certificate and key files"),
            );
            return None;
        }
    };
    Some(GrpcSpec {
        service: m.service.clone().unwrap_or_default(),
        tls: m.tls.unwrap_or(false),
        ip,
        tls_spec: TlsSpec { opts, alpn, client },
    })
}
