//! `--web.systemd-socket`: serve on the listening sockets systemd passed (socket activation,
//! `sd_listen_fds(3)`), as blackbox_exporter does, instead of binding `--web.listen-address`.
//! systemd then owns the port: it can be privileged, opened before sonde starts, and kept open
//! across restarts so no scrape is refused while sonde restarts.
//!
//! The protocol: `LISTEN_PID` is this process's id (the sockets were meant for it, not for a
//! parent that forgot to unset the variables), `LISTEN_FDS` how many descriptors follow from 3.
//! Each must be a listening TCP socket; anything else is refused by descriptor number.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// More than anyone passes; bounds what a hostile environment can make sonde adopt.
const MAX_FDS: usize = 64;

/// The passed listeners, made non-blocking and close-on-exec, in the order systemd gave them.
pub fn listeners() -> Result<Vec<TcpListener>, String> {
    let var = |k: &str| std::env::var(k).ok();
    let fds = count(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        std::process::id(),
    )?;
    (0..fds).map(|i| adopt(FIRST_FD + i as RawFd)).collect()
}

/// How many descriptors the environment passes to process `me`.
fn count(pid: Option<&str>, fds: Option<&str>, me: u32) -> Result<usize, String> {
    let how =
        "start sonde from a systemd .socket unit (docs/deploy.md), or drop --web.systemd-socket";
    let pid = pid.ok_or_else(|| {
        format!("--web.systemd-socket: LISTEN_PID is not set, so no sockets were passed — {how}")
    })?;
    if pid.trim().parse::<u32>().ok() != Some(me) {
        return Err(format!("--web.systemd-socket: LISTEN_PID is {pid:?}, not this process ({me}): the sockets were passed to another process — {how}"));
    }
    let fds = fds.unwrap_or("");
    match fds.trim().parse::<usize>() {
        Ok(0) | Err(_) => Err(format!(
            "--web.systemd-socket: LISTEN_FDS is {fds:?}, not a number of sockets — {how}"
        )),
        Ok(n) if n > MAX_FDS => Err(format!(
            "--web.systemd-socket: LISTEN_FDS is {n}; at most {MAX_FDS} sockets are taken"
        )),
        Ok(n) => Ok(n),
    }
}

/// Take descriptor `fd` as a listener if it is a listening TCP socket.
fn adopt(fd: RawFd) -> Result<TcpListener, String> {
    let int = |level, name| -> Result<libc::c_int, String> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid for the duration of the call and sized for an int.
        let r = unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!(
                "--web.systemd-socket: descriptor {fd} is not a socket ({e})"
            ));
        }
        Ok(v)
    };
    let domain = int(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = int(libc::SOL_SOCKET, libc::SO_TYPE)?;
    let listening = int(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)?;
    if !matches!(domain, libc::AF_INET | libc::AF_INET6)
        || kind != libc::SOCK_STREAM
        || listening != 1
    {
        return Err(format!("--web.systemd-socket: descriptor {fd} is not a listening TCP socket (ListenStream= with an address or port)"));
    }
    // SAFETY: `fd` is an open socket (getsockopt succeeded) that systemd handed to this process
    // alone; from here the listener owns and closes it.
    let l = unsafe { TcpListener::from_raw_fd(fd) };
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    l.set_nonblocking(true)
        .map_err(|e| format!("--web.systemd-socket: descriptor {fd}: {e}"))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_must_name_this_process_and_a_count() {
        assert_eq!(count(Some("42"), Some("2"), 42), Ok(2));
        let cases = [
            (None, Some("1"), "LISTEN_PID is not set"),
            (Some("41"), Some("1"), "not this process (42)"),
            (Some("x"), Some("1"), "not this process"),
            (Some("42"), None, "LISTEN_FDS is \"\""),
            (Some("42"), Some("0"), "not a number of sockets"),
            (Some("42"), Some("-1"), "not a number of sockets"),
            (Some("42"), Some("100000"), "at most 64"),
        ];
        for (pid, fds, want) in cases {
            let err = count(pid, fds, 42).unwrap_err();
            assert!(err.contains(want), "{pid:?} {fds:?}: {err}");
        }
    }

    #[test]
    fn a_descriptor_that_is_not_a_listening_tcp_socket_is_refused() {
        let file = tempfile::tempfile().unwrap();
        let err = adopt(std::os::fd::AsRawFd::as_raw_fd(&file)).unwrap_err();
        assert!(err.contains("is not a socket"), "{err}");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = adopt(std::os::fd::AsRawFd::as_raw_fd(&udp)).unwrap_err();
        assert!(err.contains("not a listening TCP socket"), "{err}");
        let tcp = socket2_free_unlistened();
        let err = adopt(tcp).unwrap_err();
        assert!(err.contains("not a listening TCP socket"), "{err}");
    }

    /// A TCP socket that is bound but not listening (what `ListenStream=` never passes).
    fn socket2_free_unlistened() -> RawFd {
        // SAFETY: a fresh socket; leaked for the test's life (a test process).
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0);
        fd
    }
}
