//! The scenario engine: run one scenario once, step after step, under its deadline, and say
//! exactly what happened in a [`RunReport`] — the step-by-step trace that `/api/v1/scenarios`
//! shows, from which the metrics are recorded, and which the CI runner prints.
//!
//! A step's probe does the protocol work and its own checks (status, body, records…); the engine
//! then applies the checks that are not the protocol's business (duration bounds, certificate
//! expiry, JSONPath values), takes the step's captures for later templates, and retries the
//! step when it says so. The first failing step ends the run and names itself; teardown steps
//! run anyway.
//!
//! A run's state — captures, cookie jar, open WebSocket connections — lives in a [`RunCtx`]. A
//! normal run starts with an empty one; a persistent session (see [`crate::runtime::session`]) keeps one
//! across runs.

pub mod capture;
pub mod ws;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sonde_probes::dns::DnsFacts;
use sonde_probes::http::HttpFacts;
use sonde_probes::icmp::IcmpFacts;
use sonde_probes::tcp::TcpFacts;
use sonde_probes::tls::{fmt_unix, TlsFacts, TlsProbeFacts};
use sonde_probes::ws::WsConn;
use sonde_probes::{fmt_duration, Event, Failure, FailureReason, Outcome, Timings};
use tokio::time::Instant;

use crate::config::scenario::{Action, Bounds, Captured, PostChecks, Scenario, Step};
use crate::time::{fmt_long, rfc3339};
use ws::WsFacts;

/// How a run ended; the `result` label of `sonde_scenario_runs_total` (with `skipped`, which the
/// scheduler counts for runs that never started).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    Success,
    Failure,
    Timeout,
}

impl RunResult {
    pub const fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
            RunResult::Timeout => "timeout",
        }
    }
}

/// One run of one scenario: the trace. The CI runner serializes it as it is (after
/// [`RunReport::to_json`] redacts it).
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub scenario: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub result: RunResult,
    /// The step that failed, if any.
    pub failed_step: Option<String>,
    /// Steps that ran, in order (setup, steps, teardown); steps after a failure did not run and
    /// are not listed.
    pub steps: Vec<StepReport>,
    /// Set when the run failed because of a bug in sonde (a panic), not because of the target:
    /// what went wrong, for the trace and a bug report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_error: Option<String>,
    /// Persistent sessions: what happened to the connections before this run (reconnects).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub session_events: Vec<String>,
    /// Secret values met during the run (captures with secret names, files read per run), on
    /// top of the scenario's own: redacted by [`RunReport::to_json`].
    #[serde(skip)]
    pub secrets: Vec<String>,
}

impl RunReport {
    pub fn success(&self) -> bool {
        self.result == RunResult::Success
    }

    /// The failing step's failure, for one-line summaries.
    pub fn failure(&self) -> Option<&Failure> {
        self.steps.iter().find_map(|s| s.failure.as_ref())
    }

    /// `text` with the scenario's and this run's secrets replaced, then URL shapes
    /// ([`crate::redact::with_secrets`]).
    pub fn redact_text(&self, scenario: &Scenario, text: &str) -> String {
        let secrets = crate::redact::merge(&[&scenario.secrets, &self.secrets]);
        crate::redact::with_secrets(text, &secrets).into_owned()
    }

    /// Every string (and key) of `v` redacted as by [`Self::redact_text`].
    pub fn redact_json(&self, scenario: &Scenario, v: &mut serde_json::Value) {
        let secrets = crate::redact::merge(&[&scenario.secrets, &self.secrets]);
        crate::redact::json_with_secrets(v, &secrets);
    }

    /// The trace as JSON with every secret replaced: what every output (API, CI reports) shows.
    pub fn to_json(&self, scenario: &Scenario) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        self.redact_json(scenario, &mut v);
        v
    }
}

/// Which part of the scenario a step belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Setup,
    Steps,
    Teardown,
}

/// One step of a run.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub name: String,
    pub kind: &'static str,
    pub stage: Stage,
    pub success: bool,
    /// The step's own duration: for `ws.expect`, from the run's last `ws.send` to the match;
    /// with `retry`, from the first attempt's start to the last one's end.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub failure: Option<Failure>,
    /// Attempts made (more than 1 only with `retry`).
    pub attempts: u32,
    pub timings: Timings,
    pub remote_addr: Option<SocketAddr>,
    pub events: Vec<Event>,
    /// Values captured for later steps (secret ones redacted in outputs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<CaptureReport>,
    /// Structured expectations evaluated (JSONPath checks), passed or not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckReport>,
    pub facts: StepFacts,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaptureReport {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub what: String,
    pub expected: String,
    pub actual: String,
    pub passed: bool,
}

impl StepReport {
    /// The earliest `not_after` of the TLS chain the step saw, in Unix seconds.
    pub fn cert_not_after(&self) -> Option<i64> {
        self.facts.tls().and_then(TlsFacts::earliest_not_after)
    }

    /// A report for a step that failed before doing anything (a template that does not render,
    /// a connection name that does not exist).
    pub fn failed(step: &Step, stage: Stage, failure: Failure, facts: StepFacts) -> Self {
        StepReport {
            name: step.name.clone(),
            kind: step.action.kind(),
            stage,
            success: false,
            duration: Duration::ZERO,
            events: vec![Event {
                at: Duration::ZERO,
                message: format!("failed ({}): {}", failure.reason, failure.message),
            }],
            failure: Some(failure),
            attempts: 1,
            timings: Timings::default(),
            remote_addr: None,
            captures: Vec::new(),
            checks: Vec::new(),
            facts,
        }
    }

    fn fail(&mut self, f: Failure) {
        self.events.push(Event {
            at: self.duration,
            message: format!("failed ({}): {}", f.reason, f.message),
        });
        self.failure = Some(f);
        self.success = false;
    }
}

/// The protocol facts of a step, as the probe reported them.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum StepFacts {
    Http(HttpFacts),
    Tcp(TcpFacts),
    Dns(DnsFacts),
    Icmp(IcmpFacts),
    Tls(TlsProbeFacts),
    Ws(Box<WsFacts>),
    None {},
}

impl StepFacts {
    pub fn tls(&self) -> Option<&TlsFacts> {
        match self {
            StepFacts::Http(f) => f.tls.as_ref(),
            StepFacts::Tcp(f) => f.tls.as_ref(),
            StepFacts::Tls(f) => f.session.as_ref(),
            StepFacts::Ws(f) => f.handshake.as_ref().and_then(|h| h.tls.as_ref()),
            StepFacts::Dns(_) | StepFacts::Icmp(_) | StepFacts::None {} => None,
        }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A cookie the jar keeps: per host, by name.
#[derive(Clone, Debug)]
struct Cookie {
    host: String,
    name: String,
    value: String,
}

/// The state of a run (or of a persistent session across runs).
#[derive(Default)]
pub struct RunCtx {
    pub captures: Vec<Captured>,
    cookies: Vec<Cookie>,
    /// Open WebSocket connections by name.
    pub conns: Vec<(String, WsConn)>,
    /// When the last `ws.send` of this run was written: `ws.expect` measures from it.
    pub last_send: Option<Instant>,
    /// Secrets met so far (see [`RunReport::secrets`]).
    pub secrets: Vec<String>,
    /// Kept-alive HTTP connections (`reuse_connections`).
    pub http: sonde_probes::http::ConnPool,
}

/// Cookies a jar keeps at most: a hostile server cannot grow it without bound.
const MAX_COOKIES: usize = 64;

impl RunCtx {
    pub fn conn(&self, name: &str) -> Option<&WsConn> {
        self.conns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    pub fn set_capture(&mut self, name: &str, value: serde_json::Value) {
        if sonde_probes::http::is_secret_header(name) {
            let text = capture::text(&value);
            if text.len() >= crate::config::MIN_SECRET_LEN && !self.secrets.contains(&text) {
                self.secrets.push(text);
            }
        }
        self.captures.retain(|(k, _)| k != name);
        self.captures.push((name.to_string(), value));
    }

    fn cookie_header(&self, host: &str) -> Option<String> {
        let v: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| c.host == host)
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!v.is_empty()).then(|| v.join("; "))
    }

    fn store_cookies(&mut self, host: &str, facts: &HttpFacts) {
        for (n, v) in &facts.secret_headers {
            if !n.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let pair = v.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            if value.len() >= crate::config::MIN_SECRET_LEN && !self.secrets.contains(&value) {
                self.secrets.push(value.clone());
            }
            self.cookies.retain(|c| !(c.host == host && c.name == name));
            let expired = v.to_ascii_lowercase().contains("max-age=0");
            if !expired && self.cookies.len() < MAX_COOKIES {
                self.cookies.push(Cookie {
                    host: host.to_string(),
                    name,
                    value,
                });
            }
        }
    }

    /// Whether every WebSocket connection is still open (a persistent session's health).
    pub fn broken(&self) -> Option<String> {
        self.conns
            .iter()
            .find_map(|(n, c)| c.closed().map(|why| format!("connection `{n}`: {why}")))
    }
}

/// Run `scenario` once with a fresh context: setup, steps, teardown. Never panics, never
/// outlives `scenario.timeout` by more than the time it takes to notice the deadline (plus the
/// teardown's own deadline when there is a teardown).
pub async fn run(scenario: &Scenario) -> RunReport {
    let mut ctx = RunCtx::default();
    let mut report = run_stages(scenario, &mut ctx, true, true).await;
    if !scenario.teardown.is_empty() {
        run_teardown(scenario, &mut ctx, &mut report).await;
    }
    report
}

/// Run setup (when `setup`) and then the steps (when `main`) in `ctx`, under the scenario's
/// deadline. Teardown is separate ([`run_teardown`]).
pub async fn run_stages(
    scenario: &Scenario,
    ctx: &mut RunCtx,
    setup: bool,
    main: bool,
) -> RunReport {
    let started_at = SystemTime::now();
    let start = Instant::now();
    let deadline = start + scenario.timeout;
    ctx.last_send = None;
    let mut report = RunReport {
        scenario: scenario.name.clone(),
        started_at: rfc3339(started_at),
        duration: Duration::ZERO,
        result: RunResult::Success,
        failed_step: None,
        steps: Vec::with_capacity(scenario.steps.len()),
        internal_error: None,
        session_events: Vec::new(),
        secrets: Vec::new(),
    };
    let stages = [
        (Stage::Setup, &scenario.setup, setup),
        (Stage::Steps, &scenario.steps, main),
    ];
    'outer: for (stage, steps, on) in stages {
        if !on {
            continue;
        }
        for step in steps {
            let r = run_step(step, stage, ctx, deadline, Share::of(scenario)).await;
            let failed = record(&mut report, r, step);
            if failed {
                break 'outer;
            }
        }
    }
    report.duration = start.elapsed();
    report.secrets = ctx.secrets.clone();
    report
}

/// Append a step's report; true when it failed (and so ends the run).
fn record(report: &mut RunReport, r: StepReport, step: &Step) -> bool {
    let reason = r.failure.as_ref().map(|f| f.reason);
    report.steps.push(r);
    match reason {
        Some(reason) => {
            if report.failed_step.is_none() {
                report.result = if reason == FailureReason::Timeout {
                    RunResult::Timeout
                } else {
                    RunResult::Failure
                };
                report.failed_step = Some(step.name.clone());
            }
            true
        }
        None => false,
    }
}

/// How long teardown may take at most, whatever the scenario's deadline did.
pub const TEARDOWN_BUDGET: Duration = Duration::from_secs(5);

/// Run the teardown steps (all of them, even after one fails), adding them to `report`. They
/// get their own deadline — the scenario's timeout, at most [`TEARDOWN_BUDGET`] — so a run
/// that timed out still cleans up.
pub async fn run_teardown(scenario: &Scenario, ctx: &mut RunCtx, report: &mut RunReport) {
    let start = Instant::now();
    let deadline = start + scenario.timeout.min(TEARDOWN_BUDGET);
    for step in &scenario.teardown {
        let r = run_step(step, Stage::Teardown, ctx, deadline, Share::of(scenario)).await;
        record(report, r, step);
    }
    report.duration += start.elapsed();
    report.secrets = ctx.secrets.clone();
}

/// What the http steps of a run share.
#[derive(Copy, Clone, Debug)]
pub struct Share {
    pub cookies: bool,
    pub connections: bool,
}

impl Share {
    pub fn of(s: &Scenario) -> Share {
        Share {
            cookies: s.cookies,
            connections: s.reuse_connections,
        }
    }
}

/// Run one step with its retries.
pub async fn run_step(
    step: &Step,
    stage: Stage,
    ctx: &mut RunCtx,
    run_deadline: Instant,
    cookies: Share,
) -> StepReport {
    let start = Instant::now();
    let deadline = match step.timeout {
        Some(t) => (start + t).min(run_deadline),
        None => run_deadline,
    };
    let Some(retry) = step.retry else {
        return attempt(step, stage, ctx, deadline, cookies).await;
    };
    let give_up = retry.within.map_or(deadline, |w| (start + w).min(deadline));
    let mut n = 0u32;
    loop {
        n += 1;
        let mut r = attempt(step, stage, ctx, give_up, cookies).await;
        r.attempts = n;
        let more = retry.attempts.is_none_or(|max| n < max);
        let next = Instant::now() + retry.every;
        if r.success || !more || next >= give_up {
            r.duration = start.elapsed();
            if !r.success && n > 1 {
                if let Some(f) = &mut r.failure {
                    f.message = format!("{} (after {n} attempts)", f.message);
                }
            }
            return r;
        }
        tokio::time::sleep_until(next).await;
    }
}

/// One attempt: build the step if it is built per run, then execute it.
async fn attempt(
    step: &Step,
    stage: Stage,
    ctx: &mut RunCtx,
    deadline: Instant,
    cookies: Share,
) -> StepReport {
    if let Action::Dynamic(d) = &step.action {
        return match (d.build)(&ctx.captures) {
            Ok((built, secrets)) => {
                for s in secrets {
                    if s.len() >= crate::config::MIN_SECRET_LEN && !ctx.secrets.contains(&s) {
                        ctx.secrets.push(s);
                    }
                }
                exec(&built, stage, ctx, deadline, cookies).await
            }
            Err(m) => StepReport::failed(
                step,
                stage,
                Failure::new(FailureReason::Assertion, m),
                StepFacts::None {},
            ),
        };
    }
    exec(step, stage, ctx, deadline, cookies).await
}

/// Execute a built step: its probe, then the engine's checks, then its captures.
async fn exec(
    step: &Step,
    stage: Stage,
    ctx: &mut RunCtx,
    deadline: Instant,
    share: Share,
) -> StepReport {
    use sonde_probes::{dns, http, icmp, tcp, tls};
    let mut report = match &step.action {
        Action::Http(r) => {
            let host = r.url.host_str().unwrap_or("").to_string();
            let jar = if share.cookies {
                ctx.cookie_header(&host)
            } else {
                None
            };
            let with_jar;
            let req: &http::HttpRequest = match jar {
                Some(c) if !r.headers.contains_key(::http::header::COOKIE) => {
                    let mut q = (**r).clone();
                    if let Ok(v) = ::http::HeaderValue::from_str(&c) {
                        q.headers.insert(::http::header::COOKIE, v);
                    }
                    with_jar = q;
                    &with_jar
                }
                _ => r,
            };
            let o = if share.connections {
                http::probe_pooled(req, deadline, &mut ctx.http).await
            } else {
                http::probe(req, deadline).await
            };
            if share.cookies {
                ctx.store_cookies(&host, &o.facts);
            }
            from_outcome(step, stage, o, StepFacts::Http)
        }
        Action::Tcp(r) => from_outcome(step, stage, tcp::probe(r, deadline).await, StepFacts::Tcp),
        Action::Dns(r) => from_outcome(step, stage, dns::probe(r, deadline).await, StepFacts::Dns),
        Action::Icmp(r) => {
            from_outcome(step, stage, icmp::probe(r, deadline).await, StepFacts::Icmp)
        }
        Action::Tls(r) => from_outcome(step, stage, tls::probe(r, deadline).await, StepFacts::Tls),
        Action::Sleep(d) => sleep_step(step, stage, *d, deadline).await,
        Action::WsConnect(_) | Action::WsSend(_) | Action::WsExpect(_) | Action::WsClose(_) => {
            ws::exec(step, stage, ctx, deadline).await
        }
        Action::Dynamic(_) => StepReport::failed(
            step,
            stage,
            Failure::new(
                FailureReason::Assertion,
                "internal: a per-run step built itself",
            ),
            StepFacts::None {},
        ),
    };
    if report.failure.is_none() {
        if let Some(f) = post_checks(&step.expect, &report, SystemTime::now()) {
            report.fail(f);
        }
    }
    if report.failure.is_none() && !step.expect.json.is_empty() {
        if let Some(f) = json_checks(step, &mut report) {
            report.fail(f);
        }
    }
    if report.failure.is_none() {
        for c in &step.captures {
            match capture::take(c, &report) {
                Ok(v) => {
                    report.captures.push(CaptureReport {
                        name: c.name.clone(),
                        value: capture::text(&v),
                    });
                    ctx.set_capture(&c.name, v);
                }
                Err(m) => {
                    report.fail(Failure::new(FailureReason::Assertion, m));
                    break;
                }
            }
        }
    }
    // The frame was kept for the captures and checks above; the trace shows its summary only,
    // and the last run's trace is kept per scenario (10,000 sessions): do not keep it twice.
    if let StepFacts::Ws(f) = &mut report.facts {
        f.payload = None;
    }
    report
}

async fn sleep_step(step: &Step, stage: Stage, d: Duration, deadline: Instant) -> StepReport {
    let start = Instant::now();
    let until = start + d;
    tokio::time::sleep_until(until.min(deadline)).await;
    let mut r = StepReport::failed(
        step,
        stage,
        Failure::new(FailureReason::Timeout, ""),
        StepFacts::None {},
    );
    r.duration = start.elapsed();
    r.events.clear();
    if until > deadline {
        r.fail(Failure::new(
            FailureReason::Timeout,
            format!(
                "sleep {} would end after the deadline (timed out after {})",
                fmt_duration(d),
                fmt_duration(r.duration)
            ),
        ));
    } else {
        r.failure = None;
        r.success = true;
        r.events.push(Event {
            at: r.duration,
            message: format!("slept {}", fmt_duration(d)),
        });
    }
    r
}

/// The JSONPath checks of `expect.json` on the body (http) or the matched frame (ws.expect).
fn json_checks(step: &Step, report: &mut StepReport) -> Option<Failure> {
    let (doc, whence) = match capture::document(report) {
        Ok(d) => d,
        Err(m) => {
            return Some(Failure::new(
                FailureReason::Assertion,
                format!("cannot check JSON paths: {m}"),
            ))
        }
    };
    let mut first = None;
    for c in &step.expect.json {
        let found = capture::query(&c.path, &doc);
        let res = c.matcher.test(found.as_ref());
        let actual = found
            .as_ref()
            .map(crate::config::matcher::show)
            .unwrap_or_else(|| "nothing".into());
        report.checks.push(CheckReport {
            what: format!("{} in the {whence}", c.path_text),
            expected: c.matcher.describe(),
            actual: actual.clone(),
            passed: res.is_ok(),
        });
        if let (Err(expected), None) = (res, &first) {
            first = Some(Failure::new(
                FailureReason::Assertion,
                format!(
                    "{} in the {whence} is {actual} — expected {expected}",
                    c.path_text
                ),
            ));
        }
    }
    first
}

fn from_outcome<F>(
    step: &Step,
    stage: Stage,
    o: Outcome<F>,
    wrap: fn(F) -> StepFacts,
) -> StepReport {
    StepReport {
        name: step.name.clone(),
        kind: step.action.kind(),
        stage,
        success: o.failure.is_none(),
        duration: o.duration,
        failure: o.failure,
        attempts: 1,
        timings: o.timings,
        remote_addr: o.remote_addr,
        events: o.events,
        captures: Vec::new(),
        checks: Vec::new(),
        facts: wrap(o.facts),
    }
}

/// The `expect:` checks the engine owns. Returns the first that fails.
fn post_checks(expect: &PostChecks, report: &StepReport, now: SystemTime) -> Option<Failure> {
    if let Some(why) = check_bounds(&expect.duration, report.duration) {
        return Some(Failure::new(
            FailureReason::Assertion,
            format!(
                "duration {} — expected {why}",
                fmt_duration(report.duration)
            ),
        ));
    }
    if !expect.cert_expires_in.is_empty() {
        let Some(not_after) = report.cert_not_after() else {
            return Some(Failure::new(
                FailureReason::Assertion,
                "no TLS certificate was presented — expected one for cert_expires_in",
            ));
        };
        let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let left = not_after - now_s;
        let left_d = Duration::from_secs(left.max(0) as u64);
        let within = if left < 0 {
            None
        } else {
            check_bounds(&expect.cert_expires_in, left_d)
        };
        if left < 0 || within.is_some() {
            let expected = within
                .unwrap_or_else(|| describe_bounds(&expect.cert_expires_in).unwrap_or_default());
            let state = if left < 0 {
                format!(
                    "expired {} ago",
                    fmt_long(Duration::from_secs((-left) as u64))
                )
            } else {
                format!("expires in {}", fmt_long(left_d))
            };
            return Some(Failure::new(
                FailureReason::Assertion,
                format!(
                    "certificate chain {state} ({}) — expected expiry in {expected}",
                    fmt_unix(not_after)
                ),
            ));
        }
    }
    None
}

/// `None` when `v` satisfies every bound, else the description of the bounds.
fn check_bounds(b: &Bounds, v: Duration) -> Option<String> {
    let ok = b.lt.is_none_or(|x| v < x)
        && b.le.is_none_or(|x| v <= x)
        && b.gt.is_none_or(|x| v > x)
        && b.ge.is_none_or(|x| v >= x);
    if ok {
        None
    } else {
        describe_bounds(b)
    }
}

fn describe_bounds(b: &Bounds) -> Option<String> {
    let parts: Vec<String> = [("<", b.lt), ("≤", b.le), (">", b.gt), ("≥", b.ge)]
        .into_iter()
        .filter_map(|(op, d)| d.map(|d| format!("{op} {}", fmt_long(d))))
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(lt: Option<u64>, gt: Option<u64>) -> Bounds {
        Bounds {
            lt: lt.map(Duration::from_millis),
            gt: gt.map(Duration::from_millis),
            ..Default::default()
        }
    }

    #[test]
    fn bounds_hold_or_say_why() {
        let b = bounds(Some(500), None);
        assert_eq!(check_bounds(&b, Duration::from_millis(499)), None);
        assert_eq!(
            check_bounds(&b, Duration::from_millis(500)).as_deref(),
            Some("< 500ms")
        );
        let b = bounds(Some(500), Some(100));
        assert_eq!(
            check_bounds(&b, Duration::from_millis(50)).as_deref(),
            Some("< 500ms and > 100ms")
        );
        assert_eq!(
            check_bounds(&Bounds::default(), Duration::from_secs(9)),
            None
        );
    }

    fn report_with_cert(not_after: Option<i64>) -> StepReport {
        let tls = not_after.map(|na| TlsFacts {
            version: "TLS 1.3".into(),
            cipher: String::new(),
            alpn: None,
            server_name: "x".into(),
            verified: true,
            chain: vec![sonde_probes::tls::CertFacts {
                subject: String::new(),
                issuer: String::new(),
                serial: String::new(),
                not_before: 0,
                not_after: na,
                subject_alt_names: vec![],
                fingerprint_sha256: String::new(),
            }],
        });
        StepReport {
            name: "tls".into(),
            kind: "tls",
            stage: Stage::Steps,
            success: true,
            duration: Duration::from_millis(3),
            failure: None,
            attempts: 1,
            timings: Timings::default(),
            remote_addr: None,
            events: vec![],
            captures: vec![],
            checks: vec![],
            facts: StepFacts::Tls(TlsProbeFacts { session: tls }),
        }
    }

    #[test]
    fn cert_expiry_bound() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expect = PostChecks {
            cert_expires_in: Bounds {
                gt: Some(Duration::from_secs(14 * 86_400)),
                ..Default::default()
            },
            ..Default::default()
        };
        // 20 days left: fine.
        let ok = report_with_cert(Some(1_000_000 + 20 * 86_400));
        assert_eq!(post_checks(&expect, &ok, now), None);
        // 3 days left: fails, saying how long is left and what was expected.
        let soon = report_with_cert(Some(1_000_000 + 3 * 86_400));
        let f = post_checks(&expect, &soon, now).unwrap();
        assert_eq!(f.reason, FailureReason::Assertion);
        assert!(
            f.message.starts_with("certificate chain expires in 3d ("),
            "{}",
            f.message
        );
        assert!(
            f.message.ends_with("— expected expiry in > 14d"),
            "{}",
            f.message
        );
        // Already expired.
        let gone = report_with_cert(Some(1_000_000 - 86_400));
        let f = post_checks(&expect, &gone, now).unwrap();
        assert!(f.message.contains("expired 1d ago"), "{}", f.message);
        // No TLS at all.
        let none = report_with_cert(None);
        let f = post_checks(&expect, &none, now).unwrap();
        assert!(f.message.contains("no TLS certificate"), "{}", f.message);
    }

    #[test]
    fn duration_bound_fails_with_both_values() {
        let expect = PostChecks {
            duration: bounds(Some(1), None),
            ..Default::default()
        };
        let r = report_with_cert(None);
        let f = post_checks(&expect, &r, SystemTime::now()).unwrap();
        assert_eq!(f.message, "duration 3ms — expected < 1ms");
    }
}
