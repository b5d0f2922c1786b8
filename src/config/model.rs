//! The YAML as written: serde types of the scenario format v1 (see `docs/scenario-format.md`).
//!
//! Parts that are deserialized on their own — each step, and the one-step shorthand — stay raw
//! `serde_norway::Value`s here, so one bad step does not hide the errors of the others, and so
//! templates can be rendered into a step before it is typed. Keys reserved for later issues are
//! accepted here only to be refused by name ("not supported yet") instead of as unknown keys.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_norway::Value;

use super::units::{
    ByteSize, Dur, IpProto, OneOrMany, Ordered, SessionWord, StatusSpec, Text, TlsVersionWord,
    Transport, VarValue,
};

/// The step kinds.
pub const KINDS: [&str; 10] = [
    "http",
    "tcp",
    "dns",
    "icmp",
    "tls",
    "ws.connect",
    "ws.send",
    "ws.expect",
    "ws.close",
    "sleep",
];

/// Keys reserved for later issues, refused with "not supported yet".
pub const RESERVED_SCENARIO_KEYS: [&str; 0] = [];
pub const RESERVED_STEP_KEYS: [&str; 0] = [];

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioModel {
    pub scenario: Text,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub regions: Option<Vec<String>>,
    pub tags: Option<Vec<Text>>,
    pub labels: Option<Ordered<Text>>,
    pub vars: Option<Ordered<VarValue>>,
    #[schemars(with = "Option<Vec<StepModel>>")]
    pub steps: Option<Vec<Value>>,
    // The one-step shorthand; typed later as a step.
    #[schemars(with = "Option<HttpModel>")]
    pub http: Option<Value>,
    #[schemars(with = "Option<TcpModel>")]
    pub tcp: Option<Value>,
    #[schemars(with = "Option<DnsModel>")]
    pub dns: Option<Value>,
    #[schemars(with = "Option<IcmpModel>")]
    pub icmp: Option<Value>,
    #[schemars(with = "Option<TlsProbeModel>")]
    pub tls: Option<Value>,
    #[schemars(with = "Option<ExpectModel>")]
    pub expect: Option<Value>,
    #[schemars(with = "Option<OneOrMany>")]
    pub resolver: Option<Value>,
    #[schemars(with = "Option<Ordered<CaptureModel>>")]
    pub capture: Option<Value>,
    #[schemars(with = "Option<RetryModel>")]
    pub retry: Option<Value>,
    /// Steps run before `steps` (once per connection life with `session: persistent`).
    #[schemars(with = "Option<Vec<StepModel>>")]
    pub setup: Option<Vec<Value>>,
    /// Steps run after `steps`, whatever happened (persistent: when the session ends).
    #[schemars(with = "Option<Vec<StepModel>>")]
    pub teardown: Option<Vec<Value>>,
    pub session: Option<SessionWord>,
    pub heartbeat: Option<Dur>,
    /// HTTP steps of a run share a cookie jar (default true).
    pub cookies: Option<bool>,
    /// HTTP steps of a run reuse kept-alive connections (default true).
    pub reuse_connections: Option<bool>,
    /// Typed by `config::alert`; in the JSON Schema an open mapping.
    #[schemars(with = "Option<serde_json::Value>")]
    pub alert: Option<Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepModel {
    pub name: Option<Text>,
    pub timeout: Option<Dur>,
    pub resolver: Option<OneOrMany>,
    pub expect: Option<ExpectModel>,
    pub http: Option<HttpModel>,
    pub tcp: Option<TcpModel>,
    pub dns: Option<DnsModel>,
    pub icmp: Option<IcmpModel>,
    pub tls: Option<TlsProbeModel>,
    #[serde(rename = "ws.connect")]
    pub ws_connect: Option<WsConnectModel>,
    #[serde(rename = "ws.send")]
    pub ws_send: Option<WsSendModel>,
    #[serde(rename = "ws.expect")]
    pub ws_expect: Option<WsExpectModel>,
    #[serde(rename = "ws.close")]
    pub ws_close: Option<WsCloseModel>,
    pub sleep: Option<Dur>,
    pub capture: Option<Ordered<CaptureModel>>,
    pub retry: Option<RetryModel>,
}

/// Where a capture takes its value from; exactly one source.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureModel {
    pub json: Option<String>,
    pub regex: Option<String>,
    /// Which group of `regex`: a number or a name (default: 1 if the regex has a group, else 0).
    pub group: Option<VarValue>,
    pub header: Option<String>,
    pub status: Option<bool>,
    pub cookie: Option<String>,
    pub body: Option<bool>,
    pub frame: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryModel {
    pub attempts: Option<u32>,
    pub until_pass: Option<bool>,
    pub every: Option<Dur>,
    pub within: Option<Dur>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsConnectModel {
    #[serde(rename = "as")]
    pub as_: String,
    pub url: String,
    pub headers: Option<Ordered<Text>>,
    pub subprotocols: Option<Vec<String>>,
    pub tls_config: Option<TlsConfigModel>,
    pub preferred_ip_protocol: Option<IpProto>,
    pub ip_protocol_fallback: Option<bool>,
    pub max_frame_size: Option<ByteSize>,
    pub capture: Option<Ordered<CaptureModel>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsSendModel {
    pub on: String,
    pub text: Option<String>,
    pub json: Option<serde_json::Value>,
    pub base64: Option<String>,
    pub hex: Option<String>,
    pub capture: Option<Ordered<CaptureModel>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrameMatchModel {
    pub json: Option<Ordered<serde_json::Value>>,
    pub regex: Option<String>,
    pub equals: Option<String>,
    pub contains: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsExpectModel {
    pub on: String,
    #[serde(rename = "match")]
    pub match_: Option<FrameMatchModel>,
    pub not: Option<FrameMatchModel>,
    pub within: Option<Dur>,
    pub capture: Option<Ordered<CaptureModel>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsCloseModel {
    pub on: String,
    pub code: Option<u16>,
    pub reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectModel {
    pub status: Option<StatusSpec>,
    pub headers: Option<Ordered<Matcher>>,
    pub body: Option<BodyExpect>,
    pub duration: Option<BoundsModel>,
    pub cert_expires_in: Option<BoundsModel>,
    /// JSONPath → matcher, on the response body (http) or the matched frame (ws.expect).
    pub json: Option<Ordered<serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BodyExpect {
    pub contains: Option<OneOrMany>,
    pub not_contains: Option<OneOrMany>,
    pub matches: Option<OneOrMany>,
    pub not_matches: Option<OneOrMany>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoundsModel {
    pub lt: Option<Dur>,
    pub le: Option<Dur>,
    pub gt: Option<Dur>,
    pub ge: Option<Dur>,
}

/// A header matcher: a plain string means `equals`.
#[derive(Debug, Default)]
pub struct Matcher {
    pub equals: Option<String>,
    pub contains: Option<String>,
    pub matches: Option<String>,
    pub not_matches: Option<String>,
    pub exists: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MatcherMap {
    equals: Option<Text>,
    contains: Option<Text>,
    matches: Option<String>,
    not_matches: Option<String>,
    exists: Option<bool>,
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        use std::fmt;
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Matcher;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a string, or a mapping with equals, contains, matches, not_matches or exists",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Matcher, E> {
                Ok(Matcher {
                    equals: Some(s.to_string()),
                    ..Default::default()
                })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Matcher, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Matcher, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Matcher, A::Error> {
                let m = MatcherMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Matcher {
                    equals: m.equals.map(|t| t.0),
                    contains: m.contains.map(|t| t.0),
                    matches: m.matches,
                    not_matches: m.not_matches,
                    exists: m.exists,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfigModel {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub min_version: Option<TlsVersionWord>,
    pub max_version: Option<TlsVersionWord>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthModel {
    pub username: Text,
    pub password: Text,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderRegexModel {
    pub header: String,
    pub regexp: String,
    pub allow_missing: Option<bool>,
}

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
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryItemModel {
    pub expect: Option<String>,
    pub expect_bytes: Option<String>,
    pub send: Option<String>,
    pub starttls: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpModel {
    pub target: String,
    pub tls: Option<bool>,
    pub tls_config: Option<TlsConfigModel>,
    pub query_response: Option<Vec<QueryItemModel>>,
    pub preferred_ip_protocol: Option<IpProto>,
    pub ip_protocol_fallback: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RrValidateModel {
    pub fail_if_matches_regexp: Option<Vec<String>>,
    pub fail_if_all_match_regexp: Option<Vec<String>>,
    pub fail_if_not_matches_regexp: Option<Vec<String>>,
    pub fail_if_none_matches_regexp: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsModel {
    pub server: String,
    pub query_name: String,
    pub query_type: Option<String>,
    pub query_class: Option<String>,
    pub transport_protocol: Option<Transport>,
    pub recursion_desired: Option<bool>,
    pub valid_rcodes: Option<Vec<String>>,
    pub validate_answer_rrs: Option<RrValidateModel>,
    pub validate_authority_rrs: Option<RrValidateModel>,
    pub validate_additional_rrs: Option<RrValidateModel>,
    pub preferred_ip_protocol: Option<IpProto>,
    pub ip_protocol_fallback: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IcmpModel {
    pub target: String,
    pub payload_size: Option<u16>,
    pub ttl: Option<i64>,
    pub dont_fragment: Option<bool>,
    pub source_ip_address: Option<String>,
    pub preferred_ip_protocol: Option<IpProto>,
    pub ip_protocol_fallback: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsProbeModel {
    pub target: String,
    pub tls_config: Option<TlsConfigModel>,
    pub preferred_ip_protocol: Option<IpProto>,
    pub ip_protocol_fallback: Option<bool>,
}
