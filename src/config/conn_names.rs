//! Connection names checked at load: a step that works `on:` a connection no step of the
//! scenario opens (`as:`) would only fail at run time, every run. The check is the same for
//! every connection kind (ws, tcp, mqtt…): each kind says which name a step opens or uses
//! ([`super::kinds::StepKind::opens_connection`], [`super::kinds::StepKind::uses_connection`]).

use super::error::{FileErrors, Pos};

/// One step's part in the scenario's connections.
pub struct ConnRef {
    /// Where the step's `on:` is (for a group's step: the use, see `prefix`).
    pub pos: Pos,
    /// For a group's step: where in the group, said before the message.
    pub prefix: Option<String>,
    pub kind: &'static str,
    pub opens: Option<String>,
    pub uses: Option<String>,
}

/// A name still to be rendered per run (`on: "{{ user }}"`) cannot be checked now.
fn templated(name: &str) -> bool {
    name.contains("{{") || name.contains("{%")
}

/// The opened name closest to `name`, if within two edits (names are short: `bobby` for `bob`).
fn near<'a>(name: &str, opened: &[&'a str]) -> Option<&'a str> {
    opened
        .iter()
        .map(|o| (strsim::damerau_levenshtein(name, o), *o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

/// Every `on:` must name a connection some step opens with `as:`; a near miss is suggested.
pub fn check(refs: &[ConnRef], errors: &mut FileErrors) {
    let mut opened: Vec<&str> = refs.iter().filter_map(|r| r.opens.as_deref()).collect();
    // A templated name is known per run only; an invalid one was reported where it is
    // written (and every use of it would only repeat that).
    if opened
        .iter()
        .any(|n| templated(n) || !super::flow::valid_name(n))
    {
        return;
    }
    for r in refs {
        let Some(name) = r.uses.as_deref() else {
            continue;
        };
        if templated(name) || opened.contains(&name) {
            continue;
        }
        let hint = match near(name, &opened) {
            Some(c) => format!(" — did you mean `{c}`?"),
            None if opened.is_empty() => {
                " — expected a connect step (like ws.connect) with `as:` before it".to_string()
            }
            None => {
                opened.sort_unstable();
                opened.dedup();
                format!(
                    " — expected one of the opened connections: {}",
                    opened.join(", ")
                )
            }
        };
        errors.push(
            r.pos,
            format!(
                "{}{} on connection `{name}`, which no step opens{hint}",
                r.prefix.as_deref().unwrap_or(""),
                r.kind
            ),
        );
    }
}
