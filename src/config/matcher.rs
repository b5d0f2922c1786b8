//! Structured expectations on one value: `equals`, `not`, `contains`, `matches`, `exists`, `lt`,
//! `le`, `gt`, `ge`, `len`, `one_of` — written as a YAML mapping (all given must hold) or a plain
//! scalar (meaning `equals`). No string DSL: what is checked is what is written.
//!
//! Values come from JSONPath queries, headers, bodies and frames as JSON. Numbers compare as
//! numbers; a string and a number are equal when their texts are (`"42"` equals `42`), because a
//! template always renders to a string.

use regex::Regex;
use serde_json::Value as J;

/// Every check must hold.
#[derive(Clone, Debug, Default)]
pub struct Matcher(pub Vec<Check>);

#[derive(Clone, Debug)]
pub enum Check {
    Equals(J),
    Contains(String),
    Matches(Regex),
    Exists(bool),
    Cmp(Op, f64),
    Len(Matcher),
    OneOf(Vec<J>),
    Not(Matcher),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "≤",
            Op::Gt => ">",
            Op::Ge => "≥",
        }
    }
}

/// The keys a matcher mapping may have.
pub const KEYS: [&str; 11] = [
    "equals", "not", "contains", "matches", "exists", "lt", "le", "gt", "ge", "len", "one_of",
];

/// A value as it reads in messages: strings quoted, JSON otherwise, clipped.
pub fn show(v: &J) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        let cut: String = s.chars().take(117).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn text_of(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(v: &J) -> Option<f64> {
    match v {
        J::Number(n) => n.as_f64(),
        J::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Equality as described in the module docs.
pub fn loose_eq(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
        (J::String(s), J::Number(_) | J::Bool(_)) | (J::Number(_) | J::Bool(_), J::String(s)) => {
            let other = if matches!(a, J::String(_)) { b } else { a };
            *s.trim() == *other.to_string()
        }
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| loose_eq(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| loose_eq(v, w)))
        }
        _ => a == b,
    }
}

impl Matcher {
    /// Compile from the YAML as JSON. The error is a finished "— expected" message.
    pub fn compile(v: &J) -> Result<Matcher, String> {
        let m = match v {
            J::Object(map) => map,
            J::Array(_) => {
                return Err(
                    "a list — expected a value (meaning equals) or a mapping of checks (use one_of: for a list of allowed values)"
                        .into(),
                )
            }
            scalar => return Ok(Matcher(vec![Check::Equals(scalar.clone())])),
        };
        if m.is_empty() {
            return Err(format!(
                "an empty matcher — expected at least one of: {}",
                KEYS.join(", ")
            ));
        }
        let mut checks = Vec::new();
        for (k, val) in m {
            let c = match k.as_str() {
                "equals" => Check::Equals(val.clone()),
                "not" => Check::Not(Matcher::compile(val).map_err(|e| format!("in `not`: {e}"))?),
                "contains" => Check::Contains(text_of(val)),
                "matches" => {
                    let src = text_of(val);
                    Check::Matches(Regex::new(&src).map_err(|e| {
                        format!(
                            "invalid regex {src:?}: {} — expected a regular expression",
                            e.to_string().lines().last().unwrap_or("")
                        )
                    })?)
                }
                "exists" => match val {
                    J::Bool(b) => Check::Exists(*b),
                    _ => {
                        return Err("`exists` is not true or false — expected true or false".into())
                    }
                },
                "lt" | "le" | "gt" | "ge" => {
                    let op = match k.as_str() {
                        "lt" => Op::Lt,
                        "le" => Op::Le,
                        "gt" => Op::Gt,
                        _ => Op::Ge,
                    };
                    let n = number(val)
                        .ok_or_else(|| format!("`{k}` is {} — expected a number", show(val)))?;
                    Check::Cmp(op, n)
                }
                "len" => Check::Len(Matcher::compile(val).map_err(|e| format!("in `len`: {e}"))?),
                "one_of" => {
                    match val {
                        J::Array(items) if !items.is_empty() => Check::OneOf(items.clone()),
                        _ => return Err(
                            "`one_of` is not a non-empty list — expected a list of allowed values"
                                .into(),
                        ),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown check `{other}`{}",
                        crate::config::hint(other, &KEYS)
                    ))
                }
            };
            checks.push(c);
        }
        Ok(Matcher(checks))
    }

    /// `Ok` when every check holds on `actual` (`None`: nothing was found); else what was
    /// expected, for "— expected …" messages.
    pub fn test(&self, actual: Option<&J>) -> Result<(), String> {
        for c in &self.0 {
            if !c.holds(actual) {
                return Err(c.describe());
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(Check::describe)
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

impl Check {
    fn holds(&self, actual: Option<&J>) -> bool {
        match self {
            Check::Exists(want) => actual.is_some() == *want,
            Check::Not(m) => m.test(actual).is_err(),
            _ => {
                let Some(a) = actual else { return false };
                match self {
                    Check::Equals(e) => loose_eq(a, e),
                    Check::Contains(s) => match a {
                        J::Array(items) => items.iter().any(|i| text_of(i) == *s),
                        other => text_of(other).contains(s.as_str()),
                    },
                    Check::Matches(r) => r.is_match(&text_of(a)),
                    Check::Cmp(op, bound) => number(a).is_some_and(|n| match op {
                        Op::Lt => n < *bound,
                        Op::Le => n <= *bound,
                        Op::Gt => n > *bound,
                        Op::Ge => n >= *bound,
                    }),
                    Check::Len(m) => {
                        let n = match a {
                            J::Array(v) => v.len(),
                            J::Object(v) => v.len(),
                            J::String(s) => s.chars().count(),
                            _ => return false,
                        };
                        m.test(Some(&J::from(n))).is_ok()
                    }
                    Check::OneOf(items) => items.iter().any(|i| loose_eq(a, i)),
                    Check::Exists(_) | Check::Not(_) => unreachable!("handled above"),
                }
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Check::Equals(e) => format!("equals {}", show(e)),
            Check::Contains(s) => format!("contains {s:?}"),
            Check::Matches(r) => format!("matches /{}/", r.as_str()),
            Check::Exists(true) => "exists".into(),
            Check::Exists(false) => "does not exist".into(),
            Check::Cmp(op, n) => format!("{} {n}", op.symbol()),
            Check::Len(m) => format!("length {}", m.describe()),
            Check::OneOf(items) => format!(
                "one of [{}]",
                items.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            Check::Not(m) => format!("not ({})", m.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: J) -> Matcher {
        Matcher::compile(&v).unwrap()
    }

    #[test]
    fn scalars_mean_equals_and_numbers_compare_loosely() {
        assert!(m(json!(200)).test(Some(&json!(200.0))).is_ok());
        assert!(m(json!("42")).test(Some(&json!(42))).is_ok());
        assert_eq!(
            m(json!("a")).test(Some(&json!("b"))),
            Err("equals \"a\"".into())
        );
        assert!(m(json!("a")).test(None).is_err());
    }

    #[test]
    fn every_check() {
        let v = json!({"gt": 1, "le": 3});
        assert!(m(v.clone()).test(Some(&json!(3))).is_ok());
        assert_eq!(m(v).test(Some(&json!(4))), Err("≤ 3".into()));
        assert!(m(json!({"contains": "ok"}))
            .test(Some(&json!("all ok")))
            .is_ok());
        assert!(m(json!({"contains": "b"}))
            .test(Some(&json!(["a", "b"])))
            .is_ok());
        assert!(m(json!({"matches": "^a\\d$"}))
            .test(Some(&json!("a1")))
            .is_ok());
        assert!(m(json!({"exists": false})).test(None).is_ok());
        assert!(m(json!({"exists": true})).test(Some(&J::Null)).is_ok());
        assert!(m(json!({"len": 2})).test(Some(&json!([1, 2]))).is_ok());
        assert!(m(json!({"len": {"gt": 2}}))
            .test(Some(&json!("ab")))
            .is_err());
        assert!(m(json!({"one_of": ["online", "away"]}))
            .test(Some(&json!("away")))
            .is_ok());
        let not = m(json!({"not": {"equals": "error"}}));
        assert!(not.test(Some(&json!("ok"))).is_ok());
        assert_eq!(
            not.test(Some(&json!("error"))),
            Err("not (equals \"error\")".into())
        );
    }

    #[test]
    fn bad_matchers_say_what_was_expected() {
        assert!(Matcher::compile(&json!({"eqals": 1}))
            .unwrap_err()
            .contains("did you mean `equals`?"));
        assert!(Matcher::compile(&json!({"lt": "x"}))
            .unwrap_err()
            .contains("expected a number"));
        assert!(Matcher::compile(&json!({})).is_err());
    }
}
