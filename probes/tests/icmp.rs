//! The icmp probe against loopback (127.0.0.1 and ::1). ICMP needs a permission this process may
//! not have; such tests then print a `SKIPPED:` line saying why instead of passing silently.

use std::net::IpAddr;
use std::time::Duration;

use sonde_probes::icmp::{permission_check, probe, IcmpOutcome, IcmpRequest, MAX_PAYLOAD};
use sonde_probes::{FailureReason, IpProtocol, Phase, ResolveOptions, Resolver};
use sonde_testkit::dns::{DnsServer, Zone};
use tokio::time::Instant;

fn request(host: &str) -> IcmpRequest {
    IcmpRequest {
        host: host.into(),
        // Hosts are IP literals unless a test brings the DNS fixture.
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        payload_size: 0,
        ttl: None,
        dont_fragment: false,
        source: None,
    }
}

async fn run(req: &IcmpRequest, deadline: Duration) -> IcmpOutcome {
    let d = Instant::now() + deadline;
    // Hang guard: a probe must return within its deadline + 2 s.
    tokio::time::timeout(deadline + Duration::from_secs(2), probe(req, d))
        .await
        .expect("the icmp probe overran its deadline (hang guard)")
}

/// `true` when ICMP sockets may be opened here; otherwise says so loudly.
fn icmp_allowed(test: &str) -> bool {
    match permission_check() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("SKIPPED: {test}: this process may not open ICMP sockets: {why}");
            false
        }
    }
}

fn ipv6_loopback(test: &str) -> bool {
    match std::net::UdpSocket::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED: {test}: no IPv6 loopback (::1) on this machine: {e}");
            false
        }
    }
}

fn assert_echoed(out: &IcmpOutcome, to: &str) {
    assert!(out.success(), "{to}: {:?}", out.failure);
    let rtt = out.facts.rtt.expect("an rtt");
    assert_eq!(out.timings.get(Phase::Rtt), rtt);
    for p in [Phase::Resolve, Phase::Setup, Phase::Rtt] {
        assert!(out.timings.contains(p), "{to}: phase {p:?} missing");
    }
    assert_eq!(
        out.remote_addr.map(|a| a.ip()),
        Some(to.parse::<IpAddr>().unwrap())
    );
}

#[tokio::test]
async fn echo_to_ipv4_loopback() {
    if !icmp_allowed("echo_to_ipv4_loopback") {
        return;
    }
    let out = run(&request("127.0.0.1"), Duration::from_secs(5)).await;
    assert_echoed(&out, "127.0.0.1");
    // The reply's TTL is only visible on a raw socket (see the module docs).
    if let Some(ttl) = out.facts.reply_hop_limit {
        assert!(ttl > 0);
    } else {
        eprintln!("note: reply TTL not available (unprivileged ICMP socket)");
    }
}

#[tokio::test]
async fn echo_with_payload_ttl_dont_fragment_and_source() {
    if !icmp_allowed("echo_with_payload_ttl_dont_fragment_and_source") {
        return;
    }
    let mut req = request("127.0.0.2");
    req.payload_size = 1400;
    req.ttl = Some(7);
    req.dont_fragment = true;
    req.source = Some("127.0.0.1".parse().unwrap());
    let out = run(&req, Duration::from_secs(5)).await;
    assert_echoed(&out, "127.0.0.2");
    assert!(
        out.events
            .iter()
            .any(|e| e.message.contains("1400 payload byte(s)")
                && e.message.contains("ttl 7")
                && e.message.contains("don't fragment")),
        "{:?}",
        out.events
    );
}

#[tokio::test]
async fn echo_to_ipv6_loopback() {
    if !ipv6_loopback("echo_to_ipv6_loopback") || !icmp_allowed("echo_to_ipv6_loopback") {
        return;
    }
    let mut req = request("::1");
    req.payload_size = 64;
    req.ttl = Some(9);
    // Ignored for IPv6 (routers never fragment it), not an error.
    req.dont_fragment = true;
    let out = run(&req, Duration::from_secs(5)).await;
    assert_echoed(&out, "::1");
    // surge-ping does not expose the IPv6 hop limit of the reply.
    assert_eq!(out.facts.reply_hop_limit, None);
}

#[tokio::test]
async fn target_name_resolved_through_the_fixture() {
    if !icmp_allowed("target_name_resolved_through_the_fixture") {
        return;
    }
    let dns = DnsServer::start(Zone::example()).await;
    let mut req = request("dual.sonde.test");
    req.resolver = Resolver::with_servers(&[dns.addr()]).unwrap();
    req.ip = ResolveOptions {
        preferred: IpProtocol::Ip4,
        fallback: false,
    };
    let out = run(&req, Duration::from_secs(5)).await;
    assert_echoed(&out, "127.0.0.1");
}

#[tokio::test]
async fn bad_requests_fail_before_any_packet() {
    // These need no ICMP permission: they are refused before a socket is opened.
    let mut req = request("127.0.0.1");
    req.source = Some("::1".parse().unwrap());
    let out = run(&req, Duration::from_secs(5)).await;
    let f = out.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Connect);
    assert!(f.message.contains("different IP families"), "{}", f.message);

    let mut req = request("127.0.0.1");
    req.payload_size = MAX_PAYLOAD + 1;
    let f = run(&req, Duration::from_secs(5)).await.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(f.message.contains("payload_size"), "{}", f.message);
}

#[tokio::test]
async fn unresolvable_target_is_a_dns_failure() {
    let dns = DnsServer::start(Zone::example()).await;
    let mut req = request("nope.sonde.test");
    req.resolver = Resolver::with_servers(&[dns.addr()]).unwrap();
    let f = run(&req, Duration::from_secs(5)).await.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Dns);
}

/// The sequence numbers a probe's events name: the one its request carried, and the reply's.
fn request_and_reply_seq(out: &IcmpOutcome) -> (u16, u16) {
    let seq_in = |prefix: &str| -> u16 {
        let e = out
            .events
            .iter()
            .rev()
            .find(|e| e.message.starts_with(prefix))
            .unwrap_or_else(|| panic!("no event starting with {prefix:?}: {:?}", out.events));
        let rest = &e.message[e.message.find("seq ").expect("a seq") + 4..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no seq number in {:?}", e.message))
    };
    (seq_in("sending an echo request"), seq_in("echo reply from"))
}

/// Probes share a socket per set of options (see the module docs); hundreds in flight at once,
/// to three addresses and with two option sets, must each get the reply to their own request:
/// a success, a reply sequence equal to the request's, and no two probes to one address (over
/// one socket) with the same sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_probes_each_get_their_own_reply() {
    if !icmp_allowed("many_concurrent_probes_each_get_their_own_reply") {
        return;
    }
    const N: usize = 300;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..N {
        let host = ["127.0.0.1", "127.0.0.2", "127.0.0.3"][i % 3];
        let mut req = request(host);
        // Two option sets, so two sockets; payload sizes differ probe to probe.
        req.ttl = (i % 2 == 0).then_some(64);
        req.payload_size = 1 + i % 97;
        set.spawn(async move {
            let out = run(&req, Duration::from_secs(5)).await;
            (host, req.ttl, out)
        });
    }
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        let (host, ttl, out) = r.expect("probe task");
        assert_echoed(&out, host);
        let (sent, got) = request_and_reply_seq(&out);
        assert_eq!(sent, got, "{host}: the reply answers another request");
        assert!(
            seen.insert((host, ttl, sent)),
            "{host} ttl {ttl:?}: seq {sent} used by two probes in flight"
        );
        n += 1;
    }
    assert_eq!(n, N);
}

/// The shared sockets belong to a tokio runtime (its I/O driver, its receive task): a runtime
/// that has shut down must not leave later runtimes a dead socket, and two runtimes running at
/// once must each get their own.
#[test]
fn sockets_follow_the_runtime() {
    if !icmp_allowed("sockets_follow_the_runtime") {
        return;
    }
    let probe_in_new_runtime = |host: &'static str| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(run(&request(host), Duration::from_secs(5)));
        assert_echoed(&out, host);
        // `rt` is dropped here, and with it the socket's receive task.
    };
    // One after the other: the second must not get the first's dead socket.
    for _ in 0..3 {
        probe_in_new_runtime("127.0.0.1");
    }
    // At the same time, on threads of their own, several probes each.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..5 {
                    probe_in_new_runtime("127.0.0.1");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a probe thread panicked");
    }
}
