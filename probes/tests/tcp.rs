//! The tcp probe (blackbox `query_response` dialogue) against the line-protocol fixtures.

use std::time::Duration;

use regex::bytes::Regex;
use sonde_probes::tcp::{probe, TcpOutcome, TcpRequest, TcpStep};
use sonde_probes::tls::{TlsClient, TlsOptions};
use sonde_probes::{FailureReason, Phase, ResolveOptions, Resolver};
use sonde_testkit::lines::LineServer;
use sonde_testkit::pki::{self, Ca};
use tokio::time::Instant;

fn expect(re: &str) -> TcpStep {
    TcpStep::Expect(Regex::new(re).unwrap())
}

fn send(s: &str) -> TcpStep {
    TcpStep::Send(s.into())
}

fn resolver() -> Resolver {
    // Targets are IP literals; should anything try a name, it goes to a closed loopback port.
    Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap()
}

fn request(port: u16, dialogue: Vec<TcpStep>) -> TcpRequest {
    TcpRequest {
        host: "127.0.0.1".into(),
        port,
        resolver: resolver(),
        ip: ResolveOptions::default(),
        tls: false,
        tls_client: TlsClient::new(&TlsOptions::default(), &[]).unwrap(),
        dialogue,
        policy: None,
        unix: None,
    }
}

fn trusting(ca: &Ca, server_name: &str) -> TlsClient {
    TlsClient::new(
        &TlsOptions {
            ca_file: Some(ca.ca_file.clone()),
            server_name: Some(server_name.into()),
            ..Default::default()
        },
        &[],
    )
    .unwrap()
}

async fn run(req: &TcpRequest, deadline: Duration) -> TcpOutcome {
    let d = Instant::now() + deadline;
    // Hang guard: a probe must return within its deadline + 2 s.
    tokio::time::timeout(deadline + Duration::from_secs(2), probe(req, d))
        .await
        .expect("the tcp probe overran its deadline (hang guard)")
}

#[tokio::test]
async fn smtp_dialogue_succeeds() {
    let server = LineServer::smtp().await;
    let req = request(
        server.port(),
        vec![
            expect("^220 "),
            send("EHLO probe"),
            expect("^250 HELP$"),
            send("QUIT"),
            expect("^221 "),
        ],
    );
    let out = run(&req, Duration::from_secs(5)).await;
    assert!(out.success(), "{:?}", out.failure);
    assert!(!out.facts.failed_due_to_regex);
    assert!(out.facts.tls.is_none());
    let t = &out.facts.transcript;
    assert!(t[0].starts_with("< 220 mail.sonde.test ESMTP"), "{t:?}");
    assert_eq!(t[1], "> EHLO probe");
    assert_eq!(
        &t[2..],
        [
            "< 250-mail.sonde.test greets probe",
            "< 250-SIZE 1000000",
            "< 250 HELP",
            "> QUIT",
            "< 221 2.0.0 Bye",
        ]
    );
    assert!(out.timings.contains(Phase::Resolve));
    assert!(out.timings.contains(Phase::Connect));
    assert!(!out.timings.contains(Phase::Tls));
    assert_eq!(out.remote_addr, Some(server.addr()));
}

#[tokio::test]
async fn regex_mismatch_names_the_regex_and_the_last_line() {
    let server = LineServer::smtp().await;
    let req = request(
        server.port(),
        vec![expect("^220 "), send("QUIT"), expect("^250 never")],
    );
    let out = run(&req, Duration::from_secs(5)).await;
    let f = out.failure.expect("must fail");
    assert_eq!(f.reason, FailureReason::Assertion);
    assert!(out.facts.failed_due_to_regex);
    assert!(f.message.contains("/^250 never/"), "{}", f.message);
    assert!(f.message.contains("\"221 2.0.0 Bye\""), "{}", f.message);
    assert!(f.message.contains("step 3/3"), "{}", f.message);
}

#[tokio::test]
async fn peer_closing_without_a_line_is_a_protocol_failure() {
    let server = LineServer::close_at_once().await;
    let out = run(
        &request(server.port(), vec![expect("^220")]),
        Duration::from_secs(5),
    )
    .await;
    let f = out.failure.expect("must fail");
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(
        f.message.contains("without sending a line"),
        "{}",
        f.message
    );
    assert!(
        out.facts.failed_due_to_regex,
        "blackbox sets it on any EOF without match"
    );
}

#[tokio::test]
async fn groups_expand_into_later_sends() {
    let server = LineServer::smtp().await;
    // The banner's token is random per connection: only a real substitution echoes it back.
    let req = request(
        server.port(),
        vec![
            expect("^220 (\\S+) ESMTP .*token=(?P<token>[0-9a-f]+)$"),
            send("ECHO host=$1 token=${token} lit=$$1"),
            expect("^250 host=mail\\.sonde\\.test token=[0-9a-f]+ lit=\\$1$"),
            send("QUIT"),
        ],
    );
    let out = run(&req, Duration::from_secs(5)).await;
    assert!(out.success(), "{:?}", out.failure);
    let t = &out.facts.transcript;
    let banner_token = t[0].rsplit("token=").next().unwrap();
    assert_eq!(
        t[1],
        format!("> ECHO host=mail.sonde.test token={banner_token} lit=$1")
    );
    assert_eq!(
        t[2],
        format!("< 250 host=mail.sonde.test token={banner_token} lit=$1")
    );
}

#[tokio::test]
async fn starttls_upgrades_mid_dialogue() {
    let ca = Ca::new("sonde test CA");
    let leaf = ca.leaf(&["mail.sonde.test"], time::Duration::days(30), &[]);
    let server = LineServer::smtp_starttls(&leaf).await;
    let mut req = request(
        server.port(),
        vec![
            expect("^220 "),
            send("EHLO probe"),
            // Matches mid-reply: "250 HELP" stays buffered and is skipped by the next expect.
            expect("^250-STARTTLS$"),
            send("STARTTLS"),
            expect("^220 "),
            TcpStep::StartTls,
            send("EHLO again"),
            expect("^250 HELP$"),
            send("ECHO over tls"),
            expect("^250 over tls$"),
            send("QUIT"),
            expect("^221 "),
        ],
    );
    req.tls_client = trusting(&ca, "mail.sonde.test");
    let out = run(&req, Duration::from_secs(5)).await;
    assert!(out.success(), "{:?}", out.failure);
    let tls = out.facts.tls.as_ref().expect("TLS facts after STARTTLS");
    assert!(tls.verified);
    assert_eq!(tls.server_name, "mail.sonde.test");
    assert_eq!(tls.chain.len(), 1);
    assert_eq!(tls.chain[0].not_after, leaf.not_after);
    assert!(out.timings.contains(Phase::Tls));
    assert_eq!(server.wait_tls_handshakes(1).await, 1);
    assert_eq!(server.sni_seen(), vec![Some("mail.sonde.test".to_string())]);
    let t = &out.facts.transcript;
    let upgrade = t.iter().position(|l| l.starts_with("-- STARTTLS")).unwrap();
    assert!(
        !t[upgrade..]
            .iter()
            .any(|l| l.contains("STARTTLS") && l.starts_with("< ")),
        "after the upgrade the server no longer offers STARTTLS: {t:?}"
    );
}

#[tokio::test]
async fn starttls_with_an_untrusted_certificate_fails_tls() {
    let ca = Ca::new("sonde test CA");
    let other = Ca::new("someone else");
    let leaf = ca.leaf(&["mail.sonde.test"], time::Duration::days(30), &[]);
    let server = LineServer::smtp_starttls(&leaf).await;
    let mut req = request(
        server.port(),
        vec![
            expect("^220 "),
            send("STARTTLS"),
            expect("^220 "),
            TcpStep::StartTls,
        ],
    );
    req.tls_client = trusting(&other, "mail.sonde.test");
    let out = run(&req, Duration::from_secs(5)).await;
    let f = out.failure.expect("must fail");
    assert_eq!(f.reason, FailureReason::Tls, "{}", f.message);
    assert!(!out.facts.failed_due_to_regex);
}

#[tokio::test]
async fn plaintext_sent_before_the_handshake_is_refused() {
    let ca = Ca::new("sonde test CA");
    let leaf = ca.leaf(&["mail.sonde.test"], time::Duration::days(30), &[]);
    let server = LineServer::starttls_injection(&leaf).await;
    let mut req = request(
        server.port(),
        vec![
            expect("^220 "),
            send("STARTTLS"),
            expect("^220 "),
            TcpStep::StartTls,
            expect("^250"),
        ],
    );
    req.tls_client = trusting(&ca, "mail.sonde.test");
    let out = run(&req, Duration::from_secs(5)).await;
    let f = out.failure.expect("must fail");
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(f.message.contains("refusing to upgrade"), "{}", f.message);
    assert!(f.message.contains("250 injected"), "{}", f.message);
    assert_eq!(server.tls_handshakes(), 0);
}

#[tokio::test]
async fn tls_from_the_start() {
    let ca = Ca::new("sonde test CA");
    let leaf = ca.leaf(&["mail.sonde.test"], time::Duration::days(30), &[]);
    let server = LineServer::implicit_tls(pki::server_config(&leaf, &[], None)).await;
    let mut req = request(
        server.port(),
        vec![expect("^220 "), send("QUIT"), expect("^221 ")],
    );
    req.tls = true;
    req.tls_client = trusting(&ca, "mail.sonde.test");
    let out = run(&req, Duration::from_secs(5)).await;
    assert!(out.success(), "{:?}", out.failure);
    let tls = out.facts.tls.expect("TLS facts");
    assert!(tls.verified);
    assert!(tls.version.starts_with("TLS 1."), "{}", tls.version);
    assert_eq!(server.wait_tls_handshakes(1).await, 1);

    // The same server spoken to in plaintext: no line ever comes (the server waits for a
    // ClientHello), so the probe times out instead of matching garbage.
    let mut plain = request(server.port(), vec![expect("^220 ")]);
    plain.tls = false;
    let out = run(&plain, Duration::from_secs(1)).await;
    assert_eq!(out.failure.unwrap().reason, FailureReason::Timeout);
}

#[tokio::test]
async fn connection_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = run(&request(port, vec![expect("^220")]), Duration::from_secs(5)).await;
    let f = out.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Connect);
    assert!(f.message.contains("127.0.0.1"), "{}", f.message);
}

#[tokio::test]
async fn silent_peer_times_out_naming_the_pending_expect() {
    let server = LineServer::silent().await;
    let out = run(
        &request(server.port(), vec![expect("^220 ")]),
        Duration::from_secs(1),
    )
    .await;
    let f = out.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Timeout);
    assert!(f.message.contains("/^220 /"), "{}", f.message);
    assert!(
        !out.facts.failed_due_to_regex,
        "as blackbox: a timeout is not a regex failure"
    );
    assert!(out.timings.contains(Phase::Connect));
}

#[tokio::test]
async fn endless_line_is_cut_at_64_kib() {
    let server = LineServer::endless_line().await;
    let out = run(
        &request(server.port(), vec![expect("^220 ")]),
        Duration::from_secs(5),
    )
    .await;
    let f = out.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(f.message.contains("longer than 64 KiB"), "{}", f.message);
}

#[tokio::test]
async fn expect_bytes_exact_mismatch_and_short() {
    let server = LineServer::send_and_close(b"\x00\x01hello\r\nrest".to_vec()).await;
    let ok = run(
        &request(
            server.port(),
            vec![
                TcpStep::ExpectBytes(b"\x00\x01hel".to_vec()),
                // Line reading goes on from where the bytes stopped.
                expect("^lo$"),
                expect("^rest$"),
            ],
        ),
        Duration::from_secs(5),
    )
    .await;
    assert!(ok.success(), "{:?}", ok.failure);

    let bad = run(
        &request(
            server.port(),
            vec![TcpStep::ExpectBytes(b"\x00\x02".to_vec())],
        ),
        Duration::from_secs(5),
    )
    .await;
    let f = bad.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Assertion);
    assert!(f.message.contains("\\u{0}\\u{2}"), "{}", f.message);

    let short = run(
        &request(server.port(), vec![TcpStep::ExpectBytes(vec![b'x'; 100])]),
        Duration::from_secs(5),
    )
    .await;
    let f = short.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(f.message.contains("13 of 100"), "{}", f.message);
}

#[tokio::test]
async fn final_line_without_newline_still_counts() {
    // bufio.ScanLines yields an unterminated last line at EOF; so do we.
    let server = LineServer::send_and_close(b"first\r\nlast words".to_vec()).await;
    let out = run(
        &request(server.port(), vec![expect("^last words$")]),
        Duration::from_secs(5),
    )
    .await;
    assert!(out.success(), "{:?}", out.failure);
}

/// A TLS 1.3 server checks the client certificate after the client's handshake is done, so the
/// refusal arrives as an alert on the first read: reason tls, not a regex or protocol failure.
#[tokio::test]
async fn missing_client_certificate_surfaces_on_the_first_read() {
    let ca = Ca::new("sonde test CA");
    let client_ca = Ca::new("sonde client CA");
    let leaf = ca.leaf(&["mail.sonde.test"], time::Duration::days(30), &[]);
    let server = LineServer::implicit_tls(pki::server_config(&leaf, &[], Some(&client_ca))).await;
    let mut req = request(server.port(), vec![expect("^220 ")]);
    req.tls = true;
    req.tls_client = trusting(&ca, "mail.sonde.test");
    let out = run(&req, Duration::from_secs(5)).await;
    let f = out
        .failure
        .expect("the server requires a client certificate");
    assert_eq!(f.reason, FailureReason::Tls, "{}", f.message);
    assert!(f.message.contains("step 1/1"), "{}", f.message);
    assert!(!out.facts.failed_due_to_regex);

    let me = client_ca.leaf(&["probe.sonde.test"], time::Duration::days(30), &[]);
    req.tls_client = TlsClient::new(
        &TlsOptions {
            ca_file: Some(ca.ca_file.clone()),
            server_name: Some("mail.sonde.test".into()),
            cert_file: Some(me.cert_file.clone()),
            key_file: Some(me.key_file.clone()),
            ..Default::default()
        },
        &[],
    )
    .unwrap();
    let out = run(&req, Duration::from_secs(5)).await;
    assert!(out.success(), "{:?}", out.failure);
}
