//! The handshake-only tls probe against TLS fixtures built from the generated PKI.

use std::time::Duration;

use sonde_probes::tls::{probe, TlsClient, TlsOptions, TlsOutcome, TlsRequest, TlsVersion};
use sonde_probes::{FailureReason, Phase, ResolveOptions, Resolver};
use sonde_testkit::lines::LineServer;
use sonde_testkit::pki::{self, Ca, Leaf};
use time::Duration as Span;
use tokio::time::Instant;

fn client(opts: TlsOptions) -> TlsClient {
    TlsClient::new(&opts, &[]).unwrap()
}

fn trusting(ca: &Ca) -> TlsOptions {
    TlsOptions {
        ca_file: Some(ca.ca_file.clone()),
        ..Default::default()
    }
}

fn request(server: &LineServer, client: TlsClient) -> TlsRequest {
    TlsRequest {
        host: "127.0.0.1".into(),
        port: server.port(),
        // The host is an IP literal; nothing is ever resolved.
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        client,
    }
}

async fn serve(leaf: &Leaf) -> LineServer {
    LineServer::implicit_tls(pki::server_config(leaf, &[], None)).await
}

async fn run(req: &TlsRequest, deadline: Duration) -> TlsOutcome {
    let d = Instant::now() + deadline;
    // Hang guard: a probe must return within its deadline + 2 s.
    tokio::time::timeout(deadline + Duration::from_secs(2), probe(req, d))
        .await
        .expect("the tls probe overran its deadline (hang guard)")
}

#[tokio::test]
async fn verified_handshake_reports_the_session() {
    let ca = Ca::new("sonde test CA");
    let leaf = ca.leaf(&["127.0.0.1", "tls.sonde.test"], Span::days(30), &[]);
    let server = serve(&leaf).await;
    let out = run(
        &request(&server, client(trusting(&ca))),
        Duration::from_secs(5),
    )
    .await;
    assert!(out.success(), "{:?}", out.failure);
    let s = out.facts.session.expect("session facts");
    assert!(s.verified);
    assert_eq!(s.version, "TLS 1.3");
    assert!(s.cipher.starts_with("TLS13_"), "{}", s.cipher);
    assert_eq!(s.server_name, "127.0.0.1");
    assert_eq!(s.chain.len(), 1);
    let leaf_facts = &s.chain[0];
    assert_eq!(leaf_facts.not_after, leaf.not_after);
    assert!(
        leaf_facts.subject.contains("CN=127.0.0.1"),
        "{}",
        leaf_facts.subject
    );
    assert!(
        leaf_facts.issuer.contains("CN=sonde test CA"),
        "{}",
        leaf_facts.issuer
    );
    assert_eq!(
        leaf_facts.subject_alt_names,
        vec!["127.0.0.1".to_string(), "tls.sonde.test".to_string()]
    );
    assert_eq!(leaf_facts.fingerprint_sha256.len(), 64);
    assert_eq!(s.earliest_not_after(), Some(leaf.not_after));
    for p in [Phase::Resolve, Phase::Connect, Phase::Tls] {
        assert!(out.timings.contains(p), "phase {p:?} missing");
    }
    assert_eq!(server.wait_tls_handshakes(1).await, 1);
    // No SNI for an IP address (RFC 6066 §3).
    assert_eq!(server.sni_seen(), vec![None]);
}

#[tokio::test]
async fn tls12_can_be_forced() {
    let ca = Ca::new("sonde test CA");
    let leaf = ca.leaf(&["127.0.0.1"], Span::days(30), &[]);
    let server = serve(&leaf).await;
    let opts = TlsOptions {
        max_version: Some(TlsVersion::Tls12),
        ..trusting(&ca)
    };
    let out = run(&request(&server, client(opts)), Duration::from_secs(5)).await;
    assert!(out.success(), "{:?}", out.failure);
    assert_eq!(out.facts.session.unwrap().version, "TLS 1.2");
}

/// Certificate problems fail with reason tls and a message a human can act on.
#[tokio::test]
async fn rejected_certificates_say_why() {
    let ca = Ca::new("sonde test CA");
    let stranger = Ca::new("some other CA");
    let cases: Vec<(&str, Leaf, TlsOptions, &[&str])> = vec![
        (
            "unknown CA",
            stranger.leaf(&["127.0.0.1"], Span::days(30), &[]),
            trusting(&ca),
            &[
                "TLS handshake with 127.0.0.1 failed",
                "invalid peer certificate: signed by an unknown authority",
            ],
        ),
        (
            "wrong host name",
            ca.leaf(&["other.sonde.test"], Span::days(30), &[]),
            TlsOptions {
                server_name: Some("tls.sonde.test".into()),
                ..trusting(&ca)
            },
            &[
                "invalid peer certificate: not valid for name \"tls.sonde.test\"; it is valid \
                 for: other.sonde.test",
            ],
        ),
        (
            "expired leaf",
            ca.leaf(&["127.0.0.1"], Span::days(-2), &[]),
            trusting(&ca),
            &["invalid peer certificate: expired at ", "(it is now "],
        ),
    ];
    for (what, leaf, opts, parts) in cases {
        let server = serve(&leaf).await;
        let out = run(&request(&server, client(opts)), Duration::from_secs(5)).await;
        let f = out.failure.unwrap_or_else(|| panic!("{what}: must fail"));
        eprintln!("{what}: {}", f.message);
        assert_eq!(f.reason, FailureReason::Tls, "{what}: {}", f.message);
        for p in parts {
            assert!(f.message.contains(p), "{what}: {:?} lacks {p:?}", f.message);
        }
        assert!(out.facts.session.is_none(), "{what}");
        assert!(
            out.timings.contains(Phase::Tls),
            "{what}: the failed handshake is timed"
        );
    }
}

#[tokio::test]
async fn insecure_skip_verify_still_reports_the_chain() {
    let stranger = Ca::new("some other CA");
    let inter = stranger.intermediate("other intermediate", Span::days(20));
    // Untrusted issuer, wrong name, expired: everything a verifier would reject.
    let leaf = inter.leaf(&["elsewhere.sonde.test"], Span::days(-1), &[&inter]);
    let server = serve(&leaf).await;
    let opts = TlsOptions {
        insecure_skip_verify: true,
        ..Default::default()
    };
    let out = run(&request(&server, client(opts)), Duration::from_secs(5)).await;
    assert!(out.success(), "{:?}", out.failure);
    let s = out.facts.session.unwrap();
    assert!(!s.verified);
    assert_eq!(s.chain.len(), 2);
    assert_eq!(s.chain[0].not_after, leaf.not_after);
    assert!(
        s.chain[1].subject.contains("other intermediate"),
        "{}",
        s.chain[1].subject
    );
    assert_eq!(s.earliest_not_after(), Some(leaf.not_after));
}

#[tokio::test]
async fn server_name_override_is_sent_and_verified() {
    let ca = Ca::new("sonde test CA");
    let leaf = ca.leaf(&["tls.sonde.test"], Span::days(30), &[]);
    let server = serve(&leaf).await;

    // Dialled by IP, the certificate does not match…
    let out = run(
        &request(&server, client(trusting(&ca))),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(out.failure.unwrap().reason, FailureReason::Tls);

    // …with server_name it does, and that name goes out as SNI.
    let opts = TlsOptions {
        server_name: Some("tls.sonde.test".into()),
        ..trusting(&ca)
    };
    let out = run(&request(&server, client(opts)), Duration::from_secs(5)).await;
    assert!(out.success(), "{:?}", out.failure);
    assert_eq!(out.facts.session.unwrap().server_name, "tls.sonde.test");
    assert_eq!(server.wait_tls_handshakes(1).await, 1);
    assert_eq!(
        server.sni_seen().last(),
        Some(&Some("tls.sonde.test".to_string()))
    );
}

#[tokio::test]
async fn mutual_tls_client_certificate() {
    let ca = Ca::new("sonde test CA");
    let client_ca = Ca::new("sonde client CA");
    let leaf = ca.leaf(&["127.0.0.1"], Span::days(30), &[]);
    let server = LineServer::implicit_tls(pki::server_config(&leaf, &[], Some(&client_ca))).await;

    let me = client_ca.leaf(&["probe.sonde.test"], Span::days(30), &[]);
    let opts = TlsOptions {
        cert_file: Some(me.cert_file.clone()),
        key_file: Some(me.key_file.clone()),
        ..trusting(&ca)
    };
    let out = run(&request(&server, client(opts)), Duration::from_secs(5)).await;
    assert!(out.success(), "{:?}", out.failure);
    assert_eq!(server.wait_tls_handshakes(1).await, 1);
    assert_eq!(server.client_certificates_seen(), 1);

    // Without a certificate, under TLS 1.2 the server's refusal comes inside the handshake.
    let opts = TlsOptions {
        max_version: Some(TlsVersion::Tls12),
        ..trusting(&ca)
    };
    let out = run(&request(&server, client(opts)), Duration::from_secs(5)).await;
    let f = out
        .failure
        .expect("the server requires a client certificate");
    assert_eq!(f.reason, FailureReason::Tls, "{}", f.message);
    assert_eq!(server.client_certificates_seen(), 1);
}

#[tokio::test]
async fn earliest_expiry_covers_the_whole_chain() {
    let root = Ca::new("sonde root");
    let inter = root.intermediate("short-lived intermediate", Span::days(10));
    let leaf = inter.leaf(&["127.0.0.1"], Span::days(90), &[&inter]);
    let server = serve(&leaf).await;
    let out = run(
        &request(&server, client(trusting(&root))),
        Duration::from_secs(5),
    )
    .await;
    assert!(out.success(), "{:?}", out.failure);
    let s = out.facts.session.unwrap();
    assert_eq!(s.chain.len(), 2);
    let (_, inter_cert) = x509_parser::parse_x509_certificate(inter.cert_der.as_ref()).unwrap();
    let inter_not_after = inter_cert.validity().not_after.timestamp();
    assert!(
        inter_not_after < leaf.not_after,
        "the fixture's intermediate expires first"
    );
    assert_eq!(s.chain[1].not_after, inter_not_after);
    assert_eq!(s.earliest_not_after(), Some(inter_not_after));
}

#[tokio::test]
async fn connection_refused_and_silent_server() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let silent = LineServer::silent().await;
    let mut req = request(&silent, TlsClient::system(&[]));
    let out = run(&req, Duration::from_secs(1)).await;
    let f = out.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Timeout);
    assert!(f.message.contains("TLS handshake"), "{}", f.message);
    assert!(out.timings.contains(Phase::Connect));

    req.port = port;
    let out = run(&req, Duration::from_secs(5)).await;
    assert_eq!(out.failure.unwrap().reason, FailureReason::Connect);
}

#[tokio::test]
async fn plaintext_peer_is_a_tls_failure() {
    let server = LineServer::smtp().await;
    let out = run(
        &request(&server, TlsClient::system(&[])),
        Duration::from_secs(5),
    )
    .await;
    let f = out.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Tls, "{}", f.message);
}
