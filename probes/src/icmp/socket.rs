//! One ICMP socket shared by the probes with the same options: sending echo requests, its one
//! receive task, and the table of probes waiting for a reply.
//!
//! sonde reads the socket itself (surge-ping's client reads with `recvfrom`, which drops the
//! control messages) so each reply comes with the kernel's receive timestamp ([`kts`]);
//! surge-ping still decodes the packets. Replies are routed as surge-ping routes them: by the
//! address the request went to, the identifier (raw sockets only: a ping socket's is the
//! kernel's) and the sequence number.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use surge_ping::{IcmpPacket, Icmpv4Packet, Icmpv6Packet};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::kts::{self, RealTime};

/// Who a reply is for: the address the request went to, its identifier (raw sockets only) and
/// its sequence number.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Token {
    host: IpAddr,
    ident: Option<u16>,
    seq: u16,
}

/// A reply, as the receive task got it.
pub(super) struct Reply {
    pub packet: IcmpPacket,
    /// The kernel's receive timestamp, when timestamps are on.
    pub kernel_rx: Option<RealTime>,
}

/// When the request left: tokio's clock for the user-space RTT, the socket timestamps' clock for
/// the kernel one, both read just before `sendto`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sent {
    pub at: Instant,
    pub rt: RealTime,
}

pub(super) struct IcmpSocket {
    fd: AsyncFd<Socket>,
    kind: Type,
    /// The local address surge-ping's IPv4 decoder wants (for the packet's destination field).
    local_v4: Ipv4Addr,
    /// Each registration has an id, so a waiter only ever removes its own entry, never one a
    /// later probe made under the same token.
    waiting: Mutex<HashMap<Token, (u64, oneshot::Sender<Reply>)>>,
    next_id: AtomicU64,
    /// Whether the kernel timestamps replies on this socket, or why not.
    pub timestamps: Result<(), String>,
}

/// Send failed: the request is already taken by another probe, or the socket said no.
pub(super) enum SendError {
    /// Another probe in flight to this address waits on this sequence number.
    Collision,
    Io(io::Error),
}

impl IcmpSocket {
    /// Open (ping socket first, raw socket if that is not allowed), apply the options that are
    /// set before the first packet, turn receive timestamps on, and start the receive task on
    /// the current runtime. `configure` sets the caller's per-socket options.
    pub fn open(
        v6: bool,
        source: Option<IpAddr>,
        configure: impl FnOnce(&Socket) -> io::Result<()>,
    ) -> io::Result<Arc<Self>> {
        let (kind, sock) = create(v6)?;
        sock.set_nonblocking(true)?;
        if let Some(src) = source {
            sock.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
        }
        configure(&sock)?;
        let timestamps = kts::enable_rx_timestamps(sock.as_raw_fd());
        let local_v4 = match sock.local_addr().ok().and_then(|a| a.as_socket()) {
            Some(SocketAddr::V4(a)) => *a.ip(),
            _ => Ipv4Addr::UNSPECIFIED,
        };
        // SAFETY: the AsyncFd owns the socket2::Socket, which owns its descriptor and always
        // returns the same one from as_raw_fd until dropped with it.
        let fd = unsafe { AsyncFd::register(sock) }?;
        let s = Arc::new(IcmpSocket {
            fd,
            kind,
            local_v4,
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            timestamps,
        });
        tokio::spawn(receive(s.clone()));
        Ok(s)
    }

    pub fn socket(&self) -> &Socket {
        self.fd.get_ref()
    }

    pub fn kind(&self) -> Type {
        self.kind
    }

    /// On a Linux ping socket the kernel owns the identifier, so replies are routed without it.
    fn kernel_ident(&self) -> bool {
        self.kind == Type::DGRAM && cfg!(any(target_os = "linux", target_os = "android"))
    }

    /// Register for the reply to (`host`, `ident`, `seq`), then send `packet` (an echo request
    /// from [`super::echo_request`]). The returned waiter unregisters on drop, so a probe
    /// cancelled by its deadline leaves nothing behind.
    pub async fn send(
        self: &Arc<Self>,
        host: IpAddr,
        ident: u16,
        seq: u16,
        packet: &[u8],
    ) -> Result<(Waiter, Sent), SendError> {
        let token = Token {
            host,
            ident: (!self.kernel_ident()).then_some(ident),
            seq,
        };
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if w.contains_key(&token) {
                return Err(SendError::Collision);
            }
            w.insert(token, (id, tx));
        }
        let waiter = Waiter {
            sock: self.clone(),
            token,
            id,
            rx,
        };
        let to = SockAddr::from(SocketAddr::new(host, 0));
        loop {
            let sent = Sent {
                at: Instant::now(),
                rt: RealTime::now(),
            };
            match self.socket().send_to(packet, &to) {
                Ok(_) => return Ok((waiter, sent)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut guard = self.fd.writable().await.map_err(SendError::Io)?;
                    guard.clear_ready();
                }
                Err(e) => return Err(SendError::Io(e)),
            }
        }
    }

    /// Hand a received datagram to the probe waiting for it, if any.
    fn dispatch(&self, msg: &[u8], from: IpAddr, kernel_rx: Option<RealTime>) {
        let packet = match from {
            IpAddr::V4(src) => {
                Icmpv4Packet::decode(msg, self.kind, src, self.local_v4).map(IcmpPacket::V4)
            }
            IpAddr::V6(src) => Icmpv6Packet::decode(msg, src).map(IcmpPacket::V6),
        };
        // Not ours to judge: other processes' echo requests and junk on a raw socket.
        let Ok(packet) = packet else { return };
        let token = Token {
            // An error is sent by a router; the request went to the address it quotes.
            host: packet.real_destination(),
            ident: (!self.kernel_ident()).then(|| packet.get_identifier().0),
            seq: packet.get_sequence().0,
        };
        let waiter = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        if let Some((_, tx)) = waiter {
            let _ = tx.send(Reply { packet, kernel_rx });
        }
    }
}

/// A probe's registration for its reply.
pub(super) struct Waiter {
    sock: Arc<IcmpSocket>,
    token: Token,
    id: u64,
    rx: oneshot::Receiver<Reply>,
}

impl Waiter {
    /// The reply; `None` when the receive task is gone (its runtime shut down).
    pub async fn reply(&mut self) -> Option<Reply> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // Delivered replies were already taken out; a probe that gave up takes its entry out
        // unless a later probe already re-used the token (its sender is not ours: keep it).
        let mut w = self.sock.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if w.get(&self.token).is_some_and(|(id, _)| *id == self.id) {
            w.remove(&self.token);
        }
    }
}

/// The receive task: one per socket, for the life of the runtime.
async fn receive(sock: Arc<IcmpSocket>) {
    // Replies longer than this are cut; the headers that route them are at the front.
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok(mut guard) = sock.fd.readable().await else {
            return;
        };
        loop {
            match guard.try_io(|fd| kts::recv_timestamped(fd.as_raw_fd(), &mut buf)) {
                Ok(Ok(r)) => sock.dispatch(&buf[..r.len], r.from.ip(), r.kernel_rx),
                // A pending socket error (an ICMP error the kernel reports this way) is
                // consumed by reading it; carry on.
                Ok(Err(_)) => continue,
                Err(_would_block) => break,
            }
        }
    }
}

fn create(v6: bool) -> io::Result<(Type, Socket)> {
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let ping = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => return Ok((Type::DGRAM, s)),
        Err(e) => e,
    };
    match Socket::new(domain, Type::RAW, Some(proto)) {
        Ok(s) => Ok((Type::RAW, s)),
        Err(raw) => Err(io::Error::new(
            ping.kind(),
            format!("unprivileged ping socket: {ping}; raw socket: {raw}"),
        )),
    }
}
