//! The WebSocket client against the in-process fixtures of sonde-testkit: the scriptable echo
//! server (hostile behaviour triggered by `!` commands) and the XMPP-over-WebSocket login.

use std::time::Duration;

use sonde_probes::tls::{TlsClient, TlsOptions};
use sonde_probes::ws::{
    connect, Closed, ExpectResult, Payload, WsConn, WsConnectFacts, WsConnectRequest,
};
use sonde_probes::{FailureReason, Outcome, Phase, ResolveOptions, Resolver};
use sonde_testkit::pki::{self, Ca};
use sonde_testkit::ws::{Subprotocol, WsOptions, WsServer};
use sonde_testkit::xmpp::{plain_credential, XmppOptions, XmppServer};
use time::Duration as Span;
use tokio::time::Instant;

/// Every wait in these tests is bounded by this hang guard; no test asserts on timing.
const HANG_GUARD: Duration = Duration::from_secs(2);

fn request(url: String) -> WsConnectRequest {
    WsConnectRequest {
        url,
        headers: vec![],
        subprotocols: vec![],
        // Hosts are IP literals; nothing is ever resolved.
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        tls_client: TlsClient::new(&TlsOptions::default(), &[b"http/1.1"]).unwrap(),
        heartbeat: None,
        inbox_limit: 100,
        max_frame_size: 64 * 1024,
    }
}

fn soon(d: Duration) -> Instant {
    Instant::now() + d
}

async fn open(req: &WsConnectRequest) -> (Outcome<WsConnectFacts>, Option<WsConn>) {
    let deadline = Duration::from_secs(5);
    tokio::time::timeout(deadline + HANG_GUARD, connect(req, soon(deadline)))
        .await
        .expect("connect overran its deadline (hang guard)")
}

async fn open_ok(req: &WsConnectRequest) -> WsConn {
    let (out, conn) = open(req).await;
    assert!(out.success(), "{:?}", out.failure);
    conn.expect("a connection")
}

fn text(s: &str) -> Payload {
    Payload::Text(s.to_string())
}

async fn send(conn: &WsConn, s: &str) {
    conn.send(text(s), soon(Duration::from_secs(2)))
        .await
        .expect("send");
}

/// Expect a text frame satisfying `pred` within `within` (hang guard: within + 2 s).
async fn expect(
    conn: &WsConn,
    within: Duration,
    pred: impl Fn(&str) -> bool + Send,
) -> ExpectResult {
    let mut m = move |p: &Payload| matches!(p, Payload::Text(t) if pred(t));
    tokio::time::timeout(within + HANG_GUARD, conn.expect(&mut m, soon(within), 10))
        .await
        .expect("expect overran its deadline (hang guard)")
}

fn as_text(p: &Payload) -> &str {
    match p {
        Payload::Text(t) => t,
        Payload::Binary(_) => panic!("binary frame where text was expected"),
    }
}

#[tokio::test]
async fn connect_send_and_expect_skipping_noise() {
    let server = WsServer::start(WsOptions {
        noise_before_echo: 3,
        ..Default::default()
    })
    .await;
    let mut req = request(server.url("/chat"));
    req.headers = vec![("X-Probe".into(), "sonde".into())];
    let (out, conn) = open(&req).await;
    assert!(out.success(), "{:?}", out.failure);
    assert_eq!(out.facts.status, Some(101));
    assert!(out.timings.contains(Phase::Resolve));
    assert!(out.timings.contains(Phase::Connect));
    assert!(out.timings.contains(Phase::Processing));
    assert!(!out.timings.contains(Phase::Tls));
    assert_eq!(out.remote_addr, Some(server.addr()));
    assert!(out
        .facts
        .response_headers
        .iter()
        .any(|(n, v)| n == "upgrade" && v.eq_ignore_ascii_case("websocket")));
    assert!(server
        .last_request_headers()
        .contains(&("x-probe".into(), "sonde".into())));
    let conn = conn.unwrap();

    let sent_at = conn
        .send(text("hello"), soon(Duration::from_secs(2)))
        .await
        .unwrap();
    let r = expect(&conn, Duration::from_secs(5), |t| t == "hello").await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    let matched = r.matched.expect("matched frame");
    assert_eq!(matched.payload, text("hello"));
    assert!(matched.received_at >= sent_at);
    // The three noise frames came first and were skipped, in order, and recorded.
    assert_eq!(r.skipped_count, 3);
    let skipped: Vec<&str> = r.skipped.iter().map(|f| as_text(&f.payload)).collect();
    assert_eq!(
        skipped,
        [r#"{"noise":1}"#, r#"{"noise":2}"#, r#"{"noise":3}"#]
    );

    // Binary frames round-trip as binary.
    let bin = Payload::Binary(bytes::Bytes::from_static(&[0, 1, 2, 255]));
    conn.send(bin.clone(), soon(Duration::from_secs(2)))
        .await
        .unwrap();
    let mut is_bin = |p: &Payload| matches!(p, Payload::Binary(_));
    let r = conn
        .expect(&mut is_bin, soon(Duration::from_secs(5)), 10)
        .await;
    assert_eq!(r.matched.unwrap().payload, bin);
    assert!(conn.closed().is_none());
}

#[tokio::test]
async fn recorded_skips_are_bounded_but_all_are_counted() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    send(&conn, "!noise 25").await;
    send(&conn, "last").await;
    let mut m = |p: &Payload| *p == text("last");
    let r = conn.expect(&mut m, soon(Duration::from_secs(5)), 4).await;
    assert!(r.matched.is_some(), "{:?}", r.failure);
    assert_eq!(r.skipped_count, 25);
    assert_eq!(r.skipped.len(), 4);
    assert_eq!(as_text(&r.skipped[3].payload), "noise 4");
}

#[tokio::test]
async fn expect_times_out_naming_what_it_skipped() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    send(&conn, "!noise 2").await;
    let r = expect(&conn, Duration::from_millis(300), |t| t == "never").await;
    assert!(r.matched.is_none());
    let f = r.failure.expect("a failure");
    assert_eq!(f.reason, FailureReason::Timeout);
    assert!(f.message.contains("no matching frame"), "{}", f.message);
    assert!(
        f.message.contains("2 other frames skipped"),
        "{}",
        f.message
    );
    assert_eq!(r.skipped_count, 2);
    // A timed-out expect leaves the connection usable.
    assert!(conn.closed().is_none());
    send(&conn, "again").await;
    let r = expect(&conn, Duration::from_secs(5), |t| t == "again").await;
    assert!(r.matched.is_some(), "{:?}", r.failure);
}

#[tokio::test]
async fn subprotocol_chosen_by_the_server_is_reported() {
    let server = WsServer::start(WsOptions {
        subprotocol: Subprotocol::Prefer(vec!["chat.v2".into()]),
        ..Default::default()
    })
    .await;
    let mut req = request(server.url("/"));
    req.subprotocols = vec!["chat.v1".into(), "chat.v2".into()];
    let (out, conn) = open(&req).await;
    assert!(out.success(), "{:?}", out.failure);
    assert!(conn.is_some());
    assert_eq!(out.facts.subprotocol.as_deref(), Some("chat.v2"));
    assert_eq!(server.last_offered_subprotocols(), ["chat.v1", "chat.v2"]);
}

#[tokio::test]
async fn server_choosing_no_offered_subprotocol_is_a_protocol_failure() {
    let server = WsServer::start(WsOptions {
        subprotocol: Subprotocol::Never,
        ..Default::default()
    })
    .await;
    let mut req = request(server.url("/"));
    req.subprotocols = vec!["xmpp".into()];
    let (out, conn) = open(&req).await;
    assert!(conn.is_none());
    let f = out.failure.expect("a failure");
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(
        f.message.contains("none of the offered subprotocols"),
        "{}",
        f.message
    );
    assert!(f.message.contains("xmpp"), "{}", f.message);

    // A server that picks one that was not offered fails the same way.
    let server = WsServer::start(WsOptions {
        subprotocol: Subprotocol::Always("mqtt".into()),
        ..Default::default()
    })
    .await;
    let mut req = request(server.url("/"));
    req.subprotocols = vec!["xmpp".into()];
    let (out, conn) = open(&req).await;
    assert!(conn.is_none());
    let f = out.failure.expect("a failure");
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(f.message.contains("not offered"), "{}", f.message);
}

#[tokio::test]
async fn refused_upgrade_reports_the_status() {
    let server = WsServer::start(WsOptions {
        refuse_status: Some(403),
        ..Default::default()
    })
    .await;
    let (out, conn) = open(&request(server.url("/"))).await;
    assert!(conn.is_none());
    let f = out.failure.expect("a failure");
    assert_eq!(f.reason, FailureReason::Status);
    // The status in words, and what of the body came with the head (it often says why; the
    // body may in principle arrive in a later read, so it is optional here).
    assert!(
        f.message.starts_with("upgrade refused: HTTP 403 Forbidden"),
        "{}",
        f.message
    );
    let rest = &f.message["upgrade refused: HTTP 403 Forbidden".len()..];
    assert!(
        rest.is_empty() || rest == " (\"upgrade refused by the test fixture\")",
        "{}",
        f.message
    );
    assert_eq!(out.facts.status, Some(403));
    assert!(out.timings.contains(Phase::Processing));
}

#[tokio::test]
async fn nothing_listening_is_a_connect_failure() {
    // Bind then drop a listener: a port on 127.0.0.1 where nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (out, conn) = open(&request(format!("ws://127.0.0.1:{port}/"))).await;
    assert!(conn.is_none());
    assert_eq!(out.failure.unwrap().reason, FailureReason::Connect);

    let (out, _) = open(&request("http://127.0.0.1:1/".into())).await;
    let f = out.failure.unwrap();
    assert!(f.message.contains("ws:// or wss://"), "{}", f.message);
}

#[tokio::test]
async fn peer_close_is_reported_with_code_and_reason() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    send(&conn, "!close 1008 token expired").await;
    let r = expect(&conn, Duration::from_secs(5), |t| t == "never").await;
    let f = r.failure.expect("a failure");
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(
        f.message.contains(
            "server closed the connection: 1008 policy violation (reason \"token expired\")"
        ),
        "{}",
        f.message
    );
    let closed = tokio::time::timeout(HANG_GUARD, conn.wait_closed())
        .await
        .expect("wait_closed (hang guard)");
    assert_eq!(
        closed,
        Closed::ByPeer {
            code: Some(1008),
            reason: "token expired".into()
        }
    );
    assert_eq!(conn.closed(), Some(closed));
    // Sending on a closed connection says why it is closed.
    let e = conn
        .send(text("x"), soon(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(e.message.contains("1008"), "{}", e.message);
}

#[tokio::test]
async fn frames_before_a_close_are_still_delivered() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    send(&conn, "before").await;
    send(&conn, "!close 4001 bye").await;
    assert!(matches!(
        tokio::time::timeout(HANG_GUARD, conn.wait_closed())
            .await
            .unwrap(),
        Closed::ByPeer {
            code: Some(4001),
            ..
        }
    ));
    // The echo of "before" arrived before the close and is still in the inbox.
    let r = expect(&conn, Duration::from_secs(1), |t| t == "before").await;
    assert!(r.matched.is_some(), "{:?}", r.failure);
}

#[tokio::test]
async fn connection_dropped_mid_expect_fails_the_expect() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    let waiter = {
        let conn = conn.clone();
        tokio::spawn(async move { expect(&conn, Duration::from_secs(5), |t| t == "never").await })
    };
    // Make sure the expect is waiting before the server drops the connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.drop_all();
    let r = waiter.await.unwrap();
    let f = r.failure.expect("a failure");
    assert_eq!(f.reason, FailureReason::Protocol);
    assert!(
        f.message.contains("without a close frame") || f.message.contains("reset"),
        "{}",
        f.message
    );
    assert!(matches!(conn.closed(), Some(Closed::Error(_))));
}

#[tokio::test]
async fn drop_command_ends_the_connection_without_close_frame() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    send(&conn, "!drop").await;
    let closed = tokio::time::timeout(HANG_GUARD, conn.wait_closed())
        .await
        .expect("wait_closed (hang guard)");
    assert!(matches!(closed, Closed::Error(_)), "{closed:?}");
}

#[tokio::test]
async fn heartbeat_keeps_an_idle_connection_alive() {
    let server = WsServer::echo().await;
    let mut req = request(server.url("/"));
    // Not too short: a loaded machine must not delay the pong past one period.
    req.heartbeat = Some(Duration::from_millis(200));
    let conn = open_ok(&req).await;
    // Wait (hang guard 5 s) for the fixture to have seen several heartbeat pings.
    let pings = server.wait_for(3, WsServer::pings).await;
    assert!(pings >= 3, "only {pings} heartbeat pings arrived");
    assert!(conn.closed().is_none());
    send(&conn, "still here").await;
    let r = expect(&conn, Duration::from_secs(5), |t| t == "still here").await;
    assert!(r.matched.is_some(), "{:?}", r.failure);
}

#[tokio::test]
async fn no_heartbeat_means_no_pings() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    send(&conn, "x").await;
    let r = expect(&conn, Duration::from_secs(5), |t| t == "x").await;
    assert!(r.matched.is_some());
    assert_eq!(server.pings(), 0);
}

#[tokio::test]
async fn silent_server_fails_the_heartbeat() {
    let server = WsServer::echo().await;
    let mut req = request(server.url("/"));
    req.heartbeat = Some(Duration::from_millis(100));
    let conn = open_ok(&req).await;
    send(&conn, "!silence").await;
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.wait_closed())
        .await
        .expect("a silent server must be noticed (hang guard)");
    match closed {
        Closed::Error(e) => assert!(e.contains("heartbeat"), "{e}"),
        other => panic!("expected a heartbeat failure, got {other:?}"),
    }
}

#[tokio::test]
async fn server_pings_are_answered() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    send(&conn, "!ping").await;
    let pongs = server.wait_for(1, WsServer::pongs).await;
    assert_eq!(pongs, 1);
    assert!(conn.closed().is_none());
}

#[tokio::test]
async fn wss_with_a_generated_ca() {
    let ca = Ca::new("sonde ws test CA");
    let leaf = ca.leaf(&["127.0.0.1"], Span::days(30), &[]);
    let server = WsServer::start(WsOptions {
        tls: Some(pki::server_config(&leaf, &[b"http/1.1"], None)),
        ..Default::default()
    })
    .await;
    let url = server.url("/secure");
    assert!(url.starts_with("wss://"), "{url}");

    let mut req = request(url.clone());
    req.tls_client = TlsClient::new(
        &TlsOptions {
            ca_file: Some(ca.ca_file.clone()),
            ..Default::default()
        },
        &[b"http/1.1"],
    )
    .unwrap();
    let (out, conn) = open(&req).await;
    assert!(out.success(), "{:?}", out.failure);
    assert!(out.timings.contains(Phase::Tls));
    let tls = out.facts.tls.expect("tls facts");
    assert!(tls.verified);
    assert_eq!(tls.alpn.as_deref(), Some("http/1.1"));
    let conn = conn.unwrap();
    send(&conn, "over tls").await;
    let r = expect(&conn, Duration::from_secs(5), |t| t == "over tls").await;
    assert!(r.matched.is_some(), "{:?}", r.failure);

    // Without the CA the certificate is rejected: reason tls, nothing upgraded.
    let upgrades = server.upgrades();
    let (out, conn) = open(&request(url)).await;
    assert!(conn.is_none());
    let f = out.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Tls);
    assert!(f.message.contains("unknown authority"), "{}", f.message);
    assert_eq!(server.upgrades(), upgrades);
}

#[tokio::test]
async fn inbox_overflow_drops_the_oldest_and_counts() {
    let server = WsServer::echo().await;
    let mut req = request(server.url("/"));
    req.inbox_limit = 5;
    let conn = open_ok(&req).await;
    send(&conn, "!noise 20").await;
    send(&conn, "marker").await;
    // Wait until the marker has been read into the inbox: then all 20 noise frames have been
    // read too, and 16 of the 21 frames cannot have fitted.
    let give_up = Instant::now() + Duration::from_secs(5);
    while conn.dropped_frames() < 16 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(conn.dropped_frames(), 16);
    let r = expect(&conn, Duration::from_secs(1), |t| t == "marker").await;
    assert!(r.matched.is_some(), "{:?}", r.failure);
    // What is left are the newest four noise frames.
    let skipped: Vec<&str> = r.skipped.iter().map(|f| as_text(&f.payload)).collect();
    assert_eq!(skipped, ["noise 17", "noise 18", "noise 19", "noise 20"]);
}

#[tokio::test]
async fn oversized_frame_fails_the_connection() {
    let server = WsServer::echo().await;
    let mut req = request(server.url("/"));
    req.max_frame_size = 1024;
    let conn = open_ok(&req).await;
    send(&conn, "!big 100000").await;
    let closed = tokio::time::timeout(HANG_GUARD, conn.wait_closed())
        .await
        .expect("wait_closed (hang guard)");
    match closed {
        Closed::Error(e) => assert!(e.contains("max_frame_size"), "{e}"),
        other => panic!("expected a size failure, got {other:?}"),
    }
}

#[tokio::test]
async fn close_returns_the_peers_answer() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    let answer = conn
        .close(1000, "done", soon(Duration::from_secs(2)))
        .await
        .unwrap();
    // tungstenite answers a close by echoing its code.
    assert_eq!(answer.map(|(c, _)| c), Some(1000));
    assert_eq!(conn.closed(), Some(Closed::ByUs));
    assert_eq!(server.wait_for(1, WsServer::closes).await, 1);
    // Invalid codes are refused before anything is sent.
    let conn = open_ok(&request(server.url("/"))).await;
    let e = conn
        .close(1006, "", soon(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(e.message.contains("1006"), "{}", e.message);
    assert!(conn.closed().is_none());
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_connection() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    let other = conn.clone();
    drop(conn);
    // One handle is left: still open.
    send(&other, "x").await;
    assert!(expect(&other, Duration::from_secs(5), |t| t == "x")
        .await
        .matched
        .is_some());
    drop(other);
    assert_eq!(server.wait_for(1, WsServer::closes).await, 1);
}

#[tokio::test]
async fn deadlines_bound_connect_against_a_server_that_never_upgrades() {
    // A TCP listener that accepts and never answers the upgrade request.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            keep.push(s);
        }
    });
    let req = request(format!("ws://{addr}/"));
    let deadline = Duration::from_millis(300);
    let (out, conn) = tokio::time::timeout(deadline + HANG_GUARD, connect(&req, soon(deadline)))
        .await
        .expect("connect overran its deadline (hang guard)");
    assert!(conn.is_none());
    let f = out.failure.unwrap();
    assert_eq!(f.reason, FailureReason::Timeout);
    assert!(f.message.contains("upgrade"), "{}", f.message);
    assert!(out.timings.contains(Phase::Connect));
}

#[tokio::test]
async fn xmpp_login_over_several_frames() {
    let server = XmppServer::start(XmppOptions::default()).await;
    let mut req = request(server.url());
    req.subprotocols = vec!["xmpp".into()];
    let (out, conn) = open(&req).await;
    assert!(out.success(), "{:?}", out.failure);
    assert_eq!(out.facts.subprotocol.as_deref(), Some("xmpp"));
    let conn = conn.unwrap();
    let t = Duration::from_secs(5);
    let open_stream =
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="sonde.test" version="1.0"/>"#;

    send(&conn, open_stream).await;
    let r = expect(&conn, t, |s| s.contains("<mechanism>PLAIN</mechanism>")).await;
    assert!(r.matched.is_some(), "{:?}", r.failure);
    assert_eq!(r.skipped_count, 1, "the server's <open/> is skipped");

    // A wrong password is refused, and the dialogue may retry.
    send(
        &conn,
        &format!(
            r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">{}</auth>"#,
            plain_credential("probe", "wrong")
        ),
    )
    .await;
    assert!(expect(&conn, t, |s| s.contains("<not-authorized/>"))
        .await
        .matched
        .is_some());
    send(
        &conn,
        &format!(
            r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">{}</auth>"#,
            plain_credential("probe", "s3cret")
        ),
    )
    .await;
    assert!(expect(&conn, t, |s| s.starts_with("<success"))
        .await
        .matched
        .is_some());
    send(&conn, open_stream).await;
    assert!(expect(&conn, t, |s| s.contains("xmpp-bind"))
        .await
        .matched
        .is_some());
    send(
        &conn,
        r#"<iq type="set" id="b1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><resource>probe</resource></bind></iq>"#,
    )
    .await;
    let r = expect(&conn, t, |s| s.contains("<jid>")).await;
    assert!(as_text(&r.matched.unwrap().payload).contains("<jid>probe@sonde.test/probe</jid>"));
    send(
        &conn,
        r#"<message to="echo@sonde.test" id="m1"><body>ping 42</body></message>"#,
    )
    .await;
    let r = expect(&conn, t, |s| s.contains("<body>ping 42</body>")).await;
    assert!(r.matched.is_some(), "{:?}", r.failure);
    assert_eq!(r.skipped_count, 1, "the presence noise is skipped");
    assert_eq!(
        (
            server.logins(),
            server.failed_logins(),
            server.binds(),
            server.messages()
        ),
        (1, 1, 1, 1)
    );
}

#[tokio::test]
async fn xmpp_requires_its_subprotocol_and_the_login_first() {
    let server = XmppServer::start(XmppOptions::default()).await;
    let (out, conn) = open(&request(server.url())).await;
    assert!(conn.is_none());
    assert_eq!(out.facts.status, Some(400));

    let mut req = request(server.url());
    req.subprotocols = vec!["xmpp".into()];
    let conn = open_ok(&req).await;
    send(
        &conn,
        r#"<message to="echo@sonde.test" id="m1"><body>hi</body></message>"#,
    )
    .await;
    let r = expect(&conn, Duration::from_secs(5), |s| s.contains("<body>")).await;
    assert!(r.matched.is_none());
    assert!(r
        .skipped
        .iter()
        .any(|f| as_text(&f.payload).contains("not-authorized")));
    assert_eq!(r.failure.unwrap().reason, FailureReason::Protocol);
    assert_eq!(server.messages(), 0);
}

#[tokio::test]
async fn send_to_a_server_that_stopped_reading_times_out() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    send(&conn, "!silence").await;
    // Fill the socket buffers until a send cannot finish by its deadline (bounded: loopback
    // buffers hold a few MB at most; 400 × 64 KiB is 25 MB).
    let chunk = Payload::Binary(bytes::Bytes::from(vec![0u8; 64 * 1024]));
    let mut failure = None;
    for _ in 0..400 {
        let d = Duration::from_millis(200);
        let res = tokio::time::timeout(d + HANG_GUARD, conn.send(chunk.clone(), soon(d)))
            .await
            .expect("send overran its deadline (hang guard)");
        if let Err(f) = res {
            failure = Some(f);
            break;
        }
    }
    let f = failure.expect("a send to a server that does not read must time out");
    assert_eq!(f.reason, FailureReason::Timeout, "{f}");
    // A half-written frame leaves the connection unusable; it says so.
    let closed = tokio::time::timeout(HANG_GUARD, conn.wait_closed())
        .await
        .expect("wait_closed (hang guard)");
    match closed {
        Closed::Error(e) => assert!(e.contains("not reading"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Connect to a server that writes `raw` bytes right after the upgrade; how the connection ended.
async fn closed_after_raw(raw: &[u8]) -> Closed {
    let server = WsServer::start(WsOptions {
        raw_after_upgrade: Some(raw.to_vec()),
        ..Default::default()
    })
    .await;
    let mut req = request(server.url("/"));
    req.max_frame_size = 1024;
    let conn = open_ok(&req).await;
    tokio::time::timeout(HANG_GUARD, conn.wait_closed())
        .await
        .expect("a hostile frame must end the connection (hang guard)")
}

#[tokio::test]
async fn hostile_frames_fail_the_connection_in_words() {
    // A text frame that is not UTF-8.
    let c = closed_after_raw(&[0x81, 0x02, 0xff, 0xfe]).await;
    assert!(
        matches!(&c, Closed::Error(e) if e.contains("UTF-8")),
        "{c:?}"
    );
    // A masked frame from a server (RFC 6455 §5.1 forbids it).
    let c = closed_after_raw(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]).await;
    assert!(
        matches!(&c, Closed::Error(e) if e.contains("broke the WebSocket protocol")),
        "{c:?}"
    );
    // A reserved opcode.
    let c = closed_after_raw(&[0x83, 0x00]).await;
    assert!(
        matches!(&c, Closed::Error(e) if e.contains("broke the WebSocket protocol")),
        "{c:?}"
    );
    // A header announcing an absurd length: refused from the header, nothing allocated.
    let c = closed_after_raw(&[0x82, 0x7f, 0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).await;
    assert!(
        matches!(&c, Closed::Error(e) if e.contains("max_frame_size")),
        "{c:?}"
    );
}

#[tokio::test]
async fn close_to_a_server_that_never_answers_times_out() {
    let server = WsServer::echo().await;
    let conn = open_ok(&request(server.url("/"))).await;
    send(&conn, "!silence").await;
    let d = Duration::from_millis(300);
    let res = tokio::time::timeout(d + HANG_GUARD, conn.close(1000, "bye", soon(d)))
        .await
        .expect("close overran its deadline (hang guard)");
    let f = res.unwrap_err();
    assert_eq!(f.reason, FailureReason::Timeout);
    assert!(
        f.message.contains("did not answer our close"),
        "{}",
        f.message
    );
    // The connection is finished either way.
    assert_eq!(conn.closed(), Some(Closed::ByUs));
}

#[tokio::test]
async fn xmpp_over_wss() {
    let ca = Ca::new("sonde xmpp test CA");
    let leaf = ca.leaf(&["127.0.0.1"], Span::days(30), &[]);
    let server = XmppServer::start(XmppOptions {
        tls: Some(pki::server_config(&leaf, &[b"http/1.1"], None)),
        ..Default::default()
    })
    .await;
    let mut req = request(server.url());
    assert!(req.url.starts_with("wss://"), "{}", req.url);
    req.subprotocols = vec!["xmpp".into()];
    req.tls_client = TlsClient::new(
        &TlsOptions {
            ca_file: Some(ca.ca_file.clone()),
            ..Default::default()
        },
        &[b"http/1.1"],
    )
    .unwrap();
    let conn = open_ok(&req).await;
    send(
        &conn,
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="sonde.test" version="1.0"/>"#,
    )
    .await;
    let r = expect(&conn, Duration::from_secs(5), |s| s.contains("PLAIN")).await;
    assert!(r.matched.is_some(), "{:?}", r.failure);
}
