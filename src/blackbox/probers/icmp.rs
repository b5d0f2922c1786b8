//! The `icmp` prober: the target is a bare host.

use sonde_probes::icmp::IcmpRequest;

use super::{bracketed, family_refused, unresolved, Probe};
use crate::blackbox::metrics;

pub async fn probe(spec: &IcmpRequest, p: Probe<'_>) -> bool {
    let Probe {
        target,
        deadline,
        log,
        registry: r,
        ..
    } = p;
    let mut req = spec.clone();
    req.host = target.to_string();
    let o = match bracketed(target).or_else(|| family_refused(&req.host, req.ip)) {
        Some(why) => unresolved(why),
        None => sonde_probes::icmp::probe(&req, deadline).await,
    };
    log.outcome(&o);
    metrics::icmp(r, Some(&o));
    o.success()
}
