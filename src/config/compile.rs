//! One file → its scenarios: the top-level form, each scenario's own keys and checks, templates,
//! then each step through [`steps`](super::steps). Problems are collected, never returned early,
//! so a file with five problems reports five.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_norway::{Mapping, Value};

use super::build::{Cx, Shared};
use super::deser::deserialize_recovering;
use super::error::{FileErrors, Pos};
use super::expect;
use super::flow;
use super::funcs::SecretSink;
use super::locate::{index_path, key_path, PosIndex};
use super::model::{ScenarioModel, StepModel, KINDS};
use super::redact::{redact, secrets, Fnv, MIN_SECRET_LEN};
use super::steps;
use super::suggest;
use super::template::{Scope, Templates, When};
use super::units::SessionWord;
use super::LoadOptions;
use crate::scenario::{
    Action, BuildFn, Capture, Captured, Dynamic, PostChecks, Retry, Scenario, Step,
};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longer intervals are almost certainly a typo (`30d` for `30s`), and far-future deadlines
/// overflow the clock: a monthly check is the longest sonde schedules.
const MAX_INTERVAL: Duration = Duration::from_secs(31 * 86_400);
const MAX_LABELS: usize = 16;
const RESERVED_LABELS: [&str; 10] = [
    "scenario", "region", "step", "phase", "reason", "result", "le", "job", "instance", "quantile",
];

/// Durations in messages the way people write them in YAML ("30s", "14d", "1m 30s").
fn human(d: Duration) -> String {
    crate::engine::fmt_long(d)
}

fn valid_scenario_name(n: &str) -> bool {
    (1..=128).contains(&n.chars().count())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:/-".contains(c))
}

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Keeps what spans files and scenarios during one load.
pub struct Loader {
    templates: Arc<Templates>,
    shared: Arc<Mutex<Shared>>,
    region: Option<String>,
    /// Scenario name → where it was first defined (`file:line:col`).
    names: HashMap<String, String>,
}

struct StepOut {
    name: Option<String>,
    kind: &'static str,
    timeout: Option<Duration>,
    retry: Option<Retry>,
    built: Option<Built>,
    /// The raw tree of a step built per run.
    dynamic: Option<Value>,
}

struct Built {
    timeout: Option<Duration>,
    retry: Option<Retry>,
    action: Action,
    expect: PostChecks,
    captures: Vec<Capture>,
}

/// The kinds a one-step scenario may write at the top level.
const SHORTHAND_KINDS: [&str; 5] = ["http", "tcp", "dns", "icmp", "tls"];

impl Loader {
    pub fn new(opts: &LoadOptions) -> Self {
        Loader {
            templates: Arc::new(
                Templates::new(opts.region.clone()).with_overrides(opts.vars.clone()),
            ),
            shared: Arc::new(Mutex::new(Shared::default())),
            region: opts.region.clone(),
            names: HashMap::new(),
        }
    }

    /// Start a document: what its templates may reach ([`super::trust`]); their shared
    /// load-time budget starts afresh.
    pub fn set_trust(&self, trust: super::trust::Trust) {
        self.templates.set_trust(trust);
    }

    /// Load one file's text; scenarios go to `out`, problems are returned.
    pub fn file(
        &mut self,
        file: &str,
        dir: &Path,
        text: &str,
        out: &mut Vec<Arc<Scenario>>,
    ) -> FileErrors {
        let mut errors = FileErrors::new(file);
        let index = PosIndex::build(text);
        if !index.duplicates.is_empty() {
            for d in &index.duplicates {
                errors.push(
                    d.again,
                    format!(
                        "duplicate key `{}` — expected each key once in a mapping (first at line {})",
                        d.key, d.first.line
                    ),
                );
            }
            return errors;
        }
        let mut value: Value = match serde_norway::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let pos = e
                    .location()
                    .map(|l| Pos {
                        line: l.line(),
                        column: l.column(),
                    })
                    .unwrap_or(Pos::START);
                errors.push(pos, syntax_message(&e.to_string()));
                return errors;
            }
        };
        if let Err(e) = value.apply_merge() {
            errors.push(
                Pos::START,
                format!("cannot apply a merge key (`<<`): {e} — expected `<<` to name a mapping"),
            );
            return errors;
        }
        let top = match value {
            Value::Mapping(m) => m,
            Value::Null => {
                errors.push(
                    Pos::START,
                    "empty file — expected a scenario (`scenario:`) or a list of them (`scenarios:`)",
                );
                return errors;
            }
            other => {
                errors.push(
                    index.value(""),
                    format!(
                        "the top level is {} — expected a mapping with `scenario:` or `scenarios:`",
                        describe(&other)
                    ),
                );
                return errors;
            }
        };
        if top.contains_key("modules") {
            errors.push(
                index.key("modules"),
                "blackbox configuration files are not supported yet — expected `scenario:` or `scenarios:`",
            );
            return errors;
        }
        match (top.contains_key("scenario"), top.get("scenarios")) {
            (true, Some(_)) => errors.push(
                index.key("scenarios"),
                "both `scenario:` and `scenarios:` — expected one scenario (`scenario:`) or a list of them (`scenarios:`), not both",
            ),
            (true, None) => {
                if let Some(s) = self.scenario(Value::Mapping(top), "", dir, &index, &mut errors) {
                    out.push(Arc::new(s));
                }
            }
            (false, Some(list)) => {
                for k in top.keys() {
                    let k = key_text(k);
                    if k != "scenarios" {
                        errors.push(
                            index.key(&key_path("", &k)),
                            format!(
                                "unknown key `{k}` beside `scenarios:` — expected only `scenarios:` here (a scenario's keys go inside its list item)"
                            ),
                        );
                    }
                }
                match list {
                    Value::Sequence(items) if items.is_empty() => errors.push(
                        index.value("scenarios"),
                        "`scenarios` is empty — expected a list of scenarios",
                    ),
                    Value::Sequence(items) => {
                        for (i, item) in items.iter().enumerate() {
                            let path = index_path("scenarios", i);
                            if let Some(s) =
                                self.scenario(item.clone(), &path, dir, &index, &mut errors)
                            {
                                out.push(Arc::new(s));
                            }
                        }
                    }
                    other => errors.push(
                        index.value("scenarios"),
                        format!(
                            "`scenarios` is {} — expected a list of scenarios",
                            describe(other)
                        ),
                    ),
                }
            }
            (false, None) => {
                let keys: Vec<String> = top.keys().map(key_text).collect();
                let near = keys.iter().find_map(|k| {
                    suggest::closest(k, ["scenario", "scenarios"]).map(|c| (k.clone(), c))
                });
                match near {
                    Some((k, c)) => errors.push(
                        index.key(&key_path("", &k)),
                        format!("unknown key `{k}` — did you mean `{c}`?"),
                    ),
                    None => errors.push(
                        index.value(""),
                        "no `scenario:` or `scenarios:` key — expected a scenario file",
                    ),
                }
            }
        }
        errors
    }

    fn scenario(
        &mut self,
        raw: Value,
        path: &str,
        dir: &Path,
        index: &PosIndex,
        errors: &mut FileErrors,
    ) -> Option<Scenario> {
        let before = errors.len();
        let p = |k: &str| key_path(path, k);
        let mut hash = Fnv::default();
        let mut redacted = serde_json::to_value(&raw).unwrap_or_default();
        hash.write(redacted.to_string().as_bytes());
        hash.write(self.region.as_deref().unwrap_or("").as_bytes());
        let secrets = secrets(&redacted, |name| std::env::var(name).ok());
        redact(&mut redacted);

        let rec = deserialize_recovering::<ScenarioModel>(raw, path, "a scenario", index, errors);
        let removed = rec.removed;
        let m = rec.value?;

        let name = m.scenario.0.clone();
        let name_at = index.value(&p("scenario"));
        let defined_at = errors.at(name_at);
        if !valid_scenario_name(&name) {
            errors.push(
                name_at,
                format!(
                    "invalid scenario name {name:?} — expected 1 to 128 characters among A-Z a-z 0-9 _ . : / -"
                ),
            );
        } else if let Some(first) = self.names.get(&name) {
            errors.push(
                name_at,
                format!("duplicate scenario name `{name}` — already defined at {first}"),
            );
        } else {
            self.names.insert(name.clone(), defined_at.clone());
        }

        let interval = m.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
        if interval < MIN_INTERVAL {
            errors.push(
                index.value(&p("interval")),
                format!(
                    "interval {} is too short — expected at least {}",
                    human(interval),
                    human(MIN_INTERVAL)
                ),
            );
        } else if interval > MAX_INTERVAL {
            errors.push(
                index.value(&p("interval")),
                format!(
                    "interval {} is too long — expected at most {}",
                    human(interval),
                    human(MAX_INTERVAL)
                ),
            );
        }
        let timeout = m
            .timeout
            .map_or_else(|| DEFAULT_TIMEOUT.min(interval), |d| d.0);
        if timeout.is_zero() {
            errors.push(
                index.value(&p("timeout")),
                "timeout 0s — expected a deadline above zero",
            );
        } else if timeout > interval
            && !removed.contains(&p("interval"))
            && (MIN_INTERVAL..=MAX_INTERVAL).contains(&interval)
        {
            errors.push(
                index.value(&p("timeout")),
                format!(
                    "timeout {} is longer than the interval {}{} — expected at most the interval (a run must end before the next one is due)",
                    human(timeout),
                    human(interval),
                    if m.interval.is_none() { " (the default)" } else { "" }
                ),
            );
        }

        let mut regions = Vec::new();
        for (i, r) in m.regions.iter().flatten().enumerate() {
            if valid_region(r.strip_prefix('!').unwrap_or(r)) {
                regions.push(r.clone());
            } else {
                errors.push(
                    index.value(&index_path(&p("regions"), i)),
                    format!(
                        "invalid region {r:?} — expected a name of a-z, 0-9, _ and -, or !name to exclude one"
                    ),
                );
            }
        }
        let tags: Vec<String> = m.tags.iter().flatten().map(|t| t.0.clone()).collect();

        let mut labels = Vec::new();
        if let Some(ls) = &m.labels {
            if ls.0.len() > MAX_LABELS {
                errors.push(
                    index.key(&p("labels")),
                    format!(
                        "{} labels — expected at most {MAX_LABELS} (every label multiplies the metric series)",
                        ls.0.len()
                    ),
                );
            }
            for (k, v) in &ls.0 {
                let at = index.key(&key_path(&p("labels"), k));
                if !valid_label_name(k) {
                    errors.push(
                        at,
                        format!(
                            "invalid label name `{k}` — expected letters, digits and _, not starting with a digit"
                        ),
                    );
                } else if k.starts_with("__") {
                    errors.push(
                        at,
                        format!("label name `{k}` is reserved (names starting with __ are Prometheus's) — expected another name"),
                    );
                } else if RESERVED_LABELS.contains(&k.as_str()) {
                    errors.push(
                        at,
                        format!(
                            "label name `{k}` is reserved (sonde sets it) — expected another name"
                        ),
                    );
                } else {
                    labels.push((k.clone(), v.0.clone()));
                }
            }
            labels.sort();
        }

        let alert = m
            .alert
            .clone()
            .and_then(|a| super::alert::scenario_alert(a, &p("alert"), index, errors));
        let persistent = m.session == Some(SessionWord::Persistent);
        let heartbeat = m.heartbeat.map(|d| d.0);
        if let Some(h) = heartbeat {
            if h < Duration::from_millis(100) {
                errors.push(
                    index.value(&p("heartbeat")),
                    format!(
                        "heartbeat {} is too short — expected at least 100ms",
                        human(h)
                    ),
                );
            }
        }

        let (sink, sink_value) = SecretSink::value();
        let mut scope = self.templates.scope(&name, dir, sink_value);
        if let Some(vars) = &m.vars {
            for (k, v) in self
                .templates
                .add_vars(&mut scope, &vars.0, &p("vars"), index, errors)
            {
                hash.write(k.as_bytes());
                hash.write(v.to_string().as_bytes());
            }
        } else {
            let mut rendered = Vec::new();
            self.templates
                .add_undeclared_overrides(&mut scope, &[], &mut rendered);
        }

        // The steps, each with the path it sits at.
        let shorthand: Vec<(&str, &Value)> = [
            ("http", &m.http),
            ("tcp", &m.tcp),
            ("dns", &m.dns),
            ("icmp", &m.icmp),
            ("tls", &m.tls),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let mut step_values: Vec<(Value, String)> = Vec::new();
        match (&m.steps, shorthand.is_empty()) {
            (Some(list), true) => {
                for k in ["expect", "resolver", "capture", "retry"] {
                    let present = match k {
                        "expect" => m.expect.is_some(),
                        "resolver" => m.resolver.is_some(),
                        "capture" => m.capture.is_some(),
                        _ => m.retry.is_some(),
                    };
                    if present {
                        errors.push(
                            index.key(&p(k)),
                            format!("`{k}` at the scenario level only goes with a one-step scenario — expected it inside a step of `steps:`"),
                        );
                    }
                }
                if list.is_empty() {
                    errors.push(
                        index.value(&p("steps")),
                        "`steps` is empty — expected at least one step",
                    );
                }
                for (i, v) in list.iter().enumerate() {
                    step_values.push((v.clone(), index_path(&p("steps"), i)));
                }
            }
            (Some(_), false) => errors.push(
                index.key(&p(shorthand[0].0)),
                format!(
                    "both `steps:` and a one-step `{}:` — expected either a `steps:` list or one step kind at the top level",
                    shorthand[0].0
                ),
            ),
            (None, false) => {
                let mut step = Mapping::new();
                for (k, v) in &shorthand {
                    step.insert(Value::from(*k), (*v).clone());
                }
                for (k, v) in [
                    ("expect", &m.expect),
                    ("resolver", &m.resolver),
                    ("capture", &m.capture),
                    ("retry", &m.retry),
                ] {
                    if let Some(v) = v {
                        step.insert(Value::from(k), v.clone());
                    }
                }
                step_values.push((Value::Mapping(step), path.to_string()));
            }
            (None, true) => {
                let gone = removed.contains(&p("steps")) || KINDS.iter().any(|k| removed.contains(&p(k)));
                if !gone {
                    errors.push(
                        index.key(&p("scenario")),
                        format!(
                            "scenario `{name}` has no steps — expected `steps:` or one step kind at the top level ({})",
                            SHORTHAND_KINDS.join(", ")
                        ),
                    );
                }
            }
        }
        // Setup, steps, teardown: one list, in the order they run, each item with its stage.
        let mut all: Vec<(Value, String, Stage)> = Vec::new();
        for (i, v) in m.setup.iter().flatten().enumerate() {
            all.push((v.clone(), index_path(&p("setup"), i), Stage::Setup));
        }
        all.extend(step_values.into_iter().map(|(v, b)| (v, b, Stage::Main)));
        for (i, v) in m.teardown.iter().flatten().enumerate() {
            all.push((v.clone(), index_path(&p("teardown"), i), Stage::Teardown));
        }
        if persistent && m.setup.as_ref().is_none_or(|s| s.is_empty()) {
            errors.push(
                index.value(&p("session")),
                "`session: persistent` without `setup` — expected setup steps that open the connections (ws.connect) the steps reuse",
            );
        }

        let opts = StepOpts {
            scenario_timeout: timeout,
            heartbeat,
        };
        let rt = Arc::new(RtBase {
            templates: self.templates.clone(),
            scope: scope.clone(),
            dir: dir.to_path_buf(),
            shared: self.shared.clone(),
            opts,
            file: errors.file.clone(),
        });
        let mut captures: Vec<String> = Vec::new();
        let mut outs: Vec<(StepOut, String, Stage)> = Vec::new();
        for (mut v, base, stage) in all {
            let (checked, when) = self
                .templates
                .check_tree(&v, &base, &scope, &captures, index, errors);
            let dynamic = checked && when == When::PerRun;
            let rendered = if dynamic || !checked {
                checked
            } else {
                self.templates
                    .render_tree(&mut v, &base, &scope, index, errors)
            };
            hash.write(serde_json::to_string(&v).unwrap_or_default().as_bytes());
            let raw = dynamic.then(|| v.clone());
            let rec = deserialize_recovering::<StepModel>(v, &base, "a step", index, errors);
            let damaged = rec.damaged();
            let Some(sm) = rec.value else { continue };
            let new_caps = capture_names(&sm);
            let mut guard = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            let mut cx = Cx {
                index,
                errors,
                shared: &mut guard,
                dir,
                hash: &mut hash,
            };
            let mode = if damaged || !rendered {
                Mode::NameOnly
            } else if dynamic {
                Mode::FlowOnly
            } else {
                Mode::Full
            };
            let mut out = step(&sm, &base, &opts, mode, &mut cx);
            drop(guard);
            if let (Some(raw), false) = (raw, damaged) {
                out.dynamic = Some(raw);
            }
            for c in new_caps {
                if !captures.contains(&c) {
                    captures.push(c);
                }
            }
            outs.push((out, base, stage));
        }

        // Step names: explicit ones must be unique; the others are named after their kind.
        let mut taken: HashMap<String, Pos> = HashMap::new();
        for (o, base, _) in &outs {
            if let Some(n) = &o.name {
                let at = index.value(&key_path(base, "name"));
                if n.is_empty() {
                    errors.push(at, "empty step name — expected a name");
                } else if let Some(first) = taken.get(n) {
                    errors.push(
                        at,
                        format!(
                            "duplicate step name `{n}` — already used at {}",
                            errors.at(*first)
                        ),
                    );
                } else {
                    taken.insert(n.clone(), at);
                }
            }
        }
        let (mut setup, mut built, mut teardown) = (Vec::new(), Vec::new(), Vec::new());
        for (o, base, stage) in outs {
            let name = match o.name {
                Some(n) => n,
                None => {
                    let mut n = o.kind.to_string();
                    let mut i = 2;
                    while taken.contains_key(&n) {
                        n = format!("{}-{i}", o.kind);
                        i += 1;
                    }
                    taken.insert(n.clone(), Pos::START);
                    n
                }
            };
            let step = if let Some(raw) = o.dynamic {
                Some(Step {
                    name: name.clone(),
                    timeout: o.timeout,
                    retry: o.retry,
                    action: Action::Dynamic(Box::new(Dynamic {
                        kind: o.kind,
                        build: dynamic_builder(rt.clone(), raw, base, name),
                    })),
                    expect: PostChecks::default(),
                    captures: Vec::new(),
                })
            } else {
                o.built.map(|b| Step {
                    name,
                    timeout: b.timeout,
                    retry: b.retry,
                    action: b.action,
                    expect: b.expect,
                    captures: b.captures,
                })
            };
            if let Some(step) = step {
                match stage {
                    Stage::Setup => setup.push(step),
                    Stage::Main => built.push(step),
                    Stage::Teardown => teardown.push(step),
                }
            }
        }

        let mut secrets = secrets;
        secrets.extend(
            sink.take()
                .into_iter()
                .filter(|s| s.len() >= MIN_SECRET_LEN),
        );
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();

        if errors.len() > before {
            return None;
        }
        let http_steps = [&setup, &built, &teardown]
            .iter()
            .flat_map(|l| l.iter())
            .filter(|s| s.action.kind() == "http")
            .count();
        Some(Scenario {
            name,
            defined_at,
            interval,
            timeout,
            regions,
            tags,
            labels,
            setup,
            steps: {
                // Exact capacity: 10,000 one-step scenarios would otherwise carry room for
                // 40,000 steps.
                built.shrink_to_fit();
                built
            },
            teardown,
            persistent,
            heartbeat,
            cookies: m.cookies.unwrap_or(true),
            // A one-step check dials anew every run, as blackbox does (and closes first on the
            // server's side): reuse only pays between the http steps of one run.
            reuse_connections: m.reuse_connections.unwrap_or(true) && http_steps > 1,
            fingerprint: hash.finish(),
            alert,
            redacted_json: redacted.to_string().into_boxed_str(),
            secrets,
        })
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Stage {
    Setup,
    Main,
    Teardown,
}

/// What a step's build depends on beyond the step itself.
#[derive(Copy, Clone, Debug)]
struct StepOpts {
    scenario_timeout: Duration,
    heartbeat: Option<Duration>,
}

/// What a per-run build needs, shared by the dynamic steps of a scenario.
struct RtBase {
    templates: Arc<Templates>,
    scope: Scope,
    dir: std::path::PathBuf,
    shared: Arc<Mutex<Shared>>,
    opts: StepOpts,
    file: String,
}

/// Every name a step captures into (step-level and inside ws.*).
fn capture_names(m: &StepModel) -> Vec<String> {
    let lists = [
        m.capture.as_ref(),
        m.ws_connect.as_ref().and_then(|w| w.capture.as_ref()),
        m.ws_send.as_ref().and_then(|w| w.capture.as_ref()),
        m.ws_expect.as_ref().and_then(|w| w.capture.as_ref()),
    ];
    lists
        .into_iter()
        .flatten()
        .flat_map(|l| l.0.iter().map(|(k, _)| k.clone()))
        .collect()
}

/// The per-run builder of a dynamic step: render the raw tree with the run's captures, type it,
/// and build it with the same [`step`] builder as at load.
fn dynamic_builder(rt: Arc<RtBase>, raw: Value, base: String, name: String) -> Box<BuildFn> {
    // Kept as compact JSON text (a YAML value tree is several times larger), parsed per run.
    let raw: Box<str> = serde_json::to_string(&raw)
        .unwrap_or_default()
        .into_boxed_str();
    Box::new(move |captured: &[Captured]| {
        let (sink, sink_value) = SecretSink::value();
        let mut scope = rt.scope.clone();
        scope.set(crate::config::funcs::SINK_KEY, sink_value);
        for (k, v) in captured {
            scope.set(k, minijinja::Value::from(minijinja::value::Serde(v)));
        }
        let mut v: Value = serde_json::from_str(&raw)
            .map_err(|e| format!("{base}: cannot read the step back: {e}"))?;
        rt.templates.render_tree_rt(&mut v, &base, &scope)?;
        let index = PosIndex::build("");
        let mut errors = FileErrors::new(&rt.file);
        let rec = deserialize_recovering::<StepModel>(v, &base, "a step", &index, &mut errors);
        let mut hash = Fnv::default();
        let out = rec.value.and_then(|sm| {
            let mut guard = rt.shared.lock().unwrap_or_else(|e| e.into_inner());
            let mut cx = Cx {
                index: &index,
                errors: &mut errors,
                shared: &mut guard,
                dir: &rt.dir,
                hash: &mut hash,
            };
            step(&sm, &base, &rt.opts, Mode::Full, &mut cx).built
        });
        let secrets = sink.take();
        match out {
            Some(b) if errors.is_empty() => Ok((
                Step {
                    name: name.clone(),
                    timeout: b.timeout,
                    retry: b.retry,
                    action: b.action,
                    expect: b.expect,
                    captures: b.captures,
                },
                secrets,
            )),
            _ => {
                let msgs: Vec<String> = errors
                    .into_errors()
                    .into_iter()
                    .map(|e| e.message)
                    .collect();
                Err(if msgs.is_empty() {
                    format!("{base}: the rendered step is invalid")
                } else {
                    format!("{base} as rendered for this run: {}", msgs.join("; "))
                })
            }
        }
    })
}

/// How much of a step [`step`] checks and builds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// Check and build everything.
    Full,
    /// Built per run: check the kind and the flow keys (timeout, retry) now, the rest per run.
    FlowOnly,
    /// The step already had structural or template errors: take only its name and kind, so its
    /// problems are not reported twice.
    NameOnly,
}

/// Check and build one typed step at `base`, as far as `mode` says.
fn step(m: &StepModel, base: &str, opts: &StepOpts, mode: Mode, cx: &mut Cx) -> StepOut {
    let p = |k: &str| key_path(base, k);
    let kinds: Vec<&'static str> = [
        ("http", m.http.is_some()),
        ("tcp", m.tcp.is_some()),
        ("dns", m.dns.is_some()),
        ("icmp", m.icmp.is_some()),
        ("tls", m.tls.is_some()),
        ("ws.connect", m.ws_connect.is_some()),
        ("ws.send", m.ws_send.is_some()),
        ("ws.expect", m.ws_expect.is_some()),
        ("ws.close", m.ws_close.is_some()),
        ("sleep", m.sleep.is_some()),
    ]
    .into_iter()
    .filter(|(_, s)| *s)
    .map(|(k, _)| k)
    .collect();
    let timeout = m.timeout.map(|d| d.0);
    let mut out = StepOut {
        name: m.name.as_ref().map(|t| t.0.clone()),
        kind: kinds.first().copied().unwrap_or("step"),
        timeout,
        retry: None,
        built: None,
        dynamic: None,
    };
    if mode == Mode::NameOnly {
        return out;
    }
    let before = cx.errors.len();
    out.retry = flow::retry(m.retry.as_ref(), &p("retry"), cx);
    if let Some(t) = timeout {
        if t.is_zero() {
            cx.err_value(
                &p("timeout"),
                "step timeout 0s — expected a deadline above zero",
            );
        } else if t > opts.scenario_timeout {
            cx.err_value(
                &p("timeout"),
                format!(
                    "step timeout {} is longer than the scenario's timeout {} — expected at most {}",
                    human(t),
                    human(opts.scenario_timeout),
                    human(opts.scenario_timeout)
                ),
            );
        }
    }
    match kinds.as_slice() {
        [] => cx.err_value(
            base,
            format!(
                "a step without a kind — expected exactly one of: {}",
                KINDS.join(", ")
            ),
        ),
        [_] => {}
        [first, second, ..] => cx.err_key(
            &p(second),
            format!(
                "a step with both `{first}` and `{second}` — expected exactly one step kind per step"
            ),
        ),
    }
    if mode != Mode::Full || cx.errors.len() > before {
        return out;
    }
    let servers = m
        .resolver
        .as_ref()
        .and_then(|r| cx.resolver_override(&r.0, &p("resolver")));
    if m.resolver.is_some() && servers.is_none() {
        return out;
    }
    let servers = servers.as_deref();
    let ep = p("expect");
    if let (Some(e), [kind]) = (&m.expect, kinds.as_slice()) {
        expect::check_keys(e, &ep, kind, cx);
    }
    let post = expect::post_checks(m.expect.as_ref(), &ep, cx);
    // Even when checks above failed, the kind's own checks run: every problem is reported.
    let [kind] = kinds.as_slice() else {
        return out;
    };
    let mut captures = flow::captures(m.capture.as_ref(), &p("capture"), kind, cx);
    let inner_caps = [
        (
            "ws.connect",
            m.ws_connect.as_ref().and_then(|w| w.capture.as_ref()),
        ),
        (
            "ws.send",
            m.ws_send.as_ref().and_then(|w| w.capture.as_ref()),
        ),
        (
            "ws.expect",
            m.ws_expect.as_ref().and_then(|w| w.capture.as_ref()),
        ),
    ];
    for (k, list) in inner_caps {
        if list.is_some() {
            captures.extend(flow::captures(list, &key_path(&p(k), "capture"), k, cx));
        }
    }
    let action = if let Some(h) = &m.http {
        steps::http(h, m.expect.as_ref(), &p("http"), &ep, servers, cx).map(|mut r| {
            // Captures and JSON expectations read the body: keep enough of it.
            if !captures.is_empty() || !post.json.is_empty() {
                r.keep_body = steps::KEEP_BODY_FOR_CAPTURES;
            }
            Action::Http(Box::new(r))
        })
    } else if let Some(t) = &m.tcp {
        steps::tcp(t, &p("tcp"), servers, cx).map(|r| Action::Tcp(Box::new(r)))
    } else if let Some(d) = &m.dns {
        steps::dns(d, &p("dns"), servers, cx).map(|r| Action::Dns(Box::new(r)))
    } else if let Some(i) = &m.icmp {
        steps::icmp(i, &p("icmp"), servers, cx).map(|r| Action::Icmp(Box::new(r)))
    } else if let Some(t) = &m.tls {
        steps::tls(t, &p("tls"), servers, cx).map(|r| Action::Tls(Box::new(r)))
    } else if let Some(w) = &m.ws_connect {
        flow::ws_connect(w, &p("ws.connect"), servers, opts.heartbeat, cx)
            .map(|r| Action::WsConnect(Box::new(r)))
    } else if let Some(w) = &m.ws_send {
        flow::ws_send(w, &p("ws.send"), cx).map(|r| Action::WsSend(Box::new(r)))
    } else if let Some(w) = &m.ws_expect {
        flow::ws_expect(w, &p("ws.expect"), cx).map(|r| Action::WsExpect(Box::new(r)))
    } else if let Some(w) = &m.ws_close {
        flow::ws_close(w, &p("ws.close"), cx).map(|r| Action::WsClose(Box::new(r)))
    } else {
        m.sleep.map(|d| Action::Sleep(d.0))
    };
    if let (Some(a), false) = (action, cx.errors.len() > before) {
        out.built = Some(Built {
            timeout,
            retry: out.retry,
            action: a,
            expect: post,
            captures,
        });
    }
    out
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".into(),
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// serde_norway's syntax messages carry "at line L column C", which the location already says.
fn syntax_message(raw: &str) -> String {
    if raw.contains("limit exceeded") {
        return format!(
            "the document is too deeply nested or expands too far ({}) — expected an ordinary scenario file",
            raw.split(" at line").next().unwrap_or(raw)
        );
    }
    if raw.contains("more than one document") {
        return "more than one YAML document (`---`) — expected one document per file".into();
    }
    // The first location is the error's own (reported as the position); a later one is where
    // the construct being parsed began, which is worth keeping.
    let re = regex::Regex::new(r" at (line \d+ column \d+)").expect("static regex");
    let mut first = true;
    let msg = re.replace_all(raw, |c: &regex::Captures| {
        if std::mem::take(&mut first) {
            String::new()
        } else {
            format!(" that starts at {}", &c[1])
        }
    });
    format!("invalid YAML: {msg} — expected valid YAML syntax (check indentation and quoting)")
}
