//! The interop suite: the real `sonde` binary, end to end, against real third-party servers —
//! Debian's nginx (HTTP/1.1; HTTPS with HTTP/2 via ALPN and a certificate from a generated CA)
//! and dnsmasq (authoritative records for `sonde.test`), started on loopback ports by
//! `tests/interop/servers.sh`. The in-process fixtures of the other tests are written by the same
//! hands as the probes and can share their misreadings of a protocol; these servers cannot.
//!
//! Each test writes scenario files, starts `sonde serve` on a free port, waits until every
//! scenario has run once, then reads the verdicts and traces from `/api/v1/scenarios/{name}` and
//! the series from `/metrics` — what a user sees.
//!
//! Every test is ignored by default (the servers are not there): run `tests/interop/run.sh`.

mod parity;

// The IM example (scenarios/im-login-send-receive.yaml) probes the reference chat server, which
// is ours rather than a Debian package: it runs in-process here.
#[allow(dead_code)]
#[path = "../../examples/chat_server.rs"]
mod chat_server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use regex::Regex;
use serde_json::Value;
use sonde_testkit::process::{free_addr, Serve};

const SONDE: &str = env!("CARGO_BIN_EXE_sonde");

/// How long every scenario (interval 2 s) gets to complete its first run. A hang guard only.
const FIRST_RUNS: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The servers, as servers.sh describes them.

/// What `servers.sh` wrote to its env file.
struct Servers {
    /// `127.0.0.1:18080`, nginx over plain HTTP.
    http: String,
    /// `127.0.0.1:18443`, nginx over TLS (h2 and http/1.1).
    https: String,
    /// `127.0.0.1:15353`, dnsmasq (udp and tcp).
    dns: String,
    /// The generated CA that signed nginx's certificate.
    ca: String,
    leaf_not_after: i64,
    ca_not_after: i64,
}

impl Servers {
    fn from_env() -> Servers {
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| {
                panic!(
                    "{k} is not set: the interop tests need the real nginx and dnsmasq — run \
                     `bash tests/interop/run.sh` (or start `tests/interop/servers.sh DIR` and \
                     export the variables of DIR/env)"
                )
            })
        };
        let int = |k: &str| -> i64 {
            var(k)
                .parse()
                .unwrap_or_else(|e| panic!("{k}={:?} is not a Unix time: {e}", var(k)))
        };
        let s = Servers {
            http: var("SONDE_INTEROP_HTTP"),
            https: var("SONDE_INTEROP_HTTPS"),
            dns: var("SONDE_INTEROP_DNS"),
            ca: var("SONDE_INTEROP_CA"),
            leaf_not_after: int("SONDE_INTEROP_LEAF_NOT_AFTER"),
            ca_not_after: int("SONDE_INTEROP_CA_NOT_AFTER"),
        };
        assert!(
            Path::new(&s.ca).is_file(),
            "SONDE_INTEROP_CA={} is not a file",
            s.ca
        );
        s
    }

    /// The earliest expiry of the chain the probes trust: nginx presents only the leaf, but the
    /// expected value is written as the contract states it (earliest in the chain).
    fn chain_not_after(&self) -> i64 {
        self.leaf_not_after.min(self.ca_not_after)
    }

    fn https_port(&self) -> &str {
        port(&self.https)
    }

    fn http_port(&self) -> &str {
        port(&self.http)
    }
}

fn port(addr: &str) -> &str {
    addr.rsplit_once(':')
        .unwrap_or_else(|| panic!("{addr:?} is not host:port"))
        .1
}

// ---------------------------------------------------------------------------------------------
// A `sonde serve` process.

/// `sonde serve` with `yaml` as its only scenario file, on a free port, ready.
fn serve_yaml(yaml: &str) -> Serve {
    Serve::command(SONDE)
        .config_yaml("scenarios.yaml", yaml)
        .start()
}

// ---------------------------------------------------------------------------------------------
// Reading verdicts.

/// The scenario's document, by name, with a clear failure if it is not there.
fn doc<'a>(all: &'a BTreeMap<String, Value>, name: &str) -> &'a Value {
    all.get(name).unwrap_or_else(|| {
        panic!(
            "no scenario {name:?}; have {:?}",
            all.keys().collect::<Vec<_>>()
        )
    })
}

/// The first (only) step of the scenario's last run.
fn step<'a>(all: &'a BTreeMap<String, Value>, name: &str) -> &'a Value {
    &doc(all, name)["last_run"]["steps"][0]
}

fn facts<'a>(all: &'a BTreeMap<String, Value>, name: &str) -> &'a Value {
    &step(all, name)["facts"]
}

#[track_caller]
fn assert_passing(all: &BTreeMap<String, Value>, name: &str) {
    let d = doc(all, name);
    assert_eq!(
        d["status"], "passing",
        "{name} should pass; its last run: {:#}",
        d["last_run"]
    );
    assert_eq!(d["last_run"]["result"], "success", "{name}");
}

/// The scenario failed with `reason`, and its message contains every one of `says`.
#[track_caller]
fn assert_failing(all: &BTreeMap<String, Value>, name: &str, reason: &str, says: &[&str]) {
    let d = doc(all, name);
    assert_eq!(
        d["status"], "failing",
        "{name} should fail; its last run: {:#}",
        d["last_run"]
    );
    let failure = &step(all, name)["failure"];
    assert_eq!(failure["reason"], reason, "{name}: {failure}");
    let message = failure["message"].as_str().unwrap_or_default();
    for s in says {
        assert!(
            message.contains(s),
            "{name}: message {message:?} should contain {s:?}"
        );
    }
    // The summary repeats the failure, so `/api/v1/scenarios` alone tells what went wrong.
    assert_eq!(
        d["last_run"]["failed_step"],
        step(all, name)["name"],
        "{name}"
    );
}

/// The events of a step's trace, one string each.
fn events(all: &BTreeMap<String, Value>, name: &str) -> Vec<String> {
    step(all, name)["events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn assert_event(all: &BTreeMap<String, Value>, name: &str, contains: &str) {
    let evs = events(all, name);
    assert!(
        evs.iter().any(|e| e.contains(contains)),
        "{name}: no event contains {contains:?}; events: {evs:#?}"
    );
}

/// The timed phases of a step, by name.
fn phases(all: &BTreeMap<String, Value>, name: &str) -> Vec<String> {
    step(all, name)["timings"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The earliest `not_after` of a TLS facts block's chain.
fn earliest_not_after(tls: &Value) -> i64 {
    tls["chain"]
        .as_array()
        .unwrap_or_else(|| panic!("no chain in {tls}"))
        .iter()
        .map(|c| c["not_after"].as_i64().unwrap())
        .min()
        .unwrap_or_else(|| panic!("empty chain in {tls}"))
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
#[ignore = "needs real servers: run tests/interop/run.sh"]
fn http_against_nginx() {
    let sv = Servers::from_env();
    let (http, dns, port) = (&sv.http, &sv.dns, sv.http_port());
    let s = serve_yaml(&format!(
        r#"
scenarios:
  - scenario: http-ok
    interval: 2s
    http: {{url: "http://{http}/"}}
    expect:
      status: 200
      headers: {{Server: {{matches: "^nginx/"}}, Content-Type: text/plain}}
      body: {{contains: "hello from nginx", not_contains: error}}
  - scenario: http-json
    interval: 2s
    http:
      url: "http://{http}/health"
      fail_if_body_not_matches_regexp: ['"status":"ok"']
      fail_if_header_not_matches: [{{header: Content-Type, regexp: "^application/json"}}]
  - scenario: http-body-mismatch
    interval: 2s
    http: {{url: "http://{http}/"}}
    expect: {{body: {{contains: goodbye}}}}
  - scenario: http-404
    interval: 2s
    http: {{url: "http://{http}/missing"}}
  - scenario: http-404-expected
    interval: 2s
    http: {{url: "http://{http}/missing"}}
    expect: {{status: 404, body: {{contains: "not here"}}}}
  - scenario: http-redirect
    interval: 2s
    http: {{url: "http://{http}/redirect"}}
    expect: {{status: 200, body: {{contains: "hello from nginx"}}}}
  - scenario: http-redirect-not-followed
    interval: 2s
    http: {{url: "http://{http}/redirect", follow_redirects: false}}
    expect: {{status: 302, headers: {{Location: {{matches: "/$"}}}}}}
  - scenario: http-redirect-loop
    interval: 2s
    http: {{url: "http://{http}/loop", max_redirects: 3}}
  - scenario: http-by-name
    interval: 2s
    resolver: "{dns}"
    http: {{url: "http://web.sonde.test:{port}/"}}
  - scenario: http-no-ipv6-address
    interval: 2s
    resolver: "{dns}"
    http:
      url: "http://v4only.sonde.test:{port}/"
      preferred_ip_protocol: ip6
      ip_protocol_fallback: false
"#
    ));
    let all = s.wait_all_ran(FIRST_RUNS);

    assert_passing(&all, "http-ok");
    let f = facts(&all, "http-ok");
    assert_eq!(f["status"], 200);
    assert_eq!(f["version"], "HTTP/1.1");
    assert_eq!(f["body_bytes"], "hello from nginx\n".len());
    assert_eq!(f["is_tls"], false);
    assert_eq!(step(&all, "http-ok")["remote_addr"], http.as_str());
    for p in ["resolve", "connect", "processing", "transfer"] {
        assert!(
            phases(&all, "http-ok").iter().any(|x| x == p),
            "http-ok: no {p} phase in {:?}",
            phases(&all, "http-ok")
        );
    }

    assert_passing(&all, "http-json");
    assert_failing(&all, "http-body-mismatch", "body", &[]);
    assert_eq!(
        facts(&all, "http-body-mismatch")["failed_due_to_regex"],
        true
    );

    assert_failing(&all, "http-404", "status", &["status 404"]);
    assert_passing(&all, "http-404-expected");

    assert_passing(&all, "http-redirect");
    let f = facts(&all, "http-redirect");
    assert_eq!(f["redirects"], 1);
    assert_eq!(f["final_url"], format!("http://{http}/"));
    assert_event(&all, "http-redirect", "following 302 redirect");
    assert_passing(&all, "http-redirect-not-followed");
    assert_eq!(facts(&all, "http-redirect-not-followed")["redirects"], 0);

    assert_failing(&all, "http-redirect-loop", "protocol", &["redirects"]);

    // A name through the real DNS server: web.sonde.test has ::1 and 127.0.0.1, nginx listens
    // on 127.0.0.1 only, so the default (`auto`, IPv6 first) must fall through to IPv4.
    assert_passing(&all, "http-by-name");
    assert_eq!(
        step(&all, "http-by-name")["remote_addr"],
        format!("127.0.0.1:{port}")
    );
    assert_event(&all, "http-by-name", "resolved web.sonde.test");
    assert_failing(&all, "http-no-ipv6-address", "dns", &["v4only.sonde.test"]);
}

#[test]
#[ignore = "needs real servers: run tests/interop/run.sh"]
fn https_against_nginx() {
    let sv = Servers::from_env();
    let (https, dns, ca, port) = (&sv.https, &sv.dns, &sv.ca, sv.https_port());
    let s = serve_yaml(&format!(
        r#"
scenarios:
  - scenario: https-h2
    interval: 2s
    http: {{url: "https://{https}/health", tls_config: {{ca_file: "{ca}"}}}}
    expect: {{status: 200, body: {{contains: '"ok"'}}, cert_expires_in: {{gt: 7d}}}}
  - scenario: https-h1
    interval: 2s
    http: {{url: "https://{https}/", enable_http2: false, tls_config: {{ca_file: "{ca}"}}}}
  - scenario: https-h2-required
    interval: 2s
    http:
      url: "https://{https}/"
      valid_http_versions: [HTTP/2.0]
      fail_if_not_ssl: true
      tls_config: {{ca_file: "{ca}"}}
  - scenario: https-unknown-ca
    interval: 2s
    http: {{url: "https://{https}/"}}
  - scenario: https-expires-too-soon
    interval: 2s
    http: {{url: "https://{https}/", tls_config: {{ca_file: "{ca}"}}}}
    expect: {{cert_expires_in: {{gt: 30d}}}}
  - scenario: https-by-name
    interval: 2s
    resolver: "{dns}"
    http:
      url: "https://web.sonde.test:{port}/"
      tls_config: {{ca_file: "{ca}", server_name: localhost}}
  - scenario: https-wrong-name
    interval: 2s
    resolver: "{dns}"
    http: {{url: "https://web.sonde.test:{port}/", tls_config: {{ca_file: "{ca}"}}}}
"#
    ));
    let all = s.wait_all_ran(FIRST_RUNS);
    let not_after = sv.chain_not_after();

    assert_passing(&all, "https-h2");
    let f = facts(&all, "https-h2");
    assert_eq!(f["version"], "HTTP/2.0", "ALPN should pick h2: {f:#}");
    assert_eq!(f["is_tls"], true);
    let tls = &f["tls"];
    assert_eq!(tls["alpn"], "h2");
    assert_eq!(tls["verified"], true);
    assert_eq!(tls["version"], "TLS 1.3", "nginx offers TLS 1.2 and 1.3");
    assert!(!tls["cipher"].as_str().unwrap_or_default().is_empty());
    assert_eq!(tls["chain"][0]["subject"], "CN=localhost");
    assert_eq!(
        tls["chain"][0]["issuer"],
        "CN=sonde interop CA, O=sonde tests"
    );
    assert_eq!(earliest_not_after(tls), not_after);
    assert!(phases(&all, "https-h2").iter().any(|p| p == "tls"));
    assert_event(&all, "https-h2", "ALPN h2");

    assert_passing(&all, "https-h1");
    let f = facts(&all, "https-h1");
    assert_eq!(f["version"], "HTTP/1.1");
    assert_eq!(f["tls"]["alpn"], "http/1.1");

    assert_passing(&all, "https-h2-required");

    assert_failing(&all, "https-unknown-ca", "tls", &["unknown authority"]);

    let expiry = sonde_probes::tls::fmt_unix(not_after);
    assert_failing(
        &all,
        "https-expires-too-soon",
        "assertion",
        &[
            "certificate chain expires in 19d",
            &expiry,
            "expected expiry in > 30d",
        ],
    );

    assert_passing(&all, "https-by-name");
    assert_eq!(
        facts(&all, "https-by-name")["tls"]["server_name"],
        "localhost"
    );
    assert_failing(
        &all,
        "https-wrong-name",
        "tls",
        &["not valid for name", "web.sonde.test"],
    );
}

#[test]
#[ignore = "needs real servers: run tests/interop/run.sh"]
fn dns_against_dnsmasq() {
    let sv = Servers::from_env();
    let dns = &sv.dns;
    // (scenario suffix, name, type, regex every answer record must match)
    let lookups = [
        (
            "a",
            "web.sonde.test",
            "A",
            r"^web\.sonde\.test\.\s+\d+\s+IN\s+A\s+127\.0\.0\.1$",
        ),
        (
            "aaaa",
            "web.sonde.test",
            "AAAA",
            r"^web\.sonde\.test\.\s+\d+\s+IN\s+AAAA\s+::1$",
        ),
        (
            "mx",
            "sonde.test",
            "MX",
            r"^sonde\.test\.\s+\d+\s+IN\s+MX\s+10 mail\.sonde\.test\.$",
        ),
        (
            "txt",
            "sonde.test",
            "TXT",
            r#"^sonde\.test\.\s+\d+\s+IN\s+TXT\s+"v=spf1 -all"$"#,
        ),
        (
            "cname",
            "www.sonde.test",
            "CNAME",
            r"^www\.sonde\.test\.\s+\d+\s+IN\s+CNAME\s+web\.sonde\.test\.$",
        ),
    ];
    let mut yaml = String::from("scenarios:\n");
    for transport in ["udp", "tcp"] {
        for (suffix, name, qtype, re) in &lookups {
            yaml += &format!(
                r#"  - scenario: dns-{transport}-{suffix}
    interval: 2s
    dns:
      server: "{dns}"
      query_name: {name}
      query_type: {qtype}
      transport_protocol: {transport}
      validate_answer_rrs:
        fail_if_not_matches_regexp: ['{re}']
        fail_if_none_matches_regexp: ['{re}']
"#
            );
        }
        yaml += &format!(
            r#"  - scenario: dns-{transport}-nxdomain
    interval: 2s
    dns: {{server: "{dns}", query_name: nope.sonde.test, transport_protocol: {transport}}}
  - scenario: dns-{transport}-nxdomain-expected
    interval: 2s
    dns:
      server: "{dns}"
      query_name: nope.sonde.test
      transport_protocol: {transport}
      valid_rcodes: [NXDOMAIN]
"#
        );
    }
    yaml += &format!(
        r#"  - scenario: dns-mx-additional
    interval: 2s
    dns:
      server: "{dns}"
      query_name: sonde.test
      query_type: MX
      validate_additional_rrs:
        fail_if_none_matches_regexp: ['^mail\.sonde\.test\.\s+\d+\s+IN\s+A\s+127\.0\.0\.2$']
  - scenario: dns-wrong-address
    interval: 2s
    dns:
      server: "{dns}"
      query_name: web.sonde.test
      validate_answer_rrs: {{fail_if_not_matches_regexp: ['127\.0\.0\.9$']}}
  - scenario: dns-forbidden-address
    interval: 2s
    dns:
      server: "{dns}"
      query_name: web.sonde.test
      validate_answer_rrs: {{fail_if_matches_regexp: ['IN\s+A\s+127\.']}}
"#
    );
    let s = serve_yaml(&yaml);
    let all = s.wait_all_ran(FIRST_RUNS);

    for transport in ["udp", "tcp"] {
        for (suffix, _, qtype, re) in &lookups {
            let name = format!("dns-{transport}-{suffix}");
            assert_passing(&all, &name);
            let f = facts(&all, &name);
            assert_eq!(f["rcode"], "NOERROR", "{name}");
            // Independently of the probe's own check: exactly one answer, and it matches.
            let answer: Vec<&str> = f["answer"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            assert_eq!(answer.len(), 1, "{name} ({qtype}): {answer:?}");
            assert!(
                Regex::new(re).unwrap().is_match(answer[0]),
                "{name}: {:?} does not match {re}",
                answer[0]
            );
            assert_event(&all, &name, &format!("query sent to {transport} {dns}"));
        }
        let nx = format!("dns-{transport}-nxdomain");
        assert_failing(&all, &nx, "status", &["NXDOMAIN"]);
        let nx_ok = format!("dns-{transport}-nxdomain-expected");
        assert_passing(&all, &nx_ok);
        assert_eq!(facts(&all, &nx_ok)["rcode"], "NXDOMAIN");
        assert_eq!(facts(&all, &nx_ok)["answer"], serde_json::json!([]));
    }
    assert_passing(&all, "dns-mx-additional");
    assert_failing(&all, "dns-wrong-address", "assertion", &[]);
    assert_failing(&all, "dns-forbidden-address", "assertion", &[]);
}

#[test]
#[ignore = "needs real servers: run tests/interop/run.sh"]
fn tcp_dialogue_against_nginx() {
    let sv = Servers::from_env();
    let (http, dns, ca, tls_port) = (&sv.http, &sv.dns, &sv.ca, sv.https_port());
    let closed = free_addr();
    // The probe ends every `send` with "\n": "HEAD / HTTP/1.0\r\n\r" + "\n" is a request.
    let s = serve_yaml(&format!(
        r#"
scenarios:
  - scenario: tcp-http
    interval: 2s
    tcp:
      target: "{http}"
      query_response:
        - send: "HEAD / HTTP/1.0\r\n\r"
        - expect: "^HTTP/1\\.1 200"
        - expect: "^Server: nginx"
  - scenario: tcp-wrong-answer
    interval: 2s
    tcp:
      target: "{http}"
      query_response:
        - send: "HEAD / HTTP/1.0\r\n\r"
        - expect: "^HTTP/1\\.1 500"
  - scenario: tcp-tls
    interval: 2s
    resolver: "{dns}"
    tcp:
      target: "localhost:{tls_port}"
      tls: true
      tls_config: {{ca_file: "{ca}"}}
      query_response:
        - send: "HEAD / HTTP/1.0\r\n\r"
        - expect: "^HTTP/1\\.1 200"
    expect: {{cert_expires_in: {{gt: 7d}}}}
  - scenario: tcp-refused
    interval: 2s
    tcp: {{target: "{closed}"}}
"#
    ));
    let all = s.wait_all_ran(FIRST_RUNS);

    assert_passing(&all, "tcp-http");
    let transcript = &facts(&all, "tcp-http")["transcript"];
    assert_eq!(transcript[0], r"> HEAD / HTTP/1.0\r\n\r");
    assert_eq!(transcript[1], "< HTTP/1.1 200 OK");
    assert_failing(
        &all,
        "tcp-wrong-answer",
        "assertion",
        &["no line matched", "HTTP/1\\.1 500"],
    );

    assert_passing(&all, "tcp-tls");
    let tls = &facts(&all, "tcp-tls")["tls"];
    assert_eq!(tls["verified"], true);
    assert_eq!(tls["server_name"], "localhost");
    assert_eq!(earliest_not_after(tls), sv.chain_not_after());
    assert_eq!(facts(&all, "tcp-tls")["transcript"][1], "< HTTP/1.1 200 OK");

    assert_failing(&all, "tcp-refused", "connect", &[]);
}

#[test]
#[ignore = "needs real servers: run tests/interop/run.sh"]
fn tls_probe_against_nginx() {
    let sv = Servers::from_env();
    let (https, dns, ca, port) = (&sv.https, &sv.dns, &sv.ca, sv.https_port());
    let s = serve_yaml(&format!(
        r#"
scenarios:
  - scenario: tls-ok
    interval: 2s
    tls: {{target: "{https}", tls_config: {{ca_file: "{ca}"}}}}
    expect: {{cert_expires_in: {{gt: 7d, lt: 30d}}}}
  - scenario: tls-by-name
    interval: 2s
    resolver: "{dns}"
    tls: {{target: "localhost:{port}", tls_config: {{ca_file: "{ca}"}}}}
  - scenario: tls-max-12
    interval: 2s
    tls: {{target: "{https}", tls_config: {{ca_file: "{ca}", max_version: TLS12}}}}
  - scenario: tls-min-13
    interval: 2s
    tls: {{target: "{https}", tls_config: {{ca_file: "{ca}", min_version: TLS13}}}}
  - scenario: tls-unknown-ca
    interval: 2s
    tls: {{target: "{https}"}}
  - scenario: tls-wrong-name
    interval: 2s
    tls: {{target: "{https}", tls_config: {{ca_file: "{ca}", server_name: wrong.sonde.test}}}}
  - scenario: tls-expires-too-soon
    interval: 2s
    tls: {{target: "{https}", tls_config: {{ca_file: "{ca}"}}}}
    expect: {{cert_expires_in: {{gt: 30d}}}}
"#
    ));
    let all = s.wait_all_ran(FIRST_RUNS);

    assert_passing(&all, "tls-ok");
    let session = &facts(&all, "tls-ok")["session"];
    assert_eq!(session["verified"], true);
    assert_eq!(session["version"], "TLS 1.3");
    assert_eq!(
        session["alpn"],
        Value::Null,
        "a plain TLS probe offers no ALPN"
    );
    let sans = &session["chain"][0]["subject_alt_names"];
    assert_eq!(*sans, serde_json::json!(["localhost", "127.0.0.1"]));
    assert_eq!(earliest_not_after(session), sv.chain_not_after());
    assert!(phases(&all, "tls-ok").iter().any(|p| p == "tls"));

    assert_passing(&all, "tls-by-name");
    assert_eq!(
        facts(&all, "tls-by-name")["session"]["server_name"],
        "localhost"
    );
    assert_passing(&all, "tls-max-12");
    assert_eq!(facts(&all, "tls-max-12")["session"]["version"], "TLS 1.2");
    assert_passing(&all, "tls-min-13");
    assert_eq!(facts(&all, "tls-min-13")["session"]["version"], "TLS 1.3");

    assert_failing(&all, "tls-unknown-ca", "tls", &["unknown authority"]);
    assert_failing(
        &all,
        "tls-wrong-name",
        "tls",
        &["not valid for name", "wrong.sonde.test"],
    );
    assert_failing(
        &all,
        "tls-expires-too-soon",
        "assertion",
        &["expected expiry in > 30d"],
    );
}

#[test]
#[ignore = "needs real servers: run tests/interop/run.sh"]
fn icmp_echo_to_loopback() {
    let _ = Servers::from_env(); // same preconditions as the rest of the suite
    if let Err(why) = sonde_probes::icmp::permission_check() {
        eprintln!("SKIPPED: icmp_echo_to_loopback — no permission to send ICMP echo here: {why}");
        return;
    }
    let s = serve_yaml(
        r#"
scenarios:
  - scenario: ping-loopback
    interval: 2s
    icmp: {target: 127.0.0.1, payload_size: 100, ttl: 64}
"#,
    );
    let all = s.wait_all_ran(FIRST_RUNS);
    assert_passing(&all, "ping-loopback");
    assert_eq!(facts(&all, "ping-loopback")["reply_hop_limit"], 64);
    assert!(phases(&all, "ping-loopback").iter().any(|p| p == "rtt"));
    assert_event(&all, "ping-loopback", "echo reply from 127.0.0.1");
}

#[test]
#[ignore = "needs real servers: run tests/interop/run.sh"]
fn metrics_pass_promtool_and_carry_the_families() {
    let sv = Servers::from_env();
    let (http, https, dns, ca) = (&sv.http, &sv.https, &sv.dns, &sv.ca);
    let s = serve_yaml(&format!(
        r#"
scenarios:
  - scenario: m-https
    interval: 2s
    labels: {{team: web}}
    http: {{url: "https://{https}/", tls_config: {{ca_file: "{ca}"}}}}
  - scenario: m-404
    interval: 2s
    http: {{url: "http://{http}/missing"}}
  - scenario: m-dns
    interval: 2s
    dns: {{server: "{dns}", query_name: web.sonde.test}}
  - scenario: m-tls
    interval: 2s
    tls: {{target: "{https}", tls_config: {{ca_file: "{ca}"}}}}
"#
    ));
    let all = s.wait_all_ran(FIRST_RUNS);
    assert_passing(&all, "m-https");
    assert_failing(&all, "m-404", "status", &["status 404"]);

    // What `curl …/metrics | promtool check metrics` sees (no Accept header: classic text).
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    promtool_check(&m.body);

    for line in [
        r#"^sonde_scenario_success\{scenario="m-https",team="web"\} 1$"#,
        r#"^sonde_scenario_success\{scenario="m-404"\} 0$"#,
        r#"^sonde_step_failures_total\{scenario="m-404",step="http",reason="status"\} [1-9]\d*$"#,
        r#"^sonde_step_phase_seconds\{scenario="m-https",team="web",step="http",phase="tls"\} \d"#,
        r#"^sonde_step_phase_seconds\{scenario="m-dns",step="dns",phase="connect"\} \d"#,
        r#"^sonde_scenario_runs_total\{scenario="m-dns",result="success"\} [1-9]\d*$"#,
        r#"^sonde_step_duration_seconds_bucket\{scenario="m-tls",step="tls",le="\+Inf"\} [1-9]\d*$"#,
    ] {
        let re = Regex::new(line).unwrap();
        assert!(
            m.body.lines().any(|l| re.is_match(l)),
            "no line matching {line} in:\n{}",
            m.body
        );
    }
    let not_after = sv.chain_not_after();
    for (scenario, labels) in [
        ("m-https", r#",team="web",step="http""#),
        ("m-tls", r#",step="tls""#),
    ] {
        let want = format!(
            r#"sonde_tls_cert_not_after_seconds{{scenario="{scenario}"{labels}}} {not_after}"#
        );
        assert!(
            m.body.lines().any(|l| l == want),
            "missing {want:?} in:\n{}",
            m.body
        );
    }

    // Prometheus asks for OpenMetrics and gets it, the same series in that format.
    let om = get_with_accept(
        s.addr(),
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    );
    assert!(
        om.starts_with("HTTP/1.1 200"),
        "OpenMetrics request failed: {om}"
    );
    assert!(
        om.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"), "OpenMetrics must end with # EOF");
    assert!(om.contains("# TYPE sonde_scenario_runs counter\n"));
}

/// `promtool check metrics` on `body`: exit 0 and not a word of output (it prints lint problems
/// such as missing help texts or counters without `_total`).
fn promtool_check(body: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install Debian's `prometheus` package (run.sh does)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.is_empty(),
        "promtool check metrics: {} — {said}\n/metrics was:\n{body}",
        out.status
    );
}

/// A raw GET with an Accept header (the test kit's client sends none); returns the whole
/// response, head and body.
fn get_with_accept(addr: SocketAddr, path: &str, accept: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    // /metrics streams its body, so it comes chunked: give back the head and the plain body.
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        return raw;
    };
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return raw;
    }
    let (mut rest, mut plain) = (body, String::new());
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        plain.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    format!("{head}\r\n\r\n{plain}")
}

#[test]
#[ignore = "needs real servers: run tests/interop/run.sh"]
fn shipped_examples_pass_against_real_servers() {
    let sv = Servers::from_env();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rt = tokio::runtime::Runtime::new().expect("a runtime for the chat server");
    let chat = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut chat = chat_server::start(listener, chat_server::ChatOptions::default());
        chat.serve_tcp(tcp);
        chat
    });
    let s = Serve::command(SONDE)
        .config("scenarios")
        .config("examples/sonde.yaml")
        .current_dir(root)
        // The shipped files default to sonde's demo targets; here they probe the real servers.
        .env("SONDE_EXAMPLE_CA_FILE", &sv.ca)
        .env("SONDE_EXAMPLE_HTTP", &sv.http)
        .env("SONDE_EXAMPLE_HTTPS", &sv.https)
        .env("SONDE_EXAMPLE_DNS", &sv.dns)
        .env("SONDE_IM_URL", chat.url())
        .env("SONDE_IM_TCP", chat.tcp_addr().unwrap().to_string())
        .start();
    // The examples use realistic intervals: each gets its interval (its first run lands at a
    // name-derived offset within it) plus slack.
    let list = s.get("/api/v1/scenarios").json();
    let longest = list["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sc| {
            humantime::parse_duration(sc["interval"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("interval of {}: {e}", sc["name"]))
        })
        .max()
        .expect("the shipped examples define no scenario");
    let all = s.wait_all_ran(longest + Duration::from_secs(15));

    let icmp_allowed = sonde_probes::icmp::permission_check();
    let mut kinds = std::collections::BTreeSet::new();
    let mut files = std::collections::BTreeSet::new();
    for (name, d) in &all {
        let steps: Vec<&str> = d["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| st["kind"].as_str().unwrap())
            .collect();
        kinds.extend(steps.iter().map(|k| k.to_string()));
        files.insert(
            d["defined_at"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_string(),
        );
        if let (true, Err(why)) = (steps.contains(&"icmp"), &icmp_allowed) {
            eprintln!(
                "SKIPPED: shipped example {name} (icmp) not asserted — no ICMP permission: {why}"
            );
            continue;
        }
        assert_eq!(
            d["status"],
            "passing",
            "shipped example {name} fails against the real servers: step {}: {}\nlast run: {:#}",
            d["last_run"]["failed_step"],
            d["last_run"]["steps"]
                .as_array()
                .and_then(|s| s.iter().find_map(|st| st["failure"].as_object()))
                .map(|f| format!("{f:?}"))
                .unwrap_or_default(),
            d["last_run"]
        );
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "dns",
            "http",
            "icmp",
            "tcp",
            // The IM examples' sessions were set up (ws.connect, tcp.connect) by an earlier
            // run; their last runs hold the steps of each interval.
            "tcp.expect",
            "tcp.send",
            "tls",
            "ws.expect",
            "ws.send"
        ],
        "the shipped examples should cover every probe kind"
    );
    let expected_files: Vec<String> = [
        "dns",
        "http",
        "https",
        "icmp",
        "tcp",
        "tls",
        "im-login-send-receive",
        "im-tcp-protobuf",
    ]
    .iter()
    .map(|k| format!("scenarios/{k}.yaml"))
    .chain(["examples/sonde.yaml".to_string()])
    .collect();
    for f in &expected_files {
        assert!(files.contains(f), "no scenario from {f}; from: {files:?}");
    }
}
