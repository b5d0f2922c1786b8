//! One file → its scenarios: the top-level form, then each scenario in stages — its header
//! (name, schedule, regions, labels), its templates' scope, the gathering of its steps (setup,
//! steps or the one-step shorthand, teardown), the build of each step through
//! [`step`](super::step), and their names. Problems are collected, never returned early, so a
//! file with five problems reports five.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_norway::{Mapping, Value};

use super::build::{Cx, LoadShared, Shared};
use super::conn_names::ConnRef;
use super::deser::deserialize_recovering;
use super::error::{FileErrors, Pos};
use super::funcs::SecretSink;
use super::groups::{Groups, Item, Loc};
use super::kinds::{shorthand_kinds, KINDS};
use super::locate::{index_path, key_path, PosIndex};
use super::model::{ScenarioModel, StepModel};
use super::redact::{redact, secrets, Fnv, MIN_SECRET_LEN};
use super::step::{
    capture_names, name_steps, step, FileRt, Mode, RawTexts, RtBase, Stage, StepOpts, StepOut,
};
use super::suggest;
use super::template::{Scope, Templates, When};
use super::units::SessionWord;
use super::LoadOptions;
use crate::config::alert::AlertSpec;
use crate::config::scenario::Scenario;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longer intervals are almost certainly a typo (`30d` for `30s`), and far-future deadlines
/// overflow the clock: a monthly check is the longest sonde schedules.
const MAX_INTERVAL: Duration = Duration::from_secs(31 * 86_400);
const MAX_LABELS: usize = 16;
const RESERVED_LABELS: [&str; 11] = [
    "scenario", "region", "replica", "step", "phase", "reason", "result", "le", "job", "instance",
    "quantile",
];

/// Durations in messages the way people write them in YAML ("30s", "14d", "1m 30s").
fn human(d: Duration) -> String {
    crate::time::fmt_long(d)
}

/// Keeps what spans files and scenarios during one load.
pub struct Loader {
    templates: Arc<Templates>,
    shared: Mutex<Shared>,
    /// Where `shared` is published when the load is over, for the scenarios' per-run builds.
    load: Arc<LoadShared>,
    /// The texts of per-run steps, each kept once.
    texts: RawTexts,
    region: Option<String>,
    /// Scenario name → where it was first defined (`file:line:col`).
    names: HashMap<String, String>,
    /// What the document being loaded may reach (`include:` follows its file-root rules).
    trust: super::trust::Trust,
    /// The scenarios' definitions for `/config`, compressed together.
    definitions: super::packed::Packer,
    /// The rendered texts of the steps built each time they run, compressed together.
    on_demand: super::packed::Packer,
}

impl Drop for Loader {
    /// The load is over: its resolvers, TLS clients and `.proto` pools become what every
    /// scenario's per-run builds look up first.
    fn drop(&mut self) {
        let shared = std::mem::take(self.shared.get_mut().unwrap_or_else(|e| e.into_inner()));
        self.load.publish(shared);
    }
}

/// Where a scenario is read: the file's index and errors, the path of the scenario in it.
struct Here<'a> {
    path: &'a str,
    index: &'a Arc<PosIndex>,
    dir: &'a Path,
    /// The file's groups (beside `scenarios:`), shared by its scenarios.
    groups: &'a Groups,
    /// What the file's scenarios' per-run builds share.
    rt: &'a Arc<FileRt>,
}

impl Here<'_> {
    fn p(&self, k: &str) -> String {
        key_path(self.path, k)
    }
}

/// A scenario's own keys, checked.
struct Header {
    name: String,
    defined_at: String,
    interval: Duration,
    timeout: Duration,
    regions: Vec<String>,
    tags: Vec<String>,
    group: Option<String>,
    public: bool,
    labels: Vec<(String, String)>,
    alert: Option<AlertSpec>,
    persistent: bool,
    heartbeat: Option<Duration>,
}

/// How a scenario's steps are built: its templates' scope, what their build depends on, and
/// whether it is a persistent session (whose setup and teardown run once per connection).
struct How<'a> {
    scope: &'a Scope,
    opts: &'a StepOpts,
    persistent: bool,
}

impl Loader {
    pub fn new(opts: &LoadOptions) -> Self {
        Loader {
            templates: Arc::new(
                Templates::new(opts.region.clone()).with_overrides(opts.vars.clone()),
            ),
            shared: Mutex::new(Shared::with_file_root(opts.file_root.clone())),
            load: Arc::new(LoadShared::new(opts.file_root.clone())),
            texts: RawTexts::default(),
            region: opts.region.clone(),
            names: HashMap::new(),
            trust: Default::default(),
            definitions: Default::default(),
            on_demand: super::packed::Packer::with_chunk(super::packed::SMALL_CHUNK),
        }
    }

    /// Start a document: what its templates may reach ([`super::trust`]); their shared
    /// load-time budget starts afresh.
    pub fn set_trust(&mut self, trust: super::trust::Trust) {
        self.trust = trust.clone();
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
        let index = Arc::new(PosIndex::build(text));
        if let Some(top) = top_level(text, &index, &mut errors) {
            let rt = Arc::new(FileRt {
                templates: self.templates.clone(),
                dir: dir.to_path_buf(),
                file: file.to_string(),
                load: self.load.clone(),
            });
            self.forms(top, &rt, &index, &mut errors, out);
        }
        errors
    }

    /// `scenario:` (one) or `scenarios:` (a list).
    fn forms(
        &mut self,
        top: Mapping,
        rt: &Arc<FileRt>,
        index: &Arc<PosIndex>,
        errors: &mut FileErrors,
        out: &mut Vec<Arc<Scenario>>,
    ) {
        let dir = rt.dir.as_path();
        // Beside `scenarios:`, groups shared by every scenario of the file.
        let shared = if top.contains_key("scenario") {
            Groups::default()
        } else {
            self.groups(&top, "", dir, index, errors, Groups::default())
        };
        let mut one = |s: &mut Self, v: Value, path: &str, errors: &mut FileErrors| {
            let here = Here {
                path,
                index,
                dir,
                groups: &shared,
                rt,
            };
            if let Some(s) = s.scenario(v, &here, errors) {
                out.push(Arc::new(s));
            }
        };
        match (top.contains_key("scenario"), top.get("scenarios")) {
            (true, Some(_)) => errors.push(
                index.key("scenarios"),
                "both `scenario:` and `scenarios:` — expected one scenario (`scenario:`) or a list of them (`scenarios:`), not both",
            ),
            (true, None) => one(self, Value::Mapping(top), "", errors),
            (false, Some(list)) => {
                beside_scenarios(&top, index, errors);
                match list {
                    Value::Sequence(items) if items.is_empty() => errors.push(
                        index.value("scenarios"),
                        "`scenarios` is empty — expected a list of scenarios",
                    ),
                    Value::Sequence(items) => {
                        for (i, item) in items.iter().enumerate() {
                            one(self, item.clone(), &index_path("scenarios", i), errors);
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
            // A library of groups for other files to `include:` (it may sit in a folder
            // loaded whole): its groups are checked, it has no scenario of its own.
            (false, None) if top.contains_key("groups") && top.len() == 1 => {
                self.groups(&top, "", dir, index, errors, Groups::default());
            }
            (false, None) => no_scenario(&top, index, errors),
        }
    }

    /// The groups of `m` (a scenario, or the top of a file) at `path`: `include:`d files' then
    /// its own `groups:`, on top of `base`.
    fn groups(
        &self,
        m: &Mapping,
        path: &str,
        dir: &Path,
        index: &Arc<PosIndex>,
        errors: &mut FileErrors,
        base: Groups,
    ) -> Groups {
        let mut groups = base;
        let file = errors.file.clone();
        let mut report = |p: &str, msg: String| errors.push(index.value(p), msg);
        if let Some(inc) = m.get("include") {
            groups.include(
                inc,
                &key_path(path, "include"),
                dir,
                &self.trust,
                &mut report,
            );
        }
        if let Some(g) = m.get("groups") {
            let loc = Loc {
                file,
                index: index.clone(),
                path: key_path(path, "groups"),
            };
            groups.read(g, &loc, &mut report);
        }
        groups
    }

    /// One scenario, stage after stage; `None` when it had any problem.
    fn scenario(&mut self, raw: Value, here: &Here, errors: &mut FileErrors) -> Option<Scenario> {
        let before = errors.len();
        let mut hash = Fnv::default();
        let mut redacted = serde_json::to_value(&raw).unwrap_or_default();
        hash.write(redacted.to_string().as_bytes());
        hash.write(self.region.as_deref().unwrap_or("").as_bytes());
        let mut secrets = secrets(&redacted, |name| std::env::var(name).ok());
        redact(&mut redacted);

        let groups = match &raw {
            Value::Mapping(m) => {
                let shared = here.groups.clone();
                self.groups(m, here.path, here.dir, here.index, errors, shared)
            }
            _ => here.groups.clone(),
        };
        let rec = deserialize_recovering::<ScenarioModel>(
            raw,
            here.path,
            "a scenario",
            here.index,
            errors,
        );
        let removed = rec.removed;
        let m = rec.value?;
        let head = self.header(&m, here, &removed, errors);
        let (sink, scope) = self.scope(&m, &head.name, here, errors, &mut hash);
        let gathered = gather(&m, here, &removed, &head, errors);
        let gathered = super::groups::expand(gathered, &groups, here.index, errors);
        secrets.extend(group_secrets(&gathered));
        let opts = StepOpts {
            scenario_timeout: head.timeout,
            heartbeat: head.heartbeat,
        };
        let mut conns = Vec::new();
        let how = How {
            scope: &scope,
            opts: &opts,
            persistent: head.persistent,
        };
        let outs = self.build_steps(gathered, &how, here, errors, &mut hash, &mut conns);
        super::conn_names::check(&conns, errors);
        let rt = Arc::new(RtBase {
            file: here.rt.clone(),
            scope,
            opts,
            own: Mutex::new(None),
        });
        let [mut setup, mut steps, mut teardown] = name_steps(
            outs,
            &rt,
            &mut self.texts,
            &mut self.on_demand,
            here.index,
            errors,
        );

        secrets.extend(
            sink.take()
                .into_iter()
                .filter(|s| s.len() >= MIN_SECRET_LEN),
        );
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        if errors.len() > before {
            errors.scrub_since(before, &secrets);
            return None;
        }
        let http_steps = [&setup, &steps, &teardown]
            .iter()
            .flat_map(|l| l.iter())
            .filter(|s| s.kind == "http")
            .count();
        // Exact capacity: 10,000 one-step scenarios would otherwise carry room for 40,000 steps
        // (and a six-step setup room for eight, 600 bytes a scenario).
        for list in [&mut setup, &mut steps, &mut teardown] {
            list.shrink_to_fit();
        }
        Some(Scenario {
            name: head.name,
            defined_at: head.defined_at,
            interval: head.interval,
            timeout: head.timeout,
            regions: head.regions,
            tags: head.tags,
            group: head.group,
            public: head.public,
            labels: head.labels,
            setup,
            steps,
            teardown,
            persistent: head.persistent,
            heartbeat: head.heartbeat,
            cookies: m.cookies.unwrap_or(true),
            // A one-step check dials anew every run, as blackbox does (and closes first on the
            // server's side): reuse only pays between the http steps of one run.
            reuse_connections: m.reuse_connections.unwrap_or(true) && http_steps > 1,
            fingerprint: hash.finish(),
            alert: head.alert.map(Box::new),
            redacted_json: self.definitions.pack(&redacted.to_string()),
            secrets,
        })
    }

    /// The header stage: name, schedule, regions, tags, labels, alerting, session.
    fn header(
        &mut self,
        m: &ScenarioModel,
        here: &Here,
        removed: &HashSet<String>,
        errors: &mut FileErrors,
    ) -> Header {
        let (name, defined_at) = self.name(m, here, errors);
        let (interval, timeout) = schedule(m, here, removed, errors);
        let regions = regions(m, here, errors);
        let labels = labels(m, here, errors);
        let alert = m
            .alert
            .clone()
            .and_then(|a| super::alert::scenario_alert(a, &here.p("alert"), here.index, errors));
        let heartbeat = m.heartbeat.map(|d| d.0);
        if let Some(h) = heartbeat.filter(|h| *h < Duration::from_millis(100)) {
            errors.push(
                here.index.value(&here.p("heartbeat")),
                format!(
                    "heartbeat {} is too short — expected at least 100ms",
                    human(h)
                ),
            );
        }
        Header {
            name,
            defined_at,
            interval,
            timeout,
            regions,
            tags: m.tags.iter().flatten().map(|t| t.0.clone()).collect(),
            group: group(m, here, errors),
            public: m.public.unwrap_or(false),
            labels,
            alert,
            persistent: m.session == Some(SessionWord::Persistent),
            heartbeat,
        }
    }

    /// The scenario's name, unique across the load, and where it is defined.
    fn name(
        &mut self,
        m: &ScenarioModel,
        here: &Here,
        errors: &mut FileErrors,
    ) -> (String, String) {
        let name = m.scenario.0.clone();
        let name_at = here.index.value(&here.p("scenario"));
        let defined_at = errors.at(name_at);
        if !crate::names::valid_scenario_name(&name) {
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
        (name, defined_at)
    }

    /// The templates' scope of the scenario: its vars (and `--var` overrides).
    fn scope(
        &self,
        m: &ScenarioModel,
        name: &str,
        here: &Here,
        errors: &mut FileErrors,
        hash: &mut Fnv,
    ) -> (Arc<SecretSink>, Scope) {
        let (sink, sink_value) = SecretSink::value();
        let mut scope = self.templates.scope(name, here.dir, sink_value);
        if let Some(vars) = &m.vars {
            let added =
                self.templates
                    .add_vars(&mut scope, &vars.0, &here.p("vars"), here.index, errors);
            for (k, v) in added {
                hash.write(k.as_bytes());
                hash.write(v.to_string().as_bytes());
            }
        } else {
            let mut rendered = Vec::new();
            self.templates
                .add_undeclared_overrides(&mut scope, &[], &mut rendered);
        }
        scope.shrink_to_fit();
        (sink, scope)
    }

    /// The build stage: each step's templates checked (and rendered when they can be now),
    /// typed, and built — or kept to be built per run. Each step's connection (opened or used)
    /// goes to `conns` for the check of names. A group's step is located in the group's file,
    /// its problems reported at the use ([`super::groups`]).
    fn build_steps(
        &self,
        gathered: Vec<Item>,
        how: &How,
        here: &Here,
        errors: &mut FileErrors,
        hash: &mut Fnv,
        conns: &mut Vec<ConnRef>,
    ) -> Vec<StepOut> {
        let mut captures: Vec<String> = Vec::new();
        let mut outs = Vec::new();
        for item in gathered {
            // A group's step: located in the group's file, reported at the use.
            let mut local = item.origin.as_ref().map(|o| FileErrors::new(&o.file));
            let index: &PosIndex = item.origin.as_ref().map_or(here.index, |o| &o.index);
            let errs = local.as_mut().unwrap_or(&mut *errors);
            let conns_before = conns.len();
            // Run once per connection: built each time they run (`StepBody::OnDemand`).
            let on_demand = how.persistent && item.stage != Stage::Main;
            let out = self.build_one(
                item.value,
                &item.base,
                how,
                on_demand,
                here,
                index,
                errs,
                hash,
                &mut captures,
                conns,
            );
            if let (Some(local), Some(o)) = (local, &item.origin) {
                for e in local.into_errors() {
                    let pos = Pos {
                        line: e.line,
                        column: e.column,
                    };
                    errors.push(o.use_pos, o.message(pos, &e.message));
                }
                for c in conns[conns_before..].iter_mut() {
                    c.prefix = Some(o.message(c.pos, ""));
                    c.pos = o.use_pos;
                }
            }
            if let Some(mut out) = out {
                out.stage = item.stage;
                outs.push(out);
            }
        }
        outs
    }

    /// One step of [`Self::build_steps`], located with `index`, its problems into `errors`.
    #[allow(clippy::too_many_arguments)]
    fn build_one(
        &self,
        mut v: Value,
        base: &str,
        how: &How,
        on_demand: bool,
        here: &Here,
        index: &PosIndex,
        errors: &mut FileErrors,
        hash: &mut Fnv,
        captures: &mut Vec<String>,
        conns: &mut Vec<ConnRef>,
    ) -> Option<StepOut> {
        let (scope, opts) = (how.scope, how.opts);
        let (checked, when) = self
            .templates
            .check_tree(&v, base, scope, captures, index, errors);
        let dynamic = checked && when == When::PerRun;
        let rendered = if dynamic || !checked {
            checked
        } else {
            self.templates
                .render_tree(&mut v, base, scope, index, errors)
        };
        let text = serde_json::to_string(&v).unwrap_or_default();
        hash.write(text.as_bytes());
        let raw = dynamic.then(|| v.clone());
        // Kept as text only when the text reads back as the same tree (YAML has values JSON
        // has not: tags, non-finite numbers); otherwise the step stays built.
        let text = (on_demand && rendered && !dynamic)
            .then_some(text)
            .filter(|t| serde_json::from_str::<Value>(t).is_ok_and(|back| back == v));
        let rec = deserialize_recovering::<StepModel>(v, base, "a step", index, errors);
        let damaged = rec.damaged();
        let sm = rec.value?;
        let (opens, uses) = (sm.opens_connection(), sm.uses_connection());
        if let Some((kind, _)) = opens.or(uses) {
            conns.push(ConnRef {
                pos: index.value(&key_path(&key_path(base, kind), "on")),
                prefix: None,
                kind,
                opens: opens.map(|(_, n)| n.to_string()),
                uses: uses.map(|(_, n)| n.to_string()),
            });
        }
        let mode = match (damaged || !rendered, dynamic) {
            (true, _) => Mode::NameOnly,
            (false, true) => Mode::FlowOnly,
            (false, false) => Mode::Full,
        };
        let mut guard = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let mut cx = Cx {
            index,
            errors,
            shared: &mut guard,
            dir: here.dir,
            hash,
        };
        let mut out = step(&sm, base, opts, mode, &mut cx);
        drop(guard);
        if !damaged {
            out.dynamic = raw;
            out.rendered = text.filter(|_| sm.rebuilds_the_same());
        }
        for c in capture_names(&sm) {
            if !captures.contains(&c) {
                captures.push(c);
            }
        }
        Some(out)
    }
}

/// A shared or included group's steps are not in the scenario's text: their secrets (a
/// `password:` key, `env.NAME`) are found in the expanded steps.
fn group_secrets(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .filter(|i| i.origin.is_some())
        .flat_map(|i| {
            let v = serde_json::to_value(&i.value).unwrap_or_default();
            secrets(&v, |name| std::env::var(name).ok())
        })
        .collect()
}

/// The schedule: `interval` within bounds, `timeout` above zero and within the interval.
fn schedule(
    m: &ScenarioModel,
    here: &Here,
    removed: &HashSet<String>,
    errors: &mut FileErrors,
) -> (Duration, Duration) {
    let interval = m.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
    let at_interval = here.index.value(&here.p("interval"));
    if interval < MIN_INTERVAL {
        errors.push(
            at_interval,
            format!(
                "interval {} is too short — expected at least {}",
                human(interval),
                human(MIN_INTERVAL)
            ),
        );
    } else if interval > MAX_INTERVAL {
        errors.push(
            at_interval,
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
    let at_timeout = here.index.value(&here.p("timeout"));
    if timeout.is_zero() {
        errors.push(at_timeout, "timeout 0s — expected a deadline above zero");
    } else if timeout > interval
        && !removed.contains(&here.p("interval"))
        && (MIN_INTERVAL..=MAX_INTERVAL).contains(&interval)
    {
        errors.push(
            at_timeout,
            format!(
                "timeout {} is longer than the interval {}{} — expected at most the interval (a run must end before the next one is due)",
                human(timeout),
                human(interval),
                if m.interval.is_none() { " (the default)" } else { "" }
            ),
        );
    }
    (interval, timeout)
}

fn regions(m: &ScenarioModel, here: &Here, errors: &mut FileErrors) -> Vec<String> {
    let mut regions = Vec::new();
    for (i, r) in m.regions.iter().flatten().enumerate() {
        if crate::names::valid_region(r.strip_prefix('!').unwrap_or(r)) {
            regions.push(r.clone());
        } else {
            errors.push(
                here.index.value(&index_path(&here.p("regions"), i)),
                format!(
                    "invalid region {r:?} — expected a name of a-z, 0-9, _ and -, or !name to exclude one"
                ),
            );
        }
    }
    regions
}

/// Extra metric labels, sorted; names checked against Prometheus's rules and sonde's own.
/// `group:`: a heading on the status page, so short, printable and not blank.
fn group(m: &ScenarioModel, here: &Here, errors: &mut FileErrors) -> Option<String> {
    let g = m.group.as_ref()?.0.trim().to_string();
    let bad = if g.is_empty() {
        Some("an empty group".to_string())
    } else if g.chars().count() > 64 {
        Some(format!("a group of {} characters", g.chars().count()))
    } else if g.chars().any(char::is_control) {
        Some("a group with control characters".to_string())
    } else {
        None
    };
    match bad {
        Some(why) => {
            errors.push(
                here.index.value(&here.p("group")),
                format!("{why} — expected 1 to 64 printable characters"),
            );
            None
        }
        None => Some(g),
    }
}

fn labels(m: &ScenarioModel, here: &Here, errors: &mut FileErrors) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let Some(ls) = &m.labels else {
        return labels;
    };
    if ls.0.len() > MAX_LABELS {
        errors.push(
            here.index.key(&here.p("labels")),
            format!(
                "{} labels — expected at most {MAX_LABELS} (every label multiplies the metric series)",
                ls.0.len()
            ),
        );
    }
    for (k, v) in &ls.0 {
        let at = here.index.key(&key_path(&here.p("labels"), k));
        if !crate::names::valid_label_name(k) {
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
                format!("label name `{k}` is reserved (sonde sets it) — expected another name"),
            );
        } else {
            labels.push((k.clone(), v.0.clone()));
        }
    }
    labels.sort();
    labels
}

/// The gather stage: setup, steps (a `steps:` list or the one-step shorthand), teardown — one
/// list in the order they run, each item with its path and stage.
fn gather(
    m: &ScenarioModel,
    here: &Here,
    removed: &HashSet<String>,
    head: &Header,
    errors: &mut FileErrors,
) -> Vec<(Value, String, Stage)> {
    let list = |l: &Option<Vec<Value>>, key: &str, stage: Stage| {
        let at = here.p(key);
        l.iter()
            .flatten()
            .enumerate()
            .map(|(i, v)| (v.clone(), index_path(&at, i), stage))
            .collect::<Vec<_>>()
    };
    let mut all = list(&m.setup, "setup", Stage::Setup);
    all.extend(
        main_steps(m, here, removed, &head.name, errors)
            .into_iter()
            .map(|(v, b)| (v, b, Stage::Main)),
    );
    all.extend(list(&m.teardown, "teardown", Stage::Teardown));
    if head.persistent && m.setup.as_ref().is_none_or(|s| s.is_empty()) {
        errors.push(
            here.index.value(&here.p("session")),
            "`session: persistent` without `setup` — expected setup steps that open the connections (ws.connect) the steps reuse",
        );
    }
    all
}

/// The scenario-level keys that belong to its one step in the shorthand form.
fn step_keys(m: &ScenarioModel) -> [(&'static str, &Option<Value>); 4] {
    [
        ("expect", &m.expect),
        ("resolver", &m.resolver),
        ("capture", &m.capture),
        ("retry", &m.retry),
    ]
}

/// The main steps with their paths: the `steps:` list, or the one step of the shorthand.
fn main_steps(
    m: &ScenarioModel,
    here: &Here,
    removed: &HashSet<String>,
    name: &str,
    errors: &mut FileErrors,
) -> Vec<(Value, String)> {
    let shorthand = m.shorthand();
    match (&m.steps, shorthand.first()) {
        (Some(list), None) => {
            for (k, v) in step_keys(m) {
                if v.is_some() {
                    errors.push(
                        here.index.key(&here.p(k)),
                        format!("`{k}` at the scenario level only goes with a one-step scenario — expected it inside a step of `steps:`"),
                    );
                }
            }
            if list.is_empty() {
                errors.push(
                    here.index.value(&here.p("steps")),
                    "`steps` is empty — expected at least one step",
                );
            }
            let at = here.p("steps");
            list.iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), index_path(&at, i)))
                .collect()
        }
        (Some(_), Some((kind, _))) => {
            errors.push(
                here.index.key(&here.p(kind)),
                format!(
                    "both `steps:` and a one-step `{kind}:` — expected either a `steps:` list or one step kind at the top level"
                ),
            );
            Vec::new()
        }
        (None, Some(_)) => {
            let mut step = Mapping::new();
            for (k, v) in &shorthand {
                step.insert(Value::from(*k), (*v).clone());
            }
            for (k, v) in step_keys(m) {
                if let Some(v) = v {
                    step.insert(Value::from(k), v.clone());
                }
            }
            vec![(Value::Mapping(step), here.path.to_string())]
        }
        (None, None) => {
            let gone = removed.contains(&here.p("steps"))
                || KINDS.iter().any(|k| removed.contains(&here.p(k)));
            if !gone {
                errors.push(
                    here.index.key(&here.p("scenario")),
                    format!(
                        "scenario `{name}` has no steps — expected `steps:` or one step kind at the top level ({})",
                        shorthand_kinds().join(", ")
                    ),
                );
            }
            Vec::new()
        }
    }
}

/// The parsed top level of a scenario file, or `None` after reporting why there is none.
fn top_level(text: &str, index: &PosIndex, errors: &mut FileErrors) -> Option<Mapping> {
    if index.report_duplicates(errors) {
        return None;
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
            return None;
        }
    };
    if let Err(e) = value.apply_merge() {
        errors.push(
            Pos::START,
            format!("cannot apply a merge key (`<<`): {e} — expected `<<` to name a mapping"),
        );
        return None;
    }
    match value {
        // Files with `modules:` are told apart before they reach this loader (`load_inputs`);
        // a document given as text to a scenario-only load (`load_str`) is not.
        Value::Mapping(m) if crate::config::blackbox::is_blackbox(&m) => {
            errors.push(
                index.key("modules"),
                "`modules:` makes this a blackbox_exporter configuration, which is read only from configuration files — expected `scenario:` or `scenarios:` here",
            );
            None
        }
        Value::Mapping(m) => Some(m),
        Value::Null => {
            errors.push(
                Pos::START,
                "empty file — expected a scenario (`scenario:`) or a list of them (`scenarios:`)",
            );
            None
        }
        other => {
            errors.push(
                index.value(""),
                format!(
                    "the top level is {} — expected a mapping with `scenario:` or `scenarios:`",
                    describe(&other)
                ),
            );
            None
        }
    }
}

/// Keys beside `scenarios:` belong inside its items.
fn beside_scenarios(top: &Mapping, index: &PosIndex, errors: &mut FileErrors) {
    for k in top.keys() {
        let k = key_text(k);
        if !matches!(k.as_str(), "scenarios" | "groups" | "include") {
            errors.push(
                index.key(&key_path("", &k)),
                format!(
                    "unknown key `{k}` beside `scenarios:` — expected only `scenarios:`, `groups:` and `include:` here (a scenario's keys go inside its list item)"
                ),
            );
        }
    }
}

/// Neither `scenario:` nor `scenarios:`: a near miss, or not a scenario file.
fn no_scenario(top: &Mapping, index: &PosIndex, errors: &mut FileErrors) {
    let keys: Vec<String> = top.keys().map(key_text).collect();
    let near = keys
        .iter()
        .find_map(|k| suggest::closest(k, ["scenario", "scenarios"]).map(|c| (k.clone(), c)));
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
