//! What a scenario's recent past looks like to the API, in bounded memory: the last
//! [`RECENT_RUNS`] runs in brief, the last failing run and the last session break in full, and
//! the last [`SESSION_EVENTS`] session events. The last run alone is not enough at 3 a.m.: a
//! persistent session's break is followed within a millisecond by a reconnect attempt, and the
//! run that carried the close code would be gone before anyone looked.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::observer::SessionEvent;
use crate::config::scenario::Scenario;
use crate::engine::{RunReport, RunResult};

/// Runs kept in brief per scenario (16 bytes each when passing).
pub const RECENT_RUNS: usize = 20;
/// Session events kept per scenario.
pub const SESSION_EVENTS: usize = 32;
/// Characters of a failure message a brief keeps.
const MESSAGE: usize = 300;

/// One run in brief.
#[derive(Clone, Debug, Serialize)]
pub struct RunBrief {
    pub started_at: String,
    pub duration: f64,
    pub result: RunResult,
    /// `run`: a scheduled run; `reconnect_attempt`: a persistent session's setup between runs.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The failure's message (redacted, clipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A run in brief as kept: 16 bytes for a passing run (10,000 scenarios keep 20 each), and
/// no allocation; what is rarely there is kept beside the runs ([`Recent::rares`]).
struct Kept {
    /// The start in Unix milliseconds, written back as [`crate::time::rfc3339`] writes it
    /// (unless its rare part keeps the text).
    started_ms: u64,
    duration: f32,
    result: RunResult,
    attempt: bool,
    /// It has a rare part: the next one in [`Recent::rares`] from its place.
    rare: bool,
}

/// What a kept run rarely has.
#[derive(Default)]
struct Rare {
    failure: Option<Failed>,
    /// The start as written, when it is not what `rfc3339` gives for its milliseconds.
    started_at: Option<Box<str>>,
}

/// A run's start as kept: its milliseconds, and the text only when the milliseconds do not give
/// it back (so what the API shows is what the run said, whatever its form).
fn stamp(text: &str) -> (u64, Option<Box<str>>) {
    let ms = humantime::parse_rfc3339_weak(text).map(crate::time::unix_ms);
    match ms {
        Ok(ms) if stamp_text(ms) == text => (ms, None),
        _ => (0, Some(text.into())),
    }
}

fn stamp_text(ms: u64) -> String {
    crate::time::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// A failed run's step, reason and message.
type Failed = (Option<String>, Option<&'static str>, Option<String>);

impl Kept {
    fn of(scenario: &Scenario, r: &RunReport, attempt: bool) -> (Self, Option<Rare>) {
        let failure = r.failure();
        let message = failure
            .map(|f| f.message.as_str())
            .or(r.internal_error.as_deref())
            .map(|m| clip(&r.redact_text(scenario, m)));
        let (started_ms, started_at) = stamp(&r.started_at);
        let failure = (!r.success()).then(|| {
            (
                r.failed_step.clone(),
                failure.map(|f| f.reason.as_str()),
                message,
            )
        });
        let rare = Rare {
            failure,
            started_at,
        };
        let rare = (rare.failure.is_some() || rare.started_at.is_some()).then_some(rare);
        let kept = Kept {
            started_ms,
            duration: r.duration.as_secs_f32(),
            result: r.result,
            attempt,
            rare: rare.is_some(),
        };
        (kept, rare)
    }

    /// The brief, with the run's rare part if it has one.
    fn brief(&self, rare: Option<&Rare>) -> RunBrief {
        let (failed_step, reason, message) =
            rare.and_then(|r| r.failure.clone()).unwrap_or_default();
        RunBrief {
            started_at: match rare.and_then(|r| r.started_at.as_deref()) {
                Some(text) => text.to_string(),
                None => stamp_text(self.started_ms),
            },
            duration: f64::from(self.duration),
            result: self.result,
            kind: if self.attempt {
                "reconnect_attempt"
            } else {
                "run"
            },
            failed_step,
            reason,
            message,
        }
    }
}

/// One entry of a persistent session's event list.
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    /// RFC 3339, UTC.
    pub at: String,
    /// connected, broken, reconnect_failed, reconnected.
    pub event: &'static str,
    /// Why (a break's close code and reason, a failed attempt's error), redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The last session break: when, why, and the run that reported it.
#[derive(Clone, Debug)]
pub struct Break {
    pub at: String,
    pub why: String,
    pub run: Option<Arc<RunReport>>,
}

/// A scenario's recent past.
pub struct Recent {
    runs: VecDeque<Kept>,
    /// The rare parts of the kept runs that have one, in the same order.
    rares: VecDeque<Rare>,
    last_failure: Option<Arc<RunReport>>,
    last_break: Option<Break>,
    events: VecDeque<EventRecord>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            // Exactly what is kept: growing by doubling would leave room for 32 runs.
            runs: VecDeque::with_capacity(RECENT_RUNS),
            rares: VecDeque::new(),
            last_failure: None,
            last_break: None,
            events: VecDeque::new(),
        }
    }
}

impl Recent {
    /// A scheduled run (`attempt`: false) or a reconnect attempt ended.
    pub fn run(&mut self, scenario: &Scenario, r: &Arc<RunReport>, attempt: bool) {
        self.keep(Kept::of(scenario, r, attempt));
        if !r.success() {
            self.last_failure = Some(r.clone());
        }
        // The first scheduled run after a break is the one that reports it (between runs: the
        // next run fails with it; during a run: that run).
        if let Some(b) = self.last_break.as_mut().filter(|b| b.run.is_none()) {
            if !attempt {
                b.run = Some(r.clone());
            }
        }
    }

    pub fn session_event(&mut self, scenario: &Scenario, e: &SessionEvent) {
        let Some(event) = e.label() else { return };
        let detail = match e {
            SessionEvent::Broken(why) | SessionEvent::ReconnectFailed(why) => {
                Some(clip(&scenario.redact_text(why)))
            }
            _ => None,
        };
        let at = crate::time::rfc3339(SystemTime::now());
        if let (SessionEvent::Broken(_), Some(why)) = (e, &detail) {
            self.last_break = Some(Break {
                at: at.clone(),
                why: why.clone(),
                run: None,
            });
        }
        push_bounded(
            &mut self.events,
            EventRecord { at, event, detail },
            SESSION_EVENTS,
        );
    }

    /// The runs kept: the last [`RECENT_RUNS`], the oldest giving way with its rare part. The
    /// rare parts' room is given back once none is left (a burst of failures long over).
    fn keep(&mut self, (kept, rare): (Kept, Option<Rare>)) {
        if self.runs.len() >= RECENT_RUNS && self.runs.pop_front().is_some_and(|k| k.rare) {
            self.rares.pop_front();
            if self.rares.is_empty() {
                self.rares = VecDeque::new();
            }
        }
        self.runs.push_back(kept);
        if let Some(rare) = rare {
            self.rares.reserve_exact(1);
            self.rares.push_back(rare);
        }
    }

    /// Newest first.
    pub fn runs(&self) -> Vec<RunBrief> {
        let mut rares = self.rares.iter().rev();
        self.runs
            .iter()
            .rev()
            .map(|k| k.brief(if k.rare { rares.next() } else { None }))
            .collect()
    }

    pub fn last_failure(&self) -> Option<Arc<RunReport>> {
        self.last_failure.clone()
    }

    pub fn last_break(&self) -> Option<Break> {
        self.last_break.clone()
    }

    /// Oldest first, as they happened.
    pub fn events(&self) -> Vec<EventRecord> {
        self.events.iter().cloned().collect()
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T, max: usize) {
    if q.len() >= max {
        q.pop_front();
    }
    // Room for one more, not for twice as many: most sessions log an event or two (connected)
    // and keep the room for their life.
    q.reserve_exact(1);
    q.push_back(v);
}

fn clip(s: &str) -> String {
    if s.chars().count() <= MESSAGE {
        return s.to_string();
    }
    let cut: String = s.chars().take(MESSAGE).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Arc<Scenario> {
        let cfg = crate::config::load_str(
            "r.yaml",
            "scenario: r\ntcp: {target: \"127.0.0.1:1\"}\n",
            &Default::default(),
        )
        .unwrap();
        cfg.scenarios[0].clone()
    }

    fn failed(sc: &Scenario, msg: &str) -> Arc<RunReport> {
        Arc::new(RunReport::internal_error(
            &sc.name,
            SystemTime::now(),
            Default::default(),
            msg.into(),
        ))
    }

    #[test]
    fn runs_and_events_are_bounded_and_the_break_keeps_its_run() {
        let sc = scenario();
        let mut r = Recent::default();
        r.session_event(
            &sc,
            &SessionEvent::Broken("closed 4001 (reason \"kicked\")".into()),
        );
        r.run(&sc, &failed(&sc, "the break"), false);
        let n = RECENT_RUNS.max(SESSION_EVENTS) + 5;
        for i in 0..n {
            r.run(&sc, &failed(&sc, &format!("attempt {i}")), true);
            r.session_event(&sc, &SessionEvent::ReconnectFailed(format!("attempt {i}")));
        }
        assert_eq!(r.runs().len(), RECENT_RUNS);
        assert_eq!(r.events().len(), SESSION_EVENTS);
        let b = r.last_break().unwrap();
        assert!(b.why.contains("4001"), "{}", b.why);
        assert_eq!(
            b.run.unwrap().internal_error.as_deref(),
            Some("the break"),
            "the break's own run, not a later attempt"
        );
        assert_eq!(
            r.last_failure().unwrap().internal_error.as_deref(),
            Some(&*format!("attempt {}", n - 1))
        );
        assert_eq!(r.runs()[0].kind, "reconnect_attempt");
    }

    /// The rare parts sit beside the runs, not in them: however passing and failing runs mix
    /// and age out, each brief gets its own run's message, and the rare parts' room goes once
    /// the last failure has aged out.
    #[test]
    fn each_brief_keeps_its_own_failure_as_runs_age_out() {
        let sc = scenario();
        let mut r = Recent::default();
        let passed = |i: u64| {
            let mut run = RunReport::new(&sc.name, SystemTime::UNIX_EPOCH);
            run.duration = std::time::Duration::from_millis(i);
            Arc::new(run)
        };
        for i in 0..47u64 {
            let run = if i % 3 == 0 {
                failed(&sc, &format!("m{i}"))
            } else {
                passed(i)
            };
            r.run(&sc, &run, false);
            let briefs = r.runs();
            assert_eq!(briefs.len(), (i as usize + 1).min(RECENT_RUNS));
            for (j, b) in briefs.iter().enumerate() {
                let k = i - j as u64;
                let want = (k % 3 == 0).then(|| format!("m{k}"));
                assert_eq!(b.message, want, "after run {i}, brief {j}");
            }
        }
        for i in 0..RECENT_RUNS as u64 {
            r.run(&sc, &passed(i + 1), false);
        }
        assert!(r.runs().iter().all(|b| b.message.is_none()));
        assert_eq!(r.rares.capacity(), 0);
    }

    #[test]
    fn a_kept_run_is_small_and_gives_back_its_start_as_written() {
        assert!(
            std::mem::size_of::<Kept>() <= 16,
            "{}",
            std::mem::size_of::<Kept>()
        );
        for text in [
            "2026-12-06T08:17:00.123Z",
            "1970-01-01T00:00:00.000Z",
            "+10000-01-01T00:00:00.000Z",
            "2026-12-06T08:17:00Z",
            "2026-12-06T08:17:00.123456Z",
            "",
        ] {
            let (ms, kept) = stamp(text);
            let back = kept.map_or_else(|| stamp_text(ms), String::from);
            assert_eq!(back, text);
        }
        // The form `rfc3339` writes is kept as its milliseconds alone.
        assert_eq!(stamp("2023-11-14T22:13:20.123Z"), (1_700_000_000_123, None));
        let sc = scenario();
        let mut r = Recent::default();
        let run = failed(&sc, "x");
        r.run(&sc, &run, false);
        assert_eq!(r.runs()[0].started_at, run.started_at);
    }
}
