//! One file per prober, as blackbox_exporter keeps them: each reads its target the way that
//! prober does, fills in the module's prepared request, probes, and writes its metrics and log.
//! What several probers share — how a target fails before any traffic — is here.

pub mod dns;
pub mod grpc;
pub mod http;
pub mod icmp;
pub mod tcp;
pub mod unix;

use std::net::IpAddr;
use std::time::Duration;

use sonde_probes::resolve::{IpProtocol, ResolveOptions};
use sonde_probes::{FailureReason, Outcome};
use tokio::time::Instant;

use super::handler::Log;
use super::metrics::Registry;

/// One probe's inputs, and where its prober writes the log and the metrics.
pub struct Probe<'a> {
    pub target: &'a str,
    /// `/probe`'s `hostname` parameter; blackbox applies it to http and tcp modules only.
    pub hostname: Option<&'a str>,
    pub deadline: Instant,
    pub log: &'a mut Log,
    pub registry: &'a mut Registry,
    /// `/probe`'s guard (allow-list on every hop, no probing of sonde itself); `None` for
    /// `sonde probe`.
    pub guard: Option<crate::blackbox::handler::Guarded>,
}

/// An IP-literal target of the family a module excludes (`preferred_ip_protocol: ip6` with
/// `ip_protocol_fallback: false` and target 127.0.0.1): Go's resolver finds no address of that
/// family for it, so blackbox fails in resolution. sonde's resolver passes literals through, so
/// the check is made here.
fn family_refused(host: &str, ip: ResolveOptions) -> Option<String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr: IpAddr = bare.parse().ok()?;
    if ip.fallback {
        return None;
    }
    match (ip.preferred, addr) {
        (IpProtocol::Ip6, IpAddr::V4(_)) | (IpProtocol::Ip4, IpAddr::V6(_)) => Some(format!(
            "unable to find ip; no fallback: {bare} is not an {} address and ip_protocol_fallback is false",
            if ip.preferred == IpProtocol::Ip6 { "IPv6" } else { "IPv4" }
        )),
        _ => None,
    }
}

/// A bracketed address where Go expects a bare host (`[::1]` as an icmp target, or a dns target
/// without port): Go's resolver looks it up as a name and finds nothing.
fn bracketed(host: &str) -> Option<String> {
    (host.contains('[') || host.contains(']')).then(|| format!("lookup {host}: no such host"))
}

/// Resolve `host` as the probe would, then fail with `why` (a target whose port Go cannot dial):
/// blackbox reports the resolution, then the failure.
async fn resolved_then_failed<F: Default>(
    resolver: &sonde_probes::Resolver,
    host: &str,
    ip: ResolveOptions,
    why: String,
) -> Outcome<F> {
    let mut rec = sonde_probes::Recorder::new();
    let failure = match resolver.resolve(host, ip, &mut rec).await {
        Ok(addrs) => {
            rec.remote_addr = addrs.first().map(|a| std::net::SocketAddr::new(*a, 0));
            sonde_probes::Failure::new(FailureReason::Connect, format!("dial: {why}"))
        }
        Err(f) => f,
    };
    rec.finish(Some(failure), F::default())
}

/// The outcome of a probe that failed in resolution before any traffic.
fn unresolved<F: Default>(why: String) -> Outcome<F> {
    let mut timings = sonde_probes::Timings::default();
    timings.add(sonde_probes::Phase::Resolve, Duration::ZERO);
    Outcome {
        failure: Some(sonde_probes::Failure::new(FailureReason::Dns, why)),
        duration: Duration::ZERO,
        timings,
        remote_addr: None,
        events: vec![],
        facts: F::default(),
    }
}
