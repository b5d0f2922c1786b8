//! Name resolution through `Resolver::with_servers` pointed at the in-process DNS fixture: family
//! preference with and without fallback (blackbox's `preferred_ip_protocol` /
//! `ip_protocol_fallback`), sonde's `auto` order, and failures.

use std::net::IpAddr;
use std::time::Duration;

use sonde_probes::{
    with_deadline, FailureReason, IpProtocol, Phase, Recorder, ResolveOptions, Resolver,
};
use sonde_testkit::dns::{DnsServer, Zone, SERVFAIL, SILENT};
use tokio::time::Instant;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn opts(preferred: IpProtocol, fallback: bool) -> ResolveOptions {
    ResolveOptions {
        preferred,
        fallback,
    }
}

/// Resolve under a deadline (5 s unless said otherwise), with the hang guard tests use.
async fn resolve(
    server: &DnsServer,
    host: &str,
    o: ResolveOptions,
    deadline: Duration,
) -> (Result<Vec<IpAddr>, sonde_probes::Failure>, Recorder) {
    let r = Resolver::with_servers(&[server.addr()]).unwrap();
    let mut rec = Recorder::new();
    let d = Instant::now() + deadline;
    let res = tokio::time::timeout(
        deadline + Duration::from_secs(2),
        with_deadline(&mut rec, d, async |rec: &mut Recorder| {
            r.resolve(host, o, rec).await
        }),
    )
    .await
    .expect("resolution overran its deadline (hang guard)");
    (res, rec)
}

const FIVE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn preferred_family_of_a_dual_stack_name() {
    let server = DnsServer::start(Zone::example()).await;
    for fallback in [true, false] {
        let (r, rec) = resolve(
            &server,
            "dual.sonde.test",
            opts(IpProtocol::Ip4, fallback),
            FIVE,
        )
        .await;
        assert_eq!(r.unwrap(), vec![ip("127.0.0.1")]);
        assert!(rec.timings.contains(Phase::Resolve));
        let (r, _) = resolve(
            &server,
            "dual.sonde.test",
            opts(IpProtocol::Ip6, fallback),
            FIVE,
        )
        .await;
        assert_eq!(r.unwrap(), vec![ip("::1")]);
    }
    assert!(
        server.queries() >= 4,
        "the fixture answered: {}",
        server.queries()
    );
}

#[tokio::test]
async fn blackbox_takes_the_first_address_of_the_family() {
    let server = DnsServer::start(Zone::example()).await;
    let (r, _) = resolve(
        &server,
        "multi.sonde.test",
        opts(IpProtocol::Ip4, true),
        FIVE,
    )
    .await;
    assert_eq!(r.unwrap(), vec![ip("127.0.0.1")]);
}

#[tokio::test]
async fn fallback_to_the_other_family() {
    let server = DnsServer::start(Zone::example()).await;
    let (r, _) = resolve(&server, "v6.sonde.test", opts(IpProtocol::Ip4, true), FIVE).await;
    assert_eq!(r.unwrap(), vec![ip("::1")]);
    let (r, _) = resolve(&server, "v4.sonde.test", opts(IpProtocol::Ip6, true), FIVE).await;
    assert_eq!(r.unwrap(), vec![ip("127.0.0.1")]);
}

#[tokio::test]
async fn no_fallback_fails_with_dns_naming_the_family() {
    let server = DnsServer::start(Zone::example()).await;
    let (r, _) = resolve(&server, "v6.sonde.test", opts(IpProtocol::Ip4, false), FIVE).await;
    let f = r.unwrap_err();
    assert_eq!(f.reason, FailureReason::Dns);
    assert!(f.message.contains("v6.sonde.test"), "{}", f.message);
    assert!(f.message.contains("IPv4"), "{}", f.message);
    let (r, _) = resolve(&server, "v4.sonde.test", opts(IpProtocol::Ip6, false), FIVE).await;
    let f = r.unwrap_err();
    assert_eq!(f.reason, FailureReason::Dns);
    assert!(f.message.contains("IPv6"), "{}", f.message);
}

#[tokio::test]
async fn auto_puts_ipv6_first_and_interleaves() {
    let server = DnsServer::start(Zone::example()).await;
    let (r, _) = resolve(&server, "multi.sonde.test", ResolveOptions::default(), FIVE).await;
    assert_eq!(
        r.unwrap(),
        vec![ip("::1"), ip("127.0.0.1"), ip("127.0.0.2")]
    );
    let (r, _) = resolve(&server, "v4.sonde.test", ResolveOptions::default(), FIVE).await;
    assert_eq!(r.unwrap(), vec![ip("127.0.0.1")]);
    let (r, _) = resolve(&server, "v6.sonde.test", ResolveOptions::default(), FIVE).await;
    assert_eq!(r.unwrap(), vec![ip("::1")]);
}

#[tokio::test]
async fn follows_a_cname_in_the_zone() {
    let server = DnsServer::start(Zone::example()).await;
    let (r, _) = resolve(
        &server,
        "www.sonde.test",
        opts(IpProtocol::Ip4, false),
        FIVE,
    )
    .await;
    assert_eq!(r.unwrap(), vec![ip("127.0.0.1")]);
}

#[tokio::test]
async fn nxdomain_is_a_dns_failure() {
    let server = DnsServer::start(Zone::example()).await;
    for o in [
        ResolveOptions::default(),
        opts(IpProtocol::Ip4, true),
        opts(IpProtocol::Ip6, false),
    ] {
        let (r, rec) = resolve(&server, "nope.sonde.test", o, FIVE).await;
        let f = r.unwrap_err();
        assert_eq!(f.reason, FailureReason::Dns, "{o:?}");
        assert!(f.message.contains("nope.sonde.test"), "{}", f.message);
        assert!(f.message.contains("NXDOMAIN"), "{}", f.message);
        assert!(
            f.message.contains(&server.addr().to_string()),
            "names the resolver: {}",
            f.message
        );
        assert!(rec.timings.contains(Phase::Resolve));
    }
}

#[tokio::test]
async fn servfail_is_a_dns_failure() {
    let server = DnsServer::start(Zone::example()).await;
    let name = format!("{SERVFAIL}.sonde.test");
    let (r, _) = resolve(&server, &name, opts(IpProtocol::Ip4, false), FIVE).await;
    let f = r.unwrap_err();
    eprintln!("{}", f.message);
    assert_eq!(f.reason, FailureReason::Dns, "{}", f.message);
    assert!(f.message.contains(&name), "{}", f.message);
}

#[tokio::test]
async fn a_silent_server_is_bounded_by_the_deadline() {
    let server = DnsServer::start(Zone::example()).await;
    let name = format!("{SILENT}.sonde.test");
    let (r, _) = resolve(
        &server,
        &name,
        ResolveOptions::default(),
        Duration::from_secs(1),
    )
    .await;
    let f = r.unwrap_err();
    assert_eq!(f.reason, FailureReason::Timeout, "{}", f.message);
    assert!(f.message.contains("resolving"), "{}", f.message);
    assert!(server.queries() >= 1);
}

#[tokio::test]
async fn ip_literals_never_reach_the_resolver() {
    let server = DnsServer::start(Zone::example()).await;
    let (r, _) = resolve(&server, "[::1]", opts(IpProtocol::Ip4, false), FIVE).await;
    assert_eq!(r.unwrap(), vec![ip("::1")]);
    let (r, _) = resolve(&server, "127.0.0.1", ResolveOptions::default(), FIVE).await;
    assert_eq!(r.unwrap(), vec![ip("127.0.0.1")]);
    assert_eq!(server.queries(), 0);
}

/// A resolver whose port is closed fails at once as `connect`, as the `dns` probe does for the
/// same closed port — not as a timeout at the deadline (hickory's own sockets never see the
/// ICMP port-unreachable). The deadline here is long on purpose: the failure must name the
/// refusal, which only the kernel's answer can tell.
#[tokio::test]
async fn a_closed_resolver_port_fails_as_connect_not_as_a_timeout() {
    // A port that was just free: bind, note it, close.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = Resolver::with_servers(&[closed]).unwrap();
    let mut rec = Recorder::new();
    let d = Instant::now() + Duration::from_secs(30);
    let res = tokio::time::timeout(
        Duration::from_secs(32),
        with_deadline(&mut rec, d, async |rec: &mut Recorder| {
            r.resolve("web.sonde.test", ResolveOptions::default(), rec)
                .await
        }),
    )
    .await
    .expect("hang guard");
    let f = res.unwrap_err();
    assert_eq!(f.reason, FailureReason::Connect, "{}", f.message);
    assert!(
        f.message.contains(&closed.to_string()) && f.message.contains("refused"),
        "{}",
        f.message
    );
    assert!(rec.timings.contains(Phase::Resolve));
}

/// The check for a closed port does not get in the way of a server that answers.
#[tokio::test]
async fn a_live_resolver_still_answers_with_the_refusal_check_running() {
    let server = DnsServer::start(Zone::example()).await;
    let (r, _) = resolve(&server, "dual.sonde.test", ResolveOptions::default(), FIVE).await;
    assert!(!r.unwrap().is_empty());
}
