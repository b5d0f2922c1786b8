//! sonde's own metrics (`/metrics`), named in the contract.
//!
//! Each scenario task owns a [`ScenarioMetrics`]: the scenario's values in one block under one
//! lock (`series`), which a single collector writes as the scenario families at each scrape
//! (`collector`). Label sets are fixed when the task starts: recording a run is one lock and
//! a few additions, with no label hashing on the hot path (10,000 runs a second must stay
//! cheap), and a scenario's series cost their values, not a hash-map entry and an allocation
//! each (issue 12: 10,000 persistent sessions). When a scenario is removed or changed by a
//! reload, its task removes its block, so stale scenarios vanish from `/metrics` instead of
//! reporting their last value forever.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::scenario::Scenario;
use crate::engine::RunReport;
use crate::intern::Interner;
use crate::runtime::observer::{Observer, Observers, ScenarioObserver, SessionEvent};

mod collector;
mod histogram;
mod series;
use collector::{ScenarioCells, ScenarioTable};
use series::{ScenarioData, StepData};

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

/// The shared copy of step name `name`, for the `step` label.
///
/// Scenarios of one shape name their steps alike (`send`, `deliver`, `a-connect`…), and every
/// step of every scenario holds its name: 10,000 sessions of eight steps would hold 80,000
/// copies (an `Arc<String>` and its text, ~60 bytes each).
fn step_name(name: &str) -> Arc<String> {
    static NAMES: std::sync::LazyLock<std::sync::Mutex<Interner<String>>> =
        std::sync::LazyLock::new(Default::default);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let made = names.get_or_try(name, || Ok::<_, std::convert::Infallible>(name.to_string()));
    made.unwrap_or_else(|e| match e {})
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Every family sonde exports, registered once.
pub struct Metrics {
    registry: Registry,
    /// Every scenario's series.
    series: Arc<ScenarioTable>,
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
        let mut root = Registry::default();
        // Collectors come after the metrics of their registry: the scenario series alone in the
        // root and everything else in a registry below it (no prefix, no labels) keeps the
        // families in the order they had as `Family`s registered first.
        let series = Arc::new(ScenarioTable::default());
        root.register_collector(Box::new(series.clone()));
        let r = root.sub_registry_with_labels(std::iter::empty());
        let build_info = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", env!("SONDE_REVISION")),
                ("rustc_version", env!("SONDE_RUSTC_VERSION")),
            ])
            .set(1);
        let metrics = Metrics {
            scheduler_lag: reg(r, "sonde_scheduler_lag_seconds", "Delay between a run's planned and actual start", Histogram::new(LAG_BUCKETS.iter().copied())),
            probe_wakeup_delay: reg(r, "sonde_probe_wakeup_delay_seconds", "Per probe step with kernel-timestamped phases: how much later sonde's tasks saw its packets than the kernel did (user-space minus kernel figures); the phase metrics exclude it", Histogram::new(WAKEUP_BUCKETS.iter().copied())),
            runs_in_flight: reg(r, "sonde_scheduler_runs_in_flight", "Scenario runs executing now", Gauge::default()),
            scenarios: reg(r, "sonde_scheduler_scenarios", "Scenarios scheduled by this agent", Gauge::default()),
            config_last_reload_successful: reg(r, "sonde_config_last_reload_successful", "1 if the last configuration load succeeded, 0 if it failed (the previous configuration keeps running)", Gauge::default()),
            config_last_reload_success_timestamp: reg(r, "sonde_config_last_reload_success_timestamp_seconds", "When the configuration was last loaded successfully, as Unix seconds", F64Gauge::default()),
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
                crate::remote_write::RemoteWriteMetrics::register(r)
            },
            alerts: crate::alert::AlertMetrics::register(r),
            web: crate::web_server::WebMetrics::register(r),
            history: crate::history::HistoryMetrics::register(r),
            series,
            registry: root,
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
    /// The encoder holds locks while it encodes (a scenario's while it writes that scenario's
    /// series of a family, the other families' own), so it must never wait for the client
    /// then: a chunk the channel has no room for is kept in memory and sent once the encoding
    /// is done. A fast reader (Prometheus) gets the stream at encoding speed; a slow one costs
    /// memory, never a blocked scenario task. Returns early if the client left.
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

/// One scenario's series, for its task.
pub struct ScenarioMetrics {
    metrics: Arc<Metrics>,
    /// In the table of live scenarios.
    id: u64,
    cells: Arc<ScenarioCells>,
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
        let mut base = Vec::with_capacity(1 + agent.len() + scenario.labels.len());
        base.push(("scenario".to_string(), scenario.name.clone()));
        base.extend(agent.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        base.extend(scenario.labels.iter().cloned());
        let main: Vec<&str> = scenario.steps.iter().map(|s| s.name.as_str()).collect();
        let steps = scenario
            .all_steps()
            .map(|s| StepData::new(step_name(&s.name), main.contains(&s.name.as_str())))
            .collect();
        let data = ScenarioData::new(steps, scenario.persistent);
        let cells = ScenarioCells::new(base, data);
        let id = metrics.series.insert(cells.clone());
        ScenarioMetrics { metrics, id, cells }
    }

    /// Record a finished run.
    pub fn record(&mut self, report: &RunReport) {
        self.observe_wakeups(report);
        self.cells.lock().record(report);
    }

    /// Record the steps of a run, or (`scheduled`: false) of a persistent session's reconnect
    /// attempt, whose steps are measured like any others but which is not a scheduled run.
    pub fn record_steps(&mut self, report: &RunReport, scheduled: bool) {
        self.observe_wakeups(report);
        self.cells.lock().record_steps(report, scheduled);
    }

    fn observe_wakeups(&self, report: &RunReport) {
        for d in report.steps.iter().filter_map(|s| s.timings.own_delay()) {
            self.metrics.probe_wakeup_delay.observe(d.as_secs_f64());
        }
    }

    pub fn session_connected(&self, up: bool) {
        if let Some(s) = self.cells.lock().session() {
            s.connected = up;
        }
    }

    pub fn session_reconnected(&self) {
        if let Some(s) = self.cells.lock().session() {
            s.reconnects += 1;
        }
    }

    pub fn session_age(&self, age: Option<std::time::Duration>) {
        if let Some(s) = self.cells.lock().session() {
            s.age = age.map_or(0.0, |a| a.as_secs_f64());
        }
    }

    /// Count due runs that were skipped because the previous run was still going.
    pub fn skipped(&self, n: u64) {
        if n > 0 {
            self.cells.lock().skipped(n);
        }
    }

    /// Remove every series of this scenario.
    pub fn remove(self) {
        self.metrics.series.remove(self.id);
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
    use sonde_probes::{FailureReason, Phase};

    use super::*;
    use crate::config::{load_str, LoadOptions};
    use crate::engine::RunResult;

    /// Scenarios whose steps have the same names share one copy of each name.
    #[test]
    fn step_names_are_shared() {
        let (_m, series) = loaded(2);
        let (a, b) = (series[0].cells.lock(), series[1].cells.lock());
        let (a, b) = (&a.steps[0].name, &b.steps[0].name);
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

    /// Scrapes (one to a client that reads nothing until the end) while scenarios record runs
    /// and come and go: recording never waits for them, nothing deadlocks, nothing is lost.
    #[test]
    fn scrapes_while_recording_neither_block_it_nor_deadlock() {
        use std::sync::mpsc;
        use std::time::Duration;
        const RUNS: u64 = 300;
        let (m, mut series) = loaded(40);
        let (tx, mut stuck) = tokio::sync::mpsc::channel(1);
        let m2 = m.clone();
        let streaming = std::thread::spawn(move || m2.encode_streaming(Format::OpenMetrics, tx));
        let (done, finished) = mpsc::channel();
        let report = run(vec![tcp_step("tcp", Some(FailureReason::Connect))]);
        for mut group in [series.split_off(20), series] {
            let (done, report) = (done.clone(), report.clone());
            std::thread::spawn(move || {
                for _ in 0..RUNS {
                    group.iter_mut().for_each(|s| s.record(&report));
                }
                done.send(group).unwrap();
            });
        }
        let m2 = m.clone();
        let churn = std::thread::spawn(move || {
            for _ in 0..RUNS {
                golden::record_web(&m2, golden::WEB).remove();
            }
        });
        for i in 0..6 {
            let format = [Format::OpenMetrics, Format::PrometheusText][i % 2];
            assert!(m.encode(format).concat().ends_with(b"\n"));
        }
        let wait = Duration::from_secs(120);
        let groups = [(); 2].map(|_| finished.recv_timeout(wait).expect("recording blocked"));
        churn.join().unwrap();
        let mut streamed = 0;
        while let Some(chunk) = stuck.blocking_recv() {
            streamed += chunk.len();
        }
        streaming.join().unwrap();
        assert!(streamed > 0);
        let text = String::from_utf8(m.encode(Format::PrometheusText).concat()).unwrap();
        let runs = format!(r#"{{scenario="s7",region="eu",team="t\"7",result="failure"}} {RUNS}"#);
        assert!(
            text.contains(&format!("sonde_scenario_runs_total{runs}\n")),
            "{text}"
        );
        assert!(!text.contains(r#"scenario="web""#), "{text}");
        drop(groups);
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

    /// A tcp step of 7 ms, its connect phase 7 ms.
    fn tcp_step(name: &str, failure: Option<FailureReason>) -> crate::engine::StepReport {
        super::golden::step(name, 7.0, failure, &[(Phase::Connect, 7.0)])
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
