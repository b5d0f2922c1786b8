//! Kernel timestamps against a busy prober: the runtime's only thread is blocked for 50 ms while
//! a reply arrives. The user-space figure must grow by the block; the kernel-timestamped one must
//! not. Assertions use margins no tighter than the injected 50 ms.
//!
//! The probe is polled first inside `join!` on a current-thread runtime, so it has sent its
//! request (ICMP) or started its connect before the blocking task runs; the reply can only be
//! read after the block ends.

#![cfg(target_os = "linux")]

use std::net::IpAddr;
use std::time::Duration;

use sonde_probes::icmp::{permission_check, probe, IcmpRequest};
use sonde_probes::resolve::connect_tcp;
use sonde_probes::{Phase, Recorder, ResolveOptions, Resolver, OVERLOADED};
use tokio::time::Instant;

const BLOCK: Duration = Duration::from_millis(50);

fn current_thread() -> tokio::runtime::Runtime {
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
