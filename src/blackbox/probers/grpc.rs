//! The `grpc` prober: the target is read as a URL, as blackbox's http prober reads it.

use super::{family_refused, unresolved, Probe};
use crate::blackbox::metrics;
use crate::config::blackbox::module::{http_url, system_resolver, GrpcSpec};

pub async fn probe(spec: &GrpcSpec, run: Probe<'_>) -> bool {
    let url = match http_url(run.target) {
        Ok(url) => url,
        Err(e) => {
            run.log
                .line("error", "Could not parse target URL", &[("err", &e)]);
            metrics::grpc(run.registry, None);
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
        policy: run.guard.map(|g| g.policy),
    };
    let o = match family_refused(&req.host, req.ip) {
        Some(why) => unresolved(why),
        None => sonde_probes::grpc::probe(&req, run.deadline).await,
    };
    run.log.outcome(&o);
    metrics::grpc(run.registry, Some(&o));
    o.success()
}
