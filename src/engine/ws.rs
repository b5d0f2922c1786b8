//! The `ws.*` steps on the run's named connections ([`RunCtx::conns`]), through
//! `sonde_probes::ws`. The trace keeps frame *summaries* (clipped text, binary lengths), never
//! whole frames, and at most [`MAX_RECORDED`] skipped frames per expect.

use serde::Serialize;
use sonde_probes::ws::{self, Payload, WsConnectFacts};
use sonde_probes::{fmt_duration, Event, Failure, FailureReason, Timings};
use tokio::time::Instant;

use crate::config::scenario::{Action, FrameMatch, Step};
use crate::engine::{RunCtx, Stage, StepFacts, StepReport};

/// Skipped frames an expect records in the trace (all are counted).
pub const MAX_RECORDED: usize = 8;
/// Characters of a frame a summary shows.
const SUMMARY: usize = 160;

/// What a ws step saw, for the trace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WsFacts {
    pub connection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<WsConnectFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    pub skipped_count: usize,
    /// Frames the connection dropped because nobody expected them (inbox full).
    pub dropped_frames: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_close: Option<String>,
    /// The frame captures and JSON checks read: the one sent or matched.
    #[serde(skip)]
    pub payload: Option<Payload>,
}

/// "text: {…}" clipped, or "binary: 12 bytes".
pub fn summary(p: &Payload) -> String {
    match p {
        Payload::Text(t) if t.chars().count() > SUMMARY => {
            let cut: String = t.chars().take(SUMMARY).collect();
            format!("{cut}… ({} bytes)", t.len())
        }
        Payload::Text(t) => t.clone(),
        Payload::Binary(b) => format!("binary: {} bytes", b.len()),
    }
}

/// Does `frame` match every part of `m`?
pub fn matches(m: &FrameMatch, frame: &Payload) -> bool {
    let text = match frame {
        Payload::Text(t) => std::borrow::Cow::Borrowed(t.as_str()),
        Payload::Binary(b) => String::from_utf8_lossy(b),
    };
    if let Some(e) = &m.equals {
        if text != e.as_str() {
            return false;
        }
    }
    if let Some(c) = &m.contains {
        if !text.contains(c.as_str()) {
            return false;
        }
    }
    if let Some(r) = &m.regex {
        if !r.is_match(&text) {
            return false;
        }
    }
    if !m.json.is_empty() {
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        for c in &m.json {
            if c.matcher
                .test(crate::engine::capture::query(&c.path, &doc).as_ref())
                .is_err()
            {
                return false;
            }
        }
    }
    true
}

/// How a frame match reads in messages.
pub fn describe(m: &FrameMatch) -> String {
    let mut parts: Vec<String> = m
        .json
        .iter()
        .map(|c| format!("{} {}", c.path_text, c.matcher.describe()))
        .collect();
    if let Some(e) = &m.equals {
        parts.push(format!("equals {e:?}"));
    }
    if let Some(c) = &m.contains {
        parts.push(format!("contains {c:?}"));
    }
    if let Some(r) = &m.regex {
        parts.push(format!("matches /{}/", r.as_str()));
    }
    parts.join(" and ")
}

fn report(step: &Step, stage: Stage, start: Instant, facts: WsFacts) -> StepReport {
    StepReport {
        name: step.name.clone(),
        kind: step.action.kind(),
        stage,
        success: true,
        duration: start.elapsed(),
        failure: None,
        attempts: 1,
        timings: Timings::default(),
        remote_addr: None,
        events: Vec::new(),
        captures: Vec::new(),
        checks: Vec::new(),
        facts: StepFacts::Ws(Box::new(facts)),
    }
}

fn event(r: &mut StepReport, msg: String) {
    r.events.push(Event {
        at: r.duration,
        message: msg,
    });
}

fn no_conn(step: &Step, stage: Stage, ctx: &RunCtx, on: &str) -> StepReport {
    let open: Vec<&str> = ctx.conns.iter().map(|(n, _)| n.as_str()).collect();
    StepReport::failed(
        step,
        stage,
        Failure::new(
            FailureReason::Protocol,
            format!(
                "no open connection `{on}` (open: {}) — expected a ws.connect with as: {on} before",
                if open.is_empty() {
                    "none".to_string()
                } else {
                    open.join(", ")
                }
            ),
        ),
        StepFacts::Ws(Box::new(WsFacts {
            connection: on.to_string(),
            ..Default::default()
        })),
    )
}

pub async fn exec(step: &Step, stage: Stage, ctx: &mut RunCtx, deadline: Instant) -> StepReport {
    let start = Instant::now();
    match &step.action {
        Action::WsConnect(c) => {
            let (o, conn) = ws::connect(&c.request, deadline).await;
            let mut r = StepReport {
                name: step.name.clone(),
                kind: "ws.connect",
                stage,
                success: o.failure.is_none(),
                duration: o.duration,
                failure: o.failure,
                attempts: 1,
                timings: o.timings,
                remote_addr: o.remote_addr,
                events: o.events,
                captures: Vec::new(),
                checks: Vec::new(),
                facts: StepFacts::Ws(Box::new(WsFacts {
                    connection: c.name.clone(),
                    handshake: Some(o.facts),
                    ..Default::default()
                })),
            };
            if let Some(conn) = conn {
                ctx.conns.retain(|(n, _)| *n != c.name);
                ctx.conns.push((c.name.clone(), conn));
            } else if r.failure.is_none() {
                r.success = false;
                r.failure = Some(Failure::new(
                    FailureReason::Protocol,
                    "the connection was not established",
                ));
            }
            r
        }
        Action::WsSend(s) => {
            let Some(conn) = ctx.conn(&s.on).cloned() else {
                return no_conn(step, stage, ctx, &s.on);
            };
            let sent = conn.send(s.payload.clone(), deadline).await;
            let mut r = report(
                step,
                stage,
                start,
                WsFacts {
                    connection: s.on.clone(),
                    sent: Some(summary(&s.payload)),
                    payload: Some(s.payload.clone()),
                    ..Default::default()
                },
            );
            match sent {
                Ok(at) => {
                    ctx.last_send = Some(at);
                    event(
                        &mut r,
                        format!("sent {} bytes on `{}`", s.payload.len(), s.on),
                    );
                }
                Err(f) => {
                    r.success = false;
                    event(&mut r, format!("failed ({}): {}", f.reason, f.message));
                    r.failure = Some(f);
                }
            }
            r
        }
        Action::WsExpect(e) => {
            let Some(conn) = ctx.conn(&e.on).cloned() else {
                return no_conn(step, stage, ctx, &e.on);
            };
            let until = e.within.map_or(deadline, |w| (start + w).min(deadline));
            let frame = &e.frame;
            let mut f = |p: &Payload| matches(frame, p);
            let res = conn.expect(&mut f, until, MAX_RECORDED).await;
            let mut facts = WsFacts {
                connection: e.on.clone(),
                skipped: res.skipped.iter().map(|f| summary(&f.payload)).collect(),
                skipped_count: res.skipped_count,
                dropped_frames: conn.dropped_frames(),
                ..Default::default()
            };
            let mut failure = None;
            let mut duration = start.elapsed();
            match (&res.matched, e.negate) {
                (Some(m), false) => {
                    facts.matched = Some(summary(&m.payload));
                    facts.payload = Some(m.payload.clone());
                    // Send-to-match: from the run's last send, when it came before.
                    let from = ctx
                        .last_send
                        .filter(|s| *s <= m.received_at)
                        .unwrap_or(start);
                    duration = m.received_at.saturating_duration_since(from);
                }
                (Some(m), true) => {
                    facts.matched = Some(summary(&m.payload));
                    failure = Some(Failure::new(
                        FailureReason::Assertion,
                        format!(
                            "a frame matching {} arrived on `{}`: {} — expected none within {}",
                            describe(frame),
                            e.on,
                            summary(&m.payload),
                            fmt_duration(e.within.unwrap_or_default())
                        ),
                    ));
                }
                (None, true) => {
                    // Nothing matched: that is the point — unless the connection broke.
                    if let Some(f) = res.failure.filter(|f| f.reason != FailureReason::Timeout) {
                        failure = Some(f);
                    } else if until < start + e.within.unwrap_or_default() {
                        failure = Some(Failure::new(
                            FailureReason::Timeout,
                            "the deadline came before `within` was over",
                        ));
                    }
                }
                (None, false) => {
                    let f = res.failure.unwrap_or_else(|| {
                        Failure::new(FailureReason::Timeout, "no matching frame")
                    });
                    let skipped = if facts.skipped.is_empty() {
                        String::new()
                    } else {
                        format!("; skipped: {}", facts.skipped.join(" | "))
                    };
                    failure = Some(Failure::new(
                        f.reason,
                        format!(
                            "waiting on `{}` for a frame where {}: {}{skipped}",
                            e.on,
                            describe(frame),
                            f.message
                        ),
                    ));
                }
            }
            let mut r = report(step, stage, start, facts);
            r.duration = duration;
            if res.skipped_count > 0 {
                event(
                    &mut r,
                    format!("skipped {} non-matching frame(s)", res.skipped_count),
                );
            }
            match failure {
                Some(f) => {
                    r.success = false;
                    event(&mut r, format!("failed ({}): {}", f.reason, f.message));
                    r.failure = Some(f);
                }
                None => event(
                    &mut r,
                    if e.negate {
                        format!("no matching frame within {}", fmt_duration(start.elapsed()))
                    } else {
                        format!("matched after {}", fmt_duration(duration))
                    },
                ),
            }
            r
        }
        Action::WsClose(c) => {
            let Some(conn) = ctx.conn(&c.on).cloned() else {
                return no_conn(step, stage, ctx, &c.on);
            };
            let res = conn.close(c.code, &c.reason, deadline).await;
            ctx.conns.retain(|(n, _)| *n != c.on);
            let mut r = report(
                step,
                stage,
                start,
                WsFacts {
                    connection: c.on.clone(),
                    ..Default::default()
                },
            );
            match res {
                Ok(peer) => {
                    if let (StepFacts::Ws(f), Some((code, reason))) = (&mut r.facts, &peer) {
                        f.peer_close = Some(format!(
                            "{}{}",
                            ws::describe_close_code(*code),
                            if reason.is_empty() {
                                String::new()
                            } else {
                                format!(" ({reason:?})")
                            }
                        ));
                    }
                    event(&mut r, format!("closed `{}` with {}", c.on, c.code));
                }
                Err(f) => {
                    r.success = false;
                    event(&mut r, format!("failed ({}): {}", f.reason, f.message));
                    r.failure = Some(f);
                }
            }
            r
        }
        _ => StepReport::failed(
            step,
            stage,
            Failure::new(FailureReason::Assertion, "internal: not a ws step"),
            StepFacts::None {},
        ),
    }
}
