//! The `grpc` prober: the target is read as a URL, as blackbox's http prober reads it.

use super::{family_refused, unresolved, Probe};
use crate::blackbox::metrics;
use crate::config::blackbox::module::{http_url, system_resolver, GrpcSpec};

pub async fn probe(spec: &GrpcSpec, p: Probe<'_>) -> bool {
    let Probe {
        target,
        deadline,
        log,
        registry: r,
        ..
    } = p;
    let url = match http_url(target) {
        Ok(url) => url,
        Err(e) => {
            log.line("error", "Could not parse target URL", &[("err", &e)]);
            metrics::grpc(r, None);
            return false;
        }
    };
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    // blackbox applies `hostname` to http and tcp modules only.
    let req = sonde_probes::grpc::GrpcRequest {
        host,
        port: url.port().unwrap_or(443),
        resolver: system_resolver(),
        ip: spec.ip,
        tls: spec.tls,
        tls_client: spec.tls_spec.client.clone(),
        service: spec.service.clone(),
    };
    let o = match family_refused(&req.host, req.ip) {
        Some(why) => unresolved(why),
        None => sonde_probes::grpc::probe(&req, deadline).await,
    };
    log.outcome(&o);
    metrics::grpc(r, Some(&o));
    o.success()
}
