//! Templates (`{{ … }}`, minijinja) rendered at load time, with strict undefined: an unknown
//! variable is a load error that names it and lists what is defined, instead of an empty string
//! in a URL at 3 a.m.
//!
//! What a template sees: the scenario's `vars` (each var sees the ones before it), `env`
//! (the process environment, `env.NAME`), `scenario` (its name) and `region` (only when the
//! agent has one: using it without a region is an error). Per-run functions and captures come
//! with multi-step scenarios.

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value as JValue};
use serde_norway::Value;

use super::error::FileErrors;
use super::locate::{index_path, key_path, PosIndex};
use super::units::VarValue;

pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// One per load: the engine and a snapshot of the environment.
pub struct Templates {
    env: Environment<'static>,
    process_env: JValue,
    env_names: std::collections::HashSet<String>,
    region: Option<String>,
}

/// The variables a template of one scenario sees.
#[derive(Clone)]
pub struct Scope {
    pairs: Vec<(String, JValue)>,
}

impl Templates {
    pub fn new(region: Option<String>) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let env_names = vars.iter().map(|(k, _)| k.clone()).collect();
        Templates {
            env,
            process_env: JValue::from_pairs(vars),
            env_names,
            region,
        }
    }

    /// The scope of a scenario before its vars.
    pub fn scope(&self, scenario: &str) -> Scope {
        let mut pairs = vec![
            ("env".to_string(), self.process_env.clone()),
            ("scenario".to_string(), JValue::from(scenario)),
        ];
        if let Some(r) = &self.region {
            pairs.push(("region".to_string(), JValue::from(r.as_str())));
        }
        Scope { pairs }
    }

    /// Render one string; the error is a finished message.
    pub fn render(&self, src: &str, scope: &Scope) -> Result<String, String> {
        let tmpl = self.env.template_from_str(src).map_err(|e| {
            format!(
                "invalid template {src:?}: {} — expected Jinja syntax like {{{{ name }}}}",
                e.detail().unwrap_or("syntax error")
            )
        })?;
        let ctx = JValue::from_pairs(scope.pairs.iter().cloned());
        tmpl.render(ctx).map_err(|e| {
            if let Some(m) = self.explain_undefined(&tmpl.undeclared_variables(true), scope) {
                return m;
            }
            let what = match e.kind() {
                ErrorKind::UndefinedError => "an undefined value".to_string(),
                _ => e.detail().unwrap_or("error").to_string(),
            };
            format!("template {src:?} failed: {what} — expected it to render with the defined variables")
        })
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
            if !scope.pairs.iter().any(|(k, _)| k == top) {
                if top == "region" {
                    return Some(
                        "undefined template variable `region` — no region is set (start sonde with --region NAME)"
                            .into(),
                    );
                }
                let mut defined: Vec<&str> = scope.pairs.iter().map(|(k, _)| k.as_str()).collect();
                defined.sort_unstable();
                return Some(format!(
                    "undefined template variable `{top}` — defined: {}",
                    defined.join(", ")
                ));
            }
            if top == "env" {
                if let Some(var) = parts.next() {
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
            let value = match v {
                VarValue::Str(s) if is_template(s) => match self.render(s, scope) {
                    Ok(r) => JValue::from(r),
                    Err(m) => {
                        errors.push(index.value(&key_path(vars_path, name)), m);
                        // Defined anyway, so its users do not report it again.
                        JValue::from("")
                    }
                },
                VarValue::Str(s) => JValue::from(s.as_str()),
                VarValue::Int(n) => JValue::from(*n),
                VarValue::Float(f) => JValue::from(*f),
                VarValue::Bool(b) => JValue::from(*b),
            };
            rendered.push((name.clone(), serde_json::Value::String(value.to_string())));
            scope.pairs.retain(|(k, _)| k != name);
            scope.pairs.push((name.clone(), value));
        }
        rendered
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_but_defaults_work() {
        let t = Templates::new(None);
        let mut scope = t.scope("s");
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
}
