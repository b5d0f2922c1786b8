//! The blackbox_exporter side of the command line: `sonde probe` (exit 0 on success, 1 on
//! failure, 2 on bad usage or configuration) and blackbox's flags on `serve` (`--config.file`,
//! `--web.listen-address`, `--config.check`), on the real binary.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sonde_testkit::client;
use sonde_testkit::process::free_addr;

fn sonde(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(args)
        .output()
        .expect("run sonde");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP port that accepts connections (and holds them) for the life of the test.
fn listening() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

const CONFIG: &str = "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 3s\n";

#[test]
fn probe_exits_0_on_success_1_on_failure_2_on_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("blackbox.yml");
    std::fs::write(&f, CONFIG).unwrap();
    let f = f.to_str().unwrap();
    let (_l, port) = listening();
    let target = format!("127.0.0.1:{port}");

    let (code, out, err) = sonde(&["probe", "--config", f, "--module", "tcp_connect", &target]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("probe_success 1\n"), "{out}");
    assert!(
        out.contains("# TYPE probe_ip_protocol gauge\nprobe_ip_protocol 4\n"),
        "{out}"
    );

    let refused = format!("127.0.0.1:{}", closed_port());
    let (code, out, _) = sonde(&["probe", "-c", f, "-m", "tcp_connect", &refused]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("probe_success 0\n"), "{out}");

    let (code, out, _) = sonde(&["probe", "-c", f, "-m", "tcp_connect", "--debug", &refused]);
    assert_eq!(code, Some(1));
    assert!(out.starts_with("Logs for the probe:\n"), "{out}");
    assert!(out.contains("msg=Failure reason=connect"), "{out}");
    assert!(
        out.contains("Module configuration:\nprober: tcp\ntimeout: 3s\n"),
        "{out}"
    );

    let (code, _, err) = sonde(&["probe", "-c", f, "-m", "nope", &target]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("unknown module \"nope\" — expected one of: tcp_connect"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("bad.yml"),
        "modules:\n  x:\n    prober: tcp\n    tcp: {tls: maybe}\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yml");
    let (code, _, err) = sonde(&["probe", "-c", bad.to_str().unwrap(), "-m", "x", &target]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("bad.yml:4:16: `tls` is the string \"maybe\" — expected true or false"),
        "{err}"
    );

    // Without --config: blackbox's example modules.
    let (code, out, err) = sonde(&["probe", "-m", "tcp_connect", &target]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = sonde(&["probe", &format!("http://127.0.0.1:{}/", closed_port())]);
    assert_eq!(code, Some(1), "http_2xx is the default module: {out}");
    assert!(out.contains("probe_http_status_code 0\n"), "{out}");
}

#[test]
fn serve_config_check_validates_and_exits_0_or_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("blackbox.yml");
    std::fs::write(&good, CONFIG).unwrap();
    let (code, out, err) = sonde(&[
        "serve",
        &format!("--config.file={}", good.display()),
        "--config.check",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 blackbox module(s)"), "{out}");
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "modules:\n  x:\n    prober: tcp\n    tcp:\n      tlss: true\n",
    )
    .unwrap();
    let (code, _, err) = sonde(&[
        "serve",
        "--config.file",
        bad.to_str().unwrap(),
        "--config.check",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("bad.yml:5:7: unknown key `tlss` — did you mean `tls`?"),
        "{err}"
    );
}

#[test]
fn serve_takes_blackbox_flags_serves_probe_beside_scenarios_and_reloads_modules() {
    let dir = tempfile::tempdir().unwrap();
    let bb = dir.path().join("blackbox.yml");
    std::fs::write(&bb, CONFIG).unwrap();
    let (_l, port) = listening();
    let sc = dir.path().join("scenarios.yaml");
    std::fs::write(
        &sc,
        format!("scenario: tcp-up\ninterval: 1s\ntcp: {{target: \"127.0.0.1:{port}\"}}\n"),
    )
    .unwrap();
    let addr = free_addr();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args([
            "serve",
            &format!("--config.file={}", bb.display()),
            "-c",
            sc.to_str().unwrap(),
            &format!("--web.listen-address={addr}"),
            "--timeout-offset=0.25",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Hang guard: start-up.
    let started = Instant::now();
    while client::get(addr, "/-/ready").map(|r| r.status).ok() != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = client::get(
        addr,
        &format!("/probe?module=tcp_connect&target=127.0.0.1:{port}"),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("probe_success 1\n"), "{}", r.body);
    let r = client::get(
        addr,
        &format!("/probe?module=tcp_connect&target=127.0.0.1:{port}&debug=true"),
    )
    .unwrap();
    // Module timeout 3s is below 120s − 0.25s.
    assert!(r.body.contains("timeout_seconds=3\n"), "{}", r.body);
    // The scenario file runs beside the modules.
    let started = Instant::now();
    loop {
        let m = client::get(addr, "/metrics").unwrap();
        if m.body
            .contains("sonde_scenario_success{scenario=\"tcp-up\"} 1")
        {
            assert!(m
                .body
                .contains("blackbox_exporter_config_last_reload_successful 1"));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{}", m.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken reload (POST /-/reload) keeps the modules and says so.
    std::fs::write(&bb, "modules:\n  tcp_connect:\n    prober: tcpp\n").unwrap();
    let r = client::post(addr, "/-/reload", "").unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("unknown prober `tcpp`"), "{}", r.body);
    let m = client::get(addr, "/metrics").unwrap();
    assert!(
        m.body
            .contains("blackbox_exporter_config_last_reload_successful 0\n"),
        "{}",
        m.body
    );
    let r = client::get(
        addr,
        &format!("/probe?module=tcp_connect&target=127.0.0.1:{port}"),
    )
    .unwrap();
    assert!(
        r.body.contains("probe_success 1\n"),
        "the old module keeps serving: {}",
        r.body
    );
    // A good one by SIGHUP swaps them.
    std::fs::write(&bb, "modules:\n  tcp_renamed:\n    prober: tcp\n").unwrap();
    // SAFETY: kill(2) on the child we spawned, which has not been waited for yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) };
    let started = Instant::now();
    loop {
        let r = client::get(
            addr,
            &format!("/probe?module=tcp_renamed&target=127.0.0.1:{port}"),
        )
        .unwrap();
        if r.status == 200 {
            assert!(r.body.contains("probe_success 1\n"), "{}", r.body);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "SIGHUP did not reload: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = client::get(addr, "/probe?module=tcp_connect&target=127.0.0.1:1").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Unknown module \"tcp_connect\"\n")
    );
    let m = client::get(addr, "/metrics").unwrap();
    assert!(
        m.body
            .contains("blackbox_exporter_config_last_reload_successful 1\n"),
        "{}",
        m.body
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `--probe.kernel-timestamps=off` (every command takes it, as does `SONDE_KERNEL_TIMESTAMPS`):
/// the probe's connect is timed in user space and says why; on, it is not switched off.
#[test]
fn kernel_timestamps_switch_off_by_flag_or_environment() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("blackbox.yml");
    std::fs::write(&f, CONFIG).unwrap();
    let f = f.to_str().unwrap();
    let (_l, port) = listening();
    let target = format!("127.0.0.1:{port}");
    const OFF: &str = "kernel timestamps are switched off";
    let args = ["probe", "-c", f, "-m", "tcp_connect", "--debug", &target];

    let (code, out, err) = sonde(&[&args[..], &["--probe.kernel-timestamps=off"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(OFF), "{out}");

    let env = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(args)
        .env("SONDE_KERNEL_TIMESTAMPS", "off")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&env.stdout);
    assert!(out.contains(OFF), "{out}");

    let (code, out, err) = sonde(&args);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains(OFF), "{out}");

    let (code, _, err) = sonde(&[&args[..], &["--probe.kernel-timestamps=maybe"]].concat());
    assert_eq!(code, Some(2), "{err}");
}
