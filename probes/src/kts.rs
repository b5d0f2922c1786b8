//! Kernel timestamps: the kernel's own record of when a packet arrived (or a handshake took),
//! which sonde's scheduling cannot delay.
//!
//! Every user-space timestamp is taken when a task runs: after the packet arrived, the runtime
//! had to notice it, wake the task and give it a thread. Under load that wait is milliseconds and
//! it lands in the reported latency. The kernel timestamps a packet when it enters the network
//! stack, before any of that, so phases measured with it are the target's latency alone. The
//! difference between the two is sonde's own delay ([`crate::Timings::own_delay`]).
//!
//! What is measured by the kernel (Linux only; elsewhere every phase is user space and the trace
//! says so):
//! - ICMP `rtt`: the echo reply's receive timestamp (`SO_TIMESTAMPNS`, read from the `recvmsg`
//!   control messages) minus the clock read just before `sendto` (the closest point to the send
//!   that does not need the error queue);
//! - TCP `connect`: the kernel's round-trip sample of the handshake (`TCP_INFO`'s `tcpi_rtt`
//!   right after connect: SYN sent → SYN-ACK received), when it is the only sample (no
//!   retransmission);
//! - everything that is a request and its answer on a TCP connection ([`stream`]): HTTP
//!   `processing` (http and https, HTTP/1.1 and HTTP/2), the `tls` handshake's rounds, a tcp
//!   dialogue's send → matching line, a WebSocket send → matching frame. The timestamping
//!   stream sits on the socket under rustls; the layer that reads plaintext says which bytes
//!   were awaited ([`seen`]).
//!
//! Socket timestamps are `CLOCK_REALTIME` ([`RealTime`]); only differences of two readings of
//! that clock are used, never compared with tokio's monotonic [`tokio::time::Instant`].

use std::time::Duration;

pub mod seen;
#[cfg(target_os = "linux")]
pub mod stream;
#[cfg(target_os = "linux")]
mod tcp_info;

pub use stream::Marks;

/// Elsewhere: no timestamped stream; its marks only say why.
#[cfg(not(target_os = "linux"))]
pub mod stream {
    use std::time::Duration;

    use super::RealTime;

    #[derive(Clone, Debug)]
    pub struct Marks(std::sync::Arc<str>);

    impl Marks {
        pub fn none(why: &str) -> Self {
            Marks(why.into())
        }
        pub fn on(&self) -> bool {
            false
        }
        pub fn arm(&self) {}
        pub fn layered(&self) {}
        pub fn request_by_layer(&self) {}
        pub fn sent(&self) {}
        pub fn seen(&self) {}
        pub fn take(&self) -> Result<Duration, String> {
            Err(self.0.to_string())
        }
        pub fn start_rounds(&self) {}
        pub fn take_rounds(&self) -> Result<(Duration, usize), String> {
            Err(self.0.to_string())
        }
        pub fn listen(&self) {}
        pub fn sent_key(&self) -> Option<u32> {
            None
        }
        pub fn last_rx(&self) -> Option<RealTime> {
            None
        }
        pub fn between(&self, _: Option<u32>, _: Option<RealTime>) -> Result<Duration, String> {
            Err(self.0.to_string())
        }
        pub fn eager(&self) {}
        pub fn sent_at(&self, _: Option<u32>) -> Result<RealTime, String> {
            Err(self.0.to_string())
        }
    }
}

/// Whether sonde asks the kernel for timestamps at all (on unless the operator switched them off).
static SWITCHED_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The reason given while kernel timestamps are switched off.
pub const OFF: &str = "kernel timestamps are switched off (--probe.kernel-timestamps=off)";

/// Switch kernel timestamps on or off for the whole process; call before probing (a connection
/// keeps what it was opened with). Off, no socket option is set, no timestamp is read, no
/// socket is kept open for them, and every phase is timed in user space with the reason
/// [`OFF`]: for a kernel whose timestamps misbehave, and to measure what they cost.
pub fn set_enabled(on: bool) {
    SWITCHED_OFF.store(!on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether kernel timestamps are switched on ([`set_enabled`]); says nothing of the platform.
pub fn enabled() -> bool {
    !SWITCHED_OFF.load(std::sync::atomic::Ordering::Relaxed)
}

/// A connected TCP stream as sonde's probes use it: timestamped by the kernel where it can be.
#[cfg(target_os = "linux")]
pub type Stream = stream::TimestampedStream;
#[cfg(not(target_os = "linux"))]
pub type Stream = tokio::net::TcpStream;

/// Wrap a freshly connected socket (nothing written yet) so the kernel timestamps its bytes,
/// before any other layer (TLS, HTTP, WebSocket) goes on top; the marks are the probe's handle.
/// Where it cannot (not Linux, the option refused) the stream is plain and the marks say why.
pub fn timestamped(tcp: tokio::net::TcpStream) -> (Stream, Marks) {
    #[cfg(target_os = "linux")]
    {
        let s = stream::TimestampedStream::new(tcp);
        let m = s.marks();
        (s, m)
    }
    #[cfg(not(target_os = "linux"))]
    {
        (tcp, Marks::none(NOT_LINUX))
    }
}

#[cfg(target_os = "linux")]
pub use tcp_info::{connect, handshake_rtt};

/// Elsewhere: tokio's connect, and no kernel figure.
#[cfg(not(target_os = "linux"))]
pub async fn connect(
    addr: std::net::SocketAddr,
) -> std::io::Result<(tokio::net::TcpStream, Result<Duration, String>)> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    Ok((s, Err(NOT_LINUX.into())))
}

/// Elsewhere: no kernel handshake figure, with the reason.
#[cfg(not(target_os = "linux"))]
pub fn handshake_rtt<S>(_: &S) -> Result<Duration, String> {
    Err(NOT_LINUX.into())
}

/// The reason given where the platform has no kernel timestamps.
pub const NOT_LINUX: &str = "kernel timestamps are only used on Linux";

/// Keep the kernel's receive timestamping switched on for the life of the process, and say
/// whether it could be.
///
/// The kernel stamps arriving packets only while some socket wants it, and switching that on
/// is deferred to a work queue: on a prober whose only timestamped socket is one probe's
/// connection, the switch would flip on and off with every probe and the first segments of each
/// would arrive unstamped (labelled "no receive timestamp"). One UDP socket with
/// `SO_TIMESTAMPNS`, kept open, holds it on. Cheap after the first call.
#[cfg(target_os = "linux")]
pub fn keep_on() -> bool {
    use std::os::fd::AsRawFd;
    if !enabled() {
        return false;
    }
    static KEEPER: std::sync::OnceLock<Option<std::net::UdpSocket>> = std::sync::OnceLock::new();
    KEEPER
        .get_or_init(|| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
            enable_rx_timestamps(s.as_raw_fd()).ok()?;
            Some(s)
        })
        .is_some()
}

#[cfg(not(target_os = "linux"))]
pub fn keep_on() -> bool {
    false
}

/// [`keep_on`], then wait (blocking, at most ~100 ms, once) until the kernel really stamps
/// segments of a loopback TCP connection: call it at start-up, before probing, so that even the
/// first probes have kernel figures. Whether it does.
#[cfg(target_os = "linux")]
pub fn warm_up() -> bool {
    static WARM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !enabled() {
        return false;
    }
    *WARM.get_or_init(|| keep_on() && stamps_flow().unwrap_or(false))
}

#[cfg(not(target_os = "linux"))]
pub fn warm_up() -> bool {
    false
}

/// One byte at a time over a loopback TCP pair until one arrives with a receive timestamp
/// (TCP, unlike UDP, does not fill in a missing one at read time).
#[cfg(target_os = "linux")]
fn stamps_flow() -> std::io::Result<bool> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let c = std::net::TcpStream::connect(l.local_addr()?)?;
    let (mut server, _) = l.accept()?;
    let flags: libc::c_uint = libc::SOF_TIMESTAMPING_RX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE;
    // SAFETY: `c` is open; the option is a live c_uint of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            (&flags as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Ok(false);
    }
    c.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut buf = [0u8; 1];
    for _ in 0..100 {
        server.write_all(b"w")?;
        // Wait for the byte, then read it with its control messages.
        let mut peek = [0u8; 1];
        if c.peek(&mut peek)? == 0 {
            return Ok(false);
        }
        match stream::recv_stream(c.as_raw_fd(), &mut buf) {
            Ok((1, Some(_))) => return Ok(true),
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// A reading of `CLOCK_REALTIME`: a packet's kernel timestamp or [`RealTime::now`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RealTime(Duration);

impl RealTime {
    /// The clock now (`SystemTime` is `CLOCK_REALTIME` on Linux, the clock socket timestamps use).
    pub fn now() -> Self {
        RealTime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        )
    }

    /// From a `timespec`; `None` for the all-zero one the kernel sends for "no timestamp" and for
    /// nonsense (negative, nanoseconds out of range).
    pub fn from_timespec(sec: i64, nsec: i64) -> Option<Self> {
        if sec < 0 || !(0..1_000_000_000).contains(&nsec) || (sec == 0 && nsec == 0) {
            return None;
        }
        Some(RealTime(Duration::new(sec as u64, nsec as u32)))
    }

    /// Nanoseconds since 1970, saturating (in 2554): an inbox keeps it in 8 bytes.
    pub(crate) fn as_nanos(self) -> u64 {
        u64::try_from(self.0.as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn from_nanos(n: u64) -> Self {
        RealTime(Duration::from_nanos(n))
    }

    /// `self − earlier`; `None` when the clock was stepped back between the two readings.
    pub fn since(self, earlier: RealTime) -> Option<Duration> {
        self.0.checked_sub(earlier.0)
    }
}

/// Ask the kernel to timestamp every datagram `fd` receives (`SO_TIMESTAMPNS`); the timestamps
/// come as control messages of `recvmsg` ([`rx_timestamp`]). The error says why not.
#[cfg(target_os = "linux")]
pub fn enable_rx_timestamps(fd: std::os::fd::RawFd) -> Result<(), String> {
    if !enabled() {
        return Err(OFF.into());
    }
    let on: libc::c_int = 1;
    // SAFETY: `fd` is a descriptor the caller keeps open for the call; the option value is a
    // live c_int whose exact size is passed along.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "the kernel refused SO_TIMESTAMPNS: {}",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
pub fn enable_rx_timestamps(_fd: std::os::fd::RawFd) -> Result<(), String> {
    Err(NOT_LINUX.into())
}

/// Room for the control messages of one received datagram (a `timespec`, or the three of
/// `SCM_TIMESTAMPING`, with headers and alignment), on the stack.
pub const CONTROL_LEN: usize = 128;

/// The kernel's receive timestamp among the control messages of one `recvmsg`: `SCM_TIMESTAMPNS`
/// or the software one of `SCM_TIMESTAMPING`. Anything else, and anything truncated, is skipped.
pub fn rx_timestamp(control: &[u8]) -> Option<RealTime> {
    #[cfg(target_os = "linux")]
    for (level, kind, data) in Cmsgs::new(control) {
        if level != libc::SOL_SOCKET {
            continue;
        }
        let ts = match kind {
            libc::SCM_TIMESTAMPNS => read_timespec(data, 0),
            // struct scm_timestamping { ts[3] }: [0] software, [2] hardware.
            libc::SCM_TIMESTAMPING => read_timespec(data, 0),
            _ => None,
        };
        if ts.is_some() {
            return ts;
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = control;
    None
}

#[cfg(target_os = "linux")]
fn read_timespec(data: &[u8], index: usize) -> Option<RealTime> {
    let size = std::mem::size_of::<libc::timespec>();
    let bytes = data.get(index * size..(index + 1) * size)?;
    // SAFETY: `bytes` is exactly one timespec long; read_unaligned copies it out whatever the
    // buffer's alignment.
    let ts: libc::timespec = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    RealTime::from_timespec(ts.tv_sec as i64, ts.tv_nsec as i64)
}

/// The control messages in a `recvmsg` control buffer, as (level, type, data). Walked by hand
/// over the bytes (with the kernel's layout: header, data at the header size aligned to a word,
/// next message at the length aligned to a word) so a buffer that is not what it should be ends
/// the walk instead of being read past.
#[cfg(unix)]
struct Cmsgs<'a> {
    buf: &'a [u8],
}

#[cfg(unix)]
impl<'a> Cmsgs<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cmsgs { buf }
    }
}

#[cfg(unix)]
const fn cmsg_align(n: usize) -> usize {
    let a = std::mem::size_of::<usize>();
    (n + a - 1) & !(a - 1)
}

#[cfg(unix)]
impl<'a> Iterator for Cmsgs<'a> {
    type Item = (libc::c_int, libc::c_int, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let hdr_len = std::mem::size_of::<libc::cmsghdr>();
        if self.buf.len() < hdr_len {
            return None;
        }
        // SAFETY: at least one header's worth of bytes; copied out unaligned.
        let hdr: libc::cmsghdr = unsafe { std::ptr::read_unaligned(self.buf.as_ptr().cast()) };
        let len = hdr.cmsg_len as usize;
        let data_at = cmsg_align(hdr_len);
        if len < data_at || len > self.buf.len() {
            self.buf = &[];
            return None;
        }
        let data = &self.buf[data_at..len];
        self.buf = self.buf.get(cmsg_align(len)..).unwrap_or(&[]);
        Some((hdr.cmsg_level, hdr.cmsg_type, data))
    }
}

/// A datagram received with [`recv_timestamped`].
#[cfg(unix)]
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub len: usize,
    pub from: std::net::SocketAddr,
    /// The kernel's receive timestamp, when timestamps are on and the kernel gave one.
    pub kernel_rx: Option<RealTime>,
}

/// One non-blocking `recvmsg` on `fd` into `buf`, with the control messages read for the
/// kernel's receive timestamp. No allocation: the control buffer is on the stack.
#[cfg(unix)]
pub fn recv_timestamped(fd: std::os::fd::RawFd, buf: &mut [u8]) -> std::io::Result<Received> {
    // u64 elements: a control buffer aligned for cmsghdr.
    let mut control = [0u64; CONTROL_LEN / 8];
    // SAFETY: zeroed sockaddr_storage and msghdr are valid values of those C structs.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_LEN as _;
    // SAFETY: every pointer in `msg` points at a live local (or `buf`) of the stated size.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let from = sockaddr_to_std(&from).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "datagram from no address")
    })?;
    let clen = (msg.msg_controllen as usize).min(CONTROL_LEN);
    // SAFETY: the u64 array is CONTROL_LEN bytes; viewing a prefix of it as bytes is sound.
    let control: &[u8] = unsafe { std::slice::from_raw_parts(control.as_ptr().cast(), clen) };
    Ok(Received {
        len: n as usize,
        from,
        kernel_rx: rx_timestamp(control),
    })
}

#[cfg(unix)]
fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: libc::sockaddr_in = unsafe { std::ptr::read(s as *const _ as *const _) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: libc::sockaddr_in6 = unsafe { std::ptr::read(s as *const _ as *const _) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// "kernel 310µs, user space 1.200ms (sonde's own delay 890µs)", or the user-space figure and
/// why there is no kernel one: how a phase reads in the trace.
pub fn describe<E: AsRef<str>>(user: Duration, kernel: &Result<Duration, E>) -> Described<'_, E> {
    Described { user, kernel }
}

/// [`describe`]'s text, written where it is used (an event) rather than built first.
pub struct Described<'a, E> {
    user: Duration,
    kernel: &'a Result<Duration, E>,
}

impl<E: AsRef<str>> std::fmt::Display for Described<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.user;
        match self.kernel {
            &Ok(k) => write!(
                f,
                "kernel {}, user space {} (sonde's own delay {})",
                Micros(k.min(user)),
                Micros(user),
                Micros(user.saturating_sub(k))
            ),
            Err(why) => write!(f, "{} (user-space timing: {})", Micros(user), why.as_ref()),
        }
    }
}

/// Microseconds throughout: the two figures are compared, often within a millisecond.
struct Micros(Duration);

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 < Duration::from_millis(1) {
            write!(f, "{}µs", self.0.as_micros())
        } else {
            write!(f, "{:.3}ms", self.0.as_secs_f64() * 1e3)
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests;
