//! What `sonde run` prints for people.
//!
//! As each scenario finishes, one line: verdict, name, duration, and why it failed (with
//! `--verbose`, every step and its duration below it). Then, for each failure, the failing step
//! with expected vs actual and an excerpt of the request/response or WebSocket frames, and a
//! final `N passed, N failed[, N skipped]` line — the form CI systems read as a test summary.
//!
//! On a terminal there is live progress (a spinner per scenario in flight, drawn by indicatif
//! on stderr) and colour. Not a terminal, `CI=true` or `NO_COLOR`: plain lines, no escape code.
//! Everything printed comes from the redacted trace or goes through the scenario's redaction,
//! so secrets never show.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{RunReport, StepFacts, StepReport};
use crate::time::fmt_long;

use super::execute::{Outcome, Verdict};

/// Whether to draw live progress and colour.
#[derive(Copy, Clone, Debug)]
pub struct Style {
    pub fancy: bool,
}

impl Style {
    /// Colour and progress only for a person at a terminal: stdout and stderr are TTYs, `CI` is
    /// not set to true, `NO_COLOR` is not set (no-color.org: any non-empty value).
    pub fn detect() -> Style {
        let ci = std::env::var("CI")
            .map(|v| !v.is_empty() && v != "false" && v != "0")
            .unwrap_or(false);
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            fancy: std::io::stdout().is_terminal()
                && std::io::stderr().is_terminal()
                && !ci
                && !no_color,
        }
    }

    fn paint(&self, text: &str, verdict: Verdict) -> String {
        if !self.fancy {
            return text.to_string();
        }
        let s = console::Style::new().force_styling(true).bold();
        let s = match verdict {
            Verdict::Passed => s.green(),
            Verdict::Flaky => s.yellow(),
            Verdict::Failed => s.red(),
            Verdict::Skipped => s.dim(),
        };
        s.apply_to(text).to_string()
    }

    fn dim(&self, text: &str) -> String {
        if !self.fancy {
            return text.to_string();
        }
        console::Style::new()
            .force_styling(true)
            .dim()
            .apply_to(text)
            .to_string()
    }
}

/// How much to print.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Failures and the summary only.
    Quiet,
    Normal,
    /// Every step with its duration.
    Verbose,
}

/// Lines printed as scenarios finish, and the live progress on a terminal.
#[derive(Clone)]
pub struct Progress {
    style: Style,
    detail: Detail,
    /// `--tap`: stdout is TAP's; nothing else goes there.
    silent: bool,
    bars: Option<MultiProgress>,
}

impl Progress {
    pub fn new(style: Style, detail: Detail, tap: bool) -> Progress {
        let bars = (style.fancy && !tap)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            style,
            detail,
            silent: tap,
            bars,
        }
    }

    /// A scenario starts: its spinner (on a terminal).
    pub fn begin(&self, name: &str) -> Option<ProgressBar> {
        let bars = self.bars.as_ref()?;
        let bar = bars.add(ProgressBar::new_spinner());
        if let Ok(st) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(st);
        }
        bar.set_message(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Some(bar)
    }

    pub fn retrying(&self, bar: Option<&ProgressBar>, attempt: u32, of: u32) {
        if let Some(b) = bar {
            let name = b.message();
            let name = name.split(" (attempt").next().unwrap_or("").to_string();
            b.set_message(format!("{name} (attempt {attempt} of {of})"));
        }
    }

    /// A scenario is done: remove its spinner, print its line.
    pub fn done(&self, bar: Option<ProgressBar>, o: &Outcome) {
        if let Some(b) = bar {
            b.finish_and_clear();
            if let Some(bars) = &self.bars {
                bars.remove(&b);
            }
        }
        if self.silent {
            return;
        }
        if self.detail == Detail::Quiet && matches!(o.verdict, Verdict::Passed) {
            return;
        }
        let text = outcome_lines(o, self.detail, &self.style);
        match &self.bars {
            Some(bars) => bars.suspend(|| print!("{text}")),
            None => print!("{text}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }
}

/// A scenario's line (and with `--verbose` its steps).
pub fn outcome_lines(o: &Outcome, detail: Detail, style: &Style) -> String {
    let tag = match o.verdict {
        Verdict::Passed => "PASS ",
        Verdict::Flaky => "FLAKY",
        Verdict::Failed => "FAIL ",
        Verdict::Skipped => "SKIP ",
    };
    let mut s = format!(
        "{} {} {}",
        style.paint(tag, o.verdict),
        o.scenario.name,
        style.dim(&format!("({})", fmt_long(o.duration())))
    );
    match o.verdict {
        Verdict::Flaky => {
            let _ = write!(s, "  passed on attempt {}", o.runs.len());
            if let Some(first) = o.runs.first().and_then(|r| first_failure(o, r)) {
                let _ = write!(s, "; first attempt: {first}");
            }
        }
        Verdict::Failed | Verdict::Skipped => {
            if let Some(why) = o.failure_line() {
                let _ = write!(s, "  {why}");
            }
        }
        Verdict::Passed => {}
    }
    s.push('\n');
    if detail == Detail::Verbose {
        if let Some(r) = o.last() {
            for st in &r.steps {
                let mark = if st.success { "ok  " } else { "FAIL" };
                let _ = writeln!(
                    s,
                    "    {mark} {:<9} {} {}",
                    format!("{:?}", st.stage).to_lowercase(),
                    st.name,
                    style.dim(&fmt_long(st.duration))
                );
            }
        }
    }
    s
}

fn first_failure(o: &Outcome, r: &RunReport) -> Option<String> {
    let f = r.failure()?;
    let step = r.failed_step.as_deref().unwrap_or("?");
    Some(r.redact_text(
        &o.scenario,
        &format!("step `{step}` failed ({}): {}", f.reason, f.message),
    ))
}

/// After the streamed lines: every failure in detail, then the flaky ones.
pub fn render(outcomes: &[Outcome], style: &Style) -> String {
    let mut s = String::new();
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Failed)
        .collect();
    if !failed.is_empty() {
        s.push_str("\nFailures:\n");
        for o in failed {
            s.push('\n');
            s.push_str(&failure_detail(o, style));
        }
        s.push('\n');
    }
    let flaky: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Flaky)
        .map(|o| o.scenario.name.as_str())
        .collect();
    if !flaky.is_empty() {
        let _ = writeln!(
            s,
            "flaky (failed, then passed on a retry): {}",
            flaky.join(", ")
        );
    }
    s
}

/// `N passed, N failed` (`, N skipped` when any): flaky scenarios count as passed.
pub fn summary_line(outcomes: &[Outcome]) -> String {
    let count = |v: &[Verdict]| outcomes.iter().filter(|o| v.contains(&o.verdict)).count();
    let passed = count(&[Verdict::Passed, Verdict::Flaky]);
    let failed = count(&[Verdict::Failed]);
    let skipped = count(&[Verdict::Skipped]);
    let mut s = format!("{passed} passed, {failed} failed");
    if skipped > 0 {
        let _ = write!(s, ", {skipped} skipped");
    }
    s
}

/// Most of a body shown in a failure.
const BODY_EXCERPT: usize = 512;

/// The failing step of a failed scenario: what was expected, what came, what went over the wire.
pub fn failure_detail(o: &Outcome, style: &Style) -> String {
    let mut s = format!(
        "{} {}\n",
        style.paint(&o.scenario.name, Verdict::Failed),
        style.dim(&format!("({})", o.scenario.defined_at))
    );
    if o.runs.len() > 1 {
        let _ = writeln!(s, "  failed all {} attempts; the last one:", o.runs.len());
    }
    let Some(r) = o.last() else {
        if let Some(n) = &o.note {
            let _ = writeln!(s, "  {n}");
        }
        return s;
    };
    let red = |t: &str| r.redact_text(&o.scenario, t);
    if let Some(e) = &r.internal_error {
        let _ = writeln!(s, "  internal error: {}", red(e));
    }
    let trace = r.to_json(&o.scenario);
    let steps = trace["steps"].as_array().cloned().unwrap_or_default();
    for (st, js) in r.steps.iter().zip(steps) {
        if st.success {
            continue;
        }
        let _ = writeln!(
            s,
            "  step `{}` ({}, {}) failed after {}",
            st.name,
            st.kind,
            format!("{:?}", st.stage).to_lowercase(),
            fmt_long(st.duration)
        );
        if let Some(f) = &st.failure {
            let _ = writeln!(s, "    reason:   {}", f.reason);
            let _ = writeln!(s, "    message:  {}", red(&f.message));
        }
        for c in js["checks"].as_array().into_iter().flatten() {
            if c["passed"] == serde_json::Value::Bool(false) {
                let _ = writeln!(
                    s,
                    "    {}: expected {}, actual {}",
                    c["what"].as_str().unwrap_or("?"),
                    c["expected"].as_str().unwrap_or("?"),
                    c["actual"].as_str().unwrap_or("?")
                );
            }
        }
        excerpt(&mut s, st, &js["facts"], &red);
        for e in js["events"].as_array().into_iter().flatten() {
            let at = e["at"].as_f64().unwrap_or(0.0);
            let _ = writeln!(
                s,
                "    {:>8}  {}",
                fmt_long(Duration::from_secs_f64(at.max(0.0))),
                e["message"].as_str().unwrap_or("")
            );
        }
    }
    s
}

/// Request/response headers and a body excerpt (http), frames (ws) — from the redacted trace.
fn excerpt(
    s: &mut String,
    st: &StepReport,
    facts: &serde_json::Value,
    red: &dyn Fn(&str) -> String,
) {
    match &st.facts {
        StepFacts::Http(h) => {
            if let Some(url) = facts["final_url"].as_str().filter(|u| !u.is_empty()) {
                let _ = writeln!(s, "    request:  {url}");
            }
            for hv in facts["request_headers"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "      > {}: {}",
                    hv[0].as_str().unwrap_or(""),
                    hv[1].as_str().unwrap_or("")
                );
            }
            if let Some(code) = h.status {
                let _ = writeln!(
                    s,
                    "    response: {} {}",
                    facts["version"].as_str().unwrap_or("HTTP"),
                    code
                );
                for hv in facts["headers"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        s,
                        "      < {}: {}",
                        hv[0].as_str().unwrap_or(""),
                        hv[1].as_str().unwrap_or("")
                    );
                }
                if !h.body.is_empty() {
                    let cut = h.body.len().min(BODY_EXCERPT);
                    let text = String::from_utf8_lossy(&h.body[..cut]);
                    let more = if h.body.len() > cut { " …" } else { "" };
                    let _ = writeln!(
                        s,
                        "    body:     {}{more}",
                        red(&text).replace('\n', "\n              ")
                    );
                }
            }
        }
        StepFacts::Ws(_) => {
            for (label, key) in [
                ("sent", "sent"),
                ("matched", "matched"),
                ("closed", "peer_close"),
            ] {
                if let Some(v) = facts[key].as_str() {
                    let _ = writeln!(
                        s,
                        "    {label}:{:width$}{v}",
                        "",
                        width = 10 - label.len() - 1
                    );
                }
            }
            let skipped = facts["skipped"].as_array().cloned().unwrap_or_default();
            if !skipped.is_empty() {
                let _ = writeln!(s, "    frames seen (not matching):");
                for f in skipped.iter().take(10) {
                    let _ = writeln!(s, "      {}", f.as_str().unwrap_or(""));
                }
            }
        }
        StepFacts::Mqtt(_) => {
            for (label, key) in [("topic", "topic"), ("sent", "sent"), ("matched", "matched")] {
                if let Some(v) = facts[key].as_str() {
                    let _ = writeln!(
                        s,
                        "    {label}:{:width$}{v}",
                        "",
                        width = 10 - label.len() - 1
                    );
                }
            }
            for g in facts["granted"].as_array().into_iter().flatten() {
                let _ = writeln!(s, "    suback:   {}", g.as_str().unwrap_or(""));
            }
            let skipped = facts["skipped"].as_array().cloned().unwrap_or_default();
            if !skipped.is_empty() {
                let _ = writeln!(s, "    messages seen (not matching):");
                for m in skipped.iter().take(10) {
                    let _ = writeln!(s, "      {}", m.as_str().unwrap_or(""));
                }
            }
        }
        _ => {}
    }
}
