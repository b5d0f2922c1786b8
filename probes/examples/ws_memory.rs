//! How much memory one open `sonde_probes::ws` connection costs, as RSS.
//!
//! ```text
//! cargo run --release -p sonde-probes --example ws_memory -- [CONNECTIONS] [tls]
//! ```
//!
//! (default 5000 connections; `tls` = wss with a generated CA.)
//!
//! Against the reference chat server instead (to measure the *server's* RSS per connection, read
//! its /proc/PID/statm from outside): `ws_memory N chat ws://127.0.0.1:9300/chat [SECRET]`: every
//! connection logs in as its own user (`u1`, `u2`, …) with the HMAC token and stays idle.
//!
//! The server (sonde-testkit's echo fixture) runs in a child process, so the numbers are the
//! client's alone. Each connection does what a logged-in IM session does: connect, send one
//! frame, expect its echo, then stay idle with a heartbeat armed. RSS is read from
//! /proc/self/statm after every 1,000 connections. mimalloc is the allocator, as in sonde.
//! Only 127.0.0.1 is used.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sonde_probes::tls::{TlsClient, TlsOptions};
use sonde_probes::ws::{connect, Payload, WsConn, WsConnectRequest};
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
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        // Root may raise the hard limit too; anyone may raise the soft one up to the hard one.
        let wanted = lim.rlim_max.max(1 << 18);
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The child: an echo server; prints its URL and, with TLS, the CA file to trust.
async fn serve(tls: bool) {
    use sonde_testkit::pki::{self, Ca};
    use sonde_testkit::ws::{WsOptions, WsServer};
    let ca = Ca::new("ws_memory CA");
    let leaf = ca.leaf(&["127.0.0.1"], time::Duration::days(1), &[]);
    let server = WsServer::start(WsOptions {
        tls: tls.then(|| pki::server_config(&leaf, &[b"http/1.1"], None)),
        ..Default::default()
    })
    .await;
    println!("{} {}", server.url("/"), ca.ca_file.display());
    std::future::pending::<()>().await;
}

/// What each connection sends after connecting, and what it waits for.
#[derive(Clone)]
enum Dialogue {
    /// Send "login", expect its echo (the testkit echo server).
    Echo,
    /// Log in to the chat server as user `u<n>`; expect login_ok.
    Chat { secret: String },
}

fn chat_token(secret: &str, user: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, user.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn open_one(req: &WsConnectRequest, dialogue: &Dialogue, n: usize) -> WsConn {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (out, conn) = connect(req, deadline).await;
    let conn = conn.unwrap_or_else(|| panic!("connect failed: {:?}", out.failure));
    let (send, want) = match dialogue {
        Dialogue::Echo => ("login".to_string(), "login".to_string()),
        Dialogue::Chat { secret } => {
            let user = format!("u{n}");
            (
                format!(
                    r#"{{"op":"login","user":"{user}","token":"{}"}}"#,
                    chat_token(secret, &user)
                ),
                "\"login_ok\"".to_string(),
            )
        }
    };
    conn.send(Payload::Text(send), deadline)
        .await
        .expect("send");
    let mut m = |p: &Payload| matches!(p, Payload::Text(t) if t.contains(&want));
    let r = conn.expect(&mut m, deadline, 10).await;
    assert!(r.matched.is_some(), "{:?}", r.failure);
    conn
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    let mode = args.next();
    let tls = mode.as_deref() == Some("tls");
    if first.as_deref() == Some("serve") {
        raise_fd_limit();
        return serve(tls).await;
    }
    let total: usize = first.and_then(|a| a.parse().ok()).unwrap_or(5000);
    raise_fd_limit();

    let (child, url, tls_options, dialogue) = if mode.as_deref() == Some("chat") {
        let url = args.next().expect("chat needs the server's URL");
        let secret = args.next().unwrap_or_else(|| "sonde-demo-secret".into());
        (None, url, TlsOptions::default(), Dialogue::Chat { secret })
    } else {
        let (child, url, tls_options) = start_child(tls);
        (Some(child), url, tls_options, Dialogue::Echo)
    };
    println!("{url}");
    let req = WsConnectRequest {
        url,
        headers: vec![],
        subprotocols: vec![],
        resolver: Resolver::with_servers(&["127.0.0.1:9".parse().unwrap()]).unwrap(),
        ip: ResolveOptions::default(),
        tls_client: TlsClient::new(&tls_options, &[b"http/1.1"]).unwrap(),
        heartbeat: Some(Duration::from_secs(20)),
        inbox_limit: 64,
        max_frame_size: 64 * 1024,
    };

    // Warm up (runtime, allocator arenas) before the baseline.
    let mut conns: Vec<WsConn> = Vec::with_capacity(total + 10);
    for i in 0..10 {
        conns.push(open_one(&req, &dialogue, 1_000_000 + i).await);
    }
    let base = rss_kib();
    let heap_base = counting::live();
    println!("baseline RSS after 10 connections: {base} KiB");
    let started = std::time::Instant::now();
    while conns.len() < total + 10 {
        let batch = 100.min(total + 10 - conns.len());
        let first = conns.len();
        let opened = futures_util::future::join_all(
            (0..batch).map(|i| open_one(&req, &dialogue, first + i)),
        )
        .await;
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
    println!("opened {total} in {:.1?}", started.elapsed());
    // Idle a moment so buffers settle, then measure once more.
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
    if mode.as_deref() == Some("chat") {
        // Keep them open while the server's RSS is read from outside.
        println!("holding the connections for 30 s");
        tokio::time::sleep(Duration::from_secs(30)).await;
        // Unread noise has been piling up in the inboxes (up to inbox_limit each).
        let rss = rss_kib();
        println!(
            "after 30 s of unread noise: RSS {rss} KiB, {:.1} KiB per connection",
            (rss.saturating_sub(base)) as f64 / total as f64
        );
    }
    drop(conns);
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Start the echo server child; its URL and the CA file to trust.
fn start_child(tls: bool) -> (std::process::Child, String, TlsOptions) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["serve", if tls { "tls" } else { "plain" }])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (url, ca_file) = line.trim().split_once(' ').expect("URL and CA file");
    let tls_options = TlsOptions {
        ca_file: Some(ca_file.into()),
        ..Default::default()
    };
    (child, url.to_string(), tls_options)
}
