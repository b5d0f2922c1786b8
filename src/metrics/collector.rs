//! The scenario series' side of `/metrics`: one collector writes every live scenario's values
//! ([`super::series`]) as the eleven families the metric contract names, byte for byte as
//! prometheus-client's `Family`s wrote them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use super::histogram::Counts;
use super::series::{ScenarioData, StepData, RESULTS};

/// The base labels (scenario, agent, declared), fixed, and the values of one scenario.
#[derive(Debug)]
pub(super) struct ScenarioCells {
    base: Box<[(String, String)]>,
    data: Mutex<ScenarioData>,
}

impl ScenarioCells {
    pub(super) fn new(base: Vec<(String, String)>, data: ScenarioData) -> Arc<ScenarioCells> {
        Arc::new(ScenarioCells {
            base: base.into_boxed_slice(),
            data: Mutex::new(data),
        })
    }

    /// A panic while recording leaves plain numbers behind: still worth showing.
    pub(super) fn lock(&self) -> MutexGuard<'_, ScenarioData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The live scenarios, by creation: the exposition lists their series in a stable order.
#[derive(Default)]
pub(super) struct ScenarioTable {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<ScenarioCells>>>,
}

impl fmt::Debug for ScenarioTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScenarioTable")
            .field("live", &self.live().len())
            .finish()
    }
}

impl ScenarioTable {
    fn live(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<ScenarioCells>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a scenario's series; the id removes them.
    pub(super) fn insert(&self, cells: Arc<ScenarioCells>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live().insert(id, cells);
        id
    }

    pub(super) fn remove(&self, id: u64) {
        let cells = self.live().remove(&id);
        if let Some(c) = cells {
            c.lock().removed = true;
        }
    }
}

impl Collector for ScenarioTable {
    /// The table's lock is held only to copy the list: creating or removing a scenario never
    /// waits for a scrape. Each scenario's lock is held while its series of one family are
    /// written (into memory, never waiting on the client: see `Metrics::encode_streaming`).
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let live: Vec<Arc<ScenarioCells>> = self.live().values().cloned().collect();
        for family in &FAMILIES {
            let mut out = Out {
                descriptor: Some(&mut encoder),
                family,
                metric: None,
            };
            for cells in &live {
                let data = cells.lock();
                if !data.removed {
                    (family.write)(&data, &cells.base, &mut out)?;
                }
            }
        }
        Ok(())
    }
}

/// A scenario's base labels.
type Base<'a> = &'a [(String, String)];

/// One family of scenario series.
struct Family {
    name: &'static str,
    /// With the full stop prometheus-client's registry adds to the help it is given.
    help: &'static str,
    kind: MetricType,
    /// Writes one scenario's series of the family.
    write: fn(&ScenarioData, Base, &mut Out) -> fmt::Result,
}

/// In the order they were registered as `Family`s, which the exposition follows.
const FAMILIES: [Family; 11] = [
    Family {
        name: "sonde_scenario_success",
        help: "1 if the scenario's last run passed, 0 if it failed.",
        kind: MetricType::Gauge,
        write: scenario_success,
    },
    Family {
        name: "sonde_scenario_runs",
        help: concat!(
            "Scenario runs by result (success, failure, timeout, skipped: a due run that ",
            "never started because the previous one was still running).",
        ),
        kind: MetricType::Counter,
        write: scenario_runs,
    },
    Family {
        name: "sonde_scenario_duration_seconds",
        help: "Duration of whole scenario runs.",
        kind: MetricType::Histogram,
        write: scenario_duration,
    },
    Family {
        name: "sonde_step_success",
        help: "1 if the step passed in the scenario's last run, 0 if it failed or did not run.",
        kind: MetricType::Gauge,
        write: step_success,
    },
    Family {
        name: "sonde_step_duration_seconds",
        help: "Duration of steps.",
        kind: MetricType::Histogram,
        write: step_duration,
    },
    Family {
        name: "sonde_step_phase_seconds",
        help: concat!(
            "Duration of each protocol phase of the step in the last run (resolve, connect, ",
            "tls, processing, transfer, request, setup, rtt; mqtt: connack, suback, puback, ",
            "pubrec, pubcomp).",
        ),
        kind: MetricType::Gauge,
        write: step_phases,
    },
    Family {
        name: "sonde_step_failures",
        help: concat!(
            "Step failures by reason (dns, connect, tls, timeout, status, body, assertion, ",
            "protocol).",
        ),
        kind: MetricType::Counter,
        write: step_failures,
    },
    Family {
        name: "sonde_tls_cert_not_after_seconds",
        help: concat!(
            "Earliest notAfter over the certificate chain the step was presented, as Unix ",
            "seconds.",
        ),
        kind: MetricType::Gauge,
        write: tls_not_after,
    },
    Family {
        name: "sonde_session_connected",
        help: concat!(
            "Persistent sessions: 1 while the session's connections are up and set up, 0 ",
            "while it is disconnected.",
        ),
        kind: MetricType::Gauge,
        write: session_connected,
    },
    Family {
        name: "sonde_session_reconnects",
        help: "Persistent sessions: times setup ran again after the connections broke.",
        kind: MetricType::Counter,
        write: session_reconnects,
    },
    Family {
        name: "sonde_session_connection_age_seconds",
        help: "Persistent sessions: age of the oldest open connection at the last run.",
        kind: MetricType::Gauge,
        write: session_age,
    },
];

/// One value, as the metric type prometheus-client's `Family` held it encodes it.
enum Value<'a> {
    /// `Gauge` (i64).
    Int(i64),
    /// `Gauge<f64, AtomicU64>`.
    Float(f64),
    /// `Counter` (u64).
    Count(u64),
    Histogram(&'a Counts),
}

/// A family being written. Its descriptor is written with its first series, so a family no
/// scenario has a series in is left out whole, HELP and TYPE too, as prometheus-client leaves
/// out an empty `Family`.
struct Out<'a, 'e> {
    /// Until the descriptor is written.
    descriptor: Option<&'a mut DescriptorEncoder<'e>>,
    family: &'static Family,
    /// Once it is.
    metric: Option<MetricEncoder<'a>>,
}

impl Out<'_, '_> {
    fn series(&mut self, labels: &Labels, value: Value) -> fmt::Result {
        if self.metric.is_none() {
            let d = self.descriptor.take().ok_or(fmt::Error)?;
            let f = self.family;
            self.metric = Some(d.encode_descriptor(f.name, f.help, None, f.kind)?);
        }
        let metric = self.metric.as_mut().ok_or(fmt::Error)?;
        let mut e = metric.encode_family(labels)?;
        match value {
            Value::Int(v) => e.encode_gauge(&v),
            Value::Float(v) => e.encode_gauge(&v),
            Value::Count(v) => e.encode_counter::<NoLabelSet, _, u64>(&v, None),
            Value::Histogram(c) => c.encode(e),
        }
    }
}

/// A series' labels: the scenario's base labels, then the step's, then the family's own.
struct Labels<'a> {
    base: &'a [(String, String)],
    step: Option<&'a str>,
    extra: Option<(&'static str, &'static str)>,
}

impl<'a> Labels<'a> {
    fn scenario(base: &'a [(String, String)]) -> Self {
        Labels {
            base,
            step: None,
            extra: None,
        }
    }

    fn step(base: &'a [(String, String)], step: &'a StepData) -> Self {
        Labels {
            step: Some(step.name.as_str()),
            ..Labels::scenario(base)
        }
    }

    fn with(self, name: &'static str, value: &'static str) -> Self {
        Labels {
            extra: Some((name, value)),
            ..self
        }
    }
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        self.base.encode(encoder)?;
        if let Some(step) = self.step {
            [("step", step)].encode(encoder)?;
        }
        if let Some(kv) = self.extra {
            [kv].encode(encoder)?;
        }
        Ok(())
    }
}

fn scenario_success(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    match d.success {
        Some(s) => out.series(&Labels::scenario(base), Value::Int(s.into())),
        None => Ok(()),
    }
}

fn scenario_runs(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    for (result, n) in RESULTS.into_iter().zip(d.runs) {
        let labels = Labels::scenario(base).with("result", result);
        out.series(&labels, Value::Count(n))?;
    }
    Ok(())
}

fn scenario_duration(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    out.series(&Labels::scenario(base), Value::Histogram(&d.duration))
}

fn step_success(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    for s in &d.steps {
        if let Some(ok) = s.success {
            out.series(&Labels::step(base, s), Value::Int(ok.into()))?;
        }
    }
    Ok(())
}

fn step_duration(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    for s in d.steps.iter().filter(|s| !s.pseudo) {
        out.series(&Labels::step(base, s), Value::Histogram(&s.duration))?;
    }
    Ok(())
}

fn step_phases(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    for s in &d.steps {
        for (phase, secs) in s.phases.iter() {
            let labels = Labels::step(base, s).with("phase", phase.as_str());
            out.series(&labels, Value::Float(*secs))?;
        }
    }
    Ok(())
}

fn step_failures(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    for s in &d.steps {
        for (reason, n) in s.failures() {
            let labels = Labels::step(base, s).with("reason", reason.as_str());
            out.series(&labels, Value::Count(*n))?;
        }
    }
    Ok(())
}

fn tls_not_after(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    for s in &d.steps {
        if let Some(t) = s.tls_not_after() {
            out.series(&Labels::step(base, s), Value::Int(t))?;
        }
    }
    Ok(())
}

fn session_connected(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    match &d.session {
        Some(s) => out.series(&Labels::scenario(base), Value::Int(s.connected.into())),
        None => Ok(()),
    }
}

fn session_reconnects(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    match &d.session {
        Some(s) => out.series(&Labels::scenario(base), Value::Count(s.reconnects)),
        None => Ok(()),
    }
}

fn session_age(d: &ScenarioData, base: Base, out: &mut Out) -> fmt::Result {
    match &d.session {
        Some(s) => out.series(&Labels::scenario(base), Value::Float(s.age)),
        None => Ok(()),
    }
}
