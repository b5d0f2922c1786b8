//! `icmp` steps: one echo request.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_probes::icmp::IcmpRequest;

use super::{At, StepKind};
use crate::config::build::{ip_options, Cx};
use crate::config::locate::key_path;
use crate::config::scenario::Action;
use crate::config::targets;
use crate::config::units::IpProto;

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

impl StepKind for IcmpModel {
    const ARTICLE: &'static str = "an";

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        icmp(self, at, cx).map(|r| Action::Icmp(Box::new(r)))
    }
}

pub fn icmp(m: &IcmpModel, at: &At<'_>, cx: &mut Cx) -> Option<IcmpRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(at.path, k);
    let host = cx.ok(&p("target"), targets::bare_host(&m.target));
    let ttl = match m.ttl {
        Some(t) if !(1..=255).contains(&t) => {
            cx.err_value(
                &p("ttl"),
                format!("ttl {t} is out of range — expected 1 to 255"),
            );
            None
        }
        t => t.map(|t| t as u32),
    };
    let source = match &m.source_ip_address {
        Some(s) => match s.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                cx.err_value(
                    &p("source_ip_address"),
                    format!("invalid source_ip_address {s:?} — expected an IP address"),
                );
                None
            }
        },
        None => None,
    };
    let resolver = host
        .as_ref()
        .and_then(|h| cx.resolver(at.servers, h, &p("target")));
    if cx.errors.len() > before {
        return None;
    }
    Some(IcmpRequest {
        host: host?,
        resolver: resolver?,
        ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
        payload_size: usize::from(m.payload_size.unwrap_or(56)),
        ttl,
        dont_fragment: m.dont_fragment.unwrap_or(false),
        source,
    })
}
