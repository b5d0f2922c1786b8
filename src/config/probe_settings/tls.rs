//! TLS clients for probes: which ALPN list a prober offers, and building a client from its
//! options once (default clients once per process, the others once per load).

use std::sync::OnceLock;

use sonde_probes::tls::{TlsClient, TlsOptions};

use crate::config::build::Cx;
use crate::config::locate::key_path;

/// Which ALPN protocols a TLS client offers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// tcp and tls steps: no ALPN.
    None,
    /// http with `enable_http2: false`.
    Http1,
    /// http: HTTP/2 when the server agrees.
    Http2,
    /// gRPC: HTTP/2 only.
    Grpc,
}

impl Alpn {
    /// The ALPN an http step or module offers under `enable_http2` (default true).
    pub fn for_http(enable_http2: Option<bool>) -> Alpn {
        if enable_http2.unwrap_or(true) {
            Alpn::Http2
        } else {
            Alpn::Http1
        }
    }

    pub fn protocols(self) -> &'static [&'static [u8]] {
        match self {
            Alpn::None => &[],
            Alpn::Http1 => sonde_probes::http::ALPN_HTTP11,
            Alpn::Http2 => sonde_probes::http::ALPN_H2_HTTP11,
            Alpn::Grpc => sonde_probes::grpc::ALPN_H2,
        }
    }
}

/// The default TLS clients (system roots, full verification) are the same for every step of
/// every load, and building a rustls configuration costs far more than the rest of a step: build
/// each once per process.
pub fn default_client(alpn: Alpn) -> TlsClient {
    static NONE: OnceLock<TlsClient> = OnceLock::new();
    static H1: OnceLock<TlsClient> = OnceLock::new();
    static H2: OnceLock<TlsClient> = OnceLock::new();
    static GRPC: OnceLock<TlsClient> = OnceLock::new();
    let cell = match alpn {
        Alpn::None => &NONE,
        Alpn::Http1 => &H1,
        Alpn::Http2 => &H2,
        Alpn::Grpc => &GRPC,
    };
    cell.get_or_init(|| TlsClient::system(alpn.protocols()))
        .clone()
}

impl Cx<'_> {
    /// The client for `opts` offering `alpn`, written at `path` (a `tls_config`): shared with
    /// every other step or module of the load that asks for the same. An unusable file is
    /// reported at its key when the error names it, else at `path`.
    pub fn tls_client_for(
        &mut self,
        opts: TlsOptions,
        alpn: Alpn,
        path: &str,
    ) -> Option<TlsClient> {
        if opts == TlsOptions::default() {
            return Some(default_client(alpn));
        }
        if let Some(c) = self.shared.tls_client(&(opts.clone(), alpn)) {
            return Some(c);
        }
        match TlsClient::new(&opts, alpn.protocols()) {
            Ok(c) => {
                self.shared.tls.insert((opts, alpn), c.clone());
                Some(c)
            }
            Err(e) => {
                let at = [
                    ("ca_file", &opts.ca_file),
                    ("cert_file", &opts.cert_file),
                    ("key_file", &opts.key_file),
                ]
                .into_iter()
                .find(|(k, f)| {
                    e.starts_with(k)
                        || f.as_ref()
                            .is_some_and(|f| e.contains(&f.display().to_string()))
                })
                .map(|(k, _)| key_path(path, k))
                .unwrap_or_else(|| path.to_string());
                self.err_value(
                    &at,
                    format!("unusable tls_config: {e} — expected PEM certificate and key files"),
                );
                None
            }
        }
    }
}
