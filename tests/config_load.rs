//! Valid scenario files load and compile into the probe requests the engine runs: defaults
//! applied, templates rendered, every step kind built, secrets redacted in the `/config` view,
//! fingerprints stable and sensitive. Nothing here sends traffic: loading never resolves or
//! connects.

use std::path::PathBuf;
use std::time::Duration;

use sonde::config::scenario::{Action, Config, Scenario};
use sonde::config::{load_paths, load_str, LoadOptions, REDACTED};
use sonde_probes::dns::{DNSClass, DnsTransport, RecordType, ResponseCode};
use sonde_probes::http::{Auth, StatusRange};
use sonde_probes::resolve::IpProtocol;
use sonde_probes::tcp::TcpStep;

const VALID: &str = "tests/fixtures/valid";

fn load(rel: &str) -> Config {
    let path = PathBuf::from(VALID).join(rel);
    match load_paths(&[path], &LoadOptions::default()) {
        Ok(c) => c,
        Err(errors) => panic!(
            "{rel} should load, got:\n{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn scenario<'a>(c: &'a Config, name: &str) -> &'a Scenario {
    c.scenarios
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
}

#[test]
fn shorthand_gets_every_default() {
    let c = load("shorthand-http.yaml");
    assert_eq!(c.scenarios.len(), 1);
    assert_eq!(c.sources, vec![format!("{VALID}/shorthand-http.yaml")]);
    let s = &c.scenarios[0];
    assert_eq!(s.name, "health");
    assert_eq!(s.defined_at, format!("{VALID}/shorthand-http.yaml:2:11"));
    assert_eq!(s.interval, Duration::from_secs(30));
    assert_eq!(s.timeout, Duration::from_secs(10));
    assert!(s.regions.is_empty() && s.tags.is_empty() && s.labels.is_empty());
    assert_eq!(s.steps.len(), 1);
    let step = &s.steps[0];
    assert_eq!(step.name, "http");
    assert_eq!(step.timeout, None);
    assert!(
        step.built().unwrap().expect.duration().is_empty()
            && step.built().unwrap().expect.cert_expires_in().is_empty()
    );
    let Action::Http(h) = &step.built().unwrap().action else {
        panic!("expected an http step, got {}", step.kind)
    };
    assert_eq!(h.url.as_str(), "http://127.0.0.1:8080/healthz");
    assert_eq!(h.method, http::Method::GET);
    assert!(h.headers.is_empty() && h.body.is_empty() && h.auth.is_none());
    assert!(h.follow_redirects);
    assert_eq!(h.max_redirects, 10);
    assert_eq!(h.body_size_limit, None);
    assert_eq!(h.ip.preferred, IpProtocol::Auto);
    assert!(h.ip.fallback);
    assert!(h.proxy.is_none());
    assert!(h.checks.valid_status_codes.is_empty(), "empty means 2xx");
    // HTTP/2 is offered by default: ALPN h2 then http/1.1.
    let tls = format!("{:?}", h.tls);
    assert!(
        tls.contains("[[104, 50], [104, 116, 116, 112, 47, 49, 46, 49]]"),
        "{tls}"
    );
}

#[test]
fn multi_scenario_file_compiles_every_kind() {
    std::env::set_var("SONDE_CONFIG_LOAD_TEST_TOKEN", "t0ken");
    let c = load("multi.yaml");
    let names: Vec<&str> = c.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["checkout-api", "smtp", "dns-a", "ping", "cert"]);

    let s = scenario(&c, "checkout-api");
    assert_eq!(s.interval, Duration::from_secs(60));
    assert_eq!(s.timeout, Duration::from_secs(15));
    assert_eq!(s.regions, ["eu-west", "!ap-east"]);
    assert_eq!(s.tags, ["smoke", "api"]);
    assert_eq!(
        s.labels,
        [
            ("team".to_string(), "payments".to_string()),
            ("tier".into(), "1".into())
        ]
    );
    let step_names: Vec<&str> = s.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(step_names, ["login", "http", "http-2"]);
    let login = &s.steps[0];
    assert_eq!(login.timeout, Some(Duration::from_secs(5)));
    assert_eq!(
        login.built().unwrap().expect.duration().lt,
        Some(Duration::from_millis(500))
    );
    let Action::Http(h) = &login.built().unwrap().action else {
        panic!()
    };
    // Templates: vars built from earlier vars, env, and the scenario name.
    assert_eq!(h.url.as_str(), "http://127.0.0.1:8080/login?user=probe");
    assert_eq!(h.auth, Some(Auth::Bearer("t0ken".into())));
    assert_eq!(h.headers["x-scenario"], "checkout-api");
    assert_eq!(h.headers["content-type"], "application/json");
    assert_eq!(&h.body[..], br#"{"user": "probe"}"#);
    assert_eq!(h.method, http::Method::POST);
    assert!(!h.follow_redirects);
    assert_eq!(h.body_size_limit, Some(10 * 1024 * 1024));
    assert_eq!(h.ip.preferred, IpProtocol::Ip4);
    assert!(!h.ip.fallback);
    let tls = format!("{:?}", h.tls);
    assert!(
        tls.contains("alpn: [[104, 116, 116, 112, 47, 49, 46, 49]]"),
        "{tls}"
    );
    assert_eq!(
        h.checks.valid_status_codes,
        [
            StatusRange { lo: 200, hi: 200 },
            StatusRange { lo: 300, hi: 399 }
        ]
    );
    // fail_if_body_not_matches_regexp + expect.body.contains (escaped) …
    let must: Vec<&str> = h
        .checks
        .fail_if_body_not_matches
        .iter()
        .map(|r| r.as_str())
        .collect();
    assert_eq!(must, ["ok", "\"ok\""]);
    // … and expect.body.not_matches.
    let must_not: Vec<&str> = h
        .checks
        .fail_if_body_matches
        .iter()
        .map(|r| r.as_str())
        .collect();
    assert_eq!(must_not, [r"error \d+"]);
    // fail_if_header_matches, then expect.headers: equals → anchored literal, exists → present.
    let hc: Vec<(String, &str, bool, bool)> = h
        .checks
        .headers
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.regex.as_str(),
                c.fail_if_matches,
                c.allow_missing,
            )
        })
        .collect();
    assert_eq!(
        hc,
        [
            ("x-error".to_string(), ".+", true, true),
            (
                "content-type".to_string(),
                "^application/json$",
                false,
                false
            ),
            ("x-trace".to_string(), "", false, false),
        ]
    );
    let Action::Http(orders) = &s.steps[1].built().unwrap().action else {
        panic!()
    };
    assert_eq!(orders.url.as_str(), "http://127.0.0.1:8080/orders");

    let smtp = scenario(&c, "smtp");
    assert_eq!(smtp.interval, Duration::from_secs(10));
    assert_eq!(smtp.timeout, Duration::from_secs(10), "min(10s, interval)");
    assert_eq!(
        smtp.steps[0].built().unwrap().expect.cert_expires_in().gt,
        Some(Duration::from_secs(14 * 86400))
    );
    let Action::Tcp(t) = &smtp.steps[0].built().unwrap().action else {
        panic!()
    };
    assert_eq!((t.host.as_str(), t.port), ("[::1]", 2525));
    assert!(!t.tls);
    let dialogue: Vec<String> = t
        .dialogue
        .iter()
        .map(|s| match s {
            TcpStep::Expect(r) => format!("expect {}", r.as_str()),
            TcpStep::ExpectBytes(b) => format!("bytes {b:?}"),
            TcpStep::Send(s) => format!("send {s}"),
            TcpStep::SendBytes(b) => format!("send {b:?}"),
            TcpStep::StartTls => "starttls".into(),
        })
        .collect();
    assert_eq!(
        dialogue,
        [
            "expect ^220 ",
            "send EHLO sonde",
            "expect ^250-STARTTLS",
            "send STARTTLS",
            "expect ^220 ",
            "starttls"
        ]
    );

    let dns = scenario(&c, "dns-a");
    let Action::Dns(d) = &dns.steps[0].built().unwrap().action else {
        panic!()
    };
    assert_eq!((d.server.as_str(), d.port), ("127.0.0.1", 5353));
    assert_eq!(d.query_name, "www.example.test");
    assert_eq!(d.query_type, RecordType::AAAA);
    assert_eq!(d.query_class, DNSClass::IN);
    assert_eq!(d.transport, DnsTransport::Tcp);
    assert!(d.recursion_desired);
    assert_eq!(
        d.checks.valid_rcodes,
        [ResponseCode::NoError, ResponseCode::NXDomain]
    );
    assert_eq!(d.checks.answer.fail_if_not_matches.len(), 1);
    assert_eq!(dns.steps[0].name, "dns");

    let ping = scenario(&c, "ping");
    let Action::Icmp(i) = &ping.steps[0].built().unwrap().action else {
        panic!()
    };
    assert_eq!(i.host, "[::1]");
    assert_eq!(i.ttl, Some(64));
    assert_eq!(i.payload_size, 100);
    assert_eq!(i.source, Some("127.0.0.1".parse().unwrap()));
    assert!(!i.dont_fragment);

    let cert = scenario(&c, "cert");
    let Action::Tls(t) = &cert.steps[0].built().unwrap().action else {
        panic!()
    };
    assert_eq!((t.host.as_str(), t.port), ("service.test", 8443));
    assert_eq!(
        format!("{:?}", t.resolver),
        "Resolver(127.0.0.1:5353,[::1]:53)"
    );
    assert!(format!("{:?}", t.client).contains("server_name: Some(\"service.test\")"));
}

#[test]
fn folders_load_every_yaml_file_below_them_in_order() {
    let c = load("folder");
    let names: Vec<&str> = c.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["folder-a", "folder-b"]);
    assert_eq!(
        c.sources,
        [
            format!("{VALID}/folder/a.yaml"),
            format!("{VALID}/folder/sub/b.yml")
        ]
    );
    // The same file named twice is loaded once (no duplicate-name error).
    let twice = load_paths(
        &[
            PathBuf::from(VALID).join("folder"),
            PathBuf::from(VALID).join("folder/a.yaml"),
        ],
        &LoadOptions::default(),
    )
    .expect("loads");
    assert_eq!(twice.scenarios.len(), 2);
}

#[test]
fn secrets_are_redacted_in_the_config_view_but_used_in_requests() {
    std::env::set_var("SONDE_CONFIG_LOAD_TEST_SECRET", "s3cret-from-env");
    let c = load("secrets.yaml");
    let s = &c.scenarios[0];
    let Action::Http(h) = &s.steps[0].built().unwrap().action else {
        panic!()
    };
    assert_eq!(
        h.auth,
        Some(Auth::Basic {
            username: "probe".into(),
            password: "s3cret-from-env".into()
        })
    );
    assert_eq!(h.proxy.as_ref().unwrap().password(), Some("literal-secret"));
    let view = serde_json::to_string(&s.redacted()).unwrap();
    assert!(!view.contains("literal-secret"), "{view}");
    assert!(!view.contains("s3cret-from-env"), "{view}");
    let r = &s.redacted();
    assert_eq!(r["vars"]["password"], REDACTED);
    let step = &r["steps"][0]["http"];
    assert_eq!(step["basic_auth"]["password"], REDACTED);
    assert_eq!(step["basic_auth"]["username"], "probe");
    assert_eq!(step["headers"]["Authorization"], REDACTED);
    assert_eq!(step["headers"]["Cookie"], REDACTED);
    assert_eq!(step["headers"]["X-Visible"], "shown");
    assert_eq!(step["proxy_url"], "http://<redacted>@127.0.0.1:3128");
    assert_eq!(r["steps"][1]["http"]["bearer_token"], REDACTED);
    assert_eq!(r["steps"][1]["http"]["url"], "http://127.0.0.1:8080/other");
}

#[test]
fn templates_stay_unrendered_in_the_config_view() {
    let text = "scenario: t\nvars: {base: \"http://127.0.0.1:1\"}\nhttp: {url: \"{{ base }}/x\"}\n";
    let c = load_str("<test>", text, &LoadOptions::default()).unwrap();
    let s = &c.scenarios[0];
    assert_eq!(s.redacted()["http"]["url"], "{{ base }}/x");
    let Action::Http(h) = &s.steps[0].built().unwrap().action else {
        panic!()
    };
    assert_eq!(h.url.as_str(), "http://127.0.0.1:1/x");
    assert_eq!(s.defined_at, "<test>:1:11");
}

#[test]
fn fingerprint_is_stable_and_changes_with_what_affects_a_run() {
    let text = "scenario: fp\ninterval: 5s\nhttp: {url: \"http://127.0.0.1:1/{{ region }}\"}\n";
    let eu = LoadOptions {
        region: Some("eu".into()),
        ..Default::default()
    };
    let fp = |t: &str, o: &LoadOptions| load_str("<fp>", t, o).unwrap().scenarios[0].fingerprint;
    let a = fp(text, &eu);
    assert_eq!(a, fp(text, &eu), "same input, same fingerprint");
    let loaded = load_str("<fp>", text, &eu).unwrap();
    let Action::Http(h) = &loaded.scenarios[0].steps[0].built().unwrap().action else {
        panic!()
    };
    assert_eq!(h.url.as_str(), "http://127.0.0.1:1/eu");
    assert_ne!(a, fp(&text.replace("5s", "6s"), &eu), "an edit changes it");
    let us = LoadOptions {
        region: Some("us".into()),
        ..Default::default()
    };
    assert_ne!(a, fp(text, &us), "the region changes it");
}

#[test]
fn tls_files_are_relative_to_the_yaml_file() {
    let ca = sonde_testkit::pki::Ca::new("sonde test CA");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate").unwrap();
    let file = dir.path().join("tls.yaml");
    std::fs::write(
        &file,
        "scenarios:\n  - scenario: ok\n    tls: {target: \"127.0.0.1:8443\", tls_config: {ca_file: ca.pem}}\n",
    )
    .unwrap();
    let c = load_paths(std::slice::from_ref(&file), &LoadOptions::default()).expect("loads");
    assert!(matches!(
        c.scenarios[0].steps[0].built().unwrap().action,
        Action::Tls(_)
    ));

    // An unusable file is an error at its key.
    std::fs::write(
        &file,
        "scenario: bad\ntls: {target: \"127.0.0.1:8443\", tls_config: {ca_file: junk.pem}}\n",
    )
    .unwrap();
    let errors = load_paths(std::slice::from_ref(&file), &LoadOptions::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column), (2, 55), "{}", errors[0]);
    assert!(errors[0].message.contains("junk.pem"), "{}", errors[0]);
}

#[test]
fn ten_thousand_scenarios_in_one_file_load() {
    let mut text = String::from("scenarios:\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "  - scenario: s{i}\n    interval: 1s\n    http: {{url: \"http://127.0.0.1:{}/\"}}\n",
            1024 + i % 1000
        ));
    }
    let started = std::time::Instant::now();
    let c = load_str("<bulk>", &text, &LoadOptions::default()).unwrap();
    // Not asserted (no timed assertions): printed for whoever runs it with --nocapture.
    eprintln!("loaded 10,000 scenarios in {:?}", started.elapsed());
    assert_eq!(c.scenarios.len(), 10_000);
    assert_eq!(c.scenarios[9_999].defined_at, "<bulk>:29999:15");
}

#[test]
fn anchors_and_merge_keys_are_resolved() {
    let text = "\
defaults: &defaults
  interval: 10s
  timeout: 2s
scenarios:
  - <<: *defaults
    scenario: a
    http: &probe {url: \"http://127.0.0.1:1/\"}
  - <<: *defaults
    scenario: b
    http: *probe
";
    // `defaults:` beside `scenarios:` is refused; the same with the anchor on the first item:
    let errors = load_str("<anchors>", text, &LoadOptions::default()).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "<anchors>:1:1: unknown key `defaults` beside `scenarios:` — expected only `scenarios:`, `groups:` and `include:` here (a scenario's keys go inside its list item)"
    );
    let text = "\
scenarios:
  - &first
    scenario: a
    interval: 10s
    timeout: 2s
    http: {url: \"http://127.0.0.1:1/\"}
  - <<: *first
    scenario: b
";
    let c = load_str("<anchors>", text, &LoadOptions::default()).unwrap();
    let b = &c.scenarios[1];
    assert_eq!(b.name, "b");
    assert_eq!(b.interval, Duration::from_secs(10));
    assert_eq!(b.timeout, Duration::from_secs(2));
    assert_eq!(b.defined_at, "<anchors>:8:15");
    assert!(matches!(
        b.steps[0].built().unwrap().action,
        Action::Http(_)
    ));
}
