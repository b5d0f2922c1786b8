//! Signals and process limits: SIGHUP reloads, SIGTERM/SIGINT shut down (a second one exits at
//! once), and the file-descriptor limit raised before anything opens sockets.

use std::sync::Arc;

use super::app::{App, Reload};

/// SIGHUP reloads; SIGTERM and SIGINT shut down.
pub async fn handle_signals(app: Arc<App>, shutdown: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; use POST /-/reload to reload");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                if let Reload::Rejected(_) = app.reload().await {
                    // Already logged by reload().
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down (a second SIGTERM or SIGINT exits at once)");
    shutdown.cancel();
    // Runs in flight may take up to their timeout; an impatient operator can cut that short.
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("sonde: second signal: exiting without waiting for runs in flight");
    std::process::exit(1);
}

/// Raise the soft file-descriptor limit to the hard one: every in-flight probe holds a socket,
/// and the common default soft limit of 1024 is far below what thousands of scenarios need. (Go
/// programs such as blackbox_exporter get the same from the Go runtime.)
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!("could not raise the file descriptor limit");
            }
        }
    }
}
