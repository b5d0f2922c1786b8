//! Hostile targets, scheduled for real beside a healthy scenario: a server that accepts and never
//! answers, one that trickles a byte a second, one that sends an endless body (with and without a
//! size limit), a redirect loop, a silent TCP peer and a silent DNS server. Each must fail its own
//! scenario with the right reason, every time, and the healthy scenario must keep its interval
//! (no skipped runs).
//!
//! How far past its deadline each hostile run ends is printed (`bench/hostile.sh` runs this in
//! release mode and reports the numbers); the test itself only guards against hangs, because a
//! loaded CI machine makes tight timing assertions flaky.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sonde::config::{load_str, LoadOptions};
use sonde::metrics::{Metrics, RunMetrics};
use sonde::runtime::scheduler::Scheduler;
use sonde_probes::FailureReason;
use sonde_testkit::dns::{DnsServer, Zone};
use sonde_testkit::http::{HttpServer, RawServer, Reply, Routes};
use sonde_testkit::lines::LineServer;

/// Hostile runs get this deadline.
const TIMEOUT_MS: u64 = 800;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_targets_fail_their_own_probe_and_spare_the_healthy_one() {
    let never = RawServer::never_answers().await;
    let trickle = RawServer::trickle_response().await;
    let endless = RawServer::endless_body().await;
    let web = HttpServer::start(
        Routes::new()
            .at("/ok", Reply::text(200, "fine"))
            .at("/loop", Reply::redirect(302, "/loop")),
    )
    .await;
    let silent_tcp = LineServer::silent().await;
    let dns = DnsServer::start(Zone::example()).await;

    let yaml = format!(
        r#"
scenarios:
  - scenario: healthy
    interval: 200ms
    timeout: 200ms
    http: {{url: "{ok}"}}
  - scenario: always-times-out
    interval: 500ms
    timeout: 500ms
    http: {{url: "{never}"}}
  - scenario: never-answers
    interval: 2s
    timeout: {TIMEOUT_MS}ms
    http: {{url: "{never}"}}
  - scenario: trickle
    interval: 2s
    timeout: {TIMEOUT_MS}ms
    http: {{url: "{trickle}"}}
  - scenario: endless-body
    interval: 2s
    timeout: {TIMEOUT_MS}ms
    http: {{url: "{endless}"}}
  - scenario: endless-body-limited
    interval: 2s
    timeout: {TIMEOUT_MS}ms
    http: {{url: "{endless}", body_size_limit: 64KiB}}
  - scenario: redirect-loop
    interval: 2s
    timeout: {TIMEOUT_MS}ms
    http: {{url: "{loop_}"}}
  - scenario: silent-tcp
    interval: 2s
    timeout: {TIMEOUT_MS}ms
    tcp:
      target: "127.0.0.1:{tcp_port}"
      query_response: [{{expect: "^220"}}]
  - scenario: silent-dns
    interval: 2s
    timeout: {TIMEOUT_MS}ms
    dns: {{server: "{dns}", query_name: silent.sonde.test}}
"#,
        ok = web.url("/ok"),
        never = never.url("/"),
        trickle = trickle.url("/"),
        endless = endless.url("/"),
        loop_ = web.url("/loop"),
        tcp_port = silent_tcp.port(),
        dns = dns.addr(),
    );
    let config = load_str("hostile.yaml", &yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("fixture config invalid: {e:?}"));
    let scheduler = Scheduler::new(RunMetrics::alone(Metrics::new(), None), None, 64);
    scheduler.apply(&config);

    // Every hostile scenario has its slot within its 2 s interval; wait for two rounds.
    let expected: BTreeMap<&str, FailureReason> = [
        ("never-answers", FailureReason::Timeout),
        ("trickle", FailureReason::Timeout),
        ("endless-body", FailureReason::Timeout),
        ("endless-body-limited", FailureReason::Body),
        ("redirect-loop", FailureReason::Protocol),
        ("silent-tcp", FailureReason::Timeout),
        ("silent-dns", FailureReason::Timeout),
    ]
    .into_iter()
    .collect();
    let hang_guard = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done = scheduler
            .states()
            .iter()
            .filter(|s| expected.contains_key(s.scenario.name.as_str()))
            .all(|s| s.runs.load(Ordering::Relaxed) >= 2);
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < hang_guard,
            "hang guard: hostile scenarios did not complete two runs in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut healthy_runs = 0;
    for st in scheduler.states() {
        let name = st.scenario.name.as_str();
        let last = st.last().expect("every scenario has run");
        if name == "always-times-out" {
            // timeout == interval: each run ends just after the next tick, which must still run
            // (late) rather than be skipped, or a dead target is probed at half the rate.
            assert_eq!(last.result, sonde::engine::RunResult::Timeout);
            assert_eq!(
                st.skipped.load(Ordering::Relaxed),
                0,
                "a run that used its whole interval made the scheduler skip the next tick"
            );
            assert!(st.runs.load(Ordering::Relaxed) >= 3);
            continue;
        }
        if name == "healthy" {
            assert!(
                last.success(),
                "healthy scenario failed: {:?}",
                last.failure()
            );
            assert_eq!(
                st.skipped.load(Ordering::Relaxed),
                0,
                "the healthy scenario lost runs beside hostile ones"
            );
            healthy_runs = st.runs.load(Ordering::Relaxed);
            continue;
        }
        let failure = last
            .failure()
            .unwrap_or_else(|| panic!("{name} passed against a hostile target"));
        assert_eq!(
            failure.reason, expected[name],
            "{name}: wrong reason: {failure}"
        );
        let ms = last.duration.as_secs_f64() * 1000.0;
        let over = if failure.reason == FailureReason::Timeout {
            format!("ended {:.1} ms after its deadline", ms - TIMEOUT_MS as f64)
        } else {
            "failed before its deadline".to_string()
        };
        println!(
            "hostile {name:<22} reason={:<9} run={ms:>7.1}ms  {over}  ({})",
            failure.reason.as_str(),
            failure.message
        );
        // Hang guard only (see the module docs): a run that ignored its deadline takes seconds.
        assert!(
            last.duration < Duration::from_millis(TIMEOUT_MS + 2000),
            "{name} ran {:?}, far past its {TIMEOUT_MS} ms deadline",
            last.duration
        );
    }
    // Over ≥ 2 s, a 200 ms scenario that kept its interval ran about ten times; it must not
    // have been starved (the bound is loose on purpose: this is not a timing test).
    assert!(
        healthy_runs >= 5,
        "healthy scenario ran only {healthy_runs} times"
    );
    scheduler.shutdown().await;
}
