//! `--probe.kernel-timestamps=off` (`kts::set_enabled(false)`): no socket option is set, no
//! timestamp read, and every figure says why it is user-space only. A test binary of its own,
//! as the switch is the whole process's.

#![cfg(target_os = "linux")]

use std::os::fd::AsRawFd;

use sonde_probes::kts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn switched_off_nothing_is_timestamped_and_the_reason_is_given() {
    kts::set_enabled(false);
    assert!(!kts::enabled());
    assert!(
        !kts::warm_up(),
        "no socket is kept open to hold timestamps on"
    );
    assert!(!kts::keep_on());

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"pong").await.unwrap();
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(kts::handshake_rtt(&tcp).unwrap_err(), kts::OFF);
    let fd = tcp.as_raw_fd();
    let (mut stream, marks) = kts::timestamped(tcp);
    assert!(!marks.on());
    marks.arm();
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    assert_eq!(marks.take().unwrap_err(), kts::OFF);
    server.await.unwrap();

    // The option was never set on the socket.
    let mut flags: libc::c_uint = 0;
    let mut len = std::mem::size_of::<libc::c_uint>() as libc::socklen_t;
    // SAFETY: `fd` is open (the stream owns it); `flags` is live and its size passed along.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            (&mut flags as *mut libc::c_uint).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    assert_eq!(flags, 0, "SO_TIMESTAMPING was set although switched off");
    drop(stream);

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        kts::enable_rx_timestamps(udp.as_raw_fd()).unwrap_err(),
        kts::OFF
    );
}
