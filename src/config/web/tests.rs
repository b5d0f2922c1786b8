use std::path::Path;

use super::*;

/// A CA and a leaf signed by it, written into `dir` as ca.crt, leaf.crt, leaf.key.
fn pki(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &rcgen::Issuer::from_params(&ca, &ca_key))
        .unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("leaf.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.join("leaf.key"), key.serialize_pem()).unwrap();
}

fn load_in(dir: &Path, text: &str) -> Result<WebConfig, Vec<String>> {
    load_str("web.yml", dir, text).map_err(|e| e.iter().map(|e| e.to_string()).collect())
}

const TLS: &str = "tls_server_config:\n  cert_file: leaf.crt\n  key_file: leaf.key\n";

#[test]
fn an_empty_file_is_plain_http_without_auth() {
    let c = load_in(Path::new("."), "").unwrap();
    assert!(c.tls.is_none() && c.users.is_empty() && c.http2 && c.rate_limit.is_none());
    // exporter-toolkit: tls_server_config without certificate, key, CA or auth type is no TLS.
    let c = load_in(Path::new("."), "tls_server_config:\n  min_version: TLS13\n").unwrap();
    assert!(c.tls.is_none());
}

#[test]
fn tls_defaults_are_exporter_toolkits() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let c = load_in(dir.path(), TLS).unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(
        tls.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert!(
        tls.ignore_client_order,
        "prefer_server_cipher_suites defaults to true"
    );
    assert_eq!(c.client_auth, ClientAuth::NoClientCert);
    assert_eq!(
        c.watched,
        vec![dir.path().join("leaf.crt"), dir.path().join("leaf.key")]
    );
    let c = load_in(
        dir.path(),
        &format!("{TLS}http_server_config:\n  http2: false\n"),
    )
    .unwrap();
    assert_eq!(c.tls.unwrap().alpn_protocols, vec![b"http/1.1".to_vec()]);
}

#[test]
fn inline_certificate_and_key_work_like_files() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let indent = |s: String| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let cert = indent(std::fs::read_to_string(dir.path().join("leaf.crt")).unwrap());
    let key = indent(std::fs::read_to_string(dir.path().join("leaf.key")).unwrap());
    let text = format!("tls_server_config:\n  cert: |\n{cert}  key: |\n{key}");
    assert!(load_in(Path::new("/nonexistent"), &text)
        .unwrap()
        .tls
        .is_some());
    // Both forms of one thing: refused rather than one silently preferred.
    let both = format!(
        "tls_server_config:\n  cert_file: leaf.crt\n  cert: |\n{cert}  key_file: leaf.key\n"
    );
    let e = load_in(dir.path(), &both).unwrap_err();
    assert!(
        e[0].contains("both `cert_file` and `cert` are set"),
        "{e:?}"
    );
}

#[test]
fn client_auth_types_are_gos() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let with = |auth: &str, ca: bool| {
        let ca = if ca { "  client_ca_file: ca.crt\n" } else { "" };
        load_in(
            dir.path(),
            &format!("{TLS}{ca}  client_auth_type: {auth}\n"),
        )
    };
    for (auth, ca, expected) in [
        ("RequestClientCert", false, ClientAuth::RequestClientCert),
        (
            "RequireAnyClientCert",
            false,
            ClientAuth::RequireAnyClientCert,
        ),
        // exporter-toolkit's old spelling.
        ("RequireClientCert", false, ClientAuth::RequireAnyClientCert),
        (
            "VerifyClientCertIfGiven",
            true,
            ClientAuth::VerifyClientCertIfGiven,
        ),
        (
            "RequireAndVerifyClientCert",
            true,
            ClientAuth::RequireAndVerifyClientCert,
        ),
    ] {
        let c = with(auth, ca).unwrap();
        assert!(c.tls.is_some(), "{auth}");
        assert_eq!(c.client_auth, expected, "{auth}");
    }

    let e = with("RequireAndVerifyClientCert", false).unwrap_err();
    assert!(e[0].contains("expected `client_ca_file`"), "{e:?}");
    let e = with("NoClientCert", true).unwrap_err();
    assert!(
        e[0].contains("a client CA is set without a client auth type"),
        "{e:?}"
    );
    let e = load_in(
        dir.path(),
        &format!("{TLS}  client_auth_type: RequestClientCert\n  client_allowed_sans: [a]\n"),
    )
    .unwrap_err();
    assert!(
        e[0].contains("web.yml:5:3: `client_allowed_sans` needs a client certificate"),
        "{e:?}"
    );
}

#[test]
fn versions_suites_and_curves_are_checked_by_go_name() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let ok = load_in(
        dir.path(),
        &format!(
            "{TLS}  min_version: TLS10\n  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305, TLS_AES_128_GCM_SHA256]\n  curve_preferences: [CurveP384, X25519]\n"
        ),
    )
    .unwrap();
    let tls = ok.tls.unwrap();
    let suites: Vec<String> = tls
        .crypto_provider()
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    assert_eq!(
        suites,
        [
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        ]
    );
    let groups: Vec<String> = tls
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| format!("{:?}", g.name()))
        .collect();
    assert_eq!(groups, ["secp384r1", "X25519"]);

    let e = load_in(
        dir.path(),
        &format!("{TLS}  max_version: TLS11\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA, TLS_BOGUS]\n  curve_preferences: [CurveP521]\n"),
    )
    .unwrap_err();
    let all = e.join("\n");
    for expected in [
        "web.yml:4:16: sonde's TLS library (rustls) speaks TLS 1.2 and 1.3 only",
        "web.yml:5:19: `TLS_RSA_WITH_AES_128_CBC_SHA` is not offered",
        "web.yml:5:49: unknown cipher suite `TLS_BOGUS`",
        "web.yml:6:23: `CurveP521` is not offered",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    std::fs::write(
        dir.path().join("other.key"),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let e = load_in(
        dir.path(),
        "tls_server_config:\n  cert_file: leaf.crt\n  key_file: other.key\n",
    )
    .unwrap_err();
    assert!(
        e[0].starts_with("web.yml:3:13: the certificate and key cannot be used"),
        "{e:?}"
    );
    let e = load_in(
        dir.path(),
        "tls_server_config:\n  cert_file: leaf.key\n  key_file: leaf.key\n",
    )
    .unwrap_err();
    assert!(e[0].contains("no PEM certificate"), "{e:?}");
}

#[test]
fn headers_rate_limit_and_users() {
    let c = load_in(
        Path::new("."),
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: default-src 'self'\n\
         rate_limit: {interval: 1s, burst: 10}\n\
         basic_auth_users:\n  alice: $2y$04$Q0Xd3cPsKvJZK8o.ZGm0h.vMKyD1UMhz3ep1kHzbcCh8pxlqYQ3yy\n",
    )
    .unwrap();
    assert_eq!(c.headers.len(), 2);
    assert_eq!(c.rate_limit, Some((10, Duration::from_secs(1))));
    assert_eq!(c.users.keys().collect::<Vec<_>>(), ["alice"]);
    let e = load_in(
        Path::new("."),
        "http_server_config:\n  headers:\n    Server: sonde\n",
    )
    .unwrap_err();
    assert!(
        e[0].contains("web.yml:3:5: HTTP header `Server` can not be configured"),
        "{e:?}"
    );
}

#[test]
fn a_hash_of_the_wrong_type_is_not_quoted() {
    // serde's message would quote the value it could not type; the hash must not appear.
    let e = load_in(
        Path::new("."),
        "basic_auth_users:\n  alice: [\"$2y$04$secretsecretsecretsecre\"]\n",
    )
    .unwrap_err();
    assert!(!e.join("\n").contains("secretsecret"), "{e:?}");
    assert!(e[0].starts_with("web.yml:2:"), "{e:?}");
}
