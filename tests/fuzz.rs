//! Fuzzing that stays (issue 17 item 8). `cargo test --test fuzz` runs every target over its
//! checked-in corpus (`fuzz/corpus/<target>/`, seeded from the fixtures, plus every finding
//! kept as a regression case) and a small number of mutations from a fixed seed, so it is
//! deterministic and takes seconds. `bench/fuzz.sh` runs the same targets for minutes with
//! random seeds (the ignored `campaign` test below) and saves what it finds to the corpus.

#[path = "fuzz/driver.rs"]
mod driver;
#[path = "fuzz/targets.rs"]
mod targets;

use std::time::Duration;

use driver::{fuzz, Target};
use targets::ALL;

/// Mutations per target in `cargo test`: enough to exercise the mutator, small enough that
/// the whole file stays within a few seconds.
const TEST_MUTATIONS: u64 = 300;
const TEST_SEED: u64 = 0x50de_f022;

fn target(name: &str) -> &'static Target {
    ALL.iter().find(|t| t.name == name).expect("a target")
}

fn check(name: &str) {
    let t = target(name);
    let stats = fuzz(t, TEST_SEED, TEST_MUTATIONS, Duration::from_secs(30), false);
    assert!(
        stats.findings.is_empty(),
        "{name}: {} failing input(s): {:?}",
        stats.findings.len(),
        stats.findings
    );
    assert!(stats.execs > TEST_MUTATIONS);
}

#[test]
fn scenario_loader() {
    check("scenario");
}

#[test]
fn blackbox_loader() {
    check("blackbox");
}

#[test]
fn templates() {
    check("template");
}

#[test]
fn probe_query() {
    check("probe_query");
}

#[test]
fn tcp_framing() {
    check("tcp_framing");
}

#[test]
fn dns_answer() {
    check("dns_answer");
}

#[test]
fn ws_match() {
    check("ws_match");
}

#[test]
fn frame_codec() {
    check("frame_codec");
}

#[test]
fn kts_cmsg() {
    check("kts_cmsg");
}

#[test]
fn remote_write_expo() {
    check("expo");
}

/// `bench/fuzz.sh`: every target (or those in `FUZZ_TARGETS`, comma-separated) for
/// `FUZZ_SECONDS` each, from `FUZZ_SEED` (random when unset). Prints executions and findings;
/// findings are saved to the corpus.
#[test]
#[ignore = "a fuzzing campaign: run by bench/fuzz.sh"]
fn campaign() {
    let secs: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let only = std::env::var("FUZZ_TARGETS").unwrap_or_default();
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed}, {secs} s per target");
    let mut total = 0;
    for t in ALL {
        if !only.is_empty() && !only.split(',').any(|n| n == t.name) {
            continue;
        }
        let stats = fuzz(t, seed, u64::MAX, Duration::from_secs(secs), true);
        println!(
            "target {:<12} execs {:>9} ({:.0}/s) findings {}",
            t.name,
            stats.execs,
            stats.execs as f64 / secs.max(1) as f64,
            stats.findings.len()
        );
        for f in &stats.findings {
            println!("  finding {f}");
        }
        total += stats.findings.len();
    }
    println!("findings total {total}");
}
