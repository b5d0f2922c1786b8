//! The `tcp` prober: the target is `host:port`; `hostname` names the TLS server.

use super::{family_refused, resolved_then_failed, unresolved, Probe};
use crate::blackbox::handler::BadRequest;
use crate::blackbox::metrics;
use crate::config::blackbox::module::{parse_port, split_host_port, TcpSpec};

pub async fn probe(spec: &TcpSpec, run: Probe<'_>) -> Result<bool, BadRequest> {
    let (host, port) = match split_host_port(run.target) {
        Ok(hp) => hp,
        Err(e) => {
            run.log.line(
                "error",
                "Error splitting target address and port",
                &[("err", &e)],
            );
            metrics::tcp(run.registry, false, None);
            return Ok(false);
        }
    };
    let mut req = spec.req.clone();
    req.host = host;
    req.policy = run.guard.map(|g| g.policy);
    let port = parse_port(&port, run.target);
    req.port = *port.as_ref().unwrap_or(&0);
    if let Some(h) = run.hostname.filter(|h| !h.is_empty()) {
        req.tls_client = spec
            .tls
            .with_default_server_name(h)
            .map_err(|e| BadRequest(format!("cannot use hostname {h:?}: {e}")))?;
    }
    let o = match (family_refused(&req.host, req.ip), port) {
        (Some(why), _) => unresolved(why),
        // Go resolves the host, then refuses to dial the port.
        (None, Err(bad_port)) => {
            resolved_then_failed(&req.resolver, &req.host, req.ip, bad_port).await
        }
        (None, Ok(_)) => sonde_probes::tcp::probe(&req, run.deadline).await,
    };
    run.log.outcome(&o);
    for line in &o.facts.transcript {
        run.log.line("debug", "Dialogue", &[("line", line)]);
    }
    metrics::tcp(run.registry, true, Some(&o));
    metrics::expect_info(run.registry, &spec.expect_labels, &o);
    Ok(o.success())
}
