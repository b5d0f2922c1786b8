//! Reading a long-lived connection without keeping a read buffer while it is idle.
//!
//! A connection's task waits in a read nearly all the time. `read_buf` needs the room to read
//! into *before* it waits, so an idle connection kept that room allocated for hours: 1–2 KiB per
//! connection, twice per IM session. Here the bytes are read into scratch space on the stack of
//! the poll that finds them ready and appended to the connection's buffer at once, so the
//! buffer holds only bytes not yet framed and can be empty (no allocation) between frames.
//! The cost is one copy of each byte read, which is small beside the system call.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

/// Stack space per read: a read returns what the socket holds up to this, so a burst of small
/// frames (or a large frame) takes one system call per `SCRATCH` bytes.
const SCRATCH: usize = 4096;

/// Wait for bytes and append them to `buf`; `Ok(0)` at the end of the stream. Cancel-safe: bytes
/// are taken from the stream only in the poll that appends them.
pub(crate) async fn read_into<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    poll_fn(|cx| poll_read_into(io, cx, buf)).await
}

/// [`read_into`] for code that is polled itself (a `Stream`, a `Sink`).
pub(crate) fn poll_read_into<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    let mut scratch = [0u8; SCRATCH];
    let mut rb = ReadBuf::new(&mut scratch);
    match Pin::new(&mut *io).poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) => {
            buf.extend_from_slice(rb.filled());
            Poll::Ready(Ok(rb.filled().len()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn an_empty_buffer_stays_unallocated_until_bytes_arrive() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut buf = BytesMut::new();
        let waiting = read_into(&mut b, &mut buf).now_or_never();
        assert!(waiting.is_none(), "nothing was sent yet");
        assert_eq!(buf.capacity(), 0, "no room kept while waiting");
        a.write_all(b"hello").await.unwrap();
        assert_eq!(read_into(&mut b, &mut buf).await.unwrap(), 5);
        assert_eq!(&buf[..], b"hello");
        drop(a);
        assert_eq!(read_into(&mut b, &mut buf).await.unwrap(), 0);
    }
}
