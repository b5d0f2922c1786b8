//! TAP 13 (`--tap`): a plan, one `ok`/`not ok` line per scenario, a YAML block with the
//! failure (step, reason, message, duration), `# SKIP` for scenarios `--fail-fast` cancelled and
//! a `# flaky` note on the ones that passed on a retry.

use std::fmt::Write as _;

use super::execute::{Outcome, Verdict};

pub fn render(outcomes: &[Outcome]) -> String {
    let mut s = format!("TAP version 13\n1..{}\n", outcomes.len());
    for (i, o) in outcomes.iter().enumerate() {
        let n = i + 1;
        let name = o.scenario.name.replace('#', "\\#");
        match o.verdict {
            Verdict::Passed => {
                let _ = writeln!(s, "ok {n} - {name}");
            }
            Verdict::Flaky => {
                let _ = writeln!(
                    s,
                    "ok {n} - {name} # flaky: passed on attempt {}",
                    o.runs.len()
                );
            }
            Verdict::Skipped => {
                let why = o.note.as_deref().unwrap_or("skipped").replace('#', "\\#");
                let _ = writeln!(s, "ok {n} - {name} # SKIP {why}");
            }
            Verdict::Failed => {
                let _ = writeln!(s, "not ok {n} - {name}");
                s.push_str("  ---\n");
                let r = o.last();
                let _ = writeln!(s, "  file: {}", yaml_str(o.file()));
                if let Some(step) = r.and_then(|r| r.failed_step.as_deref()) {
                    let _ = writeln!(s, "  step: {}", yaml_str(step));
                }
                if let Some(f) = r.and_then(|r| r.failure()) {
                    let _ = writeln!(s, "  reason: {}", f.reason);
                }
                let msg = o.failure_line().unwrap_or_default();
                let _ = writeln!(s, "  message: {}", yaml_str(&msg));
                let _ = writeln!(s, "  duration_ms: {}", o.duration().as_millis());
                let _ = writeln!(s, "  attempts: {}", o.runs.len());
                s.push_str("  ...\n");
            }
        }
    }
    s
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
