//! blackbox_exporter's configuration file as written: serde types of `modules:` with every option
//! of blackbox_exporter 0.23–0.28 for the `http`, `tcp`, `icmp`, `dns` and `grpc` probers.
//!
//! Unknown keys are errors, as in blackbox (which decodes with `KnownFields(true)`). Options
//! sonde cannot honour yet are typed as [`IgnoredAny`] here only so that the compiler can refuse
//! them *by name* ("`oauth2` is not supported yet"), never silently.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_norway::Value;

use crate::config::units::{ByteSize, Dur, Ordered, Text};

/// The top level: blackbox accepts only `modules:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModel {
    /// Each module stays raw so one broken module does not hide the errors of the others.
    pub modules: Option<Ordered<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleModel {
    pub prober: String,
    pub timeout: Option<Dur>,
    pub http: Option<HttpModel>,
    pub tcp: Option<TcpModel>,
    pub icmp: Option<IcmpModel>,
    pub dns: Option<DnsModel>,
    pub grpc: Option<GrpcModel>,
    pub unix: Option<UnixModel>,
}

/// prometheus/common's `TLSConfig`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfigModel {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    // Not supported yet (inline PEM and secret references).
    pub ca: Option<IgnoredAny>,
    pub cert: Option<IgnoredAny>,
    pub key: Option<IgnoredAny>,
    pub ca_ref: Option<IgnoredAny>,
    pub cert_ref: Option<IgnoredAny>,
    pub key_ref: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthModel {
    pub username: Option<Text>,
    pub password: Option<Text>,
    pub username_file: Option<String>,
    pub password_file: Option<String>,
    pub username_ref: Option<IgnoredAny>,
    pub password_ref: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationModel {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<String>,
    pub credentials_file: Option<String>,
    pub credentials_ref: Option<IgnoredAny>,
}

/// prometheus/common's `oauth2`: the client-credentials grant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Model {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub token_url: Option<String>,
    pub endpoint_params: Option<Ordered<Text>>,
    pub tls_config: Option<TlsConfigModel>,
    pub proxy_url: Option<String>,
    // Not supported yet.
    pub client_secret_ref: Option<IgnoredAny>,
    pub no_proxy: Option<IgnoredAny>,
    pub proxy_from_environment: Option<IgnoredAny>,
    pub proxy_connect_header: Option<IgnoredAny>,
}

/// prometheus/common's `http_headers` entry: values sent as written, secrets sent but never
/// shown, files read for the value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHeaderModel {
    pub values: Option<Vec<String>>,
    pub secrets: Option<Vec<String>>,
    pub files: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchModel {
    pub header: Option<String>,
    pub regexp: Option<String>,
    pub allow_missing: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpModel {
    pub valid_status_codes: Option<Vec<i64>>,
    pub valid_http_versions: Option<Vec<String>>,
    pub preferred_ip_protocol: Option<String>,
    pub ip_protocol_fallback: Option<bool>,
    pub skip_resolve_phase_with_proxy: Option<bool>,
    pub no_follow_redirects: Option<bool>,
    pub fail_if_ssl: Option<bool>,
    pub fail_if_not_ssl: Option<bool>,
    pub method: Option<String>,
    pub headers: Option<Ordered<Text>>,
    pub fail_if_body_matches_regexp: Option<Vec<String>>,
    pub fail_if_body_not_matches_regexp: Option<Vec<String>>,
    pub fail_if_header_matches: Option<Vec<HeaderMatchModel>>,
    pub fail_if_header_not_matches: Option<Vec<HeaderMatchModel>>,
    pub body: Option<String>,
    pub body_file: Option<String>,
    pub compression: Option<String>,
    pub body_size_limit: Option<ByteSize>,
    // http_client_config, inline.
    pub basic_auth: Option<BasicAuthModel>,
    pub authorization: Option<AuthorizationModel>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub tls_config: Option<TlsConfigModel>,
    pub proxy_url: Option<String>,
    pub oauth2: Option<OAuth2Model>,
    pub http_headers: Option<Ordered<HttpHeaderModel>>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
    /// blackbox 0.28: HTTP/3 over QUIC (then `enable_http2: false` and only `HTTP/3.0` in
    /// `valid_http_versions`).
    pub enable_http3: Option<bool>,
    pub no_proxy: Option<String>,
    pub proxy_from_environment: Option<bool>,
    /// Headers for the proxy's `CONNECT` (https targets through a proxy), values secret.
    pub proxy_connect_header: Option<Ordered<Vec<Text>>>,
    /// blackbox 0.27: CEL over the body as JSON (`body`).
    pub fail_if_body_json_matches_cel: Option<String>,
    pub fail_if_body_json_not_matches_cel: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryResponseModel {
    pub expect: Option<String>,
    pub expect_bytes: Option<String>,
    /// Text, or base64 bytes when tagged `!!binary` (the tag is read from the position index:
    /// serde's view of the YAML loses it).
    pub send: Option<String>,
    pub starttls: Option<bool>,
    /// `probe_expect_info` labels: values expand the `expect` match (`${1}`, `${name}`).
    pub labels: Option<Vec<LabelModel>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelModel {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpModel {
    pub preferred_ip_protocol: Option<String>,
    pub ip_protocol_fallback: Option<bool>,
    pub query_response: Option<Vec<QueryResponseModel>>,
    pub tls: Option<bool>,
    pub tls_config: Option<TlsConfigModel>,
    pub source_ip_address: Option<IgnoredAny>,
}

/// blackbox 0.28's `unix` prober: the tcp prober's dialogue and TLS, no addresses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixModel {
    pub query_response: Option<Vec<QueryResponseModel>>,
    pub tls: Option<bool>,
    pub tls_config: Option<TlsConfigModel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpModel {
    pub preferred_ip_protocol: Option<String>,
    pub ip_protocol_fallback: Option<bool>,
    pub source_ip_address: Option<String>,
    pub payload_size: Option<i64>,
    pub dont_fragment: Option<bool>,
    pub ttl: Option<i64>,
}

/// The same four regex lists as a scenario's `validate_*_rrs`, with the same meaning.
pub(crate) use crate::config::model::RrValidateModel as RrValidatorModel;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsModel {
    pub preferred_ip_protocol: Option<String>,
    pub ip_protocol_fallback: Option<bool>,
    pub transport_protocol: Option<String>,
    pub query_class: Option<String>,
    pub query_name: Option<String>,
    pub query_type: Option<String>,
    pub recursion_desired: Option<bool>,
    pub valid_rcodes: Option<Vec<String>>,
    pub validate_answer_rrs: Option<RrValidatorModel>,
    pub validate_authority_rrs: Option<RrValidatorModel>,
    pub validate_additional_rrs: Option<RrValidatorModel>,
    // Not supported yet.
    pub dns_over_tls: Option<bool>,
    pub tls_config: Option<TlsConfigModel>,
    pub source_ip_address: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcModel {
    pub service: Option<String>,
    pub tls: Option<bool>,
    pub tls_config: Option<TlsConfigModel>,
    pub preferred_ip_protocol: Option<String>,
    pub ip_protocol_fallback: Option<bool>,
}
