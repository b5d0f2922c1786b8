//! How much memory one open `sonde_probes::tcp_conn` connection costs, as RSS.
//!
//! ```text
//! cargo run --release -p sonde-probes --example tcp_memory -- [CONNECTIONS]
//! ```
//!
//! (default 5000.) The server (sonde-testkit's framed echo fixture, 4-byte length prefix) runs
//! in a child process, so the numbers are the client's alone. Each connection does what a
//! logged-in IM session does: connect, send one frame, expect its echo (after the fixture's
//! noise frame), then stay idle with a heartbeat armed. RSS is read from /proc/self/statm after
//! every 1,000 connections; mimalloc is the allocator, as in sonde. Only 127.0.0.1 is used.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use sonde_probes::tcp_conn::{
    connect, Endian, Framing, Heartbeat, LengthPrefix, TcpConn, TcpConnectRequest,
};
use sonde_probes::tls::{TlsClient, TlsOptions};
use sonde_probes::{ResolveOptions, Resolver};
use tokio::time::Instant;

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn framing() -> Framing {
    Framing::LengthPrefix(LengthPrefix {
        width: 4,
        endian: Endian::Big,
        includes_header: false,
        header: vec![],
    })
}

/// The child: the echo server; prints its address.
async fn serve() {
    use sonde_testkit::framed::{FramedServer, WireFraming};
    let server = FramedServer::echo(WireFraming::Length {
        width: 4,
        little: false,
        includes_header: false,
        header: vec![],
    })
    .await;
    println!("{}", server.addr());
    std::future::pending::<()>().await;
}

async fn open_one(req: &std::sync::Arc<TcpConnectRequest>) -> TcpConn {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (out, conn) = connect(req, deadline).await;
    let conn = conn.unwrap_or_else(|| panic!("connect failed: {:?}", out.failure));
    conn.send(Bytes::from_static(b"login"), deadline)
        .await
        .expect("send");
    let mut m = |b: &Bytes| b.as_ref() == b"login";
    let r = conn.expect(&mut m, deadline, 10).await;
    assert!(r.matched.is_some(), "{:?}", r.failure);
    conn
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let first = std::env::args().nth(1);
    raise_fd_limit();
    if first.as_deref() == Some("serve") {
        return serve().await;
    }
    let total: usize = first.and_then(|a| a.parse().ok()).unwrap_or(5000);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line.trim().parse().expect("the server's address");
    let req = std::sync::Arc::new(TcpConnectRequest {
        host: addr.ip().to_string(),
        port: addr.port(),
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        tls: false,
        tls_client: TlsClient::new(&TlsOptions::default(), &[]).unwrap(),
        framing: framing(),
        max_frame_size: 1 << 20,
        inbox_limit: 64,
        heartbeat: Some(Heartbeat {
            every: Duration::from_secs(20),
            body: Bytes::from_static(b"\x1a\x00"),
        }),
    });
    let mut conns: Vec<TcpConn> = Vec::with_capacity(total + 10);
    for _ in 0..10 {
        conns.push(open_one(&req).await);
    }
    let base = rss_kib();
    let heap_base = counting::live();
    println!("baseline RSS after 10 connections: {base} KiB");
    let started = std::time::Instant::now();
    while conns.len() < total + 10 {
        let batch = 100.min(total + 10 - conns.len());
        let opened = futures_util::future::join_all((0..batch).map(|_| open_one(&req))).await;
        conns.extend(opened);
        let n = conns.len() - 10;
        if n % 1000 == 0 || n == total {
            let rss = rss_kib();
            println!(
                "{n:>6} connections: RSS {rss} KiB, {:.2} KiB per connection above baseline ({:.1?})",
                rss.saturating_sub(base) as f64 / n as f64,
                started.elapsed()
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib();
    println!(
        "after 2 s idle: RSS {rss} KiB, {:.2} KiB per connection",
        rss.saturating_sub(base) as f64 / total as f64
    );
    println!(
        "live heap per connection: {}",
        counting::live().per(heap_base, total)
    );
    let closed = conns.iter().filter(|c| c.closed().is_some()).count();
    println!("connections closed meanwhile: {closed}");
    let _ = child.kill();
    let _ = child.wait();
}
