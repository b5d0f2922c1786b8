//! An `http` module's credentials (`basic_auth`, `bearer_token`, `authorization`, `oauth2`), as
//! prometheus/common's HTTP client configuration reads them.

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Method};
use sonde_probes::http::{Auth, HttpRequest};
use url::Url;

use super::model::{AuthorizationModel, BasicAuthModel, HttpModel, OAuth2Model};
use super::module::system_resolver;
use super::{not_yet, read_secret, tls_spec};
use crate::config::build::{Alpn, Cx};
use crate::config::locate::key_path;

/// A value given inline or in a file (at most one of them, as prometheus/common allows).
/// `None`: both were set (reported at `file_path`) or the file could not be read;
/// `Some(None)`: neither was set.
fn inline_or_file(
    inline: Option<&str>,
    file: Option<&String>,
    file_path: &str,
    both: &str,
    cx: &mut Cx,
) -> Option<Option<String>> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            cx.err_key(file_path, both);
            None
        }
        (Some(v), None) => Some(Some(v.to_string())),
        (None, Some(f)) => read_secret(cx, f, file_path).map(Some),
        (None, None) => Some(None),
    }
}

/// The module's `basic_auth`, `bearer_token(_file)` and `authorization`; an `authorization`
/// other than Bearer goes into `headers` as written.
pub(super) fn credentials(
    m: &HttpModel,
    path: &str,
    headers: &mut HeaderMap,
    cx: &mut Cx,
) -> Option<Auth> {
    let p = |k: &str| key_path(path, k);
    let mut auth = m
        .basic_auth
        .as_ref()
        .and_then(|b| basic_auth(b, &p("basic_auth"), cx));
    let mut bearer = inline_or_file(
        m.bearer_token.as_deref(),
        m.bearer_token_file.as_ref(),
        &p("bearer_token_file"),
        "at most one of bearer_token & bearer_token_file must be configured",
        cx,
    )
    .flatten();
    if let Some(a) = &m.authorization {
        if let Some(token) = authorization(a, &p("authorization"), headers, cx) {
            bearer = Some(token);
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
    auth
}

fn basic_auth(b: &BasicAuthModel, bp: &str, cx: &mut Cx) -> Option<Auth> {
    if b.username_ref.is_some() {
        not_yet(cx, &key_path(bp, "username_ref"), "");
    }
    if b.password_ref.is_some() {
        not_yet(cx, &key_path(bp, "password_ref"), "");
    }
    let username = inline_or_file(
        b.username.as_ref().map(|u| u.0.as_str()),
        b.username_file.as_ref(),
        &key_path(bp, "username_file"),
        "at most one of basic_auth username & username_file must be configured",
        cx,
    );
    let password = inline_or_file(
        b.password.as_ref().map(|p| p.0.as_str()),
        b.password_file.as_ref(),
        &key_path(bp, "password_file"),
        "at most one of basic_auth password & password_file must be configured",
        cx,
    );
    Some(Auth::Basic {
        username: username?.unwrap_or_default(),
        password: password?.unwrap_or_default(),
    })
}

/// `authorization`: the Bearer token it gives, or `None` when its type is another (then its
/// header is set in `headers`) or it is broken (reported).
fn authorization(
    a: &AuthorizationModel,
    ap: &str,
    headers: &mut HeaderMap,
    cx: &mut Cx,
) -> Option<String> {
    if a.credentials_ref.is_some() {
        not_yet(cx, &key_path(ap, "credentials_ref"), "");
    }
    let kind = a
        .kind
        .clone()
        .filter(|k| !k.trim().is_empty())
        .unwrap_or_else(|| "Bearer".into());
    if kind.eq_ignore_ascii_case("basic") {
        cx.err_value(
            &key_path(ap, "type"),
            "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
        );
    }
    let creds = inline_or_file(
        a.credentials.as_deref(),
        a.credentials_file.as_ref(),
        &key_path(ap, "credentials_file"),
        "at most one of authorization credentials & credentials_file must be configured",
        cx,
    )?
    .unwrap_or_default();
    if kind == "Bearer" {
        return Some(creds);
    }
    match HeaderValue::from_str(&format!("{kind} {creds}")) {
        Ok(mut v) => {
            v.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, v);
        }
        Err(_) => cx.err_value(ap, "invalid authorization — expected visible ASCII text"),
    }
    None
}

/// `oauth2`'s token request (`Some(None)` without `oauth2`), refused beside the other
/// credentials as prometheus/common refuses it. `None`: it is broken (reported).
pub(super) fn oauth2(m: &HttpModel, path: &str, cx: &mut Cx) -> Option<Option<HttpRequest>> {
    let Some(o) = &m.oauth2 else {
        return Some(None);
    };
    let op = key_path(path, "oauth2");
    if m.basic_auth.is_some()
        || m.authorization.is_some()
        || m.bearer_token.is_some()
        || m.bearer_token_file.is_some()
    {
        cx.err_key(
            &op,
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file, authorization must be configured",
        );
    }
    oauth2_request(o, &op, cx).map(Some)
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
    let token_url = token_url(m, path, cx);
    let secret = inline_or_file(
        m.client_secret.as_deref(),
        m.client_secret_file.as_ref(),
        &p("client_secret_file"),
        "at most one of oauth2 client_secret & client_secret_file must be configured",
        cx,
    );
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
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut req = HttpRequest::get(token_url?, system_resolver(), tls?.client);
    req.method = Method::POST;
    req.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    req.body = token_form(m);
    req.auth = Some(Auth::Basic {
        username: enc(m.client_id.as_deref().unwrap_or("")),
        password: enc(&secret?.unwrap_or_default()),
    });
    req.proxy = proxy;
    req.keep_body = 64 * 1024;
    req.body_size_limit = Some(1 << 20);
    Some(req)
}

fn token_url(m: &OAuth2Model, path: &str, cx: &mut Cx) -> Option<Url> {
    match m.token_url.as_deref().map(Url::parse) {
        Some(Ok(u)) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
        Some(_) => {
            cx.err_value(
                &key_path(path, "token_url"),
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
    }
}

fn token_form(m: &OAuth2Model) -> Bytes {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    let scopes = m.scopes.clone().unwrap_or_default();
    if !scopes.is_empty() {
        form.append_pair("scope", &scopes.join(" "));
    }
    for (k, v) in m.endpoint_params.iter().flat_map(|e| e.0.iter()) {
        form.append_pair(k, &v.0);
    }
    Bytes::from(form.finish())
}
