//! The `ws.*` steps (connect, send, expect, close) on the run's named connections
//! ([`RunCtx::conns`]), through `sonde_probes::ws`. The trace keeps frame *summaries* (clipped text, binary lengths), never
//! whole frames, and at most [`MAX_RECORDED`] skipped frames per expect.

use std::any::Any;

use serde::Serialize;
use sonde_probes::ws::{self, ExpectResult, Payload, WsConn, WsConnectFacts};
use sonde_probes::{fmt_duration, Failure, FailureReason, Phase};
use tokio::time::Instant;

use super::StepCx;
use crate::config::scenario::{FrameMatch, WsAction, WsClose, WsConnect, WsExpect, WsSend};
use crate::engine::conns::SessionConn;
use crate::engine::report::{StepFacts, StepReport};
use crate::engine::RunCtx;

/// Skipped frames an expect records in the trace (all are counted).
pub const MAX_RECORDED: usize = 8;
/// Characters of a frame a summary shows.
const SUMMARY: usize = 160;

/// What a ws step saw, for the trace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WsFacts {
    pub connection: String,
    /// Boxed: only a connect has one, and inline it took half of every send's and expect's
    /// facts (184 of 360 bytes), kept in the last reports of every session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<Box<WsConnectFacts>>,
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

/// A ws step's report, passed so far, with `facts`.
fn report(cx: &StepCx<'_>, start: Instant, facts: WsFacts) -> StepReport {
    StepReport::passed(
        cx.step.name.clone(),
        cx.step.kind,
        cx.stage,
        start.elapsed(),
        StepFacts::Ws(Box::new(facts)),
    )
}

/// The open connection `on`, or the report of a step that names none.
fn open_conn(cx: &StepCx<'_>, ctx: &RunCtx, on: &str) -> Result<WsConn, Box<StepReport>> {
    if let Some(c) = ctx.conns.get::<WsConn>(on) {
        return Ok(c.clone());
    }
    let open = ctx.conns.names();
    Err(Box::new(StepReport::failed(
        cx.step,
        cx.stage,
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
    )))
}

pub async fn exec(action: &WsAction, cx: &StepCx<'_>, ctx: &mut RunCtx) -> StepReport {
    let r = match action {
        WsAction::Connect(c) => Ok(connect(c, cx, ctx).await),
        WsAction::Send(s) => send(s, cx, ctx).await,
        WsAction::Expect(e) => expect(e, cx, ctx).await,
        WsAction::Close(c) => close(c, cx, ctx).await,
    };
    r.unwrap_or_else(|r| *r)
}

async fn connect(c: &WsConnect, cx: &StepCx<'_>, ctx: &mut RunCtx) -> StepReport {
    let (o, conn) = ws::connect(&c.request, cx.deadline).await;
    let mut r = StepReport::from_outcome(cx.step, cx.stage, o, |handshake| {
        StepFacts::Ws(Box::new(WsFacts {
            handshake: Some(Box::new(handshake)),
            ..Default::default()
        }))
    });
    if let StepFacts::Ws(f) = &mut r.facts {
        f.connection = c.name.clone();
    }
    if let Some(conn) = conn {
        ctx.conns.insert(&c.name, conn);
    } else if r.failure.is_none() {
        r.success = false;
        r.failure = Some(Box::new(Failure::new(
            FailureReason::Protocol,
            "the connection was not established",
        )));
    }
    r
}

async fn send(
    s: &WsSend,
    cx: &StepCx<'_>,
    ctx: &mut RunCtx,
) -> Result<StepReport, Box<StepReport>> {
    let start = Instant::now();
    let conn = open_conn(cx, ctx, &s.on)?;
    let sent = conn.send_timed(s.payload.clone(), cx.deadline).await;
    let facts = WsFacts {
        connection: s.on.clone(),
        sent: Some(summary(&s.payload)),
        payload: Some(s.payload.clone()),
        ..Default::default()
    };
    let mut r = report(cx, start, facts);
    match sent {
        Ok(sent) => {
            ctx.last_send = Some(sent.at);
            ctx.last_ws_send = Some((s.on.clone(), sent));
            r.event(format!("sent {} bytes on `{}`", s.payload.len(), s.on));
        }
        Err(f) => r.fail(f),
    }
    Ok(r)
}

async fn expect(
    e: &WsExpect,
    cx: &StepCx<'_>,
    ctx: &mut RunCtx,
) -> Result<StepReport, Box<StepReport>> {
    let start = Instant::now();
    let conn = open_conn(cx, ctx, &e.on)?;
    let until = e
        .within
        .map_or(cx.deadline, |w| (start + w).min(cx.deadline));
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
    let (duration, failure) = judge(e, &res, &mut facts, ctx.last_send, start, until);
    let skipped_count = res.skipped_count;
    let mut r = report(cx, start, facts);
    r.duration = duration;
    if let (Some(m), false) = (&res.matched, e.negate) {
        answered(&mut r, ctx, &e.on, m, duration, |sent| {
            conn.kernel_latency(sent, m)
        });
    }
    if skipped_count > 0 {
        r.event(format!("skipped {skipped_count} non-matching frame(s)"));
    }
    match failure {
        Some(f) => r.fail(f),
        None if e.negate => r.event(format!(
            "no matching frame within {}",
            fmt_duration(start.elapsed())
        )),
        None => {
            let d = r.duration;
            r.event(format!("matched after {}", fmt_duration(d)))
        }
    }
    Ok(r)
}

/// A matched frame that answers the run's last send on the same connection: send-to-match is
/// the `processing` phase, the kernel's figure where the socket is timestamped (the step's
/// duration too), and the trace gives both. `kernel_latency` is the connection's figure from a
/// send to this frame (ws and tcp connections share this).
pub(super) fn answered(
    r: &mut StepReport,
    ctx: &RunCtx,
    on: &str,
    m: &ws::Frame,
    user: std::time::Duration,
    kernel_latency: impl FnOnce(&ws::Sent) -> Result<std::time::Duration, String>,
) {
    // The user-space figure runs from the run's last send of any kind: the kernel's must start
    // at that same send, on this connection.
    let Some((_, sent)) = ctx.last_ws_send.as_ref().filter(|(name, sent)| {
        name == on && sent.at <= m.received_at && ctx.last_send == Some(sent.at)
    }) else {
        return;
    };
    send_to_match(r, "send to match", user, kernel_latency(sent));
}

/// Record an answer's send-to-match (or publish-to-receive) figure: the `processing` phase with
/// the kernel's figure where there is one (then also the step's duration), the trace line with
/// both, and the overloaded flag when sonde's own delay was large.
pub(super) fn send_to_match(
    r: &mut StepReport,
    what: &str,
    user: std::time::Duration,
    kernel: Result<std::time::Duration, String>,
) {
    r.timings
        .add_measured(Phase::Processing, user, kernel.as_ref().ok().copied());
    if let Ok(k) = &kernel {
        r.duration = (*k).min(user);
    }
    r.event(format!(
        "{what}: {}",
        sonde_probes::kts::describe(user, &kernel)
    ));
    if let Some(d) = r
        .timings
        .own_delay()
        .filter(|d| *d > sonde_probes::OWN_DELAY_FLAG)
    {
        r.event(format!(
            "{}: sonde's own delay was {} in this step (over {}): its tasks ran that much after \
             the kernel saw the answer; the kernel-timestamped figure excludes it",
            sonde_probes::OVERLOADED,
            fmt_duration(d),
            fmt_duration(sonde_probes::OWN_DELAY_FLAG)
        ));
    }
}

/// What an expect's wait came to: the step's duration (send-to-match for a match) and its
/// failure, if any; the matched frame goes into `facts`.
pub fn judge(
    e: &WsExpect,
    res: &ExpectResult,
    facts: &mut WsFacts,
    last_send: Option<Instant>,
    start: Instant,
    until: Instant,
) -> (std::time::Duration, Option<Failure>) {
    let duration = start.elapsed();
    match (&res.matched, e.negate) {
        (Some(m), false) => {
            facts.matched = Some(summary(&m.payload));
            facts.payload = Some(m.payload.clone());
            // Send-to-match: from the run's last send, when it came before.
            let from = last_send.filter(|s| *s <= m.received_at).unwrap_or(start);
            (m.received_at.saturating_duration_since(from), None)
        }
        (Some(m), true) => {
            facts.matched = Some(summary(&m.payload));
            let f = Failure::new(
                FailureReason::Assertion,
                format!(
                    "a frame matching {} arrived on `{}`: {} — expected none within {}",
                    describe(&e.frame),
                    e.on,
                    summary(&m.payload),
                    fmt_duration(e.within.unwrap_or_default())
                ),
            );
            (duration, Some(f))
        }
        // Nothing matched: that is the point — unless the connection broke.
        (None, true) => match res
            .failure
            .clone()
            .filter(|f| f.reason != FailureReason::Timeout)
        {
            Some(f) => (duration, Some(f)),
            None if until < start + e.within.unwrap_or_default() => (
                duration,
                Some(Failure::new(
                    FailureReason::Timeout,
                    "the deadline came before `within` was over",
                )),
            ),
            None => (duration, None),
        },
        (None, false) => {
            let f = res
                .failure
                .clone()
                .unwrap_or_else(|| Failure::new(FailureReason::Timeout, "no matching frame"));
            let skipped = if facts.skipped.is_empty() {
                String::new()
            } else {
                format!("; skipped: {}", facts.skipped.join(" | "))
            };
            let message = format!(
                "waiting on `{}` for a frame where {}: {}{skipped}",
                e.on,
                describe(&e.frame),
                f.message
            );
            (duration, Some(Failure::new(f.reason, message)))
        }
    }
}

async fn close(
    c: &WsClose,
    cx: &StepCx<'_>,
    ctx: &mut RunCtx,
) -> Result<StepReport, Box<StepReport>> {
    let start = Instant::now();
    let conn = open_conn(cx, ctx, &c.on)?;
    if let Some(r) = already_closed(&conn, c, cx, start) {
        ctx.conns.remove(&c.on);
        return Ok(r);
    }
    let res = conn.close(c.code, &c.reason, cx.deadline).await;
    ctx.conns.remove(&c.on);
    let facts = WsFacts {
        connection: c.on.clone(),
        ..Default::default()
    };
    let mut r = report(cx, start, facts);
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
            r.event(format!("closed `{}` with {}", c.on, c.code));
        }
        Err(f) => r.fail(f),
    }
    Ok(r)
}

/// The peer already closed `c.on` normally (close code 1000, or a close frame without a code):
/// what `ws.close` wanted is done, so the step passes and its trace says so. A peer that closed
/// with another code, or a connection that failed, is left to [`WsConn::close`] to fail with.
fn already_closed(
    conn: &WsConn,
    c: &WsClose,
    cx: &StepCx<'_>,
    start: Instant,
) -> Option<StepReport> {
    let ws::Closed::ByPeer { code, reason } = conn.closed()? else {
        return None;
    };
    if code.is_some_and(|c| c != 1000) {
        return None;
    }
    let peer = code.map_or_else(|| "no close code".to_string(), ws::describe_close_code);
    let peer = if reason.is_empty() {
        peer
    } else {
        format!("{peer} ({reason:?})")
    };
    let facts = WsFacts {
        connection: c.on.clone(),
        peer_close: Some(peer.clone()),
        ..Default::default()
    };
    let mut r = report(cx, start, facts);
    r.event(format!(
        "`{}` was already closed by the server ({peer}): nothing left to close",
        c.on
    ));
    Some(r)
}

/// A WebSocket connection in a run's or session's [`crate::engine::conns::Conns`].
impl SessionConn for WsConn {
    fn closed(&self) -> Option<String> {
        WsConn::closed(self).map(|c| c.to_string())
    }
    fn wait_closed(&self) -> crate::engine::conns::Ending<'_> {
        Box::pin(async move { WsConn::wait_closed(self).await.to_string() })
    }
    fn connected_at(&self) -> Instant {
        WsConn::connected_at(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
