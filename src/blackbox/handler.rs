//! One blackbox-style probe: the timeout blackbox would give it, the log and the common metrics;
//! each prober (in [`super::probers`]) reads its target, probes, and writes its own metrics.
//! Shared by `/probe` and `sonde probe`.

use std::time::{Duration, Instant as StdInstant};

use sonde_probes::{Dur, Event, Outcome};
use tokio::time::Instant;

use super::metrics::{self, Registry};
use super::probe_log::ProbeLog;
use super::probers;
use crate::config::blackbox::module::{Module, Spec};

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
    /// The debug output's log, rendered when read.
    pub log: ProbeLog,
}

/// A `/probe` request that blackbox refuses before probing (HTTP 400).
#[derive(Debug)]
pub struct BadRequest(pub String);

/// The debug log of one probe, in blackbox's words.
pub struct Log {
    lines: ProbeLog,
    /// Only a probe whose log someone may read keeps it; a plain scrape does not pay for it.
    keep: bool,
}

impl Log {
    /// Whether lines are kept: a prober need not build what would be dropped.
    pub(crate) fn keeps(&self) -> bool {
        self.keep
    }

    pub(crate) fn line(&mut self, level: &'static str, msg: &str, extra: &[(&'static str, &str)]) {
        if self.keep {
            self.lines.push(level, msg, extra);
        }
    }

    /// A line with one field made of `parts` joined, e.g. `["server", ": ", "nginx"]`.
    pub(crate) fn line_joined(
        &mut self,
        level: &'static str,
        msg: &str,
        key: &'static str,
        parts: &[&str],
    ) {
        if self.keep {
            self.lines.push_joined(level, msg, key, parts);
        }
    }

    /// A line whose text fields end with one number (seconds), formatted only if read.
    pub(crate) fn line_number(
        &mut self,
        level: &'static str,
        msg: &str,
        extra: &[(&'static str, &str)],
        key: &'static str,
        value: f64,
    ) {
        if self.keep {
            self.lines.push_number(level, msg, extra, key, value);
        }
    }

    /// A line with one field written in place, e.g. `format_args!("{name}: {value}")`.
    pub(crate) fn line_fmt(
        &mut self,
        level: &'static str,
        msg: &str,
        key: &'static str,
        value: std::fmt::Arguments<'_>,
    ) {
        if self.keep {
            self.lines.push_fmt(level, msg, key, value);
        }
    }

    pub(crate) fn events(&mut self, events: &[Event]) {
        if self.keep {
            for e in events {
                self.lines.push_event(&e.message, e.at);
            }
        }
    }

    pub(crate) fn outcome<F>(&mut self, o: &Outcome<F>) {
        if !self.keep {
            return;
        }
        self.lines.hold_time();
        self.resolved(o.remote_addr);
        self.events(&o.events);
        self.phases_and_failure(&o.timings, o.failure.as_ref());
        self.lines.release_time();
    }

    /// Stamp the lines logged until [`Self::release_time`] with one time (see
    /// [`ProbeLog::hold_time`]).
    pub(crate) fn hold_time(&mut self) {
        self.lines.hold_time();
    }

    pub(crate) fn release_time(&mut self) {
        self.lines.release_time();
    }

    pub(crate) fn resolved(&mut self, addr: Option<std::net::SocketAddr>) {
        if let Some(a) = addr.filter(|_| self.keep) {
            let ip = a.ip();
            self.line_fmt(
                "info",
                "Resolved target address",
                "ip",
                format_args!("{ip}"),
            );
        }
    }

    /// The `Phases` line and, for a failed probe, the `Failure` line.
    pub(crate) fn phases_and_failure(
        &mut self,
        timings: &sonde_probes::Timings,
        failure: Option<&sonde_probes::Failure>,
    ) {
        if timings.iter().next().is_some() {
            let phases = Phases(timings);
            self.line_fmt("info", "Phases", "durations", format_args!("{phases}"));
        }
        if let Some(f) = failure {
            let reason = f.reason.as_str();
            self.line(
                "error",
                "Failure",
                &[("reason", reason), ("err", &f.message)],
            );
        }
    }
}

/// `resolve=0µs connect=15µs …`: each phase and its duration.
struct Phases<'a>(&'a sonde_probes::Timings);

impl std::fmt::Display for Phases<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (p, d)) in self.0.iter().enumerate() {
            let sep = if i > 0 { " " } else { "" };
            write!(f, "{sep}{}={}", p.as_str(), Dur(d))?;
        }
        Ok(())
    }
}

/// What `/probe` adds to a probe so it can neither leave the allow-list (through a redirect, or
/// a name that resolves anew) nor come back to sonde (see [`super::guard`]). The marker is sent
/// by HTTP probes; tcp and grpc probes ask the policy before connecting.
pub struct Guarded {
    pub policy: sonde_probes::policy::Policy,
    /// The `X-Sonde-Probe` chain to send.
    pub marker: http::HeaderValue,
    /// An http target as `/probe` already parsed it for its own checks: the prober need not
    /// parse it again.
    pub url: Option<url::Url>,
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
        lines: ProbeLog::new(&module.name, target),
        keep: keep_log,
    };
    log.line_number(
        "info",
        "Beginning probe",
        &[("probe", module.prober.as_str())],
        "timeout_seconds",
        timeout.as_secs_f64(),
    );
    let started = StdInstant::now();
    let deadline = Instant::now() + timeout;
    let mut r = Registry::default();
    let p = probers::Probe {
        target,
        hostname,
        deadline,
        log: &mut log,
        registry: &mut r,
        guard,
    };
    // Each prober's future is boxed: inline, this future would be as large as the largest of
    // them (HTTP/3's and gRPC's are tens of KiB), and every layer above — the web handler,
    // the middleware, hyper's connection task — would copy that much per request, whatever
    // the module. One allocation of the prober actually used is far cheaper.
    let success = match &module.spec {
        Spec::Http(spec) => Box::pin(probers::http::probe(spec, p)).await?,
        Spec::Tcp(spec) => Box::pin(probers::tcp::probe(spec, p)).await?,
        Spec::Icmp(spec) => Box::pin(probers::icmp::probe(spec, p)).await,
        Spec::Dns(spec) => Box::pin(probers::dns::probe(spec, p)).await,
        Spec::Grpc(spec) => Box::pin(probers::grpc::probe(spec, p)).await,
        Spec::Unix(spec) => Box::pin(probers::unix::probe(spec, p)).await?,
    };
    let duration = started.elapsed().as_secs_f64();
    metrics::common(&mut r, success, duration);
    let (level, msg) = match success {
        true => ("info", "Probe succeeded"),
        false => ("error", "Probe failed"),
    };
    log.line_number(level, msg, &[], "duration_seconds", duration);
    Ok(Report {
        success,
        registry: r,
        log: log.lines,
    })
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
