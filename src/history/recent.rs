//! The last runs of each scenario in memory: the history the status page reads when the store
//! is off (`--storage.path=''`, or a build without it), so the page still shows a strip, uptime
//! over what is kept and a latency chart. Nothing survives a restart.
//!
//! An entry is compact (about 60 bytes plus 8 per step): 90 runs of 10,000 scenarios are about
//! 60 MB. `--status.recent-runs 0` keeps nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::config::scenario::Scenario;
use crate::engine::RunReport;
use crate::runtime::observer::{Observer, ScenarioObserver};

use super::{HistoryRead, Incident, LatencyPoint, RunFilter, RunRow, Slot, StepRow, Uptime};

/// One kept run.
struct Entry {
    id: i64,
    started_ms: i64,
    duration_s: f32,
    success: bool,
    failed_step: Option<u16>,
    reason: Option<&'static str>,
    /// The failure's message, redacted (failures only).
    error: Option<Box<str>>,
    /// (index into the scenario's step names, seconds), in the order the steps ran.
    steps: Box<[(u16, f32)]>,
}

struct Ring {
    region: String,
    /// Setup, steps and teardown names and kinds, in order.
    names: Arc<[(String, &'static str)]>,
    runs: VecDeque<Entry>,
}

/// The in-memory history: an [`Observer`] of runs and a [`HistoryRead`].
pub struct Recent {
    cap: usize,
    region: String,
    rings: RwLock<HashMap<String, Arc<Mutex<Ring>>>>,
    next_id: std::sync::atomic::AtomicI64,
}

impl Recent {
    /// Keeps the last `cap` runs of each scenario.
    pub fn new(cap: usize, region: Option<String>) -> Arc<Recent> {
        Arc::new(Recent {
            cap,
            region: region.unwrap_or_default(),
            rings: RwLock::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicI64::new(1),
        })
    }

    /// Runs of `scenario`, oldest first, through `f`.
    fn with<T>(&self, scenario: &str, f: impl FnOnce(&Ring) -> T) -> Option<T> {
        let ring = self
            .rings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(scenario)
            .cloned()?;
        let ring = ring.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&ring))
    }

    /// Record a finished run (what the observer does; public for tests and benchmarks).
    pub fn record(&self, scenario: &Scenario, report: &RunReport, ended_ms: i64) {
        if self.cap == 0 {
            return;
        }
        let ring = {
            let mut rings = self.rings.write().unwrap_or_else(|e| e.into_inner());
            rings
                .entry(scenario.name.clone())
                .or_insert_with(|| Arc::new(Mutex::new(self.ring_for(scenario))))
                .clone()
        };
        let mut ring = ring.lock().unwrap_or_else(|e| e.into_inner());
        let index = |name: &str| ring.names.iter().position(|(n, _)| n == name);
        let steps = report
            .steps
            .iter()
            .filter_map(|s| Some((index(&s.name)? as u16, s.duration.as_secs_f32())))
            .collect();
        let failure = report.failure();
        let entry = Entry {
            id: self
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            started_ms: ended_ms - report.duration.as_millis() as i64,
            duration_s: report.duration.as_secs_f32(),
            success: report.success(),
            failed_step: report
                .failed_step
                .as_deref()
                .and_then(index)
                .map(|i| i as u16),
            reason: failure
                .map(|f| f.reason.as_str())
                .or((!report.success()).then_some("internal")),
            error: (!report.success()).then(|| {
                let msg = failure
                    .map(|f| f.message.clone())
                    .or(report.internal_error.clone())
                    .unwrap_or_default();
                report.redact_text(scenario, &msg).into_boxed_str()
            }),
            steps,
        };
        if ring.runs.len() >= self.cap {
            ring.runs.pop_front();
        }
        ring.runs.push_back(entry);
    }

    fn ring_for(&self, scenario: &Scenario) -> Ring {
        let names = [&scenario.setup, &scenario.steps, &scenario.teardown]
            .into_iter()
            .flatten()
            .map(|s| (s.name.clone(), s.kind))
            .collect::<Vec<_>>();
        Ring {
            region: self.region.clone(),
            names: names.into(),
            runs: VecDeque::with_capacity(self.cap.min(16)),
        }
    }

    fn forget(&self, scenario: &str) {
        self.rings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(scenario);
    }
}

impl Ring {
    fn row(&self, scenario: &str, e: &Entry) -> RunRow {
        let name = |i: u16| self.names.get(i as usize);
        RunRow {
            id: e.id,
            scenario: scenario.to_string(),
            region: self.region.clone(),
            started_ms: e.started_ms,
            duration_s: e.duration_s as f64,
            success: e.success,
            failed_step: e.failed_step.and_then(name).map(|n| n.0.clone()),
            reason: e.reason.map(str::to_string),
            error: e.error.as_deref().map(str::to_string),
            steps: e
                .steps
                .iter()
                .filter_map(|(i, d)| {
                    let (n, kind) = name(*i)?;
                    Some(StepRow {
                        name: n.clone(),
                        kind: kind.to_string(),
                        success: e.failed_step != Some(*i),
                        duration_s: *d as f64,
                        phases: Vec::new(),
                        once: false,
                    })
                })
                .collect(),
            has_trace: false,
        }
    }

    /// The duration of the run (`step: None`) or of one step in `e`.
    fn duration(&self, e: &Entry, step: Option<usize>) -> Option<f64> {
        match step {
            None => Some(e.duration_s as f64),
            Some(i) => e
                .steps
                .iter()
                .find(|(j, _)| *j as usize == i)
                .map(|(_, d)| *d as f64),
        }
    }
}

/// The value at quantile `q` of sorted `v` (nearest rank).
pub(crate) fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

impl HistoryRead for Recent {
    fn runs(&self, scenario: &str, filter: &RunFilter) -> Vec<RunRow> {
        self.with(scenario, |ring| {
            ring.runs
                .iter()
                .rev()
                .filter(|e| filter.from_ms.is_none_or(|f| e.started_ms >= f))
                .filter(|e| filter.to_ms.is_none_or(|t| e.started_ms < t))
                .filter(|e| filter.success.is_none_or(|s| e.success == s))
                .filter(|e| filter.before_id.is_none_or(|b| e.id < b))
                .take(filter.limit)
                .map(|e| ring.row(scenario, e))
                .collect()
        })
        .unwrap_or_default()
    }

    fn run(&self, scenario: &str, id: i64) -> Option<(RunRow, Option<serde_json::Value>)> {
        self.with(scenario, |ring| {
            ring.runs
                .iter()
                .find(|e| e.id == id)
                .map(|e| (ring.row(scenario, e), None))
        })
        .flatten()
    }

    fn uptime(&self, scenario: &str, window: Duration) -> Uptime {
        let from = crate::time::now_ms() - window.as_millis() as i64;
        let (runs, failures) = self
            .with(scenario, |ring| {
                let kept = ring.runs.iter().filter(|e| e.started_ms >= from);
                kept.fold((0u64, 0u64), |(r, f), e| (r + 1, f + u64::from(!e.success)))
            })
            .unwrap_or_default();
        Uptime {
            window_s: window.as_secs(),
            runs,
            failures,
            ratio: (runs > 0).then(|| (runs - failures) as f64 / runs as f64),
        }
    }

    fn strip(&self, scenario: &str, slots: usize, span: Duration) -> Vec<Slot> {
        let now = crate::time::now_ms();
        let slots = slots.max(1);
        let width = (span.as_millis() as i64 / slots as i64).max(1);
        let start = now - width * slots as i64;
        let mut out: Vec<Slot> = (0..slots as i64)
            .map(|i| Slot {
                start_ms: start + i * width,
                end_ms: start + (i + 1) * width,
                ..Slot::default()
            })
            .collect();
        let mut sums = vec![0.0f64; slots];
        self.with(scenario, |ring| {
            for e in ring.runs.iter().filter(|e| e.started_ms >= start) {
                let i = (((e.started_ms - start) / width) as usize).min(slots - 1);
                let s = &mut out[i];
                s.runs += 1;
                sums[i] += e.duration_s as f64;
                if !e.success {
                    s.failures += 1;
                    s.last_reason = e.reason.map(str::to_string);
                }
            }
        });
        for (s, sum) in out.iter_mut().zip(sums) {
            s.mean_duration_s = (s.runs > 0).then(|| sum / s.runs as f64);
        }
        out
    }

    fn latency(
        &self,
        scenario: &str,
        step: Option<&str>,
        from_ms: i64,
        bucket: Duration,
    ) -> Vec<LatencyPoint> {
        let bucket = (bucket.as_millis() as i64).max(1);
        self.with(scenario, |ring| {
            let step = match step {
                Some(s) => match ring.names.iter().position(|(n, _)| n == s) {
                    Some(i) => Some(i),
                    None => return Vec::new(),
                },
                None => None,
            };
            let mut buckets: Vec<(i64, Vec<f64>)> = Vec::new();
            for e in ring.runs.iter().filter(|e| e.started_ms >= from_ms) {
                let Some(d) = ring.duration(e, step) else {
                    continue;
                };
                let t = from_ms + (e.started_ms - from_ms) / bucket * bucket;
                match buckets.last_mut() {
                    Some((bt, v)) if *bt == t => v.push(d),
                    _ => buckets.push((t, vec![d])),
                }
            }
            buckets
                .into_iter()
                .map(|(t, mut v)| {
                    v.sort_by(f64::total_cmp);
                    LatencyPoint {
                        t_ms: t,
                        count: v.len() as u64,
                        p50_s: quantile(&v, 0.5),
                        p95_s: quantile(&v, 0.95),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
    }

    fn incidents(&self, scenario: &str, from_ms: i64, limit: usize) -> Vec<Incident> {
        self.with(scenario, |ring| {
            let mut out: Vec<Incident> = Vec::new();
            let mut open: Option<Incident> = None;
            for e in ring.runs.iter().filter(|e| e.started_ms >= from_ms) {
                match (&mut open, e.success) {
                    (None, false) => {
                        open = Some(Incident {
                            from_ms: e.started_ms,
                            to_ms: None,
                            failed_runs: 1,
                            first_reason: e.reason.map(str::to_string),
                        })
                    }
                    (Some(i), false) => i.failed_runs += 1,
                    (Some(_), true) => {
                        let mut i = open.take().unwrap_or_default();
                        i.to_ms = Some(e.started_ms);
                        out.push(i);
                    }
                    (None, true) => {}
                }
            }
            out.extend(open);
            out.reverse();
            out.truncate(limit);
            out
        })
        .unwrap_or_default()
    }

    fn memory_only(&self) -> bool {
        true
    }
}

/// The [`Observer`] that feeds a [`Recent`] (which the web layer reads).
pub struct RecentObserver(pub Arc<Recent>);

impl Observer for RecentObserver {
    fn watch(&self, scenario: &Arc<Scenario>) -> Box<dyn ScenarioObserver> {
        Box::new(Watch {
            scenario: scenario.clone(),
            recent: self.0.clone(),
        })
    }

    /// Scenarios removed by a reload are forgotten (a changed one keeps its runs: same name).
    fn scheduled(&self, scenarios: &[Arc<Scenario>]) {
        let keep: std::collections::HashSet<&str> =
            scenarios.iter().map(|s| s.name.as_str()).collect();
        let gone: Vec<String> = self
            .0
            .rings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|k| !keep.contains(k.as_str()))
            .cloned()
            .collect();
        gone.iter().for_each(|g| self.0.forget(g));
    }
}

struct Watch {
    scenario: Arc<Scenario>,
    recent: Arc<Recent>,
}

impl ScenarioObserver for Watch {
    fn run(&mut self, report: &RunReport, current: bool) {
        if current {
            self.recent
                .record(&self.scenario, report, crate::time::now_ms());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::report::RunResult;

    fn scenario() -> Arc<Scenario> {
        let yaml =
            "scenario: s\ninterval: 1s\nsteps:\n  - name: a\n    tcp: {target: \"127.0.0.1:1\"}\n";
        let c = crate::config::load_str("<test>", yaml, &Default::default()).unwrap();
        c.scenarios[0].clone()
    }

    fn report(ok: bool) -> RunReport {
        let mut r = RunReport::new("s", std::time::SystemTime::now());
        r.duration = Duration::from_millis(if ok { 10 } else { 30 });
        if !ok {
            r.result = RunResult::Failure;
            r.internal_error = Some("boom <b>".into());
        }
        r
    }

    /// Runs ending at `t0 + i` seconds with the given results.
    fn filled(results: &[bool], cap: usize) -> (Arc<Recent>, i64) {
        let (sc, recent) = (scenario(), Recent::new(cap, Some("eu".into())));
        let t0 = crate::time::now_ms() - results.len() as i64 * 1000;
        for (i, ok) in results.iter().enumerate() {
            recent.record(&sc, &report(*ok), t0 + i as i64 * 1000 + 500);
        }
        (recent, t0)
    }

    #[test]
    fn the_strip_shows_results_oldest_first() {
        let (r, _) = filled(&[true, false, true, true], 90);
        let strip = r.strip("s", 4, Duration::from_secs(4));
        let got: Vec<(u64, u64)> = strip.iter().map(|s| (s.runs, s.failures)).collect();
        assert_eq!(got, [(1, 0), (1, 1), (1, 0), (1, 0)]);
        assert_eq!(strip[1].last_reason.as_deref(), Some("internal"));
    }

    #[test]
    fn only_the_last_runs_are_kept_and_filters_apply() {
        let (r, _) = filled(&[false, true, true, false, true], 3);
        let all = r.runs(
            "s",
            &RunFilter {
                limit: 10,
                ..Default::default()
            },
        );
        assert_eq!(all.len(), 3);
        assert!(all[0].id > all[1].id, "newest first");
        let failed = r.runs(
            "s",
            &RunFilter {
                success: Some(false),
                limit: 10,
                ..Default::default()
            },
        );
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].error.as_deref(), Some("boom <b>"));
        assert_eq!(failed[0].region, "eu");
        let u = r.uptime("s", Duration::from_secs(3600));
        assert_eq!((u.runs, u.failures), (3, 1));
    }

    #[test]
    fn incidents_run_from_the_first_failure_to_the_next_pass() {
        let (r, t0) = filled(&[true, false, false, true, false], 90);
        let inc = r.incidents("s", 0, 10);
        assert_eq!(inc.len(), 2);
        assert_eq!(inc[0].to_ms, None, "the newest is still open");
        assert_eq!(inc[1].failed_runs, 2);
        assert_eq!(inc[1].to_ms.unwrap() - inc[1].from_ms, 2000 + 20);
        assert!(inc[1].from_ms > t0);
        let lat = r.latency("s", None, 0, Duration::from_secs(3600 * 24 * 365 * 100));
        assert_eq!(lat.len(), 1);
        assert_eq!(lat[0].count, 5);
        assert!(r
            .latency("s", Some("nope"), 0, Duration::from_secs(1))
            .is_empty());
    }
}
