//! Name resolution and connecting, shared by every probe that dials a host.
//!
//! Resolution goes through hickory-resolver with its cache turned off: a prober measures the
//! resolver every time, as blackbox_exporter does (Go's resolver does not cache either), so a
//! slow or broken DNS shows up in the `resolve` phase instead of hiding behind a warm cache.
//!
//! Address choice follows blackbox_exporter for `ip4`/`ip6`: take the first address of the
//! preferred family; if there is none and fallback is on, the first of the other family. `auto`
//! (sonde's default for scenario files) behaves like a browser or curl instead: every address,
//! IPv6 first, tried with Happy Eyeballs so a black-holed IPv6 path costs 250 ms, not the deadline.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::{Dur, Failure, FailureReason, Phase, Recorder};

/// Which IP family to use for a target that has both.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    /// Every address, IPv6 first, raced Happy-Eyeballs style.
    #[default]
    Auto,
    Ip4,
    Ip6,
}

/// blackbox's `preferred_ip_protocol` + `ip_protocol_fallback`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResolveOptions {
    pub preferred: IpProtocol,
    /// With `ip4`/`ip6`: use the other family when the preferred one has no address.
    pub fallback: bool,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            preferred: IpProtocol::Auto,
            fallback: true,
        }
    }
}

/// A shared, cheaply clonable resolver.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<TokioResolver>,
    /// "system" or the server list, for the event log.
    describe: Arc<str>,
    /// The servers of an explicit resolver, checked for a closed port ([`all_refuse`]).
    servers: Option<Arc<[SocketAddr]>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resolver({})", self.describe)
    }
}

fn prober_opts(mut opts: ResolverOpts) -> ResolverOpts {
    // No cache: each probe measures real resolution (see the module docs).
    opts.cache_size = 0;
    // The probe's own deadline bounds the lookup; the resolver must not retry past it on its own
    // schedule, but one retry inside the deadline helps with a lost UDP packet.
    opts.attempts = 1;
    opts
}

impl Resolver {
    /// The very same resolver (a clone of it), not merely one with the same servers.
    pub fn same(&self, other: &Resolver) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// What [`Self::same`] compares, for hashing.
    pub fn identity(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// The system's configuration (`/etc/resolv.conf`, `/etc/hosts`).
    pub fn system() -> Result<Self, String> {
        let mut b = TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?;
        let opts = prober_opts(b.options_mut().clone());
        *b.options_mut() = opts;
        let r = b
            .build()
            .map_err(|e| format!("cannot build the system resolver: {e}"))?;
        Ok(Resolver {
            inner: Arc::new(r),
            describe: "system".into(),
            servers: None,
        })
    }

    /// Ask these servers (UDP, then TCP on truncation) instead of the system's; `/etc/hosts` is
    /// still honoured.
    pub fn with_servers(servers: &[SocketAddr]) -> Result<Self, String> {
        if servers.is_empty() {
            return Err("a resolver needs at least one server".into());
        }
        let ns = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_parts(None, vec![], ns);
        let mut b = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *b.options_mut() = prober_opts(ResolverOpts::default());
        let r = b
            .build()
            .map_err(|e| format!("cannot build a resolver for {servers:?}: {e}"))?;
        let describe = servers
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        Ok(Resolver {
            inner: Arc::new(r),
            describe: describe.into(),
            servers: Some(servers.into()),
        })
    }

    /// Resolve `host` (a name, an IP literal, or a bracketed IPv6 literal) into the addresses to
    /// try, in order, recording the `resolve` phase. Fails with [`FailureReason::Dns`].
    pub async fn resolve(
        &self,
        host: &str,
        opts: ResolveOptions,
        rec: &mut Recorder,
    ) -> Result<Vec<IpAddr>, Failure> {
        let started = Instant::now();
        rec.doing("resolving the target name");
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            rec.timings.add_since(Phase::Resolve, started);
            return Ok(vec![ip]);
        }
        let lookups = async {
            match opts.preferred {
                IpProtocol::Auto => {
                    let (a, b) = tokio::join!(
                        self.lookup(bare, RecordType::AAAA),
                        self.lookup(bare, RecordType::A)
                    );
                    (a, b)
                }
                IpProtocol::Ip6 => {
                    let a = self.lookup(bare, RecordType::AAAA).await;
                    let b = match &a {
                        Ok(v) if !v.is_empty() => Ok(vec![]),
                        _ if opts.fallback => self.lookup(bare, RecordType::A).await,
                        _ => Ok(vec![]),
                    };
                    (a, b)
                }
                IpProtocol::Ip4 => {
                    let b = self.lookup(bare, RecordType::A).await;
                    let a = match &b {
                        Ok(v) if !v.is_empty() => Ok(vec![]),
                        _ if opts.fallback => self.lookup(bare, RecordType::AAAA).await,
                        _ => Ok(vec![]),
                    };
                    (a, b)
                }
            }
        };
        let (v6, v4) = match self.servers.as_deref() {
            None => lookups.await,
            Some(servers) => tokio::select! {
                r = lookups => r,
                why = all_refuse(servers) => {
                    rec.timings.add_since(Phase::Resolve, started);
                    return Err(Failure::new(
                        FailureReason::Connect,
                        format!(
                            "cannot resolve {bare}: no DNS server answering on udp {}: {why}",
                            self.describe
                        ),
                    ));
                }
            },
        };
        rec.timings.add_since(Phase::Resolve, started);
        let err = match (&v6, &v4) {
            (Err(e), _) | (_, Err(e)) => Some(e.clone()),
            _ => None,
        };
        let v6 = v6.unwrap_or_default();
        let v4 = v4.unwrap_or_default();
        let chosen: Vec<IpAddr> = match opts.preferred {
            IpProtocol::Auto => interleave(&v6, &v4),
            IpProtocol::Ip6 => v6.first().or(v4.first()).copied().into_iter().collect(),
            IpProtocol::Ip4 => v4.first().or(v6.first()).copied().into_iter().collect(),
        };
        if chosen.is_empty() {
            let wanted = match (opts.preferred, opts.fallback) {
                (IpProtocol::Ip4, false) => "IPv4 ",
                (IpProtocol::Ip6, false) => "IPv6 ",
                _ => "",
            };
            let why = err.unwrap_or_else(|| "no records".into());
            return Err(Failure::new(
                FailureReason::Dns,
                format!(
                    "cannot resolve {bare} to an {wanted}address via {} resolver: {why}",
                    self.describe
                ),
            ));
        }
        rec.event(format!(
            "resolved {bare} to {} in {}",
            chosen
                .iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Dur(started.elapsed())
        ));
        Ok(chosen)
    }

    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Vec<IpAddr>, String> {
        match self.inner.lookup(name, rtype).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect()),
            // NXDOMAIN is also "no records" to hickory, but it means the name does not exist at
            // all, which is what the person reading the failure needs to know.
            Err(e) if e.is_nx_domain() => Err("NXDOMAIN (the name does not exist)".into()),
            Err(e) if e.is_no_records_found() => Ok(vec![]),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Completes only when every server refuses: nothing listens on its UDP port. hickory asks from
/// unconnected UDP sockets, which never see the ICMP port-unreachable a closed port answers
/// with, so a closed resolver port would look like a silent resolver and cost the whole
/// deadline, where the `dns` probe (connected socket) fails at once with `connect`: one cause,
/// one reason. An empty datagram from a connected socket draws the same ICMP error (and is
/// ignored by a DNS server that is there); a server that answers or stays silent keeps this
/// pending, and the lookup decides.
async fn all_refuse(servers: &[SocketAddr]) -> String {
    let mut checks = tokio::task::JoinSet::new();
    for &s in servers {
        checks.spawn(refused(s));
    }
    let mut why = String::new();
    while let Some(r) = checks.join_next().await {
        match r {
            Ok(Some(e)) => why = e,
            _ => return std::future::pending().await,
        }
    }
    why
}

/// `Some(error)` when `server` refuses UDP; pending otherwise.
async fn refused(server: SocketAddr) -> Option<String> {
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
    sock.connect(server).await.ok()?;
    sock.send(&[]).await.ok()?;
    let mut buf = [0u8; 512];
    match sock.recv(&mut buf).await {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(e.to_string()),
        // An answer (a server that replies even to this) or another error: not a refusal.
        _ => std::future::pending().await,
    }
}

/// IPv6 first, alternating families (RFC 8305 §4).
fn interleave(v6: &[IpAddr], v4: &[IpAddr]) -> Vec<IpAddr> {
    let mut out = Vec::with_capacity(v6.len() + v4.len());
    let n = v6.len().max(v4.len());
    for i in 0..n {
        out.extend(v6.get(i));
        out.extend(v4.get(i));
    }
    out
}

/// How long Happy Eyeballs waits for one attempt before starting the next (RFC 8305 §5).
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Connect to `port` on the first of `addrs` that answers, starting the next attempt when the
/// previous one has not connected within [`CONNECTION_ATTEMPT_DELAY`] or has failed. Records the
/// `connect` phase and the chosen address. Fails with [`FailureReason::Connect`]; the caller's
/// deadline bounds the whole thing.
pub async fn connect_tcp(
    addrs: &[IpAddr],
    port: u16,
    rec: &mut Recorder,
) -> Result<TcpStream, Failure> {
    let started = Instant::now();
    rec.doing("connecting");
    let targets: Vec<SocketAddr> = addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    // One address (a literal, or a name with one address of the family): no race to run, so no
    // task to spawn and join — on this path of every probe that was a cost of its own.
    if let [t] = targets[..] {
        return match crate::kts::connect(t).await {
            Ok((stream, kernel)) => Ok(connected(stream, t, started, kernel, rec)),
            Err(e) => Err(none_connected(
                &targets,
                &[format!("{t}: {e}")],
                started,
                rec,
            )),
        };
    }
    let mut attempts = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let mut errors: Vec<String> = Vec::new();
    loop {
        if next < targets.len() {
            let t = targets[next];
            next += 1;
            attempts.spawn(async move { (t, crate::kts::connect(t).await) });
        }
        let more_to_start = next < targets.len();
        let res = if more_to_start {
            match tokio::time::timeout(CONNECTION_ATTEMPT_DELAY, attempts.join_next()).await {
                Ok(r) => r,
                Err(_) => continue, // start the next attempt beside this one
            }
        } else {
            attempts.join_next().await
        };
        match res {
            Some(Ok((addr, Ok((stream, kernel))))) => {
                attempts.abort_all();
                // `connected` runs here, in the probe's task, not in the attempt's: it reads
                // the probe's scope (`without_local_ports`).
                // The kernel's handshake sample covers this connection only: with earlier
                // attempts in the phase it would leave their time out.
                let kernel = match next {
                    1 => kernel,
                    _ => Err("more than one address was tried".into()),
                };
                return Ok(connected(stream, addr, started, kernel, rec));
            }
            Some(Ok((addr, Err(e)))) => errors.push(format!("{addr}: {e}")),
            Some(Err(e)) => errors.push(format!("connect task failed: {e}")),
            None => return Err(none_connected(&targets, &errors, started, rec)),
        }
    }
}

tokio::task_local! {
    /// Whether a connection's event names its local port; unset, it does.
    static LOCAL_PORTS: bool;
}

/// Run `probe` with no local port in its connection events. Naming it is a system call per
/// connection (`getsockname`, about 1 % of an http `/probe`'s CPU) that only someone matching a
/// trace to a packet capture needs: `/probe` names it only in the debug output it is asked for.
/// [`connected`] reads this in the probe's own task, after any race of attempts (which run in
/// tasks of their own) is joined, so a scope around the probe's future covers every
/// connection it makes.
pub async fn without_local_ports<F: std::future::Future>(probe: F) -> F::Output {
    LOCAL_PORTS.scope(false, probe).await
}

fn local_ports_named() -> bool {
    LOCAL_PORTS.try_with(|named| *named).unwrap_or(true)
}

/// The connection made: the `connect` phase (the kernel's figure beside the user-space one, or
/// why there is none), the address, and the event that names both ends.
fn connected(
    stream: TcpStream,
    addr: SocketAddr,
    started: Instant,
    kernel: Result<Duration, String>,
    rec: &mut Recorder,
) -> TcpStream {
    let user = started.elapsed();
    let _ = stream.set_nodelay(true);
    rec.timings
        .add_measured(Phase::Connect, user, kernel.as_ref().ok().copied());
    rec.remote_addr = Some(addr);
    // The local port ties this probe to its packets in a capture (bench/truth.sh).
    let local = match local_ports_named() {
        true => stream
            .local_addr()
            .map(|a| format!(" from port {}", a.port()))
            .unwrap_or_default(),
        false => String::new(),
    };
    rec.event(format!(
        "connected to {addr}{local} in {}: {}",
        Dur(kernel.as_ref().map_or(user, |k| *k.min(&user))),
        crate::kts::describe(user, &kernel)
    ));
    stream
}

/// Every attempt failed (or there was none): the `connect` phase, the last address tried.
fn none_connected(
    targets: &[SocketAddr],
    errors: &[String],
    started: Instant,
    rec: &mut Recorder,
) -> Failure {
    rec.timings.add_since(Phase::Connect, started);
    if let Some(t) = targets.last() {
        rec.remote_addr = Some(*t);
    }
    Failure::new(
        FailureReason::Connect,
        if errors.is_empty() {
            "no address to connect to".to_string()
        } else {
            format!("cannot connect: {}", errors.join("; "))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_addresses_skip_dns() {
        let r = Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap();
        let mut rec = Recorder::new();
        let ips = r
            .resolve("[::1]", ResolveOptions::default(), &mut rec)
            .await
            .unwrap();
        assert_eq!(ips, vec!["::1".parse::<IpAddr>().unwrap()]);
        let ips = r
            .resolve("127.0.0.1", ResolveOptions::default(), &mut rec)
            .await
            .unwrap();
        assert_eq!(ips, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(rec.timings.contains(Phase::Resolve));
    }

    #[test]
    fn interleaves_v6_first() {
        let v6: Vec<IpAddr> = vec!["::1".parse().unwrap(), "::2".parse().unwrap()];
        let v4: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        let out = interleave(&v6, &v4);
        assert_eq!(out, vec![v6[0], v4[0], v6[1]]);
    }

    #[tokio::test]
    async fn connect_falls_through_to_a_listening_address() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        // 127.0.0.2 has nothing on that port (refused at once), 127.0.0.1 listens.
        let addrs: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let mut rec = Recorder::new();
        let s = connect_tcp(&addrs, port, &mut rec).await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), l.local_addr().unwrap());
        assert_eq!(rec.remote_addr, Some(l.local_addr().unwrap()));
    }

    /// Both ways to connect: one address, and the race of several (127.0.0.2 refuses at once)
    /// whose attempts run in tasks of their own while the event is written in the probe's.
    #[tokio::test]
    async fn the_local_port_is_named_unless_the_probe_runs_without() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let one: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        let race: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        for addrs in [one, race] {
            let mut named = Recorder::new();
            let s = connect_tcp(&addrs, port, &mut named).await.unwrap();
            let local = format!(" from port {} ", s.local_addr().unwrap().port());
            let msg = &named.events.last().unwrap().message;
            assert!(msg.contains(&local), "{msg}");
            let mut plain = Recorder::new();
            without_local_ports(connect_tcp(&addrs, port, &mut plain))
                .await
                .unwrap();
            let msg = &plain.events.last().unwrap().message;
            assert!(
                msg.starts_with("connected to 127.0.0.1:") && !msg.contains("from port"),
                "{msg}"
            );
        }
    }

    #[tokio::test]
    async fn connect_refused_names_every_address() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut rec = Recorder::new();
        let f = connect_tcp(&["127.0.0.1".parse().unwrap()], port, &mut rec)
            .await
            .unwrap_err();
        assert_eq!(f.reason, FailureReason::Connect);
        assert!(f.message.contains("127.0.0.1"), "{}", f.message);
    }
}
