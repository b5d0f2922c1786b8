//! # sonde-probes
//!
//! One module per protocol. Each probe performs exactly one protocol interaction under a hard
//! deadline and returns an [`Outcome`]: success or a [`Failure`] with a reason from a bounded set,
//! per-phase [`Timings`], the remote address, a short human-readable event log, and the
//! protocol's own facts (status code, TLS chain, DNS records, round-trip time…).
//!
//! Probes know nothing of YAML, schedules or metrics: the caller builds a request struct (regexes
//! compiled, TLS configuration loaded) once at configuration load, and calls the probe as often as
//! it likes. Everything that is expensive to build lives in the request, never in the probe call.
//!
//! A probe never panics on hostile input and never runs past its deadline: every await point is
//! inside one `tokio::time::timeout_at(deadline, …)`, and what was measured before the deadline is
//! still reported.

pub mod dns;
mod frame_inbox;
pub mod framing;
pub mod grpc;
pub mod http;
pub mod icmp;
mod inbox;
pub mod kts;
mod lazy_read;
mod mailbox;
pub mod mqtt;
pub mod policy;
pub mod resolve;
pub mod tcp;
pub mod tcp_conn;
pub mod text;
pub mod tls;
pub mod ws;
mod ws_socket;
mod ws_upgrade;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

pub use resolve::{IpProtocol, ResolveOptions, Resolver};

/// Why a probe failed. The set is closed on purpose: it becomes the `reason` label of
/// `sonde_step_failures_total`, and an unbounded label would be a cardinality bomb.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The target name could not be resolved (NXDOMAIN, no address of the wanted family, resolver
    /// unreachable).
    Dns,
    /// The TCP connection (or the ICMP socket) could not be established.
    Connect,
    /// The TLS handshake failed or the certificate was rejected.
    Tls,
    /// The deadline passed before the interaction completed.
    Timeout,
    /// An HTTP status code (or DNS rcode) outside the accepted set.
    Status,
    /// The body failed a regex or size check.
    Body,
    /// Any other expectation on the outcome failed (headers, durations, DNS records, TLS expiry…).
    Assertion,
    /// The peer broke the protocol: malformed response, unexpected close, too many redirects.
    Protocol,
}

impl FailureReason {
    /// Every reason, in label order: the complete set of `reason` label values.
    pub const ALL: [FailureReason; 8] = [
        FailureReason::Dns,
        FailureReason::Connect,
        FailureReason::Tls,
        FailureReason::Timeout,
        FailureReason::Status,
        FailureReason::Body,
        FailureReason::Assertion,
        FailureReason::Protocol,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Dns => "dns",
            FailureReason::Connect => "connect",
            FailureReason::Tls => "tls",
            FailureReason::Timeout => "timeout",
            FailureReason::Status => "status",
            FailureReason::Body => "body",
            FailureReason::Assertion => "assertion",
            FailureReason::Protocol => "protocol",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed probe: the bounded reason and a message for humans ("status 503 — expected 2xx").
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub reason: FailureReason,
    pub message: String,
}

impl Failure {
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// A named phase of a protocol interaction. The names are blackbox_exporter's `phase` label
/// values, so the same dashboards read both.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Name resolution of the target.
    Resolve,
    /// TCP connect (or UDP socket connect).
    Connect,
    /// TLS handshake.
    Tls,
    /// HTTP: request sent until the first byte of the response head.
    Processing,
    /// HTTP: first byte of the response until the end of the body.
    Transfer,
    /// DNS: query sent until the answer is parsed.
    Request,
    /// ICMP: socket setup.
    Setup,
    /// ICMP: echo request until echo reply.
    Rtt,
    /// MQTT: CONNECT written until CONNACK.
    Connack,
    /// MQTT: SUBSCRIBE written until SUBACK.
    Suback,
    /// MQTT: QoS 1 PUBLISH written until PUBACK.
    Puback,
    /// MQTT: QoS 2 PUBLISH written until PUBREC.
    Pubrec,
    /// MQTT: QoS 2 PUBREL (after PUBREC) until PUBCOMP.
    Pubcomp,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
            Phase::Transfer => "transfer",
            Phase::Request => "request",
            Phase::Setup => "setup",
            Phase::Rtt => "rtt",
            Phase::Connack => "connack",
            Phase::Suback => "suback",
            Phase::Puback => "puback",
            Phase::Pubrec => "pubrec",
            Phase::Pubcomp => "pubcomp",
        }
    }
}

/// Per-phase durations in the order the phases first happened. Adding to a phase that already
/// has a duration accumulates (HTTP redirects add each hop's phases, as blackbox does).
///
/// Each phase has two figures. The user-space one is what sonde's task saw: it starts and ends
/// when the task ran, so it includes the time the task waited to be scheduled after the packet
/// arrived. The kernel one (Linux, where the probe could measure it: see [`kts`]) is the
/// kernel's own timestamps of the packets, which sonde's scheduling cannot delay. [`Timings::get`]
/// and [`Timings::iter`] give the kernel figure where there is one, so metrics report it; the
/// difference is sonde's own delay ([`Timings::own_delay`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    phases: Vec<PhaseTiming>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PhaseTiming {
    phase: Phase,
    /// As sonde's task saw it.
    user: Duration,
    /// The kernel's figure for the parts measured by the kernel, the user-space one for the rest.
    best: Duration,
    /// Whether any part of `best` is the kernel's.
    kernel: bool,
}

impl Timings {
    /// A phase measured in user space only.
    pub fn add(&mut self, phase: Phase, d: Duration) {
        self.add_measured(phase, d, None);
    }

    /// A phase measured in user space (`user`) and, when it could be, by the kernel's packet
    /// timestamps (`kernel`). A kernel figure larger than the user-space one can only be a clock
    /// step between the two readings; it is capped so the own delay never goes negative.
    pub fn add_measured(&mut self, phase: Phase, user: Duration, kernel: Option<Duration>) {
        let best = kernel.map_or(user, |k| k.min(user));
        match self.phases.iter_mut().find(|t| t.phase == phase) {
            Some(t) => {
                t.user += user;
                t.best += best;
                t.kernel |= kernel.is_some();
            }
            None => self.phases.push(PhaseTiming {
                phase,
                user,
                best,
                kernel: kernel.is_some(),
            }),
        }
    }

    /// Record a phase that starts at `since` and ends now.
    pub fn add_since(&mut self, phase: Phase, since: Instant) {
        self.add(phase, since.elapsed());
    }

    /// The phase's duration, the kernel's figure where it has one; zero when the phase did not
    /// happen.
    pub fn get(&self, phase: Phase) -> Duration {
        self.find(phase).map(|t| t.best).unwrap_or_default()
    }

    /// The phase as sonde's task saw it (user space); zero when the phase did not happen.
    pub fn user_space(&self, phase: Phase) -> Duration {
        self.find(phase).map(|t| t.user).unwrap_or_default()
    }

    /// The kernel-timestamped figure, when the kernel measured (part of) the phase.
    pub fn kernel(&self, phase: Phase) -> Option<Duration> {
        self.find(phase).filter(|t| t.kernel).map(|t| t.best)
    }

    pub fn contains(&self, phase: Phase) -> bool {
        self.find(phase).is_some()
    }

    /// Phases with the kernel figure where there is one.
    pub fn iter(&self) -> impl Iterator<Item = (Phase, Duration)> + '_ {
        self.phases.iter().map(|t| (t.phase, t.best))
    }

    /// sonde's own delay in this run: how much later than the kernel sonde's tasks saw the
    /// phases that have a kernel figure (user space minus kernel, summed). `None` when no phase
    /// has a kernel figure (not Linux, or the kernel refused timestamps).
    pub fn own_delay(&self) -> Option<Duration> {
        let mut any = false;
        let mut total = Duration::ZERO;
        for t in self.phases.iter().filter(|t| t.kernel) {
            any = true;
            total += t.user.saturating_sub(t.best);
        }
        any.then_some(total)
    }

    fn find(&self, phase: Phase) -> Option<&PhaseTiming> {
        self.phases.iter().find(|t| t.phase == phase)
    }
}

impl serde::Serialize for Timings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.phases.len()))?;
        for t in &self.phases {
            m.serialize_entry(t.phase.as_str(), &t.best.as_secs_f64())?;
        }
        m.end()
    }
}

/// One line of a probe's event log: what happened, and when (time since the probe started).
/// This is what `/probe?debug=true`, `sonde probe --debug` and the scenario trace show.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    #[serde(serialize_with = "ser_secs")]
    pub at: Duration,
    pub message: String,
}

/// Durations serialize as seconds (a float), like every duration in sonde's JSON.
pub(crate) fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub(crate) fn ser_opt_secs<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// What every probe returns. `F` holds the protocol's own facts.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome<F> {
    /// `None` when the probe succeeded.
    pub failure: Option<Failure>,
    /// Wall time from the probe's start to its end (or to the deadline).
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    pub timings: Timings,
    /// The address actually used (the last one, after redirects or fallback).
    pub remote_addr: Option<SocketAddr>,
    pub events: Vec<Event>,
    pub facts: F,
}

impl<F> Outcome<F> {
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }
}

/// Bookkeeping shared by the probes while they run: start time, timings, events, the address in
/// use. Probes keep one of these outside their `timeout_at` future, so what was measured before a
/// timeout is still reported.
#[derive(Debug)]
pub struct Recorder {
    pub start: Instant,
    pub timings: Timings,
    pub remote_addr: Option<SocketAddr>,
    pub events: Vec<Event>,
    /// What the probe is doing now, for the timeout message ("waiting for the response head").
    pub doing: &'static str,
}

/// A run whose own delay ([`Timings::own_delay`]) exceeds this gets an event starting with
/// [`OVERLOADED`] in its trace. On an idle machine the delay is tens of microseconds; a
/// millisecond means the prober's threads were busy when the packets arrived.
pub const OWN_DELAY_FLAG: Duration = Duration::from_millis(1);

/// How the trace event flagging a busy prober starts (searchable).
pub const OVERLOADED: &str = "prober overloaded";

/// A probe's event log is bounded so a hostile peer (an endless redirect chain, a DNS answer
/// with thousands of records) cannot make it grow without limit.
pub const MAX_EVENTS: usize = 64;

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            timings: Timings::default(),
            remote_addr: None,
            events: Vec::new(),
            doing: "starting",
        }
    }

    pub fn event(&mut self, message: impl Into<String>) {
        if self.events.capacity() == 0 {
            // An http probe records about eight: one allocation, not three growing ones.
            self.events.reserve(8);
        }
        if self.events.len() < MAX_EVENTS {
            self.events.push(Event {
                at: self.start.elapsed(),
                message: message.into(),
            });
        } else if self.events.len() == MAX_EVENTS {
            self.events.push(Event {
                at: self.start.elapsed(),
                message: "(further events dropped)".into(),
            });
        }
    }

    /// Set what the probe is doing now; the timeout message names it.
    pub fn doing(&mut self, what: &'static str) {
        self.doing = what;
    }

    /// The failure to report when the deadline passed.
    pub fn timeout_failure(&self) -> Failure {
        Failure::new(
            FailureReason::Timeout,
            format!(
                "timed out after {} while {}",
                Dur(self.start.elapsed()),
                self.doing
            ),
        )
    }

    /// Finish: turn the recorder and the result into an [`Outcome`].
    pub fn finish<F>(mut self, failure: Option<Failure>, facts: F) -> Outcome<F> {
        let duration = self.start.elapsed();
        if let Some(d) = self.timings.own_delay().filter(|d| *d > OWN_DELAY_FLAG) {
            self.event(format!(
                "{OVERLOADED}: sonde's own delay was {} in this run (over {}): its tasks ran that \
                 much after the kernel saw the packets; the kernel-timestamped phases exclude it",
                Dur(d),
                Dur(OWN_DELAY_FLAG)
            ));
        }
        match &failure {
            None => self.event(format!("succeeded in {}", Dur(duration))),
            Some(f) => self.event(format!("failed ({}): {}", f.reason, f.message)),
        }
        Outcome {
            failure,
            duration,
            timings: self.timings,
            remote_addr: self.remote_addr,
            events: self.events,
            facts,
        }
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// Run `f` until `deadline`; on expiry report the recorder's timeout failure. `f` gets the
/// recorder mutably, so the phases it measured before the deadline survive the timeout.
pub async fn with_deadline<T>(
    rec: &mut Recorder,
    deadline: Instant,
    f: impl AsyncFnOnce(&mut Recorder) -> Result<T, Failure>,
) -> Result<T, Failure> {
    // The future borrows `rec`; it is dropped when the timeout fires, so the borrow has ended by
    // the time we read `rec` again.
    match tokio::time::timeout_at(deadline, f(rec)).await {
        Ok(r) => r,
        Err(_) => Err(rec.timeout_failure()),
    }
}

/// Durations for humans: "850µs", "12.3ms", "500ms", "1.204s", "2s".
pub fn fmt_duration(d: Duration) -> String {
    Dur(d).to_string()
}

/// [`fmt_duration`] as a `Display`, for writing a duration into an event or a log line without
/// a string of its own: `format!("… after {}", Dur(d))`.
#[derive(Clone, Copy, Debug)]
pub struct Dur(pub Duration);

impl std::fmt::Display for Dur {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let us = self.0.as_micros();
        if us < 1_000 {
            return write!(f, "{us}µs");
        }
        // At most 20 digits of seconds, a point and three decimals.
        let mut t = text::StackText::<32>::default();
        let unit = if us < 1_000_000 {
            write!(t, "{:.1}", us as f64 / 1_000.0)?;
            "ms"
        } else {
            write!(t, "{:.3}", self.0.as_secs_f64())?;
            "s"
        };
        let s = t.as_str();
        let s = match s.contains('.') {
            true => s.trim_end_matches('0').trim_end_matches('.'),
            false => s,
        };
        f.write_str(s)?;
        f.write_str(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_accumulate_and_keep_order() {
        let mut t = Timings::default();
        t.add(Phase::Connect, Duration::from_millis(2));
        t.add(Phase::Resolve, Duration::from_millis(1));
        t.add(Phase::Connect, Duration::from_millis(3));
        assert_eq!(t.get(Phase::Connect), Duration::from_millis(5));
        assert_eq!(t.get(Phase::Tls), Duration::ZERO);
        let order: Vec<_> = t.iter().map(|(p, _)| p).collect();
        assert_eq!(order, vec![Phase::Connect, Phase::Resolve]);
    }

    #[test]
    fn event_log_is_bounded() {
        let mut r = Recorder::new();
        for i in 0..1000 {
            r.event(format!("e{i}"));
        }
        assert_eq!(r.events.len(), MAX_EVENTS + 1);
    }

    #[tokio::test]
    async fn deadline_keeps_partial_timings() {
        let mut rec = Recorder::new();
        let deadline = Instant::now() + Duration::from_millis(50);
        let res: Result<(), Failure> =
            with_deadline(&mut rec, deadline, async |rec: &mut Recorder| {
                rec.timings.add(Phase::Resolve, Duration::from_millis(1));
                rec.doing("waiting forever");
                std::future::pending::<()>().await;
                Ok(())
            })
            .await;
        let f = res.unwrap_err();
        assert_eq!(f.reason, FailureReason::Timeout);
        assert!(f.message.contains("waiting forever"), "{}", f.message);
        assert_eq!(rec.timings.get(Phase::Resolve), Duration::from_millis(1));
    }

    #[test]
    fn durations_serialize_as_seconds() {
        #[derive(serde::Serialize)]
        struct T {
            #[serde(serialize_with = "ser_secs")]
            d: Duration,
            #[serde(serialize_with = "ser_opt_secs")]
            some: Option<Duration>,
            #[serde(serialize_with = "ser_opt_secs")]
            none: Option<Duration>,
        }
        let t = T {
            d: Duration::from_millis(1500),
            some: Some(Duration::from_micros(35)),
            none: None,
        };
        let mut out = Vec::new();
        serde::Serialize::serialize(&t, &mut serde_json::Serializer::new(&mut out)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"d":1.5,"some":0.000035,"none":null}"#
        );
    }

    #[test]
    fn durations_for_humans() {
        assert_eq!(fmt_duration(Duration::from_micros(850)), "850µs");
        assert_eq!(fmt_duration(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(fmt_duration(Duration::from_millis(1204)), "1.204s");
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
    }
}
