//! The history store as a user meets it: the real binary, its API and badges over HTTP, its file
//! on disk after `kill -9`, a restart, a read-only folder and a full disk. Targets are
//! in-process servers on loopback.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sonde_testkit::http::{HttpServer, Reply, Routes};
use sonde_testkit::process::Serve;

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");
const ENV_SECRET: &str = "hist-s3cret-4471";
const CFG_PASS: &str = "hist-pass-9902";

use sonde_testkit::runtime;

async fn target() -> HttpServer {
    HttpServer::start(
        Routes::new()
            .at("/ok", Reply::text(200, "all good"))
            .at("/down", Reply::text(503, "nope")),
    )
    .await
}

/// Waits (up to 30 s) for `f` to return `Some`.
fn eventually<T>(what: &str, s: &Serve, mut f: impl FnMut() -> Option<T>) -> T {
    let guard = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < guard, "{what}: timed out\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn runs(s: &Serve, name: &str, query: &str) -> Value {
    let r = s.get(&format!("/api/v1/scenarios/{name}/runs{query}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn metric(s: &Serve, name: &str) -> Option<f64> {
    let body = s.get("/metrics").body;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn api_lists_runs_traces_uptime_latency_and_badges_without_secrets() {
    let rt = runtime();
    let web = rt.block_on(target());
    let data = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"scenarios:
  - scenario: ok
    interval: 200ms
    http:
      url: "{ok}"
      basic_auth: {{username: probe, password: {CFG_PASS}}}
  - scenario: team/down
    interval: 200ms
    http:
      url: "{down}?key={{{{ env.SONDE_HIST_SECRET }}}}"
      headers: {{X-Api-Key: "{{{{ env.SONDE_HIST_SECRET }}}}"}}
"#,
        ok = web.url("/ok"),
        down = web.url("/down"),
    );
    let s = Serve::command(SONDE)
        .config_yaml("sonde.yaml", &yaml)
        .arg("--storage.path")
        .arg(data.path())
        .env("SONDE_HIST_SECRET", ENV_SECRET)
        .start();
    s.wait_runs("ok", 3);
    s.wait_runs("team/down", 3);
    let ok = eventually("3 runs stored", &s, || {
        let v = runs(&s, "ok", "");
        (v["runs"].as_array().unwrap().len() >= 3).then_some(v)
    });
    let list = ok["runs"].as_array().unwrap();
    assert!(list
        .iter()
        .all(|r| r["success"] == true && r["scenario"] == "ok"));
    assert!(list
        .windows(2)
        .all(|p| p[0]["started_ms"].as_i64() >= p[1]["started_ms"].as_i64()));
    assert_eq!(list[0]["steps"][0]["name"], "http");
    assert!(list[0]["started_at"].as_str().unwrap().ends_with('Z'));
    // The first run keeps its trace; the following successes do not.
    let first = list.last().unwrap();
    assert_eq!(first["has_trace"], true, "{first:#}");
    assert_eq!(list[0]["has_trace"], false);

    // A scenario name with a slash; failures only; paging with `next`.
    let down = runs(&s, "team/down", "?result=failure&limit=1");
    let d = &down["runs"][0];
    assert_eq!(d["success"], false);
    assert_eq!(d["reason"], "status");
    assert_eq!(d["failed_step"], "http");
    assert_eq!(d["error"], "status 503 — expected 2xx");
    let next = down["next"].as_str().expect("a next page");
    let page2 = runs(&s, "team/down", &format!("?{next}"));
    assert!(page2["runs"][0]["id"].as_i64() < d["id"].as_i64());
    let one = s.get(&format!("/api/v1/scenarios/team/down/runs/{}", d["id"]));
    assert_eq!(one.status, 200, "{}", one.body);
    let one = one.json();
    assert_eq!(one["run"]["id"], d["id"]);
    assert_eq!(one["trace"]["steps"][0]["facts"]["status"], 503, "{one:#}");
    let trace = one["trace"].to_string();
    assert!(trace.contains("<redacted>"), "{trace}");
    assert!(!trace.contains(ENV_SECRET), "{trace}");

    let up = s.get("/api/v1/scenarios/ok/uptime?window=7d").json();
    assert_eq!(up["ratio"], 1.0, "{up:#}");
    assert_eq!(up["window"], "7d");
    let up = s.get("/api/v1/scenarios/team/down/uptime").json();
    assert_eq!(up["ratio"], 0.0, "{up:#}");
    assert!(up["runs"].as_u64().unwrap() >= 3);
    let lat = s
        .get("/api/v1/scenarios/ok/latency?step=http&from=-1h")
        .json();
    let p = &lat["points"][0];
    assert!(
        p["count"].as_u64().unwrap() >= 1 && p["p95_s"].as_f64().unwrap() > 0.0,
        "{lat:#}"
    );

    let inc = s.get("/api/v1/scenarios/team/down/incidents").json();
    let open = &inc["incidents"][0];
    assert!(open["to"].is_null(), "{inc:#}");
    assert_eq!(open["first_reason"], "status");
    assert!(open["failed_runs"].as_u64().unwrap() >= 3);
    assert!(s.get("/api/v1/scenarios/ok/incidents").json()["incidents"]
        .as_array()
        .unwrap()
        .is_empty());

    // Bad questions are 400s that say why; unknown scenarios 404.
    for q in [
        "/api/v1/scenarios/ok/runs?limit=0",
        "/api/v1/scenarios/ok/runs?result=maybe",
        "/api/v1/scenarios/ok/runs?from=yesterday-ish",
        "/api/v1/scenarios/ok/uptime?window=400d",
    ] {
        let r = s.get(q);
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains('='),
            "{}",
            r.body
        );
    }
    assert_eq!(s.get("/api/v1/scenarios/nope/runs").status, 404);
    assert_eq!(s.get("/api/v1/scenarios/ok/runs/999999999").status, 404);

    // Badges.
    let b = s.get("/badge/ok/status.svg");
    assert_eq!(b.status, 200);
    assert_eq!(
        b.header("content-type"),
        Some("image/svg+xml; charset=utf-8")
    );
    assert!(
        b.body.starts_with("<svg") && b.body.contains(">passing<"),
        "{}",
        b.body
    );
    assert!(s
        .get("/badge/team/down/status.svg")
        .body
        .contains(">failing<"));
    assert!(s
        .get("/badge/ok/uptime.svg?window=30d")
        .body
        .contains(">100%<"));
    assert!(s.get("/badge/team/down/uptime.svg").body.contains(">0%<"));
    let lat = s.get("/badge/ok/latency.svg?label=%3Cb%3E").body;
    assert!(lat.contains("ms<") && lat.contains("&lt;b&gt;"), "{lat}");
    assert_eq!(s.get("/badge/nope/status.svg").status, 404);

    assert_eq!(metric(&s, "sonde_history_up"), Some(1.0));
    assert!(metric(&s, "sonde_history_runs_written_total").unwrap() >= 6.0);

    // What is on disk is what the API shows: no secret in the database or its log.
    for f in ["history.db", "history.db-wal"] {
        let bytes = std::fs::read(data.path().join(f)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [ENV_SECRET, CFG_PASS] {
            assert!(!text.contains(secret), "{f} holds the secret {secret:?}");
        }
    }
    let (code, _) = {
        s.signal(libc::SIGTERM);
        s.wait_exit()
    };
    assert_eq!(code, Some(0));
    let bytes = std::fs::read(data.path().join("history.db")).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(ENV_SECRET));
}

/// `PRAGMA integrity_check` of the store in `folder`, and the ids of `scenario`'s runs.
fn check_file(folder: &Path) -> Vec<i64> {
    let conn = rusqlite::Connection::open(folder.join("history.db")).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let mut st = conn.prepare("SELECT id FROM runs").unwrap();
    let ids = st.query_map([], |r| r.get(0)).unwrap();
    ids.map(Result::unwrap).collect()
}

fn busy_yaml(url: &str) -> String {
    let mut y = String::from("scenarios:\n");
    for i in 0..20 {
        y.push_str(&format!(
            "  - scenario: s{i}\n    interval: 100ms\n    http: {{url: \"{url}\"}}\n"
        ));
    }
    // Failures keep their whole trace: bigger writes.
    y.push_str("  - scenario: failing\n    interval: 100ms\n    tcp: {target: \"127.0.0.1:1\"}\n");
    y
}

#[test]
fn kill_9_mid_write_loses_at_most_the_unflushed_batch_and_restart_keeps_history() {
    let rt = runtime();
    let web = rt.block_on(target());
    let data = tempfile::tempdir().unwrap();
    let yaml = busy_yaml(&web.url("/ok"));
    let mut seen: Vec<i64> = Vec::new();
    for round in 0..4 {
        let s = Serve::command(SONDE)
            .config_yaml("sonde.yaml", &yaml)
            .arg("--storage.path")
            .arg(data.path())
            .start();
        // Every run an earlier process stored is still listed.
        let listed: Vec<i64> = eventually("stored runs", &s, || {
            let v = runs(&s, "s0", "?limit=1000");
            let ids: Vec<i64> = v["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap())
                .collect();
            (ids.len() > 10 * (round + 1)).then_some(ids)
        });
        let before: Vec<i64> = seen
            .iter()
            .copied()
            .filter(|i| listed.contains(i))
            .collect();
        assert_eq!(before.len(), seen.len(), "round {round}: runs lost");
        seen = listed;
        // A few hundred runs a second are being written: kill at some point of a write.
        std::thread::sleep(Duration::from_millis(137 * (round as u64 + 1)));
        if round < 3 {
            s.signal(libc::SIGKILL);
            let (code, _) = s.wait_exit();
            assert_eq!(code, None, "killed by a signal");
        } else {
            s.signal(libc::SIGTERM);
            let (code, log) = s.wait_exit();
            assert_eq!(code, Some(0), "{log}");
        }
        let on_disk = check_file(data.path());
        assert!(
            seen.iter().all(|i| on_disk.contains(i)),
            "round {round}: a run listed before the kill is gone"
        );
    }
}

#[test]
fn empty_storage_path_turns_history_off() {
    let s = Serve::command(SONDE)
        .config_yaml(
            "sonde.yaml",
            "scenario: t\ninterval: 1s\ntcp: {target: \"127.0.0.1:1\"}\n",
        )
        .arg("--storage.path=")
        .start();
    s.wait_runs("t", 0);
    let r = s.get("/api/v1/scenarios/t/runs");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("history is off"));
    assert_eq!(metric(&s, "sonde_history_up"), Some(0.0));
    assert!(s.get("/badge/t/uptime.svg").body.contains(">off<"));
    // The status badge needs no history.
    assert!(s.get("/badge/t/status.svg").body.contains(">failing<"));
}

/// A wrapper that runs sonde in its own mount namespace with `mount_opts` tmpfs on `folder`;
/// `None` (with a loud SKIPPED line) when this machine does not allow it.
fn tmpfs_wrapper(dir: &Path, folder: &Path, mount_opts: &str) -> Option<std::path::PathBuf> {
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o {mount_opts} tmpfs {}",
            folder.display()
        ))
        .status();
    if !matches!(probe, Ok(st) if st.success()) {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs in a private mount namespace here (needs root and \
             unshare -m): {probe:?}"
        );
        return None;
    }
    let script = dir.join("in-tmpfs.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec unshare -m sh -c 'mount -t tmpfs -o {mount_opts} tmpfs \"$0\" && exec \"$@\"' {} {SONDE} \"$@\"\n",
            folder.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(script)
}

fn keeps_probing_with_history_off(mount_opts: &str, expect_in_log: &str) {
    let rt = runtime();
    let web = rt.block_on(target());
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("store");
    std::fs::create_dir(&folder).unwrap();
    let Some(wrapper) = tmpfs_wrapper(dir.path(), &folder, mount_opts) else {
        return;
    };
    let s = Serve::command(&wrapper)
        .config_yaml("sonde.yaml", &busy_yaml(&web.url("/ok")))
        .arg("--storage.path")
        .arg(&folder)
        .start();
    eventually("history off", &s, || {
        (metric(&s, "sonde_history_up") == Some(0.0)).then_some(())
    });
    // Probing goes on: runs keep being counted after the history went off.
    for name in ["failing", "s0"] {
        let n = s.wait_runs(name, 0)["runs"].as_u64().unwrap();
        s.wait_runs(name, n + 5);
    }
    let log = s.log();
    assert!(log.contains(expect_in_log), "{log}");
    assert_eq!(
        log.matches("history off").count(),
        1,
        "one line when history goes off, not one per batch:\n{log}"
    );
}

#[test]
fn a_read_only_folder_keeps_probing_with_history_off() {
    keeps_probing_with_history_off("ro,size=1m", "history off: cannot");
}

#[test]
fn a_full_disk_keeps_probing_with_history_off() {
    keeps_probing_with_history_off("size=160k", "history off: writing runs failed");
}
