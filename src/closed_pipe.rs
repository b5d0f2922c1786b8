//! What a one-shot command does when its reader goes away (`sonde run … | head -1`).
//!
//! Rust starts every program with SIGPIPE ignored, so a write to a closed pipe returns `EPIPE`
//! and `println!` panics on it (exit 101 and a panic message). Command-line filters such as
//! `grep`, `cat` or `head` keep the kernel's default instead: the write kills the process with
//! SIGPIPE, silently, and the shell reports status 141 (128 + 13), which pipelines treat as
//! "the reader had enough". sonde's one-shot commands (`check`, `run`, `probe`, `rules`,
//! `schema`, `serve --config.check`) do the same.
//!
//! `sonde serve` keeps SIGPIPE ignored: it writes to sockets and must survive any peer that
//! hangs up (its socket writes use `MSG_NOSIGNAL` anyway, but a server must not bet on that),
//! and it logs through `tracing`, which drops a line it cannot write instead of panicking.

/// Restore the default SIGPIPE action: a write to a closed stdout or stderr ends the process
/// quietly, as it ends `grep`. Call before the first write.
pub fn exit_quietly_on_closed_pipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler, so no code runs in
    // signal context; done at start-up, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
