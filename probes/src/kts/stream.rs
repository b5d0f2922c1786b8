//! A TCP stream that asks the kernel to timestamp what it sends and receives, for the
//! request → first response byte phase.
//!
//! With `SO_TIMESTAMPING` (TX software with `OPT_ID`, RX software) on the socket, the kernel
//! queues on the socket's error queue, for every `send`, the time the segment carrying the send's
//! last byte left the stack, keyed by that byte's offset since the option was set; and attaches to
//! every `recvmsg` the time the (last) segment read arrived. [`TimestampedStream`] reads with
//! `recvmsg` to get the latter, and drains the error queue to match the former.
//!
//! A probe arms it ([`Marks::arm`]) before writing a request; the stream then notes the key of
//! the last byte written, and on the first read of the response the receive timestamp and the
//! matching send timestamp. [`Marks::take`] gives the kernel's request → first byte figure, or why
//! there is none. TX completions can come in any order ([`TxStamps`] matches by key).
//!
//! The receive timestamp is that of the last segment the first read consumed: when several
//! segments were already queued it is later than the first byte's (the figure errs long, never
//! short). Only a stream whose first awaited bytes are the response can be measured this way:
//! the HTTP probe uses it for HTTP/1.1 over plain TCP (over TLS the first bytes read may be a
//! session ticket, over HTTP/2 the server's SETTINGS).

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

/// The send timestamps kept while waiting for the response: a request is a few writes.
const TX_KEEP: usize = 16;

/// Send timestamps by key, in whatever order the kernel completed them; the oldest are dropped.
#[derive(Debug, Default)]
pub struct TxStamps {
    stamps: [Option<(u32, RealTime)>; TX_KEEP],
    next: usize,
}

impl TxStamps {
    pub fn record(&mut self, key: u32, at: RealTime) {
        self.stamps[self.next % TX_KEEP] = Some((key, at));
        self.next = self.next.wrapping_add(1);
    }

    /// The timestamp of the send whose last byte is `key`.
    pub fn find(&self, key: u32) -> Option<RealTime> {
        self.stamps
            .iter()
            .flatten()
            .find(|(k, _)| *k == key)
            .map(|(_, t)| *t)
    }

    fn clear(&mut self) {
        *self = TxStamps::default();
    }
}

/// What the stream noted for the armed exchange, shared with the probe.
#[derive(Debug, Default)]
struct MarkState {
    /// Bytes written since timestamping was turned on (`OPT_ID` keys count from there).
    written: u64,
    armed: bool,
    /// `OPT_ID` key of the last byte written while armed.
    last_tx_key: Option<u32>,
    tx: TxStamps,
    /// The first read's receive timestamp, once it happened (`None` inside: no timestamp).
    first_rx: Option<Option<RealTime>>,
}

/// The probe's handle on a [`TimestampedStream`]'s notes.
#[derive(Clone, Debug)]
pub struct Marks {
    state: Arc<Mutex<MarkState>>,
    /// Why there are no kernel timestamps on this stream (the option was refused).
    refused: Option<Arc<str>>,
}

impl Marks {
    fn lock(&self) -> std::sync::MutexGuard<'_, MarkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start an exchange: the next writes are the request, the next read its response.
    pub fn arm(&self) {
        let mut s = self.lock();
        s.armed = true;
        s.last_tx_key = None;
        s.first_rx = None;
        s.tx.clear();
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

    fn wrote(&self, n: usize) {
        let mut s = self.lock();
        s.written += n as u64;
        if s.armed && s.first_rx.is_none() && n > 0 {
            // Keys are 32-bit and wrap, as the kernel's do.
            s.last_tx_key = Some((s.written - 1) as u32);
        }
    }

    fn wants_rx(&self) -> bool {
        let s = self.lock();
        s.armed && s.first_rx.is_none()
    }
}

/// A TCP stream whose reads and writes the kernel timestamps (see the module docs).
pub struct TimestampedStream {
    inner: TcpStream,
    marks: Marks,
}

impl TimestampedStream {
    /// Turn timestamping on for `inner` (connected, nothing written yet). A kernel that refuses
    /// leaves a plain stream whose [`Marks::take`] says why.
    pub fn new(inner: TcpStream) -> Self {
        let refused = enable(&inner).err().map(Arc::from);
        TimestampedStream {
            inner,
            marks: Marks {
                state: Arc::default(),
                refused,
            },
        }
    }

    pub fn marks(&self) -> Marks {
        self.marks.clone()
    }

    /// Move the send timestamps queued on the error queue into the marks.
    fn drain_error_queue(&self) {
        let mut s = self.marks.lock();
        while let Ok(Some((key, at))) = recv_tx_stamp(self.inner.as_raw_fd()) {
            s.tx.record(key, at);
        }
    }
}

fn enable(s: &TcpStream) -> Result<(), String> {
    let flags: libc::c_uint = libc::SOF_TIMESTAMPING_TX_SOFTWARE
        | libc::SOF_TIMESTAMPING_RX_SOFTWARE
        | libc::SOF_TIMESTAMPING_SOFTWARE
        | libc::SOF_TIMESTAMPING_OPT_ID
        | libc::SOF_TIMESTAMPING_OPT_TSONLY;
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
fn recv_stream(fd: i32, buf: &mut [u8]) -> io::Result<(usize, Option<RealTime>)> {
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

/// One send timestamp from the error queue: `Ok(None)` for an entry that is not one, `Err` when
/// the queue is empty.
fn recv_tx_stamp(fd: i32) -> io::Result<Option<(u32, RealTime)>> {
    let mut control = [0u64; CONTROL_LEN / 8];
    // SAFETY: as in recv_stream; no data buffer (OPT_TSONLY: the entry carries no packet).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_LEN as _;
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let clen = (msg.msg_controllen as usize).min(CONTROL_LEN);
    // SAFETY: a prefix of the u64 array, viewed as bytes.
    let control: &[u8] = unsafe { std::slice::from_raw_parts(control.as_ptr().cast(), clen) };
    Ok(tx_stamp(control))
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
        if !this.marks.wants_rx() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            let fd = this.inner.as_raw_fd();
            // SAFETY: recvmsg only writes initialized bytes into the unfilled part, and we only
            // advance by what it reports.
            let unfilled = unsafe { buf.unfilled_mut() };
            let dst = unsafe {
                std::slice::from_raw_parts_mut(unfilled.as_mut_ptr().cast::<u8>(), unfilled.len())
            };
            match this
                .inner
                .try_io(Interest::READABLE, || recv_stream(fd, dst))
            {
                Ok((n, rx)) => {
                    // SAFETY: recvmsg filled n bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    if n > 0 {
                        // The request's send timestamps are queued by now: its bytes left
                        // before the response to them could arrive.
                        this.drain_error_queue();
                        this.marks.lock().first_rx = Some(rx);
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
        if this.marks.lock().armed {
            // Completions of earlier exchanges must not crowd out this one's.
            this.drain_error_queue();
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.marks.wrote(n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.marks.wrote(n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
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
        assert_eq!(s.find(1000 + TX_KEEP as u32 - 1), Some(t(1015)));
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
        m.wrote(10); // an earlier exchange, not armed
        m.arm();
        m.wrote(40); // bytes 10..50
        m.wrote(30); // bytes 50..80: the last one is key 79
        {
            let mut s = m.lock();
            // The kernel completed the second send first.
            s.tx.record(79, t(1_000));
            s.tx.record(49, t(900));
            s.first_rx = Some(Some(t(21_000)));
        }
        m.wrote(5); // after the response started: not the request
        assert_eq!(m.take(), Ok(Duration::from_micros(20_000)));
    }

    #[test]
    fn missing_pieces_are_named() {
        let m = marks(None);
        m.arm();
        assert_eq!(m.take().unwrap_err(), "no request bytes were written");
        m.arm();
        m.wrote(3);
        assert_eq!(m.take().unwrap_err(), "no response bytes were read");
        m.arm();
        m.wrote(3);
        m.lock().first_rx = Some(None);
        assert!(m.take().unwrap_err().contains("no receive timestamp"));
        m.arm();
        m.wrote(3);
        m.lock().first_rx = Some(Some(t(5)));
        assert!(m.take().unwrap_err().contains("no send timestamp"));
    }

    /// A kernel that refused the option: a plain stream, and the figure says why.
    #[test]
    fn a_refused_option_is_labelled() {
        let m = marks(Some("the kernel refused SO_TIMESTAMPING: Invalid argument"));
        m.arm();
        m.wrote(3);
        assert_eq!(
            m.take().unwrap_err(),
            "the kernel refused SO_TIMESTAMPING: Invalid argument"
        );
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
