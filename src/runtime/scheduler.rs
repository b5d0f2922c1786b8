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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::observer::Observers;
use super::runner::{scenario_task, Runner, Task as TaskCtx};
pub use super::state::ScenarioState;
use crate::config::scenario::{Config, Scenario};

/// Default cap on concurrent runs. Each run holds at least one socket; sonde raises its file
/// descriptor limit at start, and this keeps well inside common limits.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 1024;

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
    region: Option<String>,
    runner: Arc<Runner>,
    shutdown: CancellationToken,
    tasks: Mutex<BTreeMap<String, Task>>,
    /// Tasks of scenarios a reload removed, by name, until they end: their run in flight may
    /// still be going. If the scenario comes back, its new task waits for the old one (no
    /// overlap, and the old task's cleanup cannot delete the new task's series, which have the
    /// same labels); shutdown waits for them like for the others.
    retired: Mutex<BTreeMap<String, JoinHandle<()>>>,
    not_owned: Mutex<Vec<NotOwned>>,
    /// `--replica`: reported by the API; the metrics carry it as a label.
    replica: Option<String>,
    /// `--shard I/N`: the share of the region's scenarios this agent runs (see [`crate::shard`]).
    /// Changes only when a StatefulSet is scaled (`--shard auto`), then the config is applied again.
    shard: Mutex<Option<crate::shard::Shard>>,
}

impl Scheduler {
    /// A scheduler whose runs are told to `observers` (metrics, alerts, logs…), at most
    /// `max_concurrent_runs` at once.
    pub fn new(observers: Observers, region: Option<String>, max_concurrent_runs: usize) -> Self {
        Scheduler {
            region,
            replica: None,
            runner: Arc::new(Runner::new(max_concurrent_runs, observers)),
            shutdown: CancellationToken::new(),
            tasks: Mutex::new(BTreeMap::new()),
            retired: Mutex::new(BTreeMap::new()),
            not_owned: Mutex::new(Vec::new()),
            shard: Mutex::new(None),
        }
    }

    /// Run only the scenarios of `shard` (set before the first [`Scheduler::apply`]).
    pub fn with_shard(self, shard: Option<crate::shard::Shard>) -> Self {
        self.set_shard(shard);
        self
    }

    /// A new share of the work; it takes effect at the next [`Scheduler::apply`].
    pub fn set_shard(&self, shard: Option<crate::shard::Shard>) {
        *self.shard.lock().unwrap_or_else(|e| e.into_inner()) = shard;
    }

    pub fn shard(&self) -> Option<crate::shard::Shard> {
        *self.shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn with_replica(mut self, replica: Option<String>) -> Self {
        self.replica = replica;
        self
    }

    pub fn replica(&self) -> Option<&str> {
        self.replica.as_deref()
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
        let shard = self.shard();
        for sc in &config.scenarios {
            let owned = selected(sc, self.region.as_deref())
                .and_then(|()| crate::shard::owns(shard, &sc.name));
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
        let owned: Vec<Arc<Scenario>> = tasks.values().map(|t| t.state.scenario.clone()).collect();
        for o in self.runner.observers().iter() {
            o.scheduled(&owned);
        }
        *self.not_owned.lock().unwrap_or_else(|e| e.into_inner()) = not_owned;
    }

    fn spawn(&self, scenario: Arc<Scenario>, prev: Option<JoinHandle<()>>) -> Task {
        let state = Arc::new(ScenarioState::new(scenario.clone()));
        let cancel = self.shutdown.child_token();
        let ctx = TaskCtx {
            scenario: scenario.clone(),
            state: state.clone(),
            cancel: cancel.clone(),
            runner: self.runner.clone(),
        };
        Task {
            fingerprint: scenario.fingerprint,
            state,
            cancel,
            handle: tokio::spawn(scenario_task(ctx, prev)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
