//! ICMP probe: one echo request to an IPv4 or IPv6 address (sonde's own socket handling in
//! [`socket`], surge-ping's packet decoding).
//!
//! Sockets: an unprivileged ICMP "ping" socket (`SOCK_DGRAM`, allowed on Linux to the groups in
//! `net.ipv4.ping_group_range`, which also governs ICMPv6) is tried first, then a raw socket
//! (root or `CAP_NET_RAW`), as surge-ping does. When neither is allowed the probe fails
//! with reason `connect` and a message that says what to change ([`permission_error_message`]);
//! [`permission_check`] asks the same question up front, so the built-in default configuration
//! only includes an ICMP check where one can work.
//!
//! Probes with the same socket options share one socket and its receive task (per tokio runtime),
//! told apart by sequence number: see [`SocketKey`] for why and how.
//!
//! Phases are blackbox's: `resolve`, `setup` (finding the shared socket, creating it and setting
//! its options the first time), `rtt` (echo request sent until the echo reply arrived). On Linux
//! `rtt` is the kernel's receive timestamp of the reply minus the clock read just before
//! `sendto` ([`crate::kts`]), so the time the probe's task waited to run after the reply arrived
//! is not in it; the trace gives the user-space figure beside it. Elsewhere, or when the kernel
//! refuses timestamps, `rtt` is the user-space figure and the trace says why.
//!
//! Options:
//! - `ttl` sets the IPv4 TTL / IPv6 unicast hop limit of the request;
//! - `dont_fragment` (IPv4) sets `IP_MTU_DISCOVER = IP_PMTUDISC_DO` on the socket, as blackbox
//!   does for its unprivileged sockets: the kernel then sends with DF set and refuses
//!   (`EMSGSIZE`, reported as a `connect` failure) a request larger than the path MTU. Linux only; elsewhere the
//!   probe fails with a message saying so. IPv6 routers never fragment, so it is ignored there;
//! - `source` binds the socket to that local address.
//!
//! Replies: a reply is routed to this probe by (address, identifier, sequence) — the
//! identifier only on a raw socket, a ping socket's being the kernel's — so echo replies to other
//! pings — other probes, other processes on a raw socket — are ignored. An ICMP error quoting our
//! request (destination unreachable, time exceeded) fails the probe with reason `connect`, naming
//! the ICMP type and code. No reply by the deadline: `timeout`.
//!
//! Reply hop limit: surge-ping reads the TTL from the IPv4 header, which only a raw socket
//! receives; with an unprivileged socket, and for IPv6 (whose header the kernel strips), it is not
//! available and [`IcmpFacts::reply_hop_limit`] stays `None`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use surge_ping::IcmpPacket;
use tokio::time::Instant;

use socket::{IcmpSocket, SendError};

use crate::kts::{self, RealTime};
use crate::resolve::{ResolveOptions, Resolver};
use crate::{fmt_duration, with_deadline, Failure, FailureReason, Outcome, Phase, Recorder};

mod socket;

#[derive(Clone, Debug)]
pub struct IcmpRequest {
    pub host: String,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    /// Bytes of payload after the ICMP header. 0 sends the default payload
    /// ([`DEFAULT_PAYLOAD`]), as blackbox does for an unset `payload_size`.
    pub payload_size: usize,
    /// IPv4 TTL / IPv6 hop limit of the request.
    pub ttl: Option<u32>,
    /// IPv4 only: set the don't-fragment bit.
    pub dont_fragment: bool,
    pub source: Option<IpAddr>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IcmpFacts {
    #[serde(serialize_with = "crate::ser_opt_secs")]
    pub rtt: Option<Duration>,
    /// TTL / hop limit of the reply, when the socket reports it (IPv4 over a raw socket only; see
    /// the module docs).
    pub reply_hop_limit: Option<u8>,
}

pub type IcmpOutcome = Outcome<IcmpFacts>;

/// The payload when `payload_size` is 0; a larger payload starts with it.
pub const DEFAULT_PAYLOAD: &[u8] = b"sonde synthetic probe echo";

/// Largest payload of one echo request (65535 − 20-byte IPv4 header − 8-byte ICMP header).
pub const MAX_PAYLOAD: usize = 65_507;

/// Run the probe under `deadline`.
pub async fn probe(req: &IcmpRequest, deadline: Instant) -> IcmpOutcome {
    let mut rec = Recorder::new();
    let mut facts = IcmpFacts::default();
    let res = with_deadline(&mut rec, deadline, async |rec: &mut Recorder| {
        run(req, rec, &mut facts).await
    })
    .await;
    rec.finish(res.err(), facts)
}

async fn run(req: &IcmpRequest, rec: &mut Recorder, facts: &mut IcmpFacts) -> Result<(), Failure> {
    check_payload_size(req)?;
    let addrs = req.resolver.resolve(&req.host, req.ip, rec).await?;
    // blackbox pings one address: the first of the preferred family.
    let ip = addrs[0];
    rec.remote_addr = Some(SocketAddr::new(ip, 0));

    let setup = Instant::now();
    rec.doing("setting up the ICMP socket");
    let shared = shared_socket(ip, req)?;
    rec.timings.add_since(Phase::Setup, setup);

    // Only a raw socket puts our identifier on the wire (a ping socket's is the kernel's, one per
    // socket); the sequence number is what tells apart the probes sharing one socket.
    let ident = random_u16();
    rec.doing("waiting for the echo reply");
    let seq = shared.next_sequence();
    let packet = echo_request(ip.is_ipv6(), ident, seq, req.payload_size);
    announce(
        req,
        ip,
        &shared,
        ident,
        seq,
        packet.len() - ECHO_HEADER,
        rec,
    );
    let (mut waiter, sent) = send_echo(&shared, ip, ident, seq, packet, rec).await?;
    let reply = waiter.reply().await.ok_or_else(|| {
        Failure::new(
            FailureReason::Connect,
            format!("echo request to {ip} failed: the ICMP socket's receive task is gone"),
        )
    })?;
    let user = sent.at.elapsed();
    let kernel = kernel_rtt(&shared.sock.timestamps, sent.rt, reply.kernel_rx);
    let packet = reply.packet;
    let hop_limit = echo_reply_hop_limit(ip, &packet)?;
    rec.timings.add_measured(Phase::Rtt, user, kernel.ok());
    let rtt = rec.timings.get(Phase::Rtt);
    facts.rtt = Some(rtt);
    facts.reply_hop_limit = hop_limit;
    rec.event(format!(
        "echo reply from {ip} in {}: seq {}{}; rtt {}",
        fmt_duration(rtt),
        packet.get_sequence().0,
        hop_limit.map(|h| format!(", ttl {h}")).unwrap_or_default(),
        kts::describe(user, &kernel)
    ));
    Ok(())
}

/// A payload no echo request can carry is the scenario's mistake, said before any traffic.
fn check_payload_size(req: &IcmpRequest) -> Result<(), Failure> {
    if req.payload_size > MAX_PAYLOAD {
        return Err(Failure::new(
            FailureReason::Protocol,
            format!(
                "payload_size {} is larger than an echo request can carry ({MAX_PAYLOAD} bytes)",
                req.payload_size
            ),
        ));
    }
    Ok(())
}

/// The event that says what goes on the wire, so a trace shows the request as sent.
fn announce(
    req: &IcmpRequest,
    ip: IpAddr,
    shared: &SharedSocket,
    ident: u16,
    seq: u16,
    payload_len: usize,
    rec: &mut Recorder,
) {
    let kind = match shared.sock.kind() {
        t if t == socket2::Type::RAW => "raw",
        _ => "unprivileged",
    };
    rec.event(format!(
        "sending an echo request to {ip} over a {kind} ICMP socket: {} payload byte(s), seq {}{}{}{}",
        payload_len,
        seq,
        // On the wire only from a raw socket (a ping socket's is the kernel's).
        if kind == "raw" {
            format!(", id {ident}")
        } else {
            String::new()
        },
        req.ttl.map(|t| format!(", ttl {t}")).unwrap_or_default(),
        if req.dont_fragment && ip.is_ipv4() {
            ", don't fragment"
        } else {
            ""
        }
    ));
}

/// Send `packet`, moving to the next sequence number while the shared socket still awaits a
/// reply for this one (after 65,536 sequence numbers the counter comes back round).
async fn send_echo(
    shared: &SharedSocket,
    ip: IpAddr,
    ident: u16,
    mut seq: u16,
    mut packet: Vec<u8>,
    rec: &mut Recorder,
) -> Result<(socket::Waiter, socket::Sent), Failure> {
    let mut collisions = 0;
    loop {
        match shared.sock.send(ip, ident, seq, &packet).await {
            // Refused before sending: after 65,536 sequence numbers the counter came back to one
            // a probe to the same address is still waiting on. Take the next one.
            Err(SendError::Collision) if collisions < MAX_SEQUENCE_COLLISIONS => {
                collisions += 1;
                let next = shared.next_sequence();
                rec.event(format!(
                    "seq {seq} is still awaited by another probe to {ip}; using seq {next} instead"
                ));
                seq = next;
                set_sequence(&mut packet, ip.is_ipv6(), seq);
            }
            Ok(w) => return Ok(w),
            Err(SendError::Collision) => {
                return Err(Failure::new(
                    FailureReason::Connect,
                    format!("echo request to {ip} failed: {MAX_SEQUENCE_COLLISIONS} sequence numbers in a row are awaited by other probes"),
                ))
            }
            Err(SendError::Io(e)) => {
                return Err(Failure::new(
                    FailureReason::Connect,
                    format!("sending the echo request to {ip} failed: {e}"),
                ))
            }
        }
    }
}

/// The answer must be an echo reply; anything else (unreachable, time exceeded…) is the
/// failure, named. Returns the reply's TTL where the socket reports it (IPv4).
fn echo_reply_hop_limit(ip: IpAddr, packet: &IcmpPacket) -> Result<Option<u8>, Failure> {
    let (icmp_type, code, is_reply, hop_limit) = match packet {
        IcmpPacket::V4(p) => (
            p.get_icmp_type().0,
            p.get_icmp_code().0,
            p.get_icmp_type().0 == 0,
            p.get_ttl(),
        ),
        IcmpPacket::V6(p) => (
            p.get_icmpv6_type().0,
            p.get_icmpv6_code().0,
            p.get_icmpv6_type().0 == 129,
            None,
        ),
    };
    if !is_reply {
        return Err(Failure::new(
            FailureReason::Connect,
            format!(
                "{ip} did not answer: got {} instead of an echo reply",
                describe_icmp_error(ip.is_ipv4(), icmp_type, code)
            ),
        ));
    }
    Ok(hop_limit)
}

/// The kernel's RTT: the reply's receive timestamp minus the clock read just before `sendto`.
/// Or why there is none — the trace then labels the phase user space.
fn kernel_rtt(
    timestamps: &Result<(), String>,
    sent: RealTime,
    received: Option<RealTime>,
) -> Result<std::time::Duration, &str> {
    match (timestamps, received) {
        (Err(why), _) => Err(why),
        (Ok(()), None) => Err("the kernel gave the reply no timestamp"),
        (Ok(()), Some(rx)) => rx
            .since(sent)
            .ok_or("the clock was stepped back between request and reply"),
    }
}

/// Type, code, checksum, identifier, sequence.
const ECHO_HEADER: usize = 8;

/// An echo request: the header, then `size` payload bytes (0: [`DEFAULT_PAYLOAD`]) starting with
/// [`DEFAULT_PAYLOAD`]. The ICMPv4 checksum is filled in (a raw socket sends it as is; a ping
/// socket recomputes it); the kernel computes ICMPv6's.
fn echo_request(v6: bool, ident: u16, seq: u16, size: usize) -> Vec<u8> {
    let size = if size == 0 {
        DEFAULT_PAYLOAD.len()
    } else {
        size
    };
    let mut p = vec![0u8; ECHO_HEADER + size];
    p[0] = if v6 { 128 } else { 8 };
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    let n = size.min(DEFAULT_PAYLOAD.len());
    p[ECHO_HEADER..ECHO_HEADER + n].copy_from_slice(&DEFAULT_PAYLOAD[..n]);
    set_sequence(&mut p, v6, seq);
    p
}

/// Put `seq` in an echo request and update its checksum.
fn set_sequence(p: &mut [u8], v6: bool, seq: u16) {
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    if !v6 {
        p[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum(p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u32) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn random_u16() -> u16 {
    let rng = ring::rand::SystemRandom::new();
    match ring::rand::generate::<[u8; 2]>(&rng) {
        Ok(b) => u16::from_be_bytes(b.expose()),
        // The OS random source failing is not worth failing a ping for.
        Err(_) => {
            (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
                & 0xffff) as u16
        }
    }
}

/// Probes that would open the same kind of socket share one, with its one receive task. A socket per probe made every probe pay for socket creation and a task,
/// and — worse — every raw ICMP socket receives a copy of every ICMP packet the host gets, so N
/// probes in flight meant N² packets to decode. Probes on a shared socket differ by sequence
/// number ([`SharedSocket::next_sequence`]), which is what replies are routed by.
///
/// Everything that is set per socket is in the key: the family, the request TTL, don't-fragment
/// and the source address (the socket kind, ping or raw, is whatever this process may open). So is
/// the tokio runtime: the socket is registered with that runtime's I/O driver and the receive
/// task runs on it, so it is useless to any other runtime (each `#[tokio::test]` has its own)
/// and dead once that runtime is gone. Runtime ids are only unique among running runtimes, so an
/// entry also carries a flag its runtime clears on shutdown ([`RuntimeAlive`]); entries of dead
/// runtimes are replaced and swept out. Sockets of a live runtime stay open for its life: one per
/// distinct set of options in the configuration.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct SocketKey {
    runtime: tokio::runtime::Id,
    v6: bool,
    ttl: Option<u32>,
    dont_fragment: bool,
    source: Option<IpAddr>,
}

struct SharedSocket {
    sock: Arc<IcmpSocket>,
    runtime_alive: Arc<AtomicBool>,
    next_seq: AtomicU16,
}

impl SharedSocket {
    /// The next sequence number on this socket. Probes in flight on one socket to one address
    /// thus differ (up to 65,536 of them; past that `run` takes the next free one).
    fn next_sequence(&self) -> u16 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    fn usable(&self) -> bool {
        self.runtime_alive.load(Ordering::Acquire)
    }
}

/// Held by a task that never finishes: the runtime drops it, clearing the flag, when it shuts
/// down (and with it the sockets' receive tasks).
struct RuntimeAlive(Arc<AtomicBool>);

impl Drop for RuntimeAlive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// How many sequence numbers a probe tries when the one it drew is still awaited.
const MAX_SEQUENCE_COLLISIONS: u32 = 16;

/// Receive buffer asked for on a shared socket (the kernel caps it at `net.core.rmem_max`):
/// replies to hundreds of probes in flight can arrive in one burst, before the receive task runs.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

fn sockets() -> &'static Mutex<HashMap<SocketKey, Arc<SharedSocket>>> {
    static S: OnceLock<Mutex<HashMap<SocketKey, Arc<SharedSocket>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// The shared socket for a probe to `ip` with `req`'s options, opened on first use.
fn shared_socket(ip: IpAddr, req: &IcmpRequest) -> Result<Arc<SharedSocket>, Failure> {
    if let Some(src) = req.source {
        if src.is_ipv4() != ip.is_ipv4() {
            return Err(Failure::new(
                FailureReason::Connect,
                format!("source address {src} and target {ip} are of different IP families"),
            ));
        }
    }
    let key = SocketKey {
        runtime: tokio::runtime::Handle::current().id(),
        v6: ip.is_ipv6(),
        ttl: req.ttl,
        // Ignored for IPv6 (see the module docs), so not a reason for another socket.
        dont_fragment: req.dont_fragment && ip.is_ipv4(),
        source: req.source,
    };
    // Nothing in here panics, but a poisoned map is still a correct map.
    let mut map = sockets().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = map.get(&key) {
        if s.usable() {
            return Ok(s.clone());
        }
    }
    map.retain(|_, s| s.usable());
    let sock = open_socket(ip, req)?;
    let alive = Arc::new(AtomicBool::new(true));
    let guard = RuntimeAlive(alive.clone());
    tokio::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await
    });
    let shared = Arc::new(SharedSocket {
        sock,
        runtime_alive: alive,
        next_seq: AtomicU16::new(random_u16()),
    });
    map.insert(key, shared.clone());
    Ok(shared)
}

fn open_socket(ip: IpAddr, req: &IcmpRequest) -> Result<Arc<IcmpSocket>, Failure> {
    let df_failed = std::cell::Cell::new(false);
    let configure = |s: &socket2::Socket| -> std::io::Result<()> {
        if let Some(ttl) = req.ttl {
            if ip.is_ipv4() {
                s.set_ttl_v4(ttl)?;
            } else {
                s.set_unicast_hops_v6(ttl)?;
            }
        }
        // Best effort: the default buffer only means drops in a burst, as before.
        let _ = set_int_sockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            RECEIVE_BUFFER,
        );
        if req.dont_fragment && ip.is_ipv4() {
            set_dont_fragment(s.as_raw_fd()).inspect_err(|_| df_failed.set(true))?;
        }
        Ok(())
    };
    IcmpSocket::open(ip.is_ipv6(), req.source, configure).map_err(|e| {
        if df_failed.get() {
            Failure::new(
                FailureReason::Connect,
                format!("cannot set don't-fragment on the ICMP socket: {e}"),
            )
        } else if e.kind() == std::io::ErrorKind::PermissionDenied {
            Failure::new(
                FailureReason::Connect,
                permission_error_message(&e.to_string(), &Environment::current()),
            )
        } else {
            Failure::new(
                FailureReason::Connect,
                format!("cannot open an ICMP socket for {ip}: {e}"),
            )
        }
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_dont_fragment(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    set_pmtudisc_do(fd)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_dont_fragment(_fd: std::os::fd::RawFd) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "dont_fragment is only supported on Linux",
    ))
}

/// `IP_MTU_DISCOVER = IP_PMTUDISC_DO`: DF on every datagram, no local fragmentation.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_pmtudisc_do(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    set_int_sockopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DO,
    )
}

#[cfg(unix)]
fn set_int_sockopt(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: `fd` is an open socket owned by a value the caller holds for the whole call; the
    // option value is a live c_int whose exact size is passed along.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// ICMP error types for messages.
fn describe_icmp_error(v4: bool, t: u8, code: u8) -> String {
    let name = match (v4, t) {
        (true, 3) => "destination unreachable",
        (true, 11) => "time exceeded",
        (true, 12) => "parameter problem",
        (true, 5) => "redirect",
        (false, 1) => "destination unreachable",
        (false, 2) => "packet too big",
        (false, 3) => "time exceeded",
        (false, 4) => "parameter problem",
        _ => "an unexpected ICMP message",
    };
    format!("{name} (type {t}, code {code})")
}

/// What the permission message is built from, gathered from the running process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// The executable, for the `setcap` command.
    pub exe: String,
    /// The effective group id, when known.
    pub gid: Option<u32>,
    /// The current `net.ipv4.ping_group_range`, when readable.
    pub ping_group_range: Option<(u32, u32)>,
}

impl Environment {
    pub fn current() -> Self {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "/path/to/sonde".into());
        let gid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Gid:"))
                    .and_then(|l| l.split_whitespace().nth(2))
                    .and_then(|g| g.parse().ok())
            });
        let ping_group_range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|x| x.parse::<u32>().ok());
                Some((it.next()??, it.next()??))
            });
        Environment {
            exe,
            gid,
            ping_group_range,
        }
    }
}

/// The message for a probe (or a startup check) that may not open ICMP sockets: what failed and
/// the three ways to allow it. `net.ipv4.ping_group_range` governs ICMPv6 ping sockets as well.
pub fn permission_error_message(detail: &str, env: &Environment) -> String {
    let mut msg = format!(
        "no permission for ICMP sockets ({detail}): run as root, grant CAP_NET_RAW \
         (setcap cap_net_raw+ep {}), or allow this group: \
         sysctl -w net.ipv4.ping_group_range='0 2147483647'",
        env.exe
    );
    if let Some((lo, hi)) = env.ping_group_range {
        msg.push_str(&format!(" (it is now '{lo} {hi}'"));
        if let Some(g) = env.gid {
            if g < lo || g > hi {
                msg.push_str(&format!(", which excludes group {g}"));
            }
        }
        msg.push(')');
    }
    msg
}

/// Whether this process may send ICMP echo requests (an unprivileged ping socket or a raw
/// socket can be opened), and if not, the message saying what to change. Cheap; no packet is
/// sent. Used at startup to decide whether the built-in default configuration includes an ICMP
/// check.
pub fn permission_check() -> Result<(), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let dgram = match Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let raw = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    Err(permission_error_message(
        &format!("unprivileged ping socket: {dgram}; raw socket: {raw}"),
        &Environment::current(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_message_says_what_to_change() {
        let env = Environment {
            exe: "/usr/local/bin/sonde".into(),
            gid: Some(1000),
            ping_group_range: Some((1, 0)),
        };
        let m = permission_error_message("Permission denied (os error 13)", &env);
        assert_eq!(
            m,
            "no permission for ICMP sockets (Permission denied (os error 13)): run as root, \
             grant CAP_NET_RAW (setcap cap_net_raw+ep /usr/local/bin/sonde), or allow this \
             group: sysctl -w net.ipv4.ping_group_range='0 2147483647' (it is now '1 0', which \
             excludes group 1000)"
        );
        // A range that already holds the group is not called excluding.
        let env = Environment {
            gid: Some(5),
            ping_group_range: Some((0, 10)),
            ..env
        };
        let m = permission_error_message("x", &env);
        assert!(m.ends_with("(it is now '0 10')"), "{m}");
        let env = Environment {
            ping_group_range: None,
            ..env
        };
        assert!(permission_error_message("x", &env).ends_with("'0 2147483647'"));
    }

    #[test]
    fn payload_sizes() {
        let payload = |n| echo_request(false, 7, 9, n)[ECHO_HEADER..].to_vec();
        assert_eq!(payload(0), DEFAULT_PAYLOAD);
        assert_eq!(payload(4), b"sond");
        let p = payload(100);
        assert_eq!(p.len(), 100);
        assert!(p.starts_with(DEFAULT_PAYLOAD));
    }

    #[test]
    fn kernel_rtt_or_why_not() {
        let t = |s, n| RealTime::from_timespec(s, n).unwrap();
        let on: Result<(), String> = Ok(());
        assert_eq!(
            kernel_rtt(&on, t(10, 0), Some(t(10, 250_000))),
            Ok(std::time::Duration::from_micros(250))
        );
        // The kernel refused the option when the socket was opened: labelled, no figure.
        let refused: Result<(), String> = Err("the kernel refused SO_TIMESTAMPNS: EINVAL".into());
        assert_eq!(
            kernel_rtt(&refused, t(10, 0), Some(t(10, 1))),
            Err("the kernel refused SO_TIMESTAMPNS: EINVAL")
        );
        assert_eq!(
            kernel_rtt(&on, t(10, 0), None),
            Err("the kernel gave the reply no timestamp")
        );
        assert!(kernel_rtt(&on, t(10, 5), Some(t(10, 1)))
            .unwrap_err()
            .contains("stepped back"));
    }

    #[test]
    fn echo_requests_are_well_formed() {
        let p = echo_request(false, 0x1234, 0xabcd, 3);
        assert_eq!(&p[..2], &[8, 0]);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0xab, 0xcd]);
        // A correct checksum sums (with itself) to zero; still so after a new sequence.
        assert_eq!(checksum(&p), 0);
        let mut p = echo_request(false, 1, 2, 101);
        set_sequence(&mut p, false, 3);
        assert_eq!(checksum(&p), 0);
        assert_eq!(&p[6..8], &[0, 3]);
        assert_eq!(echo_request(true, 1, 2, 0)[0], 128);
    }

    #[test]
    fn icmp_errors_are_named() {
        assert_eq!(
            describe_icmp_error(true, 3, 1),
            "destination unreachable (type 3, code 1)"
        );
        assert_eq!(
            describe_icmp_error(false, 3, 0),
            "time exceeded (type 3, code 0)"
        );
    }

    /// One socket per set of per-socket options (in one runtime), not one per probe.
    #[tokio::test]
    async fn probes_with_the_same_options_share_a_socket() {
        if let Err(why) = permission_check() {
            eprintln!("SKIPPED: probes_with_the_same_options_share_a_socket: {why}");
            return;
        }
        let req = |ttl, dont_fragment| IcmpRequest {
            host: "127.0.0.1".into(),
            resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
            ip: ResolveOptions::default(),
            payload_size: 0,
            ttl,
            dont_fragment,
            source: None,
        };
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let a = shared_socket(v4, &req(None, false)).unwrap();
        let b = shared_socket("127.0.0.2".parse().unwrap(), &req(None, false)).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "same options, another socket");
        let ttl = shared_socket(v4, &req(Some(3), false)).unwrap();
        assert!(!Arc::ptr_eq(&a, &ttl), "a TTL is set per socket");
        let df = shared_socket(v4, &req(None, true)).unwrap();
        assert!(!Arc::ptr_eq(&a, &df), "don't-fragment is set per socket");
        // Successive probes on one socket draw successive sequence numbers.
        let (s1, s2) = (a.next_sequence(), a.next_sequence());
        assert_eq!(s2, s1.wrapping_add(1));
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn dont_fragment_sets_pmtudisc_do() {
        use std::os::fd::AsRawFd;
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_pmtudisc_do(s.as_raw_fd()).unwrap();
        let mut val: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid socket, valid out-pointers sized as passed.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&mut val as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(val, libc::IP_PMTUDISC_DO);
    }
}
