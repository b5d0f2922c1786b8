//! A `sonde serve` process for tests that run the real binary: started with the caller's
//! arguments, awaited until ready, read over HTTP, signalled, and killed when dropped.
//!
//! One helper for every such test (`tests/serve.rs`, the interop suite), so that what "started",
//! "ready" and "ran" mean, and how long a test waits for them, is decided in one place.
//!
//! The binary's path comes from the caller: `env!("CARGO_BIN_EXE_sonde")` exists only while
//! compiling the `sonde` crate's own integration tests, not this crate.
//!
//! Everything the process writes (stderr, and stdout too) goes to a file in the process's own
//! temporary folder, never to a pipe: nobody reads a pipe while the test runs, so a chatty
//! `--log-level debug` run would fill it and block sonde mid-write. The file is read whole when
//! a test asks for [`Serve::log`] or a wait fails.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client;

/// The hang guard of every wait without its own bound: start-up, a scenario's next run, exit.
/// Coarse on purpose; it only turns a hang into a failure with the log attached.
const HANG_GUARD: Duration = Duration::from_secs(20);

/// How often the waits poll. Short enough not to slow the tests, long enough not to load them.
const POLL: Duration = Duration::from_millis(50);

/// A free port on 127.0.0.1 at the time of asking (bound, then released). Another process could
/// take it before sonde binds it; on a test machine that is rare enough, and a `--listen
/// 127.0.0.1:0` run ([`ServeCommand::listen`]) avoids it entirely.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// How to start a `sonde serve` process; build it with [`Serve::command`].
#[must_use = "a command does nothing until started"]
pub struct ServeCommand {
    bin: PathBuf,
    dir: tempfile::TempDir,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    listen: Option<SocketAddr>,
}

impl ServeCommand {
    /// `-c path`: a scenario file or folder. Repeatable, kept in order.
    pub fn config(self, path: impl AsRef<Path>) -> Self {
        self.arg("-c").arg(path.as_ref())
    }

    /// Writes `yaml` to `file_name` in the process's own temporary folder and passes it with
    /// `-c`. The file lives as long as the [`Serve`], so a reload can read it again (or the test
    /// rewrite it: [`Serve::dir`]).
    pub fn config_yaml(self, file_name: &str, yaml: &str) -> Self {
        let path = self.dir.path().join(file_name);
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.config(path)
    }

    /// `--region region`.
    pub fn region(self, region: &str) -> Self {
        self.arg("--region").arg(region)
    }

    /// `--log-level level`.
    pub fn log_level(self, level: &str) -> Self {
        self.arg("--log-level").arg(level)
    }

    /// Any other argument, after `serve` and before `--listen`.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// An environment variable for the process (on top of the test's own environment).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Run from `dir` (relative `-c` paths, `./sonde.yaml`). Default: the test's own folder.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// `--listen addr`. Default: a [`free_addr`]. A port of 0 lets sonde's OS pick the port;
    /// the helper then learns it from sonde's `serving listen=…` log line.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Starts the process and returns at once; see [`Serve::wait_ready`].
    pub fn spawn(self) -> Serve {
        let listen = self.listen.unwrap_or_else(free_addr);
        let log_path = self.dir.path().join("sonde.log");
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        // One open file for both streams: they share its offset, so neither overwrites the other.
        let out = log.try_clone().expect("clone the log file handle");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve").args(&self.args);
        // Each process keeps its history in its own folder (unless the test names one), not in
        // the user's data folder shared by every test.
        if !self
            .args
            .iter()
            .any(|a| a.to_string_lossy().starts_with("--storage.path"))
        {
            cmd.arg("--storage.path").arg(self.dir.path().join("data"));
        }
        cmd.arg("--listen")
            .arg(listen.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(log));
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {} serve: {e}", self.bin.display()));
        Serve {
            child,
            addr: (listen.port() != 0).then_some(listen),
            log_path,
            dir: self.dir,
        }
    }

    /// Starts the process and waits until it is ready ([`Serve::wait_ready`]).
    pub fn start(self) -> Serve {
        let mut s = self.spawn();
        s.wait_ready();
        s
    }
}

/// A running `sonde serve`, killed (and reaped) when dropped.
pub struct Serve {
    child: Child,
    /// Where it listens; `None` until learnt from the log when started on port 0.
    addr: Option<SocketAddr>,
    log_path: PathBuf,
    /// Holds the log and any [`ServeCommand::config_yaml`] files.
    dir: tempfile::TempDir,
}

impl Serve {
    /// A command to run `bin serve` (pass `env!("CARGO_BIN_EXE_sonde")`).
    pub fn command(bin: impl AsRef<Path>) -> ServeCommand {
        ServeCommand {
            bin: bin.as_ref().to_owned(),
            dir: tempfile::tempdir().expect("create a temporary folder"),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            listen: None,
        }
    }

    /// The address sonde serves on (the real port, also when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .expect("sonde's address is not known yet: call wait_ready first")
    }

    /// The process's own temporary folder (its log, its `config_yaml` files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until `/-/ready` answers 200 (learning the port first when started on port 0).
    /// Panics with the log if the process exits first, or after the hang guard.
    pub fn wait_ready(&mut self) {
        let guard = Instant::now() + HANG_GUARD;
        loop {
            if self.addr.is_none() {
                self.addr = serving_addr(&self.log());
            }
            if let Some(addr) = self.addr {
                if matches!(client::get(addr, "/-/ready"), Ok(r) if r.status == 200) {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sonde serve exited early ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < guard,
                "hang guard: sonde serve not ready after {HANG_GUARD:?}:\n{}",
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }

    /// `GET path`; panics if there is no HTTP answer at all (any status is returned).
    pub fn get(&self, path: &str) -> client::Response {
        client::get(self.addr(), path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `/api/v1/scenarios` as one answer: the document, and the names of the scheduled
    /// scenarios in it (read from the same answer, so they agree with its other fields).
    pub fn scenario_list(&self) -> (Value, BTreeSet<String>) {
        let v = self.get("/api/v1/scenarios").json();
        let names = v["scenarios"]
            .as_array()
            .unwrap_or_else(|| panic!("no scenario list in {v}"))
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        (v, names)
    }

    /// `/api/v1/scenarios/{name}`, which must exist.
    pub fn scenario(&self, name: &str) -> Value {
        let r = self.get(&format!("/api/v1/scenarios/{name}"));
        assert_eq!(r.status, 200, "GET /api/v1/scenarios/{name}: {}", r.body);
        r.json()
    }

    /// Waits until `name` exists and has completed more than `more_than` runs; returns its
    /// document. Panics with the log after the hang guard.
    pub fn wait_runs(&self, name: &str, more_than: u64) -> Value {
        let guard = Instant::now() + HANG_GUARD;
        loop {
            let r = self.get(&format!("/api/v1/scenarios/{name}"));
            if r.status == 200 {
                let v = r.json();
                if v["runs"].as_u64().unwrap_or(0) > more_than {
                    return v;
                }
            }
            assert!(
                Instant::now() < guard,
                "hang guard: {name} did not get past {more_than} runs in {HANG_GUARD:?}\n\
                 sonde's log:\n{}",
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits (hang guard `within`) until every scenario has completed a run, then returns each
    /// scenario's full document (status, last run with its trace) by name.
    pub fn wait_all_ran(&self, within: Duration) -> BTreeMap<String, Value> {
        let guard = Instant::now() + within;
        loop {
            let list = self.get("/api/v1/scenarios").json();
            let scenarios = list["scenarios"]
                .as_array()
                .unwrap_or_else(|| panic!("no scenarios list in {list}"));
            let pending: Vec<String> = scenarios
                .iter()
                .filter(|s| s["last_run"].is_null())
                .map(|s| format!("{} (next run at {})", s["name"], s["next_run_at"]))
                .collect();
            if pending.is_empty() {
                assert!(!scenarios.is_empty(), "sonde serves no scenario: {list}");
                return scenarios
                    .iter()
                    .map(|s| {
                        let name = s["name"].as_str().expect("scenario name").to_string();
                        let doc = self.scenario(&name);
                        (name, doc)
                    })
                    .collect();
            }
            assert!(
                Instant::now() < guard,
                "hang guard: after {within:?} these scenarios never ran: {}\nsonde's log:\n{}",
                pending.join(", "),
                self.log()
            );
            std::thread::sleep(POLL * 2);
        }
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) only reads its two integer arguments; the pid is our own child's,
        // not yet reaped (reaping takes `self` by value or happens on drop).
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the process to exit (hang guard); returns its exit code (`None` if a signal
    /// ended it) and its whole log.
    pub fn wait_exit(mut self) -> (Option<i32>, String) {
        let guard = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on sonde serve") {
                return (status.code(), self.log());
            }
            assert!(
                Instant::now() < guard,
                "hang guard: sonde did not exit within {HANG_GUARD:?}:\n{}",
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in sonde's start-up line, as `tracing`'s plain formatter writes it (no colours:
/// the log is a file, not a terminal):
/// `2025-01-01T00:00:00.000000Z  INFO sonde 0.1.0 serving listen=127.0.0.1:41234 config=… scenarios=2`.
/// Only complete lines count: a line still being written could end in part of the port.
fn serving_addr(log: &str) -> Option<SocketAddr> {
    let complete = log.rsplit_once('\n').map_or("", |(done, _)| done);
    complete
        .lines()
        .filter(|line| line.split_whitespace().any(|w| w == "serving"))
        .find_map(|line| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix("listen="))
                .and_then(|a| a.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_line_gives_the_bound_address() {
        let log = "2025-01-01T00:00:00.000000Z  WARN the built-in configuration leaves out its ICMP check: no\n\
                   2025-01-01T00:00:00.000001Z  INFO sonde 0.1.0 serving listen=127.0.0.1:41234 config=<built-in> scenarios=2\n";
        assert_eq!(serving_addr(log), Some("127.0.0.1:41234".parse().unwrap()));
        let v6 = "… INFO sonde 0.1.0 serving listen=[::1]:9115 config=a.yaml scenarios=1\n";
        assert_eq!(serving_addr(v6), Some("[::1]:9115".parse().unwrap()));
    }

    #[test]
    fn no_serving_line_yet_gives_nothing() {
        assert_eq!(serving_addr(""), None);
        // A half-written line (the port still being written) must not give another port.
        assert_eq!(
            serving_addr("INFO sonde 0.1.0 serving listen=127.0.0.1:412"),
            None
        );
        assert_eq!(serving_addr("INFO reloaded listen=127.0.0.1:1\n"), None);
    }
}
