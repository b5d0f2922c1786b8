//! The step kinds, defined once. The [`step_kinds!`] table below has one line per kind: its
//! YAML key, the field and model type it is read into, and `Shorthand` when a one-step
//! scenario may write it at the top level. From that table come the typed step
//! ([`StepModel`]) and scenario ([`ScenarioModel`]) — so the JSON Schema of `sonde schema` too —
//! the list of kinds in messages, and the dispatch to each kind's [`StepKind`] impl, which says
//! what the kind offers (captures, expectations) and builds it.
//!
//! Adding a kind: a file here with its model and `impl StepKind`, one line in the table, a
//! variant of [`Action`], and its executor in `engine/steps/` (a file and one match arm).

pub mod dns;
pub mod http;
pub mod icmp;
pub mod mqtt;
pub mod sleep;
pub mod tcp;
pub mod tcp_conn;
pub mod tls;
pub mod ws;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};
use serde_norway::Value;

use super::build::Cx;
use super::locate::key_path;
use super::model::{CaptureModel, ExpectModel, RetryModel};
use super::units::{Dur, OneOrMany, Ordered, SessionWord, Text, VarValue};
use crate::config::scenario::Action;

/// What a kind's builder is given besides its own model.
pub struct At<'a> {
    /// Where the kind's mapping sits (`steps[0].http`).
    pub path: &'a str,
    /// The step's `expect:` and where it sits.
    pub expect: Option<&'a ExpectModel>,
    pub expect_path: &'a str,
    /// The step's `resolver:` override.
    pub servers: Option<&'a [SocketAddr]>,
    /// The scenario's `heartbeat` (WebSocket pings).
    pub heartbeat: Option<Duration>,
    /// Captures or JSON expectations read the body: keep enough of it.
    pub reads_body: bool,
}

/// One step kind: what it offers and how it is built from its model.
pub trait StepKind {
    /// "a" or "an", as messages say "an http step".
    const ARTICLE: &'static str = "a";
    /// The capture sources (`capture: {x: {json: …}}`) the kind's outcome offers.
    const CAPTURES: &'static [&'static str] = &[];
    /// The keys of `expect:` that mean something for the kind.
    const EXPECT: &'static [&'static str] = &["duration"];

    /// Captures written inside the kind's own mapping (`ws.send: {capture: …}`).
    fn inner_captures(&self) -> Option<&Ordered<CaptureModel>> {
        None
    }

    /// The name of the long-lived connection the step opens (`as:` of a connect step).
    fn opens_connection(&self) -> Option<&str> {
        None
    }

    /// The name of the connection the step works on (`on:` of a send, expect or close step).
    fn uses_connection(&self) -> Option<&str> {
        None
    }

    /// What can be checked at load of a step built per run (its templates use captures or
    /// per-run functions), before they are rendered: names rather than values.
    fn check_unrendered(&self, _path: &str, _cx: &mut Cx) {}

    /// Whether building the step again from the same tree gives the same step. A persistent
    /// session's setup and teardown are built each time they run (`StepBody::OnDemand`) only
    /// when it does; a kind that picks something at build (a random default) says no.
    fn rebuilds_the_same(&self) -> bool {
        true
    }

    /// Check every value and build the step's action; `None` after reporting a problem.
    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action>;
}

/// The raw mapping of a one-step scenario's kind (typed later, as a step), with the schema of
/// the kind's model `T`.
#[derive(Debug)]
pub struct Shorthand<T>(pub Value, PhantomData<T>);

impl<'de, T> Deserialize<'de> for Shorthand<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| Shorthand(v, PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for Shorthand<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

macro_rules! step_kinds {
    ($($key:literal => $field:ident: $model:ty $(, $short:ident)?;)*) => {
        /// Every step kind's key, in the table's order.
        pub const KINDS: &[&str] = &[$($key),*];

        /// The kinds a one-step scenario may write at the top level.
        pub fn shorthand_kinds() -> Vec<&'static str> {
            let mut out = Vec::new();
            $($(
                let _ = PhantomData::<$short<$model>>;
                out.push($key);
            )?)*
            out
        }

        /// The capture sources a step of `kind` offers.
        pub fn capture_sources(kind: &str) -> &'static [&'static str] {
            match kind {
                $($key => <$model as StepKind>::CAPTURES,)*
                _ => &[],
            }
        }

        /// The `expect:` keys that mean something on a step of `kind`.
        pub fn expect_keys(kind: &str) -> &'static [&'static str] {
            match kind {
                $($key => <$model as StepKind>::EXPECT,)*
                _ => &["duration"],
            }
        }

        /// "a" or "an" before `kind`.
        pub fn article(kind: &str) -> &'static str {
            match kind {
                $($key => <$model as StepKind>::ARTICLE,)*
                _ => "a",
            }
        }

        // One scenario as written (no doc comment: it would become the schema's description).
        #[derive(Debug, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct ScenarioModel {
            pub scenario: Text,
            pub interval: Option<Dur>,
            pub timeout: Option<Dur>,
            pub regions: Option<Vec<String>>,
            pub tags: Option<Vec<Text>>,
            /// The status page's group (default: the first tag, else the region selector).
            pub group: Option<Text>,
            /// Shown on the public status page (default false).
            pub public: Option<bool>,
            pub labels: Option<Ordered<Text>>,
            pub vars: Option<Ordered<VarValue>>,
            #[schemars(with = "Option<Vec<super::groups::StepItem>>")]
            pub steps: Option<Vec<Value>>,
            // The one-step shorthand; typed later as a step.
            $($(
                #[serde(rename = $key)]
                pub $field: Option<$short<$model>>,
            )?)*
            #[schemars(with = "Option<ExpectModel>")]
            pub expect: Option<Value>,
            #[schemars(with = "Option<OneOrMany>")]
            pub resolver: Option<Value>,
            #[schemars(with = "Option<Ordered<CaptureModel>>")]
            pub capture: Option<Value>,
            #[schemars(with = "Option<RetryModel>")]
            pub retry: Option<Value>,
            /// Steps run before `steps` (once per connection life with `session: persistent`).
            #[schemars(with = "Option<Vec<super::groups::StepItem>>")]
            pub setup: Option<Vec<Value>>,
            /// Steps run after `steps`, whatever happened (persistent: when the session ends).
            #[schemars(with = "Option<Vec<super::groups::StepItem>>")]
            pub teardown: Option<Vec<Value>>,
            /// Reusable step groups: name → {params, steps}, used as a step with `use: name`.
            #[schemars(with = "Option<std::collections::BTreeMap<String, super::groups::GroupModel>>")]
            #[allow(dead_code)] // read from the raw mapping (config::groups)
            pub groups: Option<Value>,
            /// Files (relative to this one) whose `groups:` this scenario may use.
            #[schemars(with = "Option<Vec<String>>")]
            #[allow(dead_code)] // read from the raw mapping (config::groups)
            pub include: Option<Value>,
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

        impl ScenarioModel {
            /// The one-step shorthand kinds written, with their raw mappings.
            pub fn shorthand(&self) -> Vec<(&'static str, &Value)> {
                let mut out = Vec::new();
                $($(
                    let v: &Option<$short<$model>> = &self.$field;
                    if let Some(v) = v {
                        out.push(($key, &v.0));
                    }
                )?)*
                out
            }
        }

        // One step as written.
        #[derive(Debug, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct StepModel {
            pub name: Option<Text>,
            pub timeout: Option<Dur>,
            pub resolver: Option<OneOrMany>,
            pub expect: Option<ExpectModel>,
            $(
                #[serde(rename = $key)]
                pub $field: Option<$model>,
            )*
            pub capture: Option<Ordered<CaptureModel>>,
            pub retry: Option<RetryModel>,
        }

        impl StepModel {
            /// The kinds the step writes (exactly one, when it is right).
            pub fn kinds(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(if self.$field.is_some() {
                    out.push($key);
                })*
                out
            }

            /// Captures written inside the kind's own mapping, with the kind.
            pub fn inner_captures(&self) -> Vec<(&'static str, &Ordered<CaptureModel>)> {
                let mut out = Vec::new();
                $(if let Some(c) = self.$field.as_ref().and_then(StepKind::inner_captures) {
                    out.push(($key, c));
                })*
                out
            }

            /// The connection the step opens, with its kind (the first kind written).
            pub fn opens_connection(&self) -> Option<(&'static str, &str)> {
                $(if let Some(m) = &self.$field {
                    return m.opens_connection().map(|n| ($key, n));
                })*
                None
            }

            /// The connection the step uses, with its kind (the first kind written).
            pub fn uses_connection(&self) -> Option<(&'static str, &str)> {
                $(if let Some(m) = &self.$field {
                    return m.uses_connection().map(|n| ($key, n));
                })*
                None
            }

            /// Check what a step built per run allows before its templates are rendered.
            pub fn check_unrendered(&self, base: &str, cx: &mut Cx) {
                $(if let Some(m) = &self.$field {
                    return m.check_unrendered(&key_path(base, $key), cx);
                })*
            }

            /// Whether building the step again gives the same step ([`StepKind::rebuilds_the_same`]).
            pub fn rebuilds_the_same(&self) -> bool {
                $(if let Some(m) = &self.$field {
                    return m.rebuilds_the_same();
                })*
                true
            }

            /// Build the step's kind (the first one written) at `base`.
            pub fn build_kind(&self, base: &str, at: At<'_>, cx: &mut Cx) -> Option<Action> {
                $(if let Some(m) = &self.$field {
                    let path = key_path(base, $key);
                    return m.build(&At { path: &path, ..at }, cx);
                })*
                None
            }
        }
    };
}

step_kinds! {
    "http" => http: http::HttpModel, Shorthand;
    "tcp" => tcp: tcp::TcpModel, Shorthand;
    "dns" => dns: dns::DnsModel, Shorthand;
    "icmp" => icmp: icmp::IcmpModel, Shorthand;
    "tls" => tls: tls::TlsProbeModel, Shorthand;
    "ws.connect" => ws_connect: ws::WsConnectModel;
    "ws.send" => ws_send: ws::WsSendModel;
    "ws.expect" => ws_expect: ws::WsExpectModel;
    "ws.close" => ws_close: ws::WsCloseModel;
    "mqtt.connect" => mqtt_connect: mqtt::MqttConnectModel;
    "mqtt.subscribe" => mqtt_subscribe: mqtt::MqttSubscribeModel;
    "mqtt.publish" => mqtt_publish: mqtt::MqttPublishModel;
    "mqtt.expect" => mqtt_expect: mqtt::MqttExpectModel;
    "mqtt.close" => mqtt_close: mqtt::MqttCloseModel;
    "tcp.connect" => tcp_connect: tcp_conn::TcpConnectModel;
    "tcp.send" => tcp_send: tcp_conn::TcpSendModel;
    "tcp.expect" => tcp_expect: tcp_conn::TcpExpectModel;
    "tcp.starttls" => tcp_starttls: tcp_conn::TcpStartTlsModel;
    "tcp.close" => tcp_close: tcp_conn::TcpCloseModel;
    "sleep" => sleep: sleep::SleepModel;
}
