//! The HTTP probe against in-process fixtures: success with its phases and facts, and every
//! failure reason. All traffic stays on loopback; names resolve through a tiny DNS responder in
//! this file, never through the system resolver.
//!
//! Every probe runs under a hang guard (deadline + 2 s): a probe that overruns its deadline fails
//! the test instead of hanging it. There are no tighter timing assertions.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use regex::Regex;
use sonde_probes::http::{
    probe, Auth, HeaderCheck, HttpOutcome, HttpRequest, StatusRange, ALPN_H2_HTTP11, ALPN_HTTP11,
    USER_AGENT,
};
use sonde_probes::tls::{TlsClient, TlsOptions};
use sonde_probes::{FailureReason, IpProtocol, Phase, ResolveOptions, Resolver};
use sonde_testkit::http::{HttpServer, Proxy, RawServer, Reply, Routes};
use sonde_testkit::pki::{self, Ca};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(5);
/// Hostile peers get a short deadline so the suite stays fast.
const HOSTILE_DEADLINE: Duration = Duration::from_secs(1);
/// The only time bound in these tests: a probe must return within its deadline plus this.
const HANG_GUARD: Duration = Duration::from_secs(2);

/// A resolver for URLs with IP literals: literals never reach it, and its server is a closed
/// loopback port, so nothing could leave the machine anyway.
fn literal_resolver() -> Resolver {
    Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap()
}

fn tls_client(opts: TlsOptions) -> TlsClient {
    TlsClient::new(&opts, ALPN_H2_HTTP11).unwrap()
}

/// A request for `url` trusting only `ca` (or nothing in particular for plain http).
fn request(url: &str, ca: Option<&Ca>) -> HttpRequest {
    let tls = tls_client(TlsOptions {
        ca_file: ca.map(|c| c.ca_file.clone()),
        ..Default::default()
    });
    HttpRequest::get(url.parse().unwrap(), literal_resolver(), tls)
}

/// Run the probe with `deadline` from now, under the hang guard.
async fn run_for(req: &HttpRequest, deadline: Duration) -> HttpOutcome {
    match tokio::time::timeout(deadline + HANG_GUARD, probe(req, Instant::now() + deadline)).await {
        Ok(o) => o,
        Err(_) => panic!("hang guard: probe did not return within its deadline + 2 s"),
    }
}

async fn run(req: &HttpRequest) -> HttpOutcome {
    run_for(req, DEADLINE).await
}

fn events(o: &HttpOutcome) -> String {
    o.events
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_ok(o: &HttpOutcome) {
    assert!(
        o.success(),
        "expected success, got {:?}\n{}",
        o.failure,
        events(o)
    );
}

fn assert_fails(o: &HttpOutcome, reason: FailureReason, needle: &str) {
    let f = o
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected {reason} failure, got success\n{}", events(o)));
    assert_eq!(f.reason, reason, "{f}\n{}", events(o));
    assert!(
        f.message.contains(needle),
        "message {:?} should contain {needle:?}",
        f.message
    );
}

/// TLS failure wording belongs to the tls module; here only the reason and the gist matter.
fn assert_tls_failure(o: &HttpOutcome, gist: &str) {
    assert_fails(o, FailureReason::Tls, "TLS handshake");
    let msg = o.failure.as_ref().unwrap().message.to_lowercase();
    assert!(msg.contains(gist), "{msg:?} should mention {gist:?}");
}

fn request_header<'a>(o: &'a HttpOutcome, name: &str) -> Option<&'a str> {
    o.facts
        .request_headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

// ---------------------------------------------------------------------------------------------
// A minimal authoritative DNS responder: `web.sonde.test` → 127.0.0.1, anything else NXDOMAIN.

mod dns {
    use super::*;
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record, RecordType};
    use tokio::net::UdpSocket;

    pub const KNOWN: &str = "web.sonde.test";

    pub struct Dns {
        pub addr: SocketAddr,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Dns {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    pub async fn start() -> Dns {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.metadata.authoritative = true;
                r.add_queries(q.queries.clone());
                match q.queries.first() {
                    Some(query) if query.name().to_ascii().trim_end_matches('.') == KNOWN => {
                        if query.query_type() == RecordType::A {
                            r.add_answer(Record::from_rdata(
                                query.name().clone(),
                                60,
                                RData::A(A(Ipv4Addr::LOCALHOST)),
                            ));
                        }
                    }
                    _ => r.metadata.response_code = ResponseCode::NXDomain,
                }
                if let Ok(bytes) = r.to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        Dns { addr, task }
    }
}

// ---------------------------------------------------------------------------------------------
// Success, phases, facts

#[tokio::test]
async fn plain_get_succeeds_with_phases_and_facts() {
    let server = HttpServer::start(Routes::new().at("/", Reply::text(200, "hello"))).await;
    let o = run(&request(&server.url("/"), None)).await;
    assert_ok(&o);
    for phase in [
        Phase::Resolve,
        Phase::Connect,
        Phase::Processing,
        Phase::Transfer,
    ] {
        assert!(o.timings.contains(phase), "missing phase {phase:?}");
    }
    assert!(!o.timings.contains(Phase::Tls));
    let f = &o.facts;
    assert_eq!(f.status, Some(200));
    assert_eq!(f.version.as_deref(), Some("HTTP/1.1"));
    assert_eq!(f.content_length, Some(5));
    assert_eq!(f.body_bytes, 5);
    assert_eq!(f.redirects, 0);
    assert_eq!(f.final_url, server.url("/"));
    assert!(!f.is_tls && f.tls.is_none());
    assert_eq!(f.hops.len(), 1);
    assert_eq!(o.remote_addr, Some(server.addr()));
    assert_eq!(f.hops[0].remote_addr, Some(server.addr()));
    assert!(f
        .headers
        .iter()
        .any(|(n, v)| n == "content-type" && v == "text/plain"));
    assert_eq!(request_header(&o, "user-agent"), Some(USER_AGENT));
    assert_eq!(
        request_header(&o, "host"),
        Some(server.addr().to_string().as_str())
    );
    let ev = events(&o);
    assert!(ev.contains("GET / HTTP/1.1 sent"), "{ev}");
    assert!(ev.contains("200 OK received (HTTP/1.1) after"), "{ev}");
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("user-agent"), Some(USER_AGENT));
}

#[tokio::test]
async fn method_headers_body_and_host_override_are_sent() {
    let server = HttpServer::start(Routes::new().at("/echo", Reply::echo())).await;
    let mut req = request(&server.url("/echo?q=1"), None);
    req.method = Method::PUT;
    req.body = Bytes::from_static(b"{\"a\":1}");
    req.headers
        .insert("x-probe", HeaderValue::from_static("yes"));
    req.headers
        .insert("host", HeaderValue::from_static("vhost.example"));
    req.headers
        .insert("user-agent", HeaderValue::from_static("custom/1"));
    req.keep_body = 1 << 20;
    let o = run(&req).await;
    assert_ok(&o);
    let seen = &server.requests()[0];
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.uri, "/echo?q=1");
    assert_eq!(seen.body, Bytes::from_static(b"{\"a\":1}"));
    assert_eq!(seen.header("x-probe"), Some("yes"));
    assert_eq!(seen.header("host"), Some("vhost.example"));
    assert_eq!(seen.header("user-agent"), Some("custom/1"));
    assert_eq!(seen.header("content-length"), Some("7"));
    // keep_body hands the body to the caller.
    let kept = String::from_utf8_lossy(&o.facts.body);
    assert!(kept.contains(r#""method":"PUT""#), "{kept}");
    // The query string is not written to the event log (it often carries keys).
    assert!(
        events(&o).contains("PUT /echo?… HTTP/1.1 sent"),
        "{}",
        events(&o)
    );
}

#[tokio::test]
async fn keep_body_keeps_only_the_first_bytes() {
    let server = HttpServer::start(Routes::new().at("/", Reply::text(200, "0123456789"))).await;
    let mut req = request(&server.url("/"), None);
    req.keep_body = 4;
    let o = run(&req).await;
    assert_ok(&o);
    assert_eq!(o.facts.body, Bytes::from_static(b"0123"));
    assert_eq!(o.facts.body_bytes, 10);
}

#[tokio::test]
async fn names_resolve_through_the_configured_resolver() {
    let dns = dns::start().await;
    let server = HttpServer::start(Routes::new().at("/", Reply::text(200, "ok"))).await;
    let url = format!("http://{}:{}/", dns::KNOWN, server.addr().port());
    let mut req = request(&url, None);
    req.resolver = Resolver::with_servers(&[dns.addr]).unwrap();
    req.ip = ResolveOptions {
        preferred: IpProtocol::Ip4,
        fallback: false,
    };
    let o = run(&req).await;
    assert_ok(&o);
    assert_eq!(o.remote_addr, Some(server.addr()));
    assert_eq!(
        server.requests()[0].header("host"),
        Some(format!("{}:{}", dns::KNOWN, server.addr().port()).as_str())
    );
    assert!(events(&o).contains("resolved web.sonde.test to 127.0.0.1"));
}

#[tokio::test]
async fn unknown_name_fails_with_dns() {
    let dns = dns::start().await;
    let mut req = request("http://nowhere.sonde.test/", None);
    req.resolver = Resolver::with_servers(&[dns.addr]).unwrap();
    let o = run(&req).await;
    assert_fails(&o, FailureReason::Dns, "nowhere.sonde.test");
}

#[tokio::test]
async fn ipv6_loopback() {
    let server = match HttpServer::start_on(
        "[::1]:0".parse().unwrap(),
        Routes::new().at("/", Reply::text(200, "v6")),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: ipv6_loopback: cannot bind [::1] on this machine ({e})");
            return;
        }
    };
    let mut req = request(&server.url("/"), None);
    req.ip = ResolveOptions {
        preferred: IpProtocol::Ip6,
        fallback: false,
    };
    let o = run(&req).await;
    assert_ok(&o);
    assert!(o.remote_addr.unwrap().is_ipv6());
    assert_eq!(
        server.requests()[0].header("host"),
        Some(server.addr().to_string().as_str())
    );
}

#[tokio::test]
async fn connection_refused_fails_with_connect() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let o = run(&request(&format!("http://{addr}/"), None)).await;
    assert_fails(&o, FailureReason::Connect, "127.0.0.1");
    assert!(o.timings.contains(Phase::Connect));
}

// ---------------------------------------------------------------------------------------------
// TLS and HTTP/2

struct Tls {
    ca: Ca,
    server: HttpServer,
}

async fn https_server(alpn: &[&[u8]]) -> Tls {
    let ca = Ca::new("sonde test root");
    let leaf = ca.leaf(&["127.0.0.1", "localhost"], time::Duration::days(30), &[]);
    let server = HttpServer::start_tls(
        Routes::new().at("/", Reply::echo()),
        pki::server_config(&leaf, alpn, None),
    )
    .await;
    Tls { ca, server }
}

#[tokio::test]
async fn https_negotiates_http2_through_alpn() {
    let t = https_server(&[b"h2", b"http/1.1"]).await;
    let o = run(&request(&t.server.url("/"), Some(&t.ca))).await;
    assert_ok(&o);
    assert!(o.timings.contains(Phase::Tls));
    assert_eq!(o.facts.version.as_deref(), Some("HTTP/2.0"));
    assert!(o.facts.is_tls);
    let tls = o.facts.tls.as_ref().unwrap();
    assert_eq!(tls.alpn.as_deref(), Some("h2"));
    assert!(tls.verified);
    assert_eq!(t.server.requests()[0].version, "HTTP/2.0");
    assert_eq!(
        request_header(&o, ":authority"),
        Some(t.server.addr().to_string().as_str())
    );
    assert!(
        events(&o).contains("200 OK received (HTTP/2.0)"),
        "{}",
        events(&o)
    );
}

#[tokio::test]
async fn https_stays_on_http11_without_h2() {
    // The server offers only http/1.1 …
    let t = https_server(&[b"http/1.1"]).await;
    let o = run(&request(&t.server.url("/"), Some(&t.ca))).await;
    assert_ok(&o);
    assert_eq!(o.facts.version.as_deref(), Some("HTTP/1.1"));
    // … or the client does.
    let t = https_server(&[b"h2", b"http/1.1"]).await;
    let mut req = request(&t.server.url("/"), Some(&t.ca));
    req.tls = TlsClient::new(
        &TlsOptions {
            ca_file: Some(t.ca.ca_file.clone()),
            ..Default::default()
        },
        ALPN_HTTP11,
    )
    .unwrap();
    let o = run(&req).await;
    assert_ok(&o);
    assert_eq!(o.facts.version.as_deref(), Some("HTTP/1.1"));
    assert_eq!(t.server.requests()[0].version, "HTTP/1.1");
}

#[tokio::test]
async fn earliest_expiry_covers_an_intermediate_that_expires_first() {
    let root = Ca::new("sonde test root");
    let inter = root.intermediate("sonde test intermediate", time::Duration::days(10));
    let leaf = inter.leaf(&["127.0.0.1"], time::Duration::days(90), &[&inter]);
    let server = HttpServer::start_tls(
        Routes::new().at("/", Reply::text(200, "ok")),
        pki::server_config(&leaf, &[b"h2"], None),
    )
    .await;
    let o = run(&request(&server.url("/"), Some(&root))).await;
    assert_ok(&o);
    let tls = o.facts.tls.as_ref().unwrap();
    assert_eq!(tls.chain.len(), 2);
    let earliest = tls.earliest_not_after().unwrap();
    assert_eq!(tls.chain[0].not_after, leaf.not_after);
    assert_eq!(earliest, tls.chain[1].not_after);
    assert!(earliest < leaf.not_after);
}

#[tokio::test]
async fn tls_with_an_unknown_ca_fails_with_tls() {
    let t = https_server(&[b"h2"]).await;
    let other = Ca::new("some other root");
    let o = run(&request(&t.server.url("/"), Some(&other))).await;
    assert_tls_failure(&o, "unknown");
    assert!(o.facts.status.is_none());
}

#[tokio::test]
async fn tls_with_a_wrong_name_fails_with_tls() {
    let ca = Ca::new("sonde test root");
    let leaf = ca.leaf(&["other.example"], time::Duration::days(30), &[]);
    let server = HttpServer::start_tls(
        Routes::new().at("/", Reply::text(200, "ok")),
        pki::server_config(&leaf, &[b"h2"], None),
    )
    .await;
    let o = run(&request(&server.url("/"), Some(&ca))).await;
    assert_tls_failure(&o, "name");
    // The Host header names the virtual host, and TLS follows it (as blackbox does).
    let mut req = request(&server.url("/"), Some(&ca));
    req.headers
        .insert("host", HeaderValue::from_static("other.example"));
    assert_ok(&run(&req).await);
}

#[tokio::test]
async fn tls_with_an_expired_leaf_fails_with_tls() {
    let ca = Ca::new("sonde test root");
    let leaf = ca.leaf(&["127.0.0.1"], time::Duration::days(-1), &[]);
    let server = HttpServer::start_tls(
        Routes::new().at("/", Reply::text(200, "ok")),
        pki::server_config(&leaf, &[b"h2"], None),
    )
    .await;
    let o = run(&request(&server.url("/"), Some(&ca))).await;
    assert_tls_failure(&o, "expired");
}

#[tokio::test]
async fn fail_if_ssl_and_fail_if_not_ssl() {
    let t = https_server(&[b"h2"]).await;
    let mut req = request(&t.server.url("/"), Some(&t.ca));
    req.checks.fail_if_ssl = true;
    assert_fails(&run(&req).await, FailureReason::Assertion, "fail_if_ssl");
    req.checks.fail_if_ssl = false;
    req.checks.fail_if_not_ssl = true;
    assert_ok(&run(&req).await);

    let plain = HttpServer::start(Routes::new().at("/", Reply::text(200, "ok"))).await;
    let mut req = request(&plain.url("/"), None);
    req.checks.fail_if_not_ssl = true;
    assert_fails(
        &run(&req).await,
        FailureReason::Assertion,
        "fail_if_not_ssl",
    );
}

#[tokio::test]
async fn http_version_check() {
    let server = HttpServer::start(Routes::new().at("/", Reply::text(200, "ok"))).await;
    let mut req = request(&server.url("/"), None);
    req.checks.valid_http_versions = vec!["HTTP/2.0".into()];
    let o = run(&req).await;
    assert_fails(
        &o,
        FailureReason::Assertion,
        "HTTP version HTTP/1.1 — expected HTTP/2.0",
    );
    req.checks.valid_http_versions = vec!["HTTP/1.1".into(), "HTTP/2.0".into()];
    assert_ok(&run(&req).await);
}

// ---------------------------------------------------------------------------------------------
// Status, body and header checks

#[tokio::test]
async fn status_outside_the_valid_codes_fails_with_status() {
    let server = HttpServer::start(
        Routes::new()
            .at("/down", Reply::text(503, "maintenance"))
            .at("/gone", Reply::status(404)),
    )
    .await;
    let o = run(&request(&server.url("/down"), None)).await;
    assert_fails(&o, FailureReason::Status, "status 503 — expected 2xx");
    assert_eq!(o.facts.status, Some(503));
    // The body was still read (and measured).
    assert_eq!(o.facts.body_bytes, 11);

    let mut req = request(&server.url("/gone"), None);
    req.checks.valid_status_codes = vec![StatusRange::single(404)];
    assert_ok(&run(&req).await);
    req.checks.valid_status_codes = vec![StatusRange::single(200), StatusRange::class(3)];
    assert_fails(
        &run(&req).await,
        FailureReason::Status,
        "status 404 — expected 200 or 3xx",
    );
}

#[tokio::test]
async fn body_regexes_fail_with_body_and_flag_the_regex() {
    let server = HttpServer::start(
        Routes::new().at("/", Reply::text(200, "status: degraded\nversion 1.2.3")),
    )
    .await;
    let mut req = request(&server.url("/"), None);
    req.checks.fail_if_body_matches = vec![Regex::new("degraded|down").unwrap()];
    let o = run(&req).await;
    assert_fails(&o, FailureReason::Body, "body matched /degraded|down/");
    assert!(o.facts.failed_due_to_regex);

    let mut req = request(&server.url("/"), None);
    req.checks.fail_if_body_not_matches = vec![Regex::new(r"version 2\.").unwrap()];
    let o = run(&req).await;
    assert_fails(&o, FailureReason::Body, r"body did not match /version 2\./");
    assert!(o.facts.failed_due_to_regex);

    let mut req = request(&server.url("/"), None);
    req.checks.fail_if_body_matches = vec![Regex::new("^down").unwrap()];
    req.checks.fail_if_body_not_matches = vec![Regex::new(r"version 1\.\d").unwrap()];
    let o = run(&req).await;
    assert_ok(&o);
    assert!(!o.facts.failed_due_to_regex);
}

#[tokio::test]
async fn header_checks_fail_with_assertion() {
    let server = HttpServer::start(
        Routes::new().at(
            "/",
            Reply::text(200, "ok")
                .header("x-env", "staging")
                .header("cache-control", "no-store"),
        ),
    )
    .await;
    let check = |name: &'static str, re: &str, fail_if_matches, allow_missing| HeaderCheck {
        name: HeaderName::from_static(name),
        regex: Regex::new(re).unwrap(),
        fail_if_matches,
        allow_missing,
    };
    let mut req = request(&server.url("/"), None);
    req.checks.headers = vec![check("x-env", "^prod", false, false)];
    assert_fails(
        &run(&req).await,
        FailureReason::Assertion,
        "header x-env is \"staging\" — expected a value matching /^prod/",
    );
    req.checks.headers = vec![check("cache-control", "no-store", true, false)];
    assert_fails(&run(&req).await, FailureReason::Assertion, "no-store");
    req.checks.headers = vec![check("x-missing", ".", false, false)];
    assert_fails(
        &run(&req).await,
        FailureReason::Assertion,
        "x-missing is missing",
    );
    req.checks.headers = vec![
        check("x-missing", ".", false, true),
        check("x-env", "staging", false, false),
        check("cache-control", "public", true, false),
    ];
    assert_ok(&run(&req).await);
}

#[tokio::test]
async fn body_size_limit_fails_with_body() {
    let server =
        HttpServer::start(Routes::new().at("/", Reply::bytes(200, vec![b'a'; 10_000]))).await;
    let mut req = request(&server.url("/"), None);
    req.body_size_limit = Some(1000);
    let o = run(&req).await;
    assert_fails(&o, FailureReason::Body, "body_size_limit");
    req.body_size_limit = Some(10_000);
    let o = run(&req).await;
    assert_ok(&o);
    assert_eq!(o.facts.body_bytes, 10_000);
}

// ---------------------------------------------------------------------------------------------
// Redirects

#[tokio::test]
async fn redirects_are_followed_and_counted() {
    let server = HttpServer::start(
        Routes::new()
            .at("/a", Reply::redirect(302, "b"))
            .at("/b", Reply::redirect(301, "/c?x=1"))
            .at("/c", Reply::text(200, "done")),
    )
    .await;
    let o = run(&request(&server.url("/a"), None)).await;
    assert_ok(&o);
    assert_eq!(o.facts.redirects, 2);
    assert_eq!(o.facts.final_url, server.url("/c?x=1"));
    let statuses: Vec<_> = o.facts.hops.iter().map(|h| h.status).collect();
    assert_eq!(statuses, vec![Some(302), Some(301), Some(200)]);
    assert_eq!(o.facts.status, Some(200));
    assert_eq!(server.requests().len(), 3);
    // Three hops, three connections: each hop is dialed (and timed) like a first visit.
    assert_eq!(server.connections(), 3);
    assert!(
        events(&o).contains("following 302 redirect to"),
        "{}",
        events(&o)
    );
}

#[tokio::test]
async fn see_other_turns_post_into_get_and_307_keeps_it() {
    let server = HttpServer::start(
        Routes::new()
            .at("/form", Reply::redirect(303, "/echo"))
            .at("/moved", Reply::redirect(307, "/echo"))
            .at("/echo", Reply::echo()),
    )
    .await;
    let mut req = request(&server.url("/form"), None);
    req.method = Method::POST;
    req.body = Bytes::from_static(b"name=sonde");
    req.headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    assert_ok(&run(&req).await);
    let seen = server.requests();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[1].method, "GET");
    assert!(seen[1].body.is_empty());
    assert_eq!(seen[1].header("content-type"), None);

    req.url = server.url("/moved").parse().unwrap();
    assert_ok(&run(&req).await);
    let seen = server.requests();
    assert_eq!(seen[3].method, "POST");
    assert_eq!(seen[3].body, Bytes::from_static(b"name=sonde"));
}

#[tokio::test]
async fn redirects_off_makes_the_3xx_final() {
    let server = HttpServer::start(
        Routes::new()
            .at("/a", Reply::redirect(302, "/b"))
            .at("/b", Reply::text(200, "ok")),
    )
    .await;
    let mut req = request(&server.url("/a"), None);
    req.follow_redirects = false;
    let o = run(&req).await;
    assert_fails(&o, FailureReason::Status, "status 302 — expected 2xx");
    assert_eq!(o.facts.redirects, 0);
    req.checks.valid_status_codes = vec![StatusRange::single(302)];
    assert_ok(&run(&req).await);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_redirect_loop_fails_with_protocol() {
    let server = HttpServer::start(Routes::new().at("/loop", Reply::redirect(302, "/loop"))).await;
    let o = run(&request(&server.url("/loop"), None)).await;
    assert_fails(&o, FailureReason::Protocol, "stopped after 10 redirects");
    assert_eq!(server.requests().len(), 11);

    let mut req = request(&server.url("/loop"), None);
    req.max_redirects = 2;
    let o = run(&req).await;
    assert_fails(&o, FailureReason::Protocol, "stopped after 2 redirects");
    assert_eq!(o.facts.redirects, 2);
}

#[tokio::test]
async fn a_failing_hop_does_not_report_its_predecessors_status() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = l.local_addr().unwrap();
    drop(l);
    let server = HttpServer::start(
        Routes::new().at("/", Reply::redirect(302, &format!("http://{closed}/next"))),
    )
    .await;
    let o = run(&request(&server.url("/"), None)).await;
    assert_fails(&o, FailureReason::Connect, &closed.to_string());
    assert_eq!(o.facts.status, None);
    assert_eq!(o.facts.redirects, 1);
    assert_eq!(o.facts.final_url, format!("http://{closed}/next"));
    let statuses: Vec<_> = o.facts.hops.iter().map(|h| h.status).collect();
    assert_eq!(statuses, vec![Some(302), None]);
}

#[tokio::test]
async fn a_bad_location_fails_with_protocol() {
    let server = HttpServer::start(
        Routes::new()
            .at("/bad", Reply::redirect(302, "http://[::1"))
            .at("/ftp", Reply::redirect(301, "ftp://127.0.0.1/file")),
    )
    .await;
    let o = run(&request(&server.url("/bad"), None)).await;
    assert_fails(&o, FailureReason::Protocol, "bad Location header");
    let o = run(&request(&server.url("/ftp"), None)).await;
    assert_fails(&o, FailureReason::Protocol, "cannot be followed");
}

// ---------------------------------------------------------------------------------------------
// Credentials

#[tokio::test]
async fn basic_auth_is_sent_and_redacted() {
    let server = HttpServer::start(Routes::new().at("/", Reply::echo())).await;
    let mut req = request(&server.url("/"), None);
    req.auth = Some(Auth::Basic {
        username: "user".into(),
        password: "s3cret-pass".into(),
    });
    req.headers
        .insert("cookie", HeaderValue::from_static("session=cookie-secret"));
    let o = run(&req).await;
    assert_ok(&o);
    // base64("user:s3cret-pass")
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Basic dXNlcjpzM2NyZXQtcGFzcw==")
    );
    assert_eq!(request_header(&o, "authorization"), Some("<redacted>"));
    assert_eq!(request_header(&o, "cookie"), Some("<redacted>"));
    let everything = format!("{}\n{:?}", events(&o), o.facts.request_headers);
    for secret in ["dXNlcjpzM2NyZXQtcGFzcw", "s3cret", "cookie-secret"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
}

#[tokio::test]
async fn secret_headers_are_redacted_both_ways() {
    let server = HttpServer::start(
        Routes::new().at(
            "/",
            Reply::text(200, "ok")
                .header("set-cookie", "sid=server-session-secret; HttpOnly")
                .header("x-trace", "visible"),
        ),
    )
    .await;
    let mut req = request(&server.url("/"), None);
    req.headers
        .insert("x-api-key", HeaderValue::from_static("api-key-secret"));
    let o = run(&req).await;
    assert_ok(&o);
    assert_eq!(
        server.requests()[0].header("x-api-key"),
        Some("api-key-secret")
    );
    assert_eq!(request_header(&o, "x-api-key"), Some("<redacted>"));
    let response: std::collections::HashMap<_, _> = o.facts.headers.iter().collect();
    assert_eq!(response["set-cookie"], "<redacted>");
    assert_eq!(response["x-trace"], "visible");
    let everything = format!(
        "{}\n{:?}\n{:?}",
        events(&o),
        o.facts.request_headers,
        o.facts.headers
    );
    for secret in ["api-key-secret", "server-session-secret"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
}

#[tokio::test]
async fn bearer_auth_is_sent_and_redacted() {
    let server = HttpServer::start(Routes::new().at("/", Reply::echo())).await;
    let mut req = request(&server.url("/"), None);
    req.auth = Some(Auth::Bearer("tok-123-secret".into()));
    let o = run(&req).await;
    assert_ok(&o);
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer tok-123-secret")
    );
    assert_eq!(request_header(&o, "authorization"), Some("<redacted>"));
    assert!(!events(&o).contains("tok-123"));
}

#[tokio::test]
async fn userinfo_in_the_url_becomes_basic_auth_and_stays_out_of_the_facts() {
    let server = HttpServer::start(Routes::new().at("/", Reply::echo())).await;
    let url = server.url("/").replace("http://", "http://user:pw%40x@");
    let o = run(&request(&url, None)).await;
    assert_ok(&o);
    // base64("user:pw@x")
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Basic dXNlcjpwd0B4")
    );
    assert_eq!(
        o.facts.final_url,
        server.url("/").replace("http://", "http://user@")
    );
    assert!(!format!("{o:?}").contains("pw%40x"), "password leaked");
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_host() {
    let other = match HttpServer::start_on(
        "127.0.0.2:0".parse().unwrap(),
        Routes::new().at("/", Reply::echo()),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: credentials_do_not_follow_a_redirect_to_another_host: cannot bind 127.0.0.2 ({e})");
            return;
        }
    };
    let target = other.url("/");
    let server = HttpServer::start(
        Routes::new()
            .at("/same", Reply::redirect(302, "/echo"))
            .at("/away", Reply::redirect(302, &target))
            .at("/echo", Reply::echo()),
    )
    .await;
    let mut req = request(&server.url("/same"), None);
    req.auth = Some(Auth::Bearer("tok".into()));
    assert_ok(&run(&req).await);
    assert_eq!(
        server.requests()[1].header("authorization"),
        Some("Bearer tok")
    );

    req.url = server.url("/away").parse().unwrap();
    let o = run(&req).await;
    assert_ok(&o);
    assert_eq!(o.facts.final_url, target);
    assert_eq!(other.requests()[0].header("authorization"), None);
}

// ---------------------------------------------------------------------------------------------
// Proxies

#[tokio::test]
async fn http_through_a_forward_proxy() {
    let server = HttpServer::start(Routes::new().at("/p", Reply::echo())).await;
    let proxy = Proxy::start_with_auth("pu", "pp").await;
    let mut req = request(&server.url("/p"), None);
    let url_with_creds = proxy.url().replace("http://", "http://pu:pp@");
    req.proxy = Some(url_with_creds.parse().unwrap());
    let o = run(&req).await;
    assert_ok(&o);
    assert_eq!(proxy.forwarded(), 1);
    assert_eq!(proxy.tunnels(), 0);
    // Absolute form to the proxy, and the connection was to the proxy.
    assert_eq!(proxy.requests()[0].uri, server.url("/p"));
    assert_eq!(o.remote_addr, Some(proxy.addr()));
    assert_eq!(server.requests().len(), 1);
    assert_eq!(
        request_header(&o, "proxy-authorization"),
        Some("<redacted>")
    );
    assert!(
        !format!("{o:?}").contains("cHU6cHA"),
        "proxy credentials leaked"
    );

    // Without credentials the proxy's 407 is the response.
    req.proxy = Some(proxy.url().parse().unwrap());
    assert_fails(&run(&req).await, FailureReason::Status, "status 407");
}

#[tokio::test]
async fn https_through_a_connect_tunnel() {
    let t = https_server(&[b"h2", b"http/1.1"]).await;
    let proxy = Proxy::start().await;
    let mut req = request(&t.server.url("/"), Some(&t.ca));
    req.proxy = Some(proxy.url().parse().unwrap());
    let o = run(&req).await;
    assert_ok(&o);
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(proxy.requests()[0].method, "CONNECT");
    assert_eq!(proxy.requests()[0].uri, t.server.addr().to_string());
    assert_eq!(o.facts.version.as_deref(), Some("HTTP/2.0"));
    assert!(o.facts.tls.is_some());
    assert!(o.timings.contains(Phase::Tls));
    assert!(events(&o).contains("tunnel to"), "{}", events(&o));

    // A proxy that refuses the tunnel: no pipe to the origin, a connect failure.
    let strict = Proxy::start_with_auth("u", "p").await;
    req.proxy = Some(strict.url().parse().unwrap());
    assert_fails(
        &run(&req).await,
        FailureReason::Connect,
        "proxy refused CONNECT",
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile peers

#[tokio::test]
async fn a_server_that_never_answers_times_out_waiting_for_the_head() {
    let server = RawServer::never_answers().await;
    let o = run_for(&request(&server.url("/"), None), HOSTILE_DEADLINE).await;
    assert_fails(&o, FailureReason::Timeout, "waiting for the response head");
    // The phase in flight is still reported.
    assert!(o.timings.contains(Phase::Processing));
    assert!(o.timings.contains(Phase::Connect));
}

#[tokio::test]
async fn a_slow_backend_times_out_waiting_for_the_head() {
    let server = HttpServer::start(
        Routes::new().at("/", Reply::text(200, "late").delay(Duration::from_secs(30))),
    )
    .await;
    let o = run_for(&request(&server.url("/"), None), HOSTILE_DEADLINE).await;
    assert_fails(&o, FailureReason::Timeout, "waiting for the response head");
}

#[tokio::test]
async fn a_trickling_server_times_out() {
    let server = RawServer::trickle_response().await;
    let o = run_for(&request(&server.url("/"), None), HOSTILE_DEADLINE).await;
    assert_fails(&o, FailureReason::Timeout, "waiting for the response head");
}

#[tokio::test]
async fn an_endless_body_without_limit_times_out_reading_the_body() {
    let server = RawServer::endless_body().await;
    let o = run_for(&request(&server.url("/"), None), HOSTILE_DEADLINE).await;
    assert_fails(&o, FailureReason::Timeout, "reading the response body");
    assert_eq!(o.facts.status, Some(200));
    assert!(o.facts.body_bytes > 0);
    assert!(o.timings.contains(Phase::Transfer));
}

#[tokio::test]
async fn an_endless_body_with_a_limit_fails_with_body() {
    let server = RawServer::endless_body().await;
    let mut req = request(&server.url("/"), None);
    req.body_size_limit = Some(100_000);
    let o = run_for(&req, HOSTILE_DEADLINE).await;
    assert_fails(&o, FailureReason::Body, "more than 100000 bytes");
}

#[tokio::test]
async fn an_endless_body_with_regexes_is_bounded_by_the_deadline() {
    // Regex checks need the body, but never more than the cap: the probe still ends at the
    // deadline, with memory bounded (16 MiB at ~3 MB/s is not reached in 1 s either way).
    let server = RawServer::endless_body().await;
    let mut req = request(&server.url("/"), None);
    req.checks.fail_if_body_not_matches = vec![Regex::new("never").unwrap()];
    let o = run_for(&req, HOSTILE_DEADLINE).await;
    assert_fails(&o, FailureReason::Timeout, "reading the response body");
}

#[tokio::test]
async fn garbage_fails_with_protocol() {
    let server = RawServer::garbage().await;
    let o = run_for(&request(&server.url("/"), None), HOSTILE_DEADLINE).await;
    assert_fails(&o, FailureReason::Protocol, "no valid response head");
}

#[tokio::test]
async fn a_truncated_body_fails_with_protocol() {
    let server =
        RawServer::reply(&b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly a few bytes"[..])
            .await;
    let o = run_for(&request(&server.url("/"), None), HOSTILE_DEADLINE).await;
    assert_fails(&o, FailureReason::Protocol, "response body broken");
    assert_eq!(o.facts.content_length, Some(100));
}

#[tokio::test]
async fn a_closed_connection_without_response_fails_with_protocol() {
    let server = RawServer::reply(Bytes::new()).await;
    let o = run_for(&request(&server.url("/"), None), HOSTILE_DEADLINE).await;
    assert_fails(&o, FailureReason::Protocol, "no valid response head");
}

#[tokio::test]
async fn https_to_a_plain_http_server_fails_with_tls() {
    let server = HttpServer::start(Routes::new().at("/", Reply::text(200, "ok"))).await;
    let url = server.url("/").replace("http://", "https://");
    let o = run_for(&request(&url, None), HOSTILE_DEADLINE).await;
    assert_fails(&o, FailureReason::Tls, "TLS handshake");
}

/// A kept-alive connection the server closed while it sat in the pool: the next probe dials
/// anew instead of failing (whether the close was seen while idle or only when it sent).
#[tokio::test]
async fn a_kept_connection_the_server_closed_is_dialed_anew() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let answer = |mut s: tokio::net::TcpStream| async move {
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            s
        };
        let first = answer(listener.accept().await.unwrap().0).await;
        // Closed as an idle timeout would, once the answer sits in the client's pool.
        let _ = close_rx.await;
        drop(first);
        let _ = closed_tx.send(());
        drop(answer(listener.accept().await.unwrap().0).await);
    });
    let req = request(&format!("http://{addr}/"), None);
    let mut pool = sonde_probes::http::ConnPool::default();
    let first = sonde_probes::http::probe_pooled(&req, Instant::now() + DEADLINE, &mut pool).await;
    assert_ok(&first);
    assert_eq!(pool.len(), 1, "the first connection is kept");
    close_tx.send(()).unwrap();
    closed_rx.await.unwrap();
    let second = sonde_probes::http::probe_pooled(&req, Instant::now() + DEADLINE, &mut pool).await;
    assert_ok(&second);
    assert_eq!(second.facts.status, Some(200));
    tokio::time::timeout(HANG_GUARD, server)
        .await
        .expect("the server saw a second connection")
        .unwrap();
}
