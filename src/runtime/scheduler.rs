//! The scheduler: every scenario runs every `interval`, forever, until removed or shut down.
//!
//! - **Spread.** A scenario's runs happen at wall-clock times `t` with `t mod interval == offset`,
//!   where the offset is a stable hash of the name (as Prometheus spreads scrapes): 10,000 checks
//!   with the same interval do not fire in the same millisecond, and agents in several regions run
//!   the same scenario at the same instant, so their results line up.
//! - **No overlap.** Each scenario is one task that runs, then waits for its next tick. A tick
//!   that falls due while a run is still going is taken as soon as the run ends (late: the lag
//!   histogram shows it), as Go's ticker and so Prometheus's scrape loop do — with `timeout` equal
//!   to `interval` a target that always times out is still probed every interval. Older ticks
//!   that also fell due (the run plus its wait for a permit took more than an interval) are
//!   skipped and counted in `sonde_scenario_runs_total{result="skipped"}`.
//! - **Bounded.** A global semaphore caps concurrent runs; `timeout` bounds every run.
//! - **Reload** ([`Scheduler::apply`]) keeps the task, state and series of every scenario whose
//!   fingerprint is unchanged, replaces changed ones (the new version starts after the old one's
//!   in-flight run ends, so even then a scenario never overlaps itself), and removes the rest.
//! - **Shutdown** stops scheduling and waits for in-flight runs, each bounded by its deadline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::scenario::{Config, Scenario};
use crate::engine::{self, RunReport};
use crate::metrics::{Metrics, ScenarioMetrics};
use crate::runtime::session::Session;

/// Default cap on concurrent runs. Each run holds at least one socket; sonde raises its file
/// descriptor limit at start, and this keeps well inside common limits.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 1024;

/// What the API shows about one scheduled scenario; updated by its task after every run.
pub struct ScenarioState {
    pub scenario: Arc<Scenario>,
    last: Mutex<Option<Arc<RunReport>>>,
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub skipped: AtomicU64,
    /// Unix milliseconds of the next planned run.
    pub next_run_ms: AtomicU64,
    /// Unix milliseconds of the last successful run (0: never).
    pub last_success_ms: AtomicU64,
}

impl ScenarioState {
    fn new(scenario: Arc<Scenario>) -> Self {
        ScenarioState {
            scenario,
            last: Mutex::new(None),
            runs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            next_run_ms: AtomicU64::new(0),
            last_success_ms: AtomicU64::new(0),
        }
    }

    pub fn last(&self) -> Option<Arc<RunReport>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_last(&self, r: Arc<RunReport>) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }
}

struct Task {
    fingerprint: u64,
    state: Arc<ScenarioState>,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// A scenario this agent does not run, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NotOwned {
    pub scenario: String,
    pub reason: String,
}

/// Runs scenarios on their schedules.
pub struct Scheduler {
    metrics: Arc<Metrics>,
    region: Option<String>,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
    tasks: Mutex<BTreeMap<String, Task>>,
    /// Tasks of scenarios a reload removed, by name, until they end: their run in flight may
    /// still be going. If the scenario comes back, its new task waits for the old one (no
    /// overlap, and the old task's cleanup cannot delete the new task's series, which have the
    /// same labels); shutdown waits for them like for the others.
    retired: Mutex<BTreeMap<String, JoinHandle<()>>>,
    not_owned: Mutex<Vec<NotOwned>>,
    /// `--shard I/N`: the share of the region's scenarios this agent runs (see [`crate::shard`]).
    shard: Option<crate::shard::Shard>,
    /// Fed every run of scenarios with an `alert:` block (see [`crate::alert`]).
    alerts: crate::alert::Alerts,
}

impl Scheduler {
    pub fn new(metrics: Arc<Metrics>, region: Option<String>, max_concurrent_runs: usize) -> Self {
        Scheduler {
            metrics,
            region,
            // Semaphore::new panics above MAX_PERMITS, and the cap comes from the command line.
            permits: Arc::new(Semaphore::new(
                max_concurrent_runs.clamp(1, Semaphore::MAX_PERMITS),
            )),
            shutdown: CancellationToken::new(),
            tasks: Mutex::new(BTreeMap::new()),
            retired: Mutex::new(BTreeMap::new()),
            not_owned: Mutex::new(Vec::new()),
            shard: None,
            alerts: crate::alert::Alerts::disabled(),
        }
    }

    /// Raise alerts through `alerts` (set before the first [`Scheduler::apply`]).
    pub fn with_alerts(mut self, alerts: crate::alert::Alerts) -> Self {
        self.alerts = alerts;
        self
    }

    pub fn alerts(&self) -> &crate::alert::Alerts {
        &self.alerts
    }

    /// Run only the scenarios of `shard` (set before the first [`Scheduler::apply`]).
    pub fn with_shard(mut self, shard: Option<crate::shard::Shard>) -> Self {
        self.shard = shard;
        self
    }

    pub fn shard(&self) -> Option<crate::shard::Shard> {
        self.shard
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// Make `config` the running configuration (see the module docs for what is kept).
    pub fn apply(&self, config: &Config) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let mut old = std::mem::take(&mut *tasks);
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|_, h| !h.is_finished());
        let mut not_owned = Vec::new();
        for sc in &config.scenarios {
            let owned = selected(sc, self.region.as_deref())
                .and_then(|()| crate::shard::owns(self.shard, &sc.name));
            if let Err(reason) = owned {
                not_owned.push(NotOwned {
                    scenario: sc.name.clone(),
                    reason,
                });
                continue;
            }
            let prev = match old.remove(&sc.name) {
                Some(t) if t.fingerprint == sc.fingerprint && !t.handle.is_finished() => {
                    tasks.insert(sc.name.clone(), t);
                    continue;
                }
                Some(t) => {
                    t.cancel.cancel();
                    Some(t.handle)
                }
                None => retired.remove(&sc.name),
            };
            tasks.insert(sc.name.clone(), self.spawn(sc.clone(), prev));
        }
        for (name, t) in old {
            t.cancel.cancel();
            retired.insert(name, t.handle);
        }
        self.metrics.scenarios.set(tasks.len() as i64);
        let owned: Vec<Arc<Scenario>> = tasks.values().map(|t| t.state.scenario.clone()).collect();
        self.alerts.apply(&owned);
        *self.not_owned.lock().unwrap_or_else(|e| e.into_inner()) = not_owned;
    }

    fn spawn(&self, scenario: Arc<Scenario>, prev: Option<JoinHandle<()>>) -> Task {
        let state = Arc::new(ScenarioState::new(scenario.clone()));
        let cancel = self.shutdown.child_token();
        let handle = tokio::spawn(scenario_loop(
            scenario.clone(),
            state.clone(),
            cancel.clone(),
            prev,
            self.metrics.clone(),
            self.region.clone(),
            self.permits.clone(),
            self.alerts.clone(),
        ));
        Task {
            fingerprint: scenario.fingerprint,
            state,
            cancel,
            handle,
        }
    }

    /// The scheduled scenarios' states, by name.
    pub fn states(&self) -> Vec<Arc<ScenarioState>> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.values().map(|t| t.state.clone()).collect()
    }

    pub fn state(&self, name: &str) -> Option<Arc<ScenarioState>> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.get(name).map(|t| t.state.clone())
    }

    /// Scenarios of the configuration that this agent does not run, with the reason.
    pub fn not_owned(&self) -> Vec<NotOwned> {
        self.not_owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stop scheduling and wait for in-flight runs to finish (each within its own deadline).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let mut handles: Vec<JoinHandle<()>> = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *tasks)
                .into_values()
                .map(|t| t.handle)
                .collect()
        };
        handles.extend(
            std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()))
                .into_values(),
        );
        for h in handles {
            let _ = h.await;
        }
    }
}

/// Whether this agent runs `sc`: `regions:` lists names to include and `!names` to exclude. An
/// agent without a region runs everything (a single agent needs no region).
pub fn selected(sc: &Scenario, region: Option<&str>) -> Result<(), String> {
    let Some(region) = region else {
        return Ok(());
    };
    let mut includes = sc.regions.iter().filter(|r| !r.starts_with('!')).peekable();
    let listed = includes.peek().is_some();
    if listed && !sc.regions.iter().any(|r| r == region) {
        return Err(format!(
            "region {region} is not in its regions ({})",
            sc.regions.join(", ")
        ));
    }
    if sc
        .regions
        .iter()
        .any(|r| r.strip_prefix('!') == Some(region))
    {
        return Err(format!(
            "region {region} is excluded by its regions (!{region})"
        ));
    }
    Ok(())
}

/// How long from `now` (Unix time) until the scenario's next slot: the next `t` with
/// `t mod interval == hash(name) mod interval`.
pub fn wait_for_slot(name: &str, interval: Duration, now: Duration) -> Duration {
    let iv = interval.as_nanos().max(1);
    let offset = u128::from(crate::hash::stable_hash(name)) % iv;
    let phase = now.as_nanos() % iv;
    let wait = (offset + iv - phase) % iv;
    Duration::from_nanos(wait as u64)
}

/// After a run planned at `planned` ends at `now`: the next planned start, and how many ticks
/// are skipped. The latest tick that fell due during the run is kept (and runs at once); only
/// the ones before it are skipped.
pub fn next_tick(planned: Instant, interval: Duration, now: Instant) -> (Instant, u64) {
    let next = planned + interval;
    if next > now {
        return (next, 0);
    }
    let iv = interval.as_nanos().max(1);
    let older = now.duration_since(next).as_nanos() / iv;
    let latest = next + Duration::from_nanos((older * iv) as u64);
    (latest, older as u64)
}

#[allow(clippy::too_many_arguments)] // one task's whole context, passed once at spawn
async fn scenario_loop(
    scenario: Arc<Scenario>,
    state: Arc<ScenarioState>,
    cancel: CancellationToken,
    prev: Option<JoinHandle<()>>,
    metrics: Arc<Metrics>,
    region: Option<String>,
    permits: Arc<Semaphore>,
    alerts: crate::alert::Alerts,
) {
    // A changed scenario's old version may still be running: never overlap with it.
    if let Some(prev) = prev {
        let _ = prev.await;
    }
    if scenario.persistent {
        return persistent_loop(scenario, state, cancel, metrics, region, permits, alerts).await;
    }
    let mut series = ScenarioMetrics::new(metrics.clone(), &scenario, region.as_deref());
    let interval = scenario.interval;
    let wall_now = SystemTime::now();
    let mut planned = Instant::now()
        + wait_for_slot(
            &scenario.name,
            interval,
            wall_now.duration_since(UNIX_EPOCH).unwrap_or_default(),
        );
    loop {
        state.next_run_ms.store(
            crate::time::unix_ms(
                SystemTime::now() + planned.saturating_duration_since(Instant::now()),
            ),
            Ordering::Relaxed,
        );
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(planned) => {}
        }
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // semaphore closed: shutting down
            },
        };
        let started = Instant::now();
        metrics
            .scheduler_lag
            .observe(started.saturating_duration_since(planned).as_secs_f64());
        metrics.runs_in_flight.inc();
        // The run is its own task: a panic in a probe fails this run, not the scheduler.
        let sc = scenario.clone();
        let report = match tokio::spawn(async move { engine::run(&sc).await }).await {
            Ok(r) => r,
            Err(e) => panicked_report(&scenario, started, e),
        };
        metrics.runs_in_flight.dec();
        drop(permit);
        series.record(&report);
        // A version that a reload replaced or removed no longer speaks for the scenario's alert.
        if !cancel.is_cancelled() {
            alerts.observe(&scenario, &report);
        }
        state.runs.fetch_add(1, Ordering::Relaxed);
        if report.success() {
            state
                .last_success_ms
                .store(crate::time::unix_ms(SystemTime::now()), Ordering::Relaxed);
        } else {
            state.failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                scenario = %scenario.name,
                step = report.failed_step.as_deref().unwrap_or(""),
                "run failed: {}",
                report.redact_text(&scenario, &report.failure().map(|f| f.to_string()).unwrap_or_default())
            );
        }
        state.set_last(Arc::new(report));
        let skipped;
        (planned, skipped) = next_tick(planned, interval, Instant::now());
        if skipped > 0 {
            series.skipped(skipped);
            state.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
    }
    series.remove();
}

/// The loop of a `session: persistent` scenario (see [`crate::runtime::session`]): the same schedule as
/// [`scenario_loop`], with one [`Session`] kept across runs, a watcher that notices a broken
/// connection between runs, and reconnects between ticks.
async fn persistent_loop(
    scenario: Arc<Scenario>,
    state: Arc<ScenarioState>,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
    region: Option<String>,
    permits: Arc<Semaphore>,
    alerts: crate::alert::Alerts,
) {
    let mut series = ScenarioMetrics::new(metrics.clone(), &scenario, region.as_deref());
    let interval = scenario.interval;
    let wall_now = SystemTime::now();
    let mut planned = Instant::now()
        + wait_for_slot(
            &scenario.name,
            interval,
            wall_now.duration_since(UNIX_EPOCH).unwrap_or_default(),
        );
    let mut session = Session::default();
    series.session_connected(false);
    loop {
        state.next_run_ms.store(
            crate::time::unix_ms(
                SystemTime::now() + planned.saturating_duration_since(Instant::now()),
            ),
            Ordering::Relaxed,
        );
        let reconnect_at = session
            .reconnect_at
            .filter(|_| !session.connected && session.ever_connected);
        enum Wake {
            Tick,
            Broken(String),
            Reconnect,
        }
        let wake = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(planned) => Wake::Tick,
            why = session.broken() => Wake::Broken(why),
            _ = tokio::time::sleep_until(reconnect_at.unwrap_or(planned)), if reconnect_at.is_some_and(|r| r < planned) => Wake::Reconnect,
        };
        match wake {
            Wake::Broken(why) => {
                tracing::debug!(scenario = %scenario.name, "session broken: {}", scenario.redact_text(&why));
                session.disconnect(Some(why));
                series.session_connected(false);
                continue;
            }
            Wake::Reconnect => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                // Boxed: inline, the whole engine's future would sit in every session's task
                // for its lifetime, not just while reconnecting.
                let (reconnected, report) = Box::pin(session.reconnect(&scenario)).await;
                drop(permit);
                if reconnected {
                    series.session_reconnected();
                }
                series.session_connected(session.connected);
                if !report.success() {
                    state.set_last(Arc::new(report));
                }
                continue;
            }
            Wake::Tick => {}
        }
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let started = Instant::now();
        metrics
            .scheduler_lag
            .observe(started.saturating_duration_since(planned).as_secs_f64());
        metrics.runs_in_flight.inc();
        // The run is its own task (a panic fails the run and resets the session, not the
        // scheduler); the session travels there and back.
        let sc = scenario.clone();
        let mut sess = std::mem::take(&mut session);
        let res = tokio::spawn(async move {
            let r = sess.run(&sc).await;
            (r, sess)
        })
        .await;
        let report = match res {
            Ok(((reconnected, report), sess)) => {
                session = sess;
                if reconnected {
                    series.session_reconnected();
                }
                report
            }
            Err(e) => panicked_report(&scenario, started, e),
        };
        metrics.runs_in_flight.dec();
        drop(permit);
        series.session_connected(session.connected);
        series.session_age(session.connected_since().map(|t| t.elapsed()));
        series.record(&report);
        if !cancel.is_cancelled() {
            alerts.observe(&scenario, &report);
        }
        state.runs.fetch_add(1, Ordering::Relaxed);
        if report.success() {
            state
                .last_success_ms
                .store(crate::time::unix_ms(SystemTime::now()), Ordering::Relaxed);
        } else {
            state.failures.fetch_add(1, Ordering::Relaxed);
        }
        state.set_last(Arc::new(report));
        let skipped;
        (planned, skipped) = next_tick(planned, interval, Instant::now());
        if skipped > 0 {
            series.skipped(skipped);
            state.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
    }
    Box::pin(session.end(&scenario)).await;
    series.remove();
}

/// A run whose task panicked: a failure of the run (not of a step: the target did nothing wrong)
/// whose trace carries the panic message, so the bug is visible instead of silently stopping the
/// scenario. No failure reason is counted: the bounded reasons describe targets.
fn panicked_report(scenario: &Scenario, started: Instant, e: tokio::task::JoinError) -> RunReport {
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
    fn slots_are_stable_and_spread() {
        let iv = Duration::from_secs(10);
        let now = Duration::from_secs(1_700_000_003);
        let a = wait_for_slot("checkout", iv, now);
        assert_eq!(a, wait_for_slot("checkout", iv, now));
        assert!(a < iv);
        // The slot is a fixed phase of the interval: a second later, a second less to wait
        // (modulo the interval).
        let b = wait_for_slot("checkout", iv, now + Duration::from_secs(1));
        assert_eq!(
            (a + iv - b).as_nanos() % iv.as_nanos(),
            Duration::from_secs(1).as_nanos()
        );
        // 10,000 names spread over 1 s: no 10 ms bucket holds more than 3% of them.
        let mut buckets = [0u32; 100];
        for i in 0..10_000 {
            let w = wait_for_slot(&format!("scenario-{i}"), Duration::from_secs(1), now);
            buckets[(w.as_millis() / 10) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n < 300), "{buckets:?}");
    }

    #[test]
    fn any_concurrency_cap_is_accepted() {
        for cap in [0, 1, usize::MAX] {
            let s = Scheduler::new(Metrics::new(), None, cap);
            assert!(s.permits.available_permits() >= 1);
        }
    }

    #[test]
    fn a_tick_due_during_the_run_is_taken_late_older_ones_are_skipped() {
        let t0 = Instant::now();
        let iv = Duration::from_secs(1);
        let ms = Duration::from_millis;
        // Ended within the interval: next tick as planned, nothing skipped.
        assert_eq!(next_tick(t0, iv, t0 + ms(300)), (t0 + iv, 0));
        // timeout == interval: ended just after the next tick, which runs at once.
        assert_eq!(next_tick(t0, iv, t0 + ms(1_002)), (t0 + iv, 0));
        // Ended 2.5 intervals late: the tick at +1 s is skipped, the one at +2 s runs now.
        assert_eq!(next_tick(t0, iv, t0 + ms(2_500)), (t0 + 2 * iv, 1));
        // Exactly on a tick: that tick is due and taken.
        assert_eq!(next_tick(t0, iv, t0 + 3 * iv), (t0 + 3 * iv, 2));
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
}

#[cfg(test)]
mod reload_tests {
    use super::*;
    use crate::config::{load_str, LoadOptions};
    use crate::metrics::Format;
    use sonde_testkit::http::RawServer;

    /// Hang guard: polls `f` every 10 ms, panics after 15 s.
    async fn wait_until(what: &str, f: impl Fn() -> bool) {
        let guard = Instant::now() + Duration::from_secs(15);
        while !f() {
            assert!(
                Instant::now() < guard,
                "hang guard: still waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn exposition(m: &Metrics) -> String {
        String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap()
    }

    /// A reload removes a scenario while its run is in flight, the next reload brings it back:
    /// the old task's cleanup must not delete the new task's series (same labels), and the two
    /// versions must not run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scenario_removed_and_re_added_mid_run_keeps_its_series() {
        let never = RawServer::never_answers().await;
        let yaml = format!(
            "scenario: s\ninterval: 1s\ntimeout: 1s\nhttp: {{url: \"{}\"}}\n",
            never.url("/")
        );
        let cfg = load_str("t.yaml", &yaml, &LoadOptions::default()).expect("valid");
        let metrics = Metrics::new();
        let sched = Scheduler::new(metrics.clone(), None, 16);
        sched.apply(&cfg);
        wait_until("the first run to start", || {
            metrics.runs_in_flight.get() == 1
        })
        .await;
        sched.apply(&Config::default());
        sched.apply(&cfg);
        let st = sched.state("s").expect("scheduled again");
        wait_until("the new version's first run", || {
            st.runs.load(Ordering::Relaxed) >= 1
        })
        .await;
        let text = exposition(&metrics);
        assert!(
            text.contains(r#"sonde_scenario_runs_total{scenario="s",result="timeout"} 1"#),
            "the re-added scenario's series are gone or wrong:\n{text}"
        );
        sched.shutdown().await;
    }
}
