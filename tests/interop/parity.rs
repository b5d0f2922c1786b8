//! The blackbox parity suite: Debian's `prometheus-blackbox-exporter` and `sonde serve
//! --config.file` load the SAME `tests/interop/blackbox.yml` and answer the same `/probe`
//! questions about the same loopback targets (nginx over HTTP and HTTPS, a TCP dialogue with
//! nginx, dnsmasq, ICMP to 127.0.0.1, and an in-process gRPC health server), one failing target
//! or more per prober. blackbox's answer is the reference: for every module×target,
//!
//! - the HTTP status of both `/probe` answers is the same;
//! - every metric name blackbox returns, sonde returns, with the same type (HELP texts are
//!   compared and listed, not failed on: blackbox changed some between 0.23 and 0.28, and sonde
//!   follows the newest);
//! - every series blackbox returns (name and label set, label values included: phases, TLS
//!   version, certificate subject…), sonde returns — sonde may carry extra labels, as later
//!   blackbox versions do (`serialnumber`);
//! - every value that does not measure time (success, status code, HTTP version, redirects, SSL
//!   flag, IP protocol and address hash, DNS record counts, certificate expiry, regex flag, gRPC
//!   status…) is equal. Durations are only required to exist.
//!
//! It prints a table of what was compared, then every difference, and fails if there is one.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sonde_testkit::client;
use sonde_testkit::grpc::{self as grpc_fixture, GrpcHealthServer};
use sonde_testkit::http::{HttpServer, Reply, Routes};
use sonde_testkit::process::{free_addr, Serve};

use super::{Servers, SONDE};

/// Debian's package puts it here; run.sh installs it.
const BLACKBOX: &str = "/usr/bin/prometheus-blackbox-exporter";

/// Hang guard for one exporter to start listening.
const START_GUARD: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The text exposition, parsed.

/// One exporter's `/probe` answer.
#[derive(Debug, Default)]
struct Exposition {
    /// name → (TYPE, HELP)
    meta: BTreeMap<String, (String, String)>,
    /// name → label set → value
    series: BTreeMap<String, BTreeMap<BTreeMap<String, String>, f64>>,
}

/// Parse Prometheus text format 0.0.4 (what both exporters send when not asked for
/// OpenMetrics). Errors say which line is wrong: a line sonde writes badly is a finding too.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            e.meta.entry(name.to_string()).or_default().1 = help.to_string();
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, ""));
            e.meta.entry(name.to_string()).or_default().0 = ty.to_string();
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let (labels, after) = parse_labels(&line[open + 1..]).map_err(|w| bad(&w))?;
                (&line[..open], labels, after)
            }
            None => {
                let (name, rest) = line.split_once(' ').ok_or_else(|| bad("no value"))?;
                (name, BTreeMap::new(), rest)
            }
        };
        let value_text = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| bad("no value"))?;
        let value = parse_value(value_text).ok_or_else(|| bad("value is not a number"))?;
        let prev = e
            .series
            .entry(name.to_string())
            .or_default()
            .insert(labels, value);
        if prev.is_some() {
            return Err(bad("duplicate series"));
        }
    }
    Ok(e)
}

/// Labels after `{`: returns them and the text after the closing `}`.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let name = s[..eq].trim().to_string();
        s = s[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        s = &s[end + 1..];
        if labels.insert(name.clone(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Metrics that measure time: only their presence (name, labels) is compared.
fn is_timing(name: &str) -> bool {
    name.contains("duration") || name.contains("lookup_time")
}

// ---------------------------------------------------------------------------------------------
// The exporters.

/// A process killed and reaped when dropped, its output in `log`.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `prometheus-blackbox-exporter` on a free loopback port with `config`, ready.
fn start_blackbox(config: &Path, dir: &Path) -> (Proc, SocketAddr) {
    let addr = free_addr();
    let log = dir.join("blackbox.log");
    let out = File::create(&log).expect("create blackbox.log");
    let child = Command::new(BLACKBOX)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("start {BLACKBOX}: {e} — run tests/interop/run.sh (it installs the package)")
        });
    let mut p = Proc { child, log };
    let guard = Instant::now() + START_GUARD;
    loop {
        if matches!(client::get(addr, "/-/healthy"), Ok(r) if r.status == 200) {
            return (p, addr);
        }
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!(
                "blackbox_exporter exited ({st}):\n{}",
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < guard,
            "blackbox_exporter did not start (hang guard)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The comparison.

/// One `/probe` question.
struct Case {
    /// `None`: no `module` parameter (blackbox's default, http_2xx).
    module: Option<&'static str>,
    /// `None`: no `target` parameter.
    target: Option<String>,
    /// What we expect blackbox to say, to catch a suite that compares two broken answers.
    expect_success: Option<bool>,
    /// More query parameters, already encoded (`hostname=localhost`).
    extra: Option<&'static str>,
}

fn case(module: &'static str, target: impl Into<String>, success: bool) -> Case {
    Case {
        module: Some(module),
        target: Some(target.into()),
        expect_success: Some(success),
        extra: None,
    }
}

impl Case {
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(m) = self.module {
            q.push(format!("module={}", urlencode(m)));
        }
        if let Some(t) = &self.target {
            q.push(format!("target={}", urlencode(t)));
        }
        q.extend(self.extra.map(String::from));
        format!("/probe?{}", q.join("&"))
    }
}

/// What was compared for one case.
#[derive(Default)]
struct Row {
    module: String,
    target: String,
    status: String,
    names: usize,
    series: usize,
    values: usize,
    diffs: Vec<String>,
    /// Differences that do not fail the suite: HELP texts, which blackbox itself changed between
    /// the versions sonde follows (0.23–0.28); sonde uses the newest.
    notes: Vec<String>,
}

fn compare(c: &Case, bb: &client::Response, sonde: &client::Response) -> Row {
    let mut row = Row {
        module: match c.module {
            None => "(none)".to_string(),
            Some("") => "(empty)".to_string(),
            Some(m) => m.to_string(),
        },
        target: match c.target.as_deref() {
            None => "(none)".to_string(),
            Some("") => "(empty)".to_string(),
            Some(t) => t.to_string(),
        } + &c.extra.map(|e| format!(" &{e}")).unwrap_or_default(),
        status: format!("{}/{}", bb.status, sonde.status),
        ..Row::default()
    };
    let d = &mut row.diffs;
    if bb.status != sonde.status {
        d.push(format!(
            "HTTP status of /probe: blackbox {} vs sonde {} (sonde body: {:?})",
            bb.status,
            sonde.status,
            clip(&sonde.body)
        ));
        return row;
    }
    if bb.status != 200 {
        return row;
    }
    let b = match parse_exposition(&bb.body) {
        Ok(b) => b,
        Err(e) => {
            d.push(format!("blackbox's answer does not parse: {e}"));
            return row;
        }
    };
    let s = match parse_exposition(&sonde.body) {
        Ok(s) => s,
        Err(e) => {
            d.push(format!("sonde's answer does not parse: {e}"));
            return row;
        }
    };
    if let Some(want) = c.expect_success {
        let got = b
            .series
            .get("probe_success")
            .and_then(|m| m.values().next());
        if got != Some(&if want { 1.0 } else { 0.0 }) {
            d.push(format!(
                "the suite expected blackbox probe_success {} but it says {got:?}: the test \
                 target is not what the suite thinks",
                u8::from(want)
            ));
        }
    }
    for (name, series) in &b.series {
        row.names += 1;
        let Some(sseries) = s.series.get(name) else {
            d.push(format!("metric {name}: missing in sonde's answer"));
            continue;
        };
        let (bt, bh) = b.meta.get(name).cloned().unwrap_or_default();
        let (st, sh) = s.meta.get(name).cloned().unwrap_or_default();
        if bt != st {
            d.push(format!(
                "metric {name}: TYPE blackbox {bt:?} vs sonde {st:?}"
            ));
        }
        if bh != sh {
            row.notes.push(format!(
                "metric {name}: HELP blackbox {bh:?} vs sonde {sh:?}"
            ));
        }
        for (labels, bv) in series {
            row.series += 1;
            // sonde may add labels (blackbox's later versions did: `serialnumber`); the series
            // matches when the labels blackbox has are all there with the same values.
            let found = sseries
                .iter()
                .find(|(sl, _)| labels.iter().all(|(k, v)| sl.get(k) == Some(v)));
            let Some((_, sv)) = found else {
                d.push(format!(
                    "series {name}{}: missing in sonde's answer (sonde has {})",
                    fmt_labels(labels),
                    sseries.keys().map(fmt_labels).collect::<Vec<_>>().join(" ")
                ));
                continue;
            };
            if is_timing(name) {
                continue;
            }
            row.values += 1;
            if bv != sv && !(bv.is_nan() && sv.is_nan()) {
                d.push(format!(
                    "value {name}{}: blackbox {bv} vs sonde {sv}",
                    fmt_labels(labels)
                ));
            }
        }
    }
    row
}

fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 200 {
        s.chars().take(200).collect::<String>() + "…"
    } else {
        s.to_string()
    }
}

/// A rustls server configuration from servers.sh's leaf, so the gRPC TLS target is trusted by
/// the same `ca_file` as nginx.
fn leaf_server_config(ca_file: &str) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = Path::new(ca_file).parent().expect("CA file has a folder");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .expect("read leaf.pem")
        .collect::<Result<_, _>>()
        .expect("parse leaf.pem");
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).expect("read leaf.key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("leaf certificate and key");
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

/// `GET path` with Prometheus's scrape-timeout header, as HTTP/1.0 so neither exporter chunks
/// its answer (the shared test client sends no extra headers).
fn get_with_scrape_timeout(addr: SocketAddr, path: &str, secs: &str) -> client::Response {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nX-Prometheus-Scrape-Timeout-Seconds: {secs}\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{addr}{path}: {e}"));
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{addr}{path}: no end of headers in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{addr}{path}: bad status line in {head:?}"));
    client::Response {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

/// Whether ICMP works for blackbox here; the ICMP rows are skipped loudly when it does not.
fn icmp_works(bb: SocketAddr) -> bool {
    let r = client::get(bb, "/probe?module=icmp&target=127.0.0.1");
    matches!(r, Ok(r) if r.body.lines().any(|l| l == "probe_success 1"))
}

#[test]
#[ignore = "needs real servers and Debian's prometheus-blackbox-exporter: run tests/interop/run.sh"]
fn probe_parity_with_blackbox_exporter() {
    let sv = Servers::from_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/blackbox.yml"),
    )
    .expect("read tests/interop/blackbox.yml");
    let config = dir.path().join("blackbox.yml");
    std::fs::write(&config, template.replace("@CA_FILE@", &sv.ca)).unwrap();

    // The gRPC health servers, in-process: one h2c, one TLS with servers.sh's certificate.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // A target that answers after 2 s, for the scrape-timeout header cases.
    let slow = rt.block_on(HttpServer::start(Routes::new().at(
        "/slow",
        Reply::text(200, "slow\n").delay(Duration::from_secs(2)),
    )));
    let (grpc, grpc_tls) = rt.block_on(async {
        let g = GrpcHealthServer::start().await;
        g.set("shop.Checkout", grpc_fixture::SERVING);
        g.set("shop.Paused", grpc_fixture::NOT_SERVING);
        let t = GrpcHealthServer::start_tls(leaf_server_config(&sv.ca)).await;
        (g, t)
    });

    let (_bb_proc, bb) = start_blackbox(&config, dir.path());
    let sonde = Serve::command(SONDE)
        .arg("--config.file")
        .arg(&config)
        .start();

    let h = format!("http://{}", sv.http);
    let s = format!("https://{}", sv.https);
    let closed = free_addr().to_string(); // bound and released: nobody listens there
    let dns = sv.dns.clone();
    let g = format!("127.0.0.1:{}", grpc.port());
    let gt = format!("127.0.0.1:{}", grpc_tls.port());

    let mut cases = vec![
        // http
        case("http_2xx", format!("{h}/"), true),
        case("http_2xx", format!("{h}/missing"), false),
        case("http_2xx", format!("{h}/redirect"), true),
        case("http_2xx", format!("{h}/chain/1"), true),
        case("http_2xx", format!("{h}/loop"), false),
        case("http_2xx", format!("http://{closed}/"), false),
        case("http_2xx", sv.http.clone(), true), // no scheme: blackbox adds http://
        case("http_ip4", format!("{h}/health"), true),
        case("http_404_expected", format!("{h}/missing"), true),
        case("http_404_expected", format!("{h}/"), false),
        case("http_no_redirects", format!("{h}/redirect"), true),
        case("http_no_redirects", format!("{h}/chain/1"), true),
        case("http_no_redirects", format!("{h}/"), false),
        case("http_body_matches", format!("{h}/version"), true),
        case("http_body_matches", format!("{h}/"), false),
        case("http_body_forbidden", format!("{h}/version"), false),
        case("http_body_forbidden", format!("{h}/"), true),
        case("http_header_check", format!("{h}/health"), true),
        case("http_header_check", format!("{h}/"), false),
        case("http_post", format!("{h}/"), true),
        case("http_fail_if_not_ssl", format!("{h}/"), false),
        case("http_server_not_nginx", format!("{h}/"), false),
        case("http_body_limit", format!("{h}/version"), false),
        case("http_2xx", "http://[::1]:18080/", false), // nginx listens on 127.0.0.1 only
        case("http_2xx", "http://[::1", false),         // not a URL
        case("https_h2_required", format!("{h}/"), false),
        // https
        case("https_2xx", format!("{s}/"), true),
        case("https_2xx", format!("{s}/chain/1"), true),
        case("https_2xx", format!("{s}/missing"), false),
        case("https_http1", format!("{s}/"), true),
        case("https_h2_required", format!("{s}/health"), true),
        case("https_fail_if_ssl", format!("{s}/"), false),
        case("https_system_roots", format!("{s}/"), false),
        case("https_insecure", format!("{s}/"), true),
        case("https_wrong_server_name", format!("{s}/"), false),
        case("https_tls12_only", format!("{s}/"), true),
        Case {
            extra: Some("hostname=localhost"),
            ..case("https_2xx", format!("{s}/"), true)
        },
        // tcp
        case("tcp_connect", sv.http.clone(), true),
        case("tcp_connect", closed.clone(), false),
        case("tcp_http_dialogue", sv.http.clone(), true),
        case("tcp_dialogue_mismatch", sv.http.clone(), false),
        case("tcp_tls", sv.https.clone(), true),
        case("tcp_tls_untrusted", sv.https.clone(), false),
        case("tcp_tls_server_name", sv.https.clone(), true),
        case("tcp_connect", "127.0.0.1", false), // no port
        // dns
        case("dns_a", dns.clone(), true),
        case("dns_aaaa_tcp", dns.clone(), true),
        case("dns_mx", dns.clone(), true),
        case("dns_txt", dns.clone(), true),
        case("dns_cname", dns.clone(), true),
        case("dns_nxdomain", dns.clone(), false),
        case("dns_nxdomain_expected", dns.clone(), true),
        case("dns_answer_mismatch", dns.clone(), false),
        case("dns_no_recursion_class_in", dns.clone(), true),
        case("dns_a", closed.clone(), false),
        // grpc
        case("grpc_plain", g.clone(), true),
        case("grpc_service", g.clone(), true),
        case("grpc_not_serving", g.clone(), false),
        case("grpc_unknown_service", g.clone(), false),
        case("grpc_tls", gt.clone(), true),
        case("grpc_plain", closed.clone(), false),
        // the /probe API itself
        Case {
            module: None,
            target: Some(format!("{h}/")),
            expect_success: Some(true),
            extra: None,
        },
        Case {
            module: Some("no_such_module"),
            target: Some(format!("{h}/")),
            expect_success: None,
            extra: None,
        },
        Case {
            module: Some("http_2xx"),
            target: None,
            expect_success: None,
            extra: None,
        },
        Case {
            module: Some("http_2xx"),
            target: Some(String::new()),
            expect_success: None,
            extra: None,
        },
        Case {
            module: Some(""), // an empty module is the default one, as in blackbox
            target: Some(format!("{h}/")),
            expect_success: Some(true),
            extra: None,
        },
    ];
    if icmp_works(bb) {
        cases.push(case("icmp", "127.0.0.1", true));
        cases.push(case("icmp_ip6_only", "127.0.0.1", false));
        cases.push(case("icmp_options", "127.0.0.1", true));
    } else {
        eprintln!(
            "SKIPPED: icmp parity rows — blackbox_exporter cannot ping 127.0.0.1 here (no \
             permission for ICMP sockets?)"
        );
    }

    let mut rows = Vec::new();
    for c in &cases {
        let q = c.query();
        let b = client::get(bb, &q).unwrap_or_else(|e| panic!("blackbox {q}: {e}"));
        let s = client::get(sonde.addr(), &q).unwrap_or_else(|e| panic!("sonde {q}: {e}"));
        rows.push(compare(c, &b, &s));
    }
    // The timeout comes from X-Prometheus-Scrape-Timeout-Seconds minus the offset (0.5 s), capped
    // by the module's 5 s: 1.5 s leaves 1 s (the 2 s target fails), 4 s leaves 3.5 s (it passes).
    // Only outcomes are compared, never durations.
    for (secs, success) in [("1.5", false), ("4", true)] {
        let c = case("http_2xx", slow.url("/slow"), success);
        let q = c.query();
        let b = get_with_scrape_timeout(bb, &q, secs);
        let s = get_with_scrape_timeout(sonde.addr(), &q, secs);
        let mut row = compare(&c, &b, &s);
        row.target += &format!(" (scrape timeout {secs}s)");
        rows.push(row);
    }
    drop(rt);

    // The table.
    let w_mod = rows
        .iter()
        .map(|r| r.module.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let w_tgt = rows
        .iter()
        .map(|r| r.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!();
    println!(
        "{:<w_mod$}  {:<w_tgt$}  {:>7}  {:>5}  {:>6}  {:>6}  result",
        "module", "target", "status", "names", "series", "values"
    );
    let mut failing = 0;
    for r in &rows {
        let verdict = if r.diffs.is_empty() {
            "equal".to_string()
        } else {
            failing += 1;
            format!("{} difference(s)", r.diffs.len())
        };
        println!(
            "{:<w_mod$}  {:<w_tgt$}  {:>7}  {:>5}  {:>6}  {:>6}  {verdict}",
            r.module, r.target, r.status, r.names, r.series, r.values
        );
    }
    println!(
        "(status: HTTP status of /probe, blackbox/sonde; names, series: blackbox's metric names \
         and series looked up in sonde's answer; values: non-timing values compared)"
    );
    let total: usize = rows.iter().map(|r| r.diffs.len()).sum();
    if total > 0 {
        println!("\nDifferences (blackbox is the reference):");
        for r in rows.iter().filter(|r| !r.diffs.is_empty()) {
            println!("- module={} target={}", r.module, r.target);
            for d in &r.diffs {
                println!("    {d}");
            }
        }
    }
    let mut notes: Vec<&String> = rows.iter().flat_map(|r| &r.notes).collect();
    notes.sort();
    notes.dedup();
    if !notes.is_empty() {
        println!("\nNotes (HELP texts; not failures — they differ between blackbox versions):");
        for n in notes {
            println!("    {n}");
        }
    }
    println!(
        "\nparity: {} of {} cases equal, {total} difference(s)",
        rows.len() - failing,
        rows.len()
    );
    assert_eq!(
        total,
        0,
        "sonde's /probe differs from blackbox_exporter's in {failing} case(s); see the list above \
         (sonde's log: {})",
        sonde.dir().join("sonde.log").display()
    );
}

#[test]
fn exposition_parser_reads_both_exporters_spelling() {
    let e = parse_exposition(
        "# HELP probe_success Displays whether or not the probe was a success\n\
         # TYPE probe_success gauge\n\
         probe_success 1\n\
         probe_ssl_earliest_cert_expiry 1.79734357e+09\n\
         probe_ssl_last_chain_info{fingerprint_sha256=\"92\",issuer=\"CN=a \\\"b\\\",O=c\",subject=\"CN=x\"} 1\n\
         probe_http_duration_seconds{phase=\"tls\"} 0.005674871999999999\n",
    )
    .unwrap();
    assert_eq!(e.meta["probe_success"].0, "gauge");
    assert_eq!(
        e.meta["probe_success"].1,
        "Displays whether or not the probe was a success"
    );
    assert_eq!(
        e.series["probe_ssl_earliest_cert_expiry"][&BTreeMap::new()],
        1797343570.0
    );
    let info = e.series["probe_ssl_last_chain_info"].keys().next().unwrap();
    assert_eq!(info["issuer"], "CN=a \"b\",O=c");
    assert!(parse_exposition("probe_success\n").is_err());
    assert!(parse_exposition("a{b=\"c} 1\n").is_err());
    assert!(parse_exposition("a 1\na 2\n").is_err());
}
