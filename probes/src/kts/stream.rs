//! A TCP stream that asks the kernel to timestamp what it sends and receives, for the phases
//! that are a request and its answer: HTTP processing (TTFB), the TLS handshake's rounds, a tcp
//! dialogue's send → matching line, a WebSocket send → matching frame.
//!
//! With `SO_TIMESTAMPING` (RX software, `OPT_ID`) on the socket, the kernel attaches to every
//! `recvmsg` the time the (last) segment read arrived; and for a `sendmsg` that asks (a TX
//! software control message), queues on the socket's error queue the time the segment carrying
//! the send's last byte left the stack, keyed by that byte's offset since the option was set.
//! Only the writes a figure needs ask: each stamp is kernel work and a wake-up of the runtime.
//! [`TimestampedStream`] reads with `recvmsg` while someone listens, and drains the error queue
//! into a small ring matched by key ([`TxStamps`]: TX completions can come in any order).
//!
//! The stream sits at the bottom, on the TCP socket, under rustls, hyper, tungstenite or a line
//! reader. It sees bytes, not messages, so the layer that knows what the bytes mean says when the
//! awaited ones were read. Three ways to use it, through its [`Marks`]:
//! - **one exchange** ([`Marks::arm`] … [`Marks::take`]): every write while armed is the request;
//!   the first read is the response (plain HTTP/1.1), or, once a layer above declared itself
//!   ([`Marks::layered`], as the TLS handshake does), the read that carried the bytes that layer
//!   reported with [`Marks::seen`] (a TLS record's plaintext, an HTTP/2 HEADERS frame, see
//!   [`Seen`]); an HTTP/2 layer also says which writes were the request ([`Marks::sent`]);
//! - **rounds** ([`Marks::start_rounds`] … [`Marks::take_rounds`]): a handshake of alternating
//!   flights; each round is the last byte of one of our flights → the last segment of the
//!   peer's answer before our next flight, and the figure is their sum (our own work between
//!   rounds is not in it);
//! - **long connections** ([`Marks::listen`], then [`Marks::sent_key`] after a send and
//!   [`Marks::last_rx`] when a message matched, and [`Marks::between`]): any number of
//!   exchanges on a connection that lives across steps (ws, tcp dialogue, `tcp.*` and MQTT
//!   sessions: adopting it is wrapping the socket with [`timestamped`] before any other layer,
//!   `sent_key()` after each flush and `last_rx()` when a message is taken); and, when the
//!   answer comes on another connection (an MQTT publish and its subscriber), [`Marks::eager`]
//!   on the sender, whose [`Marks::sent_at`] is then compared with the receiver's `last_rx()`.
//!
//! The receive timestamp is that of the last segment the deciding read consumed: bytes are read
//! as they come (under TLS, a record's figure is that of the read that brought its first
//! byte; on a long connection a read ends at a record's edge). When the prober reads late and
//! more of the answer has arrived, the figure errs long, never short, and by less than the
//! prober's own delay; the kernel merges segments queued unread anyway, keeping the latest
//! one's stamp.
//!
//! Each system call is CPU every probe pays, so the error queue is read only for a send stamp a
//! read needs (until it comes), or every few writes on the kernel's signal; reads in a handshake
//! take whole flights.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::{Cmsgs, RealTime, CONTROL_LEN};

/// `SCM_TSTAMP_SND` (linux/errqueue.h): the timestamp of a segment leaving the stack.
const SCM_TSTAMP_SND: u32 = 0;

/// The send timestamps kept while waiting for the response: a request is a few writes, and a
/// long connection's message needs only its own send's stamp until its answer comes. Every
/// timestamped connection holds them for its life: 8 instead of 16 put its marks in mimalloc's
/// 256-byte blocks instead of the 384-byte ones (two connections a session, 10,000 sessions).
const TX_KEEP: usize = 8;

/// Send timestamps by key, in whatever order the kernel completed them; the oldest are dropped.
///
/// Every timestamped connection holds one for its life: 16 bytes a stamp (the first
/// `min(next, TX_KEEP)` set) instead of an `Option<(u32, RealTime)>`'s 24.
#[derive(Debug, Default)]
pub struct TxStamps {
    stamps: [TxStamp; TX_KEEP],
    next: usize,
}

/// One send timestamp: the key of the send's last byte, and the time as seconds and
/// nanoseconds (a [`RealTime`] taken apart, so that the key packs beside the nanoseconds).
#[derive(Clone, Copy, Debug, Default)]
struct TxStamp {
    secs: u64,
    nanos: u32,
    key: u32,
}

impl TxStamp {
    fn at(&self) -> RealTime {
        RealTime(Duration::new(self.secs, self.nanos))
    }
}

impl TxStamps {
    /// A segment the kernel sent again (a tail loss probe or a retransmission: the peer was slow
    /// to acknowledge) is stamped again under the same key; the first send is kept, as the
    /// peer may well have answered it (the wire harness found exactly that: a duplicate the
    /// server reported with a D-SACK).
    pub fn record(&mut self, key: u32, at: RealTime) {
        let n = self.next.min(TX_KEEP);
        let stamp = |key| TxStamp {
            secs: at.0.as_secs(),
            nanos: at.0.subsec_nanos(),
            key,
        };
        if let Some(first) = self.stamps[..n].iter_mut().find(|s| s.key == key) {
            if at < first.at() {
                *first = stamp(key);
            }
            return;
        }
        self.stamps[self.next % TX_KEEP] = stamp(key);
        // Kept below 2 * TX_KEEP (the same slot modulo TX_KEEP): `min(next, TX_KEEP)` stays
        // the count of stamps set, however long the connection lives.
        self.next += 1;
        if self.next >= 2 * TX_KEEP {
            self.next -= TX_KEEP;
        }
    }

    /// The timestamp of the send whose last byte is `key`.
    pub fn find(&self, key: u32) -> Option<RealTime> {
        self.stamps[..self.next.min(TX_KEEP)]
            .iter()
            .find(|s| s.key == key)
            .map(TxStamp::at)
    }
}

/// Writes and reads of a handshake kept: a TLS handshake is a handful; more is a peer playing
/// games.
const MAX_HANDSHAKE_IO: usize = 64;

/// A handshake's writes and reads, as the stream saw them (see [`Marks::start_rounds`]).
///
/// Rounds are cut by the kernel's timestamps, not by the order the task read and wrote: rustls
/// answers a TLS 1.3 ServerHello with a ChangeCipherSpec before it reads the rest of the
/// server's flight, which had already arrived. In kernel time that read belongs to the first
/// round, before the ChangeCipherSpec left.
#[derive(Debug)]
struct Rounds {
    /// (written: key of its last byte | read: its receive timestamp), in the task's order.
    io: Vec<Io>,
    overflow: bool,
    /// Our last flight left (TLS 1.3's Finished): nothing after it is a round.
    closed: bool,
    /// Every write so far went whole, so the next one starts with a record's header.
    aligned: bool,
}

impl Default for Rounds {
    fn default() -> Self {
        Rounds {
            io: Vec::new(),
            overflow: false,
            closed: false,
            aligned: true,
        }
    }
}

/// A TLS record's content type for application data (in TLS 1.3, every encrypted record).
const APPLICATION_DATA: u8 = 23;

/// Whether the TLS records in `bufs` (whole records from their first byte, as rustls writes
/// them) include an application_data one.
fn carries_application_data(bufs: &[io::IoSlice<'_>]) -> bool {
    let (mut header, mut have, mut skip) = ([0u8; 5], 0, 0usize);
    for buf in bufs {
        let mut b: &[u8] = buf;
        while !b.is_empty() {
            if skip > 0 {
                let k = skip.min(b.len());
                (skip, b) = (skip - k, &b[k..]);
                continue;
            }
            let k = (5 - have).min(b.len());
            header[have..have + k].copy_from_slice(&b[..k]);
            (have, b) = (have + k, &b[k..]);
            if have == 5 {
                if header[0] == APPLICATION_DATA {
                    return true;
                }
                (have, skip) = (0, usize::from(u16::from_be_bytes([header[3], header[4]])));
            }
        }
    }
    false
}

#[derive(Clone, Copy, Debug)]
enum Io {
    Wrote(u32),
    Read(Option<RealTime>),
}

impl Rounds {
    fn push(&mut self, io: Io) {
        if self.closed {
            return;
        }
        if self.io.len() < MAX_HANDSHAKE_IO {
            self.io.push(io);
        } else {
            self.overflow = true;
        }
    }

    /// The sum of the rounds and their number, or why there is no figure. A round is the last
    /// byte of one of our flights sent → the last segment of the peer's answer received before
    /// our next flight left.
    fn total(mut self, tx: &TxStamps) -> Result<(Duration, usize), String> {
        if self.overflow {
            return Err("the handshake had too many flights to time".into());
        }
        // Writes after the last read (the client's Finished) answer nothing and left after
        // every read's segment had arrived: they close the last round, as its end does. Their
        // send timestamps are not drained yet (that happens at the next read).
        while let Some(Io::Wrote(_)) = self.io.last() {
            self.io.pop();
        }
        let mut timed = Vec::with_capacity(self.io.len());
        for io in &self.io {
            timed.push(match *io {
                Io::Wrote(key) => (
                    tx.find(key)
                        .ok_or("the kernel gave a flight no send timestamp")?,
                    true,
                ),
                Io::Read(rx) => (
                    rx.ok_or("the kernel gave an answer no receive timestamp")?,
                    false,
                ),
            });
        }
        // Stable: a write and a read stamped alike keep the task's order.
        timed.sort_by_key(|(at, _)| *at);
        let (mut sum, mut n) = (Duration::ZERO, 0);
        let (mut flight, mut answer) = (None, None);
        for (at, wrote) in timed {
            if wrote {
                if let (Some(f), Some(a)) = (flight, answer.take()) {
                    sum += RealTime::since(a, f).unwrap_or_default();
                    n += 1;
                }
                flight = Some(at);
            } else if flight.is_some() {
                answer = Some(at);
            }
        }
        if let (Some(f), Some(a)) = (flight, answer) {
            sum += RealTime::since(a, f).unwrap_or_default();
            n += 1;
        }
        if n == 0 {
            return Err("no round trip was seen".into());
        }
        Ok((sum, n))
    }
}

/// Follows TLS record boundaries (5-byte header: type, version, length) through the bytes read,
/// so that each record knows which read brought its first byte and a long connection's reads
/// can stop at a record's end.
#[derive(Debug, Default)]
struct Records {
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current record still to come (0: reading a header).
    body_left: usize,
    /// The receive timestamp of the read that brought the current record's first byte.
    start_rx: Option<Option<RealTime>>,
    /// That of the last record completed.
    last_start_rx: Option<Option<RealTime>>,
}

impl Records {
    /// Bytes to read at most so that a read ends at the current record's end (or its header's):
    /// a long connection's message counts from the read that completed it, which must not
    /// also take the next record's first bytes.
    fn cap(&self) -> usize {
        if self.body_left > 0 {
            self.body_left
        } else {
            5 - self.have
        }
    }

    fn feed(&mut self, mut bytes: &[u8], rx: Option<RealTime>) {
        while !bytes.is_empty() {
            if self.body_left == 0 {
                if self.have == 0 {
                    self.start_rx = Some(rx);
                }
                let k = (5 - self.have).min(bytes.len());
                self.header[self.have..self.have + k].copy_from_slice(&bytes[..k]);
                self.have += k;
                bytes = &bytes[k..];
                if self.have == 5 {
                    self.have = 0;
                    self.body_left =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                    if self.body_left == 0 {
                        self.last_start_rx = self.start_rx;
                    }
                }
            } else {
                let k = self.body_left.min(bytes.len());
                self.body_left -= k;
                bytes = &bytes[k..];
                if self.body_left == 0 {
                    self.last_start_rx = self.start_rx;
                }
            }
        }
    }
}

/// What the stream noted, shared with the probe and the layers above.
#[derive(Debug, Default)]
struct MarkState {
    /// Bytes written since timestamping was turned on (`OPT_ID` keys count from there).
    written: u64,
    tx: TxStamps,
    /// The last noted read's receive timestamp (`None` inside: the kernel gave none).
    last_rx: Option<Option<RealTime>>,
    /// A layer above decides which read carried the awaited bytes ([`Marks::seen`]).
    layered: bool,
    /// A layer above decides which writes are the request ([`Marks::sent`]).
    tx_by_layer: bool,
    /// Reads are noted for the life of the connection ([`Marks::listen`]).
    long: bool,
    /// The send timestamp of each flushed message is fetched at once ([`Marks::eager`]).
    eager: bool,
    armed: bool,
    /// `OPT_ID` key of the request's last byte.
    last_tx_key: Option<u32>,
    /// The receive timestamp of the read that carried the first awaited bytes, once seen.
    first_rx: Option<Option<RealTime>>,
    /// Boxed, as `records`: only a TLS handshake has them, and every connection has the state.
    rounds: Option<Box<Rounds>>,
    /// TLS records from here on (set when a handshake starts).
    records: Option<Box<Records>>,
    /// Stamped writes since the error queue was last drained.
    undrained: usize,
    /// `OPT_ID` key of the last byte of the last stamped write.
    last_stamped: Option<u32>,
    send_stamps: SendStamps,
}

/// How this socket gets send timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum SendStamps {
    /// Asked per write, for the writes a figure needs.
    #[default]
    Asked,
    /// The kernel stamps every write (it takes no per-write request: before Linux 4.6, or it
    /// refused one).
    Every,
    /// The kernel gives none (it refused the option on the socket too).
    Never,
}

/// What a write is, decided before it is sent ([`MarkState::plan_write`]).
#[derive(Clone, Copy, Debug, Default)]
struct WritePlan {
    /// Sent with a request for its send timestamp.
    stamped: bool,
    /// TLS 1.3's last flight of a handshake (the client's Finished): nothing in the handshake
    /// answers it, so it ends the count of rounds.
    last_flight: bool,
}

impl MarkState {
    fn listening(&self) -> bool {
        (self.armed && self.first_rx.is_none()) || self.rounds.is_some() || self.long
    }

    /// What a write of `bufs` is. It needs its send timestamp when it is a handshake's flight,
    /// an exchange's request or a long connection's message. Others (a TLS close_notify, a
    /// write after the answer came, TLS 1.3's Finished) are not stamped: each stamp is kernel
    /// work and a wake-up of the runtime.
    fn plan_write(&self, bufs: &[io::IoSlice<'_>]) -> WritePlan {
        let counting = self.rounds.as_ref().filter(|r| !r.closed);
        // In a handshake the client's first encrypted record (type application_data; TLS 1.2
        // encrypts its Finished as a handshake record) is TLS 1.3's Finished flight. A
        // ChangeCipherSpec sent before it, while the server's flight is still being read,
        // may start a round and is stamped.
        let last_flight = counting.is_some_and(|r| r.aligned && carries_application_data(bufs));
        let needed = self.long
            || self.eager
            || (self.armed && self.first_rx.is_none())
            || (counting.is_some() && !last_flight);
        let stamped = match self.send_stamps {
            SendStamps::Asked => needed,
            SendStamps::Every => true,
            SendStamps::Never => false,
        };
        WritePlan {
            stamped,
            last_flight,
        }
    }

    /// After `n` bytes of `total` were written as `plan` said; whether the write was stamped.
    fn note_write(&mut self, n: usize, total: usize, plan: WritePlan) -> bool {
        if n == 0 {
            return false;
        }
        self.written += n as u64;
        // Keys are 32-bit and wrap, as the kernel's do.
        let key = (self.written - 1) as u32;
        if plan.stamped {
            self.last_stamped = Some(key);
        }
        if self.armed && self.first_rx.is_none() && !self.tx_by_layer {
            self.last_tx_key = Some(key);
        }
        if let Some(r) = &mut self.rounds {
            r.push(Io::Wrote(key));
            r.closed |= plan.last_flight;
            // Part of a write: the next one starts inside a record.
            r.aligned &= n == total;
        }
        plan.stamped
    }

    /// A write of `n` bytes (no TLS records in it), as the stream would plan it.
    #[cfg(test)]
    fn wrote(&mut self, n: usize) -> bool {
        let plan = self.plan_write(&[]);
        self.note_write(n, n, plan)
    }

    /// How much a noted read may take: anything, the read's stamp being that of the last
    /// segment it took, except on a long connection under TLS ([`Records::cap`]).
    ///
    /// - In a handshake, a round ends at the last segment of the peer's answer, the one a read
    ///   of everything queued is stamped with.
    /// - In one exchange (plain or TLS), the response counts from the read that brought its
    ///   first byte. A read that finds later segments of the answer queued too is stamped with
    ///   the last of them, unless the kernel merged them (it keeps the latest stamp): either
    ///   way the figure errs long, by less than sonde's own delay, which the wake-up delay
    ///   shows. Reading TLS one record at a time would avoid that only for unmerged segments,
    ///   at a system call per record (a TLS 1.3 server's session tickets come first).
    fn read_cap(&self) -> usize {
        match &self.records {
            Some(r) if self.rounds.is_none() && self.long => r.cap(),
            _ => usize::MAX,
        }
    }

    /// The key of the last stamped write when its send timestamp is not drained yet: a read
    /// that may answer it must fetch it first.
    fn missing_key(&self) -> Option<u32> {
        let key = self.last_stamped?;
        self.tx.find(key).is_none().then_some(key)
    }

    fn read(&mut self, bytes: &[u8], rx: Option<RealTime>) {
        if let Some(r) = &mut self.records {
            r.feed(bytes, rx);
        }
        self.last_rx = Some(rx);
        if self.armed && !self.layered && self.first_rx.is_none() {
            self.first_rx = Some(rx);
        }
        if let Some(r) = &mut self.rounds {
            r.push(Io::Read(rx));
        }
    }

    /// A read that was not noted (nobody listening): only the record boundaries matter.
    fn read_unnoted(&mut self, bytes: &[u8]) {
        if let Some(r) = &mut self.records {
            r.feed(bytes, None);
        }
    }
}

/// The probe's (and the upper layers') handle on a [`TimestampedStream`]'s notes.
#[derive(Clone, Debug)]
pub struct Marks {
    state: Arc<Mutex<MarkState>>,
    /// Why there are no kernel timestamps on this stream (the option was refused, or the stream
    /// is not one sonde can timestamp).
    refused: Option<Arc<str>>,
}

impl Marks {
    /// Marks of a stream that is not timestamped, saying why (through a proxy, …).
    pub fn none(why: &str) -> Self {
        Marks {
            state: Arc::default(),
            refused: Some(Arc::from(why)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MarkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the kernel timestamps this stream.
    pub fn on(&self) -> bool {
        self.refused.is_none()
    }

    /// Start an exchange: the next writes are the request, the next read its response (or, for
    /// a layered stream, the read that carried what the layer above reports with [`Marks::seen`]).
    pub fn arm(&self) {
        let mut s = self.lock();
        s.armed = true;
        s.last_tx_key = None;
        s.first_rx = None;
        s.last_rx = None;
    }

    /// A layer above (TLS) now carries the application's bytes: the raw reads are its records,
    /// and it reports the awaited ones with [`Marks::seen`].
    pub fn layered(&self) {
        self.lock().layered = true;
    }

    /// The layer above decides which writes are the request ([`Marks::sent`]); other writes
    /// (HTTP/2 acknowledgements, window updates) are not.
    pub fn request_by_layer(&self) {
        self.lock().tx_by_layer = true;
    }

    /// The layer above wrote request bytes: the request now ends at the last byte written.
    pub fn sent(&self) {
        let mut s = self.lock();
        if s.armed && s.first_rx.is_none() && s.written > 0 {
            s.last_tx_key = Some((s.written - 1) as u32);
        }
    }

    /// The layer above just read the first awaited bytes: the last read carried them.
    pub fn seen(&self) {
        let mut s = self.lock();
        if s.armed && s.first_rx.is_none() {
            // Under TLS: the read that brought the first byte of the record just decrypted.
            let rx = match &s.records {
                Some(r) => r.last_start_rx,
                None => s.last_rx,
            };
            if let Some(rx) = rx {
                s.first_rx = Some(rx);
            }
        }
    }

    /// The kernel's figure for the armed exchange: the first response byte's receive timestamp
    /// minus the send timestamp of the request's last byte; or why there is none.
    pub fn take(&self) -> Result<Duration, String> {
        if let Some(why) = &self.refused {
            return Err(why.to_string());
        }
        let mut s = self.lock();
        s.armed = false;
        let key = s.last_tx_key.ok_or("no request bytes were written")?;
        let rx = match s.first_rx {
            None => return Err("no response bytes were read".into()),
            Some(None) => return Err("the kernel gave the response no receive timestamp".into()),
            Some(Some(rx)) => rx,
        };
        let tx =
            s.tx.find(key)
                .ok_or("the kernel gave the request no send timestamp")?;
        rx.since(tx)
            .ok_or_else(|| "the clock was stepped back between request and response".into())
    }

    /// Start counting a TLS handshake's rounds (before its first write); from here on the bytes
    /// read are TLS records.
    pub fn start_rounds(&self) {
        let mut s = self.lock();
        s.rounds = Some(Box::default());
        s.records = Some(Box::default());
    }

    /// The handshake's rounds (each: our flight's last byte sent → the last segment of the
    /// peer's answer received), summed, and how many there were; or why there is no figure.
    pub fn take_rounds(&self) -> Result<(Duration, usize), String> {
        let rounds = self.lock().rounds.take();
        if let Some(why) = &self.refused {
            return Err(why.to_string());
        }
        let rounds = rounds.ok_or("the rounds were not counted")?;
        let s = self.lock();
        rounds.total(&s.tx)
    }

    /// Note every read from now on, for a connection that carries many exchanges.
    pub fn listen(&self) {
        self.lock().long = true;
    }

    /// The key of the last byte written so far: call right after a message was flushed, and
    /// give it to [`Marks::between`] with the receive timestamp of its answer.
    pub fn sent_key(&self) -> Option<u32> {
        if self.refused.is_some() {
            return None;
        }
        let s = self.lock();
        (s.written > 0).then(|| (s.written - 1) as u32)
    }

    /// Fetch the send timestamp of the last byte written on every flush, for a connection whose
    /// sends are answered on *another* connection (an MQTT publish, received by a subscriber):
    /// no read of this one may come to fetch it. One system call per flushed message.
    pub fn eager(&self) {
        self.lock().eager = true;
    }

    /// The kernel's send timestamp of the byte `key` (from [`Marks::sent_key`]), to compare
    /// with a receive timestamp on another connection ([`RealTime::since`]); or why there is
    /// none. With [`Marks::eager`] it is known once the send was flushed.
    pub fn sent_at(&self, key: Option<u32>) -> Result<RealTime, String> {
        if let Some(why) = &self.refused {
            return Err(why.to_string());
        }
        let key = key.ok_or("no send was timestamped")?;
        self.lock()
            .tx
            .find(key)
            .ok_or_else(|| "the kernel gave the send no timestamp".into())
    }

    /// The receive timestamp of the last read: call when a message was just taken from the
    /// stream (the read that completed it was the last one).
    pub fn last_rx(&self) -> Option<RealTime> {
        self.lock().last_rx.flatten()
    }

    /// The kernel's figure from the send that ended at `key` to a receive at `rx`; or why
    /// there is none.
    pub fn between(&self, key: Option<u32>, rx: Option<RealTime>) -> Result<Duration, String> {
        if let Some(why) = &self.refused {
            return Err(why.to_string());
        }
        let key = key.ok_or("no send was timestamped")?;
        let rx = rx.ok_or("the kernel gave the answer no receive timestamp")?;
        let tx = self
            .lock()
            .tx
            .find(key)
            .ok_or("the kernel gave the send no timestamp")?;
        rx.since(tx)
            .ok_or_else(|| "the clock was stepped back between send and answer".into())
    }
}

/// A TCP stream whose reads and writes the kernel timestamps (see the module docs).
pub struct TimestampedStream {
    inner: TcpStream,
    marks: Marks,
}

impl TimestampedStream {
    /// Turn timestamping on for `inner` (connected, nothing written yet). A kernel that refuses
    /// leaves a plain stream whose [`Marks`] say why.
    pub fn new(inner: TcpStream) -> Self {
        let (send_stamps, refused) = if super::enabled() {
            super::keep_on();
            match enable(&inner) {
                Ok(mode) => (mode, None),
                Err(why) => (SendStamps::Never, Some(Arc::from(why))),
            }
        } else {
            (SendStamps::Never, Some(Arc::from(super::OFF)))
        };
        let state = MarkState {
            send_stamps,
            ..MarkState::default()
        };
        TimestampedStream {
            inner,
            marks: Marks {
                state: Arc::new(Mutex::new(state)),
                refused,
            },
        }
    }

    pub fn marks(&self) -> Marks {
        self.marks.clone()
    }

    /// Move send timestamps from the error queue into the marks, with as few system calls as
    /// possible (each one is CPU every probe pays):
    /// - `until`: the key a noted read needs (the last byte written, [`MarkState::missing_key`]):
    ///   entries are read until it comes, not until the queue is empty (the send was stamped
    ///   before its answer could arrive, so it is queued);
    /// - `None`: only entries the kernel signalled (EPOLLERR, seen by the runtime as ERROR
    ///   readiness): no call when there are none. Done every [`DRAIN_EVERY`] writes, as the
    ///   queue is charged to the socket's receive memory and must not grow on a connection
    ///   that writes much and reads little.
    ///
    /// The first call asks for as many entries as stamped writes are pending (at most
    /// [`TX_BATCH`]): asked for more than are queued, `recvmmsg` looks once more and finds the
    /// queue empty, work that the one pending stamp of a plain HTTP request would pay every
    /// probe. A full batch is followed by another, so late or resent stamps are not left behind.
    fn drain_error_queue(&self, until: Option<u32>) {
        let fd = self.inner.as_raw_fd();
        let mut s = self.marks.lock();
        let mut want = std::mem::take(&mut s.undrained).clamp(1, TX_BATCH);
        loop {
            let entries = match until {
                Some(_) => recv_tx_stamps(fd, want),
                None => self
                    .inner
                    .try_io(Interest::ERROR, || recv_tx_stamps(fd, want)),
            };
            let Ok((stamps, n)) = entries else {
                return;
            };
            let mut found = false;
            for &(key, at) in stamps[..n].iter().flatten() {
                s.tx.record(key, at);
                found |= Some(key) == until;
            }
            // A short batch emptied the queue.
            if found || n < want {
                return;
            }
            want = TX_BATCH;
        }
    }

    /// After `n` of `total` bytes were written as `plan` said: note them, and drain the error
    /// queue every few stamped writes.
    fn wrote(&self, n: usize, total: usize, plan: WritePlan) {
        let drain = {
            let mut s = self.marks.lock();
            let stamped = s.note_write(n, total, plan);
            s.undrained += usize::from(stamped);
            s.undrained >= DRAIN_EVERY
        };
        if drain {
            self.drain_error_queue(None);
        }
    }

    /// Write `bufs`, asking for the send timestamp of the last byte when the marks need it.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let (mut plan, asked) = {
            let s = self.marks.lock();
            (s.plan_write(bufs), s.send_stamps == SendStamps::Asked)
        };
        let n = if plan.stamped && asked {
            let (n, stamped) = ready!(self.poll_send_stamped(cx, bufs))?;
            plan.stamped = stamped;
            n
        } else {
            ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?
        };
        let total = bufs.iter().map(|b| b.len()).sum();
        self.wrote(n, total, plan);
        Poll::Ready(Ok(n))
    }

    /// `sendmsg` with a `SO_TIMESTAMPING` control message: bytes written, and whether they
    /// were stamped. A kernel that refuses the message gets the option on the socket (every
    /// write stamped) or, refusing that too, none: a figure then says no send timestamp came.
    fn poll_send_stamped(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<(usize, bool)>> {
        let fd = self.inner.as_raw_fd();
        loop {
            ready!(self.inner.poll_write_ready(cx))?;
            match self
                .inner
                .try_io(Interest::WRITABLE, || send_stamped(fd, bufs))
            {
                Ok(n) => return Poll::Ready(Ok((n, true))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    let every = enable_on(&self.inner, TX_FLAGS).is_ok();
                    self.marks.lock().send_stamps = match every {
                        true => SendStamps::Every,
                        false => SendStamps::Never,
                    };
                    let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
                    return Poll::Ready(Ok((n, every)));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Writes between two drains of the error queue when no read needed one: fewer than the
/// [`TxStamps`] kept, so a drain never pushes out a stamp still wanted.
const DRAIN_EVERY: usize = TX_KEEP / 2;

/// What the socket keeps on: receive stamps, the report of software stamps, send stamps keyed
/// by byte (`OPT_ID`) and queued without the packet (`OPT_TSONLY`). Send stamps themselves are
/// asked per write ([`send_stamped`]).
const SOCKET_FLAGS: libc::c_uint = libc::SOF_TIMESTAMPING_RX_SOFTWARE
    | libc::SOF_TIMESTAMPING_SOFTWARE
    | libc::SOF_TIMESTAMPING_OPT_ID
    | libc::SOF_TIMESTAMPING_OPT_TSONLY;

/// The socket's flags with every write stamped: for a kernel that takes no per-write request.
const TX_FLAGS: libc::c_uint = SOCKET_FLAGS | libc::SOF_TIMESTAMPING_TX_SOFTWARE;

/// Turn timestamping on; how send stamps will be had.
fn enable(s: &TcpStream) -> Result<SendStamps, String> {
    if per_write_stamps() {
        enable_on(s, SOCKET_FLAGS).map(|()| SendStamps::Asked)
    } else {
        enable_on(s, TX_FLAGS).map(|()| SendStamps::Every)
    }
}

/// Whether TCP takes a send timestamp asked per write: from Linux 4.6 on. Before, the control
/// message was ignored without an error, and no stamp came.
fn per_write_stamps() -> bool {
    static TAKES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TAKES.get_or_init(|| {
        // SAFETY: uname fills the zeroed struct it is given.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut u) } != 0 {
            return false;
        }
        // SAFETY: `release` is a NUL-terminated string within the struct.
        let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
        kernel_at_least(&release.to_string_lossy(), (4, 6))
    })
}

/// Whether a kernel release (`6.18.44-fc-v1300`) is at least `major.minor`.
fn kernel_at_least(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

fn enable_on(s: &TcpStream, flags: libc::c_uint) -> Result<(), String> {
    // SAFETY: `s` is open for the call; the option is a live c_uint of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            (&flags as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "the kernel refused SO_TIMESTAMPING: {}",
            io::Error::last_os_error()
        ))
    }
}

/// One `recvmsg` of stream data into `buf`, with the receive timestamp.
pub(super) fn recv_stream(fd: i32, buf: &mut [u8]) -> io::Result<(usize, Option<RealTime>)> {
    let mut control = [0u64; CONTROL_LEN / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; its pointers are set to live locals below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_LEN as _;
    // SAFETY: every pointer in `msg` points at a live buffer of the stated size.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let clen = (msg.msg_controllen as usize).min(CONTROL_LEN);
    // SAFETY: a prefix of the u64 array, viewed as bytes.
    let control: &[u8] = unsafe { std::slice::from_raw_parts(control.as_ptr().cast(), clen) };
    Ok((n as usize, super::rx_timestamp(control)))
}

/// One `sendmsg` of `bufs` with a control message asking for the send timestamp of its last
/// byte (`SOF_TIMESTAMPING_TX_SOFTWARE`, keyed by the socket's `OPT_ID`).
fn send_stamped(fd: i32, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let mut control = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; its pointers are set to live buffers below. IoSlice is
    // ABI-compatible with iovec on Unix (std's guarantee), and sendmsg only reads them.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = bufs.len().min(1024) as _;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_* compute sizes and point inside `control`, which is 32 bytes: one header
    // (16) and a u32, padded (CMSG_SPACE(4) = 24).
    unsafe {
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SO_TIMESTAMPING;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
        std::ptr::write_unaligned(
            libc::CMSG_DATA(cmsg).cast::<u32>(),
            libc::SOF_TIMESTAMPING_TX_SOFTWARE,
        );
    }
    // SAFETY: every pointer in `msg` points at a live buffer of the stated size.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Error-queue entries fetched by one system call: a TLS 1.2 handshake and its request leave
/// three send timestamps (TLS 1.3 two), and each call is CPU every probe pays.
const TX_BATCH: usize = 4;

/// The send timestamps (key and time) of one [`recv_tx_stamps`].
type TxBatch = [Option<(u32, RealTime)>; TX_BATCH];

/// Up to `want` (at most [`TX_BATCH`]) entries of the error queue (`recvmmsg`) and how many
/// there were; an entry that is not a send timestamp is `None`. `Err` when the queue is empty.
fn recv_tx_stamps(fd: i32, want: usize) -> io::Result<(TxBatch, usize)> {
    // The kernel fills `want` headers: never more than there are (memory safety, not logic).
    let want = want.clamp(1, TX_BATCH);
    let mut control = [[0u64; CONTROL_LEN / 8]; TX_BATCH];
    // SAFETY: zeroed mmsghdrs are valid; each one's control pointer is set to its own live
    // buffer below, and no data buffer is given (OPT_TSONLY: an entry carries no packet).
    let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { std::mem::zeroed() };
    for (m, c) in msgs.iter_mut().zip(control.iter_mut()) {
        m.msg_hdr.msg_control = c.as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = CONTROL_LEN as _;
    }
    // SAFETY: `msgs` holds TX_BATCH ≥ `want` headers whose pointers point at live buffers.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            want as _,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (n as usize).min(want);
    let mut stamps = [None; TX_BATCH];
    for i in 0..n {
        let clen = (msgs[i].msg_hdr.msg_controllen as usize).min(CONTROL_LEN);
        // SAFETY: a prefix of entry i's u64 array, viewed as bytes.
        let c: &[u8] = unsafe { std::slice::from_raw_parts(control[i].as_ptr().cast(), clen) };
        stamps[i] = tx_stamp(c);
    }
    Ok((stamps, n))
}

/// A send timestamp in the control messages of one error-queue entry: the software timestamp of
/// `SCM_TIMESTAMPING` and the key from the `sock_extended_err` beside it (origin
/// `SO_EE_ORIGIN_TIMESTAMPING`, info `SCM_TSTAMP_SND`).
pub fn tx_stamp(control: &[u8]) -> Option<(u32, RealTime)> {
    let mut at = None;
    let mut key = None;
    for (level, kind, data) in Cmsgs::new(control) {
        match (level, kind) {
            (libc::SOL_SOCKET, libc::SCM_TIMESTAMPING) => at = super::read_timespec(data, 0),
            (libc::IPPROTO_IP, libc::IP_RECVERR) | (libc::IPPROTO_IPV6, libc::IPV6_RECVERR) => {
                let size = std::mem::size_of::<libc::sock_extended_err>();
                let Some(bytes) = data.get(..size) else {
                    continue;
                };
                // SAFETY: exactly one sock_extended_err, copied out unaligned.
                let e: libc::sock_extended_err =
                    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
                if e.ee_errno == libc::ENOMSG as u32
                    && e.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING
                    && e.ee_info == SCM_TSTAMP_SND
                {
                    key = Some(e.ee_data);
                }
            }
            _ => {}
        }
    }
    Some((key?, at?))
}

impl AsyncRead for TimestampedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.marks.refused.is_some() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let cap = {
            let s = this.marks.lock();
            s.listening().then(|| s.read_cap())
        };
        let Some(cap) = cap else {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            this.marks.lock().read_unnoted(&buf.filled()[before..]);
            return Poll::Ready(Ok(()));
        };
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            let fd = this.inner.as_raw_fd();
            // SAFETY: recvmsg only writes initialized bytes into the unfilled part, and we only
            // advance by what it reports.
            let unfilled = unsafe { buf.unfilled_mut() };
            let len = unfilled.len().min(cap);
            let dst =
                unsafe { std::slice::from_raw_parts_mut(unfilled.as_mut_ptr().cast::<u8>(), len) };
            match this
                .inner
                .try_io(Interest::READABLE, || recv_stream(fd, dst))
            {
                Ok((n, rx)) => {
                    // SAFETY: recvmsg filled n bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    if n > 0 {
                        // What was written last was stamped before this could answer it.
                        let missing = this.marks.lock().missing_key();
                        if missing.is_some() {
                            this.drain_error_queue(missing);
                        }
                        let got = &buf.filled()[buf.filled().len() - n..];
                        this.marks.lock().read(got, rx);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TimestampedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.marks.refused.is_some() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.poll_send(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.marks.refused.is_some() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        this.poll_send(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        if this.marks.refused.is_none() {
            let missing = {
                let s = this.marks.lock();
                s.eager.then(|| s.missing_key()).flatten()
            };
            if missing.is_some() {
                this.drain_error_queue(missing);
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(us: u64) -> RealTime {
        RealTime::from_timespec(
            (us / 1_000_000) as i64 + 1,
            ((us % 1_000_000) * 1000) as i64,
        )
        .unwrap()
    }

    /// Completions in any order (a later send's before an earlier one's) are matched by key.
    #[test]
    fn tx_completions_match_by_key_in_any_order() {
        let mut s = TxStamps::default();
        s.record(99, t(300));
        s.record(9, t(100));
        s.record(49, t(200));
        assert_eq!(s.find(9), Some(t(100)));
        assert_eq!(s.find(49), Some(t(200)));
        assert_eq!(s.find(99), Some(t(300)));
        assert_eq!(s.find(50), None);
        // Bounded: the oldest fall out, the newest stay.
        for k in 1000..1000 + TX_KEEP as u32 {
            s.record(k, t(k as u64));
        }
        assert_eq!(s.find(99), None);
        let last = 1000 + TX_KEEP as u32 - 1;
        assert_eq!(s.find(last), Some(t(u64::from(last))));
    }

    /// A long-lived connection: after any number of sends exactly the last `TX_KEEP` are
    /// found (a stamp that was never set, key 0 included, is not); a stamp is 16 bytes.
    #[test]
    fn tx_stamps_keep_the_last_sends_for_a_connection_s_life() {
        let mut s = TxStamps::default();
        assert_eq!(s.find(0), None);
        s.record(0, t(0));
        assert_eq!(s.find(0), Some(t(0)));
        for k in 1..=10 * TX_KEEP as u32 + 3 {
            s.record(k, t(u64::from(k) * 10));
            let n = (k as usize + 1).min(TX_KEEP) as u32;
            let oldest = k + 1 - n;
            assert_eq!(s.find(oldest), Some(t(u64::from(oldest) * 10)), "send {k}");
            if oldest > 0 {
                assert_eq!(s.find(oldest - 1), None, "send {k}");
            }
        }
        assert!(s.next < 2 * TX_KEEP);
        assert!(std::mem::size_of::<TxStamps>() <= 16 * TX_KEEP + 8);
        // The marks' `Arc<Mutex<MarkState>>` (two counts, then the mutex) fits 256 bytes.
        let marks = 16 + std::mem::size_of::<Mutex<MarkState>>();
        assert!(marks <= 256, "{marks}");
    }

    /// The request's segment sent again (a tail loss probe: the server was slow to acknowledge
    /// the client's Finished, CCS and request, sent as three small segments), stamped again
    /// under the request's key, drained before or after the first: the first send is the
    /// figure's start, as on the wire (the server's D-SACK showed it had the first copy).
    #[test]
    fn a_resent_segment_keeps_the_first_send() {
        for resent_first in [false, true] {
            let m = marks(None);
            m.layered();
            m.lock().wrote(300); // the handshake
            m.arm();
            m.lock().wrote(140); // the request: key 439
            {
                let mut s = m.lock();
                let (a, b) = ((439, t(1_000)), (439, t(6_000)));
                let order = if resent_first { [b, a] } else { [a, b] };
                for (k, at) in order {
                    s.tx.record(k, at);
                }
                s.tx.record(299, t(500));
            }
            m.lock().read(&[0], Some(t(21_000)));
            m.seen();
            assert_eq!(
                m.take(),
                Ok(Duration::from_micros(20_000)),
                "{resent_first}"
            );
        }
    }

    /// A noted read fetches the last stamped write's send timestamp only while it is missing.
    #[test]
    fn only_a_missing_send_timestamp_is_fetched() {
        let m = marks(None);
        m.listen();
        assert_eq!(m.lock().missing_key(), None);
        m.lock().wrote(10);
        assert_eq!(m.lock().missing_key(), Some(9));
        m.lock().tx.record(9, t(1));
        assert_eq!(m.lock().missing_key(), None);
        m.lock().wrote(5);
        assert_eq!(m.lock().missing_key(), Some(14));
    }

    /// Only the writes a figure needs are stamped: a handshake's, an armed request's, a long
    /// connection's; not one after the answer came (a TLS close_notify), nor one nobody awaits.
    /// An unstamped write is never waited for, and keys still count its bytes.
    #[test]
    fn only_the_writes_a_figure_needs_are_stamped() {
        let m = marks(None);
        assert!(!m.lock().wrote(10), "nobody listens");
        m.start_rounds();
        assert!(m.lock().wrote(200), "a handshake's flight");
        m.lock().tx.record(209, t(1));
        m.take_rounds().ok();
        assert!(
            !m.lock().wrote(6),
            "after the handshake, before the request"
        );
        assert_eq!(m.lock().missing_key(), None);
        m.arm();
        assert!(m.lock().wrote(100), "the request");
        assert_eq!(m.lock().missing_key(), Some(315));
        m.lock().first_rx = Some(Some(t(2)));
        assert!(!m.lock().wrote(24), "after the response came");
        assert_eq!(m.lock().missing_key(), Some(315));
        m.lock().send_stamps = SendStamps::Every;
        assert!(m.lock().wrote(1), "a kernel that stamps every write");
        let none = marks(None);
        none.lock().send_stamps = SendStamps::Never;
        none.arm();
        assert!(!none.lock().wrote(1), "a kernel that gives none");
        assert_eq!(none.lock().missing_key(), None, "so none is awaited");
    }

    fn marks(refused: Option<&str>) -> Marks {
        Marks {
            state: Arc::default(),
            refused: refused.map(Arc::from),
        }
    }

    /// The request's last byte is the key; the first read ends the exchange.
    #[test]
    fn an_exchange_pairs_the_last_request_byte_with_the_first_response_read() {
        let m = marks(None);
        m.lock().wrote(10); // an earlier exchange, not armed
        m.arm();
        m.lock().wrote(40); // bytes 10..50
        m.lock().wrote(30); // bytes 50..80: the last one is key 79
        {
            let mut s = m.lock();
            // The kernel completed the second send first.
            s.tx.record(79, t(1_000));
            s.tx.record(49, t(900));
            s.first_rx = Some(Some(t(21_000)));
        }
        m.lock().wrote(5); // after the response started: not the request
        assert_eq!(m.take(), Ok(Duration::from_micros(20_000)));
    }

    #[test]
    fn missing_pieces_are_named() {
        let m = marks(None);
        m.arm();
        assert_eq!(m.take().unwrap_err(), "no request bytes were written");
        m.arm();
        m.lock().wrote(3);
        assert_eq!(m.take().unwrap_err(), "no response bytes were read");
        m.arm();
        m.lock().wrote(3);
        m.lock().first_rx = Some(None);
        assert!(m.take().unwrap_err().contains("no receive timestamp"));
        m.arm();
        m.lock().wrote(3);
        m.lock().first_rx = Some(Some(t(5)));
        assert!(m.take().unwrap_err().contains("no send timestamp"));
    }

    /// A kernel that refused the option: a plain stream, and the figure says why.
    #[test]
    fn a_refused_option_is_labelled() {
        let m = marks(Some("the kernel refused SO_TIMESTAMPING: Invalid argument"));
        m.arm();
        m.lock().wrote(3);
        assert_eq!(
            m.take().unwrap_err(),
            "the kernel refused SO_TIMESTAMPING: Invalid argument"
        );
    }

    /// A TLS 1.2 handshake: two rounds (ClientHello → ServerHelloDone, our Finished flight →
    /// the server's Finished); our own time between them is not in the figure. The kernel
    /// completed the second flight's sends before the first's.
    #[test]
    fn rounds_sum_each_flight_to_its_answer() {
        let m = marks(None);
        m.start_rounds();
        {
            let mut s = m.lock();
            s.wrote(200); // ClientHello: key 199
            s.read(&[0], Some(t(1_000))); // ServerHello …
            s.read(&[0], Some(t(1_500))); // … ServerHelloDone (the answer's last read)
            s.wrote(100); // ClientKeyExchange, CCS: keys to 299
            s.wrote(50); // Finished: key 349
            s.read(&[0], Some(t(9_000))); // the server's Finished
            s.tx.record(349, t(8_000)); // out of order
            s.tx.record(299, t(7_900));
            s.tx.record(199, t(500));
        }
        // (1_500 − 500) + (9_000 − 8_000)
        assert_eq!(m.take_rounds(), Ok((Duration::from_micros(2_000), 2)));
        // Counting stopped: later bytes are no round.
        m.lock().wrote(10);
        assert!(m.take_rounds().unwrap_err().contains("not counted"));
    }

    /// TLS 1.3 as rustls speaks it: a ChangeCipherSpec written after reading the ServerHello,
    /// before reading the rest of the server's flight, which had already arrived. In kernel
    /// time that is one round (ClientHello → the flight's last segment); the client's Finished
    /// has no answer in the handshake.
    #[test]
    fn rounds_follow_kernel_time_not_the_tasks_order() {
        let m = marks(None);
        m.start_rounds();
        {
            let mut s = m.lock();
            s.wrote(300); // ClientHello: key 299
            s.read(&[0], Some(t(1_000))); // ServerHello
            s.wrote(6); // CCS: key 305
            s.read(&[0], Some(t(1_050))); // the rest of the flight, queued before the CCS left
            s.wrote(80); // Finished: key 385, its send timestamp not drained yet
            s.tx.record(299, t(100));
            s.tx.record(305, t(1_200));
        }
        assert_eq!(m.take_rounds(), Ok((Duration::from_micros(950), 1)));
    }

    #[test]
    fn missing_round_pieces_are_named() {
        let m = marks(None);
        m.start_rounds();
        assert!(m.take_rounds().unwrap_err().contains("no round trip"));
        let m = marks(None);
        m.start_rounds();
        {
            let mut s = m.lock();
            s.wrote(5);
            s.tx.record(4, t(1));
            s.read(&[0], None);
        }
        assert!(m
            .take_rounds()
            .unwrap_err()
            .contains("no receive timestamp"));
        let m = marks(None);
        m.start_rounds();
        {
            let mut s = m.lock();
            s.wrote(5);
            s.read(&[0], Some(t(3)));
        }
        assert!(m.take_rounds().unwrap_err().contains("no send timestamp"));
        let m = marks(None);
        m.start_rounds();
        for _ in 0..=MAX_HANDSHAKE_IO {
            m.lock().wrote(1);
        }
        assert!(m.take_rounds().unwrap_err().contains("too many"));
        let refused = marks(Some("the kernel refused SO_TIMESTAMPING: EINVAL"));
        refused.start_rounds();
        assert_eq!(
            refused.take_rounds().unwrap_err(),
            "the kernel refused SO_TIMESTAMPING: EINVAL"
        );
    }

    /// Records are followed across any cut; each knows the read that brought its first byte,
    /// and a long connection's reads are capped at a record's (or its header's) end.
    #[test]
    fn tls_records_are_followed_and_reads_end_at_their_edges() {
        let mut r = Records::default();
        assert_eq!(r.cap(), 5);
        let mut bytes = vec![22, 3, 3, 0, 4, 1, 2, 3, 4]; // a 4-byte handshake record
        bytes.extend([23, 3, 3, 0, 2, 9, 9]); // a 2-byte application_data record
        r.feed(&bytes[..3], Some(t(10)));
        assert_eq!(r.cap(), 2);
        r.feed(&bytes[3..6], Some(t(20)));
        assert_eq!(r.cap(), 3);
        assert_eq!(r.last_start_rx, None);
        r.feed(&bytes[6..9], Some(t(30)));
        assert_eq!(r.last_start_rx, Some(Some(t(10))));
        assert_eq!(r.cap(), 5);
        r.feed(&bytes[9..], Some(t(40)));
        assert_eq!(r.last_start_rx, Some(Some(t(40))));
    }

    /// Plan and note a write of `bytes` as the stream does.
    fn send(m: &Marks, bytes: &[u8]) -> bool {
        let mut s = m.lock();
        let plan = s.plan_write(&[io::IoSlice::new(bytes)]);
        s.note_write(bytes.len(), bytes.len(), plan)
    }

    /// A TLS 1.3 handshake as rustls drives it when the server's flight is larger than one
    /// read: the first read brings the ServerHello, the server's ChangeCipherSpec and the start
    /// of the encrypted records; rustls then writes its own ChangeCipherSpec, which is stamped
    /// (the rest of the flight is still to come); the Finished, the client's first encrypted
    /// record, is not, and ends the count. The round is ClientHello → the flight's last
    /// segment, not its first.
    #[test]
    fn a_tls13_finished_is_not_stamped_but_the_ccs_before_it_is() {
        let m = marks(None);
        m.start_rounds();
        let mut hello = vec![22, 3, 1, 1, 0];
        hello.resize(5 + 256, 0);
        assert!(send(&m, &hello), "the ClientHello"); // key 260
        let first = [22, 3, 3, 0, 1, 0, 20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2];
        m.lock().read(&first, Some(t(1_000)));
        assert!(send(&m, &[20, 3, 3, 0, 1, 1]), "the ChangeCipherSpec"); // key 266
        m.lock().read(&[0, 0], Some(t(3_000))); // the rest of the encrypted flight
        let mut finished = vec![23, 3, 3, 0, 53];
        finished.resize(5 + 53, 0);
        assert!(!send(&m, &finished), "the Finished"); // key 324
        m.lock().read(&[23, 3, 3, 0, 1, 0], Some(t(9_000))); // a session ticket: no round
        {
            let mut s = m.lock();
            s.tx.record(260, t(500));
            s.tx.record(266, t(3_100));
            assert_eq!(s.missing_key(), None, "nothing awaits the Finished's stamp");
        }
        assert_eq!(m.take_rounds(), Ok((Duration::from_micros(2_500), 1)));
    }

    /// TLS 1.2's client flights carry no application_data record (its Finished is an
    /// encrypted handshake record): every flight is stamped, two rounds.
    #[test]
    fn tls12_flights_are_all_stamped() {
        let m = marks(None);
        m.start_rounds();
        assert!(send(&m, &[22, 3, 1, 0, 2, 1, 1]));
        m.lock().read(&[22, 3, 3, 0, 1, 0], Some(t(1_000)));
        let flight = [22, 3, 3, 0, 1, 0, 20, 3, 3, 0, 1, 1, 22, 3, 3, 0, 2, 9, 9];
        assert!(send(&m, &flight), "ClientKeyExchange, CCS, Finished");
        m.lock().read(&[20, 3, 3, 0, 1, 1], Some(t(5_000)));
        {
            let mut s = m.lock();
            s.tx.record(6, t(500));
            s.tx.record(25, t(4_000));
        }
        assert_eq!(m.take_rounds(), Ok((Duration::from_micros(1_500), 2)));
    }

    /// Records are found across the pieces of a vectored write, whatever the cut.
    #[test]
    fn application_data_is_found_in_any_cut_of_the_records() {
        let bytes = [20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 7, 7];
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            let bufs = [io::IoSlice::new(a), io::IoSlice::new(b)];
            assert!(carries_application_data(&bufs), "cut at {cut}");
            assert!(!carries_application_data(&[io::IoSlice::new(&bytes[..6])]));
        }
        // A body byte that looks like a type is skipped as body.
        assert!(!carries_application_data(&[io::IoSlice::new(&[
            22, 3, 3, 0, 1, 23
        ])]));
    }

    /// A write cut short leaves the next one inside a record: from then on no write is taken
    /// for the last flight (a misread would end the rounds early).
    #[test]
    fn a_partial_write_stops_reading_records_in_writes() {
        let m = marks(None);
        m.start_rounds();
        let finished = [23, 3, 3, 0, 2, 7, 7];
        {
            let mut s = m.lock();
            let plan = s.plan_write(&[io::IoSlice::new(&[22, 3, 1, 0, 4, 1, 1, 1, 1])]);
            assert!(s.note_write(3, 9, plan));
            let plan = s.plan_write(&[io::IoSlice::new(&finished)]);
            assert!(plan.stamped && !plan.last_flight);
        }
    }

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-fc-v1300", (4, 6)));
        assert!(kernel_at_least("4.6.0", (4, 6)));
        assert!(!kernel_at_least("4.5.7-generic", (4, 6)));
        assert!(!kernel_at_least("3.19.0", (4, 6)));
        assert!(!kernel_at_least("garbage", (4, 6)));
    }

    /// A delayed reader under TLS: the response's record came in one read, the records after it
    /// in later ones; the response's own read is the one used.
    #[test]
    fn the_response_record_keeps_its_own_timestamp() {
        let m = marks(None);
        m.start_rounds();
        let _ = m.take_rounds();
        m.layered();
        m.arm();
        m.lock().wrote(100);
        m.lock().tx.record(99, t(1_000));
        m.lock().read(&[23, 3, 3, 0, 3], Some(t(5_000)));
        m.lock().read(&[7, 7, 7], Some(t(5_000)));
        // A second record, read before the plaintext layer asked for more.
        m.lock().read(&[23, 3, 3, 0, 1], Some(t(9_000)));
        m.seen();
        assert_eq!(m.take(), Ok(Duration::from_micros(4_000)));
    }

    /// Under TLS the first read after the request can be a session ticket: the layer above says
    /// which read carried the response, and that read's timestamp is the one used.
    #[test]
    fn a_layered_exchange_waits_for_the_layer_above() {
        let m = marks(None);
        m.layered();
        m.lock().wrote(500); // the handshake
        m.arm();
        m.lock().wrote(120); // the request's record: key 619
        m.lock().read(&[0], Some(t(1_100))); // a NewSessionTicket record: no plaintext
        m.lock().read(&[0], Some(t(21_000))); // the response's record
        m.seen(); // the plaintext layer got the response
        m.lock().read(&[0], Some(t(22_000))); // the rest of the body
        m.seen();
        m.lock().tx.record(619, t(1_000));
        assert_eq!(m.take(), Ok(Duration::from_micros(20_000)));
    }

    /// HTTP/2: the layer above says which writes were the request; an acknowledgement written
    /// after it does not move the request's end.
    #[test]
    fn the_layer_above_can_name_the_request_bytes() {
        let m = marks(None);
        m.layered();
        m.request_by_layer();
        m.lock().wrote(100); // preface and SETTINGS
        m.arm();
        m.lock().wrote(60); // HEADERS: key 159
        m.sent();
        m.lock().wrote(9); // SETTINGS ack: not the request
        m.lock().read(&[0], Some(t(5_000)));
        m.seen();
        {
            let mut s = m.lock();
            s.tx.record(168, t(4_900));
            s.tx.record(159, t(1_000));
        }
        assert_eq!(m.take(), Ok(Duration::from_micros(4_000)));
    }

    /// A long connection: any send, any later answer, matched by the send's key; another
    /// connection's key finds nothing.
    #[test]
    fn long_connections_time_each_exchange() {
        let m = marks(None);
        m.listen();
        assert!(m.lock().listening());
        assert_eq!(m.sent_key(), None);
        m.lock().wrote(40);
        let first = m.sent_key();
        assert_eq!(first, Some(39));
        m.lock().wrote(40);
        let second = m.sent_key();
        m.lock().read(&[0], Some(t(7_000)));
        let rx = m.last_rx();
        {
            let mut s = m.lock();
            s.tx.record(79, t(6_000));
            s.tx.record(39, t(2_000));
        }
        assert_eq!(m.between(second, rx), Ok(Duration::from_micros(1_000)));
        assert_eq!(m.between(first, rx), Ok(Duration::from_micros(5_000)));
        assert!(m
            .between(Some(12_345), rx)
            .unwrap_err()
            .contains("no timestamp"));
        assert!(m.between(None, rx).unwrap_err().contains("no send"));
        m.lock().read(&[0], None);
        assert!(m
            .between(second, m.last_rx())
            .unwrap_err()
            .contains("no receive timestamp"));
        let refused = marks(Some("refused"));
        refused.listen();
        refused.lock().wrote(3);
        assert_eq!(refused.sent_key(), None);
        assert_eq!(refused.between(Some(2), rx).unwrap_err(), "refused");
    }

    /// One error-queue entry as the kernel lays it out: SCM_TIMESTAMPING, then IP_RECVERR.
    fn errqueue_entry(origin: u8, info: u32, key: u32, at: (i64, i64)) -> Vec<u8> {
        let mut ts = [0u8; 3 * std::mem::size_of::<libc::timespec>()];
        // SAFETY: plain C structs written into buffers of their size.
        let mut spec: libc::timespec = unsafe { std::mem::zeroed() };
        spec.tv_sec = at.0 as _;
        spec.tv_nsec = at.1 as _;
        unsafe { std::ptr::write_unaligned(ts.as_mut_ptr().cast(), spec) };
        let mut e: libc::sock_extended_err = unsafe { std::mem::zeroed() };
        e.ee_errno = libc::ENOMSG as u32;
        e.ee_origin = origin;
        e.ee_info = info;
        e.ee_data = key;
        let mut err = vec![0u8; std::mem::size_of::<libc::sock_extended_err>()];
        unsafe { std::ptr::write_unaligned(err.as_mut_ptr().cast(), e) };
        super::super::tests::control(&[
            (libc::SOL_SOCKET, libc::SCM_TIMESTAMPING, ts.to_vec()),
            (libc::IPPROTO_IP, libc::IP_RECVERR, err),
        ])
    }

    #[test]
    fn error_queue_entries_parse() {
        let c = errqueue_entry(libc::SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SND, 79, (7, 5));
        assert_eq!(
            tx_stamp(&c),
            Some((79, RealTime::from_timespec(7, 5).unwrap()))
        );
        // Another kind of timestamp (SCM_TSTAMP_SCHED = 1) or origin is not a send timestamp.
        let c = errqueue_entry(libc::SO_EE_ORIGIN_TIMESTAMPING, 1, 79, (7, 5));
        assert_eq!(tx_stamp(&c), None);
        let c = errqueue_entry(libc::SO_EE_ORIGIN_ICMP, SCM_TSTAMP_SND, 79, (7, 5));
        assert_eq!(tx_stamp(&c), None);
        // Truncated: nothing.
        let c = errqueue_entry(libc::SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SND, 79, (7, 5));
        assert_eq!(tx_stamp(&c[..c.len() - 8]), None);
    }

    /// A long connection that writes more messages than a drain takes at once (each flush's
    /// last byte stamped, as a session's sends are): the read that needs the last send's stamp
    /// finds it behind the others, and leaves nothing queued.
    #[tokio::test]
    async fn many_pending_send_stamps_are_all_taken() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        const SENDS: usize = 3 * TX_BATCH + 1;
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4 * SENDS];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"pong").await.unwrap();
            s
        });
        let mut c = TimestampedStream::new(TcpStream::connect(addr).await.unwrap());
        let m = c.marks();
        m.listen();
        let mut key = None;
        for _ in 0..SENDS {
            c.write_all(b"ping").await.unwrap();
            c.flush().await.unwrap();
            key = m.sent_key();
        }
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        let _server_side = server.await.unwrap();
        assert_eq!(key, Some((4 * SENDS - 1) as u32));
        m.between(key, m.last_rx()).expect("a kernel figure");
        let left = recv_tx_stamps(c.inner.as_raw_fd(), TX_BATCH);
        assert!(
            left.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock),
            "left queued: {:?}",
            left.map(|(_, n)| n)
        );
    }

    /// Over real loopback TCP: a server that waits 20 ms before answering. The kernel's figure
    /// exists and includes the wait (it cannot be shorter than what the server waited).
    #[tokio::test]
    async fn loopback_request_and_response_are_timestamped() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let mut got = 0;
            while got < 8 {
                got += s.read(&mut buf[got..]).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(b"response").await.unwrap();
        });
        let mut c = TimestampedStream::new(TcpStream::connect(addr).await.unwrap());
        let m = c.marks();
        m.arm();
        c.write_all(b"requ").await.unwrap();
        c.write_all(b"est!").await.unwrap();
        let mut buf = [0u8; 8];
        c.read_exact(&mut buf).await.unwrap();
        server.await.unwrap();
        let k = m.take().expect("a kernel figure");
        assert!(k >= Duration::from_millis(20), "{k:?}");
    }
}
