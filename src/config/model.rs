//! The YAML as written: serde types of the scenario format v1 (see `docs/scenario-format.md`).
//!
//! Parts that are deserialized on their own — each step, and the one-step shorthand — stay raw
//! `serde_norway::Value`s here, so one bad step does not hide the errors of the others, and so
//! templates can be rendered into a step before it is typed. The scenario and step types come
//! from the table of step kinds ([`super::kinds`]); each kind's own model is in its file there.

use schemars::JsonSchema;
use serde::Deserialize;

use super::units::{Dur, OneOrMany, Ordered, StatusSpec, Text, TlsVersionWord, VarValue};

pub use super::kinds::{ScenarioModel, StepModel};

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

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RrValidateModel {
    pub fail_if_matches_regexp: Option<Vec<String>>,
    pub fail_if_all_match_regexp: Option<Vec<String>>,
    pub fail_if_not_matches_regexp: Option<Vec<String>>,
    pub fail_if_none_matches_regexp: Option<Vec<String>>,
}
