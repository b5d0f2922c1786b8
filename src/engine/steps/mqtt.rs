//! The `mqtt.*` steps (connect, subscribe, publish, expect, close) on the run's named
//! connections ([`RunCtx::conns`]), through `sonde_probes::mqtt`. The MQTT exchanges are phases
//! of the step's timings (`connack`, `suback`, `puback`, `pubrec`, `pubcomp`); the trace keeps
//! message *summaries*, never whole payloads, and at most [`MAX_RECORDED`] skipped messages.

use std::any::Any;

use serde::Serialize;
use sonde_probes::mqtt::{self, Message, MqttConn, MqttConnectFacts, Properties, Publish};
use sonde_probes::ws::Payload;
use sonde_probes::{fmt_duration, Failure, FailureReason};
use tokio::time::Instant;

use super::ws::{describe, matches as payload_matches, send_to_match, summary};
use super::StepCx;
use crate::config::kinds::mqtt::{
    MqttAction, MqttClose, MqttConnect, MqttExpect, MqttPublish, MqttSubscribe,
};
use crate::engine::conns::SessionConn;
use crate::engine::report::{StepFacts, StepReport};
use crate::engine::RunCtx;

/// Skipped messages an expect records in the trace (all are counted).
pub const MAX_RECORDED: usize = 8;

/// What an mqtt step saw, for the trace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MqttFacts {
    pub connection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<MqttConnectFacts>,
    /// The topic published on, or the matched message's topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<Properties>,
    /// SUBACK: per filter, "filter: granted QoS n" or the refusal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub granted: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    pub skipped_count: usize,
    /// Messages the connection dropped because nobody expected them (inbox full).
    pub dropped_messages: u64,
    /// The payload captures and JSON checks read: the one published or matched.
    #[serde(skip)]
    pub payload: Option<Payload>,
}

fn facts(on: &str) -> MqttFacts {
    MqttFacts {
        connection: on.to_string(),
        ..Default::default()
    }
}

/// A payload as the matchers and captures read it (text when it is UTF-8).
fn as_payload(b: &bytes::Bytes) -> Payload {
    match std::str::from_utf8(b) {
        Ok(t) => Payload::Text(t.to_string()),
        Err(_) => Payload::Binary(b.clone()),
    }
}

fn report(cx: &StepCx<'_>, start: Instant, f: MqttFacts) -> StepReport {
    StepReport::passed(
        cx.step.name.clone(),
        cx.step.kind,
        cx.stage,
        start.elapsed(),
        StepFacts::Mqtt(Box::new(f)),
    )
}

/// The open connection `on`, or the report of a step that names none.
fn open_conn(cx: &StepCx<'_>, ctx: &RunCtx, on: &str) -> Result<MqttConn, Box<StepReport>> {
    if let Some(c) = ctx.conns.get::<MqttConn>(on) {
        return Ok(c.clone());
    }
    let open = ctx.conns.names();
    Err(Box::new(StepReport::failed(
        cx.step,
        cx.stage,
        Failure::new(
            FailureReason::Protocol,
            format!(
                "no open MQTT connection `{on}` (open: {}) — expected an mqtt.connect with as: {on} before",
                if open.is_empty() {
                    "none".to_string()
                } else {
                    open.join(", ")
                }
            ),
        ),
        StepFacts::Mqtt(Box::new(facts(on))),
    )))
}

pub async fn exec(action: &MqttAction, cx: &StepCx<'_>, ctx: &mut RunCtx) -> StepReport {
    let r = match action {
        MqttAction::Connect(c) => Ok(connect(c, cx, ctx).await),
        MqttAction::Subscribe(s) => subscribe(s, cx, ctx).await,
        MqttAction::Publish(p) => publish(p, cx, ctx).await,
        MqttAction::Expect(e) => expect(e, cx, ctx).await,
        MqttAction::Close(c) => close(c, cx, ctx).await,
    };
    r.unwrap_or_else(|r| *r)
}

async fn connect(c: &MqttConnect, cx: &StepCx<'_>, ctx: &mut RunCtx) -> StepReport {
    let (o, conn) = mqtt::connect(&c.request, cx.deadline).await;
    let mut r = StepReport::from_outcome(cx.step, cx.stage, o, |f| {
        StepFacts::Mqtt(Box::new(MqttFacts {
            connect: Some(f),
            ..Default::default()
        }))
    });
    if let StepFacts::Mqtt(f) = &mut r.facts {
        f.connection = c.name.clone();
    }
    if let Some(conn) = conn {
        ctx.conns.insert(&c.name, conn);
    } else if r.failure.is_none() {
        r.fail(Failure::new(
            FailureReason::Protocol,
            "the connection was not established",
        ));
    }
    r
}

async fn subscribe(
    s: &MqttSubscribe,
    cx: &StepCx<'_>,
    ctx: &mut RunCtx,
) -> Result<StepReport, Box<StepReport>> {
    let start = Instant::now();
    let conn = open_conn(cx, ctx, &s.on)?;
    let res = conn.subscribe(s.filters.clone(), cx.deadline).await;
    let mut r = report(cx, start, facts(&s.on));
    match res {
        Ok(acked) => {
            for (p, d) in &acked.phases {
                r.timings.add(*p, *d);
            }
            let mut refused = Vec::new();
            let lines: Vec<String> = s
                .filters
                .iter()
                .zip(
                    acked
                        .granted
                        .iter()
                        .map(Some)
                        .chain(std::iter::repeat(None)),
                )
                .map(|((f, _), g)| match g {
                    Some(Ok(q)) => format!("{f}: granted QoS {q}"),
                    Some(Err(why)) => {
                        refused.push(format!("{f} ({why})"));
                        format!("{f}: refused ({why})")
                    }
                    None => {
                        refused.push(format!("{f} (no answer in SUBACK)"));
                        format!("{f}: no answer in SUBACK")
                    }
                })
                .collect();
            r.event(format!("SUBACK on `{}`: {}", s.on, lines.join(", ")));
            if let StepFacts::Mqtt(f) = &mut r.facts {
                f.granted = lines;
            }
            if !refused.is_empty() {
                r.fail(Failure::new(
                    FailureReason::Status,
                    format!(
                        "the broker refused the subscription to {}",
                        refused.join(", ")
                    ),
                ));
            }
        }
        Err(f) => r.fail(f),
    }
    Ok(r)
}

async fn publish(
    p: &MqttPublish,
    cx: &StepCx<'_>,
    ctx: &mut RunCtx,
) -> Result<StepReport, Box<StepReport>> {
    let start = Instant::now();
    let conn = open_conn(cx, ctx, &p.on)?;
    let mut f = facts(&p.on);
    f.topic = Some(p.topic.clone());
    f.qos = Some(p.qos);
    f.retain = Some(p.retain);
    f.sent = Some(summary(&p.payload));
    f.payload = Some(p.payload.clone());
    f.properties = (!p.properties.is_empty()).then(|| p.properties.clone());
    let mut r = report(cx, start, f);
    if !p.properties.is_empty() && conn.version() != mqtt::Version::V5 {
        r.fail(Failure::new(
            FailureReason::Assertion,
            format!(
                "publish properties need MQTT 5, but `{}` speaks MQTT 3.1.1 — expected protocol: \"5\" on its mqtt.connect",
                p.on
            ),
        ));
        return Ok(r);
    }
    let payload = match &p.payload {
        Payload::Text(t) => bytes::Bytes::copy_from_slice(t.as_bytes()),
        Payload::Binary(b) => b.clone(),
    };
    let publish = Publish {
        topic: p.topic.clone(),
        payload,
        qos: p.qos,
        retain: p.retain,
        dup: false,
        pkid: 0,
        properties: p.properties.clone(),
    };
    match conn.publish(publish, cx.deadline).await {
        Ok(acked) => {
            ctx.last_send = acked.sent_at;
            ctx.last_publish = acked
                .sent_at
                .map(|at| Box::new((at, acked.kernel_sent.clone())));
            for (ph, d) in &acked.phases {
                r.timings.add(*ph, *d);
            }
            let acks: Vec<String> = acked
                .phases
                .iter()
                .map(|(ph, d)| format!("{} after {}", ph.as_str().to_uppercase(), fmt_duration(*d)))
                .collect();
            r.event(format!(
                "published {} bytes on {:?} at QoS {}{}{}",
                p.payload.len(),
                p.topic,
                p.qos,
                if acks.is_empty() {
                    String::new()
                } else {
                    format!(", {}", acks.join(", "))
                },
                acked.note.map(|n| format!(" ({n})")).unwrap_or_default()
            ));
        }
        Err(f) => r.fail(f),
    }
    Ok(r)
}

/// Does topic `t` match filter `f` (`+` one level, `#` the rest)?
pub fn topic_matches(f: &str, t: &str) -> bool {
    let mut fl = f.split('/');
    let mut tl = t.split('/');
    loop {
        match (fl.next(), tl.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Does the message satisfy every part of `e` (its payload matcher taken as is, `not` or not)?
fn fits(e: &MqttExpect, m: &Message) -> bool {
    if e.topic
        .as_deref()
        .is_some_and(|f| !topic_matches(f, &m.topic))
    {
        return false;
    }
    if e.retain.is_some_and(|r| r != m.retain) {
        return false;
    }
    let want = &e.properties;
    let got = &m.properties;
    let same = |w: &Option<String>, g: &Option<String>| w.is_none() || w == g;
    if !same(&want.content_type, &got.content_type)
        || !same(&want.response_topic, &got.response_topic)
        || (want.correlation_data.is_some() && want.correlation_data != got.correlation_data)
        || (want.payload_utf8.is_some() && want.payload_utf8 != got.payload_utf8)
        || !want
            .user_properties
            .iter()
            .all(|p| got.user_properties.contains(p))
    {
        return false;
    }
    e.payload
        .as_ref()
        .is_none_or(|fm| payload_matches(fm, &as_payload(&m.payload)))
}

fn describe_expect(e: &MqttExpect) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &e.topic {
        parts.push(format!("topic matches {t:?}"));
    }
    if let Some(fm) = &e.payload {
        parts.push(format!("payload {}", describe(fm)));
    }
    if !e.properties.is_empty() {
        parts.push("the properties given".into());
    }
    if let Some(r) = e.retain {
        parts.push(format!("retain is {r}"));
    }
    parts.join(" and ")
}

fn message_summary(m: &Message) -> String {
    format!("{}: {}", m.topic, summary(&as_payload(&m.payload)))
}

async fn expect(
    e: &MqttExpect,
    cx: &StepCx<'_>,
    ctx: &mut RunCtx,
) -> Result<StepReport, Box<StepReport>> {
    let start = Instant::now();
    let conn = open_conn(cx, ctx, &e.on)?;
    let until = e
        .within
        .map_or(cx.deadline, |w| (start + w).min(cx.deadline));
    let mut f = |m: &Message| fits(e, m);
    let res = conn.expect(&mut f, until, MAX_RECORDED).await;
    let mut facts = facts(&e.on);
    facts.skipped = res.skipped.iter().map(message_summary).collect();
    facts.skipped_count = res.skipped_count;
    facts.dropped_messages = conn.dropped_messages();
    let duration = start.elapsed();
    let (duration, failure) = match (&res.matched, e.negate) {
        (Some(m), false) => {
            facts.topic = Some(m.topic.clone());
            facts.qos = Some(m.qos);
            facts.retain = Some(m.retain);
            facts.matched = Some(summary(&as_payload(&m.payload)));
            facts.payload = Some(as_payload(&m.payload));
            facts.properties = (!m.properties.is_empty()).then(|| m.properties.clone());
            // Publish-to-receive: from the run's last publish, when it came before.
            let from = ctx
                .last_send
                .filter(|s| *s <= m.received_at)
                .unwrap_or(start);
            (m.received_at.saturating_duration_since(from), None)
        }
        (Some(m), true) => {
            facts.matched = Some(message_summary(m));
            let f = Failure::new(
                FailureReason::Assertion,
                format!(
                    "a message where {} arrived on `{}`: {} — expected none within {}",
                    describe_expect(e),
                    e.on,
                    message_summary(m),
                    fmt_duration(e.within.unwrap_or_default())
                ),
            );
            (duration, Some(f))
        }
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
                .unwrap_or_else(|| Failure::new(FailureReason::Timeout, "no matching message"));
            let skipped = if facts.skipped.is_empty() {
                String::new()
            } else {
                format!("; skipped: {}", facts.skipped.join(" | "))
            };
            let message = format!(
                "waiting on `{}` for a message where {}: {}{skipped}",
                e.on,
                describe_expect(e),
                f.message
            );
            (duration, Some(Failure::new(f.reason, message)))
        }
    };
    let mut r = report(cx, start, facts);
    r.duration = duration;
    if let (Some(m), false) = (&res.matched, e.negate) {
        received(&mut r, ctx, m, duration);
    }
    if res.skipped_count > 0 {
        r.event(format!(
            "skipped {} non-matching message(s)",
            res.skipped_count
        ));
    }
    match failure {
        Some(f) => r.fail(f),
        None if e.negate => r.event(format!(
            "no matching message within {}",
            fmt_duration(start.elapsed())
        )),
        None => {
            let d = r.duration;
            r.event(format!("matched after {}", fmt_duration(d)))
        }
    }
    Ok(r)
}

/// A matched message that came after the run's last send, that send being an `mqtt.publish`
/// (on any connection): publish-to-receive is the `processing` phase, the kernel's figure where
/// both sockets are timestamped (the publish's last byte leaving → the segment that completed
/// the message; both are `CLOCK_REALTIME`, so two connections compare), and the trace gives both.
fn received(r: &mut StepReport, ctx: &RunCtx, m: &Message, user: std::time::Duration) {
    let Some((_, tx)) = ctx
        .last_publish
        .as_deref()
        .filter(|(at, _)| ctx.last_send == Some(*at) && *at <= m.received_at)
    else {
        return;
    };
    let kernel = tx.clone().and_then(|tx| {
        let rx = m
            .kernel_rx
            .ok_or("the kernel gave the message no receive timestamp")?;
        rx.since(tx)
            .ok_or_else(|| "the clock was stepped back between publish and receive".to_string())
    });
    send_to_match(r, "publish to receive", user, kernel);
}

async fn close(
    c: &MqttClose,
    cx: &StepCx<'_>,
    ctx: &mut RunCtx,
) -> Result<StepReport, Box<StepReport>> {
    let start = Instant::now();
    // Closing what is not open leaves things as asked: a teardown after a failed connect
    // reports it and passes (a misspelt name is caught at load).
    let Some(conn) = ctx.conns.get::<MqttConn>(&c.on).cloned() else {
        let mut r = report(cx, start, facts(&c.on));
        r.event(format!(
            "no open MQTT connection `{}`: nothing to close",
            c.on
        ));
        return Ok(r);
    };
    let res = conn.disconnect(cx.deadline).await;
    ctx.conns.remove(&c.on);
    let mut r = report(cx, start, facts(&c.on));
    match res {
        Ok(()) => r.event(format!("sent DISCONNECT on `{}`", c.on)),
        // Already over: the close has nothing left to do, which is what it asked for.
        Err(why) => r.event(format!("`{}` was already closed: {why}", c.on)),
    }
    Ok(r)
}

/// An MQTT connection in a run's or session's [`crate::engine::conns::Conns`].
impl SessionConn for MqttConn {
    fn closed(&self) -> Option<String> {
        MqttConn::closed(self).map(|c| c.to_string())
    }
    fn wait_closed(&self) -> crate::engine::conns::Ending<'_> {
        Box::pin(async move { MqttConn::wait_closed(self).await.to_string() })
    }
    fn connected_at(&self) -> Instant {
        MqttConn::connected_at(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn topic_filters_match_like_a_broker() {
        assert!(topic_matches("chat/+/in", "chat/bob/in"));
        assert!(topic_matches("chat/#", "chat/bob/in"));
        assert!(topic_matches("#", "anything/at/all"));
        assert!(!topic_matches("chat/+", "chat/bob/in"));
        assert!(!topic_matches("chat/bob", "chat/alice"));
        assert!(!topic_matches("chat/bob/in", "chat/bob"));
    }
}
