//! `tls_server_config` into a rustls server configuration, with exporter-toolkit's rules and Go's
//! names (`RequireAndVerifyClientCert`, `TLS12`, `TLS_ECDHE_…`, `CurveP256`).
//!
//! Where rustls cannot do what Go would, the file is refused with the reason rather than served
//! differently: TLS 1.0/1.1 as `max_version`, CBC and RSA-key-exchange cipher suites, P-521.
//! `min_version: TLS10`/`TLS11` is accepted: sonde never speaks below TLS 1.2 anyway.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::model::TlsModel;
use crate::config::error::FileErrors;
use crate::config::locate::{key_path, PosIndex};

/// `client_auth_type`, as Go's `tls.ClientAuthType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

const CLIENT_AUTH: [&str; 6] = [
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
];

/// Go's TLS 1.2 AEAD suites, which rustls (ring) offers under the same names.
const SUITES_12: [&str; 6] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// Go's TLS 1.3 suites: accepted and, as in Go, not configurable (all are always on).
const SUITES_13: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows and rustls deliberately does not implement (CBC, RSA key exchange, RC4,
/// 3DES): refused with that reason rather than "unknown".
const SUITES_REFUSED: [&str; 16] = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

type Compiled = (
    Option<Arc<rustls::ServerConfig>>,
    Option<Vec<String>>,
    ClientAuth,
);

/// The TLS server configuration of `t` (`None`: TLS is off, as exporter-toolkit when no
/// certificate, key, client CA or client auth type is set). Files read are added to `watched`.
pub fn compile(
    t: TlsModel,
    dir: &Path,
    http2: bool,
    index: &PosIndex,
    errors: &mut FileErrors,
    watched: &mut Vec<PathBuf>,
) -> Option<Compiled> {
    let p = |k: &str| key_path("tls_server_config", k);
    let enabled = t.cert_file.is_some()
        || t.cert.is_some()
        || t.key_file.is_some()
        || t.key.is_some()
        || t.client_ca_file.is_some()
        || t.client_ca.is_some()
        || t.client_auth_type.is_some();
    if !enabled {
        return Some((None, None, ClientAuth::NoClientCert));
    }
    let before = errors.len();
    let mut cx = Cx {
        dir,
        index,
        errors,
        watched,
    };
    let certs = cx.pem_source(&t.cert_file, &t.cert, "cert_file", "cert", |b| {
        CertificateDer::pem_slice_iter(b).collect::<Result<Vec<_>, _>>()
    });
    let key = cx.pem_source(&t.key_file, &t.key, "key_file", "key", |b| {
        PrivateKeyDer::from_pem_slice(b)
    });
    let ca = match (&t.client_ca_file, &t.client_ca) {
        (None, None) => None,
        _ => cx.pem_source(
            &t.client_ca_file,
            &t.client_ca,
            "client_ca_file",
            "client_ca",
            |b| CertificateDer::pem_slice_iter(b).collect::<Result<Vec<_>, _>>(),
        ),
    };
    let auth = client_auth(&t, ca.is_some(), cx.index, cx.errors);
    let versions = versions(&t, cx.index, cx.errors);
    let provider = provider(&t, cx.index, cx.errors);
    if cx.errors.len() > before {
        return None;
    }
    let (certs, key, auth, versions, provider) =
        (certs?, key?, auth?, versions?, Arc::new(provider?));
    if certs.is_empty() {
        cx.errors.push(
            index.value(&p("cert_file")),
            "no PEM certificate in it — expected `-----BEGIN CERTIFICATE-----`",
        );
        return None;
    }
    let verifier = match verifier(auth, ca, &provider) {
        Ok(v) => v,
        Err(e) => {
            cx.errors.push(index.value(&p("client_ca_file")), e);
            return None;
        }
    };
    let built = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            b.with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
                .map_err(|e| format!("the certificate and key cannot be used: {e}"))
        });
    let mut config = match built {
        Ok(c) => c,
        Err(e) => {
            let at = if t.key_file.is_some() {
                p("key_file")
            } else {
                p("key")
            };
            cx.errors.push(index.value(&at), e);
            return None;
        }
    };
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let sans = t.client_allowed_sans;
    if sans.is_some()
        && !matches!(
            auth,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        )
    {
        errors.push(
            index.key(&p("client_allowed_sans")),
            "`client_allowed_sans` needs a client certificate on every connection — expected `client_auth_type: RequireAndVerifyClientCert` (or RequireAnyClientCert)",
        );
        return None;
    }
    Some((Some(Arc::new(config)), sans, auth))
}

struct Cx<'a> {
    dir: &'a Path,
    index: &'a PosIndex,
    errors: &'a mut FileErrors,
    watched: &'a mut Vec<PathBuf>,
}

impl Cx<'_> {
    /// The PEM content of `file` (relative to the configuration's folder) or `inline`: exactly
    /// one must be set. Errors never quote the content (an inline key is a secret).
    fn pem_source<T, E: std::fmt::Display>(
        &mut self,
        file: &Option<String>,
        inline: &Option<String>,
        file_key: &str,
        inline_key: &str,
        parse: impl Fn(&[u8]) -> Result<T, E>,
    ) -> Option<T> {
        let p = |k: &str| key_path("tls_server_config", k);
        let (bytes, at) = match (file, inline) {
            (Some(_), Some(_)) => {
                self.errors.push(
                    self.index.key(&p(inline_key)),
                    format!("both `{file_key}` and `{inline_key}` are set — expected one of them"),
                );
                return None;
            }
            (None, None) => {
                self.errors.push(
                    self.index.key("tls_server_config"),
                    format!("missing one of `{inline_key}` or `{file_key}` — TLS needs a certificate and its key"),
                );
                return None;
            }
            (Some(f), None) => {
                let path = self.dir.join(f);
                self.watched.push(path.clone());
                match std::fs::read(&path) {
                    Ok(b) => (b, p(file_key)),
                    Err(e) => {
                        self.errors.push(
                            self.index.value(&p(file_key)),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        return None;
                    }
                }
            }
            (None, Some(text)) => (text.clone().into_bytes(), p(inline_key)),
        };
        match parse(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(
                    self.index.value(&at),
                    format!(
                        "not a valid PEM {}: {e}",
                        if file_key.starts_with("key") {
                            "private key"
                        } else {
                            "certificate"
                        }
                    ),
                );
                None
            }
        }
    }
}

fn client_auth(
    t: &TlsModel,
    has_ca: bool,
    index: &PosIndex,
    errors: &mut FileErrors,
) -> Option<ClientAuth> {
    let at = key_path("tls_server_config", "client_auth_type");
    let auth = match t.client_auth_type.as_deref().unwrap_or("") {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "RequestClientCert" => ClientAuth::RequestClientCert,
        "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        other => {
            errors.push(
                index.value(&at),
                format!(
                    "invalid client_auth_type `{other}`{}",
                    crate::config::hint(other, &CLIENT_AUTH)
                ),
            );
            return None;
        }
    };
    let verifies = matches!(
        auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    if has_ca && auth == ClientAuth::NoClientCert {
        errors.push(
            index.key(&key_path("tls_server_config", "client_ca_file")),
            "a client CA is set without a client auth type — expected `client_auth_type: RequireAndVerifyClientCert` (or VerifyClientCertIfGiven)",
        );
        return None;
    }
    if verifies && !has_ca {
        errors.push(
            index.value(&at),
            format!("`{}` verifies client certificates against a CA — expected `client_ca_file` (or `client_ca`)", t.client_auth_type.as_deref().unwrap_or_default()),
        );
        return None;
    }
    Some(auth)
}

fn version(s: &str) -> Option<u8> {
    match s {
        "TLS10" => Some(0),
        "TLS11" => Some(1),
        "TLS12" => Some(2),
        "TLS13" => Some(3),
        _ => None,
    }
}

fn versions(
    t: &TlsModel,
    index: &PosIndex,
    errors: &mut FileErrors,
) -> Option<Vec<&'static rustls::SupportedProtocolVersion>> {
    let read = |k: &str, v: &Option<String>, default: u8, errors: &mut FileErrors| -> Option<u8> {
        let Some(s) = v else { return Some(default) };
        let at = key_path("tls_server_config", k);
        match version(s) {
            Some(n) => Some(n),
            None => {
                errors.push(
                    index.value(&at),
                    format!(
                        "unknown TLS version `{s}`{}",
                        crate::config::hint(s, &["TLS10", "TLS11", "TLS12", "TLS13"])
                    ),
                );
                None
            }
        }
    };
    let min = read("min_version", &t.min_version, 2, errors);
    let max = read("max_version", &t.max_version, 3, errors);
    let (min, max) = (min?, max?);
    if max < 2 {
        errors.push(
            index.value(&key_path("tls_server_config", "max_version")),
            "sonde's TLS library (rustls) speaks TLS 1.2 and 1.3 only — expected max_version TLS12 or TLS13",
        );
        return None;
    }
    if min > max {
        errors.push(
            index.value(&key_path("tls_server_config", "min_version")),
            "min_version is above max_version — expected min_version ≤ max_version",
        );
        return None;
    }
    let mut out = Vec::new();
    if min <= 2 {
        out.push(&rustls::version::TLS12);
    }
    if max == 3 {
        out.push(&rustls::version::TLS13);
    }
    Some(out)
}

/// ring's provider with the cipher suites and curves the file lists, in its order.
fn provider(t: &TlsModel, index: &PosIndex, errors: &mut FileErrors) -> Option<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    let before = errors.len();
    if let Some(list) = &t.cipher_suites {
        let base = key_path("tls_server_config", "cipher_suites");
        let mut chosen = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let at = crate::config::locate::index_path(&base, i);
            // Go also spells ChaCha20 suites without `_SHA256`.
            let full = match name.as_str() {
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
                | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => format!("{name}_SHA256"),
                _ => name.clone(),
            };
            if SUITES_13.contains(&full.as_str()) {
                continue;
            }
            if SUITES_REFUSED.contains(&full.as_str()) {
                errors.push(index.value(&at), format!("`{name}` is not offered by sonde's TLS library (rustls implements only forward-secret AEAD suites) — expected one of {}", SUITES_12.join(", ")));
                continue;
            }
            match provider
                .cipher_suites
                .iter()
                .find(|s| format!("{:?}", s.suite()) == full)
            {
                Some(s) if SUITES_12.contains(&full.as_str()) => chosen.push(*s),
                _ => errors.push(
                    index.value(&at),
                    format!(
                        "unknown cipher suite `{name}`{}",
                        crate::config::hint(name, &SUITES_12)
                    ),
                ),
            }
        }
        if errors.len() == before && !chosen.is_empty() {
            let tls13: Vec<_> = provider
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .copied()
                .collect();
            provider.cipher_suites = tls13.into_iter().chain(chosen).collect();
        }
    }
    if let Some(list) = &t.curve_preferences {
        let base = key_path("tls_server_config", "curve_preferences");
        let mut chosen: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let at = crate::config::locate::index_path(&base, i);
            match name.as_str() {
                "X25519" => chosen.push(rustls::crypto::ring::kx_group::X25519),
                "CurveP256" => chosen.push(rustls::crypto::ring::kx_group::SECP256R1),
                "CurveP384" => chosen.push(rustls::crypto::ring::kx_group::SECP384R1),
                "CurveP521" => errors.push(index.value(&at), "`CurveP521` is not offered by sonde's TLS library (rustls with ring) — expected X25519, CurveP256 or CurveP384"),
                other => errors.push(index.value(&at), format!("unknown curve `{other}`{}", crate::config::hint(other, &["X25519", "CurveP256", "CurveP384", "CurveP521"]))),
            }
        }
        if !chosen.is_empty() {
            provider.kx_groups = chosen;
        }
    }
    (errors.len() == before).then_some(provider)
}

fn verifier(
    auth: ClientAuth,
    ca: Option<Vec<CertificateDer<'static>>>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let algs = provider.signature_verification_algorithms;
    let roots = || -> Result<Arc<RootCertStore>, String> {
        let mut store = RootCertStore::empty();
        for c in ca.clone().unwrap_or_default() {
            store
                .add(c)
                .map_err(|e| format!("a client CA certificate cannot be used: {e}"))?;
        }
        if store.is_empty() {
            return Err(
                "no PEM certificate in the client CA — expected `-----BEGIN CERTIFICATE-----`"
                    .into(),
            );
        }
        Ok(Arc::new(store))
    };
    let webpki = |optional: bool| -> Result<Arc<dyn ClientCertVerifier>, String> {
        let b = WebPkiClientVerifier::builder_with_provider(roots()?, provider.clone());
        let b = if optional {
            b.allow_unauthenticated()
        } else {
            b
        };
        b.build()
            .map_err(|e| format!("the client CA cannot be used: {e}"))
    };
    Ok(match auth {
        ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert => Arc::new(AnyClientCert {
            mandatory: false,
            algs,
        }),
        ClientAuth::RequireAnyClientCert => Arc::new(AnyClientCert {
            mandatory: true,
            algs,
        }),
        ClientAuth::VerifyClientCertIfGiven => webpki(true)?,
        ClientAuth::RequireAndVerifyClientCert => webpki(false)?,
    })
}

/// Go's `RequestClientCert` / `RequireAnyClientCert`: any certificate is taken without
/// checking who issued it, but the client must still prove it holds its key (the handshake
/// signature is verified), so a copied certificate is not enough.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
