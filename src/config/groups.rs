//! Reusable step groups: a named, parameterised list of steps written once (`groups:` in the
//! scenario, beside `scenarios:`, or in a file named by `include:`) and used as a step
//! (`- use: login` `with: {user: alice}`) — a login written once and used for alice and bob.
//!
//! A use is expanded where the steps are gathered, before anything is checked or built: each
//! step of the group becomes a step of the scenario named `<use> › <step>` (`login[alice] ›
//! connect`), with the arguments put in its templates. A `{{ param }}` string becomes the
//! argument itself (typed: a number stays a number, a mapping a mapping); a param inside a
//! larger template is set at its start (`{% set user = "alice" %}…`), so it works in any
//! expression (`{{ hmac_sha256(secret, user) }}`). An argument that is itself a template
//! (`url: "{{ im_url }}"`) is evaluated where the step runs, with the scenario's variables and
//! captures.
//!
//! A problem inside a group's step is reported at the use (the scenario's file:line:column)
//! and names the definition's file:line:column. Unknown groups, unknown or missing arguments
//! and groups that use themselves (directly or not) are load errors at the use.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_norway::{Mapping, Value};

use super::error::{FileErrors, Pos};
use super::flow::valid_name;
use super::kinds::KINDS;
use super::locate::{index_path, key_path, PosIndex};
use super::model::StepModel;
use super::step::Stage;
use super::template::is_template;
use super::trust::Trust;

/// Uses inside uses, at most: deeper is a mistake (or a cycle the names do not show).
pub const MAX_DEPTH: usize = 8;
/// Files one scenario file may include.
pub const MAX_INCLUDES: usize = 16;
/// Steps one scenario may have once every use is expanded.
pub const MAX_EXPANDED_STEPS: usize = 1000;
/// Characters of an argument a use's default name shows (`login[alice]`).
const LABEL: usize = 32;

// A group as written (no doc comment: it would become the schema's description).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupModel {
    /// Parameters: a list of names (each required), or a mapping of name → default (`null`:
    /// required). Templates of the group's steps use them as `{{ name }}`.
    #[schemars(with = "Option<ParamsSchema>")]
    pub params: Option<Value>,
    /// The group's steps (steps, or uses of other groups).
    #[schemars(with = "Vec<StepItem>")]
    pub steps: Vec<Value>,
}

/// For the schema: a list of names, or name → default.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ParamsSchema {
    Names(Vec<String>),
    Defaults(std::collections::BTreeMap<String, serde_json::Value>),
}

/// For the schema: an item of a step list is a step or the use of a group.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum StepItem {
    Step(Box<StepModel>),
    Use(UseModel),
}

/// The use of a group as a step (for the schema: uses are read by [`expand`]).
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UseModel {
    /// The group's name.
    #[serde(rename = "use")]
    pub use_: String,
    /// Its arguments: param → value (a template is evaluated where the step runs).
    #[schemars(with = "Option<std::collections::BTreeMap<String, serde_json::Value>>")]
    pub with: Option<Mapping>,
    /// Prefix of the expanded steps' names (default: the group's name and its first argument,
    /// `login[alice]`).
    pub name: Option<String>,
}

/// Where something is written: a file, its index, and the path of the node in it.
#[derive(Clone)]
pub struct Loc {
    pub file: String,
    pub index: Arc<PosIndex>,
    pub path: String,
}

impl Loc {
    fn at(&self, sub: &str) -> String {
        let p = self.index.value(sub);
        format!("{}:{}:{}", self.file, p.line, p.column)
    }

    /// Where the node's key is (`login:` of a group).
    fn defined_at(&self) -> String {
        let p = self.index.key(&self.path);
        format!("{}:{}:{}", self.file, p.line, p.column)
    }
}

/// One group, checked.
pub struct Group {
    pub name: String,
    /// Name and default (`None`: required), in the order written.
    pub params: Vec<(String, Option<Value>)>,
    pub steps: Vec<Value>,
    pub loc: Loc,
}

/// The groups a scenario may use.
#[derive(Clone, Default)]
pub struct Groups(Vec<Arc<Group>>);

impl Groups {
    pub fn get(&self, name: &str) -> Option<&Arc<Group>> {
        self.0.iter().find(|g| g.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|g| g.name.as_str()).collect()
    }

    /// Add the groups of a `groups:` mapping at `loc`; problems are reported through `report`
    /// (path in `loc`'s file, message).
    pub fn read(&mut self, raw: &Value, loc: &Loc, report: &mut dyn FnMut(&str, String)) {
        let Value::Mapping(m) = raw else {
            report(&loc.path, "`groups` is not a mapping — expected group names, each with `steps:` (and `params:`)".into());
            return;
        };
        for (k, v) in m {
            let Value::String(name) = k else {
                report(
                    &loc.path,
                    "a group name that is not text — expected a name".into(),
                );
                continue;
            };
            let path = key_path(&loc.path, name);
            if !valid_name(name) {
                report(
                    &path,
                    format!("invalid group name `{name}` — expected letters, digits and _, not starting with a digit"),
                );
                continue;
            }
            if let Some(first) = self.get(name) {
                report(
                    &path,
                    format!(
                        "duplicate group `{name}` — already defined at {}",
                        first.loc.defined_at()
                    ),
                );
                continue;
            }
            let mut errors = FileErrors::new(&loc.file);
            let rec = super::deser::deserialize_recovering::<GroupModel>(
                v.clone(),
                &path,
                "a group",
                &loc.index,
                &mut errors,
            );
            for e in errors.into_errors() {
                report(
                    &path,
                    format!("at {}:{}:{}: {}", e.file, e.line, e.column, e.message),
                );
            }
            let Some(g) = rec.value else { continue };
            let params = params(g.params.as_ref(), &key_path(&path, "params"), report);
            if g.steps.is_empty() {
                report(
                    &key_path(&path, "steps"),
                    format!("group `{name}` has no steps — expected at least one"),
                );
                continue;
            }
            self.0.push(Arc::new(Group {
                name: name.clone(),
                params,
                steps: g.steps,
                loc: Loc {
                    path,
                    ..loc.clone()
                },
            }));
        }
    }

    /// Add the groups of the files `raw` (`include:`, a list of paths relative to `dir`) names,
    /// read within the file-root rules of `trust`. Problems go through `report`.
    pub fn include(
        &mut self,
        raw: &Value,
        at: &str,
        dir: &Path,
        trust: &Trust,
        report: &mut dyn FnMut(&str, String),
    ) {
        let items: Vec<(String, &Value)> = match raw {
            Value::Sequence(s) => s
                .iter()
                .enumerate()
                .map(|(i, v)| (index_path(at, i), v))
                .collect(),
            Value::String(_) => vec![(at.to_string(), raw)],
            _ => {
                report(
                    at,
                    "`include` is not a list — expected paths of files with `groups:`".into(),
                );
                return;
            }
        };
        if items.len() > MAX_INCLUDES {
            report(
                at,
                format!(
                    "{} included files — expected at most {MAX_INCLUDES}",
                    items.len()
                ),
            );
            return;
        }
        for (path, v) in items {
            let Value::String(p) = v else {
                report(
                    &path,
                    "an include that is not a path — expected a file name like groups/login.yaml"
                        .into(),
                );
                continue;
            };
            let root = match trust {
                Trust::Local { root: Some(r) } => r.clone(),
                Trust::Local { root: None } => dir.to_path_buf(),
                Trust::Remote { .. } => {
                    report(&path, "include is not available to a configuration loaded from a URL — expected the groups in the document itself".into());
                    continue;
                }
            };
            let text = match super::trust::read_confined(dir, &root, p) {
                Ok(t) => t,
                Err(e) => {
                    report(&path, format!("cannot include {p:?}: {e}"));
                    continue;
                }
            };
            let file = dir.join(p).display().to_string();
            self.read_file(&file, &text, &path, report);
        }
    }

    /// An included file: `groups:` only.
    fn read_file(
        &mut self,
        file: &str,
        text: &str,
        at: &str,
        report: &mut dyn FnMut(&str, String),
    ) {
        let index = Arc::new(PosIndex::build(text));
        let mut errors = FileErrors::new(file);
        let top = match serde_norway::from_str::<Value>(text) {
            Ok(Value::Mapping(m)) => Some(m),
            Ok(_) => {
                errors.push(Pos::START, "expected a mapping with `groups:`");
                None
            }
            Err(e) => {
                let pos = e.location().map_or(Pos::START, |l| Pos {
                    line: l.line(),
                    column: l.column(),
                });
                errors.push(pos, format!("invalid YAML: {e}"));
                None
            }
        };
        for e in errors.into_errors() {
            report(at, format!("in included file {e}"));
        }
        let Some(top) = top else { return };
        let loc = Loc {
            file: file.to_string(),
            index: index.clone(),
            path: "groups".into(),
        };
        for k in top.keys() {
            if k.as_str() != Some("groups") {
                let key = k.as_str().unwrap_or("?");
                report(
                    at,
                    format!(
                        "in included file {}: unknown key `{key}` — expected only `groups:` in an included file",
                        loc.at(&key_path("", key))
                    ),
                );
            }
        }
        if let Some(g) = top.get("groups") {
            let mut inner = |p: &str, m: String| {
                report(at, format!("in included file {}: {m}", loc.at(p)));
            };
            self.read(g, &loc, &mut inner);
        }
    }
}

/// `params:` as names with defaults.
fn params(
    raw: Option<&Value>,
    path: &str,
    report: &mut dyn FnMut(&str, String),
) -> Vec<(String, Option<Value>)> {
    let mut out: Vec<(String, Option<Value>)> = Vec::new();
    let list: Vec<(String, Option<Value>, String)> = match raw {
        None => return out,
        Some(Value::Sequence(s)) => s
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    v.as_str().unwrap_or("").to_string(),
                    None,
                    index_path(path, i),
                )
            })
            .collect(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                let k = k.as_str().unwrap_or("").to_string();
                let p = key_path(path, &k);
                (k, (!v.is_null()).then(|| v.clone()), p)
            })
            .collect(),
        Some(_) => {
            report(
                path,
                "`params` is neither a list nor a mapping — expected names, or name: default"
                    .into(),
            );
            return out;
        }
    };
    for (name, default, at) in list {
        if !valid_name(&name) {
            report(&at, format!("invalid parameter name {name:?} — expected letters, digits and _, not starting with a digit"));
        } else if out.iter().any(|(n, _)| *n == name) {
            report(&at, format!("duplicate parameter `{name}`"));
        } else {
            out.push((name, default));
        }
    }
    out
}

/// Where an expanded step comes from: the group's file (errors are located there, then
/// reported at the use), and how to say so.
pub struct Origin {
    pub file: String,
    pub index: Arc<PosIndex>,
    /// The use in the scenario's own file.
    pub use_pos: Pos,
    /// "in group `login`", "in group `auth` (used in group `login`)".
    pub chain: String,
    /// The group's parameters, for messages about undefined names.
    pub params: Vec<String>,
}

impl Origin {
    /// A message about `pos` in the group's file, to be reported at the use.
    pub fn message(&self, pos: Pos, msg: &str) -> String {
        let params = if msg.starts_with("undefined template variable") {
            match self.params.as_slice() {
                [] => "; the group has no parameters".to_string(),
                p => format!("; the group's parameters: {}", p.join(", ")),
            }
        } else {
            String::new()
        };
        format!(
            "{} at {}:{}:{}: {msg}{params}",
            self.chain, self.file, pos.line, pos.column
        )
    }
}

/// One step to build: its tree, path, stage, and (for a group's step) its origin.
pub struct Item {
    pub value: Value,
    pub base: String,
    pub stage: Stage,
    pub origin: Option<Arc<Origin>>,
}

/// The level being expanded: the scenario itself, or a group's steps.
struct Level<'a> {
    index: &'a PosIndex,
    origin: Option<Arc<Origin>>,
    /// Groups being expanded, outermost first.
    stack: Vec<String>,
    /// Name prefix of the steps (`login[alice] › `).
    prefix: String,
}

impl Level<'_> {
    fn report(&self, errors: &mut FileErrors, path: &str, msg: String) {
        self.report_pos(errors, self.index.value(path), msg);
    }

    /// At a key (an unknown one) rather than its value.
    fn report_key(&self, errors: &mut FileErrors, path: &str, msg: String) {
        self.report_pos(errors, self.index.key(path), msg);
    }

    fn report_pos(&self, errors: &mut FileErrors, pos: Pos, msg: String) {
        match &self.origin {
            None => errors.push(pos, msg),
            Some(o) => errors.push(o.use_pos, o.message(pos, &msg)),
        }
    }
}

/// Expand every use in `items` (the scenario's steps as gathered, in the scenario's file).
pub fn expand(
    items: Vec<(Value, String, Stage)>,
    groups: &Groups,
    index: &PosIndex,
    errors: &mut FileErrors,
) -> Vec<Item> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let top = Level {
        index,
        origin: None,
        stack: Vec::new(),
        prefix: String::new(),
    };
    for (value, base, stage) in items {
        let at = index.value(&base);
        if is_use(&value) {
            expand_use(
                &value, &base, stage, &top, groups, &mut names, &mut out, errors,
            );
        } else {
            out.push(Item {
                value,
                base,
                stage,
                origin: None,
            });
        }
        if out.len() > MAX_EXPANDED_STEPS {
            errors.push(
                at,
                format!("more than {MAX_EXPANDED_STEPS} steps once groups are expanded — expected fewer"),
            );
            out.truncate(MAX_EXPANDED_STEPS);
            break;
        }
    }
    out
}

fn is_use(v: &Value) -> bool {
    matches!(v, Value::Mapping(m) if m.contains_key("use"))
}

/// The use at `base` (in `level`'s file): its group's steps, arguments put in, into `out`.
#[allow(clippy::too_many_arguments)]
fn expand_use(
    v: &Value,
    base: &str,
    stage: Stage,
    level: &Level<'_>,
    groups: &Groups,
    names: &mut HashSet<String>,
    out: &mut Vec<Item>,
    errors: &mut FileErrors,
) {
    let Some((group, args, use_name)) = check_use(v, base, level, groups, errors) else {
        return;
    };
    // Unique among the scenario's uses (`login[alice]`, then `login[alice]-2`).
    let mut name = format!("{}{use_name}", level.prefix);
    let first = name.clone();
    let mut n = 2;
    while !names.insert(name.clone()) {
        name = format!("{first}-{n}");
        n += 1;
    }
    let chain = match &level.origin {
        None => format!("in group `{}`", group.name),
        Some(o) => format!("in group `{}` (used {})", group.name, o.chain),
    };
    let origin = Arc::new(Origin {
        file: group.loc.file.clone(),
        index: group.loc.index.clone(),
        use_pos: level
            .origin
            .as_ref()
            .map_or_else(|| level.index.value(base), |o| o.use_pos),
        chain,
        params: group.params.iter().map(|(n, _)| n.clone()).collect(),
    });
    let mut stack = level.stack.clone();
    stack.push(group.name.clone());
    let inner = Level {
        index: &group.loc.index,
        origin: Some(origin.clone()),
        stack,
        prefix: format!("{name} › "),
    };
    let mut taken: HashSet<String> = HashSet::new();
    for (j, step) in group.steps.iter().enumerate() {
        let path = index_path(&key_path(&group.loc.path, "steps"), j);
        // Checked as it grows: groups that use groups several times each multiply.
        if out.len() >= MAX_EXPANDED_STEPS {
            inner.report(
                errors,
                &path,
                format!("more than {MAX_EXPANDED_STEPS} steps once groups are expanded — expected fewer uses"),
            );
            return;
        }
        if is_use(step) {
            expand_use(step, &path, stage, &inner, groups, names, out, errors);
            continue;
        }
        let mut value = step.clone();
        substitute(&mut value, &args);
        name_step(&mut value, &inner.prefix, &mut taken);
        out.push(Item {
            value,
            base: path,
            stage,
            origin: Some(origin.clone()),
        });
    }
}

/// A use's arguments: every param with its value.
type Args = Vec<(String, Value)>;

/// The use's group, its arguments (every param, defaults filled in) and its name; `None` after
/// reporting a problem.
fn check_use(
    v: &Value,
    base: &str,
    level: &Level<'_>,
    groups: &Groups,
    errors: &mut FileErrors,
) -> Option<(Arc<Group>, Args, String)> {
    let Value::Mapping(m) = v else { return None };
    let mut ok = true;
    for k in m.keys() {
        let k = k.as_str().unwrap_or("?");
        if !matches!(k, "use" | "with" | "name") {
            let hint = if KINDS.contains(&k) {
                " — a use is a step of its own: put the step kind in another step".to_string()
            } else {
                super::suggest::hint(k, &["use", "with", "name"])
            };
            level.report_key(
                errors,
                &key_path(base, k),
                format!("unknown key `{k}` in the use of a group{hint}"),
            );
            ok = false;
        }
    }
    let use_path = key_path(base, "use");
    let Some(Value::String(gname)) = m.get("use") else {
        level.report(
            errors,
            &use_path,
            "`use` is not a group name — expected the name of a group".into(),
        );
        return None;
    };
    let Some(group) = groups.get(gname).cloned() else {
        let known = groups.names();
        let hint = if known.is_empty() {
            " — no groups are defined (expected `groups:` in the scenario, beside `scenarios:`, or in an `include:`d file)".to_string()
        } else {
            super::suggest::hint(gname, &known)
        };
        level.report(errors, &use_path, format!("unknown group `{gname}`{hint}"));
        return None;
    };
    if level.stack.contains(gname) {
        let mut cycle = level.stack.clone();
        cycle.push(gname.clone());
        level.report(
            errors,
            &use_path,
            format!(
                "group `{gname}` uses itself ({}) — expected groups that do not recurse",
                cycle.join(" → ")
            ),
        );
        return None;
    }
    if level.stack.len() >= MAX_DEPTH {
        level.report(
            errors,
            &use_path,
            format!("groups used more than {MAX_DEPTH} deep — expected a shallower nesting"),
        );
        return None;
    }
    let args = arguments(m, base, &group, level, errors)?;
    let name = match m.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        Some(_) => {
            level.report(
                errors,
                &key_path(base, "name"),
                "`name` is not text — expected a name for the use".into(),
            );
            return None;
        }
        None => default_name(&group, &args),
    };
    ok.then_some((group, args, name))
}

/// Every param's value: given under `with:`, or its default.
fn arguments(
    m: &Mapping,
    base: &str,
    group: &Group,
    level: &Level<'_>,
    errors: &mut FileErrors,
) -> Option<Vec<(String, Value)>> {
    let with_path = key_path(base, "with");
    let given: Vec<(String, Value)> = match m.get("with") {
        None => Vec::new(),
        Some(Value::Mapping(w)) => w
            .iter()
            .map(|(k, v)| (k.as_str().unwrap_or("?").to_string(), v.clone()))
            .collect(),
        Some(_) => {
            level.report(
                errors,
                &with_path,
                "`with` is not a mapping — expected param: value".into(),
            );
            return None;
        }
    };
    let names: Vec<&str> = group.params.iter().map(|(n, _)| n.as_str()).collect();
    let mut ok = true;
    for (k, _) in &given {
        if !names.contains(&k.as_str()) {
            let hint = if names.is_empty() {
                format!(" — group `{}` takes no parameters", group.name)
            } else {
                super::suggest::hint(k, &names)
            };
            level.report_key(
                errors,
                &key_path(&with_path, k),
                format!("unknown parameter `{k}` of group `{}`{hint}", group.name),
            );
            ok = false;
        }
    }
    let mut args = Vec::new();
    for (p, default) in &group.params {
        match given
            .iter()
            .find(|(k, _)| k == p)
            .map(|(_, v)| v)
            .or(default.as_ref())
        {
            Some(v) => args.push((p.clone(), v.clone())),
            None => {
                level.report(
                    errors,
                    &key_path(base, "use"),
                    format!(
                        "group `{}` needs parameter `{p}` — expected it under `with:` (parameters: {}; defined at {})",
                        group.name,
                        names.join(", "),
                        group.loc.defined_at()
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(args)
}

/// `login[alice]`: the group and its first argument when that is short plain text.
fn default_name(group: &Group, args: &[(String, Value)]) -> String {
    let label = args.first().and_then(|(_, v)| match v {
        Value::String(s) if !is_template(s) && !s.is_empty() && s.chars().count() <= LABEL => {
            Some(s.clone())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    match label {
        Some(l) => format!("{}[{l}]", group.name),
        None => group.name.clone(),
    }
}

/// Name the step `<prefix><its name>`: written, or its kind (`ws.send`, `ws.send-2`…).
fn name_step(v: &mut Value, prefix: &str, taken: &mut HashSet<String>) {
    let Value::Mapping(m) = v else { return };
    let own = match m.get("name") {
        Some(Value::String(n)) => n.clone(),
        _ => {
            let kind = m
                .keys()
                .filter_map(Value::as_str)
                .find(|k| KINDS.contains(k))
                .unwrap_or("step");
            let mut n = kind.to_string();
            let mut i = 2;
            while taken.contains(&n) {
                n = format!("{kind}-{i}");
                i += 1;
            }
            n
        }
    };
    taken.insert(own.clone());
    m.insert(Value::from("name"), Value::from(format!("{prefix}{own}")));
}

/// Put the arguments into every template string of `v`.
fn substitute(v: &mut Value, args: &[(String, Value)]) {
    match v {
        Value::String(s) if is_template(s) => {
            if let Some(arg) = whole_param(s).and_then(|p| args.iter().find(|(n, _)| n == p)) {
                *v = arg.1.clone();
                return;
            }
            let sets: String = args
                .iter()
                .filter(|(n, _)| mentions(s, n))
                .map(|(n, a)| set_statement(n, a))
                .collect();
            if !sets.is_empty() {
                *s = format!("{sets}{s}");
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|i| substitute(i, args)),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, i)| substitute(i, args)),
        Value::Tagged(t) => substitute(&mut t.value, args),
        _ => {}
    }
}

/// `p` when `s` is exactly `{{ p }}`.
fn whole_param(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    (valid_name(inner)).then_some(inner)
}

/// Whether `name` appears in `s` as a whole word.
fn mentions(s: &str, name: &str) -> bool {
    s.match_indices(name).any(|(i, _)| {
        let before = s[..i].chars().next_back();
        let after = s[i + name.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

/// `{% set name = "value" %}`, or a block set for an argument that is a template itself.
fn set_statement(name: &str, arg: &Value) -> String {
    match arg {
        Value::String(t) if is_template(t) => format!("{{% set {name} %}}{t}{{% endset %}}"),
        other => {
            let json = serde_json::to_value(other).unwrap_or(serde_json::Value::Null);
            format!("{{% set {name} = {} %}}", literal(&json))
        }
    }
}

/// A value as a template literal.
fn literal(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::Array(a) => {
            format!("[{}]", a.iter().map(literal).collect::<Vec<_>>().join(", "))
        }
        serde_json::Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", serde_json::Value::from(k.as_str()), literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_found_as_whole_words_only() {
        assert!(mentions("{{ hmac(secret, user) }}", "user"));
        assert!(!mentions("{{ username }}", "user"));
        assert_eq!(whole_param(" {{ user }} "), Some("user"));
        assert_eq!(whole_param("{{ user | upper }}"), None);
    }

    #[test]
    fn arguments_become_literals_or_block_sets() {
        assert_eq!(
            set_statement("u", &Value::from("a\"b")),
            "{% set u = \"a\\\"b\" %}"
        );
        assert_eq!(set_statement("n", &Value::from(5)), "{% set n = 5 %}");
        assert_eq!(
            set_statement("url", &Value::from("{{ base }}/x")),
            "{% set url %}{{ base }}/x{% endset %}"
        );
        let m: Value = serde_norway::from_str("{a: [1, null, true]}").unwrap();
        assert_eq!(
            set_statement("m", &m),
            "{% set m = {\"a\": [1, none, true]} %}"
        );
    }
}
