//! The `icmp` prober: the target is a bare host.

use sonde_probes::icmp::IcmpRequest;

use super::{bracketed, family_refused, unresolved, Probe};
use crate::blackbox::metrics;

pub async fn probe(spec: &IcmpRequest, run: Probe<'_>) -> bool {
    let mut req = spec.clone();
    req.host = run.target.to_string();
    let o = match bracketed(run.target).or_else(|| family_refused(&req.host, req.ip)) {
        Some(why) => unresolved(why),
        None => sonde_probes::icmp::probe(&req, run.deadline).await,
    };
    run.log.outcome(&o);
    metrics::icmp(run.registry, Some(&o));
    o.success()
}
