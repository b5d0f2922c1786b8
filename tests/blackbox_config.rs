//! Loading blackbox_exporter configuration files: every option of 0.23–0.28 sonde honours is
//! accepted, every option it cannot honour yet is refused by name, unknown keys and bad values
//! are located errors, and blackbox files mix with scenario files.

use std::path::{Path, PathBuf};

use sonde::config::blackbox::module::{Prober, Spec};
use sonde::config::{load_all, LoadOptions};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn errors(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "blackbox.yml", text);
    match load_all(&[p], &LoadOptions::default()) {
        Ok(_) => vec![],
        Err(e) => e
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect(),
    }
}

#[test]
fn every_supported_option_loads() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "body.json", "{\"q\": 1}");
    write(dir.path(), "token", "t0ken\n");
    write(dir.path(), "pw", "hunter2\n");
    let ca = sonde_testkit::pki::Ca::new("cfg test");
    let leaf = ca.leaf(&["client"], time::Duration::days(5), &[]);
    let yaml = format!(
        r#"modules:
  http_all:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [200, 204]
      valid_http_versions: ["HTTP/1.1", "HTTP/2.0"]
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      skip_resolve_phase_with_proxy: true
      method: POST
      headers: {{Content-Type: application/json, Host: example.test}}
      body_file: body.json
      compression: identity
      follow_redirects: false
      enable_http2: false
      fail_if_ssl: false
      fail_if_not_ssl: false
      fail_if_body_matches_regexp: ["error"]
      fail_if_body_not_matches_regexp: ["ok"]
      fail_if_header_matches: [{{header: X-Bad, regexp: "yes", allow_missing: true}}]
      fail_if_header_not_matches: [{{header: Content-Type, regexp: "json"}}]
      body_size_limit: 1MiB
      basic_auth: {{username: probe, password_file: pw}}
      proxy_url: "http://127.0.0.1:3128"
      no_proxy: "localhost,.internal"
      tls_config:
        ca_file: {ca}
        cert_file: {cert}
        key_file: {key}
        server_name: example.test
        insecure_skip_verify: false
        min_version: TLS12
        max_version: TLS13
  http_bearer:
    prober: http
    http:
      bearer_token_file: token
      no_follow_redirects: true
      compression: br
  http_authz:
    prober: http
    http:
      authorization: {{type: Token, credentials: abc}}
      http_headers:
        X-Multi: {{values: [a, b]}}
        X-Secret: {{secrets: [hidden], files: [token]}}
  http_userfile:
    prober: http
    http:
      basic_auth: {{username_file: token, password: pw}}
  tcp_all:
    prober: tcp
    tcp:
      preferred_ip_protocol: ip6
      ip_protocol_fallback: true
      tls: true
      tls_config: {{insecure_skip_verify: true}}
      query_response:
        - expect: "^220"
        - send: "EHLO x"
        - expect_bytes: "250"
        - send: "STARTTLS"
          starttls: true
  icmp_all:
    prober: icmp
    icmp:
      preferred_ip_protocol: ip4
      source_ip_address: 127.0.0.1
      payload_size: 56
      dont_fragment: true
      ttl: 5
  dns_all:
    prober: dns
    dns:
      query_name: example.com
      query_type: MX
      query_class: CH
      transport_protocol: tcp
      recursion_desired: false
      valid_rcodes: [NOERROR, NXDOMAIN]
      validate_answer_rrs:
        fail_if_matches_regexp: [".*127.0.0.1"]
        fail_if_all_match_regexp: [".*"]
        fail_if_not_matches_regexp: ["example"]
        fail_if_none_matches_regexp: ["mail"]
      validate_authority_rrs: {{fail_if_matches_regexp: ["x"]}}
      validate_additional_rrs: {{fail_if_none_matches_regexp: ["y"]}}
  grpc_all:
    prober: grpc
    grpc:
      service: checkout
      tls: true
      tls_config: {{insecure_skip_verify: true}}
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"#,
        ca = ca.ca_file.display(),
        cert = leaf.cert_file.display(),
        key = leaf.key_file.display()
    );
    let p = write(dir.path(), "blackbox.yml", &yaml);
    let loaded = load_all(&[p], &LoadOptions::default()).unwrap_or_else(|e| panic!("{e:#?}"));
    let m = loaded.modules.expect("modules");
    assert_eq!(m.len(), 8);
    let http = &m["http_all"];
    assert_eq!(http.prober, Prober::Http);
    assert_eq!(http.timeout, Some(std::time::Duration::from_secs(5)));
    let Spec::Http(h) = &http.spec else { panic!() };
    assert_eq!(h.req.method, http::Method::POST);
    assert_eq!(&h.req.body[..], b"{\"q\": 1}");
    assert!(!h.req.follow_redirects);
    assert_eq!(h.req.body_size_limit, Some(1 << 20));
    assert_eq!(h.req.checks.headers.len(), 2);
    assert!(
        matches!(&h.req.auth, Some(sonde_probes::http::Auth::Basic { password, .. }) if password == "hunter2")
    );
    assert_eq!(h.req.checks.decompress, None, "identity decodes nothing");
    assert_eq!(h.req.headers["accept-encoding"], "identity");
    let Spec::Http(b) = &m["http_bearer"].spec else {
        panic!()
    };
    assert!(matches!(&b.req.auth, Some(sonde_probes::http::Auth::Bearer(t)) if t == "t0ken"));
    assert!(!b.req.follow_redirects, "no_follow_redirects still works");
    assert_eq!(
        b.req.checks.decompress,
        Some(sonde_probes::http::ContentCoding::Br)
    );
    let Spec::Http(a) = &m["http_authz"].spec else {
        panic!()
    };
    assert_eq!(a.req.headers["authorization"], "Token abc");
    let multi: Vec<_> = a.req.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    let secret: Vec<_> = a.req.headers.get_all("x-secret").iter().collect();
    assert_eq!(secret, ["hidden", "t0ken"]);
    assert!(secret.iter().all(|v| v.is_sensitive()));
    assert!(
        !m["http_authz"].shown.to_string().contains("hidden"),
        "secrets are redacted in the shown module"
    );
    let Spec::Http(u) = &m["http_userfile"].spec else {
        panic!()
    };
    assert!(
        matches!(&u.req.auth, Some(sonde_probes::http::Auth::Basic { username, .. }) if username == "t0ken")
    );
    let Spec::Tcp(t) = &m["tcp_all"].spec else {
        panic!()
    };
    assert_eq!(t.req.dialogue.len(), 5);
    let Spec::Dns(d) = &m["dns_all"].spec else {
        panic!()
    };
    assert!(!d.recursion_desired);
    assert_eq!(d.checks.valid_rcodes.len(), 2);
    let Spec::Icmp(i) = &m["icmp_all"].spec else {
        panic!()
    };
    assert_eq!(
        (i.payload_size, i.ttl, i.dont_fragment),
        (56, Some(5), true)
    );
    // The module as shown by debug=true hides the basic_auth password file's content? It never
    // had it: the file name is shown, the secret is not read into the view.
    assert!(!http.shown.to_string().contains("hunter2"));
}

#[test]
fn defaults_follow_blackbox() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "b.yml",
        "modules:\n  h:\n    prober: http\n  d:\n    prober: dns\n    dns: {query_name: example.com}\n",
    );
    let m = load_all(&[p], &LoadOptions::default())
        .unwrap()
        .modules
        .unwrap();
    let Spec::Http(h) = &m["h"].spec else {
        panic!()
    };
    assert_eq!(h.req.ip.preferred, sonde_probes::IpProtocol::Ip6);
    assert!(h.req.ip.fallback);
    assert!(h.req.follow_redirects);
    assert_eq!(h.req.method, http::Method::GET);
    assert_eq!(m["h"].timeout, None);
    let Spec::Dns(d) = &m["d"].spec else { panic!() };
    assert_eq!(d.query_type, sonde_probes::dns::RecordType::ANY);
    assert_eq!(d.query_class, sonde_probes::dns::DNSClass::IN);
    assert!(d.recursion_desired);
    assert_eq!(d.transport, sonde_probes::dns::DnsTransport::Udp);
}

#[test]
fn options_not_supported_yet_are_refused_by_name() {
    let cases = [
        (
            "http:\n      oauth2: {token_url: \"http://127.0.0.1:9/t\", client_secret_ref: x}",
            "`client_secret_ref` is not supported yet",
        ),
        (
            "http:\n      tls_config: {ca: PEM}",
            "`ca` is not supported yet",
        ),
        (
            "tcp:\n      source_ip_address: 127.0.0.1",
            "`source_ip_address` is not supported yet",
        ),
        (
            "dns:\n      query_name: x\n      dns_over_tls: true",
            "`dns_over_tls` is not supported yet",
        ),
        (
            "dns:\n      query_name: x\n      source_ip_address: 127.0.0.1",
            "`source_ip_address` is not supported yet",
        ),
    ];
    for (body, want) in cases {
        let prober = body.split(':').next().unwrap();
        let yaml = format!("modules:\n  m:\n    prober: {prober}\n    {body}\n");
        let errs = errors(&yaml);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{yaml}\nwanted {want:?}, got {errs:#?}"
        );
    }
}

#[test]
fn unknown_keys_and_bad_values_are_located() {
    let errs = errors(
        "modules:\n  a:\n    prober: http\n    htp: {}\n  b:\n    prober: icmp\n    icmp: {ttl: 300}\n  c:\n    prober: http\n    http:\n      preferred_ip_protocol: ipv4\n      body: x\n      body_file: y\n  d:\n    prober: dns\n    dns: {query_name: x, valid_rcodes: [NOERR]}\n",
    );
    assert_eq!(
        errs,
        vec![
            "4:5: unknown key `htp` — did you mean `http`?",
            "7:17: \"ttl\" cannot exceed 255 — expected 0 to 255",
            "11:30: unknown value `ipv4` for `preferred_ip_protocol` — did you mean `ip4`?",
            "13:7: setting body and body_file both are not allowed — expected one of them",
            "16:41: invalid rcode `NOERR` — did you mean `NOERROR`?",
        ],
        "{errs:#?}"
    );
    let errs = errors("modules:\n  a:\n    prober: http\ntimeout: 5s\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("4:1: unknown key `timeout`"),
        "{errs:?}"
    );
    let errs = errors("modules:\n  a:\n    prober: http\n    prober: tcp\n");
    assert!(errs[0].contains("duplicate key `prober`"), "{errs:?}");
}

#[test]
fn blackbox_files_mix_with_scenario_files_and_module_names_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yml", "modules:\n  web:\n    prober: http\n");
    let b = write(dir.path(), "b.yml", "modules:\n  tcp:\n    prober: tcp\n");
    let s = write(
        dir.path(),
        "s.yaml",
        "scenario: web\nhttp: {url: \"http://127.0.0.1:9/\"}\n",
    );
    let l = load_all(&[a.clone(), b, s], &LoadOptions::default()).unwrap();
    assert_eq!(l.config.scenarios.len(), 1);
    let names: Vec<&String> = l.modules.as_ref().unwrap().keys().collect();
    assert_eq!(names, ["tcp", "web"]);
    let c = write(dir.path(), "c.yml", "modules:\n  web:\n    prober: tcp\n");
    let Err(e) = load_all(&[a, c], &LoadOptions::default()) else {
        panic!("a module name defined twice must be refused");
    };
    let want = format!(
        "duplicate module name `web` — already defined in {}",
        dir.path().join("a.yml").display()
    );
    assert!(e[0].to_string().ends_with(&want), "{e:?}");
}

#[test]
fn anchors_and_merge_keys_work_as_in_go_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "b.yml",
        "modules:\n  http_base: &base\n    prober: http\n    timeout: 3s\n    http:\n      method: HEAD\n  http_derived:\n    <<: *base\n    timeout: 7s\n",
    );
    let m = load_all(&[p], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e:?}"))
        .modules
        .unwrap();
    assert_eq!(
        m["http_derived"].timeout,
        Some(std::time::Duration::from_secs(7))
    );
    let Spec::Http(h) = &m["http_derived"].spec else {
        panic!()
    };
    assert_eq!(h.req.method, http::Method::HEAD);
}

#[test]
fn expect_labels_need_an_expect_and_valid_names() {
    let errs = errors(
        "modules:\n  t:\n    prober: tcp\n    tcp:\n      query_response:\n        - send: x\n          labels: [{name: a, value: b}]\n        - expect: y\n          labels: [{name: 9a, value: b}]\n",
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("7:11: `labels` without `expect`")),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("invalid label name \"9a\"")),
        "{errs:#?}"
    );
}

/// blackbox 0.28's rules for `enable_http3`, word for word, each located.
#[test]
fn http3_options_follow_blackbox_0_28() {
    let errs = errors(
        "modules:\n  a:\n    prober: http\n    http: {enable_http3: true}\n  b:\n    prober: http\n    http:\n      valid_http_versions: [HTTP/3.0]\n  c:\n    prober: http\n    http:\n      enable_http3: true\n      enable_http2: false\n      valid_http_versions: [HTTP/2.0, HTTP/3.0]\n  d:\n    prober: http\n    http:\n      enable_http3: true\n      enable_http2: false\n      proxy_url: http://127.0.0.1:3128\n",
    );
    assert_eq!(
        errs,
        vec![
            "4:26: when enable_http3 is true, enable_http2 must be set to false",
            "8:28: HTTP/3 cannot be used as a valid HTTP version when enable_http3 is false — expected enable_http3: true (with enable_http2: false)",
            "14:28: HTTP/3 and HTTP/2.0/1.1 cannot be used together - only HTTP/3.0 is allowed when enable_http3 is true",
            "18:21: HTTP/3 runs over QUIC (UDP), which cannot go through an HTTP proxy — expected enable_http3 or a proxy, not both",
        ],
        "{errs:#?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "b.yml",
        "modules:\n  h3:\n    prober: http\n    http:\n      enable_http3: true\n      enable_http2: false\n      valid_http_versions: [\"HTTP/3.0\"]\n",
    );
    let m = load_all(&[p], &LoadOptions::default())
        .unwrap()
        .modules
        .unwrap();
    let Spec::Http(h) = &m["h3"].spec else {
        panic!()
    };
    assert!(h.req.http3);
}

#[test]
fn cel_expressions_are_compiled_at_load() {
    let errs = errors(
        "modules:\n  a:\n    prober: http\n    http:\n      fail_if_body_json_matches_cel: \"body.foo ==\"\n  b:\n    prober: http\n    http:\n      fail_if_body_json_not_matches_cel: \"foo.bar == 1\"\n  ok:\n    prober: http\n    http:\n      fail_if_body_json_not_matches_cel: \"body.foo == 'bar' && body.baz.startsWith('q')\"\n      fail_if_body_json_matches_cel: \"body.items.exists(i, i.state == 'down')\"\n",
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("5:38: could not compile CEL program"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("9:42: undeclared reference to foo"),
        "{errs:#?}"
    );
}

#[test]
fn proxy_connect_header_needs_a_proxy_and_stays_secret() {
    let errs = errors(
        "modules:\n  a:\n    prober: http\n    http:\n      proxy_connect_header:\n        Proxy-Authorization: [Bearer token]\n",
    );
    assert_eq!(
        errs,
        vec!["5:7: if proxy_connect_header is configured, proxy_url or proxy_from_environment must also be configured"],
        "{errs:#?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "b.yml",
        "modules:\n  p:\n    prober: http\n    http:\n      proxy_url: http://127.0.0.1:3128\n      proxy_connect_header:\n        Proxy-Authorization: [Bearer token]\n        X-Tenant: [a, b]\n",
    );
    let m = load_all(&[p], &LoadOptions::default())
        .unwrap()
        .modules
        .unwrap();
    let Spec::Http(h) = &m["p"].spec else {
        panic!()
    };
    let hs = &h.req.proxy_connect_headers;
    assert_eq!(hs.get_all("x-tenant").iter().count(), 2);
    assert!(hs.get("proxy-authorization").unwrap().is_sensitive());
    assert!(
        !m["p"].shown.to_string().contains("Bearer token"),
        "{}",
        m["p"].shown
    );
}
