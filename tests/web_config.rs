//! `--web.config.file` (exporter-toolkit's format) and blackbox_exporter's other flags, on the
//! real binary: TLS with client certificates and basic auth on every endpoint, certificates
//! rotated without a restart, located errors that never show a secret, `--web.route-prefix`,
//! `--history.limit` with `/logs`, and the log formats.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sonde_testkit::client;
use sonde_testkit::pki::{Ca, Leaf};
use sonde_testkit::process::{free_addr, Serve};

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");
const HANG_GUARD: Duration = Duration::from_secs(30);
const PASSWORD: &str = "s3cret-scrape-pw";

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// A cheap hash (cost 4) so the test does not spend its time in bcrypt.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

struct Answer {
    status: u16,
    head: String,
    body: String,
    server_cert: Vec<u8>,
}

/// One HTTPS request over a fresh connection (`Connection: close`), trusting `ca`, with a
/// client certificate and basic-auth credentials when given.
fn https(
    addr: SocketAddr,
    ca: &Ca,
    path: &str,
    cert: Option<&Leaf>,
    user: Option<(&str, &str)>,
) -> Result<Answer, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some(l) => builder
            .with_client_auth_cert(l.chain.clone(), l.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = user
        .map(|(u, p)| {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Authorization: Basic {b}\r\n")
        })
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A server that closes without close_notify after a complete answer is fine here.
        Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.to_string()),
    }
    let server_cert = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("no status: {head}"))?;
    Ok(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
        server_cert,
    })
}

/// The PKI and web configuration of a hardened install.
struct Hardened {
    ca: Ca,
    client: Leaf,
    stranger: Leaf,
    dir: tempfile::TempDir,
    web_yml: PathBuf,
    hash: String,
}

fn hardened() -> Hardened {
    let ca = Ca::new("sonde web CA");
    let server = ca.leaf(&["127.0.0.1"], days(30), &[]);
    let client = ca.leaf(&["prometheus.example.com"], days(31), &[]);
    let stranger = Ca::new("someone else").leaf(&["prometheus.example.com"], days(32), &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&server.cert_file, dir.path().join("server.crt")).unwrap();
    std::fs::copy(&server.key_file, dir.path().join("server.key")).unwrap();
    std::fs::copy(&ca.ca_file, dir.path().join("clients-ca.crt")).unwrap();
    let hash = hash(PASSWORD);
    let web_yml = dir.path().join("web.yml");
    std::fs::write(
        &web_yml,
        format!(
            "# relative paths are relative to this file, as exporter-toolkit's\n\
             tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_ca_file: clients-ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n  \
             min_version: TLS12\n\
             http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n\
             basic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    Hardened {
        ca,
        client,
        stranger,
        dir,
        web_yml,
        hash,
    }
}

/// `sonde serve` with `web.yml`, waited for over HTTPS (the testkit's wait is plain HTTP).
fn serve_hardened(h: &Hardened, extra: &[&str]) -> (Serve, SocketAddr) {
    let addr = free_addr();
    let mut cmd = Serve::command(SONDE)
        .listen(addr)
        .config_yaml(
            "blackbox.yml",
            "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 2s\n",
        )
        .arg("--web.config.file")
        .arg(&h.web_yml);
    for a in extra {
        cmd = cmd.arg(a);
    }
    let s = cmd.spawn();
    let guard = Instant::now() + HANG_GUARD;
    loop {
        if let Ok(a) = https(
            addr,
            &h.ca,
            "/-/ready",
            Some(&h.client),
            Some(("prometheus", PASSWORD)),
        ) {
            if a.status == 200 {
                return (s, addr);
            }
        }
        assert!(
            Instant::now() < guard,
            "hang guard: not ready over HTTPS:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tls_client_certificates_and_basic_auth_guard_every_endpoint() {
    let h = hardened();
    let (s, addr) = serve_hardened(&h, &[]);
    let ok = Some(("prometheus", PASSWORD));

    let m = https(addr, &h.ca, "/metrics", Some(&h.client), ok).unwrap();
    assert_eq!(m.status, 200, "{}", m.head);
    assert!(m.body.contains("\nprocess_open_fds "), "{}", m.body);
    assert!(
        m.head
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{}",
        m.head
    );
    // The cached success serves the next scrape the same.
    assert_eq!(
        https(addr, &h.ca, "/metrics", Some(&h.client), ok)
            .unwrap()
            .status,
        200
    );

    for path in [
        "/metrics",
        "/probe?module=tcp_connect&target=127.0.0.1:1",
        "/config",
        "/-/healthy",
        "/api/v1/scenarios",
        "/logs?id=0",
        "/",
    ] {
        for (who, creds) in [
            ("no credentials", None),
            ("a wrong password", Some(("prometheus", "s3cret-scrape-pX"))),
            ("an unknown user", Some(("root", PASSWORD))),
        ] {
            let a = https(addr, &h.ca, path, Some(&h.client), creds).unwrap();
            assert_eq!(a.status, 401, "{path} with {who}: {}", a.head);
            assert!(
                a.head.contains("WWW-Authenticate: Basic")
                    || a.head.contains("www-authenticate: Basic"),
                "{}",
                a.head
            );
        }
    }
    let probe = https(
        addr,
        &h.ca,
        "/probe?module=tcp_connect&target=127.0.0.1:1",
        Some(&h.client),
        ok,
    )
    .unwrap();
    assert_eq!(probe.status, 200);
    assert!(probe.body.contains("probe_success 0"), "{}", probe.body);

    // No client certificate, or one from another CA: no TLS session at all.
    assert!(https(addr, &h.ca, "/metrics", None, ok).is_err());
    assert!(https(addr, &h.ca, "/metrics", Some(&h.stranger), ok).is_err());

    // Plain HTTP is told, as Go's servers tell it, and gets nothing else.
    let plain = client::get(addr, "/metrics").unwrap();
    assert_eq!(plain.status, 400);
    assert!(
        plain
            .body
            .contains("Client sent an HTTP request to an HTTPS server."),
        "{}",
        plain.body
    );

    // The password hash and the password reach neither /config nor the log.
    let config = https(addr, &h.ca, "/config", Some(&h.client), ok).unwrap();
    assert_eq!(config.status, 200);
    let log = s.log();
    for secret in [h.hash.as_str(), PASSWORD, &h.hash[7..]] {
        assert!(!config.body.contains(secret), "/config shows a secret");
        assert!(!log.contains(secret), "the log shows a secret:\n{log}");
    }
    drop(s);
}

#[test]
fn a_rotated_certificate_is_served_from_the_next_handshake() {
    let h = hardened();
    let (s, addr) = serve_hardened(&h, &[]);
    let ok = Some(("prometheus", PASSWORD));
    let before = https(addr, &h.ca, "/-/healthy", Some(&h.client), ok).unwrap();
    let old = std::fs::read(h.dir.path().join("server.crt")).unwrap();

    // Rotate as cert-manager and certbot do: new files renamed over the old ones.
    let next = h.ca.leaf(&["127.0.0.1"], days(90), &[]);
    for (from, to) in [
        (&next.cert_file, "server.crt"),
        (&next.key_file, "server.key"),
    ] {
        let tmp = h.dir.path().join(format!("{to}.new"));
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, h.dir.path().join(to)).unwrap();
    }
    let after = https(addr, &h.ca, "/-/healthy", Some(&h.client), ok).unwrap();
    assert_eq!(after.status, 200);
    assert_ne!(
        before.server_cert, after.server_cert,
        "still the old certificate"
    );
    assert_eq!(after.server_cert, next.chain[0].to_vec());
    assert!(
        s.log().contains("web configuration reloaded"),
        "{}",
        s.log()
    );

    // A broken replacement keeps the last good one in force.
    std::fs::write(h.dir.path().join("server.crt"), "not a certificate\n").unwrap();
    let still = https(addr, &h.ca, "/-/healthy", Some(&h.client), ok).unwrap();
    assert_eq!(still.server_cert, next.chain[0].to_vec());
    assert!(
        s.log().contains("web configuration not reloaded"),
        "{}",
        s.log()
    );
    drop(old);
}

#[test]
fn a_removed_user_is_refused_from_the_next_request() {
    let h = hardened();
    let (_s, addr) = serve_hardened(&h, &[]);
    let ok = Some(("prometheus", PASSWORD));
    assert_eq!(
        https(addr, &h.ca, "/metrics", Some(&h.client), ok)
            .unwrap()
            .status,
        200
    );
    let text = std::fs::read_to_string(&h.web_yml).unwrap();
    let other = hash("another-password");
    std::fs::write(
        &h.web_yml,
        text.replace("  prometheus: ", &format!("  grafana: {other}\n  old: ")),
    )
    .unwrap();
    // The success cached for the old entry must not outlive it.
    assert_eq!(
        https(addr, &h.ca, "/metrics", Some(&h.client), ok)
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        https(
            addr,
            &h.ca,
            "/metrics",
            Some(&h.client),
            Some(("grafana", "another-password"))
        )
        .unwrap()
        .status,
        200
    );
}

fn sonde(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(SONDE).args(args).output().expect("run sonde");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn web_config_errors_are_located_and_never_show_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = write(
        dir.path(),
        "s.yaml",
        "scenario: s\ntcp: {target: \"127.0.0.1:1\"}\n",
    );
    let leaked = "$2y$10$notAValidHashButASecretAnyway0123456789";
    let web = write(
        dir.path(),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n  client_auth_type: RequireAndVerifyClientCrt\n  min_versoin: TLS12\n\
             basic_auth_users:\n  alice: \"{leaked}\"\n\
             http_server_config:\n  headers:\n    X-Frame-Options: allow\n"
        ),
    );
    let (code, _, stderr) = sonde(&["check", &scenarios, "--web.config.file", &web]);
    assert_eq!(code, Some(2), "{stderr}");
    for expected in [
        format!("{web}:2:14: cannot read"),
        format!("{web}:4:21: invalid client_auth_type `RequireAndVerifyClientCrt` — did you mean `RequireAndVerifyClientCert`?"),
        format!("{web}:5:3: unknown key `min_versoin`"),
        format!("{web}:7:10: the password of `alice` is not a bcrypt hash"),
        format!("{web}:10:22: invalid value \"allow\" for X-Frame-Options"),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains(leaked) && !stderr.contains("ASecretAnyway"),
        "{stderr}"
    );

    // serve --config.check validates it too, and serve refuses to start (exit 2) before
    // anything listens.
    let bb = write(dir.path(), "bb.yml", "modules:\n  t:\n    prober: tcp\n");
    let (code, _, stderr) = sonde(&[
        "serve",
        "-c",
        &bb,
        "--config.check",
        "--web.config.file",
        &web,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{web}:7:10:")), "{stderr}");
    let (code, _, stderr) = sonde(&[
        "serve",
        "-c",
        &bb,
        "--listen",
        "127.0.0.1:0",
        "--web.config.file",
        &web,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to start with an invalid web configuration"),
        "{stderr}"
    );
    assert!(!stderr.contains(leaked), "{stderr}");

    let good = write(
        dir.path(),
        "good.yml",
        &format!("basic_auth_users:\n  bob: {}\n", hash("pw")),
    );
    let (code, stdout, stderr) = sonde(&["check", &scenarios, "--web.config.file", &good]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("and the web configuration"), "{stdout}");
}

/// `--web.systemd-socket` as systemd runs it: a listening socket at descriptor 3, LISTEN_PID
/// the process's own id (a shell that `exec`s sonde keeps its pid), LISTEN_FDS=1. sonde serves
/// on that socket and binds nothing itself.
#[test]
fn systemd_socket_activation_serves_on_the_passed_socket() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "s.yaml",
        "scenario: t\ninterval: 1h\ntcp: {target: \"127.0.0.1:1\"}\n",
    );
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" serve --web.systemd-socket -c "$1" --storage.path ''"#)
        .arg(SONDE)
        .arg(&cfg)
        .stderr(log.try_clone().unwrap())
        .stdout(log);
    // SAFETY: dup2/fcntl are async-signal-safe; descriptor 3 is the child's from here.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let guard = Instant::now() + HANG_GUARD;
    let ready = loop {
        let r = client::get(addr, "/-/ready").map(|r| r.status).unwrap_or(0);
        if r == 200 || Instant::now() > guard {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let metrics = client::get(addr, "/metrics")
        .map(|r| r.body)
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert_eq!(ready, 200, "{log}");
    assert!(metrics.contains("sonde_build_info"), "{log}");
    assert!(
        log.contains(&addr.to_string()),
        "the log names where it serves: {log}"
    );
}

/// Without sockets passed (or passed to another process), `--web.systemd-socket` says so.
#[test]
fn systemd_socket_activation_without_sockets_says_why() {
    let (code, _, stderr) = sonde(&["serve", "--web.systemd-socket"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("LISTEN_PID is not set"), "{stderr}");
    let out = Command::new(SONDE)
        .args(["serve", "--web.systemd-socket"])
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("passed to another process"), "{stderr}");
}

#[test]
fn route_prefix_history_and_logs_as_blackbox() {
    let s = Serve::command(SONDE)
        .config_yaml(
            "blackbox.yml",
            "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 2s\n",
        )
        .arg("--web.route-prefix=/sonde")
        .arg("--web.external-url=https://mon.example.com/sonde/")
        .arg("--history.limit=3")
        .arg("--log.format=logfmt")
        .spawn();
    // Ready once the prefixed route answers (the testkit's wait asks /-/ready unprefixed).
    let addr = s.addr();
    let guard = Instant::now() + HANG_GUARD;
    while !matches!(client::get(addr, "/sonde/-/ready"), Ok(r) if r.status == 200) {
        assert!(Instant::now() < guard, "hang guard:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let get = |p: &str| client::get(addr, p).unwrap();
    let probe = get("/sonde/probe?module=tcp_connect&target=127.0.0.1:1");
    assert_eq!(probe.status, 200);
    assert!(probe.body.contains("probe_success 0"), "{}", probe.body);
    assert_eq!(get("/metrics").status, 404);
    let root = get("/");
    assert_eq!(root.status, 302);
    assert_eq!(
        root.header("location"),
        Some("https://mon.example.com/sonde")
    );
    assert_eq!(get("/sonde").header("location"), Some("/sonde/"));

    let index = get("/sonde/");
    assert!(
        index.body.contains("href=\"/sonde/metrics\""),
        "{}",
        index.body
    );
    // blackbox's recent probes, each linking its debug output.
    let probes = get("/sonde/probes");
    assert!(
        probes.body.contains("<h2>Recent probes</h2>"),
        "{}",
        probes.body
    );
    assert!(
        probes.body.contains("href=\"logs?id=0\""),
        "{}",
        probes.body
    );
    let logs = get("/sonde/logs?id=0");
    assert_eq!(logs.status, 200);
    // The log holds non-ASCII (`µs`): a browser must be told it is UTF-8.
    assert_eq!(
        logs.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        logs.body.starts_with("Logs for the probe:"),
        "{}",
        logs.body
    );
    assert!(logs.body.contains("probe_success 0"), "{}", logs.body);
    let by_target = get("/sonde/logs?target=127.0.0.1:1");
    assert_eq!(by_target.body, logs.body);
    assert_eq!(get("/sonde/logs").status, 400);
    assert_eq!(get("/sonde/logs?id=0&target=x").status, 400);
    assert_eq!(get("/sonde/logs?id=99").status, 404);

    // Beyond --history.limit the oldest success goes (failures are kept as many again).
    for _ in 0..6 {
        get("/sonde/probe?module=tcp_connect&target=127.0.0.1:1");
    }
    assert_eq!(get("/sonde/logs?id=6").status, 200);
    assert_eq!(get("/sonde/logs?id=0").status, 404);

    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("time=") && l.contains(" level=INFO msg=\"sonde ")),
        "not logfmt:\n{log}"
    );
}

#[test]
fn json_logs_are_one_object_a_line() {
    let mut s = Serve::command(SONDE)
        .config_yaml(
            "blackbox.yml",
            "modules:\n  tcp_connect:\n    prober: tcp\n",
        )
        .arg("--log.format=json")
        .spawn();
    s.wait_ready();
    let log = s.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(
            v["time"].is_string() && v["level"].is_string() && v["msg"].is_string(),
            "{l}"
        );
    }
}

#[test]
fn require_any_client_cert_with_allowed_sans_checks_the_name_not_the_issuer() {
    let h = hardened();
    let other_name = Ca::new("a third CA").leaf(&["grafana.example.com"], days(33), &[]);
    let text = std::fs::read_to_string(&h.web_yml)
        .unwrap()
        .replace("  client_ca_file: clients-ca.crt\n", "")
        .replace(
            "client_auth_type: RequireAndVerifyClientCert",
            "client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [prometheus.example.com]",
        );
    std::fs::write(&h.web_yml, text).unwrap();
    let addr = free_addr();
    let s = Serve::command(SONDE)
        .listen(addr)
        .config_yaml("blackbox.yml", "modules:\n  t:\n    prober: tcp\n")
        .arg("--web.config.file")
        .arg(&h.web_yml)
        .spawn();
    let ok = Some(("prometheus", PASSWORD));
    let guard = Instant::now() + HANG_GUARD;
    // Any issuer will do (RequireAnyClientCert), the SAN must match.
    while !matches!(https(addr, &h.ca, "/-/ready", Some(&h.stranger), ok), Ok(a) if a.status == 200)
    {
        assert!(Instant::now() < guard, "hang guard:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        https(addr, &h.ca, "/metrics", Some(&h.client), ok)
            .unwrap()
            .status,
        200
    );
    assert!(https(addr, &h.ca, "/metrics", Some(&other_name), ok).is_err());
    assert!(https(addr, &h.ca, "/metrics", None, ok).is_err());
}

#[test]
fn every_listen_address_serves_every_endpoint_behind_the_web_configuration() {
    let h = hardened();
    let second = free_addr();
    let (s, first) = serve_hardened(&h, &["--web.listen-address", &second.to_string()]);
    let ok = Some(("prometheus", PASSWORD));
    for addr in [first, second] {
        let m = https(addr, &h.ca, "/metrics", Some(&h.client), ok).unwrap();
        assert_eq!(m.status, 200, "{addr}: {}", m.head);
        let none = https(addr, &h.ca, "/metrics", Some(&h.client), None).unwrap();
        assert_eq!(none.status, 401, "{addr}");
        assert_eq!(client::get(addr, "/metrics").unwrap().status, 400, "{addr}");
        // sonde does not probe itself, on either address.
        let p = https(
            addr,
            &h.ca,
            &format!("/probe?module=tcp_connect&target={second}"),
            Some(&h.client),
            ok,
        )
        .unwrap();
        assert_eq!(p.status, 508, "{addr}: {}", p.body);
    }
    let log = s.log();
    let line = log.lines().find(|l| l.contains(" serving ")).unwrap();
    assert!(
        line.contains(&first.to_string()) && line.contains(&second.to_string()),
        "{line}"
    );
}

/// A plain request to `addr` with basic-auth credentials when given; the status code.
fn plain_status(addr: SocketAddr, path: &str, user: Option<(&str, &str)>) -> u16 {
    use base64::Engine as _;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let auth = user.map_or(String::new(), |(u, p)| {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        format!("Authorization: Basic {b}\r\n")
    });
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_public_page_has_its_own_web_configuration_never_the_admin_users() {
    let h = hardened();
    let dir = tempfile::tempdir().unwrap();
    let public_yml = write(
        dir.path(),
        "public-web.yml",
        &format!("basic_auth_users:\n  viewer: {}\n", hash("look")),
    );
    let public = free_addr();
    let (_s, admin) = serve_hardened(
        &h,
        &[
            "--web.public-listen-address",
            &public.to_string(),
            "--web.public-config.file",
            &public_yml,
        ],
    );
    // The public listener: its own users, plain HTTP (its file has no TLS).
    assert_eq!(plain_status(public, "/", None), 401);
    assert_eq!(
        plain_status(public, "/", Some(("prometheus", PASSWORD))),
        401
    );
    assert_eq!(plain_status(public, "/", Some(("viewer", "look"))), 200);
    // The admin listener keeps its own: the public user is nobody there.
    let viewer = https(
        admin,
        &h.ca,
        "/metrics",
        Some(&h.client),
        Some(("viewer", "look")),
    );
    assert_eq!(viewer.unwrap().status, 401);
    // A broken public file refuses to start, as a broken --web.config.file does.
    let bad = write(dir.path(), "bad.yml", "basic_auth_users: [nope]\n");
    let (code, _, err) = sonde(&[
        "serve",
        "--web.public-listen-address",
        &free_addr().to_string(),
        "--web.public-config.file",
        &bad,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad.yml"), "{err}");
}
