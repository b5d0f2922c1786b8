//! Templates (`{{ … }}`, minijinja) rendered at load time, with strict undefined: an unknown
//! variable is a load error that names it and lists what is defined, instead of an empty string
//! in a URL at 3 a.m.
//!
//! What a template sees: the scenario's `vars` (each var sees the ones before it), `env`
//! (the process environment, `env.NAME`), `scenario` (its name) and `region` (only when the
//! agent has one: using it without a region is an error), the functions of [`funcs`], and — in
//! steps — the captures of earlier steps.
//!
//! A step whose templates use a capture or a per-run function (`uuid()`, `now()`…) cannot be
//! rendered at load: the loader checks its templates ([`Templates::check_tree`]: syntax, every
//! name defined) and keeps its raw tree, which the engine renders for every run
//! ([`Templates::render_tree_rt`]) before building it with the same step builder. Every other
//! step is rendered and built once, at load.
//!
//! Every render is bounded: minijinja's fuel ([`FUEL`]) caps the work (instructions, and the
//! data a template creates) and [`MAX_OUTPUT`] the result, so a hostile template ends in
//! milliseconds with a located error — at load, or as the failure of its own step at run time,
//! never as a stalled async worker. What a document's templates may read of the host (`file()`,
//! `env`) is decided by [`super::trust`].

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value as JValue};
use serde_norway::Value;

use super::error::FileErrors;
use super::funcs;
use super::locate::{index_path, key_path, PosIndex};
use super::taint;
use super::trust::Trust;
use super::units::VarValue;

/// Work one render may do, in minijinja fuel: about one instruction or 64 bytes of data each.
/// Ordinary templates use a few hundred; this leaves room for loops over a few thousand items
/// and ends a hostile one within milliseconds.
pub const FUEL: u64 = 200_000;

/// Longest result of one render: URLs, headers and bodies, not bulk data.
pub const MAX_OUTPUT: usize = 1 << 20;

/// Fuel the load-time renders of one document may spend together: [`FUEL`] bounds one
/// template, this bounds a file of a hundred thousand of them (a few hundred thousand templates
/// over budget would otherwise cost minutes). Ordinary templates spend under ten each.
pub const DOC_FUEL: u64 = 20_000_000;

/// Fuel the templates of one step may spend together, per run.
pub const STEP_FUEL: u64 = FUEL;

/// Fuel spent by a group of renders (a document at load, a step per run). A failed render is
/// charged the most it could have spent: its real spending is not known.
struct Budget {
    spent: std::sync::atomic::AtomicU64,
    limit: u64,
    whose: &'static str,
}

impl Budget {
    fn new(limit: u64, whose: &'static str) -> Budget {
        Budget {
            spent: std::sync::atomic::AtomicU64::new(0),
            limit,
            whose,
        }
    }

    fn charge(&self, fuel: u64) {
        self.spent
            .fetch_add(fuel, std::sync::atomic::Ordering::Relaxed);
    }

    fn check(&self) -> Result<(), String> {
        if self.spent.load(std::sync::atomic::Ordering::Relaxed) < self.limit {
            return Ok(());
        }
        Err(format!(
            "the templates of {} together exceed their budget of {} steps of work — expected fewer or lighter templates; sonde bounds the work templates do",
            self.whose, self.limit
        ))
    }
}

pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// One per load: the engine and a snapshot of the environment.
pub struct Templates {
    env: Environment<'static>,
    /// The process environment when the load began.
    process_vars: Vec<(String, String)>,
    /// What the templates of the document being loaded may reach (set per document).
    trust: std::sync::Mutex<Trust>,
    /// Fuel spent at load by the document being loaded (reset per document).
    doc_budget: Budget,
    /// `sonde run --var NAME=VALUE`: replaces the scenario var of that name (or defines it),
    /// taken as written (no template rendering).
    overrides: Vec<(String, String)>,
    env_names: std::collections::HashSet<String>,
    region: Option<String>,
    /// `process_vars` with every value replaced by its stand-ins ([`taint`]).
    shadow_env: [JValue; taint::SHADOWS],
    /// `process_vars` as templates see `env` in a local document, built once and shared by
    /// every scenario's scope (a `JValue` clone is a reference count): one map per scenario
    /// was ~4 KB each, 40 MB for 10,000 scenarios.
    local_env: JValue,
}

/// The variables a template of one scenario sees.
#[derive(Clone)]
pub struct Scope {
    pairs: Vec<(String, JValue)>,
    /// Vars (and captures) whose value came from a secret (`env`, `file()`, or another such
    /// var), with their values under each stand-in render ([`taint`]).
    secret_vars: Vec<(String, Shadows)>,
    /// Of the document the scenario is in.
    trust: Trust,
}

type Shadows = [JValue; taint::SHADOWS];

impl Scope {
    /// Give back the room pushes left: the scope lives as long as its scenario (a vector of
    /// four grown to eight for a region and a root held ~150 bytes of every scenario empty).
    pub fn shrink_to_fit(&mut self) {
        self.pairs.shrink_to_fit();
        self.secret_vars.shrink_to_fit();
    }

    /// The names a template may use (the internal keys left out).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !k.starts_with("__"))
    }

    fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// Add (or replace) a name: a capture, at run time. A capture named like a credential
    /// header (`token`, `authorization`…) is a secret, tracked through the templates using it.
    pub fn set(&mut self, name: &str, value: JValue) {
        self.secret_vars.retain(|(k, _)| k != name);
        if sonde_probes::http::is_secret_header(name) {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            let shadows = std::array::from_fn(|k| JValue::from(taint::perturb(&text, k)));
            self.secret_vars.push((name.to_string(), shadows));
        }
        self.pairs.retain(|(k, _)| k != name);
        self.pairs.push((name.to_string(), value));
    }

    /// The context of the `k`th stand-in render: secrets replaced by their stand-ins, no sink.
    fn shadow_ctx(&self, k: usize, shadow_env: &JValue) -> JValue {
        let pairs = self.pairs.iter().map(|(name, v)| {
            let v = match self.secret_vars.iter().find(|(n, _)| n == name) {
                Some((_, sh)) => sh[k].clone(),
                None if name == "env" => shadow_env.clone(),
                None if name == funcs::SINK_KEY => JValue::from(()),
                None => v.clone(),
            };
            (name.clone(), v)
        });
        let taint = std::iter::once((taint::TAINT_KEY.to_string(), JValue::from(k)));
        JValue::from_pairs(pairs.chain(taint).collect::<Vec<_>>())
    }
}

/// What [`Templates::check`] found out about one template.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// Renders the same every time: render it at load.
    Load,
    /// Uses a capture or a per-run function: render it for every run.
    PerRun,
}

impl Templates {
    /// Check one template without rendering it: its syntax, and that every name it uses is
    /// defined — in `scope`, a function, or among `captures` (of earlier steps).
    pub fn check(&self, src: &str, scope: &Scope, captures: &[String]) -> Result<When, String> {
        let tmpl = self.env.template_from_str(src).map_err(|e| {
            format!(
                "invalid template {}: {} — expected Jinja syntax like {{{{ name }}}}",
                shorten(src),
                e.detail().unwrap_or("syntax error")
            )
        })?;
        let mut used: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
        used.sort();
        let mut when = When::Load;
        for name in &used {
            let mut parts = name.split('.');
            let top = parts.next().unwrap_or("");
            if captures.iter().any(|c| c == top) || funcs::PER_RUN.contains(&top) {
                when = When::PerRun;
                continue;
            }
            if funcs::ALL.contains(&top) {
                continue;
            }
            if !scope.has(top) {
                if top == "region" {
                    return Err(
                        "undefined template variable `region` — no region is set (start sonde with --region NAME)"
                            .into(),
                    );
                }
                let mut defined: Vec<&str> = scope.names().collect();
                defined.sort_unstable();
                let caps = if captures.is_empty() {
                    String::new()
                } else {
                    format!("; captures of earlier steps: {}", captures.join(", "))
                };
                return Err(format!(
                    "undefined template variable `{top}` — defined: {}{caps}",
                    defined.join(", ")
                ));
            }
            // An unset variable with a `default` filter is fine; rendering decides.
            if top == "env" && !src.contains("default") {
                if let Some(var) = parts.next() {
                    if !scope.trust.allows_env(var) {
                        return Err(scope.trust.env_refusal(var));
                    }
                    if !self.env_names.contains(var) {
                        return Err(format!(
                            "environment variable `{var}` is not set — expected it in sonde's environment (used as `env.{var}`)"
                        ));
                    }
                }
            }
        }
        Ok(when)
    }

    /// Check every template string inside `value` (a step) at load; errors are located at each
    /// string. Returns whether all passed, and whether any must be rendered per run.
    pub fn check_tree(
        &self,
        value: &Value,
        path: &str,
        scope: &Scope,
        captures: &[String],
        index: &PosIndex,
        errors: &mut FileErrors,
    ) -> (bool, When) {
        let mut ok = true;
        let mut when = When::Load;
        let mut stack = vec![(value, path.to_string())];
        while let Some((v, p)) = stack.pop() {
            match v {
                Value::String(s) if is_template(s) => match self.check(s, scope, captures) {
                    Ok(w) => {
                        if w == When::PerRun {
                            when = When::PerRun;
                        }
                    }
                    Err(m) => {
                        errors.push(index.value(&p), m);
                        ok = false;
                    }
                },
                Value::Sequence(items) => {
                    for (i, item) in items.iter().enumerate() {
                        stack.push((item, index_path(&p, i)));
                    }
                }
                Value::Mapping(m) => {
                    for (k, v) in m.iter() {
                        if let Some(key) = plain_key(k) {
                            stack.push((v, key_path(&p, &key)));
                        }
                    }
                }
                Value::Tagged(t) => stack.push((&t.value, p.clone())),
                _ => {}
            }
        }
        (ok, when)
    }

    /// Render every string inside `value` at run time, within one step's budget
    /// ([`STEP_FUEL`]); the first failure, with where it is.
    pub fn render_tree_rt(
        &self,
        value: &mut Value,
        path: &str,
        scope: &Scope,
    ) -> Result<(), String> {
        self.render_tree_in(value, path, scope, &Budget::new(STEP_FUEL, "this step"))
    }

    fn render_tree_in(
        &self,
        value: &mut Value,
        path: &str,
        scope: &Scope,
        budget: &Budget,
    ) -> Result<(), String> {
        match value {
            Value::String(s) if is_template(s) => {
                *s = self
                    .render_in(s, scope, budget)
                    .map_err(|m| format!("{path}: {m}"))?;
                Ok(())
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.render_tree_in(item, &index_path(path, i), scope, budget)?;
                }
                Ok(())
            }
            Value::Mapping(m) => {
                for (k, v) in m.iter_mut() {
                    if let Some(key) = plain_key(k) {
                        self.render_tree_in(v, &key_path(path, &key), scope, budget)?;
                    }
                }
                Ok(())
            }
            Value::Tagged(t) => self.render_tree_in(&mut t.value, path, scope, budget),
            _ => Ok(()),
        }
    }

    pub fn new(region: Option<String>) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        funcs::register(&mut env);
        taint::register(&mut env);
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let env_names = vars.iter().map(|(k, _)| k.clone()).collect();
        let shadow_env = std::array::from_fn(|k| {
            JValue::from_pairs(
                vars.iter()
                    .map(|(n, v)| (n.clone(), taint::perturb(v, k)))
                    .collect::<Vec<_>>(),
            )
        });
        let local_env = JValue::from_pairs(vars.clone());
        Templates {
            env,
            local_env,
            process_vars: vars,
            trust: std::sync::Mutex::new(Trust::default()),
            doc_budget: Budget::new(DOC_FUEL, "this document"),
            shadow_env,
            env_names,
            region,
            overrides: Vec::new(),
        }
    }

    /// Var overrides from the command line (`sonde run --var`), applied by [`Self::add_vars`].
    pub fn with_overrides(mut self, overrides: Vec<(String, String)>) -> Self {
        self.overrides = overrides;
        self
    }

    /// Start a document: what its templates may reach; its budget starts afresh.
    pub fn set_trust(&self, trust: Trust) {
        *self.trust.lock().unwrap_or_else(|e| e.into_inner()) = trust;
        self.doc_budget
            .spent
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The scope of a scenario before its vars; `file()` paths are relative to `dir`, and the
    /// contents it reads are collected in `sink` (they are secrets). What `env` holds and where
    /// `file()` may read follow the document's [`Trust`].
    pub fn scope(&self, scenario: &str, dir: &std::path::Path, sink: JValue) -> Scope {
        let trust = self.trust.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let env = match &trust {
            // A local document sees the whole environment: the shared map.
            Trust::Local { .. } => self.local_env.clone(),
            Trust::Remote { .. } => JValue::from_pairs(
                self.process_vars
                    .iter()
                    .filter(|(k, _)| trust.allows_env(k))
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
        };
        let mut pairs = vec![
            ("env".to_string(), env),
            ("scenario".to_string(), JValue::from(scenario)),
            (
                funcs::DIR_KEY.to_string(),
                JValue::from(dir.display().to_string()),
            ),
            (funcs::SINK_KEY.to_string(), sink),
        ];
        if let Some(root) = trust.file_root(dir) {
            pairs.push((funcs::ROOT_KEY.to_string(), JValue::from(root)));
        }
        let secret_vars = Vec::new();
        if let Some(r) = &self.region {
            pairs.push(("region".to_string(), JValue::from(r.as_str())));
        }
        Scope {
            pairs,
            secret_vars,
            trust,
        }
    }

    /// Whether `src` uses a secret: `env`, `file()`, or a var that came from one.
    fn uses_secret(&self, src: &str, scope: &Scope) -> bool {
        let Ok(t) = self.env.template_from_str(src) else {
            return false;
        };
        t.undeclared_variables(false)
            .iter()
            .any(|n| n == "env" || n == "file" || scope.secret_vars.iter().any(|(v, _)| v == n))
    }

    /// Render one string at load, within the document's budget; the error is a finished
    /// message.
    pub fn render(&self, src: &str, scope: &Scope) -> Result<String, String> {
        self.render_in(src, scope, &self.doc_budget)
    }

    fn render_in(&self, src: &str, scope: &Scope, budget: &Budget) -> Result<String, String> {
        self.render_tainted(src, scope, budget).map(|(out, _)| out)
    }

    /// Render one string within `budget`; when it uses a secret, also its stand-in renders
    /// ([`taint`]), and the part of the output the secret decided goes to the scope's secret
    /// sink.
    fn render_tainted(
        &self,
        src: &str,
        scope: &Scope,
        budget: &Budget,
    ) -> Result<(String, Option<Shadows>), String> {
        budget.check()?;
        let tmpl = self.env.template_from_str(src).map_err(|e| {
            format!(
                "invalid template {}: {} — expected Jinja syntax like {{{{ name }}}}",
                shorten(src),
                e.detail().unwrap_or("syntax error")
            )
        })?;
        let ctx = JValue::from_pairs(scope.pairs.iter().cloned());
        let captured = tmpl.render_captured(ctx).map_err(|e| {
            budget.charge(FUEL);
            let what = match e.kind() {
                ErrorKind::UndefinedError => {
                    if let Some(m) =
                        self.explain_undefined(&tmpl.undeclared_variables(true), scope)
                    {
                        return m;
                    }
                    "an undefined value".to_string()
                }
                ErrorKind::OutOfFuel => {
                    return format!(
                        "template {} exceeds its budget of {FUEL} steps of work (loops, and data at 64 bytes a step) — expected a template that does less; sonde bounds every render",
                        shorten(src)
                    );
                }
                _ => e.detail().unwrap_or("error").to_string(),
            };
            format!(
                "template {} failed: {what} — expected it to render with the defined variables",
                shorten(src)
            )
        })?;
        budget.charge(
            captured
                .state()
                .fuel_levels()
                .map_or(FUEL, |(used, _)| used),
        );
        let out = captured.output().to_string();
        drop(captured);
        if out.len() > MAX_OUTPUT {
            return Err(format!(
                "template {} renders {} bytes — expected at most {MAX_OUTPUT} (sonde bounds every render)",
                shorten(src),
                out.len()
            ));
        }
        if !self.uses_secret(src, scope) {
            return Ok((out, None));
        }
        let shadows: [Option<String>; taint::SHADOWS] =
            std::array::from_fn(|k| tmpl.render(scope.shadow_ctx(k, &self.shadow_env[k])).ok());
        if let Some(part) = taint::derived(&out, &shadows) {
            let sink = scope.pairs.iter().find(|(k, _)| k == funcs::SINK_KEY);
            if let Some(sink) = sink.and_then(|(_, s)| s.downcast_object_ref::<funcs::SecretSink>())
            {
                sink.push(part.to_string());
            }
        }
        // A stand-in that failed to render stands for "all of it": the whole output, changed.
        let shadows = std::array::from_fn(|k| match &shadows[k] {
            Some(s) => JValue::from(s.as_str()),
            None => JValue::from(taint::perturb(&out, k)),
        });
        Ok((out, Some(shadows)))
    }

    fn explain_undefined(
        &self,
        used: &std::collections::HashSet<String>,
        scope: &Scope,
    ) -> Option<String> {
        let mut used: Vec<&String> = used.iter().collect();
        used.sort();
        for name in used {
            let mut parts = name.split('.');
            let top = parts.next().unwrap_or("");
            // `range`, `dict`, `file()`…: defined, whatever the scope holds.
            if funcs::ALL.contains(&top) || self.env.globals().any(|(g, _)| g == top) {
                continue;
            }
            if !scope.pairs.iter().any(|(k, _)| k == top) {
                if top == "region" {
                    return Some(
                        "undefined template variable `region` — no region is set (start sonde with --region NAME)"
                            .into(),
                    );
                }
                let mut defined: Vec<&str> = scope.names().collect();
                defined.sort_unstable();
                return Some(format!(
                    "undefined template variable `{top}` — defined: {}",
                    defined.join(", ")
                ));
            }
            if top == "env" {
                if let Some(var) = parts.next() {
                    if !scope.trust.allows_env(var) {
                        return Some(scope.trust.env_refusal(var));
                    }
                    if !self.env_names.contains(var) {
                        return Some(format!(
                            "environment variable `{var}` is not set — expected it in sonde's environment (used as `env.{var}`)"
                        ));
                    }
                }
            }
        }
        None
    }

    /// Render the scenario's `vars` in order into `scope`; errors are located at each var.
    pub fn add_vars(
        &self,
        scope: &mut Scope,
        vars: &[(String, VarValue)],
        vars_path: &str,
        index: &PosIndex,
        errors: &mut FileErrors,
    ) -> Vec<(String, serde_json::Value)> {
        let mut rendered = Vec::new();
        for (name, v) in vars {
            if let Some((_, o)) = self.overrides.iter().find(|(k, _)| k == name) {
                rendered.push((name.clone(), serde_json::Value::String(o.clone())));
                scope.pairs.retain(|(k, _)| k != name);
                scope.pairs.push((name.clone(), JValue::from(o.as_str())));
                continue;
            }
            let mut shadows = None;
            let value = match v {
                VarValue::Str(s) if is_template(s) => {
                    match self.render_tainted(s, scope, &self.doc_budget) {
                        Ok((r, sh)) => {
                            shadows = sh;
                            JValue::from(r)
                        }
                        Err(m) => {
                            errors.push(index.value(&key_path(vars_path, name)), m);
                            // Defined anyway, so its users do not report it again.
                            JValue::from("")
                        }
                    }
                }
                VarValue::Str(s) => JValue::from(s.as_str()),
                VarValue::Int(n) => JValue::from(*n),
                VarValue::Float(f) => JValue::from(*f),
                VarValue::Bool(b) => JValue::from(*b),
            };
            rendered.push((name.clone(), serde_json::Value::String(value.to_string())));
            scope.secret_vars.retain(|(k, _)| k != name);
            if let Some(sh) = shadows {
                scope.secret_vars.push((name.clone(), sh));
            }
            scope.pairs.retain(|(k, _)| k != name);
            scope.pairs.push((name.clone(), value));
        }
        self.add_undeclared_overrides(scope, vars, &mut rendered);
        rendered
    }

    /// Overrides naming no var of the scenario are defined too, so a template may use a value
    /// that only the command line gives.
    pub fn add_undeclared_overrides(
        &self,
        scope: &mut Scope,
        vars: &[(String, VarValue)],
        rendered: &mut Vec<(String, serde_json::Value)>,
    ) {
        for (name, o) in &self.overrides {
            if vars.iter().any(|(k, _)| k == name) {
                continue;
            }
            rendered.push((name.clone(), serde_json::Value::String(o.clone())));
            scope.pairs.retain(|(k, _)| k != name);
            scope.pairs.push((name.clone(), JValue::from(o.as_str())));
        }
    }

    /// Render every string inside `value` (a step), in place. Returns false if any failed.
    pub fn render_tree(
        &self,
        value: &mut Value,
        path: &str,
        scope: &Scope,
        index: &PosIndex,
        errors: &mut FileErrors,
    ) -> bool {
        match value {
            Value::String(s) if is_template(s) => match self.render(s, scope) {
                Ok(r) => {
                    *s = r;
                    true
                }
                Err(m) => {
                    errors.push(index.value(path), m);
                    false
                }
            },
            Value::Sequence(items) => {
                let mut ok = true;
                for (i, item) in items.iter_mut().enumerate() {
                    ok &= self.render_tree(item, &index_path(path, i), scope, index, errors);
                }
                ok
            }
            Value::Mapping(m) => {
                let mut ok = true;
                for (k, v) in m.iter_mut() {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => continue,
                    };
                    ok &= self.render_tree(v, &key_path(path, &key), scope, index, errors);
                }
                ok
            }
            Value::Tagged(t) => self.render_tree(&mut t.value, path, scope, index, errors),
            _ => true,
        }
    }
}

/// A template in a message: whole when short, else its start (a hostile one can be megabytes).
fn shorten(src: &str) -> String {
    const KEEP: usize = 120;
    if src.len() <= KEEP {
        return format!("{src:?}");
    }
    let mut cut = KEEP;
    while !src.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}… ({} bytes)", &src[..cut], src.len())
}

fn plain_key(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_but_defaults_work() {
        let t = Templates::new(None);
        let mut scope = t.scope("s", std::path::Path::new(""), JValue::from(()));
        scope
            .pairs
            .push(("base".into(), JValue::from("http://127.0.0.1")));
        assert_eq!(
            t.render("{{ env.SONDE_SURELY_UNSET_4711 | default('x') }}", &scope)
                .unwrap(),
            "x"
        );
        assert_eq!(t.render("{{ scenario }}", &scope).unwrap(), "s");
        let e = t.render("{{ base.nope }}", &scope).unwrap_err();
        assert!(e.contains("{{ base.nope }}"), "{e}");
        let e = t.render("{{ nope }}", &scope).unwrap_err();
        assert_eq!(
            e,
            "undefined template variable `nope` — defined: base, env, scenario"
        );
    }

    #[test]
    fn ordinary_templates_spend_little_of_the_budgets() {
        let t = Templates::new(None);
        let mut scope = t.scope("s", std::path::Path::new(""), JValue::from(()));
        scope.set("base", JValue::from("http://127.0.0.1:1"));
        for src in [
            "{{ base }}/x?id={{ scenario | urlencode }}",
            "Basic {{ base64('user:' ~ scenario) }}",
        ] {
            let tmpl = t.env.template_from_str(src).unwrap();
            let ctx = JValue::from_pairs(scope.pairs.iter().cloned());
            let captured = tmpl.render_captured(ctx).unwrap();
            let (used, _) = captured.state().fuel_levels().unwrap();
            // A 16 MiB file holds at most a few hundred thousand such strings.
            assert!(used < 20, "{src}: {used}");
        }
    }

    #[test]
    fn the_templates_of_a_step_share_one_budget_per_run() {
        let t = Templates::new(None);
        let scope = t.scope("s", std::path::Path::new(""), JValue::from(()));
        let one = "{% for i in range(20000) %}{% endfor %}x";
        assert_eq!(t.render(one, &scope).unwrap(), "x", "one fits");
        let mut tree: Value = serde_norway::from_str(&format!(
            "headers: [{}]",
            vec![format!("{one:?}"); 50].join(", ")
        ))
        .unwrap();
        let e = t.render_tree_rt(&mut tree, "http", &scope).unwrap_err();
        assert!(
            e.contains("the templates of this step together exceed their budget"),
            "{e}"
        );
    }

    #[test]
    fn captures_and_per_run_functions_defer_rendering() {
        let t = Templates::new(None);
        let scope = t.scope("s", std::path::Path::new(""), JValue::from(()));
        let caps = vec!["token".to_string()];
        assert_eq!(t.check("{{ scenario }}", &scope, &caps), Ok(When::Load));
        assert_eq!(
            t.check("{{ sha256(scenario) }}", &scope, &caps),
            Ok(When::Load)
        );
        assert_eq!(
            t.check("Bearer {{ token }}", &scope, &caps),
            Ok(When::PerRun)
        );
        assert_eq!(t.check("{{ uuid() }}", &scope, &[]), Ok(When::PerRun));
        let e = t.check("{{ tokn }}", &scope, &caps).unwrap_err();
        assert_eq!(
            e,
            "undefined template variable `tokn` — defined: env, scenario; captures of earlier steps: token"
        );
        assert!(t
            .check("{{ x ", &scope, &caps)
            .unwrap_err()
            .starts_with("invalid template"));
    }
}
