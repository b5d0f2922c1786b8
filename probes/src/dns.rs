//! DNS probe: one query of name/type/class sent to a given server over UDP or TCP with
//! hickory-proto, the rcode and resource records checked as blackbox_exporter does.
//!
//! (Skeleton: the implementation lands in the next commit.)

pub use hickory_proto::op::ResponseCode;
pub use hickory_proto::rr::{DNSClass, RecordType};
use regex::Regex;
use tokio::time::Instant;

use crate::resolve::{ResolveOptions, Resolver};
use crate::{Failure, FailureReason, Outcome, Recorder};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DnsTransport {
    Udp,
    Tcp,
}

/// Regex checks over one section's records, each record in Go miekg/dns text form
/// (`name\tttl\tclass\ttype\trdata`) so blackbox regexes keep working.
#[derive(Clone, Debug, Default)]
pub struct RrChecks {
    pub fail_if_matches: Vec<Regex>,
    pub fail_if_all_match: Vec<Regex>,
    pub fail_if_not_matches: Vec<Regex>,
    pub fail_if_none_matches: Vec<Regex>,
}

#[derive(Clone, Debug, Default)]
pub struct DnsChecks {
    /// Empty means NOERROR.
    pub valid_rcodes: Vec<ResponseCode>,
    pub answer: RrChecks,
    pub authority: RrChecks,
    pub additional: RrChecks,
}

#[derive(Clone, Debug)]
pub struct DnsRequest {
    /// The DNS server to ask: host name or IP, and port (53 by default).
    pub server: String,
    pub port: u16,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    pub query_name: String,
    pub query_type: RecordType,
    pub query_class: DNSClass,
    pub transport: DnsTransport,
    pub recursion_desired: bool,
    pub checks: DnsChecks,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DnsFacts {
    /// "NOERROR", "NXDOMAIN"…
    pub rcode: Option<String>,
    pub answer: Vec<String>,
    pub authority: Vec<String>,
    pub additional: Vec<String>,
    /// The SOA serial, when the answer holds one.
    pub serial: Option<u32>,
    /// A well-formed answer arrived (blackbox `probe_dns_query_succeeded`).
    pub query_succeeded: bool,
}

pub type DnsOutcome = Outcome<DnsFacts>;

pub async fn probe(req: &DnsRequest, deadline: Instant) -> DnsOutcome {
    let _ = (req, deadline);
    Recorder::new().finish(
        Some(Failure::new(
            FailureReason::Protocol,
            "dns probe not implemented yet",
        )),
        DnsFacts::default(),
    )
}
