//! An open MQTT connection: one task owns the transport (reads packets, answers the broker's
//! QoS 1/2 deliveries, pings for keep-alive, completes our own QoS flows) and handles talk to
//! it through a small command channel — the same shape as [`crate::ws::WsConn`], for the same
//! reasons (reading must go on while nobody waits, one owner needs no lock).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::codec::{self, In, Out, Properties, Publish, Version};
use super::transport::Transport;
use crate::{fmt_duration, Failure, FailureReason, Phase};

/// QoS 2 deliveries awaiting the broker's PUBREL that a connection remembers; a broker that
/// never releases them fails the connection instead of growing its memory.
const MAX_UNRELEASED: usize = 1024;

/// A message the broker delivered.
#[derive(Clone, Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub properties: Properties,
    pub received_at: Instant,
    /// The kernel's receive timestamp of the segment that completed it (Linux): compared with a
    /// publish's [`Acked::kernel_sent`], on this connection or another.
    pub kernel_rx: Option<crate::kts::RealTime>,
}

/// Why a connection is no longer usable.
#[derive(Clone, Debug, PartialEq)]
pub enum Closed {
    /// The broker sent DISCONNECT (MQTT 5: with its reason) or ended the connection.
    ByBroker(String),
    /// Reset, malformed packet, oversized packet, no PINGRESP…
    Error(String),
    /// We disconnected (`mqtt.close`, or the last handle was dropped).
    ByUs,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::ByBroker(why) => write!(f, "the broker closed the connection: {why}"),
            Closed::Error(e) => write!(f, "connection failed: {e}"),
            Closed::ByUs => f.write_str("connection was closed by this scenario"),
        }
    }
}

/// An acknowledged SUBSCRIBE or PUBLISH.
#[derive(Clone, Debug)]
pub struct Acked {
    /// When the packet was written (a publish's receivers measure from here).
    pub sent_at: Option<Instant>,
    /// A PUBLISH: the kernel's send timestamp of its last byte (a receiver's kernel figure
    /// starts here), or why there is none.
    pub kernel_sent: Result<crate::kts::RealTime, String>,
    /// The acknowledgement phases, in order: `suback`; `puback`; `pubrec`, `pubcomp`.
    pub phases: Vec<(Phase, Duration)>,
    /// SUBACK: per filter, the granted QoS or the broker's refusal.
    pub granted: Vec<Result<u8, String>>,
    /// A success with a remark (MQTT 5 "no matching subscribers").
    pub note: Option<String>,
}

impl Default for Acked {
    fn default() -> Self {
        Acked {
            sent_at: None,
            kernel_sent: Err("not a PUBLISH".into()),
            phases: Vec::new(),
            granted: Vec::new(),
            note: None,
        }
    }
}

/// Result of [`MqttConn::expect`].
#[derive(Debug)]
pub struct ExpectResult {
    pub matched: Option<Message>,
    pub skipped: Vec<Message>,
    pub skipped_count: usize,
    /// `None` when matched: [`FailureReason::Timeout`], or `Protocol` when the connection ended.
    pub failure: Option<Failure>,
}

/// Cheap clonable handle. Dropping the last one disconnects.
#[derive(Clone)]
pub struct MqttConn {
    commands: crate::mailbox::Sender<Box<Command>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for MqttConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConn")
            .field("closed", &self.closed())
            .finish()
    }
}

struct Shared {
    inbox: crate::inbox::Inbox<Message>,
    arrived: Notify,
    closed: Mutex<Option<Closed>>,
    ended: Notify,
    connected_at: Instant,
    version: Version,
}

impl Shared {
    fn push(&self, m: Message) {
        self.inbox.push(m);
        self.arrived.notify_waiters();
    }

    fn pop(&self) -> Option<Message> {
        self.inbox.pop()
    }

    fn closed(&self) -> Option<Closed> {
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn finish(&self, why: Closed) {
        {
            let mut c = self.closed.lock().unwrap_or_else(|e| e.into_inner());
            if c.is_none() {
                *c = Some(why);
            }
        }
        self.ended.notify_waiters();
        self.arrived.notify_waiters();
    }
}

type Reply = oneshot::Sender<Result<Acked, Failure>>;

enum Command {
    Subscribe {
        filters: Vec<(String, u8)>,
        done: Reply,
    },
    Publish {
        publish: Publish,
        done: Reply,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
}

/// A flow of ours waiting for the broker.
struct Pending {
    done: Reply,
    sent_at: Instant,
    /// QoS 2: when PUBREC came (then we wait for PUBCOMP).
    rec_at: Option<Instant>,
    acked: Acked,
}

pub(super) struct Task {
    pub transport: Transport,
    pub buf: BytesMut,
    pub version: Version,
    pub keep_alive: Option<Duration>,
    pub max_packet_size: usize,
    /// The kernel's timestamps of the connection's bytes (listening, eager: see `connect`).
    pub marks: crate::kts::Marks,
}

/// What the task carries from one event to the next.
struct State {
    next_pkid: u16,
    pending: HashMap<u16, Pending>,
    /// QoS 2 deliveries we answered with PUBREC and await PUBREL for (a resent PUBLISH with the
    /// same id is not delivered twice).
    incoming_qos2: HashSet<u16>,
    last_sent: Instant,
    ping_sent: Option<Instant>,
}

pub(super) fn spawn(task: Task, inbox_limit: usize) -> MqttConn {
    let shared = Arc::new(Shared {
        inbox: crate::inbox::Inbox::new(inbox_limit),
        arrived: Notify::new(),
        closed: Mutex::new(None),
        ended: Notify::new(),
        connected_at: Instant::now(),
        version: task.version,
    });
    let (commands, rx) = crate::mailbox::mailbox();
    tokio::spawn(task.run(rx, shared.clone()));
    MqttConn { commands, shared }
}

impl Task {
    /// An `async fn` would keep `self` twice in its future (the argument and the body's copy
    /// of it, rust-lang/rust#62958).
    #[allow(clippy::manual_async_fn)] // the point: see above
    fn run(
        mut self,
        mut commands: crate::mailbox::Receiver<Box<Command>>,
        shared: Arc<Shared>,
    ) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let mut st = State {
                next_pkid: 0,
                pending: HashMap::new(),
                incoming_qos2: HashSet::new(),
                last_sent: Instant::now(),
                ping_sent: None,
            };
            // Packets that came in the CONNACK's read.
            if let Err(why) = self.drain(&mut st, &shared).await {
                self.end(&mut st, &shared, why).await;
                return;
            }
            loop {
                let tick = self.keep_alive.map(|ka| match st.ping_sent {
                    Some(at) => at + ka,
                    None => st.last_sent + ka,
                });
                let flow = tokio::select! {
                    cmd = commands.recv() => self.on_command(cmd, &mut st, &shared).await,
                    n = self.transport.read(&mut self.buf) => match n {
                        Ok(0) => Err(Closed::ByBroker("the connection ended without DISCONNECT".into())),
                        Ok(_) => self.drain(&mut st, &shared).await.map(|_| ControlFlow::Continue(())),
                        Err(e) => Err(Closed::Error(e)),
                    },
                    _ = sleep_until_opt(tick) => self.on_tick(&mut st).await,
                };
                match flow {
                    Ok(ControlFlow::Continue(())) => {}
                    Ok(ControlFlow::Break(())) => return,
                    Err(why) => {
                        self.end(&mut st, &shared, why).await;
                        return;
                    }
                }
            }
        }
    }

    /// The connection is over: record why, fail every flow still waiting.
    async fn end(&mut self, st: &mut State, shared: &Shared, why: Closed) {
        shared.finish(why.clone());
        for (_, p) in st.pending.drain() {
            let _ = p.done.send(Err(Failure::new(
                FailureReason::Protocol,
                format!("no acknowledgement: {why}"),
            )));
        }
        if matches!(why, Closed::ByUs) {
            self.transport.shutdown().await;
        }
    }

    async fn send(&mut self, out: Out<'_>, st: &mut State) -> Result<Instant, Closed> {
        let mut bytes = BytesMut::new();
        codec::encode(self.version, &out, &mut bytes, self.max_packet_size)
            .map_err(|e| Closed::Error(format!("cannot encode a packet: {e}")))?;
        self.transport
            .write(bytes.freeze())
            .await
            .map_err(Closed::Error)?;
        st.last_sent = Instant::now();
        Ok(st.last_sent)
    }

    fn pkid(st: &mut State) -> u16 {
        // Flows whose step gave up (its deadline passed, the handle's receiver is gone) are
        // forgotten: a broker that never acknowledges must not fill the map, nor use up the
        // 65,535 packet ids and leave this loop nothing to find.
        st.pending.retain(|_, p| !p.done.is_closed());
        loop {
            st.next_pkid = st.next_pkid.wrapping_add(1);
            if st.next_pkid != 0 && !st.pending.contains_key(&st.next_pkid) {
                return st.next_pkid;
            }
        }
    }

    async fn on_command(
        &mut self,
        cmd: Option<Box<Command>>,
        st: &mut State,
        shared: &Shared,
    ) -> Result<ControlFlow<()>, Closed> {
        let Some(cmd) = cmd else {
            // Every handle is gone.
            let _ = self.send(Out::Disconnect, st).await;
            self.end(st, shared, Closed::ByUs).await;
            return Ok(ControlFlow::Break(()));
        };
        match *cmd {
            Command::Subscribe { filters, done } => {
                let pkid = Self::pkid(st);
                let sent_at = self
                    .send(
                        Out::Subscribe {
                            pkid,
                            filters: &filters,
                        },
                        st,
                    )
                    .await?;
                st.pending.insert(pkid, pending(done, sent_at));
            }
            Command::Publish { mut publish, done } => {
                if publish.qos > 0 {
                    publish.pkid = Self::pkid(st);
                }
                let sent_at = self.send(Out::Publish(&publish), st).await?;
                // Flushed, and the stamp fetched on the flush (eager marks): its last byte is
                // the last one written.
                let kernel_sent = self.marks.sent_at(self.marks.sent_key());
                if publish.qos == 0 {
                    let _ = done.send(Ok(Acked {
                        sent_at: Some(sent_at),
                        kernel_sent,
                        ..Acked::default()
                    }));
                } else {
                    let mut p = pending(done, sent_at);
                    p.acked.kernel_sent = kernel_sent;
                    st.pending.insert(publish.pkid, p);
                }
            }
            Command::Disconnect { done } => {
                let _ = self.send(Out::Disconnect, st).await;
                self.end(st, shared, Closed::ByUs).await;
                let _ = done.send(());
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Handle every whole packet in the buffer.
    async fn drain(&mut self, st: &mut State, shared: &Shared) -> Result<(), Closed> {
        loop {
            let packet = codec::decode(self.version, &mut self.buf, self.max_packet_size)
                .map_err(|e| Closed::Error(e.0))?;
            let Some(packet) = packet else {
                // Nothing left undecoded: give the room back, so an idle connection holds no
                // read buffer (reads append to it again on demand).
                if self.buf.is_empty() && self.buf.capacity() > 0 {
                    self.buf = BytesMut::new();
                }
                return Ok(());
            };
            self.on_packet(packet, st, shared).await?;
        }
    }

    async fn on_packet(&mut self, p: In, st: &mut State, shared: &Shared) -> Result<(), Closed> {
        let now = Instant::now();
        // Packets are completed only by reads, decoded after each: the last read completed it.
        let kernel_rx = self.marks.last_rx();
        match p {
            In::Publish(p) => {
                let deliver = match p.qos {
                    1 => {
                        self.send(Out::PubAck(p.pkid), st).await?;
                        true
                    }
                    2 => {
                        if st.incoming_qos2.len() >= MAX_UNRELEASED
                            && !st.incoming_qos2.contains(&p.pkid)
                        {
                            return Err(Closed::Error(format!(
                                "the broker left more than {MAX_UNRELEASED} QoS 2 messages without PUBREL"
                            )));
                        }
                        let fresh = st.incoming_qos2.insert(p.pkid);
                        self.send(Out::PubRec(p.pkid), st).await?;
                        fresh
                    }
                    _ => true,
                };
                if deliver {
                    shared.push(Message {
                        topic: p.topic,
                        // A copy of its own: the decoded payload shares the read buffer's
                        // allocation, which a message left in the inbox would keep alive.
                        payload: Bytes::copy_from_slice(&p.payload),
                        qos: p.qos,
                        retain: p.retain,
                        properties: p.properties,
                        received_at: now,
                        kernel_rx,
                    });
                }
            }
            In::PubRel { pkid } => {
                st.incoming_qos2.remove(&pkid);
                self.send(Out::PubComp(pkid), st).await?;
            }
            In::PubAck {
                pkid,
                refusal,
                note,
            } => {
                if let Some(mut p) = st.pending.remove(&pkid) {
                    p.acked.phases.push((Phase::Puback, now - p.sent_at));
                    p.acked.note = note;
                    answer(
                        p,
                        refusal.map(|r| format!("PUBACK refused the message: {r}")),
                    );
                }
            }
            In::PubRec {
                pkid,
                refusal,
                note,
            } => {
                if let Some(mut p) = st.pending.remove(&pkid) {
                    p.acked.phases.push((Phase::Pubrec, now - p.sent_at));
                    p.acked.note = note;
                    if let Some(r) = refusal {
                        answer(p, Some(format!("PUBREC refused the message: {r}")));
                    } else {
                        self.send(Out::PubRel(pkid), st).await?;
                        p.rec_at = Some(now);
                        st.pending.insert(pkid, p);
                    }
                }
            }
            In::PubComp { pkid, refusal } => {
                if let Some(mut p) = st.pending.remove(&pkid) {
                    let from = p.rec_at.unwrap_or(p.sent_at);
                    p.acked.phases.push((Phase::Pubcomp, now - from));
                    answer(p, refusal.map(|r| format!("PUBCOMP: {r}")));
                }
            }
            In::SubAck { pkid, granted } => {
                if let Some(mut p) = st.pending.remove(&pkid) {
                    p.acked.phases.push((Phase::Suback, now - p.sent_at));
                    p.acked.granted = granted;
                    answer(p, None);
                }
            }
            In::UnsubAck { .. } => {}
            In::PingResp => st.ping_sent = None,
            In::Disconnect { reason } => return Err(Closed::ByBroker(reason)),
            In::ConnAck { .. } => {
                return Err(Closed::Error(
                    "the broker sent a second CONNACK (protocol violation)".into(),
                ))
            }
            In::Unexpected(what) => {
                return Err(Closed::Error(format!(
                    "the broker sent {what}, which a client never receives (protocol violation)"
                )))
            }
        }
        Ok(())
    }

    /// Keep-alive: ping when nothing was sent for a period; give up when the broker has not
    /// answered the previous ping within one.
    async fn on_tick(&mut self, st: &mut State) -> Result<ControlFlow<()>, Closed> {
        let ka = self.keep_alive.unwrap_or_default();
        if st.ping_sent.is_some() {
            return Err(Closed::Error(format!(
                "the broker did not answer PINGREQ within the keep-alive ({})",
                fmt_duration(ka)
            )));
        }
        let at = self.send(Out::PingReq, st).await?;
        st.ping_sent = Some(at);
        Ok(ControlFlow::Continue(()))
    }
}

fn pending(done: Reply, sent_at: Instant) -> Pending {
    Pending {
        done,
        sent_at,
        rec_at: None,
        acked: Acked {
            sent_at: Some(sent_at),
            ..Acked::default()
        },
    }
}

fn answer(p: Pending, refusal: Option<String>) {
    let _ = p.done.send(match refusal {
        None => Ok(p.acked),
        Some(r) => Err(Failure::new(FailureReason::Status, r)),
    });
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl MqttConn {
    pub fn version(&self) -> Version {
        self.shared.version
    }

    async fn ask(
        &self,
        cmd: Command,
        rx: oneshot::Receiver<Result<Acked, Failure>>,
        deadline: Instant,
        doing: &str,
    ) -> Result<Acked, Failure> {
        if let Some(c) = self.closed() {
            return Err(closed_failure(&c, doing));
        }
        let timeout = || {
            Failure::new(
                FailureReason::Timeout,
                format!("{doing}: no acknowledgement before the deadline"),
            )
        };
        if self.commands.send(Box::new(cmd)).is_err() {
            return Err(self.gone_failure(doing).await);
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => Err(timeout()),
            Ok(Ok(r)) => r.map_err(|f| Failure::new(f.reason, format!("{doing}: {}", f.message))),
            Ok(Err(_)) => Err(self.gone_failure(doing).await),
        }
    }

    /// SUBSCRIBE and wait for its SUBACK (phase `suback`).
    pub async fn subscribe(
        &self,
        filters: Vec<(String, u8)>,
        deadline: Instant,
    ) -> Result<Acked, Failure> {
        let (done, rx) = oneshot::channel();
        self.ask(
            Command::Subscribe { filters, done },
            rx,
            deadline,
            "cannot subscribe",
        )
        .await
    }

    /// PUBLISH and, for QoS 1 and 2, wait for its flow to complete (phases `puback`;
    /// `pubrec` and `pubcomp`). The packet id is the connection's to choose.
    pub async fn publish(&self, publish: Publish, deadline: Instant) -> Result<Acked, Failure> {
        let (done, rx) = oneshot::channel();
        self.ask(
            Command::Publish { publish, done },
            rx,
            deadline,
            "cannot publish",
        )
        .await
    }

    /// Consume delivered messages in arrival order until `matches` says yes or `deadline`.
    pub async fn expect(
        &self,
        matches: &mut (dyn FnMut(&Message) -> bool + Send),
        deadline: Instant,
        max_recorded: usize,
    ) -> ExpectResult {
        let started = Instant::now();
        let mut result = ExpectResult {
            matched: None,
            skipped: Vec::new(),
            skipped_count: 0,
            failure: None,
        };
        loop {
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            while let Some(m) = self.shared.pop() {
                if matches(&m) {
                    result.matched = Some(m);
                    return result;
                }
                result.skipped_count += 1;
                if result.skipped.len() < max_recorded {
                    result.skipped.push(m);
                }
            }
            if let Some(c) = self.closed() {
                result.failure = Some(closed_failure(
                    &c,
                    &format!("no matching message{}", skipped_note(result.skipped_count)),
                ));
                return result;
            }
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(deadline) => {
                    result.failure = Some(Failure::new(
                        FailureReason::Timeout,
                        format!(
                            "no matching message within {}{}",
                            fmt_duration(started.elapsed()),
                            skipped_note(result.skipped_count)
                        ),
                    ));
                    return result;
                }
            }
        }
    }

    /// Send DISCONNECT and end the connection. `Err` carries why it had already ended.
    pub async fn disconnect(&self, deadline: Instant) -> Result<(), Closed> {
        if let Some(c) = self.closed() {
            return Err(c);
        }
        let (done, rx) = oneshot::channel();
        let cmd = Box::new(Command::Disconnect { done });
        if self.commands.send(cmd).is_ok() {
            let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), rx).await;
        }
        match self.closed() {
            None | Some(Closed::ByUs) => Ok(()),
            Some(other) => Err(other),
        }
    }

    pub fn closed(&self) -> Option<Closed> {
        self.shared.closed()
    }

    pub async fn wait_closed(&self) -> Closed {
        loop {
            let ended = self.shared.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if let Some(c) = self.shared.closed() {
                return c;
            }
            ended.await;
        }
    }

    pub fn connected_at(&self) -> Instant {
        self.shared.connected_at
    }

    /// Messages dropped because the inbox was full (oldest first).
    pub fn dropped_messages(&self) -> u64 {
        self.shared.inbox.dropped()
    }

    async fn gone_failure(&self, doing: &str) -> Failure {
        let c = tokio::time::timeout(Duration::from_millis(100), self.wait_closed())
            .await
            .unwrap_or_else(|_| Closed::Error("the connection task ended".into()));
        closed_failure(&c, doing)
    }
}

fn skipped_note(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => " (1 other message skipped)".into(),
        n => format!(" ({n} other messages skipped)"),
    }
}

fn closed_failure(c: &Closed, doing: &str) -> Failure {
    Failure::new(FailureReason::Protocol, format!("{doing}: {c}"))
}
