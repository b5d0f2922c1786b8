//! TCP probe: connect, optional TLS, then a send/expect dialogue with STARTTLS, in the manner of
//! blackbox_exporter's `query_response`.
//!
//! (Skeleton: the implementation lands in the next commit.)

use regex::bytes::Regex;
use tokio::time::Instant;

use crate::resolve::{ResolveOptions, Resolver};
use crate::tls::{TlsClient, TlsFacts};
use crate::{Failure, FailureReason, Outcome, Recorder};

/// One move of the dialogue.
#[derive(Clone, Debug)]
pub enum TcpStep {
    /// Read lines until one matches; its groups feed the next `Send`. No match before EOF fails.
    Expect(Regex),
    /// Read exactly these bytes.
    ExpectBytes(Vec<u8>),
    /// Write this line (a `\n` is appended, as blackbox does); `$1`, `${name}` expand from the
    /// last `Expect` match.
    Send(String),
    /// Upgrade the connection to TLS with the request's `tls_client`.
    StartTls,
}

#[derive(Clone, Debug)]
pub struct TcpRequest {
    pub host: String,
    pub port: u16,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    /// Handshake TLS right after connecting.
    pub tls: bool,
    /// Used for `tls: true` and for `StartTls`.
    pub tls_client: TlsClient,
    pub dialogue: Vec<TcpStep>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TcpFacts {
    pub tls: Option<TlsFacts>,
    /// Lines read and written, bounded, for the trace.
    pub transcript: Vec<String>,
    pub failed_due_to_regex: bool,
}

pub type TcpOutcome = Outcome<TcpFacts>;

pub async fn probe(req: &TcpRequest, deadline: Instant) -> TcpOutcome {
    let _ = (req, deadline);
    Recorder::new().finish(
        Some(Failure::new(
            FailureReason::Protocol,
            "tcp probe not implemented yet",
        )),
        TcpFacts::default(),
    )
}
