//! Typed deserialization that reports every structural error, each at its place, in our words.
//!
//! serde stops at the first error. To report them all, the loader deserializes one unit (a
//! scenario's own keys, or one step) from its `serde_norway::Value` through
//! `serde_path_to_error`, and after an error removes the offending node from the Value and tries
//! again, a bounded number of times. The "missing key" that removing a required node causes is
//! a follow-on, not a new problem, so it is suppressed. Removing list items shifts the indices
//! of the items after them; paths are mapped back to the indices as written before reporting.
//!
//! serde's messages ("invalid type: string \"x\", expected u16") are rewritten into the
//! loader's style (`` `port` is the string "x" — expected a whole number from 0 to 65535 ``).

use std::collections::{HashMap, HashSet};

use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::error::FileErrors;
use super::locate::{index_path, key_path, parent_path, PosIndex};
use super::suggest;

/// More rounds than this and the unit is given up (its errors so far are reported).
const MAX_ROUNDS: usize = 64;

/// What a recovering deserialization produced.
pub struct Recovered<T> {
    /// `None` when the unit could not be typed at all (e.g. a missing required key at its root).
    pub value: Option<T>,
    /// Paths (as written) of nodes removed after an error; checks that involve them are skipped
    /// so a problem is reported once, not again as a consequence.
    pub removed: HashSet<String>,
}

impl<T> Recovered<T> {
    pub fn damaged(&self) -> bool {
        !self.removed.is_empty()
    }
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Deserialize `value`, which sits at `base` in the file; `what` names it in messages
/// ("a scenario", "a step").
pub fn deserialize_recovering<T: DeserializeOwned>(
    mut value: Value,
    base: &str,
    what: &str,
    index: &PosIndex,
    errors: &mut FileErrors,
) -> Recovered<T> {
    let mut removed: HashSet<String> = HashSet::new();
    // Original indices removed from each list (keyed by the list's path as written).
    let mut removed_items: HashMap<String, Vec<usize>> = HashMap::new();
    // Unknown keys reported so far: (path of their mapping, key).
    let mut unknown_keys: Vec<(String, String)> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let err = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(v) => {
                return Recovered {
                    value: Some(v),
                    removed,
                }
            }
            Err(e) => e,
        };
        let mut segs = Vec::new();
        for s in err.path().iter() {
            match s {
                serde_path_to_error::Segment::Map { key } => segs.push(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => segs.push(Seg::Index(*index)),
                _ => break,
            }
        }
        let orig = original_path(base, &segs, &removed_items);
        let raw = err.inner().to_string();
        let rel_parent = if segs.is_empty() {
            None
        } else {
            Some(original_path(base, &segs[..segs.len() - 1], &removed_items))
        };
        let report = rewrite(&raw, &orig, base, rel_parent.as_deref(), what);
        match report {
            Report::Missing(field) => {
                // A follow-on of a removed node, or of a misspelt key already reported with
                // "did you mean" (`naem:` → missing `name`), is not a new problem.
                let misspelt = unknown_keys.iter().any(|(parent, k)| {
                    parent == &orig
                        && (suggest::closest(k, [field.as_str()]).is_some()
                            || (k == "name" && field == "scenario"))
                });
                if !removed.contains(&key_path(&orig, &field)) && !misspelt {
                    errors.push(
                        index.key(&orig),
                        format!(
                            "missing required key `{field}` in {} — expected `{field}:` here",
                            context_name(&orig, base, what)
                        ),
                    );
                }
            }
            Report::UnknownKey(msg) => {
                errors.push(index.key(&orig), msg);
                if let (Some(parent), Some(Seg::Key(k))) = (&rel_parent, segs.last()) {
                    unknown_keys.push((parent.clone(), k.clone()));
                }
            }
            Report::Value(msg) => errors.push(index.value(&orig), msg),
        }
        if segs.is_empty() || !remove(&mut value, &segs) {
            break;
        }
        if let Some(Seg::Index(_)) = segs.last() {
            let list = original_path(base, &segs[..segs.len() - 1], &removed_items);
            let i = orig_index(&list, current_index(&segs), &removed_items);
            removed_items.entry(list).or_default().push(i);
        }
        removed.insert(orig);
    }
    Recovered {
        value: None,
        removed,
    }
}

fn current_index(segs: &[Seg]) -> usize {
    match segs.last() {
        Some(Seg::Index(i)) => *i,
        _ => 0,
    }
}

/// The index as written of what is now item `i` of the list at `list`.
fn orig_index(list: &str, i: usize, removed_items: &HashMap<String, Vec<usize>>) -> usize {
    let mut j = i;
    if let Some(gone) = removed_items.get(list) {
        let mut gone = gone.clone();
        gone.sort_unstable();
        for g in gone {
            if g <= j {
                j += 1;
            }
        }
    }
    j
}

fn original_path(base: &str, segs: &[Seg], removed_items: &HashMap<String, Vec<usize>>) -> String {
    let mut p = base.to_string();
    for s in segs {
        p = match s {
            Seg::Key(k) => key_path(&p, k),
            Seg::Index(i) => {
                let j = orig_index(&p, *i, removed_items);
                index_path(&p, j)
            }
        };
    }
    p
}

fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Remove the node at `segs`; false when there is nothing to remove.
fn remove(value: &mut Value, segs: &[Seg]) -> bool {
    let Some((last, up)) = segs.split_last() else {
        return false;
    };
    let mut cur = value;
    for s in up {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Mapping(m)) => {
                let Some(found) = m
                    .iter()
                    .find(|(mk, _)| key_text(mk).as_deref() == Some(k.as_str()))
                    .map(|(mk, _)| mk.clone())
                else {
                    return false;
                };
                match m.get_mut(&found) {
                    Some(v) => v,
                    None => return false,
                }
            }
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Seg::Key(k), Value::Mapping(m)) => {
            let found = m
                .iter()
                .find(|(mk, _)| key_text(mk).as_deref() == Some(k.as_str()))
                .map(|(mk, _)| mk.clone());
            match found {
                Some(f) => m.remove(&f).is_some(),
                None => false,
            }
        }
        (Seg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
            true
        }
        _ => false,
    }
}

enum Report {
    Missing(String),
    UnknownKey(String),
    Value(String),
}

/// The text between the first pair of backticks after `prefix`.
fn ticked(raw: &str, prefix: &str) -> Option<String> {
    let rest = raw.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

/// Every backticked word after "expected" in serde's unknown-field message.
fn expected_words(raw: &str) -> Vec<String> {
    let Some(at) = raw.find(", expected ") else {
        return vec![];
    };
    raw[at..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The readable name of the node at `path`: its key, with any list indices after it.
fn node_name(path: &str) -> String {
    let mut p = path;
    let mut suffix = String::new();
    while p.ends_with(']') && !p.ends_with("\"]") {
        let open = p.rfind('[').unwrap_or(0);
        suffix = format!("{}{suffix}", &p[open..]);
        p = &p[..open];
    }
    let start = parent_path(p).map(|pp| pp.len()).unwrap_or(0);
    let last = p[start..].trim_start_matches('.');
    let last = last
        .strip_prefix("[\"")
        .and_then(|s| s.strip_suffix("\"]"))
        .unwrap_or(last);
    format!("{last}{suffix}")
}

/// How to name the mapping at `path` in messages ("an http step", "`tls_config`").
pub fn context_name(path: &str, base: &str, what: &str) -> String {
    if path == base {
        return what.to_string();
    }
    let name = node_name(path);
    let key = name.split('[').next().unwrap_or("");
    if name.ends_with(']') {
        return format!("a `{key}` item");
    }
    let grand = parent_path(path).map(node_name).unwrap_or_default();
    match key {
        // The kinds a one-step scenario writes at the top level (the `ws.*` keys read as keys).
        k if super::kinds::shorthand_kinds().contains(&k) => {
            format!("{} {k} step", super::kinds::article(k))
        }
        "body" if grand == "expect" => "`expect.body`".into(),
        _ if grand == "headers" => "a header matcher".into(),
        _ => format!("`{key}`"),
    }
}

fn got_text(g: &str) -> String {
    if let Some(s) = g.strip_prefix("string ") {
        return format!("the string {s}");
    }
    for p in ["integer ", "floating point "] {
        if let Some(n) = g.strip_prefix(p) {
            return format!("the number {}", n.trim_matches('`'));
        }
    }
    if let Some(b) = g.strip_prefix("boolean ") {
        return format!("the boolean {}", b.trim_matches('`'));
    }
    match g {
        "sequence" => "a list".into(),
        "map" => "a mapping".into(),
        "unit value" | "unit" => "empty (null)".into(),
        _ => g.to_string(),
    }
}

fn expected_text(e: &str) -> String {
    match e {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "usize" => "a whole number, 0 or more".into(),
        "i64" => "a whole number".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        _ if e.starts_with("struct ") => "a mapping".into(),
        _ => e.to_string(),
    }
}

fn rewrite(raw: &str, path: &str, base: &str, parent: Option<&str>, what: &str) -> Report {
    if let Some(f) = ticked(raw, "missing field `") {
        return Report::Missing(f);
    }
    if let Some(k) = ticked(raw, "unknown field `") {
        let all = expected_words(raw);
        let candidates: Vec<&str> = all.iter().map(String::as_str).collect();
        let ctx = context_name(parent.unwrap_or(base), base, what);
        if k == "name" && candidates.contains(&"scenario") {
            return Report::UnknownKey(
                "unknown key `name` — a scenario's name goes in `scenario:`".into(),
            );
        }
        let msg = match suggest::closest(&k, candidates.iter().copied()) {
            Some(c) => format!("unknown key `{k}` — did you mean `{c}`?"),
            None if candidates.is_empty() => format!("unknown key `{k}` in {ctx}"),
            None => format!(
                "unknown key `{k}` in {ctx} — expected one of: {}",
                candidates.join(", ")
            ),
        };
        return Report::UnknownKey(msg);
    }
    let subject = if path == base {
        what.to_string()
    } else {
        format!("`{}`", node_name(path))
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = raw.strip_prefix(prefix) {
            if let Some((got, exp)) = rest.rsplit_once(", expected ") {
                return Report::Value(format!(
                    "{subject} is {} — expected {}",
                    got_text(got),
                    expected_text(exp)
                ));
            }
        }
    }
    if let Some(rest) = raw.strip_prefix("invalid length ") {
        if let Some((n, exp)) = rest.split_once(", expected ") {
            return Report::Value(format!("{subject} has {n} items — expected {exp}"));
        }
    }
    if let Some(v) = ticked(raw, "unknown variant `") {
        let words = expected_words(raw);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        return Report::Value(format!(
            "unknown value `{v}` for {subject}{}",
            suggest::hint(&v, &words)
        ));
    }
    // Our own visitors' messages are final; name the key in "unknown value" ones.
    if let Some(rest) = raw.strip_prefix("unknown value `") {
        if let Some(end) = rest.find('`') {
            return Report::Value(format!(
                "unknown value `{}` for {subject}{}",
                &rest[..end],
                &rest[end + 1..]
            ));
        }
    }
    Report::Value(raw.to_string())
}
