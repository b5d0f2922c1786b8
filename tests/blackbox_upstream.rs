//! Today's upstream configurations as they are: sonde's own fixtures in the shape of
//! blackbox_exporter v0.28.0's `blackbox.yml` and `example.yml`
//! (`tests/fixtures/blackbox-upstream/`), every module of both run through `/probe` against an
//! in-process server that speaks its protocol; plus the CEL matchers' true / false / erroring
//! cases, HTTP/3 modules and `proxy_connect_header` seen at the proxy. Loopback only.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sonde::blackbox::safety::Safety;
use sonde::blackbox::Blackbox;
use sonde::config::LoadOptions;
use sonde::metrics::{Metrics, RunMetrics};
use sonde::runtime::scheduler::Scheduler;
use sonde::serve::{App, AppParts, ConfigSource};
use sonde_testkit::dns::{DnsServer, Zone};
use sonde_testkit::grpc::{GrpcHealthServer, SERVING};
use sonde_testkit::h3::{H3Server, ALPN as H3_ALPN};
use sonde_testkit::http::{HttpServer, Proxy, Reply, Routes};
use sonde_testkit::pki::{server_config, Ca, Leaf};
use sonde_testkit::script::{ScriptServer, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIXTURES: &str = "tests/fixtures/blackbox-upstream";

struct Probe {
    addr: SocketAddr,
    _app: Arc<App>,
}

async fn start(path: &Path) -> Probe {
    let source = ConfigSource::Paths(vec![path.to_path_buf()]);
    let loaded = source
        .load(&LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let metrics = Metrics::new();
    let scheduler = Scheduler::new(RunMetrics::alone(metrics.clone(), None), None, 16);
    let parts = AppParts {
        metrics,
        scheduler,
        alerts: Default::default(),
        source,
        load_options: LoadOptions::default(),
        blackbox: Blackbox::new(0.5, Safety::off()),
        history: None,
        history_writer: None,
    };
    let app = App::new(parts, loaded);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = sonde::web::router(app.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Probe { addr, _app: app }
}

/// `/probe?module=…&target=…`'s body (the target percent-encoded).
async fn probe(addr: SocketAddr, module: &str, target: &str) -> String {
    let target: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /probe?module={module}&target={target}&debug=true HTTP/1.0\r\nHost: {addr}\r\n\
         X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of a series in a debug answer (its metrics part).
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, v) = l.rsplit_once(' ')?;
        (name == series).then(|| v.parse().ok()).flatten()
    })
}

fn families(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// The fixture with its placeholders filled, written into `dir`.
fn fixture(name: &str, dir: &Path, subst: &[(&str, String)]) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    text = text.replace("@DIR@", &dir.display().to_string());
    for (k, v) in subst {
        text = text.replace(k, v);
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The module names a fixture defines, to prove the run below covers each of them.
fn modules_of(name: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    let v: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    v["modules"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

struct Pki {
    _ca: Ca,
    leaf: Leaf,
}

fn pki(dir: &Path, days: i64) -> Pki {
    let ca = Ca::new("sonde upstream-fixture root");
    let leaf = ca.leaf(&["127.0.0.1", "localhost"], time::Duration::days(days), &[]);
    std::fs::copy(&ca.ca_file, dir.join("ca.crt")).unwrap();
    Pki { _ca: ca, leaf }
}

fn tls(p: &Pki) -> Arc<rustls::ServerConfig> {
    server_config(&p.leaf, &[], None)
}

/// Whether this process may open ICMP sockets; if not, the icmp modules are reported SKIPPED.
fn icmp_allowed(module: &str) -> bool {
    match sonde_probes::icmp::permission_check() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("SKIPPED: icmp module {module}: no ICMP socket allowed here: {why}");
            false
        }
    }
}

/// Probe `module` at `target`; it must succeed. Returns the answer for further checks.
async fn expect_success(
    p: &Probe,
    module: &str,
    target: &str,
    done: &mut BTreeSet<String>,
) -> String {
    let body = probe(p.addr, module, target).await;
    assert_eq!(
        value(&body, "probe_success"),
        Some(1.0),
        "module {module} at {target} failed:\n{body}"
    );
    done.insert(module.to_string());
    body
}

/// Connections that played their whole script. The probe may be done before the server has read
/// its last line, so this waits for it (up to 5 s: an event, not a timing assertion).
async fn played(s: &ScriptServer) -> usize {
    for _ in 0..500 {
        if s.completed() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    s.completed()
}

fn ssh_script() -> Vec<Step> {
    vec![
        Step::send("SSH-2.0-OpenSSH_9.6 Debian-1\r\n"),
        Step::line("SSH-2.0-blackbox-ssh-check"),
    ]
}

fn irc_script() -> Vec<Step> {
    vec![
        Step::line("NICK prober"),
        Step::line("USER prober prober prober :prober"),
        Step::send("PING :k3y9\r\n"),
        Step::line("PONG k3y9"),
        Step::send(":irc.example 001 prober :Welcome\r\n"),
    ]
}

fn postgres_script(p: &Pki) -> Vec<Step> {
    vec![
        // The SSLRequest as !!binary decodes it, and the "\n" blackbox sends after every `send`.
        Step::ReadBytes(vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, b'\n']),
        Step::send("S"),
        Step::Tls(tls(p)),
    ]
}

#[tokio::test]
async fn upstream_blackbox_yml_every_module_runs() {
    let dir = tempfile::tempdir().unwrap();
    let pk = pki(dir.path(), 30);
    let cfg = fixture("blackbox.yml", dir.path(), &[]);
    let p = start(&cfg).await;
    let mut done = BTreeSet::new();

    let web = HttpServer::start(Routes::new().at("/", Reply::text(200, "ok"))).await;
    expect_success(&p, "http_2xx", &web.url("/"), &mut done).await;
    let body = expect_success(&p, "http_post_2xx", &web.url("/"), &mut done).await;
    assert_eq!(web.requests().last().unwrap().method, "POST", "{body}");

    let any = ScriptServer::tcp(vec![]).await;
    expect_success(&p, "tcp_connect", &any.target(), &mut done).await;

    let pop3 = ScriptServer::tcp(vec![Step::Tls(tls(&pk)), Step::send("+OK POP3 ready\r\n")]).await;
    let body = expect_success(&p, "pop3s_banner", &pop3.target(), &mut done).await;
    assert_eq!(
        value(&body, "probe_ssl_earliest_cert_expiry"),
        Some(pk.leaf.not_after as f64)
    );

    let g = GrpcHealthServer::start_tls(server_config(&pk.leaf, &[b"h2"], None)).await;
    expect_success(&p, "grpc", &g.addr().to_string(), &mut done).await;
    let g = GrpcHealthServer::start().await;
    g.set("service1", SERVING);
    expect_success(&p, "grpc_plain", &g.addr().to_string(), &mut done).await;
    assert_eq!(g.asked().last().map(String::as_str), Some("service1"));

    let ssh = ScriptServer::tcp(ssh_script()).await;
    expect_success(&p, "ssh_banner", &ssh.target(), &mut done).await;
    assert_eq!(played(&ssh).await, 1, "{:?}", ssh.lines());
    let ssh = ScriptServer::tcp(vec![Step::send("SSH-2.0-OpenSSH_9.6 Debian-1\r\n")]).await;
    let body = expect_success(&p, "ssh_banner_extract", &ssh.target(), &mut done).await;
    // Label order aside (client_golang sorts label names; sonde keeps the configured order).
    assert!(
        body.lines().any(|l| l.starts_with("probe_expect_info{")
            && l.contains("ssh_version=\"OpenSSH_9.6\"")
            && l.contains("ssh_comments=\"Debian-1\"")
            && l.ends_with(" 1")),
        "{body}"
    );

    let irc = ScriptServer::tcp(irc_script()).await;
    expect_success(&p, "irc_banner", &irc.target(), &mut done).await;
    assert_eq!(played(&irc).await, 1, "{:?}", irc.lines());

    for m in ["icmp", "icmp_ttl5"] {
        if icmp_allowed(m) {
            expect_success(&p, m, "127.0.0.1", &mut done).await;
        } else {
            done.insert(m.to_string());
        }
    }

    let h3 = H3Server::start(
        Routes::new().at("/", Reply::text(200, "over quic")),
        server_config(&pk.leaf, &[H3_ALPN], None),
    )
    .await;
    let body = expect_success(&p, "http_3xx", &h3.url("/"), &mut done).await;
    assert_eq!(value(&body, "probe_http_version"), Some(3.0), "{body}");
    // blackbox 0.28 turns an http:// target of an HTTP/3 module into https://.
    let plain = format!("http://{}/", h3.addr());
    expect_success(&p, "http_3xx", &plain, &mut done).await;

    let pg = ScriptServer::tcp(postgres_script(&pk)).await;
    expect_success(&p, "postgresql", &pg.target(), &mut done).await;
    // The server answers `S` only to the exact SSLRequest bytes (then `\n`): the probe's
    // success shows `!!binary` was decoded. (Whether the server saw the end of the handshake
    // is a race with the probe's close, so it is not asserted.)
    drop(pg);

    assert_eq!(done, modules_of("blackbox.yml"), "every module must be run");
}

/// The http modules of example.yml and the servers they need.
async fn example_http(p: &Probe, pk: &Pki, done: &mut BTreeSet<String>) {
    let page = Reply::text(200, "Download the latest version here")
        .header("access-control-allow-origin", "*");
    let web = HttpServer::start(
        Routes::new()
            .at("/", page)
            .at("/echo", Reply::echo())
            .at(
                "/json",
                Reply::json(200, &serde_json::json!({"foo": "bar", "baz": "qux"})),
            )
            .at_fn("/login", |s| {
                // base64("username:mysecret")
                let ok = s.header("authorization") == Some("Basic dXNlcm5hbWU6bXlzZWNyZXQ=");
                Reply::status(if ok { 200 } else { 401 })
            })
            .at_fn("/key", |s| {
                Reply::status(if s.header("x-api-key") == Some("s3cret-key") {
                    200
                } else {
                    403
                })
            })
            .at(
                "/token",
                Reply::json(
                    200,
                    &serde_json::json!({"access_token": "t0k", "token_type": "bearer"}),
                ),
            )
            .at_fn("/api", |s| {
                Reply::status(if s.header("authorization") == Some("Bearer t0k") {
                    201
                } else {
                    401
                })
            })
            .at(
                "/gz",
                Reply::bytes(200, gzip(b"compressed hello")).header("content-encoding", "gzip"),
            ),
    )
    .await;
    let body = expect_success(p, "http_2xx_example", &web.url("/"), done).await;
    let seen = web.requests().last().unwrap().clone();
    assert_eq!(seen.header("host"), Some("vhost.example.com"), "{body}");
    assert_eq!(seen.header("origin"), Some("example.com"));
    assert_eq!(seen.header("accept-language"), Some("en-US"));

    let body = expect_success(p, "http_post_2xx", &web.url("/echo"), done).await;
    let seen = web.requests().last().unwrap().clone();
    assert_eq!(
        (seen.method.as_str(), &seen.body[..]),
        ("POST", &b"{}"[..]),
        "{body}"
    );
    expect_success(p, "http_post_body_file", &web.url("/echo"), done).await;
    assert_eq!(
        &web.requests().last().unwrap().body[..],
        b"body from a file\n"
    );
    expect_success(p, "http_basic_auth_example", &web.url("/login"), done).await;
    let body = expect_success(p, "http_json_cel_match", &web.url("/json"), done).await;
    assert_eq!(value(&body, "probe_failed_due_to_cel"), Some(0.0), "{body}");
    expect_success(
        p,
        "http_2xx_oauth_client_credentials",
        &web.url("/api"),
        done,
    )
    .await;
    for m in ["http_gzip", "http_gzip_with_accept_encoding"] {
        let body = expect_success(p, m, &web.url("/gz"), done).await;
        assert_eq!(
            value(&body, "probe_http_uncompressed_body_length"),
            Some(16.0),
            "{body}"
        );
    }
    expect_success(p, "http_with_header_from_files", &web.url("/key"), done).await;

    let secure = HttpServer::start_tls(
        Routes::new().at("/", Reply::text(200, "secure")),
        server_config(&pk.leaf, &[b"h2", b"http/1.1"], None),
    )
    .await;
    expect_success(p, "http_custom_ca_example", &secure.url("/"), done).await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The tcp, unix and dns modules of example.yml.
async fn example_streams(p: &Probe, pk: &Pki, dir: &Path, done: &mut BTreeSet<String>) {
    let s = ScriptServer::tcp(vec![Step::Tls(tls(pk))]).await;
    expect_success(p, "tls_connect", &s.target(), done).await;
    let s = ScriptServer::tcp(vec![]).await;
    expect_success(p, "tcp_connect_example", &s.target(), done).await;
    let imap = ScriptServer::tcp(vec![
        Step::send("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
        Step::line(". STARTTLS"),
        Step::send(". OK Begin TLS negotiation\r\n"),
        Step::Tls(tls(pk)),
        Step::line(". capability"),
        Step::send("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"),
    ])
    .await;
    expect_success(p, "imap_starttls", &imap.target(), done).await;
    assert_eq!(played(&imap).await, 1, "{:?}", imap.lines());
    let smtp = ScriptServer::tcp(vec![
        Step::send("220 mail.example ESMTP ready\r\n"),
        Step::line("EHLO prober"),
        Step::send("250-mail.example\r\n250-STARTTLS\r\n250 HELP\r\n"),
        Step::line("STARTTLS"),
        Step::send("220 2.0.0 Ready\r\n"),
        Step::Tls(tls(pk)),
        Step::line("EHLO prober"),
        Step::send("250-mail.example\r\n250-AUTH PLAIN\r\n250 HELP\r\n"),
        Step::line("QUIT"),
    ])
    .await;
    expect_success(p, "smtp_starttls", &smtp.target(), done).await;
    assert_eq!(played(&smtp).await, 1, "{:?}", smtp.lines());
    let irc = ScriptServer::tcp(irc_script()).await;
    expect_success(p, "irc_banner_example", &irc.target(), done).await;
    for m in ["rabbitmq", "rabbitmq_insecure"] {
        let amqp = ScriptServer::tcp(vec![
            Step::Tls(tls(pk)),
            Step::line("HELO"),
            Step::line(""),
            Step::line(""),
            Step::line(""),
            Step::Send(b"AMQP\x00\x00\x09\x01".to_vec()),
            Step::Close,
        ])
        .await;
        expect_success(p, m, &amqp.target(), done).await;
    }
    let pg = ScriptServer::tcp(postgres_script(pk)).await;
    expect_success(p, "postgresql", &pg.target(), done).await;
    let sock = dir.join("ping.sock");
    let unix = ScriptServer::unix(&sock, vec![Step::line("PING"), Step::send("PONG\n")]);
    expect_success(p, "unix_socket_ping", &unix.target(), done).await;
    assert_eq!(played(&unix).await, 1, "{:?}", unix.lines());

    let zone = Zone::new("prometheus.io.")
        .soa("ns1", "hostmaster", 2026120601)
        .ns("@", "ns1")
        .a("ns1", "127.0.0.53")
        .a("www", "127.0.0.2");
    let dns = DnsServer::start(zone).await;
    let target = dns.addr().to_string();
    for m in ["dns_udp_example", "dns_soa", "dns_tcp_example"] {
        expect_success(p, m, &target, done).await;
    }
    if icmp_allowed("icmp_example") {
        expect_success(p, "icmp_example", "127.0.0.1", done).await;
    } else {
        done.insert("icmp_example".into());
    }
}

#[tokio::test]
async fn upstream_example_yml_every_module_runs() {
    let dir = tempfile::tempdir().unwrap();
    let pk = pki(dir.path(), 30);
    std::fs::write(dir.path().join("body.txt"), "body from a file\n").unwrap();
    std::fs::write(dir.path().join("api-key.txt"), "s3cret-key\n").unwrap();
    let proxy = Proxy::start().await;
    let token = HttpServer::start(Routes::new().at(
        "/token",
        Reply::json(
            200,
            &serde_json::json!({"access_token": "t0k", "token_type": "bearer"}),
        ),
    ))
    .await;
    let cfg = fixture(
        "example.yml",
        dir.path(),
        &[
            ("@PROXY@", proxy.url()),
            ("@TOKEN_URL@", token.url("/token")),
        ],
    );
    let p = start(&cfg).await;
    let mut done = BTreeSet::new();
    example_http(&p, &pk, &mut done).await;

    // Through the proxy: plain http is forwarded; https goes through CONNECT, which carries the
    // proxy_connect_header.
    let web = HttpServer::start(Routes::new().at("/", Reply::text(200, "ok"))).await;
    expect_success(&p, "http_with_proxy", &web.url("/"), &mut done).await;
    assert_eq!(proxy.forwarded(), 1);
    let secure = HttpServer::start_tls(
        Routes::new().at("/", Reply::text(200, "secure")),
        server_config(&pk.leaf, &[b"http/1.1"], None),
    )
    .await;
    let body = expect_success(
        &p,
        "http_with_proxy_and_headers",
        &secure.url("/"),
        &mut done,
    )
    .await;
    let connect = proxy
        .requests()
        .into_iter()
        .find(|s| s.method == "CONNECT")
        .expect("a CONNECT");
    assert_eq!(connect.header("proxy-authorization"), Some("Bearer token"));
    assert!(
        !body.contains("Bearer token"),
        "the debug answer shows the secret:\n{body}"
    );

    example_streams(&p, &pk, dir.path(), &mut done).await;
    assert_eq!(done, modules_of("example.yml"), "every module must be run");
}

const CEL_MODULES: &str = r#"modules:
  cel_not_matches:
    prober: http
    http:
      fail_if_body_json_not_matches_cel: "body.foo == 'bar' && body.baz.startsWith('q')"
  cel_matches:
    prober: http
    http:
      fail_if_body_json_matches_cel: "body.items.exists(i, i.state == 'down')"
  plain:
    prober: http
"#;

/// The CEL matchers through `/probe`: a true, a false and an erroring case each, and
/// `probe_failed_due_to_cel` only for modules that have one.
#[tokio::test]
async fn cel_matchers_pass_fail_and_err_as_blackbox() {
    let web = HttpServer::start(
        Routes::new()
            .at(
                "/good",
                Reply::json(200, &serde_json::json!({"foo": "bar", "baz": "qux"})),
            )
            .at(
                "/bad",
                Reply::json(200, &serde_json::json!({"foo": "bar", "baz": "zap"})),
            )
            .at(
                "/nofoo",
                Reply::json(200, &serde_json::json!({"baz": "qux"})),
            )
            .at("/text", Reply::text(200, "not json"))
            .at(
                "/up",
                Reply::json(200, &serde_json::json!({"items": [{"state": "up"}]})),
            )
            .at(
                "/down",
                Reply::json(
                    200,
                    &serde_json::json!({"items": [{"state": "up"}, {"state": "down"}]}),
                ),
            )
            .at(
                "/noitems",
                Reply::json(200, &serde_json::json!({"other": 1})),
            ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cel.yml");
    std::fs::write(&cfg, CEL_MODULES).unwrap();
    let p = start(&cfg).await;
    let cases = [
        ("cel_not_matches", "/good", 1.0, 0.0),
        ("cel_not_matches", "/bad", 0.0, 1.0),
        ("cel_not_matches", "/nofoo", 0.0, 1.0), // evaluation error: no such key
        ("cel_not_matches", "/text", 0.0, 1.0),  // not JSON
        ("cel_matches", "/up", 1.0, 0.0),
        ("cel_matches", "/down", 0.0, 1.0),
        ("cel_matches", "/noitems", 0.0, 1.0), // evaluation error
    ];
    for (module, path, success, due_to_cel) in cases {
        let body = probe(p.addr, module, &web.url(path)).await;
        assert_eq!(
            value(&body, "probe_success"),
            Some(success),
            "{module} {path}:\n{body}"
        );
        assert_eq!(
            value(&body, "probe_failed_due_to_cel"),
            Some(due_to_cel),
            "{module} {path}:\n{body}"
        );
    }
    let body = probe(p.addr, "plain", &web.url("/good")).await;
    assert!(
        !families(&body).contains("probe_failed_due_to_cel"),
        "{body}"
    );
}

/// An HTTP/3 module through `/probe`: blackbox's families with version 3, the QUIC handshake
/// as the `tls` phase, no `connect` time, and the certificate's expiry (10 days out).
#[tokio::test]
async fn http3_module_reports_version_phases_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let pk = pki(dir.path(), 10);
    let h3 = H3Server::start(
        Routes::new().at("/", Reply::text(200, "hello")),
        server_config(&pk.leaf, &[H3_ALPN], None),
    )
    .await;
    let yaml = format!(
        "modules:\n  h3:\n    prober: http\n    http:\n      enable_http3: true\n      enable_http2: false\n      valid_http_versions: [HTTP/3.0]\n      fail_if_not_ssl: true\n      tls_config: {{ca_file: {}}}\n  h3_untrusted:\n    prober: http\n    http: {{enable_http3: true, enable_http2: false}}\n",
        dir.path().join("ca.crt").display()
    );
    let cfg = dir.path().join("h3.yml");
    std::fs::write(&cfg, yaml).unwrap();
    let p = start(&cfg).await;
    let body = probe(p.addr, "h3", &h3.url("/")).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(value(&body, "probe_http_version"), Some(3.0));
    assert_eq!(value(&body, "probe_http_ssl"), Some(1.0));
    assert_eq!(value(&body, "probe_http_status_code"), Some(200.0));
    assert_eq!(
        value(&body, "probe_ssl_earliest_cert_expiry"),
        Some(pk.leaf.not_after as f64)
    );
    let days = (pk.leaf.not_after - time::OffsetDateTime::now_utc().unix_timestamp()) / 86400;
    assert!((9..=10).contains(&days), "{days}");
    assert_eq!(
        value(&body, "probe_tls_version_info{version=\"TLS 1.3\"}"),
        Some(1.0)
    );
    // The fixture follows the client's order: the suite Go's client (blackbox) offers first,
    // named as Go names it.
    assert_eq!(
        value(
            &body,
            "probe_tls_cipher_info{cipher=\"TLS_AES_128_GCM_SHA256\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert!(value(&body, "probe_http_duration_seconds{phase=\"tls\"}").unwrap() > 0.0);
    assert_eq!(
        value(&body, "probe_http_duration_seconds{phase=\"connect\"}"),
        Some(0.0)
    );
    assert!(value(&body, "probe_http_duration_seconds{phase=\"processing\"}").unwrap() > 0.0);
    assert_eq!(h3.requests()[0].version, "HTTP/3.0");
    let body = probe(p.addr, "h3_untrusted", &h3.url("/")).await;
    assert_eq!(value(&body, "probe_success"), Some(0.0), "{body}");
    assert!(body.contains("QUIC handshake"), "{body}");
}
