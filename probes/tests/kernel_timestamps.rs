//! Kernel timestamps against a busy prober: the runtime's only thread is blocked for 50 ms while
//! a reply arrives. The user-space figure must grow by the block; the kernel-timestamped one must
//! not. Assertions use margins no tighter than the injected 50 ms.
//!
//! The probe is polled first inside `join!` on a current-thread runtime, so it has sent its
//! request (ICMP) or started its connect before the blocking task runs; the reply can only be
//! read after the block ends. Phases covered: icmp rtt, tcp connect, http and https processing
//! (HTTP/1.1; HTTP/2 and session tickets checked against a 20 ms server), the TLS handshake's
//! rounds, a tcp dialogue's send → matching line (over TLS), a WebSocket send → matching frame
//! a `tcp.*` long connection's send → matching frame, and an MQTT publish → its delivery on
//! another connection.

#![cfg(target_os = "linux")]

use std::net::IpAddr;
use std::time::Duration;

use sonde_probes::icmp::{permission_check, probe, IcmpRequest};
use sonde_probes::resolve::connect_tcp;
use sonde_probes::{Phase, Recorder, ResolveOptions, Resolver, OVERLOADED};
use tokio::time::Instant;

const BLOCK: Duration = Duration::from_millis(50);

fn current_thread() -> tokio::runtime::Runtime {
    // As `sonde` does at start-up: the kernel stamps packets before the first probe.
    assert!(
        sonde_probes::kts::warm_up(),
        "the kernel does not stamp packets"
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Blocks the runtime's thread, as a CPU-bound task or a saturated machine would.
async fn block_the_runtime() {
    std::thread::sleep(BLOCK);
}

#[test]
fn icmp_rtt_from_the_kernel_is_not_delayed_by_a_blocked_runtime() {
    if let Err(why) = permission_check() {
        eprintln!("SKIPPED: icmp_rtt_from_the_kernel_is_not_delayed_by_a_blocked_runtime: {why}");
        return;
    }
    let req = IcmpRequest {
        host: "127.0.0.1".into(),
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        payload_size: 0,
        ttl: None,
        dont_fragment: false,
        source: None,
    };
    let out = current_thread().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        tokio::join!(probe(&req, deadline), block_the_runtime()).0
    });
    assert!(out.success(), "{:?}", out.failure);
    let user = out.timings.user_space(Phase::Rtt);
    let kernel = out
        .timings
        .kernel(Phase::Rtt)
        .unwrap_or_else(|| panic!("no kernel rtt; events: {:#?}", out.events));
    assert!(
        user >= BLOCK,
        "user-space rtt {user:?} should include the block"
    );
    assert!(kernel < BLOCK, "kernel rtt {kernel:?} should not");
    // What the metrics read is the kernel figure; the trace shows both and flags the run.
    assert_eq!(out.timings.get(Phase::Rtt), kernel);
    assert_eq!(out.facts.rtt, Some(kernel));
    assert!(out.timings.own_delay().unwrap() >= BLOCK - kernel);
    let says = |s: &str| out.events.iter().any(|e| e.message.contains(s));
    assert!(says("user space") && says("kernel"), "{:#?}", out.events);
    assert!(says(OVERLOADED), "{:#?}", out.events);
}

#[test]
fn tcp_connect_from_the_kernel_is_not_delayed_by_a_blocked_runtime() {
    let rt = current_thread();
    let (rec, stream) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let addrs = [ip];
        let mut rec = Recorder::new();
        let s = tokio::join!(connect_tcp(&addrs, port, &mut rec), block_the_runtime()).0;
        (rec, s.map(|s| (s, l)))
    });
    stream.expect("connected");
    let user = rec.timings.user_space(Phase::Connect);
    let kernel = rec
        .timings
        .kernel(Phase::Connect)
        .unwrap_or_else(|| panic!("no kernel connect; events: {:#?}", rec.events));
    assert!(
        user >= BLOCK,
        "user-space connect {user:?} should include the block"
    );
    assert!(kernel < BLOCK, "kernel handshake {kernel:?} should not");
    assert_eq!(rec.timings.get(Phase::Connect), kernel);
}

/// HTTP/1.1 over plain TCP: once the server has the request it lets the client's blocker run and
/// answers at once; the response sits timestamped in the client's socket while the runtime is
/// blocked.
#[test]
fn http_processing_from_the_kernel_is_not_delayed_by_a_blocked_runtime() {
    use sonde_probes::http::{probe, HttpRequest, ALPN_HTTP11};
    use sonde_probes::tls::{TlsClient, TlsOptions};
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicBool::new(false));
    let flag = answered.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "client closed before its request head");
            req.extend_from_slice(&buf[..n]);
        }
        // Flag first: the client then blocks while (not before or after) the answer lands.
        flag.store(true, Ordering::Release);
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .unwrap();
    });
    let req = HttpRequest::get(
        format!("http://{addr}/").parse().unwrap(),
        Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        TlsClient::new(&TlsOptions::default(), ALPN_HTTP11).unwrap(),
    );
    let out = current_thread().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        let blocker = async {
            // Let the probe run until the server has answered, then hold the only thread.
            while !answered.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
            block_the_runtime().await;
        };
        tokio::join!(probe(&req, deadline), blocker).0
    });
    server.join().unwrap();
    assert!(out.success(), "{:?}", out.failure);
    let user = out.timings.user_space(Phase::Processing);
    let kernel = out
        .timings
        .kernel(Phase::Processing)
        .unwrap_or_else(|| panic!("no kernel processing; events: {:#?}", out.events));
    assert!(
        user >= BLOCK,
        "user-space processing {user:?} should include the block"
    );
    assert!(kernel < BLOCK, "kernel processing {kernel:?} should not");
    assert_eq!(out.timings.get(Phase::Processing), kernel);
    assert!(
        out.events.iter().any(|e| e.message.contains(OVERLOADED)),
        "{:#?}",
        out.events
    );
}

/// A TLS server on its own thread and runtime (so blocking the probe's runtime does not stop
/// it). `flag` is set just before it writes what the test waits for; `serve` gets the accepted
/// TLS stream (after the handshake).
mod tls_server {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use sonde_testkit::pki::{server_config, Ca};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// Sets the flag on its first write: the server's handshake flight is about to leave. With
    /// `split_at`, writes that many bytes alone, then waits 20 ms before the rest.
    pub struct FlagOnWrite<S> {
        pub inner: S,
        pub flag: Option<Arc<AtomicBool>>,
        pub split_at: Option<usize>,
        pub written: usize,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for FlagOnWrite<S> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for FlagOnWrite<S> {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            if let Some(f) = self.flag.take() {
                f.store(true, Ordering::Release);
                // Let the client's blocker take the thread before the bytes land.
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut room = buf.len();
            if let Some(at) = self.split_at {
                if self.written == at {
                    std::thread::sleep(SPLIT_WAIT);
                }
                if self.written < at {
                    room = room.min(at - self.written);
                }
            }
            let n = std::task::ready!(
                std::pin::Pin::new(&mut self.inner).poll_write(cx, &buf[..room])
            )?;
            self.written += n;
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    pub enum Flag {
        /// When the handshake flight is written.
        Handshake,
        /// When the HTTP/1.1 response is written (after the request head was read).
        Response,
        /// Never; the handshake flight goes in two parts, [`SPLIT_WAIT`] apart: the ServerHello,
        /// its ChangeCipherSpec and the first encrypted bytes (200 bytes), then the rest.
        SplitFlight,
    }

    pub const SPLIT_WAIT: Duration = Duration::from_millis(20);

    /// Serves one connection; returns its port and the flag.
    pub fn start(when: Flag) -> (u16, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let ca = Ca::new("kts test CA");
        let leaf = ca.leaf(&["localhost"], time::Duration::hours(1), &[]);
        let config = server_config(&leaf, &[b"http/1.1"], None);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let (tcp, _) = l.accept().await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let hs_flag = matches!(when, Flag::Handshake).then(|| f.clone());
                let io = FlagOnWrite {
                    inner: tcp,
                    flag: hs_flag,
                    split_at: matches!(when, Flag::SplitFlight).then_some(200),
                    written: 0,
                };
                let mut tls = acceptor.accept(io).await.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return; // the handshake-only probe goes away
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                if matches!(when, Flag::Response) {
                    f.store(true, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        });
        (port, flag, t)
    }
}

/// A `tls` probe of 127.0.0.1:`port` (no DNS).
fn tls_request(port: u16, client: sonde_probes::tls::TlsClient) -> sonde_probes::tls::TlsRequest {
    sonde_probes::tls::TlsRequest {
        host: "127.0.0.1".into(),
        port,
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        client,
    }
}

fn insecure_client(alpn: &[&[u8]]) -> sonde_probes::tls::TlsClient {
    use sonde_probes::tls::{TlsClient, TlsOptions};
    let opts = TlsOptions {
        insecure_skip_verify: true,
        server_name: Some("localhost".into()),
        ..Default::default()
    };
    TlsClient::new(&opts, alpn).unwrap()
}

/// Waits (yielding) until `flag`, then holds the runtime's only thread for [`BLOCK`].
async fn block_when(flag: &std::sync::atomic::AtomicBool) {
    while !flag.load(std::sync::atomic::Ordering::Acquire) {
        tokio::task::yield_now().await;
    }
    block_the_runtime().await;
}

/// The TLS handshake's round: the server's flight lands while the runtime is blocked. The
/// user-space `tls` phase includes the block, the kernel's sum of rounds does not.
#[test]
fn tls_handshake_from_the_kernel_is_not_delayed_by_a_blocked_runtime() {
    use sonde_probes::tls::probe;
    let (port, flag, server) = tls_server::start(tls_server::Flag::Handshake);
    let req = tls_request(port, insecure_client(&[]));
    let out = current_thread().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        tokio::join!(probe(&req, deadline), block_when(&flag)).0
    });
    server.join().unwrap();
    assert!(out.success(), "{:?} {:#?}", out.failure, out.events);
    let user = out.timings.user_space(Phase::Tls);
    let kernel = out
        .timings
        .kernel(Phase::Tls)
        .unwrap_or_else(|| panic!("no kernel tls; events: {:#?}", out.events));
    assert!(
        user >= BLOCK,
        "user-space tls {user:?} should include the block"
    );
    assert!(kernel < BLOCK, "kernel tls {kernel:?} should not");
    assert_eq!(out.timings.get(Phase::Tls), kernel);
    let says = |s: &str| out.events.iter().any(|e| e.message.contains(s));
    assert!(says("round trip"), "{:#?}", out.events);
    assert!(says(OVERLOADED), "{:#?}", out.events);
}

/// https (HTTP/1.1 over TLS 1.3): the server sends session tickets after the handshake, then
/// the response, which lands while the runtime is blocked. The kernel figure is the response's
/// (not the ticket's) and excludes the block.
#[test]
fn https_processing_from_the_kernel_is_not_delayed_by_a_blocked_runtime() {
    use sonde_probes::http::{probe, HttpRequest, ALPN_HTTP11};
    let (port, flag, server) = tls_server::start(tls_server::Flag::Response);
    let req = HttpRequest::get(
        format!("https://127.0.0.1:{port}/").parse().unwrap(),
        Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        insecure_client(ALPN_HTTP11),
    );
    let out = current_thread().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        tokio::join!(probe(&req, deadline), block_when(&flag)).0
    });
    server.join().unwrap();
    assert!(out.success(), "{:?} {:#?}", out.failure, out.events);
    let user = out.timings.user_space(Phase::Processing);
    let kernel = out
        .timings
        .kernel(Phase::Processing)
        .unwrap_or_else(|| panic!("no kernel processing; events: {:#?}", out.events));
    assert!(
        user >= BLOCK,
        "user-space processing {user:?} should include the block"
    );
    assert!(kernel < BLOCK, "kernel processing {kernel:?} should not");
    // The handshake was not blocked: its kernel figure exists too.
    assert!(
        out.timings.kernel(Phase::Tls).is_some(),
        "{:#?}",
        out.events
    );
    assert_eq!(out.timings.get(Phase::Processing), kernel);
}

/// https to a server that answers after 20 ms, over HTTP/2 or HTTP/1.1: the kernel figure is
/// the response's (not the server's SETTINGS or TLS 1.3 session tickets, which come at once), so
/// it cannot be under 20 ms.
fn https_processing_is_the_response(alpn: &'static [u8], version: &str) {
    use sonde_probes::http::{probe, HttpRequest, ALPN_H2_HTTP11};
    use sonde_testkit::http::{HttpServer, Reply, Routes};
    use sonde_testkit::pki::{server_config, Ca};
    let rt = current_thread();
    let out = rt.block_on(async {
        let ca = Ca::new("kts https CA");
        let leaf = ca.leaf(&["localhost"], time::Duration::hours(1), &[]);
        let config = server_config(&leaf, &[alpn], None);
        let server = HttpServer::start_tls(
            Routes::new().at("/", Reply::text(200, "ok").delay(Duration::from_millis(20))),
            config,
        )
        .await;
        let req = HttpRequest::get(
            server.url("/").parse().unwrap(),
            Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
            insecure_client(ALPN_H2_HTTP11),
        );
        probe(&req, Instant::now() + Duration::from_secs(5)).await
    });
    assert!(out.success(), "{:?} {:#?}", out.failure, out.events);
    assert_eq!(out.facts.version.as_deref(), Some(version));
    let kernel = out
        .timings
        .kernel(Phase::Processing)
        .unwrap_or_else(|| panic!("no kernel processing; events: {:#?}", out.events));
    assert!(
        kernel >= Duration::from_millis(20),
        "kernel processing {kernel:?} cannot be shorter than the server's wait"
    );
}

#[test]
fn h2_processing_from_the_kernel_is_the_response_not_the_settings() {
    https_processing_is_the_response(b"h2", "HTTP/2.0");
}

#[test]
fn https_processing_from_the_kernel_is_the_response_not_a_session_ticket() {
    https_processing_is_the_response(b"http/1.1", "HTTP/1.1");
}

/// A tcp dialogue over TLS (`tls: true`): the send's answer lands while the runtime is blocked.
/// The `processing` phase (send → matching line) has the kernel's figure, which excludes it.
#[test]
fn tcp_dialogue_expect_from_the_kernel_is_not_delayed_by_a_blocked_runtime() {
    use sonde_probes::tcp::{probe, TcpRequest, TcpStep};
    let (port, flag, server) = tls_server::start(tls_server::Flag::Response);
    let req = TcpRequest {
        host: "127.0.0.1".into(),
        port,
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        tls: true,
        tls_client: insecure_client(&[]),
        // The dialogue appends "\n": the request head ends with "\r\n\r\n".
        dialogue: vec![
            TcpStep::Send("GET / HTTP/1.1\r\nHost: x\r\n\r".into()),
            TcpStep::Expect(regex::bytes::Regex::new("^HTTP/1.1 200").unwrap()),
        ],
        policy: None,
        unix: None,
    };
    let out = current_thread().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        tokio::join!(probe(&req, deadline), block_when(&flag)).0
    });
    server.join().unwrap();
    assert!(out.success(), "{:?} {:#?}", out.failure, out.events);
    let user = out.timings.user_space(Phase::Processing);
    let kernel = out
        .timings
        .kernel(Phase::Processing)
        .unwrap_or_else(|| panic!("no kernel processing; events: {:#?}", out.events));
    assert!(
        user >= BLOCK,
        "user-space send → match {user:?} should include the block"
    );
    assert!(kernel < BLOCK, "kernel send → match {kernel:?} should not");
    assert!(
        out.events
            .iter()
            .any(|e| e.message.contains("answering the send")),
        "{:#?}",
        out.events
    );
}

/// A WebSocket echo on another thread answers 10 ms after each frame, while the probe's
/// runtime is blocked right after its send: the frame's user-space send-to-match includes the
/// block, the kernel's does not.
#[test]
fn ws_frame_from_the_kernel_is_not_delayed_by_a_blocked_runtime() {
    use futures_util::{SinkExt, StreamExt};
    use sonde_probes::tls::{TlsClient, TlsOptions};
    use sonde_probes::ws::{connect, Payload, WsConnectRequest};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = l.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() {
                    std::thread::sleep(Duration::from_millis(10));
                    let _ = ws.send(m).await;
                }
            }
        });
    });
    let req = WsConnectRequest {
        url: format!("ws://{addr}/"),
        headers: vec![],
        subprotocols: vec![],
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        tls_client: TlsClient::new(&TlsOptions::default(), &[b"http/1.1"]).unwrap(),
        heartbeat: None,
        inbox_limit: 16,
        max_frame_size: 64 * 1024,
    };
    let (sent, frame, kernel) = current_thread().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (out, conn) = connect(&req, deadline).await;
        assert!(out.success(), "{:?}", out.failure);
        assert!(
            out.timings.kernel(Phase::Processing).is_some(),
            "{:#?}",
            out.events
        );
        let conn = conn.unwrap();
        let sent = conn
            .send_timed(Payload::Text("hello".into()), deadline)
            .await
            .unwrap();
        // The echo comes back while this thread is held.
        std::thread::sleep(BLOCK);
        let mut any = |_: &Payload| true;
        let res = conn.expect(&mut any, deadline, 4).await;
        let frame = res.matched.expect("the echo");
        let kernel = conn.kernel_latency(&sent, &frame);
        drop(conn);
        (sent, frame, kernel)
    });
    server.join().unwrap();
    let user = frame.received_at.duration_since(sent.at);
    let kernel = kernel.expect("a kernel figure");
    assert!(
        user >= BLOCK,
        "user-space send → match {user:?} should include the block"
    );
    assert!(kernel < BLOCK, "kernel send → match {kernel:?} should not");
    assert!(
        kernel >= Duration::from_millis(10),
        "kernel send → match {kernel:?} cannot be shorter than the server's wait"
    );
}

/// A line echo on another thread answers 10 ms after each line of a `tcp.*` long connection,
/// while the probe's runtime is blocked right after its send: the frame's user-space send →
/// match includes the block, the kernel's does not.
#[test]
fn tcp_frame_from_the_kernel_is_not_delayed_by_a_blocked_runtime() {
    use sonde_probes::tcp_conn::{connect, Framing, TcpConnectRequest};
    use sonde_probes::tls::{TlsClient, TlsOptions};
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut out = tcp.try_clone().unwrap();
        for line in BufReader::new(tcp).lines() {
            let Ok(line) = line else { return };
            std::thread::sleep(Duration::from_millis(10));
            if out.write_all(format!("{line}\n").as_bytes()).is_err() {
                return;
            }
        }
    });
    let req = std::sync::Arc::new(TcpConnectRequest {
        host: "127.0.0.1".into(),
        port,
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        tls: false,
        tls_client: TlsClient::new(&TlsOptions::default(), &[]).unwrap(),
        framing: Framing::Lines { crlf: false },
        max_frame_size: 64 * 1024,
        inbox_limit: 16,
        heartbeat: None,
    });
    let (sent, frame, kernel) = current_thread().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (out, conn) = connect(&req, deadline).await;
        assert!(out.success(), "{:?}", out.failure);
        let conn = conn.unwrap();
        let sent = conn
            .send_timed("hello".into(), false, deadline)
            .await
            .unwrap();
        // The echo comes back while this thread is held.
        std::thread::sleep(BLOCK);
        let mut any = |_: &bytes::Bytes| true;
        let res = conn.expect(&mut any, deadline, 4).await;
        let frame = res.matched.expect("the echo");
        let kernel = conn.kernel_latency(&sent, &frame);
        drop(conn);
        (sent, frame, kernel)
    });
    server.join().unwrap();
    assert_eq!(&frame.body[..], b"hello");
    let user = frame.received_at.duration_since(sent.at);
    let kernel = kernel.expect("a kernel figure");
    assert!(
        user >= BLOCK,
        "user-space send → match {user:?} should include the block"
    );
    assert!(kernel < BLOCK, "kernel send → match {kernel:?} should not");
    assert!(
        kernel >= Duration::from_millis(10),
        "kernel send → match {kernel:?} cannot be shorter than the server's wait"
    );
}

/// An MQTT broker on another thread forwards a QoS 0 publish from one connection to a subscriber
/// on another, while the probe's runtime is blocked right after the publish: publish → receive
/// in user space includes the block; by the kernel (the publisher's send timestamp → the
/// subscriber's receive timestamp, both `CLOCK_REALTIME`) it does not.
#[test]
fn mqtt_publish_to_receive_from_the_kernel_is_not_delayed_by_a_blocked_runtime() {
    use sonde_probes::mqtt::{self, ConnectOpts, Message, MqttConnectRequest, Properties};
    use sonde_probes::mqtt::{Publish, Version};
    use sonde_probes::tls::{TlsClient, TlsOptions};
    use sonde_testkit::mqtt::{MqttBroker, MqttOptions};
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let broker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let b = MqttBroker::start(MqttOptions::default()).await;
            url_tx.send(b.url()).unwrap();
            let _ = stop_rx.await;
        });
    });
    let url = url_rx.recv().unwrap();
    let request = |client_id: &str| MqttConnectRequest {
        url: url.clone(),
        version: Version::V5,
        connect: ConnectOpts {
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 30,
            ..Default::default()
        },
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        tls_client: TlsClient::new(&TlsOptions::default(), &[]).unwrap(),
        inbox_limit: 16,
        max_packet_size: 64 * 1024,
    };
    let (acked, message) = current_thread().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (out, sub) = mqtt::connect(&request("sub"), deadline).await;
        assert!(out.success(), "{:?}", out.failure);
        let sub = sub.unwrap();
        sub.subscribe(vec![("kts/#".into(), 0)], deadline)
            .await
            .unwrap();
        let (out, publisher) = mqtt::connect(&request("pub"), deadline).await;
        assert!(out.success(), "{:?}", out.failure);
        let publisher = publisher.unwrap();
        let acked = publisher
            .publish(
                Publish {
                    topic: "kts/t".into(),
                    payload: bytes::Bytes::from_static(b"hello"),
                    qos: 0,
                    retain: false,
                    dup: false,
                    pkid: 0,
                    properties: Properties::default(),
                },
                deadline,
            )
            .await
            .unwrap();
        // The broker forwards it while this thread is held.
        std::thread::sleep(BLOCK);
        let mut any = |_: &Message| true;
        let res = sub.expect(&mut any, deadline, 4).await;
        (acked, res.matched.expect("the message"))
    });
    let _ = stop_tx.send(());
    broker.join().unwrap();
    let user = message
        .received_at
        .duration_since(acked.sent_at.expect("a publish's send time"));
    let tx = acked.kernel_sent.expect("the publish's send timestamp");
    let rx = message.kernel_rx.expect("the message's receive timestamp");
    let kernel = rx.since(tx).expect("receive after send");
    assert!(
        user >= BLOCK,
        "user-space publish → receive {user:?} should include the block"
    );
    assert!(
        kernel < BLOCK,
        "kernel publish → receive {kernel:?} should not"
    );
}

/// The handshake's rounds over each TLS version: TLS 1.2 has two (ClientHello → the server's
/// flight, our Finished flight → the server's Finished), TLS 1.3 one (its client Finished is
/// answered by nothing in the handshake, so it is sent without a send timestamp). Either way
/// the kernel gives a figure.
#[test]
fn tls_handshake_rounds_are_counted_for_each_version() {
    use sonde_probes::tls::{probe, TlsClient, TlsOptions, TlsVersion};
    use sonde_testkit::http::{HttpServer, Reply, Routes};
    use sonde_testkit::pki::{server_config, Ca};
    for (version, rounds) in [(TlsVersion::Tls12, 2), (TlsVersion::Tls13, 1)] {
        let out = current_thread().block_on(async {
            let ca = Ca::new("kts rounds CA");
            let leaf = ca.leaf(&["localhost"], time::Duration::hours(1), &[]);
            let server = HttpServer::start_tls(
                Routes::new().at("/", Reply::text(200, "ok")),
                server_config(&leaf, &[b"http/1.1"], None),
            )
            .await;
            let opts = TlsOptions {
                insecure_skip_verify: true,
                server_name: Some("localhost".into()),
                min_version: Some(version),
                max_version: Some(version),
                ..Default::default()
            };
            let req = tls_request(server.addr().port(), TlsClient::new(&opts, &[]).unwrap());
            probe(&req, Instant::now() + Duration::from_secs(5)).await
        });
        assert!(out.success(), "{:?} {:#?}", out.failure, out.events);
        assert!(
            out.timings.kernel(Phase::Tls).is_some(),
            "{version:?}: no kernel tls; events: {:#?}",
            out.events
        );
        let said = format!("over {rounds} round trip(s)");
        assert!(
            out.events.iter().any(|e| e.message.contains(&said)),
            "{version:?}: {said:?} not in {:#?}",
            out.events
        );
    }
}

/// A TLS 1.3 server whose flight comes in two parts, 20 ms apart: the ServerHello, its
/// ChangeCipherSpec and the first encrypted bytes, then the rest (a flight larger than one
/// read does this too). rustls answers the first part with its own ChangeCipherSpec before the
/// rest comes; the handshake's kernel figure must still reach the flight's last segment.
#[test]
fn tls13_handshake_rounds_reach_the_end_of_a_split_flight() {
    use sonde_probes::tls::probe;
    let (port, _, server) = tls_server::start(tls_server::Flag::SplitFlight);
    let req = tls_request(port, insecure_client(&[]));
    let out = current_thread().block_on(probe(&req, Instant::now() + Duration::from_secs(5)));
    server.join().unwrap();
    assert!(out.success(), "{:?} {:#?}", out.failure, out.events);
    let kernel = out
        .timings
        .kernel(Phase::Tls)
        .unwrap_or_else(|| panic!("no kernel tls; events: {:#?}", out.events));
    // The flight's last segment left SPLIT_WAIT after its first (less 5 ms: the client's own
    // moment between the two parts is not in the figure).
    assert!(
        kernel >= tls_server::SPLIT_WAIT - Duration::from_millis(5),
        "kernel tls {kernel:?} stops before the flight's end; events: {:#?}",
        out.events
    );
}
