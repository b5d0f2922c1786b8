//! The layer above TLS that tells the timestamped TCP stream beneath which bytes were awaited
//! ([`crate::kts::stream`]): rustls turns segments into records, and only the layer that reads
//! the plaintext knows when the response began.
//!
//! - HTTP/1.1 (and any protocol whose first bytes after the request are the answer): the first
//!   plaintext read after [`Marks::arm`] is the response.
//! - HTTP/2: the server's SETTINGS, PINGs and window updates are not the response, nor are our
//!   acknowledgements the request. Frame headers are followed in both directions: a HEADERS,
//!   DATA or PUSH_PROMISE frame on a stream begins the response; HEADERS, CONTINUATION or DATA
//!   on a stream written by us are the request.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Marks;

/// HTTP/2 frame types that carry a request or response (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
/// What every HTTP/2 client writes first, before its frames.
const CLIENT_PREFACE_LEN: usize = 24;

/// Follows HTTP/2 frame headers through a byte stream cut anywhere.
#[derive(Clone, Debug)]
pub struct FrameScan {
    /// Payload bytes (or the preface) still to pass before the next frame header.
    skip: usize,
    header: [u8; 9],
    have: usize,
    kinds: &'static [u8],
}

impl FrameScan {
    /// The server's frames; a frame of the response is one that matters.
    pub fn responses() -> Self {
        FrameScan {
            skip: 0,
            header: [0; 9],
            have: 0,
            kinds: &[HEADERS, DATA, PUSH_PROMISE],
        }
    }

    /// Our own bytes: the preface, then frames; a frame of a request is one that matters.
    pub fn requests() -> Self {
        FrameScan {
            skip: CLIENT_PREFACE_LEN,
            header: [0; 9],
            have: 0,
            kinds: &[HEADERS, CONTINUATION, DATA],
        }
    }

    /// Feed the next bytes; whether a frame that matters begins in them (its header completes).
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut hit = false;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(bytes.len());
                self.skip -= k;
                bytes = &bytes[k..];
                continue;
            }
            let k = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + k].copy_from_slice(&bytes[..k]);
            self.have += k;
            bytes = &bytes[k..];
            if self.have == 9 {
                let h = self.header;
                self.have = 0;
                self.skip = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                hit |= stream != 0 && self.kinds.contains(&h[3]);
            }
        }
        hit
    }
}

enum Mode {
    /// The first bytes read after the request are the response.
    FirstBytes,
    /// HTTP/2 frames in both directions; `pending`: request bytes written but not yet flushed.
    H2 {
        read: FrameScan,
        write: FrameScan,
        pending: bool,
    },
}

/// A stream (TLS's plaintext side) that reports the awaited bytes to the [`Marks`] of the
/// timestamped TCP stream beneath.
pub struct Seen<S> {
    inner: S,
    marks: Marks,
    mode: Mode,
}

impl<S> Seen<S> {
    /// Over a protocol whose first bytes after the request are the response (HTTP/1.1, a
    /// line dialogue).
    pub fn first_bytes(inner: S, marks: Marks) -> Self {
        Seen {
            inner,
            marks,
            mode: Mode::FirstBytes,
        }
    }

    /// Over HTTP/2 (from the connection preface on).
    pub fn h2(inner: S, marks: Marks) -> Self {
        marks.request_by_layer();
        Seen {
            inner,
            marks,
            mode: Mode::H2 {
                read: FrameScan::responses(),
                write: FrameScan::requests(),
                pending: false,
            },
        }
    }

    fn wrote(&mut self, bytes: &[u8]) {
        if let Mode::H2 { write, pending, .. } = &mut self.mode {
            if write.feed(bytes) {
                *pending = true;
            }
            if *pending {
                self.marks.sent();
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Seen<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            let awaited = match &mut this.mode {
                Mode::FirstBytes => true,
                Mode::H2 { read, .. } => read.feed(new),
            };
            if awaited {
                this.marks.seen();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Seen<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.wrote(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let k = left.min(b.len());
            this.wrote(&b[..k]);
            left -= k;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        // Under TLS the request's records may leave only now.
        if let Mode::H2 { pending, .. } = &mut this.mode {
            if std::mem::take(pending) {
                this.marks.sent();
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

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// The server's SETTINGS, a PING and a WINDOW_UPDATE are not the response; the HEADERS
    /// frame on stream 1 is, wherever the reads cut the bytes.
    #[test]
    fn response_frames_are_found_across_any_cut() {
        let mut bytes = frame(0x4, 0, &[0; 12]); // SETTINGS
        bytes.extend(frame(0x6, 0, &[1; 8])); // PING
        bytes.extend(frame(0x8, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE
        let control = bytes.len();
        // A HEADERS payload that looks like frame headers must not be read as frames.
        bytes.extend(frame(HEADERS, 1, &frame(HEADERS, 3, b"x")));
        for cut in 1..bytes.len() {
            let mut s = FrameScan::responses();
            let (a, b) = bytes.split_at(cut);
            let first = s.feed(a);
            let second = s.feed(b);
            assert_eq!(first, cut >= control + 9, "cut at {cut}");
            assert_eq!(second, cut < control + 9, "cut at {cut}");
        }
        let mut s = FrameScan::responses();
        assert!(!s.feed(&bytes[..control]));
    }

    /// Our preface and SETTINGS are not the request; its HEADERS are; a later SETTINGS ack is
    /// not.
    #[test]
    fn request_frames_follow_the_preface() {
        let mut s = FrameScan::requests();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(0x4, 0, &[0; 6]));
        assert!(!s.feed(&bytes));
        assert!(s.feed(&frame(HEADERS, 1, b"hpack")));
        assert!(!s.feed(&frame(0x4, 0, &[])));
        assert!(s.feed(&frame(DATA, 1, b"body")));
    }
}
