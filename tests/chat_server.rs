//! The reference IM server (examples/chat_server.rs) in-process, driven by sonde's own WebSocket
//! client: the round trip the IM scenario probes, with its noise, and the server's error paths.

use std::time::Duration;

use serde_json::Value;
use sonde_probes::tls::{TlsClient, TlsOptions};
use sonde_probes::ws::{connect, Closed, ExpectResult, Payload, WsConn, WsConnectRequest};
use sonde_probes::{FailureReason, ResolveOptions, Resolver};
use tokio::time::Instant;

#[allow(dead_code)]
#[path = "../examples/chat_server.rs"]
mod chat_server;

use chat_server::{token_for, ChatHandle, ChatOptions, DEFAULT_SECRET};

/// Every wait is bounded by this hang guard; nothing asserts on timing.
const HANG_GUARD: Duration = Duration::from_secs(2);
const WITHIN: Duration = Duration::from_secs(5);

async fn server(noise: Option<Duration>) -> ChatHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    chat_server::start(
        listener,
        ChatOptions {
            noise_interval: noise,
            ..ChatOptions::default()
        },
    )
}

fn request(url: String) -> WsConnectRequest {
    WsConnectRequest {
        url,
        headers: vec![],
        subprotocols: vec![],
        // The host is an IP literal; nothing is ever resolved.
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        tls_client: TlsClient::new(&TlsOptions::default(), &[b"http/1.1"]).unwrap(),
        heartbeat: None,
        inbox_limit: 256,
        max_frame_size: 64 * 1024,
    }
}

async fn open(url: String) -> WsConn {
    let (out, conn) = tokio::time::timeout(
        WITHIN + HANG_GUARD,
        connect(&request(url), Instant::now() + WITHIN),
    )
    .await
    .expect("connect hang guard");
    assert!(out.success(), "{:?}", out.failure);
    conn.unwrap()
}

async fn send(conn: &WsConn, v: Value) {
    conn.send(Payload::Text(v.to_string()), Instant::now() + WITHIN)
        .await
        .expect("send");
}

/// Wait for a JSON frame whose `op` is `op` and that satisfies `pred`.
async fn expect_op(conn: &WsConn, op: &str, pred: impl Fn(&Value) -> bool + Send) -> ExpectResult {
    let op = op.to_string();
    let mut m = move |p: &Payload| match p {
        Payload::Text(t) => {
            serde_json::from_str::<Value>(t).is_ok_and(|v| v["op"] == op.as_str() && pred(&v))
        }
        Payload::Binary(_) => false,
    };
    tokio::time::timeout(
        WITHIN + HANG_GUARD,
        conn.expect(&mut m, Instant::now() + WITHIN, 50),
    )
    .await
    .expect("expect hang guard")
}

fn json_of(r: &ExpectResult) -> Value {
    match &r.matched.as_ref().expect("a matched frame").payload {
        Payload::Text(t) => serde_json::from_str(t).unwrap(),
        Payload::Binary(_) => panic!("binary frame"),
    }
}

fn skipped_ops(r: &ExpectResult) -> Vec<String> {
    r.skipped
        .iter()
        .filter_map(|f| match &f.payload {
            Payload::Text(t) => serde_json::from_str::<Value>(t).ok(),
            Payload::Binary(_) => None,
        })
        .map(|v| v["op"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn login(conn: &WsConn, user: &str) -> Value {
    send(
        conn,
        serde_json::json!({"op": "login", "user": user, "token": token_for(DEFAULT_SECRET, user)}),
    )
    .await;
    let r = expect_op(conn, "login_ok", |_| true).await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    json_of(&r)
}

#[tokio::test]
async fn round_trip_with_noise_skipped() {
    let chat = server(Some(Duration::from_millis(20))).await;
    let alice = open(chat.url()).await;
    let bob = open(chat.url()).await;
    let ok = login(&alice, "alice").await;
    assert_eq!(ok["user"], "alice");
    assert!(ok["session"].as_str().is_some_and(|s| !s.is_empty()));
    login(&bob, "bob").await;
    assert_eq!(chat.logged_in(), 2);

    // Presence noise reaches logged-in connections.
    let r = expect_op(&bob, "presence", |_| true).await;
    let p = json_of(&r);
    assert!(p["status"] == "online" || p["status"] == "away", "{p}");

    let sent_at = alice
        .send(
            Payload::Text(
                serde_json::json!({"op": "send", "to": "bob", "id": "m-1", "text": "hello bob"})
                    .to_string(),
            ),
            Instant::now() + WITHIN,
        )
        .await
        .unwrap();
    let ack = expect_op(&alice, "ack", |v| v["id"] == "m-1").await;
    assert!(ack.failure.is_none(), "{:?}", ack.failure);
    assert!(json_of(&ack)["ts"].as_u64().is_some());

    let r = expect_op(&bob, "message", |v| v["id"] == "m-1").await;
    assert!(r.failure.is_none(), "{:?}", r.failure);
    let m = json_of(&r);
    assert_eq!(m["from"], "alice");
    assert_eq!(m["text"], "hello bob");
    assert!(m["ts"].as_u64().is_some());
    assert!(r.matched.as_ref().unwrap().received_at >= sent_at);
    // The typing notice came before the message and was skipped on the way, with any noise.
    let skipped = skipped_ops(&r);
    assert!(skipped.iter().any(|op| op == "typing"), "{skipped:?}");
    assert!(
        skipped.iter().all(|op| op == "typing" || op == "presence"),
        "{skipped:?}"
    );
    assert_eq!(chat.delivered(), 1);
}

#[tokio::test]
async fn every_connection_of_the_recipient_gets_the_message() {
    let chat = server(None).await;
    let alice = open(chat.url()).await;
    let bob1 = open(chat.url()).await;
    let bob2 = open(chat.url()).await;
    login(&alice, "alice").await;
    login(&bob1, "bob").await;
    login(&bob2, "bob").await;
    send(
        &alice,
        serde_json::json!({"op": "send", "to": "bob", "id": "x", "text": "both"}),
    )
    .await;
    for bob in [&bob1, &bob2] {
        let r = expect_op(bob, "message", |v| v["id"] == "x").await;
        assert!(r.failure.is_none(), "{:?}", r.failure);
        // Without noise, the only frame before the message is the typing notice.
        assert_eq!(skipped_ops(&r), ["typing"]);
    }
}

#[tokio::test]
async fn bad_token_is_refused_with_close_4001() {
    let chat = server(None).await;
    let conn = open(chat.url()).await;
    send(
        &conn,
        serde_json::json!({"op": "login", "user": "alice", "token": token_for("other secret", "alice")}),
    )
    .await;
    let r = expect_op(&conn, "login_failed", |_| true).await;
    assert_eq!(json_of(&r)["reason"], "bad token");
    let closed = tokio::time::timeout(HANG_GUARD, conn.wait_closed())
        .await
        .expect("wait_closed hang guard");
    assert!(
        matches!(
            closed,
            Closed::ByPeer {
                code: Some(4001),
                ..
            }
        ),
        "{closed:?}"
    );
    assert_eq!(chat.logged_in(), 0);
}

#[tokio::test]
async fn errors_keep_the_connection_open() {
    let chat = server(None).await;
    let conn = open(chat.url()).await;
    // Before login, every op is refused.
    send(&conn, serde_json::json!({"op": "ping"})).await;
    let r = expect_op(&conn, "error", |_| true).await;
    assert_eq!(json_of(&r)["reason"], "not logged in");
    // Bad JSON gets an error frame.
    conn.send(Payload::Text("{not json".into()), Instant::now() + WITHIN)
        .await
        .unwrap();
    let r = expect_op(&conn, "error", |_| true).await;
    assert!(
        json_of(&r)["reason"]
            .as_str()
            .unwrap()
            .starts_with("bad frame"),
        "{}",
        json_of(&r)
    );
    login(&conn, "alice").await;
    send(&conn, serde_json::json!({"op": "ping"})).await;
    assert!(expect_op(&conn, "pong", |_| true).await.failure.is_none());
    send(
        &conn,
        serde_json::json!({"op": "send", "to": "nobody", "id": "q", "text": "?"}),
    )
    .await;
    let r = expect_op(&conn, "error", |v| v["id"] == "q").await;
    assert_eq!(json_of(&r)["reason"], "recipient offline");
    assert!(conn.closed().is_none());
}

#[tokio::test]
async fn subprotocol_and_path() {
    let chat = server(None).await;
    let mut req = request(chat.url());
    req.subprotocols = vec!["chat.v1".into()];
    let (out, conn) = connect(&req, Instant::now() + WITHIN).await;
    assert!(out.success(), "{:?}", out.failure);
    assert!(conn.is_some());
    assert_eq!(out.facts.subprotocol.as_deref(), Some("chat.v1"));

    let (out, conn) = connect(
        &request(format!("ws://{}/elsewhere", chat.addr())),
        Instant::now() + WITHIN,
    )
    .await;
    assert!(conn.is_none());
    assert_eq!(out.failure.unwrap().reason, FailureReason::Status);
    assert_eq!(out.facts.status, Some(404));
}

#[tokio::test]
async fn kick_all_drops_every_connection() {
    let chat = server(None).await;
    let a = open(chat.url()).await;
    let b = open(chat.url()).await;
    login(&a, "alice").await;
    assert_eq!(chat.connections(), 2);
    chat.kick_all();
    for c in [&a, &b] {
        let closed = tokio::time::timeout(HANG_GUARD, c.wait_closed())
            .await
            .expect("wait_closed hang guard");
        assert!(matches!(closed, Closed::Error(_)), "{closed:?}");
    }
    // The server still accepts new connections.
    let c = open(chat.url()).await;
    login(&c, "alice").await;
}

#[test]
fn tokens_are_hex_hmac_sha256() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert_eq!(
        token_for("Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
