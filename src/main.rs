//! The `sonde` binary: everything lives in the library; see `sonde::cli`.

/// mimalloc instead of glibc's malloc: with 10,000 scenarios it holds ~12% less memory in
/// steady state, hands the memory of a /metrics scrape or a config reload back to the OS
/// instead of keeping it, and spends ~15% less CPU (measured with bench/scheduler.sh; glibc's
/// per-thread arenas keep freed memory and fragment). The bench-only feature `system-alloc`
/// keeps glibc's malloc so heaptrack (which hooks malloc) can attribute every allocation:
/// `cargo build --features system-alloc`. Re-measured for issue 12 (10,000-session benchmarks,
/// bench/im-results.md, round 3): glibc holds ~29 KB more per session, jemalloc ~5% less at
/// the same CPU, too little to switch on that evidence.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sonde::cli::main()
}
