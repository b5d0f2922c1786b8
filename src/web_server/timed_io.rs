//! A TCP stream that gives up on a peer that stops reading or goes quiet.
//!
//! hyper bounds how long a request head may take (`header_read_timeout`), but not a response
//! write to a client that never reads, nor a connection that says nothing once its request is
//! answered. Here every write that makes no progress for `write_timeout`, and every read that
//! waits `idle_timeout` since the last byte either way while no request is being handled, fails
//! with `TimedOut`: hyper then closes the connection and frees what it held.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

pub struct TimedIo {
    inner: TcpStream,
    write_timeout: Duration,
    /// Running while a write is stalled.
    write_stall: Option<Pin<Box<Sleep>>>,
    idle_timeout: Duration,
    /// Reset on every byte read or written.
    idle: Pin<Box<Sleep>>,
    /// Requests on this connection being handled now: a slow handler (a `/probe` of 2 minutes)
    /// is not idleness.
    busy: Arc<AtomicUsize>,
}

impl TimedIo {
    pub fn new(
        inner: TcpStream,
        write_timeout: Duration,
        idle_timeout: Duration,
        busy: Arc<AtomicUsize>,
    ) -> Self {
        TimedIo {
            inner,
            write_timeout,
            write_stall: None,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            busy,
        }
    }

    fn progressed(&mut self) {
        let next = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(next);
    }

    /// A write made no progress: Ready(error) once it has been stalled for `write_timeout`.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.write_timeout;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {timeout:?}"),
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn wrote<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write_stall = None;
                self.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => self.stalled(cx).map(Err),
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.busy.load(Ordering::Acquire) == 0 && this.idle.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("idle for {:?}", this.idle_timeout),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.wrote(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.wrote(r, cx)
    }
}
