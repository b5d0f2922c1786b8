//! A throw-away PKI: a CA, intermediates, and leaf certificates with chosen names and validity,
//! written to a temporary directory so probes can be pointed at `ca_file`/`cert_file`/`key_file`.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// A certificate authority that can sign intermediates and leaves.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    /// Where `cert_pem` was written: use as `ca_file`.
    pub ca_file: PathBuf,
    dir: Arc<tempfile::TempDir>,
}

/// A certificate with its key, and the chain a server presents (leaf first).
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Unix seconds of the leaf's notAfter.
    pub not_after: i64,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

fn validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + valid_for;
}

impl Ca {
    /// A root CA valid for ten years.
    pub fn new(name: &str) -> Ca {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::new_in(name, dir, None, Duration::days(3650))
    }

    fn new_in(
        name: &str,
        dir: Arc<tempfile::TempDir>,
        parent: Option<&Ca>,
        valid_for: Duration,
    ) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "sonde tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, valid_for);
        let key = KeyPair::generate().unwrap();
        let cert = match parent {
            None => params.self_signed(&key).unwrap(),
            Some(p) => params.signed_by(&key, &p.issuer()).unwrap(),
        };
        let cert_pem = cert.pem();
        let ca_file = dir.path().join(format!("{}.pem", sanitize(name)));
        std::fs::write(&ca_file, &cert_pem).unwrap();
        Ca {
            params,
            key,
            cert_der: cert.der().clone(),
            cert_pem,
            ca_file,
            dir,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// An intermediate CA signed by this one, valid for `valid_for` from now.
    pub fn intermediate(&self, name: &str, valid_for: Duration) -> Ca {
        Self::new_in(name, self.dir.clone(), Some(self), valid_for)
    }

    /// A server (and client) certificate for `names` (DNS names or IP addresses) valid for
    /// `valid_for` from now (negative: already expired). `extra_chain` is appended after the leaf
    /// in what the server presents (pass this CA's intermediates).
    pub fn leaf(&self, names: &[&str], valid_for: Duration, extra_chain: &[&Ca]) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        let now = OffsetDateTime::now_utc();
        if valid_for.is_negative() {
            params.not_before = now + valid_for - Duration::days(30);
            params.not_after = now + valid_for;
        } else {
            validity(&mut params, valid_for);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        let mut chain = vec![cert.der().clone()];
        let mut pem = cert.pem();
        for c in extra_chain {
            chain.push(c.cert_der.clone());
            pem.push_str(&c.cert_pem);
        }
        let stem = sanitize(&format!(
            "{}-{}",
            names.join("_"),
            params.not_after.unix_timestamp()
        ));
        let cert_file = self.dir.path().join(format!("{stem}.crt"));
        let key_file = self.dir.path().join(format!("{stem}.key"));
        std::fs::write(&cert_file, pem).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Leaf {
            chain,
            key_der: key.serialize_der(),
            cert_file,
            key_file,
            not_after: params.not_after.unix_timestamp(),
        }
    }

    /// Write `contents` into this PKI's temporary directory and return the path.
    pub fn write_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A rustls server configuration presenting `leaf`, offering `alpn`, and, when `client_ca` is
/// given, requiring a client certificate issued by it.
pub fn server_config(
    leaf: &Leaf,
    alpn: &[&[u8]],
    client_ca: Option<&Ca>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert_der.clone()).unwrap();
            let v = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap();
            builder.with_client_cert_verifier(v)
        }
    };
    let mut cfg = builder
        .with_single_cert(leaf.chain.clone(), leaf.key())
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}
