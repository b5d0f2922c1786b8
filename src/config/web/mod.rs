//! `--web.config.file`: the Prometheus exporter-toolkit's web configuration, as it is, so a
//! hardened blackbox_exporter install (TLS, client certificates, basic auth) keeps its file.
//!
//! ```yaml
//! tls_server_config: {cert_file, key_file, cert, key, client_ca_file, client_ca,
//!   client_auth_type, client_allowed_sans, min_version, max_version, cipher_suites,
//!   curve_preferences, prefer_server_cipher_suites}
//! http_server_config: {http2, headers}
//! rate_limit: {interval, burst}
//! basic_auth_users: {name: bcrypt-hash}
//! ```
//!
//! Loading reads the certificate, key and client CA files and builds the TLS server
//! configuration at once, so every mistake is reported at load, located `file:line:column`
//! like every other configuration error. Secrets (the key, the password hashes) are never
//! quoted in an error. The server re-loads the file when it or a file it names changes
//! ([`crate::web_server::secure`]).

mod model;
mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::deser::deserialize_recovering;
use crate::config::error::{ConfigError, FileErrors, Pos};
use crate::config::locate::{key_path, PosIndex};
use model::{FileModel, HttpModel};

pub use tls::ClientAuth;

/// A loaded web configuration.
pub struct WebConfig {
    /// TLS on every connection, when `tls_server_config` says so.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `client_auth_type` (NoClientCert without TLS).
    pub client_auth: ClientAuth,
    /// `client_allowed_sans`: one of these must be a SAN of the client's certificate.
    pub allowed_sans: Option<Vec<String>>,
    /// `http_server_config.http2` (true by default, as exporter-toolkit): offered over TLS.
    pub http2: bool,
    /// Added to every response.
    pub headers: Vec<(String, String)>,
    /// User name → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// At most `burst` requests at once, refilled one per `interval`; beyond, 429.
    pub rate_limit: Option<(u32, Duration)>,
    /// The file and every file it names: a change to any of them is re-loaded.
    pub watched: Vec<PathBuf>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("http2", &self.http2)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The headers exporter-toolkit lets a web configuration set, and their allowed values (none:
/// any value).
const HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Read and check `path`.
pub fn load(path: &Path) -> Result<WebConfig, Vec<ConfigError>> {
    let name = path.display().to_string();
    let file_error = |message: String| {
        vec![ConfigError {
            file: name.clone(),
            line: 0,
            column: 0,
            message,
        }]
    };
    let meta = std::fs::metadata(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
    if meta.len() > crate::config::limits::DEFAULT_MAX_FILE_BYTES {
        return Err(file_error(format!(
            "{} bytes — expected a web configuration of at most {} bytes",
            meta.len(),
            crate::config::limits::DEFAULT_MAX_FILE_BYTES
        )));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    load_str(&name, dir, &text).map(|mut c| {
        c.watched.insert(0, path.to_path_buf());
        c
    })
}

/// Check `text` (from a file called `name` in `dir`).
pub fn load_str(name: &str, dir: &Path, text: &str) -> Result<WebConfig, Vec<ConfigError>> {
    let mut errors = FileErrors::new(name);
    let index = PosIndex::build(text);
    if index.report_duplicates(&mut errors) {
        return Err(errors.into_errors());
    }
    let value: serde_norway::Value = match serde_norway::from_str(text) {
        Ok(serde_norway::Value::Null) => serde_norway::Value::Mapping(Default::default()),
        Ok(v) => v,
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or(Pos::START);
            errors.push(pos, format!("not YAML: {e}"));
            return Err(errors.into_errors());
        }
    };
    let secrets = secrets_of(&value);
    let rec =
        deserialize_recovering::<FileModel>(value, "", "a web configuration", &index, &mut errors);
    let config = rec.value.and_then(|m| compile(m, dir, &index, &mut errors));
    // A message may quote a value it could not type: never a hash or a key.
    errors.scrub_since(0, &secrets);
    match config {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(errors.into_errors()),
    }
}

/// The values that must never appear in a message: the password hashes and an inline key.
fn secrets_of(v: &serde_norway::Value) -> Vec<String> {
    let mut out = Vec::new();
    let text = |v: &serde_norway::Value| match v {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if let Some(users) = v.get("basic_auth_users").and_then(|u| u.as_mapping()) {
        out.extend(users.values().filter_map(text));
    }
    if let Some(key) = v.get("tls_server_config").and_then(|t| t.get("key")) {
        out.extend(text(key));
    }
    out.retain(|s| s.len() >= 4);
    out
}

fn compile(
    m: FileModel,
    dir: &Path,
    index: &PosIndex,
    errors: &mut FileErrors,
) -> Option<WebConfig> {
    let before = errors.len();
    let mut users = BTreeMap::new();
    for (name, hash) in m.basic_auth_users.unwrap_or_default().0 {
        let path = key_path("basic_auth_users", &name);
        match hash.parse::<bcrypt::HashParts>() {
            Ok(_) => {
                users.insert(name, hash);
            }
            Err(_) => errors.push(
                index.value(&path),
                format!("the password of `{name}` is not a bcrypt hash — expected one like `$2y$10$…` (htpasswd -nBC 10 \"\" | tr -d ':\\n')"),
            ),
        }
    }
    let http = m.http_server_config.unwrap_or(HttpModel {
        http2: None,
        headers: None,
    });
    let headers = check_headers(http.headers.unwrap_or_default().0, index, errors);
    let rate_limit = m.rate_limit.and_then(|r| {
        let interval = r.interval.map(|d| d.0).unwrap_or_default();
        if interval.is_zero() {
            // exporter-toolkit: no interval, no limiter.
            return None;
        }
        let burst = r.burst.unwrap_or(0);
        if burst == 0 {
            errors.push(
                index.value("rate_limit.burst"),
                "`burst` is 0, which would refuse every request — expected at least 1",
            );
            return None;
        }
        Some((burst, interval))
    });
    let mut watched = Vec::new();
    let http2 = http.http2.unwrap_or(true);
    let (tls, allowed_sans, client_auth) = match m.tls_server_config {
        Some(t) => tls::compile(t, dir, http2, index, errors, &mut watched)?,
        None => (None, None, ClientAuth::NoClientCert),
    };
    (errors.len() == before).then_some(WebConfig {
        tls,
        client_auth,
        allowed_sans,
        http2,
        headers,
        users,
        rate_limit,
        watched,
    })
}

fn check_headers(
    headers: Vec<(String, String)>,
    index: &PosIndex,
    errors: &mut FileErrors,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let path = key_path("http_server_config.headers", &name);
        let Some((_, allowed)) = HEADERS.iter().find(|(h, _)| *h == name) else {
            let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
            errors.push(
                index.key(&path),
                format!(
                    "HTTP header `{name}` can not be configured{}",
                    crate::config::hint(&name, &names)
                ),
            );
            continue;
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            errors.push(
                index.value(&path),
                format!(
                    "invalid value {value:?} for {name} — expected one of {}",
                    allowed.join(", ")
                ),
            );
            continue;
        }
        if http::HeaderValue::from_str(&value).is_err() {
            errors.push(
                index.value(&path),
                format!("{name}: not a valid header value"),
            );
            continue;
        }
        out.push((name, value));
    }
    out
}

#[cfg(test)]
mod tests;
