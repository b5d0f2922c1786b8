//! Which TLS 1.3 cipher suite a QUIC connection negotiated, for `probe_tls_cipher_info` over
//! HTTP/3 as over HTTPS.
//!
//! quinn keeps its rustls session private and its handshake data has no suite, so the suite is
//! read off what the three TLS 1.3 suites differ in, as the handshake hands them over:
//! - the hash: SHA-384's traffic secrets are 48 bytes, SHA-256's 32. A key log that keeps only
//!   the *length* of the server's application secret sees it (the secret itself is never kept);
//! - the AEAD: ChaCha20-Poly1305's packet keys allow 2^36 forged packets, AES-GCM's 2^52
//!   (RFC 9001 §6.6), and the keys the session gives quinn carry that limit.
//!
//! The session is quinn's own, wrapped: every call is passed through unchanged.

use std::any::Any;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use quinn::crypto::{self, ExportKeyingMaterialError, HeaderKey, KeyPair, Keys, PacketKey};
use quinn::{ConnectError, ConnectionId, Side};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::TransportError;
use rustls::CipherSuite;

/// The integrity limit of ChaCha20-Poly1305 packet keys (RFC 9001 §6.6).
const CHACHA20_INTEGRITY_LIMIT: u64 = 1 << 36;

/// What the handshake showed of the suite; shared by the config's session and the prober.
#[derive(Default, Debug)]
pub(super) struct SuiteSeen {
    secret_len: AtomicUsize,
    integrity_limit: AtomicU64,
}

impl SuiteSeen {
    /// The suite, once the handshake has given both signs; `None` before, or for a sign no
    /// TLS 1.3 suite gives.
    pub(super) fn suite(&self) -> Option<CipherSuite> {
        let limit = self.integrity_limit.load(Ordering::Relaxed);
        match (self.secret_len.load(Ordering::Relaxed), limit) {
            (_, 0) => None,
            (48, _) => Some(CipherSuite::TLS13_AES_256_GCM_SHA384),
            (32, CHACHA20_INTEGRITY_LIMIT) => Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
            (32, _) => Some(CipherSuite::TLS13_AES_128_GCM_SHA256),
            _ => None,
        }
    }

    fn keys(&self, packet: &dyn PacketKey) {
        self.integrity_limit
            .store(packet.integrity_limit(), Ordering::Relaxed);
    }
}

/// A key log that keeps the length of one secret and nothing of its value.
#[derive(Debug)]
pub(super) struct SecretLength(pub(super) Arc<SuiteSeen>);

impl rustls::KeyLog for SecretLength {
    fn will_log(&self, label: &str) -> bool {
        label == "SERVER_TRAFFIC_SECRET_0"
    }

    fn log(&self, _label: &str, _client_random: &[u8], secret: &[u8]) {
        self.0.secret_len.store(secret.len(), Ordering::Relaxed);
    }
}

/// quinn's rustls client config, whose sessions tell [`SuiteSeen`] the keys they make.
pub(super) struct Watched {
    pub(super) inner: Arc<quinn::crypto::rustls::QuicClientConfig>,
    pub(super) seen: Arc<SuiteSeen>,
}

impl crypto::ClientConfig for Watched {
    fn start_session(
        self: Arc<Self>,
        version: u32,
        server_name: &str,
        params: &TransportParameters,
    ) -> Result<Box<dyn crypto::Session>, ConnectError> {
        let inner = self
            .inner
            .clone()
            .start_session(version, server_name, params)?;
        Ok(Box::new(WatchedSession {
            inner,
            seen: self.seen.clone(),
        }))
    }
}

struct WatchedSession {
    inner: Box<dyn crypto::Session>,
    seen: Arc<SuiteSeen>,
}

impl crypto::Session for WatchedSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        self.inner.initial_keys(dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        self.inner.handshake_data()
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        self.inner.peer_identity()
    }

    fn early_crypto(&self) -> Option<(Box<dyn HeaderKey>, Box<dyn PacketKey>)> {
        self.inner.early_crypto()
    }

    fn early_data_accepted(&self) -> Option<bool> {
        self.inner.early_data_accepted()
    }

    fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        self.inner.read_handshake(buf)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        self.inner.transport_parameters()
    }

    /// Handshake and 1-RTT keys are of the negotiated suite (Initial keys come from
    /// `initial_keys`, always AES-128-GCM, and never pass here).
    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        let keys = self.inner.write_handshake(buf)?;
        self.seen.keys(keys.packet.local.as_ref());
        Some(keys)
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        self.inner.next_1rtt_keys()
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        self.inner.is_valid_retry(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        self.inner.export_keying_material(output, label, context)
    }
}
