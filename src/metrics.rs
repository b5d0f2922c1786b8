//! sonde's own metrics (`/metrics`), named in the contract.
//!
//! Each scenario task owns a [`ScenarioMetrics`] holding handles to its series, created once (when
//! the task starts, or for the success gauges, phases and failure reasons, the first time there is
//! something to say): recording a run is then a few atomic operations, with no label hashing on
//! the hot path (10,000 runs a second must stay cheap). When a scenario is removed or changed by a
//! reload, its task removes exactly the series it created, so stale scenarios vanish from
//! `/metrics` instead of reporting their last value forever.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sonde_probes::{FailureReason, Phase};

use crate::config::scenario::Scenario;
use crate::engine::{RunReport, RunResult};
use crate::intern::Interner;
use crate::runtime::observer::{Observer, Observers, ScenarioObserver, SessionEvent};

mod histogram;
use histogram::LatencyHistogram;

#[cfg(test)]
mod golden;

/// Latency buckets for probes and runs: loopback answers in well under a millisecond, a slow
/// service across a continent in seconds, and timeouts go up to a minute.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Scheduler lag: a healthy scheduler starts runs within a millisecond or two of plan.
pub const LAG_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// sonde's own delay per probe (issue 14): tens of microseconds idle, milliseconds when busy.
pub const WAKEUP_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// The label set of one series: the scenario's base labels (scenario, region, declared labels),
/// shared by all its series, plus the family's own (step, phase, reason, result).
///
/// Three thin pointers (24 bytes): every series is a key in its family's map, ~35 per
/// persistent session, so the key's size is paid 350,000 times over by 10,000 sessions (fat
/// pointers and an inline label pair made it 72 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesLabels {
    base: Arc<Vec<(String, String)>>,
    step: Option<Arc<String>>,
    extra: Option<Extra>,
}

/// A family's own label and its value (`result="success"`, `phase="connect"`…), interned.
type Extra = &'static (&'static str, &'static str);

/// The one `&'static` copy of the label pair (`name`, `value`). The pairs are the few fixed
/// values of results, phases and reasons, so the interned set stays a few dozen entries.
fn pair(name: &'static str, value: &'static str) -> Extra {
    static PAIRS: std::sync::Mutex<Vec<Extra>> = std::sync::Mutex::new(Vec::new());
    let mut pairs = PAIRS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pairs.iter().find(|p| p.0 == name && p.1 == value) {
        return p;
    }
    let p: Extra = Box::leak(Box::new((name, value)));
    pairs.push(p);
    p
}

/// The shared copy of step name `name`, for the `step` label.
///
/// Scenarios of one shape name their steps alike (`send`, `deliver`, `a-connect`…), and every
/// series of a step holds its name: 10,000 sessions of eight steps held 80,000 copies (an
/// `Arc<String>` and its text, ~60 bytes each).
fn step_name(name: &str) -> Arc<String> {
    static NAMES: std::sync::LazyLock<std::sync::Mutex<Interner<String>>> =
        std::sync::LazyLock::new(Default::default);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let made = names.get_or_try(name, || Ok::<_, std::convert::Infallible>(name.to_string()));
    made.unwrap_or_else(|e| match e {})
}

impl EncodeLabelSet for SeriesLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.base.as_slice().encode(encoder)?;
        if let Some(step) = &self.step {
            [("step", step.as_str())].encode(encoder)?;
        }
        if let Some(kv) = self.extra {
            [*kv].encode(encoder)?;
        }
        Ok(())
    }
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Every family sonde exports, registered once.
pub struct Metrics {
    registry: Registry,
    scenario_success: Family<SeriesLabels, Gauge>,
    scenario_runs: Family<SeriesLabels, Counter>,
    scenario_duration: Family<SeriesLabels, LatencyHistogram>,
    step_success: Family<SeriesLabels, Gauge>,
    step_duration: Family<SeriesLabels, LatencyHistogram>,
    step_phase: Family<SeriesLabels, F64Gauge>,
    step_failures: Family<SeriesLabels, Counter>,
    tls_not_after: Family<SeriesLabels, Gauge>,
    session_connected: Family<SeriesLabels, Gauge>,
    session_reconnects: Family<SeriesLabels, Counter>,
    session_age: Family<SeriesLabels, F64Gauge>,
    /// Planned vs actual start of every run.
    pub scheduler_lag: Histogram,
    /// Per probe with kernel-timestamped phases: user-space minus kernel figures (sonde's own delay).
    pub probe_wakeup_delay: Histogram,
    /// Runs executing now.
    pub runs_in_flight: Gauge,
    /// Scenarios scheduled by this agent.
    pub scenarios: Gauge,
    pub config_last_reload_successful: Gauge,
    pub config_last_reload_success_timestamp: F64Gauge,
    pub remote_write: crate::remote_write::RemoteWriteMetrics,
    pub alerts: crate::alert::AlertMetrics,
    pub web: crate::web_server::WebMetrics,
    pub history: crate::history::HistoryMetrics,
}

/// Register `metric` under `name` and keep a handle to it.
fn reg<M: prometheus_client::registry::Metric + Clone>(
    r: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    r.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Self::build(true)
    }

    /// Without the `process_*` family, whose values change between two renderings: for tests
    /// that compare renderings byte for byte.
    pub fn without_process() -> Arc<Metrics> {
        Self::build(false)
    }

    fn build(process: bool) -> Arc<Metrics> {
        let mut r = Registry::default();
        let build_info = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", env!("SONDE_REVISION")),
                ("rustc_version", env!("SONDE_RUSTC_VERSION")),
            ])
            .set(1);
        let metrics = Metrics {
            scenario_success: reg(&mut r, "sonde_scenario_success", "1 if the scenario's last run passed, 0 if it failed", Family::default()),
            scenario_runs: reg(&mut r, "sonde_scenario_runs", "Scenario runs by result (success, failure, timeout, skipped: a due run that never started because the previous one was still running)", Family::default()),
            scenario_duration: reg(&mut r, "sonde_scenario_duration_seconds", "Duration of whole scenario runs", Family::default()),
            step_success: reg(&mut r, "sonde_step_success", "1 if the step passed in the scenario's last run, 0 if it failed or did not run", Family::default()),
            step_duration: reg(&mut r, "sonde_step_duration_seconds", "Duration of steps", Family::default()),
            step_phase: reg(&mut r, "sonde_step_phase_seconds", "Duration of each protocol phase of the step in the last run (resolve, connect, tls, processing, transfer, request, setup, rtt; mqtt: connack, suback, puback, pubrec, pubcomp)", Family::default()),
            step_failures: reg(&mut r, "sonde_step_failures", "Step failures by reason (dns, connect, tls, timeout, status, body, assertion, protocol)", Family::default()),
            tls_not_after: reg(&mut r, "sonde_tls_cert_not_after_seconds", "Earliest notAfter over the certificate chain the step was presented, as Unix seconds", Family::default()),
            session_connected: reg(&mut r, "sonde_session_connected", "Persistent sessions: 1 while the session's connections are up and set up, 0 while it is disconnected", Family::default()),
            session_reconnects: reg(&mut r, "sonde_session_reconnects", "Persistent sessions: times setup ran again after the connections broke", Family::default()),
            session_age: reg(&mut r, "sonde_session_connection_age_seconds", "Persistent sessions: age of the oldest open connection at the last run", Family::default()),
            scheduler_lag: reg(&mut r, "sonde_scheduler_lag_seconds", "Delay between a run's planned and actual start", Histogram::new(LAG_BUCKETS.iter().copied())),
            probe_wakeup_delay: reg(&mut r, "sonde_probe_wakeup_delay_seconds", "Per probe step with kernel-timestamped phases: how much later sonde's tasks saw its packets than the kernel did (user-space minus kernel figures); the phase metrics exclude it", Histogram::new(WAKEUP_BUCKETS.iter().copied())),
            runs_in_flight: reg(&mut r, "sonde_scheduler_runs_in_flight", "Scenario runs executing now", Gauge::default()),
            scenarios: reg(&mut r, "sonde_scheduler_scenarios", "Scenarios scheduled by this agent", Gauge::default()),
            config_last_reload_successful: reg(&mut r, "sonde_config_last_reload_successful", "1 if the last configuration load succeeded, 0 if it failed (the previous configuration keeps running)", Gauge::default()),
            config_last_reload_success_timestamp: reg(&mut r, "sonde_config_last_reload_success_timestamp_seconds", "When the configuration was last loaded successfully, as Unix seconds", F64Gauge::default()),
            // In this order: the exposition lists families as registered.
            remote_write: {
                r.register(
                    "sonde_build_info",
                    "A metric with a constant '1' value labeled by sonde's version, the git revision it was built from, and the Rust compiler that built it",
                    build_info,
                );
                if process {
                    r.register_collector(Box::new(crate::process_metrics::ProcessCollector));
                }
                crate::remote_write::RemoteWriteMetrics::register(&mut r)
            },
            alerts: crate::alert::AlertMetrics::register(&mut r),
            web: crate::web_server::WebMetrics::register(&mut r),
            history: crate::history::HistoryMetrics::register(&mut r),
            registry: r,
        };
        Arc::new(metrics)
    }

    /// The exposition of everything in `format`, in chunks of at most [`CHUNK`] bytes (one
    /// bigger write aside).
    pub fn encode(&self, format: Format) -> Vec<bytes::Bytes> {
        let mut out = Vec::new();
        // Collecting into memory cannot fail.
        let _ = self.encode_into(format, |chunk| {
            out.push(chunk);
            Ok(())
        });
        out
    }

    /// Encode into `tx` chunk by chunk, as the client reads: the memory a scrape costs stays a
    /// few chunks however many series there are (10,000 scenarios make ~35 MB of text).
    ///
    /// The encoder holds each family's read lock while it encodes that family, so it must never
    /// wait for the client then: a chunk the channel has no room for is kept in memory and sent
    /// once the encoding is done. A fast reader (Prometheus) gets the stream at encoding speed; a
    /// slow one costs memory, never a blocked scenario task. Returns early if the client left.
    /// Call from a blocking thread.
    pub fn encode_streaming(&self, format: Format, tx: tokio::sync::mpsc::Sender<bytes::Bytes>) {
        use tokio::sync::mpsc::error::TrySendError;
        let mut backlog: std::collections::VecDeque<bytes::Bytes> = Default::default();
        let res = self.encode_into(format, |chunk| {
            backlog.push_back(chunk);
            while let Some(c) = backlog.pop_front() {
                match tx.try_send(c) {
                    Ok(()) => {}
                    Err(TrySendError::Full(c)) => {
                        backlog.push_front(c);
                        break;
                    }
                    Err(TrySendError::Closed(_)) => return Err(std::fmt::Error),
                }
            }
            Ok(())
        });
        if res.is_ok() {
            // No lock is held any more: now waiting for the client is fine.
            for c in backlog {
                if tx.blocking_send(c).is_err() {
                    break;
                }
            }
        }
    }

    fn encode_into(
        &self,
        format: Format,
        sink: impl FnMut(bytes::Bytes) -> std::fmt::Result,
    ) -> std::fmt::Result {
        let mut w = ChunkWriter {
            current: String::new(),
            sink,
        };
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut w, &self.registry)?
            }
            // Classic parsers (curl, `promtool check metrics`, older agents) reject OpenMetrics'
            // counter naming (`x` with samples `x_total`: "no help text"), so they get 0.0.4.
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut w, &self.registry)?
            }
        }
        w.flush()
    }
}

/// The two text expositions `/metrics` serves.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`, for clients that ask (Prometheus does).
    OpenMetrics,
    /// `text/plain; version=0.0.4`, for everyone else.
    PrometheusText,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Size of one chunk of an exposition.
pub const CHUNK: usize = 256 * 1024;

/// Cuts a text stream into chunks of exactly reserved size: a chunk never grows by
/// reallocation (which would copy it and double its block), it is closed before a write that
/// would not fit.
struct ChunkWriter<F> {
    current: String,
    sink: F,
}

impl<F: FnMut(bytes::Bytes) -> std::fmt::Result> std::fmt::Write for ChunkWriter<F> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if !self.current.is_empty() && self.current.len() + s.len() > self.current.capacity() {
            self.flush()?;
        }
        if self.current.capacity() == 0 {
            self.current.reserve_exact(CHUNK.max(s.len()));
        }
        self.current.push_str(s);
        Ok(())
    }
}

impl<F: FnMut(bytes::Bytes) -> std::fmt::Result> ChunkWriter<F> {
    fn flush(&mut self) -> std::fmt::Result {
        if self.current.is_empty() {
            return Ok(());
        }
        (self.sink)(bytes::Bytes::from(std::mem::take(&mut self.current)))
    }
}

/// The `result` label values, in `RunResult` order plus `skipped`.
const RESULTS: [&str; 4] = [
    RunResult::Success.as_str(),
    RunResult::Failure.as_str(),
    RunResult::Timeout.as_str(),
    "skipped",
];

/// One step's series.
struct StepSeries {
    step: Arc<String>,
    /// A step of `steps:` (not setup or teardown): when a run does not reach it, its success
    /// reads 0. Setup and teardown steps of a persistent session run only now and then: their
    /// series keep the last time they ran.
    main: bool,
    /// Not a step of the scenario (a persistent session's `session`): failures only.
    pseudo: bool,
    /// Created by the first run, like the scenario's.
    success: Option<Gauge>,
    duration: LatencyHistogram,
    phases: Vec<(Phase, F64Gauge)>,
    failures: Vec<(FailureReason, Counter)>,
    tls_not_after: Option<Gauge>,
}

/// Handles to one scenario's series.
pub struct ScenarioMetrics {
    metrics: Arc<Metrics>,
    base: Arc<Vec<(String, String)>>,
    /// Created by the first run: before it, "did the last run pass" has no answer, and a 0
    /// would read as a failure (and fire alerts) after every start or reload.
    success: Option<Gauge>,
    duration: LatencyHistogram,
    runs: [Counter; 4],
    steps: Vec<StepSeries>,
    /// Persistent sessions only: connected, reconnects, connection age.
    session: Option<(Gauge, Counter, F64Gauge)>,
}

impl ScenarioMetrics {
    /// Create the scenario's series. `region` is the agent's region; without one the label is
    /// left out (an empty label is the same as none to Prometheus).
    pub fn new(metrics: Arc<Metrics>, scenario: &Scenario, region: Option<&str>) -> Self {
        let agent: Vec<(&str, &str)> = region.map(|r| ("region", r)).into_iter().collect();
        Self::for_agent(metrics, scenario, &agent)
    }

    /// Create the scenario's series with the agent's labels (`region`, `replica`) after
    /// `scenario`.
    pub fn for_agent(metrics: Arc<Metrics>, scenario: &Scenario, agent: &[(&str, &str)]) -> Self {
        let mut base = vec![("scenario".to_string(), scenario.name.clone())];
        base.extend(agent.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        base.extend(scenario.labels.iter().cloned());
        let base = Arc::new(base);
        let l = |step: Option<&Arc<String>>, extra| SeriesLabels {
            base: base.clone(),
            step: step.cloned(),
            extra,
        };
        let duration = metrics
            .scenario_duration
            .get_or_create_owned(&l(None, None));
        let runs = RESULTS.map(|r| {
            metrics
                .scenario_runs
                .get_or_create_owned(&l(None, Some(pair("result", r))))
        });
        let main: Vec<&str> = scenario.steps.iter().map(|s| s.name.as_str()).collect();
        let steps = scenario
            .all_steps()
            .map(|s| {
                let step = step_name(&s.name);
                StepSeries {
                    main: main.contains(&s.name.as_str()),
                    pseudo: false,
                    success: None,
                    duration: metrics
                        .step_duration
                        .get_or_create_owned(&l(Some(&step), None)),
                    phases: Vec::new(),
                    failures: Vec::new(),
                    tls_not_after: None,
                    step,
                }
            })
            .collect();
        let session = scenario.persistent.then(|| {
            (
                metrics
                    .session_connected
                    .get_or_create_owned(&l(None, None)),
                metrics
                    .session_reconnects
                    .get_or_create_owned(&l(None, None)),
                metrics.session_age.get_or_create_owned(&l(None, None)),
            )
        });
        ScenarioMetrics {
            metrics,
            base,
            success: None,
            duration,
            runs,
            steps,
            session,
        }
    }

    fn labels(&self, step: &Arc<String>, extra: Option<Extra>) -> SeriesLabels {
        SeriesLabels {
            base: self.base.clone(),
            step: Some(step.clone()),
            extra,
        }
    }

    /// Record a finished run.
    pub fn record(&mut self, report: &RunReport) {
        let labels = SeriesLabels {
            base: self.base.clone(),
            step: None,
            extra: None,
        };
        self.success
            .get_or_insert_with(|| self.metrics.scenario_success.get_or_create_owned(&labels))
            .set(report.success() as i64);
        self.duration.observe(report.duration.as_secs_f64());
        let idx = match report.result {
            RunResult::Success => 0,
            RunResult::Failure => 1,
            RunResult::Timeout => 2,
        };
        self.runs[idx].inc();
        self.record_steps(report, true);
    }

    /// Record the steps of a run, or (`scheduled`: false) of a persistent session's reconnect
    /// attempt, whose steps are measured like any others but which is not a scheduled run.
    pub fn record_steps(&mut self, report: &RunReport, scheduled: bool) {
        for d in report.steps.iter().filter_map(|s| s.timings.own_delay()) {
            self.metrics.probe_wakeup_delay.observe(d.as_secs_f64());
        }
        self.count_session_failures(report);
        for i in 0..self.steps.len() {
            let step_name = self.steps[i].step.clone();
            let ran = report.steps.iter().any(|s| *s.name == *step_name);
            if self.steps[i].pseudo || (!ran && (!self.steps[i].main || !scheduled)) {
                continue;
            }
            // Phases: last run's values; a phase this run did not reach (or a step it did not
            // reach) reads 0.
            for (_, g) in &self.steps[i].phases {
                g.set(0.0);
            }
            let labels = self.labels(&step_name, None);
            let success = self.steps[i]
                .success
                .get_or_insert_with(|| self.metrics.step_success.get_or_create_owned(&labels));
            let Some(sr) = report.steps.iter().find(|s| *s.name == *step_name) else {
                // Did not run: an earlier step failed.
                success.set(0);
                continue;
            };
            success.set(sr.success as i64);
            self.steps[i].duration.observe(sr.duration.as_secs_f64());
            for (phase, d) in sr.timings.iter() {
                let pos = self.steps[i].phases.iter().position(|(p, _)| *p == phase);
                let g = match pos {
                    Some(p) => &self.steps[i].phases[p].1,
                    None => {
                        let g = self.metrics.step_phase.get_or_create_owned(
                            &self.labels(&step_name, Some(pair("phase", phase.as_str()))),
                        );
                        self.steps[i].phases.push((phase, g));
                        &self.steps[i].phases.last().expect("just pushed").1
                    }
                };
                g.set(d.as_secs_f64());
            }
            if let Some(f) = &sr.failure {
                self.count_failure(i, f.reason);
            }
            if let Some(na) = sr.cert_not_after() {
                let labels = self.labels(&step_name, None);
                let g = self.steps[i]
                    .tls_not_after
                    .get_or_insert_with(|| self.metrics.tls_not_after.get_or_create_owned(&labels));
                g.set(na);
            }
        }
    }

    /// `sonde_step_failures_total` of the step at `i`, by `reason`.
    fn count_failure(&mut self, i: usize, reason: FailureReason) {
        let s = &mut self.steps[i];
        if let Some((_, c)) = s.failures.iter().find(|(r, _)| *r == reason) {
            c.inc();
            return;
        }
        let labels = SeriesLabels {
            base: self.base.clone(),
            step: Some(s.step.clone()),
            extra: Some(pair("reason", reason.as_str())),
        };
        let c = self.metrics.step_failures.get_or_create_owned(&labels);
        c.inc();
        s.failures.push((reason, c));
    }

    /// Failures of what is not a step of the scenario — a persistent session itself (a break
    /// between runs, a run due while reconnecting: step `session`) — are counted too, under
    /// that name; such a series has failures only (no success gauge or duration to mislead).
    fn count_session_failures(&mut self, report: &RunReport) {
        for sr in &report.steps {
            let Some(f) = &sr.failure else { continue };
            let i = match self.steps.iter().position(|s| *s.step == *sr.name) {
                Some(i) if self.steps[i].pseudo => i,
                Some(_) => continue,
                None => {
                    self.steps.push(StepSeries {
                        main: false,
                        pseudo: true,
                        success: None,
                        duration: LatencyHistogram::default(),
                        phases: Vec::new(),
                        failures: Vec::new(),
                        tls_not_after: None,
                        step: step_name(&sr.name),
                    });
                    self.steps.len() - 1
                }
            };
            self.count_failure(i, f.reason);
        }
    }

    pub fn session_connected(&self, up: bool) {
        if let Some((g, _, _)) = &self.session {
            g.set(up as i64);
        }
    }

    pub fn session_reconnected(&self) {
        if let Some((_, c, _)) = &self.session {
            c.inc();
        }
    }

    pub fn session_age(&self, age: Option<std::time::Duration>) {
        if let Some((_, _, g)) = &self.session {
            g.set(age.map_or(0.0, |a| a.as_secs_f64()));
        }
    }

    /// Count due runs that were skipped because the previous run was still going.
    pub fn skipped(&self, n: u64) {
        if n > 0 {
            self.runs[3].inc_by(n);
        }
    }

    /// Remove every series this scenario created.
    pub fn remove(self) {
        let m = &self.metrics;
        let scen = |extra| SeriesLabels {
            base: self.base.clone(),
            step: None,
            extra,
        };
        m.scenario_success.remove(&scen(None));
        m.session_connected.remove(&scen(None));
        m.session_reconnects.remove(&scen(None));
        m.session_age.remove(&scen(None));
        m.scenario_duration.remove(&scen(None));
        for r in RESULTS {
            m.scenario_runs.remove(&scen(Some(pair("result", r))));
        }
        for s in &self.steps {
            if !s.pseudo {
                m.step_success.remove(&self.labels(&s.step, None));
                m.step_duration.remove(&self.labels(&s.step, None));
            }
            m.tls_not_after.remove(&self.labels(&s.step, None));
            for (p, _) in &s.phases {
                m.step_phase
                    .remove(&self.labels(&s.step, Some(pair("phase", p.as_str()))));
            }
            for (r, _) in &s.failures {
                m.step_failures
                    .remove(&self.labels(&s.step, Some(pair("reason", r.as_str()))));
            }
        }
    }
}

/// The metrics as an observer of runs (see [`crate::runtime::observer`]): the scheduler's own
/// families here, each scenario's series in its [`ScenarioMetrics`].
pub struct RunMetrics {
    metrics: Arc<Metrics>,
    /// The agent's region: the `region` label of every scenario series.
    region: Option<String>,
    /// The agent's `replica` label (HA pairs), beside the region.
    replica: Option<String>,
}

impl RunMetrics {
    pub fn new(metrics: Arc<Metrics>, region: Option<String>) -> Arc<RunMetrics> {
        Arc::new(RunMetrics {
            metrics,
            region,
            replica: None,
        })
    }

    /// The metrics of one replica of an HA pair: every scenario series carries `replica`.
    pub fn with_replica(
        metrics: Arc<Metrics>,
        region: Option<String>,
        replica: Option<String>,
    ) -> Arc<RunMetrics> {
        Arc::new(RunMetrics {
            metrics,
            region,
            replica,
        })
    }

    /// The metrics as a scheduler's only observer (tests and tools; `serve` adds the others).
    pub fn alone(metrics: Arc<Metrics>, region: Option<String>) -> Observers {
        Arc::new([RunMetrics::new(metrics, region) as Arc<dyn Observer>])
    }
}

impl Observer for RunMetrics {
    fn watch(&self, scenario: &Arc<Scenario>) -> Box<dyn ScenarioObserver> {
        let mut agent = Vec::new();
        if let Some(r) = &self.region {
            agent.push(("region", r.as_str()));
        }
        if let Some(r) = &self.replica {
            agent.push(("replica", r.as_str()));
        }
        Box::new(ScenarioMetrics::for_agent(
            self.metrics.clone(),
            scenario,
            &agent,
        ))
    }

    fn scheduled(&self, scenarios: &[Arc<Scenario>]) {
        self.metrics.scenarios.set(scenarios.len() as i64);
    }

    fn run_starting(&self, lag: std::time::Duration) {
        self.metrics.scheduler_lag.observe(lag.as_secs_f64());
        self.metrics.runs_in_flight.inc();
    }

    fn run_ended(&self) {
        self.metrics.runs_in_flight.dec();
    }
}

impl ScenarioObserver for ScenarioMetrics {
    fn run(&mut self, report: &RunReport, _current: bool) {
        self.record(report);
    }

    fn attempt(&mut self, report: &RunReport) {
        self.record_steps(report, false);
    }

    fn skipped(&mut self, n: u64) {
        ScenarioMetrics::skipped(self, n);
    }

    fn session(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::State { connected, since } => {
                self.session_connected(*connected);
                self.session_age(since.map(|t| t.elapsed()));
            }
            SessionEvent::Broken(_) => self.session_connected(false),
            SessionEvent::Reconnected => self.session_reconnected(),
            SessionEvent::Connected | SessionEvent::ReconnectFailed(_) => {}
        }
    }

    fn end(self: Box<Self>) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadOptions};

    /// Scenarios whose steps have the same names share one copy of each name.
    #[test]
    fn step_names_are_shared() {
        let (_m, series) = loaded(2);
        let (a, b) = (&series[0].steps[0].step, &series[1].steps[0].step);
        assert_eq!(**a, "tcp");
        assert!(Arc::ptr_eq(a, b));
    }

    fn loaded(n: usize) -> (Arc<Metrics>, Vec<ScenarioMetrics>) {
        let mut yaml = String::from("scenarios:\n");
        for i in 0..n {
            yaml.push_str(&format!(
                "  - scenario: s{i}\n    labels: {{team: \"t\\\"{i}\"}}\n    tcp: {{target: \"127.0.0.1:1\"}}\n"
            ));
        }
        let cfg = load_str("t.yaml", &yaml, &LoadOptions::default()).expect("valid");
        // These tests compare two renderings: CPU and memory would differ between them.
        let m = Metrics::without_process();
        let series = cfg
            .scenarios
            .iter()
            .map(|s| ScenarioMetrics::new(m.clone(), s, Some("eu")))
            .collect();
        (m, series)
    }

    #[test]
    fn a_replica_labels_every_scenario_series_after_the_region() {
        let cfg = load_str(
            "t.yaml",
            "scenario: s\nlabels: {team: web}\ntcp: {target: \"127.0.0.1:1\"}\n",
            &LoadOptions::default(),
        )
        .unwrap();
        let m = Metrics::new();
        let obs = RunMetrics::with_replica(m.clone(), Some("eu".into()), Some("b".into()));
        let _watch = obs.watch(&cfg.scenarios[0]);
        let text = String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap();
        assert!(
            text.contains(r#"sonde_scenario_runs_total{scenario="s",region="eu",replica="b",team="web",result="success"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn chunks_are_bounded_and_add_up_to_the_whole_exposition() {
        let (m, _series) = loaded(600);
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let chunks = m.encode(format);
            assert!(chunks.len() > 1, "600 scenarios should not fit one chunk");
            assert!(
                chunks.iter().all(|c| c.len() <= CHUNK),
                "a chunk outgrew CHUNK"
            );
            let joined: Vec<u8> = chunks.concat();
            let mut whole = String::new();
            match format {
                Format::OpenMetrics => {
                    prometheus_client::encoding::text::encode(&mut whole, &m.registry).unwrap()
                }
                Format::PrometheusText => {
                    prometheus_client::encoding::prometheus_text::encode(&mut whole, &m.registry)
                        .unwrap()
                }
            }
            assert_eq!(String::from_utf8(joined).unwrap(), whole);
        }
    }

    #[test]
    fn streaming_to_a_slow_reader_loses_and_reorders_nothing() {
        let (m, _series) = loaded(600);
        let whole = m.encode(Format::OpenMetrics).concat();
        // A one-slot channel and a reader that dawdles: most chunks go through the backlog.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let m2 = m.clone();
        let writer = std::thread::spawn(move || m2.encode_streaming(Format::OpenMetrics, tx));
        let mut got = Vec::new();
        while let Some(chunk) = rx.blocking_recv() {
            got.extend_from_slice(&chunk);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        writer.join().unwrap();
        assert_eq!(got.len(), whole.len());
        assert!(got == whole, "streamed exposition differs");
    }

    #[test]
    fn streaming_stops_when_the_client_leaves() {
        let (m, _series) = loaded(600);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        // Returns (rather than blocking forever on a closed channel).
        m.encode_streaming(Format::PrometheusText, tx);
    }

    #[test]
    fn label_values_are_escaped_and_removal_removes_every_series() {
        let (m, mut series) = loaded(2);
        let text = String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap();
        assert!(
            text.contains(
                r#"sonde_scenario_runs_total{scenario="s1",region="eu",team="t\"1",result="success"} 0"#
            ),
            "{text}"
        );
        let s1 = series.pop().unwrap();
        s1.remove();
        let text = String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap();
        assert!(!text.contains(r#"scenario="s1""#), "{text}");
        assert!(text.contains(r#"scenario="s0""#));
    }

    fn tcp_step(name: &str, failure: Option<FailureReason>) -> crate::engine::StepReport {
        let mut timings = sonde_probes::Timings::default();
        timings.add(Phase::Connect, std::time::Duration::from_millis(7));
        crate::engine::StepReport {
            name: name.into(),
            kind: "tcp",
            stage: crate::engine::Stage::Steps,
            success: failure.is_none(),
            duration: std::time::Duration::from_millis(7),
            failure: failure.map(|r| sonde_probes::Failure::new(r, "x")),
            attempts: 1,
            timings,
            remote_addr: None,
            events: vec![],
            captures: vec![],
            checks: vec![],
            facts: crate::engine::StepFacts::Tcp(Default::default()),
        }
    }

    fn run(steps: Vec<crate::engine::StepReport>) -> RunReport {
        let failed = steps.iter().any(|s| !s.success);
        RunReport {
            scenario: "two".into(),
            started_at: String::new(),
            duration: std::time::Duration::from_millis(14),
            result: if failed {
                RunResult::Failure
            } else {
                RunResult::Success
            },
            failed_step: None,
            steps,
            internal_error: None,
            session_events: vec![],
            secrets: vec![],
        }
    }

    /// The phase gauge reads the kernel figure; the difference to the user-space one is
    /// observed as sonde's own delay; a step without kernel figures observes nothing.
    #[test]
    fn kernel_timed_phases_and_the_wakeup_delay() {
        use std::time::Duration;
        let yaml = "scenario: two\nsteps:\n  - {name: a, tcp: {target: \"127.0.0.1:1\"}}\n  - {name: b, tcp: {target: \"127.0.0.1:2\"}}\n";
        let cfg = load_str("t.yaml", yaml, &LoadOptions::default()).expect("valid");
        let m = Metrics::new();
        let mut series = ScenarioMetrics::new(m.clone(), &cfg.scenarios[0], None);
        let mut a = tcp_step("a", None);
        a.timings = sonde_probes::Timings::default();
        a.timings.add_measured(
            Phase::Connect,
            Duration::from_millis(7),
            Some(Duration::from_millis(3)),
        );
        series.record(&run(vec![a, tcp_step("b", None)]));
        let text = String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap();
        for line in [
            r#"sonde_step_phase_seconds{scenario="two",step="a",phase="connect"} 0.003"#,
            r#"sonde_step_phase_seconds{scenario="two",step="b",phase="connect"} 0.007"#,
            "sonde_probe_wakeup_delay_seconds_count 1",
            "sonde_probe_wakeup_delay_seconds_sum 0.004",
            r#"sonde_probe_wakeup_delay_seconds_bucket{le="0.0025"} 0"#,
            r#"sonde_probe_wakeup_delay_seconds_bucket{le="0.005"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
    }

    /// Before its first run a scenario has no "last run": its success gauges are absent (not 0,
    /// which would read as a failure), its counters are there at 0.
    #[test]
    fn success_gauges_appear_with_the_first_run() {
        let yaml = "scenario: two\nsteps:\n  - {name: a, tcp: {target: \"127.0.0.1:1\"}}\n  - {name: b, tcp: {target: \"127.0.0.1:2\"}}\n";
        let cfg = load_str("t.yaml", yaml, &LoadOptions::default()).expect("valid");
        let m = Metrics::new();
        let mut series = ScenarioMetrics::new(m.clone(), &cfg.scenarios[0], None);
        let text = String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap();
        assert!(!text.contains("sonde_scenario_success{"), "{text}");
        assert!(!text.contains("sonde_step_success{"), "{text}");
        assert!(
            text.contains(r#"sonde_scenario_runs_total{scenario="two",result="failure"} 0"#),
            "{text}"
        );
        series.record(&run(vec![tcp_step("a", Some(FailureReason::Connect))]));
        let text = String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap();
        for line in [
            r#"sonde_scenario_success{scenario="two"} 0"#,
            r#"sonde_step_success{scenario="two",step="a"} 0"#,
            r#"sonde_step_success{scenario="two",step="b"} 0"#,
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        series.remove();
        let text = String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap();
        assert!(!text.contains(r#"scenario="two""#), "{text}");
    }

    /// A family no scenario has a series in is left out whole, its HELP and TYPE lines too (as
    /// prometheus-client leaves out an empty `Family`): a scenario before its first run, or
    /// without TLS or a session, adds no description without a value.
    #[test]
    fn families_without_series_are_left_out() {
        let (m, _series) = loaded(1);
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let text = String::from_utf8(m.encode(format).concat()).unwrap();
            assert!(
                text.contains("# TYPE sonde_scenario_duration_seconds "),
                "{text}"
            );
            for absent in [
                "sonde_scenario_success",
                "sonde_step_success",
                "sonde_step_phase_seconds",
                "sonde_step_failures",
                "sonde_tls_cert_not_after_seconds",
                "sonde_session_",
            ] {
                assert!(!text.contains(absent), "{absent} in {text}");
            }
        }
        drop(_series);
        let (m, series) = loaded(1);
        series.into_iter().for_each(ScenarioMetrics::remove);
        let text = String::from_utf8(m.encode(Format::OpenMetrics).concat()).unwrap();
        assert!(!text.contains("sonde_scenario_"), "{text}");
        assert!(!text.contains("sonde_step_"), "{text}");
    }

    /// `sonde_step_phase_seconds` is the last run's: a step the last run did not reach (an
    /// earlier step failed) must not keep showing an older run's phases.
    #[test]
    fn phases_of_a_step_that_did_not_run_read_zero() {
        let yaml = "scenario: two\nsteps:\n  - {name: a, tcp: {target: \"127.0.0.1:1\"}}\n  - {name: b, tcp: {target: \"127.0.0.1:2\"}}\n";
        let cfg = load_str("t.yaml", yaml, &LoadOptions::default()).expect("valid");
        let m = Metrics::new();
        let mut series = ScenarioMetrics::new(m.clone(), &cfg.scenarios[0], None);
        series.record(&run(vec![tcp_step("a", None), tcp_step("b", None)]));
        let line = r#"sonde_step_phase_seconds{scenario="two",step="b",phase="connect"} "#;
        let text = String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap();
        assert!(text.contains(&format!("{line}0.007")), "{text}");
        series.record(&run(vec![tcp_step("a", Some(FailureReason::Connect))]));
        let text = String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap();
        assert!(text.contains(&format!("{line}0.0\n")), "{text}");
    }
}
