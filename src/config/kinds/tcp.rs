//! `tcp` steps: connect (optionally TLS), then a dialogue of sends and expected replies.

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_probes::tcp::{TcpRequest, TcpStep};

use super::{At, StepKind};
use crate::config::build::{ip_options, Alpn, Cx};
use crate::config::locate::{index_path, key_path};
use crate::config::model::TlsConfigModel;
use crate::config::scenario::Action;
use crate::config::targets;
use crate::config::units::IpProto;

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

impl StepKind for TcpModel {
    const EXPECT: &'static [&'static str] = &["duration", "cert_expires_in"];

    fn build(&self, at: &At<'_>, cx: &mut Cx) -> Option<Action> {
        tcp(self, at, cx).map(|r| Action::Tcp(Box::new(r)))
    }
}

pub fn tcp(m: &TcpModel, at: &At<'_>, cx: &mut Cx) -> Option<TcpRequest> {
    let before = cx.errors.len();
    let p = |k: &str| key_path(at.path, k);
    let target = cx.ok(&p("target"), targets::host_port(&m.target));
    let mut dialogue = Vec::new();
    let qp = p("query_response");
    for (i, item) in m.query_response.iter().flatten().enumerate() {
        let ip = index_path(&qp, i);
        let mut any = false;
        if let Some(e) = &item.expect {
            any = true;
            if let Some(r) = cx.bytes_regex(e, &key_path(&ip, "expect")) {
                dialogue.push(TcpStep::Expect(r));
            }
        }
        if let Some(b) = &item.expect_bytes {
            any = true;
            dialogue.push(TcpStep::ExpectBytes(b.as_bytes().to_vec()));
        }
        if let Some(s) = &item.send {
            any = true;
            dialogue.push(TcpStep::Send(s.clone()));
        }
        if let Some(st) = item.starttls {
            any = true;
            if st {
                dialogue.push(TcpStep::StartTls);
            }
        }
        if !any {
            cx.err_value(
                &ip,
                "empty `query_response` item — expected one of: expect, expect_bytes, send, starttls",
            );
        }
    }
    let tls_client = cx.tls_client(m.tls_config.as_ref(), &p("tls_config"), Alpn::None);
    let resolver = target
        .as_ref()
        .and_then(|(h, _)| cx.resolver(at.servers, h, &p("target")));
    if cx.errors.len() > before {
        return None;
    }
    let (host, port) = target?;
    Some(TcpRequest {
        host,
        port,
        resolver: resolver?,
        ip: ip_options(m.preferred_ip_protocol, m.ip_protocol_fallback),
        tls: m.tls.unwrap_or(false),
        tls_client: tls_client?,
        dialogue,
        policy: None,
        unix: None,
    })
}
