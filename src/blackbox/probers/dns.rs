//! The `dns` prober: the target is the server, `host` or `host:port` (53 by default).

use sonde_probes::dns::DnsRequest;

use super::{bracketed, family_refused, resolved_then_failed, unresolved, Probe};
use crate::blackbox::metrics;
use crate::config::blackbox::module::{parse_port, split_host_port};

pub async fn probe(spec: &DnsRequest, run: Probe<'_>) -> bool {
    let mut req = spec.clone();
    let (host, port) = match split_host_port(run.target) {
        Ok((h, p)) => (h, Some(p)),
        Err(_) => (run.target.to_string(), None),
    };
    let port = match port.map(|p| parse_port(&p, run.target)) {
        None => Ok(53),
        Some(r) => r,
    };
    let soa = req.query_type == sonde_probes::dns::RecordType::SOA;
    req.port = *port.as_ref().unwrap_or(&53);
    let refused = bracketed(&host).or_else(|| family_refused(&host, req.ip));
    req.server = host;
    let o = match (refused, port) {
        (Some(why), _) => unresolved(why),
        // Go resolves the server, then refuses to use the port.
        (None, Err(bad_port)) => {
            resolved_then_failed(&req.resolver, &req.server, req.ip, bad_port).await
        }
        (None, Ok(_)) => sonde_probes::dns::probe(&req, run.deadline).await,
    };
    run.log.outcome(&o);
    metrics::dns(run.registry, soa, Some(&o));
    o.success()
}
