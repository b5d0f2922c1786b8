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
