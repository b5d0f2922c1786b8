//! HTTP probe: one request (plus redirects) over hyper, on a connection we dial ourselves so each
//! phase — resolve, connect, tls, processing (request sent → first response byte), transfer
//! (first byte → end of body) — is timed separately, and the whole presented TLS chain is seen.
//!
//! (Skeleton: the implementation lands in the next commit.)

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method};
use regex::Regex;
use tokio::time::Instant;
use url::Url;

use crate::resolve::{ResolveOptions, Resolver};
use crate::tls::{TlsClient, TlsFacts};
use crate::{Failure, FailureReason, Outcome, Recorder};

/// Credentials sent in the `Authorization` header. Never shown in events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    Basic { username: String, password: String },
    Bearer(String),
}

/// An inclusive range of accepted status codes; `200` is `200..=200`, `2xx` is `200..=299`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatusRange {
    pub lo: u16,
    pub hi: u16,
}

/// A regex over one response header's values (blackbox `fail_if_header_(not_)matches`).
#[derive(Clone, Debug)]
pub struct HeaderCheck {
    pub name: HeaderName,
    pub regex: Regex,
    /// true: fail when a value matches; false: fail when no value matches.
    pub fail_if_matches: bool,
    /// A missing header passes (true) or fails (false).
    pub allow_missing: bool,
}

/// blackbox's success criteria for an HTTP probe.
#[derive(Clone, Debug, Default)]
pub struct HttpChecks {
    /// Empty means 2xx.
    pub valid_status_codes: Vec<StatusRange>,
    /// Empty means any. Values as "HTTP/1.1", "HTTP/2.0".
    pub valid_http_versions: Vec<String>,
    pub fail_if_ssl: bool,
    pub fail_if_not_ssl: bool,
    pub fail_if_body_matches: Vec<Regex>,
    pub fail_if_body_not_matches: Vec<Regex>,
    pub headers: Vec<HeaderCheck>,
}

/// Everything the HTTP probe needs; built once at configuration load.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub url: Url,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub auth: Option<Auth>,
    pub follow_redirects: bool,
    /// Redirects followed at most (Go's default, and blackbox's, is 10).
    pub max_redirects: u32,
    /// Fail with reason `body` once the body exceeds this many bytes.
    pub body_size_limit: Option<u64>,
    /// How many bytes of the final body to keep in [`HttpFacts::body`] for the caller.
    pub keep_body: usize,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    /// Used for https:// URLs (including redirect targets). Its ALPN list decides HTTP/2.
    pub tls: TlsClient,
    /// `http://` proxy: plain requests go to it in absolute form, `https://` ones through CONNECT.
    pub proxy: Option<Url>,
    pub checks: HttpChecks,
}

/// One request/response exchange of a redirect chain.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Hop {
    pub url: String,
    pub remote_addr: Option<std::net::SocketAddr>,
    pub status: Option<u16>,
}

/// What the HTTP probe learnt.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HttpFacts {
    pub status: Option<u16>,
    /// "HTTP/1.1", "HTTP/2.0".
    pub version: Option<String>,
    /// Request headers as sent on the last hop, credentials redacted.
    pub request_headers: Vec<(String, String)>,
    /// Response headers of the last hop.
    pub headers: Vec<(String, String)>,
    /// The declared Content-Length of the last response, if any.
    pub content_length: Option<u64>,
    /// Body bytes received on the last hop.
    pub body_bytes: u64,
    /// The first `keep_body` bytes of the last body.
    #[serde(skip)]
    pub body: Bytes,
    pub redirects: u32,
    pub final_url: String,
    /// Whether the last hop was over TLS.
    pub is_tls: bool,
    pub tls: Option<TlsFacts>,
    /// Failed because of a body regex (blackbox `probe_failed_due_to_regex`).
    pub failed_due_to_regex: bool,
    pub hops: Vec<Hop>,
}

pub type HttpOutcome = Outcome<HttpFacts>;

/// Run the probe under `deadline`.
pub async fn probe(req: &HttpRequest, deadline: Instant) -> HttpOutcome {
    let _ = (req, deadline);
    let rec = Recorder::new();
    rec.finish(
        Some(Failure::new(
            FailureReason::Protocol,
            "http probe not implemented yet",
        )),
        HttpFacts::default(),
    )
}
