//! Persistent sessions (`session: persistent`): the scenario's task keeps one [`RunCtx`] — its
//! open WebSocket connections and setup's captures — across runs.
//!
//! - `setup` runs once per connection life (the first run, and after every break); `steps` run
//!   every interval on the live connections; teardown runs when the session ends (shutdown, or
//!   a reload that removes or changes the scenario).
//! - A watcher notices a connection that closes between runs at once
//!   (`sonde_session_connected` drops to 0); the next run fails with the reason. A run whose
//!   step meets the broken connection fails with it too.
//! - Reconnecting re-runs setup right after the failed run, not at the next tick, so at most
//!   one run reports the break. A setup that fails is retried with exponential backoff (1 s,
//!   2 s, 4 s… up to the interval); runs due meanwhile fail saying the session is reconnecting.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use sonde_probes::{Failure, FailureReason};
use tokio::time::Instant;

use super::observer::SessionEvent;
use crate::backoff::Backoff;
use crate::config::scenario::Scenario;
use crate::engine::conns::Ending;
use crate::engine::{self, RunCtx, RunReport, Stage, StepFacts, StepReport};

/// First pause before retrying a failed setup; doubles up to the interval.
pub const BACKOFF_START: Duration = Duration::from_secs(1);

/// A persistent session's state between runs.
pub struct Session {
    pub ctx: RunCtx,
    /// Setup has run on the current connections and none has broken since.
    pub connected: bool,
    /// Connected at least once: a later setup is a reconnect.
    pub ever_connected: bool,
    /// Why the connection broke between runs, not yet reported by a run.
    pub unreported_break: Option<String>,
    /// When to try setup again (disconnected only).
    pub reconnect_at: Option<Instant>,
    /// Between failed setups; `backoff.last()` is the pause before the next attempt.
    pub backoff: Backoff,
    /// The last setup failure, for the runs that fail while reconnecting.
    pub last_error: Option<String>,
    /// What happened to the connections since the runner last looked ([`Session::take_events`]):
    /// the runner hands them to the observers and the API's event list.
    pub events: Vec<SessionEvent>,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            ctx: RunCtx::default(),
            connected: false,
            ever_connected: false,
            unreported_break: None,
            reconnect_at: None,
            backoff: Backoff::new(BACKOFF_START, Duration::MAX),
            last_error: None,
            events: Vec::new(),
        }
    }
}

impl Session {
    /// Resolves with the reason when any open connection closes (never when there are none).
    pub async fn broken(&self) -> String {
        if !self.connected {
            return std::future::pending().await;
        }
        // Each connection's own future, not one boxed around it to add the name: this waits in
        // every idle session.
        let mut futs: Vec<(&str, Ending<'_>)> = self
            .ctx
            .conns
            .iter()
            .map(|(n, c)| (n, c.wait_closed()))
            .collect();
        std::future::poll_fn(move |cx| {
            for (n, f) in futs.iter_mut() {
                if let Poll::Ready(v) = f.as_mut().poll(cx) {
                    return Poll::Ready(format!("connection `{n}`: {v}"));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// The connections are gone: forget them (dropping them closes what is left). With a
    /// reason, a connection broke between runs: the next run reports it.
    pub fn disconnect(&mut self, reason: Option<String>) {
        self.connected = false;
        self.ctx = RunCtx::default();
        if let Some(r) = reason {
            self.note(SessionEvent::Broken(r.clone()));
            self.unreported_break = Some(r);
        }
    }

    /// Keep `e` for the runner (bounded: a caller that never takes them keeps the last ones).
    fn note(&mut self, e: SessionEvent) {
        if self.events.len() >= 64 {
            self.events.remove(0);
        }
        self.events.push(e);
    }

    /// The events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<SessionEvent> {
        std::mem::take(&mut self.events)
    }

    /// When the oldest open connection was opened.
    pub fn connected_since(&self) -> Option<Instant> {
        self.ctx.conns.connected_since()
    }

    /// After a setup attempt: connected, or back off.
    fn after_setup(&mut self, ok: bool, report: &RunReport, interval: Duration) -> bool {
        if ok {
            let reconnect = self.ever_connected;
            self.note(if reconnect {
                SessionEvent::Reconnected
            } else {
                SessionEvent::Connected
            });
            self.connected = true;
            self.ever_connected = true;
            self.reconnect_at = None;
            self.backoff.reset();
            self.last_error = None;
            reconnect
        } else {
            self.last_error = report.failure().map(|f| {
                format!(
                    "setup step `{}` failed: {}",
                    report.failed_step.as_deref().unwrap_or("?"),
                    f.message
                )
            });
            self.ctx = RunCtx::default();
            self.connected = false;
            self.backoff.set_cap(interval);
            let pause = self.backoff.failed();
            self.reconnect_at = Some(Instant::now() + pause);
            self.note(SessionEvent::ReconnectFailed(format!(
                "{}; next attempt in {}",
                self.last_error.as_deref().unwrap_or("setup failed"),
                sonde_probes::fmt_duration(pause)
            )));
            false
        }
    }

    /// Reconnect between runs: run setup only. Returns whether it was a successful reconnect
    /// (for `sonde_session_reconnects_total`), and the setup's report.
    pub async fn reconnect(&mut self, scenario: &Arc<Scenario>) -> (bool, RunReport) {
        self.ctx = RunCtx::default();
        let report = engine::run_stages(scenario, &mut self.ctx, true, false).await;
        let ok = report.success();
        let reconnected = self.after_setup(ok, &report, scenario.interval);
        (reconnected, report)
    }

    /// One scheduled run of a persistent scenario.
    pub async fn run(&mut self, scenario: &Arc<Scenario>) -> (bool, RunReport) {
        if let Some(why) = self.unreported_break.take() {
            // The break is this run's failure; reconnecting follows right after it.
            self.reconnect_at = Some(Instant::now());
            return (
                false,
                session_failure(scenario, why, FailureReason::Protocol),
            );
        }
        if !self.connected && self.ever_connected {
            if let Some(at) = self.reconnect_at.filter(|at| *at > Instant::now()) {
                let why = format!(
                    "not connected, reconnecting in {}{}",
                    sonde_probes::fmt_duration(at - Instant::now()),
                    self.last_error
                        .as_deref()
                        .map(|e| format!(" (last attempt: {e})"))
                        .unwrap_or_default()
                );
                return (
                    false,
                    session_failure(scenario, why, FailureReason::Connect),
                );
            }
        }
        let setup = !self.connected;
        if setup {
            self.ctx = RunCtx::default();
        }
        let mut report = engine::run_stages(scenario, &mut self.ctx, setup, true).await;
        let mut reconnected = false;
        if setup {
            let setup_steps: Vec<&StepReport> = report
                .steps
                .iter()
                .filter(|s| s.stage == Stage::Setup)
                .collect();
            let setup_ok =
                setup_steps.len() == scenario.setup.len() && setup_steps.iter().all(|s| s.success);
            reconnected = self.after_setup(setup_ok, &report, scenario.interval);
            if reconnected {
                report
                    .session_events
                    .push("reconnected: setup ran again on new connections".into());
            }
        }
        if let Some(why) = self.ctx.broken() {
            // Met (or caused) by this run: reported by it; reconnect right away.
            report.session_events.push(format!("session broken: {why}"));
            self.note(SessionEvent::Broken(why));
            self.disconnect(None);
            self.reconnect_at = Some(Instant::now());
        }
        (reconnected, report)
    }

    /// End the session: teardown on the live connections, then close them.
    pub async fn end(&mut self, scenario: &Scenario) {
        if self.connected && !scenario.teardown.is_empty() {
            let mut report = engine::run_stages(scenario, &mut self.ctx, false, false).await;
            engine::run_teardown(scenario, &mut self.ctx, &mut report).await;
        }
        self.disconnect(None);
    }
}

/// A run that failed because of the session itself (a break between runs, reconnecting).
fn session_failure(scenario: &Scenario, why: String, reason: FailureReason) -> RunReport {
    let mut report = RunReport::new(&scenario.name, SystemTime::now());
    let failure = Failure::new(reason, why);
    report.push_step(StepReport::failed_as(
        "session".into(),
        "session",
        Stage::Setup,
        failure,
        StepFacts::None {},
    ));
    report
}
