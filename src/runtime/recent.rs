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

/// Runs kept in brief per scenario (48 bytes each when passing).
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

/// A run in brief as kept: a few dozen bytes for a passing run (10,000 scenarios keep 20
/// each), the failure's details boxed.
struct Kept {
    started_at: Stamp,
    duration: f32,
    result: RunResult,
    attempt: bool,
    failure: Option<Box<Failed>>,
}

/// A run's start as RFC 3339 text: with milliseconds it is 24 bytes (until the year 9999), kept
/// inline so that keeping a run allocates nothing.
enum Stamp {
    Inline([u8; 24]),
    Boxed(Box<str>),
}

impl Stamp {
    fn of(text: &str) -> Stamp {
        match <[u8; 24]>::try_from(text.as_bytes()) {
            Ok(b) => Stamp::Inline(b),
            Err(_) => Stamp::Boxed(text.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` whole: valid UTF-8.
            Stamp::Inline(b) => std::str::from_utf8(b).unwrap_or_default(),
            Stamp::Boxed(s) => s,
        }
    }
}

/// A failed run's step, reason and message.
type Failed = (Option<String>, Option<&'static str>, Option<String>);

impl Kept {
    fn of(scenario: &Scenario, r: &RunReport, attempt: bool) -> Self {
        let failure = r.failure();
        let message = failure
            .map(|f| f.message.as_str())
            .or(r.internal_error.as_deref())
            .map(|m| clip(&r.redact_text(scenario, m)));
        Kept {
            started_at: Stamp::of(&r.started_at),
            duration: r.duration.as_secs_f32(),
            result: r.result,
            attempt,
            failure: (!r.success()).then(|| {
                Box::new((
                    r.failed_step.clone(),
                    failure.map(|f| f.reason.as_str()),
                    message,
                ))
            }),
        }
    }

    fn brief(&self) -> RunBrief {
        let (failed_step, reason, message) = self.failure.as_deref().cloned().unwrap_or_default();
        RunBrief {
            started_at: self.started_at.as_str().to_string(),
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
    last_failure: Option<Arc<RunReport>>,
    last_break: Option<Break>,
    events: VecDeque<EventRecord>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            // Exactly what is kept: growing by doubling would leave room for 32 runs.
            runs: VecDeque::with_capacity(RECENT_RUNS),
            last_failure: None,
            last_break: None,
            events: VecDeque::new(),
        }
    }
}

impl Recent {
    /// A scheduled run (`attempt`: false) or a reconnect attempt ended.
    pub fn run(&mut self, scenario: &Scenario, r: &Arc<RunReport>, attempt: bool) {
        push_bounded(&mut self.runs, Kept::of(scenario, r, attempt), RECENT_RUNS);
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

    /// Newest first.
    pub fn runs(&self) -> Vec<RunBrief> {
        self.runs.iter().rev().map(Kept::brief).collect()
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

    #[test]
    fn a_kept_run_is_small_and_gives_back_its_start_as_written() {
        assert!(
            std::mem::size_of::<Kept>() <= 48,
            "{}",
            std::mem::size_of::<Kept>()
        );
        for text in ["2026-12-06T08:17:00.123Z", "+10000-01-01T00:00:00.000Z", ""] {
            assert_eq!(Stamp::of(text).as_str(), text);
        }
        let sc = scenario();
        let mut r = Recent::default();
        let run = failed(&sc, "x");
        r.run(&sc, &run, false);
        assert_eq!(r.runs()[0].started_at, run.started_at);
    }
}
