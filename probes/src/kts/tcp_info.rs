//! The kernel's measurement of a TCP handshake, from `TCP_INFO`.

use std::os::fd::AsRawFd;
use std::time::Duration;

/// The kernel's round-trip sample of the handshake just completed on `sock` (SYN sent → SYN-ACK
/// received, in microseconds): right after connect it is the smoothed RTT's only sample, so
/// `tcpi_rtt` is that sample exactly. Refused (with the reason) when the SYN was retransmitted —
/// the sample would then leave out the retransmission timeout the connect really took — or when
/// the kernel took no sample.
pub fn handshake_rtt(sock: &impl AsRawFd) -> Result<Duration, String> {
    if !super::enabled() {
        return Err(super::OFF.into());
    }
    let (info, len) = read(sock)?;
    judge(&info, len)
}

/// `tcpi_state` of an open connection (linux/tcp_states.h; libc does not name it).
const TCP_ESTABLISHED: u8 = 1;

/// One `TCP_INFO` answer and its length.
fn read(sock: &impl AsRawFd) -> Result<(libc::tcp_info, usize), String> {
    // SAFETY: a zeroed tcp_info is a valid value of that plain C struct.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `sock` is open for the call; `info` is live and its size is passed along.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(format!(
            "TCP_INFO refused: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((info, len as usize))
}

/// Connect to `addr` as `TcpStream::connect` does, with the kernel's handshake figure
/// ([`handshake_rtt`]) beside the stream. tokio asks `SO_ERROR` once the socket is writable,
/// and the figure would be one more call on every probe's connection: here the one `TCP_INFO`
/// answer says both — an established connection has no error to fetch; any other state is
/// judged by `SO_ERROR`, as tokio would.
pub async fn connect(
    addr: std::net::SocketAddr,
) -> std::io::Result<(tokio::net::TcpStream, Result<Duration, String>)> {
    use socket2::{Domain, Protocol, Socket, Type};
    if !super::enabled() {
        let s = tokio::net::TcpStream::connect(addr).await?;
        return Ok((s, Err(super::OFF.into())));
    }
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = tokio::net::TcpStream::from_std(socket.into())?;
    stream.writable().await?;
    match read(&stream) {
        Ok((info, len)) if info.tcpi_state == TCP_ESTABLISHED => Ok((stream, judge(&info, len))),
        _ => match stream.take_error()? {
            Some(e) => Err(e),
            None => {
                let rtt = handshake_rtt(&stream);
                Ok((stream, rtt))
            }
        },
    }
}

/// The handshake RTT in a `TCP_INFO` answer of `len` bytes, or why it is not usable.
fn judge(info: &libc::tcp_info, len: usize) -> Result<Duration, String> {
    // tcpi_rtt sits well inside the oldest tcp_info any kernel returns, but a short answer is
    // still not read past.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_total_retrans) + 4;
    if len < needed {
        return Err(format!("TCP_INFO too short ({len} bytes)"));
    }
    if info.tcpi_total_retrans > 0 || info.tcpi_retransmits > 0 {
        return Err("the SYN was retransmitted".into());
    }
    if info.tcpi_rtt == 0 {
        return Err("the kernel took no RTT sample of the handshake".into());
    }
    Ok(Duration::from_micros(info.tcpi_rtt as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(rtt: u32, total_retrans: u32) -> libc::tcp_info {
        // SAFETY: plain C struct.
        let mut i: libc::tcp_info = unsafe { std::mem::zeroed() };
        i.tcpi_rtt = rtt;
        i.tcpi_total_retrans = total_retrans;
        i
    }

    #[test]
    fn the_first_sample_is_the_handshake() {
        let full = std::mem::size_of::<libc::tcp_info>();
        assert_eq!(judge(&info(312, 0), full), Ok(Duration::from_micros(312)));
        assert_eq!(
            judge(&info(312, 1), full),
            Err("the SYN was retransmitted".into())
        );
        assert!(judge(&info(0, 0), full)
            .unwrap_err()
            .contains("no RTT sample"));
        assert!(judge(&info(312, 0), 8).unwrap_err().contains("too short"));
    }

    #[tokio::test]
    async fn a_loopback_connect_has_a_kernel_rtt() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let rtt = handshake_rtt(&s).unwrap();
        assert!(rtt > Duration::ZERO);
    }

    #[tokio::test]
    async fn connect_gives_the_stream_and_the_figure_or_the_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (s, rtt) = connect(addr).await.unwrap();
        assert!(rtt.unwrap() > Duration::ZERO);
        let (mut server, _) = l.accept().await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = s;
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        server.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"x");
        // Nothing listens there any more: refused, as tokio's connect says it.
        drop((l, server, s));
        let e = connect(addr).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn a_socket_that_is_not_tcp_is_refused() {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(handshake_rtt(&u).unwrap_err().contains("TCP_INFO refused"));
    }
}
