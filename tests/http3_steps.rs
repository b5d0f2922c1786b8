//! Scenario http steps with `enable_http3`: a two-step run over QUIC against the in-process h3
//! fixture (one QUIC connection kept for both steps), the certificate expiry check, and the
//! configuration errors of the key. Loopback only.

use sonde::config::{load_str, LoadOptions};
use sonde::engine;
use sonde_testkit::h3::{H3Server, ALPN};
use sonde_testkit::http::{Reply, Routes};
use sonde_testkit::pki::{server_config, Ca};

fn errors(yaml: &str) -> Vec<String> {
    match load_str("t.yaml", yaml, &LoadOptions::default()) {
        Ok(_) => vec![],
        Err(e) => e
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect(),
    }
}

#[tokio::test]
async fn a_two_step_scenario_runs_over_one_quic_connection() {
    let ca = Ca::new("sonde h3 steps root");
    let leaf = ca.leaf(&["127.0.0.1"], time::Duration::days(10), &[]);
    let h3 = H3Server::start(
        Routes::new()
            .at(
                "/login",
                Reply::json(200, &serde_json::json!({"token": "abc"})),
            )
            .at_fn("/me", |s| {
                let ok = s.header("authorization") == Some("Bearer abc");
                Reply::status(if ok { 200 } else { 401 })
            }),
        server_config(&leaf, &[ALPN], None),
    )
    .await;
    let ca_file = ca.ca_file.display();
    let yaml = format!(
        r#"scenario: h3-flow
interval: 30s
timeout: 5s
steps:
  - name: login
    http:
      url: "{login}"
      method: POST
      enable_http3: true
      valid_http_versions: [HTTP/3.0]
      tls_config: {{ca_file: "{ca_file}"}}
    capture:
      token: {{json: $.token}}
    expect:
      cert_expires_in: {{gt: 9d, lt: 11d}}
  - name: me
    http:
      url: "{me}"
      enable_http3: true
      headers: {{Authorization: "Bearer {{{{ token }}}}"}}
      tls_config: {{ca_file: "{ca_file}"}}
    expect:
      status: 200
"#,
        login = h3.url("/login"),
        me = h3.url("/me"),
    );
    let cfg = load_str("t.yaml", &yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("invalid: {e:?}"));
    let sc = &cfg.scenarios[0];
    let r = engine::run(sc).await;
    assert!(r.success(), "{:#}", r.to_json(sc));
    let seen = h3.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.version == "HTTP/3.0"));
    // The second step reused the run's kept connection: one QUIC handshake in all.
    assert_eq!(h3.connections(), 1);
}

#[test]
fn enable_http3_is_checked_at_load() {
    let errs = errors(
        "scenarios:\n  - scenario: a\n    interval: 30s\n    http:\n      url: http://127.0.0.1/\n      enable_http3: true\n      proxy_url: http://127.0.0.1:3128\n  - scenario: b\n    interval: 30s\n    http:\n      url: https://127.0.0.1/\n      valid_http_versions: [HTTP/3.0]\n",
    );
    assert_eq!(
        errs,
        vec![
            "5:12: HTTP/3 runs over QUIC, which is always TLS — expected an https:// URL",
            "6:21: HTTP/3 runs over QUIC (UDP), which cannot go through an HTTP proxy — expected enable_http3 or proxy_url, not both",
            "12:28: HTTP/3.0 is only spoken with enable_http3: true — expected that set, or HTTP/3.0 left out",
        ],
        "{errs:#?}"
    );
}
