//! A stream whose `shutdown` only flushes: for an HTTP connection that is dropped, and so
//! closed, right after hyper (and rustls, after writing its `close_notify`) asks to shut it
//! down.
//!
//! A `shutdown(SHUT_WR)` just before `close` puts nothing on the wire that `close` would not:
//! `close` sends the same FIN (with unread data left it sends a reset instead, which it would
//! have sent after the FIN anyway). It is a system call every probe would pay (about 1 % of an
//! http `/probe`'s CPU), and Go's client, which blackbox_exporter uses, does not make it either.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `T`, closed only by its drop. Every other call goes to `T`.
pub(super) struct CloseWhole<T>(pub(super) T);

impl<T: AsyncRead + Unpin> AsyncRead for CloseWhole<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CloseWhole<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    /// Flushed, not shut down: the drop that follows closes the socket.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn shutdown_leaves_the_write_side_open_until_the_drop() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap());
        let (c, (mut s, _)) = tokio::join!(c, async { l.accept().await.unwrap() });
        let mut c = CloseWhole(c.unwrap());
        c.write_all(b"GET").await.unwrap();
        c.shutdown().await.unwrap();
        // Still open: a write after a real shutdown fails (EPIPE), and the peer would read the
        // end of the stream before "!".
        c.write_all(b"!").await.unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET!");
        drop(c);
        let mut more = [0u8; 1];
        assert_eq!(s.read(&mut more).await.unwrap(), 0, "the drop closes");
    }
}
