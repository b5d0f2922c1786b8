//! sonde as an alert source: each scenario with an `alert:` block has a threshold state machine
//! ([`state`]) fed by every run; when it fires or resolves, the alert goes to every configured
//! Alertmanager ([`alertmanager`], API v2) and to the scenario's named notifiers ([`notify`]:
//! generic webhook, Slack, DingTalk, WeCom, Feishu/Lark, e-mail). [`rules`] turns the same
//! blocks into Prometheus rules.
//!
//! Delivery never blocks probing: the scheduler's hook only updates the state and puts events
//! on a bounded queue per destination (full queue: the event is dropped and counted); each
//! destination has its own task that sends, retries with backoff, and counts. A ticker re-sends
//! firing alerts to Alertmanager every `resend_interval` (its `endsAt` is 4 intervals ahead, so
//! an agent that dies lets its alerts expire instead of firing forever) and repeats them to
//! notifiers every `repeat_interval`.
//!
//! State is kept by scenario name and fingerprint: a reload that leaves a scenario unchanged
//! keeps its alert (and its `startsAt`); one that changes or removes it resolves a firing alert.

pub mod alertmanager;
pub mod notify;
pub mod rules;
pub mod state;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::alert::{AlertRule, AlertingSettings};
use crate::config::scenario::Scenario;
use crate::engine::RunReport;
use crate::runtime::observer::{Observer, ScenarioObserver};
use state::{Threshold, Transition};
use template::Context;

/// `alertname` of the alerts sonde raises itself (and of the per-region generated rules).
pub const ALERTNAME: &str = "SondeScenarioFailing";

/// Events waiting per destination; beyond, new events are dropped and counted.
pub const QUEUE_CAPACITY: usize = 256;

/// How often firing alerts are checked for re-sending.
const TICK: Duration = Duration::from_millis(500);

type NotifierLabels = Vec<(&'static str, String)>;

/// The alerting families, registered at start with the others.
#[derive(Clone, Default)]
pub struct AlertMetrics {
    pub firing: Gauge,
    pub deliveries: Family<NotifierLabels, Counter>,
    pub failures: Family<NotifierLabels, Counter>,
    pub retries: Family<NotifierLabels, Counter>,
    pub dropped: Family<NotifierLabels, Counter>,
}

impl AlertMetrics {
    pub fn register(r: &mut Registry) -> AlertMetrics {
        let m = AlertMetrics::default();
        r.register(
            "sonde_alerts_firing",
            "Alerts of this agent's scenarios firing now",
            m.firing.clone(),
        );
        r.register(
            "sonde_alert_deliveries",
            "Alert notifications delivered, by notifier (alertmanager-N: the Nth Alertmanager)",
            m.deliveries.clone(),
        );
        r.register(
            "sonde_alert_delivery_failures",
            "Alert notifications given up on (refused, or every attempt failed), by notifier",
            m.failures.clone(),
        );
        r.register(
            "sonde_alert_delivery_retries",
            "Alert notification attempts that failed and were retried, by notifier",
            m.retries.clone(),
        );
        r.register(
            "sonde_alert_notifications_dropped",
            "Alert notifications dropped because the notifier's queue was full, by notifier",
            m.dropped.clone(),
        );
        m
    }

    fn of(f: &Family<NotifierLabels, Counter>, notifier: &str) -> Counter {
        f.get_or_create(&vec![("notifier", notifier.to_string())])
            .clone()
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert state change (or repeat), as every destination formats it.
#[derive(Clone, Debug)]
pub struct Event {
    pub status: Status,
    /// A re-send of an alert that keeps firing.
    pub repeat: bool,
    pub scenario: String,
    pub region: Option<String>,
    pub severity: String,
    /// alertname, scenario, region, severity, the scenario's labels and the alert's, sorted.
    pub labels: Vec<(String, String)>,
    pub summary: String,
    pub description: String,
    pub runbook_url: Option<String>,
    pub starts_at: SystemTime,
    /// When it resolved.
    pub ends_at: Option<SystemTime>,
    /// The scenario's API page.
    pub generator_url: String,
    /// The failing run (for a resolve: the last failing run).
    pub step: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub latency: Option<Duration>,
}

/// The failing run that an alert reports.
#[derive(Clone, Debug, Default)]
struct Failed {
    step: Option<String>,
    reason: Option<String>,
    error: Option<String>,
    latency: Option<Duration>,
}

impl Failed {
    fn from_report(sc: &Scenario, r: &RunReport) -> Failed {
        let failure = r.failure();
        Failed {
            step: r.failed_step.clone(),
            reason: failure.map(|f| f.reason.as_str().to_string()),
            error: failure
                .map(|f| f.message.clone())
                .or_else(|| r.internal_error.clone())
                // Run-time secrets (captured tokens) too, not only the configuration's.
                .map(|e| r.redact_text(sc, &e)),
            latency: Some(r.duration),
        }
    }
}

struct Firing {
    starts_at: SystemTime,
    failed: Failed,
    last_alertmanager: Instant,
    last_notified: HashMap<String, Instant>,
}

struct Entry {
    fingerprint: u64,
    scenario: Arc<Scenario>,
    rule: AlertRule,
    machine: Threshold,
    last_failed: Failed,
    firing: Option<Firing>,
}

/// A destination's queue.
#[derive(Clone)]
struct Queue {
    name: String,
    tx: mpsc::Sender<Arc<Event>>,
}

struct Hub {
    /// Events queued or being delivered, for the flush at shutdown.
    pending: Arc<std::sync::atomic::AtomicUsize>,
    settings: Arc<AlertingSettings>,
    region: Option<String>,
    external_url: String,
    metrics: AlertMetrics,
    entries: Mutex<BTreeMap<String, Entry>>,
    alertmanagers: Vec<Queue>,
    notifiers: HashMap<String, Queue>,
}

impl Hub {
    /// A hub for `settings`: one task per destination, and the re-send ticker.
    fn start(
        base: &HubBase,
        settings: Arc<AlertingSettings>,
        entries: BTreeMap<String, Entry>,
    ) -> Arc<Hub> {
        let external_url = settings
            .external_url
            .as_ref()
            .map_or(base.default_external_url.clone(), |u| u.to_string());
        let external_url = external_url.trim_end_matches('/').to_string();
        let (metrics, pending) = (&base.metrics, &base.pending);
        let mut alertmanagers = Vec::new();
        for (i, am) in settings.alertmanagers.iter().enumerate() {
            let name = format!("alertmanager-{}", i + 1);
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(alertmanager::run(
                name.clone(),
                am.clone(),
                settings.resend_interval,
                rx,
                metrics.clone(),
                pending.clone(),
            ));
            alertmanagers.push(Queue { name, tx });
        }
        let mut notifiers = HashMap::new();
        for n in &settings.notifiers {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(notify::run(n.clone(), rx, metrics.clone(), pending.clone()));
            let q = Queue {
                name: n.name.clone(),
                tx,
            };
            notifiers.insert(n.name.clone(), q);
        }
        let hub = Arc::new(Hub {
            pending: pending.clone(),
            settings,
            region: base.region.clone(),
            external_url,
            metrics: metrics.clone(),
            entries: Mutex::new(entries),
            alertmanagers,
            notifiers,
        });
        tokio::spawn(ticker(Arc::downgrade(&hub)));
        hub
    }
}

/// The alerter as an observer of runs: it follows scenarios with an `alert:` block.
impl Observer for Alerts {
    fn watch(&self, scenario: &Arc<Scenario>) -> Box<dyn ScenarioObserver> {
        Box::new(AlertWatch {
            alerts: self.clone(),
            scenario: scenario.clone(),
        })
    }

    fn scheduled(&self, scenarios: &[Arc<Scenario>]) {
        self.apply(scenarios);
    }
}

struct AlertWatch {
    alerts: Alerts,
    scenario: Arc<Scenario>,
}

impl ScenarioObserver for AlertWatch {
    fn run(&mut self, report: &RunReport, current: bool) {
        if current {
            self.alerts.observe(&self.scenario, report);
        }
    }
}

/// The alerter: cheap to clone; [`Alerts::disabled`] does nothing. The hub (destinations and
/// alert states) is swapped whole when a reload changes the `alerting:` settings; the alert
/// states move to the new hub, so nothing firing is forgotten or fired twice.
#[derive(Clone, Default)]
pub struct Alerts {
    hub: Arc<std::sync::RwLock<Option<Arc<Hub>>>>,
    /// What a new hub is built with (None: disabled, stays disabled).
    base: Option<Arc<HubBase>>,
}

/// What every hub of one process shares.
struct HubBase {
    metrics: AlertMetrics,
    region: Option<String>,
    default_external_url: String,
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl Alerts {
    pub fn disabled() -> Alerts {
        Alerts::default()
    }

    /// Start the destinations' tasks and the re-send ticker (inside a tokio runtime).
    /// `default_external_url` is used for `generatorURL` when the settings name none.
    pub fn start(
        metrics: AlertMetrics,
        settings: Option<Arc<AlertingSettings>>,
        region: Option<String>,
        default_external_url: &str,
    ) -> Alerts {
        let base = Arc::new(HubBase {
            metrics,
            region,
            default_external_url: default_external_url.to_string(),
            pending: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        });
        let hub = Hub::start(&base, settings.unwrap_or_default(), BTreeMap::new());
        Alerts {
            hub: Arc::new(std::sync::RwLock::new(Some(hub))),
            base: Some(base),
        }
    }

    /// A reload's `alerting:` settings: when they changed, new destinations take over (the old
    /// ones finish what they have queued) and every alert state moves over unchanged.
    pub fn reconfigure(&self, settings: Option<Arc<AlertingSettings>>) {
        let Some(base) = &self.base else { return };
        let settings = settings.unwrap_or_default();
        let mut slot = self.hub.write().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|h| h.settings == settings) {
            return;
        }
        let entries = slot.as_ref().map_or_else(BTreeMap::new, |old| {
            std::mem::take(&mut *old.entries.lock().unwrap_or_else(|e| e.into_inner()))
        });
        *slot = Some(Hub::start(base, settings, entries));
        tracing::info!("alerting settings reloaded");
    }

    fn current(&self) -> Option<Arc<Hub>> {
        self.hub.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Take one finished run of `scenario` (called by the scheduler after recording metrics).
    pub fn observe(&self, scenario: &Arc<Scenario>, report: &RunReport) {
        let Some(hub) = &self.current() else { return };
        let Some(spec) = &scenario.alert else { return };
        let mut entries = hub.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match entries.get(&scenario.name) {
            Some(e) if e.fingerprint == scenario.fingerprint => {
                entries.get_mut(&scenario.name).expect("present")
            }
            _ => {
                // New, or changed since (apply() normally handles changes first).
                if let Some(old) = entries.remove(&scenario.name) {
                    hub.resolve_gone(old);
                }
                let rule = spec.resolve(&hub.settings.defaults);
                let machine = Threshold::new(rule.after, rule.resolve_after);
                entries.entry(scenario.name.clone()).or_insert(Entry {
                    fingerprint: scenario.fingerprint,
                    scenario: scenario.clone(),
                    rule,
                    machine,
                    last_failed: Failed::default(),
                    firing: None,
                })
            }
        };
        if !report.success() {
            entry.last_failed = Failed::from_report(scenario, report);
            // Reminders and the resolve report the latest failure, not the first.
            if let Some(f) = entry.firing.as_mut() {
                f.failed = entry.last_failed.clone();
            }
        }
        match entry.machine.observe(report.success()) {
            Transition::None => {}
            Transition::Fire => {
                let now = Instant::now();
                let firing = Firing {
                    starts_at: SystemTime::now(),
                    failed: entry.last_failed.clone(),
                    last_alertmanager: now,
                    last_notified: entry.rule.notify.iter().map(|n| (n.clone(), now)).collect(),
                };
                let ev = hub.event(entry, &firing, Status::Firing, false);
                tracing::warn!(scenario = %scenario.name, "alert firing: {}", ev.summary);
                hub.metrics.firing.inc();
                entry.firing = Some(firing);
                hub.send_all(&entry.rule, ev);
            }
            Transition::Resolve => {
                if let Some(firing) = entry.firing.take() {
                    hub.metrics.firing.dec();
                    let ev = hub.event(entry, &firing, Status::Resolved, false);
                    tracing::info!(scenario = %scenario.name, "alert resolved: {}", ev.summary);
                    hub.send_all(&entry.rule, ev);
                }
            }
        }
    }

    /// The configuration now scheduled on this agent: alert state of scenarios that are gone
    /// or changed is dropped (a firing alert resolved); unchanged ones keep theirs.
    pub fn apply(&self, scenarios: &[Arc<Scenario>]) {
        let Some(hub) = &self.current() else { return };
        let keep: HashMap<&str, u64> = scenarios
            .iter()
            .map(|s| (s.name.as_str(), s.fingerprint))
            .collect();
        let mut entries = hub.entries.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = entries
            .iter()
            .filter(|(name, e)| keep.get(name.as_str()) != Some(&e.fingerprint))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            if let Some(e) = entries.remove(&name) {
                hub.resolve_gone(e);
            }
        }
    }

    /// At shutdown: wait until what is queued has been delivered (or given up), at most
    /// `grace`, so the last fire or resolve is not lost to a restart.
    pub async fn finish(&self, grace: Duration) {
        let Some(hub) = &self.current() else { return };
        let until = Instant::now() + grace;
        while hub.pending.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            if Instant::now() >= until {
                tracing::warn!(
                    notifications = hub.pending.load(std::sync::atomic::Ordering::SeqCst),
                    "stopping with alert notifications undelivered"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether `scenario`'s alert is firing now (for the API).
    pub fn firing(&self, scenario: &str) -> Option<bool> {
        let hub = self.current()?;
        let entries = hub.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(scenario).map(|e| e.firing.is_some())
    }
}

impl Hub {
    fn resolve_gone(&self, mut e: Entry) {
        if let Some(firing) = e.firing.take() {
            self.metrics.firing.dec();
            let mut ev = self.event(&e, &firing, Status::Resolved, false);
            ev.description = format!(
                "{} (resolved because the scenario was changed or removed)",
                ev.description
            );
            self.send_all(&e.rule, ev);
        }
    }

    fn event(&self, e: &Entry, firing: &Firing, status: Status, repeat: bool) -> Event {
        let sc = &e.scenario;
        let mut labels: BTreeMap<String, String> = sc.labels.iter().cloned().collect();
        labels.extend(e.rule.labels.iter().cloned());
        labels.insert("alertname".into(), ALERTNAME.into());
        labels.insert("scenario".into(), sc.name.clone());
        labels.insert("severity".into(), e.rule.severity.clone());
        if let Some(r) = &self.region {
            labels.insert("region".into(), r.clone());
        }
        let f = &firing.failed;
        let ctx = Context {
            scenario: sc.name.clone(),
            region: self.region.clone().unwrap_or_default(),
            step: f.step.clone().unwrap_or_default(),
            reason: f.reason.clone().unwrap_or_default(),
            error: f.error.clone().unwrap_or_default(),
            latency: f
                .latency
                .map(sonde_probes::fmt_duration)
                .unwrap_or_default(),
            severity: e.rule.severity.clone(),
            status: status.as_str().into(),
            labels: labels.clone(),
        };
        let render = |src: &str| sc.redact_text(&template::render(src, &ctx)).into_owned();
        Event {
            status,
            repeat,
            scenario: sc.name.clone(),
            region: self.region.clone(),
            severity: e.rule.severity.clone(),
            labels: labels.into_iter().collect(),
            summary: render(&e.rule.summary),
            description: render(&e.rule.description),
            runbook_url: e.rule.runbook_url.as_deref().map(render),
            starts_at: firing.starts_at,
            ends_at: (status == Status::Resolved).then(SystemTime::now),
            generator_url: format!(
                "{}/api/v1/scenarios/{}",
                self.external_url,
                path_escape(&sc.name)
            ),
            step: f.step.clone(),
            reason: f.reason.clone(),
            error: f.error.clone(),
            latency: f.latency,
        }
    }

    fn enqueue(&self, q: &Queue, ev: &Arc<Event>) {
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if q.tx.try_send(ev.clone()).is_err() {
            self.pending
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            AlertMetrics::of(&self.metrics.dropped, &q.name).inc();
            tracing::warn!(notifier = %q.name, "alert notification dropped: the queue is full");
        }
    }

    /// To every Alertmanager, and to the rule's notifiers (resolves only to those that want
    /// them).
    fn send_all(&self, rule: &AlertRule, ev: Event) {
        let ev = Arc::new(ev);
        for q in &self.alertmanagers {
            self.enqueue(q, &ev);
        }
        for name in &rule.notify {
            let Some(q) = self.notifiers.get(name) else {
                continue;
            };
            let wants = ev.status == Status::Firing
                || self
                    .settings
                    .notifiers
                    .iter()
                    .any(|n| &n.name == name && n.send_resolved);
            if wants {
                self.enqueue(q, &ev);
            }
        }
    }

    /// Re-send firing alerts that are due.
    fn tick(&self) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for e in entries.values_mut() {
            let Some(mut firing) = e.firing.take() else {
                continue;
            };
            if !self.alertmanagers.is_empty()
                && now.duration_since(firing.last_alertmanager) >= self.settings.resend_interval
            {
                firing.last_alertmanager = now;
                let ev = Arc::new(self.event(e, &firing, Status::Firing, true));
                for q in &self.alertmanagers {
                    self.enqueue(q, &ev);
                }
            }
            for n in &self.settings.notifiers {
                let (Some(every), Some(last), Some(q)) = (
                    n.repeat_interval,
                    firing.last_notified.get(&n.name).copied(),
                    self.notifiers.get(&n.name),
                ) else {
                    continue;
                };
                if now.duration_since(last) >= every {
                    firing.last_notified.insert(n.name.clone(), now);
                    let ev = Arc::new(self.event(e, &firing, Status::Firing, true));
                    self.enqueue(q, &ev);
                }
            }
            e.firing = Some(firing);
        }
    }
}

async fn ticker(hub: std::sync::Weak<Hub>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match hub.upgrade() {
            Some(h) => h.tick(),
            None => return,
        }
    }
}

/// A scenario name in a URL path (names may hold `/` and `:`, which stay as they are).
pub fn path_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Backoff between delivery attempts: doubles from the first to the last.
pub const MIN_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How one delivery attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Will never be accepted (4xx other than 429, a robot's error code): not retried.
    Rejected(String),
    Retry(String),
}

/// Classify an HTTP answer: 2xx delivered, 5xx and 429 retried, other answers refused.
pub fn classify(status: reqwest::StatusCode, body: &str) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    let body: String = body.trim().chars().take(300).collect();
    let why = format!("answered {status}: {body}");
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Outcome::Retry(why)
    } else {
        Outcome::Rejected(why)
    }
}

/// Send with retries: `attempt` is called up to `max_attempts` times with backoff while it
/// says `Retry`; counts the result under `name`.
pub async fn deliver<F, Fut>(name: &str, max_attempts: u32, metrics: &AlertMetrics, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    for n in 1..=max_attempts.max(1) {
        // A receiver's answer may quote the URL it was sent to, token included.
        match redacted(attempt().await) {
            Outcome::Delivered => {
                AlertMetrics::of(&metrics.deliveries, name).inc();
                return;
            }
            Outcome::Rejected(why) => {
                AlertMetrics::of(&metrics.failures, name).inc();
                tracing::error!(notifier = name, "alert notification refused: {why}");
                return;
            }
            Outcome::Retry(why) if n < max_attempts => {
                AlertMetrics::of(&metrics.retries, name).inc();
                let pause = backoff.failed();
                tracing::warn!(notifier = name, retry_in = ?pause, "alert notification failed, will retry: {why}");
                tokio::time::sleep(pause).await;
            }
            Outcome::Retry(why) => {
                AlertMetrics::of(&metrics.failures, name).inc();
                tracing::error!(
                    notifier = name,
                    attempts = n,
                    "alert notification failed, giving up: {why}"
                );
            }
        }
    }
}

fn redacted(o: Outcome) -> Outcome {
    let r = |why: String| crate::redact::text(&why).into_owned();
    match o {
        Outcome::Delivered => Outcome::Delivered,
        Outcome::Rejected(why) => Outcome::Rejected(r(why)),
        Outcome::Retry(why) => Outcome::Retry(r(why)),
    }
}

/// One HTTP client per destination: its own timeout, no proxy from the environment (a proxy
/// variable meant for probes must not divert alerts).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// POST `body` as JSON; `Retry` on network errors.
pub async fn post_json(
    req: reqwest::RequestBuilder,
    body: &serde_json::Value,
) -> Result<(reqwest::StatusCode, String), String> {
    let resp = req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        // Without the URL: a DingTalk or Slack URL holds its access token, which must not reach
        // the log.
        .map_err(|e| {
            format!(
                "cannot reach it: {}",
                crate::error_chain::error_chain(&e.without_url())
            )
        })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, text))
}
