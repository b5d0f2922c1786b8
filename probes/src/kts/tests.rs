//! cmsg parsing and the receive path, against buffers laid out by libc's own CMSG_* macros.

use super::*;

/// A control buffer holding `msgs` (level, type, data), laid out with libc's CMSG_* macros, so
/// the hand-written walker is checked against the C definitions.
pub(super) fn control(msgs: &[(libc::c_int, libc::c_int, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (level, kind, data) in msgs {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
        let (space, len) = unsafe {
            (
                libc::CMSG_SPACE(data.len() as u32) as usize,
                libc::CMSG_LEN(data.len() as u32) as usize,
            )
        };
        let mut m = vec![0u8; space];
        // SAFETY: a zeroed cmsghdr is valid.
        let mut hdr: libc::cmsghdr = unsafe { std::mem::zeroed() };
        hdr.cmsg_len = len as _;
        hdr.cmsg_level = *level;
        hdr.cmsg_type = *kind;
        // SAFETY: `m` has room for the header (space ≥ header size).
        unsafe { std::ptr::write_unaligned(m.as_mut_ptr().cast(), hdr) };
        let at = len - data.len();
        m[at..len].copy_from_slice(data);
        out.extend_from_slice(&m);
    }
    out
}

fn timespec(sec: i64, nsec: i64) -> Vec<u8> {
    // SAFETY: plain C struct.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    ts.tv_sec = sec as _;
    ts.tv_nsec = nsec as _;
    let mut v = vec![0u8; std::mem::size_of::<libc::timespec>()];
    // SAFETY: `v` is one timespec long.
    unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast(), ts) };
    v
}

fn at(sec: u64, nsec: u32) -> Option<RealTime> {
    Some(RealTime(Duration::new(sec, nsec)))
}

#[test]
fn timestampns_is_read() {
    let c = control(&[(
        libc::SOL_SOCKET,
        libc::SCM_TIMESTAMPNS,
        timespec(1_700_000_000, 123_456_789),
    )]);
    assert_eq!(rx_timestamp(&c), at(1_700_000_000, 123_456_789));
}

#[test]
fn timestamping_uses_the_software_stamp() {
    let mut three = timespec(1_700_000_001, 5);
    three.extend(timespec(0, 0)); // legacy, unused
    three.extend(timespec(0, 0)); // hardware: none
    let c = control(&[(libc::SOL_SOCKET, libc::SCM_TIMESTAMPING, three)]);
    assert_eq!(rx_timestamp(&c), at(1_700_000_001, 5));
}

#[test]
fn other_messages_before_the_timestamp_are_skipped() {
    let c = control(&[
        (libc::IPPROTO_IP, libc::IP_TTL, 64i32.to_ne_bytes().to_vec()),
        // Same type number at another level is not a timestamp.
        (libc::IPPROTO_IPV6, libc::SCM_TIMESTAMPNS, timespec(9, 9)),
        (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, timespec(42, 7)),
    ]);
    assert_eq!(rx_timestamp(&c), at(42, 7));
}

#[test]
fn no_zero_truncated_or_lying_timestamps() {
    assert_eq!(rx_timestamp(&[]), None);
    // The kernel's "no timestamp".
    let c = control(&[(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, timespec(0, 0))]);
    assert_eq!(rx_timestamp(&c), None);
    // Nanoseconds out of range.
    let c = control(&[(
        libc::SOL_SOCKET,
        libc::SCM_TIMESTAMPNS,
        timespec(5, 2_000_000_000),
    )]);
    assert_eq!(rx_timestamp(&c), None);
    // Data shorter than a timespec.
    let c = control(&[(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, vec![1, 2, 3])]);
    assert_eq!(rx_timestamp(&c), None);
    // Cut in the middle (MSG_CTRUNC): the walk stops instead of reading past the end.
    let c = control(&[(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, timespec(42, 7))]);
    assert_eq!(rx_timestamp(&c[..c.len() - 4]), None);
    // A header claiming more than the buffer holds.
    let mut c = control(&[(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, timespec(42, 7))]);
    // SAFETY: `c` begins with a cmsghdr.
    let mut hdr: libc::cmsghdr = unsafe { std::ptr::read_unaligned(c.as_ptr().cast()) };
    hdr.cmsg_len = 10_000;
    unsafe { std::ptr::write_unaligned(c.as_mut_ptr().cast(), hdr) };
    assert_eq!(rx_timestamp(&c), None);
    // A header claiming less than itself.
    hdr.cmsg_len = 3;
    unsafe { std::ptr::write_unaligned(c.as_mut_ptr().cast(), hdr) };
    assert_eq!(rx_timestamp(&c), None);
}

#[test]
fn realtime_differences() {
    let a = RealTime::from_timespec(10, 500).unwrap();
    let b = RealTime::from_timespec(10, 2_500).unwrap();
    assert_eq!(b.since(a), Some(Duration::from_nanos(2_000)));
    // A clock stepped back gives no figure rather than a huge one.
    assert_eq!(a.since(b), None);
    assert_eq!(RealTime::from_timespec(-1, 0), None);
}

/// A real datagram over loopback: with timestamps on, the kernel's receive time is there, and it
/// is no later than when we read it.
#[test]
fn loopback_datagram_carries_a_kernel_timestamp() {
    use std::os::fd::AsRawFd;
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    enable_rx_timestamps(rx.as_raw_fd()).unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = RealTime::now();
    tx.send_to(b"ping", rx.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 16];
    let got = loop {
        match recv_timestamped(rx.as_raw_fd(), &mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            other => break other.unwrap(),
        }
    };
    let read = RealTime::now();
    assert_eq!(&buf[..got.len], b"ping");
    assert_eq!(got.from, tx.local_addr().unwrap());
    let k = got.kernel_rx.expect("a kernel timestamp");
    assert!(before <= k && k <= read, "{before:?} {k:?} {read:?}");
}

/// Timestamps off: the datagram comes without one (the fallback the probes label user space).
#[test]
fn no_timestamp_unless_asked() {
    use std::os::fd::AsRawFd;
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 4];
    let got = loop {
        match recv_timestamped(rx.as_raw_fd(), &mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            other => break other.unwrap(),
        }
    };
    assert_eq!(got.kernel_rx, None);
}

/// A descriptor that is no socket: the kernel refuses the option, and the error says so.
#[test]
fn a_refused_option_is_an_error_with_the_reason() {
    let f = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    let e = enable_rx_timestamps(f.as_raw_fd()).unwrap_err();
    assert!(e.contains("refused SO_TIMESTAMPNS"), "{e}");
}

#[test]
fn phases_read_with_both_figures() {
    assert_eq!(
        describe(
            Duration::from_micros(1200),
            &Ok::<_, &str>(Duration::from_micros(310))
        )
        .to_string(),
        "kernel 310µs, user space 1.200ms (sonde's own delay 890µs)"
    );
    assert_eq!(
        describe(Duration::from_micros(1200), &Err(NOT_LINUX)).to_string(),
        "1.200ms (user-space timing: kernel timestamps are only used on Linux)"
    );
}
