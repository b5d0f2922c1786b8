//! The gRPC health probe against the in-process health server (h2c and TLS) and hostile peers.

use std::time::Duration;

use sonde_probes::grpc::{code, probe, serving, GrpcOutcome, GrpcRequest, ALPN_H2};
use sonde_probes::tls::{TlsClient, TlsOptions};
use sonde_probes::{FailureReason, Phase, ResolveOptions, Resolver};
use sonde_testkit::grpc::{self as fixture, GrpcHealthServer};
use sonde_testkit::http::RawServer;
use sonde_testkit::pki::{self, Ca};
use tokio::time::Instant;

fn resolver() -> Resolver {
    // Targets are IP literals; should anything try a name, it goes to a closed loopback port.
    Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap()
}

fn request(port: u16, service: &str) -> GrpcRequest {
    GrpcRequest {
        host: "127.0.0.1".into(),
        port,
        resolver: resolver(),
        ip: ResolveOptions::default(),
        tls: false,
        tls_client: TlsClient::new(&TlsOptions::default(), ALPN_H2).unwrap(),
        service: service.into(),
        policy: None,
    }
}

fn trusting(ca: &Ca) -> TlsClient {
    TlsClient::new(
        &TlsOptions {
            ca_file: Some(ca.ca_file.clone()),
            ..Default::default()
        },
        ALPN_H2,
    )
    .unwrap()
}

async fn run(req: &GrpcRequest, deadline: Duration) -> GrpcOutcome {
    let d = Instant::now() + deadline;
    // Hang guard: a probe must return within its deadline + 2 s.
    tokio::time::timeout(deadline + Duration::from_secs(2), probe(req, d))
        .await
        .expect("the grpc probe overran its deadline (hang guard)")
}

#[tokio::test]
async fn whole_server_serving_succeeds() {
    let server = GrpcHealthServer::start().await;
    let out = run(&request(server.port(), ""), Duration::from_secs(5)).await;
    assert!(out.success(), "{:?} {:#?}", out.failure, out.events);
    assert_eq!(out.facts.grpc_status, Some(code::OK));
    assert_eq!(out.facts.serving_status, Some(serving::SERVING));
    assert_eq!(out.facts.http_status, Some(200));
    assert!(out.facts.tls.is_none());
    assert_eq!(out.remote_addr, Some(server.addr()));
    for p in [Phase::Resolve, Phase::Connect, Phase::Processing] {
        assert!(out.timings.contains(p), "no {p:?} in {:?}", out.timings);
    }
    assert!(!out.timings.contains(Phase::Tls));
    // The server decoded the (empty) service name from what the probe sent.
    assert_eq!(server.asked(), vec![String::new()]);
}

#[tokio::test]
async fn named_service_serving_succeeds() {
    let server = GrpcHealthServer::start().await;
    server.set("shop.Checkout", fixture::SERVING);
    let out = run(
        &request(server.port(), "shop.Checkout"),
        Duration::from_secs(5),
    )
    .await;
    assert!(out.success(), "{:?}", out.failure);
    assert_eq!(out.facts.serving_status, Some(serving::SERVING));
    assert_eq!(server.asked(), vec!["shop.Checkout".to_string()]);
}

#[tokio::test]
async fn not_serving_fails_with_status() {
    let server = GrpcHealthServer::start().await;
    server.set("shop.Checkout", fixture::NOT_SERVING);
    let out = run(
        &request(server.port(), "shop.Checkout"),
        Duration::from_secs(5),
    )
    .await;
    let f = out.failure.as_ref().expect("NOT_SERVING must fail");
    assert_eq!(f.reason, FailureReason::Status, "{f}");
    assert!(f.message.contains("NOT_SERVING"), "{f}");
    assert!(f.message.contains("expected SERVING"), "{f}");
    // The call itself succeeded: status OK, the response says NOT_SERVING.
    assert_eq!(out.facts.grpc_status, Some(code::OK));
    assert_eq!(out.facts.serving_status, Some(serving::NOT_SERVING));
}

#[tokio::test]
async fn serving_status_unknown_fails() {
    // UNKNOWN is the proto3 default, sent as an empty message: decoded as 0, not as "absent".
    let server = GrpcHealthServer::start().await;
    server.set("", fixture::UNKNOWN);
    let out = run(&request(server.port(), ""), Duration::from_secs(5)).await;
    assert_eq!(out.failure.as_ref().unwrap().reason, FailureReason::Status);
    assert_eq!(out.facts.grpc_status, Some(code::OK));
    assert_eq!(out.facts.serving_status, Some(serving::UNKNOWN));
}

#[tokio::test]
async fn unknown_service_is_not_found() {
    let server = GrpcHealthServer::start().await;
    let out = run(&request(server.port(), "no.Such"), Duration::from_secs(5)).await;
    let f = out.failure.as_ref().expect("an unknown service must fail");
    assert_eq!(f.reason, FailureReason::Status, "{f}");
    assert!(f.message.contains("NOT_FOUND"), "{f}");
    assert!(f.message.contains("unknown service"), "{f}");
    assert_eq!(out.facts.grpc_status, Some(code::NOT_FOUND));
    assert_eq!(out.facts.grpc_message.as_deref(), Some("unknown service"));
    assert_eq!(out.facts.serving_status, None);
}

#[tokio::test]
async fn tls_with_generated_ca_succeeds() {
    let ca = Ca::new("grpc test CA");
    let leaf = ca.leaf(&["127.0.0.1"], time::Duration::days(10), &[]);
    let server = GrpcHealthServer::start_tls(pki::server_config(&leaf, &[b"h2"], None)).await;
    let mut req = request(server.port(), "");
    req.tls = true;
    req.tls_client = trusting(&ca);
    let out = run(&req, Duration::from_secs(5)).await;
    assert!(out.success(), "{:?} {:#?}", out.failure, out.events);
    let tls = out.facts.tls.as_ref().expect("TLS facts");
    assert_eq!(tls.alpn.as_deref(), Some("h2"));
    assert!(tls.verified);
    assert_eq!(tls.earliest_not_after(), Some(leaf.not_after));
    assert!(out.timings.contains(Phase::Tls));
    assert_eq!(out.facts.serving_status, Some(serving::SERVING));
}

#[tokio::test]
async fn tls_with_wrong_ca_fails_unavailable() {
    let ca = Ca::new("grpc test CA");
    let other = Ca::new("some other CA");
    let leaf = ca.leaf(&["127.0.0.1"], time::Duration::days(10), &[]);
    let server = GrpcHealthServer::start_tls(pki::server_config(&leaf, &[b"h2"], None)).await;
    let mut req = request(server.port(), "");
    req.tls = true;
    req.tls_client = trusting(&other);
    let out = run(&req, Duration::from_secs(5)).await;
    let f = out
        .failure
        .as_ref()
        .expect("an untrusted certificate must fail");
    assert_eq!(f.reason, FailureReason::Tls, "{f}");
    assert!(f.message.contains("unknown authority"), "{f}");
    // grpc-go reports a failed handshake as UNAVAILABLE, and so does blackbox's gauge.
    assert_eq!(out.facts.grpc_status, Some(code::UNAVAILABLE));
    assert!(server.asked().is_empty());
}

#[tokio::test]
async fn plaintext_probe_against_tls_server_fails() {
    let ca = Ca::new("grpc test CA");
    let leaf = ca.leaf(&["127.0.0.1"], time::Duration::days(10), &[]);
    let server = GrpcHealthServer::start_tls(pki::server_config(&leaf, &[b"h2"], None)).await;
    let out = run(&request(server.port(), ""), Duration::from_secs(3)).await;
    assert!(!out.success());
    assert_ne!(out.facts.grpc_status, Some(code::OK));
}

#[tokio::test]
async fn closed_port_fails_connect() {
    // Bind and drop: the port is (very likely) closed for the probe's lifetime.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = run(&request(port, ""), Duration::from_secs(5)).await;
    let f = out.failure.as_ref().expect("a closed port must fail");
    assert_eq!(f.reason, FailureReason::Connect, "{f}");
    assert_eq!(out.facts.grpc_status, Some(code::UNAVAILABLE));
    assert!(out.timings.contains(Phase::Connect));
}

#[tokio::test]
async fn silent_server_times_out_at_deadline() {
    // Hang guard: the peer accepts and never answers; the probe must give up at its deadline.
    let server = RawServer::never_answers().await;
    let req = request(server.addr().port(), "");
    let out = run(&req, Duration::from_millis(500)).await;
    let f = out.failure.as_ref().expect("a silent server must fail");
    assert_eq!(f.reason, FailureReason::Timeout, "{f}");
    assert_eq!(out.facts.grpc_status, Some(code::DEADLINE_EXCEEDED));
    // The phase in flight when the deadline passed is still reported.
    assert!(out.timings.contains(Phase::Processing), "{:?}", out.timings);
}

#[tokio::test]
async fn http1_server_is_not_grpc() {
    // A plain HTTP/1.1 answer to an h2c preface is garbage to an HTTP/2 client.
    let server = RawServer::reply("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    let out = run(&request(server.addr().port(), ""), Duration::from_secs(3)).await;
    let f = out.failure.as_ref().expect("an HTTP/1.1 server must fail");
    assert_eq!(f.reason, FailureReason::Protocol, "{f}");
    assert_ne!(out.facts.grpc_status, Some(code::OK));
}

#[tokio::test]
async fn http2_web_server_404_maps_to_unimplemented() {
    // An HTTP/2 server that is not gRPC at all (no route: 404).
    let ca = Ca::new("h2 CA");
    let leaf = ca.leaf(&["127.0.0.1"], time::Duration::days(10), &[]);
    let server = sonde_testkit::http::HttpServer::start_tls(
        sonde_testkit::http::Routes::new(),
        pki::server_config(&leaf, &[b"h2"], None),
    )
    .await;
    let mut req = request(server.addr().port(), "");
    req.tls = true;
    req.tls_client = trusting(&ca);
    let out = run(&req, Duration::from_secs(5)).await;
    let f = out
        .failure
        .as_ref()
        .expect("a 404 from a web server must fail");
    assert_eq!(f.reason, FailureReason::Protocol, "{f}");
    assert!(f.message.contains("HTTP status 404"), "{f}");
    assert_eq!(out.facts.http_status, Some(404));
    // gRPC's HTTP-to-status mapping: 404 → UNIMPLEMENTED.
    assert_eq!(out.facts.grpc_status, Some(code::UNIMPLEMENTED));
}
