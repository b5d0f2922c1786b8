//! The client side of an open WebSocket (RFC 6455 §5), done here instead of by
//! tokio-tungstenite's `WebSocketStream` for one reason: memory.
//!
//! A connection's task waits in a read nearly all of its life, and `WebSocketStream` kept, for
//! that whole life, tungstenite's read buffer (`read_buffer_size` bytes, zero-filled so all of
//! it resident, plus the 40-byte header `bytes` adds once a payload is split off it), the
//! out-buffer sized by the largest frame sent, and two `Arc`ed waker proxies: ~1.2 KiB per
//! idle connection beside a raw TCP one, twice per IM session. Here bytes are read with
//! [`crate::lazy_read`] (stack scratch, appended to a buffer that is empty and unallocated
//! between frames) and each frame is written from a buffer dropped once it is out, so an idle
//! socket holds no buffer at all; the task's one waker serves reads and writes.
//!
//! Everything that decides behaviour is tungstenite's or mirrors it line by line: frames are
//! parsed by its `FrameHeader::parse` and formatted by `FrameHeader::format`; the checks, their
//! order and the close handshake's states follow its `WebSocketContext` (0.30); failures are
//! its `Error` values; the stream ends (`None`) where `WebSocketStream`'s does. The tests feed
//! the same bytes to both and compare what comes out and what is answered.

use std::io::Cursor;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{
    CloseCode, Control as OpCtl, Data as OpData, OpCode,
};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader, Utf8Bytes};
use tokio_tungstenite::tungstenite::Message;

type Result<T> = std::result::Result<T, Error>;

/// Where the close handshake is (tungstenite's `WebSocketState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Active,
    /// We sent a close frame; the peer's frames are still read until it answers.
    ClosedByUs,
    ClosedByPeer,
    /// The peer answered our close frame.
    CloseAcknowledged,
    Terminated,
}

impl State {
    fn can_read(self) -> bool {
        matches!(self, State::Active | State::ClosedByUs)
    }

    fn check_not_terminated(self) -> Result<()> {
        match self {
            State::Terminated => Err(Error::AlreadyClosed),
            _ => Ok(()),
        }
    }

    /// A reset once we may no longer read is the end of the connection, not a failure.
    fn reset_is_closed<T>(self, r: Result<T>) -> Result<T> {
        match r {
            Err(Error::Io(e))
                if !self.can_read() && e.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                Err(Error::ConnectionClosed)
            }
            r => r,
        }
    }
}

/// Largest payload of a frame and of a whole message; more fails the connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub frame: usize,
    pub message: usize,
}

/// An open client WebSocket over `S`: a `Stream` of received messages and a `Sink` of messages
/// to send, as tokio-tungstenite's `WebSocketStream`.
pub(crate) struct WsSocket<S> {
    io: S,
    /// Bytes read and not yet framed. Empty and unallocated between frames: reads append to it.
    buf: BytesMut,
    /// The header of the frame being read, while its payload is still arriving.
    header: Option<(FrameHeader, u64)>,
    /// Framed bytes not yet written. Unallocated once written.
    out: Vec<u8>,
    /// A data message arriving in fragments (boxed: rare, and the socket lives in every idle
    /// connection's task).
    incomplete: Option<Box<Incomplete>>,
    /// A pong or our answer to a close, written before the next read or with the next write.
    reply: Option<Box<Frame>>,
    /// The reply is framed but the socket would have blocked: keep flushing before reads.
    reply_unflushed: bool,
    /// `poll_close` has queued its close frame and is flushing it.
    closing: bool,
    /// The stream has returned its end or an error: it stays ended.
    ended: bool,
    state: State,
    limits: Limits,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsSocket<S> {
    /// After the upgrade: `read` is what arrived behind the 101 response's head.
    pub(crate) fn new(io: S, read: &[u8], limits: Limits) -> Self {
        WsSocket {
            io,
            buf: BytesMut::from(read),
            header: None,
            out: Vec::new(),
            incomplete: None,
            reply: None,
            reply_unflushed: false,
            closing: false,
            ended: false,
            state: State::Active,
            limits,
        }
    }

    /// Send a close frame (`None`: one without a code) and flush it; the peer's answer arrives
    /// as a [`Message::Close`] from the stream.
    pub(crate) async fn close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        futures_util::SinkExt::send(self, Message::Close(frame)).await
    }

    /// The next message (tungstenite's `WebSocketContext::read`): replies go out first.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message>> {
        self.state.check_not_terminated()?;
        loop {
            if self.reply.is_some() || self.reply_unflushed {
                match self.poll_flush_all(cx) {
                    Poll::Ready(Ok(())) => {}
                    // Blocked: keep reading, and try again before the next read.
                    Poll::Pending => self.reply_unflushed = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                }
            }
            if let Some(message) = ready!(self.poll_message_frame(cx))? {
                return Poll::Ready(Ok(message));
            }
        }
    }

    /// One frame, checked; `None` for a frame that completes no message.
    fn poll_message_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>>> {
        let read = ready!(self.poll_frame(cx));
        let Some(frame) = self.state.reset_is_closed(read)? else {
            let was = std::mem::replace(&mut self.state, State::Terminated);
            return Poll::Ready(Err(match was {
                State::ClosedByPeer | State::CloseAcknowledged => Error::ConnectionClosed,
                _ => Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            }));
        };
        if !self.state.can_read() {
            return Poll::Ready(Err(Error::Protocol(ProtocolError::ReceivedAfterClosing)));
        }
        let hdr = frame.header();
        if hdr.rsv1 || hdr.rsv2 || hdr.rsv3 {
            return Poll::Ready(Err(Error::Protocol(ProtocolError::NonZeroReservedBits)));
        }
        if hdr.mask.is_some() {
            // RFC 6455 §5.1: a client MUST close a connection if it detects a masked frame.
            return Poll::Ready(Err(Error::Protocol(ProtocolError::MaskedFrameFromServer)));
        }
        Poll::Ready(match hdr.opcode {
            OpCode::Control(ctl) => self.on_control(ctl, frame),
            OpCode::Data(data) => self.on_data(data, frame),
        })
    }

    fn on_control(&mut self, ctl: OpCtl, frame: Frame) -> Result<Option<Message>> {
        // RFC 6455 §5.5: at most 125 bytes, never fragmented.
        if !frame.header().is_final {
            return Err(Error::Protocol(ProtocolError::FragmentedControlFrame));
        }
        if frame.payload().len() > 125 {
            return Err(Error::Protocol(ProtocolError::ControlFrameTooBig));
        }
        match ctl {
            OpCtl::Close => Ok(self.on_close(close_frame(frame)?).map(Message::Close)),
            OpCtl::Reserved(i) => Err(Error::Protocol(ProtocolError::UnknownControlFrameType(i))),
            OpCtl::Ping => {
                let data = frame.into_payload();
                // No pong once we sent our close frame.
                if self.state == State::Active {
                    self.set_reply(Frame::pong(data.clone()));
                }
                Ok(Some(Message::Ping(data)))
            }
            OpCtl::Pong => Ok(Some(Message::Pong(frame.into_payload()))),
        }
    }

    fn on_data(&mut self, data: OpData, frame: Frame) -> Result<Option<Message>> {
        let fin = frame.header().is_final;
        let max = self.limits.message;
        let start = match (data, self.incomplete.as_mut()) {
            (OpData::Continue, None) => Err(ProtocolError::UnexpectedContinueFrame),
            (OpData::Continue, Some(incomplete)) => {
                incomplete.extend(frame.payload(), max)?;
                Ok(None)
            }
            (_, Some(_)) => Err(ProtocolError::ExpectedFragment(data)),
            (OpData::Text, _) => Ok(Some((frame.into_payload(), true))),
            (OpData::Binary, _) => Ok(Some((frame.into_payload(), false))),
            (OpData::Reserved(i), _) => Err(ProtocolError::UnknownDataFrameType(i)),
        }?;
        match (start, fin) {
            (None, true) => self.incomplete.take().map(|i| i.complete()).transpose(),
            (None, false) => Ok(None),
            (Some((payload, text)), true) => {
                if payload.len() > max {
                    return Err(too_long(payload.len(), max));
                }
                Ok(Some(if text {
                    Message::Text(Utf8Bytes::try_from(payload)?)
                } else {
                    Message::Binary(payload)
                }))
            }
            (Some((payload, text)), false) => {
                let mut incomplete = Box::new(Incomplete::new(text));
                incomplete.extend(&payload, max)?;
                self.incomplete = Some(incomplete);
                Ok(None)
            }
        }
    }

    /// The peer's close frame: answered with the same code (or 1002 for a code nobody may
    /// send) unless it answers ours; `None` when the handshake was already over.
    #[allow(clippy::option_option)] // tungstenite's shape: "no message" and "close without code"
    fn on_close(&mut self, close: Option<CloseFrame>) -> Option<Option<CloseFrame>> {
        match self.state {
            State::Active => {
                self.state = State::ClosedByPeer;
                let close = close.map(|f| {
                    if f.code.is_allowed() {
                        f
                    } else {
                        CloseFrame {
                            code: CloseCode::Protocol,
                            reason: Utf8Bytes::from_static("Protocol violation"),
                        }
                    }
                });
                self.set_reply(Frame::close(close.clone()));
                Some(close)
            }
            State::ClosedByPeer | State::CloseAcknowledged => None,
            State::ClosedByUs => {
                self.state = State::CloseAcknowledged;
                Some(close)
            }
            State::Terminated => unreachable!("no frame is read once terminated"),
        }
    }

    /// A pong replaces a pending pong, never a pending close answer.
    fn set_reply(&mut self, frame: Frame) {
        let replaceable = self
            .reply
            .as_ref()
            .is_none_or(|f| f.header().opcode == OpCode::Control(OpCtl::Pong));
        if replaceable {
            self.reply = Some(Box::new(frame));
        }
    }

    /// The next whole frame, its payload unmasked as sent; `None` at the end of the stream.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>>> {
        loop {
            if self.header.is_none() {
                self.parse_header()?;
            }
            if let Some((_, len)) = &self.header {
                let len = *len as usize;
                if len <= self.buf.len() {
                    let (header, _) = self.header.take().expect("a header was parsed");
                    let payload = self.take_payload(len);
                    return Poll::Ready(Ok(Some(Frame::from_payload(header, payload))));
                }
            }
            match ready!(crate::lazy_read::poll_read_into(
                &mut self.io,
                cx,
                &mut self.buf
            )) {
                Ok(0) => return Poll::Ready(Ok(None)),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    /// A header from the front of `buf`, if it is all there; a frame over the limit is refused
    /// before any of its payload is buffered.
    fn parse_header(&mut self) -> Result<()> {
        let mut cursor = Cursor::new(&self.buf[..]);
        self.header = FrameHeader::parse(&mut cursor)?;
        let parsed = cursor.position() as usize;
        self.buf.advance(parsed);
        if let Some((_, len)) = &self.header {
            if *len > self.limits.frame as u64 {
                return Err(too_long(*len as usize, self.limits.frame));
            }
            // Room for the whole payload at once, not by doublings as it arrives.
            self.buf
                .reserve((*len as usize).saturating_sub(self.buf.len()));
        }
        Ok(())
    }

    /// The first `len` bytes of `buf`, without a copy. Leaves `buf` unallocated when it held no
    /// more: the payload keeps the allocation only while the caller does.
    fn take_payload(&mut self, len: usize) -> Bytes {
        if len == self.buf.len() {
            return std::mem::take(&mut self.buf).freeze();
        }
        let payload = self.buf.split_to(len).freeze();
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        payload
    }

    /// Frame `message` into `out`, then any pending reply (tungstenite's `write`).
    fn queue(&mut self, message: Message) -> Result<()> {
        self.state.check_not_terminated()?;
        if self.state != State::Active {
            return Err(Error::Protocol(ProtocolError::SendAfterClosing));
        }
        let frame = match message {
            Message::Text(data) => Frame::message(data, OpCode::Data(OpData::Text), true),
            Message::Binary(data) => Frame::message(data, OpCode::Data(OpData::Binary), true),
            Message::Ping(data) => Frame::ping(data),
            Message::Pong(data) => {
                self.set_reply(Frame::pong(data));
                return Ok(());
            }
            Message::Close(close) => {
                self.state = State::ClosedByUs;
                Frame::close(close)
            }
            Message::Frame(frame) => frame,
        };
        self.frame_out(frame)?;
        self.queue_reply()
    }

    fn queue_reply(&mut self) -> Result<()> {
        match self.reply.take() {
            Some(frame) => self.frame_out(*frame),
            None => Ok(()),
        }
    }

    /// Append `frame` to `out`, masked with a fresh key as RFC 6455 §5.3 requires of clients.
    fn frame_out(&mut self, mut frame: Frame) -> Result<()> {
        let key: [u8; 4] = rand::random();
        frame.header_mut().mask = Some(key);
        let len = frame.payload().len();
        self.out.reserve_exact(frame.len());
        frame.header().format(len as u64, &mut self.out)?;
        let start = self.out.len();
        self.out.extend_from_slice(frame.payload());
        mask(&mut self.out[start..], key);
        Ok(())
    }

    /// Write `out`, then any reply, then flush the stream (tungstenite's `flush`). The reply
    /// waits in its slot, where a newer pong replaces it, until `out` is written: a peer that
    /// pings and never reads would otherwise queue a pong in `out` for every ping.
    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            let written = ready!(self.poll_write_out(cx));
            self.state.reset_is_closed(written)?;
            if self.reply.is_none() {
                break;
            }
            self.queue_reply()?;
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.reply_unflushed = false;
        Poll::Ready(Ok(()))
    }

    /// Write all of `out`, then give its room back.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "Connection reset while sending",
                ))));
            }
            self.out.drain(..n);
        }
        self.out = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match ready!(this.poll_read(cx)) {
            Ok(message) => Poll::Ready(Some(Ok(message))),
            Err(e) => {
                this.ended = true;
                match e {
                    Error::AlreadyClosed | Error::ConnectionClosed => Poll::Ready(None),
                    e => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsSocket<S> {
    type Error = Error;

    /// Frames are queued whole, so a new one waits until the last is written.
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_write_out(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<()> {
        self.get_mut().queue(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match ready!(self.get_mut().poll_flush_all(cx)) {
            // The connection has just ended: flushing it is done.
            Err(Error::ConnectionClosed) => Poll::Ready(Ok(())),
            r => Poll::Ready(r),
        }
    }

    /// A close frame without a code, once, then flushing (`WebSocketStream::poll_close`).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.closing = true;
            if this.state == State::Active {
                this.state = State::ClosedByUs;
                this.frame_out(Frame::close(None))?;
            }
        }
        match ready!(this.poll_flush_all(cx)) {
            Err(Error::ConnectionClosed) => Poll::Ready(Ok(())),
            r => Poll::Ready(r),
        }
    }
}

/// A close frame's code and reason (tungstenite's `Frame::into_close`, crate-private there).
fn close_frame(frame: Frame) -> Result<Option<CloseFrame>> {
    let payload = frame.into_payload();
    match payload.len() {
        0 => Ok(None),
        1 => Err(Error::Protocol(ProtocolError::InvalidCloseSequence)),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]).into();
            let reason = Utf8Bytes::try_from(payload.slice(2..))?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

fn too_long(size: usize, max_size: usize) -> Error {
    Error::Capacity(CapacityError::MessageTooLong { size, max_size })
}

/// XOR with the masking key, byte `i` with `key[i % 4]` (RFC 6455 §5.3).
fn mask(bytes: &mut [u8], key: [u8; 4]) {
    let mut chunks = bytes.chunks_exact_mut(4);
    for chunk in &mut chunks {
        for (b, k) in chunk.iter_mut().zip(key) {
            *b ^= k;
        }
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// A data message arriving in fragments (tungstenite's `IncompleteMessage`, private there).
struct Incomplete {
    text: bool,
    data: Vec<u8>,
    /// For text: how much of `data` is known to be UTF-8 (a character may straddle fragments,
    /// and invalid bytes fail the message as soon as they arrive, not at its end).
    checked: usize,
}

impl Incomplete {
    fn new(text: bool) -> Self {
        Incomplete {
            text,
            data: Vec::new(),
            checked: 0,
        }
    }

    fn extend(&mut self, tail: &[u8], max_size: usize) -> Result<()> {
        let (have, more) = (self.data.len(), tail.len());
        if have > max_size || more > max_size - have {
            return Err(too_long(have + more, max_size));
        }
        self.data.extend_from_slice(tail);
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.checked..]) {
            Ok(_) => self.checked = self.data.len(),
            // Only a character cut short at the end: the next fragment may complete it.
            Err(e) if e.error_len().is_none() => self.checked += e.valid_up_to(),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn complete(self) -> Result<Message> {
        if !self.text {
            return Ok(Message::Binary(self.data.into()));
        }
        if self.checked < self.data.len() {
            return Err(Error::Utf8(format!(
                "incomplete string: {} bytes of a character",
                self.data.len() - self.checked
            )));
        }
        Ok(Message::Text(Utf8Bytes::try_from(Bytes::from(self.data))?))
    }
}

#[cfg(test)]
mod tests {
    //! The same bytes through tungstenite's own client (`WebSocket` over a cursor, read as
    //! `WebSocketStream` reads it) and through [`WsSocket`], a few bytes a read: what comes out
    //! and what is written back must be the same.

    use super::*;
    use futures_util::{FutureExt, SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

    /// A peer that sends `input` (`chunk` bytes a read), then ends the stream or, with `eof`
    /// false, stays silent; what the socket writes is kept.
    struct Peer {
        input: Vec<u8>,
        at: usize,
        chunk: usize,
        eof: bool,
        /// Writes stay pending (a peer that does not read).
        blocked: bool,
        written: Vec<u8>,
    }

    impl Peer {
        fn new(input: &[u8], chunk: usize) -> Self {
            Peer {
                input: input.to_vec(),
                at: 0,
                chunk,
                eof: true,
                blocked: false,
                written: Vec::new(),
            }
        }
    }

    impl AsyncRead for Peer {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let left = self.input.len() - self.at;
            if left == 0 && !self.eof {
                return Poll::Pending;
            }
            let n = left.min(self.chunk).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.input[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Peer {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            if self.blocked {
                return Poll::Pending;
            }
            self.written.extend_from_slice(b);
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// tungstenite's side: reads from `input`, writes to `written`.
    struct SyncPeer {
        input: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl std::io::Read for SyncPeer {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(b)
        }
    }

    impl std::io::Write for SyncPeer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const LIMITS: Limits = Limits {
        frame: 200,
        message: 100,
    };

    fn config() -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(16)
            .write_buffer_size(0)
            .max_frame_size(Some(LIMITS.frame))
            .max_message_size(Some(LIMITS.message))
    }

    /// What a read gave, comparably: UTF-8 errors differ only in their detail text.
    fn item(r: Option<Result<Message>>) -> String {
        match r {
            None => "end".into(),
            Some(Ok(m)) => format!("{m:?}"),
            Some(Err(Error::Utf8(_))) => "error: UTF-8".into(),
            Some(Err(e)) => format!("error: {e}"),
        }
    }

    /// Unmasked frames a client wrote, as "opcode fin payload".
    fn frames(mut wire: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !wire.is_empty() {
            let mut cursor = Cursor::new(wire);
            let (h, len) = FrameHeader::parse(&mut cursor)
                .unwrap()
                .expect("a whole header");
            let start = cursor.position() as usize;
            let mut payload = wire[start..start + len as usize].to_vec();
            let key = h.mask.expect("a client masks every frame");
            mask(&mut payload, key);
            out.push(format!("{} {} {:?}", h.opcode, h.is_final, payload));
            wire = &wire[start + len as usize..];
        }
        out
    }

    fn theirs(input: &[u8]) -> (Vec<String>, Vec<String>) {
        let peer = SyncPeer {
            input: Cursor::new(input.to_vec()),
            written: Vec::new(),
        };
        let mut ws = WebSocket::from_raw_socket(peer, Role::Client, Some(config()));
        let mut got = Vec::new();
        loop {
            match ws.read() {
                Ok(m) => got.push(item(Some(Ok(m)))),
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => break got.push(item(None)),
                Err(e) => break got.push(item(Some(Err(e)))),
            }
        }
        (got, frames(&ws.get_ref().written))
    }

    async fn ours(input: &[u8], chunk: usize) -> (Vec<String>, Vec<String>) {
        let mut ws = WsSocket::new(Peer::new(input, chunk), &[], LIMITS);
        let mut got = Vec::new();
        loop {
            let r = ws.next().await;
            let last = !matches!(r, Some(Ok(_)));
            got.push(item(r));
            if last {
                break;
            }
        }
        (got, frames(&ws.io.written))
    }

    /// A frame from the server: first byte, payload (unmasked), the length as RFC 6455 codes it.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n < 65536 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    fn close(code: u16, reason: &[u8]) -> Vec<u8> {
        frame(0x88, &[&code.to_be_bytes()[..], reason].concat())
    }

    fn cases() -> Vec<(&'static str, Vec<u8>)> {
        let text = |s: &str| frame(0x81, s.as_bytes());
        vec![
            ("messages of each kind", {
                let mut v = text("hi");
                v.extend(frame(0x82, &[1, 2, 3]));
                v.extend(frame(0x89, b"p"));
                v.extend(frame(0x8a, b"q"));
                v.extend(text(""));
                v.extend(frame(0x82, &[]));
                v.extend(text(&"x".repeat(60)));
                v.extend(close(1000, b"bye"));
                v
            }),
            (
                "two pings in a row",
                [frame(0x89, b"a"), frame(0x89, b"b")].concat(),
            ),
            ("fragments around a ping", {
                [
                    frame(0x01, b"He"),
                    frame(0x89, b""),
                    frame(0x00, b"l"),
                    frame(0x80, b"lo"),
                ]
                .concat()
            }),
            (
                "binary fragments",
                [frame(0x02, &[1]), frame(0x80, &[2])].concat(),
            ),
            ("a character across fragments", {
                [frame(0x01, &[0xc3]), frame(0x80, &[0xa9]), close(1001, b"")].concat()
            }),
            ("invalid UTF-8", frame(0x81, &[0xff, 0xfe])),
            (
                "invalid UTF-8 in a first fragment",
                frame(0x01, &[b'a', 0xff]),
            ),
            (
                "a character cut at the end",
                [frame(0x01, &[0xc3]), frame(0x80, &[])].concat(),
            ),
            ("a continuation first", frame(0x80, b"x")),
            (
                "a new message among fragments",
                [frame(0x01, b"a"), text("b")].concat(),
            ),
            ("a fragmented ping", frame(0x09, b"")),
            ("a 126-byte ping", frame(0x89, &[7; 126])),
            ("a reserved data opcode", frame(0x83, b"")),
            ("a reserved control opcode", frame(0x8b, b"")),
            ("a reserved bit", frame(0xc1, b"x")),
            (
                "a masked frame",
                vec![0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2],
            ),
            ("a 1-byte close", frame(0x88, &[3])),
            ("a close code nobody may send", close(1005, b"no")),
            ("a close reason not UTF-8", close(1000, &[0xff])),
            ("an empty close", frame(0x88, b"")),
            (
                "data after the close",
                [close(1000, b""), text("late")].concat(),
            ),
            (
                "a ping after the close",
                [close(1000, b""), frame(0x89, b"")].concat(),
            ),
            (
                "a close after the close",
                [close(1000, b""), close(1000, b"")].concat(),
            ),
            ("the end within a header", vec![0x81]),
            ("the end within a payload", vec![0x81, 5, b'a', b'b']),
            ("the end between messages", text("last")),
            ("a frame over the limit", frame(0x82, &[0; 201])),
            ("a frame over the message limit", frame(0x82, &[0; 101])),
            (
                "an absurd length",
                vec![0x82, 127, 0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (
                "a message over the limit",
                [frame(0x02, &[0; 60]), frame(0x80, &[0; 41])].concat(),
            ),
            ("a text message over the limit", {
                [
                    frame(0x01, &[b'a'; 60]),
                    frame(0x00, &[b'b'; 40]),
                    frame(0x80, b"c"),
                ]
                .concat()
            }),
        ]
    }

    #[tokio::test]
    async fn reads_and_answers_as_tungstenite_does() {
        for (name, input) in cases() {
            let want = theirs(&input);
            for chunk in [1, 3, 4096] {
                assert_eq!(
                    ours(&input, chunk).await,
                    want,
                    "{name}, {chunk} bytes a read"
                );
            }
        }
    }

    /// What the server reads of what a client sent (tungstenite as the server).
    fn as_server_reads(wire: &[u8]) -> Vec<String> {
        let peer = SyncPeer {
            input: Cursor::new(wire.to_vec()),
            written: Vec::new(),
        };
        let mut ws = WebSocket::from_raw_socket(peer, Role::Server, None);
        let mut got = Vec::new();
        loop {
            match ws.read() {
                Ok(m) => got.push(format!("{m:?}")),
                Err(e) => break got.push(format!("error: {e}")),
            }
        }
        got
    }

    #[tokio::test]
    async fn sends_what_a_server_reads_back() {
        let mut ws = WsSocket::new(Peer::new(b"", 4096), &[], LIMITS);
        ws.send(Message::text("hello")).await.unwrap();
        ws.send(Message::binary(vec![0u8; 300])).await.unwrap();
        ws.send(Message::Ping(Bytes::new())).await.unwrap();
        let bye = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        ws.close(Some(bye.clone())).await.unwrap();
        let again = ws.send(Message::text("late")).await.unwrap_err();
        assert!(
            matches!(again, Error::Protocol(ProtocolError::SendAfterClosing)),
            "{again}"
        );
        let got = as_server_reads(&ws.io.written);
        let want = [
            format!("{:?}", Message::text("hello")),
            format!("{:?}", Message::binary(vec![0u8; 300])),
            format!("{:?}", Message::Ping(Bytes::new())),
            format!("{:?}", Message::Close(Some(bye))),
            // Nothing after our close: the refused send wrote nothing.
            format!("error: {}", Error::ConnectionClosed),
        ];
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn our_close_is_answered_as_with_tungstenite() {
        let input = [frame(0x81, b"in flight"), close(1000, b"ok")].concat();
        let bye = || {
            Some(CloseFrame {
                code: CloseCode::Away,
                reason: "".into(),
            })
        };
        let peer = SyncPeer {
            input: Cursor::new(input.clone()),
            written: Vec::new(),
        };
        let mut theirs = WebSocket::from_raw_socket(peer, Role::Client, Some(config()));
        theirs.close(bye()).unwrap();
        let mut want = Vec::new();
        loop {
            match theirs.read() {
                Ok(m) => want.push(item(Some(Ok(m)))),
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => break want.push(item(None)),
                Err(e) => break want.push(item(Some(Err(e)))),
            }
        }
        let mut ours = WsSocket::new(Peer::new(&input, 5), &[], LIMITS);
        ours.close(bye()).await.unwrap();
        let mut got = Vec::new();
        while let Some(r) = ours.next().await {
            got.push(item(Some(r)));
        }
        got.push(item(None));
        assert_eq!(got, want);
        assert_eq!(frames(&ours.io.written), frames(&theirs.get_ref().written));
    }

    /// A peer that pings and never reads (our writes stay blocked) gets one pong queued, the
    /// newest, however many pings it sends: each replaces the last in the reply slot.
    #[tokio::test]
    async fn a_ping_flood_against_blocked_writes_queues_one_pong() {
        let mut input = frame(0x81, b"first");
        for i in 0..10_000u32 {
            input.extend(frame(0x89, &i.to_be_bytes()));
        }
        input.extend(frame(0x81, b"last"));
        let mut peer = Peer::new(&input, 4096);
        peer.blocked = true;
        let mut ws = WsSocket::new(peer, b"", LIMITS);
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("first"));
        // Pings come out as messages, as from tungstenite; the first pong went to `out`, where
        // it waits for the peer to read.
        let mut pings = 0;
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Ping(_) => pings += 1,
                m => {
                    assert_eq!(m, Message::text("last"));
                    break;
                }
            }
        }
        assert_eq!(pings, 10_000);
        assert!(ws.out.len() <= 2 + 4 + 4, "{} bytes queued", ws.out.len());
        let reply = ws.reply.as_ref().map(|f| f.payload().to_vec());
        assert_eq!(
            reply,
            Some(9_999u32.to_be_bytes().to_vec()),
            "the newest pong waits"
        );
    }

    #[tokio::test]
    async fn an_idle_socket_holds_no_buffer() {
        // Two frames in one read (the first split off the buffer), then one across reads.
        let input = [
            frame(0x81, b"one"),
            frame(0x81, b"two"),
            frame(0x82, &[9; 40]),
        ]
        .concat();
        for chunk in [4096, 7] {
            let mut peer = Peer::new(&input, chunk);
            peer.eof = false;
            let mut ws = WsSocket::new(peer, b"", LIMITS);
            for _ in 0..3 {
                drop(ws.next().await.unwrap().unwrap());
            }
            ws.send(Message::text("answer")).await.unwrap();
            assert!(ws.next().now_or_never().is_none(), "nothing more was sent");
            assert_eq!(
                ws.buf.capacity(),
                0,
                "a read buffer kept while idle ({chunk})"
            );
            assert_eq!(
                ws.out.capacity(),
                0,
                "a write buffer kept while idle ({chunk})"
            );
            assert!(ws.incomplete.is_none() && ws.reply.is_none());
        }
        // What the upgrade read past the response head is framed, then let go likewise.
        let mut peer = Peer::new(b"", 1);
        peer.eof = false;
        let mut ws = WsSocket::new(peer, &frame(0x81, b"early"), LIMITS);
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m, Message::text("early"));
        assert!(ws.next().now_or_never().is_none());
        assert_eq!(ws.buf.capacity(), 0);
    }
}
