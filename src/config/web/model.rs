//! The web configuration file as exporter-toolkit spells it. Unknown keys are errors (as
//! toolkit's strict YAML): a typo in a security setting must not pass silently.

use serde::Deserialize;

use crate::config::units::{Dur, Ordered};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileModel {
    pub tls_server_config: Option<TlsModel>,
    pub http_server_config: Option<HttpModel>,
    pub rate_limit: Option<RateLimitModel>,
    pub basic_auth_users: Option<Ordered<String>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsModel {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_ca: Option<String>,
    pub client_auth_type: Option<String>,
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub curve_preferences: Option<Vec<String>>,
    pub prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct HttpModel {
    pub http2: Option<bool>,
    pub headers: Option<Ordered<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RateLimitModel {
    pub interval: Option<Dur>,
    pub burst: Option<u32>,
}
