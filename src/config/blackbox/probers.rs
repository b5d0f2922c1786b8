//! `tcp`, `icmp`, `dns` and `grpc` modules.

use std::str::FromStr;

use sonde_probes::dns::{DNSClass, DnsRequest, DnsTransport, RecordType};
use sonde_probes::icmp::{IcmpRequest, MAX_PAYLOAD};
use sonde_probes::tcp::{TcpRequest, TcpStep};

use super::model::{DnsModel, GrpcModel, IcmpModel, LabelModel, TcpModel, UnixModel};
use super::module::{system_resolver, ExpectLabels, GrpcSpec, TcpSpec};
use super::{ip_options, not_yet, tls_spec};
use crate::config::build::{Alpn, Cx};
use crate::config::locate::{index_path, key_path};
use crate::config::probe_settings::dns::{dns_checks, query_class, DnsCheckModels};
use crate::config::probe_settings::Dialect;
use crate::config::suggest;

pub(super) fn tcp(m: &TcpModel, path: &str, cx: &mut Cx) -> Option<TcpSpec> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    if m.source_ip_address.is_some() {
        not_yet(cx, &p("source_ip_address"), " for tcp");
    }
    let ip = ip_options(
        m.preferred_ip_protocol.as_deref(),
        m.ip_protocol_fallback,
        &p("preferred_ip_protocol"),
        cx,
    );
    let mut dialogue = Vec::new();
    let mut expect_labels: Vec<ExpectLabels> = Vec::new();
    let qp = p("query_response");
    for (i, item) in m.query_response.iter().flatten().enumerate() {
        let ip = index_path(&qp, i);
        // blackbox's order within one item: expect, expect_bytes, send, starttls.
        let mut expect = None;
        if let Some(e) = item.expect.as_deref().filter(|e| !e.is_empty()) {
            if let Some(r) = cx.bytes_regex(e, &key_path(&ip, "expect")) {
                expect = Some((dialogue.len(), r.clone()));
                dialogue.push(TcpStep::Expect(r));
            }
        }
        if let Some(labels) = item.labels.as_ref().filter(|l| !l.is_empty()) {
            let lp = key_path(&ip, "labels");
            item_labels(labels, &lp, expect, &mut expect_labels, cx);
        }
        if let Some(b) = item.expect_bytes.as_deref().filter(|b| !b.is_empty()) {
            dialogue.push(TcpStep::ExpectBytes(b.as_bytes().to_vec()));
        }
        if let Some(s) = item.send.as_deref().filter(|s| !s.is_empty()) {
            dialogue.extend(send_step(s, &key_path(&ip, "send"), cx));
        }
        if item.starttls == Some(true) {
            dialogue.push(TcpStep::StartTls);
        }
    }
    let tls = tls_spec(m.tls_config.as_ref(), &p("tls_config"), Alpn::None, cx);
    if cx.errors.len() > before {
        return None;
    }
    let tls = tls?;
    Some(TcpSpec {
        req: TcpRequest {
            host: String::new(),
            port: 0,
            resolver: system_resolver(),
            ip,
            tls: m.tls.unwrap_or(false),
            tls_client: tls.client.clone(),
            dialogue,
            policy: None,
            unix: None,
        },
        tls,
        expect_labels,
    })
}

/// A `send:` as text, or as the bytes a `!!binary` base64 value stands for (Go's YAML decodes
/// the tag into the string's bytes; blackbox 0.28's `postgresql` module relies on it).
fn send_step(s: &str, at: &str, cx: &mut Cx) -> Option<TcpStep> {
    if !cx.index.binary.contains(at) {
        return Some(TcpStep::Send(s.to_string()));
    }
    let clean: String = s.split_whitespace().collect();
    match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, clean) {
        Ok(b) => Some(TcpStep::SendBytes(b)),
        Err(e) => {
            cx.err_value(
                at,
                format!("invalid !!binary value: {e} — expected base64 like AAAACATSFi8="),
            );
            None
        }
    }
}

/// A `unix` module: the tcp prober's dialogue and TLS over the socket the target names.
pub(super) fn unix(m: &UnixModel, path: &str, cx: &mut Cx) -> Option<TcpSpec> {
    let as_tcp = TcpModel {
        query_response: m.query_response.clone(),
        tls: m.tls,
        tls_config: m.tls_config.clone(),
        ..TcpModel::default()
    };
    tcp(&as_tcp, path, cx)
}

/// One `query_response` item's `labels`, for the `expect` at dialogue step `expect` (if any).
fn item_labels(
    labels: &[LabelModel],
    lp: &str,
    expect: Option<(usize, regex::bytes::Regex)>,
    expect_labels: &mut Vec<ExpectLabels>,
    cx: &mut Cx,
) {
    let mut out = Vec::new();
    for (j, l) in labels.iter().enumerate() {
        if !crate::names::valid_label_name(&l.name) {
            cx.err_value(
                &key_path(&index_path(lp, j), "name"),
                format!("invalid label name {:?} — expected letters, digits and _, not starting with a digit", l.name),
            );
        }
        out.push((l.name.clone(), l.value.clone()));
    }
    // One `probe_expect_info` family: every item's label names must agree.
    if let Some(first) = expect_labels.first() {
        let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        if names(&first.labels) != names(&out) {
            cx.err_key(
                lp,
                "labels with other names than an earlier item's — expected the same label names in every item (they share the probe_expect_info family)",
            );
        }
    }
    match expect {
        Some((step, regex)) => expect_labels.push(ExpectLabels {
            step,
            regex,
            labels: out,
        }),
        None => cx.err_key(
            lp,
            "`labels` without `expect` — expected an `expect` regex whose match the labels expand",
        ),
    }
}

pub(super) fn icmp(m: &IcmpModel, path: &str, cx: &mut Cx) -> Option<IcmpRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let ip = ip_options(
        m.preferred_ip_protocol.as_deref(),
        m.ip_protocol_fallback,
        &p("preferred_ip_protocol"),
        cx,
    );
    let ttl = match m.ttl {
        None | Some(0) => None,
        Some(t) if t < 0 => {
            cx.err_value(&p("ttl"), "\"ttl\" cannot be negative — expected 0 to 255");
            None
        }
        Some(t) if t > 255 => {
            cx.err_value(&p("ttl"), "\"ttl\" cannot exceed 255 — expected 0 to 255");
            None
        }
        Some(t) => Some(t as u32),
    };
    let payload_size = match m.payload_size {
        None => 0,
        Some(n) if n < 0 || n as usize > MAX_PAYLOAD => {
            cx.err_value(
                &p("payload_size"),
                format!("payload_size {n} — expected 0 to {MAX_PAYLOAD}"),
            );
            0
        }
        Some(n) => n as usize,
    };
    let source = match m.source_ip_address.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                cx.err_value(
                    &p("source_ip_address"),
                    format!("{s:?} is not an IP address — expected a local address like 192.0.2.1"),
                );
                None
            }
        },
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(IcmpRequest {
        host: String::new(),
        resolver: system_resolver(),
        ip,
        payload_size,
        ttl,
        dont_fragment: m.dont_fragment.unwrap_or(false),
        source,
    })
}

pub(super) fn dns(m: &DnsModel, path: &str, cx: &mut Cx) -> Option<DnsRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    if m.dns_over_tls == Some(true) {
        not_yet(cx, &p("dns_over_tls"), "");
    }
    if m.source_ip_address.is_some() {
        not_yet(cx, &p("source_ip_address"), " for dns");
    }
    let ip = ip_options(
        m.preferred_ip_protocol.as_deref(),
        m.ip_protocol_fallback,
        &p("preferred_ip_protocol"),
        cx,
    );
    let query_name = m.query_name.clone().unwrap_or_default();
    if query_name.trim().is_empty() {
        cx.err_key(
            path,
            "query name must be set for DNS module — expected `query_name:`",
        );
    } else if let Err(e) = sonde_probes::dns::parse_query_name(&query_name) {
        cx.err_value(&p("query_name"), format!("{e} — expected a DNS name"));
    }
    let (query_type, query_class) = query_type_class(m, path, cx);
    let transport = match m.transport_protocol.as_deref().map(str::trim) {
        None | Some("") | Some("udp") => DnsTransport::Udp,
        Some("tcp") => DnsTransport::Tcp,
        Some(other) => {
            cx.err_value(
                &p("transport_protocol"),
                format!(
                    "unknown value `{other}` for `transport_protocol`{}",
                    suggest::hint(other, &["udp", "tcp"])
                ),
            );
            DnsTransport::Udp
        }
    };
    let checks = dns_checks(
        DnsCheckModels {
            valid_rcodes: m.valid_rcodes.as_ref(),
            answer: m.validate_answer_rrs.as_ref(),
            authority: m.validate_authority_rrs.as_ref(),
            additional: m.validate_additional_rrs.as_ref(),
        },
        path,
        Dialect::Blackbox,
        cx,
    );
    if cx.errors.len() > before {
        return None;
    }
    Some(DnsRequest {
        server: String::new(),
        port: 53,
        resolver: system_resolver(),
        ip,
        query_name: query_name.trim().to_string(),
        query_type: query_type?,
        query_class: query_class?,
        transport,
        recursion_desired: m.recursion_desired.unwrap_or(true),
        checks,
    })
}

/// `query_type` (default ANY) and `query_class` (default IN), any case.
fn query_type_class(
    m: &DnsModel,
    path: &str,
    cx: &mut Cx,
) -> (Option<RecordType>, Option<DNSClass>) {
    let p = |k: &str| key_path(path, k);
    let qtype = m
        .query_type
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("ANY")
        .to_ascii_uppercase();
    let query_type = match RecordType::from_str(&qtype) {
        Ok(t) => Some(t),
        Err(_) => {
            cx.err_value(
                &p("query_type"),
                format!(
                    "unknown DNS query type `{qtype}` — expected a type like A, AAAA, MX or SOA"
                ),
            );
            None
        }
    };
    let qclass = m
        .query_class
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("IN")
        .to_ascii_uppercase();
    let query_class = query_class(&qclass, &qclass, &p("query_class"), cx);
    (query_type, query_class)
}

pub(super) fn grpc(m: &GrpcModel, path: &str, cx: &mut Cx) -> Option<GrpcSpec> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(path, k);
    let ip = ip_options(
        m.preferred_ip_protocol.as_deref(),
        m.ip_protocol_fallback,
        &p("preferred_ip_protocol"),
        cx,
    );
    let tls_spec = tls_spec(m.tls_config.as_ref(), &p("tls_config"), Alpn::Grpc, cx);
    if cx.errors.len() > before {
        return None;
    }
    Some(GrpcSpec {
        service: m.service.clone().unwrap_or_default(),
        tls: m.tls.unwrap_or(false),
        ip,
        tls_spec: tls_spec?,
    })
}
