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
