//! One-shot commands whose reader went away (`sonde run … | head -1`, `sonde check … | head -0`)
//! end as `grep` does — killed by SIGPIPE, silently — instead of panicking (exit 101).
//! The pipes here have their read end closed before the binary starts, so every write fails.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// A pipe whose read end is already closed: its write end, for a child's stdout or stderr.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe() fills two valid descriptors on success; each is owned exactly once below.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "pipe(): {}", std::io::Error::last_os_error());
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

enum Closed {
    Stdout,
    Stderr,
}

/// Run sonde with `args` and the given stream on a closed pipe; the other one is captured.
fn run(args: &[&str], closed: Closed) -> (ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sonde"));
    cmd.args(args).stdin(Stdio::null());
    let out = match closed {
        Closed::Stdout => cmd
            .stdout(Stdio::from(closed_pipe()))
            .stderr(Stdio::piped())
            .output(),
        Closed::Stderr => cmd
            .stderr(Stdio::from(closed_pipe()))
            .stdout(Stdio::piped())
            .output(),
    }
    .expect("spawn sonde");
    let other = match closed {
        Closed::Stdout => out.stderr,
        Closed::Stderr => out.stdout,
    };
    (out.status, String::from_utf8_lossy(&other).into_owned())
}

fn assert_quiet_sigpipe(what: &str, status: ExitStatus, other: &str) {
    assert!(
        !other.contains("panicked"),
        "{what}: panicked on the closed pipe: {other}"
    );
    assert_ne!(status.code(), Some(101), "{what}: exit 101 (a panic)");
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "{what}: expected to end by SIGPIPE as grep does, got {status:?}; other stream: {other}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const VALID: &str =
    "scenarios:\n  - scenario: refused\n    timeout: 2s\n    http: {url: \"http://127.0.0.1:1/\"}\n";

#[test]
fn check_with_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "ok.yaml", VALID);
    let (status, stderr) = run(&["check", &f], Closed::Stdout);
    assert_quiet_sigpipe("sonde check | head -0", status, &stderr);
}

#[test]
fn check_with_closed_stderr_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.yaml",
        "scenarios:\n  - name: x\n    stepz: []\n",
    );
    let (status, stdout) = run(&["check", &f], Closed::Stderr);
    assert_quiet_sigpipe("sonde check bad.yaml 2>&-pipe", status, &stdout);
}

#[test]
fn run_with_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback refuses at once: the run fails fast and then reports on stdout.
    let f = write(dir.path(), "refused.yaml", VALID);
    let (status, stderr) = run(&["run", &f], Closed::Stdout);
    assert_quiet_sigpipe("sonde run | head -1", status, &stderr);
}

#[test]
fn schema_with_closed_stdout_ends_quietly() {
    let (status, stderr) = run(&["schema"], Closed::Stdout);
    assert_quiet_sigpipe("sonde schema | head -0", status, &stderr);
}

/// The other side of the coin: only stdout and stderr end sonde quietly. A target that hangs up
/// while sonde is still sending (a big POST to a server that closes without reading) makes the
/// socket write fail with EPIPE — that must fail the scenario (exit 1), not kill sonde by
/// SIGPIPE.
#[test]
fn a_target_hanging_up_mid_request_fails_the_scenario_only() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut first = [0u8; 16];
            let _ = std::io::Read::read(&mut &conn, &mut first);
            // Closing with unread data resets the connection: sonde's next writes fail.
            drop(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let body = "x".repeat(8 << 20);
    let f = write(
        dir.path(),
        "hangup.yaml",
        &format!(
            "scenarios:\n  - scenario: hangup\n    timeout: 10s\n    http: {{url: \"http://{addr}/\", method: POST, body: \"{body}\"}}\n"
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(["run", &f])
        .stdin(Stdio::null())
        .output()
        .expect("spawn sonde");
    assert_eq!(
        out.status.signal(),
        None,
        "sonde was killed by a signal: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
