//! Which scenarios `sonde run` runs: `--tag` (any of them), `--name` globs (any of them) and
//! `--region` (the scenario's `regions:` as `serve` reads them). Selecting nothing is a usage
//! error: a CI job whose filter matches no scenario has most likely a typo, and a green job that
//! checked nothing would hide it.

use std::sync::Arc;

use crate::config::scenario::Scenario;

use super::RunArgs;

/// The scenarios to run, in load order.
pub fn select(all: Vec<Arc<Scenario>>, args: &RunArgs) -> Result<Vec<Arc<Scenario>>, String> {
    let globs = args
        .names
        .iter()
        .map(|g| {
            glob::Pattern::new(g).map_err(|e| {
                format!("--name {g:?} is not a glob: {e} — expected e.g. 'checkout-*'")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if all.is_empty() {
        return Err("no scenario in the given files — expected `scenario:` or `scenarios:`".into());
    }
    let loaded = all.len();
    let chosen: Vec<Arc<Scenario>> = all
        .into_iter()
        .filter(|s| args.tags.is_empty() || s.tags.iter().any(|t| args.tags.contains(t)))
        .filter(|s| globs.is_empty() || globs.iter().any(|g| g.matches(&s.name)))
        .filter(|s| crate::runtime::scheduler::selected(s, args.region.as_deref()).is_ok())
        .collect();
    if chosen.is_empty() {
        let mut why = Vec::new();
        if !args.tags.is_empty() {
            why.push(format!("--tag {}", args.tags.join(", ")));
        }
        if !args.names.is_empty() {
            why.push(format!("--name {}", args.names.join(", ")));
        }
        if let Some(r) = &args.region {
            why.push(format!("--region {r}"));
        }
        return Err(format!(
            "no scenario matches {} — expected at least one of the {} loaded",
            why.join(" and "),
            loaded
        ));
    }
    Ok(chosen)
}

/// The file a scenario was defined in (`defined_at` is `file:line:column`).
pub fn file_of(s: &Scenario) -> &str {
    let mut parts = s.defined_at.rsplitn(3, ':');
    let (col, line) = (parts.next(), parts.next());
    match (col, line, parts.next()) {
        (Some(c), Some(l), Some(file))
            if c.chars().all(|ch| ch.is_ascii_digit())
                && l.chars().all(|ch| ch.is_ascii_digit()) =>
        {
            file
        }
        _ => &s.defined_at,
    }
}
