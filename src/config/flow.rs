//! Builders for the keys every step kind may have: `capture` (from the sources its kind
//! offers), `retry`, and JSONPath expectations.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde_json_path::JsonPath;

use super::build::Cx;
use super::locate::key_path;
use super::model::{CaptureModel, RetryModel};
use super::units::{Ordered, VarValue};
use crate::config::matcher::Matcher;
use crate::config::scenario::{Capture, Group, JsonCheck, Retry, Source};
use crate::intern::Interner;

/// Default pause between `retry` attempts.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Shortest pause between attempts.
pub const MIN_RETRY_EVERY: Duration = Duration::from_millis(10);

/// The compiled JSONPath `text`, shared: scenarios of one shape check and capture the same
/// paths (`$.login_ok.user` in every IM session), each compiled path a few hundred bytes held
/// for the scenario's life; a step built per run finds its path compiled already.
pub fn json_path(text: &str, path: &str, cx: &mut Cx) -> Option<Arc<JsonPath>> {
    static PATHS: LazyLock<Mutex<Interner<JsonPath>>> = LazyLock::new(Default::default);
    let parsed = PATHS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_try(text, || JsonPath::parse(text));
    match parsed {
        Ok(p) => Some(p),
        Err(e) => {
            cx.err_value(
                path,
                format!("invalid JSONPath {text:?}: {e} — expected an RFC 9535 path like $.token or $.items[0].id"),
            );
            None
        }
    }
}

/// The `capture:` mapping of a step of `kind` (at `path`).
pub fn captures(
    list: Option<&Ordered<CaptureModel>>,
    path: &str,
    kind: &str,
    cx: &mut Cx,
) -> Vec<Capture> {
    let mut out = Vec::new();
    for (name, m) in list.map(|l| l.0.as_slice()).unwrap_or_default() {
        let at = key_path(path, name);
        if !valid_name(name) {
            cx.err_key(
                &at,
                format!("invalid capture name `{name}` — expected letters, digits and _, not starting with a digit (templates use it as {{{{ {name} }}}})"),
            );
            continue;
        }
        let source = source_name(m, &at, kind, cx).and_then(|src| source(m, &at, src, cx));
        if let Some(source) = source {
            out.push(Capture {
                name: name.clone(),
                source,
            });
        }
    }
    // Exact capacity, as for `json_checks`.
    out.shrink_to_fit();
    out
}

/// The one source a capture names, if a step of `kind` offers it.
fn source_name(m: &CaptureModel, at: &str, kind: &str, cx: &mut Cx) -> Option<&'static str> {
    let allowed = super::kinds::capture_sources(kind);
    let given: Vec<&'static str> = [
        ("json", m.json.is_some()),
        ("regex", m.regex.is_some()),
        ("header", m.header.is_some()),
        ("status", m.status.is_some()),
        ("cookie", m.cookie.is_some()),
        ("body", m.body.is_some()),
        ("frame", m.frame.is_some()),
    ]
    .into_iter()
    .filter(|(_, s)| *s)
    .map(|(k, _)| k)
    .collect();
    let src = match given.as_slice() {
        [one] => *one,
        [] => {
            cx.err_value(
                at,
                format!(
                    "a capture without a source — expected one of: {}",
                    allowed.join(", ")
                ),
            );
            return None;
        }
        [a, b, ..] => {
            cx.err_key(
                &key_path(at, b),
                format!("a capture with both `{a}` and `{b}` — expected exactly one source"),
            );
            return None;
        }
    };
    if !allowed.contains(&src) {
        let kinds = if allowed.is_empty() {
            "nothing can be captured here".to_string()
        } else {
            format!("expected one of: {}", allowed.join(", "))
        };
        cx.err_key(
            &key_path(at, src),
            format!("`{src}` cannot be captured from a {kind} step — {kinds}"),
        );
        return None;
    }
    if m.group.is_some() && src != "regex" {
        cx.err_key(
            &key_path(at, "group"),
            "`group` without `regex` — expected it only beside regex",
        );
        return None;
    }
    Some(src)
}

/// The capture's source `src`, its values checked.
fn source(m: &CaptureModel, at: &str, src: &str, cx: &mut Cx) -> Option<Source> {
    Some(match src {
        "json" => {
            let t = m.json.as_deref().unwrap_or_default();
            Source::Json(t.to_string(), json_path(t, &key_path(at, "json"), cx)?)
        }
        "regex" => {
            let re = cx.regex(
                m.regex.as_deref().unwrap_or_default(),
                &key_path(at, "regex"),
            )?;
            let group = regex_group(&re, m.group.as_ref(), at, cx)?;
            Source::Regex(re, group)
        }
        "header" => Source::Header(m.header.clone().unwrap_or_default()),
        "cookie" => Source::Cookie(m.cookie.clone().unwrap_or_default()),
        "status" | "body" | "frame" => {
            let flag = m.status.or(m.body).or(m.frame).unwrap_or(false);
            if !flag {
                cx.err_value(
                    &key_path(at, src),
                    format!("`{src}: false` captures nothing — expected `{src}: true`"),
                );
                return None;
            }
            match src {
                "status" => Source::Status,
                "body" => Source::Body,
                _ => Source::Frame,
            }
        }
        _ => return None,
    })
}

/// Which group of `re` a regex capture takes (default: 1 if it has a group, else 0).
fn regex_group(
    re: &regex::Regex,
    group: Option<&VarValue>,
    at: &str,
    cx: &mut Cx,
) -> Option<Group> {
    match group {
        None => Some(Group::Index(usize::from(re.captures_len() > 1))),
        Some(VarValue::Int(i)) if *i >= 0 && (*i as usize) < re.captures_len() => {
            Some(Group::Index(*i as usize))
        }
        Some(VarValue::Str(n)) if re.capture_names().flatten().any(|c| c == n) => {
            Some(Group::Name(n.clone()))
        }
        Some(_) => {
            let names: Vec<&str> = re.capture_names().flatten().collect();
            let named = if names.is_empty() {
                String::new()
            } else {
                format!(" or one of: {}", names.join(", "))
            };
            cx.err_value(
                &key_path(at, "group"),
                format!(
                    "the regex has no such group — expected 0 to {}{named}",
                    re.captures_len() - 1
                ),
            );
            None
        }
    }
}

/// Capture names are template variables.
pub fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        && !matches!(n, "env" | "scenario" | "region")
}

pub fn retry(m: Option<&RetryModel>, path: &str, cx: &mut Cx) -> Option<Retry> {
    let m = m?;
    let until = m.until_pass.unwrap_or(false);
    let attempts = match (m.attempts, until) {
        (Some(_), true) => {
            cx.err_key(
                &key_path(path, "until_pass"),
                "both `attempts` and `until_pass` — expected one of them",
            );
            return None;
        }
        (Some(0), false) => {
            cx.err_value(
                &key_path(path, "attempts"),
                "attempts 0 — expected at least 1 (the first attempt counts)",
            );
            return None;
        }
        (Some(n), false) => Some(n),
        (None, true) => None,
        (None, false) => {
            cx.err_value(
                path,
                "a retry without `attempts` or `until_pass: true` — expected one of them",
            );
            return None;
        }
    };
    let every = m.every.map_or(RETRY_EVERY, |d| d.0);
    if every < MIN_RETRY_EVERY {
        cx.err_value(
            &key_path(path, "every"),
            format!(
                "retry every {} is too short — expected at least 10ms (a failing step would spin)",
                if every.is_zero() {
                    "0s".to_string()
                } else {
                    sonde_probes::fmt_duration(every)
                }
            ),
        );
        return None;
    }
    Some(Retry {
        attempts,
        every,
        within: m.within.map(|d| d.0),
    })
}

/// `path → matcher` checks (at `path`).
pub fn json_checks(
    m: Option<&Ordered<serde_json::Value>>,
    path: &str,
    cx: &mut Cx,
) -> Vec<JsonCheck> {
    let mut out = Vec::new();
    for (p, v) in m.map(|m| m.0.as_slice()).unwrap_or_default() {
        let at = key_path(path, p);
        let Some(jp) = json_path(p, &at, cx) else {
            continue;
        };
        match Matcher::compile(v) {
            Ok(matcher) => out.push(JsonCheck {
                path_text: p.clone(),
                path: jp,
                matcher,
            }),
            Err(e) => cx.err_value(&at, format!("matcher for `{p}`: {e}")),
        }
    }
    // Exact capacity: a built step keeps its checks as long as the scenario lives, and a
    // vector grown by one push has room for four (an 80-byte check: 240 bytes unused).
    out.shrink_to_fit();
    out
}
