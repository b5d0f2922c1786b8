//! The `tcp` prober: the target is `host:port`; `hostname` names the TLS server.

use super::{family_refused, resolved_then_failed, unresolved, Probe};
use crate::blackbox::handler::BadRequest;
use crate::blackbox::metrics;
use crate::config::blackbox::module::{parse_port, split_host_port, TcpSpec};

pub async fn probe(spec: &TcpSpec, p: Probe<'_>) -> Result<bool, BadRequest> {
    let Probe {
        target,
        hostname,
        deadline,
        log,
        registry: r,
    } = p;
    let (host, port) = match split_host_port(target) {
        Ok(hp) => hp,
        Err(e) => {
            log.line(
                "error",
                "Error splitting target address and port",
                &[("err", &e)],
            );
            metrics::tcp(r, false, None);
            return Ok(false);
        }
    };
    let mut req = spec.req.clone();
    req.host = host;
    let port = parse_port(&port, target);
    req.port = *port.as_ref().unwrap_or(&0);
    if let Some(h) = hostname.filter(|h| !h.is_empty()) {
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
        (None, Ok(_)) => sonde_probes::tcp::probe(&req, deadline).await,
    };
    log.outcome(&o);
    for line in &o.facts.transcript {
        log.line("debug", "Dialogue", &[("line", line)]);
    }
    metrics::tcp(r, true, Some(&o));
    metrics::expect_info(r, &spec.expect_labels, &o);
    Ok(o.success())
}
