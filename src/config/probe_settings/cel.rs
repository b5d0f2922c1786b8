//! blackbox_exporter's CEL body matchers (`fail_if_body_json_matches_cel`,
//! `fail_if_body_json_not_matches_cel`, since blackbox 0.27): the response body parsed as JSON is
//! the variable `body`, and the expression must come out a bool.
//!
//! As in blackbox, each of these fails the probe: a body that is not JSON, an expression that
//! errs while evaluating (a missing field, a type mismatch), one whose result is not a bool, and
//! of course the match (or the non-match) itself. The expression is compiled once at load.

use std::sync::Arc;

use sonde_probes::http::BodyCheck;

/// The calls that bind their own variables (`x` in `body.items.all(x, x > 0)`): with one of
/// them in the expression, a name other than `body` may be legitimate.
const MACROS: &[&str] = &["all", "exists", "exists_one", "map", "filter"];

/// A compiled expression and which way it fails.
pub struct CelCheck {
    expr: String,
    program: cel::Program,
    /// true: `fail_if_body_json_matches_cel`; false: `..._not_matches_cel`.
    fail_if_matches: bool,
}

impl std::fmt::Debug for CelCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelCheck")
            .field("expr", &self.expr)
            .field("fail_if_matches", &self.fail_if_matches)
            .finish()
    }
}

impl CelCheck {
    /// Compile `expr`. Err: why it cannot be used (a syntax error, an undeclared variable).
    pub fn compile(expr: &str, fail_if_matches: bool) -> Result<Arc<dyn BodyCheck>, String> {
        if expr.trim().is_empty() {
            return Err("empty CEL expression — expected one like `body.status == 'ok'`".into());
        }
        let program = cel::Program::compile(expr).map_err(|e| {
            format!(
                "could not compile CEL program: {}",
                one_line(&e.to_string())
            )
        })?;
        let refs = program.references();
        // Macros parse into comprehensions, not calls: look for them in the text.
        let binds = MACROS.iter().any(|m| {
            expr.match_indices(m).any(|(i, _)| {
                expr[i + m.len()..].trim_start().starts_with('(')
                    && expr[..i].trim_end().ends_with('.')
            })
        });
        if !binds {
            let mut unknown: Vec<&str> = refs
                .variables()
                .into_iter()
                .filter(|v| *v != "body")
                .collect();
            unknown.sort_unstable();
            if !unknown.is_empty() {
                return Err(format!(
                    "undeclared reference to {} in the CEL expression — the response is the \
                     variable `body`",
                    unknown.join(", ")
                ));
            }
        }
        Ok(Arc::new(CelCheck {
            expr: expr.to_string(),
            program,
            fail_if_matches,
        }))
    }

    fn which(&self) -> &'static str {
        if self.fail_if_matches {
            "fail_if_body_json_matches_cel"
        } else {
            "fail_if_body_json_not_matches_cel"
        }
    }

    /// The expression's value over `json`: Ok(bool), or why there is none.
    fn eval(&self, json: serde_json::Value) -> Result<bool, String> {
        let mut ctx = cel::Context::default();
        ctx.add_variable_from_value("body", to_cel(json));
        // The body is the peer's: whatever it holds must not take the prober down.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.program.execute(&ctx)))
                .map_err(|_| "the CEL interpreter panicked".to_string())?;
        match result {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "the CEL expression's result is not a bool but {}",
                type_name(&other)
            )),
            Err(e) => Err(format!("error evaluating the CEL expression: {e}")),
        }
    }
}

impl BodyCheck for CelCheck {
    fn check(&self, body: &[u8]) -> Result<(), String> {
        let clip = clip(&self.expr);
        let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            format!(
                "the body is not JSON ({e}) — expected JSON for {} `{clip}`",
                self.which()
            )
        })?;
        let matched = self
            .eval(json)
            .map_err(|e| format!("{e} ({} `{clip}`)", self.which()))?;
        match (matched, self.fail_if_matches) {
            (true, true) => Err(format!(
                "body matched the CEL expression `{clip}` — expected no match ({})",
                self.which()
            )),
            (false, false) => Err(format!(
                "body did not match the CEL expression `{clip}` — expected a match ({})",
                self.which()
            )),
            _ => Ok(()),
        }
    }
}

/// JSON as blackbox's Go sees it (`json.Unmarshal` into `any`): every number is a double. CEL
/// compares doubles with ints, so `body.count > 2` reads as written.
fn to_cel(v: serde_json::Value) -> cel::Value {
    use serde_json::Value as J;
    match v {
        J::Null => cel::Value::Null,
        J::Bool(b) => cel::Value::Bool(b),
        J::Number(n) => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => cel::Value::String(Arc::new(s)),
        J::Array(a) => cel::Value::List(Arc::new(a.into_iter().map(to_cel).collect())),
        J::Object(o) => cel::Value::Map(cel::objects::Map {
            map: Arc::new(
                o.into_iter()
                    .map(|(k, v)| (cel::objects::Key::String(Arc::new(k)), to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

fn type_name(v: &cel::Value) -> &'static str {
    match v {
        cel::Value::List(_) => "a list",
        cel::Value::Map(_) => "a map",
        cel::Value::Function(_, _) => "a function",
        cel::Value::Int(_) => "an int",
        cel::Value::UInt(_) => "a uint",
        cel::Value::Float(_) => "a double",
        cel::Value::String(_) => "a string",
        cel::Value::Bytes(_) => "bytes",
        cel::Value::Bool(_) => "a bool",
        cel::Value::Null => "null",
        #[allow(unreachable_patterns)]
        _ => "another type",
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Expressions are the operator's, but a long one must not flood a log line.
fn clip(s: &str) -> String {
    const MAX: usize = 120;
    let s = one_line(s);
    if s.chars().count() <= MAX {
        return s;
    }
    let mut out: String = s.chars().take(MAX).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expr: &str, fail_if_matches: bool, body: &str) -> Result<(), String> {
        CelCheck::compile(expr, fail_if_matches)
            .unwrap()
            .check(body.as_bytes())
    }

    const UPSTREAM: &str = "body.foo == 'bar' && body.baz.startsWith('q')";

    #[test]
    fn not_matches_passes_when_true_and_fails_when_false() {
        assert_eq!(
            check(UPSTREAM, false, r#"{"foo":"bar","baz":"qux"}"#),
            Ok(())
        );
        let e = check(UPSTREAM, false, r#"{"foo":"bar","baz":"zap"}"#).unwrap_err();
        assert!(e.contains("did not match"), "{e}");
    }

    #[test]
    fn matches_fails_when_true_and_passes_when_false() {
        let e = check("body.status == 'down'", true, r#"{"status":"down"}"#).unwrap_err();
        assert!(e.contains("body matched"), "{e}");
        assert_eq!(
            check("body.status == 'down'", true, r#"{"status":"up"}"#),
            Ok(())
        );
    }

    #[test]
    fn erroring_evaluation_fails_either_way() {
        // A missing key is an evaluation error in CEL, not false: both matchers fail.
        for fail_if_matches in [true, false] {
            let e = check("body.missing == 1", fail_if_matches, r#"{"a":1}"#).unwrap_err();
            assert!(e.contains("error evaluating"), "{e}");
        }
        let e = check("body.name", false, r#"{"name":"x"}"#).unwrap_err();
        assert!(e.contains("not a bool"), "{e}");
        let e = check("body.a == 1", true, "not json").unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
    }

    #[test]
    fn macros_and_numbers_work() {
        let body = r#"{"items":[{"ok":true},{"ok":true}],"n":3}"#;
        assert_eq!(check("body.items.all(i, i.ok)", false, body), Ok(()));
        assert_eq!(
            check("body.n > 2 && size(body.items) == 2", false, body),
            Ok(())
        );
        // Numbers are doubles, as in Go: equal to the int literal all the same.
        assert_eq!(check("body.n == 3", false, body), Ok(()));
    }

    #[test]
    fn bad_expressions_are_refused_at_load() {
        let e = CelCheck::compile("body.foo ==", false).unwrap_err();
        assert!(e.contains("could not compile"), "{e}");
        let e = CelCheck::compile("foo.bar == 1", false).unwrap_err();
        assert!(e.contains("undeclared reference to foo"), "{e}");
        assert!(CelCheck::compile("  ", true).is_err());
    }
}
