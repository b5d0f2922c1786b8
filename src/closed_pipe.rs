//! What sonde does when its reader goes away (`sonde run … | head -1`).
//!
//! Rust starts every program with SIGPIPE ignored, so a write to a closed pipe returns `EPIPE`
//! and `println!` panics on it (exit 101 and a panic message). Command-line filters such as
//! `grep`, `cat` or `head` end quietly instead: SIGPIPE kills them and the shell reports status
//! 141 (128 + 13), which pipelines treat as "the reader had enough". sonde does the same.
//!
//! Not by restoring SIGPIPE's default action: sockets would then raise it too — a `writev` to a
//! peer that hung up (hyper writes requests that way) would kill `sonde run` or `serve` because
//! of a hostile target. SIGPIPE stays ignored; only a panic of `print!`/`eprint!` on a closed
//! stdout or stderr ends the process, by SIGPIPE, without a message.

use std::panic::PanicHookInfo;

/// Install the panic hook that turns a print to a closed pipe into a quiet death by SIGPIPE.
/// Every other panic goes to the previous hook unchanged.
pub fn exit_quietly_on_closed_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_print_to_closed_pipe(info) {
            die_of_sigpipe();
        }
        previous(info);
    }));
}

/// std's own panic for a failed `print!` ("failed printing to stdout: Broken pipe…"), while
/// stdout or stderr really is a pipe without reader.
fn is_print_to_closed_pipe(info: &PanicHookInfo<'_>) -> bool {
    let payload = info.payload();
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    msg.starts_with("failed printing to std") && (widowed(1) || widowed(2))
}

/// Whether `fd` is the write end of a pipe (or socket) whose reader is gone: poll reports an
/// error condition for it.
fn widowed(fd: libc::c_int) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default action and raising the signal on this thread ends the
    // process as the kernel would have for a plain C program; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached; should the signal be blocked, still end quietly.
    std::process::exit(128 + libc::SIGPIPE)
}
