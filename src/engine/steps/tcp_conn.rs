//! The `tcp.*` steps (connect, send, expect, starttls, close) on the run's named connections
//! ([`RunCtx::conns`]), through `sonde_probes::tcp_conn`.
//!
//! Received frames are decoded as the connect step said (text, hex, base64, JSON, protobuf →
//! JSON) and then matched, captured and summarised exactly as WebSocket frames are: the steps
//! share the ws steps' matchers, the send-to-match judgement and their trace facts
//! ([`WsFacts`]), so a scenario reads the same whichever transport carries its frames.

use std::any::Any;

use base64::Engine as _;
use bytes::Bytes;
use sonde_probes::tcp_conn::{self, TcpConn, TcpConnectFacts};
use sonde_probes::ws::{ExpectResult, Frame, Payload, WsConnectFacts};
use sonde_probes::{fmt_duration, Failure, FailureReason, Outcome};
use tokio::time::Instant;

use super::ws::{answered, judge, matches, summary, WsFacts, MAX_RECORDED};
use super::StepCx;
use crate::config::kinds::tcp_conn::{Decode, TcpConnAction, TcpConnect, TcpSend};
use crate::config::probe_settings::protobuf;
use crate::config::scenario::WsExpect;
use crate::engine::conns::SessionConn;
use crate::engine::report::{StepFacts, StepReport};
use crate::engine::RunCtx;

/// An open `tcp.connect` connection and how its frames are decoded.
pub struct TcpSession {
    pub conn: TcpConn,
    pub decode: Decode,
}

impl SessionConn for TcpSession {
    fn closed(&self) -> Option<String> {
        self.conn.closed().map(|c| c.to_string())
    }
    fn wait_closed(&self) -> crate::engine::conns::Ending<'_> {
        Box::pin(async move { self.conn.wait_closed().await.to_string() })
    }
    fn connected_at(&self) -> Instant {
        self.conn.connected_at()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A received frame as matchers see it; `Err` when it is not what the connection decodes
/// (not a message of the protobuf type).
pub fn decoded(d: &Decode, body: &Bytes) -> Result<Payload, String> {
    Ok(Payload::Text(match d {
        Decode::Text | Decode::Json => String::from_utf8_lossy(body).into_owned(),
        Decode::Hex => body.iter().map(|b| format!("{b:02x}")).collect(),
        Decode::Base64 => base64::engine::general_purpose::STANDARD.encode(body),
        Decode::Protobuf(desc) => protobuf::decode(desc, body)?.to_string(),
    }))
}

/// How a frame shows in the trace: decoded, or why it could not be.
fn shown(d: &Decode, body: &Bytes) -> Payload {
    decoded(d, body).unwrap_or_else(|why| Payload::Text(format!("<{} bytes, {why}>", body.len())))
}

fn facts(on: &str) -> WsFacts {
    WsFacts {
        connection: on.to_string(),
        ..Default::default()
    }
}

fn report(cx: &StepCx<'_>, start: Instant, facts: WsFacts) -> StepReport {
    StepReport::passed(
        cx.step.name.clone(),
        cx.step.kind,
        cx.stage,
        start.elapsed(),
        StepFacts::Ws(Box::new(facts)),
    )
}

/// The open tcp connection `on`, or the report of a step that names none.
fn open_conn<'a>(
    cx: &StepCx<'_>,
    ctx: &'a RunCtx,
    on: &str,
) -> Result<&'a TcpSession, Box<StepReport>> {
    if let Some(c) = ctx.conns.get::<TcpSession>(on) {
        return Ok(c);
    }
    let open = ctx.conns.names();
    let what = if ctx.conns.find(on).is_some() {
        format!("connection `{on}` is not a tcp connection")
    } else {
        format!(
            "no open connection `{on}` (open: {})",
            if open.is_empty() {
                "none".to_string()
            } else {
                open.join(", ")
            }
        )
    };
    Err(Box::new(StepReport::failed(
        cx.step,
        cx.stage,
        Failure::new(
            FailureReason::Protocol,
            format!("{what} — expected a tcp.connect with as: {on} before"),
        ),
        StepFacts::Ws(Box::new(facts(on))),
    )))
}

pub async fn exec(action: &TcpConnAction, cx: &StepCx<'_>, ctx: &mut RunCtx) -> StepReport {
    let r = match action {
        TcpConnAction::Connect(c) => Ok(connect(c, cx, ctx).await),
        TcpConnAction::Send(s) => send(s, cx, ctx).await,
        TcpConnAction::Expect(e) => expect(e, cx, ctx).await,
        TcpConnAction::StartTls(on) => start_tls(on, cx, ctx).await,
        TcpConnAction::Close(on) => close(on, cx, ctx).await,
    };
    r.unwrap_or_else(|r| *r)
}

/// A connect or STARTTLS outcome as a step report on connection `on`.
fn tls_report(cx: &StepCx<'_>, on: &str, o: Outcome<TcpConnectFacts>) -> StepReport {
    let mut r = StepReport::from_outcome(cx.step, cx.stage, o, |f| {
        StepFacts::Ws(Box::new(WsFacts {
            handshake: f.tls.map(|tls| {
                Box::new(WsConnectFacts {
                    tls: Some(tls),
                    ..Default::default()
                })
            }),
            ..Default::default()
        }))
    });
    if let StepFacts::Ws(f) = &mut r.facts {
        f.connection = on.to_string();
    }
    r
}

async fn connect(c: &TcpConnect, cx: &StepCx<'_>, ctx: &mut RunCtx) -> StepReport {
    let (o, conn) = tcp_conn::connect(&c.request, cx.deadline).await;
    let mut r = tls_report(cx, &c.name, o);
    match conn {
        Some(conn) => ctx.conns.insert(
            &c.name,
            TcpSession {
                conn,
                decode: c.decode.clone(),
            },
        ),
        None if r.failure.is_none() => r.fail(Failure::new(
            FailureReason::Protocol,
            "the connection was not established",
        )),
        None => {}
    }
    r
}

async fn send(
    s: &TcpSend,
    cx: &StepCx<'_>,
    ctx: &mut RunCtx,
) -> Result<StepReport, Box<StepReport>> {
    let start = Instant::now();
    let conn = open_conn(cx, ctx, &s.on)?.conn.clone();
    let sent = conn.send_timed(s.body.clone(), s.raw, cx.deadline).await;
    let f = WsFacts {
        sent: Some(s.shown.clone()),
        payload: Some(s.frame.clone()),
        ..facts(&s.on)
    };
    let mut r = report(cx, start, f);
    match sent {
        Ok(sent) => {
            ctx.last_send = Some(sent.at);
            ctx.last_ws_send = Some((s.on.clone(), sent));
            r.event(format!("sent {} bytes on `{}`", s.body.len(), s.on));
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
    let session = open_conn(cx, ctx, &e.on)?;
    let (conn, decode) = (session.conn.clone(), session.decode.clone());
    let until = e
        .within
        .map_or(cx.deadline, |w| (start + w).min(cx.deadline));
    let frame = &e.frame;
    let mut f = |b: &Bytes| decoded(&decode, b).is_ok_and(|p| matches(frame, &p));
    let res = conn.expect(&mut f, until, MAX_RECORDED).await;
    let matched = res.matched.clone();
    // As ws frames, decoded: the matchers, captures and trace read them the same way.
    let as_ws = |fr: tcp_conn::Frame| Frame {
        payload: shown(&decode, &fr.body),
        received_at: fr.received_at,
        kernel_rx: fr.kernel_rx,
    };
    let res = ExpectResult {
        matched: res.matched.map(as_ws),
        skipped: res.skipped.into_iter().map(as_ws).collect(),
        skipped_count: res.skipped_count,
        failure: res.failure,
    };
    let mut facts = WsFacts {
        skipped: res.skipped.iter().map(|f| summary(&f.payload)).collect(),
        skipped_count: res.skipped_count,
        dropped_frames: conn.dropped_frames(),
        ..facts(&e.on)
    };
    let (duration, failure) = judge(e, &res, &mut facts, ctx.last_send, start, until);
    let mut r = report(cx, start, facts);
    r.duration = duration;
    if let (Some(m), Some(tm), false) = (&res.matched, &matched, e.negate) {
        answered(&mut r, ctx, &e.on, m, duration, |sent| {
            conn.kernel_latency(sent, tm)
        });
    }
    if res.skipped_count > 0 {
        r.event(format!(
            "skipped {} non-matching frame(s)",
            res.skipped_count
        ));
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

async fn start_tls(
    on: &str,
    cx: &StepCx<'_>,
    ctx: &mut RunCtx,
) -> Result<StepReport, Box<StepReport>> {
    let conn = open_conn(cx, ctx, on)?.conn.clone();
    let o = conn.start_tls(cx.deadline).await;
    let mut r = tls_report(cx, on, o);
    if r.success {
        r.event(format!("`{on}` is now TLS"));
    }
    Ok(r)
}

async fn close(on: &str, cx: &StepCx<'_>, ctx: &mut RunCtx) -> Result<StepReport, Box<StepReport>> {
    let start = Instant::now();
    let conn = open_conn(cx, ctx, on)?.conn.clone();
    let before = conn.closed();
    let res = conn.close(cx.deadline).await;
    ctx.conns.remove(on);
    let mut r = report(cx, start, facts(on));
    match (res, before) {
        (Ok(()), Some(why)) => {
            if let StepFacts::Ws(f) = &mut r.facts {
                f.peer_close = Some(why.to_string());
            }
            r.event(format!("`{on}` was already closed: {why}"));
        }
        (Ok(()), None) => r.event(format!("closed `{on}`")),
        (Err(f), _) => r.fail(f),
    }
    Ok(r)
}
