//! The `unix` prober (blackbox 0.28): the target is a Unix domain socket's path, and the module's
//! `query_response` dialogue (and TLS) runs over it as over TCP. `hostname` names the TLS server.
//!
//! `/probe` refuses socket targets whenever `--probe.allow-target` is set (the allow-list names
//! hosts and networks); without one, any socket sonde's user may open can be probed, as with
//! blackbox — with the dialogue the module fixes, never one the request chooses.

use super::Probe;
use crate::blackbox::handler::BadRequest;
use crate::blackbox::metrics;
use crate::config::blackbox::module::TcpSpec;

pub async fn probe(spec: &TcpSpec, run: Probe<'_>) -> Result<bool, BadRequest> {
    let mut req = spec.req.clone();
    req.unix = Some(run.target.into());
    // Go's TLS dial names the server after the address when tls_config gives no server_name.
    req.host = run.target.to_string();
    if let Some(h) = run.hostname.filter(|h| !h.is_empty()) {
        req.tls_client = spec
            .tls
            .with_default_server_name(h)
            .map_err(|e| BadRequest(format!("cannot use hostname {h:?}: {e}")))?;
    }
    let o = sonde_probes::tcp::probe(&req, run.deadline).await;
    run.log.outcome(&o);
    for line in &o.facts.transcript {
        run.log.line("debug", "Dialogue", &[("line", line)]);
    }
    metrics::tcp(run.registry, true, Some(&o));
    metrics::expect_info(run.registry, &spec.expect_labels, &o);
    Ok(o.success())
}
