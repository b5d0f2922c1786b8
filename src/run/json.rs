//! The JSON report (`--json F`): the summary, then per scenario its verdict and every attempt's
//! full trace — the same redacted trace `/api/v1/scenarios/{name}` shows.

use std::time::Duration;

use serde_json::{json, Value};

use super::execute::{Outcome, Verdict};

pub fn render(outcomes: &[Outcome], wall: Duration) -> Value {
    let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
    let scenarios: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            json!({
                "scenario": o.scenario.name,
                "file": o.file(),
                "defined_at": o.scenario.defined_at,
                "tags": o.scenario.tags,
                "verdict": o.verdict.as_str(),
                "duration": o.duration().as_secs_f64(),
                "attempts": o.runs.len(),
                "message": o.failure_line(),
                "runs": o.runs.iter().map(|r| r.to_json(&o.scenario)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "sonde_version": env!("CARGO_PKG_VERSION"),
        "summary": {
            "passed": count(Verdict::Passed) + count(Verdict::Flaky),
            "failed": count(Verdict::Failed),
            "skipped": count(Verdict::Skipped),
            "flaky": count(Verdict::Flaky),
            "wall_time": wall.as_secs_f64(),
        },
        "scenarios": scenarios,
    })
}
