//! The scenario engine: run one scenario once, step after step, under its deadline, and say
//! exactly what happened in a [`RunReport`] — the step-by-step trace that `/api/v1/scenarios`
//! shows, from which the metrics are recorded, and which the CI runner prints.
//!
//! A step's probe does the protocol work and its own checks (status, body, records…); the engine
//! then applies the checks that are not the protocol's business (duration bounds, certificate
//! expiry, JSONPath values), takes the step's captures for later templates, and retries the
//! step when it says so (a failed attempt's captures are kept for the next attempt). The first failing step ends the run and names itself; teardown steps
//! run anyway.
//!
//! A run's state — captures, cookie jar, open WebSocket connections — lives in a [`RunCtx`]. A
//! normal run starts with an empty one; a persistent session (see [`crate::runtime::session`]) keeps one
//! across runs.

pub mod capture;
pub mod checks;
pub mod conns;
pub mod context;
pub mod report;
pub mod steps;

use std::time::{Duration, SystemTime};

use sonde_probes::{Failure, FailureReason};
use tokio::time::Instant;

use crate::config::scenario::{Built, Scenario, Step, StepBody};
pub use context::RunCtx;
pub use report::{CaptureReport, CheckReport, RunReport, RunResult, Stage, StepFacts, StepReport};
use steps::StepCx;

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
    let start = Instant::now();
    let deadline = start + scenario.timeout;
    ctx.last_send = None;
    ctx.last_ws_send = None;
    ctx.last_publish = None;
    let mut report = RunReport::new(&scenario.name, SystemTime::now());
    report.steps.reserve_exact(scenario.steps.len());
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
            if report.push_step(r) {
                break 'outer;
            }
        }
    }
    report.duration = start.elapsed();
    report.secrets = ctx.secrets.clone();
    report
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
        report.push_step(r);
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
    share: Share,
) -> StepReport {
    let start = Instant::now();
    let deadline = match step.timeout {
        Some(t) => (start + t).min(run_deadline),
        None => run_deadline,
    };
    let mut cx = StepCx {
        step,
        stage,
        deadline,
        share,
    };
    let Some(&retry) = step.retry.as_deref() else {
        return attempt(&cx, ctx).await;
    };
    cx.deadline = retry.within.map_or(deadline, |w| (start + w).min(deadline));
    let mut n = 0u32;
    loop {
        n += 1;
        let mut r = attempt(&cx, ctx).await;
        r.attempts = n;
        let more = retry.attempts.is_none_or(|max| n < max);
        let next = Instant::now() + retry.every;
        if r.success || !more || next >= cx.deadline {
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

/// One attempt: build the step if it is built when it runs, then execute it.
async fn attempt(cx: &StepCx<'_>, ctx: &mut RunCtx) -> StepReport {
    let built = match &cx.step.body {
        StepBody::Built(b) => return exec(b, cx, ctx).await,
        StepBody::PerRun(d) => (d.build)(&ctx.captures).map(|(built, secrets)| {
            for s in secrets {
                ctx.add_secret(s);
            }
            built
        }),
        StepBody::OnDemand(d) => d.build(),
    };
    match built {
        Ok(built) => exec(&built, cx, ctx).await,
        Err(m) => StepReport::failed(
            cx.step,
            cx.stage,
            Failure::new(FailureReason::Assertion, m),
            StepFacts::None {},
        ),
    }
}

/// Execute a built step: its probe, then the engine's checks, then its captures.
async fn exec(built: &Built, cx: &StepCx<'_>, ctx: &mut RunCtx) -> StepReport {
    let mut report = steps::exec(&built.action, cx, ctx).await;
    if report.failure.is_none() {
        if let Some(f) = checks::post_checks(&built.expect, &report, SystemTime::now()) {
            report.fail(f);
        }
    }
    if report.failure.is_none() && !built.expect.json().is_empty() {
        if let Some(f) = checks::json_checks(built.expect.json(), &mut report) {
            report.fail(f);
        }
    }
    if report.failure.is_none() {
        take_captures(built, &mut report, ctx);
    } else if cx.step.retry.is_some() {
        // The next attempt sees what this one could capture: a long-poll advances its cursor
        // (`since={{ cursor }}`) even when the message it waits for is not there yet.
        take_partial_captures(built, &mut report, ctx);
    }
    // The frame was kept for the captures and checks above; the trace shows its summary only,
    // and the last run's trace is kept per scenario (10,000 sessions): do not keep it twice.
    if let StepFacts::Ws(f) = &mut report.facts {
        f.payload = None;
    }
    if let StepFacts::Mqtt(f) = &mut report.facts {
        f.payload = None;
    }
    report
}

/// After a failed attempt of a step with `retry`: the captures that find a value, into the
/// report and the run's context; those that find nothing are left as they were.
fn take_partial_captures(built: &Built, report: &mut StepReport, ctx: &mut RunCtx) {
    for c in &built.captures {
        if let Ok(v) = capture::take(c, report) {
            report.captures.push(CaptureReport {
                name: c.name.clone(),
                value: capture::text(&v),
            });
            ctx.set_capture(&c.name, v);
        }
    }
}

/// The step's captures, into the report and the run's context; the first that finds nothing
/// fails the step.
fn take_captures(built: &Built, report: &mut StepReport, ctx: &mut RunCtx) {
    for c in &built.captures {
        match capture::take(c, report) {
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
