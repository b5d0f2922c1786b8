//! An `http` module: request, credentials, proxies, content coding and blackbox's checks.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use sonde_probes::http::{Auth, ContentCoding, HeaderCheck, HttpChecks, HttpRequest, StatusRange};
use url::Url;

use super::model::{HttpModel, OAuth2Model};
use super::module::{system_resolver, EnvProxy, HttpSpec};
use super::{ip_options, not_yet, read_file, read_secret, tls_spec};
use crate::config::build::{Alpn, Cx};
use crate::config::locate::{index_path, key_path};
use crate::config::suggest;

pub(super) fn http(m: &HttpModel, path: &str, cx: &mut Cx) -> Option<HttpSpec> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    for (k, v) in [
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
    let oauth2 = match &m.oauth2 {
        None => None,
        Some(o) => {
            if m.basic_auth.is_some()
                || m.authorization.is_some()
                || m.bearer_token.is_some()
                || m.bearer_token_file.is_some()
            {
                cx.err_key(
                    &p("oauth2"),
                    "at most one of basic_auth, oauth2, bearer_token & bearer_token_file, authorization must be configured",
                );
            }
            Some(oauth2_request(o, &p("oauth2"), cx)?)
        }
    };
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
        oauth2,
    })
}

/// The token request of `oauth2` (client credentials, credentials in the `Authorization`
/// header as Go's oauth2 tries first): `POST token_url` with `grant_type`, `scope` and the
/// `endpoint_params`, form-encoded.
fn oauth2_request(m: &OAuth2Model, path: &str, cx: &mut Cx) -> Option<HttpRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    for (k, v) in [
        ("client_secret_ref", m.client_secret_ref.is_some()),
        ("no_proxy", m.no_proxy.is_some()),
        ("proxy_from_environment", m.proxy_from_environment.is_some()),
        ("proxy_connect_header", m.proxy_connect_header.is_some()),
    ] {
        if v {
            not_yet(cx, &p(k), " (in oauth2)");
        }
    }
    let token_url = match m.token_url.as_deref().map(Url::parse) {
        Some(Ok(u)) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
        Some(_) => {
            cx.err_value(
                &p("token_url"),
                "invalid token_url — expected an http(s) URL",
            );
            None
        }
        None => {
            cx.err_key(
                path,
                "missing `token_url` in oauth2 — expected the token endpoint's URL",
            );
            None
        }
    };
    let secret = match (&m.client_secret, &m.client_secret_file) {
        (Some(_), Some(_)) => {
            cx.err_key(
                &p("client_secret_file"),
                "at most one of oauth2 client_secret & client_secret_file must be configured",
            );
            None
        }
        (Some(s), None) => Some(s.clone()),
        (None, Some(f)) => read_secret(cx, f, &p("client_secret_file")),
        (None, None) => Some(String::new()),
    };
    let proxy = match m
        .proxy_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(Url::parse)
    {
        None => None,
        Some(Ok(u)) if u.scheme() == "http" && u.host_str().is_some() => Some(u),
        Some(_) => {
            cx.err_value(
                &p("proxy_url"),
                "unsupported proxy — expected an http:// proxy URL with a host",
            );
            None
        }
    };
    let tls = tls_spec(m.tls_config.as_ref(), &p("tls_config"), Alpn::Http2, cx);
    if cx.errors.len() > before {
        return None;
    }
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    let scopes = m.scopes.clone().unwrap_or_default();
    if !scopes.is_empty() {
        form.append_pair("scope", &scopes.join(" "));
    }
    for (k, v) in m.endpoint_params.iter().flat_map(|e| e.0.iter()) {
        form.append_pair(k, &v.0);
    }
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut req = HttpRequest::get(token_url?, system_resolver(), tls?.client);
    req.method = Method::POST;
    req.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    req.body = Bytes::from(form.finish());
    req.auth = Some(Auth::Basic {
        username: enc(m.client_id.as_deref().unwrap_or("")),
        password: enc(&secret?),
    });
    req.proxy = proxy;
    req.keep_body = 64 * 1024;
    req.body_size_limit = Some(1 << 20);
    Some(req)
}
