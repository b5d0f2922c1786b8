//! The web server under hostile clients: slowloris and idle connections are closed, clients
//! that ask for `/metrics` and never read do not hold up anyone else, and connections beyond
//! `--web.max-connections` are refused and counted. In process, on loopback, with short limits.
//!
//! No timing is asserted: every wait has a generous hang guard, and a guard that fires is the
//! failure (the old server never closed these connections at all).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sonde::blackbox::safety::Safety;
use sonde::blackbox::Blackbox;
use sonde::config::LoadOptions;
use sonde::metrics::{Metrics, RunMetrics, ScenarioMetrics};
use sonde::runtime::scheduler::Scheduler;
use sonde::serve::{App, AppParts, ConfigSource};
use sonde::web_server::WebFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const HANG_GUARD: Duration = Duration::from_secs(20);

struct Server {
    addr: SocketAddr,
    app: Arc<App>,
    _stop: tokio_util::sync::DropGuard,
    _dir: tempfile::TempDir,
}

async fn start(limits: WebFlags) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blackbox.yml");
    std::fs::write(&path, "modules:\n  http_2xx:\n    prober: http\n").unwrap();
    let source = ConfigSource::Paths(vec![path]);
    let loaded = source.load(&LoadOptions::default()).unwrap();
    let metrics = Metrics::new();
    let scheduler = Scheduler::new(RunMetrics::alone(metrics.clone(), None), None, 4);
    let parts = AppParts {
        metrics,
        scheduler,
        alerts: Default::default(),
        source,
        load_options: LoadOptions::default(),
        blackbox: Blackbox::new(0.5, Safety::off()),
        history: None,
        history_writer: None,
    };
    let app = App::new(parts, loaded);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(sonde::web_server::serve(
        listener,
        sonde::web::router(app.clone()),
        limits,
        app.metrics.web.clone(),
        stop.clone(),
    ));
    Server {
        addr,
        app,
        _stop: stop.drop_guard(),
        _dir: dir,
    }
}

fn short(read_header: u64, idle: u64, write: u64, max: u32) -> WebFlags {
    WebFlags {
        read_header_timeout: Duration::from_millis(read_header),
        idle_timeout: Duration::from_millis(idle),
        write_timeout: Duration::from_millis(write),
        max_connections: max,
    }
}

/// Read until the server closes the connection (EOF or reset); what it sent.
async fn until_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(HANG_GUARD, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "{what}: the server never closed the connection"
    );
    got
}

/// A connection with a small receive buffer, so a client that does not read stops the
/// server's writes after kilobytes, not after the megabytes loopback would buffer.
async fn small_window(addr: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(addr).await.unwrap()
}

/// GET over HTTP/1.0 (the server closes after the answer): the whole answer.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    String::from_utf8_lossy(&until_closed(&mut s, path).await).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_are_closed() {
    let srv = start(short(300, 300, 300, 100)).await;
    // Half a request head, then silence.
    let mut slow = TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-A: ")
        .await
        .unwrap();
    // Nothing at all.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    // One request answered, then the connection kept alive and unused.
    let mut kept = TcpStream::connect(srv.addr).await.unwrap();
    kept.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    until_closed(&mut slow, "slowloris").await;
    until_closed(&mut silent, "silent connection").await;
    let answered = until_closed(&mut kept, "idle kept-alive connection").await;
    assert!(
        String::from_utf8_lossy(&answered).contains("Healthy"),
        "the request before the idle time was answered"
    );
}

/// ~`scenarios` × 11 KB of exposition.
fn big_exposition(metrics: &Arc<Metrics>, scenarios: usize) -> Vec<ScenarioMetrics> {
    let pad = "p".repeat(200);
    let mut yaml = String::from("scenarios:\n");
    for i in 0..scenarios {
        yaml.push_str(&format!(
            "  - scenario: s{i}\n    labels: {{pad: \"{pad}\"}}\n    tcp: {{target: \"127.0.0.1:1\"}}\n"
        ));
    }
    let cfg = sonde::config::load_str("big.yaml", &yaml, &LoadOptions::default()).unwrap();
    cfg.scenarios
        .iter()
        .map(|s| ScenarioMetrics::new(metrics.clone(), s, None))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_clients_that_never_read_do_not_block_others() {
    // Long idle and write limits: the slow clients stay connected for the whole test.
    let srv = start(short(5_000, 60_000, 60_000, 100)).await;
    let _series = big_exposition(&srv.app.metrics, 800);
    let whole = get(srv.addr, "/metrics").await;
    assert!(
        whole.len() > 6 << 20,
        "the exposition must outgrow the socket buffers for this test to mean anything: {} bytes",
        whole.len()
    );

    let mut stuck = Vec::new();
    for _ in 0..20 {
        let mut s = small_window(srv.addr).await;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        stuck.push(s); // never read
    }
    // Give them time to fill their socket buffers (not asserted: the guard below is the test).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let answer = tokio::time::timeout(HANG_GUARD, get(srv.addr, "/metrics")).await;
    let answer = answer.expect("a normal /metrics was blocked by clients that never read");
    assert!(answer.starts_with("HTTP/1.0 200"), "{}", &answer[..80]);
    // Complete: the same series as before (only a few values differ, e.g. connections open).
    assert_eq!(
        answer.lines().count(),
        whole.lines().count(),
        "incomplete exposition"
    );
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_metrics_write_is_dropped_after_the_write_timeout() {
    let srv = start(short(5_000, 60_000, 300, 100)).await;
    let _series = big_exposition(&srv.app.metrics, 800);
    let mut s = small_window(srv.addr).await;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer has begun…
    let mut head = [0u8; 12];
    tokio::time::timeout(HANG_GUARD, s.read_exact(&mut head))
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // …then read nothing for a while: the server gives up on the write and closes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = until_closed(&mut s, "client that stopped reading").await;
    let full = get(srv.addr, "/metrics").await;
    assert!(
        got.len() < full.len(),
        "the stalled client got everything ({} bytes): the write never stalled",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_and_counted() {
    let srv = start(short(60_000, 60_000, 60_000, 3)).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        // A full exchange, so the connection is surely accepted and counted.
        s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(HANG_GUARD, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("Healthy"));
        open.push(s);
    }
    let mut fourth = TcpStream::connect(srv.addr).await.unwrap();
    let _ = fourth
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let got = until_closed(&mut fourth, "connection over the cap").await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 503"), "over the cap: {got:?}");

    // One slot freed: /metrics shows the count.
    drop(open.pop());
    let (mut text, mut refused) = (String::new(), 1);
    for _ in 0..100 {
        text = get(srv.addr, "/metrics").await;
        if text.contains("HTTP/1.0 200") {
            break;
        }
        refused += 1; // the close was not seen yet: refused again
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains(&format!("sonde_http_connections_rejected_total {refused}")),
        "{text}"
    );
    assert!(text.contains("sonde_http_connections 3"), "{text}");
}
