//! `dns` steps: one query, and blackbox_exporter's checks on the answer.

use std::str::FromStr;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_probes::dns::{DnsRequest, DnsTransport, RecordType};

use super::{At, StepKind};
use crate::config::build::{ip_options, Cx};
use crate::config::locate::key_path;
use crate::config::model::RrValidateModel;
use crate::config::probe_settings::dns::{dns_checks, query_class, DnsCheckModels};
use crate::config::probe_settings::Dialect;
use crate::config::scenario::Action;
use crate::config::suggest;
use crate::config::targets;
use crate::config::units::{IpProto, Transport};

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

impl StepKind for DnsModel {
    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        dns(self, at, cx).map(|r| Action::Dns(Box::new(r)))
    }
}

/// Record types offered in "did you mean" hints (any type hickory knows is accepted).
const DNS_TYPES: [&str; 22] = [
    "A",
    "AAAA",
    "ANY",
    "AXFR",
    "CAA",
    "CNAME",
    "DNSKEY",
    "DS",
    "HINFO",
    "HTTPS",
    "IXFR",
    "MX",
    "NAPTR",
    "NS",
    "NULL",
    "OPENPGPKEY",
    "PTR",
    "SOA",
    "SRV",
    "SSHFP",
    "SVCB",
    "TLSA",
];

pub fn dns(m: &DnsModel, at: &At<'_>, cx: &mut Cx) -> Option<DnsRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(at.path, k);
    let server = cx
        .ok(&p("server"), targets::host_opt_port(&m.server, Some(53)))
        .map(|(h, port)| (h, port.unwrap_or(53)));
    if m.query_name.trim().is_empty() {
        cx.err_value(
            &p("query_name"),
            "empty `query_name` — expected the name to look up, like example.com",
        );
    }
    let query_type = word(
        m.query_type.as_deref(),
        "A",
        &p("query_type"),
        ("DNS query type", &DNS_TYPES),
        RecordType::from_str,
        cx,
    );
    let qclass_text = m
        .query_class
        .as_deref()
        .unwrap_or("IN")
        .trim()
        .to_ascii_uppercase();
    let query_class = query_class(
        &qclass_text,
        m.query_class.as_deref().unwrap_or_default(),
        &p("query_class"),
        cx,
    );
    let checks = dns_checks(
        DnsCheckModels {
            valid_rcodes: m.valid_rcodes.as_ref(),
            answer: m.validate_answer_rrs.as_ref(),
            authority: m.validate_authority_rrs.as_ref(),
            additional: m.validate_additional_rrs.as_ref(),
        },
        at.path,
        Dialect::Scenario,
        cx,
    );
    let resolver = server
        .as_ref()
        .and_then(|(h, _)| cx.resolver(at.servers, h, &p("server")));
    if cx.errors.len() > before {
        return None;
    }
    let (server, port) = server?;
    Some(DnsRequest {
        server,
        port,
        resolver: resolver?,
        ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
        query_name: m.query_name.trim().to_string(),
        query_type: query_type?,
        query_class: query_class?,
        transport: match m.transport_protocol.unwrap_or(Transport::Udp) {
            Transport::Udp => DnsTransport::Udp,
            Transport::Tcp => DnsTransport::Tcp,
        },
        recursion_desired: m.recursion_desired.unwrap_or(true),
        checks,
    })
}

/// A record type or class (`written`, else `default`), or `None` after saying it is unknown.
fn word<T, E>(
    written: Option<&str>,
    default: &str,
    path: &str,
    (what, known): (&str, &[&str]),
    parse: fn(&str) -> Result<T, E>,
    cx: &mut Cx,
) -> Option<T> {
    let text = written.unwrap_or(default).trim().to_ascii_uppercase();
    match parse(&text) {
        Ok(t) => Some(t),
        Err(_) => {
            cx.err_value(
                path,
                format!(
                    "unknown {what} `{}`{}",
                    written.unwrap_or_default(),
                    suggest::hint(&text, known)
                ),
            );
            None
        }
    }
}
