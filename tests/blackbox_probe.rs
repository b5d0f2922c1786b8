//! `/probe` in process: sonde's web router with a blackbox configuration, probing loopback
//! fixtures, answering as blackbox_exporter does — status codes and messages of refused
//! requests, metric families per prober and outcome, the timeout from Prometheus' header, the
//! debug trace with secrets hidden, blackbox's own series, and the safety options.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sonde::blackbox::safety::Safety;
use sonde::blackbox::Blackbox;
use sonde::config::LoadOptions;
use sonde::metrics::{Metrics, RunMetrics};
use sonde::runtime::scheduler::Scheduler;
use sonde::serve::{App, AppParts, ConfigSource, Reload};
use sonde_testkit::dns::{DnsServer, Zone};
use sonde_testkit::http::{HttpServer, Reply, Routes};
use sonde_testkit::pki::{server_config, Ca};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Probe {
    addr: SocketAddr,
    app: Arc<App>,
    dir: tempfile::TempDir,
}

async fn start(yaml: &str, safety: Safety) -> Probe {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blackbox.yml");
    std::fs::write(&path, yaml).unwrap();
    let source = ConfigSource::Paths(vec![path]);
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
        blackbox: Blackbox::new(0.5, safety),
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
    Probe { addr, app, dir }
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    /// The value of an unlabelled series, or of the series whose label set is `labels`.
    fn value(&self, series: &str) -> Option<f64> {
        self.body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, v) = l.rsplit_once(' ')?;
                (name == series).then(|| v.parse().unwrap())
            })
    }

    fn families(&self) -> BTreeSet<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    }
}

/// A request over HTTP/1.0 (so the answer is never chunked), with extra headers.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: body.to_string(),
    }
}

fn listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

const HTTP_FAMILIES: [&str; 10] = [
    "probe_duration_seconds",
    "probe_failed_due_to_regex",
    "probe_http_content_length",
    "probe_http_duration_seconds",
    "probe_http_redirects",
    "probe_http_ssl",
    "probe_http_status_code",
    "probe_http_uncompressed_body_length",
    "probe_http_version",
    "probe_success",
];
const RESOLVE_FAMILIES: [&str; 3] = [
    "probe_dns_lookup_time_seconds",
    "probe_ip_addr_hash",
    "probe_ip_protocol",
];

fn with(base: &[&str], more: &[&str]) -> BTreeSet<String> {
    let mut s = set(base);
    s.extend(more.iter().map(|m| m.to_string()));
    s
}

const MODULES: &str = r#"modules:
  http_2xx:
    prober: http
  http_404:
    prober: http
    http:
      valid_status_codes: [404]
  http_body:
    prober: http
    http:
      fail_if_body_matches_regexp: ["maintenance"]
  http_header:
    prober: http
    http:
      fail_if_header_not_matches:
        - header: X-Env
          regexp: "^prod$"
  http_secret:
    prober: http
    http:
      bearer_token: s3cr3t-t0ken
      headers:
        X-Trace: visible-header
  http_no_redirect:
    prober: http
    http:
      follow_redirects: false
      valid_status_codes: [302]
  http_body_limit:
    prober: http
    http:
      body_size_limit: 4B
  tcp_connect:
    prober: tcp
  tcp_ip6_only:
    prober: tcp
    tcp:
      preferred_ip_protocol: ip6
      ip_protocol_fallback: false
  dns_soa:
    prober: dns
    dns:
      query_name: sonde.test
      query_type: SOA
      transport_protocol: udp
"#;

async fn web() -> HttpServer {
    HttpServer::start(
        Routes::new()
            .at(
                "/ok",
                Reply::text(200, "all good")
                    .header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
            )
            .at("/missing", Reply::text(404, "no"))
            .at("/empty", Reply::status(204))
            .at("/hop", Reply::redirect(302, "/ok"))
            .at("/maint", Reply::text(200, "down for maintenance"))
            .at(
                "/slow",
                Reply::text(200, "late").delay(Duration::from_secs(10)),
            ),
    )
    .await
}

#[tokio::test]
async fn probe_without_module_uses_http_2xx_and_reports_blackbox_families() {
    let w = web().await;
    let p = start(MODULES, Safety::off()).await;
    let a = get(
        p.addr,
        &format!("/probe?target=http://{}/ok", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    assert_eq!(a.value("probe_http_status_code"), Some(200.0));
    assert_eq!(a.value("probe_http_version"), Some(1.1));
    assert_eq!(a.value("probe_http_content_length"), Some(8.0));
    assert_eq!(a.value("probe_http_uncompressed_body_length"), Some(8.0));
    assert_eq!(a.value("probe_ip_protocol"), Some(4.0));
    assert_eq!(
        a.value("probe_http_last_modified_timestamp_seconds"),
        Some(1_445_412_480.0)
    );
    assert_eq!(
        a.families(),
        with(
            &HTTP_FAMILIES,
            &[
                RESOLVE_FAMILIES[0],
                RESOLVE_FAMILIES[1],
                RESOLVE_FAMILIES[2],
                "probe_http_last_modified_timestamp_seconds"
            ]
        )
    );
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(
            a.value(&format!("probe_http_duration_seconds{{phase=\"{phase}\"}}"))
                .is_some(),
            "phase {phase} missing: {}",
            a.body
        );
    }
    assert!(a.body.contains(
        "# HELP probe_success Displays whether or not the probe was a success\n# TYPE probe_success gauge\n"
    ));
    // A target without scheme gets http://, as in blackbox.
    let a = get(
        p.addr,
        &format!("/probe?module=http_2xx&target={}/hop", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    assert_eq!(a.value("probe_http_redirects"), Some(1.0));
}

#[tokio::test]
async fn missing_target_and_unknown_module_are_refused_as_blackbox_does() {
    let p = start(MODULES, Safety::off()).await;
    let a = get(p.addr, "/probe?module=http_2xx", &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body, "Target parameter is missing\n");
    let a = get(p.addr, "/probe", &[]).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (400, "Target parameter is missing\n")
    );
    let a = get(p.addr, "/probe?target=", &[]).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (400, "Target parameter is missing\n")
    );

    let m = get(p.addr, "/metrics", &[]).await;
    assert_eq!(
        m.value("blackbox_module_unknown_total"),
        Some(0.0),
        "{}",
        m.body
    );
    let a = get(p.addr, "/probe?module=nope&target=127.0.0.1", &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body, "Unknown module \"nope\"\n");
    // The unknown module wins over the missing target, as in blackbox.
    let a = get(p.addr, "/probe?module=nope", &[]).await;
    assert_eq!(a.body, "Unknown module \"nope\"\n");
    let m = get(p.addr, "/metrics", &[]).await;
    assert_eq!(m.value("blackbox_module_unknown_total"), Some(2.0));
    assert_eq!(
        m.value("blackbox_exporter_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(
        m.value("blackbox_exporter_config_last_reload_success_timestamp_seconds")
            .unwrap()
            > 1e9
    );
    assert!(
        m.body.contains("sonde_build_info"),
        "sonde's own series stay"
    );
    // OpenMetrics: blackbox's series come before sonde's `# EOF`.
    let om = get(
        p.addr,
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await;
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(om.body.contains("blackbox_module_unknown_total 2\n"));
}

#[tokio::test]
async fn bad_targets_fail_the_probe_and_still_answer_200() {
    let p = start(MODULES, Safety::off()).await;
    // A URL that does not parse: only the http families, no resolve families.
    let a = get(
        p.addr,
        "/probe?module=http_2xx&target=http%3A%2F%2F%5B%3A%3A1",
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.value("probe_success"), Some(0.0));
    // As blackbox 0.23: no phase series either.
    let mut without_phases = set(&HTTP_FAMILIES);
    without_phases.remove("probe_http_duration_seconds");
    assert_eq!(a.families(), without_phases);
    // tcp without a port: no resolve families either.
    let a = get(p.addr, "/probe?module=tcp_connect&target=127.0.0.1", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.value("probe_success"), Some(0.0));
    assert_eq!(
        a.families(),
        set(&[
            "probe_duration_seconds",
            "probe_failed_due_to_regex",
            "probe_success"
        ])
    );
    // A refused port: resolved, then failed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let a = get(
        p.addr,
        &format!("/probe?module=tcp_connect&target=127.0.0.1:{port}"),
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.value("probe_success"), Some(0.0));
    assert_eq!(a.value("probe_ip_protocol"), Some(4.0));
    assert_eq!(a.value("probe_ip_addr_hash"), Some(3_668_918_509.0));
    // An IPv4 literal for a module that wants IPv6 only: blackbox fails in resolution.
    let (l, open) = listener();
    let a = get(
        p.addr,
        &format!("/probe?module=tcp_ip6_only&target=127.0.0.1:{open}"),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(0.0), "{}", a.body);
    assert_eq!(a.value("probe_ip_protocol"), Some(0.0));
    assert_eq!(a.value("probe_ip_addr_hash"), Some(0.0));
    drop(l);
    // A port Go cannot dial: resolved first (resolve families), then failed.
    let a = get(
        p.addr,
        "/probe?module=tcp_connect&target=127.0.0.1:99999",
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(0.0), "{}", a.body);
    assert_eq!(a.value("probe_ip_protocol"), Some(4.0));
    // A bracketed address where Go wants a bare host fails in resolution, without traffic.
    let a = get(p.addr, "/probe?module=dns_soa&target=%5B::1%5D", &[]).await;
    assert_eq!(a.value("probe_success"), Some(0.0), "{}", a.body);
    assert_eq!(a.value("probe_ip_protocol"), Some(0.0));
    assert_eq!(a.value("probe_dns_query_succeeded"), Some(0.0));
    let a = get(
        p.addr,
        &format!("/probe?module=http_2xx&target=http://127.0.0.1:{port}/"),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(0.0));
    assert_eq!(a.value("probe_http_status_code"), Some(0.0));
    assert_eq!(a.value("probe_http_content_length"), Some(0.0));
}

#[tokio::test]
async fn http_checks_set_success_status_and_regex_flag() {
    let w = web().await;
    let p = start(MODULES, Safety::off()).await;
    let a = get(
        p.addr,
        &format!("/probe?module=http_2xx&target=http://{}/missing", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(0.0));
    assert_eq!(a.value("probe_http_status_code"), Some(404.0));
    let a = get(
        p.addr,
        &format!("/probe?module=http_404&target=http://{}/missing", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    let a = get(
        p.addr,
        &format!("/probe?module=http_body&target=http://{}/maint", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(0.0));
    assert_eq!(a.value("probe_failed_due_to_regex"), Some(1.0));
    let a = get(
        p.addr,
        &format!("/probe?module=http_body&target=http://{}/ok", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(1.0));
    assert_eq!(a.value("probe_failed_due_to_regex"), Some(0.0));
    // No body by status: Go's ContentLength is 0, not "unknown".
    let a = get(
        p.addr,
        &format!("/probe?module=http_2xx&target=http://{}/empty", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_http_status_code"), Some(204.0), "{}", a.body);
    assert_eq!(a.value("probe_http_content_length"), Some(0.0));
    // Over body_size_limit: failed, and the body length counted up to the limit, as blackbox.
    let a = get(
        p.addr,
        &format!(
            "/probe?module=http_body_limit&target=http://{}/ok",
            w.addr()
        ),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(0.0), "{}", a.body);
    assert_eq!(a.value("probe_http_uncompressed_body_length"), Some(4.0));
    // Not following a redirect: blackbox (Go) still counts it, and reads no body.
    let a = get(
        p.addr,
        &format!(
            "/probe?module=http_no_redirect&target=http://{}/hop",
            w.addr()
        ),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    assert_eq!(a.value("probe_http_status_code"), Some(302.0));
    assert_eq!(a.value("probe_http_redirects"), Some(1.0));
    assert_eq!(a.value("probe_http_uncompressed_body_length"), Some(0.0));
    let a = get(
        p.addr,
        &format!("/probe?module=http_header&target=http://{}/ok", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(0.0));
    assert_eq!(
        a.value("probe_failed_due_to_regex"),
        Some(1.0),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn https_targets_report_tls_families_with_the_leaf_expiry() {
    let ca = Ca::new("bb1 test CA");
    let leaf = ca.leaf(&["127.0.0.1"], time_days(20), &[]);
    let w = HttpServer::start_tls(
        Routes::new().at("/ok", Reply::text(200, "tls ok")),
        server_config(&leaf, &[b"h2", b"http/1.1"], None),
    )
    .await;
    let yaml = format!(
        "modules:\n  https:\n    prober: http\n    http:\n      fail_if_not_ssl: true\n      tls_config:\n        ca_file: {}\n",
        ca.ca_file.display()
    );
    let p = start(&yaml, Safety::off()).await;
    let a = get(
        p.addr,
        &format!("/probe?module=https&target=https://{}/ok", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    assert_eq!(a.value("probe_http_ssl"), Some(1.0));
    assert_eq!(a.value("probe_http_version"), Some(2.0));
    assert_eq!(
        a.value("probe_ssl_earliest_cert_expiry"),
        Some(leaf.not_after as f64)
    );
    assert_eq!(
        a.value("probe_ssl_last_chain_expiry_timestamp_seconds"),
        Some(leaf.not_after as f64)
    );
    assert!(
        a.body
            .contains("probe_tls_version_info{version=\"TLS 1.3\"} 1"),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("probe_tls_cipher_info{cipher=\"TLS_"),
        "{}",
        a.body
    );
    assert!(
        a.body
            .contains("probe_ssl_last_chain_info{fingerprint_sha256=\""),
        "{}",
        a.body
    );
    let fams = a.families();
    for f in [
        "probe_ssl_earliest_cert_expiry",
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        "probe_ssl_last_chain_info",
        "probe_tls_version_info",
    ] {
        assert!(fams.contains(f), "{f} missing");
    }
}

fn time_days(d: i64) -> time::Duration {
    time::Duration::days(d)
}

#[tokio::test]
async fn the_scrape_timeout_header_minus_the_offset_bounds_the_probe() {
    let w = web().await;
    let p = start(MODULES, Safety::off()).await;
    let started = Instant::now();
    let a = get(
        p.addr,
        &format!(
            "/probe?module=http_2xx&target=http://{}/slow&debug=true",
            w.addr()
        ),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "1.5")],
    )
    .await;
    // Hang guard only: the /slow fixture answers after 10 s; 1.5 s − 0.5 s must end it first.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the probe waited for /slow"
    );
    assert!(a.body.contains("timeout_seconds=1\n"), "{}", a.body);
    assert!(a.body.contains("probe_success 0"), "{}", a.body);
    let a = get(
        p.addr,
        "/probe?module=http_2xx&target=127.0.0.1",
        &[("X-Prometheus-Scrape-Timeout-Seconds", "soon")],
    )
    .await;
    assert_eq!(a.status, 500);
    assert!(
        a.body
            .starts_with("Failed to parse timeout from Prometheus header: "),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn debug_shows_log_metrics_and_module_with_secrets_hidden() {
    let w = HttpServer::start(Routes::new().at("/echo", Reply::echo())).await;
    let p = start(MODULES, Safety::off()).await;
    let a = get(
        p.addr,
        &format!(
            "/probe?module=http_secret&target=http://{}/echo&debug=true",
            w.addr()
        ),
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "text/plain; charset=utf-8");
    let logs = a.body.find("Logs for the probe:\n").unwrap();
    let metrics = a
        .body
        .find("\n\n\nMetrics that would have been returned:\n")
        .unwrap();
    let module = a.body.find("\n\n\nModule configuration:\n").unwrap();
    assert!(logs < metrics && metrics < module, "{}", a.body);
    assert!(
        a.body
            .contains("msg=\"Resolved target address\" ip=127.0.0.1"),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("header=\"x-trace: visible-header\""),
        "{}",
        a.body
    );
    assert!(a.body.contains("Response header"), "{}", a.body);
    assert!(a.body.contains("durations=\"resolve="), "{}", a.body);
    assert!(a.body.contains("probe_success 1"), "{}", a.body);
    assert!(a.body.contains("bearer_token: <redacted>"), "{}", a.body);
    assert!(
        !a.body.contains("s3cr3t-t0ken"),
        "secret leaked: {}",
        a.body
    );
    // /config lists the modules, secrets redacted too.
    let c = get(p.addr, "/config", &[]).await;
    assert!(c.body.contains("blackbox_modules:"), "{}", c.body);
    assert!(c.body.contains("http_secret:"), "{}", c.body);
    assert!(
        !c.body.contains("s3cr3t-t0ken"),
        "secret leaked: {}",
        c.body
    );
    // Why a probe failed is in the log.
    let a = get(
        p.addr,
        "/probe?module=tcp_connect&target=127.0.0.1:1&debug=true",
        &[],
    )
    .await;
    assert!(
        a.body.contains("level=error msg=Failure reason=connect"),
        "{}",
        a.body
    );
}

/// The connection's local port (a `getsockname` per probe) is named in the debug output asked
/// for, where a packet capture is matched by it, and not in a plain scrape's kept log.
#[tokio::test]
async fn only_the_debug_output_names_the_local_port() {
    let w = web().await;
    let p = start(MODULES, Safety::off()).await;
    let target = format!("http://{}/ok", w.addr());
    let connected = |body: &str| {
        body.lines()
            .find(|l| l.contains("msg=\"connected to 127.0.0.1:"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no connect line: {body}"))
    };
    let plain = get(p.addr, &format!("/probe?target={target}"), &[]).await;
    assert_eq!(plain.value("probe_success"), Some(1.0), "{}", plain.body);
    let kept = get(p.addr, &format!("/logs?target={target}"), &[]).await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    let line = connected(&kept.body);
    assert!(!line.contains("from port"), "{line}");
    let debug = get(p.addr, &format!("/probe?target={target}&debug=true"), &[]).await;
    let line = connected(&debug.body);
    let port = line
        .split(" from port ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse::<u16>().ok());
    assert!(port.is_some_and(|p| p > 0), "{line}");
}

#[tokio::test]
async fn dns_module_counts_records_and_reports_the_soa_serial() {
    let dns = DnsServer::start(Zone::example()).await;
    let p = start(MODULES, Safety::off()).await;
    let a = get(
        p.addr,
        &format!("/probe?module=dns_soa&target={}", dns.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    assert_eq!(a.value("probe_dns_answer_rrs"), Some(1.0));
    assert_eq!(a.value("probe_dns_serial"), Some(2_024_010_101.0));
    assert_eq!(a.value("probe_dns_query_succeeded"), Some(1.0));
    for phase in ["resolve", "connect", "request"] {
        assert!(a
            .value(&format!("probe_dns_duration_seconds{{phase=\"{phase}\"}}"))
            .is_some());
    }
}

#[tokio::test]
async fn allow_list_and_concurrency_cap_refuse_with_403_and_503() {
    let w = web().await;
    let safety = Safety::new(vec!["127.0.0.1/32".parse().unwrap()], Some(1));
    let p = start(MODULES, safety).await;
    let a = get(
        p.addr,
        &format!("/probe?target=http://{}/ok", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    let a = get(p.addr, "/probe?module=tcp_connect&target=127.0.0.2:80", &[]).await;
    assert_eq!(a.status, 403);
    assert!(
        a.body.contains("not allowed by --probe.allow-target"),
        "{}",
        a.body
    );
    // One slow probe holds the only slot; the next is refused at once.
    let slow = format!("/probe?target=http://{}/slow", w.addr());
    let addr = p.addr;
    let held = tokio::spawn(async move {
        get(addr, &slow, &[("X-Prometheus-Scrape-Timeout-Seconds", "6")]).await
    });
    let mut refused = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let a = get(
            p.addr,
            &format!("/probe?target=http://{}/ok", w.addr()),
            &[],
        )
        .await;
        if a.status == 503 {
            refused = Some(a);
            break;
        }
    }
    let refused = refused.expect("a second probe while the slot is held gets 503");
    assert!(refused.body.contains("too many concurrent probes"));
    let _ = held.await;
}

#[tokio::test]
async fn a_broken_reload_keeps_the_modules_and_says_so() {
    let p = start(MODULES, Safety::off()).await;
    let path = p.dir.path().join("blackbox.yml");
    std::fs::write(
        &path,
        "modules:\n  only_tcp:\n    prober: tcp\n    tcpp: {}\n",
    )
    .unwrap();
    assert!(matches!(p.app.reload().await, Reload::Rejected(_)));
    let m = get(p.addr, "/metrics", &[]).await;
    assert_eq!(
        m.value("blackbox_exporter_config_last_reload_successful"),
        Some(0.0)
    );
    let a = get(p.addr, "/probe?module=tcp_connect&target=127.0.0.1:1", &[]).await;
    assert_eq!(a.status, 200, "the old modules keep serving");
    std::fs::write(&path, "modules:\n  only_tcp:\n    prober: tcp\n").unwrap();
    assert!(matches!(p.app.reload().await, Reload::Applied { .. }));
    let a = get(p.addr, "/probe?module=tcp_connect&target=127.0.0.1:1", &[]).await;
    assert_eq!(a.status, 400, "tcp_connect is gone after a good reload");
    let a = get(p.addr, "/probe?module=only_tcp&target=127.0.0.1:1", &[]).await;
    assert_eq!(a.status, 200);
    let m = get(p.addr, "/metrics", &[]).await;
    assert_eq!(
        m.value("blackbox_exporter_config_last_reload_successful"),
        Some(1.0)
    );
}

#[tokio::test]
async fn grpc_module_reports_status_and_serving_status() {
    use sonde_testkit::grpc::{GrpcHealthServer, NOT_SERVING};
    let g = GrpcHealthServer::start().await;
    g.set("checkout", NOT_SERVING);
    let yaml = "modules:\n  grpc_plain:\n    prober: grpc\n    grpc:\n      tls: false\n      preferred_ip_protocol: ip4\n  grpc_checkout:\n    prober: grpc\n    grpc:\n      service: checkout\n";
    let p = start(yaml, Safety::off()).await;
    let a = get(
        p.addr,
        &format!("/probe?module=grpc_plain&target={}", g.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    assert_eq!(a.value("probe_grpc_status_code"), Some(0.0));
    assert_eq!(a.value("probe_grpc_ssl"), Some(0.0));
    assert_eq!(a.value("probe_ssl_earliest_cert_expiry"), Some(0.0));
    assert_eq!(
        a.value("probe_grpc_healthcheck_response{serving_status=\"SERVING\"}"),
        Some(1.0)
    );
    assert_eq!(
        a.value("probe_grpc_healthcheck_response{serving_status=\"NOT_SERVING\"}"),
        Some(0.0)
    );
    assert_eq!(a.value("probe_ip_protocol"), Some(4.0));
    let a = get(
        p.addr,
        &format!("/probe?module=grpc_checkout&target={}", g.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(0.0), "{}", a.body);
    assert_eq!(
        a.value("probe_grpc_healthcheck_response{serving_status=\"NOT_SERVING\"}"),
        Some(1.0)
    );
    assert_eq!(g.asked().last().map(String::as_str), Some("checkout"));
}

#[tokio::test]
async fn compression_asks_for_the_coding_and_measures_the_decoded_body() {
    use std::io::Write;
    let text = "all good, and gzipped. ".repeat(40);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let wire = gz.len();
    let w = HttpServer::start(
        Routes::new()
            .at(
                "/gz",
                Reply::bytes(200, gz).header("Content-Encoding", "gzip"),
            )
            .at("/plain", Reply::text(200, "not compressed")),
    )
    .await;
    let yaml = "modules:\n  http_gzip:\n    prober: http\n    http:\n      compression: gzip\n      fail_if_body_not_matches_regexp: [\"and gzipped\"]\n";
    let p = start(yaml, Safety::off()).await;
    let a = get(
        p.addr,
        &format!("/probe?module=http_gzip&target=http://{}/gz", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    assert_eq!(
        a.value("probe_http_uncompressed_body_length"),
        Some(text.len() as f64)
    );
    assert_eq!(a.value("probe_http_content_length"), Some(wire as f64));
    // blackbox treats the body as compressed whatever the server says: plain text fails.
    let a = get(
        p.addr,
        &format!(
            "/probe?module=http_gzip&target=http://{}/plain&debug=true",
            w.addr()
        ),
        &[],
    )
    .await;
    assert!(a.body.contains("probe_success 0"), "{}", a.body);
    assert!(a.body.contains("not valid gzip"), "{}", a.body);
    assert!(a.body.contains("accept-encoding: gzip"), "{}", a.body);
}

#[tokio::test]
async fn no_proxy_targets_bypass_the_proxy() {
    let w = web().await;
    // The proxy is a closed port: only a target that bypasses it can succeed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = closed.local_addr().unwrap();
    drop(closed);
    let yaml = format!(
        "modules:\n  via_proxy:\n    prober: http\n    http:\n      proxy_url: http://{proxy}\n      no_proxy: \"localhost,127.0.0.1\"\n  all_proxied:\n    prober: http\n    http:\n      proxy_url: http://{proxy}\n"
    );
    let p = start(&yaml, Safety::off()).await;
    let a = get(
        p.addr,
        &format!("/probe?module=via_proxy&target=http://{}/ok", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    let a = get(
        p.addr,
        &format!("/probe?module=all_proxied&target=http://{}/ok", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(0.0), "{}", a.body);
}

#[tokio::test]
async fn query_response_labels_become_probe_expect_info() {
    let smtp = sonde_testkit::lines::LineServer::smtp().await;
    let yaml = "modules:\n  smtp_banner:\n    prober: tcp\n    tcp:\n      query_response:\n        - expect: \"^220 (?P<host>[^ ]+) ESMTP (\\\\S+)\"\n          labels:\n            - {name: host, value: \"${host}\"}\n            - {name: software, value: \"${2}\"}\n        - send: QUIT\n";
    let p = start(yaml, Safety::off()).await;
    let a = get(
        p.addr,
        &format!("/probe?module=smtp_banner&target={}", smtp.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    assert!(
        a.body.contains(
            "# HELP probe_expect_info Explicit content matched\n# TYPE probe_expect_info gauge\nprobe_expect_info{host=\"mail.sonde.test\",software=\"sonde-testkit\"} 1\n"
        ),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn oauth2_fetches_a_token_then_probes_with_it() {
    let w = HttpServer::start(
        Routes::new()
            .at(
                "/token",
                Reply::json(
                    200,
                    &serde_json::json!({"access_token": "tok123", "token_type": "bearer"}),
                ),
            )
            .at("/api", Reply::text(200, "ok")),
    )
    .await;
    let yaml = format!(
        "modules:\n  oauth:\n    prober: http\n    http:\n      oauth2:\n        client_id: probe\n        client_secret: s3cret\n        scopes: [read, write]\n        token_url: http://{a}/token\n  oauth_broken:\n    prober: http\n    http:\n      oauth2:\n        client_id: probe\n        client_secret: s3cret\n        token_url: http://{a}/nope\n",
        a = w.addr()
    );
    let p = start(&yaml, Safety::off()).await;
    let a = get(
        p.addr,
        &format!(
            "/probe?module=oauth&target=http://{}/api&debug=true",
            w.addr()
        ),
        &[],
    )
    .await;
    assert!(a.body.contains("probe_success 1\n"), "{}", a.body);
    assert!(
        !a.body.contains("tok123") && !a.body.contains("s3cret"),
        "secrets leaked: {}",
        a.body
    );
    let seen = w.requests();
    let token = seen
        .iter()
        .find(|r| r.path == "/token")
        .expect("a token request");
    assert_eq!(token.method, "POST");
    assert_eq!(
        std::str::from_utf8(&token.body).unwrap(),
        "grant_type=client_credentials&scope=read+write"
    );
    // base64("probe:s3cret")
    assert_eq!(
        token.header("authorization"),
        Some("Basic cHJvYmU6czNjcmV0")
    );
    let api = seen.iter().find(|r| r.path == "/api").expect("the probe");
    assert_eq!(api.header("authorization"), Some("Bearer tok123"));
    // No token, no probe: failed like a request that errored.
    let before = w.requests().len();
    let a = get(
        p.addr,
        &format!("/probe?module=oauth_broken&target=http://{}/api", w.addr()),
        &[],
    )
    .await;
    assert_eq!(a.value("probe_success"), Some(0.0), "{}", a.body);
    assert_eq!(a.value("probe_http_status_code"), Some(0.0));
    assert_eq!(a.value("probe_ip_protocol"), Some(4.0));
    let after: Vec<_> = w.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(after, ["/nope"]);
}

#[tokio::test]
async fn icmp_module_reports_its_phases() {
    if let Err(why) = sonde_probes::icmp::permission_check() {
        eprintln!("SKIPPED: icmp_module_reports_its_phases: no ICMP socket allowed here: {why}");
        return;
    }
    let p = start("modules:\n  icmp:\n    prober: icmp\n", Safety::off()).await;
    let a = get(p.addr, "/probe?module=icmp&target=127.0.0.1", &[]).await;
    assert_eq!(a.value("probe_success"), Some(1.0), "{}", a.body);
    assert_eq!(a.value("probe_ip_protocol"), Some(4.0));
    for phase in ["resolve", "setup", "rtt"] {
        assert!(
            a.value(&format!("probe_icmp_duration_seconds{{phase=\"{phase}\"}}"))
                .is_some(),
            "{}",
            a.body
        );
    }
}
