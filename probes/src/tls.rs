//! TLS: client configuration shared by the http, tcp and tls probes, the handshake with its
//! timing, the facts a prober reports about a TLS session (version, cipher, the whole presented
//! chain with each certificate's expiry), and the handshake-only `tls` probe.
//!
//! Building a rustls `ClientConfig` reads files and the system root store, so it happens once, at
//! configuration load ([`TlsClient::new`]); a handshake only clones an `Arc`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::kts;
use crate::resolve::{connect_tcp, ResolveOptions, Resolver};
use crate::{with_deadline, Dur, Failure, FailureReason, Outcome, Phase, Recorder};

/// A TLS protocol version, named as blackbox_exporter's `min_version` names it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// What a user can say about TLS (blackbox's `tls_config`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// Trust only the CAs in this PEM file instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM chain) and key, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name to send as SNI and to verify the certificate against, instead of the target host.
    pub server_name: Option<String>,
    /// Accept any certificate. The chain is still reported.
    pub insecure_skip_verify: bool,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
}

/// A ready-to-use TLS client: configuration built, files read.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: Option<String>,
    insecure: bool,
    /// TLS 1.3 is among the versions offered (QUIC needs it).
    tls13: bool,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .field("alpn", &self.config.alpn_protocols)
            .finish()
    }
}

/// ring's provider with the cipher suites offered in Go's order, so that a server that follows
/// the client's order (nginx's default) negotiates the suite blackbox_exporter would, and
/// `probe_tls_cipher_info` reads the same. rustls's own order puts AES-256-GCM first: its
/// SHA-384 key schedule runs in ring's portable SHA-512 code on x86_64 CPUs other than
/// Intel's, ~5 % of an https probe's CPU where AES-128-GCM's SHA-256 has SHA instructions.
fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| {
        Arc::new(CryptoProvider {
            cipher_suites: go_order(aes_gcm_hardware()),
            ..rustls::crypto::ring::default_provider()
        })
    })
    .clone()
}

/// Go's default order (crypto/tls `defaultCipherSuitesTLS13` and
/// `cipherSuitesPreferenceOrder`): AES-128-GCM, AES-256-GCM, then ChaCha20-Poly1305 where the
/// CPU has AES-GCM instructions; ChaCha20-Poly1305 first where it has not (the `NoAES` lists).
fn go_order(aes_gcm_hardware: bool) -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as s;
    let mut tls13 = vec![
        s::TLS13_AES_128_GCM_SHA256,
        s::TLS13_AES_256_GCM_SHA384,
        s::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    let mut tls12 = vec![
        s::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        s::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        s::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        s::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        s::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        s::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    if !aes_gcm_hardware {
        tls13.rotate_right(1);
        tls12.rotate_right(2);
    }
    tls13.extend(tls12);
    tls13
}

/// Go's `hasAESGCMHardwareSupport` on the two architectures sonde ships for.
fn aes_gcm_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The system's root certificates, read once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!("while loading system root certificates: {e}");
            }
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!("loaded {added} system root certificates ({ignored} unparsable)");
            Arc::new(store)
        })
        .clone()
}

impl TlsClient {
    /// The very same configuration (a clone of this client, or one built with it), for the
    /// same server name: not merely alike, since the roots and keys come from files.
    pub fn same(&self, other: &TlsClient) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
            && self.server_name == other.server_name
            && self.insecure == other.insecure
            && self.tls13 == other.tls13
    }

    /// What [`Self::same`] compares, for hashing.
    pub fn identity(&self) -> (usize, Option<&str>, bool, bool) {
        (
            Arc::as_ptr(&self.config) as usize,
            self.server_name.as_deref(),
            self.insecure,
            self.tls13,
        )
    }

    /// Build a client. `alpn` is offered in order (for HTTP: `h2`, `http/1.1`). Errors name the
    /// file and what is wrong with it; they are configuration errors.
    pub fn new(opts: &TlsOptions, alpn: &[&[u8]]) -> Result<Self, String> {
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (TlsVersion::Tls12, &rustls::version::TLS12),
            (TlsVersion::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| opts.min_version.is_none_or(|m| *v >= m))
        .filter(|(v, _)| opts.max_version.is_none_or(|m| *v <= m))
        .map(|(_, s)| s)
        .collect();
        if versions.is_empty() {
            return Err("min_version is above max_version: no TLS version left to offer".into());
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("unsupported TLS versions: {e}"))?;
        let roots = match &opts.ca_file {
            Some(path) => {
                let mut store = RootCertStore::empty();
                let certs = read_certs(path)?;
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!(
                        "ca_file {}: no usable CA certificate in it",
                        path.display()
                    ));
                }
                Arc::new(store)
            }
            None => system_roots(),
        };
        let builder = builder.with_root_certificates(roots);
        let mut config = match (&opts.cert_file, &opts.key_file) {
            (Some(c), Some(k)) => {
                let certs = read_certs(c)?;
                let key = PrivateKeyDer::from_pem_file(k)
                    .map_err(|e| format!("key_file {}: {e}", k.display()))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("cert_file/key_file: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err("cert_file is set but key_file is not".into()),
            (None, Some(_)) => return Err("key_file is set but cert_file is not".into()),
        };
        if opts.insecure_skip_verify {
            config
                .dangerous()
                .set_certificate_verifier(Arc::new(AcceptAnything(provider())));
        }
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // Session resumption would make the second probe's handshake cheaper than a real client's
        // first one and hide certificate changes; a prober wants a full handshake every time.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(TlsClient {
            config: Arc::new(config),
            server_name: opts.server_name.clone(),
            insecure: opts.insecure_skip_verify,
            tls13: opts.max_version.is_none_or(|m| m >= TlsVersion::Tls13),
        })
    }

    /// The default client: system roots, full verification.
    pub fn system(alpn: &[&[u8]]) -> Self {
        // Cannot fail: no files, no version bounds.
        TlsClient::new(&TlsOptions::default(), alpn).expect("default TLS client")
    }

    /// Whether `insecure_skip_verify` is on (the chain is reported, not verified).
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// The same trust, client certificate and verification for QUIC, offering `alpn`: QUIC
    /// carries TLS 1.3 only, so a client capped at TLS 1.2 cannot be used.
    pub fn quic_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
        if !self.tls13 {
            return Err("QUIC needs TLS 1.3, and max_version is TLS 1.2".into());
        }
        let mut config = (*self.config).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.enable_early_data = false;
        Ok(Arc::new(config))
    }

    /// The name this client sends as SNI and verifies for `host`.
    pub fn server_name_for<'a>(&'a self, host: &'a str) -> &'a str {
        self.server_name.as_deref().unwrap_or(host)
    }

    /// Handshake over `stream`, recording the `tls` phase. Fails with [`FailureReason::Tls`].
    ///
    /// `marks` are those of the timestamped TCP stream at the bottom of `stream` ([`kts`]): the
    /// phase's kernel figure is the sum of the handshake's rounds (our flight's last byte sent
    /// → the last segment of the server's answer received; one round in TLS 1.3, two in 1.2),
    /// so neither our crypto between rounds nor our wake-ups are in it. Afterwards the marks
    /// know that a TLS layer sits above ([`kts::Marks::layered`]).
    pub async fn handshake<S>(
        &self,
        stream: S,
        host: &str,
        rec: &mut Recorder,
        marks: &kts::Marks,
    ) -> Result<(TlsStream<S>, TlsFacts), Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let started = Instant::now();
        rec.doing("in the TLS handshake");
        let name_str = self.server_name_for(host);
        let bare = name_str.trim_start_matches('[').trim_end_matches(']');
        let name = match bare.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(bare.to_string()).map_err(|e| {
                Failure::new(
                    FailureReason::Tls,
                    format!("{bare:?} is not a valid TLS server name: {e}"),
                )
            })?,
        };
        let connector = TlsConnector::from(self.config.clone());
        marks.start_rounds();
        let res = connector.connect(name, stream).await;
        let user = started.elapsed();
        let kernel = marks.take_rounds();
        marks.layered();
        let kernel_total = kernel.as_ref().ok().map(|(d, _)| *d);
        rec.timings.add_measured(Phase::Tls, user, kernel_total);
        rec.event(format!(
            "tls handshake: {}{}",
            kts::describe(user, &kernel.as_ref().map(|(d, _)| *d)),
            match &kernel {
                Ok((_, n)) => format!(" over {n} round trip(s)"),
                Err(_) => String::new(),
            }
        ));
        let tls = res.map_err(|e| {
            Failure::new(
                FailureReason::Tls,
                format!(
                    "TLS handshake with {bare} failed: {}",
                    describe_tls_error(&e)
                ),
            )
        })?;
        let facts = TlsFacts::from_connection(tls.get_ref().1, bare, !self.insecure);
        rec.event(format!(
            "TLS handshake done in {}: {}, {}{}, {} certificate(s), earliest expiry {}",
            Dur(kernel_total.map_or(user, |k| k.min(user))),
            facts.version,
            facts.cipher,
            facts
                .alpn
                .as_deref()
                .map(|a| format!(", ALPN {a}"))
                .unwrap_or_default(),
            facts.chain.len(),
            facts
                .earliest_not_after()
                .map(fmt_unix)
                .unwrap_or_else(|| "unknown".into())
        ));
        Ok((tls, facts))
    }
}

fn read_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// rustls hides the interesting part of a handshake failure inside an io::Error.
fn describe_tls_error(e: &std::io::Error) -> String {
    if let Some(inner) = e.get_ref() {
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return describe_rustls_error(r);
        }
        return inner.to_string();
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "the peer closed the connection".into(),
        _ => e.to_string(),
    }
}

/// Certificate rejections in words a person acts on: rustls's own texts say `UnknownIssuer`,
/// print Unix seconds and wrap names in `DnsName("…")`.
fn describe_rustls_error(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(c) = e else {
        return e.to_string();
    };
    let unix = |t: &UnixTime| fmt_unix(t.as_secs() as i64);
    let what = match c {
        C::UnknownIssuer => "signed by an unknown authority: not trusted by ca_file (or, when no \
                             ca_file is set, by the system's root certificates)"
            .to_string(),
        C::ExpiredContext { time, not_after } => {
            format!("expired at {} (it is now {})", unix(not_after), unix(time))
        }
        C::NotValidYetContext { time, not_before } => format!(
            "not valid before {} (it is now {})",
            unix(not_before),
            unix(time)
        ),
        C::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "not valid for name {:?}; it is valid for: {}",
            expected.to_str(),
            presented
                .iter()
                .map(|p| unwrap_debug_name(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => return e.to_string(),
    };
    format!("invalid peer certificate: {what}")
}

/// `DnsName("a.example")` → `a.example`; anything else unchanged.
fn unwrap_debug_name(s: &str) -> &str {
    match (s.find("(\""), s.strip_suffix("\")")) {
        (Some(i), Some(rest)) if i + 2 <= rest.len() => &rest[i + 2..],
        _ => s,
    }
}

/// `insecure_skip_verify`: accept any chain, but still check the handshake signatures so the
/// session is a real TLS session.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a prober reports about one TLS session.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TlsFacts {
    /// "TLS 1.2", "TLS 1.3" (blackbox's `probe_tls_version_info` values).
    pub version: String,
    /// rustls's name of the suite, e.g. "TLS13_AES_128_GCM_SHA256".
    pub cipher: String,
    pub alpn: Option<String>,
    /// The name the certificate was checked against.
    pub server_name: String,
    /// Whether the chain was verified (false with `insecure_skip_verify`).
    pub verified: bool,
    /// The chain as presented by the server, leaf first.
    pub chain: Vec<CertFacts>,
}

/// One certificate of a presented chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    /// Hex, lower case, as blackbox's `serialnumber` label.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DNS names and IP addresses from the subjectAltName extension.
    pub subject_alt_names: Vec<String>,
    /// SHA-256 of the DER encoding, hex, lower case.
    pub fingerprint_sha256: String,
}

impl TlsFacts {
    fn from_connection(conn: &rustls::ClientConnection, server_name: &str, verified: bool) -> Self {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_string(),
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        let alpn = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let chain = conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| CertFacts::from_der(c.as_ref()))
            .collect();
        TlsFacts {
            version,
            cipher,
            alpn,
            server_name: server_name.to_string(),
            verified,
            chain,
        }
    }

    /// The facts of a QUIC connection's TLS: always TLS 1.3. quinn does not tell the cipher
    /// suite; the HTTP/3 prober fills it in from what the handshake showed (empty: unknown).
    pub fn from_quic(
        chain_der: Vec<Vec<u8>>,
        alpn: Option<String>,
        server_name: &str,
        verified: bool,
    ) -> Self {
        TlsFacts {
            version: "TLS 1.3".to_string(),
            cipher: String::new(),
            alpn,
            server_name: server_name.to_string(),
            verified,
            chain: chain_der.iter().map(|c| CertFacts::from_der(c)).collect(),
        }
    }

    /// The earliest `not_after` over the whole presented chain (Unix seconds): what expires first
    /// breaks the site first, be it the leaf or an intermediate.
    pub fn earliest_not_after(&self) -> Option<i64> {
        self.chain.iter().map(|c| c.not_after).min()
    }
}

impl CertFacts {
    /// Parse what we can; a certificate x509-parser cannot read is still listed, with its
    /// fingerprint, so the chain length stays right.
    pub fn from_der(der: &[u8]) -> Self {
        let fingerprint_sha256 = hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => {
                let mut sans = Vec::new();
                if let Ok(Some(ext)) = cert.subject_alternative_name() {
                    for n in &ext.value.general_names {
                        match n {
                            x509_parser::extensions::GeneralName::DNSName(d) => {
                                sans.push(d.to_string())
                            }
                            x509_parser::extensions::GeneralName::IPAddress(b) => {
                                if let Some(ip) = ip_from_bytes(b) {
                                    sans.push(ip.to_string())
                                }
                            }
                            _ => {}
                        }
                    }
                }
                CertFacts {
                    subject: cert.subject().to_string(),
                    issuer: cert.issuer().to_string(),
                    serial: hex(cert.raw_serial()),
                    not_before: cert.validity().not_before.timestamp(),
                    not_after: cert.validity().not_after.timestamp(),
                    subject_alt_names: sans,
                    fingerprint_sha256,
                }
            }
            Err(e) => CertFacts {
                subject: format!("(unparsable certificate: {e})"),
                issuer: String::new(),
                serial: String::new(),
                not_before: 0,
                not_after: 0,
                subject_alt_names: vec![],
                fingerprint_sha256,
            },
        }
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Unix seconds as an RFC 3339 UTC date, for messages.
pub fn fmt_unix(secs: i64) -> String {
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    };
    humantime_like(t)
}

/// Minimal RFC 3339 formatting without pulling a date crate into the probe path.
fn humantime_like(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The handshake-only `tls` probe: resolve, connect, handshake, report the session.
#[derive(Clone, Debug)]
pub struct TlsRequest {
    pub host: String,
    pub port: u16,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    pub client: TlsClient,
}

/// Facts of the `tls` probe: the session, when the handshake got that far.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TlsProbeFacts {
    pub session: Option<TlsFacts>,
}

pub type TlsOutcome = Outcome<TlsProbeFacts>;

/// Run the handshake-only probe under `deadline`.
///
/// Under TLS 1.3 the client's side of the handshake completes before the server has checked the
/// client certificate, so a server refusing a (missing or wrong) client certificate is not seen
/// here, exactly as with blackbox's handshake; the refusal arrives as an alert on the first read,
/// which the tcp probe (`tls: true` plus an `Expect`) reports as reason `tls`.
pub async fn probe(req: &TlsRequest, deadline: Instant) -> TlsOutcome {
    let mut rec = Recorder::new();
    let mut facts = TlsProbeFacts::default();
    let res = with_deadline(&mut rec, deadline, async |rec: &mut Recorder| {
        let addrs = req.resolver.resolve(&req.host, req.ip, rec).await?;
        let tcp = connect_tcp(&addrs, req.port, rec).await?;
        let (tcp, marks) = kts::timestamped(tcp);
        let (_tls, session) = req.client.handshake(tcp, &req.host, rec, &marks).await?;
        Ok(session)
    })
    .await;
    let failure = match res {
        Ok(session) => {
            facts.session = Some(session);
            None
        }
        Err(f) => Some(f),
    };
    rec.finish(failure, facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_dates() {
        assert_eq!(fmt_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_unix(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(fmt_unix(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn presented_names_lose_their_debug_wrapping() {
        assert_eq!(unwrap_debug_name("DnsName(\"a.example\")"), "a.example");
        assert_eq!(unwrap_debug_name("192.0.2.1"), "192.0.2.1");
        assert_eq!(unwrap_debug_name("x(\")"), "x(\")");
    }

    #[test]
    fn suites_are_offered_in_go_s_order_and_none_is_dropped() {
        use rustls::CipherSuite as C;
        let names = |aes| -> Vec<C> { go_order(aes).iter().map(|s| s.suite()).collect() };
        assert_eq!(
            names(true),
            [
                C::TLS13_AES_128_GCM_SHA256,
                C::TLS13_AES_256_GCM_SHA384,
                C::TLS13_CHACHA20_POLY1305_SHA256,
                C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ]
        );
        assert_eq!(
            names(false),
            [
                C::TLS13_CHACHA20_POLY1305_SHA256,
                C::TLS13_AES_128_GCM_SHA256,
                C::TLS13_AES_256_GCM_SHA384,
                C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ]
        );
        // The same suites ring offers by default, none added or dropped.
        let sorted = |mut v: Vec<C>| {
            v.sort_by_key(|s| u16::from(*s));
            v
        };
        let ring: Vec<C> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(sorted(names(true)), sorted(ring.clone()));
        assert_eq!(sorted(names(false)), sorted(ring));
    }

    #[test]
    fn version_bounds_must_leave_something() {
        let opts = TlsOptions {
            min_version: Some(TlsVersion::Tls13),
            max_version: Some(TlsVersion::Tls12),
            ..Default::default()
        };
        assert!(TlsClient::new(&opts, &[])
            .unwrap_err()
            .contains("min_version"));
    }

    #[test]
    fn missing_ca_file_is_named() {
        let opts = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = TlsClient::new(&opts, &[]).unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
