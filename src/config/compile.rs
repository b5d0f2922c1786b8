//! One file → its scenarios: the top-level form, each scenario's own keys and checks, templates,
//! then each step through [`steps`](super::steps). Problems are collected, never returned early,
//! so a file with five problems reports five.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_norway::{Mapping, Value};

use super::build::{Cx, Shared};
use super::deser::deserialize_recovering;
use super::error::{FileErrors, Pos};
use super::expect;
use super::locate::{index_path, key_path, PosIndex};
use super::model::{ScenarioModel, StepModel, KINDS};
use super::redact::{redact, secrets, Fnv};
use super::steps;
use super::suggest;
use super::template::Templates;
use super::LoadOptions;
use crate::scenario::{Action, PostChecks, Scenario, Step};

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
/// "`key` is not supported yet …": the features reserved keys belong to, and what to do now.
fn not_yet(key: &str) -> String {
    format!("`{key}` is not supported yet (it arrives with multi-step scenarios) — expected it left out for now")
}

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
    templates: Templates,
    shared: Shared,
    region: Option<String>,
    /// Scenario name → where it was first defined (`file:line:col`).
    names: HashMap<String, String>,
}

struct StepOut {
    name: Option<String>,
    kind: &'static str,
    built: Option<(Option<Duration>, Action, PostChecks)>,
}

impl Loader {
    pub fn new(opts: &LoadOptions) -> Self {
        Loader {
            templates: Templates::new(opts.region.clone()),
            shared: Shared::default(),
            region: opts.region.clone(),
            names: HashMap::new(),
        }
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

        let reserved = [
            ("capture", m.capture.is_some()),
            ("session", m.session.is_some()),
            ("setup", m.setup.is_some()),
            ("teardown", m.teardown.is_some()),
            ("heartbeat", m.heartbeat.is_some()),
            ("retry", m.retry.is_some()),
        ];
        for (k, present) in reserved {
            if present {
                errors.push(index.key(&p(k)), not_yet(k));
            }
        }

        let alert = m
            .alert
            .clone()
            .and_then(|a| super::alert::scenario_alert(a, &p("alert"), index, errors));

        let mut scope = self.templates.scope(&name);
        if let Some(vars) = &m.vars {
            for (k, v) in self
                .templates
                .add_vars(&mut scope, &vars.0, &p("vars"), index, errors)
            {
                hash.write(k.as_bytes());
                hash.write(v.to_string().as_bytes());
            }
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
                for k in ["expect", "resolver"] {
                    let present = if k == "expect" {
                        m.expect.is_some()
                    } else {
                        m.resolver.is_some()
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
                if let Some(e) = &m.expect {
                    step.insert(Value::from("expect"), e.clone());
                }
                if let Some(r) = &m.resolver {
                    step.insert(Value::from("resolver"), r.clone());
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
                            KINDS.join(", ")
                        ),
                    );
                }
            }
        }

        let mut outs: Vec<(StepOut, String)> = Vec::new();
        for (mut v, base) in step_values {
            let rendered = self
                .templates
                .render_tree(&mut v, &base, &scope, index, errors);
            hash.write(serde_json::to_string(&v).unwrap_or_default().as_bytes());
            let rec = deserialize_recovering::<StepModel>(v, &base, "a step", index, errors);
            let damaged = rec.damaged();
            let Some(sm) = rec.value else { continue };
            let mut cx = Cx {
                index,
                errors,
                shared: &mut self.shared,
                dir,
                hash: &mut hash,
            };
            let out = step(&sm, &base, timeout, !damaged && rendered, &mut cx);
            outs.push((out, base));
        }

        // Step names: explicit ones must be unique; the others are named after their kind.
        let mut taken: HashMap<String, Pos> = HashMap::new();
        for (o, base) in &outs {
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
        let mut built = Vec::new();
        for (o, _) in outs {
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
            if let Some((timeout, action, expect)) = o.built {
                built.push(Step {
                    name,
                    timeout,
                    action,
                    expect,
                });
            }
        }

        if errors.len() > before {
            return None;
        }
        Some(Scenario {
            name,
            defined_at,
            interval,
            timeout,
            regions,
            tags,
            labels,
            steps: {
                // Exact capacity: 10,000 one-step scenarios would otherwise carry room for
                // 40,000 steps.
                built.shrink_to_fit();
                built
            },
            fingerprint: hash.finish(),
            alert,
            redacted,
            secrets,
        })
    }
}

/// Check and build one typed step at `base`. `compile` is false when the step already had
/// structural or template errors: then only its name is taken (for duplicate checks), so its
/// problems are not reported twice.
fn step(
    m: &StepModel,
    base: &str,
    scenario_timeout: Duration,
    compile: bool,
    cx: &mut Cx,
) -> StepOut {
    let p = |k: &str| key_path(base, k);
    let kinds: Vec<&'static str> = [
        ("http", m.http.is_some()),
        ("tcp", m.tcp.is_some()),
        ("dns", m.dns.is_some()),
        ("icmp", m.icmp.is_some()),
        ("tls", m.tls.is_some()),
    ]
    .into_iter()
    .filter(|(_, s)| *s)
    .map(|(k, _)| k)
    .collect();
    let mut out = StepOut {
        name: m.name.as_ref().map(|t| t.0.clone()),
        kind: kinds.first().copied().unwrap_or("step"),
        built: None,
    };
    if !compile {
        return out;
    }
    let before = cx.errors.len();
    let reserved = [
        ("ws.connect", m.ws_connect.is_some()),
        ("ws.send", m.ws_send.is_some()),
        ("ws.expect", m.ws_expect.is_some()),
        ("ws.close", m.ws_close.is_some()),
        ("sleep", m.sleep.is_some()),
        ("capture", m.capture.is_some()),
        ("retry", m.retry.is_some()),
    ];
    let mut any_reserved = false;
    for (k, present) in reserved {
        if present {
            any_reserved = true;
            cx.err_key(&p(k), not_yet(k));
        }
    }
    match kinds.as_slice() {
        [] if !any_reserved => cx.err_value(
            base,
            format!(
                "a step without a kind — expected exactly one of: {}",
                KINDS.join(", ")
            ),
        ),
        [] | [_] => {}
        [first, second, ..] => cx.err_key(
            &p(second),
            format!(
                "a step with both `{first}` and `{second}` — expected exactly one step kind per step"
            ),
        ),
    }
    let timeout = m.timeout.map(|d| d.0);
    if let Some(t) = timeout {
        if t.is_zero() {
            cx.err_value(
                &p("timeout"),
                "step timeout 0s — expected a deadline above zero",
            );
        } else if t > scenario_timeout {
            cx.err_value(
                &p("timeout"),
                format!(
                    "step timeout {} is longer than the scenario's timeout {} — expected at most {}",
                    human(t),
                    human(scenario_timeout),
                    human(scenario_timeout)
                ),
            );
        }
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
    if kinds.len() != 1 {
        return out;
    }
    let action = if let Some(h) = &m.http {
        steps::http(h, m.expect.as_ref(), &p("http"), &ep, servers, cx)
            .map(|r| Action::Http(Box::new(r)))
    } else if let Some(t) = &m.tcp {
        steps::tcp(t, &p("tcp"), servers, cx).map(|r| Action::Tcp(Box::new(r)))
    } else if let Some(d) = &m.dns {
        steps::dns(d, &p("dns"), servers, cx).map(|r| Action::Dns(Box::new(r)))
    } else if let Some(i) = &m.icmp {
        steps::icmp(i, &p("icmp"), servers, cx).map(|r| Action::Icmp(Box::new(r)))
    } else if let Some(t) = &m.tls {
        steps::tls(t, &p("tls"), servers, cx).map(|r| Action::Tls(Box::new(r)))
    } else {
        None
    };
    if let (Some(a), false) = (action, cx.errors.len() > before) {
        out.built = Some((timeout, a, post));
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
