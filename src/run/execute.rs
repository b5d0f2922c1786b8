//! Running the selected scenarios: at most `parallel` at once (a scenario's own steps stay
//! sequential), each once — or again after a failure with `--retries`, flaky when a retry
//! passes — and, with `--fail-fast`, stopping cleanly at the first failure: scenarios not
//! started are skipped, those in flight are cancelled between their steps' awaits and still run
//! their teardown, so a CI job leaves no test users logged in or orders open.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::scenario::Scenario;
use crate::engine::{self, RunCtx, RunReport, RunResult};

use super::human::Progress;

/// How a scenario came out of `sonde run`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// Failed, then passed on a retry.
    Flaky,
    Failed,
    /// Not run (or cancelled while running) because `--fail-fast` stopped the run.
    Skipped,
}

impl Verdict {
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Flaky => "flaky",
            Verdict::Failed => "failed",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One selected scenario's result.
pub struct Outcome {
    pub scenario: Arc<Scenario>,
    pub verdict: Verdict,
    /// Every attempt, in order; the last one decides (empty when skipped before starting).
    pub runs: Vec<RunReport>,
    /// Why it was skipped or cancelled, or what crashed.
    pub note: Option<String>,
}

impl Outcome {
    /// The attempt that decided the verdict.
    pub fn last(&self) -> Option<&RunReport> {
        self.runs.last()
    }

    /// Time spent on every attempt.
    pub fn duration(&self) -> Duration {
        self.runs.iter().map(|r| r.duration).sum()
    }

    /// The file the scenario is defined in.
    pub fn file(&self) -> &str {
        super::select::file_of(&self.scenario)
    }

    /// One line: why it failed (failing step and reason), for summaries and report messages.
    pub fn failure_line(&self) -> Option<String> {
        if let Some(n) = &self.note {
            return Some(n.clone());
        }
        let r = self.last()?;
        if r.success() {
            return None;
        }
        if let Some(e) = &r.internal_error {
            return Some(format!("internal error: {e}"));
        }
        let step = r.failed_step.as_deref().unwrap_or("?");
        let line = match r.failure() {
            Some(f) => format!("step `{step}` failed ({}): {}", f.reason, f.message),
            None => format!("step `{step}` failed"),
        };
        Some(r.redact_text(&self.scenario, &line))
    }
}

/// How to run.
#[derive(Copy, Clone, Debug)]
pub struct Plan {
    pub parallel: usize,
    pub retries: u32,
    pub fail_fast: bool,
}

/// `--timeout`: lower every scenario's deadline to `cap`. Scenarios are shared (`Arc`) only
/// once they run, so each can be changed in place here.
pub fn cap_timeouts(scenarios: Vec<Arc<Scenario>>, cap: Duration) -> Vec<Arc<Scenario>> {
    scenarios
        .into_iter()
        .map(|mut s| {
            if let Some(sc) = Arc::get_mut(&mut s) {
                sc.timeout = sc.timeout.min(cap);
            } else {
                tracing::warn!(scenario = %s.name, "--timeout not applied (scenario shared)");
            }
            s
        })
        .collect()
}

/// Run every scenario as `plan` says; outcomes in the order given.
pub async fn run_all(
    scenarios: Vec<Arc<Scenario>>,
    plan: Plan,
    progress: &Progress,
) -> Vec<Outcome> {
    let permits = Arc::new(Semaphore::new(plan.parallel.max(1)));
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, sc) in scenarios.iter().enumerate() {
        let (sc, permits, stop, progress) =
            (sc.clone(), permits.clone(), stop.clone(), progress.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if stop.is_cancelled() {
                let o = Outcome {
                    scenario: sc,
                    verdict: Verdict::Skipped,
                    runs: Vec::new(),
                    note: Some("not started: --fail-fast stopped the run after a failure".into()),
                };
                progress.done(None, &o);
                return (i, o);
            }
            let bar = progress.begin(&sc.name);
            let o = attempts(sc, plan, &stop, &progress, bar.as_ref()).await;
            if plan.fail_fast && o.verdict == Verdict::Failed {
                stop.cancel();
            }
            progress.done(bar, &o);
            (i, o)
        });
    }
    let mut out: Vec<Option<Outcome>> = scenarios.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, o)) => out[i] = Some(o),
            Err(e) => tracing::error!("a scenario task crashed: {e}"),
        }
    }
    // A crashed task (a bug in sonde) still shows, as a failure.
    out.into_iter()
        .zip(scenarios)
        .map(|(o, sc)| {
            o.unwrap_or_else(|| Outcome {
                scenario: sc,
                verdict: Verdict::Failed,
                runs: Vec::new(),
                note: Some("internal error: the run crashed (a bug in sonde)".into()),
            })
        })
        .collect()
}

/// The first attempt and, while it fails, up to `plan.retries` more.
async fn attempts(
    sc: Arc<Scenario>,
    plan: Plan,
    stop: &CancellationToken,
    progress: &Progress,
    bar: Option<&indicatif::ProgressBar>,
) -> Outcome {
    let mut runs = Vec::new();
    for attempt in 0..=plan.retries {
        if attempt > 0 {
            progress.retrying(bar, attempt + 1, plan.retries + 1);
        }
        let (report, cancelled) = once(&sc, stop).await;
        let passed = report.success();
        runs.push(report);
        if cancelled {
            return Outcome {
                scenario: sc,
                verdict: Verdict::Skipped,
                runs,
                note: Some(
                    "cancelled: --fail-fast stopped the run after a failure (teardown ran)".into(),
                ),
            };
        }
        if passed {
            let verdict = if attempt == 0 {
                Verdict::Passed
            } else {
                Verdict::Flaky
            };
            return Outcome {
                scenario: sc,
                verdict,
                runs,
                note: None,
            };
        }
        if stop.is_cancelled() {
            break;
        }
    }
    Outcome {
        scenario: sc,
        verdict: Verdict::Failed,
        runs,
        note: None,
    }
}

/// One run: setup, steps (one round for a persistent session), teardown. `stop` cancels the
/// setup and steps; the teardown runs anyway. True when it was cancelled.
async fn once(sc: &Scenario, stop: &CancellationToken) -> (RunReport, bool) {
    let mut ctx = RunCtx::default();
    let started = SystemTime::now();
    let began = tokio::time::Instant::now();
    let stages = engine::run_stages(sc, &mut ctx, true, true);
    let (mut report, cancelled) = tokio::select! {
        r = stages => (r, false),
        _ = stop.cancelled() => (cancelled_report(sc, started, began.elapsed()), true),
    };
    if !sc.teardown.is_empty() {
        engine::run_teardown(sc, &mut ctx, &mut report).await;
    }
    (report, cancelled)
}

fn cancelled_report(sc: &Scenario, started: SystemTime, took: Duration) -> RunReport {
    let mut report = RunReport::new(&sc.name, started);
    report.duration = took;
    report.result = RunResult::Failure;
    report
        .session_events
        .push("cancelled by --fail-fast".into());
    report
}
