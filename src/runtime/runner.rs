//! One runner for every scheduled scenario, per-run and persistent alike: it owns the
//! concurrency cap, runs each round as its own task (a panic fails that run, not the scheduler),
//! and does the after-run bookkeeping — the API's state, the schedule, and handing the report
//! to the observers ([`super::observer`]).
//!
//! A scenario's task is [`scenario_task`]: the schedule loop of a per-run scenario, or of a
//! persistent one with its [`Session`] (a watcher that notices a broken connection between
//! runs, and reconnects between ticks).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::observer::{Observers, SessionEvent, Watchers};
use super::scheduler::{next_tick, wait_for_slot};
use super::session::Session;
use super::state::ScenarioState;
use crate::config::scenario::Scenario;
use crate::engine::{self, RunReport};

/// What every scenario task shares: the cap on concurrent runs and the observers.
pub struct Runner {
    permits: Arc<Semaphore>,
    observers: Observers,
}

impl Runner {
    pub fn new(max_concurrent_runs: usize, observers: Observers) -> Self {
        Runner {
            // Semaphore::new panics above MAX_PERMITS, and the cap comes from the command line.
            permits: Arc::new(Semaphore::new(
                max_concurrent_runs.clamp(1, Semaphore::MAX_PERMITS),
            )),
            observers,
        }
    }

    pub fn observers(&self) -> &Observers {
        &self.observers
    }

    /// A permit to run, or `None` when the task is cancelled first.
    async fn acquire(&self, cancel: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            p = self.permits.clone().acquire_owned() => p.ok(),
        }
    }

    /// Run `round` as its own task, told to the observers as a run that was planned at
    /// `planned`. A panic becomes a failed run whose trace carries the panic message.
    async fn guarded<T: Send + 'static>(
        &self,
        scenario: &Scenario,
        planned: Instant,
        round: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, RunReport> {
        let started = Instant::now();
        let lag = started.saturating_duration_since(planned);
        self.observers.iter().for_each(|o| o.run_starting(lag));
        let res = tokio::spawn(round).await;
        self.observers.iter().for_each(|o| o.run_ended());
        res.map_err(|e| panicked_report(scenario, started, e))
    }
}

/// One scenario's task: everything it needs, passed once at spawn.
pub struct Task {
    pub scenario: Arc<Scenario>,
    pub state: Arc<ScenarioState>,
    pub cancel: CancellationToken,
    pub runner: Arc<Runner>,
}

/// The schedule of one task: when its next run is planned.
struct Clock {
    planned: Instant,
    interval: Duration,
}

impl Clock {
    fn start(scenario: &Scenario) -> Clock {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            planned: Instant::now() + wait_for_slot(&scenario.name, scenario.interval, now),
            interval: scenario.interval,
        }
    }

    fn publish(&self, state: &ScenarioState) {
        let wall = SystemTime::now() + self.planned.saturating_duration_since(Instant::now());
        state
            .next_run_ms
            .store(crate::time::unix_ms(wall), Ordering::Relaxed);
    }

    /// Plan the next run after one that ended now; returns the ticks skipped.
    fn advance(&mut self) -> u64 {
        let skipped;
        (self.planned, skipped) = next_tick(self.planned, self.interval, Instant::now());
        skipped
    }
}

/// A scenario's task: wait for a changed scenario's old version (never overlap with it), then
/// run the schedule until cancelled.
///
/// Not an `async fn`, which would keep its arguments twice in the future every scenario's task
/// holds for its life (rust-lang/rust#62958).
#[allow(clippy::manual_async_fn)] // the point: see above
pub fn scenario_task(
    task: Task,
    prev: Option<JoinHandle<()>>,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        if let Some(prev) = prev {
            let _ = prev.await;
        }
        let mut watchers = Watchers::new(task.runner.observers(), &task.scenario);
        if task.scenario.persistent {
            persistent_loop(&task, &mut watchers).await;
        } else {
            per_run_loop(&task, &mut watchers).await;
        }
        watchers.end();
    }
}

impl Task {
    /// Sleep until `at`; false when cancelled first.
    async fn sleep_until(&self, at: Instant) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep_until(at) => true,
        }
    }

    /// Hand what happened to the session's connections to the observers and the API's event
    /// list, then its state (connected, age) to the observers.
    fn session_events(&self, session: &mut Session, watchers: &mut Watchers) {
        for e in session.take_events() {
            watchers.session(&e);
            self.state.session_event(&e);
        }
        watchers.session(&session_state(session));
    }

    /// After every scheduled run: observers, the API's state, the next tick.
    fn after_run(&self, watchers: &mut Watchers, report: RunReport, clock: &mut Clock) {
        // A version that a reload replaced or removed no longer speaks for the scenario.
        watchers.run(&report, !self.cancel.is_cancelled());
        self.state.record(Arc::new(kept(report)));
        let skipped = clock.advance();
        if skipped > 0 {
            watchers.skipped(skipped);
            self.state.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
    }
}

async fn per_run_loop(task: &Task, watchers: &mut Watchers) {
    let mut clock = Clock::start(&task.scenario);
    loop {
        clock.publish(&task.state);
        if !task.sleep_until(clock.planned).await {
            break;
        }
        let Some(permit) = task.runner.acquire(&task.cancel).await else {
            break;
        };
        let sc = task.scenario.clone();
        let round = async move { engine::run(&sc).await };
        // Boxed: the run's state lives only while it runs, not in the idle task.
        let report = Box::pin(task.runner.guarded(&task.scenario, clock.planned, round))
            .await
            .unwrap_or_else(|r| r);
        drop(permit);
        task.after_run(watchers, report, &mut clock);
    }
}

/// Why a persistent scenario's task woke up.
enum Wake {
    Cancelled,
    Tick,
    Broken(String),
    Reconnect,
}

async fn persistent_loop(task: &Task, watchers: &mut Watchers) {
    let mut clock = Clock::start(&task.scenario);
    let mut session = Session::default();
    watchers.session(&SessionEvent::State {
        connected: false,
        since: None,
    });
    loop {
        clock.publish(&task.state);
        match wake(task, &session, clock.planned).await {
            Wake::Cancelled => break,
            Wake::Broken(why) => {
                session.disconnect(Some(why));
                task.session_events(&mut session, watchers);
                continue;
            }
            Wake::Reconnect => {
                if !Box::pin(reconnect(task, &mut session, watchers)).await {
                    break;
                }
                continue;
            }
            Wake::Tick => {}
        }
        let Some(permit) = task.runner.acquire(&task.cancel).await else {
            break;
        };
        // Boxed, like the reconnect above: a round's state (the steps' futures) is large, and
        // inline it would sit in every idle session's task between runs, 10,000 times over.
        let report = Box::pin(session_round(task, &mut session, clock.planned)).await;
        drop(permit);
        task.session_events(&mut session, watchers);
        task.after_run(watchers, report, &mut clock);
    }
    Box::pin(session.end(&task.scenario)).await;
}

/// What an idle session waits for. One timer for the tick and the reconnect, whichever comes
/// first: this future is what every idle session's task holds, and a timer is 112 bytes.
async fn wake(task: &Task, session: &Session, planned: Instant) -> Wake {
    let reconnect_at = session
        .reconnect_at
        .filter(|r| !session.connected && session.ever_connected && *r < planned);
    tokio::select! {
        biased;
        _ = task.cancel.cancelled() => Wake::Cancelled,
        // The tick first when both are due. A session waiting to reconnect is not connected, so
        // it cannot break meanwhile.
        _ = tokio::time::sleep_until(reconnect_at.unwrap_or(planned)) => match reconnect_at {
            Some(_) if Instant::now() < planned => Wake::Reconnect,
            _ => Wake::Tick,
        },
        why = session.broken() => Wake::Broken(why),
    }
}

fn session_state(session: &Session) -> SessionEvent {
    SessionEvent::State {
        connected: session.connected,
        since: session.connected_since(),
    }
}

/// Setup again between ticks. A failed attempt is shown as the last run (it says why the
/// session is down) without counting as a scheduled run. False when shutting down.
async fn reconnect(task: &Task, session: &mut Session, watchers: &mut Watchers) -> bool {
    let Some(permit) = task.runner.acquire(&task.cancel).await else {
        return false;
    };
    // Boxed: inline, the whole engine's future would sit in every session's task for its
    // lifetime, not just while reconnecting.
    let (_, report) = Box::pin(session.reconnect(&task.scenario)).await;
    drop(permit);
    task.session_events(session, watchers);
    // Measured (setup steps, failures by reason) but not counted as a scheduled run.
    watchers.attempt(&report);
    task.state.record_attempt(Arc::new(kept(report)));
    true
}

/// A report as the scenario's state keeps it until the next one: its step list trimmed to the
/// steps that ran. A `Vec` of reports this size starts with room for four, so a persistent
/// session's two-step round kept twice the memory it needed, in every session; so did each
/// step's one event in room for four (~240 bytes a session).
fn kept(mut report: RunReport) -> RunReport {
    report.steps.shrink_to_fit();
    for s in &mut report.steps {
        s.events.shrink_to_fit();
        s.captures.shrink_to_fit();
        s.checks.shrink_to_fit();
    }
    report
}

/// One scheduled run of a persistent scenario. The run is its own task (a panic fails the run
/// and resets the session, not the scheduler); the session travels there and back.
async fn session_round(task: &Task, session: &mut Session, planned: Instant) -> RunReport {
    let sc = task.scenario.clone();
    let mut sess = std::mem::take(session);
    let round = async move {
        let r = sess.run(&sc).await;
        (r, sess)
    };
    match task.runner.guarded(&task.scenario, planned, round).await {
        Ok(((_, report), sess)) => {
            *session = sess;
            report
        }
        Err(report) => report,
    }
}

/// A run whose task panicked: a failure of the run (not of a step: the target did nothing wrong)
/// whose trace carries the panic message, so the bug is visible instead of silently stopping the
/// scenario. No failure reason is counted: the bounded reasons describe targets.
pub(crate) fn panicked_report(
    scenario: &Scenario,
    started: Instant,
    e: tokio::task::JoinError,
) -> RunReport {
    let what = match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with a non-text payload".into()),
        Err(e) => e.to_string(),
    };
    let what = format!(
        "internal error in sonde (please report it): the run panicked: {}",
        scenario.redact_text(&what)
    );
    tracing::error!(scenario = %scenario.name, "{what}");
    RunReport::internal_error(
        &scenario.name,
        SystemTime::now() - started.elapsed(),
        started.elapsed(),
        what,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RunResult;

    #[test]
    fn any_concurrency_cap_is_accepted() {
        for cap in [0, 1, usize::MAX] {
            let r = Runner::new(cap, Arc::new([]));
            assert!(r.permits.available_permits() >= 1);
        }
    }

    #[tokio::test]
    async fn a_panicking_run_is_a_run_failure_with_the_panic_message() {
        std::env::set_var("SONDE_TEST_PANIC_SECRET", "panic-secret-value");
        let cfg = crate::config::load_str(
            "p.yaml",
            "scenario: p\nhttp: {url: \"http://127.0.0.1:1/?k={{ env.SONDE_TEST_PANIC_SECRET }}\"}\n",
            &Default::default(),
        )
        .unwrap();
        let e = tokio::spawn(async { panic!("boom with panic-secret-value inside") })
            .await
            .unwrap_err();
        let r = panicked_report(&cfg.scenarios[0], Instant::now(), e);
        assert_eq!(r.result, RunResult::Failure);
        assert_eq!(r.failed_step, None);
        let msg = r.internal_error.unwrap();
        assert!(
            msg.contains("the run panicked: boom with <redacted> inside"),
            "{msg}"
        );
    }

    /// Every persistent session's task holds this future for its life: at 792 bytes tokio's
    /// task cell (header, future, trailer, in 128-byte steps) is 896 bytes; the 888 it was
    /// took 1,024 (the http steps' cookie jar and pool sat inline in every session).
    #[test]
    fn an_idle_sessions_task_stays_small() {
        let cfg = crate::config::load_str(
            "p.yaml",
            "scenario: p\nsession: persistent\nsetup:\n  - {ws.connect: {as: a, url: \"ws://127.0.0.1:1/\"}}\nsteps:\n  - {ws.send: {on: a, text: x}}\n",
            &Default::default(),
        )
        .unwrap();
        let sc = cfg.scenarios[0].clone();
        let task = Task {
            scenario: sc.clone(),
            state: Arc::new(ScenarioState::new(sc)),
            cancel: CancellationToken::new(),
            runner: Arc::new(Runner::new(1, Arc::new([]))),
        };
        let size = std::mem::size_of_val(&scenario_task(task, None));
        assert!(size <= 792, "{size}");
    }
}
