//! `tls` steps: a handshake, for the certificate chain and the session's facts.

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_probes::tls::TlsRequest;

use super::{At, StepKind};
use crate::config::build::{ip_options, Alpn, Cx};
use crate::config::locate::key_path;
use crate::config::model::TlsConfigModel;
use crate::config::scenario::Action;
use crate::config::targets;
use crate::config::units::IpProto;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsProbeModel {
    pub target: String,
    pub tls_config: Option<TlsConfigModel>,
    pub preferred_ip_protocol: Option<IpProto>,
    pub ip_protocol_fallback: Option<bool>,
}

impl StepKind for TlsProbeModel {
    const EXPECT: &'static [&'static str] = &["duration", "cert_expires_in"];

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        tls(self, at, cx).map(|r| Action::Tls(Box::new(r)))
    }
}

pub fn tls(m: &TlsProbeModel, at: &At<'_>, cx: &mut Cx) -> Option<TlsRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(at.path, k);
    let target = cx.ok(&p("target"), targets::host_port(&m.target));
    let client = cx.tls_client(m.tls_config.as_ref(), &p("tls_config"), Alpn::None);
    let resolver = target
        .as_ref()
        .and_then(|(h, _)| cx.resolver(at.servers, h, &p("target")));
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
