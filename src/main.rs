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
    no_huge_pages();
    #[cfg(not(feature = "system-alloc"))]
    purge::start();
    sonde::cli::main()
}

/// Transparent huge pages off for this process. mimalloc asks for them on its 1 GiB arenas
/// (`MADV_HUGEPAGE`, which Debian's default `madvise` mode honours), so a 2 MiB page is faulted
/// in wherever a few live objects sit: 10,000 TCP sessions held ~3.6 KB more RSS each (5,000
/// in one process: RssAnon 195 against 178 MB, `MIMALLOC_ALLOW_THP=0` in the environment), for
/// no CPU a same-moment /probe comparison could tell apart (bench/im-results.md). The flag is
/// read at each page fault, so it holds for the arena mimalloc reserved before `main` too, and
/// under the kernel's `always` mode as well.
fn no_huge_pages() {
    // A kernel without the flag (before 3.15) keeps huge pages: memory, not correctness, so a
    // failure is left unsaid (nothing logs yet this early).
    #[cfg(target_os = "linux")]
    // SAFETY: sets a flag of the calling process; no pointer is passed, and the arguments are
    // the `unsigned long`s the kernel reads.
    unsafe {
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
    }
}

/// mimalloc gives freed pages back to the OS a second after they empty (its `purge_delay`);
/// with thousands of sessions each run frees a little everywhere, and a second's worth of
/// freed pages stayed in RSS: at 10,000 TCP sessions, 0 instead of 1,000 ms measured ~3.5 KB
/// less RSS per session (bench/im-results.md). On a /probe-only exporter it costs a page fault
/// a probe (~5 % CPU), so the delay is 0 from the start (loading frees much) and while the
/// running configuration holds persistent sessions, and mimalloc's own otherwise
/// (`sonde::memory_hint`). `MIMALLOC_PURGE_DELAY` in the environment still wins.
#[cfg(not(feature = "system-alloc"))]
mod purge {
    use std::ffi::{c_int, c_long};
    use std::sync::atomic::{AtomicI64, Ordering};

    /// `mi_option_purge_delay` in the `mi_option_t` of the mimalloc 3 that libmimalloc-sys 0.1.49
    /// builds (c_src/mimalloc/v3/include/mimalloc.h); check it when that crate is updated.
    const MI_OPTION_PURGE_DELAY: c_int = 15;
    extern "C" {
        fn mi_option_get(option: c_int) -> c_long;
        fn mi_option_set(option: c_int, value: c_long);
    }
    /// mimalloc's own delay, read before the first change.
    static DEFAULT: AtomicI64 = AtomicI64::new(1000);

    pub fn start() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads and sets one of mimalloc's options, an integer; here before any other
        // thread runs, later (`sessions_held`) while they do: mimalloc reads the option, an
        // aligned word, at each purge, and itself initialises options lazily from any thread.
        unsafe {
            DEFAULT.store(
                mi_option_get(MI_OPTION_PURGE_DELAY) as i64,
                Ordering::Relaxed,
            );
            mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
        sonde::memory_hint::on_sessions_held(sessions_held);
    }

    fn sessions_held(held: bool) {
        let delay = if held {
            0
        } else {
            DEFAULT.load(Ordering::Relaxed)
        };
        // SAFETY: as in `start`.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, delay as c_long) };
    }
}
