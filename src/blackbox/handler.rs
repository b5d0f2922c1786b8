//! One blackbox-style probe: the timeout blackbox would give it, the target read as the module's
//! prober reads it, the probe itself, and its metrics and log. Shared by `/probe` and
//! `sonde probe`.

use std::time::{Duration, Instant as StdInstant, SystemTime};

use http::header::{HeaderValue, HOST};
use std::net::IpAddr;

use sonde_probes::resolve::{IpProtocol, ResolveOptions};
use sonde_probes::{fmt_duration, Event, FailureReason, Outcome};
use tokio::time::Instant;

use super::debug::logfmt;
use super::metrics::{self, HttpStage, Registry};
use crate::config::blackbox::module::{http_url, parse_port, split_host_port, Module, Spec};

/// blackbox's timeout when Prometheus sends no `X-Prometheus-Scrape-Timeout-Seconds`.
pub const NO_HEADER_TIMEOUT_SECS: f64 = 120.0;

/// blackbox's `getTimeout`: the scrape timeout from the header (120 s without one) minus the
/// offset, replaced by the module's timeout when that is shorter — or when the offset leaves
/// nothing. Err: the header is not a number (blackbox answers 500).
pub fn timeout_seconds(
    header: Option<&str>,
    module_timeout: Option<Duration>,
    offset: f64,
) -> Result<f64, String> {
    let mut t = match header.filter(|h| !h.is_empty()) {
        Some(h) => h
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("strconv.ParseFloat: parsing {h:?}: invalid syntax"))?,
        None => 0.0,
    };
    if t == 0.0 {
        t = NO_HEADER_TIMEOUT_SECS;
    }
    let max = t - offset;
    let module = module_timeout.map(|d| d.as_secs_f64()).unwrap_or(0.0);
    Ok(if (module > 0.0 && module < max) || max < 0.0 {
        module
    } else {
        max
    })
}

/// Seconds (possibly negative, NaN or huge, from a header) as a deadline: clamped to 0–1 day.
pub fn duration_from_secs(s: f64) -> Duration {
    if s.is_nan() || s <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(s.min(86_400.0))
}

/// What a probe produced.
pub struct Report {
    pub success: bool,
    pub registry: Registry,
    /// logfmt lines for the debug output.
    pub log: Vec<String>,
}

/// A `/probe` request that blackbox refuses before probing (HTTP 400).
#[derive(Debug)]
pub struct BadRequest(pub String);

struct Log {
    lines: Vec<String>,
    module: String,
    target: String,
    /// Only a debug answer shows the log; a plain scrape does not pay for formatting it.
    keep: bool,
}

impl Log {
    fn line(&mut self, level: &str, msg: &str, extra: &[(&str, &str)]) {
        if !self.keep {
            return;
        }
        let ts = crate::time::rfc3339(SystemTime::now());
        let mut pairs: Vec<(&str, &str)> = vec![
            ("ts", &ts),
            ("module", &self.module),
            ("target", &self.target),
            ("level", level),
            ("msg", msg),
        ];
        pairs.extend_from_slice(extra);
        self.lines.push(logfmt(&pairs));
    }

    fn events(&mut self, events: &[Event]) {
        for e in events {
            let at = format!("{:.6}", e.at.as_secs_f64());
            let msg = e.message.clone();
            self.line("info", &msg, &[("at_seconds", &at)]);
        }
    }

    fn outcome<F>(&mut self, o: &Outcome<F>) {
        if let Some(a) = o.remote_addr {
            let ip = a.ip().to_string();
            self.line("info", "Resolved target address", &[("ip", &ip)]);
        }
        self.events(&o.events);
        let phases: Vec<String> = o
            .timings
            .iter()
            .map(|(p, d)| format!("{}={}", p.as_str(), fmt_duration(d)))
            .collect();
        if !phases.is_empty() {
            let p = phases.join(" ");
            self.line("info", "Phases", &[("durations", &p)]);
        }
        if let Some(f) = &o.failure {
            let reason = f.reason.as_str();
            self.line(
                "error",
                "Failure",
                &[("reason", reason), ("err", &f.message)],
            );
        }
    }
}

/// What `/probe` adds to a probe so it can neither leave the allow-list (through a redirect, or
/// a name that resolves anew) nor come back to sonde (see [`super::guard`]). The marker is sent
/// by HTTP probes; tcp and grpc probes ask the policy before connecting.
pub struct Guarded {
    pub policy: sonde_probes::policy::Policy,
    /// The `X-Sonde-Probe` chain to send.
    pub marker: HeaderValue,
}

/// Run `module` against `target` within `timeout`. `hostname` is `/probe`'s `hostname`
/// parameter; `keep_log` asks for the debug log. Err: blackbox would answer 400 without probing.
pub async fn run(
    module: &Module,
    target: &str,
    hostname: Option<&str>,
    timeout: Duration,
    keep_log: bool,
) -> Result<Report, BadRequest> {
    run_guarded(module, target, hostname, timeout, keep_log, None).await
}

/// [`run`], with `/probe`'s guard on http, tcp and grpc probes.
pub async fn run_guarded(
    module: &Module,
    target: &str,
    hostname: Option<&str>,
    timeout: Duration,
    keep_log: bool,
    guard: Option<Guarded>,
) -> Result<Report, BadRequest> {
    let mut log = Log {
        lines: Vec::new(),
        module: module.name.clone(),
        target: target.to_string(),
        keep: keep_log,
    };
    let timeout_text = format!("{}", timeout.as_secs_f64());
    log.line(
        "info",
        "Beginning probe",
        &[
            ("probe", module.prober.as_str()),
            ("timeout_seconds", &timeout_text),
        ],
    );
    let started = StdInstant::now();
    let deadline = Instant::now() + timeout;
    let mut r = Registry::default();
    let success = match &module.spec {
        Spec::Http(spec) => {
            let mut req = spec.req.clone();
            if let Some(g) = guard {
                req.headers.insert(super::guard::MARKER, g.marker);
                req.policy = Some(g.policy);
            }
            if let Some(h) = hostname.filter(|h| !h.is_empty()) {
                if let Some(existing) = req.headers.get(HOST) {
                    if existing.as_bytes() != h.as_bytes() {
                        return Err(BadRequest(format!(
                            "host header defined both in module configuration ({}) and with URL-parameter 'hostname' ({h})",
                            String::from_utf8_lossy(existing.as_bytes())
                        )));
                    }
                }
                let v = HeaderValue::from_str(h)
                    .map_err(|_| BadRequest(format!("invalid hostname {h:?}")))?;
                req.headers.insert(HOST, v);
            }
            match http_url(target) {
                Err(e) => {
                    log.line("error", "Could not parse target URL", &[("err", &e)]);
                    metrics::http(&mut r, HttpStage::BadTarget, None);
                    false
                }
                Ok(url) => {
                    if crate::config::blackbox::module::no_proxy_matches(
                        &spec.no_proxy,
                        url.host_str().unwrap_or(""),
                    ) {
                        req.proxy = None;
                    }
                    if let Some(env) = &spec.env_proxy {
                        req.proxy = env.for_url(&url);
                    }
                    req.url = url;
                    let host = req.url.host_str().unwrap_or_default().to_string();
                    let token = match (&spec.oauth2, family_refused(&host, req.ip)) {
                        (Some(token_req), None) => {
                            Some(fetch_token(token_req, deadline, &mut log).await)
                        }
                        _ => None,
                    };
                    let mut o = match (family_refused(&host, req.ip), token) {
                        (Some(why), _) => unresolved(why),
                        (None, Some(Err(why))) => {
                            // Go fails inside the client, after blackbox resolved the target.
                            resolved_then_failed(
                                &req.resolver,
                                host.trim_start_matches('[').trim_end_matches(']'),
                                req.ip,
                                why,
                            )
                            .await
                        }
                        (None, Some(Ok(auth))) => {
                            req.auth = Some(auth);
                            sonde_probes::http::probe(&req, deadline).await
                        }
                        (None, None) => sonde_probes::http::probe(&req, deadline).await,
                    };
                    as_go_counts_redirects(&req, &mut o);
                    log.outcome_http(&o);
                    metrics::http(&mut r, HttpStage::Probed, Some(&o));
                    o.success()
                }
            }
        }
        Spec::Tcp(spec) => {
            match split_host_port(target) {
                Err(e) => {
                    log.line(
                        "error",
                        "Error splitting target address and port",
                        &[("err", &e)],
                    );
                    metrics::tcp(&mut r, false, None);
                    false
                }
                Ok((host, port)) => {
                    let mut req = spec.req.clone();
                    req.host = host;
                    req.policy = guard.map(|g| g.policy);
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
                    metrics::tcp(&mut r, true, Some(&o));
                    metrics::expect_info(&mut r, &spec.expect_labels, &o);
                    o.success()
                }
            }
        }
        Spec::Icmp(spec) => {
            let mut req = spec.clone();
            req.host = target.to_string();
            let o = match bracketed(target).or_else(|| family_refused(&req.host, req.ip)) {
                Some(why) => unresolved(why),
                None => sonde_probes::icmp::probe(&req, deadline).await,
            };
            log.outcome(&o);
            metrics::icmp(&mut r, Some(&o));
            o.success()
        }
        Spec::Dns(spec) => {
            let mut req = spec.clone();
            let (host, port) = match split_host_port(target) {
                Ok((h, p)) => (h, Some(p)),
                Err(_) => (target.to_string(), None),
            };
            let port = match port.map(|p| parse_port(&p, target)) {
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
                (None, Ok(_)) => sonde_probes::dns::probe(&req, deadline).await,
            };
            log.outcome(&o);
            metrics::dns(&mut r, soa, Some(&o));
            o.success()
        }
        Spec::Grpc(spec) => match http_url(target) {
            Err(e) => {
                log.line("error", "Could not parse target URL", &[("err", &e)]);
                metrics::grpc(&mut r, None);
                false
            }
            Ok(url) => {
                let host = url
                    .host_str()
                    .unwrap_or_default()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                // blackbox applies `hostname` to http and tcp modules only.
                let tls_client = spec.tls_spec.client.clone();
                let req = sonde_probes::grpc::GrpcRequest {
                    host,
                    port: url.port().unwrap_or(443),
                    resolver: crate::config::blackbox::module::system_resolver(),
                    ip: spec.ip,
                    tls: spec.tls,
                    tls_client,
                    service: spec.service.clone(),
                    policy: guard.map(|g| g.policy),
                };
                let o = match family_refused(&req.host, req.ip) {
                    Some(why) => unresolved(why),
                    None => sonde_probes::grpc::probe(&req, deadline).await,
                };
                log.outcome(&o);
                metrics::grpc(&mut r, Some(&o));
                o.success()
            }
        },
    };
    let duration = started.elapsed().as_secs_f64();
    metrics::common(&mut r, success, duration);
    let d = duration.to_string();
    if success {
        log.line("info", "Probe succeeded", &[("duration_seconds", &d)]);
    } else {
        log.line("error", "Probe failed", &[("duration_seconds", &d)]);
    }
    Ok(Report {
        success,
        registry: r,
        log: log.lines,
    })
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

/// `oauth2`: fetch a token (client credentials) before the probe, as Go's oauth2 transport
/// does for the first request of a new client. Err: why the token could not be had.
async fn fetch_token(
    token_req: &sonde_probes::http::HttpRequest,
    deadline: tokio::time::Instant,
    log: &mut Log,
) -> Result<sonde_probes::http::Auth, String> {
    let o = sonde_probes::http::probe(token_req, deadline).await;
    let url = token_req.url.as_str().to_string();
    if let Some(f) = &o.failure {
        let why = format!("oauth2: cannot fetch token from {url}: {}", f.message);
        log.line("error", "OAuth2 token request failed", &[("err", &why)]);
        return Err(why);
    }
    let json: serde_json::Value = serde_json::from_slice(&o.facts.body)
        .map_err(|e| format!("oauth2: cannot fetch token: the answer is not JSON: {e}"))?;
    let token = json["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "oauth2: server response missing access_token".to_string())?;
    log.line("info", "OAuth2 token fetched", &[("token_url", &url)]);
    Ok(sonde_probes::http::Auth::Bearer(token.to_string()))
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

/// What blackbox's Go client reports differs from what the probe saw in three ways:
/// - it calls blackbox's redirect check with the hops so far *before* refusing to follow, so
///   blackbox counts a redirect it did not follow: 1 for a 3xx with `Location` under
///   `follow_redirects: false` (whose body it then never reads), 11 when it gives up after 10;
/// - it counts body bytes through the `body_size_limit` reader, so never more than the limit.
fn as_go_counts_redirects(
    req: &sonde_probes::http::HttpRequest,
    o: &mut sonde_probes::http::HttpOutcome,
) {
    let f = &mut o.facts;
    let is_redirect = matches!(f.status, Some(301 | 302 | 303 | 307 | 308))
        && f.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("location") && !v.trim().is_empty());
    // blackbox reads the body through a limit of `body_size_limit` bytes and counts what it
    // read: never more than the limit.
    if let Some(limit) = req.body_size_limit {
        f.body_bytes = f.body_bytes.min(limit);
        f.decoded_bytes = f.decoded_bytes.map(|n| n.min(limit));
    }
    if !req.follow_redirects && is_redirect {
        f.redirects = 1;
        f.body_bytes = 0;
        f.decoded_bytes = f.decoded_bytes.map(|_| 0);
    } else if o
        .failure
        .as_ref()
        .is_some_and(|x| x.message.starts_with("stopped after "))
    {
        f.redirects += 1;
    }
}

impl Log {
    fn outcome_http(&mut self, o: &sonde_probes::http::HttpOutcome) {
        if let Some(a) = o.remote_addr {
            let ip = a.ip().to_string();
            self.line("info", "Resolved target address", &[("ip", &ip)]);
        }
        self.events(&o.events);
        for (n, v) in &o.facts.request_headers {
            let h = format!("{n}: {v}");
            self.line("info", "Request header", &[("header", &h)]);
        }
        for (n, v) in &o.facts.headers {
            let h = format!("{n}: {v}");
            self.line("info", "Response header", &[("header", &h)]);
        }
        let inner = Outcome {
            failure: o.failure.clone(),
            duration: o.duration,
            timings: o.timings.clone(),
            remote_addr: None,
            events: vec![],
            facts: (),
        };
        self.outcome(&inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_follows_blackbox() {
        let s = Duration::from_secs;
        // No header: 120 s minus the offset.
        assert_eq!(timeout_seconds(None, None, 0.5).unwrap(), 119.5);
        // Header minus offset.
        assert_eq!(timeout_seconds(Some("10"), None, 0.5).unwrap(), 9.5);
        // The module's timeout when it is shorter.
        assert_eq!(timeout_seconds(Some("10"), Some(s(5)), 0.5).unwrap(), 5.0);
        // Not when it is longer.
        assert_eq!(timeout_seconds(Some("10"), Some(s(30)), 0.5).unwrap(), 9.5);
        // An offset larger than the scrape timeout: the module's (here none: 0).
        assert_eq!(timeout_seconds(Some("0.2"), None, 0.5).unwrap(), 0.0);
        assert_eq!(timeout_seconds(Some("0.2"), Some(s(3)), 0.5).unwrap(), 3.0);
        assert!(timeout_seconds(Some("ten"), None, 0.5).is_err());
    }
}
